//! The `no_std`, allocation-free inference core: the TopK SAE forward (f32 and int8) over
//! borrowed weights ([`Sae`]), TopK selection ([`topk_into`]), and the streaming overlap-add
//! denoiser ([`Streamer`], [`StreamView`], [`denoise_offline_into`]), and the spatial
//! eye-artifact stages: the multi-channel Wiener filter that learns the blink pattern while
//! it streams ([`BlinkMwf`]) and the reference regression ([`RefRegression`]). It uses `::core` and
//! `libm` only; every hot-path function writes into caller buffers.

mod error;
mod mwf;
mod sae;
mod spatial;
mod stream;
mod topk;

pub use error::{CoreError, TENSOR_NAMES};
pub use mwf::{
    BlinkMwf, DEFAULT_MWF_DELAY_S, MWF_MAX_REFERENCES, MwfChannel, MwfConfig, MwfEstimator,
};
pub use sae::{
    AFTER_EYE_SLOW, Activation, Blend, F32Weights, Front, FrontShape, Int8Weights, MAX_FRONT_DEPTH,
    MAX_FRONT_KERNEL, MAX_FRONT_WIDTH, Normalisation, Sae, SaeConfig, Skip, SlowGate, Weights,
    ZSCORE_EPS, zscore_stats,
};
pub use spatial::{
    ArtifactGate, ChannelState, DEFAULT_DC_CORNER_HZ, DEFAULT_MEMORY_S, DEFAULT_RIDGE_RMS,
    DcBlocker, GateConfig, RefRegression, RegressionConfig, SpatialError, dc_pole,
};
pub use stream::{
    FaultCounts, OlaShape, SAMPLE_LIMIT, StreamView, Streamer, denoise_offline_into, offline_pad,
    offline_work_len, ola_window_into, ola_window_shape_into, reflect_index,
};
#[cfg(feature = "std")]
pub(crate) use stream::{sane, sanitise};
pub use topk::topk_into;
