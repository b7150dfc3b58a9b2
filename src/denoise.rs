//! The offline denoising pipeline used by `mfr-eeg denoise`.
