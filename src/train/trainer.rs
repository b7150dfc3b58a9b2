//! The training loop: batched forward of all SAEs, MSE + AuxK + MFR, backward, decoder-row
//! constraint, per-SAE clipping, Adam, metrics, checkpoints and validation.

use super::TrainError;
use super::auxk::{DeadCounter, auxk_per_sae};
use super::backend::BackendKind;
use super::checkpoint::{self, Checkpoint};
use super::config::{ActivationKind, MmcsKind, TrainConfig};
use super::data::{BatchSource, Dataset, Sampler};
use super::loss::mfr::{self, Matching};
use super::loss::{fvu_per_sae, mse_per_sae, relative_mse_per_sae, relative_mse_per_sae_over};
use super::optim::{Adam, AdamParams, clip_per_sae, remove_parallel};
pub use super::sae::SaeTensors;
use super::sae::{Forward, SaeStack, column_means, normalize_rows};
use super::sparse::{self, dot};
use burn::tensor::{Device, Tensor, TensorData};
use std::io::Write;
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
    /// Step at which each SAE's returned weights were taken (`config.steps` unless
    /// [`TrainOptions::select_every`] picked an earlier one).
    pub best_step: Vec<usize>,
    /// Logged step metrics.
    pub metrics: Vec<StepMetrics>,
    /// Steps actually run in this call (fewer than configured after `stop_after`).
    pub steps_run: usize,
}

/// What [`train_with`] reports while it runs, through [`TrainOptions::progress`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum TrainEvent<'a> {
    /// The loop starts (or resumes) at `step` of `steps`.
    Start {
        /// First step of this call.
        step: usize,
        /// Configured steps.
        steps: usize,
    },
    /// A metrics line was logged (every `log_every` steps and at the last step).
    Metrics(&'a StepMetrics),
    /// `step` steps are done.
    Step(usize),
    /// The loop ended; final validation and export follow.
    Done,
}

/// Optional behaviour of [`train_with`].
#[derive(Default)]
pub struct TrainOptions<'a> {
    /// Where JSON-line metrics go.
    pub metrics_out: Option<&'a mut dyn Write>,
    /// Told where the run stands, for a progress display (the library prints nothing).
    pub progress: Option<&'a mut dyn FnMut(TrainEvent<'_>)>,
    /// Checkpoint file and period in steps.
    pub checkpoint: Option<(PathBuf, usize)>,
    /// Resume from this checkpoint.
    pub resume: Option<PathBuf>,
    /// Stop (as if killed) after this global step count, after its checkpoint.
    pub stop_after: Option<usize>,
    /// Gradient path (`None`: [`GradPath::default_for`] the backend).
    pub grad_path: Option<GradPath>,
    /// Validate every this many steps and return, per SAE, the weights with the lowest
    /// validation loss seen (the final weights compete too): early stopping without
    /// guessing the step budget. Only evaluations made in this call count, so a resumed run
    /// selects among fewer candidates than an uninterrupted one.
    pub select_every: Option<usize>,
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
    /// The forward pass; built on first use by [`Computed::fwd`] when the step ran on the host.
    fwd: std::cell::OnceCell<Forward>,
    /// The sparse path's forward on the host.
    host_fwd: Option<HostForward>,
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
    /// Raw gradients in [`SaeStack::params`] order; built on first use from `grads_host`.
    grads: std::cell::OnceCell<Vec<Tensor<3>>>,
    /// The same on the host (sparse path).
    grads_host: Option<Vec<Vec<f32>>>,
    /// Shapes of the parameters, for building `grads`.
    param_dims: Vec<[usize; 3]>,
    device: Device,
}

/// The sparse path's forward pass, in host memory.
struct HostForward {
    pre: Vec<f32>,
    idx: Vec<u32>,
    x_hat: Vec<f32>,
    dec: Vec<f32>,
    /// `(n, b, d_sae, d_in, k)`.
    dims: (usize, usize, usize, usize, usize),
    signed: bool,
}

impl Computed {
    /// The forward pass (autodiff tensors on the autodiff path; read values with
    /// `without_autodiff`).
    pub fn fwd(&self) -> &Forward {
        self.fwd.get_or_init(|| {
            let h = self
                .host_fwd
                .as_ref()
                .expect("a step has a device or a host forward");
            let (n, b, ds, di, k) = h.dims;
            let (mut mask, mut z) = (vec![0f32; n * b * ds], vec![0f32; n * b * ds]);
            for (r, sel) in h.idx.chunks_exact(k.max(1)).enumerate() {
                for &j in sel {
                    let at = r * ds + j as usize;
                    mask[at] = 1.0;
                    z[at] = if h.signed {
                        h.pre[at]
                    } else {
                        h.pre[at].max(0.0)
                    };
                }
            }
            let t3 = |v: Vec<f32>, d: [usize; 3]| {
                Tensor::<3>::from_data(TensorData::new(v, d), &self.device)
            };
            Forward {
                pre: t3(h.pre.clone(), [n, b, ds]),
                mask: t3(mask.clone(), [n, b, ds]),
                mask_host: Some(mask),
                pre_host: Some(h.pre.clone()),
                z: t3(z, [n, b, ds]),
                x_hat: t3(h.x_hat.clone(), [n, b, di]),
                dec: t3(h.dec.clone(), [n, ds, di]),
            }
        })
    }

    /// Raw gradients in [`SaeStack::params`] order.
    pub fn grads(&self) -> &[Tensor<3>] {
        self.grads.get_or_init(|| {
            let g = self
                .grads_host
                .as_ref()
                .expect("a step has device or host gradients");
            g.iter()
                .zip(&self.param_dims)
                .map(|(v, &d)| Tensor::<3>::from_data(TensorData::new(v.clone(), d), &self.device))
                .collect()
        })
    }

    /// How often each latent was selected in the batch, `[N * d_sae]`.
    fn fired(&self) -> Vec<f32> {
        if let Some(h) = &self.host_fwd {
            let (n, b, ds, _, k) = h.dims;
            let mut f = vec![0f32; n * ds];
            for (r, sel) in h.idx.chunks_exact(k.max(1)).enumerate() {
                let s = r / b;
                for &j in sel {
                    f[s * ds + j as usize] += 1.0;
                }
            }
            return f;
        }
        let fwd = self.fwd();
        match &fwd.mask_host {
            Some(m) => {
                let [n, b, ds] = fwd.mask.dims();
                let mut f = vec![0f32; n * ds];
                for (r, row) in m.chunks_exact(ds).enumerate() {
                    let sae = r / b;
                    for (acc, &v) in f[sae * ds..(sae + 1) * ds].iter_mut().zip(row) {
                        *acc += v;
                    }
                }
                f
            }
            None => fwd
                .mask
                .clone()
                .sum_dim(1)
                .try_into_vec_as::<f32>()
                .expect("reading firing counts"),
        }
    }
}

/// Parameters (in [`SaeStack::params`] order) and Adam moments in host memory.
#[derive(Clone, Debug)]
struct HostState {
    params: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl HostState {
    fn new(stack: &SaeStack) -> Self {
        let params: Vec<Vec<f32>> = stack
            .params()
            .into_iter()
            .map(|t| t.try_into_vec_as::<f32>().expect("reading weights"))
            .collect();
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0f32; p.len()]).collect();
        Self {
            params,
            m: zeros.clone(),
            v: zeros,
        }
    }
}

/// How a step's loss and gradients are computed. Both give the same numbers up to f32
/// rounding (the parity tests compare them); they differ in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradPath {
    /// burn autodiff over dense `[N, B, d_sae]` latents, run by the backend (on the GPU for
    /// wgpu). The default on wgpu, where the device does the dense work fast and host round
    /// trips cost.
    Autodiff,
    /// The whole step as host code on every backend ([`crate::train::sparse`]): the dense
    /// encoder product and MFR cosines through the `gemm` crate on the CPU, everything else by
    /// kernels that touch only the k selected latents. The backend only keeps a copy of the
    /// weights, uploaded after each update. The default on the CPU backends (about 3x faster
    /// than autodiff there).
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
    /// Optimiser state (its moments are unused while `host` holds them).
    adam: Adam,
    /// The sparse path's parameters and Adam moments in host memory (`stack` mirrors the
    /// parameters after every step).
    host: Option<HostState>,
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
        let host = (path == GradPath::Sparse).then(|| HostState::new(&stack));
        Ok(Self {
            cfg: cfg.clone(),
            adam,
            host,
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
        self.compute_over(inputs, targets, None)
    }

    /// [`Trainer::compute`] with the relative loss over the given per-window mean squares
    /// (`[B]`) instead of the targets' own (see [`Trainer::to_residual`]).
    pub fn compute_over(
        &mut self,
        inputs: &[f32],
        targets: &[f32],
        energy: Option<&[f32]>,
    ) -> Computed {
        match self.path {
            GradPath::Autodiff => self.compute_autodiff(inputs, targets, energy),
            GradPath::Sparse => self.compute_sparse(inputs, targets, energy),
        }
    }

    /// For a residual SAE (`residual` in the configuration), turns `targets` into the
    /// corrections `targets - inputs` (with `residual_gate`, only in windows the gate opens)
    /// and returns each window's mean squared target (what the relative loss divides by);
    /// `None` and no change otherwise.
    pub fn to_residual(&self, inputs: &[f32], targets: &mut [f32]) -> Option<Vec<f32>> {
        if !self.cfg.residual {
            return None;
        }
        let d = self.cfg.d_in;
        let energy = targets
            .chunks_exact(d)
            .map(|t| t.iter().map(|v| v * v).sum::<f32>() / d as f32)
            .collect();
        let gate = self
            .cfg
            .residual_gate
            .map(|g| crate::core::Skip { taps: &[], gate: g });
        for (t, x) in targets.chunks_exact_mut(d).zip(inputs.chunks_exact(d)) {
            if gate.is_none_or(|g| g.opens(x)) {
                for (t, x) in t.iter_mut().zip(x) {
                    *t -= x;
                }
            }
        }
        Some(energy)
    }

    /// [`GradPath::Sparse`]: the whole step on the host, see [`crate::train::sparse`].
    fn compute_sparse(
        &mut self,
        inputs: &[f32],
        targets: &[f32],
        energy: Option<&[f32]>,
    ) -> Computed {
        let cfg = self.cfg.clone();
        let (n, di, ds) = (cfg.n_saes, cfg.d_in, cfg.d_sae);
        let b = inputs.len() / di;
        let signed = cfg.activation == ActivationKind::TopkSigned;
        let state = self
            .host
            .take()
            .expect("the sparse path keeps its state on the host");
        let (w_enc, b_enc, b_dec) = (&state.params[0], &state.params[1], &state.params[2]);
        // Tied: the decoder is the row-normalised encoder transpose; keep what its backward needs.
        let (dec, tied) = match state.params.get(3) {
            Some(d) => (d.clone(), None),
            None => {
                let mut t = vec![0f32; n * ds * di];
                for (src, dst) in w_enc.chunks_exact(di * ds).zip(t.chunks_exact_mut(ds * di)) {
                    sparse::transpose(src, di, ds, dst);
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
            w_enc,
            b_enc,
            dec: &dec,
            b_dec,
            signed,
            relative_eps: cfg.relative_loss.then_some(cfg.relative_eps),
            energy,
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
        self.host = Some(state);
        let mut grads_host = vec![g_w_enc, out.g_b_enc, out.g_b_dec];
        grads_host.extend(g_w_dec);
        let mse = t1(out.loss);
        let auxk = out.auxk.map(t1);
        let mut total = mse.clone().sum();
        if let Some(a) = &auxk {
            total = total.add(a.clone().sum().mul_scalar(cfg.auxk_alpha as f32));
        }
        if let Some(p) = &penalty {
            total = total.add(p.clone().mul_scalar(weight as f32));
        }
        let param_dims = self.stack.params().iter().map(|t| t.dims()).collect();
        Computed {
            fwd: std::cell::OnceCell::new(),
            host_fwd: Some(HostForward {
                pre: out.pre,
                idx: out.idx,
                x_hat: out.x_hat,
                dec,
                dims: (n, b, ds, di, cfg.k.min(ds)),
                signed,
            }),
            mse,
            auxk,
            mmcs,
            penalty,
            total,
            grads: std::cell::OnceCell::new(),
            grads_host: Some(grads_host),
            param_dims,
            device: self.device.clone(),
        }
    }

    /// [`GradPath::Autodiff`]: the whole objective through burn's autodiff.
    fn compute_autodiff(
        &mut self,
        inputs: &[f32],
        targets: &[f32],
        energy: Option<&[f32]>,
    ) -> Computed {
        let cfg = &self.cfg;
        let signed = cfg.activation == ActivationKind::TopkSigned;
        let x = self.batch_tensor(inputs);
        let t = self.batch_tensor(targets);
        let tracked = self.stack.tracked();
        let fwd = tracked.forward(x, cfg.k, cfg.activation, self.host_select);
        let mse = if cfg.relative_loss {
            match energy {
                Some(e) => {
                    let e = Tensor::<2>::from_data(
                        TensorData::new(e.to_vec(), [e.len(), 1]),
                        &self.device,
                    );
                    relative_mse_per_sae_over(fwd.x_hat.clone(), t.clone(), e, cfg.relative_eps)
                }
                None => relative_mse_per_sae(fwd.x_hat.clone(), t.clone(), cfg.relative_eps),
            }
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
        let grads: Vec<Tensor<3>> = tracked
            .params()
            .iter()
            .map(|p| {
                p.grad(&grads_all)
                    .unwrap_or_else(|| p.clone().without_autodiff().zeros_like())
            })
            .collect();
        Computed {
            fwd: std::cell::OnceCell::from(fwd),
            host_fwd: None,
            mse,
            auxk,
            mmcs,
            penalty,
            total,
            grads: std::cell::OnceCell::from(grads),
            grads_host: None,
            param_dims: Vec::new(),
            device: self.device.clone(),
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
        match (&c.grads_host, self.host.is_some()) {
            (Some(g), true) => self.update_host(g),
            _ => self.update_device(c),
        }
        let fired = c.fired();
        self.dead.update(&fired);
        self.step += 1;
    }

    /// [`Trainer::apply`]'s update on the host: the same operations as [`Self::update_device`]
    /// (decoder constraint, per-SAE clipping, Adam, row renormalisation), fused into one pass
    /// per parameter; then `stack` is refreshed.
    fn update_host(&mut self, grads: &[Vec<f32>]) {
        use rayon::prelude::*;
        let cfg = &self.cfg;
        let n = cfg.n_saes;
        let di = cfg.d_in;
        let state = self.host.as_mut().expect("host state");
        let mut w_dec_grad = None;
        if let (Some(g), Some(d)) = (grads.get(3), state.params.get(3)) {
            let mut g = g.clone();
            g.par_chunks_mut(di)
                .zip(d.par_chunks(di))
                .for_each(|(g, d)| {
                    let along = dot(g, d);
                    for (gv, &dv) in g.iter_mut().zip(d) {
                        *gv -= dv * along;
                    }
                });
            w_dec_grad = Some(g);
        }
        let grads: Vec<&[f32]> = grads
            .iter()
            .enumerate()
            .map(|(i, g)| match (i, &w_dec_grad) {
                (3, Some(p)) => &p[..],
                _ => &g[..],
            })
            .collect();
        // Per-SAE clipping scale, as `clip_per_sae`.
        let scale: Vec<f32> = (0..n)
            .into_par_iter()
            .map(|s| {
                if cfg.grad_clip <= 0.0 {
                    return 1.0;
                }
                let sq: f32 = grads
                    .iter()
                    .map(|g| {
                        let per = g.len() / n;
                        let part = &g[s * per..(s + 1) * per];
                        dot(part, part)
                    })
                    .sum();
                (cfg.grad_clip as f32 / (sq.sqrt() + 1e-6)).min(1.0)
            })
            .collect();
        self.adam.t += 1;
        let t = self.adam.t as i32;
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        let step = (cfg.lr_at(self.step) / (1.0 - b1.powi(t))) as f32;
        let inv_sqrt_bc2 = (1.0 / (1.0 - b2.powi(t)).sqrt()) as f32;
        let (b1f, b2f, c1, c2, eps) = (
            b1 as f32,
            b2 as f32,
            (1.0 - b1) as f32,
            (1.0 - b2) as f32,
            cfg.adam_eps as f32,
        );
        for (i, g) in grads.iter().enumerate() {
            let per = g.len() / n;
            let (p, m, v) = (&mut state.params[i], &mut state.m[i], &mut state.v[i]);
            p.par_chunks_mut(per)
                .zip(m.par_chunks_mut(per))
                .zip(v.par_chunks_mut(per))
                .zip(g.par_chunks(per))
                .zip(scale.par_iter())
                .for_each(|((((p, m), v), g), &sc)| {
                    for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                        let g = if cfg.grad_clip > 0.0 { g * sc } else { g };
                        *m = *m * b1f + g * c1;
                        *v = *v * b2f + g * g * c2;
                        let denom = v.sqrt() * inv_sqrt_bc2 + eps;
                        *p -= *m / denom * step;
                    }
                });
        }
        if let Some(d) = state.params.get_mut(3) {
            d.par_chunks_mut(di).for_each(|row| {
                let norm = (dot(row, row) + 1e-12).sqrt();
                for v in row.iter_mut() {
                    *v /= norm;
                }
            });
        }
        let dims: Vec<[usize; 3]> = self.stack.params().iter().map(|t| t.dims()).collect();
        let tensors = state
            .params
            .iter()
            .zip(dims)
            .map(|(p, d)| Tensor::<3>::from_data(TensorData::new(p.clone(), d), &self.device))
            .collect();
        self.stack = self.stack.with_params(tensors);
    }

    /// [`Trainer::apply`]'s update with burn tensor operations.
    fn update_device(&mut self, c: &Computed) {
        let cfg = &self.cfg;
        let mut grads = c.grads().to_vec();
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
        let x_hat = c.fwd().x_hat.clone().without_autodiff();
        let t = self.batch_tensor(targets);
        let mse = host(c.mse.clone());
        let fvu = host(fvu_per_sae(x_hat, t));
        let z = c.fwd().z.clone().without_autodiff();
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
                let dn = normalize_rows(c.fwd().dec.clone().without_autodiff());
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
    /// (of the correction, for a residual SAE) over `val` (at most `max` windows; 0 = all).
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
            let energy = self.to_residual(&xi, &mut ti);
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
                    let w = i % b;
                    let energy = match &energy {
                        Some(en) => en[w] as f64,
                        None => {
                            let row = &ti[w * d..(w + 1) * d];
                            row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64
                        }
                    };
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
        if self.host.is_some() {
            let mut st = HostState::new(&self.stack);
            st.m = ck.adam_m.clone();
            st.v = ck.adam_v.clone();
            self.host = Some(st);
        }
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
            adam_m: match &self.host {
                Some(st) => st.m.clone(),
                None => self.adam.m.iter().map(host).collect(),
            },
            adam_v: match &self.host {
                Some(st) => st.v.clone(),
                None => self.adam.v.iter().map(host).collect(),
            },
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
    let mut progress = opts.progress.take();
    let mut report = |e: TrainEvent<'_>| {
        if let Some(p) = progress.as_mut() {
            p(e);
        }
    };
    report(TrainEvent::Start {
        step: start,
        steps: cfg.steps,
    });
    let mut metrics = Vec::new();
    let mut steps_run = 0;
    struct Kept {
        loss: f32,
        fvu: f32,
        step: usize,
        sae: SaeTensors,
    }
    let mut kept: Vec<Option<Kept>> = (0..cfg.n_saes).map(|_| None).collect();
    while trainer.step < cfg.steps {
        if opts.stop_after.is_some_and(|s| trainer.step >= s) {
            break;
        }
        let idx = sampler.next_batch(cfg.batch_size);
        train_src.read_rows(&idx, &mut xi, &mut ti)?;
        // A residual SAE learns (and its logged FVU is of) the correction target - input.
        let energy = trainer.to_residual(&xi, &mut ti);
        let c = trainer.compute_over(&xi, &ti, energy.as_deref());
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
            report(TrainEvent::Metrics(&m));
            metrics.push(m);
        }
        trainer.apply(&c);
        steps_run += 1;
        if let Some(every) = opts.select_every
            && every > 0
            && trainer.step % every == 0
            && trainer.step < cfg.steps
        {
            let (loss, fvu) = trainer.validate(val_src, cfg.val_max)?;
            // Weights are copied off the device only when some SAE improved.
            let mut host: Option<Vec<SaeTensors>> = None;
            for (i, (l, f)) in loss.into_iter().zip(fvu).enumerate() {
                if kept[i].as_ref().is_none_or(|k| l < k.loss) {
                    let host = host.get_or_insert_with(|| trainer.stack.to_host());
                    kept[i] = Some(Kept {
                        loss: l,
                        fvu: f,
                        step: trainer.step,
                        sae: host[i].clone(),
                    });
                }
            }
        }
        report(TrainEvent::Step(trainer.step));
        if let Some((path, every)) = &opts.checkpoint
            && *every > 0
            && (trainer.step % every == 0 || trainer.step == cfg.steps)
        {
            checkpoint::write(path, &trainer.state(sampler.position()))?;
        }
    }
    report(TrainEvent::Done);
    let (mut val_loss, mut val_fvu) = trainer.validate(val_src, cfg.val_max)?;
    let mut saes = trainer.stack.to_host();
    let mut best_step = vec![trainer.step; cfg.n_saes];
    for (i, k) in kept.into_iter().enumerate() {
        if let Some(k) = k.filter(|k| k.loss < val_loss[i]) {
            val_loss[i] = k.loss;
            val_fvu[i] = k.fvu;
            best_step[i] = k.step;
            saes[i] = k.sae;
        }
    }
    let best = val_loss
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0);
    Ok(TrainOutcome {
        config: cfg.clone(),
        saes,
        val_loss,
        val_fvu,
        best,
        best_step,
        metrics,
        steps_run,
    })
}
