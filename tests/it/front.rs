//! Integration tests: front — the convolutional front end before the encoder (format 5):
//! its arithmetic against a naive reference, the file format, every inference path (core,
//! streaming view, batched, int8) and, with training, the burn network it is exported from.

use crate::core_forward::{meta, random_tensors};
use crate::core_stream::{offline, streamed_equals_offline};
use mfr_eeg::batch::{BatchScratch, denoise_batched_into};
use mfr_eeg::core::{Activation, CoreError, FrontShape, Normalisation, Sae, Streamer};
use mfr_eeg::model::quantize::quantize_tensors;
use mfr_eeg::model::{FORMAT_VERSION_FRONT, FrontParams, Model, ModelTensors, SkipPath};
use mfr_eeg::rng::Rng;

const SHAPE: FrontShape = FrontShape {
    width: 3,
    depth: 2,
    kernel: 5,
};

fn front_params(seed: u64, shape: FrontShape) -> FrontParams {
    let mut r = Rng::new(seed);
    FrontParams {
        shape,
        params: (0..shape.n_params())
            .map(|_| (0.4 * r.normal()) as f32)
            .collect(),
    }
}

/// `g = x + conv1x1(relu(conv(relu(conv(x)))))` in f64 with explicit zero padding, read from
/// the packed parameters independently of the core.
fn reference_front(f: &FrontParams, x: &[f32]) -> Vec<f32> {
    let (w, k, d) = (f.shape.width, f.shape.kernel, x.len());
    let p: Vec<f64> = f.params.iter().map(|&v| f64::from(v)).collect();
    let mut off = 0;
    let mut layer = |h: &[Vec<f64>], cout: usize, k: usize, relu: bool| -> Vec<Vec<f64>> {
        let cin = h.len();
        let (wt, b) = (&p[off..off + cout * cin * k], &p[off + cout * cin * k..]);
        let y = (0..cout)
            .map(|o| {
                (0..d)
                    .map(|n| {
                        let mut s = b[o];
                        for (i, hi) in h.iter().enumerate() {
                            for l in 0..k {
                                let t = n as isize + l as isize - (k / 2) as isize;
                                if t >= 0 && (t as usize) < d {
                                    s += wt[(o * cin + i) * k + l] * hi[t as usize];
                                }
                            }
                        }
                        if relu { s.max(0.0) } else { s }
                    })
                    .collect()
            })
            .collect();
        off += cout * cin * k + cout;
        y
    };
    let mut h = vec![x.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>()];
    for _ in 0..f.shape.depth {
        h = layer(&h, w, k, true);
    }
    let out = layer(&h, 1, 1, false);
    out[0]
        .iter()
        .zip(x)
        .map(|(&o, &v)| (o + f64::from(v)) as f32)
        .collect()
}

fn with_front(t: &ModelTensors, f: &FrontParams) -> ModelTensors {
    ModelTensors {
        front: Some(f.clone()),
        ..t.clone()
    }
}

fn forward(sae: &Sae<'_>, x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; sae.d_in()];
    let mut scratch = vec![0.0; sae.scratch_len()];
    let mut topk = vec![0; sae.k()];
    sae.forward_into(x, &mut out, &mut scratch, &mut topk)
        .unwrap();
    out
}

fn signal(seed: u64, n: usize) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|i| (20.0 * (0.13 * i as f64).sin() + 5.0 * r.normal() + 3.0) as f32)
        .collect()
}

#[test]
fn the_front_is_the_reference_convolution_stack_before_the_encoder() {
    let (d_in, d_sae, k) = (24, 40, 6);
    let m = meta(d_in, d_sae, k, Activation::TopkRelu, Normalisation::None);
    let t = random_tensors(7, d_in, d_sae);
    let f = front_params(8, SHAPE);
    let fronted = Model::from_tensors(&m, &with_front(&t, &f)).unwrap();
    let plain = Model::from_tensors(&m, &t).unwrap();
    let mut r = Rng::new(9);
    let mut max_rel = 0.0f64;
    for _ in 0..20 {
        let x: Vec<f32> = (0..d_in).map(|_| r.normal() as f32).collect();
        // The fronted model on x is the plain model on g = front(x).
        let g = reference_front(&f, &x);
        let a = forward(&fronted.view().sae(), &x);
        let b = forward(&plain.view().sae(), &g);
        let scale = b.iter().map(|v| v.abs()).fold(1e-3f32, f32::max);
        for (p, q) in a.iter().zip(&b) {
            max_rel = max_rel.max(f64::from((p - q).abs() / scale));
        }
        // The front moves the window: the plain model on x differs.
        assert_ne!(a, forward(&plain.view().sae(), &x));
    }
    assert!(max_rel < 1e-5, "front vs reference: {max_rel}");
    // The linear path still acts on the window itself, not on g.
    let skip = SkipPath {
        taps: vec![0.2, 0.5, 0.2],
        gate: 1e9,
    };
    let both = Model::from_tensors(
        &m,
        &ModelTensors {
            skip: Some(skip),
            ..with_front(&t, &f)
        },
    )
    .unwrap();
    let x: Vec<f32> = (0..d_in).map(|i| (i as f32 * 0.3).sin()).collect();
    let (a, b) = (
        forward(&both.view().sae(), &x),
        forward(&fronted.view().sae(), &x),
    );
    for i in 1..d_in - 1 {
        let want = b[i] + 0.2 * x[i - 1] + 0.5 * x[i] + 0.2 * x[i + 1];
        assert!((a[i] - want).abs() < 1e-5, "{i}: {} vs {want}", a[i]);
    }
}

#[test]
fn the_front_travels_in_the_file_and_bad_fronts_are_refused() {
    let (d_in, d_sae, k) = (16, 24, 4);
    let m = meta(
        d_in,
        d_sae,
        k,
        Activation::TopkRelu,
        Normalisation::WindowZscore,
    );
    let t = random_tensors(1, d_in, d_sae);
    let f = front_params(2, SHAPE);
    let model = Model::from_tensors(&m, &with_front(&t, &f)).unwrap();
    let v = model.view();
    assert_eq!(v.meta().format_version, FORMAT_VERSION_FRONT);
    assert_eq!(v.meta().front, Some(SHAPE));
    assert_eq!(model.front().as_ref(), Some(&f));
    assert_eq!(model.tensors().front.as_ref(), Some(&f));
    // 3*1*5+3 + 3*3*5+3 + 3+1 parameters, 7 x 16 floats of scratch.
    assert_eq!(SHAPE.n_params(), 70);
    assert_eq!(v.sae().pre_len(), d_sae + 7 * d_in);
    assert_eq!(SHAPE.to_string(), "3x2k5");
    assert_eq!(FrontShape::parse("3x2k5"), Some(SHAPE));
    for bad in [
        "3x2k4", "0x2k5", "3x0k5", "3x2", "x2k5", "3x17k5", "257x1k1",
    ] {
        assert_eq!(FrontShape::parse(bad), None, "{bad}");
    }
    // A file without a front keeps its version; the same SAE without the front differs.
    let plain = Model::from_tensors(&m, &t).unwrap();
    assert_eq!(plain.view().meta().format_version, 1);
    assert_eq!(plain.view().meta().front, None);
    // Wrong parameter count: refused at writing, naming the front.
    let short = FrontParams {
        params: f.params[1..].to_vec(),
        ..f.clone()
    };
    let e = Model::from_tensors(&m, &with_front(&t, &short))
        .unwrap_err()
        .to_string();
    assert!(e.contains("front 3x2k5 needs 70 parameters, got 69"), "{e}");
    // A non-finite parameter: the reader names the tensor.
    let mut nan = f.clone();
    nan.params[10] = f32::NAN;
    let e = Model::from_tensors(&m, &with_front(&t, &nan))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`front`") && e.contains("element 10"), "{e}");
    // Edited metadata: a front claimed by a format-4 file, or an unparsable shape.
    let bytes = model.bytes().to_vec();
    let edit = |from: &str, to: &str| {
        let s = String::from_utf8_lossy(&bytes).into_owned();
        assert!(s.contains(from), "{from}");
        Model::from_bytes(s.replacen(from, to, 1).into_bytes())
    };
    assert!(matches!(
        edit("\"format_version\":\"5\"", "\"format_version\":\"4\""),
        Err(mfr_eeg::model::ModelFileError::Invalid {
            source: CoreError::UnknownTensor { .. },
            ..
        })
    ));
    assert!(matches!(
        edit("\"front\":\"3x2k5\"", "\"front\":\"3x2k6\""),
        Err(mfr_eeg::model::ModelFileError::Invalid {
            source: CoreError::BadMetadata { key: "front" },
            ..
        })
    ));
    // int8: the matrices are quantised, the front stays f32 and exact.
    let q = quantize_tensors(&m, &with_front(&t, &f));
    assert_eq!(q.front.as_ref(), Some(&f));
    let qm = Model::from_int8(&m, &q).unwrap();
    assert_eq!(qm.view().meta().format_version, FORMAT_VERSION_FRONT);
    assert_eq!(qm.front().as_ref(), Some(&f));
}

/// A random model with front end `shape` (d_sae 48, k 6), as f32 and as int8.
fn front_models(d_in: usize, shape: FrontShape) -> [Model; 2] {
    let (d_sae, k) = (48, 6);
    let m = meta(
        d_in,
        d_sae,
        k,
        Activation::TopkRelu,
        Normalisation::WindowZscoreNoMean,
    );
    let t = with_front(&random_tensors(3, d_in, d_sae), &front_params(4, shape));
    [
        Model::from_tensors(&m, &t).unwrap(),
        Model::from_int8(&m, &quantize_tensors(&m, &t)).unwrap(),
    ]
}

/// The batched path (same windows, encoder and front by products in another order) against
/// the core's offline result: within 1e-4 of the output's RMS.
fn assert_batched_matches_core(sae: &Sae<'_>, hop: usize, x: &[f32], batch: usize, what: &str) {
    let want = offline(sae, hop, x);
    let rms = (want.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    assert!(rms > 1.0, "{what}: {rms}");
    let mut got = vec![0.0; x.len()];
    denoise_batched_into(sae, hop, x, &mut got, &mut BatchScratch::with_batch(batch)).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(&a, &b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-4 * rms,
        "{what}: batched vs core {worst} (rms {rms})"
    );
}

#[test]
fn every_path_runs_the_front_alike() {
    let (d_in, hop) = (32, 4);
    let shape = FrontShape {
        width: 4,
        depth: 3,
        kernel: 7,
    };
    let x = signal(5, 700);
    for model in front_models(d_in, shape) {
        let sae = model.view().sae();
        assert_batched_matches_core(&sae, hop, &x, 5, "4x3k7");
        // Streaming view (buffers sized by the core) over the reflect-padded signal, in
        // random chunks: the offline result bit for bit, as `denoise_offline_into` specifies.
        assert!(streamed_equals_offline(sae, hop, &x, 7));
        // The const-generic streamer has no room for the front's scratch and says so.
        let e = Streamer::<'_, 32, 48, 6, 1>::new(sae, hop).err();
        assert_eq!(
            e,
            Some(CoreError::FrontNeedsStreamView { scratch: 9 * d_in })
        );
    }
}

/// The batched path's tiled convolution at shapes its tiles do not divide: widths not a
/// multiple of the 4-channel block and window lengths not a multiple of the 16-sample block
/// (the tails run one channel and one sample at a time), f32 and int8, against the core.
#[test]
fn batched_front_matches_the_core_at_odd_widths_and_lengths() {
    for (d_in, width, depth, kernel) in [(40, 6, 2, 5), (37, 5, 3, 3), (24, 1, 1, 9)] {
        let shape = FrontShape {
            width,
            depth,
            kernel,
        };
        for model in front_models(d_in, shape) {
            let what = format!("{shape} d_in {d_in}");
            assert_batched_matches_core(&model.view().sae(), 4, &signal(5, 700), 3, &what);
        }
    }
}

#[cfg(feature = "train")]
mod trained {
    use super::*;
    use mfr_eeg::eval::cnn::{CnnConfig, PeerArch, train_cnn};

    /// A conv-front SAE trained in burn, exported, and run by the core gives the network's
    /// own outputs: the exported packing, padding and TopK rule are the ones it trained with.
    #[test]
    fn the_core_runs_the_trained_burn_network() {
        let dev = burn::tensor::Device::flex();
        let d = 64;
        let data = crate::quality::cnn::half_of_noise(11, d, 256);
        let arch = PeerArch::Sae {
            d_sae: 48,
            k: 8,
            width: 4,
            depth: 2,
        };
        let cfg = CnnConfig {
            arch,
            width: 4,
            kernel: 5,
            steps: 40,
            batch: 32,
            lr: 1e-2,
            path_taps: 9,
            ..CnnConfig::default_peer()
        };
        let (net, _) = train_cnn(&cfg, &data, &data, &dev, |_, _| {}).unwrap();
        let t = net.model_tensors().unwrap();
        let f = t.front.clone().unwrap();
        assert_eq!(
            f.shape,
            FrontShape {
                width: 4,
                depth: 2,
                kernel: 5
            }
        );
        // Training moved the front's last layer off zero.
        assert!(f.params[f.params.len() - 5..].iter().any(|&v| v != 0.0));
        let m = meta(d, 48, 8, Activation::TopkRelu, Normalisation::None);
        let model = Model::from_tensors(&m, &t).unwrap();
        let sae = model.view().sae();
        let want = net.predict(&data.inputs[..64 * d], d, &dev);
        let mut close = 0;
        for (x, w) in data.inputs.chunks_exact(d).zip(want.chunks_exact(d)) {
            let got = forward(&sae, x);
            let scale = w.iter().map(|v| v.abs()).fold(1e-3f32, f32::max);
            let worst = got
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs() / scale)
                .fold(0.0f32, f32::max);
            close += usize::from(worst < 1e-4);
        }
        // f32 summation order differs between burn's convolution and the core's; a TopK tie
        // at the k-th place can flip in a rare window.
        assert!(close >= 62, "{close} of 64 windows agree");
    }
}
