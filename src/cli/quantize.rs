//! `mfr-eeg quantize IN OUT`: arguments, and the report printed after the check.

use std::path::PathBuf;

use mfr_eeg::eval::quantize::{QuantizeOptions, quantize_file};

use super::{outln, write_stdout};

/// Arguments of `mfr-eeg quantize`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuantizeArgs {
    /// f32 model to quantise.
    pub input: PathBuf,
    /// Where to write the int8 model (atomically; not written if the quality check fails).
    pub output: PathBuf,
    /// Seed of the synthetic evaluation data (eval's generator; its test split is used).
    #[arg(long, default_value_t = QuantizeOptions::default().seed)]
    pub seed: u64,
    /// Clean source segments generated before splitting (about 15 % land in the test split).
    #[arg(long, default_value_t = QuantizeOptions::default().segments)]
    pub segments: usize,
    /// Write the int8 model even if it is more than 2 % worse than the f32 model.
    #[arg(long)]
    pub force: bool,
}

/// Quantises, prints the report; an int8 model that is too lossy is an error (exit 1).
pub fn run(a: QuantizeArgs) -> anyhow::Result<()> {
    let opts = QuantizeOptions {
        seed: a.seed,
        segments: a.segments,
        force: a.force,
    };
    let report = quantize_file(&a.input, &a.output, &opts)?;
    let mut out = String::new();
    outln!(out, "{report}");
    outln!(out, "wrote {}", a.output.display());
    write_stdout(&out)
}
