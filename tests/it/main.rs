//! Integration tests, in one binary so the (large) library links once.

mod array_stream;
mod batch;
mod cli;
mod core_forward;
mod core_stream;
mod edf;
mod eval;
mod fidelity;
mod front;
mod model_file;
mod multichannel;
mod quality;
mod topk;
#[cfg(feature = "train")]
mod train;
