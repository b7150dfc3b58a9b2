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
