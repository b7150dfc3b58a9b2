//! Training of MFR-regularised TopK SAEs on burn.
