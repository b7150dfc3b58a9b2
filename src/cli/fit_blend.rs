//! `mfr-eeg fit-blend IN OUT`: arguments, and the scores printed after the fit.

use std::path::PathBuf;

use mfr_eeg::eval::blend::{BlendData, fit_blend_file};
use mfr_eeg::eval::data::ArtifactKind;

use super::{outln, write_stdout};

fn defaults() -> BlendData {
    BlendData::default()
}

fn kind(s: &str) -> Result<ArtifactKind, String> {
    ArtifactKind::ALL
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| format!("unknown artifact kind {s:?}"))
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
    /// Artifact kinds whose validation windows are fitted on (eog, emg, line, pop, drift,
    /// mixed).
    #[arg(long, value_delimiter = ',', value_parser = kind, default_values = ["eog", "emg"])]
    pub kinds: Vec<ArtifactKind>,
    /// Also fit on the artifact-free validation windows (the change to EEG that needs no
    /// cleaning counts as error).
    #[arg(long)]
    pub clean: bool,
    /// Half-width in samples of the moving average whose slow part of each correction gets
    /// its own ramp (`mfr_eeg::core::SlowGate`); 0 fits one ramp for the whole correction.
    #[arg(long, default_value_t = 0)]
    pub slow_half: u16,
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
        kinds: a.kinds,
        clean: a.clean,
    };
    let slow = (a.slow_half > 0).then_some(a.slow_half);
    let fit = fit_blend_file(&a.input, &a.output, &data, slow, a.threads)?;
    let mut out = String::new();
    outln!(out, "{fit}");
    let slow = fit
        .best
        .0
        .slow
        .map_or_else(String::new, |s| format!(", blend_slow {s}"));
    outln!(
        out,
        "wrote {} (blend {}{slow})",
        a.output.display(),
        fit.best.0
    );
    write_stdout(&out)
}
