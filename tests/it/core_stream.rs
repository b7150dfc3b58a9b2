//! Integration tests: core_stream — streaming equals offline bit for bit (f32 and int8, with
//! and without the gated linear path, the shipped models, and a proptest property over random
//! models and chunkings), identity reproduction, the zero-allocation proof, fault handling.

use crate::core_forward::random_model;
use mfr_eeg::core::{
    Activation, FaultCounts, Normalisation, Sae, StreamView, Streamer, denoise_offline_into,
    offline_pad, offline_work_len, reflect_index,
};
use mfr_eeg::model::{Model, identity_model};
use mfr_eeg::rng::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations per thread, so tests running in parallel do not disturb each other.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations made by this thread while running `f`.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn signal(seed: u64, n: usize) -> Vec<f32> {
    let mut r = Rng::new(seed);
    let mut phase = 0.0f64;
    (0..n)
        .map(|_| {
            phase += 0.21;
            (20.0 * phase.sin() + 5.0 * r.normal() + 3.0) as f32
        })
        .collect()
}

/// Streams `x` (one channel) in random chunk sizes through a fresh view.
fn stream_in_chunks(sae: Sae<'_>, hop: usize, x: &[f32], seed: u64) -> (Vec<f32>, FaultCounts) {
    let mut buf = vec![0.0; StreamView::buffer_len(&sae, 1)];
    let mut topk = vec![0; sae.k()];
    let mut s = StreamView::new(sae, hop, 1, &mut buf, &mut topk).unwrap();
    let mut out = vec![0.0; x.len()];
    let mut r = Rng::new(seed);
    let mut at = 0;
    while at < x.len() {
        let n = (r.below(3 * sae.d_in() as u64) as usize).min(x.len() - at); // includes 0
        s.push_interleaved(&x[at..at + n], &mut out[at..at + n])
            .unwrap();
        at += n;
    }
    (out, s.faults())
}

/// The padded stream the offline function is defined by.
fn reflect_padded(x: &[f32], d_in: usize) -> Vec<f32> {
    let p = offline_pad(d_in) as isize;
    (-p..x.len() as isize + p)
        .map(|t| x[reflect_index(t, x.len())])
        .collect()
}

pub(crate) fn offline(sae: &Sae<'_>, hop: usize, x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    let mut work = vec![0.0; offline_work_len(sae)];
    let mut topk = vec![0; sae.k()];
    denoise_offline_into(sae, hop, x, &mut out, &mut work, &mut topk).unwrap();
    out
}

/// Whether streaming the reflect-padded `x` in random chunks gives, after the padding and the
/// latency, exactly the offline result (bit for bit: both run the same window code on the same
/// samples in the same order).
pub(crate) fn streamed_equals_offline(
    sae: Sae<'_>,
    hop: usize,
    x: &[f32],
    chunk_seed: u64,
) -> bool {
    let d_in = sae.d_in();
    let want = offline(&sae, hop, x);
    let padded = reflect_padded(x, d_in);
    let (streamed, _) = stream_in_chunks(sae, hop, &padded, chunk_seed);
    let lead = offline_pad(d_in) + (d_in - 1); // padding + latency
    streamed[lead..lead + x.len()]
        .iter()
        .zip(&want)
        .all(|(a, b)| a.to_bits() == b.to_bits())
}

/// A signal whose high-frequency content switches every 64 samples (quiet sine, then a noise
/// burst), so the linear path's gate both opens and stays shut along it.
fn bursty_signal(seed: u64, n: usize) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|i| {
            let noise = if (i / 64) % 2 == 0 { 0.5 } else { 15.0 };
            (20.0 * (0.13 * i as f64).sin() + noise * r.normal() + 3.0) as f32
        })
        .collect()
}

/// A random model with the given options (int8 by the project's quantiser).
fn model_with(
    seed: u64,
    (d_in, d_sae, k, hop): (usize, usize, usize, usize),
    act: Activation,
    norm: Normalisation,
    int8: bool,
    skip: Option<mfr_eeg::model::SkipPath>,
) -> Model {
    use mfr_eeg::model::quantize::quantize_tensors;
    let mut meta = crate::core_forward::meta(d_in, d_sae, k, act, norm);
    meta.hop = hop;
    let mut t = crate::core_forward::random_tensors(seed, d_in, d_sae);
    t.skip = skip;
    if int8 {
        Model::from_int8(&meta, &quantize_tensors(&meta, &t)).unwrap()
    } else {
        Model::from_tensors(&meta, &t).unwrap()
    }
}

#[test]
fn streaming_equals_offline_for_int8_and_linear_path_models() {
    let (d_in, d_sae, k) = (16, 24, 4);
    let taps: Vec<f32> = (0..7).map(|i| 0.05 * (i as f32 - 3.0)).collect();
    for (int8, with_skip) in [(true, false), (false, true), (true, true)] {
        for norm in [
            Normalisation::WindowZscoreNoMean,
            Normalisation::WindowZscore,
        ] {
            for hop in [4, 5, 16] {
                let skip = with_skip.then(|| mfr_eeg::model::SkipPath {
                    taps: taps.clone(),
                    gate: 0.3,
                });
                let dims = (d_in, d_sae, k, hop);
                let model = model_with(31, dims, Activation::TopkRelu, norm, int8, skip);
                let sae = model.view().sae();
                assert_eq!(sae.is_int8(), int8);
                assert_eq!(sae.skip().is_some(), with_skip);
                let x = bursty_signal(hop as u64, 517);
                assert!(
                    streamed_equals_offline(sae, hop, &x, 40 + hop as u64),
                    "int8 {int8}, linear path {with_skip}, {norm:?}, hop {hop}: streamed != offline"
                );
                if with_skip {
                    // The gate must have opened in some windows and stayed shut in others, or
                    // the comparison above did not cover both branches.
                    let plain = model_with(31, dims, Activation::TopkRelu, norm, int8, None);
                    let (a, b) = (
                        offline(&sae, hop, &x),
                        offline(&plain.view().sae(), hop, &x),
                    );
                    let same = a
                        .iter()
                        .zip(&b)
                        .filter(|(p, q)| p.to_bits() == q.to_bits())
                        .count();
                    assert!(
                        same > 0 && same < x.len(),
                        "{norm:?} hop {hop}: {same} of {} samples untouched by the path",
                        x.len()
                    );
                }
            }
        }
    }
}

/// Both shipped models carry the linear path, and `tiny-128hz-int8` is int8: streaming them in
/// random chunks equals the offline path bit for bit, at their own hop.
#[test]
fn shipped_models_stream_equals_offline_bit_for_bit() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for (file, int8) in [
        ("general-256hz.safetensors", false),
        ("tiny-128hz-int8.safetensors", true),
    ] {
        let model = Model::load(&dir.join(file)).unwrap();
        let sae = model.view().sae();
        let hop = model.meta().hop;
        assert_eq!(sae.is_int8(), int8, "{file}");
        assert!(sae.skip().is_some(), "{file} has the linear path");
        let x = bursty_signal(7, 3 * sae.d_in() + 37);
        assert!(
            streamed_equals_offline(sae, hop, &x, 11),
            "{file}: streamed != offline"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    /// Property: for any model (f32 or int8, either activation, every normalisation, with or
    /// without a linear path of any odd length and gate), any hop, any length and any chunking,
    /// streaming the reflect-padded signal equals the offline path bit for bit.
    #[test]
    fn streaming_equals_offline_for_any_model_and_chunking(
        d_in in 2usize..20,
        d_sae in 1usize..24,
        pick in proptest::prelude::any::<u64>(),
        n in 1usize..300,
        chunk_seed in proptest::prelude::any::<u64>(),
        int8 in proptest::prelude::any::<bool>(),
        with_skip in proptest::prelude::any::<bool>(),
    ) {
        let k = 1 + (pick % d_sae as u64) as usize;
        let hop = 1 + ((pick >> 8) % d_in as u64) as usize;
        let act = if (pick >> 16) & 1 == 0 { Activation::TopkRelu } else { Activation::TopkSigned };
        let norm = [Normalisation::None, Normalisation::WindowZscore, Normalisation::WindowZscoreNoMean]
            [((pick >> 17) % 3) as usize];
        let skip = with_skip.then(|| {
            let half = ((pick >> 20) % d_in.div_ceil(2) as u64) as usize; // 2 * half + 1 <= d_in
            mfr_eeg::model::SkipPath {
                taps: (0..2 * half + 1).map(|i| 0.1 - 0.03 * i as f32).collect(),
                gate: [0.05, 0.3, 1.0, 1e9][((pick >> 28) % 4) as usize],
            }
        });
        let model = model_with(pick, (d_in, d_sae, k, hop), act, norm, int8, skip);
        let x = bursty_signal(pick ^ 0xABC, n);
        proptest::prop_assert!(streamed_equals_offline(model.view().sae(), hop, &x, chunk_seed));
    }
}

#[test]
fn streaming_equals_offline_bit_for_bit_for_random_chunks() {
    let d_in = 16;
    for (case, (act, norm)) in [
        (Activation::TopkRelu, Normalisation::WindowZscore),
        (Activation::TopkSigned, Normalisation::None),
    ]
    .into_iter()
    .enumerate()
    {
        let (model, _) = random_model(5 + case as u64, d_in, 24, 4, act, norm);
        let sae = model.view().sae();
        // Hops that divide d_in, one that does not, and the extremes.
        for hop in [8, 4, 5, 1, 16] {
            for (i, n) in [1usize, 2, 7, 15, 16, 17, 100, 333].into_iter().enumerate() {
                let x = signal(n as u64 * 31 + hop as u64, n);
                assert!(
                    streamed_equals_offline(sae, hop, &x, i as u64 * 7 + hop as u64),
                    "hop {hop}, n {n}, {act:?}/{norm:?}: streamed != offline"
                );
            }
        }
    }
}

#[test]
fn owned_streamer_equals_view_multichannel() {
    const D: usize = 16;
    const S: usize = 24;
    const K: usize = 4;
    const C: usize = 3;
    let (model, _) = random_model(
        8,
        D,
        S,
        K,
        Activation::TopkRelu,
        Normalisation::WindowZscore,
    );
    let sae = model.view().sae();
    let hop = 6;
    let frames = 250;
    let chans: Vec<Vec<f32>> = (0..C).map(|c| signal(100 + c as u64, frames)).collect();
    let interleaved: Vec<f32> = (0..frames)
        .flat_map(|f| chans.iter().map(move |ch| ch[f]))
        .collect();
    let mut owned: Streamer<'_, D, S, K, C> = Streamer::new(sae, hop).unwrap();
    let mut out_owned = vec![0.0; interleaved.len()];
    let mut r = Rng::new(3);
    let mut at = 0;
    while at < frames {
        let n = (r.below(20) as usize).min(frames - at);
        owned
            .push_interleaved(
                &interleaved[at * C..(at + n) * C],
                &mut out_owned[at * C..(at + n) * C],
            )
            .unwrap();
        at += n;
    }
    // Each channel of the multichannel stream equals that channel streamed alone.
    for (c, ch) in chans.iter().enumerate() {
        let (alone, _) = stream_in_chunks(sae, hop, ch, 77);
        for f in 0..frames {
            assert_eq!(
                out_owned[f * C + c].to_bits(),
                alone[f].to_bits(),
                "channel {c} frame {f}"
            );
        }
    }
    assert_eq!(owned.latency(), D - 1);
}

#[test]
fn identity_model_reproduces_input_streaming_and_offline() {
    for (d_in, hop) in [(16, 8), (16, 5), (12, 12), (9, 1)] {
        let (meta, t) = identity_model(d_in, hop, 256.0);
        let model = Model::from_tensors(&meta, &t).unwrap();
        let sae = model.view().sae();
        let x = signal(d_in as u64 + hop as u64, 300);
        // f32 rounding: each output is a sum of <= d_in/hop + 1 terms w'_m * x with the w'
        // summing to 1 within a few ulps, so the error is <= ~1e-6 of |x|. A wrong weight,
        // latency or alignment would be off by O(|x|).
        let tol = |v: f32| 2e-6 * v.abs().max(1.0);
        let off = offline(&sae, hop, &x);
        for (i, (&a, &b)) in off.iter().zip(&x).enumerate() {
            assert!(
                (a - b).abs() <= tol(b),
                "offline d_in {d_in} hop {hop} i {i}: {a} vs {b}"
            );
        }
        let (streamed, _) = stream_in_chunks(sae, hop, &x, 1);
        let latency = d_in - 1;
        assert!(
            streamed[..latency].iter().all(|&v| v == 0.0),
            "warm-up outputs are zero"
        );
        // After the latency, every sample whose windows all lie inside the stream: n >= d_in - hop.
        for n in (d_in - hop)..(x.len() - latency) {
            let (a, b) = (streamed[n + latency], x[n]);
            assert!(
                (a - b).abs() <= tol(b),
                "stream d_in {d_in} hop {hop} n {n}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn streaming_loop_allocates_nothing() {
    let (_, mut t) = random_model(
        21,
        32,
        64,
        5,
        Activation::TopkSigned,
        Normalisation::WindowZscore,
    );
    // With the linear path, and a gate every window opens, so its code runs too.
    t.skip = Some(mfr_eeg::model::SkipPath {
        taps: (0..9).map(|i| 0.01 * i as f32).collect(),
        gate: 1e9,
    });
    let model = Model::from_tensors(
        &crate::core_forward::meta(
            32,
            64,
            5,
            Activation::TopkSigned,
            Normalisation::WindowZscore,
        ),
        &t,
    )
    .unwrap();
    assert!(model.view().sae().skip().is_some());
    let sae = model.view().sae();
    let x = signal(4, 4 * 500);
    let mut out = vec![0.0; x.len()];
    let mut buf = vec![0.0; StreamView::buffer_len(&sae, 4)];
    let mut topk = vec![0; sae.k()];
    let mut owned: Box<Streamer<'_, 32, 64, 5, 4>> = Box::new(Streamer::new(sae, 16).unwrap());
    let mut work = vec![0.0; offline_work_len(&sae)];
    let mut out1 = vec![0.0; 500];
    let n = allocations_during(|| {
        let mut view = StreamView::new(sae, 16, 4, &mut buf, &mut topk).unwrap();
        for (i, o) in x.chunks(4 * 8).zip(out.chunks_mut(4 * 8)) {
            view.push_interleaved(i, o).unwrap();
        }
        for (i, o) in x.chunks(4 * 3).zip(out.chunks_mut(4 * 3)) {
            owned.push_interleaved(i, o).unwrap();
        }
        let mut topk1 = [0usize; 5];
        denoise_offline_into(&sae, 16, &x[..500], &mut out1, &mut work, &mut topk1).unwrap();
    });
    assert_eq!(n, 0, "the streaming and offline loops must not allocate");
    // The counter itself works (so the 0 above is a measurement, not a dead counter).
    let m = allocations_during(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(m, 1);
    assert!(out.iter().all(|v| v.is_finite()) && out[500..].iter().any(|&v| v != 0.0));
}

#[test]
fn non_finite_inputs_are_repaired_and_counted() {
    let (model, _) = random_model(
        2,
        16,
        24,
        4,
        Activation::TopkRelu,
        Normalisation::WindowZscore,
    );
    let sae = model.view().sae();
    let mut x = signal(9, 200);
    x[50] = f32::NAN;
    x[51] = f32::INFINITY;
    x[120] = -1e30;
    let (out, faults) = stream_in_chunks(sae, 8, &x, 4);
    assert!(out.iter().all(|v| v.is_finite()));
    assert_eq!(faults.input_samples, 3);
    // Repaired samples are zeros, so the result equals streaming the zeroed signal.
    let mut z = x.clone();
    for i in [50, 51, 120] {
        z[i] = 0.0;
    }
    let (out_z, faults_z) = stream_in_chunks(sae, 8, &z, 4);
    assert_eq!(faults_z.input_samples, 0);
    assert!(
        out.iter()
            .zip(&out_z)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

/// Fuzz-style property check with a fixed budget: random models (f32/int8, both modes, both
/// normalisations), random lengths and chunking, and inputs salted with NaN, infinities, huge
/// values and denormals. The core must neither panic nor emit a non-finite sample, and must
/// count every bad input sample it repaired.
#[test]
fn never_panics_and_output_is_finite_for_hostile_input() {
    use mfr_eeg::model::quantize::quantize_tensors;
    let mut r = Rng::new(0xF022);
    for case in 0..150 {
        let d_in = 2 + r.below(20) as usize;
        let d_sae = 1 + r.below(30) as usize;
        let k = 1 + r.below(d_sae as u64) as usize;
        let hop = 1 + r.below(d_in as u64) as usize;
        let act = if r.below(2) == 0 {
            Activation::TopkRelu
        } else {
            Activation::TopkSigned
        };
        let norm = if r.below(2) == 0 {
            Normalisation::None
        } else {
            Normalisation::WindowZscore
        };
        let mut meta = crate::core_forward::meta(d_in, d_sae, k, act, norm);
        meta.hop = hop;
        let t = crate::core_forward::random_tensors(case, d_in, d_sae);
        let model = if r.below(2) == 0 {
            Model::from_tensors(&meta, &t).unwrap()
        } else {
            Model::from_int8(&meta, &quantize_tensors(&meta, &t)).unwrap()
        };
        let sae = model.view().sae();
        let n = r.below(400) as usize;
        let mut bad = 0u64;
        let x: Vec<f32> = (0..n)
            .map(|_| match r.below(20) {
                0 => {
                    bad += 1;
                    [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3e38, -1e20][r.below(5) as usize]
                }
                1 => f32::MIN_POSITIVE / 8.0,
                2 => 1e14, // large but inside SAMPLE_LIMIT
                _ => (r.normal() * 50.0) as f32,
            })
            .collect();
        let (out, faults) = stream_in_chunks(sae, hop, &x, case);
        assert!(
            out.iter().all(|v| v.is_finite()),
            "case {case}: non-finite streamed output"
        );
        assert_eq!(
            faults.input_samples, bad,
            "case {case}: every bad sample is counted"
        );
        let off = offline(&sae, hop, &x);
        assert!(
            off.iter().all(|v| v.is_finite()),
            "case {case}: non-finite offline output"
        );
    }
}

#[test]
fn streamer_misuse_is_an_error_not_a_panic() {
    use mfr_eeg::core::CoreError;
    let (model, _) = random_model(3, 16, 24, 4, Activation::TopkRelu, Normalisation::None);
    let sae = model.view().sae();
    // Compile-time sizes that do not match the model.
    let e = Streamer::<'_, 16, 25, 4, 1>::new(sae, 8).err().unwrap();
    assert_eq!(
        e,
        CoreError::ModelMismatch {
            what: "d_sae",
            expected: 25,
            got: 24
        }
    );
    assert_eq!(
        Streamer::<'_, 16, 24, 4, 1>::new(sae, 17).err().unwrap(),
        CoreError::InvalidHop { hop: 17, d_in: 16 }
    );
    let mut buf = vec![0.0; StreamView::buffer_len(&sae, 2)];
    let mut idx = vec![0; 4];
    assert_eq!(
        StreamView::new(sae, 8, 0, &mut buf, &mut idx)
            .err()
            .unwrap(),
        CoreError::NoChannels
    );
    assert!(matches!(
        StreamView::new(sae, 8, 3, &mut buf, &mut idx),
        Err(CoreError::BufferLength { .. })
    ));
    let mut v = StreamView::new(sae, 8, 2, &mut buf, &mut idx).unwrap();
    let mut out = [0.0; 4];
    // Half a frame, and an output of the wrong length.
    assert!(matches!(
        v.push_interleaved(&[1.0; 3], &mut out[..3]),
        Err(CoreError::BufferLength { .. })
    ));
    assert!(matches!(
        v.push_interleaved(&[1.0; 4], &mut out[..2]),
        Err(CoreError::BufferLength { .. })
    ));
    assert!(v.push_interleaved(&[1.0; 4], &mut out).is_ok());
    let mut o = vec![0.0; 3];
    let mut w = vec![0.0; offline_work_len(&sae) - 1];
    assert!(matches!(
        denoise_offline_into(&sae, 8, &[0.0; 3], &mut o, &mut w, &mut idx),
        Err(CoreError::BufferLength { .. })
    ));
}
