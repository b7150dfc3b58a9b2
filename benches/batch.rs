//! Criterion benches of the batched offline path against the plain sgemm of its encoder's
//! shape, measured in the same run. Throughput is in floating-point operations, so criterion's
//! "elem/s" reads as FLOP/s for every row: the encoder-shaped sgemm (matrixmultiply, the
//! batched path's fallback where AVX2/FMA is missing, and gemm, the trainer's), the batched
//! path (its own packed AVX2/FMA encoder product) at several batch sizes, and
//! the streaming core's offline path, all on the shipped default model.
//!
//! `cargo bench --bench batch`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mfr_eeg::batch::{BatchModel, BatchScratch};
use mfr_eeg::core::{denoise_offline_into, offline_pad, offline_work_len};
use mfr_eeg::model::Model;
use mfr_eeg::model::quantize::quantize_tensors;
use std::hint::black_box;
use std::time::Duration;

fn shipped() -> Model {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/general-256hz.safetensors"
    );
    Model::load(std::path::Path::new(p)).expect("the shipped default model")
}

fn signal(n: usize) -> Vec<f32> {
    let mut r = mfr_eeg::rng::Rng::new(2);
    (0..n)
        .map(|i| (20.0 * (i as f64 * 0.05).sin() + 8.0 * r.normal()) as f32)
        .collect()
}

fn sgemm(c: &mut Criterion) {
    let (k, n) = (256usize, 1024usize);
    let mut r = mfr_eeg::rng::Rng::new(3);
    let w: Vec<f32> = (0..k * n).map(|_| r.normal() as f32).collect();
    let mut g = c.benchmark_group("encoder_sgemm_256x1024");
    g.measurement_time(Duration::from_secs(3));
    for m in [64usize, 128, 256] {
        let a: Vec<f32> = (0..m * k).map(|_| r.normal() as f32).collect();
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        g.bench_function(BenchmarkId::new("matrixmultiply", m), |b| {
            b.iter(|| unsafe {
                // SAFETY: row-major m x k, k x n, m x n buffers of exactly those sizes.
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    w.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                );
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("gemm", m), |b| {
            b.iter(|| unsafe {
                // SAFETY: as above; gemm takes (m, n, k) and column/row strides.
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    1,
                    n as isize,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn signal_paths(c: &mut Criterion) {
    let f = shipped();
    let meta = f.meta();
    let q = Model::from_int8(&meta, &quantize_tensors(&meta, &f.tensors())).expect("int8 model");
    let x = signal(256 * 30); // 30 s at 256 Hz
    let mut out = vec![0.0; x.len()];
    let mut g = c.benchmark_group("offline_30s_general256");
    g.measurement_time(Duration::from_secs(4));
    g.sample_size(10);
    for hop in [8usize, 32] {
        for (name, m) in [("f32", &f), ("int8", &q)] {
            let sae = m.view().sae();
            let bm = BatchModel::new(&sae);
            let windows = (x.len() + 2 * offline_pad(sae.d_in())) / hop;
            g.throughput(Throughput::Elements(windows as u64 * bm.flops_per_window()));
            for batch in [64usize, 128, 256] {
                if name == "int8" && batch != 128 {
                    continue;
                }
                let mut s = BatchScratch::with_batch(batch);
                g.bench_function(
                    BenchmarkId::new(format!("batched_{name}_b{batch}"), hop),
                    |b| b.iter(|| bm.denoise_into(hop, black_box(&x), &mut out, &mut s)),
                );
            }
            let (mut w, mut idx) = (vec![0.0; offline_work_len(&sae)], vec![0; sae.k()]);
            g.bench_function(BenchmarkId::new(format!("core_{name}"), hop), |b| {
                b.iter(|| {
                    denoise_offline_into(&sae, hop, black_box(&x), &mut out, &mut w, &mut idx)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, sgemm, signal_paths);
criterion_main!(benches);
