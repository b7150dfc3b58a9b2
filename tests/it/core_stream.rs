//! Integration tests: core_stream.
