//! `mfr-eeg denoise IN OUT` and `mfr-eeg denoise IN... --out-dir DIR`: arguments, signals,
//! progress bar and the summaries around [`mfr_eeg::denoise::denoise_file_cancellable`] and
//! [`mfr_eeg::denoise::many::denoise_many`].

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mfr_eeg::core::{Blend, OlaShape};
use mfr_eeg::denoise::many::{DEFAULT_GLOB, Outcome, denoise_many, plan_jobs};
use mfr_eeg::denoise::{
    DenoiseOptions, DenoiseSummary, GateChoice, HighBand, Progress, denoise_file_cancellable,
    effective_gate,
};
use mfr_eeg::model::Model;

use super::{Interrupted, OlaArg, UsageError, outln, parse_band, parse_notch, write_stdout};

/// The default model, relative to the repository root (its bytes are embedded in the binary,
/// [`mfr_eeg::embed::DEFAULT_MODEL_BYTES`], so it works from any directory).
pub const DEFAULT_MODEL: &str = "models/fast-256hz.safetensors";

/// Arguments of `mfr-eeg denoise`.
#[derive(Debug, clap::Args)]
pub struct DenoiseArgs {
    /// `IN OUT`: the input EDF, EDF+ or BDF file (never modified) and the output file (a copy
    /// of the input with the denoised channels replaced, written to a temporary file and
    /// renamed; must not be the input). With --out-dir: any number of input files and
    /// directories (searched recursively for files matching --glob).
    #[arg(required = true, num_args = 1.., value_name = "PATHS")]
    pub paths: Vec<PathBuf>,
    /// Denoise every input into this directory (created if missing), keeping each file's
    /// path relative to the directory it was found in.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// With --out-dir: file names to take from input directories (case-insensitive).
    #[arg(long, default_value = DEFAULT_GLOB, value_name = "PATTERN", requires = "out_dir")]
    pub glob: String,
    /// With --out-dir: replace outputs that exist (default: skip those files).
    #[arg(long, requires = "out_dir")]
    pub overwrite: bool,
    /// Model file (default: the shipped models/fast-256hz.safetensors, embedded in the
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
    /// Channels sampled faster than the model: keep what lies above the model's Nyquist
    /// frequency unchanged, or drop it.
    #[arg(long, value_enum, default_value_t = AboveBand::Keep, value_name = "keep|drop")]
    pub above_model_band: AboveBand,
    /// Write the output even when more than 0.1 % of a channel's samples would be clipped to
    /// its physical range (default: that is an error and nothing is written).
    #[arg(long)]
    pub allow_clipping: bool,
    /// Also write the denoised channels as a 32-bit float WAV file.
    #[arg(long, value_name = "OUT.wav", conflicts_with = "out_dir")]
    pub wav: Option<PathBuf>,
    /// Worker threads (default: one per core), shared between files and channels.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Overlap-add hop in model samples (default: the model's). Cost is proportional to
    /// 1 / hop: e.g. 32 instead of 8 is 4x faster at a small loss of quality.
    #[arg(long, value_name = "SAMPLES")]
    pub hop: Option<usize>,
    /// Taper of the overlap-add window (default: the model's): `sine` is flatter than `hann`
    /// and scored better at every hop on the validation windows.
    #[arg(long, value_enum, value_name = "hann|sine")]
    pub ola: Option<OlaArg>,
    /// Correction gate (default: the model's own, and on channels the eye stage cleans its
    /// slow part only when large, `after-eye`). `LO,HI` applies a window's correction in part
    /// while its relative correction |x_hat - x| / |x| lies between LO and HI (none below, all
    /// above); `off` applies every correction whole; `model` the model's gate on every
    /// channel; `after-eye` the eye stage's on every channel. Larger bounds leave more EEG as
    /// it was and remove less of small artifacts.
    #[arg(long, value_name = "LO,HI|off|model|after-eye")]
    pub gate: Option<String>,
    /// With `--gate LO,HI`: a separate ramp `LO,HI` for the correction's slow part, its moving
    /// average over 2 HALF + 1 samples; `--gate` then gates the fast rest.
    #[arg(long, value_name = "LO,HI,HALF", requires = "gate")]
    pub gate_slow: Option<String>,
    /// Let the model correct only the fast part of each window (above about 3.5 Hz: muscle,
    /// line noise, the edges of pops) and leave the slow part as it was. With the eye stage
    /// removing eye artifacts, this changes blink-free EEG least (`eog-check`).
    #[arg(long, conflicts_with = "gate_slow")]
    pub keep_slow: bool,
    /// Seconds of recording processed per block (default: up to 300 s, fewer for many fast
    /// channels; `inf`: the whole file at once). Memory grows with it; the output does not
    /// change.
    #[arg(long, value_name = "SECONDS")]
    pub block_seconds: Option<f64>,
    /// Skip the multi-channel eye-artifact stage, which otherwise runs whenever the file has
    /// EOG channels or frontal channels (a Wiener filter that learns the blink pattern from
    /// the recording and acts only once it has found one).
    #[arg(long, conflicts_with = "eog")]
    pub no_spatial: bool,
    /// EOG channels for the multi-channel eye-artifact stage, comma-separated labels
    /// (default: channels labelled EOG/VEOG/HEOG, else the frontal Fp/AF and F7-F8 channels).
    #[arg(long, value_delimiter = ',', value_name = "LABEL[,LABEL]")]
    pub eog: Option<Vec<String>>,
    /// Remove eye artifacts across channels and nothing else: the eye stage alone, without
    /// prefilters or the per-channel model (it changes blink-free EEG least; the file needs
    /// EOG or frontal channels).
    #[arg(long, conflicts_with_all = ["no_spatial", "notch", "bandpass", "hop", "ola", "gate", "keep_slow"])]
    pub eye_only: bool,
}

/// The gate `--gate`, `--gate-slow` and `--keep-slow` ask for.
fn gate_choice(a: &DenoiseArgs) -> Result<GateChoice, String> {
    GateChoice::from_args(a.gate.as_deref(), a.gate_slow.as_deref(), a.keep_slow)
}

/// `--above-model-band`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AboveBand {
    /// Pass content above the model's Nyquist frequency through unchanged.
    Keep,
    /// Remove it.
    Drop,
}

/// Loads `--model`, or the embedded default model when none is given.
pub fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    match path {
        Some(p) => Model::load(p).with_context(|| format!("cannot load model {}", p.display())),
        None => Model::from_bytes(mfr_eeg::embed::DEFAULT_MODEL_BYTES.to_vec())
            .with_context(|| format!("the embedded default model {DEFAULT_MODEL} is invalid")),
    }
}

/// Sets a flag on SIGINT or SIGTERM so the run stops cleanly (no output, no temporary file);
/// a second signal ends the process at once.
fn cancel_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))
            .context("cannot install the signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("cannot install the signal handler")?;
    }
    Ok(flag)
}

fn options(a: &DenoiseArgs) -> anyhow::Result<DenoiseOptions> {
    let gate = gate_choice(a).map_err(UsageError)?;
    Ok(DenoiseOptions {
        channels: a.channels.clone(),
        notch_hz: a.notch,
        notch_harmonics: a.notch_harmonics,
        bandpass_hz: a.bandpass,
        bandpass_order: usize::from(a.order),
        threads: a.threads,
        wav: a.wav.clone(),
        hop: a.hop,
        ola: a.ola.map(Into::into),
        gate,
        keep_slow: a.keep_slow,
        high_band: match a.above_model_band {
            AboveBand::Keep => HighBand::Keep,
            AboveBand::Drop => HighBand::Drop,
        },
        allow_clipping: a.allow_clipping,
        block_seconds: a.block_seconds,
        spatial: !a.no_spatial,
        eog: a.eog.clone(),
        eye_only: a.eye_only,
    })
}

/// Runs `mfr-eeg denoise`.
pub fn run(a: DenoiseArgs) -> anyhow::Result<()> {
    if let Some(b) = a.block_seconds
        && (b.is_nan() || b <= 0.0)
    {
        return Err(UsageError(format!("--block-seconds {b}: must be positive")).into());
    }
    if a.out_dir.is_none() && a.paths.len() != 2 {
        return Err(UsageError(format!(
            "expected IN OUT (got {} paths); to denoise several files use --out-dir DIR",
            a.paths.len()
        ))
        .into());
    }
    let model = load_model(a.model.as_deref())?;
    let cancel = cancel_on_signals()?;
    match &a.out_dir {
        Some(dir) => run_many(&a, dir, &model, &cancel),
        None => run_one(&a, &model, &cancel),
    }
}

fn run_one(a: &DenoiseArgs, model: &Model, cancel: &AtomicBool) -> anyhow::Result<()> {
    let (input, output) = (&a.paths[0], &a.paths[1]);
    let opts = options(a)?;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:>10} [{bar:40}] {pos}/{len} records {elapsed}",
        )
        .expect("static template is valid")
        .progress_chars("=> "),
    );
    // Ticks while a long block is in work, so the bar never looks stuck.
    bar.enable_steady_tick(std::time::Duration::from_millis(150));
    let progress = |p: Progress| match p {
        Progress::Started { records, .. } => {
            bar.set_length(records);
            bar.set_message("denoising");
        }
        Progress::Records { done, .. } => bar.set_position(done),
        Progress::WritingWav => bar.set_message("wav"),
        _ => {}
    };
    let result = denoise_file_cancellable(input, output, model, &opts, &progress, cancel);
    bar.finish_and_clear();
    let summary = result?;
    write_stdout(&summary_text(&summary, model, a))
}

fn run_many(
    a: &DenoiseArgs,
    out_dir: &Path,
    model: &Model,
    cancel: &AtomicBool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create output directory {}", out_dir.display()))?;
    let jobs = plan_jobs(&a.paths, out_dir, &a.glob)?;
    let opts = options(a)?;
    let print = Mutex::new(());
    let outcomes = denoise_many(&jobs, model, &opts, a.overwrite, cancel, &|job, outcome| {
        let line = match outcome {
            Outcome::Done(s) => format!(
                "ok    {} -> {} ({} channels, {:.1} s, {:.0}x real time, {} clipped)\n",
                job.input.display(),
                job.output.display(),
                s.channels.len(),
                s.recording_seconds,
                s.x_real_time(),
                s.clipped
            ),
            Outcome::Skipped => format!(
                "skip  {} ({} exists; --overwrite replaces it)\n",
                job.input.display(),
                job.output.display()
            ),
            Outcome::Failed(e) => format!("FAIL  {}: {e}\n", job.input.display()),
        };
        let _guard = print.lock().unwrap_or_else(|p| p.into_inner());
        // A closed stdout must not stop the other files.
        let _ = write_stdout(&line);
    });
    let (mut ok, mut skipped, mut failed, mut seconds) = (0, 0, 0, 0.0);
    for o in &outcomes {
        match o {
            Outcome::Done(s) => {
                ok += 1;
                seconds += s.recording_seconds;
            }
            Outcome::Skipped => skipped += 1,
            Outcome::Failed(_) => failed += 1,
        }
    }
    write_stdout(&format!(
        "{} files: {ok} denoised ({seconds:.1} s of recording), {skipped} skipped, {failed} failed\n",
        outcomes.len()
    ))?;
    if cancel.load(Ordering::Relaxed) {
        anyhow::bail!(Interrupted);
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files failed (listed above)", outcomes.len());
    }
    Ok(())
}

/// `, correction gate ...` for the summary line, or nothing without a gate.
fn gate_text(b: Option<Blend>) -> String {
    b.map_or_else(String::new, |b| {
        let fast = if b.is_always() {
            "every fast correction whole".to_string()
        } else {
            format!("correction gate {}..{} on the fast part", b.lo, b.hi)
        };
        match b.slow {
            None => format!(", correction gate {}..{}", b.lo, b.hi),
            Some(s) if s.is_never() => format!(
                ", {fast}; the slow part ({}-sample mean) kept",
                2 * s.half + 1
            ),
            Some(s) => format!(
                ", {fast}, {}..{} on the slow part ({}-sample mean)",
                s.lo,
                s.hi,
                2 * s.half + 1
            ),
        }
    })
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
    if a.eye_only {
        outln!(
            out,
            "  channels    {} through the eye stage only (no model)",
            s.channels.len()
        );
    } else {
        outln!(
            out,
            "  model       {name} (window {} samples, hop {}{}, {}k {} of {}, {} Hz, {}{})",
            m.d_in,
            a.hop.unwrap_or(m.hop),
            match a.ola.map_or(m.ola, Into::into) {
                OlaShape::Hann => "",
                OlaShape::Sine => " with the sine taper",
            },
            model
                .view()
                .meta()
                .front
                .map_or_else(String::new, |f| format!("conv front end {f}, ")),
            m.k,
            m.d_sae,
            m.sample_rate_hz,
            m.normalisation.as_str(),
            gate_text(options(a).ok().and_then(|o| effective_gate(
                &o,
                m.blend,
                f64::from(m.sample_rate_hz)
            ))),
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
        outln!(
            out,
            "  baseline    kept: running median over {} s set aside before the model, added back",
            mfr_eeg::denoise::baseline::WINDOW_SECONDS
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
    }
    if let Some(line) = &s.spatial {
        outln!(out, "  eye         {line}");
    }
    if let Some(b) = s.eye_stage_gate {
        outln!(
            out,
            "  after eye   the channels the eye stage cleans: {} (`--gate model` for the \
             model's own)",
            gate_text(Some(b)).trim_start_matches(", ")
        );
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
