//! The firmware loop of `firmware-sim`, shared by the simulator binary and its tests: a
//! simulated ADC whose interrupt puts blocks of samples into a fixed-capacity single-producer
//! single-consumer queue (`heapless::spsc::Queue`, the usual interrupt-to-main-loop hand-off
//! on a microcontroller), and a main loop that drains the queue into the core's streaming
//! denoiser.
//!
//! Time is simulated with the Cortex-M4F cost model of the binary: interrupts arrive every
//! `BLOCK / rate` seconds, and the main loop is busy for the estimated cycles of the windows it
//! completes, so blocks pile up in the queue while a hop's windows are computed. The queue
//! must hold them; a full queue drops the block (an overrun, counted), as firmware would.

use heapless::spsc::Queue;
use mfr_eeg::core::{CoreError, Streamer};
use mfr_eeg::rng::Rng;

/// Channels of the simulated acquisition.
pub const CHANNELS: usize = 8;
/// Samples per channel delivered by one ADC interrupt.
pub const BLOCK: usize = 8;
/// Queue slots (heapless's SPSC queue holds one less block than its slot count).
pub const QUEUE_SLOTS: usize = 8;
/// Clock of the simulated MCU (Hz).
pub const CLOCK_HZ: f64 = 64e6;

/// One interrupt's raw ADC codes: `BLOCK` frames of `CHANNELS` codes, interleaved by frame.
pub type Block = [i32; BLOCK * CHANNELS];
/// The interrupt-to-main-loop queue.
pub type BlockQueue = Queue<Block, QUEUE_SLOTS>;

/// Simulated 24-bit EEG ADC (ADS1299-like, gain 24: 0.0224 uV per LSB): alpha and beta
/// rhythms, white noise, 50 Hz mains and an eye blink on the frontal channels every 4 s.
pub struct Adc {
    rng: Rng,
    n: u64,
    rate_hz: f32,
}

impl Adc {
    /// Microvolts per ADC code.
    pub const LSB_UV: f32 = 0.022_351_742;

    /// A fresh ADC at `rate_hz` (the same seed every time).
    pub fn new(rate_hz: f32) -> Self {
        Self {
            rng: Rng::new(2024),
            n: 0,
            rate_hz,
        }
    }

    /// One interrupt: the next block of raw codes.
    pub fn read_block(&mut self, codes: &mut Block) {
        for frame in codes.chunks_exact_mut(CHANNELS) {
            let t = self.n as f32 / self.rate_hz;
            let tau = core::f32::consts::TAU;
            let blink_phase = (t % 4.0) - 2.0;
            let blink = 120.0 * (-(blink_phase * blink_phase) / 0.02).exp();
            for (c, code) in frame.iter_mut().enumerate() {
                let ph = c as f32 * 0.7;
                let uv = 20.0 * (tau * 10.0 * t + ph).sin()
                    + 5.0 * (tau * 21.0 * t + 2.0 * ph).sin()
                    + 8.0 * (tau * 50.0 * t).sin()
                    + 4.0 * self.rng.normal() as f32
                    + if c < 2 { blink } else { 0.0 };
                *code = (uv / Self::LSB_UV) as i32;
            }
            self.n += 1;
        }
    }
}

/// What a run of [`run_stream`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunStats {
    /// Frames pushed through the streamer.
    pub frames: u64,
    /// Sum of |output| over all samples (a cheap fingerprint of the output).
    pub checksum: f64,
    /// Blocks dropped because the queue was full when their interrupt fired.
    pub overruns: u64,
    /// Most blocks waiting in the queue at once.
    pub max_queued: usize,
}

/// Runs `frames` frames of simulated acquisition: interrupts fill `queue` from `adc` on the
/// simulated clock, the main loop drains it into `streamer` and hands every output block
/// (interleaved, `BLOCK * CHANNELS` samples) to `sink`. `cycles_per_window` is the cost
/// model's estimate for one window of one channel; `hop` the model's hop. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn run_stream<const D: usize, const S: usize, const K: usize>(
    streamer: &mut Streamer<'_, D, S, K, CHANNELS>,
    adc: &mut Adc,
    queue: &mut BlockQueue,
    frames: u64,
    rate_hz: f32,
    hop: usize,
    cycles_per_window: u64,
    mut sink: impl FnMut(&[f32]),
) -> Result<RunStats, CoreError> {
    let (mut isr, mut main) = queue.split();
    let period = BLOCK as f64 / f64::from(rate_hz) * CLOCK_HZ; // cycles between interrupts
    let blocks = frames.div_ceil(BLOCK as u64);
    let mut fired = 0u64; // interrupts so far
    let mut now = 0.0f64; // main-loop clock, cycles
    let mut stats = RunStats::default();
    let mut codes = [0i32; BLOCK * CHANNELS];
    let mut input = [0.0f32; BLOCK * CHANNELS];
    let mut output = [0.0f32; BLOCK * CHANNELS];
    // Fires every interrupt due by `t` (the ADC samples whether or not there is room).
    let mut fire_until = |t: f64,
                          isr: &mut heapless::spsc::Producer<'_, Block, QUEUE_SLOTS>,
                          fired: &mut u64,
                          stats: &mut RunStats| {
        while *fired < blocks && *fired as f64 * period <= t {
            adc.read_block(&mut codes);
            if isr.enqueue(codes).is_err() {
                stats.overruns += 1;
            }
            *fired += 1;
            stats.max_queued = stats.max_queued.max(isr.len());
        }
    };
    loop {
        fire_until(now, &mut isr, &mut fired, &mut stats);
        let Some(block) = main.dequeue() else {
            if fired == blocks {
                break;
            }
            now = fired as f64 * period; // idle until the next interrupt
            continue;
        };
        for (x, &c) in input.iter_mut().zip(&block) {
            *x = c as f32 * Adc::LSB_UV;
        }
        streamer.push_interleaved(&input, &mut output)?;
        stats.checksum += output.iter().map(|&v| f64::from(v).abs()).sum::<f64>();
        sink(&output);
        // Busy for the windows this block completed (one per `hop` frames, every channel).
        let done = stats.frames;
        stats.frames += BLOCK as u64;
        let windows = stats.frames / hop as u64 - done / hop as u64;
        now += (windows * CHANNELS as u64 * cycles_per_window) as f64;
    }
    Ok(stats)
}
