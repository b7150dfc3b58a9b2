//! Integration tests, in one binary so the (large) library links once.

mod core_forward;
mod core_stream;
mod model_file;
mod edf;
mod cli;
mod eval;
#[cfg(feature = "train")]
mod train;
