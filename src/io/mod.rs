//! Reading and writing recordings (EDF/EDF+/BDF, WAV) and preprocessing.

pub mod atomic;
pub mod edf;
pub mod filter;
pub mod npy;
pub mod resample;
pub mod wav;
