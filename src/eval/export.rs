//! `mfr-eeg bench --export-data DIR`: the benchmark's data as `.npy` files plus a JSON index,
//! so an outside model can be trained and scored on exactly the same pairs.
//!
//! Written (all `<f4`, C order):
//! - `train_noisy.npy`, `train_clean.npy` `[n, d_in]`: the training pairs exactly as
//!   `train-denoiser` builds them with the default model's settings (32 crops per segment,
//!   the default artifact mix, normalised like the model's input: `window_zscore_no_mean`);
//! - `val_noisy.npy`, `val_clean.npy`: the validation pairs (8 per segment) of the same kind;
//! - `val_windows_noisy.npy`, `val_windows_clean.npy`, `test_windows_noisy.npy`,
//!   `test_windows_clean.npy` `[n, seg_len]`: 2 s windows of every artifact kind at the 10
//!   fixed SNR levels, z-scored by the noisy std (EEGdenoiseNet's protocol; what the bench
//!   scores);
//! - `export.json`: the corpus config, the file shapes, the segments of each split with their
//!   recording, and per window its artifact kind, SNR and recording.
//!
//! Key items: [`ExportPlan`], [`export_data`].

use std::path::Path;

use super::EvalError;
use super::corpus::{Corpus, DEFAULT_MIX, Split};
use super::data::{ArtifactKind, Window};
use super::npy::{NpyDtype, write_atomic, write_npy};
use crate::core::Normalisation;

/// What to export; [`ExportPlan::default_model`] matches the shipped default model's card.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportPlan {
    /// Window length of the training pairs (samples).
    pub d_in: usize,
    /// Training crops per training segment.
    pub per_segment: usize,
    /// Validation crops per validation segment.
    pub val_per_segment: usize,
    /// Samples each artifact is mixed into before a `d_in` crop is cut (`--mix-len`).
    pub mix_len: usize,
    /// Share of pairs with no artifact (`--clean-fraction`).
    pub clean_fraction: f64,
    /// Normalisation of the pairs (as the model sees its input).
    #[serde(serialize_with = "normalisation_name")]
    pub normalisation: Normalisation,
    /// At most this many segments per split and kind for the 2 s level windows.
    pub max_eval_segments: usize,
}

impl ExportPlan {
    /// The default model's settings (`models/general-256hz.md`): d_in 256, 32 crops per
    /// training segment, 8 per validation segment, artifacts mixed over 512 samples, a share
    /// 0.2 of artifact-free pairs, `window_zscore_no_mean`.
    pub fn default_model() -> Self {
        Self {
            d_in: 256,
            per_segment: 32,
            val_per_segment: 8,
            mix_len: 512,
            clean_fraction: 0.2,
            normalisation: Normalisation::WindowZscoreNoMean,
            max_eval_segments: usize::MAX,
        }
    }
}

fn normalisation_name<S: serde::Serializer>(n: &Normalisation, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(n.as_str())
}

#[derive(serde::Serialize)]
struct WindowIndex {
    kind: Vec<ArtifactKind>,
    snr_db: Vec<f64>,
    recording: Vec<String>,
}

/// Writes the pairs and windows of `corpus` into `dir` (created if missing). Returns the
/// number of rows written per file name.
pub fn export_data(
    corpus: &Corpus,
    plan: &ExportPlan,
    dir: &Path,
) -> Result<Vec<(String, usize)>, EvalError> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.into(),
        source,
    })?;
    let seed = corpus.config.seed;
    let mut written = Vec::new();
    let mut write = |name: &str, data: &[f32], width: usize| -> Result<(), EvalError> {
        let rows = data.len() / width.max(1);
        let v: Vec<f64> = data.iter().map(|&x| x as f64).collect();
        write_npy(&dir.join(name), &[rows, width], &v, NpyDtype::F32)?;
        written.push((name.to_string(), rows));
        Ok(())
    };
    // The same calls and seeds as train-denoiser's `prepare`.
    let (ti, tt) = corpus.training_pairs(
        Split::Train,
        plan.d_in,
        plan.mix_len,
        plan.per_segment,
        &DEFAULT_MIX,
        plan.clean_fraction,
        plan.normalisation,
        seed,
    )?;
    write("train_noisy.npy", &ti, plan.d_in)?;
    write("train_clean.npy", &tt, plan.d_in)?;
    let (vi, vt) = corpus.training_pairs(
        Split::Val,
        plan.d_in,
        plan.mix_len,
        plan.val_per_segment,
        &DEFAULT_MIX,
        plan.clean_fraction,
        plan.normalisation,
        seed ^ 0xA1,
    )?;
    write("val_noisy.npy", &vi, plan.d_in)?;
    write("val_clean.npy", &vt, plan.d_in)?;
    let seg_len = corpus.config.seg_len;
    let mut index = serde_json::Map::new();
    for (split, stem) in [(Split::Val, "val_windows"), (Split::Test, "test_windows")] {
        let segs = corpus.segments(split);
        let n_segs = segs.len().min(plan.max_eval_segments);
        let mut windows: Vec<Window> = Vec::new();
        let mut idx = WindowIndex {
            kind: Vec::new(),
            snr_db: Vec::new(),
            recording: Vec::new(),
        };
        for kind in ArtifactKind::ALL {
            let w = corpus.level_windows(split, kind, seg_len, plan.max_eval_segments)?;
            // level_windows walks the segments in order, 10 levels each.
            let per = kind.test_snr_levels_db().len();
            for (i, x) in w.iter().enumerate() {
                idx.kind.push(x.kind);
                idx.snr_db.push(x.snr_db);
                idx.recording
                    .push(segs[(i / per).min(n_segs - 1)].origin.clone());
            }
            windows.extend(w);
        }
        let noisy: Vec<f32> = windows.iter().flat_map(|w| w.noisy.clone()).collect();
        let clean: Vec<f32> = windows.iter().flat_map(|w| w.clean.clone()).collect();
        write(&format!("{stem}_noisy.npy"), &noisy, seg_len)?;
        write(&format!("{stem}_clean.npy"), &clean, seg_len)?;
        index.insert(
            stem.to_string(),
            serde_json::to_value(&idx).map_err(|e| EvalError::Invalid(e.to_string()))?,
        );
    }
    let splits: serde_json::Map<String, serde_json::Value> = Split::ALL
        .iter()
        .map(|&s| {
            let origins: Vec<&str> = corpus
                .segments(s)
                .iter()
                .map(|g| g.origin.as_str())
                .collect();
            (s.name().to_string(), serde_json::json!(origins))
        })
        .collect();
    let files: serde_json::Map<String, serde_json::Value> = written
        .iter()
        .map(|(n, rows)| {
            let width = if n.contains("windows") {
                seg_len
            } else {
                plan.d_in
            };
            (n.clone(), serde_json::json!([rows, width]))
        })
        .collect();
    let mix: Vec<(String, f64)> = DEFAULT_MIX
        .iter()
        .map(|(k, w)| (k.name().to_string(), *w))
        .collect();
    let doc = serde_json::json!({
        "corpus": corpus.config,
        "plan": plan,
        "training_mix": mix,
        "artifact_source": match &corpus.banks {
            Some(b) if b.generated_when_empty => "recorded EMG where a split has it, otherwise generated",
            Some(_) => "recorded EOG and EMG banks",
            None => "generated",
        },
        "files": files,
        "segments": splits,
        "windows": index,
        "notes": "train/val pairs: model-normalised 1 s crops (inputs and targets divided by the noisy window's std; window_zscore_no_mean does not subtract the target's mean). *_windows: 2 s windows at the 10 test SNR levels per kind, z-scored by the noisy std; score with RRMSE_t / CC on these. A segment's origin is recording:channel@start.",
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| EvalError::Invalid(e.to_string()))?;
    write_atomic(&dir.join("export.json"), text.as_bytes())?;
    Ok(written)
}
