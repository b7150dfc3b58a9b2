//! Real recordings split by recording, and quality per held-out recording.
//!
//! A real-data set is a directory with a `MANIFEST.json` (written by `scripts/real_data.py`,
//! which rebuilds it from a PyPI package) naming EDF files of clean-ish EEG and of recorded
//! surface EMG, each assigned to one split. Every recording lands in exactly one split, so
//! train, validation and test never share a recording (nor, for a multichannel recording, a
//! channel of it). [`RealSet::corpus`] adds these recordings to the usual corpus (whose own
//! recordings and model segments keep their time-span split) and turns the EMG recordings into
//! per-split artifact banks; EOG stays generated. [`per_recording`] evaluates methods on each
//! held-out recording separately and pooled.
//!
//! Key types: [`RealSet`], [`RealRecording`], [`RecordingQuality`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::EvalError;
use super::corpus::{ArtifactBanks, Corpus, CorpusConfig, Split};
use super::data::{
    ArtifactKind, Recording, SelectionRule, SnrPlan, Window, condition_channel, make_windows,
    recording_segments,
};
use super::harness::{Method, QualityRow, evaluate};

/// One recording of a real-data set and the split it belongs to.
#[derive(Clone, Debug)]
pub struct RealRecording {
    /// The recording (its `name` is the file name).
    pub recording: Recording,
    /// Its split.
    pub split: Split,
    /// Device or subject note from the manifest (for reports).
    pub note: String,
}

/// EEG recordings and EMG recordings, each assigned to a split.
#[derive(Clone, Debug, Default)]
pub struct RealSet {
    /// Clean(ish) EEG; segments pass the usual low-artifact rule.
    pub eeg: Vec<RealRecording>,
    /// Recorded EMG (one or more channels), cut into artifact epochs.
    pub emg: Vec<RealRecording>,
}

#[derive(serde::Deserialize)]
struct Entry {
    file: String,
    split: String,
    #[serde(default)]
    device: Vec<String>,
    #[serde(default)]
    note: String,
}

#[derive(serde::Deserialize)]
struct Manifest {
    eeg: BTreeMap<String, Entry>,
    #[serde(default)]
    emg: BTreeMap<String, Entry>,
}

impl RealSet {
    /// Reads `dir/MANIFEST.json` and every EDF it names.
    pub fn load(dir: &Path) -> Result<Self, EvalError> {
        let path = dir.join("MANIFEST.json");
        let text = std::fs::read_to_string(&path).map_err(|source| EvalError::Io {
            path: path.clone(),
            source,
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| EvalError::Format {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let read = |name: &str, e: &Entry| -> Result<RealRecording, EvalError> {
            let split = Split::parse(&e.split).ok_or_else(|| EvalError::Format {
                path: path.clone(),
                problem: format!(
                    "recording {name}: split {:?} is not train, val or test",
                    e.split
                ),
            })?;
            let file: PathBuf = dir.join(&e.file);
            Ok(RealRecording {
                recording: Recording::from_edf(&file)?,
                split,
                note: if e.device.is_empty() {
                    e.note.clone()
                } else {
                    format!("device {}; {}", e.device.join(", "), e.note)
                },
            })
        };
        let eeg = m
            .eeg
            .iter()
            .map(|(n, e)| read(n, e))
            .collect::<Result<Vec<_>, _>>()?;
        let emg = m
            .emg
            .iter()
            .map(|(n, e)| read(n, e))
            .collect::<Result<Vec<_>, _>>()?;
        if eeg.is_empty() {
            return Err(EvalError::Format {
                path,
                problem: "no EEG recordings listed".into(),
            });
        }
        Ok(Self { eeg, emg })
    }

    /// Names of the EEG recordings in `split`.
    pub fn eeg_names(&self, split: Split) -> Vec<String> {
        self.eeg
            .iter()
            .filter(|r| r.split == split)
            .map(|r| r.recording.name.clone())
            .collect()
    }

    /// The corpus of `base` recordings and `config.n_model_segments` model segments split by
    /// time span exactly as [`Corpus::build`] does (so its splits are unchanged), plus every
    /// real EEG recording whole in its own split, and EMG banks from the real EMG recordings
    /// (EOG generated).
    pub fn corpus(&self, config: CorpusConfig, base: &[Recording]) -> Result<Corpus, EvalError> {
        let mut corpus = Corpus::build(config, base)?;
        let fs = corpus.config.fs;
        for (i, r) in self.eeg.iter().enumerate() {
            let (segs, rep) = recording_segments(
                &r.recording,
                fs,
                corpus.config.seg_len,
                corpus.config.line_hz,
                SelectionRule::default(),
                ((base.len() + i) as u64) << 32,
            )?;
            let dest = match r.split {
                Split::Train => &mut corpus.splits.train,
                Split::Val => &mut corpus.splits.val,
                Split::Test => &mut corpus.splits.test,
            };
            dest.extend(segs);
            corpus.selection.push((r.recording.name.clone(), rep));
        }
        let mut banks = ArtifactBanks {
            generated_when_empty: true,
            ..ArtifactBanks::default()
        };
        for r in &self.emg {
            let epochs = emg_epochs(&r.recording, fs, corpus.config.seg_len)?;
            let i = Split::ALL.iter().position(|s| *s == r.split).unwrap_or(0);
            banks.emg[i].extend(epochs);
        }
        corpus.banks = Some(banks);
        Ok(corpus)
    }
}

/// Cuts a recorded EMG channel into artifact epochs of `len` samples at `fs`: band 1-120 Hz
/// (below Nyquist), as EEGdenoiseNet's EMG epochs; only epochs at least as energetic as the
/// recording's median are kept, so rest periods (amplifier noise) do not pose as EMG.
pub fn emg_epochs(rec: &Recording, fs: f64, len: usize) -> Result<Vec<Vec<f32>>, EvalError> {
    let hi = 120.0f64.min(0.45 * fs);
    let mut out = Vec::new();
    for (label, ch) in rec.labels.iter().zip(&rec.channels) {
        let y = condition_channel(ch, rec.sample_rate_hz, fs, (1.0, hi), &[])?;
        // Skip one second at each end (edge of the frequency-domain filter).
        let edge = fs.round() as usize;
        if y.len() < 2 * edge + len {
            return Err(EvalError::Invalid(format!(
                "{}: channel {}: EMG shorter than one {len}-sample epoch",
                rec.name,
                label.trim()
            )));
        }
        let n = (y.len() - 2 * edge) / len;
        let epochs: Vec<&[f32]> = (0..n)
            .map(|i| &y[edge + i * len..edge + (i + 1) * len])
            .collect();
        let rms: Vec<f64> = epochs
            .iter()
            .map(|e| (e.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / len as f64).sqrt())
            .collect();
        let mut sorted = rms.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        out.extend(
            epochs
                .iter()
                .zip(&rms)
                .filter(|(_, r)| **r >= median && **r > 0.0)
                .map(|(e, _)| e.to_vec()),
        );
    }
    Ok(out)
}

/// Quality of every method on one recording (or `pooled`), averaged over the SNR levels.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RecordingQuality {
    /// Recording name, or `pooled` for all of them together.
    pub recording: String,
    /// Clean 2 s segments used (each gives 10 windows per artifact kind).
    pub segments: usize,
    /// One row per method and kind (`snr_db` None) and per level.
    pub rows: Vec<QualityRow>,
    /// Per method, the RRMSE_t between its output and its input on this recording's
    /// artifact-free windows (one per segment; 0 = passed through), and their count.
    #[serde(default)]
    pub clean: Vec<(String, f64, usize)>,
}

/// Test-protocol windows of `kinds` for the segments of `split` that come from `recording`
/// (at most `max_segments` of them): the same artifacts and levels as
/// [`Corpus::level_windows`], drawn per recording.
pub fn recording_windows(
    corpus: &Corpus,
    split: Split,
    recording: &str,
    kinds: &[ArtifactKind],
    max_segments: usize,
) -> Result<(usize, Vec<Window>), EvalError> {
    let segs = recording_segs(corpus, split, recording, max_segments);
    Ok((
        segs.len(),
        level_windows_of(corpus, split, recording, &segs, kinds)?,
    ))
}

/// The level windows of [`recording_windows`] for `segs` (those of `recording`).
fn level_windows_of(
    corpus: &Corpus,
    split: Split,
    recording: &str,
    segs: &[super::data::Segment],
    kinds: &[ArtifactKind],
) -> Result<Vec<Window>, EvalError> {
    let mut w = Vec::new();
    for &kind in kinds {
        if segs.is_empty() {
            break;
        }
        w.extend(make_windows(
            segs,
            kind,
            corpus.source(split, kind),
            &SnrPlan::Levels(kind.test_snr_levels_db().to_vec()),
            corpus.config.seg_len,
            corpus.config.fs,
            corpus.config.seed ^ 0x4EA1 ^ fnv(recording),
        )?);
    }
    Ok(w)
}

/// Artifact-free windows of `segs` (those of `recording`): one 2 s window per segment, input
/// equal to target, normalised like the level windows.
fn clean_windows_of(
    corpus: &Corpus,
    split: Split,
    recording: &str,
    segs: &[super::data::Segment],
) -> Result<Vec<Window>, EvalError> {
    if segs.is_empty() {
        return Ok(Vec::new());
    }
    make_windows(
        segs,
        ArtifactKind::Eog,
        corpus.source(split, ArtifactKind::Eog),
        &SnrPlan::Levels(vec![f64::INFINITY]),
        corpus.config.seg_len,
        corpus.config.fs,
        corpus.config.seed ^ 0xC1EA ^ fnv(recording),
    )
}

fn recording_segs(
    corpus: &Corpus,
    split: Split,
    recording: &str,
    max_segments: usize,
) -> Vec<super::data::Segment> {
    corpus
        .segments(split)
        .iter()
        .filter(|s| s.origin.split(':').next() == Some(recording))
        .take(max_segments)
        .cloned()
        .collect()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Evaluates `methods` on each recording of `recordings` (segments of `split`) and on all of
/// them pooled (the last entry). Recordings without a kept segment are reported with 0
/// segments and no rows.
pub fn per_recording(
    corpus: &Corpus,
    split: Split,
    recordings: &[String],
    methods: &mut [Box<dyn Method + '_>],
    kinds: &[ArtifactKind],
    max_segments: usize,
) -> Result<Vec<RecordingQuality>, EvalError> {
    let mut out = Vec::new();
    let mut pooled = Vec::new();
    let mut pooled_clean = Vec::new();
    let mut pooled_segments = 0;
    for name in recordings {
        let segs = recording_segs(corpus, split, name, max_segments);
        let (n, w) = (
            segs.len(),
            level_windows_of(corpus, split, name, &segs, kinds)?,
        );
        let (rows, clean) = if w.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let c = clean_windows_of(corpus, split, name, &segs)?;
            let clean = super::bench::clean_change(methods, &c)?;
            pooled_clean.extend(c);
            (evaluate(methods, &w, corpus.config.fs)?.rows, clean)
        };
        pooled_segments += n;
        pooled.extend(w);
        out.push(RecordingQuality {
            recording: name.clone(),
            segments: n,
            rows,
            clean,
        });
    }
    if pooled.is_empty() {
        return Err(EvalError::Invalid(format!(
            "no clean {} segments in recordings {}",
            split.name(),
            recordings.join(", ")
        )));
    }
    out.push(RecordingQuality {
        recording: "pooled".into(),
        segments: pooled_segments,
        rows: evaluate(methods, &pooled, corpus.config.fs)?.rows,
        clean: super::bench::clean_change(methods, &pooled_clean)?,
    });
    Ok(out)
}

/// A markdown table per artifact kind: one line per recording, RRMSE_t / CC per method
/// (averaged over the SNR levels).
pub fn markdown(results: &[RecordingQuality], kinds: &[ArtifactKind]) -> String {
    let mut methods: Vec<String> = Vec::new();
    for r in results.iter().flat_map(|q| &q.rows) {
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
    }
    let mut s = String::new();
    for &kind in kinds {
        let title = format!(
            "{} (RRMSE_t / CC, mean over the 10 levels)",
            kind.name().to_uppercase()
        );
        table(
            &mut s,
            &title,
            "segments",
            &methods,
            results,
            |q| q.segments,
            |q, m| {
                q.rows
                    .iter()
                    .find(|r| r.kind == kind && r.snr_db.is_none() && r.method == m)
                    .map(|r| format!("{:.3} / {:.3}", r.rrmse_t, r.cc))
            },
        );
    }
    if results.iter().any(|q| !q.clean.is_empty()) {
        let title = "ARTIFACT-FREE (RRMSE_t between output and input, one 2 s window per segment; 0 = passed through)";
        let count = |q: &RecordingQuality| q.clean.first().map_or(0, |c| c.2);
        table(
            &mut s,
            title,
            "windows",
            &methods,
            results,
            count,
            |q, m| {
                q.clean
                    .iter()
                    .find(|c| c.0 == m)
                    .map(|c| format!("{:.3}", c.1))
            },
        );
    }
    s
}

/// One markdown table under `title`: a line per recording with its `count`, a cell per method
/// (`-` where `cell` has none).
fn table(
    s: &mut String,
    title: &str,
    count_name: &str,
    methods: &[String],
    results: &[RecordingQuality],
    count: impl Fn(&RecordingQuality) -> usize,
    cell: impl Fn(&RecordingQuality, &str) -> Option<String>,
) {
    use std::fmt::Write as _;
    let _ = write!(s, "\n{title}\n\n| recording | {count_name} |");
    for m in methods {
        let _ = write!(s, " {m} |");
    }
    let _ = write!(s, "\n|---|---|");
    for _ in methods {
        let _ = write!(s, "---|");
    }
    let _ = writeln!(s);
    for q in results {
        let _ = write!(s, "| {} | {} |", q.recording, count(q));
        for m in methods {
            let _ = write!(s, " {} |", cell(q, m).as_deref().unwrap_or("-"));
        }
        let _ = writeln!(s);
    }
}

/// The corpus used when no real-data set is given: [`Corpus::build`] with `base` only. Kept
/// here so callers can switch on an optional [`RealSet`] in one place.
pub fn corpus_with(
    config: CorpusConfig,
    base: &[Recording],
    real: Option<&RealSet>,
) -> Result<Corpus, EvalError> {
    match real {
        Some(r) => r.corpus(config, base),
        None => Corpus::build(config, base),
    }
}

/// Label of the row [`bench_section`] appends for the validation split.
pub const VALIDATION_ROW: &str = "validation (selection set, not held out)";

/// The bench's real-data section at one rate: the corpus of `base` plus `real`, the band-pass
/// tuned on its validation EOG+EMG windows, the wavelet baseline and `models`, scored on each
/// held-out (test-split) real recording and pooled, EOG (generated) and EMG (recorded). A last
/// row, [`VALIDATION_ROW`], scores the same methods on the first `val_segments` validation
/// segments of that corpus (all of them: the real validation recordings with the base corpus's
/// validation spans), the set on which to choose between models meant for unseen recordings.
pub fn bench_section<'a>(
    real: &RealSet,
    config: CorpusConfig,
    base: &[Recording],
    models: Vec<(String, crate::model::Model)>,
    extra: Vec<Box<dyn Method + 'a>>,
    max_segments: usize,
    val_segments: usize,
) -> Result<Vec<RecordingQuality>, EvalError> {
    let corpus = real.corpus(config, base)?;
    let kinds = [ArtifactKind::Eog, ArtifactKind::Emg];
    let val = super::bench::val_level_windows(&corpus, max_segments)?;
    let mut methods = super::bench::methods_with(&corpus, &val, models, extra)?;
    let mut out = per_recording(
        &corpus,
        Split::Test,
        &real.eeg_names(Split::Test),
        &mut methods,
        &kinds,
        max_segments,
    )?;
    let clean = corpus.clean_windows(Split::Val, corpus.config.seg_len, val_segments)?;
    let val = super::bench::val_level_windows(&corpus, val_segments)?;
    out.push(RecordingQuality {
        recording: VALIDATION_ROW.into(),
        segments: clean.len(),
        rows: evaluate(&mut methods, &val, corpus.config.fs)?.rows,
        clean: super::bench::clean_change(&mut methods, &clean)?,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, kind: ArtifactKind, t: f64, c: f64) -> QualityRow {
        QualityRow {
            method: method.into(),
            kind,
            snr_db: None,
            n: 10,
            rrmse_t: t,
            rrmse_s: 0.0,
            cc: c,
            snr_imp_db: 0.0,
        }
    }

    #[test]
    fn markdown_has_a_table_per_kind_and_the_artifact_free_one() {
        let results = vec![
            RecordingQuality {
                recording: "a.edf".into(),
                segments: 3,
                rows: vec![
                    row("sae", ArtifactKind::Eog, 0.5, 0.85),
                    row("bp", ArtifactKind::Eog, 0.7, 0.75),
                ],
                clean: vec![("sae".into(), 0.2, 3), ("bp".into(), 0.4, 3)],
            },
            RecordingQuality {
                recording: "pooled".into(),
                segments: 3,
                rows: vec![row("sae", ArtifactKind::Eog, 0.5, 0.85)],
                clean: vec![("sae".into(), 0.2, 3)],
            },
        ];
        let md = markdown(&results, &[ArtifactKind::Eog]);
        let want = "\nEOG (RRMSE_t / CC, mean over the 10 levels)\n\n\
                    | recording | segments | sae | bp |\n|---|---|---|---|\n\
                    | a.edf | 3 | 0.500 / 0.850 | 0.700 / 0.750 |\n\
                    | pooled | 3 | 0.500 / 0.850 | - |\n\
                    \nARTIFACT-FREE (RRMSE_t between output and input, one 2 s window per segment; 0 = passed through)\n\n\
                    | recording | windows | sae | bp |\n|---|---|---|---|\n\
                    | a.edf | 3 | 0.200 | 0.400 |\n\
                    | pooled | 3 | 0.200 | - |\n";
        assert_eq!(md, want);
        // No artifact-free numbers: no such table.
        let mut bare = results;
        bare.iter_mut().for_each(|q| q.clean.clear());
        assert!(!markdown(&bare, &[ArtifactKind::Eog]).contains("ARTIFACT-FREE"));
    }
}
