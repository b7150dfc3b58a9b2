//! Data generation, metrics, baselines and the benchmark harness.
//!
//! - [`welch`]: Welch power spectral density (Hann, 50 % overlap), used by RRMSE_s.
//! - [`metrics`]: RRMSE_t, RRMSE_s, CC, SNR and SNR improvement (EEGdenoiseNet definitions).
//! - [`data`]: the seeded semi-synthetic generator (real EEG + physiological model, six
//!   artifact families), the EEGdenoiseNet mixing protocol and leak-free splits.
//! - [`npy`] and [`eegdenoisenet`]: loading EEGdenoiseNet's own `.npy` epoch files.
//! - [`corpus`]: clean segments from every source, split once; training/test windows.
//! - [`real`]: real recordings split by recording (EEG and recorded EMG), quality per
//!   held-out recording; [`export`]: the benchmark's pairs as `.npy` for outside models.
//! - [`baselines`]: band-pass + notch (tuned on validation) and db4 wavelet thresholding.
//! - [`frontier`]: batched-path GFLOP/s against a plain sgemm, the speed/quality frontier
//!   over hop and model size, and timing an hour of EEG against a zero-phase band-pass.
//! - [`ica`] and [`ocular`]: FastICA and the eye-artifact measures on real multi-channel
//!   recordings (`mfr-eeg eog-check`).
//! - [`harness`] and [`bench`](mod@bench): `mfr-eeg bench` (quality, MFR vs no MFR, speed, figures).
//! - [`blend`]: fitting a model's correction gate on validation windows (`mfr-eeg fit-blend`).
//! - [`quantize`]: the int8 model measured against its f32 original (`mfr-eeg quantize`).
//! - `cnn` (feature `train`): a compact 1D U-Net peer trained in burn on the SAE's pairs.
//! - `train_denoiser` (feature `train`): `mfr-eeg train-denoiser`, the shipped models.

pub mod baselines;
pub mod bench;
pub mod blend;
#[cfg(feature = "train")]
pub mod cnn;
pub mod corpus;
pub mod data;
pub mod eegdenoisenet;
pub mod export;
pub mod frontier;
pub mod harness;
pub mod ica;
pub mod metrics;
pub mod npy;
pub mod ocular;
pub mod quantize;
pub mod real;
#[cfg(feature = "train")]
pub mod train_denoiser;
pub mod welch;

use std::path::PathBuf;

/// Errors of the evaluation layer; each names what was wrong and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Two signals that must have equal length do not.
    #[error("length mismatch: expected {expected} samples, got {got}")]
    LengthMismatch {
        /// Length required.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A signal is shorter than the operation needs.
    #[error("signal too short: need at least {needed} samples, got {got}")]
    TooShort {
        /// Minimum length.
        needed: usize,
        /// Length given.
        got: usize,
    },
    /// A reference signal has zero energy, so a relative metric is undefined.
    #[error("{what} has zero energy; the relative metric is undefined")]
    ZeroEnergy {
        /// Which signal.
        what: &'static str,
    },
    /// A signal holds NaN or infinity.
    #[error("{what} contains a non-finite sample at index {index}")]
    NonFinite {
        /// Which signal.
        what: &'static str,
        /// First offending index.
        index: usize,
    },
    /// An invalid parameter.
    #[error("invalid parameter: {0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Training failed (the trainer's message).
    #[error("training failed: {0}")]
    Train(String),
    /// A model file could not be read, built or written.
    #[error("model: {0}")]
    Model(String),
    /// A file's content is malformed.
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}
