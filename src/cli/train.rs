//! `mfr-eeg train`: arguments, the training progress bar and the summary; also the
//! command-line spellings of the training enums shared with `synth-features` and
//! `train-denoiser`.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use mfr_eeg::core::Normalisation;
use mfr_eeg::eval::train_denoiser::SelectBy;
use mfr_eeg::train::config::{ActivationKind, MmcsKind};
use mfr_eeg::train::export::ExportWhich;
use mfr_eeg::train::job::{self, TrainJob};
use mfr_eeg::train::trainer::GradPath;
use mfr_eeg::train::{BackendKind, TrainConfig, TrainEvent};

/// Declares a `clap::ValueEnum` with the variants of a library enum, and the conversions
/// both ways: the library stays free of clap, and the names on the command line are the
/// variants' names in kebab case.
macro_rules! value_enum {
    ($(#[$m:meta])* $name:ident => $lib:ident { $($(#[$vm:meta])* $v:ident,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }
        impl From<$name> for $lib {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$v => $lib::$v,)+
                }
            }
        }
        impl From<$lib> for $name {
            fn from(v: $lib) -> Self {
                match v {
                    $($lib::$v => $name::$v,)+
                }
            }
        }
    };
}

value_enum! {
    /// Which latents a TopK SAE keeps and what it does to them.
    ActivationArg => ActivationKind {
        /// Keep the k largest pre-activations, then ReLU (a kept negative value becomes 0).
        TopkRelu,
        /// Keep the k largest pre-activations with their sign (no ReLU; the MFR paper's).
        TopkSigned,
    }
}

value_enum! {
    /// How two decoder dictionaries are compared in the MFR penalty.
    MmcsArg => MmcsKind {
        /// Mean over one dictionary's atoms of the max cosine to the other's, averaged over both
        /// directions (Marks et al. 2024, first version).
        Max,
        /// One-to-one matching of atoms by the Hungarian algorithm on the cosine matrix, mean of
        /// the matched cosines (the paper's later code).
        Hungarian,
    }
}

value_enum! {
    /// Which burn backend trains the SAEs.
    BackendArg => BackendKind {
        /// burn-wgpu: the GPU (or lavapipe) through Vulkan/Metal/DX12.
        Wgpu,
        /// burn-flex: pure-Rust CPU backend.
        Flex,
        /// burn-ndarray: the older CPU backend (deprecated upstream in favour of flex).
        Ndarray,
    }
}

value_enum! {
    /// How a step's loss and gradients are computed (same numbers up to f32 rounding).
    GradPathArg => GradPath {
        /// burn autodiff over dense latents. The default on wgpu.
        Autodiff,
        /// Hand-derived gradients over the k selected latents (the sparse step). The default
        /// on the CPU backends.
        Sparse,
    }
}

value_enum! {
    /// How windows are normalised before the SAE (and recorded in the model file).
    NormArg => Normalisation {
        /// Per-window z-score with the input window's mean and std (applied here to inputs and
        /// targets alike, exactly as the core will apply it at inference).
        WindowZscore,
        /// The same z-score, but the input's mean is not added back to the output (targets are
        /// only divided by the input's std): see `Normalisation::WindowZscoreNoMean`.
        WindowZscoreNoMean,
        /// Windows are used as they are.
        None,
    }
}

value_enum! {
    /// Which SAEs of a run to export.
    ExportArg => ExportWhich {
        /// The SAE with the lowest validation loss, to the given path.
        Best,
        /// Every SAE, to `<stem>-sae<i>.<ext>`.
        All,
    }
}

value_enum! {
    /// What `train-denoiser` ranks runs by.
    SelectByArg => SelectBy {
        /// Validation loss of the SAE.
        ValLoss,
        /// RRMSE_t of the validation EOG+EMG level windows, linear path included.
        ValWindows,
    }
}

/// The defaults `train` shows and uses: the library's, written once there.
fn cfg() -> TrainConfig {
    TrainConfig::default()
}

fn job() -> TrainJob {
    TrainJob::default()
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
    #[arg(long, default_value_t = job().val_frac)]
    pub val_frac: f64,
    /// Model file to write.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Export the best SAE (lowest validation loss) or all of them.
    #[arg(long, value_enum, default_value_t = job().export.into())]
    pub export: ExportArg,
    /// Latents per SAE.
    #[arg(long, default_value_t = cfg().d_sae)]
    pub d_sae: usize,
    /// Latents kept per window.
    #[arg(long, default_value_t = cfg().k)]
    pub k: usize,
    /// SAEs trained side by side.
    #[arg(long, default_value_t = cfg().n_saes)]
    pub n_saes: usize,
    /// Activation.
    #[arg(long, value_enum, default_value_t = cfg().activation.into())]
    pub activation: ActivationArg,
    /// Tied weights (decoder = row-normalised encoder transpose).
    #[arg(long)]
    pub tied: bool,
    /// Residual SAEs: each learns the correction targets - inputs (needs --targets to mean
    /// anything), and the exported model adds its input back through an identity path.
    #[arg(long)]
    pub residual: bool,
    /// Optimiser steps.
    #[arg(long, default_value_t = cfg().steps)]
    pub steps: usize,
    /// Windows per batch.
    #[arg(long, default_value_t = cfg().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = cfg().lr)]
    pub lr: f64,
    /// Learning-rate warm-up steps.
    #[arg(long, default_value_t = cfg().lr_warmup_steps)]
    pub lr_warmup: usize,
    /// Final fraction of the run with linear learning-rate decay.
    #[arg(long, default_value_t = cfg().lr_decay_frac)]
    pub lr_decay_frac: f64,
    /// Per-SAE gradient-norm clip (0: off).
    #[arg(long, default_value_t = cfg().grad_clip)]
    pub grad_clip: f64,
    /// AuxK weight (0: off).
    #[arg(long, default_value_t = cfg().auxk_alpha)]
    pub auxk_alpha: f64,
    /// Dead latents used by AuxK.
    #[arg(long, default_value_t = cfg().k_aux)]
    pub k_aux: usize,
    /// Steps without firing after which a latent is dead.
    #[arg(long, default_value_t = cfg().dead_steps)]
    pub dead_steps: usize,
    /// MFR weight alpha (0: independent SAEs).
    #[arg(long, default_value_t = cfg().mfr_alpha)]
    pub mfr_alpha: f64,
    /// MFR cosine warm-up steps.
    #[arg(long, default_value_t = cfg().mfr_warmup)]
    pub mfr_warmup: usize,
    /// MMCS variant.
    #[arg(long, value_enum, default_value_t = cfg().mmcs.into())]
    pub mmcs: MmcsArg,
    /// Recompute the Hungarian matching every this many steps.
    #[arg(long, default_value_t = cfg().hungarian_every)]
    pub hungarian_every: usize,
    /// Seed.
    #[arg(long, default_value_t = cfg().seed)]
    pub seed: u64,
    /// Backend.
    #[arg(long, value_enum, default_value_t = job().backend.into())]
    pub backend: BackendArg,
    /// Gradient computation (default: sparse on flex/ndarray, autodiff on wgpu; same results
    /// up to f32 rounding).
    #[arg(long, value_enum)]
    pub grad_path: Option<GradPathArg>,
    /// Validate every this many steps and export the weights with the lowest validation loss
    /// (early stopping; the final weights compete too).
    #[arg(long)]
    pub select_every: Option<usize>,
    /// JSON-lines metrics file (default: `<out>.metrics.jsonl`).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Write a metrics line every this many steps.
    #[arg(long, default_value_t = cfg().log_every)]
    pub log_every: usize,
    /// Checkpoint file (default: `<out>.ckpt` when --checkpoint-every > 0).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint period in steps (0: none).
    #[arg(long, default_value_t = job().checkpoint_every)]
    pub checkpoint_every: usize,
    /// Resume from this checkpoint (same configuration required).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Per-window normalisation (recorded in the model).
    #[arg(long, value_enum, default_value_t = job().normalisation.into())]
    pub normalisation: NormArg,
    /// Hop between windows for streaming inference (default: d_in / 2).
    #[arg(long)]
    pub hop: Option<usize>,
    /// Sample rate of the windows (Hz), recorded in the model.
    #[arg(long, default_value_t = job().sample_rate)]
    pub sample_rate: f32,
    /// Channel type recorded in the model.
    #[arg(long, default_value_t = job().channel_type)]
    pub channel_type: String,
}

impl TrainArgs {
    /// The job these arguments describe (the configuration's `d_in` comes from the data).
    pub fn job(self) -> TrainJob {
        let config = TrainConfig {
            d_sae: self.d_sae,
            k: self.k,
            n_saes: self.n_saes,
            activation: self.activation.into(),
            tied: self.tied,
            residual: self.residual,
            residual_gate: None,
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            lr_warmup_steps: self.lr_warmup,
            lr_decay_frac: self.lr_decay_frac,
            grad_clip: self.grad_clip,
            auxk_alpha: self.auxk_alpha,
            k_aux: self.k_aux,
            dead_steps: self.dead_steps,
            mfr_alpha: self.mfr_alpha,
            mfr_warmup: self.mfr_warmup,
            mmcs: self.mmcs.into(),
            hungarian_every: self.hungarian_every,
            seed: self.seed,
            log_every: self.log_every,
            ..cfg()
        };
        TrainJob {
            data: self.data,
            targets: self.targets,
            tensor: self.tensor,
            val_frac: self.val_frac,
            out: self.out,
            export: self.export.into(),
            config,
            backend: self.backend.into(),
            grad_path: self.grad_path.map(Into::into),
            select_every: self.select_every,
            metrics: self.metrics,
            checkpoint: self.checkpoint,
            checkpoint_every: self.checkpoint_every,
            resume: self.resume,
            normalisation: self.normalisation.into(),
            hop: self.hop,
            sample_rate: self.sample_rate,
            channel_type: self.channel_type,
        }
    }
}

/// A progress bar on stderr for [`TrainEvent`]s, drawn only when stderr is a terminal.
pub struct TrainBar(indicatif::ProgressBar);

impl Default for TrainBar {
    /// A bar, hidden when stderr is not a terminal.
    fn default() -> Self {
        Self(if std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps, ETA {eta} {msg}",
                )
                .expect("static template"),
            );
            b
        } else {
            indicatif::ProgressBar::hidden()
        })
    }
}

impl TrainBar {
    /// Shows one event.
    pub fn event(&mut self, e: TrainEvent<'_>) {
        let b = &self.0;
        match e {
            TrainEvent::Start { step, steps } => {
                b.set_length(steps as u64);
                b.set_position(step as u64);
            }
            TrainEvent::Metrics(m) => b.set_message(format!(
                "mse {:.4} fvu {:.3}",
                m.mse.iter().sum::<f32>() / m.mse.len() as f32,
                m.fvu.iter().sum::<f32>() / m.fvu.len() as f32
            )),
            TrainEvent::Step(s) => b.set_position(s as u64),
            TrainEvent::Done => b.finish_and_clear(),
            _ => {}
        }
    }
}

/// Trains, writes metrics, checkpoints and the model file(s), and prints a summary.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let mut bar = TrainBar::default();
    let report = job::run(&a.job(), Some(&mut |e: TrainEvent<'_>| bar.event(e)))?;
    let o = &report.outcome;
    for (i, (l, f)) in o.val_loss.iter().zip(&o.val_fvu).enumerate() {
        eprintln!(
            "SAE {i}: validation MSE {l:.6}, FVU {f:.4}, weights of step {}{}",
            o.best_step[i],
            if i == o.best { " (best)" } else { "" }
        );
    }
    for p in &report.written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
