//! `embed::ArrayStream`: chunks of any size give the whole-recording pipeline's output bit for
//! bit, at the shipped model's rate and at rates it resamples, with and without prefilters.

use std::sync::Arc;

use mfr_eeg::denoise::{DenoiseError, DenoiseOptions, HighBand};
use mfr_eeg::embed::{ArrayStream, default_model, denoise_channels};
use mfr_eeg::rng::Rng;

/// EEG-like channels on DC offsets of hundreds of microvolts, with a blink-like step.
fn signal(channels: usize, n: usize, fs: f64, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..channels)
        .map(|c| {
            let dc = 300.0 * (c as f64 - 1.0);
            (0..n)
                .map(|i| {
                    let t = i as f64 / fs;
                    let blink = if (t * 2.0) as usize % 7 == 3 {
                        120.0
                    } else {
                        0.0
                    };
                    (dc + 20.0 * (2.0 * std::f64::consts::PI * 10.0 * t).sin()
                        + 8.0 * (2.0 * std::f64::consts::PI * 50.0 * t).sin()
                        + blink
                        + 5.0 * (rng.next_f64() - 0.5)) as f32
                })
                .collect()
        })
        .collect()
}

fn whole(x: &[Vec<f32>], fs: f64, opts: &DenoiseOptions) -> Vec<Vec<f32>> {
    let mut y = x.to_vec();
    let mut refs: Vec<&mut [f32]> = y.iter_mut().map(|r| &mut r[..]).collect();
    denoise_channels(&mut refs, None, fs, 1.0, &default_model(), opts).unwrap();
    y
}

/// Pushes `x` in chunks drawn by `seed` (empty ones included) and finishes.
fn streamed(x: &[Vec<f32>], fs: f64, opts: &DenoiseOptions, seed: u64) -> Vec<Vec<f32>> {
    let model = Arc::new(default_model());
    let mut s = ArrayStream::new(model, x.len(), None, fs, 1.0, opts).unwrap();
    let mut out = vec![Vec::new(); x.len()];
    let mut rng = Rng::new(seed);
    let n = x[0].len();
    let mut at = 0;
    let mut released = 0;
    while at < n {
        let m = ((rng.next_f64() * 600.0) as usize).min(n - at);
        let chunk: Vec<&[f32]> = x.iter().map(|c| &c[at..at + m]).collect();
        released += s.push(&chunk, &mut out).unwrap();
        at += m;
        // What is released is final: never more than was pushed, never later than the latency.
        assert_eq!(released, s.released());
        assert!(
            released <= at && at - released <= s.latency(),
            "{at} {released}"
        );
    }
    released += s.finish(&mut out).unwrap();
    assert_eq!(released, n);
    out
}

fn assert_same(a: &[Vec<f32>], b: &[Vec<f32>]) {
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.len(), y.len());
        if let Some(i) = (0..x.len()).find(|&i| x[i].to_bits() != y[i].to_bits()) {
            panic!(
                "channel {k} differs first at sample {i}: {} vs {}",
                x[i], y[i]
            );
        }
    }
}

#[test]
fn chunks_of_any_size_equal_the_whole_recording_at_the_model_rate() {
    let fs = 256.0;
    let x = signal(3, 256 * 21 + 17, fs, 1);
    let opts = DenoiseOptions::default();
    let w = whole(&x, fs, &opts);
    // The model did something, and the baseline (DC) was kept.
    let diff = x[0]
        .iter()
        .zip(&w[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff > 1.0, "denoising changed nothing ({diff})");
    let mean = |v: &[f32]| v.iter().map(|&s| f64::from(s)).sum::<f64>() / v.len() as f64;
    assert!((mean(&w[2]) - 300.0).abs() < 30.0, "{}", mean(&w[2]));
    for seed in 0..3 {
        assert_same(&streamed(&x, fs, &opts, seed), &w);
    }
}

#[test]
fn chunks_equal_the_whole_recording_when_resampling_and_prefiltering() {
    for (fs, high_band) in [
        (160.0, HighBand::Keep),
        (500.0, HighBand::Keep),
        (500.0, HighBand::Drop),
    ] {
        let x = signal(2, (fs * 17.3) as usize, fs, 2);
        let opts = DenoiseOptions {
            notch_hz: Some(50.0),
            bandpass_hz: Some((0.5, 45.0)),
            high_band,
            hop: Some(32),
            threads: 1,
            ..DenoiseOptions::default()
        };
        assert_same(&streamed(&x, fs, &opts, 9), &whole(&x, fs, &opts));
    }
}

#[test]
fn short_recordings_come_out_whole_at_finish() {
    let fs = 256.0;
    for n in [1, 100, 700] {
        let x = signal(2, n, fs, 3);
        let opts = DenoiseOptions::default();
        assert_same(&streamed(&x, fs, &opts, 4), &whole(&x, fs, &opts));
    }
}

#[test]
fn bad_chunks_are_refused_and_leave_the_stream_as_it_was() {
    let fs = 256.0;
    let model = Arc::new(default_model());
    let labels = Some(vec!["Fp1".to_string(), "Cz".to_string()]);
    let mut s = ArrayStream::new(model, 2, labels, fs, 1.0, &DenoiseOptions::default()).unwrap();
    let mut out = vec![Vec::new(); 2];
    let x = signal(2, 4000, fs, 5);
    s.push(&[&x[0][..1000], &x[1][..1000]], &mut out).unwrap();
    let mut bad = x[1][1000..1100].to_vec();
    bad[7] = f32::NAN;
    let e = s.push(&[&x[0][1000..1100], &bad], &mut out).unwrap_err();
    assert!(
        e.to_string().contains("Cz") && e.to_string().contains("sample 1007"),
        "{e}"
    );
    let e = s.push(&[&x[0][1000..1100]], &mut out).unwrap_err();
    assert!(matches!(e, DenoiseError::Options(_)), "{e}");
    let e = s
        .push(&[&x[0][1000..1100], &x[1][1000..1050]], &mut out)
        .unwrap_err();
    assert!(
        e.to_string().contains("Cz") && e.to_string().contains("50 samples"),
        "{e}"
    );
    // The refused chunks left nothing behind: the rest streams to the whole result.
    s.push(&[&x[0][1000..], &x[1][1000..]], &mut out).unwrap();
    s.finish(&mut out).unwrap();
    assert_same(&out, &whole(&x, fs, &DenoiseOptions::default()));
    assert!(s.push(&[&x[0][..1], &x[1][..1]], &mut out).is_err());
    assert!(s.finish(&mut out).is_err());
    let empty = ArrayStream::new(
        Arc::new(default_model()),
        1,
        None,
        fs,
        1.0,
        &DenoiseOptions::default(),
    );
    assert!(empty.unwrap().finish(&mut [Vec::new()]).is_err());
}

#[test]
fn latency_is_a_block_plus_the_baseline_and_window_ahead() {
    let model = Arc::new(default_model());
    let hop = model.view().meta().hop;
    let s = ArrayStream::new(model, 1, None, 256.0, 1.0, &DenoiseOptions::default()).unwrap();
    // 1 s block (rounded up to whole hops, so blocks start on the window grid) + 256-sample
    // window + baseline (2 s half window + 0.25 s grid step).
    assert_eq!(s.latency(), 256usize.div_ceil(hop) * hop + 256 + 512 + 64);
}

/// The array path and the stream take the gate options as the file path does: `gate: Off`
/// and a set gate give what a copy of the model with that gate gives, `keep_slow` another
/// output, and the stream equals the whole recording under each.
#[test]
fn gate_options_reach_arrays_and_streams() {
    use mfr_eeg::core::{Blend, SlowGate};
    use mfr_eeg::denoise::GateChoice;
    use mfr_eeg::model::Model;
    let fs = 256.0;
    let x = signal(2, 3000, fs, 21);
    let shipped = default_model();
    let copy = |blend: Option<Blend>| {
        let mut meta = shipped.meta();
        meta.blend = blend;
        Model::from_tensors(&meta, &shipped.tensors()).unwrap()
    };
    let with_model = |m: &Model, opts: &DenoiseOptions| {
        let mut y = x.clone();
        let mut refs: Vec<&mut [f32]> = y.iter_mut().map(|r| &mut r[..]).collect();
        denoise_channels(&mut refs, None, fs, 1.0, m, opts).unwrap();
        y
    };
    let plain = DenoiseOptions::default();
    let two = Blend {
        slow: Some(SlowGate {
            lo: 0.125,
            hi: 0.625,
            half: 32,
        }),
        ..Blend::new(0.25, 0.75)
    };
    let never = Blend {
        slow: Some(SlowGate::never(16)),
        ..shipped.meta().blend.unwrap()
    };
    let mut outputs = Vec::new();
    for (choice, keep_slow, model_gate) in [
        (GateChoice::Off, false, None),
        (GateChoice::Set(two), false, Some(two)),
        (GateChoice::Model, true, Some(never)),
        (
            GateChoice::AfterEye,
            false,
            Some(mfr_eeg::denoise::after_eye_gate(
                shipped.meta().blend,
                256.0,
            )),
        ),
    ] {
        let opts = DenoiseOptions {
            gate: choice,
            keep_slow,
            ..DenoiseOptions::default()
        };
        let got = whole(&x, fs, &opts);
        assert_same(&got, &with_model(&copy(model_gate), &plain));
        assert_same(&streamed(&x, fs, &opts, 3), &got);
        outputs.push(got);
    }
    let default = whole(&x, fs, &plain);
    for o in &outputs {
        assert!(o != &default);
    }
    let bad = DenoiseOptions {
        gate: GateChoice::Set(Blend::new(0.6, 0.2)),
        ..DenoiseOptions::default()
    };
    let mut y = x.clone();
    let mut refs: Vec<&mut [f32]> = y.iter_mut().map(|r| &mut r[..]).collect();
    assert!(matches!(
        denoise_channels(&mut refs, None, fs, 1.0, &shipped, &bad),
        Err(DenoiseError::Options(_))
    ));
}
