//! Training throughput: one full optimiser step (forward of N SAEs, MSE + AuxK + max-MMCS MFR,
//! backward, constraint, clipping, Adam) for the standard configuration d_in 256, d_sae 512,
//! k 16, N 3, batch 256, on each backend. windows/s = 256 / (time per step).
//!
//! Each backend runs with both gradient paths (`sparse`: host kernels over the k selected
//! latents; `autodiff`: burn autodiff over dense latents); the default is sparse on the CPU
//! backends and autodiff on wgpu.
//!
//! Run: `cargo bench --bench train` (optionally `-- flex` to pick a backend). A backend that is
//! not available (no wgpu adapter) is reported and skipped here; the parity tests are where a
//! missing adapter fails.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mfr_eeg::rng::Rng;
use mfr_eeg::train::trainer::{GradPath, Trainer};
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
    mfr_eeg::train::tune_allocator();
    let cfg = standard();
    let mut rng = Rng::new(1);
    let batches: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..256 * 256).map(|_| rng.normal() as f32).collect())
        .collect();
    let mut group = c.benchmark_group("train_step_d256_s512_k16_n3_b256");
    group.throughput(Throughput::Elements(256));
    group.sample_size(20);
    // `cargo bench --bench train -- flex/sparse` should not pay for (or profile) the other
    // runs' set-up, e.g. wgpu's shader compilation on lavapipe: a filter that names a backend
    // (and optionally a path) builds only the trainers it matches.
    let all = [BackendKind::Flex, BackendKind::Ndarray, BackendKind::Wgpu];
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| all.iter().any(|b| a.contains(b.name())))
        .collect();
    let runs: Vec<(BackendKind, GradPath)> = all
        .into_iter()
        .flat_map(|b| [(b, GradPath::Sparse), (b, GradPath::Autodiff)])
        .collect();
    let id = |(b, p): &(BackendKind, GradPath)| format!("{}/{}", b.name(), p.name());
    let runs: Vec<_> = if named.is_empty() {
        runs
    } else {
        runs.into_iter()
            .filter(|r| named.iter().any(|a| id(r).contains(a.as_str())))
            .collect()
    };
    for (backend, path) in runs {
        let mut tr = match Trainer::with_path(&cfg, &vec![0.0; 256], backend, path) {
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
        group.bench_function(id(&(backend, path)), |bench| {
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
