//! Integration tests: model_file.
