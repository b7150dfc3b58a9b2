//! Zero-phase IIR prefiltering for offline EEG preprocessing.
//!
//! [`Filter`] is a cascade of second-order sections ([`Biquad`], `a0 = 1`): Butterworth
//! low-/high-/band-pass designs ([`Filter::butterworth`], the analog prototype mapped with a
//! pre-warped bilinear transform, as SciPy's `butter(..., output="sos")`) and power-line notches
//! ([`Filter::notch`], [`Filter::line_noise`], as SciPy's `iirnotch`). [`Filter::filtfilt`] runs
//! the cascade forward and then backward (zero phase, squared magnitude) over an odd extension
//! of the signal with steady-state initial conditions, as SciPy's `sosfiltfilt`, so that a step
//! or a DC offset at the edges produces no start-up transient.
//!
//! Samples are `f32` in and out; every coefficient, state and intermediate value is `f64`,
//! because narrow-band sections (a 0.5 Hz high-pass at 1 kHz, a Q = 30 notch) have poles so
//! close to the unit circle that `f32` state visibly drifts.

use thiserror::Error;

/// Why a filter could not be designed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The sampling rate is not a finite positive number.
    #[error("sampling rate {fs_hz} Hz is not a finite positive number")]
    BadSampleRate {
        /// The rejected rate.
        fs_hz: f64,
    },
    /// A corner or notch frequency is not strictly between 0 and the Nyquist frequency.
    #[error(
        "frequency {freq_hz} Hz must lie strictly between 0 and the Nyquist frequency {nyquist_hz} Hz"
    )]
    FrequencyOutOfRange {
        /// The rejected frequency.
        freq_hz: f64,
        /// Half the sampling rate.
        nyquist_hz: f64,
    },
    /// A band-pass whose low corner is not below its high corner.
    #[error("band-pass low corner {lo_hz} Hz must be below the high corner {hi_hz} Hz")]
    EmptyBand {
        /// Low corner.
        lo_hz: f64,
        /// High corner.
        hi_hz: f64,
    },
    /// The Butterworth order is outside 1..=[`MAX_ORDER`].
    #[error("Butterworth order {order} is outside 1..={MAX_ORDER}")]
    BadOrder {
        /// The rejected order.
        order: usize,
    },
    /// The notch quality factor is not a finite positive number.
    #[error("notch quality factor {q} is not a finite positive number")]
    BadQ {
        /// The rejected Q.
        q: f64,
    },
}

/// Highest Butterworth order accepted; beyond it the sections are numerically fragile and no
/// EEG use needs them.
pub const MAX_ORDER: usize = 12;

/// Default notch quality factor (centre frequency / -3 dB bandwidth of one pass): 30 gives a
/// 1.7 Hz wide notch at 50 Hz, narrow enough to leave gamma-band EEG intact.
pub const DEFAULT_NOTCH_Q: f64 = 30.0;

/// The pass band of a Butterworth design, corner frequencies in Hz (-3 dB per pass, so -6 dB
/// after [`Filter::filtfilt`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Band {
    /// Pass below the corner.
    LowPass(f64),
    /// Pass above the corner.
    HighPass(f64),
    /// Pass between `lo` and `hi`.
    BandPass {
        /// Low corner in Hz.
        lo: f64,
        /// High corner in Hz.
        hi: f64,
    },
}

/// One second-order section `H(z) = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    /// Numerator `[b0, b1, b2]`.
    pub b: [f64; 3],
    /// Denominator `[a1, a2]` (`a0` is 1).
    pub a: [f64; 2],
}

impl Biquad {
    /// Complex response at `f_hz` for sampling rate `fs_hz`, as `(re, im)`.
    fn response(&self, f_hz: f64, fs_hz: f64) -> C64 {
        let w = 2.0 * ::core::f64::consts::PI * f_hz / fs_hz;
        let z1 = C64::new(w.cos(), -w.sin());
        let z2 = z1 * z1;
        let num = C64::from(self.b[0]) + z1.scale(self.b[1]) + z2.scale(self.b[2]);
        let den = C64::from(1.0) + z1.scale(self.a[0]) + z2.scale(self.a[1]);
        num / den
    }

    /// State `[z1, z2]` of the transposed direct form II after a unit step has settled.
    fn step_state(&self) -> [f64; 2] {
        let g = (self.b[0] + self.b[1] + self.b[2]) / (1.0 + self.a[0] + self.a[1]);
        [g - self.b[0], self.b[2] - self.a[1] * g]
    }

    /// DC gain of the section.
    fn dc_gain(&self) -> f64 {
        (self.b[0] + self.b[1] + self.b[2]) / (1.0 + self.a[0] + self.a[1])
    }

    /// Largest pole radius (for the impulse-response decay time).
    pub fn max_pole_radius(&self) -> f64 {
        let (a1, a2) = (self.a[0], self.a[1]);
        let disc = a1 * a1 - 4.0 * a2;
        if disc < 0.0 {
            a2.abs().sqrt()
        } else {
            let s = disc.sqrt();
            ((-a1 + s) / 2.0).abs().max(((-a1 - s) / 2.0).abs())
        }
    }

    /// Whether this is really a first-order section (`b2 = a2 = 0`).
    fn is_first_order(&self) -> bool {
        self.b[2] == 0.0 && self.a[1] == 0.0
    }
}

/// A cascade of second-order sections, applied in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    sections: Vec<Biquad>,
}

impl Filter {
    /// Wraps sections designed elsewhere (`a0` must already be 1).
    pub fn from_sections(sections: Vec<Biquad>) -> Self {
        Self { sections }
    }

    /// The sections, in application order.
    pub fn sections(&self) -> &[Biquad] {
        &self.sections
    }

    /// Whether the cascade is empty (filtering is then the identity).
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// This cascade followed by `other` (the order does not change the result of a linear
    /// filter, only rounding).
    pub fn then(mut self, other: Filter) -> Filter {
        self.sections.extend(other.sections);
        self
    }

    /// A digital Butterworth filter of the given `order` (order `n` gives `n` poles for low- and
    /// high-pass and `2n` for band-pass, SciPy's convention). Corners are -3 dB points of one
    /// pass, placed exactly by pre-warping.
    pub fn butterworth(band: Band, order: usize, fs_hz: f64) -> Result<Filter, FilterError> {
        check_fs(fs_hz)?;
        if order == 0 || order > MAX_ORDER {
            return Err(FilterError::BadOrder { order });
        }
        let warp = |f: f64| -> Result<f64, FilterError> {
            check_freq(f, fs_hz)?;
            Ok(2.0 * fs_hz * (::core::f64::consts::PI * f / fs_hz).tan())
        };
        // Analog prototype: unit-cutoff Butterworth poles on the left half circle.
        let proto: Vec<C64> = (0..order)
            .map(|i| {
                let m = 2.0 * i as f64 - order as f64 + 1.0;
                let th = ::core::f64::consts::PI * m / (2.0 * order as f64);
                -C64::new(th.cos(), th.sin())
            })
            .collect();
        let fs2 = 2.0 * fs_hz;
        // Analog poles and gain after the frequency transform; analog zeros are all at 0
        // (high- and band-pass) and the rest at infinity, which the bilinear transform maps
        // to z = 1 and z = -1 respectively, so zeros are tracked as counts only.
        let (poles, gain, zeros_at_dc, zeros_at_nyq): (Vec<C64>, f64, usize, usize) = match band {
            Band::LowPass(f) => {
                let wo = warp(f)?;
                let p: Vec<C64> = proto.iter().map(|p| p.scale(wo)).collect();
                (p, wo.powi(order as i32), 0, order)
            }
            Band::HighPass(f) => {
                let wo = warp(f)?;
                let p: Vec<C64> = proto.iter().map(|p| C64::from(wo) / *p).collect();
                // k = real(prod(-z) / prod(-p)) with no prototype zeros.
                let prod = proto.iter().fold(C64::from(1.0), |acc, p| acc * (-*p));
                (p, 1.0 / prod.re, order, 0)
            }
            Band::BandPass { lo, hi } => {
                // Both corners are finite once warping succeeds.
                let (wl, wh) = (warp(lo)?, warp(hi)?);
                if lo >= hi {
                    return Err(FilterError::EmptyBand {
                        lo_hz: lo,
                        hi_hz: hi,
                    });
                }
                let bw = wh - wl;
                let wo2 = wl * wh;
                let mut p = Vec::with_capacity(2 * order);
                for q in &proto {
                    let pl = q.scale(bw / 2.0);
                    let r = (pl * pl - C64::from(wo2)).sqrt();
                    p.push(pl + r);
                    p.push(pl - r);
                }
                (p, bw.powi(order as i32), order, order)
            }
        };
        // Bilinear transform of poles and gain: k_z = k * prod(fs2 - z) / prod(fs2 - p),
        // where analog zeros at 0 contribute fs2 each.
        let zp: Vec<C64> = poles
            .iter()
            .map(|p| (C64::from(fs2) + *p) / (C64::from(fs2) - *p))
            .collect();
        let den = poles
            .iter()
            .fold(C64::from(1.0), |acc, p| acc * (C64::from(fs2) - *p));
        let k = gain * (fs2.powi(zeros_at_dc as i32) / den).re;
        Ok(Filter {
            sections: zpk_to_sections(&zp, zeros_at_dc, zeros_at_nyq, k),
        })
    }

    /// A second-order notch at `freq_hz` with quality factor `q` (centre / -3 dB bandwidth of
    /// one pass), unit gain at DC and Nyquist, zero gain at the centre (SciPy's `iirnotch`).
    pub fn notch(freq_hz: f64, q: f64, fs_hz: f64) -> Result<Filter, FilterError> {
        check_fs(fs_hz)?;
        check_freq(freq_hz, fs_hz)?;
        if !(q.is_finite() && q > 0.0) {
            return Err(FilterError::BadQ { q });
        }
        let w0 = 2.0 * ::core::f64::consts::PI * freq_hz / fs_hz;
        let bw = w0 / q;
        let beta = (bw / 2.0).tan();
        let g = 1.0 / (1.0 + beta);
        let c = w0.cos();
        Ok(Filter {
            sections: vec![Biquad {
                b: [g, -2.0 * g * c, g],
                a: [-2.0 * g * c, 2.0 * g - 1.0],
            }],
        })
    }

    /// Notches at the power-line frequency `line_hz` (50 or 60) and, when `harmonics` is set,
    /// at every multiple below the Nyquist frequency, each with quality factor `q`. A line
    /// frequency at or above Nyquist gives an error (it cannot be removed, only aliased).
    pub fn line_noise(
        line_hz: f64,
        harmonics: bool,
        q: f64,
        fs_hz: f64,
    ) -> Result<Filter, FilterError> {
        let mut f = Filter::notch(line_hz, q, fs_hz)?;
        if harmonics {
            let mut h = 2.0;
            // Stop short of Nyquist: a notch there is degenerate.
            while h * line_hz < fs_hz / 2.0 * (1.0 - 1e-9) {
                f = f.then(Filter::notch(h * line_hz, q, fs_hz)?);
                h += 1.0;
            }
        }
        Ok(f)
    }

    /// Magnitude of one (causal) pass at `f_hz`; [`Filter::filtfilt`] applies its square.
    pub fn gain_at(&self, f_hz: f64, fs_hz: f64) -> f64 {
        self.sections
            .iter()
            .fold(C64::from(1.0), |acc, s| acc * s.response(f_hz, fs_hz))
            .norm()
    }

    /// Edge padding used by [`Filter::filtfilt`]: SciPy's `sosfiltfilt` default
    /// (3 x (2 x sections + 1), fewer for first-order sections) or, when longer, the number of
    /// samples the slowest pole needs to decay by 60 dB, so narrow filters start settled.
    pub fn default_padlen(&self) -> usize {
        if self.sections.is_empty() {
            return 0;
        }
        let first_order = self.sections.iter().filter(|s| s.is_first_order()).count();
        let scipy = 3 * (2 * self.sections.len() + 1 - first_order);
        let r = self
            .sections
            .iter()
            .map(Biquad::max_pole_radius)
            .fold(0.0_f64, f64::max);
        let decay = if r > 0.0 && r < 1.0 {
            ((1e-3_f64).ln() / r.ln()).ceil().min(1e9) as usize
        } else {
            0
        };
        scipy.max(decay)
    }

    /// Zero-phase filtering in place with [`Filter::default_padlen`] (clamped to the signal).
    pub fn filtfilt(&self, x: &mut [f32]) {
        self.filtfilt_with_padlen(x, self.default_padlen());
    }

    /// Zero-phase filtering in place: odd extension by `padlen` samples on each side (clamped
    /// to `x.len() - 1`), a forward pass and a backward pass, each started from the
    /// steady state of the edge value. Equals SciPy's `sosfiltfilt(sos, x, padlen=padlen)`
    /// up to `f32` rounding of the output.
    pub fn filtfilt_with_padlen(&self, x: &mut [f32], padlen: usize) {
        let n = x.len();
        if n == 0 || self.sections.is_empty() {
            return;
        }
        let pad = padlen.min(n - 1);
        let mut ext = Vec::with_capacity(n + 2 * pad);
        let (x0, xl) = (f64::from(x[0]), f64::from(x[n - 1]));
        ext.extend((0..pad).map(|i| 2.0 * x0 - f64::from(x[pad - i])));
        ext.extend(x.iter().map(|&v| f64::from(v)));
        ext.extend((0..pad).map(|i| 2.0 * xl - f64::from(x[n - 2 - i])));

        let zi = self.step_states();
        let first = ext[0];
        self.run_scaled(&zi, first, ext.iter_mut());
        let last = ext[ext.len() - 1];
        self.run_scaled(&zi, last, ext.iter_mut().rev());
        for (o, v) in x.iter_mut().zip(&ext[pad..pad + n]) {
            *o = *v as f32;
        }
    }

    /// Causal filtering in place from rest (zero state), for callers that want the plain
    /// one-pass response.
    pub fn filter_causal(&self, x: &mut [f32]) {
        let mut buf: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let zeros = vec![[0.0; 2]; self.sections.len()];
        self.run_scaled(&zeros, 0.0, buf.iter_mut());
        for (o, v) in x.iter_mut().zip(&buf) {
            *o = *v as f32;
        }
    }

    /// Per-section steady states for a unit step into the whole cascade (SciPy's
    /// `sosfilt_zi`).
    fn step_states(&self) -> Vec<[f64; 2]> {
        let mut scale = 1.0;
        self.sections
            .iter()
            .map(|s| {
                let z = s.step_state();
                let out = [z[0] * scale, z[1] * scale];
                scale *= s.dc_gain();
                out
            })
            .collect()
    }

    /// Runs the cascade over `samples` in iteration order, starting from `zi` scaled by
    /// `scale` (the edge value, for a settled start).
    fn run_scaled<'a>(
        &self,
        zi: &[[f64; 2]],
        scale: f64,
        samples: impl Iterator<Item = &'a mut f64>,
    ) {
        let mut state: Vec<[f64; 2]> = zi.iter().map(|z| [z[0] * scale, z[1] * scale]).collect();
        for v in samples {
            let mut x = *v;
            for (s, st) in self.sections.iter().zip(state.iter_mut()) {
                // Transposed direct form II: two state variables per section.
                let y = s.b[0] * x + st[0];
                st[0] = s.b[1] * x - s.a[0] * y + st[1];
                st[1] = s.b[2] * x - s.a[1] * y;
                x = y;
            }
            *v = x;
        }
    }
}

fn check_fs(fs_hz: f64) -> Result<(), FilterError> {
    if fs_hz.is_finite() && fs_hz > 0.0 {
        Ok(())
    } else {
        Err(FilterError::BadSampleRate { fs_hz })
    }
}

fn check_freq(f: f64, fs_hz: f64) -> Result<(), FilterError> {
    let nyq = fs_hz / 2.0;
    if f.is_finite() && f > 0.0 && f < nyq {
        Ok(())
    } else {
        Err(FilterError::FrequencyOutOfRange {
            freq_hz: f,
            nyquist_hz: nyq,
        })
    }
}

/// Groups z-plane poles into sections (conjugate pairs, then real poles pairwise, a leftover
/// real pole as a first-order section), gives each section two zeros (z = 1 zeros first
/// shared out one per section for band-pass), sorts sections so the poles nearest the unit
/// circle come last (SciPy's ordering, less overflow in early sections) and puts the gain in
/// the first section.
fn zpk_to_sections(poles: &[C64], zeros_at_dc: usize, zeros_at_nyq: usize, k: f64) -> Vec<Biquad> {
    let scale = poles.iter().map(|p| p.norm()).fold(1.0, f64::max);
    let tol = 1e-10 * scale;
    let mut complex: Vec<C64> = poles.iter().copied().filter(|p| p.im > tol).collect();
    let mut real: Vec<f64> = poles
        .iter()
        .filter(|p| p.im.abs() <= tol)
        .map(|p| p.re)
        .collect();
    complex.sort_by(|a, b| a.norm().total_cmp(&b.norm()));
    real.sort_by(|a, b| a.abs().total_cmp(&b.abs()));

    // Denominators with their largest pole radius, for ordering.
    let mut dens: Vec<([f64; 2], f64, bool)> = complex
        .iter()
        .map(|p| ([-2.0 * p.re, p.re * p.re + p.im * p.im], p.norm(), false))
        .collect();
    let mut it = real.chunks(2);
    for pair in it.by_ref() {
        match pair {
            [p1, p2] => dens.push(([-(p1 + p2), p1 * p2], p1.abs().max(p2.abs()), false)),
            [p] => dens.push(([-p, 0.0], p.abs(), true)),
            _ => unreachable!("chunks(2) yields one or two items"),
        }
    }
    dens.sort_by(|a, b| a.1.total_cmp(&b.1));

    // Numerators: the zeros are z = 1 (count zeros_at_dc) and z = -1 (count zeros_at_nyq);
    // band-pass designs have as many of each as sections, so each section gets one of each.
    let mut dc_left = zeros_at_dc;
    let mut nyq_left = zeros_at_nyq;
    let mut sections: Vec<Biquad> = dens
        .into_iter()
        .map(|(a, _, first_order)| {
            let want = if first_order { 1 } else { 2 };
            let mut b = [1.0, 0.0, 0.0];
            let mut order = 0;
            let both = dc_left > 0 && nyq_left > 0 && want == 2 && dc_left == nyq_left;
            for i in 0..want {
                let root = if both {
                    if i == 0 { 1.0 } else { -1.0 }
                } else if dc_left > 0 {
                    1.0
                } else if nyq_left > 0 {
                    -1.0
                } else {
                    break;
                };
                if root > 0.0 {
                    dc_left -= 1;
                } else {
                    nyq_left -= 1;
                }
                // Multiply b(z) by (1 - root z^-1).
                let old = b;
                b[1] = old[1] - root * old[0];
                b[2] = old[2] - root * old[1];
                order += 1;
            }
            debug_assert!(order <= want);
            Biquad { b, a }
        })
        .collect();
    if let Some(first) = sections.first_mut() {
        for c in &mut first.b {
            *c *= k;
        }
    }
    sections
}

/// Complex numbers for filter design (poles, frequency responses).
type C64 = num_complex::Complex<f64>;

/// Amplitude and in-phase (sine) coefficient of the `f_hz` tone in `y[range]`, by least squares
/// against sin and cos (exact for a pure tone when the range spans whole cycles). Test support
/// shared by the filter and resampler tests.
#[cfg(test)]
pub(crate) fn tone(y: &[f32], f_hz: f64, fs: f64, range: ::core::ops::Range<usize>) -> (f64, f64) {
    use ::core::f64::consts::PI;
    let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in range {
        let t = 2.0 * PI * f_hz * i as f64 / fs;
        let (s, c) = (t.sin(), t.cos());
        let v = f64::from(y[i]);
        ss += s * s;
        sc += s * c;
        cc += c * c;
        ys += v * s;
        yc += v * c;
    }
    let det = ss * cc - sc * sc;
    let a = (ys * cc - yc * sc) / det;
    let b = (yc * ss - ys * sc) / det;
    ((a * a + b * b).sqrt(), a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::core::f64::consts::PI;

    fn sine(f_hz: f64, fs: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * PI * f_hz * i as f64 / fs).sin() as f32)
            .collect()
    }

    fn warped(f: f64, fs: f64) -> f64 {
        2.0 * fs * (PI * f / fs).tan()
    }

    #[test]
    fn butterworth_designs_match_analytic_magnitude() {
        let fs = 160.0;
        let bp = Filter::butterworth(Band::BandPass { lo: 1.0, hi: 40.0 }, 4, fs).unwrap();
        let lp = Filter::butterworth(Band::LowPass(20.0), 5, fs).unwrap();
        let hp = Filter::butterworth(Band::HighPass(5.0), 3, fs).unwrap();
        assert_eq!(bp.sections().len(), 4);
        assert_eq!(lp.sections().len(), 3);
        assert_eq!(hp.sections().len(), 2);
        let (wl, wh, wc_lp, wc_hp) = (
            warped(1.0, fs),
            warped(40.0, fs),
            warped(20.0, fs),
            warped(5.0, fs),
        );
        for i in 1..160 {
            let f = i as f64 * 0.5;
            let w = warped(f, fs);
            let t_bp = 1.0 / (1.0 + ((w * w - wl * wh) / (w * (wh - wl))).powi(8)).sqrt();
            let t_lp = 1.0 / (1.0 + (w / wc_lp).powi(10)).sqrt();
            let t_hp = 1.0 / (1.0 + (wc_hp / w).powi(6)).sqrt();
            // Design is exact in f64; 1e-9 leaves room for rounding in the pole algebra.
            assert!((bp.gain_at(f, fs) - t_bp).abs() < 1e-9, "bp at {f} Hz");
            assert!((lp.gain_at(f, fs) - t_lp).abs() < 1e-9, "lp at {f} Hz");
            assert!((hp.gain_at(f, fs) - t_hp).abs() < 1e-9, "hp at {f} Hz");
        }
        // Corners are -3 dB per pass.
        assert!((bp.gain_at(40.0, fs) - 0.5f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn filtfilt_measured_gain_is_squared_magnitude_with_zero_phase() {
        let fs = 160.0;
        let n = 160 * 40;
        let bp = Filter::butterworth(Band::BandPass { lo: 1.0, hi: 40.0 }, 4, fs).unwrap();
        for f in [0.25, 1.0, 10.0, 40.0, 55.0, 70.0] {
            let mut x = sine(f, fs, n);
            bp.filtfilt(&mut x);
            // Middle 20 s (whole cycles for every f above), far from the edges.
            let (amp, in_phase) = tone(&x, f, fs, 1600..4800);
            let theory = bp.gain_at(f, fs).powi(2);
            // f32 output rounding and residual edge transients stay below 1e-4.
            assert!(
                (amp - theory).abs() < 1e-4,
                "{f} Hz: gain {amp} vs {theory}"
            );
            // Zero phase: the output is in phase with the sine (no cosine part).
            assert!((in_phase - amp).abs() < 1e-4, "{f} Hz: phase shift");
        }
    }

    #[test]
    fn notch_removes_line_noise_by_more_than_30_db() {
        for (line, fs) in [(50.0, 250.0), (60.0, 160.0), (50.0, 256.0), (60.0, 256.0)] {
            let f = Filter::notch(line, DEFAULT_NOTCH_Q, fs).unwrap();
            let n = (fs as usize) * 30;
            let mut x = sine(line, fs, n);
            f.filtfilt(&mut x);
            let (amp, _) = tone(&x, line, fs, n / 4..3 * n / 4);
            let db = 20.0 * amp.log10();
            assert!(db < -30.0, "{line} Hz at {fs} Hz: {db} dB");
            // Alpha-band EEG passes untouched (well under 0.1% loss at 10 Hz).
            let mut a = sine(10.0, fs, n);
            f.filtfilt(&mut a);
            let (amp10, _) = tone(&a, 10.0, fs, n / 4..3 * n / 4);
            assert!((amp10 - 1.0).abs() < 1e-3, "10 Hz gain {amp10}");
        }
    }

    #[test]
    fn line_noise_harmonics_are_all_notched() {
        let fs = 500.0;
        let f = Filter::line_noise(50.0, true, DEFAULT_NOTCH_Q, fs).unwrap();
        // 50, 100, 150, 200 Hz (250 Hz is Nyquist and skipped).
        assert_eq!(f.sections().len(), 4);
        for h in [50.0, 100.0, 150.0, 200.0] {
            assert!(f.gain_at(h, fs) < 1e-6, "harmonic {h}");
            let n = 500 * 20;
            let mut x = sine(h, fs, n);
            f.filtfilt(&mut x);
            let (amp, _) = tone(&x, h, fs, n / 4..3 * n / 4);
            assert!(20.0 * amp.log10() < -30.0, "harmonic {h}: {amp}");
        }
    }

    #[test]
    fn edges_have_no_startup_transient() {
        // A large DC offset and a slope: a band-pass started from rest would ring by ~100 at
        // the edges; steady-state start on the odd extension keeps the output near the tone.
        let fs = 160.0;
        let n = 1600;
        let x0: Vec<f32> = sine(10.0, fs, n)
            .iter()
            .enumerate()
            .map(|(i, v)| v + 100.0 + 0.01 * i as f32)
            .collect();
        let bp = Filter::butterworth(Band::BandPass { lo: 1.0, hi: 40.0 }, 4, fs).unwrap();
        let mut x = x0.clone();
        bp.filtfilt(&mut x);
        let tone = sine(10.0, fs, n);
        let err =
            |r: ::core::ops::Range<usize>| r.map(|i| (x[i] - tone[i]).abs()).fold(0.0f32, f32::max);
        // Odd extension about an edge sample that sits off the tone's zero (here the tone
        // ends at -0.38) leaves an edge error of about that size (SciPy's is the same), two
        // orders of magnitude below the offset; the interior is clean.
        let edge = err(0..n);
        assert!(edge < 0.5, "edge transient {edge}");
        let interior = err(200..n - 200);
        assert!(interior < 0.02, "interior error {interior}");
        let mut causal = x0;
        bp.filter_causal(&mut causal);
        let causal_peak = causal.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            causal_peak > 10.0,
            "the test signal must provoke a transient"
        );
    }

    #[test]
    fn matches_scipy_sosfiltfilt() {
        // Reference values from SciPy 1.17.1 (`sosfiltfilt(butter(...), x, padlen=60)` and
        // `iirnotch(60, 30, fs=160)`) for x[i] = sin(0.1 i) + 0.5 sin(1.3 i) + 0.01 i + 3
        // rounded to f32, i < 400.
        let x: Vec<f32> = (0..400)
            .map(|i| {
                let t = i as f64;
                ((0.1 * t).sin() + 0.5 * (1.3 * t).sin() + 0.01 * t + 3.0) as f32
            })
            .collect();
        let idx = [0usize, 1, 57, 200, 398, 399];
        let cases: [(Filter, [f64; 6]); 4] = [
            (
                Filter::butterworth(Band::BandPass { lo: 1.0, hi: 40.0 }, 4, 160.0).unwrap(),
                [
                    0.006488318495281475,
                    0.5461851014581858,
                    -0.9807425355604897,
                    1.2453668202596457,
                    0.5642245028488938,
                    -0.11542945410196126,
                ],
            ),
            (
                Filter::notch(60.0, 30.0, 160.0).unwrap(),
                [
                    3.000683817198074,
                    3.5903313478458627,
                    2.538438916997508,
                    6.254045252974973,
                    8.253068006964492,
                    7.633549302397855,
                ],
            ),
            (
                Filter::butterworth(Band::HighPass(5.0), 3, 160.0).unwrap(),
                [
                    -0.00031504865702844387,
                    0.48311859146171665,
                    -0.49085015375653995,
                    0.3570580473136914,
                    0.5841214878975401,
                    0.0007038343680392245,
                ],
            ),
            (
                Filter::butterworth(Band::LowPass(20.0), 5, 160.0).unwrap(),
                [
                    2.9999999088801417,
                    3.110942074171215,
                    3.0182063481681913,
                    5.913731460920112,
                    7.7706230731457895,
                    7.632544673170618,
                ],
            ),
        ];
        for (k, (f, want)) in cases.iter().enumerate() {
            let mut y = x.clone();
            f.filtfilt_with_padlen(&mut y, 60);
            for (&i, &w) in idx.iter().zip(want) {
                // Our output is f32: allow f32 rounding of values up to ~10 (1e-5 absolute).
                assert!(
                    (f64::from(y[i]) - w).abs() < 1e-5,
                    "case {k} sample {i}: {} vs {w}",
                    y[i]
                );
            }
        }
    }

    #[test]
    fn invalid_designs_are_refused() {
        assert!(matches!(
            Filter::butterworth(Band::LowPass(80.0), 4, 160.0),
            Err(FilterError::FrequencyOutOfRange { .. })
        ));
        assert!(matches!(
            Filter::butterworth(Band::BandPass { lo: 30.0, hi: 10.0 }, 4, 160.0),
            Err(FilterError::EmptyBand { .. })
        ));
        assert!(matches!(
            Filter::butterworth(Band::HighPass(1.0), 0, 160.0),
            Err(FilterError::BadOrder { order: 0 })
        ));
        assert!(matches!(
            Filter::notch(60.0, 30.0, 100.0),
            Err(FilterError::FrequencyOutOfRange { .. })
        ));
        assert!(matches!(
            Filter::notch(50.0, -1.0, 250.0),
            Err(FilterError::BadQ { .. })
        ));
        assert!(matches!(
            Filter::notch(50.0, 30.0, f64::NAN),
            Err(FilterError::BadSampleRate { .. })
        ));
    }

    #[test]
    fn short_and_empty_signals_do_not_panic() {
        let f = Filter::butterworth(Band::HighPass(1.0), 2, 100.0).unwrap();
        let mut e: [f32; 0] = [];
        f.filtfilt(&mut e);
        let mut one = [5.0f32];
        f.filtfilt(&mut one);
        assert!(one[0].is_finite());
        let mut three = [1.0f32, 2.0, 3.0];
        f.filtfilt(&mut three);
        assert!(three.iter().all(|v| v.is_finite()));
    }
}
