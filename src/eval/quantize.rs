//! Checking an int8 model against its f32 original before writing it (behind
//! `mfr-eeg quantize IN OUT`): both run on the held-out test split of eval's seeded synthetic
//! data, and the int8 file is written only when it is within [`MAX_RELATIVE_LOSS`].

use super::EvalError;
use super::data::{
    ArtifactKind, ArtifactSource, SnrPlan, make_windows, model_segments, split_segments,
};
use super::metrics::{cc, rrmse_t};
use crate::model::quantize::quantize_tensors;
use crate::model::{Model, ModelFileError};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest relative worsening of RRMSE_t or CC the command accepts from int8 (2 %).
pub const MAX_RELATIVE_LOSS: f64 = 0.02;

/// How [`quantize_file`] checks the int8 model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizeOptions {
    /// Seed of the synthetic evaluation data (eval's generator; its test split is used).
    pub seed: u64,
    /// Clean source segments generated before splitting (about 15 % land in the test split).
    pub segments: usize,
    /// Write the int8 model even if it is more than [`MAX_RELATIVE_LOSS`] worse.
    pub force: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self {
            seed: 2024,
            segments: 200,
            force: false,
        }
    }
}

/// Errors of the quantise command.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// Reading the input or writing the output failed.
    #[error(transparent)]
    Model(#[from] ModelFileError),
    /// The input is already int8.
    #[error("{path}: model is already int8")]
    AlreadyInt8 {
        /// The input file.
        path: PathBuf,
    },
    /// Building the evaluation set or a metric failed.
    #[error("evaluation data: {0}")]
    Eval(#[from] EvalError),
    /// The int8 model is more than 2 % worse than the f32 one (nothing was written).
    #[error("{path}: int8 model too lossy, not written (use --force to write anyway):\n{report}")]
    TooLossy {
        /// The output that was not written.
        path: PathBuf,
        /// The measurements.
        report: QuantizeReport,
    },
}

/// Quality of the f32 and int8 models on the evaluation windows.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeReport {
    /// Test windows evaluated.
    pub windows: usize,
    /// Mean RRMSE_t of the noisy input itself (what "no denoising" scores).
    pub rrmse_t_input: f64,
    /// Mean RRMSE_t (denoised vs clean) of the f32 model.
    pub rrmse_t_f32: f64,
    /// Mean RRMSE_t of the int8 model.
    pub rrmse_t_int8: f64,
    /// Mean CC (denoised vs clean) of the f32 model.
    pub cc_f32: f64,
    /// Mean CC of the int8 model.
    pub cc_int8: f64,
    /// RMS of (int8 output - f32 output) relative to the RMS of the f32 output.
    pub output_deviation: f64,
    /// Bytes of weight data, f32 model.
    pub bytes_f32: usize,
    /// Bytes of weight data, int8 model.
    pub bytes_int8: usize,
}

impl QuantizeReport {
    /// Relative worsening of RRMSE_t (positive = worse).
    pub fn rrmse_loss(&self) -> f64 {
        (self.rrmse_t_int8 - self.rrmse_t_f32) / self.rrmse_t_f32
    }
    /// Relative worsening of CC (positive = worse).
    pub fn cc_loss(&self) -> f64 {
        (self.cc_f32 - self.cc_int8) / self.cc_f32.abs()
    }
    /// True if both losses are within [`MAX_RELATIVE_LOSS`].
    pub fn acceptable(&self) -> bool {
        self.rrmse_loss() <= MAX_RELATIVE_LOSS && self.cc_loss() <= MAX_RELATIVE_LOSS
    }
}

impl fmt::Display for QuantizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "windows: {} (synthetic test split, mixed artifacts)",
            self.windows
        )?;
        writeln!(f, "RRMSE_t of the noisy input: {:.4}", self.rrmse_t_input)?;
        writeln!(
            f,
            "RRMSE_t: f32 {:.4}  int8 {:.4}  ({:+.2} %)",
            self.rrmse_t_f32,
            self.rrmse_t_int8,
            100.0 * self.rrmse_loss()
        )?;
        writeln!(
            f,
            "CC:      f32 {:.4}  int8 {:.4}  ({:+.2} % worse)",
            self.cc_f32,
            self.cc_int8,
            100.0 * self.cc_loss()
        )?;
        writeln!(
            f,
            "int8 vs f32 output deviation: {:.4} (relative RMS)",
            self.output_deviation
        )?;
        write!(
            f,
            "weight bytes: f32 {}  int8 {}",
            self.bytes_f32, self.bytes_int8
        )
    }
}

/// Compares `f32_model` and `int8_model` on the test split of eval's seeded synthetic data
/// (physiological-model clean EEG, mixed artifacts at the EEGdenoiseNet test SNR levels,
/// windows of `d_in` at the model's rate), each window through the model's own normalisation.
pub fn evaluate(
    f32_model: &Model,
    int8_model: &Model,
    seed: u64,
    segments: usize,
) -> Result<QuantizeReport, QuantizeError> {
    let meta = f32_model.meta();
    let fs = f64::from(meta.sample_rate_hz);
    let segs = model_segments(seed, segments.max(3), 2 * meta.d_in, fs, 0);
    let test = split_segments(segs, (0.7, 0.15), seed).test;
    let kind = ArtifactKind::Mixed;
    let plan = SnrPlan::Levels(kind.test_snr_levels_db().to_vec());
    let windows = make_windows(
        &test,
        kind,
        ArtifactSource::Generated,
        &plan,
        meta.d_in,
        fs,
        seed,
    )?;
    let (a, b) = (f32_model.view().sae(), int8_model.view().sae());
    let mut scratch = vec![0.0; a.scratch_len()];
    let mut topk = vec![0; a.k()];
    let (mut ya, mut yb) = (vec![0.0f32; meta.d_in], vec![0.0f32; meta.d_in]);
    let (mut ra, mut rb, mut ca, mut cb, mut rin) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut dev2, mut ref2) = (0.0f64, 0.0f64);
    for w in &windows {
        // Lengths match the models by construction, so these cannot fail.
        let _ = a.denoise_window_into(&w.noisy, &mut ya, &mut scratch, &mut topk);
        let _ = b.denoise_window_into(&w.noisy, &mut yb, &mut scratch, &mut topk);
        rin += rrmse_t(&w.noisy, &w.clean)?;
        ra += rrmse_t(&ya, &w.clean)?;
        rb += rrmse_t(&yb, &w.clean)?;
        ca += cc(&ya, &w.clean)?;
        cb += cc(&yb, &w.clean)?;
        for (&p, &q) in ya.iter().zip(&yb) {
            dev2 += f64::from(p - q).powi(2);
            ref2 += f64::from(p).powi(2);
        }
    }
    let n = windows.len().max(1) as f64;
    Ok(QuantizeReport {
        windows: windows.len(),
        rrmse_t_input: rin / n,
        rrmse_t_f32: ra / n,
        rrmse_t_int8: rb / n,
        cc_f32: ca / n,
        cc_int8: cb / n,
        output_deviation: (dev2 / ref2.max(f64::MIN_POSITIVE)).sqrt(),
        bytes_f32: a.weight_bytes(),
        bytes_int8: b.weight_bytes(),
    })
}

/// Quantises the model at `input`, evaluates it, and writes it to `output` if it is within
/// [`MAX_RELATIVE_LOSS`] of the f32 model (or `opts.force`). Returns the report.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
) -> Result<QuantizeReport, QuantizeError> {
    let model = Model::load(input)?;
    if model.is_int8() {
        return Err(QuantizeError::AlreadyInt8 {
            path: input.to_owned(),
        });
    }
    let meta = model.meta();
    let q = quantize_tensors(&meta, &model.tensors());
    let int8 = Model::from_int8(&meta, &q).map_err(|e| match e {
        ModelFileError::Invalid { source, .. } => ModelFileError::Invalid {
            path: output.to_owned(),
            source,
        },
        other => other,
    })?;
    let report = evaluate(&model, &int8, opts.seed, opts.segments)?;
    if !report.acceptable() && !opts.force {
        return Err(QuantizeError::TooLossy {
            path: output.to_owned(),
            report,
        });
    }
    crate::io::atomic::write_atomic(output, int8.bytes()).map_err(|e| ModelFileError::Io {
        path: output.to_owned(),
        source: e.into(),
    })?;
    Ok(report)
}
