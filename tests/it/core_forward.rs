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
        ola: mfr_eeg::core::OlaShape::Hann,
        blend: None,
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
        skip: None,
        front: None,
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
            Normalisation::WindowZscore | Normalisation::WindowZscoreNoMean => {
                sae.denoise_window_into(&x32, &mut out, &mut scratch, &mut topk)
                    .unwrap();
                let mean = x.iter().sum::<f64>() / d_in as f64;
                let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d_in as f64).sqrt()
                    + f64::from(ZSCORE_EPS);
                let xn: Vec<f64> = x.iter().map(|v| (v - mean) / sd).collect();
                let (o, idx) = reference_forward(&t, d_in, d_sae, k, act, &xn);
                // The no-mean variant rescales only: the input's offset must not come back.
                let back = if norm == Normalisation::WindowZscore {
                    mean
                } else {
                    0.0
                };
                (o.iter().map(|v| v * sd + back).collect(), idx)
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
fn window_zscore_no_mean_matches_f64_reference_both_modes() {
    for act in [Activation::TopkRelu, Activation::TopkSigned] {
        check_against_reference(7, 13, 3, act, Normalisation::WindowZscoreNoMean);
    }
}

#[test]
fn no_mean_normalisation_drops_a_dc_offset_that_window_zscore_keeps() {
    // An identity-like SAE (k = d_in, decoder = encoder = I) returns its normalised input, so
    // window_zscore gives back the window and the no-mean variant the window minus its mean.
    let d = 8;
    let mut w = vec![0.0f32; d * d];
    for i in 0..d {
        w[i * d + i] = 1.0;
    }
    let t = ModelTensors {
        w_enc: w.clone(),
        w_dec: w,
        b_enc: vec![0.0; d],
        b_dec: vec![0.0; d],
        skip: None,
        front: None,
    };
    let x: Vec<f32> = (0..d).map(|i| 100.0 + i as f32).collect();
    let mean = x.iter().sum::<f32>() / d as f32;
    for (norm, back) in [
        (Normalisation::WindowZscore, mean),
        (Normalisation::WindowZscoreNoMean, 0.0),
    ] {
        let m = Model::from_tensors(&meta(d, d, d, Activation::TopkSigned, norm), &t).unwrap();
        let sae = m.view().sae();
        let (mut out, mut scratch, mut topk) =
            (vec![0.0; d], vec![0.0; sae.scratch_len()], vec![0; d]);
        sae.denoise_window_into(&x, &mut out, &mut scratch, &mut topk)
            .unwrap();
        for (i, (&o, &xi)) in out.iter().zip(&x).enumerate() {
            let want = xi - mean + back;
            assert!(
                (o - want).abs() < 1e-3,
                "{norm:?} sample {i}: {o} vs {want}"
            );
        }
    }
    // The name round-trips through the model metadata.
    assert_eq!(
        Normalisation::from_name(Normalisation::WindowZscoreNoMean.as_str()).unwrap(),
        Normalisation::WindowZscoreNoMean
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
        skip: None,
        front: None,
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
        skip: None,
        front: None,
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

/// f64 reference of the int8 forward: dequantised weights, and the activation codes the core
/// uses (x - b_dec quantised per window to |q| <= 32767).
#[allow(clippy::needless_range_loop)]
fn reference_int8(
    q: &mfr_eeg::model::QuantizedTensors,
    d_in: usize,
    d_sae: usize,
    k: usize,
    act: Activation,
    x: &[f64],
) -> Vec<f64> {
    let xc: Vec<f64> = (0..d_in).map(|i| x[i] - f64::from(q.b_dec[i])).collect();
    let amax = xc.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let qmax = 32767.0;
    let codes: Vec<f64> = xc.iter().map(|v| (v * qmax / amax).round()).collect();
    let mut pre = vec![0.0f64; d_sae];
    for j in 0..d_sae {
        let acc: f64 = (0..d_in)
            .map(|i| codes[i] * f64::from(q.w_enc[i * d_sae + j]))
            .sum();
        pre[j] = f64::from(q.b_enc[j]) + amax / qmax * f64::from(q.w_enc_scale[j]) * acc;
    }
    let mut order: Vec<usize> = (0..d_sae).collect();
    order.sort_by(|&a, &b| pre[b].partial_cmp(&pre[a]).unwrap().then(a.cmp(&b)));
    let mut out: Vec<f64> = q.b_dec.iter().map(|&b| f64::from(b)).collect();
    for &j in &order[..k] {
        let z = match act {
            Activation::TopkRelu => pre[j].max(0.0),
            Activation::TopkSigned => pre[j],
        };
        for i in 0..d_in {
            out[i] += z * f64::from(q.w_dec_scale[j]) * f64::from(q.w_dec[j * d_in + i]);
        }
    }
    out
}

#[test]
fn int8_forward_matches_f64_reference() {
    use mfr_eeg::model::quantize::quantize_tensors;
    for act in [Activation::TopkRelu, Activation::TopkSigned] {
        let (d_in, d_sae, k) = (7, 13, 3);
        let m = meta(d_in, d_sae, k, act, Normalisation::None);
        let q = quantize_tensors(&m, &random_tensors(31, d_in, d_sae));
        let model = Model::from_int8(&m, &q).unwrap();
        let sae = model.view().sae();
        assert!(sae.is_int8());
        let (mut out, mut s, mut idx) =
            (vec![0.0f32; d_in], vec![0.0; sae.scratch_len()], vec![0; k]);
        let mut r = Rng::new(4);
        for trial in 0..200 {
            let scale = 10f64.powf(r.uniform(-1.0, 2.0));
            let x32: Vec<f32> = (0..d_in).map(|_| (r.normal() * scale) as f32).collect();
            let x: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
            sae.forward_into(&x32, &mut out, &mut s, &mut idx).unwrap();
            let want = reference_int8(&q, d_in, d_sae, k, act, &x);
            let err = out
                .iter()
                .zip(&want)
                .fold(0.0f64, |m, (&a, &b)| m.max((f64::from(a) - b).abs()));
            // 1e-4 of the scale: f32 rounding is ~1e-6; the f32 and f64 code computations may
            // round one code differently at a .5 tie, moving a pre-activation by ~1/32767 of
            // the input scale. A wrong scale, sign or index is off by O(1).
            let sig = max_abs(&want).max(max_abs(&x));
            assert!(
                err <= 1e-4 * sig,
                "{act:?} trial {trial}: err {err:e} scale {sig:e}"
            );
        }
    }
}

#[test]
fn int8_output_stays_close_to_f32() {
    use mfr_eeg::model::quantize::quantize_tensors;
    let (d_in, d_sae, k) = (64, 128, 8);
    let m = meta(
        d_in,
        d_sae,
        k,
        Activation::TopkRelu,
        Normalisation::WindowZscore,
    );
    let t = random_tensors(12, d_in, d_sae);
    let f = Model::from_tensors(&m, &t).unwrap();
    let q = Model::from_int8(&m, &quantize_tensors(&m, &t)).unwrap();
    let (a, b) = (f.view().sae(), q.view().sae());
    let (mut ya, mut yb) = (vec![0.0f32; d_in], vec![0.0f32; d_in]);
    let (mut s, mut ia, mut ib) = (vec![0.0; a.scratch_len()], vec![0; k], vec![0; k]);
    let mut r = Rng::new(8);
    let (mut dev, mut refe, mut swapped) = (0.0f64, 0.0f64, 0);
    let trials = 300;
    for _ in 0..trials {
        let x: Vec<f32> = (0..d_in).map(|_| (30.0 * r.normal()) as f32).collect();
        a.denoise_window_into(&x, &mut ya, &mut s, &mut ia).unwrap();
        b.denoise_window_into(&x, &mut yb, &mut s, &mut ib).unwrap();
        let (mut sa, mut sb) = (ia.clone(), ib.clone());
        sa.sort_unstable();
        sb.sort_unstable();
        if sa != sb {
            swapped += 1; // a near-tie at the k-th latent resolved differently
            continue;
        }
        let mean = x.iter().sum::<f32>() / d_in as f32;
        for (p, q) in ya.iter().zip(&yb) {
            dev += f64::from(p - q).powi(2);
            refe += f64::from(p - mean).powi(2);
        }
    }
    let rel = (dev / refe).sqrt();
    // Same kept latents: only weight rounding differs. Each int8 weight is off by <= half a
    // step (max|w|/254, ~0.4 % of a typical weight), so the output deviates ~1 %; 3 % is far
    // below what a wrong scale or layout gives (O(100 %)).
    assert!(
        rel < 0.03,
        "int8 deviates {rel:.4} from f32 on identical top-k sets"
    );
    // A random dictionary has flat pre-activations (gap between the 8th and 9th of 128 is
    // ~0.1 sd), so some windows swap one latent; a broken quantiser swaps nearly all.
    assert!(
        swapped < trials / 4,
        "{swapped} of {trials} windows changed their top-k set"
    );
    eprintln!("int8 vs f32: deviation {rel:.4} on equal top-k, {swapped}/{trials} swapped");
}

#[test]
fn encode_into_gives_the_dense_code_the_decoder_uses() {
    let (d_in, d_sae, k) = (7, 13, 3);
    for act in [Activation::TopkRelu, Activation::TopkSigned] {
        let (m, t) = random_model(41, d_in, d_sae, k, act, Normalisation::None);
        let sae = m.view().sae();
        let (mut z, mut s, mut idx) = (vec![9.0; d_sae], vec![0.0; sae.scratch_len()], vec![0; k]);
        let mut out = vec![0.0; d_in];
        let mut r = Rng::new(2);
        for _ in 0..50 {
            let x: Vec<f32> = (0..d_in).map(|_| r.normal() as f32).collect();
            sae.encode_into(&x, &mut z, &mut s, &mut idx).unwrap();
            assert!(z.iter().filter(|&&v| v != 0.0).count() <= k);
            // Decoding z densely in f64 reproduces forward_into within f32 rounding (1e-5
            // relative; a wrong latent would be off by O(1)).
            sae.forward_into(&x, &mut out, &mut s, &mut idx).unwrap();
            for (i, &o) in out.iter().enumerate() {
                let want: f64 = f64::from(t.b_dec[i])
                    + (0..d_sae)
                        .map(|j| f64::from(z[j]) * f64::from(t.w_dec[j * d_in + i]))
                        .sum::<f64>();
                assert!((f64::from(o) - want).abs() <= 1e-5 * want.abs().max(1.0));
            }
        }
    }
}

/// The gated linear path: where the gate opens, the output is the SAE's plus the centred FIR of
/// the normalised window (zero outside it); where it stays shut, the SAE's alone.
#[test]
fn skip_path_adds_the_fir_only_where_the_gate_opens() {
    let (d_in, d_sae, k) = (32, 48, 4);
    let norm = Normalisation::WindowZscoreNoMean;
    let t0 = random_tensors(5, d_in, d_sae);
    let taps: Vec<f32> = vec![0.1, -0.2, 0.7, 0.3, -0.05];
    // Gate 0.5: a slow sine (ratio ~ (2 pi / 32)^2 ~ 0.04) opens it, alternating samples
    // (ratio ~ 4) do not.
    let gate = 0.5f32;
    let t = ModelTensors {
        skip: Some(mfr_eeg::model::SkipPath {
            taps: taps.clone(),
            gate,
        }),
        ..t0.clone()
    };
    let m = meta(d_in, d_sae, k, Activation::TopkRelu, norm);
    let with = Model::from_tensors(&m, &t).unwrap();
    let without = Model::from_tensors(&m, &t0).unwrap();
    assert_eq!(with.view().meta().format_version, 3);
    assert_eq!(without.view().meta().format_version, 1);
    let run = |model: &Model, x: &[f32]| {
        let sae = model.view().sae();
        let mut out = vec![0.0f32; d_in];
        let mut scratch = vec![0.0f32; sae.scratch_len()];
        let mut topk = vec![0usize; k];
        sae.denoise_window_into(x, &mut out, &mut scratch, &mut topk)
            .unwrap();
        out
    };
    let slow: Vec<f32> = (0..d_in)
        .map(|i| 3.0 + 5.0 * (std::f32::consts::TAU * i as f32 / 32.0).sin())
        .collect();
    let fast: Vec<f32> = (0..d_in)
        .map(|i| if i % 2 == 0 { 2.0 } else { -1.0 } + 0.01 * i as f32)
        .collect();
    // Slow window: SAE + scale * FIR(normalised window) = FIR of the mean-removed window.
    let x: Vec<f64> = slow.iter().map(|&v| f64::from(v)).collect();
    let mean = x.iter().sum::<f64>() / d_in as f64;
    let c: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let base = run(&without, &slow);
    let got = run(&with, &slow);
    for i in 0..d_in {
        let mut f = 0.0f64;
        for (l, &h) in taps.iter().enumerate() {
            let j = i as isize + l as isize - 2;
            if (0..d_in as isize).contains(&j) {
                f += f64::from(h) * c[j as usize];
            }
        }
        let want = f64::from(base[i]) + f;
        assert!(
            (f64::from(got[i]) - want).abs() < 1e-4,
            "sample {i}: {} vs {want}",
            got[i]
        );
    }
    // Fast window: the gate stays shut, bit-identical to the SAE alone.
    assert_eq!(run(&with, &fast), run(&without, &fast));
    // The path survives a file round trip.
    let back = Model::from_bytes(with.bytes().to_vec()).unwrap();
    assert_eq!(back.skip(), t.skip);
}

/// The int8 path applies the same f32 linear path: the difference the path makes is the FIR of
/// the normalised window, as in f32, and quantising keeps the taps and the gate.
#[test]
fn skip_path_is_the_same_in_the_int8_forward() {
    use mfr_eeg::model::quantize::quantize_tensors;
    let (d_in, d_sae, k) = (32, 48, 4);
    let m = meta(
        d_in,
        d_sae,
        k,
        Activation::TopkSigned,
        Normalisation::WindowZscoreNoMean,
    );
    let t0 = random_tensors(9, d_in, d_sae);
    let skip = mfr_eeg::model::SkipPath {
        taps: vec![-0.3, 0.5, 0.2],
        gate: 1.0,
    };
    let q0 = quantize_tensors(&m, &t0);
    let q1 = quantize_tensors(
        &m,
        &ModelTensors {
            skip: Some(skip.clone()),
            ..t0
        },
    );
    assert_eq!(q1.skip.as_ref(), Some(&skip));
    let without = Model::from_int8(&m, &q0).unwrap();
    let with = Model::from_int8(&m, &q1).unwrap();
    assert!(with.is_int8() && with.view().meta().format_version == 3);
    assert_eq!(with.skip(), Some(skip.clone()));
    let x: Vec<f32> = (0..d_in)
        .map(|i| 10.0 + 4.0 * (std::f32::consts::TAU * i as f32 / 32.0).cos())
        .collect();
    let run = |model: &Model| {
        let sae = model.view().sae();
        let mut out = vec![0.0f32; d_in];
        let mut scratch = vec![0.0f32; sae.scratch_len()];
        let mut topk = vec![0usize; k];
        sae.denoise_window_into(&x, &mut out, &mut scratch, &mut topk)
            .unwrap();
        out
    };
    let (a, b) = (run(&without), run(&with));
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / d_in as f64;
    for i in 0..d_in {
        let mut f = 0.0f64;
        for (l, &h) in skip.taps.iter().enumerate() {
            let j = i as isize + l as isize - 1;
            if (0..d_in as isize).contains(&j) {
                f += f64::from(h) * (f64::from(x[j as usize]) - mean);
            }
        }
        let d = f64::from(b[i]) - f64::from(a[i]);
        assert!((d - f).abs() < 1e-4, "sample {i}: {d} vs {f}");
    }
}
