//! Training throughput: one full optimiser step (forward of N SAEs, MSE + AuxK + max-MMCS MFR,
//! backward, constraint, clipping, Adam) for the standard configuration d_in 256, d_sae 512,
//! k 16, N 3, batch 256, on each backend. windows/s = 256 / (time per step).
//!
//! Run: `cargo bench --bench train` (optionally `-- flex` to pick a backend). A backend that is
//! not available (no wgpu adapter) is reported and skipped here; the parity tests are where a
//! missing adapter fails.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mfr_eeg::rng::Rng;
use mfr_eeg::train::trainer::Trainer;
use mfr_eeg::train::{BackendKind, MmcsKind, TrainConfig};

fn standard() -> TrainConfig {
    TrainConfig::new(256, 512, 16)
        .with_n_saes(3)
        .with_batch_size(256)
        .with_mfr_alpha(1e-3)
        .with_mfr_warmup(0)
        .with_mmcs(MmcsKind::Max)
        .with_steps(1_000_000)
}

fn bench(c: &mut Criterion) {
    let cfg = standard();
    let mut rng = Rng::new(1);
    let batches: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..256 * 256).map(|_| rng.normal() as f32).collect())
        .collect();
    let mut group = c.benchmark_group("train_step_d256_s512_k16_n3_b256");
    group.throughput(Throughput::Elements(256));
    group.sample_size(20);
    // `cargo bench --bench train -- flex` should not pay for (or profile) the other backends'
    // set-up, e.g. wgpu's shader compilation on lavapipe.
    let named: Vec<String> = std::env::args().skip(1).collect();
    let all = [BackendKind::Flex, BackendKind::Ndarray, BackendKind::Wgpu];
    let wanted: Vec<BackendKind> = if all.iter().any(|b| named.iter().any(|a| a == b.name())) {
        all.into_iter()
            .filter(|b| named.iter().any(|a| a == b.name()))
            .collect()
    } else {
        all.to_vec()
    };
    for backend in wanted {
        let mut tr = match Trainer::new(&cfg, &vec![0.0; 256], backend) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipping {backend}: {e}");
                continue;
            }
        };
        // Warm-up: kernel compilation/autotuning on wgpu, allocator pools everywhere.
        for b in batches.iter().cycle().take(3) {
            let s = tr.compute(b, b);
            tr.apply(&s);
        }
        let mut i = 0;
        group.bench_function(backend.name(), |bench| {
            bench.iter(|| {
                let b = &batches[i % batches.len()];
                i += 1;
                let s = tr.compute(b, b);
                // apply() reads the firing counts back, which waits for the device.
                tr.apply(&s);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
