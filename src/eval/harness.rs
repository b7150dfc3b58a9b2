//! The benchmark harness: runs denoising methods on the same test windows, aggregates the
//! metrics per method x artifact x SNR level, and writes `report.md`, `report.json` and PNG
//! figures. The pieces that need a trained model or the trainer (SAE method, MFR sweep,
//! speed) are filled in by `mfr-eeg bench`; everything here is plain data + rendering so it
//! is testable at tiny size.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::EvalError;
use super::baselines::BandPass;
use super::baselines::wavelet::WaveletDenoiser;
use super::data::{ArtifactKind, Window};
use super::metrics::{WindowMetrics, spectral_nperseg};
use super::npy::write_atomic;
use super::welch::Welch;

/// A denoising method under test: one window in, one window out (same length, same units).
pub trait Method {
    /// Short name for tables.
    fn name(&self) -> String;
    /// Denoises one window.
    fn denoise(&mut self, x: &[f32]) -> Result<Vec<f32>, EvalError>;
}

/// The noisy input itself (the "no processing" reference row).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unprocessed;

impl Method for Unprocessed {
    fn name(&self) -> String {
        "noisy input".into()
    }
    fn denoise(&mut self, x: &[f32]) -> Result<Vec<f32>, EvalError> {
        Ok(x.to_vec())
    }
}

impl Method for BandPass {
    fn name(&self) -> String {
        format!("band-pass {}-{} Hz + notch", self.lo_hz, self.hi_hz)
    }
    fn denoise(&mut self, x: &[f32]) -> Result<Vec<f32>, EvalError> {
        Ok(BandPass::denoise(self, x))
    }
}

impl Method for super::baselines::wavelet::SlowArtifactWavelet {
    fn name(&self) -> String {
        super::baselines::wavelet::SlowArtifactWavelet::name(self)
    }
    fn denoise(&mut self, x: &[f32]) -> Result<Vec<f32>, EvalError> {
        super::baselines::wavelet::SlowArtifactWavelet::denoise(self, x)
    }
}

impl Method for WaveletDenoiser {
    fn name(&self) -> String {
        "wavelet db4 soft (universal)".into()
    }
    fn denoise(&mut self, x: &[f32]) -> Result<Vec<f32>, EvalError> {
        WaveletDenoiser::denoise(self, x)
    }
}

/// Mean metrics of one method on one artifact kind at one SNR level (or over all levels
/// when `snr_db` is `None`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QualityRow {
    /// Method name.
    pub method: String,
    /// Artifact kind.
    pub kind: ArtifactKind,
    /// SNR level (dB), `None` for the average over levels.
    pub snr_db: Option<f64>,
    /// Windows averaged.
    pub n: usize,
    /// Mean RRMSE_t.
    pub rrmse_t: f64,
    /// Mean RRMSE_s.
    pub rrmse_s: f64,
    /// Mean CC.
    pub cc: f64,
    /// Mean SNR improvement (dB).
    pub snr_imp_db: f64,
}

/// Everything [`evaluate`] measured.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    /// Per SNR level rows, then per-kind averages (`snr_db: None`).
    pub rows: Vec<QualityRow>,
    /// Mean Welch PSD per (kind, series index): index 0 is the clean signal, i + 1 method i;
    /// value is (series name, PSD).
    pub psds: BTreeMap<(String, usize), (String, Vec<f64>)>,
    /// One example window per kind (median SNR level): series name -> samples.
    pub examples: BTreeMap<String, Vec<(String, Vec<f32>)>>,
}

#[derive(Default)]
struct Acc {
    n: usize,
    m: [f64; 4],
}

/// Runs every method on every window and aggregates. Windows of several kinds and SNR levels
/// may be mixed; levels are grouped by exact value.
pub fn evaluate(
    methods: &mut [Box<dyn Method + '_>],
    windows: &[Window],
    fs: f64,
) -> Result<Evaluation, EvalError> {
    let Some(first) = windows.first() else {
        return Err(EvalError::Invalid("no test windows".into()));
    };
    let welch = Welch::new(spectral_nperseg(first.clean.len(), fs))?;
    let names: Vec<String> = methods.iter().map(|m| m.name()).collect();
    let mut acc: BTreeMap<(usize, ArtifactKind, i64), Acc> = BTreeMap::new();
    let mut ev = Evaluation::default();
    let mut psd_n: BTreeMap<String, usize> = BTreeMap::new();
    // Example: the first window of each kind at its middle level.
    let mut example_snr: BTreeMap<ArtifactKind, f64> = BTreeMap::new();
    for w in windows {
        let levels = w.kind.test_snr_levels_db();
        example_snr
            .entry(w.kind)
            .or_insert(levels[levels.len() / 2]);
    }
    let add_psd = |ev: &mut Evaluation,
                   kind: ArtifactKind,
                   index: usize,
                   series: &str,
                   x: &[f32]|
     -> Result<(), EvalError> {
        let p = welch.psd(x, fs)?;
        let e = ev
            .psds
            .entry((kind.name().to_string(), index))
            .or_insert_with(|| (series.to_string(), vec![0.0; p.len()]));
        e.1.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
        Ok(())
    };
    for w in windows {
        let key_snr = (w.snr_db * 1e6).round() as i64;
        let take_example = example_snr
            .get(&w.kind)
            .is_some_and(|&s| (s - w.snr_db).abs() < 1e-9)
            && !ev.examples.contains_key(w.kind.name());
        let mut example = Vec::new();
        if take_example {
            example.push(("clean".to_string(), w.clean.clone()));
        }
        add_psd(&mut ev, w.kind, 0, "clean", &w.clean)?;
        *psd_n.entry(w.kind.name().to_string()).or_default() += 1;
        for (i, m) in methods.iter_mut().enumerate() {
            let y = m.denoise(&w.noisy)?;
            let wm = WindowMetrics::compute(&welch, &w.noisy, &y, &w.clean, fs)?;
            let a = acc.entry((i, w.kind, key_snr)).or_default();
            a.n += 1;
            for (s, v) in
                a.m.iter_mut()
                    .zip([wm.rrmse_t, wm.rrmse_s, wm.cc, wm.snr_imp_db])
            {
                *s += v;
            }
            add_psd(&mut ev, w.kind, i + 1, &names[i], &y)?;
            if take_example {
                example.push((names[i].clone(), y));
            }
        }
        if take_example {
            ev.examples.insert(w.kind.name().to_string(), example);
        }
    }
    for ((kind, _), (_, p)) in ev.psds.iter_mut() {
        let n = psd_n.get(kind).copied().unwrap_or(1).max(1) as f64;
        p.iter_mut().for_each(|v| *v /= n);
    }
    let row = |i: usize, kind, snr, a: &Acc| QualityRow {
        method: names[i].clone(),
        kind,
        snr_db: snr,
        n: a.n,
        rrmse_t: a.m[0] / a.n as f64,
        rrmse_s: a.m[1] / a.n as f64,
        cc: a.m[2] / a.n as f64,
        snr_imp_db: a.m[3] / a.n as f64,
    };
    let mut totals: BTreeMap<(usize, ArtifactKind), Acc> = BTreeMap::new();
    for ((i, kind, snr), a) in &acc {
        ev.rows.push(row(*i, *kind, Some(*snr as f64 / 1e6), a));
        let t = totals.entry((*i, *kind)).or_default();
        t.n += a.n;
        t.m.iter_mut().zip(&a.m).for_each(|(x, y)| *x += y);
    }
    for ((i, kind), a) in &totals {
        ev.rows.push(row(*i, *kind, None, a));
    }
    Ok(ev)
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, s)
}

/// One arm of the MFR comparison at one seed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeedResult {
    /// MFR alpha (0 = no MFR).
    pub alpha: f64,
    /// Training seed.
    pub seed: u64,
    /// Validation loss of the selected SAE (MSE in the normalised domain).
    pub val_loss: f64,
    /// Mean test RRMSE_t over EOG and EMG test windows.
    pub test_rrmse_t: f64,
    /// Mean test CC over EOG and EMG test windows.
    pub test_cc: f64,
    /// Wall-clock training time (s).
    pub train_seconds: f64,
    /// Training windows per second (batch x steps x SAEs / time).
    pub windows_per_s: f64,
    /// Step whose weights were kept, when validation chose it during training
    /// (`train-denoiser --select-every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Mean RRMSE_t on the validation EOG+EMG level windows of the exported model (linear
    /// path included), when `train-denoiser` fitted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_windows_rrmse_t: Option<f64>,
    /// Gate of the linear path validation kept (`None`: no path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_gate: Option<f32>,
    /// Mean RRMSE_t between output and input on artifact-free validation windows (0: clean
    /// EEG passes through unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_clean_rrmse_t: Option<f64>,
    /// The same on artifact-free test windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_clean_rrmse_t: Option<f64>,
    /// The steps at which the end-to-end front trainer found its SAE dead and restarted from
    /// a fresh initialisation (empty: never).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_at: Vec<usize>,
}

/// A summary line of the alpha sweep: mean +- std over seeds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArmSummary {
    /// MFR alpha.
    pub alpha: f64,
    /// Seeds run.
    pub n_seeds: usize,
    /// Validation loss mean, std.
    pub val_loss: (f64, f64),
    /// Test RRMSE_t mean, std.
    pub test_rrmse_t: (f64, f64),
    /// Test CC mean, std.
    pub test_cc: (f64, f64),
}

/// Groups seed results by alpha (ascending).
pub fn summarise_arms(results: &[SeedResult]) -> Vec<ArmSummary> {
    let mut by: BTreeMap<i64, Vec<&SeedResult>> = BTreeMap::new();
    for r in results {
        by.entry((r.alpha * 1e12).round() as i64)
            .or_default()
            .push(r);
    }
    by.values()
        .map(|v| {
            let col =
                |f: fn(&SeedResult) -> f64| mean_std(&v.iter().map(|r| f(r)).collect::<Vec<_>>());
            ArmSummary {
                alpha: v[0].alpha,
                n_seeds: v.len(),
                val_loss: col(|r| r.val_loss),
                test_rrmse_t: col(|r| r.test_rrmse_t),
                test_cc: col(|r| r.test_cc),
            }
        })
        .collect()
}

/// Core inference speed on one thread.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpeedRow {
    /// Model name.
    pub model: String,
    /// Channels processed.
    pub channels: usize,
    /// Seconds of signal per channel.
    pub seconds: f64,
    /// SAE windows per second of wall time.
    pub windows_per_s: f64,
    /// Signal duration / wall time for all channels together.
    pub x_realtime: f64,
}

/// A shipped model's size.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// File path.
    pub path: String,
    /// File size in bytes.
    pub bytes: u64,
    /// d_in, d_sae, k, hop.
    pub shape: [usize; 4],
    /// Sample rate (Hz).
    pub sample_rate_hz: f64,
}

/// The whole report.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Command line that produced it.
    pub command: String,
    /// Quick mode.
    pub quick: bool,
    /// Where the data came from, in words.
    pub data: String,
    /// Sample rate of the test windows.
    pub fs: f64,
    /// Test windows per kind.
    pub test_windows: BTreeMap<String, usize>,
    /// Quality table.
    pub quality: Vec<QualityRow>,
    /// Per method, mean RRMSE_t between output and input on artifact-free test windows (how
    /// much it changes clean EEG) and their count.
    #[serde(default)]
    pub clean: Vec<(String, f64, usize)>,
    /// Method that the acceptance check is about.
    pub candidate: Option<String>,
    /// Quality of models at other sample rates (e.g. the tiny 128 Hz model), with their
    /// baselines on windows at that rate.
    pub other_rates: Vec<(f64, Vec<QualityRow>)>,
    /// Budget of the MFR comparison, in words.
    pub mfr_budget: String,
    /// MFR vs no-MFR seed results.
    pub mfr_seeds: Vec<SeedResult>,
    /// Their summary by alpha.
    pub mfr_arms: Vec<ArmSummary>,
    /// Offline denoising speed (the batched path).
    pub speed: Vec<SpeedRow>,
    /// Batched offline path: GFLOP/s next to a plain sgemm of the encoder's shape.
    #[serde(default)]
    pub batched: Vec<super::frontier::GflopsRow>,
    /// Speed/quality frontier over hop for each model (validation windows).
    #[serde(default)]
    pub frontier: Vec<super::frontier::FrontierRow>,
    /// Models measured.
    pub models: Vec<ModelInfo>,
    /// Figures written (relative paths).
    pub figures: Vec<String>,
    /// Free-text notes (what was skipped and why).
    pub notes: Vec<String>,
    /// Where the real held-out recordings came from, in words (empty without `--real`).
    #[serde(default)]
    pub real_data: String,
    /// Quality per held-out real recording and pooled, per sample rate (`--real`).
    #[serde(default)]
    pub real: Vec<(f64, Vec<super::real::RecordingQuality>)>,
    /// Eye artifacts on real multi-channel recordings (`--eye`), as Markdown.
    #[serde(default)]
    pub eye: String,
}

/// Writes one per-SNR-level table (RRMSE_t / CC) per artifact kind; returns the method
/// names in first-seen order.
fn level_tables(s: &mut String, rows: &[QualityRow], suffix: &str) -> Vec<String> {
    let mut kinds: Vec<ArtifactKind> = rows.iter().map(|r| r.kind).collect();
    kinds.sort();
    kinds.dedup();
    let mut methods: Vec<String> = Vec::new();
    for r in rows {
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
    }
    for kind in &kinds {
        let _ = writeln!(
            s,
            "\n### {} per SNR level{suffix} (RRMSE_t / CC)\n",
            kind.name().to_uppercase()
        );
        let _ = write!(s, "| SNR (dB) |");
        for m in &methods {
            let _ = write!(s, " {m} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &methods {
            let _ = write!(s, "---|");
        }
        let _ = writeln!(s);
        let mut levels: Vec<f64> = rows
            .iter()
            .filter(|r| r.kind == *kind)
            .filter_map(|r| r.snr_db)
            .collect();
        levels.sort_by(f64::total_cmp);
        levels.dedup();
        for l in levels {
            let _ = write!(s, "| {l:.2} |");
            for m in &methods {
                match rows
                    .iter()
                    .find(|r| r.kind == *kind && r.snr_db == Some(l) && &r.method == m)
                {
                    Some(r) => {
                        let _ = write!(s, " {:.3} / {:.3} |", r.rrmse_t, r.cc);
                    }
                    None => {
                        let _ = write!(s, " - |");
                    }
                }
            }
            let _ = writeln!(s);
        }
    }
    methods
}

/// Writes the markdown table of SNR-averaged quality rows (artifact, method, metrics), in the
/// order given; shared by the bench report and the model cards.
pub fn average_table<'a>(s: &mut String, rows: impl IntoIterator<Item = &'a QualityRow>) {
    let _ = writeln!(
        s,
        "| artifact | method | RRMSE_t | RRMSE_s | CC | SNR gain (dB) |\n|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.2} |",
            r.kind.name(),
            r.method,
            r.rrmse_t,
            r.rrmse_s,
            r.cc,
            r.snr_imp_db
        );
    }
}

/// [`acceptance`] over the EOG and EMG points, for reports: how many `candidate` wins on both
/// RRMSE_t and CC, out of how many, and each lost point with the metric(s) it lost on.
pub fn acceptance_summary(
    rows: &[QualityRow],
    candidate: &str,
    baselines: &[&str],
) -> (usize, usize, Vec<String>) {
    let acc = acceptance(rows, candidate, baselines);
    let eo: Vec<_> = acc
        .iter()
        .filter(|a| matches!(a.kind, ArtifactKind::Eog | ArtifactKind::Emg))
        .collect();
    let pass = eo.iter().filter(|a| a.passes()).count();
    let fails = eo
        .iter()
        .filter(|a| !a.passes())
        .map(|a| {
            if a.baselines_found < a.baselines_expected || a.baselines_expected == 0 {
                let missing: Vec<&str> = baselines
                    .iter()
                    .copied()
                    .filter(|b| {
                        !rows.iter().any(|r| {
                            r.method == *b && r.kind == a.kind && r.snr_db == Some(a.snr_db)
                        })
                    })
                    .collect();
                return format!(
                    "{} {:.2} dB (no row for baseline(s) {}: {} of {} present)",
                    a.kind.name(),
                    a.snr_db,
                    if missing.is_empty() {
                        "(none named)".to_string()
                    } else {
                        missing.join(", ")
                    },
                    a.baselines_found,
                    a.baselines_expected
                );
            }
            format!(
                "{} {:.2} dB (RRMSE_t {:.3} vs best baseline {:.3}, CC {:.3} vs {:.3})",
                a.kind.name(),
                a.snr_db,
                a.rrmse_t,
                a.best_rrmse_t,
                a.cc,
                a.best_cc
            )
        })
        .collect();
    (pass, eo.len(), fails)
}

/// The baselines the acceptance check compares against: every band-pass and every wavelet
/// method among `methods`. A family with no method is kept under its bare name, which has no
/// rows, so that every point fails as missing it instead of passing against nothing.
pub fn acceptance_baselines<'a>(methods: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let methods: Vec<&str> = methods.into_iter().collect();
    let mut out = Vec::new();
    for family in ["band-pass", "wavelet"] {
        let before = out.len();
        for m in methods.iter().filter(|m| m.starts_with(family)) {
            if !out.iter().any(|o: &String| o == m) {
                out.push((*m).to_string());
            }
        }
        if out.len() == before {
            out.push(family.to_string());
        }
    }
    out
}

/// One (artifact, SNR level) of the acceptance check: the candidate's numbers and the best
/// baseline's on each metric.
#[derive(Clone, Copy, Debug)]
pub struct Acceptance {
    /// Artifact kind.
    pub kind: ArtifactKind,
    /// Test SNR level (dB).
    pub snr_db: f64,
    /// Candidate RRMSE_t.
    pub rrmse_t: f64,
    /// Lowest baseline RRMSE_t.
    pub best_rrmse_t: f64,
    /// Candidate CC.
    pub cc: f64,
    /// Highest baseline CC.
    pub best_cc: f64,
    /// Baselines with a row at this point.
    pub baselines_found: usize,
    /// Baselines asked for.
    pub baselines_expected: usize,
}

impl Acceptance {
    /// Every baseline asked for has a row here, and the candidate is strictly better than each
    /// on both metrics. A missing baseline fails the point (it would otherwise compare
    /// against an empty set and pass).
    pub fn passes(&self) -> bool {
        self.baselines_expected > 0
            && self.baselines_found == self.baselines_expected
            && self.rrmse_t < self.best_rrmse_t
            && self.cc > self.best_cc
    }
}

/// For each (kind, level) where `candidate` has a row: its RRMSE_t and CC beside the best of
/// `baselines` on each.
pub fn acceptance(rows: &[QualityRow], candidate: &str, baselines: &[&str]) -> Vec<Acceptance> {
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| r.method == candidate) {
        let Some(snr) = r.snr_db else { continue };
        let others: Vec<&QualityRow> = rows
            .iter()
            .filter(|o| {
                baselines.contains(&o.method.as_str()) && o.kind == r.kind && o.snr_db == Some(snr)
            })
            .collect();
        out.push(Acceptance {
            kind: r.kind,
            snr_db: snr,
            rrmse_t: r.rrmse_t,
            best_rrmse_t: others
                .iter()
                .map(|o| o.rrmse_t)
                .fold(f64::INFINITY, f64::min),
            cc: r.cc,
            best_cc: others
                .iter()
                .map(|o| o.cc)
                .fold(f64::NEG_INFINITY, f64::max),
            baselines_found: baselines
                .iter()
                .filter(|b| others.iter().any(|o| o.method == **b))
                .count(),
            baselines_expected: baselines.len(),
        });
    }
    out
}

fn pm(v: (f64, f64), digits: usize) -> String {
    format!("{:.*} ± {:.*}", digits, v.0, digits, v.1)
}

impl Report {
    /// Renders the markdown report.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# mfr-eeg benchmark report\n");
        let _ = writeln!(
            s,
            "Command: `{}`{}\n",
            self.command,
            if self.quick {
                " (quick mode: small sizes, numbers are noisy)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "Data: {}\n", self.data);
        let tw: Vec<String> = self
            .test_windows
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(
            s,
            "Test windows ({} Hz, 2 s, z-scored by the noisy window's std): {}\n",
            self.fs,
            tw.join(", ")
        );
        let _ = writeln!(
            s,
            "Metrics as EEGdenoiseNet: RRMSE_t, RRMSE_s (Welch PSD, Hann, 50 % overlap, 1 s segments), CC, SNR improvement in its 10·log10(RMS ratio) convention.\n"
        );
        let _ = writeln!(s, "## Quality, averaged over the 10 SNR levels\n");
        let mut avg: Vec<&QualityRow> =
            self.quality.iter().filter(|r| r.snr_db.is_none()).collect();
        avg.sort_by_key(|r| r.kind as u8);
        average_table(&mut s, avg);
        let methods = level_tables(&mut s, &self.quality, "");
        if let Some((_, _, n)) = self.clean.first() {
            let _ = writeln!(
                s,
                "\n## Artifact-free EEG\n\nRRMSE_t between each method's output and its input on {n} artifact-free test windows (2 s, one per test segment): how much a method changes EEG that needs no cleaning (0 = passed through).\n\n| method | change (RRMSE_t) |\n|---|---|"
            );
            for (m, v, _) in &self.clean {
                let _ = writeln!(s, "| {m} | {v:.3} |");
            }
        }
        for (fs, rows) in &self.other_rates {
            let _ = writeln!(
                s,
                "\n## At {fs} Hz (models for that rate, baselines on the same {fs} Hz windows)\n"
            );
            average_table(&mut s, rows.iter().filter(|r| r.snr_db.is_none()));
            level_tables(&mut s, rows, &format!(" at {fs} Hz"));
        }
        if let Some(c) = &self.candidate {
            let base = acceptance_baselines(methods.iter().map(String::as_str));
            let base: Vec<&str> = base.iter().map(String::as_str).collect();
            let (pass, total, fails) = acceptance_summary(&self.quality, c, &base);
            let _ = writeln!(
                s,
                "\n## Acceptance\n\n`{c}` beats band-pass and wavelet on both RRMSE_t and CC at {pass} of {total} (EOG/EMG x SNR) test points."
            );
            if !fails.is_empty() {
                let _ = writeln!(s, "Not beaten at: {}.", fails.join(", "));
            }
        }
        if !self.mfr_arms.is_empty() {
            let _ = writeln!(
                s,
                "\n## MFR vs no MFR (same budget and tuning; mean ± std over seeds)\n\nBudget: {}\n",
                self.mfr_budget
            );
            let _ = writeln!(
                s,
                "| alpha | seeds | val loss | test RRMSE_t (EOG+EMG) | test CC (EOG+EMG) |\n|---|---|---|---|---|"
            );
            for a in &self.mfr_arms {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    a.alpha,
                    a.n_seeds,
                    pm(a.val_loss, 4),
                    pm(a.test_rrmse_t, 4),
                    pm(a.test_cc, 4)
                );
            }
            let (t, w): (f64, f64) = self.mfr_seeds.iter().fold((0.0, 0.0), |a, r| {
                (a.0 + r.train_seconds, a.1 + r.windows_per_s)
            });
            let n = self.mfr_seeds.len().max(1) as f64;
            let _ = writeln!(
                s,
                "\nTraining throughput: {:.0} windows/s on average ({:.1} s per run).",
                w / n,
                t / n
            );
        }
        if !self.speed.is_empty() {
            let _ = writeln!(
                s,
                "\n## Speed (single thread, batched offline path as in `denoise`)\n\n| model | channels | signal (s) | windows/s | x real time |\n|---|---|---|---|---|"
            );
            for r in &self.speed {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {:.0} | {:.1} |",
                    r.model, r.channels, r.seconds, r.windows_per_s, r.x_realtime
                );
            }
        }
        if !(self.batched.is_empty() && self.frontier.is_empty()) {
            s.push('\n');
            s.push_str(&super::frontier::to_markdown(
                &self.batched,
                &self.frontier,
                None,
            ));
        }
        if !self.models.is_empty() {
            let _ = writeln!(
                s,
                "\n## Models\n\n| file | bytes | d_in | d_sae | k | hop | rate (Hz) |\n|---|---|---|---|---|---|---|"
            );
            for m in &self.models {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    m.path,
                    m.bytes,
                    m.shape[0],
                    m.shape[1],
                    m.shape[2],
                    m.shape[3],
                    m.sample_rate_hz
                );
            }
        }
        if !self.real.is_empty() {
            let _ = writeln!(s, "\n## Real held-out recordings\n\n{}", self.real_data);
            for (fs, rows) in &self.real {
                let _ = writeln!(s, "\n### {fs} Hz");
                s.push_str(&super::real::markdown(
                    rows,
                    &[ArtifactKind::Eog, ArtifactKind::Emg],
                ));
            }
        }
        if !self.eye.is_empty() {
            let _ = writeln!(
                s,
                "\n## Eye artifacts on real multi-channel recordings\n\nEach file as `mfr-eeg \
                 eog-check` scores it; the eye stage is what `mfr-eeg denoise` runs first.\n"
            );
            s.push_str(
                &self
                    .eye
                    .replace("\n## ", "\n### ")
                    .replacen("## ", "### ", 1),
            );
        }
        if !self.figures.is_empty() {
            let _ = writeln!(s, "\n## Figures\n");
            for f in &self.figures {
                let _ = writeln!(s, "![{f}]({f})");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// Writes `report.md` and `report.json` into `dir` (created if missing), atomically.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
            path: dir.into(),
            source,
        })?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| EvalError::Invalid(format!("report JSON: {e}")))?;
        write_atomic(&dir.join("report.json"), json.as_bytes())?;
        write_atomic(&dir.join("report.md"), self.to_markdown().as_bytes())
    }
}

// ---------------------------------------------------------------- figures

const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers a system TrueType font for plot text; `false` when none is found (figures are
/// then skipped and the report says so).
pub fn register_font() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(b) = std::fs::read(p) {
                let b: &'static [u8] = Box::leak(b.into_boxed_slice());
                if plotters::style::register_font(
                    "sans-serif",
                    plotters::style::FontStyle::Normal,
                    b,
                )
                .is_ok()
                {
                    return true;
                }
            }
        }
        false
    })
}

const PALETTE: [plotters::style::RGBColor; 8] = [
    plotters::style::RGBColor(0, 0, 0),
    plotters::style::RGBColor(200, 60, 60),
    plotters::style::RGBColor(60, 120, 200),
    plotters::style::RGBColor(40, 160, 80),
    plotters::style::RGBColor(230, 140, 20),
    plotters::style::RGBColor(140, 70, 170),
    plotters::style::RGBColor(120, 120, 120),
    plotters::style::RGBColor(20, 170, 170),
];

type Series = (String, Vec<(f64, f64)>);

fn line_chart(
    path: &Path,
    title: &str,
    xdesc: &str,
    ydesc: &str,
    series: &[Series],
    log_y: bool,
) -> Result<(), EvalError> {
    use plotters::prelude::*;
    let perr = |e: String| EvalError::Invalid(format!("{}: plotting failed: {e}", path.display()));
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if !(x.is_finite() && y.is_finite()) || (log_y && y <= 0.0) {
            continue;
        }
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 >= x1 {
        x1 = x0 + 1.0;
    }
    if y0 >= y1 {
        y1 = y0 + 1.0;
    }
    let pad = 0.05 * (y1 - y0);
    let draw = |tmp: &Path| -> Result<(), EvalError> {
        let root = BitMapBackend::new(tmp, (900, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| perr(e.to_string()))?;
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(70);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart.map_err(|e| perr(e.to_string()))?;
                chart
                    .configure_mesh()
                    .x_desc(xdesc)
                    .y_desc(ydesc)
                    .y_label_formatter(&|v| {
                        if log_y {
                            format!("{v:.0e}")
                        } else {
                            format!("{v:.2}")
                        }
                    })
                    .draw()
                    .map_err(|e| perr(e.to_string()))?;
                for (i, (name, p)) in series.iter().enumerate() {
                    let c = PALETTE[i % PALETTE.len()];
                    let p: Vec<(f64, f64)> = p
                        .iter()
                        .copied()
                        .filter(|&(_, y)| !log_y || y > 0.0)
                        .collect();
                    chart
                        .draw_series(LineSeries::new(p, c.stroke_width(2)))
                        .map_err(|e| perr(e.to_string()))?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()
                    .map_err(|e| perr(e.to_string()))?;
            }};
        }
        if log_y {
            draw!(b.build_cartesian_2d(x0..x1, (y0.max(1e-12)..y1 * 2.0).log_scale()));
        } else {
            draw!(b.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)));
        }
        root.present().map_err(|e| perr(e.to_string()))
    };
    crate::io::atomic::write_atomic_with(path, ".png", draw).map_err(|e| EvalError::Io {
        path: path.into(),
        source: e.into(),
    })?
}

/// Writes the figures for an evaluation into `dir`; returns their file names. Skips (returns
/// empty) when no font is available.
pub fn write_figures(dir: &Path, ev: &Evaluation, fs: f64) -> Result<Vec<String>, EvalError> {
    if !register_font() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.into(),
        source,
    })?;
    let mut files = Vec::new();
    let mut kinds: Vec<ArtifactKind> = ev.rows.iter().map(|r| r.kind).collect();
    kinds.sort_by_key(|k| *k as u8);
    kinds.dedup();
    let mut methods: Vec<String> = Vec::new();
    for r in &ev.rows {
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
    }
    for kind in &kinds {
        for (metric, label) in [("rrmse_t", "RRMSE_t"), ("cc", "CC")] {
            let series: Vec<Series> = methods
                .iter()
                .map(|m| {
                    let mut p: Vec<(f64, f64)> = ev
                        .rows
                        .iter()
                        .filter(|r| &r.method == m && r.kind == *kind)
                        .filter_map(|r| {
                            r.snr_db
                                .map(|s| (s, if metric == "cc" { r.cc } else { r.rrmse_t }))
                        })
                        .collect();
                    p.sort_by(|a, b| a.0.total_cmp(&b.0));
                    (m.clone(), p)
                })
                .collect();
            let name = format!("{metric}_vs_snr_{}.png", kind.name());
            line_chart(
                &dir.join(&name),
                &format!("{label} vs SNR, {} artifacts", kind.name().to_uppercase()),
                "SNR (dB)",
                label,
                &series,
                false,
            )?;
            files.push(name);
        }
        let psd: Vec<Series> = ev
            .psds
            .iter()
            .filter(|((k, _), _)| k == kind.name())
            .map(|(_, (s, p))| {
                let n = (p.len() - 1) * 2;
                (
                    s.clone(),
                    p.iter()
                        .enumerate()
                        .map(|(i, &v)| (i as f64 * fs / n as f64, v))
                        .collect(),
                )
            })
            .collect();
        let name = format!("psd_{}.png", kind.name());
        line_chart(
            &dir.join(&name),
            &format!(
                "Mean Welch PSD, {} test windows",
                kind.name().to_uppercase()
            ),
            "frequency (Hz)",
            "PSD (1/Hz, z-units)",
            &psd,
            true,
        )?;
        files.push(name);
        if let Some(ex) = ev.examples.get(kind.name()) {
            let series: Vec<Series> = ex
                .iter()
                .map(|(n, y)| {
                    (
                        n.clone(),
                        y.iter()
                            .enumerate()
                            .map(|(i, &v)| (i as f64 / fs, v as f64))
                            .collect(),
                    )
                })
                .collect();
            let name = format!("example_{}.png", kind.name());
            line_chart(
                &dir.join(&name),
                &format!("Example {} window before/after", kind.name().to_uppercase()),
                "time (s)",
                "amplitude (z)",
                &series,
                false,
            )?;
            files.push(name);
        }
    }
    Ok(files)
}

/// The output directory default of `mfr-eeg bench`.
pub fn default_report_dir() -> PathBuf {
    PathBuf::from("bench-report")
}

/// A shipped or freshly trained SAE run through the offline path `mfr-eeg denoise` uses
/// ([`crate::batch`]: the result of [`crate::core::denoise_offline_into`], reflection-padded
/// edges, overlap-add at the model's hop, the model's own window normalisation, with many
/// windows per encoder product; equal to the streaming core up to f32 rounding).
pub struct SaeMethod {
    model: crate::model::Model,
    run: super::frontier::BatchedSae,
}

impl SaeMethod {
    /// Wraps a loaded model under a display name.
    pub fn new(name: impl Into<String>, model: crate::model::Model) -> Self {
        let run = super::frontier::BatchedSae::new(name, &model, model.meta().hop);
        Self { model, run }
    }

    /// The model.
    pub fn model(&self) -> &crate::model::Model {
        &self.model
    }
}

impl Method for SaeMethod {
    fn name(&self) -> String {
        self.run.name()
    }
    fn denoise(&mut self, x: &[f32]) -> Result<Vec<f32>, EvalError> {
        self.run.denoise(x)
    }
}

/// Offline speed: denoises `channels` channels of `seconds` of a test-like signal at the model's
/// rate with the batched offline path on this thread, and reports windows/s and x real time.
pub fn measure_speed(
    name: &str,
    model: &crate::model::Model,
    channels: usize,
    seconds: f64,
) -> Result<SpeedRow, EvalError> {
    let meta = model.meta();
    let fs = meta.sample_rate_hz as f64;
    let n = (seconds * fs).round() as usize;
    let sig: Vec<f32> = super::data::model_segment(77, 0, n, fs)
        .iter()
        .map(|v| v / 20.0)
        .collect();
    let copy = crate::model::Model::from_bytes(model.bytes().to_vec())
        .map_err(|e| EvalError::Invalid(format!("model {name}: {e}")))?;
    let mut m = SaeMethod::new(name, copy);
    let t0 = std::time::Instant::now();
    let mut checksum = 0.0f64;
    for _ in 0..channels {
        let y = m.denoise(&sig)?;
        checksum += y[n / 2] as f64;
    }
    let dt = t0.elapsed().as_secs_f64().max(1e-9);
    // Windows per channel in the offline path: padded length / hop.
    let pad = crate::core::offline_pad(meta.d_in);
    let windows = ((n + 2 * pad) / meta.hop) * channels;
    std::hint::black_box(checksum);
    Ok(SpeedRow {
        model: name.into(),
        channels,
        seconds,
        windows_per_s: windows as f64 / dt,
        x_realtime: seconds / dt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, kind: ArtifactKind, snr: f64, rrmse_t: f64, cc: f64) -> QualityRow {
        QualityRow {
            method: method.into(),
            kind,
            snr_db: Some(snr),
            n: 1,
            rrmse_t,
            rrmse_s: rrmse_t,
            cc,
            snr_imp_db: 0.0,
        }
    }

    /// Three EOG/EMG points (plus a line-noise point the count leaves out): the candidate
    /// wins the first two, loses the third on CC.
    fn rows() -> Vec<QualityRow> {
        use ArtifactKind::{Emg, Eog, Line};
        let mut v = Vec::new();
        for (kind, snr, cand_cc) in [(Eog, -7.0, 0.9), (Eog, -6.0, 0.9), (Emg, -7.0, 0.7)] {
            v.push(row("sae", kind, snr, 0.4, cand_cc));
            v.push(row("band-pass 4-40 Hz", kind, snr, 0.6, 0.8));
            v.push(row("wavelet db4", kind, snr, 0.9, 0.5));
        }
        v.push(row("sae", Line, -7.0, 0.4, 0.9));
        v
    }

    #[test]
    fn acceptance_counts_wins_over_every_baseline() {
        let base = ["band-pass 4-40 Hz", "wavelet db4"];
        let (pass, total, fails) = acceptance_summary(&rows(), "sae", &base);
        assert_eq!((pass, total), (2, 3));
        assert_eq!(fails.len(), 1);
        assert!(
            fails[0].starts_with("emg -7.00 dB (RRMSE_t 0.400"),
            "{fails:?}"
        );
    }

    #[test]
    fn acceptance_fails_a_point_whose_baseline_is_missing() {
        let base = ["band-pass 4-40 Hz", "wavelet db4"];
        // Drop the wavelet row of the first EOG point: that point can no longer pass.
        let mut rows = rows();
        rows.retain(|r| {
            !(r.method == "wavelet db4" && r.snr_db == Some(-7.0) && r.kind == ArtifactKind::Eog)
        });
        let (pass, total, fails) = acceptance_summary(&rows, "sae", &base);
        assert_eq!((pass, total), (1, 3));
        assert!(
            fails
                .iter()
                .any(|f| f == "eog -7.00 dB (no row for baseline(s) wavelet db4: 1 of 2 present)"),
            "{fails:?}"
        );
        // No baselines at all: nothing passes (it used to pass everything).
        let (pass, total, _) = acceptance_summary(&rows, "sae", &[]);
        assert_eq!((pass, total), (0, 3));
    }

    #[test]
    fn report_without_a_wavelet_method_passes_no_point() {
        let mut rows = rows();
        rows.retain(|r| !r.method.starts_with("wavelet"));
        let methods = ["noisy input", "band-pass 4-40 Hz", "sae"];
        assert_eq!(
            acceptance_baselines(methods),
            vec!["band-pass 4-40 Hz".to_string(), "wavelet".to_string()]
        );
        let report = Report {
            quality: rows,
            candidate: Some("sae".into()),
            ..Report::default()
        };
        let md = report.to_markdown();
        assert!(md.contains("at 0 of 3 (EOG/EMG x SNR) test points"), "{md}");
        assert!(md.contains("no row for baseline(s) wavelet"), "{md}");
        // With both families present the same report counts the two wins.
        let full = Report {
            quality: super::tests::rows(),
            candidate: Some("sae".into()),
            ..Report::default()
        };
        assert!(
            full.to_markdown()
                .contains("at 2 of 3 (EOG/EMG x SNR) test points")
        );
    }
}
