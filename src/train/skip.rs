//! Fitting the gated linear path ([`crate::core::Skip`]) of a trained SAE: weighted least
//! squares of FIR taps on the SAE's residuals over the training pairs, one fit per gate.
//!
//! No burn here: given the SAE, the taps enter the output linearly, so the optimum is the
//! solution of an `L x L` normal system. Sums run over fixed chunks of windows added in order,
//! so the result does not depend on the thread count (the shipped model is reproduced bit for
//! bit).

use crate::core::{Sae, Skip};
use crate::model::SkipPath;
use rayon::prelude::*;

/// Windows per chunk of the parallel sums (fixed so the summation order is too).
const CHUNK: usize = 256;

/// Fits taps (`taps` odd, `<= d_in`) for every gate in `gates` on `inputs`/`targets`
/// (row-major `[n, d_in]`, already normalised as the model normalises). `relative_eps`:
/// `Some(eps)` weights each window by `1 / (mean(target^2) + eps)`, the relative loss the SAE
/// was trained with; `None` is plain least squares. Returns one path per gate, in order; a gate
/// no training window opens for gets zero taps.
pub fn fit_skips(
    sae: &Sae<'_>,
    inputs: &[f32],
    targets: &[f32],
    taps: usize,
    gates: &[f32],
    relative_eps: Option<f64>,
) -> Vec<SkipPath> {
    fit_by(
        sae.d_in(),
        inputs,
        targets,
        taps,
        gates,
        relative_eps,
        &|_, x, y| {
            let mut scratch = vec![0.0f32; sae.scratch_len()];
            let mut topk = vec![0usize; sae.k()];
            sae.forward_into(x, y, &mut scratch, &mut topk).is_ok()
        },
    )
}

/// [`fit_skips`] for any denoiser whose outputs on `inputs` are given (`outputs`, same shape),
/// e.g. a network run outside the core.
pub fn fit_skips_to_outputs(
    d_in: usize,
    inputs: &[f32],
    targets: &[f32],
    outputs: &[f32],
    taps: usize,
    gates: &[f32],
    relative_eps: Option<f64>,
) -> Vec<SkipPath> {
    fit_by(
        d_in,
        inputs,
        targets,
        taps,
        gates,
        relative_eps,
        &|i, _, y| match outputs.get(i * d_in..(i + 1) * d_in) {
            Some(o) => {
                y.copy_from_slice(o);
                true
            }
            None => false,
        },
    )
}

/// Writes the denoiser's output for window `i` (input `x`) into `y`; false skips the window.
type OutputFn<'f> = dyn Fn(usize, &[f32], &mut [f32]) -> bool + Sync + 'f;

/// The least squares of [`fit_skips`] with the denoiser's outputs from `output`.
fn fit_by(
    d_in: usize,
    inputs: &[f32],
    targets: &[f32],
    taps: usize,
    gates: &[f32],
    relative_eps: Option<f64>,
    output: &OutputFn<'_>,
) -> Vec<SkipPath> {
    let l = taps;
    let nb = gates.len();
    let n = inputs.len() / d_in.max(1);
    let tri = l * (l + 1) / 2;
    // Per chunk: for each gate bucket, the upper triangle of the Gram matrix and the rhs.
    let chunks: Vec<Vec<f64>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0.0f64; nb * (tri + l)];
            let mut y = vec![0.0f32; d_in];
            let mut row = vec![0.0f64; l];
            for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
                let x = &inputs[i * d_in..(i + 1) * d_in];
                let t = &targets[i * d_in..(i + 1) * d_in];
                // The smallest gate that opens for this window.
                let Some(b) = gates
                    .iter()
                    .position(|&g| Skip { taps: &[], gate: g }.opens(x))
                else {
                    continue;
                };
                if !output(i, x, &mut y) {
                    continue;
                }
                let w = relative_eps.map_or(1.0, |eps| {
                    1.0 / (t.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / d_in as f64 + eps)
                });
                let (g, r) = acc[b * (tri + l)..(b + 1) * (tri + l)].split_at_mut(tri);
                let half = l / 2;
                for s in 0..d_in {
                    for (k, rv) in row.iter_mut().enumerate() {
                        *rv = (s + k)
                            .checked_sub(half)
                            .and_then(|j| x.get(j))
                            .map_or(0.0, |&v| f64::from(v));
                    }
                    let e = w * f64::from(t[s] - y[s]);
                    let mut p = 0;
                    for (a, &ra) in row.iter().enumerate() {
                        let wa = w * ra;
                        r[a] += e * ra;
                        for (gp, &rb) in g[p..p + (l - a)].iter_mut().zip(&row[a..]) {
                            *gp += wa * rb;
                        }
                        p += l - a;
                    }
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0.0f64; nb * (tri + l)];
    for c in &chunks {
        for (t, v) in total.iter_mut().zip(c) {
            *t += v;
        }
    }
    // Gate i uses every window whose smallest opening gate is <= i.
    let mut g = vec![0.0f64; tri];
    let mut r = vec![0.0f64; l];
    let mut out = Vec::with_capacity(nb);
    for (b, &gate) in gates.iter().enumerate() {
        let (gb, rb) = total[b * (tri + l)..(b + 1) * (tri + l)].split_at(tri);
        for (a, v) in g.iter_mut().zip(gb) {
            *a += v;
        }
        for (a, v) in r.iter_mut().zip(rb) {
            *a += v;
        }
        let taps = solve_packed(&g, &r, l).unwrap_or_else(|| vec![0.0; l]);
        out.push(SkipPath {
            taps: taps.iter().map(|&v| v as f32).collect(),
            gate,
        });
    }
    out
}

/// Solves `G h = r` for symmetric positive semi-definite `G` given as its packed upper
/// triangle, with a ridge of 1e-9 of the mean diagonal (Cholesky). `None` if `G` is zero.
fn solve_packed(g: &[f64], r: &[f64], l: usize) -> Option<Vec<f64>> {
    let idx = |a: usize, b: usize| {
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        a * l - a * (a + 1) / 2 + b
    };
    let mean_diag = (0..l).map(|a| g[idx(a, a)]).sum::<f64>() / l as f64;
    if mean_diag.is_nan() || mean_diag <= 0.0 {
        return None;
    }
    let ridge = 1e-9 * mean_diag;
    // Cholesky: G = U^T U, U upper triangular (dense l x l is small).
    let mut u = vec![0.0f64; l * l];
    for i in 0..l {
        for j in i..l {
            let mut s = g[idx(i, j)] + if i == j { ridge } else { 0.0 };
            for k in 0..i {
                s -= u[k * l + i] * u[k * l + j];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                u[i * l + i] = s.sqrt();
            } else {
                u[i * l + j] = s / u[i * l + i];
            }
        }
    }
    // U^T z = r, then U h = z.
    let mut z = vec![0.0f64; l];
    for i in 0..l {
        let s: f64 = (0..i).map(|k| u[k * l + i] * z[k]).sum();
        z[i] = (r[i] - s) / u[i * l + i];
    }
    let mut h = vec![0.0f64; l];
    for i in (0..l).rev() {
        let s: f64 = (i + 1..l).map(|k| u[i * l + k] * h[k]).sum();
        h[i] = (z[i] - s) / u[i * l + i];
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_packed_inverts_a_known_system() {
        // G = [[4, 2], [2, 3]], h = [1, -2] -> r = [0, -4].
        let h = solve_packed(&[4.0, 2.0, 3.0], &[0.0, -4.0], 2).unwrap();
        assert!(
            (h[0] - 1.0).abs() < 1e-6 && (h[1] + 2.0).abs() < 1e-6,
            "{h:?}"
        );
        assert!(solve_packed(&[0.0, 0.0, 0.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn a_known_filter_is_recovered_from_given_outputs() {
        // Smooth windows (the gate opens), outputs zero, targets = a 3-tap FIR of the input:
        // the fit must return those taps for the open gate and none for a gate below every
        // window's ratio.
        let d = 32;
        let mut rng = crate::rng::Rng::new(9);
        let mut inputs = vec![0f32; 40 * d];
        for w in inputs.chunks_exact_mut(d) {
            let (a, f) = (
                rng.normal() as f32,
                0.1 + 0.2 * rng.uniform(0.0, 1.0) as f32,
            );
            for (i, v) in w.iter_mut().enumerate() {
                *v = a * (f * i as f32).sin() + 0.3;
            }
        }
        let h = [0.25f32, 0.5, -0.125];
        let mut targets = vec![0f32; inputs.len()];
        for (x, t) in inputs.chunks_exact(d).zip(targets.chunks_exact_mut(d)) {
            for (i, ti) in t.iter_mut().enumerate() {
                for (l, &hl) in h.iter().enumerate() {
                    if let Some(&v) = (i + l).checked_sub(1).and_then(|j| x.get(j)) {
                        *ti += hl * v;
                    }
                }
            }
        }
        let outputs = vec![0f32; inputs.len()];
        let fits =
            fit_skips_to_outputs(d, &inputs, &targets, &outputs, 3, &[1e-6, 0.5], Some(1e-3));
        assert_eq!(fits.len(), 2);
        assert!(fits[0].taps.iter().all(|&v| v == 0.0), "{:?}", fits[0].taps);
        for (a, b) in fits[1].taps.iter().zip(h) {
            assert!((a - b).abs() < 1e-4, "{:?}", fits[1].taps);
        }
    }
}
