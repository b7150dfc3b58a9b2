//! One TopK rule everywhere: the core's `topk_into` (largest first, ties to the lower index,
//! `-0.0 == 0.0`) is the reference, and every other selection path must keep the same set:
//! the int8 forward behind `quantize`, eval's `SaeMethod`, and (with `train`) the host mask,
//! the sparse step's row selector and the device mask.

#[cfg(feature = "train")]
use mfr_eeg::core::topk_into;
use mfr_eeg::core::{Activation, Normalisation};
use mfr_eeg::eval::harness::{Method, SaeMethod};
use mfr_eeg::model::quantize::quantize_tensors;
use mfr_eeg::model::{Model, ModelMeta, ModelTensors};
#[cfg(feature = "train")]
use mfr_eeg::rng::Rng;

/// A model whose pre-activations are exactly `b_enc` (W_enc = 0) with a three-way tie at 3.0
/// over latents 1, 2 and 4, and whose decoder row `j` is the constant `j + 1`: keeping
/// {1, 2} outputs 3 * (2 + 3) = 15 everywhere, while {1, 4} or {2, 4} would give 21 or 24.
fn tied_model(act: Activation) -> (ModelMeta, ModelTensors) {
    let (d_in, d_sae, k) = (4, 6, 2);
    let meta = ModelMeta {
        d_in,
        d_sae,
        k,
        hop: 2,
        activation: act,
        normalisation: Normalisation::None,
        sample_rate_hz: 128.0,
        channel_type: "EEG".into(),
        provenance: "tie test".into(),
        ola: mfr_eeg::core::OlaShape::Hann,
        blend: None,
    };
    let t = ModelTensors {
        w_enc: vec![0.0; d_in * d_sae],
        w_dec: (0..d_sae * d_in).map(|n| (n / d_in + 1) as f32).collect(),
        b_enc: vec![1.0, 3.0, 3.0, 2.0, 3.0, 0.0],
        b_dec: vec![0.0; d_in],
        skip: None,
        front: None,
    };
    (meta, t)
}

#[test]
fn int8_forward_and_eval_keep_the_lower_index_on_ties() {
    for act in [Activation::TopkRelu, Activation::TopkSigned] {
        let (meta, t) = tied_model(act);
        let f32_model = Model::from_tensors(&meta, &t).unwrap();
        let int8_model = Model::from_int8(&meta, &quantize_tensors(&meta, &t)).unwrap();
        for m in [&f32_model, &int8_model] {
            let sae = m.view().sae();
            let (mut out, mut s, mut idx) =
                (vec![0.0; 4], vec![0.0; sae.scratch_len()], vec![0; 2]);
            sae.forward_into(&[0.5, -1.0, 2.0, 0.25], &mut out, &mut s, &mut idx)
                .unwrap();
            assert_eq!(
                idx,
                [1, 2],
                "int8 {}: ties keep 1 and 2, not 4",
                m.is_int8()
            );
            // f32: small integers, exact. int8: each row is 127 codes of scale (j + 1) / 127,
            // one f32 rounding per factor.
            let tol = if m.is_int8() { 1e-5 } else { 0.0 };
            assert!(
                out.iter().all(|v| (v - 15.0).abs() <= tol),
                "int8 {}: {out:?}",
                m.is_int8()
            );
            // eval's method: overlap-add of windows that all output 15 (weights sum to 1).
            let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.3).sin()).collect();
            let y = SaeMethod::new("tie", m.clone()).denoise(&x).unwrap();
            assert!(
                y.iter().all(|v| (v - 15.0).abs() < 1e-4),
                "int8 {}: {y:?}",
                m.is_int8()
            );
        }
    }
}

/// The core's kept set for `row`, sorted by index.
#[cfg(feature = "train")]
fn core_set(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx = vec![0usize; k.min(row.len())];
    let n = topk_into(row, &mut idx);
    idx.truncate(n);
    idx.sort_unstable();
    idx
}

/// Rows with few distinct values (many ties), signed zeros among them.
#[cfg(feature = "train")]
fn tied_rows(seed: u64, trials: usize) -> Vec<(Vec<f32>, usize)> {
    let mut rng = Rng::new(seed);
    (0..trials)
        .map(|t| {
            let cols = 1 + t % 17;
            let row = (0..cols)
                .map(|_| match rng.below(5) {
                    0 => -0.0,
                    1 => 0.0,
                    v => v as f32 - 3.0,
                })
                .collect();
            (row, t % 9)
        })
        .collect()
}

#[cfg(feature = "train")]
#[test]
fn host_mask_and_sparse_row_selection_match_the_core_on_ties() {
    use mfr_eeg::train::topk::{topk_mask_host, topk_row};
    let (mut buf, mut sel) = (Vec::new(), Vec::new());
    for (trial, (row, k)) in tied_rows(11, 400).into_iter().enumerate() {
        let want = core_set(&row, k);
        let mask = topk_mask_host(&row, row.len(), k, None);
        let got: Vec<usize> = (0..row.len()).filter(|&j| mask[j] == 1.0).collect();
        assert_eq!(got, want, "host mask, trial {trial}: {row:?} k {k}");
        sel.clear();
        topk_row(&row, None, k, &mut buf, &mut sel);
        let got: Vec<usize> = sel.iter().map(|&j| j as usize).collect();
        assert_eq!(got, want, "sparse row, trial {trial}: {row:?} k {k}");
        // AuxK's restricted selection: the core's rule over the allowed entries only.
        let allowed: Vec<bool> = (0..row.len()).map(|j| (j * 7 + trial) % 3 != 0).collect();
        let kept: Vec<usize> = (0..row.len()).filter(|&j| allowed[j]).collect();
        let sub: Vec<f32> = kept.iter().map(|&j| row[j]).collect();
        let want: Vec<usize> = core_set(&sub, k).into_iter().map(|i| kept[i]).collect();
        sel.clear();
        topk_row(&row, Some(&allowed), k, &mut buf, &mut sel);
        let got: Vec<usize> = sel.iter().map(|&j| j as usize).collect();
        assert_eq!(got, want, "restricted, trial {trial}: {row:?} k {k}");
    }
}

#[cfg(feature = "train")]
#[test]
fn device_mask_matches_the_core_on_ties() {
    use burn::tensor::{Tensor, TensorData};
    use mfr_eeg::train::BackendKind;
    let device = BackendKind::Flex.device().unwrap();
    let cols = 12;
    let rows: Vec<(Vec<f32>, usize)> = tied_rows(12, 60)
        .into_iter()
        .map(|(mut r, k)| {
            r.resize(cols, 1.0);
            (r, k)
        })
        .collect();
    for k in [1, 3, 5, 11] {
        let flat: Vec<f32> = rows.iter().flat_map(|(r, _)| r.iter().copied()).collect();
        let keys = Tensor::<2>::from_data(TensorData::new(flat, [rows.len(), cols]), &device);
        let mask = mfr_eeg::train::topk::topk_mask(keys, k)
            .try_into_vec_as::<f32>()
            .unwrap();
        for (r, ((row, _), m)) in rows.iter().zip(mask.chunks_exact(cols)).enumerate() {
            let got: Vec<usize> = (0..cols).filter(|&j| m[j] == 1.0).collect();
            assert_eq!(got, core_set(row, k), "row {r} k {k}: {row:?}");
        }
    }
}
