//! The firmware loop (ADC interrupt -> queue -> owned const-generic `Streamer`) gives the same
//! output, bit for bit, as the host's run-time-sized `StreamView` on the same ADC samples:
//! both run the core's window code on the same f32 inputs in the same order, so any
//! difference would be a lost, repeated or reordered block in the firmware loop.

use firmware_sim::{Adc, BLOCK, BlockQueue, CHANNELS, QUEUE_SLOTS, run_stream};
use mfr_eeg::core::{StreamView, Streamer};
use mfr_eeg::model::ModelView;

include!(concat!(env!("OUT_DIR"), "/dims.rs"));

static MODEL_F32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_f32.safetensors"));
static MODEL_I8: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_int8.safetensors"));

/// Runs `seconds` through the firmware loop (with `cycles_per_window` on the simulated clock)
/// and through a `StreamView` fed the same samples in chunks of 37 frames; returns both
/// outputs and the firmware's stats.
fn both<const D: usize, const S: usize, const K: usize>(
    bytes: &[u8],
    seconds: u64,
    cycles_per_window: u64,
) -> (Vec<f32>, Vec<f32>, firmware_sim::RunStats) {
    let view = ModelView::parse(bytes).unwrap();
    let m = view.meta();
    let frames = seconds * m.sample_rate_hz as u64;
    let mut fw: Streamer<'_, D, S, K, CHANNELS> = Streamer::new(view.sae(), m.hop).unwrap();
    let mut queue = BlockQueue::new();
    let mut fw_out = Vec::new();
    let stats = run_stream(
        &mut fw,
        &mut Adc::new(m.sample_rate_hz),
        &mut queue,
        frames,
        m.sample_rate_hz,
        m.hop,
        cycles_per_window,
        |o| fw_out.extend_from_slice(o),
    )
    .unwrap();

    let mut adc = Adc::new(m.sample_rate_hz);
    let mut input = Vec::new();
    let mut codes = [0i32; BLOCK * CHANNELS];
    for _ in 0..frames.div_ceil(BLOCK as u64) {
        adc.read_block(&mut codes);
        input.extend(codes.iter().map(|&c| c as f32 * Adc::LSB_UV));
    }
    let sae = view.sae();
    let mut buf = vec![0.0; StreamView::buffer_len(&sae, CHANNELS)];
    let mut topk = vec![0; sae.k()];
    let mut host = StreamView::new(sae, m.hop, CHANNELS, &mut buf, &mut topk).unwrap();
    let mut host_out = vec![0.0; input.len()];
    for (i, o) in input
        .chunks(37 * CHANNELS)
        .zip(host_out.chunks_mut(37 * CHANNELS))
    {
        host.push_interleaved(i, o).unwrap();
    }
    (fw_out, host_out, stats)
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

#[test]
fn firmware_loop_equals_host_streamer_bit_for_bit() {
    // A cost well inside real time: every block is processed, none dropped.
    let (fw, host, stats) = both::<I8_D, I8_S, I8_K>(MODEL_I8, 6, 70_000);
    assert_eq!(stats.overruns, 0);
    assert_bitwise(&fw, &host, "int8 model");
    let (fw, host, stats) = both::<F32_D, F32_S, F32_K>(MODEL_F32, 3, 830_000);
    assert_eq!(stats.overruns, 0);
    assert!(
        stats.max_queued >= 2,
        "a hop's windows take several interrupt periods"
    );
    assert_bitwise(&fw, &host, "f32 model");
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
    let (fw, _, stats) = both::<I8_D, I8_S, I8_K>(MODEL_I8, 4, per_window);
    assert_eq!(stats.max_queued, QUEUE_SLOTS - 1);
    assert!(stats.overruns > 0);
    let blocks = 4 * rate as u64 / BLOCK as u64;
    assert_eq!(stats.frames, (blocks - stats.overruns) * BLOCK as u64);
    assert_eq!(fw.len() as u64, stats.frames * CHANNELS as u64);
}
