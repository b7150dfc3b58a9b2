//! TopK selection as a 0/1 mask, without a dense scatter.
//!
//! The k-th largest key of each row is found with `topk`, then the mask is a comparison against
//! it. Ties at the threshold are broken towards the lower index (a cumulative count of the tied
//! entries), exactly like the core's TopK, so every backend and the core pick the same latents
//! from the same pre-activations. The mask is computed on plain tensors: multiplying an
//! autodiff tensor by it passes gradients to the selected entries only.

use burn::tensor::Tensor;

/// 0/1 mask `[.., n]` selecting exactly `min(k, n)` entries of each last-axis row of `keys`:
/// the largest, ties to the lower index. `keys` must not carry autodiff and must be finite.
pub fn topk_mask<const D: usize>(keys: Tensor<D>, k: usize) -> Tensor<D> {
    let dims = keys.dims();
    let n = dims[D - 1];
    if k >= n {
        return keys.ones_like();
    }
    let kth = keys.clone().topk(k, D - 1).min_dim(D - 1).expand(dims);
    let greater = keys.clone().greater(kth.clone());
    let tied = keys.equal(kth).float();
    // How many of the k slots the strictly greater entries left for tied ones.
    let free = greater
        .clone()
        .float()
        .sum_dim(D - 1)
        .neg()
        .add_scalar(k as f32);
    let tie_rank = tied.clone().cumsum(D - 1);
    let take_tied = tie_rank.lower_equal(free.expand(dims)).float().mul(tied);
    greater.float().add(take_tied)
}
