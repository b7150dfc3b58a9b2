//! Reading and writing recordings (EDF/EDF+/BDF, WAV) and preprocessing.
