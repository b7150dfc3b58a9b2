//! Reading and writing recordings (EDF/EDF+/BDF, WAV) and preprocessing.

pub mod edf;
pub mod filter;
pub mod resample;
pub mod wav;
