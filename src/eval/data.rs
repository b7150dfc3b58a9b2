//! The seeded semi-synthetic EEG denoising data set.
//!
//! Clean EEG comes from two pluggable sources, both cut into non-overlapping source segments:
//! - real recordings ([`Recording`], e.g. the shipped EEGMMIDB file or any EDF the user gives),
//!   conditioned in the frequency domain ([`condition_channel`]: resampled to the target rate,
//!   1-80 Hz band, line notch) and screened by [`SelectionRule`];
//! - a physiological model ([`model_segment`]): 1/f^beta background plus theta, alpha and beta
//!   bursts with amplitude modulation.
//!
//! Artifacts ([`ArtifactKind`]) are generated per window: blinks and saccades, EMG bursts,
//! line noise, electrode pops, slow drift, and a mixture. Windows follow the EEGdenoiseNet
//! protocol ([`mix_at_snr`], [`zscore_by_noisy`]): noisy = clean + lambda * artifact with
//! SNR = 10 log10(RMS(clean) / RMS(lambda * artifact)), both divided by the noisy window's std.
//!
//! Splits ([`split_segments`]) assign whole *groups* of segments: for a recording, a group is
//! one time span across all its channels (neighbouring channels share signal through volume
//! conduction), so no source sample reaches two splits. Everything is fixed by the seed.

use realfft::RealFftPlanner;
use realfft::num_complex::Complex;

use super::EvalError;
use crate::rng::Rng;

/// A multichannel recording handed to the generator (from EDF or elsewhere).
#[derive(Clone, Debug)]
pub struct Recording {
    /// Name used in segment labels (e.g. the file name).
    pub name: String,
    /// Sample rate in Hz.
    pub sample_rate_hz: f64,
    /// Channel labels, one per channel.
    pub labels: Vec<String>,
    /// Samples per channel (physical units, e.g. uV).
    pub channels: Vec<Vec<f32>>,
}

impl Recording {
    /// Reads every ordinary (non-annotation) signal of an EDF/EDF+/BDF file that has the
    /// file's most common sample rate (other rates are skipped: one recording, one rate).
    pub fn from_edf(path: &std::path::Path) -> Result<Self, EvalError> {
        let fail = |e: crate::io::edf::EdfError| EvalError::Format {
            path: path.to_path_buf(),
            problem: e.to_string(),
        };
        let mut r = crate::io::edf::EdfReader::open(path).map_err(fail)?;
        let h = r.header().clone();
        let ordinary: Vec<usize> = (0..h.signals().len())
            .filter(|&c| !h.signals()[c].is_annotation())
            .collect();
        let mut rates: Vec<(u64, usize)> = Vec::new();
        for &c in &ordinary {
            let key = (h.sample_rate(c) * 1000.0).round() as u64;
            match rates.iter_mut().find(|r| r.0 == key) {
                Some(r) => r.1 += 1,
                None => rates.push((key, 1)),
            }
        }
        let Some(&(rate_key, _)) = rates.iter().max_by_key(|r| r.1) else {
            return Err(EvalError::Format {
                path: path.to_path_buf(),
                problem: "no ordinary signals".into(),
            });
        };
        let chans: Vec<usize> = ordinary
            .into_iter()
            .filter(|&c| (h.sample_rate(c) * 1000.0).round() as u64 == rate_key)
            .collect();
        let channels = r.read_channels_physical(&chans).map_err(fail)?;
        Ok(Self {
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            sample_rate_hz: rate_key as f64 / 1000.0,
            labels: chans
                .iter()
                .map(|&c| h.signals()[c].label.clone())
                .collect(),
            channels,
        })
    }
}

/// One clean source segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Zero-mean clean samples at the data set's rate.
    pub samples: Vec<f32>,
    /// Split group: segments sharing a group always land in the same split.
    pub group: u64,
    /// Where it came from, for reports.
    pub origin: String,
}

/// Artifact families.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// Ocular: blinks and saccades (plus slow eye movement).
    Eog,
    /// Muscle: broadband 20-150 Hz bursts with envelopes.
    Emg,
    /// Mains interference at 50 or 60 Hz with harmonics.
    Line,
    /// Electrode pops: steps with exponential recovery.
    Pop,
    /// Slow motion or sweat drift below 1 Hz.
    Drift,
    /// A random mixture of the five above.
    Mixed,
}

impl ArtifactKind {
    /// All kinds, in report order.
    pub const ALL: [ArtifactKind; 6] = [
        Self::Eog,
        Self::Emg,
        Self::Line,
        Self::Pop,
        Self::Drift,
        Self::Mixed,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Eog => "eog",
            Self::Emg => "emg",
            Self::Line => "line",
            Self::Pop => "pop",
            Self::Drift => "drift",
            Self::Mixed => "mixed",
        }
    }

    /// Training SNR range in dB: EEGdenoiseNet's -7..2 (EOG) and -7..4 (EMG); -7..4 otherwise.
    pub fn snr_range_db(self) -> (f64, f64) {
        match self {
            Self::Eog => (-7.0, 2.0),
            _ => (-7.0, 4.0),
        }
    }

    /// The 10 fixed test SNR levels, evenly spaced over [`ArtifactKind::snr_range_db`]
    /// (EOG: -7, -6, ..., 2 dB).
    pub fn test_snr_levels_db(self) -> [f64; 10] {
        let (lo, hi) = self.snr_range_db();
        core::array::from_fn(|i| lo + (hi - lo) * i as f64 / 9.0)
    }
}

/// One evaluation or training window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Noisy input, divided by its own std (EEGdenoiseNet z-scoring).
    pub noisy: Vec<f32>,
    /// Clean target in the same units.
    pub clean: Vec<f32>,
    /// The mixing SNR (dB, EEGdenoiseNet convention).
    pub snr_db: f64,
    /// Artifact family.
    pub kind: ArtifactKind,
}

// ---------------------------------------------------------------- spectral helpers

/// Gaussian noise shaped by the amplitude response `gain(f_hz)`, length `n` at `fs`,
/// normalised to unit RMS (zero if the gain passes nothing).
pub fn shaped_noise(rng: &mut Rng, n: usize, fs: f64, gain: impl Fn(f64) -> f64) -> Vec<f64> {
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let mut spec = fwd.make_output_vec();
    // Lengths match the plan, so these cannot fail.
    let _ = fwd.process(&mut x, &mut spec);
    for (k, c) in spec.iter_mut().enumerate() {
        *c *= gain(k as f64 * fs / n as f64);
    }
    spec[0].im = 0.0;
    if n.is_multiple_of(2) {
        let last = spec.len() - 1;
        spec[last].im = 0.0;
    }
    let _ = inv.process(&mut spec, &mut x);
    normalise_rms(&mut x);
    x
}

fn normalise_rms(x: &mut [f64]) {
    let r = (x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64).sqrt();
    if r > 0.0 {
        x.iter_mut().for_each(|v| *v /= r);
    }
}

/// Raised-cosine edge: 0 below `a`, 1 above `b`.
fn ramp(f: f64, a: f64, b: f64) -> f64 {
    if f <= a {
        0.0
    } else if f >= b {
        1.0
    } else {
        0.5 - 0.5 * (std::f64::consts::PI * (f - a) / (b - a)).cos()
    }
}

/// Conditions one channel in the frequency domain in a single zero-phase step: resamples
/// `x` from `fs_in` to `fs_out` (band-limited, spectrum truncated or zero-padded), keeps
/// `band_hz` with raised-cosine edges of 0.5 Hz, and notches +-1 Hz around each of `notch_hz`
/// and its harmonics. Offline whole-record processing makes this exact; the first and last
/// second see circular wrap-around and should be discarded (the segmenter does).
pub fn condition_channel(
    x: &[f32],
    fs_in: f64,
    fs_out: f64,
    band_hz: (f64, f64),
    notch_hz: &[f64],
) -> Result<Vec<f32>, EvalError> {
    if x.len() < 4 {
        return Err(EvalError::TooShort {
            needed: 4,
            got: x.len(),
        });
    }
    if !(fs_in > 0.0 && fs_out > 0.0) {
        return Err(EvalError::Invalid(format!(
            "sample rates must be positive ({fs_in}, {fs_out})"
        )));
    }
    let n_in = x.len();
    let n_out = ((n_in as f64) * fs_out / fs_in).round() as usize;
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n_in);
    let inv = planner.plan_fft_inverse(n_out);
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n_in as f64;
    let mut buf: Vec<f64> = x.iter().map(|&v| v as f64 - mean).collect();
    let mut spec = fwd.make_output_vec();
    let _ = fwd.process(&mut buf, &mut spec);
    let mut out_spec = vec![Complex::new(0.0, 0.0); n_out / 2 + 1];
    let nyq = 0.5 * fs_in.min(fs_out);
    for (k, o) in out_spec.iter_mut().enumerate() {
        let f = k as f64 * fs_out / n_out as f64;
        if k >= spec.len() || f >= nyq {
            continue;
        }
        let mut g =
            ramp(f, band_hz.0 - 0.5, band_hz.0) * (1.0 - ramp(f, band_hz.1, band_hz.1 + 0.5));
        for &f0 in notch_hz {
            let mut h = f0;
            while h < nyq {
                g *= 1.0 - (1.0 - ramp((f - h).abs(), 0.5, 1.0));
                h += f0;
            }
        }
        *o = spec[k] * g;
    }
    let mut out = vec![0.0f64; n_out];
    let _ = inv.process(&mut out_spec, &mut out);
    // realfft is unnormalised: divide by the forward length to keep amplitudes.
    Ok(out.iter().map(|v| (v / n_in as f64) as f32).collect())
}

// ---------------------------------------------------------------- clean sources

/// The documented low-artifact rule for real recordings.
///
/// Each channel is cut into segments; for each segment we measure peak-to-peak amplitude,
/// low-frequency power (1-4 Hz, where eye movements live) and high-frequency power (30-80 Hz,
/// muscle). A segment is kept only if every feature is at most `median + k * 1.4826 * MAD` of
/// that feature over the channel's segments (a robust z-score below `k`), and its
/// peak-to-peak amplitude is below `max_ptp` (physical units). Default k = 3, max_ptp =
/// 500 uV: the common 100-200 uV caps would reject most of an eyes-closed recording whose
/// alpha alone reaches 200-300 uV peak to peak (measured on the shipped EEGMMIDB file: a
/// 200 uV cap kept 27 % of segments, the robust rule alone 93 %).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectionRule {
    /// Robust z-score threshold.
    pub k: f64,
    /// Absolute peak-to-peak cap (uV for EEG).
    pub max_ptp: f64,
}

impl Default for SelectionRule {
    fn default() -> Self {
        Self {
            k: 3.0,
            max_ptp: 500.0,
        }
    }
}

/// What [`recording_segments`] kept and rejected.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SelectionReport {
    /// Segments kept.
    pub kept: usize,
    /// Segments rejected by the rule.
    pub rejected: usize,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn band_power(seg: &[f32], fs: f64, lo: f64, hi: f64) -> f64 {
    let n = seg.len();
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let mut x: Vec<f64> = seg.iter().map(|&v| v as f64).collect();
    let mut spec = fwd.make_output_vec();
    let _ = fwd.process(&mut x, &mut spec);
    spec.iter()
        .enumerate()
        .filter(|(k, _)| {
            let f = *k as f64 * fs / n as f64;
            f >= lo && f < hi
        })
        .map(|(_, c)| c.norm_sqr())
        .sum::<f64>()
        / (n as f64 * n as f64)
}

/// Cuts every channel of `rec` into clean segments of `seg_len` samples at `fs`, after
/// [`condition_channel`] (1-80 Hz band, notch at `line_hz`), dropping the first and last
/// second, and keeps those that pass `rule`. Segment groups are `group_base + time index`.
pub fn recording_segments(
    rec: &Recording,
    fs: f64,
    seg_len: usize,
    line_hz: f64,
    rule: SelectionRule,
    group_base: u64,
) -> Result<(Vec<Segment>, SelectionReport), EvalError> {
    if rec.channels.len() != rec.labels.len() {
        return Err(EvalError::Invalid(format!(
            "{}: {} channels but {} labels",
            rec.name,
            rec.channels.len(),
            rec.labels.len()
        )));
    }
    let mut out = Vec::new();
    let mut report = SelectionReport::default();
    let edge = fs.round() as usize;
    for (label, ch) in rec.labels.iter().zip(&rec.channels) {
        if let Some(i) = ch.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::Invalid(format!(
                "{}: channel {label}: non-finite sample at index {i}",
                rec.name
            )));
        }
        let y = condition_channel(ch, rec.sample_rate_hz, fs, (1.0, 80.0), &[line_hz])?;
        if y.len() < 2 * edge + seg_len {
            continue;
        }
        let n_seg = (y.len() - 2 * edge) / seg_len;
        let segs: Vec<&[f32]> = (0..n_seg)
            .map(|i| &y[edge + i * seg_len..edge + (i + 1) * seg_len])
            .collect();
        let feats: Vec<[f64; 3]> = segs
            .iter()
            .map(|s| {
                let (mn, mx) = s
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                [
                    (mx - mn) as f64,
                    band_power(s, fs, 1.0, 4.0),
                    band_power(s, fs, 30.0, 80.0),
                ]
            })
            .collect();
        let mut thr = [0.0; 3];
        for (j, t) in thr.iter_mut().enumerate() {
            let mut v: Vec<f64> = feats.iter().map(|f| f[j]).collect();
            let med = median(&mut v);
            let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
            let mad = median(&mut dev);
            *t = med + rule.k * 1.4826 * mad;
        }
        for (i, (s, f)) in segs.iter().zip(&feats).enumerate() {
            let ok = f[0] <= rule.max_ptp && (0..3).all(|j| f[j] <= thr[j]);
            if !ok {
                report.rejected += 1;
                continue;
            }
            report.kept += 1;
            let m = s.iter().map(|&v| v as f64).sum::<f64>() / s.len() as f64;
            out.push(Segment {
                samples: s.iter().map(|&v| (v as f64 - m) as f32).collect(),
                group: group_base + i as u64,
                origin: format!(
                    "{}:{}@{:.1}s",
                    rec.name,
                    label.trim(),
                    (edge + i * seg_len) as f64 / fs
                ),
            });
        }
    }
    Ok((out, report))
}

/// One clean segment from the physiological model, seeded by `(seed, index)`: a 1/f^beta
/// background (beta 1..2, 1-80 Hz) plus theta (4-8 Hz), alpha (8-12 Hz) and beta (13-30 Hz)
/// narrow-band rhythms, each under a slowly varying burst envelope; RMS 10-40 uV.
pub fn model_segment(seed: u64, index: u64, n: usize, fs: f64) -> Vec<f32> {
    let mut rng = Rng::derive(seed, index);
    let hi = 80.0f64.min(0.45 * fs);
    let beta_exp = rng.uniform(1.0, 2.0);
    let bg = shaped_noise(&mut rng, n, fs, |f| {
        if f < 0.5 {
            0.0
        } else {
            ramp(f, 0.5, 1.0) * (1.0 - ramp(f, hi - 2.0, hi)) * f.powf(-beta_exp / 2.0)
        }
    });
    let mut x = bg;
    let rhythms = [
        (4.0, 8.0, 0.2, 1.0),
        (8.0, 12.0, 0.3, 3.0),
        (13.0, 30.0, 0.1, 0.6),
    ];
    for (lo, hi_b, amin, amax) in rhythms {
        let fc = rng.uniform(lo, hi_b);
        let width = rng.uniform(0.5, 1.5);
        let osc = shaped_noise(&mut rng, n, fs, |f| {
            (-0.5 * ((f - fc) / width).powi(2)).exp()
        });
        // Burst envelope: a slow (< 1 Hz) random process mapped to 0.2..1.
        let env = shaped_noise(
            &mut rng,
            n,
            fs,
            |f| if f > 0.0 && f < 1.0 { 1.0 } else { 0.0 },
        );
        let amp = rng.uniform(amin, amax);
        for ((xi, o), e) in x.iter_mut().zip(&osc).zip(&env) {
            let w = 0.6 + 0.4 * (e * 1.2).tanh();
            *xi += amp * w * o;
        }
    }
    normalise_rms(&mut x);
    let scale = rng.uniform(10.0, 40.0);
    let m = x.iter().sum::<f64>() / n as f64;
    x.iter().map(|v| ((v - m) * scale) as f32).collect()
}

/// `count` model segments as their own groups (`group_base + i`).
pub fn model_segments(seed: u64, count: usize, n: usize, fs: f64, group_base: u64) -> Vec<Segment> {
    (0..count)
        .map(|i| Segment {
            samples: model_segment(seed, i as u64, n, fs),
            group: group_base + i as u64,
            origin: format!("model#{i}"),
        })
        .collect()
}

// ---------------------------------------------------------------- artifacts

fn events(rng: &mut Rng, n: usize, fs: f64, max_extra: u64) -> Vec<f64> {
    let count = 1 + rng.below(max_extra + 1);
    (0..count)
        .map(|_| rng.uniform(-0.1, n as f64 / fs - 0.1))
        .collect()
}

fn sigmoid(t: f64, width: f64) -> f64 {
    1.0 / (1.0 + (-t / width).exp())
}

/// One artifact waveform of `kind`, `n` samples at `fs`, unit RMS (arbitrary units: the
/// mixing SNR sets its scale).
pub fn artifact(kind: ArtifactKind, rng: &mut Rng, n: usize, fs: f64) -> Vec<f32> {
    let mut a = artifact_f64(kind, rng, n, fs);
    normalise_rms(&mut a);
    a.iter().map(|&v| v as f32).collect()
}

fn artifact_f64(kind: ArtifactKind, rng: &mut Rng, n: usize, fs: f64) -> Vec<f64> {
    let t = |i: usize| i as f64 / fs;
    let mut a = vec![0.0f64; n];
    match kind {
        ArtifactKind::Eog => {
            // Slow eye movement underneath the events (weight 0.1-0.4 of an event).
            let slow = shaped_noise(rng, n, fs, |f| if f > 0.0 && f < 1.0 { 1.0 } else { 0.0 });
            let w = rng.uniform(0.1, 0.4);
            a.iter_mut().zip(&slow).for_each(|(x, s)| *x += w * s);
            for t0 in events(rng, n, fs, 2) {
                if rng.next_f64() < 0.6 {
                    // Blink: asymmetric gamma-like bump, peak 120-200 ms after onset.
                    let (tau, kk, amp) = (
                        rng.uniform(0.12, 0.2),
                        rng.uniform(2.0, 3.5),
                        rng.uniform(0.7, 1.3),
                    );
                    for (i, x) in a.iter_mut().enumerate() {
                        let u = (t(i) - t0) / tau;
                        if u > 0.0 {
                            *x += amp * u.powf(kk) * (kk * (1.0 - u)).exp();
                        }
                    }
                } else {
                    // Saccade: fast step (15-40 ms edge), held, then a slower return.
                    let (edge, hold, amp) = (
                        rng.uniform(0.015, 0.04),
                        rng.uniform(0.2, 1.0),
                        rng.uniform(0.3, 0.9),
                    );
                    let sign = if rng.next_f64() < 0.5 { -1.0 } else { 1.0 };
                    let back = rng.uniform(0.05, 0.15);
                    for (i, x) in a.iter_mut().enumerate() {
                        let u = t(i) - t0;
                        *x += sign * amp * (sigmoid(u, edge) - sigmoid(u - hold, back));
                    }
                }
            }
        }
        ArtifactKind::Emg => {
            let hi = 150.0f64.min(0.49 * fs);
            let peak = rng.uniform(40.0, 80.0);
            let noise = shaped_noise(rng, n, fs, |f| {
                ramp(f, 15.0, 25.0)
                    * (1.0 - ramp(f, hi - 10.0, hi))
                    * (1.0 + (-((f - peak) / 30.0).powi(2)).exp())
            });
            let tonic = rng.uniform(0.0, 0.3);
            let mut env = vec![tonic; n];
            for t0 in events(rng, n, fs, 2) {
                let dur = rng.uniform(0.1, 1.0);
                let amp = rng.uniform(0.5, 1.5);
                for (i, e) in env.iter_mut().enumerate() {
                    let u = (t(i) - t0) / dur;
                    if (0.0..1.0).contains(&u) {
                        *e += amp * (std::f64::consts::PI * u).sin().powi(2).sqrt();
                    }
                }
            }
            a.iter_mut()
                .zip(noise.iter().zip(&env))
                .for_each(|(x, (s, e))| *x = s * e);
        }
        ArtifactKind::Line => {
            let f0 = if rng.next_f64() < 0.5 { 50.0 } else { 60.0 };
            let amps = [1.0, rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.15)];
            let (fm, depth) = (rng.uniform(0.1, 0.5), rng.uniform(0.0, 0.2));
            let phm = rng.uniform(0.0, std::f64::consts::TAU);
            for (h, amp) in amps.iter().enumerate() {
                let f = f0 * (h + 1) as f64;
                if f >= 0.5 * fs {
                    continue;
                }
                let ph = rng.uniform(0.0, std::f64::consts::TAU);
                for (i, x) in a.iter_mut().enumerate() {
                    let m = 1.0 + depth * (std::f64::consts::TAU * fm * t(i) + phm).sin();
                    *x += amp * m * (std::f64::consts::TAU * f * t(i) + ph).sin();
                }
            }
        }
        ArtifactKind::Pop => {
            for t0 in events(rng, n, fs, 1) {
                let t0 = t0.max(0.0);
                let (tau, amp) = (rng.uniform(0.05, 0.5), rng.uniform(0.5, 1.5));
                let sign = if rng.next_f64() < 0.5 { -1.0 } else { 1.0 };
                for (i, x) in a.iter_mut().enumerate() {
                    let u = t(i) - t0;
                    if u >= 0.0 {
                        *x += sign * amp * (-u / tau).exp();
                    }
                }
            }
        }
        ArtifactKind::Drift => {
            let slope = rng.uniform(-1.0, 1.0);
            for _ in 0..3 {
                let (f, amp, ph) = (
                    rng.uniform(0.05, 0.7),
                    rng.uniform(0.3, 1.0),
                    rng.uniform(0.0, 6.3),
                );
                for (i, x) in a.iter_mut().enumerate() {
                    *x += amp * (std::f64::consts::TAU * f * t(i) + ph).sin();
                }
            }
            let dur = n as f64 / fs;
            a.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x += slope * (t(i) / dur - 0.5));
        }
        ArtifactKind::Mixed => {
            let parts = [
                ArtifactKind::Eog,
                ArtifactKind::Emg,
                ArtifactKind::Line,
                ArtifactKind::Pop,
                ArtifactKind::Drift,
            ];
            let first = rng.below(parts.len() as u64) as usize;
            for (j, &k) in parts.iter().enumerate() {
                if j == first || rng.next_f64() < 0.4 {
                    let mut p = artifact_f64(k, rng, n, fs);
                    normalise_rms(&mut p);
                    let w = rng.uniform(0.3, 1.0);
                    a.iter_mut().zip(&p).for_each(|(x, v)| *x += w * v);
                }
            }
        }
    }
    a
}

/// Relative EOG amplitude at a 10-10 electrode (frontal weighting): 1 at Fp, decaying
/// towards the back of the head; used by [`contaminate_recording`].
pub fn eog_channel_weight(label: &str) -> f64 {
    let l = label.trim().trim_end_matches('.').to_ascii_uppercase();
    // Midline labels end in 'Z' (Fz, FCz): strip it so they share their row's weight.
    let prefix: String = l.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let prefix = if prefix.len() > 1 {
        prefix.trim_end_matches('Z').to_string()
    } else {
        prefix
    };
    match prefix.as_str() {
        "FP" => 1.0,
        "AF" => 0.7,
        "F" => 0.45,
        "FT" | "FC" => 0.25,
        "T" | "C" => 0.12,
        "TP" | "CP" => 0.07,
        _ => 0.04,
    }
}

/// Adds one `kind` artifact waveform to every channel of `rec`, scaled so its RMS is
/// `rms_uv` times the channel weight (frontal weighting for EOG, 1 otherwise). Used to build
/// realistic multichannel demo recordings.
pub fn contaminate_recording(rec: &mut Recording, kind: ArtifactKind, rms_uv: f64, seed: u64) {
    let n = rec.channels.first().map_or(0, Vec::len);
    let mut rng = Rng::new(seed);
    let art = artifact(kind, &mut rng, n, rec.sample_rate_hz);
    for (label, ch) in rec.labels.iter().zip(rec.channels.iter_mut()) {
        let w = if kind == ArtifactKind::Eog {
            eog_channel_weight(label)
        } else {
            1.0
        };
        for (x, a) in ch.iter_mut().zip(&art) {
            *x += (rms_uv * w) as f32 * a;
        }
    }
}

// ---------------------------------------------------------------- protocol

/// EEGdenoiseNet mixing: returns `clean + lambda * artifact` with lambda chosen so that
/// 10 log10(RMS(clean) / RMS(lambda * artifact)) = `snr_db`, and lambda (0 at +infinity dB:
/// an artifact-free window).
pub fn mix_at_snr(
    clean: &[f32],
    artifact: &[f32],
    snr_db: f64,
) -> Result<(Vec<f32>, f64), EvalError> {
    if clean.len() != artifact.len() {
        return Err(EvalError::LengthMismatch {
            expected: clean.len(),
            got: artifact.len(),
        });
    }
    let (rc, ra) = (super::metrics::rms(clean), super::metrics::rms(artifact));
    if rc == 0.0 {
        return Err(EvalError::ZeroEnergy {
            what: "clean segment",
        });
    }
    if ra == 0.0 {
        return Err(EvalError::ZeroEnergy { what: "artifact" });
    }
    let lambda = if snr_db == f64::INFINITY {
        0.0
    } else {
        rc / (ra * 10f64.powf(snr_db / 10.0))
    };
    let noisy = clean
        .iter()
        .zip(artifact)
        .map(|(&c, &a)| (c as f64 + lambda * a as f64) as f32)
        .collect();
    Ok((noisy, lambda))
}

/// Divides both signals by the std of `noisy` (EEGdenoiseNet: no mean removal), so the
/// network sees unit-variance input. Returns the std used.
pub fn zscore_by_noisy(noisy: &mut [f32], clean: &mut [f32]) -> f64 {
    let n = noisy.len().max(1) as f64;
    let m = noisy.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (noisy.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n).sqrt();
    if sd > 0.0 {
        noisy.iter_mut().for_each(|v| *v = (*v as f64 / sd) as f32);
        clean.iter_mut().for_each(|v| *v = (*v as f64 / sd) as f32);
    }
    sd
}

/// Train / validation / test partition of segments.
#[derive(Clone, Debug, Default)]
pub struct Splits {
    /// Training segments.
    pub train: Vec<Segment>,
    /// Validation segments (model selection).
    pub val: Vec<Segment>,
    /// Test segments (reported numbers only).
    pub test: Vec<Segment>,
}

/// Assigns whole groups to splits (seeded shuffle of the distinct groups, then
/// `fractions.0` of groups to train, `fractions.1` to validation, the rest to test; each
/// split gets at least one group when there are three or more).
pub fn split_segments(segments: Vec<Segment>, fractions: (f64, f64), seed: u64) -> Splits {
    let mut groups: Vec<u64> = segments.iter().map(|s| s.group).collect();
    groups.sort_unstable();
    groups.dedup();
    Rng::derive(seed, 0x5911).shuffle(&mut groups);
    let g = groups.len();
    let mut n_train = ((g as f64) * fractions.0).round() as usize;
    let mut n_val = ((g as f64) * fractions.1).round() as usize;
    if g >= 3 {
        n_train = n_train.clamp(1, g - 2);
        n_val = n_val.clamp(1, g - 1 - n_train);
    }
    let which: std::collections::HashMap<u64, u8> = groups
        .iter()
        .enumerate()
        .map(|(i, &gr)| {
            (
                gr,
                if i < n_train {
                    0
                } else if i < n_train + n_val {
                    1
                } else {
                    2
                },
            )
        })
        .collect();
    let mut s = Splits::default();
    for seg in segments {
        match which.get(&seg.group) {
            Some(0) => s.train.push(seg),
            Some(1) => s.val.push(seg),
            _ => s.test.push(seg),
        }
    }
    s
}

/// Where artifact waveforms come from: generated per window, or a bank of recorded ones
/// (EEGdenoiseNet's EOG/EMG epochs), drawn at random with a random crop.
#[derive(Clone, Copy, Debug)]
pub enum ArtifactSource<'a> {
    /// [`artifact`] with a fresh random draw per window.
    Generated,
    /// Recorded epochs at the data set's rate; each at least as long as the window.
    Bank(&'a [Vec<f32>]),
}

impl ArtifactSource<'_> {
    fn draw(
        &self,
        kind: ArtifactKind,
        rng: &mut Rng,
        n: usize,
        fs: f64,
    ) -> Result<Vec<f32>, EvalError> {
        match self {
            Self::Generated => Ok(artifact(kind, rng, n, fs)),
            Self::Bank(b) => {
                if b.is_empty() {
                    return Err(EvalError::Invalid("empty artifact bank".into()));
                }
                let e = &b[rng.below(b.len() as u64) as usize];
                if e.len() < n {
                    return Err(EvalError::TooShort {
                        needed: n,
                        got: e.len(),
                    });
                }
                let off = rng.below((e.len() - n + 1) as u64) as usize;
                Ok(e[off..off + n].to_vec())
            }
        }
    }
}

/// How the SNR of each window is chosen.
#[derive(Clone, Debug)]
pub enum SnrPlan {
    /// One window per (segment, level) for each fixed level (test protocol).
    Levels(Vec<f64>),
    /// `per_segment` windows per segment with SNR uniform in [lo, hi) (training).
    Uniform {
        /// Lower bound (dB).
        lo: f64,
        /// Upper bound (dB).
        hi: f64,
        /// Windows drawn from each segment.
        per_segment: usize,
    },
}

/// Builds z-scored windows of `win_len` samples from `segments`: each window is a crop
/// (random offset when the segment is longer) mixed with one `kind` artifact at the planned
/// SNR. Fully determined by `seed`.
pub fn make_windows(
    segments: &[Segment],
    kind: ArtifactKind,
    source: ArtifactSource<'_>,
    plan: &SnrPlan,
    win_len: usize,
    fs: f64,
    seed: u64,
) -> Result<Vec<Window>, EvalError> {
    let mut rng = Rng::derive(seed, 0xA271_FAC7 ^ kind as u64);
    let mut out = Vec::new();
    for seg in segments {
        if seg.samples.len() < win_len {
            return Err(EvalError::TooShort {
                needed: win_len,
                got: seg.samples.len(),
            });
        }
        let snrs: Vec<f64> = match plan {
            SnrPlan::Levels(l) => l.clone(),
            SnrPlan::Uniform {
                lo,
                hi,
                per_segment,
            } => (0..*per_segment).map(|_| rng.uniform(*lo, *hi)).collect(),
        };
        for snr in snrs {
            let off = rng.below((seg.samples.len() - win_len + 1) as u64) as usize;
            let crop = &seg.samples[off..off + win_len];
            let m = crop.iter().map(|&v| v as f64).sum::<f64>() / win_len as f64;
            let mut clean: Vec<f32> = crop.iter().map(|&v| (v as f64 - m) as f32).collect();
            let a = source.draw(kind, &mut rng, win_len, fs)?;
            let (mut noisy, _) = mix_at_snr(&clean, &a, snr)?;
            zscore_by_noisy(&mut noisy, &mut clean);
            out.push(Window {
                noisy,
                clean,
                snr_db: snr,
                kind,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditioning_resamples_and_notches() {
        // 10 Hz + 60 Hz at 160 Hz -> 256 Hz: 10 Hz kept at its amplitude, 60 Hz removed.
        let fs = 160.0;
        let x: Vec<f32> = (0..1600)
            .map(|i| {
                let t = i as f64 / fs;
                ((std::f64::consts::TAU * 10.0 * t).sin()
                    + (std::f64::consts::TAU * 60.0 * t).sin()) as f32
            })
            .collect();
        let y = condition_channel(&x, fs, 256.0, (1.0, 80.0), &[60.0]).unwrap();
        assert_eq!(y.len(), 2560);
        let want: Vec<f32> = (0..2560)
            .map(|i| (std::f64::consts::TAU * 10.0 * i as f64 / 256.0).sin() as f32)
            .collect();
        // Whole periods in the record: the spectral method is exact up to f32/f64 rounding.
        let err = y
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-4, "max error {err}");
    }

    #[test]
    fn eog_weight_is_frontal() {
        assert_eq!(eog_channel_weight("Fp1."), 1.0);
        assert!(eog_channel_weight("Fz..") > eog_channel_weight("Cz.."));
        assert!(eog_channel_weight("Cz..") > eog_channel_weight("Oz.."));
    }

    #[test]
    fn artifacts_have_unit_rms_and_expected_bands() {
        let fs = 256.0;
        let mut rng = Rng::new(1);
        for kind in ArtifactKind::ALL {
            let a = artifact(kind, &mut rng, 512, fs);
            let r = super::super::metrics::rms(&a);
            assert!((r - 1.0).abs() < 1e-5, "{kind:?} rms {r}");
        }
        // EMG: almost all power above 15 Hz; drift: almost all below 2 Hz.
        let emg = artifact(ArtifactKind::Emg, &mut rng, 512, fs);
        let total = band_power(&emg, fs, 0.0, 200.0);
        assert!(band_power(&emg, fs, 15.0, 200.0) / total > 0.95);
        let drift = artifact(ArtifactKind::Drift, &mut rng, 512, fs);
        let total = band_power(&drift, fs, 0.0, 200.0);
        assert!(band_power(&drift, fs, 0.0, 2.0) / total > 0.9);
    }

    #[test]
    fn model_segment_has_alpha_band_power() {
        let s = model_segment(3, 0, 2048, 256.0);
        let total = band_power(&s, 256.0, 0.0, 128.0);
        // Background 1/f plus rhythms: most power sits in 1-30 Hz and none below 0.5 Hz.
        assert!(band_power(&s, 256.0, 1.0, 30.0) / total > 0.8);
        assert!(band_power(&s, 256.0, 0.0, 0.4) / total < 1e-6);
    }
}
