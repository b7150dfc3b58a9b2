//! Export of trained SAEs to the one model format (`mfr_eeg::model`), with the training
//! configuration saved as JSON beside each model file (`<model>.train.json`).

use super::TrainError;
use super::checkpoint::atomic_write;
use super::config::{ActivationKind, TrainConfig};
use super::sae::SaeTensors;
use super::trainer::TrainOutcome;
use crate::core::{Activation, Normalisation};
use crate::model::{ModelMeta, ModelTensors, SkipPath, write_model};
use std::path::{Path, PathBuf};

/// What the model file says about the data it expects, beyond the SAE sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportInfo {
    /// Hop between windows (samples) for streaming overlap-add.
    pub hop: usize,
    /// Sample rate the model was trained at.
    pub sample_rate_hz: f32,
    /// Channel type (e.g. "EEG").
    pub channel_type: String,
    /// Normalisation applied to each window before the SAE.
    pub normalisation: Normalisation,
    /// Free-text provenance (data, command, commit).
    pub provenance: String,
}

/// Which SAEs of a run to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportWhich {
    /// The SAE with the lowest validation loss, to the given path.
    Best,
    /// Every SAE, to `<stem>-sae<i>.<ext>`.
    All,
}

/// The core's activation for a training activation.
pub fn core_activation(a: ActivationKind) -> Activation {
    match a {
        ActivationKind::TopkRelu => Activation::TopkRelu,
        ActivationKind::TopkSigned => Activation::TopkSigned,
    }
}

/// Gate of a linear path that opens in every window (`Skip::opens` compares the window's
/// high-frequency ratio with it).
pub const ALWAYS_OPEN: f32 = f32::MAX;

/// The model file's tensors for one SAE; a residual SAE's output is a correction, so it gets
/// the identity as a linear path, which adds the input back: in every window, or in those
/// `residual_gate` opens (a gated residual SAE, see
/// [`crate::train::TrainConfig::residual_gate`]).
pub fn model_tensors(s: &SaeTensors, residual: bool, residual_gate: Option<f32>) -> ModelTensors {
    ModelTensors {
        w_enc: s.w_enc.clone(),
        w_dec: s.w_dec.clone(),
        b_enc: s.b_enc.clone(),
        b_dec: s.b_dec.clone(),
        skip: residual.then(|| SkipPath {
            taps: vec![1.0],
            gate: residual_gate.unwrap_or(ALWAYS_OPEN),
        }),
        front: None,
    }
}

/// The model file's metadata for a configuration.
pub fn model_meta(cfg: &TrainConfig, info: &ExportInfo) -> ModelMeta {
    ModelMeta {
        d_in: cfg.d_in,
        d_sae: cfg.d_sae,
        k: cfg.k,
        hop: info.hop,
        activation: core_activation(cfg.activation),
        normalisation: info.normalisation,
        sample_rate_hz: info.sample_rate_hz,
        channel_type: info.channel_type.clone(),
        provenance: info.provenance.clone(),
        ola: crate::core::OlaShape::Hann,
        blend: None,
    }
}

/// Path of the training-configuration JSON saved beside a model file.
pub fn config_path(model: &Path) -> PathBuf {
    with_suffix(model, ".train.json")
}

/// `path` with `suffix` appended to its file name (`a.safetensors` -> `a.safetensors.ckpt`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes one SAE to `path` (atomically) and its configuration beside it.
pub fn export_sae(
    path: &Path,
    cfg: &TrainConfig,
    sae: &SaeTensors,
    info: &ExportInfo,
) -> Result<(), TrainError> {
    write_model(
        path,
        &model_meta(cfg, info),
        &model_tensors(sae, cfg.residual, cfg.residual_gate),
    )
    .map_err(|e| TrainError::Export {
        path: path.into(),
        problem: e.to_string(),
    })?;
    atomic_write(
        &config_path(path),
        burn::config::config_to_json(cfg).as_bytes(),
    )
}

/// Exports the best or all SAEs of a run; returns the files written.
pub fn export_outcome(
    out: &TrainOutcome,
    path: &Path,
    which: ExportWhich,
    info: &ExportInfo,
) -> Result<Vec<PathBuf>, TrainError> {
    match which {
        ExportWhich::Best => {
            export_sae(path, &out.config, &out.saes[out.best], info)?;
            Ok(vec![path.to_path_buf()])
        }
        ExportWhich::All => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            let ext = path
                .extension()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "safetensors".into());
            let mut written = Vec::new();
            for (i, sae) in out.saes.iter().enumerate() {
                let p = path.with_file_name(format!("{stem}-sae{i}.{ext}"));
                export_sae(&p, &out.config, sae, info)?;
                written.push(p);
            }
            Ok(written)
        }
    }
}
