//! Integration tests: core_forward — the SAE forward against a naive f64 reference, TopK rules.

use mfr_eeg::core::{Activation, CoreError, Normalisation, ZSCORE_EPS};
use mfr_eeg::model::{Model, ModelMeta, ModelTensors};
use mfr_eeg::rng::Rng;

pub(crate) fn meta(
    d_in: usize,
    d_sae: usize,
    k: usize,
    act: Activation,
    norm: Normalisation,
) -> ModelMeta {
    ModelMeta {
        d_in,
        d_sae,
        k,
        hop: d_in.div_ceil(2),
        activation: act,
        normalisation: norm,
        sample_rate_hz: 128.0,
        channel_type: "EEG".into(),
        provenance: "random test weights".into(),
    }
}

/// Random weights: W ~ N(0, 1/d_in), biases ~ N(0, 0.1^2).
pub(crate) fn random_tensors(seed: u64, d_in: usize, d_sae: usize) -> ModelTensors {
    let mut r = Rng::new(seed);
    let s = 1.0 / (d_in as f64).sqrt();
    let mut v = |n: usize, sd: f64| {
        (0..n)
            .map(|_| (r.normal() * sd) as f32)
            .collect::<Vec<f32>>()
    };
    ModelTensors {
        w_enc: v(d_in * d_sae, s),
        w_dec: v(d_sae * d_in, s),
        b_enc: v(d_sae, 0.1),
        b_dec: v(d_in, 0.1),
    }
}

pub(crate) fn random_model(
    seed: u64,
    d_in: usize,
    d_sae: usize,
    k: usize,
    act: Activation,
    norm: Normalisation,
) -> (Model, ModelTensors) {
    let t = random_tensors(seed, d_in, d_sae);
    let m = Model::from_tensors(&meta(d_in, d_sae, k, act, norm), &t).expect("valid model");
    (m, t)
}

/// Naive f64 reference (index loops on purpose: it mirrors the formula, not the core's code) of the raw SAE; returns (output, kept indices in selection order).
#[allow(clippy::needless_range_loop)]
pub(crate) fn reference_forward(
    t: &ModelTensors,
    d_in: usize,
    d_sae: usize,
    k: usize,
    act: Activation,
    x: &[f64],
) -> (Vec<f64>, Vec<usize>) {
    let mut pre = vec![0.0f64; d_sae];
    for (j, p) in pre.iter_mut().enumerate() {
        *p = f64::from(t.b_enc[j]);
        for i in 0..d_in {
            *p += (x[i] - f64::from(t.b_dec[i])) * f64::from(t.w_enc[i * d_sae + j]);
        }
    }
    // Full sort, stable on index: descending value, ties to the lower index.
    let mut order: Vec<usize> = (0..d_sae).collect();
    order.sort_by(|&a, &b| pre[b].partial_cmp(&pre[a]).unwrap().then(a.cmp(&b)));
    order.truncate(k);
    let mut out: Vec<f64> = t.b_dec.iter().map(|&b| f64::from(b)).collect();
    for &j in &order {
        let z = match act {
            Activation::TopkRelu => pre[j].max(0.0),
            Activation::TopkSigned => pre[j],
        };
        for i in 0..d_in {
            out[i] += z * f64::from(t.w_dec[j * d_in + i]);
        }
    }
    (out, order)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, &x| m.max(x.abs()))
}

/// Runs `trials` random windows through both the core and the reference and checks the
/// relative error; returns how many windows had a different kept set (near-ties in f32).
fn check_against_reference(
    d_in: usize,
    d_sae: usize,
    k: usize,
    act: Activation,
    norm: Normalisation,
) {
    let (model, t) = random_model(11 + k as u64, d_in, d_sae, k, act, norm);
    let sae = model.view().sae();
    let mut r = Rng::new(99);
    let mut scratch = vec![0.0f32; sae.scratch_len()];
    let mut topk = vec![0usize; k];
    let mut out = vec![0.0f32; d_in];
    for trial in 0..200 {
        // Scales from 1e-2 to 1e2 (µV-like EEG amplitudes) with a DC offset.
        let scale = 10f64.powf(r.uniform(-2.0, 2.0));
        let offset = r.normal() * scale;
        let x32: Vec<f32> = (0..d_in)
            .map(|_| (offset + r.normal() * scale) as f32)
            .collect();
        let x: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
        let (want, want_idx) = match norm {
            Normalisation::None => {
                sae.forward_into(&x32, &mut out, &mut scratch, &mut topk)
                    .unwrap();
                reference_forward(&t, d_in, d_sae, k, act, &x)
            }
            Normalisation::WindowZscore => {
                sae.denoise_window_into(&x32, &mut out, &mut scratch, &mut topk)
                    .unwrap();
                let mean = x.iter().sum::<f64>() / d_in as f64;
                let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d_in as f64).sqrt()
                    + f64::from(ZSCORE_EPS);
                let xn: Vec<f64> = x.iter().map(|v| (v - mean) / sd).collect();
                let (o, idx) = reference_forward(&t, d_in, d_sae, k, act, &xn);
                (o.iter().map(|v| v * sd + mean).collect(), idx)
            }
        };
        assert_eq!(topk, want_idx, "trial {trial}: kept latents differ");
        let err = out
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (&a, &b)| m.max((f64::from(a) - b).abs()));
        // 1e-5 relative to the signal scale: f32 rounding over d_in + k products is ~1e-7
        // relative, so a wrong index, sign or bias would exceed this by orders of magnitude.
        let sig = max_abs(&want).max(max_abs(&x));
        assert!(
            err <= 1e-5 * sig,
            "trial {trial}: max abs err {err:e} vs scale {sig:e}"
        );
    }
}

#[test]
fn forward_matches_f64_reference_topk_relu() {
    check_against_reference(7, 13, 3, Activation::TopkRelu, Normalisation::None);
}

#[test]
fn forward_matches_f64_reference_topk_signed() {
    check_against_reference(7, 13, 3, Activation::TopkSigned, Normalisation::None);
}

#[test]
fn window_zscore_matches_f64_reference_both_modes() {
    check_against_reference(7, 13, 3, Activation::TopkRelu, Normalisation::WindowZscore);
    check_against_reference(
        7,
        13,
        3,
        Activation::TopkSigned,
        Normalisation::WindowZscore,
    );
}

#[test]
fn k_one_and_k_d_sae_match_reference() {
    for act in [Activation::TopkRelu, Activation::TopkSigned] {
        check_against_reference(7, 13, 1, act, Normalisation::None);
        check_against_reference(7, 13, 13, act, Normalisation::None);
    }
}

#[test]
fn topk_ties_go_to_lower_index_through_the_model() {
    // W_enc = 0, so pre-activations are exactly b_enc, with a three-way tie at 3.0.
    let (d_in, d_sae, k) = (3, 6, 2);
    let b_enc = vec![1.0, 3.0, 3.0, 2.0, 3.0, 0.0];
    let w_dec: Vec<f32> = (0..d_sae * d_in).map(|n| (n + 1) as f32).collect();
    let t = ModelTensors {
        w_enc: vec![0.0; d_in * d_sae],
        w_dec: w_dec.clone(),
        b_enc,
        b_dec: vec![0.0; d_in],
    };
    for act in [Activation::TopkRelu, Activation::TopkSigned] {
        let m = Model::from_tensors(&meta(d_in, d_sae, k, act, Normalisation::None), &t).unwrap();
        let sae = m.view().sae();
        let (mut out, mut s, mut idx) = (vec![0.0; d_in], vec![0.0; sae.scratch_len()], vec![0; k]);
        sae.forward_into(&[0.5, -1.0, 2.0], &mut out, &mut s, &mut idx)
            .unwrap();
        assert_eq!(
            idx,
            [1, 2],
            "ties must keep the lower indices 1 and 2, not 4"
        );
        // out = 3 * (row 1 + row 2) exactly (small integers).
        let want: Vec<f32> = (0..d_in)
            .map(|i| 3.0 * (w_dec[d_in + i] + w_dec[2 * d_in + i]))
            .collect();
        assert_eq!(out, want);
    }
}

#[test]
fn topk_relu_zeroes_negative_kept_latents_signed_keeps_them() {
    // All pre-activations negative: relu output is b_dec only, signed is not.
    let (d_in, d_sae, k) = (2, 3, 2);
    let t = ModelTensors {
        w_enc: vec![0.0; 6],
        w_dec: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        b_enc: vec![-1.0, -2.0, -3.0],
        b_dec: vec![0.25, 0.5],
    };
    let run = |act| {
        let m = Model::from_tensors(&meta(d_in, d_sae, k, act, Normalisation::None), &t).unwrap();
        let sae = m.view().sae();
        let (mut out, mut s, mut idx) = (vec![0.0; d_in], vec![0.0; sae.scratch_len()], vec![0; k]);
        sae.forward_into(&[0.0, 0.0], &mut out, &mut s, &mut idx)
            .unwrap();
        (out, idx)
    };
    assert_eq!(run(Activation::TopkRelu), (vec![0.25, 0.5], vec![0, 1]));
    assert_eq!(
        run(Activation::TopkSigned),
        (vec![0.25 - 1.0, 0.5 - 2.0], vec![0, 1])
    );
}

#[test]
fn wrong_buffer_lengths_are_errors_not_panics() {
    let (m, _) = random_model(1, 7, 13, 3, Activation::TopkRelu, Normalisation::None);
    let sae = m.view().sae();
    let (mut out, mut s, mut idx) = (vec![0.0; 7], vec![0.0; sae.scratch_len()], vec![0; 3]);
    let e = sae
        .forward_into(&[0.0; 6], &mut out, &mut s, &mut idx)
        .unwrap_err();
    assert_eq!(
        e,
        CoreError::BufferLength {
            buffer: "x",
            expected: 7,
            got: 6
        }
    );
    let e = sae
        .denoise_window_into(&[0.0; 7], &mut out, &mut s[1..], &mut idx)
        .unwrap_err();
    assert!(matches!(
        e,
        CoreError::BufferLength {
            buffer: "scratch",
            ..
        }
    ));
    let e = sae
        .forward_into(&[0.0; 7], &mut out, &mut s, &mut idx[..2])
        .unwrap_err();
    assert!(matches!(
        e,
        CoreError::BufferLength {
            buffer: "topk",
            expected: 3,
            got: 2
        }
    ));
}
