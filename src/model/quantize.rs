//! Post-training int8 quantisation of a model's tensors (symmetric, one f32 scale per
//! latent). Measuring the int8 model against the f32 one and writing the file is
//! `crate::eval::quantize` (behind `mfr-eeg quantize`).

use super::file::{ModelMeta, ModelTensors, QuantizedTensors};

/// Quantises `t` symmetrically to int8 in [-127, 127] with one scale per latent: per column of
/// `W_enc` and per row of `W_dec` (`scale = max |w| / 127`, 0 for an all-zero latent). Biases,
/// the linear path and the front end stay f32.
pub fn quantize_tensors(meta: &ModelMeta, t: &ModelTensors) -> QuantizedTensors {
    let (d_in, d_sae) = (meta.d_in, meta.d_sae);
    let mut enc_max = vec![0.0f32; d_sae];
    for row in t.w_enc.chunks_exact(d_sae) {
        for (m, &w) in enc_max.iter_mut().zip(row) {
            *m = m.max(w.abs());
        }
    }
    let w_enc_scale: Vec<f32> = enc_max.iter().map(|&m| m / 127.0).collect();
    let w_dec_scale: Vec<f32> = t
        .w_dec
        .chunks_exact(d_in)
        .map(|r| r.iter().fold(0.0f32, |a, &w| a.max(w.abs())) / 127.0)
        .collect();
    let q = |w: f32, s: f32| {
        if s > 0.0 {
            (w / s).round().clamp(-127.0, 127.0) as i8
        } else {
            0
        }
    };
    let w_enc = t
        .w_enc
        .iter()
        .enumerate()
        .map(|(n, &w)| q(w, w_enc_scale[n % d_sae]))
        .collect();
    let w_dec = t
        .w_dec
        .iter()
        .enumerate()
        .map(|(n, &w)| q(w, w_dec_scale[n / d_in]))
        .collect();
    QuantizedTensors {
        w_enc,
        w_enc_scale,
        w_dec,
        w_dec_scale,
        b_enc: t.b_enc.clone(),
        b_dec: t.b_dec.clone(),
        skip: t.skip.clone(),
        front: t.front.clone(),
    }
}
