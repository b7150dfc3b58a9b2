//! Integration tests: core_forward.
