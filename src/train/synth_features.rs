//! The MFR paper's known-feature experiment (behind `mfr-eeg synth-features`).
//!
//! Data with known ground truth (Marks et al. 2024, section 4): 512 unit-norm features in 256
//! dimensions, split into 12 correlated groups. Each data point picks one group uniformly,
//! then draws 32 distinct features of that group without replacement, feature `j` of the
//! group (in a fixed random order) with weight `decay^j` (decaying probabilities); each active
//! feature gets a coefficient uniform in [0, 1). The support is drawn per data point.
//!
//! Two SAEs (d_sae 512, k 32) are trained on it for every alpha of a log-scale sweep (alpha 0
//! is the independent baseline) with the same budget and learning rate, over several seeds,
//! and the table reports, per arm, mean +- std over seeds x SAEs of: MMCS to the true features
//! (mean over true features of the best cosine to any decoder atom), fraction recovered
//! (best cosine > 0.9), validation FVU and dead fraction.

use super::TrainError;
use super::backend::BackendKind;
use super::config::{MmcsKind, TrainConfig};
use super::data::Dataset;
use super::loss::mfr::max_cosines_host;
use super::trainer::GradPath;
use crate::rng::Rng;
use std::path::Path;

/// The generator's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    /// Number of true features.
    pub n_features: usize,
    /// Dimension of the data.
    pub dim: usize,
    /// Number of correlated groups.
    pub groups: usize,
    /// Active features per data point (all from one group).
    pub active: usize,
    /// Geometric decay of the selection weight within a group.
    pub decay: f64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            n_features: 512,
            dim: 256,
            groups: 12,
            active: 32,
            decay: 0.95,
        }
    }
}

/// Ground-truth features (`[n_features, dim]`, unit rows) and their group partition.
#[derive(Clone, Debug)]
pub struct SynthWorld {
    /// The spec used.
    pub spec: SynthSpec,
    /// True features, row-major, unit norm.
    pub features: Vec<f32>,
    /// Feature indices of each group, in decaying-probability order.
    pub groups: Vec<Vec<usize>>,
}

impl SynthWorld {
    /// Draws the features and groups from `seed`.
    pub fn new(spec: SynthSpec, seed: u64) -> Result<Self, TrainError> {
        let min_group = spec.n_features / spec.groups.max(1);
        if spec.groups == 0 || spec.active == 0 || spec.active > min_group {
            return Err(TrainError::Config(format!(
                "{} active features cannot come from groups of {min_group}",
                spec.active
            )));
        }
        let mut rng = Rng::derive(seed, 0xFEA7);
        let mut features = vec![0f32; spec.n_features * spec.dim];
        for row in features.chunks_exact_mut(spec.dim) {
            let g: Vec<f64> = (0..spec.dim).map(|_| rng.normal()).collect();
            let n = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            for (o, v) in row.iter_mut().zip(g) {
                *o = (v / n) as f32;
            }
        }
        let mut order: Vec<usize> = (0..spec.n_features).collect();
        rng.shuffle(&mut order);
        let groups = (0..spec.groups)
            .map(|g| {
                let a = g * spec.n_features / spec.groups;
                let b = (g + 1) * spec.n_features / spec.groups;
                order[a..b].to_vec()
            })
            .collect();
        Ok(Self {
            spec,
            features,
            groups,
        })
    }

    /// `n` data points drawn with `seed` (row-major `[n, dim]`).
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f32> {
        let d = self.spec.dim;
        let mut rng = Rng::derive(seed, 0xDA7A);
        let mut out = vec![0f32; n * d];
        let mut weights = Vec::new();
        for row in out.chunks_exact_mut(d) {
            let group = &self.groups[rng.below(self.groups.len() as u64) as usize];
            weights.clear();
            weights.extend((0..group.len()).map(|j| self.spec.decay.powi(j as i32)));
            for _ in 0..self.spec.active {
                // Weighted draw without replacement: chosen weights are zeroed.
                let total: f64 = weights.iter().sum();
                let mut u = rng.next_f64() * total;
                let mut pick = weights.len() - 1;
                for (j, &w) in weights.iter().enumerate() {
                    if w > 0.0 && u < w {
                        pick = j;
                        break;
                    }
                    u -= w;
                }
                while weights[pick] == 0.0 {
                    pick -= 1; // rounding fell past the end: take the last live one
                }
                weights[pick] = 0.0;
                let c = rng.next_f32();
                let f = &self.features[group[pick] * d..(group[pick] + 1) * d];
                for (o, &v) in row.iter_mut().zip(f) {
                    *o += c * v;
                }
            }
        }
        out
    }
}

/// Scores of one trained SAE against the truth.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SaeScore {
    /// Mean over true features of the best cosine to any decoder atom.
    pub mmcs_true: f64,
    /// Fraction of true features with best cosine > 0.9.
    pub recovered: f64,
    /// Validation FVU.
    pub fvu: f64,
    /// Fraction of dead latents at the end.
    pub dead: f64,
}

/// Scores a decoder (`[d_sae, dim]`) against the world's true features.
pub fn score(world: &SynthWorld, w_dec: &[f32]) -> (f64, f64) {
    let best = max_cosines_host(&world.features, w_dec, world.spec.dim);
    let mean = best.iter().sum::<f64>() / best.len() as f64;
    let rec = best.iter().filter(|&&c| c > 0.9).count() as f64 / best.len() as f64;
    (mean, rec)
}

/// One sweep of the known-feature experiment. [`Default`] holds the defaults of
/// `mfr-eeg synth-features`.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthOptions {
    /// MFR weights to compare (0 = independent SAEs).
    pub alphas: Vec<f64>,
    /// Seeds `0..seeds` (each re-draws features, data and initialisation).
    pub seeds: u64,
    /// Optimiser steps per run.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate (the same for every arm).
    pub lr: f64,
    /// Training data points per seed.
    pub train_points: usize,
    /// Validation data points per seed.
    pub val_points: usize,
    /// SAEs trained together.
    pub n_saes: usize,
    /// Latents per SAE.
    pub d_sae: usize,
    /// Latents kept.
    pub k: usize,
    /// MMCS variant of the penalty.
    pub mmcs: MmcsKind,
    /// MFR warm-up steps.
    pub mfr_warmup: usize,
    /// Backend.
    pub backend: BackendKind,
    /// Gradient computation (`None`: the backend's default).
    pub grad_path: Option<GradPath>,
    /// Active features per data point (all from one group).
    pub active: usize,
    /// Geometric decay of the selection weight within a group.
    pub decay: f64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        let (train, spec) = (TrainConfig::default(), SynthSpec::default());
        Self {
            alphas: vec![0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
            seeds: 3,
            steps: 500,
            batch_size: train.batch_size,
            lr: 5e-3,
            train_points: 16384,
            val_points: 2048,
            n_saes: train.n_saes,
            d_sae: train.d_sae,
            k: 32,
            mmcs: MmcsKind::Max,
            mfr_warmup: 50,
            backend: BackendKind::Flex,
            grad_path: None,
            active: spec.active,
            decay: spec.decay,
        }
    }
}

/// One trained SAE's scores, reported by [`sweep`] as soon as its run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunScore {
    /// Seed of the run.
    pub seed: u64,
    /// Its MFR weight.
    pub alpha: f64,
    /// Which of the SAEs trained together.
    pub sae: usize,
    /// The scores.
    pub score: SaeScore,
}

/// Aggregated result of one alpha.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ArmResult {
    /// The MFR weight.
    pub alpha: f64,
    /// One score per (seed, SAE).
    pub scores: Vec<SaeScore>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Runs the sweep and returns one result per alpha; `on_run` hears each SAE's scores.
pub fn sweep(
    args: &SynthOptions,
    mut on_run: impl FnMut(RunScore),
) -> Result<Vec<ArmResult>, TrainError> {
    let spec = SynthSpec {
        active: args.active,
        decay: args.decay,
        ..SynthSpec::default()
    };
    let mut arms: Vec<ArmResult> = args
        .alphas
        .iter()
        .map(|&alpha| ArmResult {
            alpha,
            scores: Vec::new(),
        })
        .collect();
    for seed in 0..args.seeds {
        let world = SynthWorld::new(spec.clone(), seed)?;
        let train_set =
            Dataset::reconstruction(world.sample(args.train_points, seed * 2), spec.dim);
        let val_set =
            Dataset::reconstruction(world.sample(args.val_points, seed * 2 + 1), spec.dim);
        for arm in arms.iter_mut() {
            let cfg = TrainConfig::new(spec.dim, args.d_sae, args.k)
                .with_n_saes(args.n_saes)
                .with_steps(args.steps)
                .with_batch_size(args.batch_size)
                .with_lr(args.lr)
                .with_lr_warmup_steps(args.steps / 20)
                .with_mfr_alpha(arm.alpha)
                .with_mfr_warmup(args.mfr_warmup)
                .with_mmcs(args.mmcs)
                .with_dead_steps((args.steps / 10).max(10))
                .with_log_every(args.steps.max(1))
                .with_seed(seed);
            train_set.validate("training set")?;
            val_set.validate("validation set")?;
            let opts = super::trainer::TrainOptions {
                grad_path: args.grad_path,
                ..Default::default()
            };
            let out = super::trainer::train_with(
                &cfg,
                &mut &train_set,
                &mut &val_set,
                args.backend,
                opts,
            )?;
            let last = out.metrics.last();
            for (i, sae) in out.saes.iter().enumerate() {
                let (mmcs_true, recovered) = score(&world, &sae.w_dec);
                let s = SaeScore {
                    mmcs_true,
                    recovered,
                    fvu: out.val_fvu[i] as f64,
                    dead: last.map(|m| m.dead_frac[i] as f64).unwrap_or(0.0),
                };
                on_run(RunScore {
                    seed,
                    alpha: arm.alpha,
                    sae: i,
                    score: s,
                });
                arm.scores.push(s);
            }
        }
    }
    Ok(arms)
}

/// The markdown table of a sweep.
pub fn table(arms: &[ArmResult]) -> String {
    let mut s = String::from(
        "| alpha | MMCS to true features | recovered (cos > 0.9) | val FVU | dead fraction |\n\
         |---|---|---|---|---|\n",
    );
    for a in arms {
        let col = |f: fn(&SaeScore) -> f64| {
            let v: Vec<f64> = a.scores.iter().map(f).collect();
            let (m, sd) = mean_std(&v);
            format!("{m:.4} ± {sd:.4}")
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            if a.alpha == 0.0 {
                "0 (no MFR)".to_string()
            } else {
                format!("{:e}", a.alpha)
            },
            col(|s| s.mmcs_true),
            col(|s| s.recovered),
            col(|s| s.fvu),
            col(|s| s.dead),
        ));
    }
    s
}

/// Writes every run's scores as JSON (atomically).
pub fn write_json(path: &Path, arms: &[ArmResult]) -> Result<(), TrainError> {
    let json = serde_json::to_vec_pretty(arms).map_err(|e| TrainError::io(path, e.into()))?;
    super::checkpoint::atomic_write(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_sums_of_active_features_from_one_group() {
        let spec = SynthSpec {
            n_features: 24,
            dim: 8,
            groups: 3,
            active: 4,
            decay: 0.9,
        };
        let w = SynthWorld::new(spec, 1).unwrap();
        assert_eq!(w.groups.iter().map(Vec::len).sum::<usize>(), 24);
        for row in w.features.chunks_exact(8) {
            let n: f32 = row.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
        let x = w.sample(50, 2);
        assert_eq!(x.len(), 400);
        assert!(x.iter().any(|&v| v != 0.0));
        // Deterministic by seed.
        assert_eq!(x, w.sample(50, 2));
        assert_ne!(x, w.sample(50, 3));
    }

    /// Solves `a x = b` (n x n, row-major) by Gaussian elimination with partial pivoting.
    fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Vec<f64> {
        for c in 0..n {
            let p = (c..n)
                .max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))
                .unwrap();
            for j in 0..n {
                a.swap(c * n + j, p * n + j);
            }
            b.swap(c, p);
            for r in c + 1..n {
                let f = a[r * n + c] / a[c * n + c];
                for j in c..n {
                    a[r * n + j] -= f * a[c * n + j];
                }
                b[r] -= f * b[c];
            }
        }
        let mut x = vec![0.0; n];
        for r in (0..n).rev() {
            let s: f64 = (r + 1..n).map(|j| a[r * n + j] * x[j]).sum();
            x[r] = (b[r] - s) / a[r * n + r];
        }
        x
    }

    /// With more dimensions than features, the features are linearly independent, so each
    /// sample's coefficients can be recovered exactly (least squares) and checked against the
    /// generator's rule: `active` distinct features, all from one group, each coefficient in
    /// [0, 1), nothing else.
    #[test]
    fn each_sample_uses_active_features_of_one_group() {
        let (nf, dim, active) = (12, 40, 3);
        let spec = SynthSpec {
            n_features: nf,
            dim,
            groups: 2,
            active,
            decay: 0.8,
        };
        let w = SynthWorld::new(spec, 4).unwrap();
        // The groups partition the features.
        let mut all: Vec<usize> = w.groups.concat();
        all.sort_unstable();
        assert_eq!(all, (0..nf).collect::<Vec<_>>());
        assert!(w.groups.iter().all(|g| g.len() == nf / 2));
        let f = |i: usize, d: usize| f64::from(w.features[i * dim + d]);
        // Gram matrix F F^T of the true features.
        let gram: Vec<f64> = (0..nf * nf)
            .map(|ij| (0..dim).map(|d| f(ij / nf, d) * f(ij % nf, d)).sum())
            .collect();
        let rows = 200;
        let x = w.sample(rows, 9);
        let mut exact = 0;
        let mut first_of_group = 0;
        for row in x.chunks_exact(dim) {
            let rhs: Vec<f64> = (0..nf)
                .map(|i| (0..dim).map(|d| f(i, d) * f64::from(row[d])).sum())
                .collect();
            let c = solve(gram.clone(), rhs, nf);
            // The row is exactly that combination (f32 data: residual at rounding level).
            for (d, &v) in row.iter().enumerate() {
                let fit: f64 = (0..nf).map(|i| c[i] * f(i, d)).sum();
                assert!(
                    (fit - f64::from(v)).abs() < 1e-4,
                    "residual {}",
                    fit - f64::from(v)
                );
            }
            // Coefficients are uniform in [0, 1): a recovered |c| > 1e-4 is an active feature.
            let on: Vec<usize> = (0..nf).filter(|&i| c[i].abs() > 1e-4).collect();
            assert!(
                c.iter().all(|&v| (-1e-4..1.0 + 1e-4).contains(&v)),
                "coefficients outside [0, 1): {c:?}"
            );
            assert!(on.len() <= active, "{} active features", on.len());
            let g = w.groups.iter().position(|g| g.contains(&on[0])).unwrap();
            assert!(
                on.iter().all(|i| w.groups[g].contains(i)),
                "features {on:?} span more than one group"
            );
            exact += usize::from(on.len() == active);
            first_of_group += usize::from(on.contains(&w.groups[g][0]));
        }
        // A drawn coefficient below 1e-4 hides a feature with probability 1e-4 per draw, so
        // nearly every row shows exactly `active` features (600 draws: expect < 1 hidden).
        assert!(
            exact >= rows - 2,
            "{exact} of {rows} rows with {active} features"
        );
        // Decaying weights: the group's first feature (weight 1 of 1, 0.8, ..., 0.8^5) is
        // among the 3 drawn with probability 0.703; uniform draws would give 0.5. The bound
        // sits ~3 standard deviations (6.5 rows) from both.
        assert!(
            first_of_group > rows * 60 / 100,
            "{first_of_group} of {rows}"
        );
    }

    #[test]
    fn perfect_decoder_scores_one() {
        let w = SynthWorld::new(
            SynthSpec {
                n_features: 24,
                dim: 8,
                groups: 3,
                active: 4,
                decay: 0.9,
            },
            1,
        )
        .unwrap();
        let (m, r) = score(&w, &w.features);
        assert!((m - 1.0).abs() < 1e-6 && r == 1.0);
    }
}
