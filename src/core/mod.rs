//! The `no_std`, allocation-free inference core.
