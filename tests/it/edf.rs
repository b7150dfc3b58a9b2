//! Integration tests: edf.
