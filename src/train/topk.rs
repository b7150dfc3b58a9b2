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
/// (AuxK over dead latents).
pub fn topk_mask_host(
    values: &[f32],
    cols: usize,
    k: usize,
    allowed: Option<(&[bool], usize)>,
) -> Vec<f32> {
    let mut mask = vec![0f32; values.len()];
    let mut buf: Vec<u32> = Vec::with_capacity(cols);
    let mut sel: Vec<u32> = Vec::with_capacity(k.min(cols));
    for (r, (row, out)) in values
        .chunks_exact(cols)
        .zip(mask.chunks_exact_mut(cols))
        .enumerate()
    {
        let ok = allowed.map(|(flags, per)| &flags[(r / per) * cols..(r / per + 1) * cols]);
        sel.clear();
        topk_row(row, ok, k, &mut buf, &mut sel);
        for &j in &sel {
            out[j as usize] = 1.0;
        }
    }
    mask
}

/// Order-preserving map of an f32 to a u32 key: larger float, larger key; -0.0 and 0.0 map
/// to the same key (they tie, as in the core) and NaN below every number. Integer compares
/// make the selection several times faster than `partial_cmp` on floats.
#[inline]
fn sort_key(v: f32) -> u32 {
    if v.is_nan() {
        return 0;
    }
    let bits = (v + 0.0).to_bits();
    // Positive: set the sign bit; negative: flip all bits (reverses their order).
    let k = if bits >> 31 == 0 {
        bits | 0x8000_0000
    } else {
        !bits
    };
    k.max(1)
}

/// Appends to `out` the indices (increasing) of the `min(k, allowed)` largest entries of `row`
/// among the `allowed` ones (all when `None`), by the rule of [`topk_mask`]. O(len) by
/// `select_nth_unstable`; `buf` is scratch.
pub fn topk_row(
    row: &[f32],
    allowed: Option<&[bool]>,
    k: usize,
    buf: &mut Vec<u32>,
    out: &mut Vec<u32>,
) {
    let ok = |c: usize| allowed.is_none_or(|a| a[c]);
    buf.clear();
    match allowed {
        Some(a) => buf.extend(
            row.iter()
                .zip(a)
                .filter(|p| *p.1)
                .map(|(&v, _)| sort_key(v)),
        ),
        None => buf.extend(row.iter().map(|&v| sort_key(v))),
    }
    if k == 0 || buf.is_empty() {
        return;
    }
    if buf.len() <= k {
        out.extend((0..row.len()).filter(|&c| ok(c)).map(|c| c as u32));
        return;
    }
    // The k-th largest key is the threshold; then a scan in index order takes everything
    // above it and the first tied entries, which is the lower-index tie rule.
    let at = buf.len() - k;
    let (_, kth, _) = buf.select_nth_unstable(at);
    let t = *kth;
    let above = (0..row.len())
        .filter(|&c| ok(c) && sort_key(row[c]) > t)
        .count();
    let mut ties = k - above;
    for (c, &v) in row.iter().enumerate() {
        if !ok(c) {
            continue;
        }
        let v = sort_key(v);
        if v > t || (v == t && ties > 0) {
            if v == t {
                ties -= 1;
            }
            out.push(c as u32);
        }
    }
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
