//! A compact 1D U-Net denoiser, the peer the SAE is compared with: trained in burn on exactly
//! the SAE's training pairs (model-normalised 1 s windows), with the same relative loss, batch
//! size, step budget and learning-rate schedule, and run like the SAE at inference (per-window
//! normalisation, sine-squared overlap-add, reflected edges).
//!
//! Shape (`width` c, kernel k; c = 8, k = 7 gives 5 497 parameters):
//! `e1 = relu(conv(x; 1->c))`, `e2 = relu(conv(e1; c->2c, stride 2))`,
//! `e3 = relu(conv(e2; 2c->2c, stride 2))`, `d2 = relu(conv([up(e3), e2]; 4c->c))`,
//! `d1 = relu(conv([up(d2), e1]; 2c->c))`, `y = conv(d1; c->1, k 1)`; `up` repeats each sample
//! twice. Windows must be a multiple of 4 samples.
//!
//! Key items: [`CnnConfig`], [`UNet`], [`train_cnn`], [`CnnMethod`].

use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData, activation::relu};

use super::EvalError;
use super::harness::Method;
use crate::rng::Rng;
use crate::train::Dataset;
use crate::train::optim::{Adam, AdamParams};

/// Shape and budget of the U-Net and its training.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CnnConfig {
    /// Channels of the first level (the second has twice as many).
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
}

impl CnnConfig {
    /// The default SAE's budget (6000 steps x 128, lr 2e-3, relative eps 1e-3) with c = 8,
    /// k = 7 and hop 16.
    pub fn default_peer() -> Self {
        Self {
            width: 8,
            kernel: 7,
            steps: 6000,
            batch: 128,
            lr: 2e-3,
            relative_eps: 1e-3,
            seed: 0,
            hop: 16,
        }
    }
}

/// The U-Net's parameters: conv weights `[out, in, k]` and biases `[1, out, 1]`, in layer order.
#[derive(Clone, Debug)]
pub struct UNet {
    params: Vec<Tensor<3>>,
    kernel: usize,
}

impl UNet {
    /// Seeded He-uniform initialisation (biases zero) on `device`.
    pub fn init(width: usize, kernel: usize, seed: u64, device: &Device) -> Self {
        let c = width;
        let shapes: [(usize, usize, usize); 6] = [
            (c, 1, kernel),
            (2 * c, c, kernel),
            (2 * c, 2 * c, kernel),
            (c, 4 * c, kernel),
            (c, 2 * c, kernel),
            (1, c, 1),
        ];
        let mut rng = Rng::derive(seed, 0xC4E7);
        let mut params = Vec::new();
        for (o, i, k) in shapes {
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
        Self { params, kernel }
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
        forward(&self.params, self.kernel, x)
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

fn forward(p: &[Tensor<3>], _kernel: usize, x: Tensor<2>) -> Tensor<2> {
    let [b, l] = x.dims();
    let x = x.reshape([b, 1, l]);
    let e1 = relu(conv(x, &p[0], &p[1], 1));
    let e2 = relu(conv(e1.clone(), &p[2], &p[3], 2));
    let e3 = relu(conv(e2.clone(), &p[4], &p[5], 2));
    let d2 = relu(conv(Tensor::cat(vec![up(e3), e2], 1), &p[6], &p[7], 1));
    let d1 = relu(conv(Tensor::cat(vec![up(d2), e1], 1), &p[8], &p[9], 1));
    conv(d1, &p[10], &p[11], 1).reshape([b, l])
}

/// Mean over windows of `sum (y - t)^2 / (sum t^2 + eps * L)`: the SAE's relative loss.
fn relative_loss(y: Tensor<2>, t: Tensor<2>, eps: f64) -> Tensor<1> {
    let w = t
        .clone()
        .square()
        .mean_dim(1)
        .add_scalar(eps as f32)
        .recip();
    y.sub(t).square().mean_dim(1).mul(w).mean()
}

/// What [`train_cnn`] reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CnnRun {
    /// The configuration.
    pub config: CnnConfig,
    /// Parameters.
    pub n_params: usize,
    /// Final validation relative loss (same definition as the SAE's).
    pub val_loss: f64,
    /// Wall time of training (s).
    pub train_seconds: f64,
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

/// Validation relative loss of `net` over `val` (in chunks).
pub fn val_loss(net: &UNet, val: &Dataset, eps: f64, device: &Device) -> f64 {
    let n = val.inputs.len() / val.dim;
    let mut sum = 0.0;
    for start in (0..n).step_by(512) {
        let idx: Vec<usize> = (start..(start + 512).min(n)).collect();
        let y = net.forward(batch_tensor(val, &idx, device, false));
        let l = relative_loss(y, batch_tensor(val, &idx, device, true), eps);
        let v = l.try_into_vec_as::<f32>().map_or(f32::NAN, |v| v[0]);
        sum += v as f64 * idx.len() as f64;
    }
    sum / n.max(1) as f64
}

/// Trains the U-Net on `train` (batches drawn by a seeded shuffle, epoch after epoch) and
/// scores it on `val`. `progress` is called every 500 steps with (step, training loss).
pub fn train_cnn(
    cfg: &CnnConfig,
    train: &Dataset,
    val: &Dataset,
    device: &Device,
    mut progress: impl FnMut(usize, f64),
) -> Result<(UNet, CnnRun), EvalError> {
    if !train.dim.is_multiple_of(4) || train.inputs.is_empty() || cfg.kernel.is_multiple_of(2) {
        return Err(EvalError::Invalid(format!(
            "CNN: window {} must be a non-zero multiple of 4 with data, kernel {} odd",
            train.dim, cfg.kernel
        )));
    }
    let t0 = std::time::Instant::now();
    let mut net = UNet::init(cfg.width, cfg.kernel, cfg.seed, device);
    let mut adam = Adam::new(&net.params);
    let sched = crate::train::TrainConfig::new(train.dim, 1, 1)
        .with_steps(cfg.steps)
        .with_lr(cfg.lr);
    let n = train.inputs.len() / train.dim;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::derive(cfg.seed, 0xBA7C);
    rng.shuffle(&mut order);
    let mut pos = 0;
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
        let y = forward(
            &tracked,
            cfg.kernel,
            batch_tensor(train, idx, device, false),
        );
        let loss = relative_loss(y, batch_tensor(train, idx, device, true), cfg.relative_eps);
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
        net.params = adam.step(
            std::mem::take(&mut net.params),
            g,
            AdamParams {
                lr: sched.lr_at(step),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        );
    }
    let run = CnnRun {
        config: cfg.clone(),
        n_params: net.n_params(),
        val_loss: val_loss(&net, val, cfg.relative_eps, device),
        train_seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((net, run))
}

/// The trained U-Net as a denoising [`Method`]: windows of `d_in` every `hop` samples over the
/// reflect-padded signal, each normalised like the SAE's `window_zscore_no_mean` (divided by
/// its std + 1e-6 after removing its mean; the output is scaled back, the mean not added),
/// recombined by sine-squared weighted overlap-add.
pub struct CnnMethod {
    name: String,
    net: UNet,
    d_in: usize,
    hop: usize,
    device: Device,
}

impl CnnMethod {
    /// Wraps a trained net for windows of `d_in` samples.
    pub fn new(
        name: impl Into<String>,
        net: UNet,
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
        let y = self.net.forward(Tensor::<2>::from_data(
            TensorData::new(inputs, [starts.len(), d]),
            &self.device,
        ));
        let y = y
            .try_into_vec_as::<f32>()
            .map_err(|e| EvalError::Invalid(format!("CNN output: {e:?}")))?;
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
