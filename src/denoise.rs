//! The offline denoising pipeline used by `mfr-eeg denoise`.
//!
//! [`denoise_file`] reads the selected channels of an EDF/EDF+/BDF file whole (physical
//! units), and for each one, in parallel: optionally notch- and band-pass-filters it
//! (zero-phase, [`crate::io::filter`]), converts it to microvolts, resamples it to the model's
//! rate when the channel's rate differs ([`crate::io::resample`]), runs the core's offline
//! denoiser ([`crate::core::denoise_offline_into`], equal bit for bit to streaming), and
//! resamples back to exactly the original length. The output file is then written by
//! [`crate::io::edf::rewrite`]: a byte-for-byte copy of the input (header, other channels,
//! annotations) with only the denoised channels re-encoded (rounded, clipped and counted),
//! through a temporary file renamed into place, so a failure leaves no partial output.
//!
//! Key types: [`DenoiseOptions`] in, [`DenoiseSummary`] out, [`DenoiseError`] on failure.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::core::{CoreError, FaultCounts, Sae, denoise_offline_into, offline_work_len};
use crate::io::edf::{
    ChannelData, EdfError, EdfReader, Header, check_output_is_not_input, rewrite, select_channels,
};
use crate::io::filter::{Band, DEFAULT_NOTCH_Q, Filter, FilterError};
use crate::io::resample::{ResampleError, Resampler};
use crate::io::wav::{WavError, export_wav};
use crate::model::Model;

/// Default Butterworth order for `--bandpass` (4 per pass, 8 after forward-backward).
pub const DEFAULT_BANDPASS_ORDER: usize = 4;

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
        }
    }
}

/// Pipeline stages reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Reading the selected channels (`channels` of them).
    Reading {
        /// Channels to read.
        channels: usize,
    },
    /// One more channel is denoised (`done` of `total`).
    Channel {
        /// Channels finished so far.
        done: usize,
        /// Channels in total.
        total: usize,
    },
    /// Writing the output EDF.
    Writing,
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
    /// Options that cannot be applied (e.g. a band-pass with low >= high).
    #[error("invalid option: {0}")]
    Options(String),
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
    /// Non-finite inputs or model outputs the core repaired (see [`FaultCounts`]).
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
    /// Things the user should know (filters skipped or reduced, units assumed).
    pub notes: Vec<String>,
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

/// Reusable per-thread buffers for [`Denoiser::denoise_in_place`].
#[derive(Debug, Default)]
pub struct Scratch {
    work: Vec<f32>,
    topk: Vec<usize>,
    resampled: Vec<f32>,
    denoised: Vec<f32>,
}

/// The model side of the pipeline: the SAE, its hop and its sampling rate.
#[derive(Debug, Clone, Copy)]
pub struct Denoiser<'m> {
    /// The validated SAE.
    pub sae: Sae<'m>,
    /// Streaming hop in samples.
    pub hop: usize,
    /// The rate the model expects, in Hz.
    pub rate_hz: f64,
}

/// Everything that depends only on a channel's rate, built once per distinct rate: the
/// prefilter and, when the rate differs from the model's, the two resamplers (filters with
/// large rational factors take milliseconds to build).
#[derive(Debug, Clone)]
pub struct RatePlan {
    /// The channel rate in Hz.
    pub fs_hz: f64,
    /// Zero-phase prefilter (empty: none).
    pub prefilter: Filter,
    /// Channel rate -> model rate and back, when they differ.
    pub resample: Option<(Resampler, Resampler)>,
}

impl<'m> Denoiser<'m> {
    /// The plan for channels at `fs_hz` with the given prefilter.
    pub fn plan(&self, fs_hz: f64, prefilter: Filter) -> Result<RatePlan, ResampleError> {
        let same_rate = (fs_hz - self.rate_hz).abs() <= 1e-9 * self.rate_hz;
        let resample = if same_rate {
            None
        } else {
            Some((
                Resampler::from_rates(fs_hz, self.rate_hz)?,
                Resampler::from_rates(self.rate_hz, fs_hz)?,
            ))
        };
        Ok(RatePlan {
            fs_hz,
            prefilter,
            resample,
        })
    }

    /// Denoises one whole channel in place: prefilter (zero-phase), scale to microvolts
    /// (`to_uv`), resample to the model rate when the plan says so, denoise offline, resample
    /// back to exactly `x.len()` samples, undo the scale. Returns the core's fault counts and
    /// the rate the channel was resampled to, if it was.
    pub fn denoise_in_place(
        &self,
        x: &mut [f32],
        plan: &RatePlan,
        to_uv: f64,
        scratch: &mut Scratch,
    ) -> Result<(FaultCounts, Option<f64>), SignalError> {
        let sae = &self.sae;
        plan.prefilter.filtfilt(x);
        if to_uv != 1.0 {
            for v in x.iter_mut() {
                *v = (f64::from(*v) * to_uv) as f32;
            }
        }
        scratch.work.resize(offline_work_len(sae), 0.0);
        scratch.topk.resize(sae.k(), 0);
        let (faults, resampled) = match &plan.resample {
            None => {
                scratch.denoised.resize(x.len(), 0.0);
                let f = denoise_offline_into(
                    sae,
                    self.hop,
                    x,
                    &mut scratch.denoised,
                    &mut scratch.work,
                    &mut scratch.topk,
                )?;
                x.copy_from_slice(&scratch.denoised);
                (f, None)
            }
            Some((there, back)) => {
                scratch.resampled.resize(there.output_len(x.len()), 0.0);
                there.process_into(x, &mut scratch.resampled);
                scratch.denoised.resize(scratch.resampled.len(), 0.0);
                let f = denoise_offline_into(
                    sae,
                    self.hop,
                    &scratch.resampled,
                    &mut scratch.denoised,
                    &mut scratch.work,
                    &mut scratch.topk,
                )?;
                // Back to exactly the original sample count, whatever the rounding on the way.
                back.process_into(&scratch.denoised, x);
                (f, Some(self.rate_hz))
            }
        };
        if to_uv != 1.0 {
            for v in x.iter_mut() {
                *v = (f64::from(*v) / to_uv) as f32;
            }
        }
        Ok((faults, resampled))
    }
}

/// Why [`Denoiser::denoise_in_place`] failed (wrapped with file and channel by [`denoise_file`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The core refused the model or buffers.
    #[error("inference core: {0}")]
    Core(CoreError),
    /// No rational resampling ratio.
    #[error(transparent)]
    Resample(#[from] ResampleError),
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

/// Denoises `input` into `output` with `model` (see the module docs), calling `progress` as
/// stages advance (from worker threads too).
pub fn denoise_file(
    input: &Path,
    output: &Path,
    model: &Model,
    opts: &DenoiseOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<DenoiseSummary, DenoiseError> {
    let started = Instant::now();
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

    let view = model.view();
    let meta = view.meta();
    let model_rate_hz = f64::from(meta.sample_rate_hz);
    let hop = opts.hop.unwrap_or(meta.hop);
    if hop == 0 || hop > meta.d_in {
        return Err(DenoiseError::Options(format!(
            "--hop {hop} must be between 1 and the model's window of {} samples",
            meta.d_in
        )));
    }
    let denoiser = Denoiser {
        sae: view.sae(),
        hop,
        rate_hz: model_rate_hz,
    };
    if !(model_rate_hz.is_finite() && model_rate_hz > 0.0) {
        return Err(DenoiseError::Model {
            path: model.path().to_path_buf(),
            problem: format!("sample rate {model_rate_hz} Hz is not usable"),
        });
    }

    let mut reader = EdfReader::open(input)?;
    let header: Header = reader.header().clone();
    let selected =
        select_channels(&header, opts.channels.as_deref()).map_err(|e| e.in_file(input))?;
    let sigs = header.signals();
    for (k, &ch) in selected.iter().enumerate() {
        // Checked here so the mistake costs nothing (the writer would refuse it at the end).
        if selected[..k].contains(&ch) {
            return Err(DenoiseError::Channel {
                file: input.to_path_buf(),
                channel: sigs[ch].label.trim().to_string(),
                problem: "is selected twice by --channels".into(),
            });
        }
        if sigs[ch].is_annotation() {
            return Err(DenoiseError::Channel {
                file: input.to_path_buf(),
                channel: sigs[ch].label.trim().to_string(),
                problem: "is an EDF Annotations channel, not a signal".into(),
            });
        }
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

    let mut notes = Vec::new();
    // One prefilter design and resampler pair per distinct rate.
    let mut plans: Vec<RatePlan> = Vec::new();
    for &ch in &selected {
        let fs = header.sample_rate(ch);
        if !plans.iter().any(|p| p.fs_hz == fs) {
            let channel_error = |problem: String| DenoiseError::Channel {
                file: input.to_path_buf(),
                channel: sigs[ch].label.trim().to_string(),
                problem,
            };
            let p = Prefilter::design(opts, fs).map_err(|e| {
                channel_error(format!("cannot design the prefilter at {fs} Hz: {e}"))
            })?;
            notes.extend(p.notes.iter().cloned());
            if fs > model_rate_hz * (1.0 + 1e-9) {
                // The model never sees what lies above its Nyquist frequency, so the round
                // trip removes it; say so rather than let it go unnoticed.
                notes.push(format!(
                    "{fs} Hz channels keep content up to the model's Nyquist frequency ({} Hz) \
                     only",
                    model_rate_hz / 2.0
                ));
            }
            let plan = denoiser
                .plan(fs, p.filter)
                .map_err(|e| channel_error(e.to_string()))?;
            plans.push(plan);
        }
    }
    let mut unit_factor = Vec::with_capacity(selected.len());
    for &ch in &selected {
        let dim = sigs[ch].physical_dimension.trim();
        unit_factor.push(microvolt_factor(dim).unwrap_or_else(|| {
            notes.push(format!(
                "{}: physical dimension {dim:?} is not a voltage; samples passed to the model \
                 unscaled",
                sigs[ch].label.trim()
            ));
            1.0
        }));
    }

    progress(Progress::Reading {
        channels: selected.len(),
    });
    let mut data = reader.read_channels_physical(&selected)?;
    for (&ch, x) in selected.iter().zip(&data) {
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(DenoiseError::Channel {
                file: input.to_path_buf(),
                channel: sigs[ch].label.trim().to_string(),
                problem: format!(
                    "sample {i} is {} after scaling to physical units (bad physical/digital \
                     range in the header?)",
                    x[i]
                ),
            });
        }
    }

    // Channels in parallel: each worker takes the next unprocessed channel.
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        opts.threads
    }
    .clamp(1, selected.len().max(1));
    let total = selected.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<&mut Vec<f32>>>> =
        data.iter_mut().map(|v| Mutex::new(Some(v))).collect();
    type ChannelResult = Result<(FaultCounts, Option<f64>), SignalError>;
    let results: Vec<Mutex<Option<ChannelResult>>> = (0..total).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut scratch = Scratch::default();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total {
                        break;
                    }
                    let ch = selected[k];
                    let fs = header.sample_rate(ch);
                    let plan = plans
                        .iter()
                        .find(|p| p.fs_hz == fs)
                        .expect("a plan was made for every selected rate");
                    let x = slots[k]
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take()
                        .expect("each channel is taken once");
                    let r = denoiser.denoise_in_place(x, plan, unit_factor[k], &mut scratch);
                    *results[k].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(Progress::Channel { done: d, total });
                }
            });
        }
    });
    drop(slots);

    let mut reports = Vec::with_capacity(total);
    for (k, r) in results.into_iter().enumerate() {
        let ch = selected[k];
        let r = r
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .expect("every channel was processed");
        let (faults, resampled_to_hz) = r.map_err(|e| DenoiseError::Channel {
            file: input.to_path_buf(),
            channel: sigs[ch].label.trim().to_string(),
            problem: e.to_string(),
        })?;
        reports.push(ChannelReport {
            index: ch,
            label: sigs[ch].label.trim().to_string(),
            sample_rate_hz: header.sample_rate(ch),
            samples: data[k].len() as u64,
            resampled_to_hz,
            clipped: 0,
            faults,
        });
    }

    progress(Progress::Writing);
    let replacements: Vec<ChannelData<'_>> = selected
        .iter()
        .zip(&data)
        .map(|(&channel, x)| ChannelData {
            channel,
            physical: x,
        })
        .collect();
    let written = rewrite(input, output, &replacements)?;
    for (rep, c) in reports.iter_mut().zip(&written.clipped) {
        rep.clipped = c.clipped;
    }
    if let Some(wav) = &opts.wav {
        progress(Progress::WritingWav);
        export_wav(output, wav, &selected)?;
    }

    let samples = reports.iter().map(|r| r.samples).sum();
    Ok(DenoiseSummary {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        samples,
        clipped: written.total_clipped(),
        channels: reports,
        recording_seconds: written.records as f64 * header.record_duration(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        model_rate_hz,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
