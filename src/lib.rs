//! mfr-eeg: EEG artifact removal with TopK sparse autoencoders trained with Mutual Feature
//! Regularization (Marks et al. 2024).
//!
//! - [`core`]: the `no_std`, allocation-free inference core (SAE forward, TopK, streaming).
//! - [`model`]: the one model format (safetensors + metadata), zero-copy views.
//! - `batch` (std): the offline denoiser with many windows per encoder matrix product.
//! - `io` (std): EDF/EDF+/BDF and WAV, resampling and filters.
//! - `ocular` (std): multi-channel eye-artifact removal (references, spatial regression).
//! - `eval` (std): synthetic and semi-synthetic data, metrics, baselines, the bench harness.
//! - `embed` (std): arrays and owned streamers for the C ABI (`capi/`) and Python (`python/`).
//! - `train` (feature `train`): burn-based training with MFR, checkpoints and export.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

pub mod core;
pub mod model;
pub mod rng;

#[cfg(feature = "std")]
pub mod batch;
#[cfg(feature = "std")]
pub mod denoise;
#[cfg(feature = "std")]
pub mod embed;
#[cfg(feature = "std")]
pub mod eval;
#[cfg(feature = "std")]
pub mod io;
#[cfg(feature = "std")]
pub mod ocular;
#[cfg(feature = "std")]
pub mod plot;
#[cfg(feature = "train")]
pub mod train;
