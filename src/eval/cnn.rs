//! Peers the SAE is compared with, trained in burn on exactly the SAE's training pairs
//! (model-normalised 1 s windows), with the same relative loss, batch size, step budget and
//! learning-rate schedule, and run like the SAE at inference (per-window normalisation,
//! sine-squared overlap-add, reflected edges).
//!
//! [`PeerArch::UNet`], a compact 1D U-Net (`width` c, kernel k; c = 8, k = 7 gives 5 497
//! parameters): `e1 = relu(conv(x; 1->c))`, `e2 = relu(conv(e1; c->2c, stride 2))`,
//! `e3 = relu(conv(e2; 2c->2c, stride 2))`, `d2 = relu(conv([up(e3), e2]; 4c->c))`,
//! `d1 = relu(conv([up(d2), e1]; 2c->c))`, `y = conv(d1; c->1, k 1)`; `up` repeats each sample
//! twice. Windows must be a multiple of 4 samples.
//!
//! [`PeerArch::Sae`], an SAE design probe: the default model's TopK SAE (linear encoder,
//! TopK with ReLU, unit-norm linear dictionary, so MFR would still apply to it), optionally fed
//! by a residual convolutional front end of `depth` hidden layers of `width` channels,
//! `g = x + conv(relu(conv(... relu(conv(x; 1->c)) ...; c->c)); c->1, k 1)`,
//! `y = W_dec TopK(W_enc (g - b_dec) + b_enc) + b_dec`. The front's last layer starts at zero,
//! so training starts from a plain SAE, and depth 0 is the plain SAE trained by this loop (the
//! control). It asks whether a nonlinear encoder (one that can see local power, which a linear
//! encoder cannot) closes the SAE's gap to the U-Net while the decoder stays a sparse
//! dictionary.
//!
//! Key items: [`CnnConfig`], [`PeerArch`], [`PeerNet`], [`train_cnn`], [`CnnMethod`].

use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData, activation::relu};

use super::EvalError;
use super::harness::Method;
use crate::core::{FrontShape, OlaShape, Skip};
use crate::model::{FrontParams, ModelTensors, SkipPath};
use crate::rng::Rng;
use crate::train::Dataset;
use crate::train::optim::{Adam, AdamParams};
use crate::train::sae::{SaeStack, normalize_rows};
use crate::train::{ActivationKind, TrainConfig};

/// Which peer network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PeerArch {
    /// The compact 1D U-Net.
    UNet,
    /// The TopK SAE, behind a residual convolutional front end when `depth > 0`.
    Sae {
        /// Latents.
        d_sae: usize,
        /// Latents kept per window.
        k: usize,
        /// Hidden channels of the front.
        width: usize,
        /// Hidden layers of the front (0: no front).
        depth: usize,
    },
}

impl PeerArch {
    /// The name the reports use.
    pub fn label(&self) -> String {
        match self {
            PeerArch::UNet => "CNN U-Net".into(),
            PeerArch::Sae {
                d_sae, k, depth: 0, ..
            } => format!("SAE {d_sae}/k{k} (peer trainer)"),
            PeerArch::Sae {
                d_sae,
                k,
                width,
                depth,
            } => format!("SAE {d_sae}/k{k} + conv front {width}x{depth}"),
        }
    }
}

/// Shape and budget of a peer and its training.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CnnConfig {
    /// The network.
    pub arch: PeerArch,
    /// Channels of the U-Net's first level (the second has twice as many).
    pub width: usize,
    /// Convolution kernel length (odd).
    pub kernel: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Windows per step.
    pub batch: usize,
    /// Peak learning rate (Adam; the SAE trainer's warm-up and final linear decay).
    pub lr: f64,
    /// Energy floor of the relative loss (as the SAE's `--relative-eps`).
    pub relative_eps: f64,
    /// Seed of the initialisation and the batch order.
    pub seed: u64,
    /// Overlap-add hop at inference (samples).
    pub hop: usize,
    /// FIR taps of a gated linear path fitted after training (as the core's models have;
    /// gates 0.1, 0.2, 0.4, 0.8 or none, chosen on validation); 0 = none.
    pub path_taps: usize,
    /// Weight each sample's squared error (and the target energy it is divided by) by this
    /// overlap-add taper, scaled to mean 1: a window's edges, which the overlap-add barely
    /// uses, count little. `None`: every sample counts the same.
    #[serde(serialize_with = "ser_taper")]
    pub loss_taper: Option<OlaShape>,
    /// Start the conv-front SAE's SAE from these tensors (a trained model's, same `d_in` and
    /// `d_sae`) instead of a random dictionary; the front still starts at zero, so training
    /// starts from that model. `None`: the seeded initialisation.
    #[serde(skip)]
    pub init_sae: Option<ModelTensors>,
    /// Peak learning rate of the conv-front SAE's SAE (encoder, decoder, biases), on the same
    /// schedule as `lr`, which then drives the front alone: a warm-started SAE can move
    /// slower than the front learnt around it. `None`: `lr` for every parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sae_lr: Option<f64>,
}

fn ser_taper<S: serde::Serializer>(t: &Option<OlaShape>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(shape) => s.serialize_some(shape.name()),
        None => s.serialize_none(),
    }
}

/// The taper `shape` over `d` samples (the core's, [`crate::core::OlaShape`]), scaled to
/// mean 1.
pub fn loss_weights(shape: OlaShape, d: usize) -> Vec<f32> {
    let raw: Vec<f64> = (0..d)
        .map(|n| {
            let s = (std::f64::consts::PI * (n as f64 + 0.5) / d as f64).sin();
            match shape {
                OlaShape::Hann => s * s,
                OlaShape::Sine => s,
            }
        })
        .collect();
    let mean = raw.iter().sum::<f64>() / d.max(1) as f64;
    raw.iter().map(|v| (v / mean) as f32).collect()
}

impl CnnConfig {
    /// The default SAE's budget (6000 steps x 128, lr 2e-3, relative eps 1e-3) with the U-Net,
    /// c = 8, k = 7 and hop 16.
    pub fn default_peer() -> Self {
        Self {
            arch: PeerArch::UNet,
            width: 8,
            kernel: 7,
            steps: 6000,
            batch: 128,
            lr: 2e-3,
            relative_eps: 1e-3,
            seed: 0,
            hop: 16,
            path_taps: 0,
            loss_taper: None,
            init_sae: None,
            sae_lr: None,
        }
    }
}

/// Tensors of the conv-front SAE's SAE, the last of [`PeerNet`]'s parameters.
const SAE_TENSORS: usize = 4;

/// A peer's parameters, in layer order: conv weights `[out, in, k]` and biases `[1, out, 1]`;
/// for the conv-front SAE then the SAE's `w_enc [1, d_in, d_sae]`, `b_enc [1, 1, d_sae]`,
/// `b_dec [1, 1, d_in]`, `w_dec [1, d_sae, d_in]` (the trainer's layout).
#[derive(Clone, Debug)]
pub struct PeerNet {
    params: Vec<Tensor<3>>,
    arch: PeerArch,
    /// The gated linear path fitted on the net's residuals ([`PeerNet::fit_path`]), added
    /// to the net's output as the core adds a model's.
    path: Option<SkipPath>,
}

/// Seeded He-uniform conv layers `(out, in, k)`, biases zero.
fn init_convs(shapes: &[(usize, usize, usize)], seed: u64, device: &Device) -> Vec<Tensor<3>> {
    let mut rng = Rng::derive(seed, 0xC4E7);
    let mut params = Vec::new();
    for &(o, i, k) in shapes {
        let bound = (6.0 / (i * k) as f64).sqrt();
        let w: Vec<f32> = (0..o * i * k)
            .map(|_| rng.uniform(-bound, bound) as f32)
            .collect();
        params.push(Tensor::<3>::from_data(
            TensorData::new(w, [o, i, k]),
            device,
        ));
        params.push(Tensor::<3>::zeros([1, o, 1], device));
    }
    params
}

impl PeerNet {
    /// Seeded initialisation on `device` for windows of `d_in` samples. The conv-front SAE's
    /// SAE starts as the trainer's (random unit atoms, encoder their transpose, `b_dec` 0:
    /// windows are z-scored) and its front's last layer at zero.
    pub fn init(
        arch: PeerArch,
        width: usize,
        kernel: usize,
        d_in: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        let c = width;
        let params = match arch {
            PeerArch::UNet => init_convs(
                &[
                    (c, 1, kernel),
                    (2 * c, c, kernel),
                    (2 * c, 2 * c, kernel),
                    (c, 4 * c, kernel),
                    (c, 2 * c, kernel),
                    (1, c, 1),
                ],
                seed,
                device,
            ),
            PeerArch::Sae {
                d_sae,
                k,
                width,
                depth,
            } => {
                let mut shapes = vec![(width, 1, kernel)];
                shapes.extend((1..depth).map(|_| (width, width, kernel)));
                shapes.push((1, width, 1));
                let mut p = if depth > 0 {
                    init_convs(&shapes, seed, device)
                } else {
                    Vec::new()
                };
                if let Some(i) = p.len().checked_sub(2) {
                    p[i] = p[i].zeros_like();
                }
                let cfg = TrainConfig::new(d_in, d_sae, k)
                    .with_n_saes(1)
                    .with_seed(seed);
                p.extend(SaeStack::init(&cfg, &vec![0.0; d_in], device).params());
                p
            }
        };
        Self {
            params,
            arch,
            path: None,
        }
    }

    /// Replaces the SAE's tensors by `t`'s (SAELens shapes, as [`PeerNet::model_tensors`]
    /// exports them; sizes checked by the caller).
    fn start_sae_from(&mut self, t: &ModelTensors, device: &Device) {
        let (di, ds) = (t.b_dec.len(), t.b_enc.len());
        let n = self.params.len();
        let tensor = |v: &[f32], shape: [usize; 3]| {
            Tensor::<3>::from_data(TensorData::new(v.to_vec(), shape), device)
        };
        self.params[n - SAE_TENSORS] = tensor(&t.w_enc, [1, di, ds]);
        self.params[n - 3] = tensor(&t.b_enc, [1, 1, ds]);
        self.params[n - 2] = tensor(&t.b_dec, [1, 1, di]);
        self.params[n - 1] = tensor(&t.w_dec, [1, ds, di]);
    }

    /// Number of scalar parameters.
    pub fn n_params(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.dims().iter().product::<usize>())
            .sum()
    }

    /// # Shapes
    /// `x [B, L]` -> `[B, L]`, L a multiple of 4.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        forward(&self.params, self.arch, x)
    }

    /// The outputs for row-major windows `inputs` (`[n, d_in]`, normalised), the gated path
    /// included, on the host.
    pub fn predict(&self, inputs: &[f32], d_in: usize, device: &Device) -> Vec<f32> {
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(512 * d_in) {
            let n = chunk.len() / d_in;
            let y = self.forward(Tensor::<2>::from_data(
                TensorData::new(chunk.to_vec(), [n, d_in]),
                device,
            ));
            out.extend(
                y.try_into_vec_as::<f32>()
                    .unwrap_or_else(|_| vec![f32::NAN; n * d_in]),
            );
        }
        if let Some(path) = &self.path {
            add_path(path, inputs, d_in, &mut out);
        }
        out
    }

    /// Fits the gated linear path of the core's models (`taps` FIR taps) on this net's
    /// residuals over `train`, one fit per gate in `gates`, and keeps the one with the lowest
    /// relative loss on `val`, or none if none lowers it. Returns (gate, validation loss).
    pub fn fit_path(
        &mut self,
        train: &Dataset,
        val: &Dataset,
        taps: usize,
        gates: &[f32],
        eps: f64,
        device: &Device,
    ) -> (Option<f32>, f64) {
        self.path = None;
        let outputs = self.predict(&train.inputs, train.dim, device);
        let fits = crate::train::skip::fit_skips_to_outputs(
            train.dim,
            &train.inputs,
            &train.targets,
            &outputs,
            taps,
            gates,
            Some(eps),
        );
        // The net's validation outputs once; each candidate path is added on the host.
        let net_val = self.predict(&val.inputs, val.dim, device);
        let mut best = (
            None,
            relative_loss_host(&net_val, &val.targets, val.dim, eps),
        );
        for fit in fits {
            let mut y = net_val.clone();
            add_path(&fit, &val.inputs, val.dim, &mut y);
            let l = relative_loss_host(&y, &val.targets, val.dim, eps);
            if l < best.1 {
                best = (Some(fit), l);
            }
        }
        let gate = best.0.as_ref().map(|p| p.gate);
        self.path = best.0;
        (gate, best.1)
    }

    /// The SAE peer as the core's model tensors: the front end's layers packed in
    /// [`crate::core::FrontShape::n_params`] order (weights `[out, in, k]`, then biases), the
    /// SAE's matrices in SAELens shapes, and the fitted linear path. `None` for the U-Net or
    /// if a tensor cannot be read back.
    pub fn model_tensors(&self) -> Option<ModelTensors> {
        let PeerArch::Sae { depth, width, .. } = self.arch else {
            return None;
        };
        let host = |t: &Tensor<3>| t.clone().try_into_vec_as::<f32>().ok();
        let n = self.params.len();
        let front = if depth > 0 {
            let mut params = Vec::new();
            for t in &self.params[..n - SAE_TENSORS] {
                params.extend(host(t)?);
            }
            let kernel = self.params[0].dims()[2];
            Some(FrontParams {
                shape: FrontShape {
                    width,
                    depth,
                    kernel,
                },
                params,
            })
        } else {
            None
        };
        let s = &self.params[n - SAE_TENSORS..];
        Some(ModelTensors {
            w_enc: host(&s[0])?,
            b_enc: host(&s[1])?,
            b_dec: host(&s[2])?,
            w_dec: host(&s[3])?,
            skip: self.path.clone(),
            front,
        })
    }

    /// Keeps the parameters feasible after an optimiser step: the SAE's atoms at unit norm.
    fn project(&mut self) {
        if let PeerArch::Sae { .. } = self.arch
            && let Some(w_dec) = self.params.pop()
        {
            self.params.push(normalize_rows(w_dec));
        }
    }
}

fn conv(x: Tensor<3>, w: &Tensor<3>, b: &Tensor<3>, stride: usize) -> Tensor<3> {
    let [_, o, _] = b.dims();
    let k = w.dims()[2];
    conv1d(
        x,
        w.clone(),
        Some(b.clone().reshape([o])),
        ConvOptions::new([stride], [k / 2], [1], 1),
    )
}

/// Repeats every sample twice along the last axis.
fn up(x: Tensor<3>) -> Tensor<3> {
    let [b, c, l] = x.dims();
    x.unsqueeze_dim::<4>(3)
        .repeat_dim(3, 2)
        .reshape([b, c, 2 * l])
}

fn forward(p: &[Tensor<3>], arch: PeerArch, x: Tensor<2>) -> Tensor<2> {
    forward_fired(p, arch, x).0
}

/// [`forward`], and for the conv-front SAE how many of the batch's TopK slots carry a positive
/// activation (0: the SAE contributed nothing, only `b_dec` reached the output).
fn forward_fired(p: &[Tensor<3>], arch: PeerArch, x: Tensor<2>) -> (Tensor<2>, Option<usize>) {
    let [b, l] = x.dims();
    let x3 = x.clone().reshape([b, 1, l]);
    match arch {
        PeerArch::UNet => {
            let e1 = relu(conv(x3, &p[0], &p[1], 1));
            let e2 = relu(conv(e1.clone(), &p[2], &p[3], 2));
            let e3 = relu(conv(e2.clone(), &p[4], &p[5], 2));
            let d2 = relu(conv(Tensor::cat(vec![up(e3), e2], 1), &p[6], &p[7], 1));
            let d1 = relu(conv(Tensor::cat(vec![up(d2), e1], 1), &p[8], &p[9], 1));
            (conv(d1, &p[10], &p[11], 1).reshape([b, l]), None)
        }
        PeerArch::Sae { k, depth, .. } => {
            let g = if depth > 0 {
                let mut h = x3;
                for layer in p[..2 * depth].chunks_exact(2) {
                    h = relu(conv(h, &layer[0], &layer[1], 1));
                }
                x.add(conv(h, &p[2 * depth], &p[2 * depth + 1], 1).reshape([b, l]))
            } else {
                x
            };
            let s = &p[p.len() - 4..];
            let sae = SaeStack {
                w_enc: s[0].clone(),
                b_enc: s[1].clone(),
                b_dec: s[2].clone(),
                w_dec: Some(s[3].clone()),
            };
            // Host selection: the same TopK rule as the core, and faster on CPU backends.
            let f = sae.forward(g, k, ActivationKind::TopkRelu, true);
            let fired = match (&f.mask_host, &f.pre_host) {
                (Some(m), Some(v)) => Some(
                    m.iter()
                        .zip(v)
                        .filter(|&(&m, &v)| m > 0.0 && v > 0.0)
                        .count(),
                ),
                _ => None,
            };
            (f.x_hat.reshape([b, l]), fired)
        }
    }
}

/// Mean over windows of `sum (y - t)^2 / (sum t^2 + eps * L)`: the SAE's relative loss;
/// with per-sample `weights` `[1, L]` (mean 1) both sums are weighted.
fn relative_loss(y: Tensor<2>, t: Tensor<2>, eps: f64, weights: Option<&Tensor<2>>) -> Tensor<1> {
    let weigh = |v: Tensor<2>| match weights {
        Some(w) => v.mul(w.clone()),
        None => v,
    };
    let w = weigh(t.clone().square())
        .mean_dim(1)
        .add_scalar(eps as f32)
        .recip();
    weigh(y.sub(t).square()).mean_dim(1).mul(w).mean()
}

/// What [`train_cnn`] reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CnnRun {
    /// The configuration.
    pub config: CnnConfig,
    /// Parameters.
    pub n_params: usize,
    /// Final validation relative loss (same definition as the SAE's), with the gated path.
    pub val_loss: f64,
    /// Validation relative loss of the net alone.
    pub val_loss_net: f64,
    /// The gate of the fitted path (`None`: none fitted or none kept).
    pub path_gate: Option<f32>,
    /// Wall time of training (s), restarts included.
    pub train_seconds: f64,
    /// The steps at which earlier initialisations went dead and were restarted (empty: none).
    pub dead_at: Vec<usize>,
}

fn batch_tensor(data: &Dataset, idx: &[usize], device: &Device, targets: bool) -> Tensor<2> {
    let d = data.dim;
    let src = if targets { &data.targets } else { &data.inputs };
    let mut v = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        v.extend_from_slice(&src[i * d..(i + 1) * d]);
    }
    Tensor::<2>::from_data(TensorData::new(v, [idx.len(), d]), device)
}

/// Validation relative loss of `net` over `val` (the gated path included).
pub fn val_loss(net: &PeerNet, val: &Dataset, eps: f64, device: &Device) -> f64 {
    let y = net.predict(&val.inputs, val.dim.max(1), device);
    relative_loss_host(&y, &val.targets, val.dim, eps)
}

/// Adds the gated linear `path` of each window of `inputs` to its output in `out`.
fn add_path(path: &SkipPath, inputs: &[f32], d_in: usize, out: &mut [f32]) {
    let taps: Vec<u8> = path.taps.iter().flat_map(|t| t.to_le_bytes()).collect();
    let skip = Skip {
        taps: &taps,
        gate: path.gate,
    };
    for (x, y) in inputs.chunks_exact(d_in).zip(out.chunks_exact_mut(d_in)) {
        skip.apply(x, y);
    }
}

/// [`relative_loss`] on host rows `[n, d]` (f64 sums).
fn relative_loss_host(y: &[f32], targets: &[f32], d: usize, eps: f64) -> f64 {
    let d = d.max(1);
    let n = targets.len() / d;
    let sum: f64 = y
        .chunks_exact(d)
        .zip(targets.chunks_exact(d))
        .map(|(y, t)| {
            let err: f64 = y
                .iter()
                .zip(t)
                .map(|(&a, &b)| f64::from(a - b).powi(2))
                .sum();
            let energy: f64 = t.iter().map(|&b| f64::from(b).powi(2)).sum();
            err / (energy + eps * d as f64)
        })
        .sum();
    sum / n.max(1) as f64
}

/// Training steps in a row in which fewer than 1/[`STARVED_FRACTION`] of the conv-front SAE's
/// TopK slots carried a positive activation, after which the SAE counts as dead. Seen at some
/// seeds: from an initial loss far above the zero output's, Adam drives `b_enc` down until
/// (almost) no latent fires; the encoder and the front then get (almost) no gradient and the
/// run ends near the zero output, only the linear path acting. A live SAE fills over 90 %.
/// A starved one may come back on its own hundreds or thousands of steps later, or never;
/// a fresh start costs less than the wait.
pub const DEAD_SAE_STEPS: usize = 100;

/// See [`DEAD_SAE_STEPS`].
pub const STARVED_FRACTION: usize = 16;

/// Fresh initialisations [`train_cnn`] tries after a dead SAE before it gives up.
pub const MAX_RESTARTS: usize = 3;

/// The initialisation and batch-order seed of attempt `attempt` (0: the configured seed, so a
/// run that never dies is the same run as without the guard).
fn attempt_seed(seed: u64, attempt: usize) -> u64 {
    seed ^ ((attempt as u64) << 48)
}

/// Trains the peer on `train` (batches drawn by a seeded shuffle, epoch after epoch) and
/// scores it on `val`. `progress` is called every 500 steps with (step, training loss).
///
/// A conv-front SAE that goes dead ([`DEAD_SAE_STEPS`] steps with under 1/[`STARVED_FRACTION`]
/// of its TopK slots firing) is restarted from a fresh initialisation (seed derived from
/// `cfg.seed`), at most [`MAX_RESTARTS`] times; the steps where earlier attempts died are in
/// [`CnnRun::dead_at`]. If every attempt dies the error says so.
pub fn train_cnn(
    cfg: &CnnConfig,
    train: &Dataset,
    val: &Dataset,
    device: &Device,
    mut progress: impl FnMut(usize, f64),
) -> Result<(PeerNet, CnnRun), EvalError> {
    if !train.dim.is_multiple_of(4) || train.inputs.is_empty() || cfg.kernel.is_multiple_of(2) {
        return Err(EvalError::Invalid(format!(
            "CNN: window {} must be a non-zero multiple of 4 with data, kernel {} odd",
            train.dim, cfg.kernel
        )));
    }
    if let (Some(t), PeerArch::Sae { d_sae, .. }) = (&cfg.init_sae, cfg.arch) {
        let d_in = train.dim;
        if t.b_dec.len() != d_in
            || t.b_enc.len() != d_sae
            || t.w_enc.len() != d_in * d_sae
            || t.w_dec.len() != d_in * d_sae
        {
            return Err(EvalError::Invalid(format!(
                "the SAE to start from has d_in {} and d_sae {}, the run needs {d_in} and {d_sae}",
                t.b_dec.len(),
                t.b_enc.len()
            )));
        }
    }
    let t0 = std::time::Instant::now();
    let mut dead_at = Vec::new();
    let mut net = None;
    for attempt in 0..=MAX_RESTARTS {
        match fit(
            cfg,
            attempt_seed(cfg.seed, attempt),
            train,
            device,
            &mut progress,
        ) {
            Ok(n) => {
                net = Some(n);
                break;
            }
            Err(step) => dead_at.push(step),
        }
    }
    let Some(mut net) = net else {
        return Err(EvalError::Train(format!(
            "the front-end SAE (seed {}) went dead in each of {} initialisations (fewer than 1/{STARVED_FRACTION} of its TopK slots fired for {DEAD_SAE_STEPS} steps, at steps {dead_at:?}); try another seed or learning rate",
            cfg.seed,
            MAX_RESTARTS + 1
        )));
    };
    let val_loss_net = val_loss(&net, val, cfg.relative_eps, device);
    let (path_gate, val_loss) = if cfg.path_taps > 0 {
        net.fit_path(
            train,
            val,
            cfg.path_taps,
            &[0.1, 0.2, 0.4, 0.8],
            cfg.relative_eps,
            device,
        )
    } else {
        (None, val_loss_net)
    };
    let run = CnnRun {
        config: cfg.clone(),
        n_params: net.n_params(),
        val_loss,
        val_loss_net,
        path_gate,
        train_seconds: t0.elapsed().as_secs_f64(),
        dead_at,
    };
    Ok((net, run))
}

/// One training attempt from the initialisation of `seed`; `Err(step)` when the SAE went dead
/// at `step`.
fn fit(
    cfg: &CnnConfig,
    seed: u64,
    train: &Dataset,
    device: &Device,
    progress: &mut impl FnMut(usize, f64),
) -> Result<PeerNet, usize> {
    let mut net = PeerNet::init(cfg.arch, cfg.width, cfg.kernel, train.dim, seed, device);
    if let Some(t) = &cfg.init_sae {
        net.start_sae_from(t, device);
    }
    let mut adam = Adam::new(&net.params);
    let lr_scale: Vec<f64> = match (cfg.arch, cfg.sae_lr) {
        (PeerArch::Sae { .. }, Some(sae_lr)) if cfg.lr > 0.0 => {
            let n = net.params.len();
            (0..n)
                .map(|i| {
                    if i + SAE_TENSORS >= n {
                        sae_lr / cfg.lr
                    } else {
                        1.0
                    }
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let sched = crate::train::TrainConfig::new(train.dim, 1, 1)
        .with_steps(cfg.steps)
        .with_lr(cfg.lr);
    let n = train.inputs.len() / train.dim;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::derive(seed, 0xBA7C);
    rng.shuffle(&mut order);
    let weights = cfg.loss_taper.map(|shape| {
        Tensor::<2>::from_data(
            TensorData::new(loss_weights(shape, train.dim), [1, train.dim]),
            device,
        )
    });
    let mut pos = 0;
    let mut silent = 0;
    for step in 0..cfg.steps {
        if pos + cfg.batch > n {
            rng.shuffle(&mut order);
            pos = 0;
        }
        let idx = &order[pos..pos + cfg.batch.min(n)];
        pos += cfg.batch;
        let tracked: Vec<Tensor<3>> = net
            .params
            .iter()
            .map(|p| p.clone().autodiff().require_grad())
            .collect();
        let (y, fired) = forward_fired(&tracked, cfg.arch, batch_tensor(train, idx, device, false));
        let slots = match cfg.arch {
            PeerArch::Sae { k, .. } => idx.len() * k,
            PeerArch::UNet => 0,
        };
        let starved = fired.is_some_and(|f| f * STARVED_FRACTION < slots);
        silent = if starved { silent + 1 } else { 0 };
        if silent >= DEAD_SAE_STEPS {
            return Err(step + 1);
        }
        let loss = relative_loss(
            y,
            batch_tensor(train, idx, device, true),
            cfg.relative_eps,
            weights.as_ref(),
        );
        let grads = loss.backward();
        let g: Vec<Tensor<3>> = tracked
            .iter()
            .map(|p| {
                p.grad(&grads)
                    .unwrap_or_else(|| p.clone().without_autodiff().zeros_like())
            })
            .collect();
        if (step + 1) % 500 == 0 {
            let l = loss.without_autodiff().try_into_vec_as::<f32>();
            progress(step + 1, l.map_or(f64::NAN, |v| v[0] as f64));
        }
        net.params = adam.step_scaled(
            std::mem::take(&mut net.params),
            g,
            AdamParams {
                lr: sched.lr_at(step),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            &lr_scale,
        );
        net.project();
    }
    Ok(net)
}

/// A trained peer as a denoising [`Method`]: windows of `d_in` every `hop` samples over the
/// reflect-padded signal, each normalised like the SAE's `window_zscore_no_mean` (divided by
/// its std + 1e-6 after removing its mean; the output is scaled back, the mean not added),
/// recombined by sine-squared weighted overlap-add.
pub struct CnnMethod {
    name: String,
    net: PeerNet,
    d_in: usize,
    hop: usize,
    device: Device,
}

impl CnnMethod {
    /// Wraps a trained net for windows of `d_in` samples.
    pub fn new(
        name: impl Into<String>,
        net: PeerNet,
        d_in: usize,
        hop: usize,
        device: Device,
    ) -> Self {
        Self {
            name: name.into(),
            net,
            d_in,
            hop: hop.clamp(1, d_in),
            device,
        }
    }
}

impl Method for CnnMethod {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn denoise(&mut self, x: &[f32]) -> Result<Vec<f32>, EvalError> {
        let (d, hop) = (self.d_in, self.hop);
        let n = x.len();
        if n < 2 {
            return Err(EvalError::TooShort { needed: 2, got: n });
        }
        let pad = d - 1;
        // Reflection without repeating the edge sample (as the core's offline path).
        let at = |i: isize| -> f32 {
            let m = n as isize - 1;
            let mut j = i;
            while j < 0 || j > m {
                j = if j < 0 { -j } else { 2 * m - j };
            }
            x[j as usize]
        };
        let total = n + 2 * pad;
        let starts: Vec<usize> = (0..=(total - d)).step_by(hop).collect();
        let mut inputs = Vec::with_capacity(starts.len() * d);
        let mut scales = Vec::with_capacity(starts.len());
        for &s in &starts {
            let w: Vec<f32> = (0..d)
                .map(|k| at((s + k) as isize - pad as isize))
                .collect();
            let mean = w.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let scale = var.sqrt() + 1e-6;
            inputs.extend(w.iter().map(|&v| ((v as f64 - mean) / scale) as f32));
            scales.push(scale);
        }
        let y = self.net.predict(&inputs, d, &self.device);
        if !y.iter().all(|v| v.is_finite()) {
            return Err(EvalError::Invalid(format!(
                "{}: non-finite output",
                self.name
            )));
        }
        let mut acc = vec![0.0f64; total];
        let mut wsum = vec![0.0f64; total];
        for (j, &s) in starts.iter().enumerate() {
            for k in 0..d {
                let w = (std::f64::consts::PI * (k as f64 + 0.5) / d as f64)
                    .sin()
                    .powi(2);
                acc[s + k] += w * y[j * d + k] as f64 * scales[j];
                wsum[s + k] += w;
            }
        }
        Ok((0..n)
            .map(|i| (acc[i + pad] / wsum[i + pad].max(1e-12)) as f32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weighted loss is `mean_w (w e^2) / (mean_w (w t^2) + eps)` per window (checked in
    /// f64 on random rows), and unit weights give the unweighted loss.
    #[test]
    fn taper_weighted_relative_loss_is_the_weighted_ratio() {
        let device = Device::flex();
        let (b, d, eps) = (3, 16, 1e-3);
        let mut rng = Rng::new(5);
        let y: Vec<f32> = (0..b * d).map(|_| rng.normal() as f32).collect();
        let t: Vec<f32> = (0..b * d).map(|_| rng.normal() as f32).collect();
        let w = loss_weights(OlaShape::Sine, d);
        assert!((w.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64 - 1.0).abs() < 1e-6);
        assert!(w[0] < 0.2 && w[d / 2] > 1.5 && (w[1] - w[d - 2]).abs() < 1e-6);
        let tensor = |v: &[f32], rows: usize| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, d]), &device)
        };
        let value = |weights: Option<&Tensor<2>>| {
            relative_loss(tensor(&y, b), tensor(&t, b), eps, weights)
                .try_into_vec_as::<f32>()
                .unwrap()[0] as f64
        };
        let mut want = 0.0;
        for r in 0..b {
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for n in 0..d {
                let (wn, yv, tv) = (
                    f64::from(w[n]),
                    f64::from(y[r * d + n]),
                    f64::from(t[r * d + n]),
                );
                num += wn * (yv - tv).powi(2);
                den += wn * tv * tv;
            }
            want += (num / d as f64) / (den / d as f64 + eps);
        }
        want /= b as f64;
        let got = value(Some(&tensor(&w, 1)));
        assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
        let ones = tensor(&[1.0; 16], 1);
        let plain = relative_loss_host(&y, &t, d, eps);
        assert!((value(Some(&ones)) - plain).abs() < 1e-5 * plain);
        assert!((value(None) - plain).abs() < 1e-5 * plain);
        assert!(
            (got - plain).abs() > 1e-3 * plain,
            "the weights must matter"
        );
    }

    fn small_sae(steps: usize) -> CnnConfig {
        CnnConfig {
            arch: PeerArch::Sae {
                d_sae: 32,
                k: 4,
                width: 2,
                depth: 1,
            },
            width: 2,
            kernel: 3,
            steps,
            batch: 8,
            ..CnnConfig::default_peer()
        }
    }

    /// All-zero windows never make a latent fire (every pre-activation is exactly 0 at
    /// initialisation and gets no gradient), so each initialisation dies after
    /// `DEAD_SAE_STEPS` and training ends in an error instead of a model with a dead SAE.
    /// (The seed-dependent collapse on real windows is `train-denoiser --front 8x3k3 --seeds 1
    /// --steps 6000` with the fast model's card command: dead at step 188, then restarted, to
    /// validation windows RRMSE_t 0.4418.)
    #[test]
    fn a_dead_sae_is_restarted_and_then_refused() {
        let device = Device::flex();
        let zeros = Dataset::reconstruction(vec![0.0; 64 * 16], 16);
        let Err(err) = train_cnn(&small_sae(400), &zeros, &zeros, &device, |_, _| {}) else {
            panic!("a dead SAE must not train");
        };
        let err = err.to_string();
        assert!(
            err.contains("went dead in each of 4") && err.contains("[100, 100, 100, 100]"),
            "{err}"
        );
    }

    /// A warm start puts the given SAE in place (before any step it is exported unchanged,
    /// the front at zero), and an SAE of another size is refused.
    #[test]
    fn a_warm_start_begins_from_the_given_sae() {
        let device = Device::flex();
        let mut rng = Rng::new(9);
        let mut v = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
        let given = ModelTensors {
            w_enc: v(16 * 32),
            w_dec: v(32 * 16),
            b_enc: v(32),
            b_dec: v(16),
            skip: None,
            front: None,
        };
        let data = Dataset::reconstruction(v(64 * 16), 16);
        let cfg = CnnConfig {
            init_sae: Some(given.clone()),
            ..small_sae(0)
        };
        let (net, _) = train_cnn(&cfg, &data, &data, &device, |_, _| {}).unwrap();
        let t = net.model_tensors().unwrap();
        assert_eq!(
            (&t.w_enc, &t.w_dec, &t.b_enc, &t.b_dec),
            (&given.w_enc, &given.w_dec, &given.b_enc, &given.b_dec)
        );
        let front = t.front.unwrap().params;
        assert!(
            front[front.len() - 3..].iter().all(|&p| p == 0.0),
            "{front:?}"
        );
        let cold = train_cnn(&small_sae(0), &data, &data, &device, |_, _| {}).unwrap();
        assert_ne!(cold.0.model_tensors().unwrap().w_enc, given.w_enc);
        let wrong = CnnConfig {
            init_sae: Some(ModelTensors {
                b_enc: v(31),
                ..given
            }),
            ..small_sae(0)
        };
        let Err(e) = train_cnn(&wrong, &data, &data, &device, |_, _| {}) else {
            panic!("a 31-latent SAE must be refused for d_sae 32");
        };
        assert!(e.to_string().contains("d_sae 31"), "{e}");
    }

    /// `sae_lr` 0 holds a warm-started SAE still (up to the decoder's renormalisation) while
    /// the front learns; with the shared learning rate the SAE moves.
    #[test]
    fn the_sae_learning_rate_is_its_own() {
        let device = Device::flex();
        let mut rng = Rng::new(5);
        let mut v = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
        let mut w_dec = v(32 * 16);
        for row in w_dec.chunks_mut(16) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        let given = ModelTensors {
            w_enc: v(16 * 32),
            w_dec,
            b_enc: v(32).iter().map(|b| b.abs()).collect(),
            b_dec: v(16),
            skip: None,
            front: None,
        };
        let data = Dataset::reconstruction(v(64 * 16), 16);
        let trained = |sae_lr| {
            let cfg = CnnConfig {
                init_sae: Some(given.clone()),
                sae_lr,
                ..small_sae(40)
            };
            let (net, _) = train_cnn(&cfg, &data, &data, &device, |_, _| {}).unwrap();
            net.model_tensors().unwrap()
        };
        let max_diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0_f32, f32::max)
        };
        let held = trained(Some(0.0));
        for (a, b) in [
            (&held.w_enc, &given.w_enc),
            (&held.w_dec, &given.w_dec),
            (&held.b_enc, &given.b_enc),
            (&held.b_dec, &given.b_dec),
        ] {
            assert!(max_diff(a, b) < 1e-5, "{}", max_diff(a, b));
        }
        let front = held.front.unwrap().params;
        assert!(front[front.len() - 3..].iter().any(|&p| p.abs() > 1e-4));
        let moved = trained(None);
        assert!(max_diff(&moved.w_enc, &given.w_enc) > 1e-3);
    }

    /// Random windows keep latents firing: one attempt, no restart, a loss below the zero
    /// output's 1.
    #[test]
    fn a_live_sae_trains_without_restart() {
        let device = Device::flex();
        let mut rng = Rng::new(3);
        let rows: Vec<f32> = (0..64 * 16).map(|_| rng.normal() as f32).collect();
        let data = Dataset::reconstruction(rows, 16);
        let (_, run) = train_cnn(&small_sae(150), &data, &data, &device, |_, _| {}).unwrap();
        assert!(run.dead_at.is_empty(), "{:?}", run.dead_at);
        assert!(run.val_loss < 0.9, "{}", run.val_loss);
    }
}
