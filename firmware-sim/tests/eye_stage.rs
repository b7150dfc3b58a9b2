//! The eye stage in the firmware loop removes the simulated blinks: the loop's frames after
//! the eye stage are compared with the same ADC stream generated without blinks
//! (`Adc::without_blinks`), against the blink component the ADC added
//! (`Adc::read_block_parts`).
//!
//! Measured (60 s, from 13 s on: after the filter's first update and its delay;
//! `cargo test --release -p firmware-sim --test eye_stage -- --nocapture` prints them):
//! frontal residual energy / blink energy 0.0011 (128 Hz) and 0.0005 (256 Hz), worst single
//! blink 0.0016 and 0.0008; in blink-free stretches the frontal channels 0 and 1 change by
//! 0.0079 (128 Hz) and 0.0042 (256 Hz) of their energy, channels 6 and 7 by 4e-6 and 1e-5. The
//! blink bounds below leave a margin of about 10x, the far channels' about 100x, the frontal
//! channels' about 5x, and a correction applied to
//! the full band (`MwfConfig::correction_hz` near the Nyquist frequency), which moves the
//! mains common to all channels along the blink pattern, changes them by 0.44-0.48 of their
//! energy and fails it. A filter that does nothing (residual 1) or a loop whose output is
//! shifted by the stage's delay (blink residual 0.044, channels change by about 0.9 of their
//! energy) fails them, which the test checks on both.

use firmware_sim::{
    ALPHA_HZ, Adc, BETA_HZ, BLOCK, BlockQueue, CHANNELS, EyeStage, eye_delay, eye_line_len,
    eye_stage, run_stream,
};
use mfr_eeg::core::Streamer;
use mfr_eeg::model::ModelView;

include!(concat!(env!("OUT_DIR"), "/dims.rs"));

static MODEL_F32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_f32.safetensors"));
static MODEL_I8: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_int8.safetensors"));

/// Frontal residual energy over blink energy, all blinks after `SETTLE_S` together.
const BLINK_RESIDUAL_BOUND: f64 = 0.01;
/// The same for each of those blinks alone.
const BLINK_RESIDUAL_BOUND_EACH: f64 = 0.015;
/// Energy of the change on the channels far from the eyes (6, 7) over their energy, in
/// blink-free stretches after `SETTLE_S`.
const FAR_CHANGE_BOUND: f64 = 1e-3;
/// The same on the frontal channels (0, 1), which the blink pattern weights most: what the
/// correction moves of the background there (below `MwfConfig::correction_hz`).
const FRONTAL_CHANGE_BOUND: f64 = 0.04;
/// Seconds the stage is given to learn the blink pattern: after the first filter update and
/// the 0.5 s delay (measured: the first update at 6.6 s at 128 Hz, after the blinks at 2.0
/// and 6.2 s; at 12.4 s at 256 Hz, after the third blink's peak at 12.1 s, whose output it
/// mostly cleans: 0.018 of it left). The test checks that both runs updated before it.
const SETTLE_S: f32 = 13.0;
/// A frame belongs to a blink where the blink adds more than this on channel 0 (uV): about
/// +-0.25 s around each peak.
const IN_BLINK_UV: f32 = 5.0;
/// A frame is blink-free where the blink adds less than this on channel 0 (uV): more than
/// about 0.5 s from any peak.
const BLINK_FREE_UV: f32 = 1e-3;
/// Channels near the eyes (blink residual) and far from them (change in blink-free stretches).
const FRONTAL: [usize; 2] = [0, 1];
const FAR: [usize; 2] = [6, 7];

/// One run: the ADC frames (uV), the same without blinks, the blink component, and the
/// firmware loop's frames after the eye stage (all interleaved, aligned by frame).
struct Run {
    rate: f32,
    raw: Vec<f32>,
    clean: Vec<f32>,
    blink: Vec<f32>,
    out: Vec<f32>,
}

fn run<const D: usize, const S: usize, const K: usize, const L: usize>(
    bytes: &[u8],
    seconds: u64,
) -> Run {
    let view = ModelView::parse(bytes).unwrap();
    let m = view.meta();
    let rate = m.sample_rate_hz;
    let frames = seconds * rate as u64;
    let mut fw: Streamer<'_, D, S, K, CHANNELS> = Streamer::new(view.sae(), m.hop).unwrap();
    let mut eye: Box<EyeStage<L>> = Box::new(eye_stage(rate).unwrap());
    let mut out = Vec::new();
    let stats = run_stream(
        &mut fw,
        Some(&mut *eye),
        &mut Adc::new(rate),
        &mut BlockQueue::new(),
        frames,
        rate,
        m.hop,
        1_000,
        |x, _| out.extend_from_slice(x),
    )
    .unwrap();
    assert_eq!(stats.overruns, 0);
    let est = eye.estimator();
    println!(
        "{rate} Hz: active {}, lambda {:.1}, reference corr {:.3}, {} updates",
        est.active(),
        est.lambda(),
        est.reference_corr(),
        est.version()
    );
    assert!(est.active(), "the filter found the blink source");
    // The measured blinks come after the filter's first update and its delay.
    let first = stats.eye.first_update_frame.expect("the filter updated");
    assert!(
        first as f32 / rate + 0.5 <= SETTLE_S,
        "first update at frame {first}"
    );
    let (mut adc, mut plain) = (Adc::new(rate), Adc::without_blinks(rate));
    let (mut raw, mut clean, mut blink) = (Vec::new(), Vec::new(), Vec::new());
    let mut codes = [0i32; BLOCK * CHANNELS];
    let mut part = [0.0f32; BLOCK * CHANNELS];
    for _ in 0..frames.div_ceil(BLOCK as u64) {
        adc.read_block_parts(&mut codes, &mut part);
        raw.extend(codes.iter().map(|&c| c as f32 * Adc::LSB_UV));
        blink.extend_from_slice(&part);
        plain.read_block(&mut codes);
        clean.extend(codes.iter().map(|&c| c as f32 * Adc::LSB_UV));
    }
    assert_eq!(out.len(), raw.len());
    Run {
        rate,
        raw,
        clean,
        blink,
        out,
    }
}

/// Frontal residual `out - clean` over the blink, in energy: all blinks after `SETTLE_S`
/// together, and the worst of them.
fn blink_residual(r: &Run, out: &[f32]) -> (f64, f64) {
    let n = r.raw.len() / CHANNELS;
    let settle = (SETTLE_S * r.rate) as usize;
    let (mut res_all, mut blink_all, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    let mut f = settle;
    while f < n {
        if r.blink[f * CHANNELS] <= IN_BLINK_UV {
            f += 1;
            continue;
        }
        let (mut res, mut bl) = (0.0f64, 0.0f64);
        while f < n && r.blink[f * CHANNELS] > IN_BLINK_UV {
            for c in FRONTAL {
                let i = f * CHANNELS + c;
                res += f64::from(out[i] - r.clean[i]).powi(2);
                bl += f64::from(r.blink[i]).powi(2);
            }
            f += 1;
        }
        worst = worst.max(res / bl);
        res_all += res;
        blink_all += bl;
    }
    assert!(blink_all > 0.0, "blinks after {SETTLE_S} s");
    (res_all / blink_all, worst)
}

/// Change `out - raw` on `channels` over their energy, blink-free frames after `SETTLE_S`.
fn blink_free_change(r: &Run, out: &[f32], channels: &[usize]) -> f64 {
    let n = r.raw.len() / CHANNELS;
    let (mut d, mut x) = (0.0f64, 0.0f64);
    for f in (SETTLE_S * r.rate) as usize..n {
        if r.blink[f * CHANNELS] < BLINK_FREE_UV {
            for &c in channels {
                let i = f * CHANNELS + c;
                d += f64::from(out[i] - r.raw[i]).powi(2);
                x += f64::from(r.raw[i]).powi(2);
            }
        }
    }
    d / x
}

/// Share of the energy of the change `out - raw` on channel `c` (blink-free frames after
/// `SETTLE_S`) at `hz` (least-squares sine and cosine).
fn change_share_at(r: &Run, c: usize, hz: f64) -> f64 {
    let n = r.raw.len() / CHANNELS;
    let (mut s, mut k, mut d, mut m) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for f in (SETTLE_S * r.rate) as usize..n {
        if r.blink[f * CHANNELS] < BLINK_FREE_UV {
            let i = f * CHANNELS + c;
            let x = f64::from(r.out[i] - r.raw[i]);
            let ph = std::f64::consts::TAU * hz * f as f64 / f64::from(r.rate);
            s += x * ph.sin();
            k += x * ph.cos();
            d += x * x;
            m += 1.0;
        }
    }
    // Amplitudes 2s/m and 2k/m; energy (a² + b²) / 2 per frame.
    2.0 * (s * s + k * k) / m / d
}

fn check(r: &Run, delay: usize) {
    let (all, worst) = blink_residual(r, &r.out);
    let far = blink_free_change(r, &r.out, &FAR);
    let front = blink_free_change(r, &r.out, &FRONTAL);
    println!(
        "{} Hz: frontal blink residual {all:.4} (worst blink {worst:.4}); blink-free change: frontal channels {front:.4}, far channels {far:.1e}",
        r.rate
    );
    assert!(all < BLINK_RESIDUAL_BOUND, "{all}");
    assert!(worst < BLINK_RESIDUAL_BOUND_EACH, "{worst}");
    assert!(far < FAR_CHANGE_BOUND, "{far}");
    assert!(front < FRONTAL_CHANGE_BOUND, "{front}");
    // For the record: every channel's change in blink-free stretches (the correction is
    // low-passed below `MwfConfig::correction_hz`: the background along the blink filter
    // there, the alpha rhythm and the noise, but not the 50 Hz mains).
    let each: Vec<String> = (0..CHANNELS)
        .map(|c| format!("{:.1e}", blink_free_change(r, &r.out, &[c])))
        .collect();
    println!(
        "  blink-free change by channel: {}; on channel 0, {:.1} % of it at 50 Hz, {:.1} % at the alpha rhythm's {ALPHA_HZ} Hz, {:.1} % at the beta rhythm's {BETA_HZ} Hz",
        each.join(" "),
        100.0 * change_share_at(r, 0, 50.0),
        100.0 * change_share_at(r, 0, f64::from(ALPHA_HZ)),
        100.0 * change_share_at(r, 0, f64::from(BETA_HZ))
    );

    // Controls: the same checks on broken outputs fail.
    // A filter that does nothing (gain 0): the output is the raw stream.
    let (idle, _) = blink_residual(r, &r.raw);
    println!("  control, no filtering: frontal blink residual {idle:.3}");
    assert!(idle > BLINK_RESIDUAL_BOUND, "{idle}");
    // A loop that ignores the stage's delay: its output `delay` frames late.
    let mut late = vec![0.0f32; r.out.len()];
    late[delay * CHANNELS..].copy_from_slice(&r.out[..r.out.len() - delay * CHANNELS]);
    let (late_res, _) = blink_residual(r, &late);
    let late_far = blink_free_change(r, &late, &FAR);
    let late_front = blink_free_change(r, &late, &FRONTAL);
    println!(
        "  control, output {delay} frames late: frontal blink residual {late_res:.3}, blink-free change: frontal channels {late_front:.3}, far channels {late_far:.3}"
    );
    assert!(late_res > BLINK_RESIDUAL_BOUND, "{late_res}");
    assert!(late_far > FAR_CHANGE_BOUND, "{late_far}");
    assert!(late_front > FRONTAL_CHANGE_BOUND, "{late_front}");
}

#[test]
fn the_eye_stage_removes_blinks_and_leaves_the_background_alone() {
    let r = run::<I8_D, I8_S, I8_K, { eye_line_len(I8_RATE) }>(MODEL_I8, 60);
    check(&r, eye_delay(I8_RATE));
    let r = run::<F32_D, F32_S, F32_K, { eye_line_len(F32_RATE) }>(MODEL_F32, 60);
    check(&r, eye_delay(F32_RATE));
}

#[test]
fn the_adc_without_blinks_differs_by_the_blink_component_only() {
    let rate = 128.0;
    let (mut adc, mut plain) = (Adc::new(rate), Adc::without_blinks(rate));
    let (mut a, mut b) = ([0i32; BLOCK * CHANNELS], [0i32; BLOCK * CHANNELS]);
    let mut part = [0.0f32; BLOCK * CHANNELS];
    let mut peaks = Vec::new();
    let mut prev = [0.0f32; 2];
    for block in 0..(60.0 * rate) as usize / BLOCK {
        adc.read_block_parts(&mut a, &mut part);
        plain.read_block(&mut b);
        for (i, ((&x, &y), &p)) in a.iter().zip(&b).zip(&part).enumerate() {
            // Truncation towards zero to codes, one per stream: within two codes (f32 sums
            // add a little on top).
            let d = (x - y) as f32 * Adc::LSB_UV;
            assert!((d - p).abs() <= 2.1 * Adc::LSB_UV, "{d} vs {p}");
            let c = i % CHANNELS;
            let top = part[i - c];
            if top > 0.0 {
                let want = firmware_sim::BLINK_TOPOGRAPHY[c] * top;
                assert!((p - want).abs() <= 1e-4 * want.max(1.0));
            }
            if c == 0 {
                // Local maxima of the blink on channel 0: the blink peaks.
                if prev[1] < prev[0] && prev[0] >= p && prev[0] > 50.0 {
                    peaks.push((block * BLOCK + i / CHANNELS - 1) as f32 / rate);
                }
                prev = [p, prev[0]];
            }
        }
    }
    // Irregular, 3-6 s apart, the first at 2 s.
    assert!((peaks[0] - 2.0).abs() < 0.02, "{peaks:?}");
    let gaps: Vec<f32> = peaks.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| (3.0..=6.0).contains(g)), "{gaps:?}");
    assert!(
        gaps.iter().any(|g| (g - gaps[0]).abs() > 0.5),
        "not periodic: {gaps:?}"
    );
}
