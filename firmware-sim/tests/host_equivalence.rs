//! The firmware loop (ADC interrupt -> queue -> owned fixed-array eye stage -> owned
//! const-generic `Streamer`) gives the same output, bit for bit, as the host's run-time-sized
//! pipeline on the same ADC samples: a heap-allocated `BlinkMwf` (Vec storage) followed by a
//! `StreamView`. Both run the core's code on the same f32 inputs in the same order, so any
//! difference would be a lost, repeated or reordered block or frame in the firmware loop.

use firmware_sim::{
    Adc, BLOCK, BlockQueue, CHANNELS, EyeStage, QUEUE_SLOTS, eye_line_len, eye_stage, run_stream,
};
use mfr_eeg::core::{BlinkMwf, MwfChannel, MwfConfig, MwfEstimator, StreamView, Streamer};
use mfr_eeg::model::ModelView;

include!(concat!(env!("OUT_DIR"), "/dims.rs"));

static MODEL_F32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_f32.safetensors"));
static MODEL_I8: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_int8.safetensors"));

/// Outputs of one pipeline: what entered the streamer (the eye stage's output, or the ADC
/// frames without it) and what came out of it.
struct Outputs {
    streamed: Vec<f32>,
    denoised: Vec<f32>,
}

/// The host's eye stage: the core's `BlinkMwf` on heap storage, every frame pushed with the
/// frontal mean as the CLI computes it (f64 weights 0.5, rounded to f32), then drained.
fn host_eye(rate_hz: f32, input: &[f32]) -> Vec<f32> {
    type HostMwf = BlinkMwf<Vec<MwfChannel>, Vec<f64>, Vec<f32>>;
    let cfg = MwfConfig::for_rate(f64::from(rate_hz));
    let mut mwf = HostMwf::new(
        cfg,
        vec![MwfChannel::default(); CHANNELS],
        vec![0.0; MwfEstimator::<Vec<MwfChannel>, Vec<f64>>::workspace_len(CHANNELS)],
        vec![0.0; HostMwf::line_len(CHANNELS, cfg.delay)],
    )
    .unwrap();
    let mut cleaned = Vec::with_capacity(input.len());
    let mut out = vec![0.0; CHANNELS];
    for frame in input.chunks(CHANNELS) {
        let reference = (0.5 * f64::from(frame[0]) + 0.5 * f64::from(frame[1])) as f32;
        if mwf.push(&[reference], frame, &mut out).unwrap() {
            cleaned.extend_from_slice(&out);
        }
    }
    while mwf.drain(&mut out).unwrap() {
        cleaned.extend_from_slice(&out);
    }
    cleaned
}

/// Runs `seconds` through the firmware loop (with `cycles_per_window` on the simulated clock;
/// the eye stage when `eye`) and through the host pipeline fed the same samples (the
/// `StreamView` in chunks of 37 frames); returns both and the firmware's stats.
fn both<const D: usize, const S: usize, const K: usize, const L: usize>(
    bytes: &[u8],
    seconds: u64,
    cycles_per_window: u64,
    eye: bool,
) -> (Outputs, Outputs, firmware_sim::RunStats) {
    let view = ModelView::parse(bytes).unwrap();
    let m = view.meta();
    let frames = seconds * m.sample_rate_hz as u64;
    let mut fw: Streamer<'_, D, S, K, CHANNELS> = Streamer::new(view.sae(), m.hop).unwrap();
    let mut fw_eye: Box<EyeStage<L>> = Box::new(eye_stage(m.sample_rate_hz).unwrap());
    let mut queue = BlockQueue::new();
    let mut fw_out = Outputs {
        streamed: Vec::new(),
        denoised: Vec::new(),
    };
    let stats = run_stream(
        &mut fw,
        eye.then_some(&mut *fw_eye),
        &mut Adc::new(m.sample_rate_hz),
        &mut queue,
        frames,
        m.sample_rate_hz,
        m.hop,
        cycles_per_window,
        |x, y| {
            fw_out.streamed.extend_from_slice(x);
            fw_out.denoised.extend_from_slice(y);
        },
    )
    .unwrap();

    let mut adc = Adc::new(m.sample_rate_hz);
    let mut input = Vec::new();
    let mut codes = [0i32; BLOCK * CHANNELS];
    for _ in 0..frames.div_ceil(BLOCK as u64) {
        adc.read_block(&mut codes);
        input.extend(codes.iter().map(|&c| c as f32 * Adc::LSB_UV));
    }
    let streamed = if eye {
        host_eye(m.sample_rate_hz, &input)
    } else {
        input
    };
    let sae = view.sae();
    let mut buf = vec![0.0; StreamView::buffer_len(&sae, CHANNELS)];
    let mut topk = vec![0; sae.k()];
    let mut host = StreamView::new(sae, m.hop, CHANNELS, &mut buf, &mut topk).unwrap();
    let mut denoised = vec![0.0; streamed.len()];
    for (i, o) in streamed
        .chunks(37 * CHANNELS)
        .zip(denoised.chunks_mut(37 * CHANNELS))
    {
        host.push_interleaved(i, o).unwrap();
    }
    (fw_out, Outputs { streamed, denoised }, stats)
}

fn assert_bitwise(fw: &[f32], host: &[f32], what: &str) {
    assert_eq!(fw.len(), host.len(), "{what}: output lengths");
    if let Some(i) = fw
        .iter()
        .zip(host)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!(
            "{what}: frame {} channel {}: firmware {} vs host {}",
            i / CHANNELS,
            i % CHANNELS,
            fw[i],
            host[i]
        );
    }
    // Past the warm-up (d_in - 1 zero frames) the output is non-zero, so the comparison
    // covers denoised windows, not just the warm-up.
    assert!(
        fw.iter().filter(|v| **v != 0.0).count() > fw.len() / 2,
        "{what}"
    );
}

fn assert_same(fw: &Outputs, host: &Outputs, what: &str) {
    assert_bitwise(
        &fw.streamed,
        &host.streamed,
        &format!("{what}: streamer input"),
    );
    assert_bitwise(&fw.denoised, &host.denoised, &format!("{what}: denoised"));
}

const I8_LINE: usize = eye_line_len(I8_RATE);
const F32_LINE: usize = eye_line_len(F32_RATE);

#[test]
fn firmware_loop_equals_host_streamer_bit_for_bit() {
    // A cost well inside real time: every block is processed, none dropped.
    let (fw, host, stats) = both::<I8_D, I8_S, I8_K, I8_LINE>(MODEL_I8, 6, 70_000, false);
    assert_eq!(stats.overruns, 0);
    assert_same(&fw, &host, "int8 model");
    let (fw, host, stats) = both::<F32_D, F32_S, F32_K, F32_LINE>(MODEL_F32, 3, 830_000, false);
    assert_eq!(stats.overruns, 0);
    assert!(
        stats.max_queued >= 2,
        "a hop's windows take several interrupt periods"
    );
    assert_same(&fw, &host, "f32 model");
}

#[test]
fn firmware_loop_with_the_eye_stage_equals_host_pipeline_bit_for_bit() {
    // 20 s: several blinks, so the filter is learnt and acts on the frames compared.
    let (fw, host, stats) = both::<I8_D, I8_S, I8_K, I8_LINE>(MODEL_I8, 20, 70_000, true);
    assert_eq!(stats.overruns, 0);
    assert!(
        stats.eye.updates > 0 && stats.eye.frames_active > 0,
        "{stats:?}"
    );
    assert_eq!(stats.eye.frames_out, stats.eye.frames_in);
    assert_same(&fw, &host, "int8 model, eye stage");
    // The eye stage changed the frames: the comparison is not of an idle filter.
    let mut adc = Adc::new(I8_RATE as f32);
    let mut codes = [0i32; BLOCK * CHANNELS];
    let mut raw = Vec::new();
    while raw.len() < fw.streamed.len() {
        adc.read_block(&mut codes);
        raw.extend(codes.iter().map(|&c| c as f32 * Adc::LSB_UV));
    }
    assert!(fw.streamed.iter().zip(&raw).any(|(a, b)| a != b));
    let (fw, host, stats) = both::<F32_D, F32_S, F32_K, F32_LINE>(MODEL_F32, 20, 830_000, true);
    assert_eq!(stats.overruns, 0);
    assert!(
        stats.eye.updates > 0 && stats.eye.frames_active > 0,
        "{stats:?}"
    );
    assert_same(&fw, &host, "f32 model, eye stage");
}

#[test]
fn a_main_loop_slower_than_the_interrupts_overruns_the_queue() {
    // 10x the budget: blocks arrive faster than the main loop drains them, the queue fills and
    // blocks are dropped and counted (never silently processed out of order).
    let view = ModelView::parse(MODEL_I8).unwrap();
    let rate = view.meta().sample_rate_hz;
    let hop = view.meta().hop as u64;
    let period = (BLOCK as f64 / f64::from(rate) * firmware_sim::CLOCK_HZ) as u64;
    let per_window = 10 * period * hop / (BLOCK as u64 * CHANNELS as u64);
    let (fw, _, stats) = both::<I8_D, I8_S, I8_K, I8_LINE>(MODEL_I8, 4, per_window, false);
    assert_eq!(stats.max_queued, QUEUE_SLOTS - 1);
    assert!(stats.overruns > 0);
    let blocks = 4 * rate as u64 / BLOCK as u64;
    assert_eq!(stats.frames, (blocks - stats.overruns) * BLOCK as u64);
    assert_eq!(fw.denoised.len() as u64, stats.frames * CHANNELS as u64);
}
