//! Eye-artifact removal across channels by a multi-channel Wiener filter (MWF) that learns
//! the blink's spatial pattern while it streams: no calibration step, no look-ahead beyond a
//! fixed delay.
//!
//! A blink is one source seen on every channel through a fixed topography. Given which
//! samples hold a blink (detected on an EOG or frontal reference by an [`ArtifactGate`]), the
//! filter keeps two running covariances of the channels, band-passed to where blinks live
//! (1-8 Hz): `A` over blink samples and `B` over the rest, leaving out the samples next to a
//! blink ([`MwfConfig::blink_margin_s`]: a blink's rise and fall are below the detector) and
//! those where a reference's band-passed sample itself exceeds the detector's threshold (eye
//! activity the detector did not mark: a blink before its scale settled, an eye movement).
//! The blink's pattern is the leading generalised eigenvector of `(A, B)` (the direction
//! where blinks add the most power over the background, as in Somers et al. 2018, J. Neural
//! Eng. 15:036007, rank 1): with
//! `B = L Lᵀ` and `e` the top eigenvector of `L⁻¹ A L⁻ᵀ` (eigenvalue `λ`), the spatial filter
//! is `v = L⁻ᵀ e` and the pattern `q = L e`, and each frame is cleaned as
//!
//! `y = x - (1 - 1/λ) q h * (vᵀ x̂)`,
//!
//! where `x̂` is the frame minus each channel's slow baseline (time constant
//! [`MwfConfig::baseline_s`], held still around detected blinks), so electrode offsets and
//! drift never leak across channels and a blink leaves no undershoot to subtract, and `h *` a
//! linear-phase low-pass below [`MwfConfig::correction_hz`] (15 Hz; the blink lives below
//! it), so mains or muscle activity along `v` is not moved between channels. `(1 - 1/λ)` is
//! the Wiener gain: a source barely stronger during blinks than outside is hardly touched.
//! Everything is causal; [`BlinkMwf`] outputs each frame `delay` frames late, cleaned with the
//! filter learnt up to the newest frame, so even the first blinks of a recording are removed
//! with a pattern that has seen them.
//!
//! No allocation: the caller provides per-channel states and one `f64` workspace
//! ([`MwfEstimator::workspace_len`]); cost per frame is O(C²) every `decimate`-th frame
//! (covariance update) plus O(C³/3 + iters·3C²) every `update_every` frames around blinks and
//! every `idle_update_every` frames between them (Cholesky and
//! power iteration), and O(C + delay/2) to apply (plus O(C·delay) to refresh the stored
//! projections after each filter update).
//!
//! Key types: [`MwfConfig`], [`MwfEstimator`] (statistics and filter), [`BlinkMwf`] (the
//! streaming filter with its delay line), [`MwfChannel`].

use super::spatial::{ArtifactGate, DcBlocker, GateConfig, SpatialError, dc_pole};

/// Detection references at most.
pub const MWF_MAX_REFERENCES: usize = 4;

/// Settings of [`MwfEstimator`] and [`BlinkMwf`]; [`MwfConfig::for_rate`] gives the defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MwfConfig {
    /// Sampling rate in Hz.
    pub fs_hz: f64,
    /// Band (Hz) in which the covariances are taken: where blinks have their power.
    pub band_hz: (f64, f64),
    /// Blink detector on each reference (opening above 0 marks a blink sample).
    pub detect: GateConfig,
    /// Corner (Hz) of the DC blocker on each detection reference.
    pub reference_dc_hz: f64,
    /// Time constant (s) of each channel's baseline, which the filter is applied around. It
    /// holds still from [`MwfConfig::blink_margin_s`] before a detected blink to as long
    /// after, so a blink never leaves an undershoot to be subtracted.
    pub baseline_s: f64,
    /// Margin (s) around detected blinks: [`BlinkMwf`] keeps unmarked frames this close to
    /// one out of both covariances (the detector marks a blink's peak; its rise and fall in
    /// the background covariance would hide the pattern there) and holds the baselines
    /// there. At most the delay: the look-ahead comes from it.
    pub blink_margin_s: f64,
    /// Memory of the blink covariance in seconds of blink samples.
    pub blink_memory_s: f64,
    /// Memory of the background covariance in seconds.
    pub clean_memory_s: f64,
    /// Covariances take every `decimate`-th frame (the band's top is far below Nyquist).
    pub decimate: usize,
    /// Frames between filter updates while blinks come in (the blink covariance took a frame
    /// since the last update).
    pub update_every: usize,
    /// Frames between filter updates otherwise: only the background covariance moves then,
    /// and slowly.
    pub idle_update_every: usize,
    /// Seconds of blink samples needed before the filter acts.
    pub min_blink_s: f64,
    /// Ridge added to the background covariance, relative to its mean diagonal.
    pub ridge: f64,
    /// Power-iteration steps at most per update.
    pub max_iters: usize,
    /// The learnt source must explain the detection reference: over blink samples (in the
    /// band), |corr(source, reference)| for some reference at least this, else the filter
    /// does not act (a burst elsewhere in the montage that happened to open the detector
    /// is not an eye).
    pub min_reference_corr: f64,
    /// Frames of delay of [`BlinkMwf`]'s output.
    pub delay: usize,
    /// [`BlinkMwf`] subtracts the blink source only below this frequency (Hz): its projection
    /// is low-passed by a linear-phase FIR spanning half the delay (Hamming-windowed sinc,
    /// `delay / 4` frames either side), so activity the pattern does not describe (mains
    /// common to the channels, muscle) is not moved from channel to channel.
    pub correction_hz: f64,
    /// A frame the detector left unmarked stays out of the background covariance too when a
    /// reference's band-passed sample exceeds this many robust standard deviations (1.4826 x
    /// a running median of its magnitude, as the detector's): eye activity the detector
    /// missed (a blink before its scale settled, an eye movement). `f32::INFINITY`: never.
    pub background_limit_sd: f32,
}

/// Delay of the default streaming filter, in seconds.
pub const DEFAULT_MWF_DELAY_S: f64 = 0.5;

impl MwfConfig {
    /// The defaults at `fs_hz`: covariances in 1-8 Hz; blinks where a reference's 0.3 s peak
    /// envelope exceeds 5 robust standard deviations (10 s running median: blinks are
    /// outliers; at 3 the detector also opens on frontal EEG and the filter then removes
    /// it); memories 20 s of blink samples and 60 s of background; covariance from one frame
    /// in `fs / 32`, filter updated every 0.125 s while blinks come in (every 2 s between them:
    /// 0.5 s there lost the first blinks' removal) once 0.25 s of blink samples are in; ridge
    /// 1e-3; delay [`DEFAULT_MWF_DELAY_S`] (0 s misses the first blinks while the pattern is
    /// learnt; 1 s gained nothing over 0.5 s on the recordings measured); unmarked frames
    /// where a reference's band exceeds 5 robust standard deviations kept out of the
    /// background (EEGLAB's tutorial recording: blink-free change 0.038 instead of 0.045, blink
    /// kept 0.197 instead of 0.200; at 3 and 4: 0.037 / 0.198 and 0.037 / 0.197, with spkit's
    /// blink-free change 0.427 and 0.412, against 0.412 at 5 and 0.423 without).
    pub fn for_rate(fs_hz: f64) -> Self {
        let fs = fs_hz.max(1.0);
        let sr = fs as f32;
        MwfConfig {
            fs_hz: fs,
            band_hz: (1.0, 8.0_f64.min(0.4 * fs)),
            detect: GateConfig {
                threshold: 5.0,
                median_step: 1.0 / (10.0 * sr),
                release: libm::expf(-1.0 / (0.3 * sr)),
            },
            reference_dc_hz: 0.05,
            baseline_s: 1.0,
            blink_margin_s: 0.25,
            blink_memory_s: 20.0,
            clean_memory_s: 60.0,
            decimate: (libm::floor(fs / 32.0) as usize).max(1),
            update_every: (libm::round(fs / 8.0) as usize).max(1),
            idle_update_every: (libm::round(2.0 * fs) as usize).max(1),
            min_blink_s: 0.25,
            ridge: 1e-3,
            max_iters: 50,
            min_reference_corr: 0.7,
            delay: libm::round(DEFAULT_MWF_DELAY_S * fs) as usize,
            correction_hz: 15.0_f64.min(0.4 * fs),
            background_limit_sd: 5.0,
        }
    }

    fn check(&self) -> Result<(), SpatialError> {
        let bad = |field| Err(SpatialError::BadConfig { field });
        let (lo, hi) = self.band_hz;
        if !(self.fs_hz.is_finite() && self.fs_hz > 0.0) {
            return bad("fs_hz");
        }
        if !(lo > 0.0 && hi > lo && hi < 0.5 * self.fs_hz) {
            return bad("band_hz");
        }
        if !(self.blink_memory_s > 0.0 && self.clean_memory_s > 0.0) {
            return bad("memory");
        }
        if self.decimate == 0
            || self.update_every == 0
            || self.idle_update_every == 0
            || self.max_iters == 0
        {
            return bad("decimate/update_every/idle_update_every/max_iters");
        }
        if !(self.ridge.is_finite() && self.ridge >= 0.0) {
            return bad("ridge");
        }
        if !(self.min_blink_s.is_finite() && self.min_blink_s >= 0.0) {
            return bad("min_blink_s");
        }
        if !(self.baseline_s > 0.0 && self.blink_margin_s >= 0.0) {
            return bad("baseline");
        }
        if !(self.correction_hz > 0.0 && self.correction_hz < 0.5 * self.fs_hz) {
            return bad("correction_hz");
        }
        if self.background_limit_sd.is_nan() || self.background_limit_sd <= 0.0 {
            return bad("background_limit_sd");
        }
        Ok(())
    }
}

/// A second-order section (transposed direct form II).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

/// State of one [`Biquad`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct BiquadState {
    z: [f64; 2],
}

impl Biquad {
    /// Butterworth (Q = 1/√2) low- or high-pass, bilinear transform (RBJ's cookbook).
    fn butterworth(fc: f64, fs: f64, high: bool) -> Self {
        let w0 = 2.0 * ::core::f64::consts::PI * fc / fs;
        let (s, c) = (libm::sin(w0), libm::cos(w0));
        let alpha = s / ::core::f64::consts::SQRT_2;
        let a0 = 1.0 + alpha;
        let b = if high {
            [(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0]
        } else {
            [(1.0 - c) / 2.0, 1.0 - c, (1.0 - c) / 2.0]
        };
        Biquad {
            b: [b[0] / a0, b[1] / a0, b[2] / a0],
            a: [-2.0 * c / a0, (1.0 - alpha) / a0],
        }
    }

    #[inline]
    fn step(&self, st: &mut BiquadState, x: f64) -> f64 {
        let y = self.b[0] * x + st.z[0];
        st.z[0] = self.b[1] * x - self.a[0] * y + st.z[1];
        st.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// Per-channel state of [`MwfEstimator`] and [`BlinkMwf`]: the band-pass and DC-blocker
/// states and the channel's entries of the filter (`v`, scaled `q`) and power iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MwfChannel {
    hp: BiquadState,
    lp: BiquadState,
    first: Option<f64>,
    band: f64,
    /// Spatial filter entry `v_c`.
    v: f64,
    /// Pattern entry times the Wiener gain, `(1 - 1/λ) q_c`.
    q: f64,
    e: f64,
    tmp: f64,
    w: f64,
    /// Blink-sample cross-covariance with each detection reference (band-passed).
    rx: [f64; MWF_MAX_REFERENCES],
    /// Baseline the filter is applied around (primed with the first output frame).
    base: Option<f64>,
}

/// Running blink/background covariances and the rank-1 filter they give (module docs).
/// `S` holds one [`MwfChannel`] per channel, `W` the workspace of
/// [`MwfEstimator::workspace_len`] `f64`s (three `C x C` matrices).
#[derive(Debug)]
pub struct MwfEstimator<S, W> {
    cfg: MwfConfig,
    hp: Biquad,
    lp: Biquad,
    gates: [ArtifactGate; MWF_MAX_REFERENCES],
    ref_dc: [DcBlocker; MWF_MAX_REFERENCES],
    ref_pole: f64,
    ref_band: [(BiquadState, BiquadState, Option<f64>); MWF_MAX_REFERENCES],
    ref_band_now: [f64; MWF_MAX_REFERENCES],
    /// On each reference's band-passed sample, without an envelope: open where the band
    /// stands out now ([`MwfConfig::background_limit_sd`]).
    band_gates: [ArtifactGate; MWF_MAX_REFERENCES],
    ref_var: [f64; MWF_MAX_REFERENCES],
    refs: usize,
    reference_corr: f64,
    reference_share: f64,
    blink: bool,
    chans: S,
    work: W,
    blink_w: f64,
    clean_w: f64,
    blink_frames: u64,
    frames: u64,
    lambda: f64,
    active: bool,
    version: u64,
    /// A blink frame entered the statistics since the last update.
    fresh_blink: bool,
    /// Frames accumulated at the last update attempt.
    last_update: u64,
}

impl<S, W> MwfEstimator<S, W>
where
    S: AsMut<[MwfChannel]> + AsRef<[MwfChannel]>,
    W: AsMut<[f64]> + AsRef<[f64]>,
{
    /// `f64`s of workspace for `channels` channels.
    pub const fn workspace_len(channels: usize) -> usize {
        3 * channels * channels
    }

    /// An estimator for `chans.len()` channels; states and workspace are reset.
    pub fn new(cfg: MwfConfig, mut chans: S, mut work: W) -> Result<Self, SpatialError> {
        cfg.check()?;
        let c = chans.as_ref().len();
        if c == 0 {
            return Err(SpatialError::NoChannels);
        }
        if work.as_ref().len() < Self::workspace_len(c) {
            return Err(SpatialError::BadConfig { field: "workspace" });
        }
        chans.as_mut().fill(MwfChannel::default());
        work.as_mut().fill(0.0);
        let fs = cfg.fs_hz;
        Ok(MwfEstimator {
            hp: Biquad::butterworth(cfg.band_hz.0, fs, true),
            lp: Biquad::butterworth(cfg.band_hz.1, fs, false),
            gates: [ArtifactGate::new(cfg.detect); MWF_MAX_REFERENCES],
            ref_dc: [DcBlocker::default(); MWF_MAX_REFERENCES],
            ref_pole: dc_pole(cfg.reference_dc_hz, fs),
            ref_band: [Default::default(); MWF_MAX_REFERENCES],
            ref_band_now: [0.0; MWF_MAX_REFERENCES],
            band_gates: [ArtifactGate::new(GateConfig {
                threshold: cfg.background_limit_sd,
                release: 0.0,
                ..cfg.detect
            }); MWF_MAX_REFERENCES],
            ref_var: [0.0; MWF_MAX_REFERENCES],
            refs: 0,
            reference_corr: 0.0,
            reference_share: 0.0,
            blink: false,
            cfg,
            chans,
            work,
            blink_w: 0.0,
            clean_w: 0.0,
            blink_frames: 0,
            frames: 0,
            lambda: 0.0,
            active: false,
            version: 0,
            fresh_blink: false,
            last_update: 0,
        })
    }

    /// Channels per frame.
    pub fn channels(&self) -> usize {
        self.chans.as_ref().len()
    }

    /// The settings.
    pub fn config(&self) -> &MwfConfig {
        &self.cfg
    }

    /// Takes one frame (`frame[c]`: channel `c`) and the detection references' samples at the
    /// same time (1..=[`MWF_MAX_REFERENCES`]); the frame counts as a blink frame when a
    /// detector opens on it. Returns true when the filter changed. A frame or reference with
    /// a non-finite sample is skipped (no state changes). [`BlinkMwf`] instead detects on
    /// the newest frame and enters frames into the covariances `blink_margin_s` later, when
    /// it knows whether a blink follows closely.
    pub fn observe(&mut self, references: &[f32], frame: &[f32]) -> Result<bool, SpatialError> {
        self.check_frame(references, frame)?;
        if !frame.iter().all(|v| v.is_finite()) {
            return Ok(false);
        }
        let blink = self.detect(references)?;
        self.accumulate(references, frame, Some(blink))
    }

    fn check_frame(&self, references: &[f32], frame: &[f32]) -> Result<(), SpatialError> {
        let c = self.channels();
        if frame.len() != c {
            return Err(SpatialError::FrameLength {
                expected: c,
                got: frame.len(),
            });
        }
        if references.is_empty() || references.len() > MWF_MAX_REFERENCES {
            return Err(SpatialError::BadConfig {
                field: "references",
            });
        }
        Ok(())
    }

    /// Runs the blink detectors on the references' newest samples; true when one opens.
    /// Non-finite references leave the detectors alone and give false.
    fn detect(&mut self, references: &[f32]) -> Result<bool, SpatialError> {
        if references.is_empty() || references.len() > MWF_MAX_REFERENCES {
            return Err(SpatialError::BadConfig {
                field: "references",
            });
        }
        if !references.iter().all(|v| v.is_finite()) {
            self.blink = false;
            return Ok(false);
        }
        let mut blink = false;
        self.refs = references.len();
        for (i, &r) in references.iter().enumerate() {
            let a = self.ref_dc[i].step(f64::from(r), self.ref_pole) as f32;
            self.gates[i].step(a);
            blink |= self.gates[i].opening() > 0.0;
        }
        self.blink = blink;
        Ok(blink)
    }

    /// Enters one frame and its references into the band-passed statistics, `blink` saying
    /// which covariance it belongs to (`None`: neither, only the filter states advance);
    /// every `update_every` frames while blink frames come in, else every `idle_update_every`,
    /// the filter is recomputed (true when it changed). Frames
    /// with a non-finite sample are skipped.
    fn accumulate(
        &mut self,
        references: &[f32],
        frame: &[f32],
        blink: Option<bool>,
    ) -> Result<bool, SpatialError> {
        self.check_frame(references, frame)?;
        if !references.iter().chain(frame).all(|v| v.is_finite()) {
            return Ok(false);
        }
        let c = self.channels();
        let (hp, lp) = (self.hp, self.lp);
        for (i, &r) in references.iter().enumerate() {
            let (h, l, first) = &mut self.ref_band[i];
            let f0 = *first.get_or_insert(f64::from(r));
            self.ref_band_now[i] = lp.step(l, hp.step(h, f64::from(r) - f0));
        }
        let mut band_open = false;
        for (g, &b) in self.band_gates[..references.len()]
            .iter_mut()
            .zip(&self.ref_band_now)
        {
            g.step(b as f32);
            band_open |= g.opening() > 0.0;
        }
        // Eye activity the detector did not mark (a blink before its scale settled, an eye
        // movement) stays out of the background covariance too.
        let blink = match blink {
            Some(false) if band_open => None,
            other => other,
        };
        for (st, &x) in self.chans.as_mut().iter_mut().zip(frame) {
            // Start the band-pass from the first sample so an offset does not ring in.
            let first = *st.first.get_or_insert(f64::from(x));
            let h = hp.step(&mut st.hp, f64::from(x) - first);
            st.band = lp.step(&mut st.lp, h);
        }
        let t = self.frames;
        self.frames += 1;
        if let Some(blink) = blink.filter(|_| t.is_multiple_of(self.cfg.decimate as u64)) {
            let fs = self.cfg.fs_hz;
            let d = self.cfg.decimate as f64;
            let (m, lam) = if blink {
                self.blink_frames += self.cfg.decimate as u64;
                self.blink_w =
                    (1.0 - d / (self.cfg.blink_memory_s * fs)).max(0.0) * self.blink_w + 1.0;
                (0, 1.0 - d / (self.cfg.blink_memory_s * fs))
            } else {
                self.clean_w =
                    (1.0 - d / (self.cfg.clean_memory_s * fs)).max(0.0) * self.clean_w + 1.0;
                (1, 1.0 - d / (self.cfg.clean_memory_s * fs))
            };
            let lam = lam.max(0.0);
            if blink {
                let rb = self.ref_band_now;
                for (v, &b) in self.ref_var.iter_mut().zip(&rb) {
                    *v = lam * *v + b * b;
                }
                for ch in self.chans.as_mut().iter_mut() {
                    for (x, &b) in ch.rx.iter_mut().zip(&rb) {
                        *x = lam * *x + ch.band * b;
                    }
                }
            }
            let chans = self.chans.as_ref();
            let mat = &mut self.work.as_mut()[m * c * c..(m + 1) * c * c];
            for i in 0..c {
                let bi = chans[i].band;
                let row = &mut mat[i * c..(i + 1) * c];
                for (r, ch) in row[..=i].iter_mut().zip(chans) {
                    *r = lam * *r + bi * ch.band;
                }
            }
        }
        if blink == Some(true) {
            self.fresh_blink = true;
        }
        let due = if self.fresh_blink {
            self.cfg.update_every
        } else {
            self.cfg.idle_update_every
        } as u64;
        if self.frames - self.last_update < due {
            return Ok(false);
        }
        self.last_update = self.frames;
        self.fresh_blink = false;
        Ok(self.update())
    }

    /// Recomputes the filter from the covariances (lower triangles are kept).
    // Index loops mirror the textbook recurrences; iterator forms would obscure them.
    #[allow(clippy::needless_range_loop)]
    fn update(&mut self) -> bool {
        let c = self.channels();
        let enough = (self.blink_frames as f64) >= self.cfg.min_blink_s * self.cfg.fs_hz;
        if !enough || self.clean_w <= 0.0 || self.blink_w <= 0.0 {
            return false;
        }
        let (sa, sb) = (1.0 / self.blink_w, 1.0 / self.clean_w);
        let chans = self.chans.as_mut();
        let work = self.work.as_mut();
        let (a, rest) = work.split_at_mut(c * c);
        let (b, l) = rest.split_at_mut(c * c);
        // Cholesky of B / w_b + ridge (mean diagonal) I into l.
        let mut trace = 0.0;
        for i in 0..c {
            trace += b[i * c + i] * sb;
        }
        let ridge = self.cfg.ridge * trace / c as f64;
        for i in 0..c {
            for j in 0..=i {
                let mut s = b[i * c + j] * sb + if i == j { ridge } else { 0.0 };
                for k in 0..j {
                    s -= l[i * c + k] * l[j * c + k];
                }
                if i == j {
                    if s.is_nan() || s <= 0.0 {
                        return false;
                    }
                    l[i * c + i] = libm::sqrt(s);
                } else {
                    l[i * c + j] = s / l[j * c + j];
                }
            }
        }
        let asym = |i: usize, j: usize| if j <= i { a[i * c + j] } else { a[j * c + i] } * sa;
        // Power iteration on M = L⁻¹ A L⁻ᵀ, warm-started from the last eigenvector.
        if !chans.iter().any(|ch| ch.e != 0.0) {
            let s = 1.0 / libm::sqrt(c as f64);
            chans.iter_mut().for_each(|ch| ch.e = s);
        }
        let mut lambda = 0.0f64;
        for _ in 0..self.cfg.max_iters {
            // tmp = L⁻ᵀ e (back substitution).
            for i in (0..c).rev() {
                let mut s = chans[i].e;
                for k in i + 1..c {
                    s -= l[k * c + i] * chans[k].tmp;
                }
                chans[i].tmp = s / l[i * c + i];
            }
            // w = A tmp.
            for i in 0..c {
                let mut s = 0.0;
                for j in 0..c {
                    s += asym(i, j) * chans[j].tmp;
                }
                chans[i].w = s;
            }
            // tmp = L⁻¹ w (forward substitution) = M e.
            for i in 0..c {
                let mut s = chans[i].w;
                for k in 0..i {
                    s -= l[i * c + k] * chans[k].tmp;
                }
                chans[i].tmp = s / l[i * c + i];
            }
            let rayleigh: f64 = chans.iter().map(|ch| ch.e * ch.tmp).sum();
            let norm = libm::sqrt(chans.iter().map(|ch| ch.tmp * ch.tmp).sum::<f64>());
            if norm.is_nan() || norm <= 0.0 || norm.is_infinite() {
                return false;
            }
            chans.iter_mut().for_each(|ch| ch.e = ch.tmp / norm);
            let done = (rayleigh - lambda).abs() <= 1e-9 * rayleigh.abs();
            lambda = rayleigh;
            if done {
                break;
            }
        }
        // v = L⁻ᵀ e (into w first: the old filter stays whole until the new one is), q = L e,
        // gain 1 - 1/λ.
        for i in (0..c).rev() {
            let mut s = chans[i].e;
            for k in i + 1..c {
                s -= l[k * c + i] * chans[k].w;
            }
            chans[i].w = s / l[i * c + i];
        }
        let gain = if lambda > 1.0 {
            1.0 - 1.0 / lambda
        } else {
            0.0
        };
        for i in 0..c {
            let mut s = 0.0;
            for k in 0..=i {
                s += l[i * c + k] * chans[k].e;
            }
            chans[i].tmp = gain * s;
        }
        if !chans
            .iter()
            .all(|ch| ch.w.is_finite() && ch.tmp.is_finite())
        {
            return false;
        }
        // corr(source, reference) over blink samples: vᵀ A v = λ, so with the reference's
        // variance and cross-covariance (all over the same weights) it needs no new sums.
        let mut best = 0.0f64;
        for r in 0..self.refs {
            let cross: f64 = chans.iter().map(|ch| ch.w * ch.rx[r]).sum::<f64>() * sa;
            let var = self.ref_var[r] * sa * lambda;
            if var > 0.0 {
                best = best.max((cross / libm::sqrt(var)).abs());
            }
        }
        self.reference_corr = best;
        // The source's amplitude on the reference relative to its largest on any channel:
        // cov(r, s) against max_c cov(x_c, s) = (A v)_c, all over blink samples.
        let mut peak = 0.0f64;
        for i in 0..c {
            let mut s = 0.0;
            for j in 0..c {
                s += asym(i, j) * chans[j].w;
            }
            peak = peak.max(s.abs());
        }
        let mut share = 0.0f64;
        for r in 0..self.refs {
            let cross: f64 = chans.iter().map(|ch| ch.w * ch.rx[r]).sum::<f64>() * sa;
            if peak > 0.0 {
                share = share.max(cross.abs() / peak);
            }
        }
        self.reference_share = share;
        let gain = if best >= self.cfg.min_reference_corr {
            gain
        } else {
            0.0
        };
        if gain == 0.0 {
            chans.iter_mut().for_each(|ch| ch.tmp = 0.0);
        }
        for ch in chans.iter_mut() {
            ch.v = ch.w;
            ch.q = ch.tmp;
        }
        self.lambda = lambda;
        self.active = gain > 0.0;
        self.version += 1;
        true
    }

    /// Whether the last frame observed was marked as a blink.
    pub fn blink(&self) -> bool {
        self.blink
    }

    /// At the last update, the largest |corr(source, reference)| over blink samples.
    pub fn reference_corr(&self) -> f64 {
        self.reference_corr
    }

    /// At the last update, the source's amplitude on the reference over its largest on any
    /// channel (blink samples).
    pub fn reference_share(&self) -> f64 {
        self.reference_share
    }

    /// Whether the filter acts (enough blinks seen and a blink source found).
    pub fn active(&self) -> bool {
        self.active
    }

    /// The blink source's power ratio `λ` at the last update (0 before the first).
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Counts filter updates; a snapshot taken at one value stays valid until it changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Copies the filter into `v` and `q` (each one entry per channel): the frame `x` (after
    /// its DC blocker) is cleaned as `x - q (vᵀ x)`. Zeros while inactive.
    pub fn filter_into(&self, v: &mut [f64], q: &mut [f64]) {
        let on = self.active;
        for ((ch, vi), qi) in self.chans.as_ref().iter().zip(v).zip(q) {
            *vi = if on { ch.v } else { 0.0 };
            *qi = if on { ch.q } else { 0.0 };
        }
    }
}

/// The streaming filter: an [`MwfEstimator`] and a delay line of `delay` frames. Each
/// [`BlinkMwf::push`] takes the newest frame and returns the frame `delay` frames older,
/// cleaned with the filter learnt up to the newest one; [`BlinkMwf::drain`] returns the
/// last ones at the end. `D` holds [`BlinkMwf::line_len`] `f32`s of delay line (the frames
/// and their blink marks).
#[derive(Debug)]
pub struct BlinkMwf<S, W, D> {
    est: MwfEstimator<S, W>,
    base_step: f64,
    margin: u64,
    /// Latest emitted frame marked as a blink.
    past_blink: Option<u64>,
    /// Latest pushed frame marked as a blink.
    last_mark: Option<u64>,
    /// Marked frames among the `margin` frames after the one being emitted.
    ahead: u32,
    line: D,
    pushed: u64,
    drained: u64,
    proj: f64,
    /// Frames either side in the projection's low-pass (its taps sit at the line's end).
    half: usize,
    /// Filter version the stored projections were computed with.
    proj_version: Option<u64>,
    /// Frames before this have their projection stored.
    proj_upto: u64,
}

impl<S, W, D> BlinkMwf<S, W, D>
where
    S: AsMut<[MwfChannel]> + AsRef<[MwfChannel]>,
    W: AsMut<[f64]> + AsRef<[f64]>,
    D: AsMut<[f32]> + AsRef<[f32]>,
{
    /// `f32`s of delay line for `channels` channels and `delay` frames.
    pub const fn line_len(channels: usize, delay: usize) -> usize {
        Self::slots(delay) * Self::slot_len(channels) + delay / 4 + 1
    }

    /// Frames the line holds: the delay, the newest, and the projection filter's past half.
    const fn slots(delay: usize) -> usize {
        delay + 1 + delay / 4
    }

    /// A slot of the delay line: the frame, its blink mark, the references and the frame's
    /// projection on the filter.
    const fn slot_len(channels: usize) -> usize {
        channels + 2 + MWF_MAX_REFERENCES
    }

    /// A streaming filter (`cfg.delay` frames late) over `chans.len()` channels.
    pub fn new(cfg: MwfConfig, chans: S, work: W, mut line: D) -> Result<Self, SpatialError> {
        let est = MwfEstimator::new(cfg, chans, work)?;
        let c = est.channels();
        if line.as_ref().len() < Self::line_len(c, cfg.delay) {
            return Err(SpatialError::BadConfig { field: "line" });
        }
        let margin = libm::round(cfg.blink_margin_s * cfg.fs_hz) as u64;
        if margin > cfg.delay as u64 {
            return Err(SpatialError::BadConfig {
                field: "blink_margin_s",
            });
        }
        line.as_mut().fill(0.0);
        // Low-pass taps h_0..h_half (symmetric), normalised to unit DC gain.
        let half = cfg.delay / 4;
        let taps_at = Self::slots(cfg.delay) * Self::slot_len(c);
        let wc = 2.0 * cfg.correction_hz / cfg.fs_hz;
        let tap = |k: usize| {
            let x = ::core::f64::consts::PI * k as f64;
            let sinc = if k == 0 { wc } else { libm::sin(wc * x) / x };
            sinc * (0.54 + 0.46 * libm::cos(x / (half as f64 + 1.0)))
        };
        let dc: f64 = tap(0) + 2.0 * (1..=half).map(tap).sum::<f64>();
        for (k, h) in line.as_mut()[taps_at..=taps_at + half]
            .iter_mut()
            .enumerate()
        {
            *h = (tap(k) / dc) as f32;
        }
        Ok(BlinkMwf {
            base_step: 1.0 - libm::exp(-1.0 / (cfg.baseline_s * cfg.fs_hz)),
            margin,
            past_blink: None,
            last_mark: None,
            ahead: 0,
            est,
            line,
            pushed: 0,
            drained: 0,
            proj: 0.0,
            half,
            proj_version: None,
            proj_upto: 0,
        })
    }

    /// The estimator (filter state, `λ`).
    pub fn estimator(&self) -> &MwfEstimator<S, W> {
        &self.est
    }

    /// `vᵀ x̂` of the last frame written out, low-passed below [`MwfConfig::correction_hz`]
    /// (0: it was left alone): with the pattern of [`MwfEstimator::filter_into`] at that time,
    /// the frame's correction is `q · this`.
    pub fn projection(&self) -> f64 {
        self.proj
    }

    /// Output delay in frames.
    pub fn delay(&self) -> usize {
        self.est.cfg.delay
    }

    fn slot(&self, frame: u64) -> core::ops::Range<usize> {
        let c = Self::slot_len(self.est.channels());
        let s = (frame % Self::slots(self.est.cfg.delay) as u64) as usize;
        s * c..(s + 1) * c
    }

    /// The frame's stored projection (`vᵀ x`, NaN for a frame with a non-finite sample).
    fn stored_proj(&self, frame: u64) -> f32 {
        self.line.as_ref()[self.slot(frame).end - 1]
    }

    /// Stores `vᵀ x` for the frames up to `hi` (exclusive), recomputing the whole filter
    /// window from `lo` when the filter changed.
    fn store_projections(&mut self, lo: u64, hi: u64) {
        let version = self.est.version;
        if self.proj_version != Some(version) {
            self.proj_version = Some(version);
            self.proj_upto = lo;
        }
        let c = self.est.channels();
        for f in self.proj_upto.max(lo)..hi {
            let r = self.slot(f);
            let line = self.line.as_mut();
            let mut s = 0.0f64;
            for (ch, &x) in self
                .est
                .chans
                .as_ref()
                .iter()
                .zip(&line[r.start..r.start + c])
            {
                s += ch.v * f64::from(x);
            }
            line[r.end - 1] = s as f32;
        }
        self.proj_upto = self.proj_upto.max(hi);
    }

    fn marked(&self, frame: u64) -> bool {
        frame < self.pushed
            && self.line.as_ref()[self.slot(frame).start + self.est.channels()] != 0.0
    }

    /// Takes the newest `frame` (one sample per channel) with the detection references'
    /// samples; when a frame `delay` frames older exists, writes it, cleaned, into `out`
    /// (one sample per channel) and returns true. A frame with a non-finite sample is passed
    /// through unchanged and does not enter the statistics.
    pub fn push(
        &mut self,
        references: &[f32],
        frame: &[f32],
        out: &mut [f32],
    ) -> Result<bool, SpatialError> {
        let c = self.est.channels();
        if out.len() != c || frame.len() != c {
            return Err(SpatialError::FrameLength {
                expected: c,
                got: if frame.len() != c {
                    frame.len()
                } else {
                    out.len()
                },
            });
        }
        self.est.check_frame(references, frame)?;
        let blink = self.est.detect(references)?;
        let r = self.slot(self.pushed);
        let line = &mut self.line.as_mut()[r];
        line[..c].copy_from_slice(frame);
        line[c] = if blink { 1.0 } else { 0.0 };
        line[c + 1..c + 1 + references.len()].copy_from_slice(references);
        if blink {
            self.last_mark = Some(self.pushed);
        }
        self.pushed += 1;
        // The frame `margin` older enters the statistics now that every frame within `margin`
        // of it has been seen: a marked frame is a blink frame, an unmarked one near a mark
        // (a blink's rise or fall) enters neither covariance, the rest the background.
        if let Some(u) = self.pushed.checked_sub(self.margin + 1) {
            let class = if self.marked(u) {
                Some(true)
            } else if self.last_mark.is_some_and(|b| b + self.margin >= u) {
                None
            } else {
                Some(false)
            };
            let r = self.slot(u);
            let refs = references.len();
            let (line, est) = (self.line.as_ref(), &mut self.est);
            est.accumulate(
                &line[r.start + c + 1..r.start + c + 1 + refs],
                &line[r.start..r.start + c],
                class,
            )?;
        }
        if self.pushed <= self.est.cfg.delay as u64 {
            return Ok(false);
        }
        self.emit(out);
        Ok(true)
    }

    /// After the last [`BlinkMwf::push`]: writes the next of the frames still in the delay
    /// line into `out` and returns true, or returns false when none is left.
    pub fn drain(&mut self, out: &mut [f32]) -> Result<bool, SpatialError> {
        let c = self.est.channels();
        if out.len() != c {
            return Err(SpatialError::FrameLength {
                expected: c,
                got: out.len(),
            });
        }
        if self.drained >= self.pushed {
            return Ok(false);
        }
        self.emit(out);
        Ok(true)
    }

    fn emit(&mut self, out: &mut [f32]) {
        let c = self.est.channels();
        let u = self.drained;
        // Slide the look-ahead window to (u, u + margin]: frame u leaves it, u + margin
        // (already pushed: margin <= delay) enters.
        if self.marked(u) {
            self.ahead = self.ahead.saturating_sub(1);
            self.past_blink = Some(u);
        }
        if u == 0 {
            self.ahead = (1..=self.margin).filter(|&f| self.marked(f)).count() as u32;
        } else if self.marked(u + self.margin) {
            self.ahead += 1;
        }
        let r = self.slot(u);
        out.copy_from_slice(&self.line.as_ref()[r.start..r.start + c]);
        self.drained += 1;
        self.proj = 0.0;
        if !out.iter().all(|v| v.is_finite()) {
            return;
        }
        // The baselines hold within `margin` frames of a blink on either side, so a blink
        // stays whole in the centred frame and leaves no undershoot behind.
        let hold = self.ahead > 0 || self.past_blink.is_some_and(|b| b + self.margin >= u);
        let step = if hold { 0.0 } else { self.base_step };
        let on = self.est.active;
        let mut at_base = 0.0f64;
        for (ch, &x) in self.est.chans.as_mut().iter_mut().zip(out.iter()) {
            let x = f64::from(x);
            let base = ch.base.get_or_insert(x);
            at_base += ch.v * *base;
            *base += step * (x - *base);
        }
        if !on {
            self.proj_version = None;
            return;
        }
        // vᵀ x̂ low-passed: the FIR over the frames' stored projections (edge frames repeated
        // at the start and end), minus vᵀ base (the taps sum to one).
        let h = self.half as u64;
        let last = self.pushed - 1;
        self.store_projections(u.saturating_sub(h), (u + h).min(last) + 1);
        let taps_at = Self::slots(self.est.cfg.delay) * Self::slot_len(c);
        let mut lp = 0.0f64;
        for k in 0..=h {
            let w = f64::from(self.line.as_ref()[taps_at + k as usize]);
            let after = f64::from(self.stored_proj((u + k).min(last)));
            lp += w * if k == 0 {
                after
            } else {
                after + f64::from(self.stored_proj(u.saturating_sub(k)))
            };
        }
        if !lp.is_finite() {
            // A frame with a gap inside the filter's span: left alone.
            return;
        }
        let proj = lp - at_base;
        self.proj = proj;
        if proj != 0.0 {
            for (ch, x) in self.est.chans.as_ref().iter().zip(out.iter_mut()) {
                *x = (f64::from(*x) - ch.q * proj) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn line(delay: usize) -> usize {
        BlinkMwf::<[MwfChannel; 3], [f64; 27], [f32; 0]>::line_len(3, delay)
    }
    const L8: usize = line(8);
    const L4: usize = line(4);
    type Owned = BlinkMwf<[MwfChannel; 3], [f64; 27], [f32; L8]>;

    type Three = BlinkMwf<[MwfChannel; 3], [f64; 27], std::vec::Vec<f32>>;

    /// Three channels at `cfg`, the delay line on the heap.
    fn three(cfg: MwfConfig) -> Three {
        let line = std::vec![0.0f32; Three::line_len(3, cfg.delay)];
        BlinkMwf::new(cfg, [MwfChannel::default(); 3], [0.0; 27], line).unwrap()
    }

    /// Deterministic noise, uniform in [-5, 5) (xorshift).
    fn noise(mut seed: u32) -> impl FnMut() -> f32 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32 - 0.5) * 10.0
        }
    }

    /// A 150 uV sin² blink over frames `start..start + len` of every `period`.
    fn blink_at(t: usize, period: usize, start: usize, len: usize) -> f32 {
        let phase = t % period;
        if (start..start + len).contains(&phase) {
            let x = core::f32::consts::PI * (phase - start) as f32 / len as f32;
            150.0 * libm::sinf(x) * libm::sinf(x)
        } else {
            0.0
        }
    }

    fn small(delay: usize) -> Owned {
        let cfg = MwfConfig {
            delay,
            blink_margin_s: 0.0,
            ..MwfConfig::for_rate(128.0)
        };
        BlinkMwf::new(cfg, [MwfChannel::default(); 3], [0.0; 27], [0.0; L8]).unwrap()
    }

    #[test]
    fn frames_come_out_in_order_delay_late_and_all_at_the_end() {
        let mut f = small(8);
        let mut out = [0.0f32; 3];
        let mut got = std::vec::Vec::new();
        for t in 0..20usize {
            let x = [t as f32, -(t as f32), 0.5];
            if f.push(&[0.0], &x, &mut out).unwrap() {
                got.push(out);
            }
            // Nothing comes out before `delay` frames are in; then one per push.
            assert_eq!(got.len(), (t + 1).saturating_sub(8));
        }
        while f.drain(&mut out).unwrap() {
            got.push(out);
        }
        assert_eq!(got.len(), 20);
        // No blink: the filter never acts and every frame keeps its bits.
        for (t, o) in got.iter().enumerate() {
            assert_eq!(*o, [t as f32, -(t as f32), 0.5]);
        }
        assert!(!f.estimator().active());
    }

    #[test]
    fn bad_frames_and_settings_are_refused() {
        let mut f = small(4);
        let mut out = [0.0f32; 3];
        assert_eq!(
            f.push(&[0.0], &[0.0; 2], &mut out),
            Err(SpatialError::FrameLength {
                expected: 3,
                got: 2
            })
        );
        assert!(matches!(
            f.push(&[], &[0.0; 3], &mut out),
            Err(SpatialError::BadConfig { .. })
        ));
        // A non-finite frame passes through and leaves the statistics alone.
        let nan = [f32::NAN, 1.0, 2.0];
        for _ in 0..5 {
            f.push(&[0.0], &nan, &mut out).unwrap();
        }
        assert!(out[0].is_nan() && out[1] == 1.0);
        let bad = MwfConfig {
            band_hz: (8.0, 1.0),
            ..MwfConfig::for_rate(128.0)
        };
        assert!(matches!(
            BlinkMwf::new(bad, [MwfChannel::default(); 3], [0.0; 27], [0.0f32; L4]),
            Err(SpatialError::BadConfig { field: "band_hz" })
        ));
        let bad = MwfConfig {
            background_limit_sd: f32::NAN,
            ..MwfConfig::for_rate(128.0)
        };
        assert!(matches!(
            BlinkMwf::new(bad, [MwfChannel::default(); 3], [0.0; 27], [0.0f32; L4]),
            Err(SpatialError::BadConfig {
                field: "background_limit_sd"
            })
        ));
        // The workspace and line must fit the channel count and delay.
        let cfg = MwfConfig {
            delay: 4,
            blink_margin_s: 0.0,
            ..MwfConfig::for_rate(128.0)
        };
        assert!(matches!(
            BlinkMwf::new(cfg, [MwfChannel::default(); 3], [0.0; 26], [0.0f32; L4]),
            Err(SpatialError::BadConfig { field: "workspace" })
        ));
        assert!(matches!(
            BlinkMwf::new(cfg, [MwfChannel::default(); 3], [0.0; 27], [0.0f32; L4 - 1]),
            Err(SpatialError::BadConfig { field: "line" })
        ));
        // The baseline's look-ahead cannot exceed the delay.
        let cfg = MwfConfig {
            delay: 4,
            ..MwfConfig::for_rate(128.0)
        };
        assert!(matches!(
            BlinkMwf::new(cfg, [MwfChannel::default(); 3], [0.0; 27], [0.0f32; L4]),
            Err(SpatialError::BadConfig {
                field: "blink_margin_s"
            })
        ));
    }

    /// One source with a fixed pattern, bursts of it as blinks on the reference, independent
    /// noise on each channel: the filter's pattern is the source's (up to scale) and `λ` is
    /// the blink-to-background power ratio along it.
    #[test]
    fn learns_the_pattern_of_a_single_source() {
        let pattern = [1.0f32, 0.5, -0.25];
        let mut f = three(MwfConfig::for_rate(128.0));
        let mut out = [0.0f32; 3];
        let mut noise = noise(1);
        for t in 0..128 * 60 {
            let blink = blink_at(t, 512, 100, 50);
            let x = [
                pattern[0] * blink + noise(),
                pattern[1] * blink + noise(),
                pattern[2] * blink + noise(),
            ];
            f.push(&[blink + 0.1 * noise()], &x, &mut out).unwrap();
        }
        let est = f.estimator();
        assert!(est.active() && est.lambda() > 50.0, "{}", est.lambda());
        let (mut v, mut q) = ([0.0f64; 3], [0.0f64; 3]);
        est.filter_into(&mut v, &mut q);
        for i in 1..3 {
            let want = f64::from(pattern[i] / pattern[0]);
            assert!((q[i] / q[0] - want).abs() < 0.05, "{q:?}");
        }
    }

    /// Blinks whose rise and fall stay under the detector's threshold: with the default
    /// margin those frames enter neither covariance, so the background covariance holds no
    /// blink and more of the blink is removed than when they count as background. The
    /// band-passed reference's own limit keeps most of them out as well, without the margin.
    #[test]
    fn frames_near_a_blink_stay_out_of_the_background() {
        let run = |margin_s: f64, limit: f32| {
            let cfg = MwfConfig {
                blink_margin_s: margin_s,
                background_limit_sd: limit,
                ..MwfConfig::for_rate(128.0)
            };
            let mut f = three(cfg);
            let pattern = [1.0f32, 0.6, 0.3];
            let mut noise = noise(7);
            let (mut left, mut blink_energy) = (0.0f64, 0.0f64);
            let mut history = std::vec::Vec::new();
            let mut out = [0.0f32; 3];
            for t in 0..128 * 90 {
                // A 1 s raised-cosine blink every 4 s: only its top half opens the detector.
                let blink = blink_at(t, 512, 100, 128);
                let n = [noise(), noise(), noise()];
                let x = [
                    pattern[0] * blink + n[0],
                    pattern[1] * blink + n[1],
                    pattern[2] * blink + n[2],
                ];
                history.push((n, blink));
                if f.push(&[blink + 0.1 * noise()], &x, &mut out).unwrap() && t >= 128 * 60 {
                    let (n, b) = history[t - 64];
                    for c in 0..3 {
                        left += f64::from(out[c] - n[c]).powi(2);
                        blink_energy += f64::from(pattern[c] * b).powi(2);
                    }
                }
            }
            (libm::sqrt(left / blink_energy), f.estimator().lambda())
        };
        let (with_margin, lam_margin) = run(0.25, f32::INFINITY);
        let (without, lam) = run(0.0, f32::INFINITY);
        assert!(lam_margin > 2.0 * lam, "lambda {lam_margin} vs {lam}");
        assert!(
            with_margin < 0.8 * without,
            "blink left {with_margin} vs {without}"
        );
        let (limited, lam_limited) = run(0.0, 5.0);
        assert!(lam_limited > 2.0 * lam, "lambda {lam_limited} vs {lam}");
        assert!(limited < 0.8 * without, "blink left {limited} vs {without}");
    }

    /// Mains common to every channel is not part of the blink pattern: the band-limited
    /// correction leaves it where it was, while a full-band one moves it by `q (vᵀ 1)`.
    #[test]
    fn mains_common_to_the_channels_stays_where_it_was() {
        const FS: f64 = 256.0;
        let run = |correction_hz: f64| {
            let cfg = MwfConfig {
                correction_hz,
                ..MwfConfig::for_rate(FS)
            };
            let mut f = three(cfg);
            let pattern = [1.0f32, 0.7, 0.2];
            let mut noise = noise(11);
            let mut history = std::vec::Vec::new();
            let mut out = [0.0f32; 3];
            let (mut re, mut im, mut n) = (0.0f64, 0.0f64, 0usize);
            for t in 0..(FS as usize) * 60 {
                let blink = blink_at(t, 1024, 200, 100);
                let mains = 20.0 * libm::sin(core::f64::consts::TAU * 50.0 * t as f64 / FS) as f32;
                let x = [
                    pattern[0] * blink + noise() + mains,
                    pattern[1] * blink + noise() + mains,
                    pattern[2] * blink + noise() + mains,
                ];
                history.push(x);
                if f.push(&[blink + 0.1 * noise()], &x, &mut out).unwrap() && t >= 256 * 40 {
                    // Channel 2 (the weakest blink) at 50 Hz: what the filter changed.
                    let u = t - 128;
                    let d = f64::from(out[2] - history[u][2]);
                    let w = core::f64::consts::TAU * 50.0 * u as f64 / FS;
                    re += d * libm::cos(w);
                    im += d * libm::sin(w);
                    n += 1;
                }
            }
            assert!(f.estimator().active());
            2.0 * libm::sqrt(re * re + im * im) / n as f64 / 20.0
        };
        let limited = run(15.0);
        let full = run(0.49 * FS);
        assert!(limited < 0.01, "50 Hz moved by {limited} of the mains");
        assert!(full > 5.0 * limited, "full band {full} vs {limited}");
    }

    /// A frame with a gap (NaN) while the filter acts: it comes out as it went in, the frames
    /// whose low-pass span holds it (`delay / 4` either side) come out uncorrected, and no
    /// other frame is touched by the gap.
    #[test]
    fn a_gap_stays_where_it_is() {
        let mut f = three(MwfConfig::for_rate(128.0));
        let mut noise = noise(3);
        let gap = 128 * 40 + 300;
        let mut inputs = std::vec::Vec::new();
        let mut outputs = std::vec::Vec::new();
        let mut out = [0.0f32; 3];
        for t in 0..128 * 45 {
            let blink = blink_at(t, 512, 100, 50);
            let mut x = [
                blink + noise(),
                0.5 * blink + noise(),
                0.2 * blink + noise(),
            ];
            if t == gap {
                x[1] = f32::NAN;
            }
            inputs.push(x);
            if f.push(&[blink + 0.1 * noise()], &x, &mut out).unwrap() {
                outputs.push(out);
            }
        }
        assert!(f.estimator().active());
        let half = 64 / 4;
        for (u, (o, x)) in outputs.iter().zip(&inputs).enumerate() {
            let near = u.abs_diff(gap) <= half;
            if u == gap {
                assert!(o[1].is_nan() && o[0] == x[0] && o[2] == x[2], "{o:?}");
            } else if near {
                assert_eq!(o, x, "frame {u}, {} from the gap", u.abs_diff(gap));
            } else if u > 128 * 30 {
                assert!(o.iter().all(|v| v.is_finite()), "frame {u}");
                // Active and away from the gap: every frame is corrected.
                assert_ne!(o, x, "frame {u}");
            }
        }
    }
}
