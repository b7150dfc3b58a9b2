//! Cost of the eye stage (`core::BlinkMwf`) by channel count: a synthetic montage (sinusoid
//! mixtures as EEG, a blink every 3 s with a frontal-to-occipital topography, blinks detected
//! on channel 0) streamed frame by frame, timed on one thread.
//!
//! `cargo run --release --example eye_cost -- [SECONDS] [CHANNELS...]` (default 60 s of 256 Hz
//! at 8, 32, 64, 128 and 256 channels).

use std::time::Instant;

use mfr_eeg::core::{BlinkMwf, MwfChannel, MwfConfig, MwfEstimator};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().map_or(60.0, |s| s.parse().expect("SECONDS"));
    let counts: Vec<usize> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|s| s.parse().expect("CHANNELS"))
            .collect()
    } else {
        vec![8, 32, 64, 128, 256]
    };
    let fs = 256.0;
    let frames = (seconds * fs) as usize;
    println!("| channels | seconds of signal | wall s | x real time | active | lambda |");
    println!("|---|---|---|---|---|---|");
    for c in counts {
        // Per channel: 6 sinusoids (2-30 Hz) of a few uV; blink weight falls from 1 to 0.
        let mut lcg = 99u32;
        let mut next = move || {
            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (lcg >> 8) as f32 / (1u32 << 24) as f32
        };
        let comps: Vec<Vec<(f32, f32, f32)>> = (0..c)
            .map(|_| {
                (0..6)
                    .map(|_| {
                        (
                            2.0 + 28.0 * next(),
                            2.0 + 4.0 * next(),
                            std::f32::consts::TAU * next(),
                        )
                    })
                    .collect()
            })
            .collect();
        let topo: Vec<f32> = (0..c).map(|i| 1.0 - i as f32 / c as f32).collect();
        let signal: Vec<f32> = (0..frames)
            .flat_map(|t| {
                let s = t as f32 / fs as f32;
                let phase = t % 768;
                let blink = if (200..300).contains(&phase) {
                    let x = (std::f32::consts::PI * (phase - 200) as f32 / 100.0).sin();
                    150.0 * x * x
                } else {
                    0.0
                };
                let comps = &comps;
                let topo = &topo;
                (0..c).map(move |i| {
                    let eeg: f32 = comps[i]
                        .iter()
                        .map(|&(f, a, p)| a * (std::f32::consts::TAU * f * s + p).sin())
                        .sum();
                    eeg + topo[i] * blink
                })
            })
            .collect();
        let cfg = MwfConfig::for_rate(fs);
        type Mwf = BlinkMwf<Vec<MwfChannel>, Vec<f64>, Vec<f32>>;
        let mut mwf = Mwf::new(
            cfg,
            vec![MwfChannel::default(); c],
            vec![0.0; MwfEstimator::<Vec<MwfChannel>, Vec<f64>>::workspace_len(c)],
            vec![0.0; Mwf::line_len(c, cfg.delay)],
        )
        .expect("valid settings");
        let mut out = vec![0.0f32; c];
        let t0 = Instant::now();
        for frame in signal.chunks_exact(c) {
            mwf.push(&frame[..1], frame, &mut out)
                .expect("one sample per channel");
        }
        while mwf.drain(&mut out).expect("sized") {}
        let wall = t0.elapsed().as_secs_f64();
        println!(
            "| {c} | {seconds} | {wall:.3} | {:.0} | {} | {:.1} |",
            seconds / wall,
            mwf.estimator().active(),
            mwf.estimator().lambda()
        );
    }
}
