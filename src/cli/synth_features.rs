//! `mfr-eeg synth-features`: arguments, per-run lines on stderr and the table on stdout.

use std::path::PathBuf;

use mfr_eeg::train::synth_features::{SynthOptions, sweep, table, write_json};
use mfr_eeg::train::trainer::GradPath;

use super::train::{BackendArg, GradPathArg, MmcsArg};
use super::{outln, write_stdout};

fn opts() -> SynthOptions {
    SynthOptions::default()
}

/// Command-line arguments of `synth-features`.
#[derive(Clone, Debug, clap::Args)]
pub struct SynthArgs {
    /// MFR weights to compare (0 = independent SAEs).
    #[arg(long, value_delimiter = ',', default_values_t = opts().alphas)]
    pub alphas: Vec<f64>,
    /// Seeds (each re-draws features, data and initialisation).
    #[arg(long, default_value_t = opts().seeds)]
    pub seeds: u64,
    /// Optimiser steps per run.
    #[arg(long, default_value_t = opts().steps)]
    pub steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = opts().batch_size)]
    pub batch_size: usize,
    /// Learning rate (the same for every arm).
    #[arg(long, default_value_t = opts().lr)]
    pub lr: f64,
    /// Training data points per seed.
    #[arg(long, default_value_t = opts().train_points)]
    pub train_points: usize,
    /// Validation data points per seed.
    #[arg(long, default_value_t = opts().val_points)]
    pub val_points: usize,
    /// SAEs trained together.
    #[arg(long, default_value_t = opts().n_saes)]
    pub n_saes: usize,
    /// Latents per SAE.
    #[arg(long, default_value_t = opts().d_sae)]
    pub d_sae: usize,
    /// Latents kept.
    #[arg(long, default_value_t = opts().k)]
    pub k: usize,
    /// MMCS variant of the penalty.
    #[arg(long, value_enum, default_value_t = opts().mmcs.into())]
    pub mmcs: MmcsArg,
    /// MFR warm-up steps.
    #[arg(long, default_value_t = opts().mfr_warmup)]
    pub mfr_warmup: usize,
    /// Backend.
    #[arg(long, value_enum, default_value_t = opts().backend.into())]
    pub backend: BackendArg,
    /// Gradient computation (default: sparse on flex/ndarray, autodiff on wgpu).
    #[arg(long, value_enum)]
    pub grad_path: Option<GradPathArg>,
    /// Active features per data point (all from one group).
    #[arg(long, default_value_t = opts().active)]
    pub active: usize,
    /// Geometric decay of the selection weight within a group.
    #[arg(long, default_value_t = opts().decay)]
    pub decay: f64,
    /// Also write every run's scores as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl SynthArgs {
    /// The sweep these arguments describe.
    pub fn options(&self) -> SynthOptions {
        SynthOptions {
            alphas: self.alphas.clone(),
            seeds: self.seeds,
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            train_points: self.train_points,
            val_points: self.val_points,
            n_saes: self.n_saes,
            d_sae: self.d_sae,
            k: self.k,
            mmcs: self.mmcs.into(),
            mfr_warmup: self.mfr_warmup,
            backend: self.backend.into(),
            grad_path: self.grad_path.map(Into::into),
            active: self.active,
            decay: self.decay,
        }
    }
}

/// Runs the sweep: one line per trained SAE on stderr, the table on stdout.
pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let o = args.options();
    let arms = sweep(&o, |r| {
        let s = r.score;
        eprintln!(
            "seed {} alpha {:e} sae {}: mmcs_true {:.4} recovered {:.3} fvu {:.4} dead {:.3}",
            r.seed, r.alpha, r.sae, s.mmcs_true, s.recovered, s.fvu, s.dead
        );
    })?;
    let n = arms.first().map(|a| a.scores.len()).unwrap_or(0);
    let mut out = String::new();
    outln!(
        out,
        "Known-feature experiment: {} seeds x {} SAEs = {n} values per cell (mean ± std); \
         {} steps, batch {}, lr {}, d_sae {}, k {}, {} active of a group (decay {}), MMCS {:?}, \
         backend {}, {} gradients.\n",
        o.seeds,
        o.n_saes,
        o.steps,
        o.batch_size,
        o.lr,
        o.d_sae,
        o.k,
        o.active,
        o.decay,
        o.mmcs,
        o.backend,
        o.grad_path
            .unwrap_or_else(|| GradPath::default_for(o.backend))
            .name()
    );
    out.push_str(&table(&arms));
    write_stdout(&out)?;
    if let Some(p) = &args.json {
        write_json(p, &arms)?;
    }
    Ok(())
}
