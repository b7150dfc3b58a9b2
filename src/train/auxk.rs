//! AuxK (Gao et al. 2024): reconstruct the main reconstruction's residual from the top `k_aux`
//! *dead* latents, so dead latents receive gradient and come back to life.
//!
//! The residual is detached; the loss is its normalised squared error, scaled by
//! `min(dead / k_aux, 1)` like EleutherAI's trainer so that a handful of dead latents does not
//! dominate. A latent is dead when it has not fired for `dead_steps` steps (tracked on the host
//! by [`DeadCounter`]).

use super::sae::Forward;
use super::topk::{topk_mask, topk_mask_host};
use burn::tensor::{Tensor, TensorData};

/// Steps since each latent of each SAE last fired (`[N * d_sae]`, row-major by SAE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadCounter {
    /// Number of SAEs.
    pub n: usize,
    /// Latents per SAE.
    pub d_sae: usize,
    /// Steps since last firing.
    pub since: Vec<u32>,
}

impl DeadCounter {
    /// All latents counted as just fired.
    pub fn new(n: usize, d_sae: usize) -> Self {
        Self {
            n,
            d_sae,
            since: vec![0; n * d_sae],
        }
    }

    /// Advances one step given how often each latent fired in the batch (`[N * d_sae]`).
    pub fn update(&mut self, fired: &[f32]) {
        for (s, &f) in self.since.iter_mut().zip(fired) {
            *s = if f > 0.0 { 0 } else { s.saturating_add(1) };
        }
    }

    /// Dead flags (`since >= dead_steps`).
    pub fn dead(&self, dead_steps: usize) -> Vec<bool> {
        self.since
            .iter()
            .map(|&s| s as usize >= dead_steps)
            .collect()
    }

    /// Fraction of dead latents of each SAE.
    pub fn dead_fraction(&self, dead_steps: usize) -> Vec<f32> {
        self.dead(dead_steps)
            .chunks_exact(self.d_sae)
            .map(|c| c.iter().filter(|&&d| d).count() as f32 / self.d_sae as f32)
            .collect()
    }
}

/// AuxK loss of each SAE, `[N]`, or `None` when no SAE has a dead latent.
///
/// # Shapes
/// - `fwd`: the forward pass on a batch, `target: [B, d_in]`, `dead: [N * d_sae]`.
pub fn auxk_per_sae(
    fwd: &Forward,
    target: Tensor<2>,
    dead: &[bool],
    k_aux: usize,
    signed: bool,
) -> Option<Tensor<1>> {
    let [n, b, ds] = fwd.pre.dims();
    if !dead.iter().any(|&d| d) {
        return None;
    }
    let device = fwd.pre.device().without_autodiff();
    let k_aux = k_aux.clamp(1, ds);
    let mask = match &fwd.pre_host {
        Some(values) => {
            let m = topk_mask_host(values, ds, k_aux, Some((dead, b)));
            Tensor::<3>::from_data(TensorData::new(m, [n, b, ds]), &device)
        }
        None => {
            let dead_f: Vec<f32> = dead.iter().map(|&d| if d { 1.0 } else { 0.0 }).collect();
            let dead_t = Tensor::<3>::from_data(TensorData::new(dead_f, [n, 1, ds]), &device);
            let keys = fwd.pre.clone().without_autodiff();
            let keys = keys.mask_fill(dead_t.clone().equal_elem(0.0).expand([n, b, ds]), -1e30);
            topk_mask(keys, k_aux).mul(dead_t)
        }
    };
    let act = if signed {
        fwd.pre.clone()
    } else {
        burn::tensor::activation::relu(fwd.pre.clone())
    };
    let e_hat = act.mul(mask).matmul(fwd.dec.clone());
    let [_, _, di] = fwd.x_hat.dims();
    let t = target.unsqueeze_dim::<3>(0).expand([n, b, di]);
    let e = t.sub(fwd.x_hat.clone().without_autodiff());
    let den = e
        .clone()
        .square()
        .reshape([n, b * di])
        .sum_dim(1)
        .reshape([n]);
    let num = e_hat
        .sub(e)
        .square()
        .reshape([n, b * di])
        .sum_dim(1)
        .reshape([n]);
    let scale: Vec<f32> = dead
        .chunks_exact(ds)
        .map(|c| (c.iter().filter(|&&d| d).count() as f32 / k_aux as f32).min(1.0))
        .collect();
    let scale = Tensor::<1>::from_data(TensorData::new(scale, [n]), &device);
    Some(num.div(den.add_scalar(1e-30)).mul(scale))
}
