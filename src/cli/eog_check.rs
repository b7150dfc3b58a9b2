//! `mfr-eeg eog-check FILE...`: eye-artifact leakage and blink-free change on real
//! multi-channel recordings for every method ([`mfr_eeg::eval::ocular::check_file`]), as a
//! Markdown table.

use std::path::PathBuf;

use mfr_eeg::eval::ocular::{BLINK_MARGIN_S, check_file};
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
    let view = model.view();
    let meta = view.meta();
    let iso = Isolator {
        sae: view.sae(),
        hop: meta.hop,
        rate_hz: f64::from(meta.sample_rate_hz),
    };
    let mut o = String::new();
    for f in &a.files {
        let r = check_file(f, a.eog.as_deref(), iso, a.seed)?;
        outln!(o, "## {}", r.path.display());
        outln!(
            o,
            "{} EEG channels at {} Hz, {:.1} s; {}; {} blink events ({} in the blink-locked \
             average; its floor, blink-free epochs averaged alike: {:.3}), {:.1} s blink-free (>= {BLINK_MARGIN_S} s from a blink); leakage over {} channels; ICA removed \
             components {:?} of {}; streaming latency of the Wiener filter {:.3} s, of the \
             regression on the SAE-isolated reference {:.3} s",
            r.channels,
            r.fs_hz,
            r.seconds,
            r.references,
            r.blinks,
            r.blink_epochs,
            r.blink_floor,
            r.blink_free_s,
            r.leakage_channels,
            r.ica_removed.0,
            r.ica_removed.1,
            r.latency_s,
            r.regression_latency_s
        );
        outln!(o);
        outln!(
            o,
            "| method | mean abs corr(EEG, ref) 1-8 Hz | blink left (blink-locked average) | \
             blink-free 1-40 Hz change (RRMSE) | time (s) |"
        );
        outln!(o, "|---|---|---|---|---|");
        for row in &r.rows {
            outln!(
                o,
                "| {} | {:.3} | {:.3} | {:.3} | {:.2} |",
                row.method,
                row.leakage,
                row.blink_residual,
                row.blink_free_change,
                row.seconds
            );
        }
        outln!(o);
    }
    write_stdout(&o)
}
