//! FastICA (Hyvärinen 1999; symmetric decorrelation, `g = tanh`) with PCA whitening, and the
//! EOG component choice MNE uses (`find_bads_eog`: components whose correlation with the EOG
//! is an outlier, z-score above 3, found iteratively). This is the offline reference the
//! multi-channel stage is measured against; it is not part of the denoising pipeline.
//!
//! Key type: [`Ica`] ([`Ica::fit`], [`Ica::sources`], [`Ica::remove`]).

use crate::rng::Rng;

/// A fitted decomposition `s = U (x - mean)`, `x ≈ mean + M s` (plus the PCA residual, which
/// [`Ica::remove`] leaves in place, as MNE does).
#[derive(Debug, Clone)]
pub struct Ica {
    mean: Vec<f64>,
    /// Unmixing, `k x n_ch`, row-major.
    unmixing: Vec<f64>,
    /// Mixing, `n_ch x k`, row-major.
    mixing: Vec<f64>,
    k: usize,
    n_ch: usize,
    /// FastICA iterations run.
    pub iterations: usize,
    /// Whether the fixed point converged (max |1 - |w_new · w_old|| < 1e-4).
    pub converged: bool,
}

/// Symmetric eigen-decomposition by cyclic Jacobi rotations: eigenvalues (descending) and
/// eigenvectors as columns of a row-major `n x n` matrix.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let mut off = 0.0;
        for i in 0..n {
            for j in i + 1..n {
                off += m[i * n + j] * m[i * n + j];
            }
        }
        let scale: f64 = (0..n).map(|i| m[i * n + i].abs()).sum::<f64>().max(1e-300);
        if off.sqrt() <= 1e-14 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let mkp = m[k * n + p];
                    let mkq = m[k * n + q];
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let mpk = m[p * n + k];
                    let mqk = m[q * n + k];
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| m[b * n + b].total_cmp(&m[a * n + a]));
    let vals = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vecs = vec![0.0; n * n];
    for (col, &i) in order.iter().enumerate() {
        for r in 0..n {
            vecs[r * n + col] = v[r * n + i];
        }
    }
    (vals, vecs)
}

/// `(W Wᵀ)^(-1/2) W` for a `k x k` matrix.
fn sym_decorrelate(w: &[f64], k: usize) -> Vec<f64> {
    let mut wwt = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            wwt[i * k + j] = (0..k).map(|l| w[i * k + l] * w[j * k + l]).sum();
        }
    }
    let (vals, vecs) = symmetric_eigen(&wwt, k);
    // E diag(1/sqrt(d)) Eᵀ W
    let mut inv_sqrt = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            inv_sqrt[i * k + j] = (0..k)
                .map(|l| vecs[i * k + l] * vecs[j * k + l] / vals[l].max(1e-300).sqrt())
                .sum();
        }
    }
    let mut out = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            out[i * k + j] = (0..k).map(|l| inv_sqrt[i * k + l] * w[l * k + j]).sum();
        }
    }
    out
}

impl Ica {
    /// Fits `k` components to `data` (channels x samples, one length). PCA keeps the `k`
    /// largest components (`k <= n_ch`); FastICA then runs at most `max_iter` fixed-point
    /// iterations from a seeded random start.
    pub fn fit(data: &[Vec<f32>], k: usize, seed: u64, max_iter: usize) -> Ica {
        let n_ch = data.len();
        let n = data[0].len();
        let k = k.clamp(1, n_ch);
        let mean: Vec<f64> = data
            .iter()
            .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64)
            .collect();
        let mut cov = vec![0.0; n_ch * n_ch];
        for i in 0..n_ch {
            for j in i..n_ch {
                let s: f64 = data[i]
                    .iter()
                    .zip(&data[j])
                    .map(|(&a, &b)| (f64::from(a) - mean[i]) * (f64::from(b) - mean[j]))
                    .sum::<f64>()
                    / n as f64;
                cov[i * n_ch + j] = s;
                cov[j * n_ch + i] = s;
            }
        }
        let (vals, vecs) = symmetric_eigen(&cov, n_ch);
        // Whitening k x n_ch and dewhitening n_ch x k.
        let mut white = vec![0.0; k * n_ch];
        let mut dewhite = vec![0.0; n_ch * k];
        for c in 0..k {
            let d = vals[c].max(1e-12);
            for r in 0..n_ch {
                white[c * n_ch + r] = vecs[r * n_ch + c] / d.sqrt();
                dewhite[r * k + c] = vecs[r * n_ch + c] * d.sqrt();
            }
        }
        let mut z = vec![0.0; k * n];
        for c in 0..k {
            for (ch, x) in data.iter().enumerate() {
                let w = white[c * n_ch + ch];
                if w == 0.0 {
                    continue;
                }
                for (zt, &xt) in z[c * n..(c + 1) * n].iter_mut().zip(x) {
                    *zt += w * (f64::from(xt) - mean[ch]);
                }
            }
        }
        let mut rng = Rng::new(seed);
        let w0: Vec<f64> = (0..k * k).map(|_| rng.normal()).collect();
        let mut w = sym_decorrelate(&w0, k);
        let mut iterations = 0;
        let mut converged = false;
        let mut y = vec![0.0; n];
        for _ in 0..max_iter {
            iterations += 1;
            let mut w_new = vec![0.0; k * k];
            for i in 0..k {
                y.fill(0.0);
                for l in 0..k {
                    let wl = w[i * k + l];
                    for (yt, &zt) in y.iter_mut().zip(&z[l * n..(l + 1) * n]) {
                        *yt += wl * zt;
                    }
                }
                let mut gp_mean = 0.0;
                for yt in y.iter_mut() {
                    let g = yt.tanh();
                    gp_mean += 1.0 - g * g;
                    *yt = g;
                }
                gp_mean /= n as f64;
                for l in 0..k {
                    let e: f64 = y
                        .iter()
                        .zip(&z[l * n..(l + 1) * n])
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
                        / n as f64;
                    w_new[i * k + l] = e - gp_mean * w[i * k + l];
                }
            }
            let w_new = sym_decorrelate(&w_new, k);
            let mut lim: f64 = 0.0;
            for i in 0..k {
                let d: f64 = (0..k).map(|l| w_new[i * k + l] * w[i * k + l]).sum();
                lim = lim.max((d.abs() - 1.0).abs());
            }
            w = w_new;
            if lim < 1e-4 {
                converged = true;
                break;
            }
        }
        let mut unmixing = vec![0.0; k * n_ch];
        for i in 0..k {
            for ch in 0..n_ch {
                unmixing[i * n_ch + ch] = (0..k).map(|l| w[i * k + l] * white[l * n_ch + ch]).sum();
            }
        }
        // W is orthogonal, so the mixing is dewhite Wᵀ.
        let mut mixing = vec![0.0; n_ch * k];
        for ch in 0..n_ch {
            for i in 0..k {
                mixing[ch * k + i] = (0..k).map(|l| dewhite[ch * k + l] * w[i * k + l]).sum();
            }
        }
        Ica {
            mean,
            unmixing,
            mixing,
            k,
            n_ch,
            iterations,
            converged,
        }
    }

    /// Number of components.
    pub fn components(&self) -> usize {
        self.k
    }

    /// Component time courses of `data` (k x samples).
    pub fn sources(&self, data: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let n = data[0].len();
        (0..self.k)
            .map(|i| {
                let mut s = vec![0.0f64; n];
                for (ch, x) in data.iter().enumerate() {
                    let u = self.unmixing[i * self.n_ch + ch];
                    for (st, &xt) in s.iter_mut().zip(x) {
                        *st += u * (f64::from(xt) - self.mean[ch]);
                    }
                }
                s.into_iter().map(|v| v as f32).collect()
            })
            .collect()
    }

    /// Subtracts the `exclude`d components' contribution from `data` in place.
    pub fn remove(&self, data: &mut [Vec<f32>], exclude: &[usize]) {
        let src = self.sources(data);
        for (ch, x) in data.iter_mut().enumerate() {
            for &i in exclude {
                let m = self.mixing[ch * self.k + i];
                for (xt, &st) in x.iter_mut().zip(&src[i]) {
                    *xt = (f64::from(*xt) - m * f64::from(st)) as f32;
                }
            }
        }
    }
}

/// Indices whose `|score|` is an outlier: z-score above `threshold`, repeated on the rest until
/// none is found (MNE's `_find_outliers`, used by `find_bads_eog` with threshold 3).
pub fn find_outliers(scores: &[f64], threshold: f64) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..scores.len()).collect();
    let mut bad = Vec::new();
    loop {
        if keep.len() < 3 {
            break;
        }
        let vals: Vec<f64> = keep.iter().map(|&i| scores[i].abs()).collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        let sd = (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / vals.len() as f64).sqrt();
        if sd <= 0.0 {
            break;
        }
        let found: Vec<usize> = keep
            .iter()
            .copied()
            .filter(|&i| (scores[i].abs() - m) / sd > threshold)
            .collect();
        if found.is_empty() {
            break;
        }
        keep.retain(|i| !found.contains(i));
        bad.extend(found);
    }
    bad.sort_unstable();
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmixes_two_known_sources() {
        // Two independent non-Gaussian sources mixed into 3 channels; ICA must recover each
        // with |corr| > 0.99.
        let n = 4000;
        let s1: Vec<f64> = (0..n).map(|t| ((t as f64) * 0.05).sin().signum()).collect();
        let mut rng = Rng::new(3);
        let s2: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let mix = [[1.0, 0.5], [0.3, 1.0], [0.8, -0.6]];
        let data: Vec<Vec<f32>> = mix
            .iter()
            .map(|m| {
                (0..n)
                    .map(|t| (m[0] * s1[t] + m[1] * s2[t]) as f32)
                    .collect()
            })
            .collect();
        let ica = Ica::fit(&data, 2, 1, 200);
        assert!(ica.converged);
        let src = ica.sources(&data);
        let corr = |a: &[f32], b: &[f64]| {
            let a: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
            let ma = a.iter().sum::<f64>() / n as f64;
            let mb = b.iter().sum::<f64>() / n as f64;
            let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
            let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
            let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
            (cov / (va * vb).sqrt()).abs()
        };
        let best1 = corr(&src[0], &s1).max(corr(&src[1], &s1));
        let best2 = corr(&src[0], &s2).max(corr(&src[1], &s2));
        assert!(best1 > 0.99 && best2 > 0.99, "{best1} {best2}");
        // Removing the component that is s1 leaves channels equal to their s2 part.
        let i1 = if corr(&src[0], &s1) > corr(&src[1], &s1) {
            0
        } else {
            1
        };
        let mut cleaned = data.clone();
        ica.remove(&mut cleaned, &[i1]);
        for (c, m) in mix.iter().enumerate() {
            let want: Vec<f64> = (0..n).map(|t| m[1] * s2[t]).collect();
            let mw = want.iter().sum::<f64>() / n as f64;
            let err: f64 = cleaned[c]
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (f64::from(a) - (b - mw)).powi(2))
                .sum::<f64>()
                / n as f64;
            // Tolerance: unmixing error of ~1e-2 on unit-variance sources.
            assert!(err.sqrt() < 0.05, "channel {c}: rms error {}", err.sqrt());
        }
    }

    #[test]
    fn outliers_found_iteratively() {
        let mut s = vec![0.1; 20];
        s[3] = 0.9;
        s[7] = -0.6;
        assert_eq!(find_outliers(&s, 3.0), vec![3, 7]);
    }
}
