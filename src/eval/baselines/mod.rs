//! Classical baselines evaluated on the same windows as the SAE: wavelet soft-thresholding
//! ([`wavelet`]) and band-pass + notch filtering.

pub mod wavelet;
