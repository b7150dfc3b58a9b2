//! The training loop: batched forward of all SAEs, MSE + AuxK + MFR, backward, decoder-row
//! constraint, per-SAE clipping, Adam, metrics, checkpoints and validation.

use super::TrainError;
use super::auxk::{DeadCounter, auxk_per_sae};
use super::backend::BackendKind;
use super::checkpoint::{self, Checkpoint};
use super::config::{ActivationKind, MmcsKind, TrainConfig};
use super::data::{BatchSource, Dataset, Sampler};
use super::loss::mfr::{self, Matching};
use super::loss::{fvu_per_sae, mse_per_sae, relative_mse_per_sae};
use super::optim::{Adam, AdamParams, clip_per_sae, remove_parallel};
pub use super::sae::SaeTensors;
use super::sae::{Forward, SaeStack, column_means, normalize_rows};
use super::sparse;
use burn::tensor::{Device, Tensor, TensorData};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Metrics of one logged step (one JSON line each).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    /// Step index (0-based; the metrics describe the batch of this step, before its update).
    pub step: usize,
    /// Learning rate used.
    pub lr: f64,
    /// MFR warm-up factor w(t).
    pub mfr_weight: f64,
    /// Per-SAE objective without MFR: MSE + auxk_alpha * AuxK.
    pub loss: Vec<f32>,
    /// Per-SAE MSE.
    pub mse: Vec<f32>,
    /// Per-SAE fraction of variance unexplained.
    pub fvu: Vec<f32>,
    /// Per-SAE mean number of non-zero latents per window.
    pub l0: Vec<f32>,
    /// Per-SAE fraction of dead latents.
    pub dead_frac: Vec<f32>,
    /// Per-SAE AuxK loss (0 when nothing is dead).
    pub auxk: Vec<f32>,
    /// MFR penalty `mean_pairs (1 - MMCS)` (computed with the configured MMCS).
    pub mfr_penalty: f32,
    /// MMCS of each pair `(i, j)`, `i < j`, lexicographic.
    pub mmcs: Vec<f32>,
}

/// What [`train`] returns.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// The configuration trained.
    pub config: TrainConfig,
    /// Final weights of every SAE.
    pub saes: Vec<SaeTensors>,
    /// Per-SAE validation MSE.
    pub val_loss: Vec<f32>,
    /// Per-SAE validation FVU.
    pub val_fvu: Vec<f32>,
    /// Index of the SAE with the lowest validation loss.
    pub best: usize,
    /// Logged step metrics.
    pub metrics: Vec<StepMetrics>,
    /// Steps actually run in this call (fewer than configured after `stop_after`).
    pub steps_run: usize,
}

/// Optional behaviour of [`train_with`].
#[derive(Default)]
pub struct TrainOptions<'a> {
    /// Where JSON-line metrics go.
    pub metrics_out: Option<&'a mut dyn Write>,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Checkpoint file and period in steps.
    pub checkpoint: Option<(PathBuf, usize)>,
    /// Resume from this checkpoint.
    pub resume: Option<PathBuf>,
    /// Stop (as if killed) after this global step count, after its checkpoint.
    pub stop_after: Option<usize>,
    /// Gradient path (`None`: [`GradPath::default_for`] the backend).
    pub grad_path: Option<GradPath>,
}

/// Trains `cfg.n_saes` SAEs on `train_set` and reports validation loss on `val_set`.
pub fn train(
    cfg: &TrainConfig,
    train_set: &Dataset,
    val_set: &Dataset,
    backend: BackendKind,
) -> Result<TrainOutcome, TrainError> {
    train_set.validate("training set")?;
    val_set.validate("validation set")?;
    train_with(
        cfg,
        &mut &*train_set,
        &mut &*val_set,
        backend,
        TrainOptions::default(),
    )
}

/// Tensors of one step's loss evaluation, before the update.
pub struct Computed {
    /// The forward pass (autodiff tensors; read values with `without_autodiff`).
    pub fwd: Forward,
    /// Per-SAE MSE `[N]`.
    pub mse: Tensor<1>,
    /// Per-SAE AuxK `[N]` when something is dead.
    pub auxk: Option<Tensor<1>>,
    /// Per-pair MMCS `[P]` used by the penalty, when MFR is active this step.
    pub mmcs: Option<Tensor<1>>,
    /// The MFR penalty `[1]` (unweighted), when active.
    pub penalty: Option<Tensor<1>>,
    /// The scalar that was differentiated `[1]`.
    pub total: Tensor<1>,
    /// Raw gradients in [`SaeStack::params`] order.
    pub grads: Vec<Tensor<3>>,
}

/// How a step's loss and gradients are computed. Both give the same numbers up to f32
/// rounding (the parity tests compare them); they differ in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GradPath {
    /// burn autodiff over dense `[N, B, d_sae]` latents, everything on the device. The default
    /// on wgpu, where the device does the dense work fast and host round trips cost.
    Autodiff,
    /// The dense encoder product and the MFR cosines on the device, everything that only
    /// touches the k selected latents by the host kernels of [`crate::train::sparse`]. The
    /// default on the CPU backends (about 3x faster there).
    Sparse,
}

impl GradPath {
    /// The faster path for `backend`.
    pub fn default_for(backend: BackendKind) -> Self {
        match backend {
            BackendKind::Wgpu => Self::Autodiff,
            BackendKind::Flex | BackendKind::Ndarray => Self::Sparse,
        }
    }

    /// Name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Autodiff => "autodiff",
            Self::Sparse => "sparse",
        }
    }
}

/// Training state of a stack of SAEs on one device.
pub struct Trainer {
    /// The configuration.
    pub cfg: TrainConfig,
    /// Current parameters (plain tensors).
    pub stack: SaeStack,
    /// Optimiser state.
    pub adam: Adam,
    /// Dead-latent bookkeeping.
    pub dead: DeadCounter,
    /// Steps completed.
    pub step: usize,
    device: Device,
    host_select: bool,
    path: GradPath,
    pairs: Vec<(usize, usize)>,
    hungarian_cache: Option<Matching>,
    hungarian_host: Option<Vec<Vec<u32>>>,
}

impl Trainer {
    /// Fresh seeded state on `backend`; `data_mean` initialises `b_dec`.
    ///
    /// CPU backends make the TopK selection on the host (their `topk` sorts every row); wgpu
    /// makes it on the device. Both apply the same rule, which the parity tests check.
    pub fn new(
        cfg: &TrainConfig,
        data_mean: &[f32],
        backend: BackendKind,
    ) -> Result<Self, TrainError> {
        Self::with_path(cfg, data_mean, backend, GradPath::default_for(backend))
    }

    /// Like [`Trainer::new`] with an explicit [`GradPath`].
    pub fn with_path(
        cfg: &TrainConfig,
        data_mean: &[f32],
        backend: BackendKind,
        path: GradPath,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        if data_mean.len() != cfg.d_in {
            return Err(TrainError::Config(format!(
                "data mean has length {} but d_in is {}",
                data_mean.len(),
                cfg.d_in
            )));
        }
        let device = backend.device()?;
        let stack = SaeStack::init(cfg, data_mean, &device);
        let adam = Adam::new(&stack.params());
        Ok(Self {
            cfg: cfg.clone(),
            adam,
            dead: DeadCounter::new(cfg.n_saes, cfg.d_sae),
            step: 0,
            pairs: mfr::pairs(cfg.n_saes),
            hungarian_cache: None,
            hungarian_host: None,
            device,
            host_select: backend != BackendKind::Wgpu,
            path,
            stack,
        })
    }

    /// The plain device the state lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn batch_tensor(&self, v: &[f32]) -> Tensor<2> {
        let d = self.cfg.d_in;
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), [v.len() / d, d]), &self.device)
    }

    /// The gradient path in use.
    pub fn path(&self) -> GradPath {
        self.path
    }

    /// Loss and gradients of the current parameters on one batch (row-major `[B, d_in]`).
    pub fn compute(&mut self, inputs: &[f32], targets: &[f32]) -> Computed {
        match self.path {
            GradPath::Autodiff => self.compute_autodiff(inputs, targets),
            GradPath::Sparse => self.compute_sparse(inputs, targets),
        }
    }

    fn tensor3(&self, v: Vec<f32>, dims: [usize; 3]) -> Tensor<3> {
        Tensor::<3>::from_data(TensorData::new(v, dims), &self.device)
    }

    /// [`GradPath::Sparse`]: the whole step on the host, see [`crate::train::sparse`].
    fn compute_sparse(&mut self, inputs: &[f32], targets: &[f32]) -> Computed {
        let cfg = self.cfg.clone();
        let (n, di, ds) = (cfg.n_saes, cfg.d_in, cfg.d_sae);
        let b = inputs.len() / di;
        let signed = cfg.activation == ActivationKind::TopkSigned;
        let host = |t: &Tensor<3>| -> Vec<f32> {
            t.clone()
                .try_into_vec_as::<f32>()
                .expect("reading tensors back from the device")
        };
        let w_enc = host(&self.stack.w_enc);
        let b_enc = host(&self.stack.b_enc);
        let b_dec = host(&self.stack.b_dec);
        // Tied: the decoder is the row-normalised encoder transpose; keep what its backward needs.
        let (dec, tied) = match &self.stack.w_dec {
            Some(d) => (host(d), None),
            None => {
                let mut t = vec![0f32; n * ds * di];
                for s in 0..n {
                    for i in 0..di {
                        for j in 0..ds {
                            t[(s * ds + j) * di + i] = w_enc[(s * di + i) * ds + j];
                        }
                    }
                }
                let (unit, norms) = sparse::normalize_rows_host(&t, di);
                (unit.clone(), Some((unit, norms)))
            }
        };
        let dead = self.dead.dead(cfg.dead_steps);
        let auxk_on = cfg.auxk_alpha > 0.0 && dead.iter().any(|&d| d);
        let out = sparse::step(&sparse::StepIn {
            n,
            d_in: di,
            d_sae: ds,
            k: cfg.k,
            x: inputs,
            t: targets,
            w_enc: &w_enc,
            b_enc: &b_enc,
            dec: &dec,
            b_dec: &b_dec,
            signed,
            relative_eps: cfg.relative_loss.then_some(cfg.relative_eps),
            auxk: auxk_on.then_some(sparse::AuxkIn {
                dead: &dead,
                k_aux: cfg.k_aux,
                alpha: cfg.auxk_alpha,
            }),
        });
        let t1 = |v: Vec<f32>| {
            let len = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [len]), &self.device)
        };
        let mut g_dec = out.g_dec;
        let weight = cfg.mfr_alpha * cfg.mfr_weight_at(self.step);
        let (mut mmcs, mut penalty) = (None, None);
        if weight > 0.0 && !self.pairs.is_empty() {
            let (unit, norms) = sparse::normalize_rows_host(&dec, di);
            let cos = sparse::cosines_host(&unit, &self.pairs, ds, di);
            let assigned = match cfg.mmcs {
                MmcsKind::Max => None,
                MmcsKind::Hungarian => {
                    let fresh = self.step.is_multiple_of(cfg.hungarian_every);
                    if fresh || self.hungarian_host.is_none() {
                        self.hungarian_host = Some(sparse::hungarian_host(&cos, ds));
                    }
                    self.hungarian_host.clone()
                }
            };
            let m = sparse::mfr_host(
                &unit,
                &self.pairs,
                &cos,
                cfg.mmcs,
                assigned.as_deref(),
                (n, ds, di),
                weight,
            );
            sparse::normalize_rows_backward(&m.g_unit, &unit, &norms, di, &mut g_dec);
            mmcs = Some(t1(m.mmcs));
            penalty = Some(t1(vec![m.penalty]));
        }
        let mut g_w_enc = out.g_w_enc;
        let g_w_dec = match &tied {
            Some((unit, norms)) => {
                let mut g_t = vec![0f32; n * ds * di];
                sparse::normalize_rows_backward(&g_dec, unit, norms, di, &mut g_t);
                for s in 0..n {
                    for j in 0..ds {
                        for i in 0..di {
                            g_w_enc[(s * di + i) * ds + j] += g_t[(s * ds + j) * di + i];
                        }
                    }
                }
                None
            }
            None => Some(g_dec),
        };
        let mut grads = vec![
            self.tensor3(g_w_enc, [n, di, ds]),
            self.tensor3(out.g_b_enc, [n, 1, ds]),
            self.tensor3(out.g_b_dec, [n, 1, di]),
        ];
        if let Some(g) = g_w_dec {
            grads.push(self.tensor3(g, [n, ds, di]));
        }
        let k = cfg.k.min(ds);
        let (mut mask, mut z) = (vec![0f32; n * b * ds], vec![0f32; n * b * ds]);
        for (r, sel) in out.idx.chunks_exact(k).enumerate() {
            for &j in sel {
                let at = r * ds + j as usize;
                mask[at] = 1.0;
                z[at] = if signed {
                    out.pre[at]
                } else {
                    out.pre[at].max(0.0)
                };
            }
        }
        let mse = t1(out.loss);
        let auxk = out.auxk.map(t1);
        let mut total = mse.clone().sum();
        if let Some(a) = &auxk {
            total = total.add(a.clone().sum().mul_scalar(cfg.auxk_alpha as f32));
        }
        if let Some(p) = &penalty {
            total = total.add(p.clone().mul_scalar(weight as f32));
        }
        let fwd = Forward {
            pre: self.tensor3(out.pre.clone(), [n, b, ds]),
            mask: self.tensor3(mask.clone(), [n, b, ds]),
            mask_host: Some(mask),
            pre_host: Some(out.pre),
            z: self.tensor3(z, [n, b, ds]),
            x_hat: self.tensor3(out.x_hat, [n, b, di]),
            dec: self.tensor3(dec, [n, ds, di]),
        };
        Computed {
            fwd,
            mse,
            auxk,
            mmcs,
            penalty,
            total,
            grads,
        }
    }

    /// [`GradPath::Autodiff`]: the whole objective through burn's autodiff.
    fn compute_autodiff(&mut self, inputs: &[f32], targets: &[f32]) -> Computed {
        let cfg = &self.cfg;
        let signed = cfg.activation == ActivationKind::TopkSigned;
        let x = self.batch_tensor(inputs);
        let t = self.batch_tensor(targets);
        let tracked = self.stack.tracked();
        let fwd = tracked.forward(x, cfg.k, cfg.activation, self.host_select);
        let mse = if cfg.relative_loss {
            relative_mse_per_sae(fwd.x_hat.clone(), t.clone(), cfg.relative_eps)
        } else {
            mse_per_sae(fwd.x_hat.clone(), t.clone())
        };
        let mut total = mse.clone().sum();
        let auxk = if cfg.auxk_alpha > 0.0 {
            auxk_per_sae(&fwd, t, &self.dead.dead(cfg.dead_steps), cfg.k_aux, signed)
        } else {
            None
        };
        if let Some(a) = &auxk {
            total = total.add(a.clone().sum().mul_scalar(cfg.auxk_alpha as f32));
        }
        let weight = cfg.mfr_alpha * cfg.mfr_weight_at(self.step);
        let (mut mmcs, mut penalty) = (None, None);
        if weight > 0.0 && !self.pairs.is_empty() {
            let dn = normalize_rows(fwd.dec.clone());
            let matching = self.matching(dn.clone().without_autodiff());
            let m = mfr::matched_mmcs(dn, &self.pairs, &matching);
            let p = mfr::penalty(m.clone());
            total = total.add(p.clone().mul_scalar(weight as f32));
            mmcs = Some(m);
            penalty = Some(p);
        }
        let grads_all = total.backward();
        let grads = tracked
            .params()
            .iter()
            .map(|p| {
                p.grad(&grads_all)
                    .unwrap_or_else(|| p.clone().without_autodiff().zeros_like())
            })
            .collect();
        Computed {
            fwd,
            mse,
            auxk,
            mmcs,
            penalty,
            total,
            grads,
        }
    }

    fn matching(&mut self, dn: Tensor<3>) -> Matching {
        match self.cfg.mmcs {
            MmcsKind::Max => mfr::max_matching(mfr::cosines(dn, &self.pairs)),
            MmcsKind::Hungarian => {
                let stale = !self.step.is_multiple_of(self.cfg.hungarian_every);
                match (&self.hungarian_cache, stale) {
                    (Some(m), true) => m.clone(),
                    _ => {
                        let m = mfr::hungarian_matching(mfr::cosines(dn, &self.pairs));
                        self.hungarian_cache = Some(m.clone());
                        m
                    }
                }
            }
        }
    }

    /// Applies the update for `c` (constraint, clipping, Adam, renormalisation) and advances the
    /// step and dead counters.
    pub fn apply(&mut self, c: &Computed) {
        let cfg = &self.cfg;
        let mut grads = c.grads.clone();
        let untied = self.stack.w_dec.clone();
        if let Some(dec) = &untied {
            let last = grads.len() - 1;
            grads[last] = remove_parallel(grads[last].clone(), dec.clone());
        }
        let grads = clip_per_sae(grads, cfg.grad_clip);
        let h = AdamParams {
            lr: cfg.lr_at(self.step),
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.adam_eps,
        };
        let params = self.adam.step(self.stack.params(), grads, h);
        let mut stack = self.stack.with_params(params);
        if let Some(d) = stack.w_dec.take() {
            stack.w_dec = Some(normalize_rows(d));
        }
        self.stack = stack;
        let fired = match &c.fwd.mask_host {
            Some(m) => {
                let (b, ds) = (m.len() / (cfg.n_saes * cfg.d_sae), cfg.d_sae);
                let mut f = vec![0f32; cfg.n_saes * ds];
                for (r, row) in m.chunks_exact(ds).enumerate() {
                    let sae = r / b;
                    for (acc, &v) in f[sae * ds..(sae + 1) * ds].iter_mut().zip(row) {
                        *acc += v;
                    }
                }
                f
            }
            None => c
                .fwd
                .mask
                .clone()
                .sum_dim(1)
                .try_into_vec_as::<f32>()
                .expect("reading firing counts"),
        };
        self.dead.update(&fired);
        self.step += 1;
    }

    /// Metrics of a computed step (reads a few scalars back from the device).
    pub fn metrics(&self, c: &Computed, targets: &[f32]) -> StepMetrics {
        let cfg = &self.cfg;
        let n = cfg.n_saes;
        let host = |t: Tensor<1>| -> Vec<f32> {
            t.without_autodiff()
                .try_into_vec_as::<f32>()
                .expect("reading metrics")
        };
        let x_hat = c.fwd.x_hat.clone().without_autodiff();
        let t = self.batch_tensor(targets);
        let mse = host(c.mse.clone());
        let fvu = host(fvu_per_sae(x_hat, t));
        let z = c.fwd.z.clone().without_autodiff();
        let [_, b, ds] = z.dims();
        let l0 = host(
            z.not_equal_elem(0.0)
                .float()
                .reshape([n, b * ds])
                .sum_dim(1)
                .reshape([n])
                .div_scalar(b as f32),
        );
        let auxk = c.auxk.clone().map(host).unwrap_or_else(|| vec![0.0; n]);
        let loss = mse
            .iter()
            .zip(&auxk)
            .map(|(m, a)| m + cfg.auxk_alpha as f32 * a)
            .collect();
        let (mmcs, mfr_penalty) = match (&c.mmcs, &c.penalty) {
            (Some(m), Some(p)) => (host(m.clone()), host(p.clone())[0]),
            _ if !self.pairs.is_empty() => {
                let dn = normalize_rows(c.fwd.dec.clone().without_autodiff());
                let m = mfr::max_matching(mfr::cosines(dn.clone(), &self.pairs));
                let mm = mfr::matched_mmcs(dn, &self.pairs, &m);
                let p = host(mfr::penalty(mm.clone()))[0];
                (host(mm), p)
            }
            _ => (Vec::new(), 0.0),
        };
        StepMetrics {
            step: self.step,
            lr: cfg.lr_at(self.step),
            mfr_weight: cfg.mfr_weight_at(self.step),
            loss,
            mse,
            fvu,
            l0,
            dead_frac: self.dead.dead_fraction(cfg.dead_steps),
            auxk,
            mfr_penalty,
            mmcs,
        }
    }

    /// Per-SAE validation loss (MSE, or the relative MSE when `relative_loss` is set) and FVU
    /// over `val` (at most `max` windows; 0 = all).
    pub fn validate(
        &self,
        val: &mut dyn BatchSource,
        max: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
        let n_rows = if max == 0 {
            val.len()
        } else {
            val.len().min(max)
        };
        let n = self.cfg.n_saes;
        let d = self.cfg.d_in;
        let (mut se, mut ss, mut count) = (vec![0f64; n], 0f64, 0usize);
        let mut rel = vec![0f64; n];
        let (mut sum, mut sq) = (vec![0f64; d], vec![0f64; d]);
        let (mut xi, mut ti) = (Vec::new(), Vec::new());
        let bs = self.cfg.batch_size.max(1);
        for start in (0..n_rows).step_by(bs) {
            let idx: Vec<usize> = (start..(start + bs).min(n_rows)).collect();
            val.read_rows(&idx, &mut xi, &mut ti)?;
            let fwd = self.stack.forward(
                self.batch_tensor(&xi),
                self.cfg.k,
                self.cfg.activation,
                self.host_select,
            );
            let b = idx.len();
            // Squared error of each (SAE, window), [n * b].
            let err = fwd
                .x_hat
                .sub(
                    self.batch_tensor(&ti)
                        .unsqueeze_dim::<3>(0)
                        .expand([n, b, d]),
                )
                .square()
                .sum_dim(2)
                .reshape([n * b]);
            let err = err
                .try_into_vec_as::<f32>()
                .expect("reading validation error");
            for (i, e) in err.iter().enumerate() {
                se[i / b] += *e as f64;
            }
            if self.cfg.relative_loss {
                for (i, e) in err.iter().enumerate() {
                    let row = &ti[(i % b) * d..(i % b + 1) * d];
                    let energy = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64;
                    rel[i / b] += *e as f64 / d as f64 / (energy + self.cfg.relative_eps);
                }
            }
            for row in ti.chunks_exact(d) {
                for j in 0..d {
                    sum[j] += row[j] as f64;
                    sq[j] += row[j] as f64 * row[j] as f64;
                }
            }
            count += b;
        }
        for j in 0..d {
            ss += sq[j] - sum[j] * sum[j] / count.max(1) as f64;
        }
        let mse = if self.cfg.relative_loss {
            rel.iter()
                .map(|&e| (e / count.max(1) as f64) as f32)
                .collect()
        } else {
            se.iter()
                .map(|&e| (e / (count * d).max(1) as f64) as f32)
                .collect()
        };
        let fvu = se.iter().map(|&e| (e / ss.max(1e-30)) as f32).collect();
        Ok((mse, fvu))
    }

    /// Restores a checkpoint's state into this trainer (same configuration required).
    pub fn load_state(&mut self, ck: Checkpoint) -> Result<(), TrainError> {
        self.stack = SaeStack::from_host(&self.cfg, &ck.saes, &self.device);
        let to3 = |v: &Vec<f32>, like: &Tensor<3>| {
            Tensor::<3>::from_data(TensorData::new(v.clone(), like.dims()), &self.device)
        };
        let params = self.stack.params();
        if ck.adam_m.len() != params.len() || ck.adam_v.len() != params.len() {
            return Err(TrainError::Checkpoint {
                path: PathBuf::new(),
                problem: "optimiser state does not match the parameters".into(),
            });
        }
        self.adam = Adam {
            m: ck
                .adam_m
                .iter()
                .zip(&params)
                .map(|(v, p)| to3(v, p))
                .collect(),
            v: ck
                .adam_v
                .iter()
                .zip(&params)
                .map(|(v, p)| to3(v, p))
                .collect(),
            t: ck.adam_t,
        };
        self.dead = ck.dead;
        self.step = ck.step;
        self.hungarian_cache = None;
        self.hungarian_host = None;
        Ok(())
    }

    /// Captures the full state (weights, optimiser, counters) for a checkpoint.
    pub fn state(&self, sampler: (u64, usize)) -> Checkpoint {
        let host = |t: &Tensor<3>| t.clone().try_into_vec_as::<f32>().expect("reading state");
        Checkpoint {
            config: self.cfg.clone(),
            step: self.step,
            sampler_epoch: sampler.0,
            sampler_pos: sampler.1,
            saes: self.stack_raw_host(),
            adam_m: self.adam.m.iter().map(host).collect(),
            adam_v: self.adam.v.iter().map(host).collect(),
            adam_t: self.adam.t,
            dead: self.dead.clone(),
        }
    }

    /// Raw parameters per SAE (for tied SAEs `w_dec` holds the derived decoder, which
    /// [`SaeStack::from_host`] ignores).
    fn stack_raw_host(&self) -> Vec<SaeTensors> {
        self.stack.to_host()
    }
}

/// Trains on any [`BatchSource`], with metrics, progress, checkpoints and resume.
pub fn train_with(
    cfg: &TrainConfig,
    train_src: &mut dyn BatchSource,
    val_src: &mut dyn BatchSource,
    backend: BackendKind,
    mut opts: TrainOptions<'_>,
) -> Result<TrainOutcome, TrainError> {
    cfg.validate()?;
    for (what, src) in [("training", &*train_src), ("validation", &*val_src)] {
        if src.dim() != cfg.d_in {
            return Err(TrainError::data(
                src.name(),
                format!(
                    "{what} windows have length {} but d_in is {}",
                    src.dim(),
                    cfg.d_in
                ),
            ));
        }
        if src.is_empty() {
            return Err(TrainError::data(src.name(), format!("{what} set is empty")));
        }
    }
    // b_dec starts at the mean target of (up to) the first 4096 windows.
    let (mut xi, mut ti) = (Vec::new(), Vec::new());
    let head: Vec<usize> = (0..train_src.len().min(4096)).collect();
    train_src.read_rows(&head, &mut xi, &mut ti)?;
    let mean = column_means(&ti, cfg.d_in);
    let path = opts
        .grad_path
        .unwrap_or_else(|| GradPath::default_for(backend));
    let mut trainer = Trainer::with_path(cfg, &mean, backend, path)?;
    let mut sampler = Sampler::new(train_src.len(), cfg.seed);
    if let Some(path) = &opts.resume {
        let ck = checkpoint::read(path)?;
        if ck.config != *cfg {
            return Err(TrainError::Checkpoint {
                path: path.clone(),
                problem: "it was written for a different configuration".into(),
            });
        }
        sampler.restore(ck.sampler_epoch, ck.sampler_pos);
        trainer.load_state(ck).map_err(|e| match e {
            TrainError::Checkpoint { problem, .. } => TrainError::Checkpoint {
                path: path.clone(),
                problem,
            },
            e => e,
        })?;
    }
    let start = trainer.step;
    let bar = if opts.progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(cfg.steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps, ETA {eta} {msg}",
            )
            .expect("static template"),
        );
        b.set_position(start as u64);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut metrics = Vec::new();
    let mut steps_run = 0;
    while trainer.step < cfg.steps {
        if opts.stop_after.is_some_and(|s| trainer.step >= s) {
            break;
        }
        let idx = sampler.next_batch(cfg.batch_size);
        train_src.read_rows(&idx, &mut xi, &mut ti)?;
        let c = trainer.compute(&xi, &ti);
        let log = trainer.step % cfg.log_every == 0 || trainer.step + 1 == cfg.steps;
        if log {
            let m = trainer.metrics(&c, &ti);
            if let Some(bad) = m.loss.iter().find(|l| !l.is_finite()) {
                return Err(TrainError::Diverged {
                    step: trainer.step,
                    loss: *bad,
                });
            }
            if let Some(out) = opts.metrics_out.as_mut() {
                let line = serde_json::to_string(&m).expect("metrics serialise");
                writeln!(out, "{line}").map_err(|e| TrainError::io("metrics output", e))?;
            }
            bar.set_message(format!(
                "mse {:.4} fvu {:.3}",
                m.mse.iter().sum::<f32>() / m.mse.len() as f32,
                m.fvu.iter().sum::<f32>() / m.fvu.len() as f32
            ));
            metrics.push(m);
        }
        trainer.apply(&c);
        steps_run += 1;
        bar.set_position(trainer.step as u64);
        if let Some((path, every)) = &opts.checkpoint
            && *every > 0
            && (trainer.step % every == 0 || trainer.step == cfg.steps)
        {
            checkpoint::write(path, &trainer.state(sampler.position()))?;
        }
    }
    bar.finish_and_clear();
    let (val_loss, val_fvu) = trainer.validate(val_src, cfg.val_max)?;
    let best = val_loss
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0);
    Ok(TrainOutcome {
        config: cfg.clone(),
        saes: trainer.stack.to_host(),
        val_loss,
        val_fvu,
        best,
        metrics,
        steps_run,
    })
}
