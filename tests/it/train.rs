//! Integration tests: train.
