//! The offline denoising pipeline used by `mfr-eeg denoise`.
//!
//! [`denoise_file`] streams an EDF/EDF+/BDF file: it reads data records (with more than one
//! thread, up to one block ahead while the others compute), processes each selected channel
//! in blocks (channels in parallel), and writes records as they complete, so memory depends on
//! the block length, never on the recording's length. Per channel and block:
//!
//! 1. optional zero-phase notch and band-pass ([`crate::io::filter`]);
//! 2. the slow baseline (a running median, [`baseline`]) is set aside, so offsets of DC-coupled
//!    amplifiers pass through untouched;
//! 3. conversion to microvolts and, when the channel's rate differs from the model's,
//!    polyphase resampling to the model's rate ([`crate::io::resample`]);
//! 4. the model, by the batched offline path ([`crate::batch::denoise_batched_into`]: many
//!    windows per encoder matrix product; the core's windows, TopK rule and overlap-add, within
//!    1e-5 of the core's [`crate::core::denoise_offline_into`] relative to the signal's RMS, and
//!    the same bits whatever the batch, so blocks still equal the whole signal);
//! 5. back to the channel's rate: by default the model's correction (output minus input) is
//!    resampled back and added to the channel, so content above the model's Nyquist frequency
//!    passes through unchanged ([`HighBand::Keep`]); [`HighBand::Drop`] returns only the model's
//!    band;
//! 6. the baseline is added back and the record is encoded (rounded, clipped and counted) by
//!    [`crate::io::edf::rewrite_checked`]: a byte-for-byte copy of the input with only the
//!    denoised channels re-encoded, through a temporary file renamed into place.
//!
//! **Blocks equal the whole signal.** Every stage but the prefilter has finite support, so each
//! block is computed from a segment with margins wide enough (and its start aligned to the
//! resampler's and the overlap-add's grids) that its samples equal, bit for bit, those of the
//! whole-signal computation ([`DenoiseOptions::block_seconds`] = infinity). The zero-phase IIR
//! prefilters have infinite (decaying) impulse responses: their margin is where the response
//! has fallen below 1e-9, so with `--notch`/`--bandpass` blocks agree with the whole signal to
//! f32 rounding instead of bit for bit.
//!
//! Output that would clip on more than [`MAX_CLIP_FRACTION`] of a channel's samples is an
//! error (no output is written) unless [`DenoiseOptions::allow_clipping`] is set. A set
//! cancellation flag stops the run between channels and blocks, leaving no output and no
//! temporary file.
//!
//! Key types: [`DenoiseOptions`] in, [`DenoiseSummary`] out, [`DenoiseError`] on failure.

pub mod baseline;
pub mod many;

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::batch::{BatchScratch, denoise_batched_into};
use crate::core::{Blend, CoreError, FaultCounts, OlaShape, Sae, SlowGate};
use crate::io::edf::{
    EdfError, EdfReader, Header, Record, RewriteError, check_output_is_not_input, rewrite_checked,
    select_channels,
};
use crate::io::filter::{Band, DEFAULT_NOTCH_Q, Filter, FilterError};
use crate::io::resample::{ResampleError, Resampler};
use crate::io::wav::{WavError, export_wav};
use crate::model::Model;

use baseline::Baseline;

/// Default Butterworth order for `--bandpass` (4 per pass, 8 after forward-backward).
pub const DEFAULT_BANDPASS_ORDER: usize = 4;

/// Largest fraction of a channel's samples that may be clipped to its physical range before
/// the run fails (unless [`DenoiseOptions::allow_clipping`]).
pub const MAX_CLIP_FRACTION: f64 = 0.001;

/// Longest block, in seconds of recording, processed at once.
pub const MAX_BLOCK_SECONDS: f64 = 300.0;

/// Samples (over all selected channels) a block may hold; longer blocks are shortened so that
/// memory stays bounded for many fast channels (256 channels at 1 kHz: 32 s blocks).
pub const BLOCK_SAMPLE_BUDGET: f64 = 8.0 * 1024.0 * 1024.0;

/// What happens to content above the model's Nyquist frequency in channels sampled faster
/// than the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HighBand {
    /// Pass it through unchanged: only the model's correction (within its band) is applied.
    #[default]
    Keep,
    /// Remove it: the channel is the model's output resampled back.
    Drop,
}

/// What to do besides denoising.
#[derive(Debug, Clone, PartialEq)]
pub struct DenoiseOptions {
    /// Channel labels to denoise (matched by [`select_channels`]); `None`: every EEG channel.
    pub channels: Option<Vec<String>>,
    /// Power-line frequency to notch out before denoising (50 or 60 Hz).
    pub notch_hz: Option<f64>,
    /// Also notch the line frequency's harmonics below Nyquist.
    pub notch_harmonics: bool,
    /// Band-pass corners `(low, high)` in Hz applied before denoising.
    pub bandpass_hz: Option<(f64, f64)>,
    /// Butterworth order of the band-pass (per pass).
    pub bandpass_order: usize,
    /// Worker threads (0: one per available core).
    pub threads: usize,
    /// Also export the denoised channels to this WAV file (32-bit float).
    pub wav: Option<PathBuf>,
    /// Overlap-add hop in model samples instead of the model's own (1..=window). Larger is
    /// faster (cost per sample is proportional to 1 / hop) at some loss of quality.
    pub hop: Option<usize>,
    /// Content above the model's Nyquist frequency (channels faster than the model).
    pub high_band: HighBand,
    /// Taper of the overlap-add window instead of the model's own ([`OlaShape`]).
    pub ola: Option<OlaShape>,
    /// The correction gate ([`Blend`]): by default the model's own, with
    /// [`after_eye_gate`]'s slow ramp on the channels the eye stage cleans.
    pub gate: GateChoice,
    /// Leave out the slow part of every correction ([`SlowGate::never`] over
    /// [`keep_slow_half`] samples): the model then removes fast artifacts (muscle, line
    /// noise, the edges of pops) and leaves what lies below about 3.5 Hz as it was. For files
    /// whose eye artifacts the eye stage removes.
    pub keep_slow: bool,
    /// Write the output even when more than [`MAX_CLIP_FRACTION`] of a channel would clip.
    pub allow_clipping: bool,
    /// Block length in seconds of recording (`None`: automatic, at most
    /// [`MAX_BLOCK_SECONDS`] and [`BLOCK_SAMPLE_BUDGET`]; infinity: the whole recording at
    /// once). The output does not depend on it (see the module docs).
    pub block_seconds: Option<f64>,
    /// Run the multi-channel eye-artifact stage ([`crate::ocular::SpatialStage`]) before the
    /// model when the file has EOG or frontal channels. Off in `Default` (the in-memory array
    /// paths have no montage); the CLI turns it on unless `--no-spatial`.
    pub spatial: bool,
    /// EOG channel labels for the spatial stage (`None`: found by label, else frontal).
    pub eog: Option<Vec<String>>,
    /// Run the eye stage only: no prefilters, no per-channel model (`--eye-only`); the file
    /// must have EOG or frontal channels.
    pub eye_only: bool,
}

impl Default for DenoiseOptions {
    fn default() -> Self {
        Self {
            channels: None,
            notch_hz: None,
            notch_harmonics: false,
            bandpass_hz: None,
            bandpass_order: DEFAULT_BANDPASS_ORDER,
            threads: 0,
            wav: None,
            hop: None,
            high_band: HighBand::Keep,
            ola: None,
            gate: GateChoice::Auto,
            keep_slow: false,
            allow_clipping: false,
            block_seconds: None,
            spatial: false,
            eog: None,
            eye_only: false,
        }
    }
}

/// Half-width of the moving average whose part of each correction
/// [`DenoiseOptions::keep_slow`] leaves out, for a model at `rate_hz`: 1/16 s (16 samples at
/// 256 Hz; the average's first null at 7.8 Hz, its half-power point near 3.5 Hz). Measured on
/// `eog-check`'s recordings against 8 to 64 samples: shorter leaves blink-free EEG less
/// changed and longer removes more of the blink, and 16 keeps the change under ICA's.
pub fn keep_slow_half(rate_hz: f64) -> u16 {
    SlowGate::half_for_rate(rate_hz as f32)
}

pub use crate::core::AFTER_EYE_SLOW;

/// The gate the per-channel model runs with under `opts`, for a model with gate `model` at
/// `rate_hz`, on channels the eye stage does not clean: [`DenoiseOptions::gate`]'s choice,
/// with the slow part left out under [`DenoiseOptions::keep_slow`] (then, without a gate,
/// every fast correction whole).
pub fn effective_gate(opts: &DenoiseOptions, model: Option<Blend>, rate_hz: f64) -> Option<Blend> {
    let b = match opts.gate {
        GateChoice::Auto | GateChoice::Model => model,
        GateChoice::AfterEye => Some(after_eye_gate(model, rate_hz)),
        GateChoice::Off => None,
        GateChoice::Set(b) => Some(b),
    };
    if !opts.keep_slow {
        return b;
    }
    let fast = b.unwrap_or(Blend::ALWAYS);
    Some(Blend {
        slow: Some(SlowGate::never(keep_slow_half(rate_hz))),
        ..fast
    })
}

/// [`effective_gate`] for the channels the eye stage cleans: the same, except that the
/// default ([`GateChoice::Auto`]) becomes [`after_eye_gate`].
pub fn eye_stage_gate(opts: &DenoiseOptions, model: Option<Blend>, rate_hz: f64) -> Option<Blend> {
    if opts.gate == GateChoice::Auto && !opts.keep_slow {
        Some(after_eye_gate(model, rate_hz))
    } else {
        effective_gate(opts, model, rate_hz)
    }
}

/// [`Blend::after_eye`] for a model at `rate_hz`: the model's gate `model` (or none: every
/// correction whole) for the fast part, the slow part ([`keep_slow_half`] samples) on the
/// [`AFTER_EYE_SLOW`] ramp.
pub fn after_eye_gate(model: Option<Blend>, rate_hz: f64) -> Blend {
    Blend::after_eye(model, rate_hz as f32)
}

/// Which correction gate ([`Blend`]) the per-channel model applies.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum GateChoice {
    /// The model's own (none if it has none), and [`after_eye_gate`] on the channels the eye
    /// stage cleans.
    #[default]
    Auto,
    /// The model's own on every channel, the eye stage's too (`--gate model`).
    Model,
    /// [`after_eye_gate`] on every channel (`--gate after-eye`): for streams that run the
    /// eye stage themselves (`mfr_eye` in C, `EyeStream` in Python) before the model.
    AfterEye,
    /// None: every window's correction applied whole.
    Off,
    /// This one: a harder gate (larger bounds) leaves more EEG unchanged and removes less of
    /// small artifacts.
    Set(Blend),
}

impl GateChoice {
    /// The CLI's `--gate LO,HI|off|model|after-eye` and `--gate-slow LO,HI,HALF` (a slow
    /// ramp beside a `--gate` ramp; none with `keep_slow`, which leaves the slow part out).
    /// The error names the option.
    pub fn from_args(
        gate: Option<&str>,
        gate_slow: Option<&str>,
        keep_slow: bool,
    ) -> Result<Self, String> {
        let slow = gate_slow
            .map(|s| {
                SlowGate::parse(s).ok_or_else(|| {
                    format!(
                        "--gate-slow {s}: expected LO,HI,HALF with 0 <= LO < HI and 1 <= HALF \
                         <= {} (e.g. 0.125,0.625,32)",
                        SlowGate::MAX_HALF
                    )
                })
            })
            .transpose()?;
        if keep_slow && slow.is_some() {
            return Err("--keep-slow leaves the slow part out; --gate-slow gates it".into());
        }
        match (gate, slow) {
            (None, None) => Ok(Self::Auto),
            (None, Some(_)) => Err("--gate-slow needs --gate LO,HI".into()),
            (Some(g @ ("off" | "model" | "after-eye")), Some(_)) => {
                Err(format!("--gate-slow needs --gate LO,HI, not {g}"))
            }
            (Some("off"), None) => Ok(Self::Off),
            (Some("model"), None) => Ok(Self::Model),
            (Some("after-eye"), None) => Ok(Self::AfterEye),
            (Some(g), slow) => Blend::parse(g)
                .map(|b| Self::Set(Blend { slow, ..b }))
                .ok_or_else(|| {
                    format!(
                        "--gate {g}: expected LO,HI with 0 <= LO < HI (e.g. 0.125,0.625), off, \
                         model or after-eye"
                    )
                }),
        }
    }
}

/// Pipeline stages reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// The input is open: `records` data records, `channels` channels to denoise.
    Started {
        /// Data records in the file.
        records: u64,
        /// Channels to denoise.
        channels: usize,
    },
    /// Records written so far.
    Records {
        /// Records finished.
        done: u64,
        /// Records in total.
        total: u64,
    },
    /// Writing the WAV export.
    WritingWav,
}

/// Failures of the pipeline; every message names the file and, where it applies, the channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DenoiseError {
    /// Reading, validating or writing EDF failed.
    #[error(transparent)]
    Edf(#[from] EdfError),
    /// The WAV export failed.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// A problem with one channel's data or its processing.
    #[error("{}: channel {channel:?}: {problem}", .file.display())]
    Channel {
        /// The input file.
        file: PathBuf,
        /// The channel label.
        channel: String,
        /// What went wrong.
        problem: String,
    },
    /// Too many samples of a channel would fall outside its physical range.
    #[error(
        "{}: channel {channel:?}: {clipped} of {samples} denoised samples ({:.3} %) fall outside \
         the physical range [{physical_min}, {physical_max}] {unit} and would be clipped; no output \
         was written (--allow-clipping writes it anyway)",
        .file.display(), 100.0 * *.clipped as f64 / (*.samples).max(1) as f64
    )]
    Clipping {
        /// The input file.
        file: PathBuf,
        /// The channel label.
        channel: String,
        /// Samples that would be clipped.
        clipped: u64,
        /// Samples of the channel.
        samples: u64,
        /// The channel's physical minimum.
        physical_min: f64,
        /// The channel's physical maximum.
        physical_max: f64,
        /// The channel's physical dimension.
        unit: String,
    },
    /// The run was cancelled (SIGINT/SIGTERM in the CLI); nothing was written.
    #[error("{}: interrupted; no output was written", .file.display())]
    Interrupted {
        /// The input file.
        file: PathBuf,
    },
    /// Options that cannot be applied (e.g. a band-pass with low >= high).
    #[error("invalid option: {0}")]
    Options(String),
    /// The multi-channel eye-artifact stage failed (e.g. an unknown `--eog` label).
    #[error("{}: {error}", .file.display())]
    Ocular {
        /// The input file.
        file: PathBuf,
        /// What went wrong.
        error: Box<crate::ocular::OcularError>,
    },
    /// The model cannot run with this configuration.
    #[error("model {}: {problem}", .path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// What happened to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelReport {
    /// 0-based signal index in the file.
    pub index: usize,
    /// Trimmed label.
    pub label: String,
    /// The channel's sampling rate in Hz.
    pub sample_rate_hz: f64,
    /// Samples written.
    pub samples: u64,
    /// `Some(model rate)` when the channel was resampled to the model's rate and back.
    pub resampled_to_hz: Option<f64>,
    /// Samples clipped to the channel's physical range when encoding.
    pub clipped: u64,
    /// Non-finite inputs or model outputs the core repaired (see [`FaultCounts`]); windows in
    /// the overlap between blocks may be counted twice.
    pub faults: FaultCounts,
}

/// The outcome of [`denoise_file`].
#[derive(Debug, Clone, PartialEq)]
pub struct DenoiseSummary {
    /// The input file.
    pub input: PathBuf,
    /// The output file.
    pub output: PathBuf,
    /// Per denoised channel, in processing order.
    pub channels: Vec<ChannelReport>,
    /// Samples denoised over all channels.
    pub samples: u64,
    /// Samples clipped over all channels.
    pub clipped: u64,
    /// Duration of the recording in seconds (records x record duration).
    pub recording_seconds: f64,
    /// Wall-clock seconds the whole pipeline took (reading to rename).
    pub elapsed_seconds: f64,
    /// The model's sampling rate.
    pub model_rate_hz: f64,
    /// Block length used, in seconds of recording.
    pub block_seconds: f64,
    /// Things the user should know (filters skipped or reduced, units assumed, the band
    /// above the model).
    pub notes: Vec<String>,
    /// What the multi-channel eye-artifact stage found and did, when it ran.
    pub spatial: Option<String>,
    /// The correction gate on the channels the eye stage cleaned, when it differs from the
    /// other channels' ([`eye_stage_gate`]).
    pub eye_stage_gate: Option<Blend>,
}

impl DenoiseSummary {
    /// Recording seconds processed per wall-clock second ("x real time").
    pub fn x_real_time(&self) -> f64 {
        if self.elapsed_seconds > 0.0 {
            self.recording_seconds / self.elapsed_seconds
        } else {
            f64::INFINITY
        }
    }

    /// Faults repaired over all channels.
    pub fn faults(&self) -> FaultCounts {
        let mut f = FaultCounts::default();
        for c in &self.channels {
            f.input_samples += c.faults.input_samples;
            f.windows += c.faults.windows;
        }
        f
    }
}

/// Prefilters for one sampling rate, with notes on what could not be applied as asked.
#[derive(Debug, Clone, Default)]
pub struct Prefilter {
    /// The cascade (empty: nothing to do).
    pub filter: Filter,
    /// Adjustments made for this rate.
    pub notes: Vec<String>,
}

impl Prefilter {
    /// Designs the notch and band-pass of `opts` for `fs_hz`. A notch at or above Nyquist is
    /// skipped (the line frequency is not representable there); a band-pass whose high corner
    /// is at or above Nyquist becomes a high-pass at the low corner.
    pub fn design(opts: &DenoiseOptions, fs_hz: f64) -> Result<Prefilter, FilterError> {
        let mut p = Prefilter::default();
        let nyq = fs_hz / 2.0;
        if let Some(line) = opts.notch_hz {
            if line < nyq {
                let f = Filter::line_noise(line, opts.notch_harmonics, DEFAULT_NOTCH_Q, fs_hz)?;
                p.filter = std::mem::take(&mut p.filter).then(f);
            } else {
                p.notes.push(format!(
                    "{line} Hz notch skipped for {fs_hz} Hz channels (at or above Nyquist {nyq} Hz)"
                ));
            }
        }
        if let Some((lo, hi)) = opts.bandpass_hz {
            let band = if hi >= nyq {
                p.notes.push(format!(
                    "band-pass {lo}-{hi} Hz applied as a {lo} Hz high-pass to {fs_hz} Hz \
                     channels ({hi} Hz is at or above Nyquist {nyq} Hz)"
                ));
                Band::HighPass(lo)
            } else {
                Band::BandPass { lo, hi }
            };
            let f = Filter::butterworth(band, opts.bandpass_order, fs_hz)?;
            p.filter = std::mem::take(&mut p.filter).then(f);
        }
        Ok(p)
    }
}

/// Factor that converts a physical dimension to microvolts (the unit the shipped models were
/// trained in), or `None` when the dimension is not a voltage.
pub fn microvolt_factor(dimension: &str) -> Option<f64> {
    match dimension.trim().to_lowercase().as_str() {
        "uv" | "µv" | "μv" => Some(1.0),
        "mv" => Some(1e3),
        "v" => Some(1e6),
        "nv" => Some(1e-3),
        _ => None,
    }
}

/// Reusable per-thread buffers for [`Denoiser::process_block`].
#[derive(Debug, Default)]
pub struct Scratch {
    seg: Vec<f32>,
    base: Vec<f32>,
    tmp: Vec<u32>,
    uv: Vec<f32>,
    model_in: Vec<f32>,
    model_out: Vec<f32>,
    back: Vec<f32>,
    batch: BatchScratch,
}

/// The model side of the pipeline: the SAE, its hop and its sampling rate.
#[derive(Debug, Clone, Copy)]
pub struct Denoiser<'m> {
    /// The validated SAE; its [`Sae::ola_shape`] is the overlap-add taper used.
    pub sae: Sae<'m>,
    /// Streaming hop in samples.
    pub hop: usize,
    /// The rate the model expects, in Hz.
    pub rate_hz: f64,
    /// Content above the model's Nyquist frequency.
    pub high_band: HighBand,
}

/// Everything that depends only on a channel's rate, built once per distinct rate: the
/// prefilter, the baseline rule, the two resamplers when the rate differs from the model's
/// (filters with large rational factors take milliseconds to build), and the margins and
/// alignment that make blocks equal the whole signal.
#[derive(Debug, Clone)]
pub struct RatePlan {
    /// The channel rate in Hz.
    pub fs_hz: f64,
    /// Zero-phase prefilter (empty: none).
    pub prefilter: Filter,
    /// Channel rate -> model rate and back, when they differ.
    pub resample: Option<(Resampler, Resampler)>,
    /// The baseline set aside before the model.
    pub baseline: Baseline,
    /// Samples on each side a block's prefilter needs (0 without prefilter).
    pub prefilter_margin: usize,
    /// Samples on each side the resample-model-resample chain needs.
    pub chain_margin: usize,
    /// Chain segments start at multiples of this (channel samples), so that the resampler's
    /// phases and the model's overlap-add windows fall where the whole signal's do.
    pub align: usize,
}

impl RatePlan {
    /// The channel samples the chain runs on to produce `core` (of a channel of `n`).
    pub fn chain_range(&self, core: &Range<usize>, n: usize) -> Range<usize> {
        let s = core.start.saturating_sub(self.chain_margin);
        (s - s % self.align)..(core.end + self.chain_margin).min(n)
    }

    /// The raw channel samples a block needs to produce `core` (of a channel of `n`).
    pub fn raw_range(&self, core: &Range<usize>, n: usize) -> Range<usize> {
        let c = self.chain_range(core, n);
        let m = self.baseline.margin() + self.prefilter_margin;
        c.start.saturating_sub(m)..(c.end + m).min(n)
    }
}

/// Samples after which an impulse into `f` has decayed below 1e-9 (0 for no filter), for
/// one pass; forward-backward needs it on each side.
fn iir_margin(f: &Filter) -> usize {
    if f.is_empty() {
        return 0;
    }
    let r = f
        .sections()
        .iter()
        .map(|s| s.max_pole_radius())
        .fold(0.0_f64, f64::max);
    if r <= 0.0 {
        return f.sections().len() * 2;
    }
    // Repeated poles (cascaded sections) decay as n^k r^n: a few extra time constants.
    let n = (1e-9_f64).ln() / r.ln();
    (n * 1.25).ceil().min(1e9) as usize + 8 * f.sections().len()
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl<'m> Denoiser<'m> {
    /// The plan for channels at `fs_hz` with the given prefilter.
    pub fn plan(&self, fs_hz: f64, prefilter: Filter) -> Result<RatePlan, ResampleError> {
        let same_rate = (fs_hz - self.rate_hz).abs() <= 1e-9 * self.rate_hz;
        let d_in = self.sae.d_in();
        let (resample, chain_margin, align) = if same_rate {
            (None, d_in, self.hop)
        } else {
            let there = Resampler::from_rates(fs_hz, self.rate_hz)?;
            let back = Resampler::from_rates(self.rate_hz, fs_hz)?;
            let (up, down) = (there.up() as usize, there.down() as usize);
            // Model samples the model and the way back reach, in channel samples, plus the
            // way there.
            let model_side = d_in + back.input_support() + 1;
            let margin = there.input_support() + (model_side * down).div_ceil(up) + 2;
            let align = down * (self.hop / gcd(up, self.hop));
            (Some((there, back)), margin, align)
        };
        Ok(RatePlan {
            fs_hz,
            prefilter_margin: iir_margin(&prefilter),
            prefilter,
            resample,
            baseline: Baseline::at_rate(fs_hz),
            chain_margin,
            align,
        })
    }

    /// Denoises one whole channel in place (physical units; `to_uv` converts them to
    /// microvolts): the whole-signal form of [`Denoiser::process_block`]. Returns the core's
    /// fault counts and the rate the channel was resampled to, if it was.
    pub fn denoise_in_place(
        &self,
        x: &mut [f32],
        plan: &RatePlan,
        to_uv: f64,
        scratch: &mut Scratch,
    ) -> Result<(FaultCounts, Option<f64>), SignalError> {
        let n = x.len();
        let mut out = vec![0.0; n];
        let f = self.process_block(plan, x, 0, n, 0..n, to_uv, &mut out, scratch)?;
        x.copy_from_slice(&out);
        Ok((f, plan.resample.as_ref().map(|_| self.rate_hz)))
    }

    /// Denoises the samples `core` of a channel of `n` samples into `out` (`core.len()`
    /// samples). `raw` holds the channel's physical samples from global index `raw_start` on
    /// and must cover [`RatePlan::raw_range`]. The result equals the whole-signal computation
    /// (see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub fn process_block(
        &self,
        plan: &RatePlan,
        raw: &[f32],
        raw_start: usize,
        n: usize,
        core: Range<usize>,
        to_uv: f64,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<FaultCounts, SignalError> {
        let chain = plan.chain_range(&core, n);
        let need = plan.raw_range(&core, n);
        if need.start < raw_start || need.end > raw_start + raw.len() || out.len() != core.len() {
            return Err(SignalError::Block {
                need,
                have: raw_start..raw_start + raw.len(),
            });
        }
        let sae = &self.sae;
        let seg = &mut scratch.seg;
        seg.clear();
        seg.extend_from_slice(&raw[need.start - raw_start..need.end - raw_start]);
        plan.prefilter.filtfilt(seg);

        let len = chain.len();
        scratch.base.resize(len, 0.0);
        plan.baseline.fill(
            seg,
            need.start,
            chain.start - need.start,
            &mut scratch.base,
            &mut scratch.tmp,
        );
        let off = chain.start - need.start;
        scratch.uv.clear();
        scratch.uv.extend(
            seg[off..off + len]
                .iter()
                .zip(&scratch.base)
                .map(|(&x, &b)| ((f64::from(x) - f64::from(b)) * to_uv) as f32),
        );
        let faults = match &plan.resample {
            None => {
                scratch.model_out.resize(len, 0.0);
                let f = denoise_batched_into(
                    sae,
                    self.hop,
                    &scratch.uv,
                    &mut scratch.model_out,
                    &mut scratch.batch,
                )?;
                std::mem::swap(&mut scratch.uv, &mut scratch.model_out);
                f
            }
            Some((there, back)) => {
                scratch.model_in.resize(there.output_len(len), 0.0);
                there.process_into(&scratch.uv, &mut scratch.model_in);
                scratch.model_out.resize(scratch.model_in.len(), 0.0);
                let f = denoise_batched_into(
                    sae,
                    self.hop,
                    &scratch.model_in,
                    &mut scratch.model_out,
                    &mut scratch.batch,
                )?;
                scratch.back.resize(len, 0.0);
                match self.high_band {
                    HighBand::Keep => {
                        // The model's correction, band-limited to its rate, on top of the
                        // channel: what lies above the model's band is left as it was.
                        for (y, &x) in scratch.model_out.iter_mut().zip(&scratch.model_in) {
                            *y -= x;
                        }
                        back.process_into(&scratch.model_out, &mut scratch.back);
                        for (u, &c) in scratch.uv.iter_mut().zip(&scratch.back) {
                            *u += c;
                        }
                    }
                    HighBand::Drop => {
                        back.process_into(&scratch.model_out, &mut scratch.back);
                        std::mem::swap(&mut scratch.uv, &mut scratch.back);
                    }
                }
                f
            }
        };
        let from = core.start - chain.start;
        for ((o, &y), &b) in out
            .iter_mut()
            .zip(&scratch.uv[from..from + core.len()])
            .zip(&scratch.base[from..])
        {
            *o = (f64::from(b) + f64::from(y) / to_uv) as f32;
        }
        Ok(faults)
    }
}

/// Why [`Denoiser::process_block`] failed (wrapped with file and channel by [`denoise_file`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The core refused the model or buffers.
    #[error("inference core: {0}")]
    Core(CoreError),
    /// No rational resampling ratio.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The samples given do not cover what the block needs (a bug in the caller).
    #[error("block needs samples {need:?} but has {have:?}")]
    Block {
        /// Samples needed.
        need: Range<usize>,
        /// Samples given.
        have: Range<usize>,
    },
}

impl From<CoreError> for SignalError {
    fn from(e: CoreError) -> Self {
        SignalError::Core(e)
    }
}

/// Checks that an output path can be written before any work is done: not the input, not a
/// directory, in an existing directory. (The writer checks again when it creates the file.)
pub fn check_output_path(input: &Path, output: &Path) -> Result<(), EdfError> {
    check_output_is_not_input(input, output)?;
    if output.is_dir() {
        return Err(EdfError::IsDirectory {
            path: output.to_path_buf(),
        });
    }
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(EdfError::OutputDirMissing {
            output: output.to_path_buf(),
            dir,
        });
    }
    Ok(())
}

/// One selected channel on its way through the file.
struct Lane {
    /// Signal index in the file.
    ch: usize,
    label: String,
    plan: usize,
    to_uv: f64,
    spr: usize,
    /// Samples in the whole recording.
    n: usize,
    block: usize,
    /// Raw physical samples held, from global index `raw_start`.
    raw: Vec<f32>,
    raw_start: usize,
    /// Start of the next block to compute.
    next: usize,
    /// Denoised samples not yet written, from global index `out_start`.
    out: VecDeque<f32>,
    out_start: usize,
    faults: FaultCounts,
    /// Whether the model runs (false with `--eye-only`: the lane's samples pass through).
    model: bool,
    /// Whether the eye stage cleans the lane and its gate differs ([`eye_stage_gate`]).
    eye: bool,
}

impl Lane {
    fn read_end(&self) -> usize {
        self.raw_start + self.raw.len()
    }

    fn next_core(&self) -> Range<usize> {
        self.next..(self.next + self.block).min(self.n)
    }

    fn ready(&self, plans: &[RatePlan]) -> bool {
        self.next < self.n
            && self.read_end() >= plans[self.plan].raw_range(&self.next_core(), self.n).end
    }

    /// Computes the next block and drops the raw samples no later block needs.
    fn step(
        &mut self,
        d: &Denoiser<'_>,
        plans: &[RatePlan],
        scratch: &mut Scratch,
        buf: &mut Vec<f32>,
    ) -> Result<(), SignalError> {
        let plan = &plans[self.plan];
        let core = self.next_core();
        if !self.model {
            let from = core.start - self.raw_start;
            self.out.extend(&self.raw[from..from + core.len()]);
            self.next = core.end;
            let drop = (self.next - self.raw_start).min(self.raw.len());
            self.raw.drain(..drop);
            self.raw_start += drop;
            return Ok(());
        }
        buf.resize(core.len(), 0.0);
        let f = d.process_block(
            plan,
            &self.raw,
            self.raw_start,
            self.n,
            core.clone(),
            self.to_uv,
            buf,
            scratch,
        )?;
        self.faults.input_samples += f.input_samples;
        self.faults.windows += f.windows;
        self.out.extend(buf.iter().copied());
        self.next = core.end;
        let keep_from = plan.raw_range(&self.next_core(), self.n).start;
        let drop = keep_from.saturating_sub(self.raw_start).min(self.raw.len());
        self.raw.drain(..drop);
        self.raw_start += drop;
        Ok(())
    }
}

fn worker_threads(requested: usize, jobs: usize) -> usize {
    let t = if requested == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        requested
    };
    t.clamp(1, jobs.max(1))
}

/// Denoises `input` into `output` with `model` (see the module docs), calling `progress` as
/// records are written.
pub fn denoise_file(
    input: &Path,
    output: &Path,
    model: &Model,
    opts: &DenoiseOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<DenoiseSummary, DenoiseError> {
    denoise_file_cancellable(
        input,
        output,
        model,
        opts,
        progress,
        &AtomicBool::new(false),
    )
}

/// [`denoise_file`] that stops with [`DenoiseError::Interrupted`] (no output, no temporary
/// file) soon after `cancel` becomes true.
pub fn denoise_file_cancellable(
    input: &Path,
    output: &Path,
    model: &Model,
    opts: &DenoiseOptions,
    progress: &(dyn Fn(Progress) + Sync),
    cancel: &AtomicBool,
) -> Result<DenoiseSummary, DenoiseError> {
    let started = Instant::now();
    check_options(input, output, opts)?;
    let denoiser = make_denoiser(model, opts, false)?;
    let reader = EdfReader::open(input)?;
    let header: Header = reader.header().clone();
    let selected =
        select_channels(&header, opts.channels.as_deref()).map_err(|e| e.in_file(input))?;
    check_selection(input, &header, &selected, opts)?;
    let mut notes = Vec::new();
    let plans = make_plans(input, &header, &selected, &denoiser, opts, &mut notes)?;
    let records = reader.num_records();
    let sigs = header.signals();

    let block_seconds = block_seconds(opts, &header, &selected)?;
    let mut lanes = make_lanes(
        &header,
        &selected,
        &plans,
        records,
        block_seconds,
        &mut notes,
    );
    // Eye artifacts across channels (crate::ocular), applied to each record as it is read,
    // before each channel's own denoising.
    let (spatial, spatial_line) = match prepare_spatial(input, &header, &selected, opts)? {
        Some(crate::ocular::SpatialPlan::Run(stage, line)) => (Some(stage), Some(line)),
        Some(crate::ocular::SpatialPlan::Skip(note)) if opts.eye_only => {
            return Err(DenoiseError::Options(format!(
                "{}: --eye-only, but the eye stage cannot run: {note}",
                input.display()
            )));
        }
        Some(crate::ocular::SpatialPlan::Skip(note)) => {
            notes.push(note);
            (None, None)
        }
        None => (None, None),
    };
    // The channels the eye stage cleans get its gate (`eye_stage_gate`), when it differs.
    let eye_denoiser = match &spatial {
        Some(stage) => {
            let d = make_denoiser(model, opts, true)?;
            let differs = d.sae.blend() != denoiser.sae.blend();
            for (k, lane) in lanes.iter_mut().enumerate() {
                lane.eye = differs && stage.cleans(k);
            }
            differs.then_some(d)
        }
        None => None,
    };
    if opts.eye_only {
        lanes.iter_mut().for_each(|l| l.model = false);
        notes.push("--eye-only: the eye stage alone; no prefilter, no per-channel model".into());
    }
    progress(Progress::Started {
        records,
        channels: selected.len(),
    });

    let threads = worker_threads(opts.threads, selected.len());
    let mut scratches: Vec<(Scratch, Vec<f32>)> =
        (0..threads).map(|_| Default::default()).collect();
    let channel_error = |lane: &Lane, problem: String| DenoiseError::Channel {
        file: input.to_path_buf(),
        channel: lane.label.clone(),
        problem,
    };
    let mut source = RecordSource {
        input,
        rec: reader.new_record(),
        reader,
        spatial,
        lanes: lanes
            .iter()
            .map(|l| (l.ch, l.spr, l.label.clone()))
            .collect(),
        staged: VecDeque::new(),
        spare: Vec::new(),
        failed: None,
        // One block of records ahead: what the next block of every lane needs.
        ahead: ((block_seconds / header.record_duration()).ceil() as usize).saturating_add(1),
    };

    let lane_channels: Vec<usize> = lanes.iter().map(|l| l.ch).collect();
    let written = rewrite_checked(
        input,
        output,
        &lane_channels,
        |k, r, buf: &mut [f32]| -> Result<(), DenoiseError> {
            let want_end = (r as usize + 1) * lanes[k].spr;
            while lanes[k].out_start + lanes[k].out.len() < want_end {
                if cancel.load(Ordering::Relaxed) {
                    return Err(DenoiseError::Interrupted {
                        file: input.to_path_buf(),
                    });
                }
                let models = (&denoiser, eye_denoiser.as_ref());
                let moved = run_ready(
                    &mut lanes,
                    &mut scratches,
                    models,
                    &plans,
                    input,
                    cancel,
                    &mut source,
                )?;
                if moved == 0 && !source.next_into(&mut lanes)? {
                    return Err(channel_error(
                        &lanes[k],
                        format!("record {r} is past the samples read (internal error)"),
                    ));
                }
            }
            let lane = &mut lanes[k];
            debug_assert_eq!(lane.out_start, r as usize * lane.spr);
            for (b, v) in buf.iter_mut().zip(lane.out.drain(..lane.spr)) {
                *b = v;
            }
            lane.out_start += lane.spr;
            if k == 0 {
                progress(Progress::Records {
                    done: r + 1,
                    total: records,
                });
            }
            Ok(())
        },
        |summary| check_clipping(input, sigs, summary, opts.allow_clipping),
    );
    let written = match written {
        Ok(w) => w,
        Err(RewriteError::Edf(e)) => return Err(DenoiseError::Edf(e)),
        Err(RewriteError::Caller(e)) => return Err(e),
    };
    if let Some(wav) = &opts.wav {
        progress(Progress::WritingWav);
        export_wav(output, wav, &selected)?;
    }

    let reports = channel_reports(&lanes, &plans, &written, denoiser.rate_hz);
    let samples = reports.iter().map(|r| r.samples).sum();
    Ok(DenoiseSummary {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        samples,
        clipped: written.total_clipped(),
        channels: reports,
        recording_seconds: written.records as f64 * header.record_duration(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        model_rate_hz: denoiser.rate_hz,
        block_seconds,
        notes,
        eye_stage_gate: eye_denoiser.and_then(|d| d.sae.blend()),
        spatial: spatial_line.map(|l| match &source.spatial {
            Some(stage) => format!("{l}; {}", stage.summary()),
            None => l,
        }),
    })
}

/// The input's records in order, as each lane's physical samples after the eye stage: read
/// on demand ([`RecordSource::next_into`]) or ahead while lanes compute
/// ([`RecordSource::read_ahead`], up to `ahead` records held).
struct RecordSource<'a> {
    input: &'a Path,
    reader: EdfReader,
    rec: Record,
    spatial: Option<Box<crate::ocular::SpatialStage>>,
    /// (signal index, samples per record, label) of each lane, in lane order.
    lanes: Vec<(usize, usize, String)>,
    /// Records read ahead: each lane's samples one after another, in lane order.
    staged: VecDeque<Vec<f32>>,
    /// Record buffers already taken into the lanes, for the next reads (one allocation per
    /// record held, not per record read).
    spare: Vec<Vec<f32>>,
    /// The error that stopped reading ahead, raised where its record would have been.
    failed: Option<DenoiseError>,
    ahead: usize,
}

impl RecordSource<'_> {
    /// Appends the next record's samples to the lanes; false at the end of the file.
    fn next_into(&mut self, lanes: &mut [Lane]) -> Result<bool, DenoiseError> {
        let buf = match self.staged.pop_front() {
            Some(buf) => buf,
            None => {
                if let Some(e) = self.failed.take() {
                    return Err(e);
                }
                match self.read_one()? {
                    Some(buf) => buf,
                    None => return Ok(false),
                }
            }
        };
        let mut at = 0;
        for lane in lanes.iter_mut() {
            lane.raw.extend_from_slice(&buf[at..at + lane.spr]);
            at += lane.spr;
        }
        self.spare.push(buf);
        Ok(true)
    }

    /// Reads records into `staged` until it holds `ahead`, the file ends, reading fails
    /// (kept for [`RecordSource::next_into`]) or `cancel` is set.
    fn read_ahead(&mut self, cancel: &AtomicBool) {
        while self.failed.is_none()
            && self.staged.len() < self.ahead
            && !cancel.load(Ordering::Relaxed)
        {
            match self.read_one() {
                Ok(Some(buf)) => self.staged.push_back(buf),
                Ok(None) => break,
                Err(e) => self.failed = Some(e),
            }
        }
    }

    /// The next record's samples, each lane's after the other, through the eye stage.
    fn read_one(&mut self) -> Result<Option<Vec<f32>>, DenoiseError> {
        if !self.reader.read_record_into(&mut self.rec)? {
            return Ok(None);
        }
        let rec = &self.rec;
        let mut buf = self.spare.pop().unwrap_or_default();
        // Every sample is overwritten below.
        buf.resize(self.lanes.iter().map(|l| l.1).sum(), 0.0);
        let mut at = 0;
        for (ch, spr, label) in &self.lanes {
            let new = &mut buf[at..at + spr];
            rec.physical_into(*ch, new);
            if let Some(i) = new.iter().position(|v| !v.is_finite()) {
                return Err(DenoiseError::Channel {
                    file: self.input.to_path_buf(),
                    channel: label.clone(),
                    problem: format!(
                        "sample {} (record {}) is {} after scaling to physical units (bad \
                         physical/digital range in the header?)",
                        rec.index() * *spr as u64 + i as u64,
                        rec.index(),
                        new[i]
                    ),
                });
            }
            at += spr;
        }
        if let Some(stage) = self.spatial.as_mut() {
            let mut new: Vec<&mut [f32]> = Vec::with_capacity(self.lanes.len());
            let mut rest = buf.as_mut_slice();
            for (_, spr, _) in &self.lanes {
                let (head, tail) = rest.split_at_mut(*spr);
                new.push(head);
                rest = tail;
            }
            stage
                .apply(&mut new)
                .map_err(|error| DenoiseError::Ocular {
                    file: self.input.to_path_buf(),
                    error: Box::new(error),
                })?;
        }
        Ok(Some(buf))
    }
}

/// Computes every lane whose next block has all its samples, channels in parallel on up to
/// `scratches.len()` threads; returns how many lanes moved. `models` holds the denoiser and
/// the one for lanes the eye stage cleans ([`Lane::eye`]) when it differs.
///
/// With more than one thread the calling thread first reads records ahead from `source` (the
/// EDF decoding and the eye stage, which must run in record order) while the others compute,
/// then computes lanes too: the reading no longer waits for the computing, nor the other way.
#[allow(clippy::too_many_arguments)]
fn run_ready(
    lanes: &mut [Lane],
    scratches: &mut [(Scratch, Vec<f32>)],
    models: (&Denoiser<'_>, Option<&Denoiser<'_>>),
    plans: &[RatePlan],
    input: &Path,
    cancel: &AtomicBool,
    source: &mut RecordSource<'_>,
) -> Result<usize, DenoiseError> {
    let ready: Vec<&mut Lane> = lanes.iter_mut().filter(|l| l.ready(plans)).collect();
    let count = ready.len();
    if count == 0 {
        return Ok(0);
    }
    let queue = Mutex::new(ready);
    let first_error: Mutex<Option<DenoiseError>> = Mutex::new(None);
    let work = |(scratch, buf): &mut (Scratch, Vec<f32>)| loop {
        if cancel.load(Ordering::Relaxed) {
            first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(DenoiseError::Interrupted {
                    file: input.to_path_buf(),
                });
            return;
        }
        let Some(lane) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
            return;
        };
        let denoiser = match models {
            (_, Some(eye)) if lane.eye => eye,
            (d, _) => d,
        };
        if let Err(e) = lane.step(denoiser, plans, scratch, buf) {
            let e = DenoiseError::Channel {
                file: input.to_path_buf(),
                channel: lane.label.clone(),
                problem: e.to_string(),
            };
            first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
            return;
        }
    };
    let used = scratches.len().min(count);
    if used == 1 {
        work(&mut scratches[0]);
    } else {
        std::thread::scope(|s| {
            let (own, others) = scratches[..used].split_at_mut(1);
            for sc in others {
                s.spawn(|| work(sc));
            }
            source.read_ahead(cancel);
            work(&mut own[0]);
        });
    }
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(count),
    }
}

/// Seconds of signal per block: the option, or the largest block within
/// [`MAX_BLOCK_SECONDS`] and [`BLOCK_SAMPLE_BUDGET`] over the selected channels.
fn block_seconds(
    opts: &DenoiseOptions,
    header: &Header,
    selected: &[usize],
) -> Result<f64, DenoiseError> {
    let rate_sum: f64 = selected.iter().map(|&c| header.sample_rate(c)).sum();
    match opts.block_seconds {
        Some(s) if s > 0.0 => Ok(s),
        Some(s) => Err(DenoiseError::Options(format!(
            "block length {s} s must be positive"
        ))),
        None => Ok(MAX_BLOCK_SECONDS.min(BLOCK_SAMPLE_BUDGET / rate_sum.max(1.0))),
    }
}

/// One empty [`Lane`] per selected channel; notes channels whose unit is not a voltage.
fn make_lanes(
    header: &Header,
    selected: &[usize],
    plans: &[RatePlan],
    records: u64,
    block_seconds: f64,
    notes: &mut Vec<String>,
) -> Vec<Lane> {
    let sigs = header.signals();
    let mut lanes = Vec::with_capacity(selected.len());
    for &ch in selected {
        let fs = header.sample_rate(ch);
        let dim = sigs[ch].physical_dimension.trim();
        let to_uv = microvolt_factor(dim).unwrap_or_else(|| {
            notes.push(format!(
                "{}: physical dimension {dim:?} is not a voltage; samples passed to the model \
                 unscaled",
                sigs[ch].label.trim()
            ));
            1.0
        });
        let spr = sigs[ch].samples_per_record;
        let n = usize::try_from(records * spr as u64).unwrap_or(usize::MAX);
        let block = if block_seconds.is_finite() {
            ((block_seconds * fs).round() as usize).clamp(1, n.max(1))
        } else {
            n.max(1)
        };
        lanes.push(Lane {
            ch,
            label: sigs[ch].label.trim().to_string(),
            plan: plans.iter().position(|p| p.fs_hz == fs).unwrap_or(0),
            to_uv,
            spr,
            n,
            block,
            raw: Vec::new(),
            raw_start: 0,
            next: 0,
            out: VecDeque::new(),
            out_start: 0,
            faults: FaultCounts::default(),
            model: true,
            eye: false,
        });
    }
    lanes
}

/// The multi-channel eye stage's plan when `opts.spatial` asks for it.
fn prepare_spatial(
    input: &Path,
    header: &Header,
    selected: &[usize],
    opts: &DenoiseOptions,
) -> Result<Option<crate::ocular::SpatialPlan>, DenoiseError> {
    if !opts.spatial {
        return Ok(None);
    }
    crate::ocular::SpatialStage::prepare(input, header, selected, opts.eog.as_deref())
        .map(Some)
        .map_err(|error| DenoiseError::Ocular {
            file: input.to_path_buf(),
            error: Box::new(error),
        })
}

/// [`DenoiseError::Clipping`] for the first channel that clipped more than
/// [`MAX_CLIP_FRACTION`] of its samples, unless clipping is allowed.
fn check_clipping(
    input: &Path,
    sigs: &[crate::io::edf::SignalHeader],
    summary: &crate::io::edf::RewriteSummary,
    allow: bool,
) -> Result<(), DenoiseError> {
    if allow {
        return Ok(());
    }
    for c in &summary.clipped {
        if c.clipped as f64 > MAX_CLIP_FRACTION * c.samples as f64 {
            let sig = &sigs[c.channel.index];
            return Err(DenoiseError::Clipping {
                file: input.to_path_buf(),
                channel: c.channel.label.clone(),
                clipped: c.clipped,
                samples: c.samples,
                physical_min: sig.physical_min,
                physical_max: sig.physical_max,
                unit: sig.physical_dimension.trim().to_string(),
            });
        }
    }
    Ok(())
}

/// What the summary says about each denoised channel.
fn channel_reports(
    lanes: &[Lane],
    plans: &[RatePlan],
    written: &crate::io::edf::RewriteSummary,
    model_rate_hz: f64,
) -> Vec<ChannelReport> {
    lanes
        .iter()
        .zip(&written.clipped)
        .map(|(l, c)| ChannelReport {
            index: l.ch,
            label: l.label.clone(),
            sample_rate_hz: plans[l.plan].fs_hz,
            samples: l.n as u64,
            resampled_to_hz: plans[l.plan].resample.as_ref().map(|_| model_rate_hz),
            clipped: c.clipped,
            faults: l.faults,
        })
        .collect()
}

/// Option checks that need no file.
fn check_options(input: &Path, output: &Path, opts: &DenoiseOptions) -> Result<(), DenoiseError> {
    if opts.eye_only
        && (!opts.spatial
            || opts.notch_hz.is_some()
            || opts.bandpass_hz.is_some()
            || opts.hop.is_some())
    {
        return Err(DenoiseError::Options(
            "--eye-only runs the eye stage alone: it cannot go with --no-spatial, --notch, \
             --bandpass or --hop"
                .into(),
        ));
    }
    if let Some((lo, hi)) = opts.bandpass_hz
        && !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo < hi)
    {
        return Err(DenoiseError::Options(format!(
            "--bandpass {lo},{hi}: need 0 < low < high (Hz)"
        )));
    }
    check_output_path(input, output)?;
    if let Some(wav) = &opts.wav {
        check_output_path(input, wav)?;
        if wav == output {
            return Err(DenoiseError::Options(format!(
                "--wav {} is the EDF output path",
                wav.display()
            )));
        }
    }
    Ok(())
}

/// The model's SAE with the hop, band rule and gate of `opts`: [`eye_stage_gate`] for
/// channels the eye stage cleans (`eye_stage`), else [`effective_gate`].
pub(crate) fn make_denoiser<'m>(
    model: &'m Model,
    opts: &DenoiseOptions,
    eye_stage: bool,
) -> Result<Denoiser<'m>, DenoiseError> {
    let view = model.view();
    let meta = view.meta();
    let rate_hz = f64::from(meta.sample_rate_hz);
    let hop = opts.hop.unwrap_or(meta.hop);
    if hop == 0 || hop > meta.d_in {
        return Err(DenoiseError::Options(format!(
            "--hop {hop} must be between 1 and the model's window of {} samples",
            meta.d_in
        )));
    }
    if !(rate_hz.is_finite() && rate_hz > 0.0) {
        return Err(DenoiseError::Model {
            path: model.path().to_path_buf(),
            problem: format!("sample rate {rate_hz} Hz is not usable"),
        });
    }
    let sae = view.sae().with_ola_shape(opts.ola.unwrap_or(meta.ola));
    let gate = if eye_stage {
        eye_stage_gate(opts, meta.blend, rate_hz)
    } else {
        effective_gate(opts, meta.blend, rate_hz)
    };
    let sae = match gate {
        None => sae.with_validated_blend(None),
        Some(b) => sae.with_blend(b).map_err(|_| {
            DenoiseError::Options(format!(
                "correction gate {b}{} is invalid (0 <= lo < hi, finite; slow half-width \
                 1..={})",
                b.slow
                    .map_or_else(String::new, |s| format!(" (slow part {s})")),
                SlowGate::MAX_HALF
            ))
        })?,
    };
    Ok(Denoiser {
        sae,
        hop,
        rate_hz,
        high_band: opts.high_band,
    })
}

/// Refuses selections the writer would refuse at the end (so the mistake costs nothing).
fn check_selection(
    input: &Path,
    header: &Header,
    selected: &[usize],
    opts: &DenoiseOptions,
) -> Result<(), DenoiseError> {
    let sigs = header.signals();
    for (k, &ch) in selected.iter().enumerate() {
        let problem = if selected[..k].contains(&ch) {
            "is selected twice by --channels"
        } else if sigs[ch].is_annotation() {
            "is an EDF Annotations channel, not a signal"
        } else {
            continue;
        };
        return Err(DenoiseError::Channel {
            file: input.to_path_buf(),
            channel: sigs[ch].label.trim().to_string(),
            problem: problem.into(),
        });
    }
    if opts.wav.is_some() {
        let r0 = header.sample_rate(selected[0]);
        if let Some(&c) = selected.iter().find(|&&c| header.sample_rate(c) != r0) {
            return Err(DenoiseError::Options(format!(
                "--wav needs channels of one rate, but {} is {} Hz and {} is {} Hz; \
                 choose channels with --channels",
                sigs[selected[0]].label.trim(),
                r0,
                sigs[c].label.trim(),
                header.sample_rate(c)
            )));
        }
    }
    Ok(())
}

/// One plan per distinct rate among the selected channels, with notes on what the rate
/// changes (prefilters reduced, the band above the model).
fn make_plans(
    input: &Path,
    header: &Header,
    selected: &[usize],
    denoiser: &Denoiser<'_>,
    opts: &DenoiseOptions,
    notes: &mut Vec<String>,
) -> Result<Vec<RatePlan>, DenoiseError> {
    let sigs = header.signals();
    let model_rate_hz = denoiser.rate_hz;
    let mut plans: Vec<RatePlan> = Vec::new();
    for &ch in selected {
        let fs = header.sample_rate(ch);
        if plans.iter().any(|p| p.fs_hz == fs) {
            continue;
        }
        let channel_error = |problem: String| DenoiseError::Channel {
            file: input.to_path_buf(),
            channel: sigs[ch].label.trim().to_string(),
            problem,
        };
        let p = Prefilter::design(opts, fs)
            .map_err(|e| channel_error(format!("cannot design the prefilter at {fs} Hz: {e}")))?;
        notes.extend(p.notes.iter().cloned());
        if fs > model_rate_hz * (1.0 + 1e-9) {
            let nyq = model_rate_hz / 2.0;
            notes.push(match denoiser.high_band {
                HighBand::Keep => format!(
                    "{fs} Hz channels: content above the model's Nyquist frequency ({nyq} Hz) \
                     passed through unchanged (--above-model-band drop removes it)"
                ),
                HighBand::Drop => format!(
                    "{fs} Hz channels: content above the model's Nyquist frequency ({nyq} Hz) \
                     removed (--above-model-band keep passes it through)"
                ),
            });
        }
        let plan = denoiser
            .plan(fs, p.filter)
            .map_err(|e| channel_error(e.to_string()))?;
        plans.push(plan);
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gate options: the default follows the eye stage, `model` and `after-eye` name
    /// one gate for every channel, and a user's gate or `--keep-slow` wins over the eye
    /// stage's.
    #[test]
    fn gate_choice_and_the_eye_stage() {
        let parse = |g: Option<&str>, s: Option<&str>, k| GateChoice::from_args(g, s, k);
        assert_eq!(parse(None, None, false), Ok(GateChoice::Auto));
        assert_eq!(parse(Some("model"), None, false), Ok(GateChoice::Model));
        assert_eq!(
            parse(Some("after-eye"), None, false),
            Ok(GateChoice::AfterEye)
        );
        for g in ["off", "model", "after-eye"] {
            let e = parse(Some(g), Some("0.1,0.2,3"), false).unwrap_err();
            assert!(e.contains(&format!("not {g}")), "{e}");
        }
        assert!(
            parse(Some("modle"), None, false)
                .unwrap_err()
                .contains("after-eye")
        );

        let model = Some(Blend::new(0.125, 0.625));
        let eye = after_eye_gate(model, 256.0);
        assert_eq!((eye.lo, eye.hi), (0.125, 0.625));
        assert_eq!(
            eye.slow,
            Some(SlowGate {
                lo: AFTER_EYE_SLOW.0,
                hi: AFTER_EYE_SLOW.1,
                half: 16
            })
        );
        // Without a model gate every fast correction is applied whole.
        assert_eq!(after_eye_gate(None, 128.0).lo, 0.0);
        assert_eq!(after_eye_gate(None, 128.0).slow.unwrap().half, 8);
        assert!(after_eye_gate(None, 128.0).is_always() && !eye.is_always());
        // 1/16 s rounded, within 1..=MAX_HALF.
        for (rate, half) in [(160.0, 10), (250.0, 16), (24.0, 2), (1.0, 1), (1e6, 127)] {
            assert_eq!(keep_slow_half(rate), half, "{rate}");
        }
        assert_eq!(SlowGate::half_for_rate(f32::NAN), 1);
        let with = |gate, keep_slow| DenoiseOptions {
            gate,
            keep_slow,
            ..DenoiseOptions::default()
        };
        let both = |o: &DenoiseOptions| {
            (
                effective_gate(o, model, 256.0),
                eye_stage_gate(o, model, 256.0),
            )
        };
        assert_eq!(both(&with(GateChoice::Auto, false)), (model, Some(eye)));
        assert_eq!(both(&with(GateChoice::Model, false)), (model, model));
        assert_eq!(
            both(&with(GateChoice::AfterEye, false)),
            (Some(eye), Some(eye))
        );
        assert_eq!(both(&with(GateChoice::Off, false)), (None, None));
        let keep = both(&with(GateChoice::Auto, true));
        assert_eq!(keep.0, keep.1);
        assert!(keep.0.unwrap().slow.unwrap().is_never());
    }
    use crate::model::identity_model;

    #[test]
    fn prefilter_adapts_to_each_rate() {
        let opts = DenoiseOptions {
            notch_hz: Some(60.0),
            bandpass_hz: Some((1.0, 100.0)),
            ..DenoiseOptions::default()
        };
        // 500 Hz: notch (1 section) + band-pass of order 4 (4 sections), no notes.
        let p = Prefilter::design(&opts, 500.0).unwrap();
        assert_eq!(p.filter.sections().len(), 5);
        assert!(p.notes.is_empty());
        // 160 Hz: 100 Hz is above Nyquist, so a 1 Hz high-pass (2 sections) + the notch.
        let p = Prefilter::design(&opts, 160.0).unwrap();
        assert_eq!(p.filter.sections().len(), 3);
        assert_eq!(p.notes.len(), 1);
        assert!(p.notes[0].contains("high-pass"), "{:?}", p.notes);
        // 100 Hz: the 60 Hz notch cannot exist; skipped and said so.
        let p = Prefilter::design(&opts, 100.0).unwrap();
        assert_eq!(p.filter.sections().len(), 2);
        assert_eq!(p.notes.len(), 2);
        assert!(p.notes[0].contains("notch skipped"), "{:?}", p.notes);
    }

    #[test]
    fn microvolt_factors() {
        assert_eq!(microvolt_factor(" uV "), Some(1.0));
        assert_eq!(microvolt_factor("µV"), Some(1.0));
        assert_eq!(microvolt_factor("mV"), Some(1e3));
        assert_eq!(microvolt_factor("V"), Some(1e6));
        assert_eq!(microvolt_factor("nV"), Some(1e-3));
        assert_eq!(microvolt_factor("degC"), None);
    }

    #[test]
    fn identity_denoiser_returns_the_signal_at_any_rate_and_unit() {
        let (meta, t) = identity_model(64, 16, 256.0);
        let model = Model::from_tensors(&meta, &t).unwrap();
        let view = model.view();
        let d = Denoiser {
            sae: view.sae(),
            hop: 16,
            rate_hz: 256.0,
            high_band: HighBand::Keep,
        };
        let mut scratch = Scratch::default();
        let signal = |fs: f64, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    let t = i as f64 / fs;
                    (0.02 + 0.05 * (2.0 * std::f64::consts::PI * 7.0 * t).sin()) as f32
                })
                .collect()
        };
        // Same rate, millivolts (scaled by 1000 on the way in and back): equal to f32
        // rounding of the two scalings and the overlap-add weights (1e-6 relative).
        let x = signal(256.0, 1000);
        let mut y = x.clone();
        let plan = d.plan(256.0, Filter::default()).unwrap();
        assert!(plan.resample.is_none());
        let (f, r) = d
            .denoise_in_place(&mut y, &plan, 1e3, &mut scratch)
            .unwrap();
        assert_eq!((f, r), (FaultCounts::default(), None));
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-6 * 0.07, "{a} vs {b}");
        }
        // 200 Hz: resampled to 256 and back, same length; a 7 Hz tone is deep in the pass
        // band (ripple 2e-4), so within 1e-3 of its 0.07 peak away from the edges.
        let x = signal(200.0, 999);
        let mut y = x.clone();
        let plan = d.plan(200.0, Filter::default()).unwrap();
        let (_, r) = d
            .denoise_in_place(&mut y, &plan, 1.0, &mut scratch)
            .unwrap();
        assert_eq!(r, Some(256.0));
        assert_eq!(y.len(), 999);
        let err = x[50..949]
            .iter()
            .zip(&y[50..949])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-3 * 0.07, "resampled identity error {err}");
    }
}
