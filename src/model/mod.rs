//! The one model format: a safetensors file with tensors `W_enc [d_in, d_sae]`,
//! `W_dec [d_sae, d_in]`, `b_enc [d_sae]`, `b_dec [d_in]` (f32 little endian; version 2 also
//! allows int8 `W_enc`/`W_dec` with f32 `W_enc_scale`/`W_dec_scale [d_sae]`) and string
//! metadata in `__metadata__`: `format_version, d_in, d_sae, k, hop, activation, normalisation,
//! sample_rate_hz, channel_type, provenance`; version 3 adds the gated linear path (`skip_taps`,
//! `skip_gate`), version 4 the overlap-add taper `ola` (`sine`; absent means Hann), version 5
//! a convolutional front end before the encoder (`front` tensor, `front` metadata such as
//! `16x3k7`), version 6 a correction gate `blend` (`{lo},{hi}`, [`crate::core::Blend`]),
//! version 7 a separate ramp for the correction's slow part `blend_slow` (`{lo},{hi},{half}`,
//! [`crate::core::SlowGate`]). Each file carries the lowest version that holds what it has.
//!
//! [`ModelView`] parses and validates a file's bytes without allocating (`no_std`, usable from
//! firmware with `include_bytes!`); with `std`, [`Model`] owns loaded bytes, [`write_model`]
//! writes files atomically, and [`quantize`] turns an f32 model into an int8 one. Files load in
//! Python with `safetensors.numpy.load_file` alone.

mod view;

pub use view::{
    FORMAT_VERSION_BLEND, FORMAT_VERSION_BLEND_SLOW, FORMAT_VERSION_F32, FORMAT_VERSION_FRONT,
    FORMAT_VERSION_INT8, FORMAT_VERSION_OLA, FORMAT_VERSION_SKIP, META_KEYS, ModelView, ViewMeta,
};

#[cfg(feature = "std")]
mod file;
#[cfg(feature = "std")]
pub mod quantize;

#[cfg(feature = "std")]
pub use file::{
    FrontParams, Model, ModelFileError, ModelMeta, ModelTensors, QuantizedTensors, SkipPath,
    identity_model, write_model, write_model_int8,
};
