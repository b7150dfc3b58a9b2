//! The `train` subcommand: clap arguments and [`run`].

use super::TrainError;
use super::backend::BackendKind;
use super::config::{ActivationKind, MmcsKind, TrainConfig};
use super::data::BatchSource;
use super::data_file::FileSource;
use super::export::{ExportInfo, ExportWhich, export_outcome};
use super::trainer::{GradPath, TrainOptions, train_with};
use crate::core::Normalisation;
use std::path::PathBuf;

/// How windows are normalised before the SAE (and recorded in the model file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NormArg {
    /// Per-window z-score with the input window's mean and std (applied here to inputs and
    /// targets alike, exactly as the core will apply it at inference).
    WindowZscore,
    /// The same z-score, but the input's mean is not added back to the output (targets are
    /// only divided by the input's std): see `Normalisation::WindowZscoreNoMean`.
    WindowZscoreNoMean,
    /// Windows are used as they are.
    None,
}

impl NormArg {
    /// The core normalisation this stands for.
    pub fn normalisation(self) -> Normalisation {
        match self {
            Self::WindowZscore => Normalisation::WindowZscore,
            Self::WindowZscoreNoMean => Normalisation::WindowZscoreNoMean,
            Self::None => Normalisation::None,
        }
    }
}

/// Arguments of `mfr-eeg train`.
#[derive(Clone, Debug, clap::Args)]
pub struct TrainArgs {
    /// Input windows: `.npy` (f32/f16) or `.safetensors`, a `[n, d_in]` matrix.
    #[arg(long)]
    pub data: PathBuf,
    /// Target windows of the same shape (denoising pairs); default: reconstruct the input.
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Tensor name inside a `.safetensors` file holding several.
    #[arg(long)]
    pub tensor: Option<String>,
    /// Fraction of rows (the last ones) held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_frac: f64,
    /// Model file to write.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Export the best SAE (lowest validation loss) or all of them.
    #[arg(long, value_enum, default_value_t = ExportWhich::Best)]
    pub export: ExportWhich,
    /// Latents per SAE.
    #[arg(long, default_value_t = 512)]
    pub d_sae: usize,
    /// Latents kept per window.
    #[arg(long, default_value_t = 16)]
    pub k: usize,
    /// SAEs trained side by side.
    #[arg(long, default_value_t = 2)]
    pub n_saes: usize,
    /// Activation.
    #[arg(long, value_enum, default_value_t = ActivationKind::TopkRelu)]
    pub activation: ActivationKind,
    /// Tied weights (decoder = row-normalised encoder transpose).
    #[arg(long)]
    pub tied: bool,
    /// Optimiser steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Windows per batch.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning-rate warm-up steps.
    #[arg(long, default_value_t = 100)]
    pub lr_warmup: usize,
    /// Final fraction of the run with linear learning-rate decay.
    #[arg(long, default_value_t = 0.2)]
    pub lr_decay_frac: f64,
    /// Per-SAE gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// AuxK weight (0: off).
    #[arg(long, default_value_t = 0.03125)]
    pub auxk_alpha: f64,
    /// Dead latents used by AuxK.
    #[arg(long, default_value_t = 256)]
    pub k_aux: usize,
    /// Steps without firing after which a latent is dead.
    #[arg(long, default_value_t = 200)]
    pub dead_steps: usize,
    /// MFR weight alpha (0: independent SAEs).
    #[arg(long, default_value_t = 0.0)]
    pub mfr_alpha: f64,
    /// MFR cosine warm-up steps.
    #[arg(long, default_value_t = 200)]
    pub mfr_warmup: usize,
    /// MMCS variant.
    #[arg(long, value_enum, default_value_t = MmcsKind::Max)]
    pub mmcs: MmcsKind,
    /// Recompute the Hungarian matching every this many steps.
    #[arg(long, default_value_t = 1)]
    pub hungarian_every: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Wgpu)]
    pub backend: BackendKind,
    /// Gradient computation (default: sparse on flex/ndarray, autodiff on wgpu; same results
    /// up to f32 rounding).
    #[arg(long, value_enum)]
    pub grad_path: Option<GradPath>,
    /// Validate every this many steps and export the weights with the lowest validation loss
    /// (early stopping; the final weights compete too).
    #[arg(long)]
    pub select_every: Option<usize>,
    /// JSON-lines metrics file (default: `<out>.metrics.jsonl`).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Write a metrics line every this many steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Checkpoint file (default: `<out>.ckpt` when --checkpoint-every > 0).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint period in steps (0: none).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Resume from this checkpoint (same configuration required).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Per-window normalisation (recorded in the model).
    #[arg(long, value_enum, default_value_t = NormArg::WindowZscore)]
    pub normalisation: NormArg,
    /// Hop between windows for streaming inference (default: d_in / 2).
    #[arg(long)]
    pub hop: Option<usize>,
    /// Sample rate of the windows (Hz), recorded in the model.
    #[arg(long, default_value_t = 256.0)]
    pub sample_rate: f32,
    /// Channel type recorded in the model.
    #[arg(long, default_value = "EEG")]
    pub channel_type: String,
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

impl TrainArgs {
    /// The training configuration these arguments describe (d_in comes from the data).
    pub fn config(&self, d_in: usize) -> TrainConfig {
        TrainConfig::new(d_in, self.d_sae, self.k)
            .with_n_saes(self.n_saes)
            .with_activation(self.activation)
            .with_tied(self.tied)
            .with_steps(self.steps)
            .with_batch_size(self.batch_size)
            .with_lr(self.lr)
            .with_lr_warmup_steps(self.lr_warmup)
            .with_lr_decay_frac(self.lr_decay_frac)
            .with_grad_clip(self.grad_clip)
            .with_auxk_alpha(self.auxk_alpha)
            .with_k_aux(self.k_aux)
            .with_dead_steps(self.dead_steps)
            .with_mfr_alpha(self.mfr_alpha)
            .with_mfr_warmup(self.mfr_warmup)
            .with_mmcs(self.mmcs)
            .with_hungarian_every(self.hungarian_every)
            .with_seed(self.seed)
            .with_log_every(self.log_every)
    }
}

fn with_suffix(p: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Runs `mfr-eeg train`: trains, writes metrics, checkpoints and the model file(s).
pub fn run(args: TrainArgs) -> Result<(), TrainError> {
    let (train_src, val_src) = FileSource::open_split(
        &args.data,
        args.targets.as_deref(),
        args.tensor.as_deref(),
        args.val_frac,
    )?;
    let d_in = train_src.dim();
    let cfg = args.config(d_in);
    cfg.validate()?;
    let metrics_path = args
        .metrics
        .clone()
        .unwrap_or_else(|| with_suffix(&args.out, ".metrics.jsonl"));
    let mut metrics =
        std::fs::File::create(&metrics_path).map_err(|e| TrainError::io(&metrics_path, e))?;
    let checkpoint = (args.checkpoint_every > 0).then(|| {
        (
            args.checkpoint
                .clone()
                .unwrap_or_else(|| with_suffix(&args.out, ".ckpt")),
            args.checkpoint_every,
        )
    });
    let opts = TrainOptions {
        metrics_out: Some(&mut metrics),
        progress: true,
        checkpoint,
        resume: args.resume.clone(),
        stop_after: None,
        grad_path: args.grad_path,
        select_every: args.select_every,
    };
    let norm = args.normalisation.normalisation();
    let outcome = train_with(
        &cfg,
        &mut Normalised(train_src, norm),
        &mut Normalised(val_src, norm),
        args.backend,
        opts,
    )?;
    let info = ExportInfo {
        hop: args.hop.unwrap_or((d_in / 2).max(1)),
        sample_rate_hz: args.sample_rate,
        channel_type: args.channel_type.clone(),
        normalisation: norm,
        provenance: format!(
            "mfr-eeg {} train: data {}{}, {} steps on {}, seed {}, mfr_alpha {}",
            env!("CARGO_PKG_VERSION"),
            args.data.display(),
            args.targets
                .as_ref()
                .map(|t| format!(" -> {}", t.display()))
                .unwrap_or_default(),
            cfg.steps,
            args.backend,
            cfg.seed,
            cfg.mfr_alpha
        ),
    };
    let written = export_outcome(&outcome, &args.out, args.export, &info)?;
    for (i, (l, f)) in outcome.val_loss.iter().zip(&outcome.val_fvu).enumerate() {
        eprintln!(
            "SAE {i}: validation MSE {l:.6}, FVU {f:.4}, weights of step {}{}",
            outcome.best_step[i],
            if i == outcome.best { " (best)" } else { "" }
        );
    }
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
