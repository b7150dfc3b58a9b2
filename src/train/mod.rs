//! Training of MFR-regularised TopK SAEs on burn.
//!
//! N sparse autoencoders are trained side by side as one stack of batched tensors
//! (`[N, d_in, d_sae]` encoders, `[N, d_sae, d_in]` decoders), so every step is a handful of
//! batched matmuls whatever N is. The objective per SAE is MSE to the target plus AuxK (Gao et
//! al. 2024); Mutual Feature Regularization (Marks et al. 2024) adds
//! `alpha * w(t) * mean_{i<j} (1 - MMCS(D_i, D_j))` over the decoder dictionaries.
//!
//! Key types: [`TrainConfig`] (the experiment, saved as JSON beside exports), [`Dataset`]
//! (in-memory denoising pairs), [`train`] (the library entry point) returning a
//! [`TrainOutcome`], and [`BackendKind`] (wgpu, flex or ndarray, picked at run time).

pub mod auxk;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod data_file;
pub mod export;
pub mod hungarian;
pub mod job;
pub mod loss;
pub mod optim;
pub mod sae;
pub mod skip;
pub mod sparse;
pub mod synth_features;
pub mod topk;
pub mod trainer;

pub use backend::BackendKind;
pub use config::{ActivationKind, MmcsKind, TrainConfig};
pub use data::Dataset;
pub use trainer::{SaeTensors, StepMetrics, TrainEvent, TrainOutcome, train, train_with};

use std::path::PathBuf;

/// Makes glibc's allocator keep freed memory instead of returning it to the kernel, for
/// training processes (a no-op elsewhere). A training step allocates and frees a few MB of
/// buffers on several threads; by default glibc maps and unmaps them every step, and the page
/// faults and TLB shootdowns cost ~20% of a sparse step on 2 cores. Allocator policy is the
/// application's choice, so the library never calls this itself: the CLI and the benches do.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, to values glibc accepts (32 MiB is
    // the largest mmap threshold it takes on 64-bit).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Everything that can go wrong while training, loading data or writing results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The configuration is inconsistent (e.g. `k > d_sae`).
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The data does not match the configuration or is malformed.
    #[error("invalid data in {source_name}: {problem}")]
    Data {
        /// File name or "in-memory dataset".
        source_name: String,
        /// What is wrong.
        problem: String,
    },
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The requested backend is not available on this machine or build.
    #[error("backend unavailable: {0}")]
    Backend(String),
    /// A checkpoint file cannot be used to resume this run.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Training diverged (a loss became NaN or infinite).
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged {
        /// The step at which it was detected.
        step: usize,
        /// The offending value.
        loss: f32,
    },
    /// Writing the model file failed.
    #[error("model export to {path}: {problem}")]
    Export {
        /// The target file.
        path: PathBuf,
        /// What failed.
        problem: String,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn data(source_name: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Data {
            source_name: source_name.into(),
            problem: problem.into(),
        }
    }
}
