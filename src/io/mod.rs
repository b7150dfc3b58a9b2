//! Reading and writing recordings (EDF/EDF+/BDF, WAV) and preprocessing.
pub mod filter;
pub mod resample;
