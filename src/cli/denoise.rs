//! `mfr-eeg denoise IN OUT`: arguments, progress bar and the one-screen summary around
//! [`mfr_eeg::denoise::denoise_file`].

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mfr_eeg::denoise::{DenoiseOptions, DenoiseSummary, Progress, denoise_file};
use mfr_eeg::model::Model;

use super::{outln, parse_band, parse_notch, write_stdout};

/// The default model, relative to the repository root.
pub const DEFAULT_MODEL: &str = "models/general-256hz.safetensors";

/// The default model's bytes, embedded so the binary works from any directory.
static DEFAULT_MODEL_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/general-256hz.safetensors"
));

/// Arguments of `mfr-eeg denoise`.
#[derive(Debug, clap::Args)]
pub struct DenoiseArgs {
    /// Input EDF, EDF+ or BDF file (never modified).
    pub input: PathBuf,
    /// Output file: a copy of the input with the denoised channels replaced (written to a
    /// temporary file and renamed; must not be the input).
    pub output: PathBuf,
    /// Model file (default: the shipped models/general-256hz.safetensors, embedded in the
    /// binary).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Channels to denoise, comma-separated labels (default: every EEG channel, i.e. voltage
    /// channels whose label does not name EOG, ECG, EMG, triggers...).
    #[arg(long, value_delimiter = ',', value_name = "LABELS")]
    pub channels: Option<Vec<String>>,
    /// Remove power-line noise at 50 or 60 Hz first (zero-phase notch, Q = 30).
    #[arg(long, value_parser = parse_notch, value_name = "50|60")]
    pub notch: Option<f64>,
    /// With --notch, also notch every harmonic below the Nyquist frequency.
    #[arg(long, requires = "notch")]
    pub notch_harmonics: bool,
    /// Band-pass LO,HI Hz first (zero-phase Butterworth; a HI at or above Nyquist becomes a
    /// high-pass).
    #[arg(long, value_parser = parse_band, value_name = "LO,HI")]
    pub bandpass: Option<(f64, f64)>,
    /// Butterworth order per pass for --bandpass (doubled by forward-backward filtering).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=12))]
    pub order: u8,
    /// Also write the denoised channels as a 32-bit float WAV file.
    #[arg(long, value_name = "OUT.wav")]
    pub wav: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Overlap-add hop in model samples (default: the model's). Cost is proportional to
    /// 1 / hop: e.g. 32 instead of 8 is 4x faster at a small loss of quality.
    #[arg(long, value_name = "SAMPLES")]
    pub hop: Option<usize>,
}

/// Loads `--model`, or the embedded default model when none is given.
pub fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    match path {
        Some(p) => Model::load(p).with_context(|| format!("cannot load model {}", p.display())),
        None => Model::from_bytes(DEFAULT_MODEL_BYTES.to_vec())
            .with_context(|| format!("the embedded default model {DEFAULT_MODEL} is invalid")),
    }
}

/// Runs `mfr-eeg denoise`.
pub fn run(a: DenoiseArgs) -> anyhow::Result<()> {
    let model = load_model(a.model.as_deref())?;
    let opts = DenoiseOptions {
        channels: a.channels.clone(),
        notch_hz: a.notch,
        notch_harmonics: a.notch_harmonics,
        bandpass_hz: a.bandpass,
        bandpass_order: usize::from(a.order),
        threads: a.threads,
        wav: a.wav.clone(),
        hop: a.hop,
    };
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:>10} [{bar:40}] {pos}/{len} channels {elapsed}",
        )
        .expect("static template is valid")
        .progress_chars("=> "),
    );
    // Ticks while one long channel is in work, so the bar never looks stuck.
    bar.enable_steady_tick(std::time::Duration::from_millis(150));
    let progress = |p: Progress| match p {
        Progress::Reading { channels } => {
            bar.set_length(channels as u64);
            bar.set_message("reading");
        }
        Progress::Channel { done, .. } => {
            bar.set_message("denoising");
            bar.set_position(done as u64);
        }
        Progress::Writing => bar.set_message("writing"),
        Progress::WritingWav => bar.set_message("wav"),
    };
    let result = denoise_file(&a.input, &a.output, &model, &opts, &progress);
    bar.finish_and_clear();
    let summary = result?;
    write_stdout(&summary_text(&summary, &model, &a))
}

fn summary_text(s: &DenoiseSummary, model: &Model, a: &DenoiseArgs) -> String {
    let mut out = String::new();
    let m = model.meta();
    let name = a
        .model
        .as_ref()
        .map_or_else(|| DEFAULT_MODEL.to_string(), |p| p.display().to_string());
    outln!(
        out,
        "denoised {} -> {}",
        s.input.display(),
        s.output.display()
    );
    outln!(
        out,
        "  model       {name} (window {} samples, hop {}, k {} of {}, {} Hz, {})",
        m.d_in,
        a.hop.unwrap_or(m.hop),
        m.k,
        m.d_sae,
        m.sample_rate_hz,
        m.normalisation.as_str()
    );
    let resampled = s
        .channels
        .iter()
        .filter(|c| c.resampled_to_hz.is_some())
        .count();
    let mut rates: Vec<f64> = s.channels.iter().map(|c| c.sample_rate_hz).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let rates: Vec<String> = rates.iter().map(|r| format!("{r} Hz")).collect();
    outln!(
        out,
        "  channels    {} cleaned at {}{}",
        s.channels.len(),
        rates.join(", "),
        if resampled > 0 {
            format!(
                " ({resampled} resampled to {} Hz and back)",
                s.model_rate_hz
            )
        } else {
            String::new()
        }
    );
    let mut pre = Vec::new();
    if let Some(n) = a.notch {
        pre.push(format!(
            "notch {n} Hz{}",
            if a.notch_harmonics {
                " + harmonics"
            } else {
                ""
            }
        ));
    }
    if let Some((lo, hi)) = a.bandpass {
        pre.push(format!(
            "band-pass {lo}-{hi} Hz (Butterworth order {})",
            a.order
        ));
    }
    if !pre.is_empty() {
        outln!(out, "  prefilter   {} (zero-phase)", pre.join(", "));
    }
    outln!(
        out,
        "  samples     {} ({:.1} s of recording)",
        s.samples,
        s.recording_seconds
    );
    let clipped: Vec<String> = s
        .channels
        .iter()
        .filter(|c| c.clipped > 0)
        .map(|c| format!("{} {}", c.label, c.clipped))
        .collect();
    if clipped.is_empty() {
        outln!(out, "  clipped     0 samples");
    } else {
        outln!(
            out,
            "  clipped     {} samples to the channel's physical range ({})",
            s.clipped,
            clipped.join(", ")
        );
    }
    let f = s.faults();
    if f.input_samples > 0 || f.windows > 0 {
        outln!(
            out,
            "  repaired    {} non-finite input samples, {} windows passed through",
            f.input_samples,
            f.windows
        );
    }
    outln!(
        out,
        "  time        {:.2} s ({:.0}x real time)",
        s.elapsed_seconds,
        s.x_real_time()
    );
    if let Some(w) = &a.wav {
        outln!(out, "  wav         {}", w.display());
    }
    for n in &s.notes {
        outln!(out, "  note        {n}");
    }
    out
}
