//! TopK selection as a 0/1 mask, without a dense scatter: on the device ([`topk_mask`]) or on
//! the host ([`topk_mask_host`], faster on CPU backends, whose sort-based `topk` is O(n log n)).
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

/// Host version of [`topk_mask`] over row-major `[rows, cols]` values, same rule (largest,
/// ties to the lower index; NaN ranks below every number). With `allowed = Some((flags,
/// rows_per_group))`, row `r` may only select columns `c` with
/// `flags[(r / rows_per_group) * cols + c]`, and selects fewer than `k` when fewer are allowed
/// (AuxK over dead latents). O(cols) per row by `select_nth_unstable_by`.
pub fn topk_mask_host(
    values: &[f32],
    cols: usize,
    k: usize,
    allowed: Option<(&[bool], usize)>,
) -> Vec<f32> {
    let mut mask = vec![0f32; values.len()];
    let mut buf: Vec<f32> = Vec::with_capacity(cols);
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    let all = vec![true; cols];
    for (r, (row, out)) in values
        .chunks_exact(cols)
        .zip(mask.chunks_exact_mut(cols))
        .enumerate()
    {
        let ok: &[bool] = match allowed {
            Some((flags, per)) => &flags[(r / per) * cols..(r / per + 1) * cols],
            None => &all,
        };
        buf.clear();
        buf.extend(row.iter().zip(ok).filter(|p| *p.1).map(|(&v, _)| key(v)));
        if k == 0 || buf.is_empty() {
            continue;
        }
        if buf.len() <= k {
            for (o, &a) in out.iter_mut().zip(ok) {
                *o = if a { 1.0 } else { 0.0 };
            }
            continue;
        }
        // The k-th largest key is the threshold; then a scan in index order takes everything
        // above it and the first tied entries, which is the lower-index tie rule.
        // partial_cmp, not total_cmp: -0.0 and 0.0 tie, as in the core.
        let (_, kth, _) = buf.select_nth_unstable_by(k - 1, |a, b| {
            b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal)
        });
        let t = *kth;
        let above = row
            .iter()
            .zip(ok)
            .filter(|&(&v, &a)| a && key(v) > t)
            .count();
        let mut ties = k - above;
        for ((o, &v), &a) in out.iter_mut().zip(row).zip(ok) {
            if !a {
                continue;
            }
            let v = key(v);
            if v > t {
                *o = 1.0;
            } else if v == t && ties > 0 {
                *o = 1.0;
                ties -= 1;
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Reference: sort indices by (value desc, index asc) and take the first k.
    fn reference(row: &[f32], k: usize, ok: &[bool]) -> Vec<f32> {
        let mut idx: Vec<usize> = (0..row.len()).filter(|&j| ok[j]).collect();
        idx.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
        let mut m = vec![0f32; row.len()];
        for &j in idx.iter().take(k) {
            m[j] = 1.0;
        }
        m
    }

    #[test]
    fn host_mask_matches_sorting_reference_with_ties() {
        let mut rng = Rng::new(4);
        for trial in 0..300 {
            let cols = 1 + trial % 13;
            let k = trial % 7;
            // Few distinct values: many ties.
            let row: Vec<f32> = (0..cols).map(|_| rng.below(4) as f32 - 1.0).collect();
            let ok: Vec<bool> = (0..cols).map(|_| rng.below(3) != 0).collect();
            let got = topk_mask_host(&row, cols, k, Some((&ok, 1)));
            assert_eq!(got, reference(&row, k, &ok), "trial {trial}");
            let all = vec![true; cols];
            assert_eq!(
                topk_mask_host(&row, cols, k, None),
                reference(&row, k, &all)
            );
        }
    }
}
