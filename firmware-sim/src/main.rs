//! A host program that behaves like EEG firmware built on the `no_std` core: models embedded
//! with `include_bytes!`, all state in fixed-size structures created at start-up, a global
//! allocator that aborts the process on any allocation after start-up, and a simulated ADC
//! interrupt delivering 8 samples x 8 channels at a time through a fixed-capacity queue into
//! the multi-channel eye-blink stage and then the streaming denoiser (the loop itself is in
//! the library, `firmware_sim::run_stream`).
//!
//! Usage: `firmware-sim [--seconds N] [--model f32|int8|both] [--no-eye] [--kernel-windows N]`.
//! `--no-eye` leaves out the eye stage (the ADC frames go straight into the denoiser).
//! `--kernel-windows N` runs N windows of one channel through the int8 (or `--model f32`)
//! streamer from a precomputed buffer and nothing else, for instruction counting with
//! `valgrind --tool=callgrind` (see README.md).

use firmware_sim::{
    Adc, BLOCK, BlockQueue, CHANNELS, CYCLES_DADD, CYCLES_DCONV, CYCLES_DDIV, CYCLES_DMUL,
    CYCLES_DSQRT, EYE_WORK, EyeCost, EyeStage, FRONTAL, QUEUE_SLOTS, RunStats, eye_line_layout,
    eye_line_len, eye_stage, run_stream,
};
use mfr_eeg::core::{Blend, FaultCounts, MwfChannel, Sae, Streamer};
use mfr_eeg::model::ModelView;
use mfr_eeg::rng::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

include!(concat!(env!("OUT_DIR"), "/dims.rs"));

/// d_in 256, d_sae 512, k 16 f32 model (seeded random dictionary, see build.rs).
static MODEL_F32: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_f32.safetensors"));
/// The int8 model (shipped tiny model if present at build time, else a seeded stand-in).
static MODEL_I8: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_int8.safetensors"));
const INT8_SOURCE: &str = env!("FIRMWARE_INT8_SOURCE");
/// Eye-stage delay lines, sized for each model's rate.
const EYE_LINE_F32: usize = eye_line_len(F32_RATE);
const EYE_LINE_I8: usize = eye_line_len(I8_RATE);

/// Aborts on any allocation once armed; counts allocations before that.
struct FirmwareAlloc;
static ARMED: AtomicBool = AtomicBool::new(false);
static ALLOCS_BEFORE_ARMING: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for FirmwareAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::SeqCst) {
            // Stderr is unbuffered: this write does not allocate.
            let _ =
                std::io::stderr().write_all(b"firmware-sim: allocation after start-up, aborting\n");
            std::process::abort();
        }
        ALLOCS_BEFORE_ARMING.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: FirmwareAlloc = FirmwareAlloc;

/// Deterministic operation counts per window and channel, and the Cortex-M4F cycle model.
struct Cost {
    enc_macs: u64,
    dec_macs: u64,
    /// The gated linear path's FIR (f32), counted as if the gate always opens.
    skip_macs: u64,
    topk_compares: u64,
    per_sample_ops: u64,
    cycles: u64,
}

/// Cycle costs per operation on a Cortex-M4F at 0 flash wait states (ART/cache on), from the
/// ARM Cortex-M4 TRM instruction timings for the loops this core compiles to; see README.md
/// for the derivation. An estimate (about +-50 %), not a measurement.
pub const CYCLES_F32_MAC: f64 = 6.0;
/// int8 encoder MAC: LDRSB (or LDR + SXTB16 for 4 weights) + SMLABB into a register block.
pub const CYCLES_I8_ENC_MAC: f64 = 2.5;
/// int8 decoder MAC: LDRSB + VMOV + VCVT + VFMA + output load/store.
pub const CYCLES_I8_DEC_MAC: f64 = 6.0;
/// One top-k comparison (VLDR + VCMP + branch).
pub const CYCLES_TOPK_COMPARE: f64 = 4.0;
/// Per window sample: z-score (2 passes, VDIV 14 cycles, map back), OLA, buffer shifts.
pub const CYCLES_PER_SAMPLE: f64 = 40.0;

fn cost(sae: &Sae<'_>) -> Cost {
    let (d_in, d_sae, k) = (sae.d_in() as u64, sae.d_sae() as u64, sae.k() as u64);
    let enc_macs = d_in * d_sae;
    let dec_macs = k * d_in; // upper bound: topk_relu skips latents clipped to 0
    let skip_macs = sae.skip().map_or(0, |s| s.len() as u64 * d_in);
    let topk_compares = d_sae;
    let per_sample_ops = d_in;
    let (enc_c, dec_c) = if sae.is_int8() {
        (CYCLES_I8_ENC_MAC, CYCLES_I8_DEC_MAC)
    } else {
        (CYCLES_F32_MAC, CYCLES_F32_MAC)
    };
    let cycles = enc_macs as f64 * enc_c
        + dec_macs as f64 * dec_c
        + skip_macs as f64 * CYCLES_F32_MAC
        // the gate's high-frequency ratio: a difference, two multiply-adds per sample
        + if skip_macs > 0 { d_in as f64 * 8.0 } else { 0.0 }
        // the correction gate: |x_hat - x|² and |x|² (a difference, two multiply-adds per
        // sample), a division and a square root, then x + g (x_hat - x) (a difference and a
        // multiply-add per sample)
        + if sae.blend().is_some() { d_in as f64 * 14.0 + 30.0 } else { 0.0 }
        // a slow ramp: per sample a running sum, a ring store and load, a difference and a
        // multiply for the moving average, one more multiply-add; a division per edge sample
        + sae
            .blend()
            .and_then(|b| b.slow)
            .map_or(0.0, |s| d_in as f64 * 8.0 + f64::from(s.half) * 2.0 * 14.0)
        + topk_compares as f64 * CYCLES_TOPK_COMPARE
        + (k * k) as f64 * 2.0 // insertions into the sorted top-k list (worst case)
        + per_sample_ops as f64 * CYCLES_PER_SAMPLE;
    Cost {
        enc_macs,
        dec_macs,
        skip_macs,
        topk_compares,
        per_sample_ops,
        cycles: cycles as u64,
    }
}

/// Prints the denoiser's report; returns its estimated cycles per second at `CHANNELS`.
fn report(
    name: &str,
    view: &ModelView<'_>,
    sae: &Sae<'_>,
    file_bytes: usize,
    state_bytes: usize,
    stats: RunStats,
    faults: FaultCounts,
) -> f64 {
    let m = view.meta();
    let c = cost(sae);
    let windows_per_s = f64::from(m.sample_rate_hz) / m.hop as f64;
    let t_window = c.cycles as f64 / 64e6;
    let io = BLOCK * CHANNELS * 4 * 2;
    println!(
        "[{name}] d_in {} d_sae {} k {} hop {} @ {} Hz, {}",
        m.d_in,
        m.d_sae,
        m.k,
        m.hop,
        m.sample_rate_hz,
        if m.int8 { "int8" } else { "f32" }
    );
    if let Some(b) = sae.blend() {
        let ramp = if b.is_always() {
            "none".to_string()
        } else {
            format!("{}..{}", b.lo, b.hi)
        };
        match b.slow {
            None => println!("  correction gate: {ramp}"),
            Some(s) => println!(
                "  correction gate: {ramp} on the fast part, {}..{} on the slow part ({}-sample \
                 mean; behind the eye stage, as `mfr-eeg denoise`)",
                s.lo,
                s.hi,
                2 * s.half + 1
            ),
        }
    }
    println!(
        "  samples processed: {} ({} frames x {CHANNELS} channels)",
        stats.frames * CHANNELS as u64,
        stats.frames
    );
    println!(
        "  faults repaired: {} input samples, {} windows; output checksum {:.3}",
        faults.input_samples, faults.windows, stats.checksum
    );
    println!(
        "  interrupt queue (cost-model clock): at most {} of {} blocks waiting, {} overruns",
        stats.max_queued,
        QUEUE_SLOTS - 1,
        stats.overruns
    );
    println!(
        "  static memory: {} bytes = weights {} (file in flash {}) + streamer state+scratch {} ({CHANNELS} ch) + ADC/output blocks {io}",
        sae.weight_bytes() + state_bytes + io,
        sae.weight_bytes(),
        file_bytes,
        state_bytes
    );
    println!(
        "  ops/window/channel: {} encode MACs, <= {} decode MACs, <= {} linear-path MACs, {} top-k compares, {} per-sample ops",
        c.enc_macs, c.dec_macs, c.skip_macs, c.topk_compares, c.per_sample_ops
    );
    println!(
        "  Cortex-M4F @ 64 MHz (cost model): {} cycles = {:.3} ms/window; x real time: 1 ch {:.1}, 8 ch {:.1}, 64 ch {:.2}",
        c.cycles,
        t_window * 1e3,
        1.0 / (windows_per_s * t_window),
        1.0 / (8.0 * windows_per_s * t_window),
        1.0 / (64.0 * windows_per_s * t_window)
    );
    windows_per_s * CHANNELS as f64 * c.cycles as f64
}

/// Prints the eye stage's report: its state after the run, memory, latency, operation count
/// and estimated Cortex-M4F time (soft-float f64); `sae_cycles_per_s` is the denoiser's.
fn report_eye<const L: usize>(
    eye: &EyeStage<L>,
    stats: &RunStats,
    rate_hz: f32,
    sae_cycles_per_s: f64,
) {
    let est = eye.estimator();
    let cfg = est.config();
    let e = &stats.eye;
    let seconds = e.frames_in as f64 / f64::from(rate_hz);
    let cost = EyeCost::new(cfg, CHANNELS, 1);
    let per_s = |n: u64| n as f64 / seconds;
    println!(
        "  eye stage: BlinkMwf over {CHANNELS} channels, detection reference mean(ch{}, ch{}); filter active {}, lambda {:.1}, reference corr {:.3}, {} filter updates ({:.1}/min) in {} attempts",
        FRONTAL[0],
        FRONTAL[1],
        if est.active() { "yes" } else { "no" },
        est.lambda(),
        est.reference_corr(),
        e.updates,
        60.0 * per_s(e.updates),
        e.update_attempts
    );
    println!(
        "  eye stage frames: {} in, {} out ({} cleaned by an active filter), blink detector open on {}; {} entered the statistics ({} frames later), {} covariance updates ({} blink), {} projections stored",
        e.frames_in,
        e.frames_out,
        e.frames_active,
        e.detected_frames,
        e.statistics_frames,
        cost.margin,
        e.covariance_frames,
        e.blink_covariance_frames,
        e.projections
    );
    println!(
        "  eye stage latency: {} frames = {:.3} s (before the denoiser's)",
        eye.delay(),
        eye.delay() as f64 / f64::from(rate_hz)
    );
    let chans = CHANNELS * size_of::<MwfChannel>();
    let work = EYE_WORK * size_of::<f64>();
    let line = L * size_of::<f32>();
    let total = size_of::<EyeStage<L>>();
    let (slots, per_slot, taps) = eye_line_layout(rate_hz as usize);
    println!(
        "  eye stage static memory: {total} bytes = {CHANNELS} channel states {chans} + workspace {work} + delay line {line} ({slots} slots x {per_slot} f32 + {taps} FIR taps) + estimator {} (and the loop's block of cleaned frames, {} bytes)",
        total - chans - work - line,
        BLOCK * CHANNELS * size_of::<f32>()
    );
    let u = cost.update_ops();
    let h = cost.fir_half;
    // Steady state: every frame through an active filter (one new projection), every
    // `decimate`-th frame into the blink covariance (a bound), and updates with the power
    // iteration at its bound and the FIR window's projections stored again: one every
    // `update_every` frames (the bound: blink frames entering the statistics continuously),
    // or at the rate measured in the run since its first update.
    let frame = cost.per_frame
        + cost.per_statistics_frame
        + cost.per_output_frame
        + cost.per_active_output_frame
        + cost.per_projection;
    let covariance = cost.per_covariance_frame + cost.per_blink_covariance_frame;
    let update = u + cost.per_update_check + cost.per_projection * (2 * h);
    println!(
        "  eye stage f64 ops (cost model): {:.0}/s; per frame {} MAC (band-pass {}, baselines {}, vᵀx {}, FIR {}, correction {CHANNELS}); covariance every {} frames {} MAC (+{} blink terms); update every {} frames while blink frames come in, else every {}: Cholesky {} MAC + {} sqrt, power iteration <= {} x {} MAC, FIR window's vᵀx again {} x {} MAC ({} MAC, {} div, {} sqrt per update at the bound)",
        per_s(e.ops.total()),
        frame.mac,
        cost.per_statistics_frame.mac,
        cost.per_output_frame.mac,
        cost.per_projection.mac,
        h + 1,
        cfg.decimate,
        cost.per_covariance_frame.mac,
        cost.per_blink_covariance_frame.mac,
        cfg.update_every,
        cfg.idle_update_every,
        (CHANNELS.pow(3) - CHANNELS) / 6,
        CHANNELS,
        cost.iterations,
        cost.per_iteration.mac,
        2 * h,
        cost.per_projection.mac,
        update.mac,
        update.div,
        update.sqrt
    );
    let update_cycles = e.updates * u.cycles();
    let share = per_s(e.cycles) / firmware_sim::CLOCK_HZ;
    println!(
        "  eye stage Cortex-M4F @ 64 MHz (estimate, soft-float f64: add {CYCLES_DADD}, mul {CYCLES_DMUL}, div {CYCLES_DDIV}, sqrt {CYCLES_DSQRT}, f32<->f64 {CYCLES_DCONV} cycles): {:.0} cycles/s = {:.1} % of real time at {CHANNELS} ch ({:.1} % filter updates, {:.1} % per-frame work)",
        per_s(e.cycles),
        100.0 * share,
        100.0 * per_s(update_cycles) / firmware_sim::CLOCK_HZ,
        100.0 * per_s(e.cycles - update_cycles) / firmware_sim::CLOCK_HZ
    );
    let fs = f64::from(rate_hz);
    // Updates per second: at the bound, and measured after the run's first update.
    let bound_rate = fs / cfg.update_every as f64;
    let measured_rate = e.first_update_frame.map_or(0.0, |f| {
        (e.updates - 1) as f64 / ((e.frames_in - f) as f64 / fs).max(1.0 / fs)
    });
    let steady_ops = |rate: f64| {
        frame.total() as f64 * fs
            + covariance.total() as f64 * fs / cfg.decimate as f64
            + update.total() as f64 * rate
    };
    let steady_cycles = |rate: f64| {
        (frame.cycles() + cost.hw_cycles_per_frame) as f64 * fs
            + covariance.cycles() as f64 * fs / cfg.decimate as f64
            + update.cycles() as f64 * rate
    };
    let pct = |cycles: f64| 100.0 * cycles / firmware_sim::CLOCK_HZ;
    println!(
        "  eye stage steady state (estimate), blink frames continuously (bound: an update every {} frames, {:.0}/min): {:.0} f64 ops/s, {:.0} cycles/s = {:.1} % of real time at {CHANNELS} ch; one update = {} cycles + {} per power-iteration step (counted {} steps) + {} for the FIR window's projections",
        cfg.update_every,
        60.0 * bound_rate,
        steady_ops(bound_rate),
        steady_cycles(bound_rate),
        pct(steady_cycles(bound_rate)),
        cost.per_update.cycles(),
        cost.per_iteration.cycles(),
        cost.iterations,
        (cost.per_projection * (2 * h)).cycles()
    );
    println!(
        "  eye stage steady state (estimate), at this run's update rate after its first update ({:.1}/min): {:.0} f64 ops/s, {:.0} cycles/s = {:.1} % of real time at {CHANNELS} ch ({:.1} % per-frame work, {:.1} % updates)",
        60.0 * measured_rate,
        steady_ops(measured_rate),
        steady_cycles(measured_rate),
        pct(steady_cycles(measured_rate)),
        pct(steady_cycles(0.0)),
        pct(update.cycles() as f64 * measured_rate)
    );
    let sae = sae_cycles_per_s / firmware_sim::CLOCK_HZ;
    println!(
        "  pipeline at {CHANNELS} ch (estimate): eye stage {:.1} % + denoiser {:.1} % = {:.1} % of the 64 MHz core",
        100.0 * share,
        100.0 * sae,
        100.0 * (share + sae)
    );
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() -> ExitCode {
    // ---- start-up: parse args and models, build all state (allocation allowed here) ----
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = arg_value(&args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let which = arg_value(&args, "--model").unwrap_or_else(|| "both".into());
    let kernel: Option<u64> = arg_value(&args, "--kernel-windows").and_then(|s| s.parse().ok());
    let with_eye = !args.iter().any(|a| a == "--no-eye");
    let f32_view = match ModelView::parse(MODEL_F32) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("firmware-sim: embedded f32 model invalid: {e}");
            return ExitCode::FAILURE;
        }
    };
    let i8_view = match ModelView::parse(MODEL_I8) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("firmware-sim: embedded int8 model invalid ({INT8_SOURCE}): {e}");
            return ExitCode::FAILURE;
        }
    };
    // Behind the eye stage the denoiser applies a correction's slow part only when it is
    // large, as `mfr-eeg denoise` does on the channels its eye stage cleans.
    let gated = |view: &ModelView<'static>| {
        let sae = view.sae();
        if with_eye {
            sae.with_blend(Blend::after_eye(sae.blend(), view.meta().sample_rate_hz))
        } else {
            Ok(sae)
        }
    };
    let (f32_sae, i8_sae) = match (gated(&f32_view), gated(&i8_view)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("firmware-sim: correction gate after the eye stage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut f32_stream: Box<Streamer<'_, F32_D, F32_S, F32_K, CHANNELS>> =
        match Streamer::new(f32_sae, f32_view.meta().hop) {
            Ok(s) => Box::new(s),
            Err(e) => {
                eprintln!("firmware-sim: f32 streamer: {e}");
                return ExitCode::FAILURE;
            }
        };
    let mut i8_stream: Box<Streamer<'_, I8_D, I8_S, I8_K, CHANNELS>> =
        match Streamer::new(i8_sae, i8_view.meta().hop) {
            Ok(s) => Box::new(s),
            Err(e) => {
                eprintln!("firmware-sim: int8 streamer: {e}");
                return ExitCode::FAILURE;
            }
        };
    // The eye stages: all their state in fixed-size arrays, built here.
    let mut f32_eye: Box<EyeStage<EYE_LINE_F32>> = match eye_stage(f32_view.meta().sample_rate_hz) {
        Ok(e) => Box::new(e),
        Err(e) => {
            eprintln!("firmware-sim: f32 eye stage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut i8_eye: Box<EyeStage<EYE_LINE_I8>> = match eye_stage(i8_view.meta().sample_rate_hz) {
        Ok(e) => Box::new(e),
        Err(e) => {
            eprintln!("firmware-sim: int8 eye stage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut adc_f32 = Adc::new(f32_view.meta().sample_rate_hz);
    let mut adc_i8 = Adc::new(i8_view.meta().sample_rate_hz);
    let mut queue = BlockQueue::new();
    let f32_cycles = cost(&f32_sae).cycles;
    let i8_cycles = cost(&i8_sae).cycles;
    let kernel_int8 = which != "f32";
    let kernel_input: Vec<f32> = if kernel.is_some() {
        let mut r = Rng::new(5);
        (0..1 << 16).map(|_| (20.0 * r.normal()) as f32).collect()
    } else {
        Vec::new()
    };
    let _ = std::io::stdout().flush();
    let allocs_at_startup = ALLOCS_BEFORE_ARMING.load(Ordering::Relaxed);

    // ---- run: from here on any allocation aborts the process ----
    ARMED.store(true, Ordering::SeqCst);
    let mut results = [RunStats::default(); 2];
    let mut err = None;
    if let Some(windows) = kernel {
        // One channel's worth of windows through the 8-channel streamer's channel 0 would
        // also run 7 others, so feed 8 identical channels and divide by 8 in the analysis.
        let mut out = [0.0f32; BLOCK * CHANNELS];
        let mut block = [0.0f32; BLOCK * CHANNELS];
        let hop = if kernel_int8 {
            i8_view.meta().hop
        } else {
            f32_view.meta().hop
        } as u64;
        let frames = windows * hop;
        let mut at = 0usize;
        let mut f = 0;
        while f < frames {
            for frame in block.chunks_exact_mut(CHANNELS) {
                frame.fill(kernel_input[at & 0xFFFF]);
                at += 1;
            }
            let r = if kernel_int8 {
                i8_stream.push_interleaved(&block, &mut out)
            } else {
                f32_stream.push_interleaved(&block, &mut out)
            };
            if let Err(e) = r {
                err = Some(firmware_sim::LoopError::from(e));
                break;
            }
            f += BLOCK as u64;
        }
        results[0] = RunStats {
            frames: f,
            checksum: f64::from(out[0]),
            ..RunStats::default()
        };
    } else {
        if which != "int8" {
            let m = f32_view.meta();
            let frames = seconds * m.sample_rate_hz as u64;
            match run_stream(
                &mut f32_stream,
                with_eye.then_some(&mut *f32_eye),
                &mut adc_f32,
                &mut queue,
                frames,
                m.sample_rate_hz,
                m.hop,
                f32_cycles,
                |_, _| {},
            ) {
                Ok(r) => results[0] = r,
                Err(e) => err = Some(e),
            }
        }
        if which != "f32" && err.is_none() {
            let m = i8_view.meta();
            let frames = seconds * m.sample_rate_hz as u64;
            match run_stream(
                &mut i8_stream,
                with_eye.then_some(&mut *i8_eye),
                &mut adc_i8,
                &mut queue,
                frames,
                m.sample_rate_hz,
                m.hop,
                i8_cycles,
                |_, _| {},
            ) {
                Ok(r) => results[1] = r,
                Err(e) => err = Some(e),
            }
        }
    }
    ARMED.store(false, Ordering::SeqCst);
    // ---- shutdown: reporting may allocate again ----

    if let Some(e) = err {
        eprintln!("firmware-sim: streaming failed: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "firmware-sim: {allocs_at_startup} allocations during start-up, 0 after (the allocator aborts otherwise)"
    );
    println!("int8 model: {INT8_SOURCE}");
    if let Some(w) = kernel {
        println!(
            "kernel mode: {w} windows x {CHANNELS} identical channels, {} frames, last {}",
            results[0].frames, results[0].checksum
        );
        return ExitCode::SUCCESS;
    }
    if !with_eye {
        println!("eye stage: off (--no-eye)");
    }
    if which != "int8" {
        let sae = report(
            "f32",
            &f32_view,
            &f32_sae,
            MODEL_F32.len(),
            Streamer::<F32_D, F32_S, F32_K, CHANNELS>::state_bytes(),
            results[0],
            f32_stream.faults(),
        );
        if with_eye {
            report_eye(&f32_eye, &results[0], f32_view.meta().sample_rate_hz, sae);
        }
    }
    if which != "f32" {
        let sae = report(
            "int8",
            &i8_view,
            &i8_sae,
            MODEL_I8.len(),
            Streamer::<I8_D, I8_S, I8_K, CHANNELS>::state_bytes(),
            results[1],
            i8_stream.faults(),
        );
        if with_eye {
            report_eye(&i8_eye, &results[1], i8_view.meta().sample_rate_hz, sae);
        }
    }
    ExitCode::SUCCESS
}
