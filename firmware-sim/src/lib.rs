//! The firmware loop of `firmware-sim`, shared by the simulator binary and its tests: a
//! simulated ADC whose interrupt puts blocks of samples into a fixed-capacity single-producer
//! single-consumer queue (`heapless::spsc::Queue`, the usual interrupt-to-main-loop hand-off
//! on a microcontroller), and a main loop that drains the queue through the core's
//! multi-channel eye-blink stage ([`BlinkMwf`], optional) into its streaming denoiser.
//!
//! Time is simulated with the Cortex-M4F cost model of the binary: interrupts arrive every
//! `BLOCK / rate` seconds, and the main loop is busy for the estimated cycles of the windows it
//! completes and of the eye stage's frames ([`EyeCost`]), so blocks pile up in the queue while
//! a hop's windows are computed. The queue must hold them; a full queue drops the block (an
//! overrun, counted), as firmware would.

use core::fmt;
use core::ops::{Add, AddAssign, Mul};
use heapless::spsc::Queue;
use mfr_eeg::core::{
    BlinkMwf, CoreError, DEFAULT_MWF_DELAY_S, MwfChannel, MwfConfig, MwfEstimator, SpatialError,
    Streamer,
};
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

/// How strongly each channel sees a blink (channel 0 = 1): a fixed scalp topography, strong
/// on the frontal pair 0 and 1 (Fp1/Fp2-like), fading towards the back of the montage
/// (AF/F, then C, then P/O-like channels), as the eye's dipole field decays with distance.
pub const BLINK_TOPOGRAPHY: [f32; CHANNELS] = [1.0, 0.95, 0.6, 0.55, 0.3, 0.25, 0.1, 0.08];
/// Seconds between blink peaks: uniform in this range, drawn from the ADC's seeded blink
/// generator (the first peak is at 2 s).
pub const BLINK_INTERVAL_S: (f64, f64) = (3.0, 6.0);
/// Peak of each blink on channel 0 (uV): uniform in this range, from the same generator.
pub const BLINK_PEAK_UV: (f64, f64) = (100.0, 140.0);
/// Standard deviation (s) of the Gaussian blink waveform (about 0.5 s from rise to fall).
pub const BLINK_SIGMA_S: f32 = 0.1;

/// Frequency (Hz) of the simulated alpha rhythm (20 uV). Not a divisor-friendly 10 Hz: with
/// 10 Hz and 21 Hz the background would repeat (up to the noise) every 0.5 s, the eye stage's
/// delay, and a stream shifted by that delay would look like a perfectly cleaned one.
pub const ALPHA_HZ: f32 = 9.7;
/// Frequency (Hz) of the simulated beta rhythm (5 uV).
pub const BETA_HZ: f32 = 21.3;

/// Simulated 24-bit EEG ADC (ADS1299-like, gain 24: 0.0224 uV per LSB): alpha and beta
/// rhythms, white noise, 50 Hz mains, and eye blinks of [`BLINK_PEAK_UV`] every
/// [`BLINK_INTERVAL_S`] seen on every channel through [`BLINK_TOPOGRAPHY`]. Deterministic:
/// the same samples on every run. The blink timing has its own generator, so
/// [`Adc::without_blinks`] gives exactly the same stream less the blinks.
pub struct Adc {
    rng: Rng,
    blink_rng: Rng,
    n: u64,
    rate_hz: f32,
    blinks: bool,
    /// Frame of the current (or next) blink's peak.
    blink_at: u64,
    blink_peak: f32,
}

impl Adc {
    /// Microvolts per ADC code.
    pub const LSB_UV: f32 = 0.022_351_742;

    /// A fresh ADC at `rate_hz` (the same seed every time).
    pub fn new(rate_hz: f32) -> Self {
        let mut blink_rng = Rng::derive(2024, 1);
        let blink_peak = blink_rng.uniform(BLINK_PEAK_UV.0, BLINK_PEAK_UV.1) as f32;
        Self {
            rng: Rng::new(2024),
            blink_rng,
            n: 0,
            rate_hz,
            blinks: true,
            blink_at: (2.0 * f64::from(rate_hz)).round() as u64,
            blink_peak,
        }
    }

    /// The same ADC stream without the blinks (for measuring what the eye stage removes).
    pub fn without_blinks(rate_hz: f32) -> Self {
        Self {
            blinks: false,
            ..Self::new(rate_hz)
        }
    }

    /// One interrupt: the next block of raw codes.
    pub fn read_block(&mut self, codes: &mut Block) {
        let mut blink = [0.0f32; BLOCK * CHANNELS];
        self.read_block_parts(codes, &mut blink);
    }

    /// One interrupt: the next block of raw codes, and the blink component (uV) each sample
    /// holds (zeros from [`Adc::without_blinks`]), interleaved as the codes.
    pub fn read_block_parts(&mut self, codes: &mut Block, blink: &mut [f32; BLOCK * CHANNELS]) {
        for (frame, bl) in codes
            .chunks_exact_mut(CHANNELS)
            .zip(blink.chunks_exact_mut(CHANNELS))
        {
            let t = self.n as f32 / self.rate_hz;
            let tau = core::f32::consts::TAU;
            let wave = self.blink_wave();
            for (c, (code, b)) in frame.iter_mut().zip(bl.iter_mut()).enumerate() {
                let ph = c as f32 * 0.7;
                *b = if self.blinks {
                    BLINK_TOPOGRAPHY[c] * wave
                } else {
                    0.0
                };
                let uv = 20.0 * (tau * ALPHA_HZ * t + ph).sin()
                    + 5.0 * (tau * BETA_HZ * t + 2.0 * ph).sin()
                    + 8.0 * (tau * 50.0 * t).sin()
                    + 4.0 * self.rng.normal() as f32
                    + *b;
                *code = (uv / Self::LSB_UV) as i32;
            }
            self.n += 1;
        }
    }

    /// The blink waveform (uV at topography 1) at frame `self.n`; moves on to the next blink
    /// once the current one is 1 s past its peak (the next peak is at least 3 s later).
    fn blink_wave(&mut self) -> f32 {
        let rate = f64::from(self.rate_hz);
        if self.n > self.blink_at + rate as u64 {
            let gap = self
                .blink_rng
                .uniform(BLINK_INTERVAL_S.0, BLINK_INTERVAL_S.1);
            self.blink_at += (gap * rate).round() as u64;
            self.blink_peak = self.blink_rng.uniform(BLINK_PEAK_UV.0, BLINK_PEAK_UV.1) as f32;
        }
        let dt = (self.n as f32 - self.blink_at as f32) / self.rate_hz;
        self.blink_peak * (-(dt * dt) / (2.0 * BLINK_SIGMA_S * BLINK_SIGMA_S)).exp()
    }
}

/// Channels whose mean is the eye stage's detection reference (the frontal pair).
pub const FRONTAL: [usize; 2] = [0, 1];

/// The eye stage's detection reference for a frame: the mean of the frontal channels, as
/// the CLI's frontal plan uses when a montage has no EOG channel. In f32 on the FPU; equal,
/// bit for bit, to the CLI's f64 weighted sum rounded to f32 (the f64 sum of two f32s is
/// exact here, and halving is exact).
pub fn frontal_reference(frame: &[f32]) -> f32 {
    0.5 * (frame[FRONTAL[0]] + frame[FRONTAL[1]])
}

/// `f64`s of the eye stage's workspace (three `C x C` matrices).
pub const EYE_WORK: usize = MwfEstimator::<[MwfChannel; 0], [f64; 0]>::workspace_len(CHANNELS);

/// The eye stage with all its state in fixed-size arrays: one [`MwfChannel`] per channel,
/// the workspace, and a delay line of `L` `f32`s ([`eye_line_len`]).
pub type EyeStage<const L: usize> = BlinkMwf<[MwfChannel; CHANNELS], [f64; EYE_WORK], [f32; L]>;

/// Delay (frames) of the eye stage at `rate_hz`, as [`MwfConfig::for_rate`] sets it
/// ([`DEFAULT_MWF_DELAY_S`], rounded).
pub const fn eye_delay(rate_hz: usize) -> usize {
    (DEFAULT_MWF_DELAY_S * rate_hz as f64 + 0.5) as usize
}

/// Delay-line length (`f32`s) of the eye stage at `rate_hz`.
pub const fn eye_line_len(rate_hz: usize) -> usize {
    EyeStage::<0>::line_len(CHANNELS, eye_delay(rate_hz))
}

/// Layout of the eye stage's delay line at `rate_hz`, as `BlinkMwf::line_len` counts it:
/// `(slots, f32s per slot, FIR taps)`. One slot per frame for the delay, the newest frame
/// and the projection FIR's past half (`delay + 1 + delay / 4`), each holding the frame
/// (`CHANNELS`), its blink mark, the `MWF_MAX_REFERENCES` reference samples and the frame's
/// stored projection `vᵀx`; then the FIR's `delay / 4 + 1` taps (the filter is symmetric).
/// `slots x per slot + taps` = [`eye_line_len`] (checked by a test).
pub const fn eye_line_layout(rate_hz: usize) -> (usize, usize, usize) {
    let d = eye_delay(rate_hz);
    (
        d + 1 + d / 4,
        CHANNELS + 2 + mfr_eeg::core::MWF_MAX_REFERENCES,
        d / 4 + 1,
    )
}

/// An eye stage with the defaults of [`MwfConfig::for_rate`] at `rate_hz`. Fails when `L`
/// does not hold its delay line.
pub fn eye_stage<const L: usize>(rate_hz: f32) -> Result<EyeStage<L>, SpatialError> {
    BlinkMwf::new(
        MwfConfig::for_rate(f64::from(rate_hz)),
        [MwfChannel::default(); CHANNELS],
        [0.0; EYE_WORK],
        [0.0; L],
    )
}

/// Cycles of one soft-float `f64` addition or subtraction on a Cortex-M4F (`__aeabi_dadd`).
/// The M4F's FPU is single-precision only, so every `f64` operation of the eye stage is a
/// call into the ARM EABI run-time library. An estimate, see README.md.
pub const CYCLES_DADD: u64 = 50;
/// Cycles of one soft-float `f64` multiplication (`__aeabi_dmul`, UMULL-based).
pub const CYCLES_DMUL: u64 = 45;
/// Cycles of one soft-float `f64` division (`__aeabi_ddiv`, shift-and-subtract).
pub const CYCLES_DDIV: u64 = 250;
/// Cycles of one software `f64` square root (`libm::sqrt`, integer algorithm).
pub const CYCLES_DSQRT: u64 = 600;
/// Cycles of one `f32` <-> `f64` conversion (`__aeabi_f2d`, `__aeabi_d2f`).
pub const CYCLES_DCONV: u64 = 20;
/// Cycles per detection reference and frame of single-precision (hardware FPU) work: one
/// gate's step and opening (two VDIVs) and the frontal mean. Each frame takes two gate steps
/// per reference: the blink detector's and the background limit's on the band-passed sample.
pub const CYCLES_F32_PER_REFERENCE: u64 = 60;
/// Cycles per channel and frame of integer work: the frame into the delay line and out,
/// finiteness checks.
pub const CYCLES_INT_PER_CHANNEL: u64 = 8;

/// Counts of `f64` operations (each a soft-float call on a Cortex-M4F); a multiply-add is a
/// multiplication and an addition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F64Ops {
    /// Multiply-adds.
    pub mac: u64,
    /// Multiplications (not part of a multiply-add).
    pub mul: u64,
    /// Additions and subtractions (not part of a multiply-add).
    pub add: u64,
    /// Divisions.
    pub div: u64,
    /// Square roots.
    pub sqrt: u64,
    /// `f32` <-> `f64` conversions.
    pub conv: u64,
}

impl F64Ops {
    /// Every `f64` operation, a multiply-add counted as two.
    pub const fn total(&self) -> u64 {
        2 * self.mac + self.mul + self.add + self.div + self.sqrt + self.conv
    }

    /// Estimated Cortex-M4F cycles ([`CYCLES_DADD`] and the other soft-float costs).
    pub const fn cycles(&self) -> u64 {
        self.mac * (CYCLES_DMUL + CYCLES_DADD)
            + self.mul * CYCLES_DMUL
            + self.add * CYCLES_DADD
            + self.div * CYCLES_DDIV
            + self.sqrt * CYCLES_DSQRT
            + self.conv * CYCLES_DCONV
    }
}

impl Add for F64Ops {
    type Output = F64Ops;
    fn add(self, o: F64Ops) -> F64Ops {
        F64Ops {
            mac: self.mac + o.mac,
            mul: self.mul + o.mul,
            add: self.add + o.add,
            div: self.div + o.div,
            sqrt: self.sqrt + o.sqrt,
            conv: self.conv + o.conv,
        }
    }
}

impl AddAssign for F64Ops {
    fn add_assign(&mut self, o: F64Ops) {
        *self = *self + o;
    }
}

impl Mul<u64> for F64Ops {
    type Output = F64Ops;
    fn mul(self, n: u64) -> F64Ops {
        F64Ops {
            mac: self.mac * n,
            mul: self.mul * n,
            add: self.add * n,
            div: self.div * n,
            sqrt: self.sqrt * n,
            conv: self.conv * n,
        }
    }
}

/// Deterministic `f64` operation counts of the eye stage ([`BlinkMwf`], `src/core/mwf.rs`)
/// for `C` channels and `R` detection references, counted from its loops (`push`, `emit`,
/// `store_projections`, and the estimator's `detect`, `accumulate` and `update`).
/// [`run_stream`] applies them to the code paths each frame takes, which it follows from what
/// the core shows (frame counts, the blink detector's mark of each frame, the filter's version
/// and state), taking every frame to be finite; what it cannot see is counted at a bound or
/// left out (see the fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EyeCost {
    /// Every frame pushed: blink detection on the newest frame (each reference to f64, its DC
    /// blocker `x - x1 + p y1`, back to f32 for the gate).
    pub per_frame: F64Ops,
    /// Every frame entering the statistics, [`EyeCost::margin`] frames after it was pushed
    /// (the last `margin` frames of a run never do): each reference and channel to f64, minus
    /// its first sample, and its 1-8 Hz band-pass (two biquads of 4 multiply-adds and a
    /// multiplication each); each reference's band back to f32 for the background limit.
    pub per_statistics_frame: F64Ops,
    /// Every `decimate`-th frame entering the statistics, when it enters a covariance (a
    /// blink frame, or a background frame farther than the margin from any blink; frames
    /// within the margin of a blink enter neither): the covariance's weight and forgetting
    /// factor, and its lower triangle, `C(C+1)/2` entries of `λ r + x_i x_j` (a multiply-add
    /// and a multiplication each).
    pub per_covariance_frame: F64Ops,
    /// On top of [`EyeCost::per_covariance_frame`] for a frame entering the blink
    /// covariance: the variances of all `MWF_MAX_REFERENCES` reference slots and their
    /// cross-covariances with every channel.
    pub per_blink_covariance_frame: F64Ops,
    /// Every update attempt: whether enough blink frames are in (their `u64` count to f64,
    /// counted as a conversion, and a multiplication). An attempt falls on the frame entering
    /// the statistics `update_every` frames after the last attempt when a blink frame entered
    /// since then, else `idle_update_every` frames after it.
    pub per_update_check: F64Ops,
    /// Every filter update (an attempt once enough blinks are in), without the power
    /// iteration: scales, Cholesky (`(C³-C)/6` multiply-adds, `C` square roots,
    /// `C(C-1)/2` divisions), `v = L⁻ᵀe`, `q = L e`, the reference correlation and share.
    /// Counted when the filter's version changes; an update that gives up half-way (a
    /// covariance not positive definite) is not visible and not counted.
    pub per_update: F64Ops,
    /// One power-iteration step: two triangular solves and `A x` (`2C² + C` multiply-adds,
    /// `C²` multiplications, `3C` divisions, a square root).
    pub per_iteration: F64Ops,
    /// Power-iteration steps counted per update: the configured bound `max_iters` (the
    /// steps actually run stop at convergence and are not visible through the core's API).
    pub iterations: u64,
    /// Every frame written out: each channel to f64, `vᵀ base` (`C` multiply-adds, also
    /// while the filter is inactive) and the baseline `b += k (x - b)`.
    pub per_output_frame: F64Ops,
    /// On top of [`EyeCost::per_output_frame`] while the filter is active: the symmetric
    /// low-pass FIR over the stored projections of `2 h + 1` frames (`h` =
    /// [`EyeCost::fir_half`]: `h + 1` multiply-adds of a tap and a pair of projections added,
    /// the taps and projections converted from f32), minus `vᵀ base`, and `x - q proj`
    /// (`C` multiply-adds, conversions both ways).
    pub per_active_output_frame: F64Ops,
    /// One projection `vᵀ x` stored in the delay line (`C` multiply-adds, the frame to f64,
    /// the sum to f32): while the filter is active, one for each new frame reaching the
    /// FIR's window, and the whole window again after each filter update.
    pub per_projection: F64Ops,
    /// Frames between a frame's push and its entry into the statistics
    /// (`blink_margin_s · fs`, rounded).
    pub margin: u64,
    /// Frames on either side of the frame being corrected in the projection's FIR
    /// (`delay / 4`).
    pub fir_half: u64,
    /// Hardware (f32 and integer) cycles per frame pushed.
    pub hw_cycles_per_frame: u64,
}

impl EyeCost {
    /// The counts for `cfg` over `channels` channels and `references` detection references.
    pub const fn new(cfg: &MwfConfig, channels: usize, references: usize) -> Self {
        let c = channels as u64;
        let r = references as u64;
        // The core keeps cross-covariances with all MWF_MAX_REFERENCES reference slots.
        let slots = mfr_eeg::core::MWF_MAX_REFERENCES as u64;
        let h = (cfg.delay / 4) as u64;
        let biquad = F64Ops {
            mac: 4,
            mul: 1,
            add: 0,
            div: 0,
            sqrt: 0,
            conv: 0,
        };
        EyeCost {
            // Reference: f64 conversion, DC blocker (a multiplication, two additions), back
            // to f32 for the gate.
            per_frame: F64Ops {
                mac: 0,
                mul: r,
                add: 2 * r,
                div: 0,
                sqrt: 0,
                conv: 2 * r,
            },
            // Reference and channel (read back from the delay line): conversion, minus the
            // first sample, two biquads; each reference's band back to f32 for the background
            // limit's gate.
            per_statistics_frame: F64Ops {
                mac: (r + c) * 2 * biquad.mac,
                mul: (r + c) * 2 * biquad.mul,
                add: r + c,
                div: 0,
                sqrt: 0,
                conv: 2 * r + c,
            },
            // Weight and forgetting factor (computed twice: 2 divisions, 2 multiplications,
            // 2 subtractions, a multiply-add) and the lower triangle.
            per_covariance_frame: F64Ops {
                mac: 1 + c * (c + 1) / 2,
                mul: 2 + c * (c + 1) / 2,
                add: 2,
                div: 2,
                sqrt: 0,
                conv: 0,
            },
            per_blink_covariance_frame: F64Ops {
                mac: slots * (1 + c),
                mul: slots * (1 + c),
                add: 0,
                div: 0,
                sqrt: 0,
                conv: 0,
            },
            per_update_check: F64Ops {
                mac: 0,
                mul: 1,
                add: 0,
                div: 0,
                sqrt: 0,
                conv: 1,
            },
            per_update: F64Ops {
                // trace, Cholesky, v = L⁻ᵀe, q = L e, reference corr and share, peak (A v).
                mac: c
                    + (c * c * c - c) / 6
                    + c * (c - 1) / 2
                    + c * (c + 1) / 2
                    + 2 * r * c
                    + c * c,
                // B/w_b on the lower triangle, ridge, gain x s, reference terms, A/w_a.
                mul: c * (c + 1) / 2 + 1 + c + 4 * r + c * c,
                add: c * (c + 1) / 2 + 2,
                // 1/w_a, 1/w_b, ridge/c, Cholesky off-diagonal, back substitution, 1/λ,
                // corr and share.
                div: 3 + c * (c - 1) / 2 + c + 1 + 2 * r,
                sqrt: c + r,
                conv: 0,
            },
            per_iteration: F64Ops {
                mac: 2 * c * c + c,
                mul: c * c + 1,
                add: 1,
                div: 3 * c,
                sqrt: 1,
                conv: 0,
            },
            iterations: cfg.max_iters as u64,
            // Per channel: conversion, vᵀ base, b += k (x - b).
            per_output_frame: F64Ops {
                mac: 2 * c,
                mul: 0,
                add: c,
                div: 0,
                sqrt: 0,
                conv: c,
            },
            // FIR: h + 1 taps (converted), h + 1 projections after and h before (converted),
            // the h pairs added, h + 1 multiply-adds; minus vᵀ base; per channel x to f64,
            // minus q proj, back to f32.
            per_active_output_frame: F64Ops {
                mac: (h + 1) + c,
                mul: 0,
                add: h + 1,
                div: 0,
                sqrt: 0,
                conv: (h + 1) + (2 * h + 1) + 2 * c,
            },
            per_projection: F64Ops {
                mac: c,
                mul: 0,
                add: 0,
                div: 0,
                sqrt: 0,
                conv: c + 1,
            },
            margin: (cfg.blink_margin_s * cfg.fs_hz).round() as u64,
            fir_half: h,
            hw_cycles_per_frame: 2 * r * CYCLES_F32_PER_REFERENCE + c * CYCLES_INT_PER_CHANNEL,
        }
    }

    /// Operations of one filter update, power iteration counted at its bound.
    pub const fn update_ops(&self) -> F64Ops {
        let i = self.iterations;
        let (u, p) = (self.per_update, self.per_iteration);
        F64Ops {
            mac: u.mac + i * p.mac,
            mul: u.mul + i * p.mul,
            add: u.add + i * p.add,
            div: u.div + i * p.div,
            sqrt: u.sqrt + i * p.sqrt,
            conv: u.conv + i * p.conv,
        }
    }
}

/// Frames of blink marks [`run_stream`] keeps to follow which covariance each frame enters
/// (the core decides it `margin` frames after the frame's push). With a longer margin
/// every frame is counted as a blink frame (the upper bound: every `decimate`-th frame a
/// blink-covariance frame, an update attempt every `update_every` frames).
pub const MARK_HISTORY: usize = 1024;

/// The blink detector's marks of the last [`MARK_HISTORY`] frames pushed, and the latest
/// marked frame: what [`BlinkMwf::push`] keeps in its delay line to classify frames.
#[derive(Clone, Copy, Debug)]
struct Marks {
    bits: [u64; MARK_HISTORY / 64],
    last: Option<u64>,
}

impl Marks {
    const fn new() -> Self {
        Marks {
            bits: [0; MARK_HISTORY / 64],
            last: None,
        }
    }

    fn set(&mut self, frame: u64, marked: bool) {
        let i = (frame % MARK_HISTORY as u64) as usize;
        let bit = 1u64 << (i % 64);
        if marked {
            self.bits[i / 64] |= bit;
            self.last = Some(frame);
        } else {
            self.bits[i / 64] &= !bit;
        }
    }

    fn get(&self, frame: u64) -> bool {
        let i = (frame % MARK_HISTORY as u64) as usize;
        self.bits[i / 64] & (1u64 << (i % 64)) != 0
    }

    /// Which covariance frame `u` enters once the frames up to `u + margin` are marked:
    /// `Some(true)` blink, `None` neither (unmarked, a mark within `margin` frames),
    /// `Some(false)` background; as `BlinkMwf::push` decides it.
    fn class(&self, u: u64, margin: u64) -> Option<bool> {
        if margin >= MARK_HISTORY as u64 || self.get(u) {
            Some(true)
        } else if self.last.is_some_and(|b| b + margin >= u) {
            None
        } else {
            Some(false)
        }
    }
}

/// What the eye stage did in a run, and its operation count on the cost model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EyeStats {
    /// Frames pushed into the stage.
    pub frames_in: u64,
    /// Frames it wrote out (delayed, cleaned).
    pub frames_out: u64,
    /// Of those, frames written while the filter was active.
    pub frames_active: u64,
    /// Frames that entered the statistics (band-passed; `margin` frames after their push).
    pub statistics_frames: u64,
    /// Covariance updates (every `decimate`-th frame entering the statistics, unless it is
    /// within the margin of a blink).
    pub covariance_frames: u64,
    /// Of those, updates of the blink covariance.
    pub blink_covariance_frames: u64,
    /// Projections `vᵀ x` stored in the delay line (new frames, and whole FIR windows
    /// again after filter updates).
    pub projections: u64,
    /// Frames on which the blink detector was open.
    pub detected_frames: u64,
    /// Filter update attempts (the check whether enough blinks are in), on the estimator's
    /// schedule: `update_every` statistics frames after the last attempt when a blink frame
    /// entered the statistics since, else `idle_update_every`.
    pub update_attempts: u64,
    /// Filter updates (the estimator's version count over the run).
    pub updates: u64,
    /// Frames pushed when the first filter update of the run happened (None: none did).
    pub first_update_frame: Option<u64>,
    /// `f64` operations on the cost model.
    pub ops: F64Ops,
    /// Estimated Cortex-M4F cycles (soft-float `f64` plus the hardware work).
    pub cycles: u64,
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
    /// The eye stage's counts (zeros without it).
    pub eye: EyeStats,
}

/// Why [`run_stream`] stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoopError {
    /// The streaming denoiser refused a block.
    Stream(CoreError),
    /// The eye stage refused a frame.
    Eye(SpatialError),
}

impl fmt::Display for LoopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopError::Stream(e) => write!(f, "denoiser: {e}"),
            LoopError::Eye(e) => write!(f, "eye stage: {e}"),
        }
    }
}

impl From<CoreError> for LoopError {
    fn from(e: CoreError) -> Self {
        LoopError::Stream(e)
    }
}

impl From<SpatialError> for LoopError {
    fn from(e: SpatialError) -> Self {
        LoopError::Eye(e)
    }
}

/// The eye stage inside [`run_stream`]: the filter, its cost model and its counters, and
/// what it follows of the stage's code paths (the marks of recent frames, which filter
/// version the stored projections belong to).
struct Eye<'a, const L: usize> {
    mwf: &'a mut EyeStage<L>,
    cost: EyeCost,
    decimate: u64,
    update_every: u64,
    idle_update_every: u64,
    version0: u64,
    marks: Marks,
    /// A blink frame entered the statistics since the last update attempt, and the
    /// statistics frames at that attempt: the estimator's `fresh_blink` and `last_update`.
    fresh_blink: bool,
    last_update: u64,
    /// Filter version of the stored projections (None: none stored since the filter was
    /// last inactive), as `BlinkMwf::store_projections` keeps it.
    proj_version: Option<u64>,
    /// Frames before this have a projection stored.
    proj_upto: u64,
}

impl<'a, const L: usize> Eye<'a, L> {
    fn new(mwf: &'a mut EyeStage<L>) -> Self {
        let cfg = *mwf.estimator().config();
        Eye {
            cost: EyeCost::new(&cfg, CHANNELS, 1),
            decimate: cfg.decimate as u64,
            update_every: cfg.update_every as u64,
            idle_update_every: cfg.idle_update_every as u64,
            version0: mwf.estimator().version(),
            marks: Marks::new(),
            fresh_blink: false,
            last_update: 0,
            proj_version: None,
            proj_upto: 0,
            mwf,
        }
    }

    /// Pushes one frame; returns whether a cleaned frame was written to `out`, and adds the
    /// frame's operations to `stats`. Every frame is taken to be finite (the ADC's are): the
    /// core skips a frame with a non-finite sample, which these counts do not follow.
    fn push(
        &mut self,
        frame: &[f32],
        out: &mut [f32],
        stats: &mut EyeStats,
    ) -> Result<bool, SpatialError> {
        let version = self.mwf.estimator().version();
        let ready = self.mwf.push(&[frontal_reference(frame)], frame, out)?;
        let est = self.mwf.estimator();
        let n = stats.frames_in;
        stats.frames_in += 1;
        stats.detected_frames += u64::from(est.blink());
        self.marks.set(n, est.blink());
        let mut ops = self.cost.per_frame;
        // The frame `margin` older entered the statistics, and a covariance every
        // `decimate`-th frame unless a blink was within the margin; then an update attempt
        // when one is due, as `MwfEstimator::accumulate` schedules it.
        let margin = self.cost.margin;
        if let Some(u) = n.checked_sub(margin) {
            stats.statistics_frames += 1;
            ops += self.cost.per_statistics_frame;
            let class = self.marks.class(u, margin);
            if u.is_multiple_of(self.decimate)
                && let Some(blink) = class
            {
                stats.covariance_frames += 1;
                ops += self.cost.per_covariance_frame;
                if blink {
                    stats.blink_covariance_frames += 1;
                    ops += self.cost.per_blink_covariance_frame;
                }
            }
            self.fresh_blink |= class == Some(true);
            let due = if self.fresh_blink {
                self.update_every
            } else {
                self.idle_update_every
            };
            if stats.statistics_frames - self.last_update >= due {
                self.last_update = stats.statistics_frames;
                self.fresh_blink = false;
                stats.update_attempts += 1;
                ops += self.cost.per_update_check;
            }
        }
        if est.version() != version {
            ops += self.cost.update_ops();
            stats.first_update_frame.get_or_insert(stats.frames_in);
        }
        stats.updates = est.version() - self.version0;
        stats.cycles += self.cost.hw_cycles_per_frame;
        self.account_output(ready, ops, stats);
        Ok(ready)
    }

    /// Writes the next frame still in the delay line to `out` (after the last push).
    fn drain(&mut self, out: &mut [f32], stats: &mut EyeStats) -> Result<bool, SpatialError> {
        let ready = self.mwf.drain(out)?;
        self.account_output(ready, F64Ops::default(), stats);
        Ok(ready)
    }

    fn account_output(&mut self, ready: bool, mut ops: F64Ops, stats: &mut EyeStats) {
        if ready {
            let u = stats.frames_out;
            stats.frames_out += 1;
            ops += self.cost.per_output_frame;
            let est = self.mwf.estimator();
            if est.active() {
                stats.frames_active += 1;
                ops += self.cost.per_active_output_frame;
                // The projections of the FIR's window [u - h, u + h] (within the frames
                // pushed) not yet stored with this filter version.
                let h = self.cost.fir_half;
                let (lo, hi) = (u.saturating_sub(h), (u + h).min(stats.frames_in - 1) + 1);
                if self.proj_version != Some(est.version()) {
                    self.proj_version = Some(est.version());
                    self.proj_upto = lo;
                }
                let new = hi.saturating_sub(self.proj_upto.max(lo));
                self.proj_upto = self.proj_upto.max(hi);
                stats.projections += new;
                ops += self.cost.per_projection * new;
            } else {
                self.proj_version = None;
            }
        }
        stats.ops += ops;
        stats.cycles += ops.cycles();
    }
}

/// Runs `frames` frames of simulated acquisition: interrupts fill `queue` from `adc` on the
/// simulated clock, the main loop drains it, frame by frame through the eye stage `eye` (when
/// given, freshly built; detection reference [`frontal_reference`]) and then into `streamer`. `sink` gets
/// every block the streamer took (interleaved frames: the eye stage's delayed, cleaned
/// frames, or the ADC's without it) and the streamer's output for it. At the end the eye
/// stage's delay line is drained through the streamer, so every frame received comes out.
/// `cycles_per_window` is the cost model's estimate for one window of one channel; `hop` the
/// model's hop; the eye stage's cycles come from [`EyeCost`]. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn run_stream<const D: usize, const S: usize, const K: usize, const L: usize>(
    streamer: &mut Streamer<'_, D, S, K, CHANNELS>,
    eye: Option<&mut EyeStage<L>>,
    adc: &mut Adc,
    queue: &mut BlockQueue,
    frames: u64,
    rate_hz: f32,
    hop: usize,
    cycles_per_window: u64,
    mut sink: impl FnMut(&[f32], &[f32]),
) -> Result<RunStats, LoopError> {
    let (mut isr, mut main) = queue.split();
    let period = BLOCK as f64 / f64::from(rate_hz) * CLOCK_HZ; // cycles between interrupts
    let blocks = frames.div_ceil(BLOCK as u64);
    let mut fired = 0u64; // interrupts so far
    let mut now = 0.0f64; // main-loop clock, cycles
    let mut stats = RunStats::default();
    let mut eye = eye.map(Eye::new);
    let mut codes = [0i32; BLOCK * CHANNELS];
    let mut input = [0.0f32; BLOCK * CHANNELS];
    let mut cleaned = [0.0f32; BLOCK * CHANNELS];
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
    // The streamer's part of a block of `n` frames: push, hand to `sink`, advance the clock
    // by the windows it completed (one per `hop` frames, every channel).
    let mut stream = |streamer: &mut Streamer<'_, D, S, K, CHANNELS>,
                      x: &[f32],
                      stats: &mut RunStats|
     -> Result<f64, LoopError> {
        let y = &mut output[..x.len()];
        streamer.push_interleaved(x, y)?;
        stats.checksum += y.iter().map(|&v| f64::from(v).abs()).sum::<f64>();
        sink(x, y);
        let done = stats.frames;
        stats.frames += (x.len() / CHANNELS) as u64;
        let windows = stats.frames / hop as u64 - done / hop as u64;
        Ok((windows * CHANNELS as u64 * cycles_per_window) as f64)
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
        let n = match eye.as_mut() {
            Some(eye) => {
                let cycles = stats.eye.cycles;
                let mut n = 0;
                for frame in input.chunks_exact(CHANNELS) {
                    let out = &mut cleaned[n * CHANNELS..(n + 1) * CHANNELS];
                    if eye.push(frame, out, &mut stats.eye)? {
                        n += 1;
                    }
                }
                now += (stats.eye.cycles - cycles) as f64;
                n
            }
            None => {
                cleaned = input;
                BLOCK
            }
        };
        if n > 0 {
            now += stream(streamer, &cleaned[..n * CHANNELS], &mut stats)?;
        }
    }
    // End of the recording: the frames still in the eye stage's delay line.
    if let Some(eye) = eye.as_mut() {
        loop {
            let mut n = 0;
            while n < BLOCK
                && eye.drain(
                    &mut cleaned[n * CHANNELS..(n + 1) * CHANNELS],
                    &mut stats.eye,
                )?
            {
                n += 1;
            }
            if n == 0 {
                break;
            }
            stream(streamer, &cleaned[..n * CHANNELS], &mut stats)?;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_line_layout_adds_up_to_its_length() {
        for rate in [128, 250, 256, 500, 1000] {
            let (slots, per_slot, taps) = eye_line_layout(rate);
            assert_eq!(slots * per_slot + taps, eye_line_len(rate), "{rate} Hz");
        }
    }

    /// `Marks::class` against its definition: a marked frame is a blink frame, an unmarked
    /// one with a mark within `margin` frames either side (among those pushed) enters
    /// neither covariance, the rest the background.
    #[test]
    fn marks_classify_frames_as_the_stage_does() {
        let margin = 5u64;
        let mut rng = Rng::new(7);
        let marked: Vec<bool> = (0..4000)
            .map(|i| (i / 40) % 3 == 0 && rng.uniform(0.0, 1.0) < 0.7)
            .collect();
        let mut marks = Marks::new();
        for (n, &m) in marked.iter().enumerate() {
            let n = n as u64;
            marks.set(n, m);
            let Some(u) = n.checked_sub(margin) else {
                continue;
            };
            let near = (u.saturating_sub(margin)..=n).any(|f| marked[f as usize]);
            let want = if marked[u as usize] {
                Some(true)
            } else if near {
                None
            } else {
                Some(false)
            };
            assert_eq!(marks.class(u, margin), want, "frame {u}");
        }
        // A margin past the history counts every frame as a blink frame (the bound).
        assert_eq!(marks.class(10, MARK_HISTORY as u64), Some(true));
    }

    /// The loop's update attempts follow the estimator's schedule: every filter update (a
    /// change of `estimator().version()`) falls on a frame where the loop counted an
    /// attempt, and once the first update is in (enough blinks), every attempt updates the
    /// filter; a schedule off by one frame fails both. Attempts are `update_every` to
    /// `idle_update_every` statistics frames apart, both occurring.
    #[test]
    fn update_attempts_follow_the_estimators_schedule() {
        const RATE: usize = 128;
        let mut mwf: Box<EyeStage<{ eye_line_len(RATE) }>> =
            Box::new(eye_stage(RATE as f32).unwrap());
        let cfg = *mwf.estimator().config();
        let mut eye = Eye::new(&mut mwf);
        let mut adc = Adc::new(RATE as f32);
        let mut stats = EyeStats::default();
        let (mut codes, mut out) = ([0i32; BLOCK * CHANNELS], [0.0f32; CHANNELS]);
        let (mut attempts_after_first, mut gaps) = (0u64, Vec::new());
        let mut last_attempt = None;
        for _ in 0..60 * RATE / BLOCK {
            adc.read_block(&mut codes);
            for frame in codes.chunks_exact(CHANNELS) {
                let frame: Vec<f32> = frame.iter().map(|&c| c as f32 * Adc::LSB_UV).collect();
                let (version, attempts) = (eye.mwf.estimator().version(), stats.update_attempts);
                eye.push(&frame, &mut out, &mut stats).unwrap();
                let attempted = stats.update_attempts != attempts;
                let updated = eye.mwf.estimator().version() != version;
                assert!(!updated || attempted, "update without an attempt");
                if stats.first_update_frame.is_some() {
                    assert_eq!(attempted, updated, "frame {}", stats.frames_in);
                    attempts_after_first += u64::from(attempted);
                }
                if attempted {
                    if let Some(l) = last_attempt {
                        gaps.push(stats.statistics_frames - l);
                    }
                    last_attempt = Some(stats.statistics_frames);
                }
            }
        }
        assert!(stats.updates > 10, "{stats:?}");
        assert_eq!(attempts_after_first, stats.updates);
        let (fast, idle) = (cfg.update_every as u64, cfg.idle_update_every as u64);
        // A blink frame entering later than `update_every` after the last attempt brings the
        // next one forward to that frame.
        assert!(gaps.iter().all(|&g| (fast..=idle).contains(&g)), "{gaps:?}");
        assert!(gaps.contains(&fast) && gaps.contains(&idle), "{gaps:?}");
    }
}
