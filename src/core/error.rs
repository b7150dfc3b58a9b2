//! The core's one error type: small, `Copy`, allocation-free, so firmware can match on it.

use ::core::fmt;

/// Names of the tensors a model file may hold; errors refer to them by these names.
pub const TENSOR_NAMES: [&str; 8] = [
    "W_enc",
    "W_dec",
    "b_enc",
    "b_dec",
    "W_enc_scale",
    "W_dec_scale",
    "skip_taps",
    "front",
];

/// Everything that can go wrong in the inference core or while parsing a model file.
///
/// `Copy` and free of heap data so it can be returned from interrupt handlers; the std layer
/// (`mfr_eeg::model`) wraps it with the file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreError {
    /// A caller buffer has the wrong length.
    BufferLength {
        /// Which buffer (e.g. `"scratch"`, `"output"`).
        buffer: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The model bytes end before a structure they announce.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        got: u64,
    },
    /// The safetensors JSON header is malformed at this byte offset (counted from the header start).
    HeaderSyntax {
        /// Byte offset inside the JSON header.
        offset: usize,
    },
    /// The header is larger than the parser accepts (100 MB, as the safetensors crate).
    HeaderTooLarge {
        /// Announced header length in bytes.
        len: u64,
    },
    /// A required tensor is absent.
    MissingTensor {
        /// Tensor name.
        tensor: &'static str,
    },
    /// The header names a tensor the format does not define (offset of its name in the header).
    UnknownTensor {
        /// Byte offset of the name inside the JSON header.
        offset: usize,
    },
    /// The same tensor or metadata key appears twice.
    DuplicateKey {
        /// Byte offset of the second occurrence inside the JSON header.
        offset: usize,
    },
    /// A required metadata key is absent from `__metadata__`.
    MissingMetadata {
        /// Metadata key.
        key: &'static str,
    },
    /// A metadata value cannot be parsed (e.g. `d_in` is not an integer).
    BadMetadata {
        /// Metadata key.
        key: &'static str,
    },
    /// `format_version` is not one this build reads.
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// `activation` is neither `topk_relu` nor `topk_signed`.
    UnknownActivation,
    /// `normalisation` is neither `window_zscore` nor `none`.
    UnknownNormalisation,
    /// A tensor has a dtype this format version does not allow for it.
    UnsupportedDtype {
        /// Tensor name.
        tensor: &'static str,
    },
    /// A tensor's shape disagrees with the metadata.
    ShapeMismatch {
        /// Tensor name.
        tensor: &'static str,
        /// Expected shape (`[n, 0]` for a vector).
        expected: [usize; 2],
        /// Shape found (`[n, 0]` for a vector; rank > 2 is reported as `[usize::MAX, rank]`).
        got: [usize; 2],
    },
    /// A tensor's `data_offsets` do not match its size or lie outside the data section.
    BadOffsets {
        /// Tensor name.
        tensor: &'static str,
    },
    /// A tensor's data does not start on a multiple of its element size.
    MisalignedTensor {
        /// Tensor name.
        tensor: &'static str,
    },
    /// Two tensors share bytes.
    OverlappingTensors {
        /// One tensor.
        a: &'static str,
        /// The other.
        b: &'static str,
    },
    /// The data section has bytes no tensor covers (holes or trailing data).
    UncoveredData {
        /// Bytes in the data section.
        data_len: u64,
        /// Bytes covered by tensors.
        covered: u64,
    },
    /// A weight is NaN or infinite.
    NonFiniteWeight {
        /// Tensor name.
        tensor: &'static str,
        /// Flat element index.
        index: usize,
    },
    /// `k` must satisfy `1 <= k <= d_sae`.
    InvalidK {
        /// k.
        k: usize,
        /// d_sae.
        d_sae: usize,
    },
    /// `hop` must satisfy `1 <= hop <= d_in`.
    InvalidHop {
        /// hop.
        hop: usize,
        /// d_in.
        d_in: usize,
    },
    /// `d_in` or `d_sae` is zero or so large that sizes overflow.
    InvalidDims {
        /// d_in.
        d_in: usize,
        /// d_sae.
        d_sae: usize,
    },
    /// A streamer's compile-time sizes do not match the model.
    ModelMismatch {
        /// Which size (`"d_in"`, `"d_sae"`, `"k"`).
        what: &'static str,
        /// Size the streamer was built for.
        expected: usize,
        /// Size of the model.
        got: usize,
    },
    /// A streamer was asked for zero channels.
    NoChannels,
    /// The const-generic [`crate::core::Streamer`] has no room for a front end's scratch;
    /// models with one stream through [`crate::core::StreamView`].
    FrontNeedsStreamView {
        /// f32 scratch the front end needs per window.
        scratch: usize,
    },
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferLength {
                buffer,
                expected,
                got,
            } => {
                write!(f, "buffer `{buffer}` has length {got}, expected {expected}")
            }
            Self::Truncated { needed, got } => {
                write!(f, "truncated model: needs {needed} bytes, has {got}")
            }
            Self::HeaderSyntax { offset } => {
                write!(f, "malformed safetensors JSON header at byte {offset}")
            }
            Self::HeaderTooLarge { len } => {
                write!(f, "safetensors header of {len} bytes is too large")
            }
            Self::MissingTensor { tensor } => write!(f, "missing tensor `{tensor}`"),
            Self::UnknownTensor { offset } => {
                write!(f, "unknown tensor name at header byte {offset}")
            }
            Self::DuplicateKey { offset } => write!(f, "duplicate key at header byte {offset}"),
            Self::MissingMetadata { key } => write!(f, "missing metadata key `{key}`"),
            Self::BadMetadata { key } => write!(f, "metadata `{key}` has an invalid value"),
            Self::UnsupportedVersion { found } => {
                write!(
                    f,
                    "unsupported model format_version {found} (this build reads 1 to 5)"
                )
            }
            Self::UnknownActivation => {
                write!(
                    f,
                    "unknown activation (expected `topk_relu` or `topk_signed`)"
                )
            }
            Self::UnknownNormalisation => {
                write!(
                    f,
                    "unknown normalisation (expected `window_zscore` or `none`)"
                )
            }
            Self::UnsupportedDtype { tensor } => {
                write!(
                    f,
                    "tensor `{tensor}` has a dtype this format version does not allow"
                )
            }
            Self::ShapeMismatch {
                tensor,
                expected,
                got,
            } => write!(
                f,
                "tensor `{tensor}` has shape {got:?}, expected {expected:?} ([n, 0] = vector)"
            ),
            Self::BadOffsets { tensor } => {
                write!(
                    f,
                    "tensor `{tensor}` has data_offsets that do not fit its shape or the file"
                )
            }
            Self::MisalignedTensor { tensor } => {
                write!(
                    f,
                    "tensor `{tensor}` data is not aligned to its element size"
                )
            }
            Self::OverlappingTensors { a, b } => write!(f, "tensors `{a}` and `{b}` overlap"),
            Self::UncoveredData { data_len, covered } => write!(
                f,
                "data section has {data_len} bytes but tensors cover {covered} (holes or trailing bytes)"
            ),
            Self::NonFiniteWeight { tensor, index } => {
                write!(
                    f,
                    "tensor `{tensor}` has a non-finite value at element {index}"
                )
            }
            Self::InvalidK { k, d_sae } => write!(f, "k = {k} must be in 1..={d_sae} (d_sae)"),
            Self::InvalidHop { hop, d_in } => write!(f, "hop = {hop} must be in 1..={d_in} (d_in)"),
            Self::InvalidDims { d_in, d_sae } => {
                write!(f, "invalid dimensions d_in = {d_in}, d_sae = {d_sae}")
            }
            Self::ModelMismatch {
                what,
                expected,
                got,
            } => write!(
                f,
                "model {what} = {got} does not match the streamer's compile-time {what} = {expected}"
            ),
            Self::NoChannels => write!(f, "a streamer needs at least one channel"),
            Self::FrontNeedsStreamView { scratch } => write!(
                f,
                "the model has a convolutional front end ({scratch} f32 of scratch per window), which the const-generic Streamer cannot hold: use StreamView"
            ),
        }
    }
}

impl ::core::error::Error for CoreError {}

/// `Ok(())` if `got == expected`, else [`CoreError::BufferLength`].
#[inline]
pub(crate) fn check_len(
    buffer: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), CoreError> {
    if expected == got {
        Ok(())
    } else {
        Err(CoreError::BufferLength {
            buffer,
            expected,
            got,
        })
    }
}
