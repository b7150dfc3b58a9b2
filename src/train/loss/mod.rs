//! Loss terms: reconstruction ([`mse_per_sae`]), the MFR penalty ([`mfr`]) and AuxK
//! (in [`crate::train::auxk`]).

pub mod mfr;

use burn::tensor::Tensor;

/// Mean squared error of each SAE, `[N]`: mean over batch and window of `(x_hat - target)^2`.
///
/// # Shapes
/// - x_hat: `[N, B, d_in]`, target: `[B, d_in]`.
pub fn mse_per_sae(x_hat: Tensor<3>, target: Tensor<2>) -> Tensor<1> {
    let [n, b, d] = x_hat.dims();
    let t = target.unsqueeze_dim::<3>(0).expand([n, b, d]);
    x_hat
        .sub(t)
        .square()
        .reshape([n, b * d])
        .mean_dim(1)
        .reshape([n])
}

/// Default of `TrainConfig::relative_eps`: added to a window's mean squared target before
/// dividing by it, so a silent window cannot dominate the relative loss (targets are z-scored
/// by the noisy input, so real windows have energy 0.01-1).
pub const RELATIVE_EPS: f64 = 1e-3;

/// Relative squared error of each SAE, `[N]`: the mean over windows of
/// `mean_d (x_hat - t)^2 / (mean_d t^2 + eps)`, i.e. each window's squared RRMSE (for a small
/// `eps`; a large one moves it towards plain MSE / eps).
/// Plain MSE on windows z-scored by the *noisy* input weights a window by its clean energy,
/// so low-SNR windows (small clean targets) hardly count; this weights every window alike,
/// as the RRMSE_t benchmark metric does.
pub fn relative_mse_per_sae(x_hat: Tensor<3>, target: Tensor<2>, eps: f64) -> Tensor<1> {
    let energy = target.clone().square().mean_dim(1);
    relative_mse_per_sae_over(x_hat, target, energy, eps)
}

/// [`relative_mse_per_sae`] with each window's mean square given (`[B, 1]`) instead of taken
/// from the target: a residual SAE's target is a correction, its loss relative to the clean
/// window.
pub fn relative_mse_per_sae_over(
    x_hat: Tensor<3>,
    target: Tensor<2>,
    energy: Tensor<2>,
    eps: f64,
) -> Tensor<1> {
    let [n, b, d] = x_hat.dims();
    let w = energy
        .add_scalar(eps as f32)
        .recip()
        .unsqueeze_dim::<3>(0)
        .expand([n, b, d]);
    let t = target.unsqueeze_dim::<3>(0).expand([n, b, d]);
    x_hat
        .sub(t)
        .square()
        .mul(w)
        .reshape([n, b * d])
        .mean_dim(1)
        .reshape([n])
}

/// Fraction of variance unexplained of each SAE, `[N]`: squared error over the target's
/// squared deviation from its batch mean.
pub fn fvu_per_sae(x_hat: Tensor<3>, target: Tensor<2>) -> Tensor<1> {
    let [n, b, d] = x_hat.dims();
    let centred = target.clone().sub(target.clone().mean_dim(0));
    let denom = centred.square().sum().add_scalar(1e-30);
    let t = target.unsqueeze_dim::<3>(0).expand([n, b, d]);
    let err = x_hat
        .sub(t)
        .square()
        .reshape([n, b * d])
        .sum_dim(1)
        .reshape([n]);
    err.div(denom.expand([n]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn relative_mse_is_the_mean_of_per_window_normalised_errors() {
        let dev = Device::flex();
        // One SAE, two windows of 2 samples: a loud and a quiet target with the same error.
        let x_hat = Tensor::<3>::from_data(
            TensorData::new(vec![11.0f32, 0.0, 1.1, 0.0], [1, 2, 2]),
            &dev,
        );
        let t = Tensor::<2>::from_data(TensorData::new(vec![10.0f32, 0.0, 0.1, 0.0], [2, 2]), &dev);
        let rel = relative_mse_per_sae(x_hat.clone(), t.clone(), RELATIVE_EPS)
            .try_into_vec_as::<f32>()
            .unwrap();
        let mse = mse_per_sae(x_hat, t).try_into_vec_as::<f32>().unwrap();
        let e = RELATIVE_EPS;
        // Window errors: 1 / 2 and 1 / 2 (mean over d); energies 50 and 0.005.
        let want = 0.5 * (0.5 / (50.0 + e) + 0.5 / (0.005 + e));
        assert!(
            (rel[0] as f64 - want).abs() < 1e-4 * want,
            "{} vs {want}",
            rel[0]
        );
        // Plain MSE weighs both windows alike in absolute terms: (1 + 1) / 4.
        assert!((mse[0] - 0.5).abs() < 1e-6, "{}", mse[0]);
    }
}
