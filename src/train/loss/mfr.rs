//! Mutual Feature Regularization: `mean_{i<j} (1 - MMCS(D_i, D_j))` over the decoder
//! dictionaries of the N SAEs.
//!
//! The cosine matrices are computed once per step without autodiff; the matching (max in both
//! directions, or the Hungarian one-to-one assignment) is taken from them, and the penalty is
//! then re-evaluated through the matched entries only, with autodiff. That gives exactly the
//! gradient of the max/assignment objective (both are piecewise linear in the cosines) while
//! the big `[P, d_sae, d_sae]` product never enters the backward pass.

use crate::train::hungarian::assign_max;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// All pairs `(i, j)` with `i < j < n`, in lexicographic order.
pub fn pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect()
}

fn int1(v: impl Iterator<Item = usize>, device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = v.map(|x| x as i64).collect();
    let n = v.len();
    Tensor::<1, Int>::from_data(TensorData::new(v, [n]), device)
}

/// The two sides `(D_i, D_j)` of every pair, each `[P, d_sae, d_in]`.
fn sides(dn: Tensor<3>, pairs: &[(usize, usize)]) -> (Tensor<3>, Tensor<3>) {
    let device = dn.device();
    let pi = int1(pairs.iter().map(|p| p.0), &device);
    let pj = int1(pairs.iter().map(|p| p.1), &device);
    (dn.clone().select(0, pi), dn.select(0, pj))
}

/// Cosine matrices `[P, d_sae, d_sae]` between the (row-normalised, plain) dictionaries of each
/// pair: entry `[p, r, c]` is `<D_i[r], D_j[c]>`.
pub fn cosines(dn: Tensor<3>, pairs: &[(usize, usize)]) -> Tensor<3> {
    let (a, b) = sides(dn, pairs);
    a.matmul(b.swap_dims(1, 2))
}

/// Which atoms are compared with which, per pair.
// Tensors are cheap handles and one `Matching` exists per step: boxing a variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Matching {
    /// Each atom of `D_i` to its most similar atom of `D_j` (`a_to_b`, `[P, d_sae, 1]`) and
    /// vice versa (`b_to_a`).
    Max {
        /// For each row of `D_i`, the index of the best row of `D_j`.
        a_to_b: Tensor<3, Int>,
        /// For each row of `D_j`, the index of the best row of `D_i`.
        b_to_a: Tensor<3, Int>,
    },
    /// A one-to-one assignment of `D_i`'s atoms to `D_j`'s (`[P, d_sae, 1]`).
    OneToOne {
        /// For each row of `D_i`, its assigned row of `D_j`.
        a_to_b: Tensor<3, Int>,
    },
}

/// Max matching in both directions from the cosine matrices (ties: lowest index).
pub fn max_matching(cos: Tensor<3>) -> Matching {
    let [p, s, _] = cos.dims();
    let a_to_b = cos.clone().argmax(2);
    let b_to_a = cos.argmax(1).reshape([p, s, 1]);
    Matching::Max { a_to_b, b_to_a }
}

/// Hungarian matching of each pair, solved on the host from the cosine matrices.
pub fn hungarian_matching(cos: Tensor<3>) -> Matching {
    let [p, s, _] = cos.dims();
    let device = cos.device();
    let host = cos
        .try_into_vec_as::<f32>()
        .expect("reading cosine matrices back from the device");
    let assign: Vec<usize> = host
        .chunks_exact(s * s)
        .flat_map(|m| assign_max(m, s, s))
        .collect();
    let v: Vec<i64> = assign.into_iter().map(|x| x as i64).collect();
    let a_to_b = Tensor::<3, Int>::from_data(TensorData::new(v, [p, s, 1]), &device);
    Matching::OneToOne { a_to_b }
}

/// Row indices into the flattened `[N * d_sae, d_in]` dictionaries: `base[p] * s + idx[p, r]`.
fn flat_rows(idx: Tensor<3, Int>, base: &[usize], s: usize) -> Tensor<1, Int> {
    let p = base.len();
    let device = idx.device();
    let offs = int1(
        base.iter().flat_map(|&b| std::iter::repeat_n(b * s, s)),
        &device,
    );
    idx.reshape([p * s]).add(offs)
}

/// Row indices `base[p] * s + r` for every pair `p` and row `r`.
fn own_rows(base: &[usize], s: usize, device: &Device) -> Tensor<1, Int> {
    int1(
        base.iter().flat_map(|&b| (0..s).map(move |r| b * s + r)),
        device,
    )
}

/// MMCS of every pair `[P]`, evaluated through the matched atoms of `dn` (row-normalised
/// dictionaries `[N, d_sae, d_in]`, may carry autodiff).
///
/// Matched rows are picked from the flattened dictionaries with 1-D row selects (copies of
/// whole rows, and row scatter-adds in the backward pass), which CPU backends do far faster
/// than a gather with a broadcast index.
pub fn matched_mmcs(dn: Tensor<3>, pairs: &[(usize, usize)], matching: &Matching) -> Tensor<1> {
    let p = pairs.len();
    let [n, s, d] = dn.dims();
    let device = dn.device();
    let flat = dn.reshape([n * s, d]);
    let first: Vec<usize> = pairs.iter().map(|q| q.0).collect();
    let second: Vec<usize> = pairs.iter().map(|q| q.1).collect();
    let dot = |rows: Tensor<1, Int>, other: Tensor<1, Int>| {
        flat.clone()
            .select(0, rows)
            .mul(flat.clone().select(0, other))
            .sum_dim(1)
            .reshape([p, s])
            .mean_dim(1)
            .reshape([p])
    };
    match matching {
        Matching::Max { a_to_b, b_to_a } => {
            let s_ab = dot(
                own_rows(&first, s, &device),
                flat_rows(a_to_b.clone(), &second, s),
            );
            let s_ba = dot(
                own_rows(&second, s, &device),
                flat_rows(b_to_a.clone(), &first, s),
            );
            s_ab.add(s_ba).mul_scalar(0.5)
        }
        Matching::OneToOne { a_to_b } => dot(
            own_rows(&first, s, &device),
            flat_rows(a_to_b.clone(), &second, s),
        ),
    }
}

/// The MFR penalty `mean_p (1 - mmcs_p)`, shape `[1]`.
pub fn penalty(mmcs: Tensor<1>) -> Tensor<1> {
    mmcs.neg().add_scalar(1.0).mean()
}

/// Host MMCS of dictionary `a` (`[na, dim]`) to `b` (`[nb, dim]`): for each row of `a`, the
/// max cosine to any row of `b`. Returns the per-row maxima (f64 arithmetic).
pub fn max_cosines_host(a: &[f32], b: &[f32], dim: usize) -> Vec<f64> {
    let unit = |m: &[f32]| -> Vec<Vec<f64>> {
        m.chunks_exact(dim)
            .map(|r| {
                let n = r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
                r.iter().map(|&x| x as f64 / n.max(1e-30)).collect()
            })
            .collect()
    };
    let (ua, ub) = (unit(a), unit(b));
    ua.iter()
        .map(|ra| {
            ub.iter()
                .map(|rb| ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f64>())
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_list() {
        assert_eq!(pairs(3), vec![(0, 1), (0, 2), (1, 2)]);
        assert!(pairs(1).is_empty());
    }
}
