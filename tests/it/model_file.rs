//! Integration tests: model_file — round trips, atomic writes, and every malformed case.

use crate::core_forward::{meta, random_tensors};
use mfr_eeg::core::{Activation, CoreError, Normalisation};
use mfr_eeg::model::{Model, ModelFileError, ModelTensors, ModelView, identity_model, write_model};
use mfr_eeg::rng::Rng;
use serde_json::{Value, json};

fn valid_meta() -> mfr_eeg::model::ModelMeta {
    let mut m = meta(
        7,
        13,
        3,
        Activation::TopkSigned,
        Normalisation::WindowZscore,
    );
    m.provenance = "trained on \"synthetic\" data\nline 2, µV, tab\there".into();
    m
}

/// Regression: metadata came from a `HashMap`, so two writes of the same model differed in
/// key order and a retrained model was never byte-identical.
#[test]
fn writing_the_same_model_twice_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    let m = valid_meta();
    let t = random_tensors(5, 7, 13);
    let mut files = Vec::new();
    for path in [&a, &b] {
        write_model(path, &m, &t).unwrap();
        files.push(std::fs::read(path).unwrap());
    }
    assert_eq!(files[0], files[1]);
    Model::load(&a).unwrap();
}

#[test]
fn round_trip_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let m = valid_meta();
    let t = random_tensors(3, 7, 13);
    write_model(&path, &m, &t).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(
        loaded.meta(),
        m,
        "metadata incl. escaped provenance survives"
    );
    assert_eq!(loaded.tensors(), t, "tensors survive bit for bit");
    let v = loaded.view();
    assert_eq!(
        (v.meta().d_in, v.meta().d_sae, v.meta().k, v.meta().hop),
        (7, 13, 3, 4)
    );
    assert_eq!(v.meta().format_version, 1);
    assert!(!v.meta().int8);
    // Only the model is left in the directory: no temporary files.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.safetensors")]);
}

#[test]
fn view_works_on_unaligned_bytes() {
    let m = Model::from_tensors(&valid_meta(), &random_tensors(4, 7, 13)).unwrap();
    let mut shifted = vec![0u8; m.bytes().len() + 1];
    shifted[1..].copy_from_slice(m.bytes());
    let v = ModelView::parse(&shifted[1..]).unwrap();
    let (mut a, mut b) = (vec![0.0; 7], vec![0.0; 7]);
    let mut s = vec![0.0; v.sae().scratch_len()];
    let mut idx = vec![0; 3];
    let x = [1.0, -2.0, 3.0, 0.5, 0.0, 4.0, -1.0];
    v.sae()
        .denoise_window_into(&x, &mut a, &mut s, &mut idx)
        .unwrap();
    m.view()
        .sae()
        .denoise_window_into(&x, &mut b, &mut s, &mut idx)
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn failed_write_leaves_existing_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (im, it) = identity_model(4, 2, 128.0);
    write_model(&path, &im, &it).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut bad = it.clone();
    bad.w_dec[3] = f32::NAN;
    let e = write_model(&path, &im, &bad).unwrap_err();
    assert!(
        matches!(
            e,
            ModelFileError::Invalid {
                source: CoreError::NonFiniteWeight {
                    tensor: "W_dec",
                    index: 3
                },
                ..
            }
        ),
        "{e}"
    );
    let mut short = it.clone();
    short.b_enc.pop();
    assert!(matches!(
        write_model(&path, &im, &short),
        Err(ModelFileError::Write { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary left behind"
    );
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let e = Model::load(&missing).unwrap_err();
    assert!(
        matches!(e, ModelFileError::Io { .. }) && e.to_string().contains("nope.safetensors"),
        "{e}"
    );
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x05\x00\x00\x00\x00\x00\x00\x00{\"a\"").unwrap();
    let e = Model::load(&junk).unwrap_err();
    assert!(
        e.to_string().contains("junk.safetensors") && e.to_string().contains("invalid model"),
        "{e}"
    );
}

/// A hand-built file: JSON header (from a serde_json value) + data bytes.
fn file(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// A valid d_in 2, d_sae 3, k 2 f32 model as (header, data) to be corrupted by each case.
fn base() -> (Value, Vec<u8>) {
    let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut data = f(&[0.5; 6]); // W_enc [2,3]: 0..24
    data.extend(f(&[0.25; 6])); // W_dec [3,2]: 24..48
    data.extend(f(&[0.0; 3])); // b_enc: 48..60
    data.extend(f(&[0.0; 2])); // b_dec: 60..68
    let header = json!({
        "__metadata__": {"format_version": "1", "d_in": "2", "d_sae": "3", "k": "2", "hop": "1",
            "activation": "topk_relu", "normalisation": "none", "sample_rate_hz": "128",
            "channel_type": "EEG", "provenance": "test"},
        "W_enc": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "W_dec": {"dtype": "F32", "shape": [3, 2], "data_offsets": [24, 48]},
        "b_enc": {"dtype": "F32", "shape": [3], "data_offsets": [48, 60]},
        "b_dec": {"dtype": "F32", "shape": [2], "data_offsets": [60, 68]},
    });
    (header, data)
}

fn parse_err(h: &Value, d: &[u8]) -> CoreError {
    match ModelView::parse(&file(h, d)) {
        Ok(_) => panic!("accepted a malformed model: {h}"),
        Err(e) => e,
    }
}

#[test]
fn base_case_is_valid() {
    let (h, d) = base();
    let bytes = file(&h, &d);
    let v = ModelView::parse(&bytes).unwrap();
    assert_eq!(v.meta().k, 2);
    assert_eq!(v.meta().channel_type, "EEG");
}

#[test]
fn every_malformed_case_gives_its_error() {
    let set = |path: &[&str], v: Value| {
        let (mut h, d) = base();
        let mut node = &mut h;
        for p in &path[..path.len() - 1] {
            node = node.get_mut(*p).unwrap();
        }
        node[path[path.len() - 1]] = v;
        (h, d)
    };
    type Case = (&'static str, (Value, Vec<u8>), CoreError);
    let cases: Vec<Case> = vec![
        (
            "wrong W_enc shape",
            set(&["W_enc", "shape"], json!([3, 2])),
            CoreError::ShapeMismatch {
                tensor: "W_enc",
                expected: [2, 3],
                got: [3, 2],
            },
        ),
        (
            "rank-3 b_dec",
            set(&["b_dec", "shape"], json!([2, 1, 1])),
            CoreError::ShapeMismatch {
                tensor: "b_dec",
                expected: [2, 0],
                got: [usize::MAX, 3],
            },
        ),
        (
            "k > d_sae",
            set(&["__metadata__", "k"], json!("4")),
            CoreError::InvalidK { k: 4, d_sae: 3 },
        ),
        (
            "k == 0",
            set(&["__metadata__", "k"], json!("0")),
            CoreError::InvalidK { k: 0, d_sae: 3 },
        ),
        (
            "hop 0",
            set(&["__metadata__", "hop"], json!("0")),
            CoreError::InvalidHop { hop: 0, d_in: 2 },
        ),
        (
            "hop > d_in",
            set(&["__metadata__", "hop"], json!("3")),
            CoreError::InvalidHop { hop: 3, d_in: 2 },
        ),
        (
            "unknown version",
            set(&["__metadata__", "format_version"], json!("8")),
            CoreError::UnsupportedVersion { found: 8 },
        ),
        (
            "unknown activation",
            set(&["__metadata__", "activation"], json!("relu")),
            CoreError::UnknownActivation,
        ),
        (
            "unknown normalisation",
            set(&["__metadata__", "normalisation"], json!("batchnorm")),
            CoreError::UnknownNormalisation,
        ),
        (
            "non-integer d_in",
            set(&["__metadata__", "d_in"], json!("2.0")),
            CoreError::BadMetadata { key: "d_in" },
        ),
        (
            "bad sample rate",
            set(&["__metadata__", "sample_rate_hz"], json!("-1")),
            CoreError::BadMetadata {
                key: "sample_rate_hz",
            },
        ),
        (
            "F16 dtype",
            set(&["b_enc", "dtype"], json!("F16")),
            CoreError::UnsupportedDtype { tensor: "b_enc" },
        ),
        (
            "I8 in a version-1 file",
            set(&["W_enc", "dtype"], json!("I8")),
            CoreError::UnsupportedDtype { tensor: "W_enc" },
        ),
        (
            "size/offset mismatch",
            set(&["b_enc", "data_offsets"], json!([48, 64])),
            CoreError::BadOffsets { tensor: "b_enc" },
        ),
        (
            "end before begin",
            set(&["b_enc", "data_offsets"], json!([60, 48])),
            CoreError::BadOffsets { tensor: "b_enc" },
        ),
        (
            "overlapping",
            set(&["W_dec", "data_offsets"], json!([0, 24])),
            CoreError::OverlappingTensors {
                a: "W_enc",
                b: "W_dec",
            },
        ),
        (
            "misaligned",
            set(&["b_dec", "data_offsets"], json!([58, 66])),
            CoreError::MisalignedTensor { tensor: "b_dec" },
        ),
        (
            "beyond the data",
            set(&["b_dec", "data_offsets"], json!([64, 72])),
            CoreError::Truncated { needed: 0, got: 0 },
        ), // needed/got checked below
    ];
    for (name, (h, d), want) in cases {
        let got = parse_err(&h, &d);
        if let CoreError::Truncated { .. } = want {
            assert!(
                matches!(got, CoreError::Truncated { .. }),
                "{name}: {got:?}"
            );
        } else {
            assert_eq!(got, want, "{name}");
        }
        assert!(!got.to_string().is_empty());
    }

    let (mut h, d) = base();
    h.as_object_mut().unwrap().remove("b_dec");
    assert_eq!(
        parse_err(&h, &d[..60]),
        CoreError::MissingTensor { tensor: "b_dec" }
    );
    let (mut h, d) = base();
    h["__metadata__"]
        .as_object_mut()
        .unwrap()
        .remove("activation");
    assert_eq!(
        parse_err(&h, &d),
        CoreError::MissingMetadata { key: "activation" }
    );
    let (mut h, d) = base();
    h["W_extra"] = json!({"dtype": "F32", "shape": [1], "data_offsets": [68, 72]});
    assert!(matches!(
        parse_err(&h, &[d, vec![0; 4]].concat()),
        CoreError::UnknownTensor { .. }
    ));
    let (h, mut d) = base();
    d.extend([0u8; 4]);
    assert_eq!(
        parse_err(&h, &d),
        CoreError::UncoveredData {
            data_len: 72,
            covered: 68
        }
    );
    let (h, mut d) = base();
    d[24..28].copy_from_slice(&f32::INFINITY.to_le_bytes());
    assert_eq!(
        parse_err(&h, &d),
        CoreError::NonFiniteWeight {
            tensor: "W_dec",
            index: 0
        }
    );
    let (h, mut d) = base();
    d[64..68].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_eq!(
        parse_err(&h, &d),
        CoreError::NonFiniteWeight {
            tensor: "b_dec",
            index: 1
        }
    );
    // A duplicated key (serde_json cannot produce one, so splice the text).
    let (h, d) = base();
    let text =
        serde_json::to_string(&h)
            .unwrap()
            .replacen("{\"W_dec\"", "{\"W_dec\":{},\"W_dec\"", 1);
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend(text.as_bytes());
    bytes.extend(&d);
    assert!(ModelView::parse(&bytes).is_err());
    // Broken JSON.
    let mut bytes = 3u64.to_le_bytes().to_vec();
    bytes.extend(b"{\"a");
    assert!(matches!(
        ModelView::parse(&bytes),
        Err(CoreError::HeaderSyntax { .. })
    ));
    // Header length larger than the file, and a huge header length.
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend(b"{}");
    assert_eq!(
        ModelView::parse(&bytes).unwrap_err(),
        CoreError::Truncated {
            needed: 1008,
            got: 10
        }
    );
    assert!(matches!(
        ModelView::parse(&u64::MAX.to_le_bytes()),
        Err(CoreError::HeaderTooLarge { .. })
    ));
    assert_eq!(
        ModelView::parse(&[1, 2, 3]).unwrap_err(),
        CoreError::Truncated { needed: 8, got: 3 }
    );
}

#[test]
fn every_truncation_and_random_corruption_is_an_error_not_a_panic() {
    let m = Model::from_tensors(&valid_meta(), &random_tensors(6, 7, 13)).unwrap();
    let bytes = m.bytes();
    for len in 0..bytes.len() {
        assert!(
            ModelView::parse(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    // Random byte flips: any result is fine except a panic (and a flip in the header that
    // still parses must still give a self-consistent model).
    let mut r = Rng::new(1);
    for _ in 0..3000 {
        let mut b = bytes.to_vec();
        for _ in 0..1 + r.below(4) {
            let i = r.below(b.len() as u64) as usize;
            b[i] ^= 1 << r.below(8);
        }
        if let Ok(v) = ModelView::parse(&b) {
            assert!(v.meta().k <= v.meta().d_sae);
        }
    }
}

#[test]
fn int8_round_trip_version_2_and_v1_still_loads() {
    use mfr_eeg::model::quantize::quantize_tensors;
    use mfr_eeg::model::write_model_int8;
    let dir = tempfile::tempdir().unwrap();
    let m = valid_meta();
    let t = random_tensors(9, 7, 13);
    let q = quantize_tensors(&m, &t);
    let p8 = dir.path().join("q.safetensors");
    write_model_int8(&p8, &m, &q).unwrap();
    let l = Model::load(&p8).unwrap();
    assert!(l.is_int8());
    assert_eq!(l.view().meta().format_version, 2);
    assert_eq!(l.quantized().unwrap(), q);
    assert_eq!(l.meta(), m);
    // Dequantised weights are within half a quantisation step of the originals.
    let d = l.tensors();
    for (n, (&a, &b)) in d.w_enc.iter().zip(&t.w_enc).enumerate() {
        assert!(
            (a - b).abs() <= 0.5 * q.w_enc_scale[n % 13] * 1.0001,
            "W_enc[{n}]"
        );
    }
    // A version-1 f32 file still loads next to it.
    let p1 = dir.path().join("f.safetensors");
    write_model(&p1, &m, &t).unwrap();
    assert_eq!(Model::load(&p1).unwrap().view().meta().format_version, 1);
}

#[test]
fn malformed_int8_files() {
    use mfr_eeg::model::quantize::quantize_tensors;
    let m = valid_meta();
    let q = quantize_tensors(&m, &random_tensors(9, 7, 13));
    let good = Model::from_int8(&m, &q).unwrap();
    let bytes = good.bytes().to_vec();
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + hlen]).unwrap();
    let data = &bytes[8 + hlen..];
    // Missing scale: drop its bytes and shift the offsets of the tensors after it.
    let mut h = header.clone();
    let so = h["W_dec_scale"]["data_offsets"].clone();
    h.as_object_mut().unwrap().remove("W_dec_scale");
    let (s0, s1) = (so[0].as_u64().unwrap(), so[1].as_u64().unwrap());
    for (name, info) in h.as_object_mut().unwrap().iter_mut() {
        if name != "__metadata__" {
            for o in info["data_offsets"].as_array_mut().unwrap() {
                let v = o.as_u64().unwrap();
                if v >= s1 {
                    *o = json!(v - (s1 - s0));
                }
            }
        }
    }
    let cut = [&data[..s0 as usize], &data[s1 as usize..]].concat();
    assert_eq!(
        parse_err(&h, &cut),
        CoreError::MissingTensor {
            tensor: "W_dec_scale"
        }
    );
    // Non-finite scale.
    let mut d = data.to_vec();
    d[s0 as usize..s0 as usize + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_eq!(
        parse_err(&header, &d),
        CoreError::NonFiniteWeight {
            tensor: "W_dec_scale",
            index: 0
        }
    );
    // Mixed dtypes: W_dec F32 in an int8 file.
    let mut h = header.clone();
    h["W_dec"]["dtype"] = json!("F32");
    assert_eq!(
        parse_err(&h, data),
        CoreError::UnsupportedDtype { tensor: "W_dec" }
    );
    // Scale tensors in an f32 file are rejected.
    let (mut h, d) = base();
    h["__metadata__"]["format_version"] = json!("2");
    h["W_enc_scale"] = json!({"dtype": "F32", "shape": [3], "data_offsets": [68, 80]});
    assert!(matches!(
        parse_err(&h, &[d, vec![0; 12]].concat()),
        CoreError::UnknownTensor { .. }
    ));
}

#[test]
fn quantize_command_on_identity_model() {
    use mfr_eeg::eval::quantize::{QuantizeError, QuantizeOptions, quantize_file};
    let dir = tempfile::tempdir().unwrap();
    let (m, t) = identity_model(64, 32, 128.0);
    let src = dir.path().join("id.safetensors");
    let dst = dir.path().join("id8.safetensors");
    write_model(&src, &m, &t).unwrap();
    let r = quantize_file(
        &src,
        &dst,
        &QuantizeOptions {
            seed: 3,
            segments: 60,
            force: false,
        },
    )
    .unwrap();
    assert!(r.windows > 0);
    // The identity's +-1 weights are exact in int8; only the 16-bit activation codes differ,
    // so the int8 copy must match f32 quality to far better than the 2 % the command allows.
    assert!(
        r.rrmse_loss().abs() < 1e-3 && r.cc_loss().abs() < 1e-3,
        "{r}"
    );
    assert!(r.output_deviation < 1e-3, "{r}");
    assert!(r.bytes_int8 * 3 < r.bytes_f32, "{r}");
    let q = Model::load(&dst).unwrap();
    assert!(q.is_int8());
    // Quantising an int8 model is refused.
    assert!(matches!(
        quantize_file(
            &dst,
            &dir.path().join("x"),
            &QuantizeOptions {
                seed: 3,
                segments: 60,
                force: false,
            }
        ),
        Err(QuantizeError::AlreadyInt8 { .. })
    ));
}

/// Eigenvectors of a symmetric matrix (cyclic Jacobi), columns sorted by descending eigenvalue.
fn symmetric_eigenvectors(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..30 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off < 1e-18 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| a[y * n + y].partial_cmp(&a[x * n + x]).unwrap());
    let vals = order.iter().map(|&i| a[i * n + i]).collect();
    let vecs = (0..n)
        .flat_map(|r| order.iter().map(move |&c| (r, c)))
        .map(|(r, c)| v[r * n + c])
        .collect();
    (vals, vecs)
}

/// A structured (not random) model for the quantiser: a sparse PCA denoiser whose dictionary is
/// the top principal components of clean EEG windows from eval's seeded synthetic *train*
/// split, as `W_enc = [U, -U]`, `W_dec = [U; -U]^T`, so TopK keeps the k strongest components.
/// Measured on the *test* split, the int8 copy must stay within the 2 % the command enforces.
#[test]
fn int8_pca_dictionary_within_two_percent_on_synthetic_test_split() {
    use mfr_eeg::core::zscore_stats;
    use mfr_eeg::eval::data::{
        ArtifactKind, ArtifactSource, SnrPlan, make_windows, model_segments, split_segments,
    };
    use mfr_eeg::eval::quantize::evaluate;
    use mfr_eeg::model::quantize::quantize_tensors;
    let (d_in, comps, k, fs) = (128usize, 64usize, 8usize, 128.0);
    let seed = 2024; // the quantize command's default seed: the same test split
    let segs = model_segments(seed, 200, 2 * d_in, fs, 0);
    let train = split_segments(segs, (0.7, 0.15), seed).train;
    let plan = SnrPlan::Uniform {
        lo: -7.0,
        hi: 4.0,
        per_segment: 4,
    };
    let wins = make_windows(
        &train,
        ArtifactKind::Mixed,
        ArtifactSource::Generated,
        &plan,
        d_in,
        fs,
        1,
    )
    .unwrap();
    // Covariance of the clean targets in the model's normalised domain (noisy window's z-score).
    let mut cov = vec![0.0f64; d_in * d_in];
    for w in &wins {
        let (m, s) = zscore_stats(&w.noisy);
        let c: Vec<f64> = w.clean.iter().map(|&v| f64::from((v - m) / s)).collect();
        for i in 0..d_in {
            for j in 0..d_in {
                cov[i * d_in + j] += c[i] * c[j];
            }
        }
    }
    let (_vals, u) = symmetric_eigenvectors(cov, d_in);
    let d_sae = 2 * comps;
    let mut w_enc = vec![0.0f32; d_in * d_sae];
    let mut w_dec = vec![0.0f32; d_sae * d_in];
    for i in 0..d_in {
        for c in 0..comps {
            let x = u[i * d_in + c] as f32;
            w_enc[i * d_sae + c] = x;
            w_enc[i * d_sae + comps + c] = -x;
            w_dec[c * d_in + i] = x;
            w_dec[(comps + c) * d_in + i] = -x;
        }
    }
    let t = ModelTensors {
        w_enc,
        w_dec,
        b_enc: vec![0.0; d_sae],
        b_dec: vec![0.0; d_in],
        skip: None,
        front: None,
    };
    let mut m = meta(
        d_in,
        d_sae,
        k,
        Activation::TopkRelu,
        Normalisation::WindowZscore,
    );
    m.hop = d_in / 2;
    m.sample_rate_hz = fs as f32;
    let f = Model::from_tensors(&m, &t).unwrap();
    let q = Model::from_int8(&m, &quantize_tensors(&m, &t)).unwrap();
    let r = evaluate(&f, &q, seed, 200).unwrap();
    eprintln!("PCA dictionary d_in {d_in} d_sae {d_sae} k {k}:\n{r}");
    // The dictionary must actually denoise (RRMSE_t clearly below the noisy input's), or the
    // 2 % comparison below would be between two useless models.
    assert!(r.rrmse_t_f32 < 0.9 * r.rrmse_t_input, "{r}");
    // The quantize command's acceptance: int8 no more than 2 % worse in RRMSE_t and CC.
    assert!(r.acceptable(), "{r}");
}

/// Format 3's linear path: tensor and gate come together, from version 3 on, with an odd tap
/// count <= d_in and a finite gate >= 0.
#[test]
fn malformed_skip_paths() {
    let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let with_skip = |version: &str, taps: usize, gate: Option<&str>| {
        let (mut h, mut d) = base();
        h["__metadata__"]["format_version"] = json!(version);
        if let Some(g) = gate {
            h["__metadata__"]["skip_gate"] = json!(g);
        }
        h["skip_taps"] =
            json!({"dtype": "F32", "shape": [taps], "data_offsets": [68, 68 + 4 * taps]});
        d.extend(f(&vec![0.5; taps]));
        (h, d)
    };
    let (h, d) = with_skip("3", 1, Some("0.4"));
    let bytes = file(&h, &d);
    let v = ModelView::parse(&bytes).unwrap();
    assert_eq!(v.meta().skip_gate, Some(0.4));
    assert_eq!(v.sae().skip().map(|s| s.len()), Some(1));
    let (h, d) = with_skip("1", 1, Some("0.4"));
    assert!(matches!(parse_err(&h, &d), CoreError::UnknownTensor { .. }));
    let (h, d) = with_skip("3", 1, None);
    assert_eq!(
        parse_err(&h, &d),
        CoreError::MissingMetadata { key: "skip_gate" }
    );
    let (h, d) = with_skip("3", 2, Some("0.4"));
    assert!(matches!(
        parse_err(&h, &d),
        CoreError::ShapeMismatch {
            tensor: "skip_taps",
            ..
        }
    ));
    let (h, d) = with_skip("3", 3, Some("0.4")); // 3 taps > d_in 2
    assert!(matches!(
        parse_err(&h, &d),
        CoreError::ShapeMismatch {
            tensor: "skip_taps",
            ..
        }
    ));
    for bad in ["-1", "nan", "x"] {
        let (h, d) = with_skip("3", 1, Some(bad));
        assert_eq!(
            parse_err(&h, &d),
            CoreError::BadMetadata { key: "skip_gate" },
            "{bad}"
        );
    }
    let (mut h, d) = base();
    h["__metadata__"]["skip_gate"] = json!("0.4");
    h["__metadata__"]["format_version"] = json!("3");
    assert_eq!(
        parse_err(&h, &d),
        CoreError::MissingTensor {
            tensor: "skip_taps"
        }
    );
}

/// The base case's header with `format_version` and metadata `key` set.
fn base_with(version: &str, key: &str, value: &str) -> (Value, Vec<u8>) {
    let (mut h, d) = base();
    h["__metadata__"]["format_version"] = json!(version);
    h["__metadata__"][key] = json!(value);
    (h, d)
}

/// `m` written with `t` into `dir` and loaded back, first as `without` leaves it, then as it is.
fn written_with_and_without(
    dir: &tempfile::TempDir,
    m: &mfr_eeg::model::ModelMeta,
    t: &ModelTensors,
    without: impl Fn(&mut mfr_eeg::model::ModelMeta),
) -> (Model, Model) {
    let mut plain = m.clone();
    without(&mut plain);
    let (a, b) = (
        dir.path().join("without.safetensors"),
        dir.path().join("with.safetensors"),
    );
    write_model(&a, &plain, t).unwrap();
    write_model(&b, m, t).unwrap();
    (Model::load(&a).unwrap(), Model::load(&b).unwrap())
}

/// A model naming the sine taper is written as format 4 with metadata `ola`, reads back with
/// it, and hands it to every streamer through its SAE; a Hann model stays as it was. A file
/// naming a taper at an older version, or an unknown taper, is refused.
#[test]
fn the_overlap_add_taper_travels_in_the_file() {
    use mfr_eeg::core::OlaShape;
    let dir = tempfile::tempdir().unwrap();
    let t = random_tensors(4, 7, 13);
    let mut m = valid_meta();
    m.ola = OlaShape::Sine;
    let (h, s) = written_with_and_without(&dir, &m, &t, |m| m.ola = OlaShape::Hann);
    assert_eq!(
        (h.view().meta().format_version, h.view().meta().ola),
        (1, OlaShape::Hann)
    );
    assert!(
        !String::from_utf8_lossy(&std::fs::read(dir.path().join("without.safetensors")).unwrap())
            .contains("\"ola\"")
    );
    assert_eq!(
        (s.view().meta().format_version, s.view().meta().ola),
        (mfr_eeg::model::FORMAT_VERSION_OLA, OlaShape::Sine)
    );
    assert_eq!(s.meta(), m);
    assert_eq!(s.tensors(), t);
    assert_eq!(s.view().sae().ola_shape(), OlaShape::Sine);
    assert_eq!(h.view().sae().ola_shape(), OlaShape::Hann);

    let with = |version: &str, ola: &str| base_with(version, "ola", ola);
    let (hd, d) = with("4", "sine");
    assert_eq!(
        ModelView::parse(&file(&hd, &d)).unwrap().meta().ola,
        OlaShape::Sine
    );
    let bad = CoreError::BadMetadata { key: "ola" };
    let (hd, d) = with("1", "sine");
    assert_eq!(parse_err(&hd, &d), bad, "a taper before format 4");
    let (hd, d) = with("4", "cosine");
    assert_eq!(parse_err(&hd, &d), bad, "an unknown taper");
}

/// A model with a correction gate is written as format 6 with metadata `blend`, reads back
/// with it and hands it to its SAE; a gate at an older version, or an invalid one, is refused.
#[test]
fn the_correction_gate_travels_in_the_file() {
    use mfr_eeg::core::Blend;
    let dir = tempfile::tempdir().unwrap();
    let t = random_tensors(4, 7, 13);
    let mut m = valid_meta();
    m.blend = Some(Blend::new(0.125, 0.625));
    let (p, g) = written_with_and_without(&dir, &m, &t, |m| m.blend = None);
    assert_eq!(p.view().meta().format_version, 1);
    assert_eq!(p.view().sae().blend(), None);
    assert_eq!(
        g.view().meta().format_version,
        mfr_eeg::model::FORMAT_VERSION_BLEND
    );
    assert_eq!(g.meta(), m);
    assert_eq!(g.view().sae().blend(), Some(Blend::new(0.125, 0.625)));

    let with = |version: &str, blend: &str| base_with(version, "blend", blend);
    let (hd, d) = with("6", "0.1,0.4");
    assert_eq!(
        ModelView::parse(&file(&hd, &d)).unwrap().meta().blend,
        Some(Blend::new(0.1, 0.4))
    );
    let bad = CoreError::BadMetadata { key: "blend" };
    for (version, blend, why) in [
        ("5", "0.1,0.4", "a gate before format 6"),
        ("6", "0.4,0.1", "lo above hi"),
        ("6", "0.1", "one number"),
        ("6", "-1,0.4", "a negative lo"),
    ] {
        let (hd, d) = with(version, blend);
        assert_eq!(parse_err(&hd, &d), bad, "{why}");
    }
}

/// A gate with a slow ramp is written as format 7 with metadata `blend_slow`, reads back with
/// it and hands it to its SAE; a slow ramp at an older version, without the fast ramp, or
/// invalid, is refused.
#[test]
fn the_slow_ramp_travels_in_the_file() {
    use mfr_eeg::core::{Blend, SlowGate};
    let dir = tempfile::tempdir().unwrap();
    let t = random_tensors(4, 7, 13);
    let mut m = valid_meta();
    let slow = SlowGate {
        lo: 0.2,
        hi: 0.5,
        half: 16,
    };
    m.blend = Some(Blend {
        slow: Some(slow),
        ..Blend::new(0.0, 0.9)
    });
    let (p, g) = written_with_and_without(&dir, &m, &t, |m| m.blend = Some(Blend::new(0.0, 0.9)));
    assert_eq!(
        p.view().meta().format_version,
        mfr_eeg::model::FORMAT_VERSION_BLEND
    );
    assert_eq!(
        g.view().meta().format_version,
        mfr_eeg::model::FORMAT_VERSION_BLEND_SLOW
    );
    assert_eq!(g.meta(), m);
    assert_eq!(g.view().sae().blend(), m.blend);

    let with = |version: &str, blend: Option<&str>, slow: &str| {
        let (mut h, d) = base_with(version, "blend_slow", slow);
        if let Some(b) = blend {
            h["__metadata__"]["blend"] = json!(b);
        }
        (h, d)
    };
    let (hd, d) = with("7", Some("0,0.9"), "0.2,0.5,16");
    assert_eq!(
        ModelView::parse(&file(&hd, &d)).unwrap().meta().blend,
        m.blend
    );
    let bad = CoreError::BadMetadata { key: "blend_slow" };
    for (version, blend, slow, why) in [
        (
            "6",
            Some("0,0.9"),
            "0.2,0.5,16",
            "a slow ramp before format 7",
        ),
        ("7", None, "0.2,0.5,16", "a slow ramp without the fast one"),
        ("7", Some("0,0.9"), "0.2,0.5", "no half-width"),
        ("7", Some("0,0.9"), "0.2,0.5,0", "a zero half-width"),
        ("7", Some("0,0.9"), "0.5,0.2,16", "lo above hi"),
    ] {
        let (hd, d) = with(version, blend, slow);
        assert_eq!(parse_err(&hd, &d), bad, "{why}");
    }
}
