//! Spatial removal of eye artifacts: a running, exponentially weighted least-squares
//! regression of every channel on `R` artifact references, subtracted sample by sample.
//!
//! A blink or an eye movement is one source seen on every channel with a fixed topography, so
//! once a reference waveform `a(t)` of it is known (an EOG channel, or a frontal average whose
//! artifact part the SAE isolates), each channel is cleaned by `y_c = x_c - g_c · a`, where the
//! gains `g_c` (one per reference) are the least-squares fit of `x_c` on `a` over the recent
//! past with forgetting factor `λ`:
//!
//! `S_aa(t) = λ S_aa(t-1) + â(t) â(t)ᵀ`, `S_xa(t) = λ S_xa(t-1) + x̂_c(t) â(t)`,
//! `g_c = (S_aa + ρ I)⁻¹ S_xa`,
//!
//! where `x̂`, `â` are the signals after a one-pole DC blocker (so electrode offsets and drift
//! do not enter the fit) and `ρ` a ridge that keeps the gains near zero until the reference
//! carries energy. The reference is subtracted as given (not DC-blocked: the blocker's
//! undershoot after each blink would be subtracted too), so it must carry no offset: prepare
//! it with a [`DcBlocker`] of a lower corner and an [`ArtifactGate`], which zeroes it between
//! artifacts.
//!
//! Key types: [`RefRegression`] over caller-owned per-channel [`ChannelState`]s (no
//! allocation, any number of channels), configured by [`RegressionConfig`];
//! [`ArtifactGate`] and [`DcBlocker`] to prepare references. It adds no delay
//! of its own: each frame is cleaned with gains that include that frame. When the reference is
//! isolated by a streaming SAE (latency `d_in - 1` samples), the caller delays the channels by
//! the same amount so both line up; the total latency is then the SAE's.
//!
//! ```
//! use mfr_eeg::core::{ChannelState, RefRegression, RegressionConfig};
//! let mut state = [ChannelState::<1>::default(); 2];
//! let mut reg = RefRegression::new(RegressionConfig::for_rate(128.0), &mut state).unwrap();
//! for t in 0..4096 {
//!     let blink = if (t / 300) % 4 == 1 { 100.0 * libm::sinf(t as f32 * 0.02) } else { 0.0 };
//!     let brain = libm::sinf(t as f32 * 0.7);
//!     // Channel 0 sees the blink fully, channel 1 at 30 %.
//!     let mut frame = [blink + brain, 0.3 * blink - brain];
//!     reg.process_frame(&[blink], &mut frame).unwrap();
//!     if t > 3000 {
//!         assert!((frame[0] - brain).abs() < 2.0 && (frame[1] + brain).abs() < 2.0);
//!     }
//! }
//! ```

use ::core::fmt;

/// Errors of the spatial stage: small and `Copy`, like [`super::CoreError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpatialError {
    /// The frame does not have one sample per channel state.
    FrameLength {
        /// Channels the regression was built for.
        expected: usize,
        /// Samples in the frame.
        got: usize,
    },
    /// No channel state was given.
    NoChannels,
    /// A configuration value is out of range (its field name).
    BadConfig {
        /// The setting: a field of [`RegressionConfig`] or [`super::MwfConfig`], or a buffer
        /// too small for the channel count.
        field: &'static str,
    },
}

impl fmt::Display for SpatialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpatialError::FrameLength { expected, got } => {
                write!(
                    f,
                    "frame has {got} samples, expected one per channel ({expected})"
                )
            }
            SpatialError::NoChannels => write!(f, "no channels to clean"),
            SpatialError::BadConfig { field } => {
                write!(f, "spatial stage setting {field} is out of range")
            }
        }
    }
}

impl ::core::error::Error for SpatialError {}

/// Settings of [`RefRegression`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegressionConfig {
    /// Forgetting factor `λ` per sample, in (0, 1]; the fit's memory is `1 / (1 - λ)` samples.
    pub forget: f64,
    /// Ridge `ρ` added to the reference covariance, in (reference unit)² x samples.
    pub ridge: f64,
    /// One-pole DC-blocker pole in [0, 1) applied to channels and references before the fit
    /// (0: none).
    pub dc_pole: f64,
}

/// Memory of the default fit in seconds: long enough that the gains learnt on one blink carry
/// over blink-free stretches, short enough to follow electrode or posture changes.
pub const DEFAULT_MEMORY_S: f64 = 30.0;
/// Corner of the default DC blocker in Hz.
pub const DEFAULT_DC_CORNER_HZ: f64 = 0.1;
/// RMS (reference units, µV for EEG) below which a reference is treated as absent: with the
/// ridge at this level the gains stay small until the reference has carried that much power
/// over the fit's memory.
pub const DEFAULT_RIDGE_RMS: f64 = 1.0;

impl RegressionConfig {
    /// The defaults at `fs_hz` ([`DEFAULT_MEMORY_S`], [`DEFAULT_DC_CORNER_HZ`],
    /// [`DEFAULT_RIDGE_RMS`]).
    pub fn for_rate(fs_hz: f32) -> Self {
        let fs = f64::from(fs_hz).max(1.0);
        let memory = DEFAULT_MEMORY_S * fs;
        RegressionConfig {
            forget: 1.0 - 1.0 / memory,
            ridge: DEFAULT_RIDGE_RMS * DEFAULT_RIDGE_RMS * memory,
            dc_pole: dc_pole(DEFAULT_DC_CORNER_HZ, fs),
        }
    }

    fn check(&self) -> Result<(), SpatialError> {
        if !(self.forget > 0.0 && self.forget <= 1.0) {
            return Err(SpatialError::BadConfig { field: "forget" });
        }
        if !(self.ridge.is_finite() && self.ridge >= 0.0) {
            return Err(SpatialError::BadConfig { field: "ridge" });
        }
        if !(self.dc_pole >= 0.0 && self.dc_pole < 1.0) {
            return Err(SpatialError::BadConfig { field: "dc_pole" });
        }
        Ok(())
    }
}

/// One-pole DC blocker `y[n] = x[n] - x[n-1] + p y[n-1]` (primed with the first sample, so
/// an electrode offset does not ring in).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DcBlocker {
    x1: f64,
    y1: f64,
    primed: bool,
}

/// The pole of a one-pole DC blocker with corner `corner_hz` at `fs_hz`.
pub fn dc_pole(corner_hz: f64, fs_hz: f64) -> f64 {
    libm::exp(-2.0 * ::core::f64::consts::PI * corner_hz / fs_hz.max(1e-9))
}

impl DcBlocker {
    /// Filters one sample with pole `pole` (0: pass-through).
    #[inline]
    pub fn step(&mut self, x: f64, pole: f64) -> f64 {
        if pole == 0.0 {
            return x;
        }
        if !self.primed {
            // Start from the first sample so an electrode offset does not ring in.
            self.x1 = x;
            self.primed = true;
        }
        let y = x - self.x1 + pole * self.y1;
        self.x1 = x;
        self.y1 = y;
        y
    }
}

/// Per-channel state of [`RefRegression`] (the cross-covariance with the references and the
/// channel's DC blocker). Firmware keeps an array of them; the CLI a `Vec`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelState<const R: usize> {
    sxa: [f64; R],
    dc: DcBlocker,
}

impl<const R: usize> Default for ChannelState<R> {
    fn default() -> Self {
        ChannelState {
            sxa: [0.0; R],
            dc: DcBlocker::default(),
        }
    }
}

/// Running regression of many channels on `R` references (see the module docs). `S` holds
/// the per-channel states: a borrowed slice or array on firmware, a `Vec` in the CLI.
#[derive(Debug)]
pub struct RefRegression<S, const R: usize> {
    cfg: RegressionConfig,
    saa: [[f64; R]; R],
    ref_dc: [DcBlocker; R],
    chans: S,
}

impl<S, const R: usize> RefRegression<S, R>
where
    S: AsMut<[ChannelState<R>]> + AsRef<[ChannelState<R>]>,
{
    /// A regression for `chans.len()` channels; the states are reset.
    pub fn new(cfg: RegressionConfig, mut chans: S) -> Result<Self, SpatialError> {
        const { assert!(R > 0 && R <= 8, "1..=8 references") };
        cfg.check()?;
        if chans.as_ref().is_empty() {
            return Err(SpatialError::NoChannels);
        }
        chans.as_mut().fill(ChannelState::default());
        Ok(RefRegression {
            cfg,
            saa: [[0.0; R]; R],
            ref_dc: [DcBlocker::default(); R],
            chans,
        })
    }

    /// Channels cleaned per frame.
    pub fn channels(&self) -> usize {
        self.chans.as_ref().len()
    }

    /// Cleans one frame in place: `frame[c]` is channel `c`'s sample at the time of
    /// `reference` (the artifact references' samples). Non-finite inputs leave the fit
    /// untouched for that frame and pass through unchanged.
    pub fn process_frame(
        &mut self,
        reference: &[f32; R],
        frame: &mut [f32],
    ) -> Result<(), SpatialError> {
        if frame.len() != self.chans.as_ref().len() {
            return Err(SpatialError::FrameLength {
                expected: self.chans.as_ref().len(),
                got: frame.len(),
            });
        }
        if !reference.iter().chain(frame.iter()).all(|v| v.is_finite()) {
            return Ok(());
        }
        let lambda = self.cfg.forget;
        let pole = self.cfg.dc_pole;
        let mut a = [0.0f64; R];
        for ((ai, &r), dc) in a
            .iter_mut()
            .zip(reference.iter())
            .zip(self.ref_dc.iter_mut())
        {
            *ai = dc.step(f64::from(r), pole);
        }
        for i in 0..R {
            for j in 0..R {
                self.saa[i][j] = lambda * self.saa[i][j] + a[i] * a[j];
            }
        }
        // Cholesky of S_aa + ρI once per frame; each channel then needs two triangular solves.
        let mut l = [[0.0f64; R]; R];
        if !cholesky(&self.saa, self.cfg.ridge, &mut l) {
            return Ok(());
        }
        for (st, x) in self.chans.as_mut().iter_mut().zip(frame.iter_mut()) {
            let xh = st.dc.step(f64::from(*x), pole);
            for (s, ai) in st.sxa.iter_mut().zip(a.iter()) {
                *s = lambda * *s + xh * ai;
            }
            let g = solve(&l, &st.sxa);
            let mut fit = 0.0f64;
            for (gi, &ri) in g.iter().zip(reference.iter()) {
                fit += gi * f64::from(ri);
            }
            *x = (f64::from(*x) - fit) as f32;
        }
        Ok(())
    }

    /// The current gains of channel `c` on each reference (`None` if `c` is out of range).
    pub fn gains(&self, c: usize) -> Option<[f64; R]> {
        let st = self.chans.as_ref().get(c)?;
        let mut l = [[0.0f64; R]; R];
        if !cholesky(&self.saa, self.cfg.ridge, &mut l) {
            return Some([0.0; R]);
        }
        Some(solve(&l, &st.sxa))
    }
}

/// Settings of [`ArtifactGate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateConfig {
    /// The gate opens from `threshold` x the waveform's robust scale and is fully open at
    /// twice that.
    pub threshold: f32,
    /// Per-sample multiplicative step of the running median of |a| (its memory is about
    /// `1 / step` samples).
    pub median_step: f32,
    /// Per-sample decay of the peak envelope (fast attack, this release).
    pub release: f32,
}

impl GateConfig {
    /// Defaults at `fs_hz`: threshold 1.5 robust standard deviations (fully open at 3), a
    /// median over about 10 s, an envelope releasing with a 0.5 s time constant (chosen on
    /// spkit's blink segment among thresholds 1.5/2/3, releases 0.2/0.5 s, memories 10/30 s).
    pub fn for_rate(fs_hz: f32) -> Self {
        let fs = fs_hz.max(1.0);
        GateConfig {
            threshold: 1.5,
            median_step: 1.0 / (10.0 * fs),
            release: libm::expf(-1.0 / (0.5 * fs)),
        }
    }
}

/// Passes an artifact waveform only where it stands out: `a · w`, with `w` rising from 0 to 1
/// as the peak envelope of `|a|` goes from `threshold` to `2 threshold` robust standard
/// deviations (1.4826 x a running median of `|a|`). Between blinks the isolated waveform is
/// small residue of brain activity; gating it keeps the regression from subtracting it.
/// Causal, one sample in, one out, no delay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArtifactGate {
    cfg: GateConfig,
    median: f32,
    env: f32,
    seen: u32,
}

impl ArtifactGate {
    /// A gate with `cfg`.
    pub const fn new(cfg: GateConfig) -> Self {
        ArtifactGate {
            cfg,
            median: 0.0,
            env: 0.0,
            seen: 0,
        }
    }

    /// Gates one sample (non-finite samples give 0 and leave the state alone).
    pub fn step(&mut self, a: f32) -> f32 {
        if !a.is_finite() {
            return 0.0;
        }
        let m = a.abs();
        // Large steps at first (4 / (n + 8)) so the scale settles within a second whatever the
        // first samples were, then the configured step.
        self.seen = self.seen.saturating_add(1);
        let step = (4.0 / (self.seen as f32 + 8.0)).max(self.cfg.median_step);
        if self.median <= 0.0 {
            self.median = m;
        } else if m > self.median {
            self.median *= 1.0 + step;
        } else {
            self.median *= 1.0 - step;
        }
        self.env = m.max(self.env * self.cfg.release);
        let t = self.cfg.threshold * 1.4826 * self.median;
        if t.is_nan() || t <= 0.0 {
            return a;
        }
        let w = ((self.env - t) / t).clamp(0.0, 1.0);
        a * w
    }

    /// The current opening in [0, 1] (for reports).
    pub fn opening(&self) -> f32 {
        let t = self.cfg.threshold * 1.4826 * self.median;
        if t > 0.0 {
            ((self.env - t) / t).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }
}

/// Lower Cholesky factor of `m + ridge I`; false when it is not positive definite.
// Index loops mirror the textbook recurrences; iterator forms would obscure them.
#[allow(clippy::needless_range_loop)]
fn cholesky<const R: usize>(m: &[[f64; R]; R], ridge: f64, l: &mut [[f64; R]; R]) -> bool {
    for i in 0..R {
        for j in 0..=i {
            let mut s = m[i][j] + if i == j { ridge } else { 0.0 };
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return false;
                }
                l[i][i] = libm::sqrt(s);
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    true
}

/// Solves `L Lᵀ g = b`.
#[allow(clippy::needless_range_loop)]
fn solve<const R: usize>(l: &[[f64; R]; R], b: &[f64; R]) -> [f64; R] {
    let mut y = [0.0f64; R];
    for i in 0..R {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i][k] * y[k];
        }
        y[i] = s / l[i][i];
    }
    let mut g = [0.0f64; R];
    for i in (0..R).rev() {
        let mut s = y[i];
        for k in i + 1..R {
            s -= l[k][i] * g[k];
        }
        g[i] = s / l[i][i];
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_references_are_separated() {
        // Channel = 0.8 v + (-0.5) h + noise; gains must converge to (0.8, -0.5).
        let mut st = [ChannelState::<2>::default(); 1];
        let mut cfg = RegressionConfig::for_rate(100.0);
        cfg.dc_pole = 0.0;
        let mut reg = RefRegression::new(cfg, &mut st).unwrap();
        let mut rng = crate::rng::Rng::new(7);
        for _ in 0..20_000 {
            let v = 50.0 * rng.normal() as f32;
            let h = 30.0 * rng.normal() as f32;
            let mut f = [0.8 * v - 0.5 * h + rng.normal() as f32];
            reg.process_frame(&[v, h], &mut f).unwrap();
        }
        let g = reg.gains(0).unwrap();
        // Tolerance: noise of 1 against references of 30-50 gives gain errors ~1e-3.
        assert!(
            (g[0] - 0.8).abs() < 0.01 && (g[1] + 0.5).abs() < 0.01,
            "{g:?}"
        );
    }

    #[test]
    fn silent_reference_leaves_channels_alone() {
        let mut st = [ChannelState::<1>::default(); 3];
        let mut reg = RefRegression::new(RegressionConfig::for_rate(128.0), &mut st).unwrap();
        for t in 0..1000 {
            let x = [(t as f32 * 0.1).sin(), 2.0, -3.0];
            let mut f = x;
            reg.process_frame(&[0.0], &mut f).unwrap();
            assert_eq!(f, x);
        }
    }

    #[test]
    fn bad_frames_and_config_are_errors() {
        let mut st = [ChannelState::<1>::default(); 2];
        let mut reg = RefRegression::new(RegressionConfig::for_rate(128.0), &mut st).unwrap();
        assert_eq!(
            reg.process_frame(&[1.0], &mut [0.0; 3]),
            Err(SpatialError::FrameLength {
                expected: 2,
                got: 3
            })
        );
        let mut nan = [f32::NAN, 1.0];
        reg.process_frame(&[1.0], &mut nan).unwrap();
        assert!(nan[0].is_nan() && nan[1] == 1.0);
        let mut cfg = RegressionConfig::for_rate(128.0);
        cfg.forget = 1.5;
        let mut st2 = [ChannelState::<1>::default(); 1];
        assert_eq!(
            RefRegression::new(cfg, &mut st2).err(),
            Some(SpatialError::BadConfig { field: "forget" })
        );
        let mut none: [ChannelState<1>; 0] = [];
        assert_eq!(
            RefRegression::new(RegressionConfig::for_rate(128.0), &mut none).err(),
            Some(SpatialError::NoChannels)
        );
    }
}
