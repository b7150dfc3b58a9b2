//! `mfr-eeg fit-blend IN OUT`: arguments, and the scores printed after the fit.

use std::path::PathBuf;

use mfr_eeg::eval::blend::{BlendData, fit_blend_file};

use super::{outln, write_stdout};

fn defaults() -> BlendData {
    BlendData::default()
}

/// Arguments of `mfr-eeg fit-blend`.
#[derive(Debug, Clone, clap::Args)]
pub struct FitBlendArgs {
    /// Model to fit the gate of (a gate it has is refitted). It is read whole before the
    /// output is written, so OUTPUT may be the same path.
    pub input: PathBuf,
    /// Where to write the model with the fitted gate (atomically).
    pub output: PathBuf,
    /// Real recordings for clean EEG, as `train-denoiser --edf`.
    #[arg(long, default_values_os_t = defaults().edf)]
    pub edf: Vec<PathBuf>,
    /// A real-data set (`scripts/real_data.py`), as `train-denoiser --real`.
    #[arg(long)]
    pub real: Option<PathBuf>,
    /// Physiological-model segments added to the real ones, as `train-denoiser`.
    #[arg(long, default_value_t = defaults().model_segments)]
    pub model_segments: usize,
    /// Seed of the corpus, as `train-denoiser --data-seed`.
    #[arg(long, default_value_t = defaults().data_seed)]
    pub data_seed: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Fits, writes the model, prints the scores.
pub fn run(a: FitBlendArgs) -> anyhow::Result<()> {
    let data = BlendData {
        edf: a.edf,
        real: a.real,
        model_segments: a.model_segments,
        data_seed: a.data_seed,
    };
    let fit = fit_blend_file(&a.input, &a.output, &data, a.threads)?;
    let mut out = String::new();
    outln!(out, "{fit}");
    outln!(out, "wrote {} (blend {})", a.output.display(), fit.best.0);
    write_stdout(&out)
}
