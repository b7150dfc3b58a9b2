//! Integration tests: training (burn), including the GPU-parity suite.
//!
//! Parity: the same seeded initialisation and batches run on flex, ndarray and wgpu (lavapipe
//! in CI); forward, losses, MFR penalty and every gradient must agree for several steps. wgpu
//! tests FAIL (not skip) when no adapter exists: CI installs lavapipe, so a missing adapter is
//! a broken environment that must be seen.

use mfr_eeg::rng::Rng;
use mfr_eeg::train::data::Dataset;
use mfr_eeg::train::hungarian::assign_min;
use mfr_eeg::train::trainer::{GradPath, TrainOptions, Trainer, train_with};
use mfr_eeg::train::{ActivationKind, BackendKind, MmcsKind, TrainConfig};

/// Normwise relative difference `max|a - b| / max(max|b|, 1e-6)`.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0f64, |m, &x| m.max(x.abs() as f64)).max(1e-6);
    let d = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    d / scale
}

fn random_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n * d).map(|_| r.normal() as f32).collect()
}

fn small_cfg(mmcs: MmcsKind, activation: ActivationKind) -> TrainConfig {
    TrainConfig::new(16, 32, 4)
        .with_n_saes(3)
        .with_batch_size(8)
        .with_steps(10)
        .with_lr(1e-2)
        .with_lr_warmup_steps(0)
        .with_mfr_alpha(0.5)
        .with_mfr_warmup(0)
        .with_mmcs(mmcs)
        .with_activation(activation)
        .with_dead_steps(2)
        .with_k_aux(8)
        .with_auxk_alpha(0.5)
        .with_seed(42)
}

/// Everything observable about one step, copied to the host.
#[derive(Debug)]
struct StepTrace {
    mask: Vec<f32>,
    x_hat: Vec<f32>,
    mse: Vec<f32>,
    auxk: Option<Vec<f32>>,
    mmcs: Vec<f32>,
    penalty: f32,
    total: f32,
    grads: Vec<Vec<f32>>,
    weights_after: Vec<f32>,
}

fn trace(backend: BackendKind, path: GradPath, cfg: &TrainConfig, steps: usize) -> Vec<StepTrace> {
    let d = cfg.d_in;
    let mean = vec![0.05f32; d];
    let mut tr = Trainer::with_path(cfg, &mean, backend, path)
        .unwrap_or_else(|e| panic!("backend {backend} is required by the parity suite: {e}"));
    let mut out = Vec::new();
    for s in 0..steps {
        let x = random_rows(cfg.batch_size, d, 100 + s as u64);
        let mut t: Vec<f32> = x.iter().map(|v| 0.8 * v).collect();
        let energy = tr.to_residual(&x, &mut t);
        let c = tr.compute_over(&x, &t, energy.as_deref());
        let v1 =
            |t: burn::tensor::Tensor<1>| t.without_autodiff().try_into_vec_as::<f32>().unwrap();
        let v3 =
            |t: burn::tensor::Tensor<3>| t.without_autodiff().try_into_vec_as::<f32>().unwrap();
        let rec = StepTrace {
            mask: v3(c.fwd().mask.clone()),
            x_hat: v3(c.fwd().x_hat.clone()),
            mse: v1(c.mse.clone()),
            auxk: c.auxk.clone().map(v1),
            mmcs: v1(c.mmcs.clone().expect("MFR active")),
            penalty: v1(c.penalty.clone().expect("MFR active"))[0],
            total: v1(c.total.clone())[0],
            grads: c.grads().iter().cloned().map(v3).collect(),
            weights_after: Vec::new(),
        };
        tr.apply(&c);
        let w: Vec<f32> = tr
            .stack
            .to_host()
            .into_iter()
            .flat_map(|s| {
                s.w_enc
                    .into_iter()
                    .chain(s.w_dec)
                    .chain(s.b_enc)
                    .chain(s.b_dec)
            })
            .collect();
        out.push(StepTrace {
            weights_after: w,
            ..rec
        });
    }
    out
}

/// Parity tolerance: 1e-4 normwise relative for every tensor (f32 matmuls of length <= 32
/// summed in different orders differ by ~1e-6 relative; 1e-4 leaves room for the few Adam
/// steps over which differences compound, yet catches any wrong formula).
const TOL: f64 = 1e-4;

fn assert_parity(a: &[StepTrace], b: &[StepTrace], what: &str) {
    let mut worst = [0f64; 3]; // forward/loss, gradients, weights
    for (s, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.mask, y.mask, "{what} step {s}: TopK selections differ");
        let checks: Vec<(&str, &[f32], &[f32])> = vec![
            ("x_hat", &x.x_hat, &y.x_hat),
            ("mse", &x.mse, &y.mse),
            ("mmcs", &x.mmcs, &y.mmcs),
            ("weights", &x.weights_after, &y.weights_after),
        ];
        for (name, p, q) in checks {
            let r = rel_diff(p, q);
            let slot = if name == "weights" { 2 } else { 0 };
            worst[slot] = worst[slot].max(r);
            assert!(r <= TOL, "{what} step {s}: {name} rel diff {r:e} > {TOL:e}");
        }
        assert_eq!(
            x.auxk.is_some(),
            y.auxk.is_some(),
            "{what} step {s}: AuxK presence"
        );
        if let (Some(p), Some(q)) = (&x.auxk, &y.auxk) {
            let r = rel_diff(p, q);
            assert!(r <= TOL, "{what} step {s}: auxk rel diff {r:e}");
        }
        for (name, p, q) in [
            ("penalty", x.penalty, y.penalty),
            ("total", x.total, y.total),
        ] {
            let r = rel_diff(&[p], &[q]);
            assert!(r <= TOL, "{what} step {s}: {name} {p} vs {q}");
        }
        for (i, (p, q)) in x.grads.iter().zip(&y.grads).enumerate() {
            let r = rel_diff(p, q);
            worst[1] = worst[1].max(r);
            assert!(r <= TOL, "{what} step {s}: gradient {i} rel diff {r:e}");
        }
    }
    eprintln!(
        "parity {what}: worst rel diff forward/loss {:.1e}, gradients {:.1e}, weights {:.1e}",
        worst[0], worst[1], worst[2]
    );
}

/// Backend parity: the autodiff path on `other` against the autodiff path on flex.
fn parity(mmcs: MmcsKind, activation: ActivationKind, other: BackendKind) {
    let cfg = small_cfg(mmcs, activation);
    let reference = trace(BackendKind::Flex, GradPath::Autodiff, &cfg, 5);
    // AuxK must actually have run for the comparison to cover it.
    assert!(
        reference.iter().any(|t| t.auxk.is_some()),
        "no dead latents: AuxK untested"
    );
    let got = trace(other, GradPath::Autodiff, &cfg, 5);
    assert_parity(
        &got,
        &reference,
        &format!("{other} vs flex ({mmcs:?}, {activation:?})"),
    );
}

/// Path parity: the sparse step (host code on every backend; `backend` only holds the copy of
/// the weights uploaded after each update) against autodiff on flex, which checks every
/// hand-derived gradient against burn's and the weights' round trip through `backend`.
fn sparse_parity(cfg: &TrainConfig, backend: BackendKind) {
    let reference = trace(BackendKind::Flex, GradPath::Autodiff, cfg, 5);
    assert!(
        reference.iter().any(|t| t.auxk.is_some()),
        "no dead latents: AuxK untested"
    );
    let got = trace(backend, GradPath::Sparse, cfg, 5);
    assert_parity(
        &got,
        &reference,
        &format!(
            "sparse host step (weights kept in {backend}) vs autodiff on flex ({:?}, {:?}, tied {}, relative {})",
            cfg.mmcs, cfg.activation, cfg.tied, cfg.relative_loss
        ),
    );
}

#[test]
fn parity_sparse_host_step_max_relu() {
    sparse_parity(
        &small_cfg(MmcsKind::Max, ActivationKind::TopkRelu),
        BackendKind::Flex,
    );
}

#[test]
fn parity_sparse_host_step_with_ndarray_weights() {
    sparse_parity(
        &small_cfg(MmcsKind::Hungarian, ActivationKind::TopkSigned),
        BackendKind::Ndarray,
    );
}

#[test]
fn parity_sparse_host_step_tied_relative() {
    let cfg = small_cfg(MmcsKind::Max, ActivationKind::TopkRelu)
        .with_tied(true)
        .with_relative_loss(true);
    sparse_parity(&cfg, BackendKind::Flex);
}

#[test]
fn parity_sparse_host_step_residual_relative() {
    let cfg = small_cfg(MmcsKind::Max, ActivationKind::TopkRelu)
        .with_residual(true)
        .with_relative_loss(true);
    sparse_parity(&cfg, BackendKind::Flex);
}

/// A residual SAE learns the correction and its exported model adds the input back: on
/// windows that need no correction (targets = inputs) it passes them through, which a plain
/// SAE with k = 2 of 32 latents cannot do for 16-sample white noise.
#[test]
fn residual_sae_passes_clean_windows_through() {
    use mfr_eeg::core::Normalisation;
    use mfr_eeg::model::Model;
    use mfr_eeg::train::export::{ExportInfo, model_meta, model_tensors};
    let data = Dataset::reconstruction(random_rows(512, 16, 5), 16);
    let val = Dataset::reconstruction(random_rows(64, 16, 6), 16);
    let cfg = TrainConfig::new(16, 32, 2)
        .with_n_saes(1)
        .with_batch_size(32)
        .with_steps(200)
        .with_lr(1e-2)
        .with_relative_loss(true)
        .with_seed(1);
    let run = |residual: bool| {
        let cfg = cfg.clone().with_residual(residual);
        let out = train_with(
            &cfg,
            &mut &data,
            &mut &val,
            BackendKind::Flex,
            TrainOptions::default(),
        )
        .unwrap();
        (cfg, out)
    };
    let (_, plain) = run(false);
    let (cfg, res) = run(true);
    assert!(
        plain.val_loss[0] > 0.4,
        "plain SAE relative loss {}",
        plain.val_loss[0]
    );
    assert!(
        res.val_loss[0] < 0.05,
        "residual SAE relative loss {} (plain {})",
        res.val_loss[0],
        plain.val_loss[0]
    );
    // The exported model: output = input + the SAE's correction, in every window.
    let info = ExportInfo {
        hop: 8,
        sample_rate_hz: 16.0,
        channel_type: "EEG".into(),
        normalisation: Normalisation::None,
        provenance: "test".into(),
    };
    let with_path = Model::from_tensors(
        &model_meta(&cfg, &info),
        &model_tensors(&res.saes[0], true, None),
    )
    .unwrap();
    let bare = Model::from_tensors(
        &model_meta(&cfg, &info),
        &model_tensors(&res.saes[0], false, None),
    )
    .unwrap();
    let (a, b) = (with_path.view().sae(), bare.view().sae());
    let mut scratch = vec![0f32; a.scratch_len()];
    let mut topk = vec![0usize; a.k()];
    let (mut ya, mut yb) = (vec![0f32; 16], vec![0f32; 16]);
    let mut worst = 0f32;
    for x in val.inputs.chunks_exact(16) {
        a.forward_into(x, &mut ya, &mut scratch, &mut topk).unwrap();
        b.forward_into(x, &mut yb, &mut scratch, &mut topk).unwrap();
        for ((&p, &q), &v) in ya.iter().zip(&yb).zip(x) {
            worst = worst.max((p - (q + v)).abs());
        }
    }
    assert!(worst < 1e-5, "output - (input + correction) up to {worst}");
}

#[test]
fn parity_sparse_host_step_with_wgpu_weights() {
    sparse_parity(
        &small_cfg(MmcsKind::Max, ActivationKind::TopkSigned),
        BackendKind::Wgpu,
    );
}

#[test]
fn parity_ndarray_flex_max() {
    parity(
        MmcsKind::Max,
        ActivationKind::TopkRelu,
        BackendKind::Ndarray,
    );
}

#[test]
fn parity_ndarray_flex_hungarian_signed() {
    parity(
        MmcsKind::Hungarian,
        ActivationKind::TopkSigned,
        BackendKind::Ndarray,
    );
}

#[test]
fn parity_wgpu_flex_max() {
    parity(MmcsKind::Max, ActivationKind::TopkRelu, BackendKind::Wgpu);
}

#[test]
fn parity_wgpu_flex_hungarian() {
    parity(
        MmcsKind::Hungarian,
        ActivationKind::TopkRelu,
        BackendKind::Wgpu,
    );
}

#[test]
fn parity_wgpu_flex_signed() {
    parity(MmcsKind::Max, ActivationKind::TopkSigned, BackendKind::Wgpu);
}

#[test]
fn decoder_rows_stay_unit_norm() {
    let cfg = small_cfg(MmcsKind::Max, ActivationKind::TopkRelu).with_lr(5e-2);
    let mut tr = Trainer::new(&cfg, &[0.0; 16], BackendKind::Flex).unwrap();
    for s in 0..5 {
        let x = random_rows(8, 16, s);
        let c = tr.compute(&x, &x);
        tr.apply(&c);
    }
    for sae in tr.stack.to_host() {
        for row in sae.w_dec.chunks_exact(16) {
            let n: f64 = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            // f32 normalisation of a 16-vector: error ~1e-7; 1e-5 is a safe bound.
            assert!((n - 1.0).abs() < 1e-5, "decoder row norm {n}");
        }
    }
}

#[test]
fn topk_selects_exactly_k_with_ties_to_lower_index() {
    use burn::tensor::{Tensor, TensorData};
    let device = BackendKind::Flex.device().unwrap();
    // Row 0: four-way tie for the last two slots; row 1: all equal.
    let keys = Tensor::<2>::from_data(
        TensorData::new(
            vec![
                5.0f32, 1.0, 1.0, 9.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0,
            ],
            [2, 6],
        ),
        &device,
    );
    let m = mfr_eeg::train::topk::topk_mask(keys, 4)
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(
        m,
        vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    );
}

#[test]
fn hungarian_matches_brute_force_on_float_matrices() {
    fn brute(cost: &[f64], n: usize) -> f64 {
        let mut perm: Vec<usize> = (0..n).collect();
        let mut best = f64::INFINITY;
        // Heap's algorithm over all n! permutations.
        fn heap(k: usize, p: &mut Vec<usize>, cost: &[f64], n: usize, best: &mut f64) {
            if k == 1 {
                let s: f64 = p.iter().enumerate().map(|(r, &c)| cost[r * n + c]).sum();
                *best = best.min(s);
                return;
            }
            for i in 0..k {
                heap(k - 1, p, cost, n, best);
                if k.is_multiple_of(2) {
                    p.swap(i, k - 1)
                } else {
                    p.swap(0, k - 1)
                }
            }
        }
        heap(n, &mut perm, cost, n, &mut best);
        best
    }
    let mut rng = Rng::new(5);
    for n in 1..=7 {
        for _ in 0..20 {
            let cost: Vec<f64> = (0..n * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let a = assign_min(&cost, n, n);
            let got: f64 = a.iter().enumerate().map(|(r, &c)| cost[r * n + c]).sum();
            // Same terms summed in a different order: 1e-12 absolute is ample for n <= 7.
            assert!((got - brute(&cost, n)).abs() < 1e-12, "n {n}");
        }
    }
}

/// Correlated low-rank data on which independent SAEs learn different dictionaries.
fn sparse_data(n: usize, d: usize, atoms: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    let dict: Vec<f32> = (0..atoms * d).map(|_| r.normal() as f32).collect();
    let mut out = vec![0f32; n * d];
    for row in out.chunks_exact_mut(d) {
        for _ in 0..3 {
            let a = r.below(atoms as u64) as usize;
            let c = r.uniform(0.5, 1.5) as f32;
            for (o, &v) in row.iter_mut().zip(&dict[a * d..(a + 1) * d]) {
                *o += c * v;
            }
        }
    }
    out
}

#[test]
fn mfr_increases_mmcs_between_saes() {
    let rows = sparse_data(2048, 16, 24, 9);
    let data = Dataset::reconstruction(rows, 16);
    let run = |alpha: f64| {
        let cfg = TrainConfig::new(16, 32, 4)
            .with_n_saes(2)
            .with_steps(150)
            .with_batch_size(64)
            .with_lr(3e-3)
            .with_mfr_alpha(alpha)
            .with_mfr_warmup(20)
            .with_seed(1);
        let out = mfr_eeg::train::train(&cfg, &data, &data, BackendKind::Flex).unwrap();
        let dim = 16;
        let a = &out.saes[0].w_dec;
        let b = &out.saes[1].w_dec;
        let ab = mfr_eeg::train::loss::mfr::max_cosines_host(a, b, dim);
        let ba = mfr_eeg::train::loss::mfr::max_cosines_host(b, a, dim);
        0.5 * (ab.iter().sum::<f64>() / ab.len() as f64 + ba.iter().sum::<f64>() / ba.len() as f64)
    };
    let (base, mfr) = (run(0.0), run(1.0));
    // A strong penalty must pull the dictionaries together by a clear margin (measured
    // ~0.1 here); 0.05 is far above run-to-run noise at a fixed seed (which is zero).
    assert!(
        mfr > base + 0.05,
        "MMCS with MFR {mfr:.3} vs without {base:.3}"
    );
}

/// `select_every` returns, per SAE, the weights of the evaluated step with the lowest
/// validation loss: the same weights (bitwise) and loss as a run stopped at that step.
#[test]
fn select_every_keeps_the_best_validated_weights() {
    let data = Dataset::reconstruction(random_rows(256, 16, 3), 16);
    // Validation on other windows with a much higher learning rate than the training wants,
    // so validation loss wanders and the best step is not always the last.
    let val = Dataset::reconstruction(random_rows(64, 16, 9), 16);
    let cfg = small_cfg(MmcsKind::Max, ActivationKind::TopkRelu)
        .with_steps(12)
        .with_lr(0.3);
    // Every candidate, by runs stopped at each evaluated step (12: the full run).
    let mut by_step = Vec::new();
    for step in (2..=12).step_by(2) {
        let opts = TrainOptions {
            stop_after: Some(step),
            ..Default::default()
        };
        by_step.push((
            step,
            train_with(&cfg, &mut &data, &mut &val, BackendKind::Flex, opts).unwrap(),
        ));
    }
    let opts = TrainOptions {
        select_every: Some(2),
        ..Default::default()
    };
    let sel = train_with(&cfg, &mut &data, &mut &val, BackendKind::Flex, opts).unwrap();
    let mut early = 0;
    for i in 0..3 {
        let (step, run) = by_step
            .iter()
            .min_by(|a, b| a.1.val_loss[i].total_cmp(&b.1.val_loss[i]))
            .unwrap();
        early += usize::from(*step < 12);
        assert_eq!(sel.best_step[i], *step, "SAE {i}");
        assert_eq!(sel.val_loss[i], run.val_loss[i], "SAE {i}");
        assert_eq!(sel.saes[i], run.saes[i], "SAE {i} weights of step {step}");
    }
    assert!(early > 0, "no SAE's best step came before the end");
    assert_eq!(
        by_step.last().unwrap().1.best_step,
        vec![12; 3],
        "without selection the final weights are returned"
    );
}

#[test]
fn resume_reaches_the_same_weights_bitwise() {
    let rows = random_rows(256, 16, 3);
    let data = Dataset::reconstruction(rows, 16);
    let cfg = small_cfg(MmcsKind::Hungarian, ActivationKind::TopkRelu).with_steps(12);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("run.ckpt");
    let full = train_with(
        &cfg,
        &mut &data,
        &mut &data,
        BackendKind::Flex,
        TrainOptions::default(),
    )
    .unwrap();
    let opts = TrainOptions {
        checkpoint: Some((ck.clone(), 3)),
        stop_after: Some(7),
        ..Default::default()
    };
    let first = train_with(&cfg, &mut &data, &mut &data, BackendKind::Flex, opts).unwrap();
    assert_eq!(first.steps_run, 7);
    // The last checkpoint is at step 6: the resumed run redoes step 6 onwards.
    let opts = TrainOptions {
        resume: Some(ck.clone()),
        ..Default::default()
    };
    let resumed = train_with(&cfg, &mut &data, &mut &data, BackendKind::Flex, opts).unwrap();
    assert_eq!(resumed.steps_run, 6);
    // Bitwise: flex is deterministic, and the checkpoint holds the complete state.
    assert_eq!(resumed.saes, full.saes);
}

#[test]
fn resume_rejects_a_different_configuration() {
    let data = Dataset::reconstruction(random_rows(64, 16, 4), 16);
    let cfg = small_cfg(MmcsKind::Max, ActivationKind::TopkRelu).with_steps(3);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("a.ckpt");
    let opts = TrainOptions {
        checkpoint: Some((ck.clone(), 1)),
        ..Default::default()
    };
    train_with(&cfg, &mut &data, &mut &data, BackendKind::Flex, opts).unwrap();
    let other = cfg.clone().with_seed(43);
    let opts = TrainOptions {
        resume: Some(ck),
        ..Default::default()
    };
    let err = train_with(&other, &mut &data, &mut &data, BackendKind::Flex, opts).unwrap_err();
    assert!(err.to_string().contains("different configuration"), "{err}");
}

/// The exported model, run by the no_std core, reproduces burn's forward (on flex and wgpu).
fn core_matches_burn(backend: BackendKind, activation: ActivationKind) {
    use mfr_eeg::train::export::{ExportInfo, export_sae};
    let cfg = small_cfg(MmcsKind::Max, activation);
    let mut tr = Trainer::new(&cfg, &[0.1; 16], backend)
        .unwrap_or_else(|e| panic!("backend {backend} is required: {e}"));
    for s in 0..3 {
        let x = random_rows(8, 16, 200 + s);
        let c = tr.compute(&x, &x);
        tr.apply(&c);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let saes = tr.stack.to_host();
    let info = ExportInfo {
        hop: 8,
        sample_rate_hz: 128.0,
        channel_type: "EEG".into(),
        normalisation: mfr_eeg::core::Normalisation::None,
        provenance: "parity test".into(),
    };
    export_sae(&path, &cfg, &saes[1], &info).unwrap();
    assert!(
        mfr_eeg::train::export::config_path(&path).exists(),
        "config JSON beside the model"
    );
    let model = mfr_eeg::model::Model::load(&path).unwrap();
    let sae = model.view().sae();
    let x = random_rows(8, 16, 999);
    let fwd = tr.stack.forward(
        burn::tensor::Tensor::<2>::from_data(
            burn::tensor::TensorData::new(x.clone(), [8, 16]),
            tr.device(),
        ),
        cfg.k,
        cfg.activation,
        false,
    );
    let x_hat = fwd.x_hat.try_into_vec_as::<f32>().unwrap();
    let mask = fwd.mask.try_into_vec_as::<f32>().unwrap();
    let mut out = vec![0f32; 16];
    let mut scratch = vec![0f32; sae.scratch_len()];
    let mut topk = vec![0usize; cfg.k];
    for (b, row) in x.chunks_exact(16).enumerate() {
        sae.forward_into(row, &mut out, &mut scratch, &mut topk)
            .unwrap();
        // SAE 1 of the stack: offset N index 1.
        let burn_row = &x_hat[(8 + b) * 16..(8 + b + 1) * 16];
        for (o, r) in out.iter().zip(burn_row) {
            // Same f32 weights, dot products of length 16/32 in a different order: ~1e-6.
            assert!((o - r).abs() <= 1e-5, "{backend}: core {o} vs burn {r}");
        }
        let mut core_sel = topk.clone();
        core_sel.sort_unstable();
        let burn_sel: Vec<usize> = (0..32).filter(|&j| mask[(8 + b) * 32 + j] > 0.0).collect();
        assert_eq!(
            core_sel, burn_sel,
            "{backend}: TopK indices differ in window {b}"
        );
    }
}

#[test]
fn core_matches_burn_flex_relu() {
    core_matches_burn(BackendKind::Flex, ActivationKind::TopkRelu);
}

#[test]
fn core_matches_burn_flex_signed() {
    core_matches_burn(BackendKind::Flex, ActivationKind::TopkSigned);
}

#[test]
fn core_matches_burn_wgpu() {
    core_matches_burn(BackendKind::Wgpu, ActivationKind::TopkRelu);
}

/// The linear path's least squares recovers known taps: targets are the SAE's own output plus
/// a known FIR of the input, on smooth windows every gate opens for.
#[test]
fn fit_skips_recovers_a_known_fir() {
    use mfr_eeg::core::{Activation, Normalisation};
    let (d_in, d_sae, k) = (24, 32, 4);
    let (model, _) = crate::core_forward::random_model(
        8,
        d_in,
        d_sae,
        k,
        Activation::TopkRelu,
        Normalisation::None,
    );
    let sae = model.view().sae();
    let h = [0.2f32, -0.5, 1.0, 0.25, -0.1];
    let mut r = mfr_eeg::rng::Rng::new(3);
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let mut y = vec![0.0f32; d_in];
    let mut scratch = vec![0.0f32; sae.scratch_len()];
    let mut topk = vec![0usize; k];
    for _ in 0..400 {
        // Random low-frequency windows (sum of two slow sines).
        let (f1, f2, p1, p2) = (
            r.uniform(0.2, 1.5),
            r.uniform(0.2, 2.0),
            r.uniform(0.0, 6.3),
            r.uniform(0.0, 6.3),
        );
        let x: Vec<f32> = (0..d_in)
            .map(|i| {
                let t = std::f64::consts::TAU * i as f64 / d_in as f64;
                ((f1 * t + p1).sin() + 0.5 * (f2 * t + p2).cos()) as f32
            })
            .collect();
        sae.forward_into(&x, &mut y, &mut scratch, &mut topk)
            .unwrap();
        for (i, &yi) in y.iter().enumerate() {
            let mut f = 0.0f32;
            for (l, &hl) in h.iter().enumerate() {
                let j = i as isize + l as isize - 2;
                if (0..d_in as isize).contains(&j) {
                    f += hl * x[j as usize];
                }
            }
            targets.push(yi + f);
        }
        inputs.extend(x);
    }
    let fits = mfr_eeg::train::skip::fit_skips(&sae, &inputs, &targets, 5, &[0.0, 1e3], None);
    // Gate 0 opens for no window here: no data, zero taps.
    assert!(fits[0].taps.iter().all(|&v| v == 0.0), "{:?}", fits[0].taps);
    for (got, want) in fits[1].taps.iter().zip(h) {
        assert!((got - want).abs() < 1e-3, "{:?} vs {h:?}", fits[1].taps);
    }
    // Relative weighting does not move an exact solution.
    let w = mfr_eeg::train::skip::fit_skips(&sae, &inputs, &targets, 5, &[1e3], Some(1e-3));
    for (got, want) in w[0].taps.iter().zip(h) {
        assert!((got - want).abs() < 1e-3, "{:?}", w[0].taps);
    }
}

/// A gated residual SAE learns corrections only in windows whose high-frequency ratio the gate
/// opens (a smooth window here); a noisy window keeps its target, to be rebuilt whole. The
/// relative loss still divides by each window's own target energy.
#[test]
fn gated_residual_targets_only_windows_the_gate_opens() {
    let cfg = small_cfg(MmcsKind::Max, ActivationKind::TopkRelu)
        .with_residual(true)
        .with_residual_gate(Some(0.4));
    let tr = Trainer::new(&cfg, &[0.0; 16], BackendKind::Flex).unwrap();
    // Row 0: a slow sine (ratio ~0.15: the gate opens); row 1: alternating signs (ratio ~4).
    let mut x: Vec<f32> = (0..16).map(|i| (i as f32 * 0.4).sin()).collect();
    x.extend((0..16).map(|i| if i % 2 == 0 { 1.0f32 } else { -1.0 }));
    let t: Vec<f32> = x.iter().map(|v| 0.5 * v).collect();
    let mut got = t.clone();
    let energy = tr.to_residual(&x, &mut got).unwrap();
    for i in 0..16 {
        assert!((got[i] - (t[i] - x[i])).abs() < 1e-7, "smooth row, {i}");
        assert_eq!(got[16 + i], t[16 + i], "noisy row, {i}");
    }
    let e0 = t[..16].iter().map(|v| v * v).sum::<f32>() / 16.0;
    assert!((energy[0] - e0).abs() < 1e-6 && (energy[1] - 0.25).abs() < 1e-6);
    // Ungated, both rows become corrections.
    let tr = Trainer::new(
        &cfg.clone().with_residual_gate(None),
        &[0.0; 16],
        BackendKind::Flex,
    )
    .unwrap();
    let mut all = t.clone();
    tr.to_residual(&x, &mut all).unwrap();
    assert!((all[16] - (t[16] - x[16])).abs() < 1e-7);
}
