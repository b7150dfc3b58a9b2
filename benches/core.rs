//! Criterion benches of the inference core: f32 forward (one window, and a batch of windows
//! through the offline path), 8-channel streaming, int8 vs f32 forward, and the forward behind
//! a convolutional front end.
//!
//! `cargo bench --bench core` (add `--no-default-features --features std` to skip burn).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mfr_eeg::core::{
    Activation, Normalisation, StreamView, denoise_offline_into, offline_work_len,
};
use mfr_eeg::model::quantize::quantize_tensors;
use mfr_eeg::model::{Model, ModelMeta, ModelTensors};
use mfr_eeg::rng::Rng;
use std::hint::black_box;

fn models(d_in: usize, d_sae: usize, k: usize) -> (Model, Model) {
    let (f, q, _) = models_with_front(d_in, d_sae, k);
    (f, q)
}

/// The f32 and int8 models, and the f32 one behind a 16x3k7 convolutional front end.
fn models_with_front(d_in: usize, d_sae: usize, k: usize) -> (Model, Model, Model) {
    let meta = ModelMeta {
        d_in,
        d_sae,
        k,
        hop: d_in / 2,
        activation: Activation::TopkRelu,
        normalisation: Normalisation::WindowZscore,
        sample_rate_hz: 256.0,
        channel_type: "EEG".into(),
        provenance: "bench: seeded random weights".into(),
        ola: mfr_eeg::core::OlaShape::Hann,
        blend: None,
    };
    let mut r = Rng::new(1);
    let s = 1.0 / (d_in as f64).sqrt();
    let mut v = |n: usize, sd: f64| {
        (0..n)
            .map(|_| (r.normal() * sd) as f32)
            .collect::<Vec<f32>>()
    };
    let t = ModelTensors {
        w_enc: v(d_in * d_sae, s),
        w_dec: v(d_sae * d_in, s),
        b_enc: v(d_sae, 0.1),
        b_dec: v(d_in, 0.1),
        skip: None,
        front: None,
    };
    let f = Model::from_tensors(&meta, &t).expect("f32 model");
    let q = Model::from_int8(&meta, &quantize_tensors(&meta, &t)).expect("int8 model");
    let shape = mfr_eeg::core::FrontShape {
        width: 16,
        depth: 3,
        kernel: 7,
    };
    let front = mfr_eeg::model::FrontParams {
        shape,
        params: v(shape.n_params(), 0.1),
    };
    let fr = Model::from_tensors(
        &meta,
        &ModelTensors {
            front: Some(front),
            ..t
        },
    )
    .expect("front model");
    (f, q, fr)
}

fn signal(n: usize) -> Vec<f32> {
    let mut r = Rng::new(2);
    (0..n)
        .map(|i| (20.0 * (i as f64 * 0.25).sin() + 5.0 * r.normal()) as f32)
        .collect()
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward_window");
    for (d_in, d_sae, k) in [(128, 128, 8), (256, 512, 16)] {
        let (f, q, fr) = models_with_front(d_in, d_sae, k);
        let x = signal(d_in);
        for (name, m) in [("f32", &f), ("int8", &q), ("f32+front16x3k7", &fr)] {
            let sae = m.view().sae();
            let (mut out, mut s, mut idx) =
                (vec![0.0; d_in], vec![0.0; sae.scratch_len()], vec![0; k]);
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new(name, format!("{d_in}x{d_sae}k{k}")), |b| {
                b.iter(|| sae.denoise_window_into(black_box(&x), &mut out, &mut s, &mut idx))
            });
        }
    }
    g.finish();
}

fn batched(c: &mut Criterion) {
    let mut g = c.benchmark_group("offline_signal");
    let (f, q) = models(256, 512, 16);
    let x = signal(256 * 60); // 60 s at 256 Hz, hop 128: ~120 windows
    g.throughput(Throughput::Elements(x.len() as u64));
    for (name, m) in [("f32", &f), ("int8", &q)] {
        let sae = m.view().sae();
        let (mut out, mut w, mut idx) = (
            vec![0.0; x.len()],
            vec![0.0; offline_work_len(&sae)],
            vec![0; 16],
        );
        g.bench_function(BenchmarkId::new(name, "256x512k16_60s"), |b| {
            b.iter(|| denoise_offline_into(&sae, 128, black_box(&x), &mut out, &mut w, &mut idx))
        });
    }
    g.finish();
}

fn streaming(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_8ch_1s");
    let channels = 8;
    let (f, q) = models(256, 512, 16);
    let x = signal(256 * channels); // 1 s of 8 interleaved channels
    g.throughput(Throughput::Elements(x.len() as u64));
    for (name, m) in [("f32", &f), ("int8", &q)] {
        let sae = m.view().sae();
        let mut buf = vec![0.0; StreamView::buffer_len(&sae, channels)];
        let mut idx = vec![0; 16];
        let mut view = StreamView::new(sae, 128, channels, &mut buf, &mut idx).expect("view");
        let mut out = vec![0.0; x.len()];
        g.bench_function(BenchmarkId::new(name, "256x512k16_8x8_blocks"), |b| {
            b.iter(|| {
                for (i, o) in x.chunks(64).zip(out.chunks_mut(64)) {
                    let _ = view.push_interleaved(black_box(i), o);
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = forward, batched, streaming
}
criterion_main!(benches);
