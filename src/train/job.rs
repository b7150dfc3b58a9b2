//! Training from activation files (behind `mfr-eeg train`): [`TrainJob`] says what to read,
//! how to train and where to write; [`run`] trains, writes metrics, checkpoints and the model
//! file(s), and returns a [`TrainJobReport`] for the caller to show.

use super::TrainError;
use super::backend::BackendKind;
use super::config::TrainConfig;
use super::data::BatchSource;
use super::data_file::FileSource;
use super::export::{ExportInfo, ExportWhich, export_outcome, with_suffix};
use super::trainer::{GradPath, TrainEvent, TrainOptions, TrainOutcome, train_with};
use crate::core::Normalisation;
use std::path::PathBuf;

/// One training run from files. [`Default`] holds every default of `mfr-eeg train` (the
/// paths are empty and must be set).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainJob {
    /// Input windows: `.npy` (f32/f16) or `.safetensors`, a `[n, d_in]` matrix.
    pub data: PathBuf,
    /// Target windows of the same shape (denoising pairs); `None`: reconstruct the input.
    pub targets: Option<PathBuf>,
    /// Tensor name inside a `.safetensors` file holding several.
    pub tensor: Option<String>,
    /// Fraction of rows (the last ones) held out for validation.
    pub val_frac: f64,
    /// Model file to write.
    pub out: PathBuf,
    /// Export the best SAE (lowest validation loss) or all of them.
    pub export: ExportWhich,
    /// The training configuration; its `d_in` is replaced by the data's row length.
    pub config: TrainConfig,
    /// Backend.
    pub backend: BackendKind,
    /// Gradient computation (`None`: [`GradPath::default_for`] the backend).
    pub grad_path: Option<GradPath>,
    /// Validate every this many steps and export the weights with the lowest validation
    /// loss (early stopping; the final weights compete too).
    pub select_every: Option<usize>,
    /// JSON-lines metrics file (`None`: `<out>.metrics.jsonl`).
    pub metrics: Option<PathBuf>,
    /// Checkpoint file (`None`: `<out>.ckpt` when `checkpoint_every > 0`).
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint period in steps (0: none).
    pub checkpoint_every: usize,
    /// Resume from this checkpoint (same configuration required).
    pub resume: Option<PathBuf>,
    /// Per-window normalisation (applied to inputs and targets, recorded in the model).
    pub normalisation: Normalisation,
    /// Hop between windows for streaming inference (`None`: d_in / 2).
    pub hop: Option<usize>,
    /// Sample rate of the windows (Hz), recorded in the model.
    pub sample_rate: f32,
    /// Channel type recorded in the model.
    pub channel_type: String,
}

impl Default for TrainJob {
    fn default() -> Self {
        Self {
            data: PathBuf::new(),
            targets: None,
            tensor: None,
            val_frac: 0.1,
            out: PathBuf::new(),
            export: ExportWhich::Best,
            config: TrainConfig::default(),
            backend: BackendKind::Wgpu,
            grad_path: None,
            select_every: None,
            metrics: None,
            checkpoint: None,
            checkpoint_every: 0,
            resume: None,
            normalisation: Normalisation::WindowZscore,
            hop: None,
            sample_rate: 256.0,
            channel_type: "EEG".into(),
        }
    }
}

/// What a [`run`] trained and wrote.
#[derive(Debug)]
pub struct TrainJobReport {
    /// The trainer's result (validation losses, best SAE, weights).
    pub outcome: TrainOutcome,
    /// Model files written.
    pub written: Vec<PathBuf>,
}

/// Applies the core's per-window normalisation (input statistics) to inputs and targets.
struct Normalised<S>(S, Normalisation);

impl<S: BatchSource> BatchSource for Normalised<S> {
    fn name(&self) -> String {
        self.0.name()
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn read_rows(
        &mut self,
        idx: &[usize],
        inputs: &mut Vec<f32>,
        targets: &mut Vec<f32>,
    ) -> Result<(), TrainError> {
        self.0.read_rows(idx, inputs, targets)?;
        let d = self.0.dim();
        for (x, t) in inputs.chunks_exact_mut(d).zip(targets.chunks_exact_mut(d)) {
            self.1.normalise_pair(x, t);
        }
        Ok(())
    }
}

/// Trains `job`, writes metrics, checkpoints and the model file(s); `progress` hears the
/// trainer's events.
pub fn run(
    job: &TrainJob,
    progress: Option<&mut dyn FnMut(TrainEvent<'_>)>,
) -> Result<TrainJobReport, TrainError> {
    let (train_src, val_src) = FileSource::open_split(
        &job.data,
        job.targets.as_deref(),
        job.tensor.as_deref(),
        job.val_frac,
    )?;
    let d_in = train_src.dim();
    let cfg = TrainConfig {
        d_in,
        ..job.config.clone()
    };
    cfg.validate()?;
    let metrics_path = job
        .metrics
        .clone()
        .unwrap_or_else(|| with_suffix(&job.out, ".metrics.jsonl"));
    let mut metrics =
        std::fs::File::create(&metrics_path).map_err(|e| TrainError::io(&metrics_path, e))?;
    let checkpoint = (job.checkpoint_every > 0).then(|| {
        (
            job.checkpoint
                .clone()
                .unwrap_or_else(|| with_suffix(&job.out, ".ckpt")),
            job.checkpoint_every,
        )
    });
    let opts = TrainOptions {
        metrics_out: Some(&mut metrics),
        // Shortens the callback's trait-object lifetime to this function's borrow of `metrics`.
        progress: progress.map(|p| p as &mut dyn FnMut(TrainEvent<'_>)),
        checkpoint,
        resume: job.resume.clone(),
        stop_after: None,
        grad_path: job.grad_path,
        select_every: job.select_every,
    };
    let norm = job.normalisation;
    let outcome = train_with(
        &cfg,
        &mut Normalised(train_src, norm),
        &mut Normalised(val_src, norm),
        job.backend,
        opts,
    )?;
    let info = ExportInfo {
        hop: job.hop.unwrap_or((d_in / 2).max(1)),
        sample_rate_hz: job.sample_rate,
        channel_type: job.channel_type.clone(),
        normalisation: norm,
        provenance: format!(
            "mfr-eeg {} train: data {}{}, {} steps on {}, seed {}, mfr_alpha {}",
            env!("CARGO_PKG_VERSION"),
            job.data.display(),
            job.targets
                .as_ref()
                .map(|t| format!(" -> {}", t.display()))
                .unwrap_or_default(),
            cfg.steps,
            job.backend,
            cfg.seed,
            cfg.mfr_alpha
        ),
    };
    let written = export_outcome(&outcome, &job.out, job.export, &info)?;
    Ok(TrainJobReport { outcome, written })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::npy::{NpyDtype, write_npy};

    #[test]
    fn run_reports_every_step_and_writes_a_model_of_the_data_width() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("x.npy");
        let (rows, d) = (40, 8);
        let x: Vec<f64> = (0..rows * d)
            .map(|i| ((i * 37 % 11) as f64) - 5.0)
            .collect();
        write_npy(&data, &[rows, d], &x, NpyDtype::F32).unwrap();
        let job = TrainJob {
            data,
            out: dir.path().join("m.safetensors"),
            config: TrainConfig::new(0, 16, 4)
                .with_steps(6)
                .with_batch_size(8)
                .with_log_every(2)
                .with_k_aux(4),
            backend: BackendKind::Flex,
            ..TrainJob::default()
        };
        let mut events = Vec::new();
        let report = run(
            &job,
            Some(&mut |e: TrainEvent<'_>| {
                events.push(match e {
                    TrainEvent::Start { step, steps } => format!("start {step}/{steps}"),
                    TrainEvent::Metrics(m) => format!("metrics {}", m.step),
                    TrainEvent::Step(s) => format!("step {s}"),
                    TrainEvent::Done => "done".into(),
                })
            }),
        )
        .unwrap();
        // Metrics every 2 steps and at the last one, each before its step completes.
        let want = [
            "start 0/6",
            "metrics 0",
            "step 1",
            "step 2",
            "metrics 2",
            "step 3",
            "step 4",
            "metrics 4",
            "step 5",
            "metrics 5",
            "step 6",
            "done",
        ];
        assert_eq!(events, want);
        assert_eq!(report.written, std::slice::from_ref(&job.out));
        let m = crate::model::Model::load(&job.out).unwrap();
        assert_eq!((m.meta().d_in, m.meta().hop), (d, d / 2));
        assert!(with_suffix(&job.out, ".metrics.jsonl").exists());
    }
}
