//! Eye-artifact measures on real multi-channel recordings, for every method side by side:
//! the recording as is, a 1-40 Hz band-pass, ICA with the EOG-correlated components removed
//! (MNE's practice, [`super::ica`]), the single-channel SAE channel by channel, the reference
//! regression ([`crate::ocular::clean_block`], a measured alternative) on the raw reference and
//! on the SAE-isolated one, the multi-channel Wiener filter that `denoise` runs
//! ([`crate::ocular::mwf_block`]), and that filter followed by the single-channel SAE.
//!
//! The measures per method ([`MethodRow`]):
//! - **leakage**: mean over EEG channels (those not used to build a reference) and EOG
//!   references of |corr(EEG, reference)|, both band-passed to 1-8 Hz (zero phase). The
//!   references are the raw EOG channels, or, without any, the raw vertical frontal average
//!   (mean of Fp1/Fp2/Fpz or AF*): then it is a proxy every method is judged against, and a
//!   regression on that same raw reference drives it toward zero by construction.
//! - **blink-free change**: RRMSE between the cleaned and the raw EEG, both band-passed to
//!   1-40 Hz, over samples at least [`BLINK_MARGIN_S`] from any blink, per channel over all
//!   EEG channels, then averaged. Blinks are samples where the first reference, band-passed to
//!   1-8 Hz, exceeds [`BLINK_THRESHOLD`] robust standard deviations.
//! - **blink residual**: the blink-locked average (1-8 Hz, +-[`BLINK_EPOCH_S`] around each
//!   blink's peak on the first reference) over the EEG channels in the leakage mean, as the
//!   ratio of its energy after cleaning to before. Averaging over blinks cancels most EEG, so
//!   this is the share of the blink's own waveform left (1 = untouched, 0 = removed), the
//!   number leakage cannot give when blinks are a small part of the recording.
//! - **injected pops and drifts left**: every method runs again on the recording with
//!   single-electrode artifacts added ([`inject_electrode_artifacts`]); the share of them its
//!   output keeps ([`artifact_left`]): what a method that leaves clean EEG alone gives up.
//!
//! Key entry point: [`check_file`] -> [`FileReport`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::ica::{Ica, find_outliers};
use crate::core::MwfConfig;
use crate::denoise::microvolt_factor;
use crate::io::edf::{EdfError, EdfReader, select_channels};
use crate::io::filter::{Band, Filter, FilterError};
use crate::ocular::{
    Isolation, Isolator, OcularError, ReferenceKind, ReferencePlan, clean_block, find_references,
    mwf_block,
};

/// Distance from any blink sample, in seconds, for a sample to count as blink-free.
pub const BLINK_MARGIN_S: f64 = 0.6;
/// Blink threshold in robust standard deviations (1.4826 x median absolute deviation) of the
/// 1-8 Hz reference.
pub const BLINK_THRESHOLD: f64 = 5.0;
/// Half-width of the blink-locked epoch, in seconds.
pub const BLINK_EPOCH_S: f64 = 0.5;
/// ICA components at most (fewer when the montage has fewer channels).
pub const ICA_COMPONENTS: usize = 20;

/// Failures of [`check_file`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// Reading the file failed.
    #[error(transparent)]
    Edf(#[from] EdfError),
    /// The ocular stage failed.
    #[error("{}: {source}", .file.display())]
    Ocular {
        /// The file.
        file: PathBuf,
        /// The error.
        source: Box<OcularError>,
    },
    /// A filter could not be designed for this rate.
    #[error("{}: {source}", .file.display())]
    Filter {
        /// The file.
        file: PathBuf,
        /// The error.
        source: FilterError,
    },
    /// The file cannot be measured (no reference, mixed rates, non-voltage units, too short).
    #[error("{}: {problem}", .file.display())]
    Unusable {
        /// The file.
        file: PathBuf,
        /// Why.
        problem: String,
    },
}

/// One method's measures on one recording.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRow {
    /// Method name.
    pub method: String,
    /// Mean |corr(EEG, reference)| in 1-8 Hz.
    pub leakage: f64,
    /// Mean per-channel 1-40 Hz RRMSE against the raw EEG in blink-free spans.
    pub blink_free_change: f64,
    /// Energy of the blink-locked average after cleaning over before (NaN without blinks).
    pub blink_residual: f64,
    /// Share of the raw blink-locked average's shape still in the cleaned one: the
    /// least-squares coefficient of the cleaned average on the raw one (1 raw, 0 when the
    /// blink is gone). EEG that does not average out adds no floor here, so a method that
    /// also attenuates EEG does not look better than one that keeps it.
    pub blink_kept: f64,
    /// Wall-clock seconds the method took.
    pub seconds: f64,
    /// Share of injected electrode pops left ([`inject_electrode_artifacts`]): RMS of the
    /// method's output with them minus without, over their spans, relative to their RMS.
    pub pops_left: f64,
    /// The same for injected slow drifts.
    pub drift_left: f64,
}

/// The measures on one recording.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// What the references are.
    pub references: String,
    /// Sampling rate of the EEG channels.
    pub fs_hz: f64,
    /// EEG channels cleaned.
    pub channels: usize,
    /// Channels in the leakage mean.
    pub leakage_channels: usize,
    /// Recording length in seconds.
    pub seconds: f64,
    /// Blink events found (runs of above-threshold samples).
    pub blinks: usize,
    /// Blink events whose whole epoch lies inside the recording (the residual's average).
    pub blink_epochs: usize,
    /// The blink residual's floor: the same average over as many blink-free epochs (mean of
    /// 20 random draws), relative to the raw blink average: EEG that does not average out.
    pub blink_floor: f64,
    /// Seconds counted as blink-free.
    pub blink_free_s: f64,
    /// The raw recording's leakage over the blink-free samples alone: how much of the
    /// leakage is not blinks (EEG the references share, eye movements).
    pub blink_free_leakage: f64,
    /// ICA components removed, of how many.
    pub ica_removed: (Vec<usize>, usize),
    /// Streaming latency of the multi-channel Wiener filter (`mfr-eeg denoise`'s eye stage)
    /// in seconds.
    pub latency_s: f64,
    /// Streaming latency of the SAE-isolated regression in seconds.
    pub regression_latency_s: f64,
    /// One row per method.
    pub rows: Vec<MethodRow>,
}

impl FileReport {
    /// The report as Markdown: a `##` heading with the file, a line of what was found, and
    /// one table row per method.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(o, "## {}", self.path.display());
        let _ = writeln!(
            o,
            "{} EEG channels at {} Hz, {:.1} s; {}; {} blink events ({} in the blink-locked \
             average; its floor, blink-free epochs averaged alike: {:.3}), {:.1} s blink-free \
             (>= {BLINK_MARGIN_S} s from a blink); leakage over {} channels (raw, blink-free \
             samples alone: {:.3}); ICA removed \
             components {:?} of {}; streaming latency of the Wiener filter {:.3} s, of the \
             regression on the SAE-isolated reference {:.3} s\n",
            self.channels,
            self.fs_hz,
            self.seconds,
            self.references,
            self.blinks,
            self.blink_epochs,
            self.blink_floor,
            self.blink_free_s,
            self.leakage_channels,
            self.blink_free_leakage,
            self.ica_removed.0,
            self.ica_removed.1,
            self.latency_s,
            self.regression_latency_s
        );
        let _ = writeln!(
            o,
            "| method | mean abs corr(EEG, ref) 1-8 Hz | blink left (blink-locked average) | \
             blink shape kept | blink-free 1-40 Hz change (RRMSE) | injected pops left | \
             injected drift left | time (s) |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
        for row in &self.rows {
            let _ = writeln!(
                o,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} |",
                row.method,
                row.leakage,
                row.blink_residual,
                row.blink_kept,
                row.blink_free_change,
                row.pops_left,
                row.drift_left,
                row.seconds
            );
        }
        o
    }
}

/// Length in seconds of the spans electrode artifacts are injected into.
pub const INJECT_SPAN_S: f64 = 4.0;

/// Where [`inject_electrode_artifacts`] put its artifacts: `(channel, start, end)` sample
/// spans of the block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InjectedSpans {
    /// Spans with an electrode pop.
    pub pops: Vec<(usize, usize, usize)>,
    /// Spans with a slow drift.
    pub drift: Vec<(usize, usize, usize)>,
}

/// `raw` with artifacts of single electrodes added to the channels `chans` (those that build
/// no reference, so the eye stage's references stay as recorded): the recording is cut into
/// [`INJECT_SPAN_S`] spans, and on each channel every fourth span gets a pop (a step decaying
/// over 0.05-0.5 s, faded out over the span's last 0.5 s) and the span two after it a drift
/// (sines of 0.05-0.7 Hz and a slope, faded in and out over 0.5 s), staggered across channels,
/// each at the RMS of the channel's typical span (the median over spans of their standard
/// deviation): 0 dB, the middle of the benchmark's SNR range. Deterministic by `seed`.
pub fn inject_electrode_artifacts(
    raw: &[Vec<f32>],
    chans: &[usize],
    fs: f64,
    seed: u64,
) -> (Vec<Vec<f32>>, InjectedSpans) {
    use super::data::{ArtifactKind, artifact};
    let mut out = raw.to_vec();
    let mut spans = InjectedSpans::default();
    let len = (INJECT_SPAN_S * fs).round() as usize;
    let fade = ((0.5 * fs).round() as usize).clamp(1, len / 2);
    let mut rng = crate::rng::Rng::new(seed ^ 0x1e1e_c7d0);
    for (p, &c) in chans.iter().enumerate() {
        let x = &raw[c];
        let count = x.len() / len;
        let mut sds: Vec<f64> = (0..count)
            .map(|j| {
                let s = &x[j * len..(j + 1) * len];
                let m = s.iter().map(|&v| f64::from(v)).sum::<f64>() / len as f64;
                (s.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / len as f64).sqrt()
            })
            .collect();
        sds.sort_by(f64::total_cmp);
        let Some(&level) = sds.get(sds.len() / 2) else {
            continue;
        };
        for j in 0..count {
            let (kind, list) = match (j + p) % 4 {
                0 => (ArtifactKind::Pop, &mut spans.pops),
                2 => (ArtifactKind::Drift, &mut spans.drift),
                _ => continue,
            };
            let mut a = artifact(kind, &mut rng, len, fs);
            for (i, v) in a.iter_mut().enumerate() {
                let end = ((len - i) as f64 / fade as f64).min(1.0);
                let start = if kind == ArtifactKind::Drift {
                    ((i + 1) as f64 / fade as f64).min(1.0)
                } else {
                    1.0
                };
                *v *= (level * start * end) as f32;
            }
            let at = j * len;
            for (o, v) in out[c][at..at + len].iter_mut().zip(&a) {
                *o += v;
            }
            list.push((c, at, at + len));
        }
    }
    (out, spans)
}

/// How much of the artifacts injected into `raw` (giving `injected`) over `spans` a method
/// left: RMS of its output on `injected` minus its output on `raw`, relative to the RMS of
/// the artifacts (0: removed whole and nothing else changed; 1: passed through). NaN
/// without spans.
pub fn artifact_left(
    out_raw: &[Vec<f32>],
    out_injected: &[Vec<f32>],
    raw: &[Vec<f32>],
    injected: &[Vec<f32>],
    spans: &[(usize, usize, usize)],
) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for &(c, a, b) in spans {
        for i in a..b {
            num += (f64::from(out_injected[c][i]) - f64::from(out_raw[c][i])).powi(2);
            den += (f64::from(injected[c][i]) - f64::from(raw[c][i])).powi(2);
        }
    }
    if den > 0.0 {
        (num / den).sqrt()
    } else {
        f64::NAN
    }
}

fn zero_phase(x: &[f32], band: Band, fs: f64) -> Result<Vec<f32>, FilterError> {
    let f = Filter::butterworth(band, 4, fs)?;
    let mut y = x.to_vec();
    f.filtfilt(&mut y);
    Ok(y)
}

fn corr(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let mb = b.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (mut c, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        c += x * y;
        va += x * x;
        vb += y * y;
    }
    if va <= 0.0 || vb <= 0.0 {
        0.0
    } else {
        c / (va * vb).sqrt()
    }
}

/// Blink-free mask (true = at least `margin_s` from any blink sample) and the blink count,
/// from a reference band-passed to 1-8 Hz.
pub fn blink_free_mask(reference_1_8: &[f32], fs: f64, margin_s: f64) -> (Vec<bool>, usize) {
    let x: Vec<f64> = reference_1_8.iter().map(|&v| f64::from(v)).collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let med = median(&mut x.clone());
    let mad = median(&mut x.iter().map(|v| (v - med).abs()).collect());
    let sigma = (1.4826 * mad).max(1e-12);
    let blink: Vec<bool> = x
        .iter()
        .map(|v| (v - med).abs() > BLINK_THRESHOLD * sigma)
        .collect();
    let blinks = blink
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b && (i == 0 || !blink[i - 1]))
        .count();
    let m = (margin_s * fs).round() as isize;
    let n = blink.len();
    let mut free = vec![true; n];
    for (i, &b) in blink.iter().enumerate() {
        if b {
            let lo = (i as isize - m).max(0) as usize;
            let hi = ((i as isize + m) as usize).min(n - 1);
            free[lo..=hi].fill(false);
        }
    }
    (free, blinks)
}

/// The peak sample of each blink event (a run of samples beyond [`BLINK_THRESHOLD`] robust
/// standard deviations of the 1-8 Hz reference), in order; runs closer than `merge` samples
/// count as one event.
pub fn blink_peaks(reference_1_8: &[f32], merge: usize) -> Vec<usize> {
    let x: Vec<f64> = reference_1_8.iter().map(|&v| f64::from(v)).collect();
    if x.is_empty() {
        return Vec::new();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let med = median(&mut x.clone());
    let mad = median(&mut x.iter().map(|v| (v - med).abs()).collect());
    let limit = BLINK_THRESHOLD * (1.4826 * mad).max(1e-12);
    let mut peaks: Vec<usize> = Vec::new();
    let mut last_above: Option<usize> = None;
    for (i, v) in x.iter().enumerate() {
        let d = (v - med).abs();
        if d <= limit {
            continue;
        }
        match (last_above, peaks.last_mut()) {
            (Some(j), Some(p)) if i - j <= merge => {
                if d > (x[*p] - med).abs() {
                    *p = i;
                }
            }
            _ => peaks.push(i),
        }
        last_above = Some(i);
    }
    peaks
}

/// Blink-locked average of each channel over the epochs `[p - half, p + half]`.
fn blink_average(x: &[Vec<f32>], peaks: &[usize], half: usize) -> Vec<Vec<f64>> {
    x.iter()
        .map(|c| {
            let mut avg = vec![0.0f64; 2 * half + 1];
            for &p in peaks {
                for (a, &v) in avg.iter_mut().zip(&c[p - half..=p + half]) {
                    *a += f64::from(v);
                }
            }
            let n = peaks.len().max(1) as f64;
            avg.iter_mut().for_each(|a| *a /= n);
            avg
        })
        .collect()
}

/// Energy ratio of the cleaned blink-locked average to the raw one.
fn blink_residual(raw_avg: &[Vec<f64>], cleaned_avg: &[Vec<f64>]) -> f64 {
    let energy = |v: &[Vec<f64>]| v.iter().flatten().map(|a| a * a).sum::<f64>();
    let den = energy(raw_avg);
    if den > 0.0 {
        (energy(cleaned_avg) / den).sqrt()
    } else {
        f64::NAN
    }
}

/// Least-squares coefficient of the cleaned blink-locked average on the raw one.
fn blink_kept(raw_avg: &[Vec<f64>], cleaned_avg: &[Vec<f64>]) -> f64 {
    let (mut dot, mut den) = (0.0f64, 0.0f64);
    for (r, c) in raw_avg.iter().zip(cleaned_avg) {
        for (a, b) in r.iter().zip(c) {
            dot += a * b;
            den += a * a;
        }
    }
    if den > 0.0 { dot / den } else { f64::NAN }
}

/// Mean |corr| of `eeg` channels (1-8 Hz) with each reference (1-8 Hz).
fn leakage(eeg_1_8: &[Vec<f32>], refs_1_8: &[Vec<f32>]) -> f64 {
    let mut s = 0.0;
    let mut k = 0;
    for r in refs_1_8 {
        for x in eeg_1_8 {
            s += corr(x, r).abs();
            k += 1;
        }
    }
    s / k.max(1) as f64
}

/// [`leakage`] over the `keep` samples only.
fn leakage_on(eeg_1_8: &[Vec<f32>], refs_1_8: &[Vec<f32>], keep: &[bool]) -> f64 {
    let pick = |x: &Vec<f32>| -> Vec<f32> {
        x.iter()
            .zip(keep)
            .filter(|&(_, &k)| k)
            .map(|(&v, _)| v)
            .collect()
    };
    let eeg: Vec<Vec<f32>> = eeg_1_8.iter().map(pick).collect();
    let refs: Vec<Vec<f32>> = refs_1_8.iter().map(pick).collect();
    leakage(&eeg, &refs)
}

/// Mean over channels of the 1-40 Hz RRMSE of `cleaned` against `raw` on `free` samples.
fn blink_free_change(raw_1_40: &[Vec<f32>], cleaned_1_40: &[Vec<f32>], free: &[bool]) -> f64 {
    let mut total = 0.0;
    for (x, y) in raw_1_40.iter().zip(cleaned_1_40) {
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for ((&a, &b), &f) in x.iter().zip(y).zip(free) {
            if f {
                num += (f64::from(b) - f64::from(a)).powi(2);
                den += f64::from(a).powi(2);
            }
        }
        total += if den > 0.0 { (num / den).sqrt() } else { 0.0 };
    }
    total / raw_1_40.len().max(1) as f64
}

/// Measures every method on one EDF/BDF file (see the module docs). `eog` names the EOG
/// channels (else they are found by label, else the frontal references are used); `isolator`
/// is the SAE; `seed` seeds ICA.
pub fn check_file(
    path: &Path,
    eog: Option<&[String]>,
    isolator: Isolator<'_>,
    seed: u64,
) -> Result<FileReport, CheckError> {
    let unusable = |problem: String| CheckError::Unusable {
        file: path.to_path_buf(),
        problem,
    };
    let ocular = |source: OcularError| CheckError::Ocular {
        file: path.to_path_buf(),
        source: Box::new(source),
    };
    let filt = |source: FilterError| CheckError::Filter {
        file: path.to_path_buf(),
        source,
    };
    let mut reader = EdfReader::open(path)?;
    let header = reader.header().clone();
    let sigs = header.signals();
    let labels: Vec<String> = sigs.iter().map(|s| s.label.clone()).collect();
    let plan: ReferencePlan = find_references(&labels, eog)
        .map_err(ocular)?
        .ok_or_else(|| unusable("no EOG channel and no frontal channel (Fp*/AF*/F7-F8)".into()))?;
    let eeg: Vec<usize> = select_channels(&header, None)
        .map_err(|e| e.in_file(path))?
        .into_iter()
        .filter(|&c| {
            !plan
                .references
                .iter()
                .any(|r| plan.kind == ReferenceKind::Eog && r.plus.contains(&c))
        })
        .collect();
    let mut needed: Vec<usize> = eeg.clone();
    for r in &plan.references {
        for c in r.channels() {
            if !needed.contains(&c) {
                needed.push(c);
            }
        }
    }
    let fs = header.sample_rate(needed[0]);
    if let Some(&c) = needed.iter().find(|&&c| header.sample_rate(c) != fs) {
        return Err(unusable(format!(
            "channel {:?} is {} Hz, the others {fs} Hz; one rate is needed",
            sigs[c].label.trim(),
            header.sample_rate(c)
        )));
    }
    let mut data = reader.read_channels_physical(&needed)?;
    for (&c, x) in needed.iter().zip(data.iter_mut()) {
        let f = microvolt_factor(&sigs[c].physical_dimension).ok_or_else(|| {
            unusable(format!(
                "channel {:?}: unit {:?} is not a voltage",
                sigs[c].label.trim(),
                sigs[c].physical_dimension.trim()
            ))
        })?;
        if f != 1.0 {
            for v in x.iter_mut() {
                *v = (f64::from(*v) * f) as f32;
            }
        }
    }
    let n = data[0].len();
    if (n as f64) < 4.0 * fs {
        return Err(unusable(format!("{n} samples is under 4 s")));
    }
    let pos = |c: usize| needed.iter().position(|&x| x == c).expect("read above");
    let refs: Vec<Vec<f32>> = plan
        .references
        .iter()
        .map(|r| r.signal(|c| &data[pos(c)][..]))
        .collect();
    let raw: Vec<Vec<f32>> = eeg.iter().map(|&c| data[pos(c)].clone()).collect();
    let ref_chans: Vec<usize> = plan.references.iter().flat_map(|r| r.channels()).collect();
    let leak_idx: Vec<usize> = (0..eeg.len())
        .filter(|&i| !ref_chans.contains(&eeg[i]))
        .collect();
    if leak_idx.is_empty() {
        return Err(unusable(
            "every EEG channel builds a reference; no channel left to measure".into(),
        ));
    }

    let b18 = Band::BandPass { lo: 1.0, hi: 8.0 };
    let b140 = Band::BandPass {
        lo: 1.0,
        hi: 40.0_f64.min(0.45 * fs),
    };
    let refs_18: Vec<Vec<f32>> = refs
        .iter()
        .map(|r| zero_phase(r, b18, fs))
        .collect::<Result<_, _>>()
        .map_err(filt)?;
    let (free, blinks) = blink_free_mask(&refs_18[0], fs, BLINK_MARGIN_S);
    let half = (BLINK_EPOCH_S * fs).round() as usize;
    let epochs: Vec<usize> = blink_peaks(&refs_18[0], half)
        .into_iter()
        .filter(|&p| p >= half && p + half < n)
        .collect();
    // Frontal differences (F7-F8) are mostly EEG; only recorded EOG channels or the vertical
    // frontal average stand for the EOG in the leakage.
    let leak_refs: Vec<Vec<f32>> = match plan.kind {
        ReferenceKind::Eog => refs_18.clone(),
        ReferenceKind::Frontal => refs_18[..1].to_vec(),
    };
    let raw_140: Vec<Vec<f32>> = raw
        .iter()
        .map(|x| zero_phase(x, b140, fs))
        .collect::<Result<_, _>>()
        .map_err(filt)?;
    let raw_18: Vec<Vec<f32>> = leak_idx
        .iter()
        .map(|&i| zero_phase(&raw[i], b18, fs))
        .collect::<Result<_, _>>()
        .map_err(filt)?;
    let raw_blink = blink_average(&raw_18, &epochs, half);
    let blink_free_leakage = leakage_on(&raw_18, &leak_refs, &free);
    let centres: Vec<usize> = (half..n.saturating_sub(half))
        .filter(|&p| free[p])
        .collect();
    let blink_floor = if epochs.is_empty() || centres.is_empty() {
        f64::NAN
    } else {
        let mut rng = crate::rng::Rng::new(seed ^ 0x5eed_b11c);
        let draws = 20;
        (0..draws)
            .map(|_| {
                let pick: Vec<usize> = (0..epochs.len())
                    .map(|_| centres[rng.below(centres.len() as u64) as usize])
                    .collect();
                blink_residual(&raw_blink, &blink_average(&raw_18, &pick, half))
            })
            .sum::<f64>()
            / f64::from(draws)
    };
    let measure =
        |name: &str, cleaned: &[Vec<f32>], seconds: f64| -> Result<MethodRow, CheckError> {
            let c18: Vec<Vec<f32>> = leak_idx
                .iter()
                .map(|&i| zero_phase(&cleaned[i], b18, fs))
                .collect::<Result<_, _>>()
                .map_err(filt)?;
            let (residual, kept) = if epochs.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                let avg = blink_average(&c18, &epochs, half);
                (
                    blink_residual(&raw_blink, &avg),
                    blink_kept(&raw_blink, &avg),
                )
            };
            let c140: Vec<Vec<f32>> = cleaned
                .iter()
                .map(|x| zero_phase(x, b140, fs))
                .collect::<Result<_, _>>()
                .map_err(filt)?;
            Ok(MethodRow {
                method: name.to_string(),
                leakage: leakage(&c18, &leak_refs),
                blink_free_change: blink_free_change(&raw_140, &c140, &free),
                blink_residual: residual,
                blink_kept: kept,
                seconds,
                pops_left: f64::NAN,
                drift_left: f64::NAN,
            })
        };

    // Every method on `raw` (the recording, or it with artifacts injected): name, output,
    // seconds; and the ICA components removed.
    type Outputs = (Vec<(String, Vec<Vec<f32>>, f64)>, Vec<usize>);
    let run_all = |raw: &[Vec<f32>]| -> Result<Outputs, CheckError> {
        let mut rows = Vec::new();
        rows.push(("raw".to_string(), raw.to_vec(), 0.0));

        let t = Instant::now();
        let bp: Vec<Vec<f32>> = raw
            .iter()
            .map(|x| zero_phase(x, b140, fs))
            .collect::<Result<_, _>>()
            .map_err(filt)?;
        rows.push((
            "band-pass 1-40 Hz".to_string(),
            bp.clone(),
            t.elapsed().as_secs_f64(),
        ));

        // ICA as MNE runs it: fitted on 1-40 Hz data, components whose 1-10 Hz time course
        // correlates with a 1-10 Hz reference as an outlier (z > 3) removed from the raw data.
        let t = Instant::now();
        let k = ICA_COMPONENTS.min(raw.len());
        let ica = Ica::fit(&bp, k, seed, 400);
        let b110 = Band::BandPass { lo: 1.0, hi: 10.0 };
        let src = ica.sources(raw);
        let src_110: Vec<Vec<f32>> = src
            .iter()
            .map(|s| zero_phase(s, b110, fs))
            .collect::<Result<_, _>>()
            .map_err(filt)?;
        let mut excluded = Vec::new();
        for r in &refs {
            let r110 = zero_phase(r, b110, fs).map_err(filt)?;
            let scores: Vec<f64> = src_110.iter().map(|s| corr(s, &r110)).collect();
            for i in find_outliers(&scores, 3.0) {
                if !excluded.contains(&i) {
                    excluded.push(i);
                }
            }
        }
        excluded.sort_unstable();
        let mut ica_clean = raw.to_vec();
        ica.remove(&mut ica_clean, &excluded);
        rows.push((
            format!("ICA ({} of {k} removed)", excluded.len()),
            ica_clean,
            t.elapsed().as_secs_f64(),
        ));

        let t = Instant::now();
        // Each channel through one isolator's model.
        let denoise_all = |iso: &Isolator<'_>, chans: &[Vec<f32>]| -> Result<Vec<Vec<f32>>, _> {
            chans
                .iter()
                .map(|x| iso.denoise(x, fs))
                .collect::<Result<_, _>>()
                .map_err(ocular)
        };
        let single = denoise_all(&isolator, raw)?;
        let single_s = t.elapsed().as_secs_f64();
        rows.push(("mfr-eeg single-channel SAE".to_string(), single, single_s));

        for (name, iso, gated) in [
            ("regression on raw reference", Isolation::Raw, false),
            ("regression on gated raw reference", Isolation::Raw, true),
            (
                "regression on SAE-isolated reference",
                Isolation::Sae(isolator),
                false,
            ),
            (
                "regression on gated SAE-isolated reference",
                Isolation::Sae(isolator),
                true,
            ),
        ] {
            let t = Instant::now();
            let mut cleaned = raw.to_vec();
            clean_block(&mut cleaned, &refs, fs, iso, gated).map_err(ocular)?;
            rows.push((name.to_string(), cleaned, t.elapsed().as_secs_f64()));
        }
        // The multi-channel Wiener filter: every EEG channel and the EOG channels enter it; blinks
        // are detected on the raw references, or on their SAE-isolated artifact part.
        let extra: Vec<Vec<f32>> = match plan.kind {
            ReferenceKind::Eog => plan
                .references
                .iter()
                .flat_map(|r| r.channels())
                .filter(|c| !eeg.contains(c))
                .map(|c| data[pos(c)].clone())
                .collect(),
            ReferenceKind::Frontal => Vec::new(),
        };
        let isolated: Vec<Vec<f32>> = refs
            .iter()
            .map(|r| isolator.residual(r, fs))
            .collect::<Result<_, _>>()
            .map_err(ocular)?;
        let mut spatial = None;
        for (name, detect) in [
            (
                "MWF, blinks detected on the SAE-isolated reference",
                &isolated,
            ),
            (
                "mfr-eeg eye stage (MWF, blinks on the raw reference)",
                &refs,
            ),
        ] {
            let t = Instant::now();
            let mut cleaned = raw.to_vec();
            let rep =
                mwf_block(&mut cleaned, &extra, detect, MwfConfig::for_rate(fs)).map_err(ocular)?;
            let secs = t.elapsed().as_secs_f64();
            let name = format!(
                "{name} (final lambda {:.1}, reference corr {:.2}{})",
                rep.lambda,
                rep.reference_corr,
                if rep.active { "" } else { ", off" }
            );
            spatial = Some((cleaned.clone(), secs));
            rows.push((name, cleaned, secs));
        }
        // What `mfr-eeg denoise` does: the eye stage, then each channel's own model with the
        // gate for channels the eye stage cleans; with `--gate model`, the model's own gate; with
        // `--keep-slow`, the model correcting only the fast part.
        let (spatial, spatial_s) = spatial.expect("run above");
        let with_gate = |opts: crate::denoise::DenoiseOptions| Isolator {
            sae: isolator
                .sae
                .with_validated_blend(crate::denoise::eye_stage_gate(
                    &opts,
                    isolator.sae.blend(),
                    isolator.rate_hz,
                )),
            ..isolator
        };
        let default = crate::denoise::DenoiseOptions::default();
        for (name, model) in [
            (
                "mfr-eeg denoise: eye stage then single-channel SAE",
                with_gate(default.clone()),
            ),
            (
                "mfr-eeg denoise --gate model: the model's gate after the eye stage",
                with_gate(crate::denoise::DenoiseOptions {
                    gate: crate::denoise::GateChoice::Model,
                    ..default.clone()
                }),
            ),
            (
                "mfr-eeg denoise --keep-slow: eye stage then the SAE's fast corrections",
                with_gate(crate::denoise::DenoiseOptions {
                    keep_slow: true,
                    ..default
                }),
            ),
        ] {
            let t = Instant::now();
            let cleaned = denoise_all(&model, &spatial)?;
            rows.push((
                name.to_string(),
                cleaned,
                spatial_s + t.elapsed().as_secs_f64(),
            ));
        }
        Ok((rows, excluded))
    };
    let (outputs, excluded) = run_all(&raw)?;
    let k = ICA_COMPONENTS.min(raw.len());
    let mut rows = outputs
        .iter()
        .map(|(name, cleaned, secs)| measure(name, cleaned, *secs))
        .collect::<Result<Vec<_>, _>>()?;
    let (injected, spans) = inject_electrode_artifacts(&raw, &leak_idx, fs, seed);
    let (outputs_inj, _) = run_all(&injected)?;
    for ((row, (_, clean_out, _)), (_, inj_out, _)) in
        rows.iter_mut().zip(&outputs).zip(&outputs_inj)
    {
        row.pops_left = artifact_left(clean_out, inj_out, &raw, &injected, &spans.pops);
        row.drift_left = artifact_left(clean_out, inj_out, &raw, &injected, &spans.drift);
    }

    Ok(FileReport {
        path: path.to_path_buf(),
        references: plan.describe(),
        fs_hz: fs,
        channels: raw.len(),
        leakage_channels: leak_idx.len(),
        seconds: n as f64 / fs,
        blinks,
        blink_epochs: epochs.len(),
        blink_floor,
        blink_free_s: free.iter().filter(|&&f| f).count() as f64 / fs,
        blink_free_leakage,
        ica_removed: (excluded, k),
        latency_s: MwfConfig::for_rate(fs).delay as f64 / fs,
        regression_latency_s: isolator.latency_s(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Injected artifacts sit in their spans only, staggered across the channels asked for,
    /// start and end near zero where faded, and reach the channel's typical level; a method
    /// that passes them leaves 1, one that removes them exactly 0.
    #[test]
    fn injected_electrode_artifacts_are_where_they_are_said_to_be() {
        let fs = 100.0;
        let n = 4000; // ten 4 s spans
        let mut rng = crate::rng::Rng::new(3);
        let raw: Vec<Vec<f32>> = (0..3)
            .map(|c| {
                (0..n)
                    .map(|_| ((c as f64 + 1.0) * rng.uniform(-1.0, 1.0)) as f32)
                    .collect()
            })
            .collect();
        let (inj, spans) = inject_electrode_artifacts(&raw, &[1, 2], fs, 7);
        assert_eq!(inj[0], raw[0]);
        // Channel 1 (position 0): pops in spans 0, 4, 8, drift in 2, 6; channel 2 shifted.
        let starts = |v: &[(usize, usize, usize)], c: usize| -> Vec<usize> {
            v.iter().filter(|s| s.0 == c).map(|s| s.1 / 400).collect()
        };
        assert_eq!(starts(&spans.pops, 1), [0, 4, 8]);
        assert_eq!(starts(&spans.drift, 1), [2, 6]);
        assert_eq!(starts(&spans.pops, 2), [3, 7]);
        assert_eq!(starts(&spans.drift, 2), [1, 5, 9]);
        for c in 1..3 {
            let added: Vec<f64> = (0..n)
                .map(|i| f64::from(inj[c][i]) - f64::from(raw[c][i]))
                .collect();
            let inside = |i: usize| {
                spans
                    .pops
                    .iter()
                    .chain(&spans.drift)
                    .any(|&(cc, a, b)| cc == c && (a..b).contains(&i))
            };
            assert!((0..n).filter(|&i| !inside(i)).all(|i| added[i] == 0.0));
            for &(_, a, b) in spans.drift.iter().filter(|s| s.0 == c) {
                let rms = (added[a..b].iter().map(|v| v * v).sum::<f64>() / 400.0).sqrt();
                // Uniform noise of half-width c + 1: sd (c + 1) / sqrt(3); the fades take
                // a little off.
                let level = (c as f64 + 1.0) / 3f64.sqrt();
                assert!((0.7 * level..1.05 * level).contains(&rms), "{rms} {level}");
                assert!(added[a].abs() < 0.1 * level && added[b - 1].abs() < 0.1 * level);
            }
        }
        let left = |out_inj: &[Vec<f32>]| artifact_left(&raw, out_inj, &raw, &inj, &spans.pops);
        assert!((left(&inj) - 1.0).abs() < 1e-9);
        assert_eq!(left(&raw), 0.0);
        assert!(artifact_left(&raw, &inj, &raw, &inj, &[]).is_nan());
    }

    /// A third of the blink left under EEG that is orthogonal to it: the residual counts the
    /// EEG, the kept share does not.
    #[test]
    fn the_kept_share_ignores_what_is_not_the_blink() {
        let raw = vec![vec![0.0, 2.0, 4.0, 2.0, 0.0], vec![0.0, 1.0, 2.0, 1.0, 0.0]];
        let eeg = [
            vec![1.0, 0.0, 0.0, 0.0, -1.0],
            vec![0.0, 2.0, 0.0, -2.0, 0.0],
        ];
        let cleaned: Vec<Vec<f64>> = raw
            .iter()
            .zip(&eeg)
            .map(|(r, e)| r.iter().zip(e).map(|(a, b)| a / 3.0 + b).collect())
            .collect();
        assert!((blink_kept(&raw, &cleaned) - 1.0 / 3.0).abs() < 1e-12);
        assert!(blink_residual(&raw, &cleaned) > 0.5);
        assert_eq!(blink_kept(&raw, &raw), 1.0);
        assert!(blink_kept(&[vec![0.0; 3]], &[vec![1.0; 3]]).is_nan());
    }
}
