//! `mfr-eeg eog-check FILE...`: eye-artifact leakage and blink-free change on real
//! multi-channel recordings for every method ([`mfr_eeg::eval::ocular::check_file`]), as a
//! Markdown table.

use std::path::PathBuf;

use mfr_eeg::eval::ocular::check_file;
use mfr_eeg::ocular::Isolator;

use super::denoise::load_model;
use super::{outln, write_stdout};

/// Arguments of `mfr-eeg eog-check`.
#[derive(Debug, clap::Args)]
pub struct EogCheckArgs {
    /// EDF/BDF recordings with an EOG channel or frontal channels.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// EOG channel labels (default: channels labelled EOG/VEOG/HEOG, else frontal references).
    #[arg(long, value_delimiter = ',', value_name = "LABEL[,LABEL]")]
    pub eog: Option<Vec<String>>,
    /// Model file (default: the embedded default model).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Seed of ICA's random start.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs `mfr-eeg eog-check`.
pub fn run(a: EogCheckArgs) -> anyhow::Result<()> {
    let model = load_model(a.model.as_deref())?;
    let iso = Isolator::of_model(&model.view());
    let mut o = String::new();
    for f in &a.files {
        let r = check_file(f, a.eog.as_deref(), iso, a.seed)?;
        outln!(o, "{}", r.markdown());
    }
    write_stdout(&o)
}
