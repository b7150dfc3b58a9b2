//! Adam written out on tensors (elementwise, so each SAE of the stack has its own state),
//! per-SAE gradient-norm clipping and the decoder-row constraint.
//!
//! Hand-written rather than burn-optim's because the constraint of a unit-norm decoder needs
//! the gradient edited before the step and the weights projected after it, and because the
//! state must be checkpointed bit for bit.

use burn::tensor::Tensor;

/// Adam moments and step count for a list of stacked parameters.
#[derive(Clone, Debug)]
pub struct Adam {
    /// First moments, one per parameter.
    pub m: Vec<Tensor<3>>,
    /// Second moments, one per parameter.
    pub v: Vec<Tensor<3>>,
    /// Steps taken so far.
    pub t: u64,
}

/// Adam hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamParams {
    /// Learning rate of this step.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
}

impl Adam {
    /// Zero state for `params`.
    pub fn new(params: &[Tensor<3>]) -> Self {
        Self {
            m: params.iter().map(|p| p.zeros_like()).collect(),
            v: params.iter().map(|p| p.zeros_like()).collect(),
            t: 0,
        }
    }

    /// One Adam step (PyTorch's formulation with bias correction); returns the new parameters.
    pub fn step(
        &mut self,
        params: Vec<Tensor<3>>,
        grads: Vec<Tensor<3>>,
        h: AdamParams,
    ) -> Vec<Tensor<3>> {
        self.step_scaled(params, grads, h, &[])
    }

    /// [`Adam::step`] with parameter `i`'s learning rate multiplied by `lr_scale[i]` (1 past
    /// the slice's end): parameter groups that learn at different rates.
    pub fn step_scaled(
        &mut self,
        params: Vec<Tensor<3>>,
        grads: Vec<Tensor<3>>,
        h: AdamParams,
        lr_scale: &[f64],
    ) -> Vec<Tensor<3>> {
        self.t += 1;
        let bc1 = 1.0 - h.beta1.powi(self.t as i32);
        let bc2 = 1.0 - h.beta2.powi(self.t as i32);
        let step = (h.lr / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        params
            .into_iter()
            .zip(grads)
            .enumerate()
            .map(|(i, (p, g))| {
                let m = self.m[i]
                    .clone()
                    .mul_scalar(h.beta1 as f32)
                    .add(g.clone().mul_scalar((1.0 - h.beta1) as f32));
                let v = self.v[i]
                    .clone()
                    .mul_scalar(h.beta2 as f32)
                    .add(g.square().mul_scalar((1.0 - h.beta2) as f32));
                let denom = v
                    .clone()
                    .sqrt()
                    .mul_scalar(inv_sqrt_bc2)
                    .add_scalar(h.eps as f32);
                let scale = lr_scale.get(i).map_or(1.0, |&f| f as f32);
                let p = p.sub(m.clone().div(denom).mul_scalar(step * scale));
                self.m[i] = m;
                self.v[i] = v;
                p
            })
            .collect()
    }
}

/// Squared gradient norm of each SAE, `[N, 1, 1]`, over all its parameters.
pub fn sq_norm_per_sae(grads: &[Tensor<3>]) -> Tensor<3> {
    grads
        .iter()
        .map(|g| g.clone().square().sum_dim(2).sum_dim(1))
        .reduce(|a, b| a.add(b))
        .expect("at least one parameter")
}

/// Scales each SAE's gradients so that its global norm is at most `max_norm` (0: no clipping).
pub fn clip_per_sae(grads: Vec<Tensor<3>>, max_norm: f64) -> Vec<Tensor<3>> {
    if max_norm <= 0.0 {
        return grads;
    }
    let norm = sq_norm_per_sae(&grads).sqrt();
    let scale = norm
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm as f32)
        .clamp_max(1.0);
    grads.into_iter().map(|g| g.mul(scale.clone())).collect()
}

/// Removes from the decoder gradient the component parallel to each (unit-norm) decoder row,
/// so a step moves atoms along the unit sphere to first order.
pub fn remove_parallel(grad: Tensor<3>, dec: Tensor<3>) -> Tensor<3> {
    let along = grad.clone().mul(dec.clone()).sum_dim(2);
    grad.sub(dec.mul(along))
}
