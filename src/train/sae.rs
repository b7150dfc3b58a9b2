//! A stack of N TopK SAEs held as batched tensors, with seeded initialisation and the forward
//! pass.
//!
//! Layout (SAELens convention per SAE, stacked on a leading N axis):
//! `w_enc [N, d_in, d_sae]`, `b_enc [N, 1, d_sae]`, `w_dec [N, d_sae, d_in]` (rows are the
//! unit-norm dictionary atoms), `b_dec [N, 1, d_in]`.

use super::config::{ActivationKind, TrainConfig};
use super::topk::{topk_mask, topk_mask_host};
use crate::rng::Rng;
use burn::tensor::{Device, Tensor, TensorData};

/// Host copy of one SAE's weights, in the model file's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeTensors {
    /// Encoder `[d_in, d_sae]`, row-major.
    pub w_enc: Vec<f32>,
    /// Decoder `[d_sae, d_in]`, row-major, rows of unit norm.
    pub w_dec: Vec<f32>,
    /// Encoder bias `[d_sae]`.
    pub b_enc: Vec<f32>,
    /// Decoder bias `[d_in]`.
    pub b_dec: Vec<f32>,
}

/// The trainable parameters of N SAEs (plain tensors, no autodiff).
#[derive(Clone, Debug)]
pub struct SaeStack {
    /// Encoder weights `[N, d_in, d_sae]`.
    pub w_enc: Tensor<3>,
    /// Encoder bias `[N, 1, d_sae]`.
    pub b_enc: Tensor<3>,
    /// Decoder weights `[N, d_sae, d_in]`; `None` when tied (derived from the encoder).
    pub w_dec: Option<Tensor<3>>,
    /// Decoder bias `[N, 1, d_in]`.
    pub b_dec: Tensor<3>,
}

/// What one forward pass produces.
#[derive(Clone, Debug)]
pub struct Forward {
    /// Pre-activations `[N, B, d_sae]`.
    pub pre: Tensor<3>,
    /// 0/1 TopK mask `[N, B, d_sae]` (no autodiff).
    pub mask: Tensor<3>,
    /// The same mask on the host, when the selection was made there.
    pub mask_host: Option<Vec<f32>>,
    /// The pre-activations on the host, when the selection was made there.
    pub pre_host: Option<Vec<f32>>,
    /// Latents `[N, B, d_sae]`.
    pub z: Tensor<3>,
    /// Reconstructions `[N, B, d_in]`.
    pub x_hat: Tensor<3>,
    /// Decoder actually used `[N, d_sae, d_in]` (row-normalised encoder transpose if tied).
    pub dec: Tensor<3>,
}

/// Row-normalises `[.., rows, cols]` along the last axis.
pub fn normalize_rows(t: Tensor<3>) -> Tensor<3> {
    let norm = t.clone().square().sum_dim(2).add_scalar(1e-12).sqrt();
    t.div(norm)
}

/// Column means of a row-major `[n, dim]` matrix (f64 accumulation).
pub fn column_means(rows: &[f32], dim: usize) -> Vec<f32> {
    let n = rows.len() / dim.max(1);
    let mut acc = vec![0f64; dim];
    for r in rows.chunks_exact(dim) {
        for (a, &v) in acc.iter_mut().zip(r) {
            *a += v as f64;
        }
    }
    acc.iter().map(|&a| (a / n.max(1) as f64) as f32).collect()
}

impl SaeStack {
    /// Seeded initialisation, identical on every backend: decoder atoms are random unit vectors
    /// drawn on the host with [`Rng`] (one derived stream per SAE), the encoder is the scaled
    /// decoder transpose, `b_enc = 0` and `b_dec = data_mean`.
    pub fn init(cfg: &TrainConfig, data_mean: &[f32], device: &Device) -> Self {
        let (n, di, ds) = (cfg.n_saes, cfg.d_in, cfg.d_sae);
        assert_eq!(data_mean.len(), di, "data mean has the wrong length");
        let mut dec = vec![0f32; n * ds * di];
        let mut enc = vec![0f32; n * di * ds];
        for s in 0..n {
            let mut rng = Rng::derive(cfg.seed, 0x5AE0 + s as u64);
            let d = &mut dec[s * ds * di..(s + 1) * ds * di];
            for row in d.chunks_exact_mut(di) {
                let mut norm = 0f64;
                for v in row.iter_mut() {
                    let g = rng.normal();
                    *v = g as f32;
                    norm += g * g;
                }
                let inv = 1.0 / norm.sqrt().max(1e-30);
                for v in row.iter_mut() {
                    *v = (*v as f64 * inv) as f32;
                }
            }
            let e = &mut enc[s * di * ds..(s + 1) * di * ds];
            for a in 0..ds {
                for i in 0..di {
                    e[i * ds + a] = d[a * di + i] * cfg.enc_init_scale;
                }
            }
        }
        let b_dec: Vec<f32> = (0..n).flat_map(|_| data_mean.iter().copied()).collect();
        let t3 = |v: Vec<f32>, s: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v, s), device);
        Self {
            w_enc: t3(enc, [n, di, ds]),
            b_enc: Tensor::zeros([n, 1, ds], device),
            w_dec: (!cfg.tied).then(|| t3(dec, [n, ds, di])),
            b_dec: t3(b_dec, [n, 1, di]),
        }
    }

    /// Builds a stack from host tensors (one per SAE).
    pub fn from_host(cfg: &TrainConfig, saes: &[SaeTensors], device: &Device) -> Self {
        let (n, di, ds) = (saes.len(), cfg.d_in, cfg.d_sae);
        let cat = |f: &dyn Fn(&SaeTensors) -> &Vec<f32>| -> Vec<f32> {
            saes.iter().flat_map(|s| f(s).iter().copied()).collect()
        };
        let t3 = |v: Vec<f32>, s: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v, s), device);
        Self {
            w_enc: t3(cat(&|s| &s.w_enc), [n, di, ds]),
            b_enc: t3(cat(&|s| &s.b_enc), [n, 1, ds]),
            w_dec: (!cfg.tied).then(|| t3(cat(&|s| &s.w_dec), [n, ds, di])),
            b_dec: t3(cat(&|s| &s.b_dec), [n, 1, di]),
        }
    }

    /// The parameters as a list (fixed order: w_enc, b_enc, b_dec, then w_dec if untied).
    pub fn params(&self) -> Vec<Tensor<3>> {
        let mut v = vec![self.w_enc.clone(), self.b_enc.clone(), self.b_dec.clone()];
        if let Some(d) = &self.w_dec {
            v.push(d.clone());
        }
        v
    }

    /// Rebuilds the stack from a list in [`SaeStack::params`] order.
    pub fn with_params(&self, mut p: Vec<Tensor<3>>) -> Self {
        let w_dec = if self.w_dec.is_some() { p.pop() } else { None };
        let b_dec = p.pop().expect("b_dec");
        let b_enc = p.pop().expect("b_enc");
        let w_enc = p.pop().expect("w_enc");
        Self {
            w_enc,
            b_enc,
            w_dec,
            b_dec,
        }
    }

    /// Names of [`SaeStack::params`], for checkpoints.
    pub fn param_names(&self) -> Vec<&'static str> {
        let mut v = vec!["w_enc", "b_enc", "b_dec"];
        if self.w_dec.is_some() {
            v.push("w_dec");
        }
        v
    }

    /// The same parameters on the autodiff device, each a leaf that keeps its gradient.
    pub fn tracked(&self) -> Self {
        let t = |x: &Tensor<3>| x.clone().autodiff().require_grad();
        Self {
            w_enc: t(&self.w_enc),
            b_enc: t(&self.b_enc),
            w_dec: self.w_dec.as_ref().map(t),
            b_dec: t(&self.b_dec),
        }
    }

    /// The dictionary `[N, d_sae, d_in]` the SAEs decode with.
    pub fn decoder(&self) -> Tensor<3> {
        match &self.w_dec {
            Some(d) => d.clone(),
            None => normalize_rows(self.w_enc.clone().swap_dims(1, 2)),
        }
    }

    /// Pre-activations `(x - b_dec) W_enc + b_enc`, `x: [B, d_in]` shared by all SAEs.
    ///
    /// Evaluated as `x W_enc - (b_dec W_enc) + b_enc`: the input carries no gradient, so the
    /// backward pass skips the `[N, B, d_sae] x [N, d_sae, d_in]` product that `x - b_dec`
    /// would need for `b_dec`'s gradient (a third of the encoder's backward work).
    pub fn encode_pre(&self, x: Tensor<2>) -> Tensor<3> {
        let [n, _, di] = self.b_dec.dims();
        let b = x.dims()[0];
        let x = x.unsqueeze_dim::<3>(0).expand([n, b, di]);
        let shift = self.b_dec.clone().matmul(self.w_enc.clone());
        x.matmul(self.w_enc.clone())
            .sub(shift)
            .add(self.b_enc.clone())
    }

    /// Full forward pass of all SAEs on `x: [B, d_in]`; the TopK selection is made on the
    /// host when `host_select` (same rule either way).
    ///
    /// # Shapes
    /// - x: `[B, d_in]`; outputs `[N, B, d_sae]` latents and `[N, B, d_in]` reconstructions.
    pub fn forward(
        &self,
        x: Tensor<2>,
        k: usize,
        activation: ActivationKind,
        host_select: bool,
    ) -> Forward {
        let pre = self.encode_pre(x);
        let signed = activation == ActivationKind::TopkSigned;
        // Both activations select the k largest pre-activations (as the core does); they
        // differ only in whether a kept value is ReLU'd.
        let plain = pre.clone().without_autodiff();
        let (mask, mask_host, pre_host) = if host_select {
            let dims = plain.dims();
            let device = plain.device();
            let values = plain
                .try_into_vec_as::<f32>()
                .expect("reading pre-activations back from the device");
            let m = topk_mask_host(&values, dims[2], k, None);
            let t = Tensor::<3>::from_data(TensorData::new(m.clone(), dims), &device);
            (t, Some(m), Some(values))
        } else {
            (topk_mask(plain, k), None, None)
        };
        let act = if signed {
            pre.clone()
        } else {
            burn::tensor::activation::relu(pre.clone())
        };
        let z = act.mul(mask.clone());
        let dec = self.decoder();
        let x_hat = z.clone().matmul(dec.clone()).add(self.b_dec.clone());
        Forward {
            pre,
            mask,
            mask_host,
            pre_host,
            z,
            x_hat,
            dec,
        }
    }

    /// Copies the weights of every SAE to the host, in the model file's layout.
    pub fn to_host(&self) -> Vec<SaeTensors> {
        let [n, di, ds] = self.w_enc.dims();
        let v = |t: Tensor<3>| -> Vec<f32> {
            t.without_autodiff()
                .try_into_vec_as::<f32>()
                .expect("reading weights back from the device")
        };
        let w_enc = v(self.w_enc.clone());
        let w_dec = v(self.decoder());
        let b_enc = v(self.b_enc.clone());
        let b_dec = v(self.b_dec.clone());
        (0..n)
            .map(|s| SaeTensors {
                w_enc: w_enc[s * di * ds..(s + 1) * di * ds].to_vec(),
                w_dec: w_dec[s * di * ds..(s + 1) * di * ds].to_vec(),
                b_enc: b_enc[s * ds..(s + 1) * ds].to_vec(),
                b_dec: b_dec[s * di..(s + 1) * di].to_vec(),
            })
            .collect()
    }
}
