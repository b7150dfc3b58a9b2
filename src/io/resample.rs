//! Band-limited rational resampling for moving a channel to a model's rate and back.
//!
//! [`Resampler`] is a polyphase FIR resampler by `up / down` (reduced by their gcd): the
//! signal is conceptually upsampled by `up` with zeros, low-pass filtered by a Kaiser-windowed
//! sinc with its cutoff at the lower of the two Nyquist frequencies, and kept every `down`-th
//! sample; only the taps that meet non-zero input are evaluated. The filter is centred on each
//! output instant, so output sample `m` sits exactly at input time `m * down / up` (zero
//! delay), and the edges see an odd ("anti-reflect") extension of the signal instead of
//! zeros, so a DC offset does not droop at the ends. The output length is
//! `round(n * up / down)`; [`Resampler::process_into`] produces any length (used to come back
//! to the exact original length). With [`ResampleQuality::Scipy`] the result equals SciPy's
//! `resample_poly(x, up, down, padtype="antireflect")`.
//!
//! Samples are `f32` in and out; taps and accumulation are `f64`.

use thiserror::Error;

/// Why a resampler could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// A factor or rate is zero, negative or not finite.
    #[error("resampling {from_hz} Hz -> {to_hz} Hz: rates must be finite and positive")]
    BadRate {
        /// Source rate in Hz.
        from_hz: f64,
        /// Target rate in Hz.
        to_hz: f64,
    },
    /// No ratio with terms up to [`MAX_FACTOR`] is within 1e-6 of the requested one.
    #[error(
        "resampling {from_hz} Hz -> {to_hz} Hz needs a ratio with terms above {MAX_FACTOR}; \
         no rational approximation within 1e-6 exists"
    )]
    RatioTooComplex {
        /// Source rate in Hz.
        from_hz: f64,
        /// Target rate in Hz.
        to_hz: f64,
    },
}

/// Largest reduced `up` or `down` accepted. The prototype filter has about
/// `2 * half_len_factor * max(up, down)` taps, so this bounds memory to a few MB.
pub const MAX_FACTOR: u64 = 8192;

/// Filter quality presets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ResampleQuality {
    /// SciPy `resample_poly`'s defaults: half length 10 x max(up, down), Kaiser beta 5
    /// (about 50 dB stop-band rejection, 0.3% pass-band ripple).
    Scipy,
    /// The default: half length 16 x max(up, down), Kaiser beta 8 (about 80 dB rejection,
    /// pass-band ripple below 0.02%), so a round trip to the model's rate and back is
    /// transparent for EEG below 80% of the lower Nyquist frequency.
    #[default]
    High,
}

impl ResampleQuality {
    fn params(self) -> (usize, f64) {
        match self {
            ResampleQuality::Scipy => (10, 5.0),
            ResampleQuality::High => (16, 8.0),
        }
    }
}

/// Taps of one polyphase branch: output sample at upsampled position `q * up + phase` is
/// `sum_j taps[j] * x[q + first + j]`.
#[derive(Debug, Clone)]
struct Branch {
    first: i64,
    taps: Vec<f64>,
}

/// A polyphase resampler by the rational factor `up / down`.
#[derive(Debug, Clone)]
pub struct Resampler {
    up: u64,
    down: u64,
    branches: Vec<Branch>,
}

impl Resampler {
    /// A resampler by `up / down` (reduced by their gcd) at the default quality.
    pub fn new(up: u64, down: u64) -> Result<Self, ResampleError> {
        Self::with_quality(up, down, ResampleQuality::default())
    }

    /// A resampler from `from_hz` to `to_hz`: the ratio is taken exactly when both rates are
    /// integers, otherwise as the best rational approximation with terms up to
    /// [`MAX_FACTOR`] (it must be within a relative 1e-6, e.g. EDF records of 0.99897662 s).
    pub fn from_rates(from_hz: f64, to_hz: f64) -> Result<Self, ResampleError> {
        let (up, down) = rational_ratio(from_hz, to_hz)?;
        Self::new(up, down)
    }

    /// A resampler by `up / down` with the given filter quality.
    pub fn with_quality(
        up: u64,
        down: u64,
        quality: ResampleQuality,
    ) -> Result<Self, ResampleError> {
        if up == 0 || down == 0 {
            return Err(ResampleError::BadRate {
                from_hz: down as f64,
                to_hz: up as f64,
            });
        }
        let g = gcd(up, down);
        let (up, down) = (up / g, down / g);
        if up.max(down) > MAX_FACTOR {
            return Err(ResampleError::RatioTooComplex {
                from_hz: down as f64,
                to_hz: up as f64,
            });
        }
        if up == 1 && down == 1 {
            return Ok(Self {
                up,
                down,
                branches: Vec::new(),
            });
        }
        let (factor, beta) = quality.params();
        let max_rate = up.max(down) as usize;
        let half_len = factor * max_rate;
        let proto = kaiser_sinc(half_len, 1.0 / max_rate as f64, beta, up as f64);
        // Prototype tap index i covers upsampled offset d = t - k*up = i - half_len. For an
        // output at t = q*up + phase, input k = q + j contributes h[phase - j*up + half_len].
        let up_i = up as i64;
        let hl = half_len as i64;
        let branches = (0..up_i)
            .map(|phase| {
                let first =
                    (phase - hl).div_euclid(up_i) + i64::from((phase - hl).rem_euclid(up_i) != 0);
                let last = (phase + hl).div_euclid(up_i);
                let taps = (first..=last)
                    .map(|j| proto[(phase - j * up_i + hl) as usize])
                    .collect();
                Branch { first, taps }
            })
            .collect();
        Ok(Self { up, down, branches })
    }

    /// The reduced upsampling factor.
    pub fn up(&self) -> u64 {
        self.up
    }

    /// The reduced downsampling factor.
    pub fn down(&self) -> u64 {
        self.down
    }

    /// How far, in input samples, an output sample reaches on either side of its position
    /// in the input: blocks of a longer signal that keep this many extra input samples on
    /// each side (and start at a multiple of [`Resampler::down`]) compute their inner outputs
    /// exactly as the whole signal does.
    pub fn input_support(&self) -> usize {
        self.branches
            .iter()
            .map(|b| (-b.first).max(b.first + b.taps.len() as i64 - 1).max(0) as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Output length for `n` input samples: `round(n * up / down)`, halves rounded up.
    pub fn output_len(&self, n: usize) -> usize {
        let num = 2 * n as u128 * u128::from(self.up) + u128::from(self.down);
        (num / (2 * u128::from(self.down))) as usize
    }

    /// Resamples `x` into a new vector of [`Resampler::output_len`] samples.
    pub fn process(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.output_len(x.len())];
        self.process_into(x, &mut out);
        out
    }

    /// Fills `out[m]` with the signal at input time `m * down / up`, for any `out.len()`
    /// (positions past the end see the odd extension). An empty input gives zeros.
    pub fn process_into(&self, x: &[f32], out: &mut [f32]) {
        let n = x.len() as i64;
        if n == 0 {
            out.fill(0.0);
            return;
        }
        if self.branches.is_empty() {
            for (m, o) in out.iter_mut().enumerate() {
                *o = ext(x, m as i64) as f32;
            }
            return;
        }
        let (up, down) = (self.up as i64, self.down as i64);
        for (m, o) in out.iter_mut().enumerate() {
            let t = m as i64 * down;
            let (q, phase) = (t / up, t % up);
            let b = &self.branches[phase as usize];
            let start = q + b.first;
            let end = start + b.taps.len() as i64;
            let acc: f64 = if start >= 0 && end <= n {
                b.taps
                    .iter()
                    .zip(&x[start as usize..end as usize])
                    .map(|(h, v)| h * f64::from(*v))
                    .sum()
            } else {
                b.taps
                    .iter()
                    .enumerate()
                    .map(|(j, h)| h * ext(x, start + j as i64))
                    .sum()
            };
            *o = acc as f32;
        }
    }
}

/// Resamples `x` from `from_hz` to `to_hz` at the default quality (a copy when equal).
pub fn resample(x: &[f32], from_hz: f64, to_hz: f64) -> Result<Vec<f32>, ResampleError> {
    Ok(Resampler::from_rates(from_hz, to_hz)?.process(x))
}

/// `x[k]` with odd extension beyond both ends (`2 x[0] - x[-k]`, `2 x[n-1] - x[2n-2-k]`),
/// held constant where even the reflection runs out (signals shorter than the filter).
fn ext(x: &[f32], k: i64) -> f64 {
    let n = x.len() as i64;
    if (0..n).contains(&k) {
        return f64::from(x[k as usize]);
    }
    if k < 0 {
        let r = (-k).min(n - 1);
        2.0 * f64::from(x[0]) - f64::from(x[r as usize])
    } else {
        let r = (2 * (n - 1) - k).max(0);
        2.0 * f64::from(x[(n - 1) as usize]) - f64::from(x[r as usize])
    }
}

/// `up / down` approximating `to_hz / from_hz`.
pub fn rational_ratio(from_hz: f64, to_hz: f64) -> Result<(u64, u64), ResampleError> {
    let bad = ResampleError::BadRate { from_hz, to_hz };
    if !(from_hz.is_finite() && to_hz.is_finite() && from_hz > 0.0 && to_hz > 0.0) {
        return Err(bad);
    }
    // Exact for integer rates (the common case: 160, 256, 1000 Hz).
    if from_hz.fract() == 0.0 && to_hz.fract() == 0.0 && from_hz < 1e15 && to_hz < 1e15 {
        let (a, b) = (to_hz as u64, from_hz as u64);
        let g = gcd(a, b);
        let (up, down) = (a / g, b / g);
        if up.max(down) <= MAX_FACTOR {
            return Ok((up, down));
        }
    }
    // Continued-fraction convergents of the ratio until close enough.
    let r = to_hz / from_hz;
    let (mut h0, mut h1, mut k0, mut k1) = (0u64, 1u64, 1u64, 0u64);
    let mut v = r;
    for _ in 0..64 {
        let a = v.floor();
        if a > MAX_FACTOR as f64 {
            break;
        }
        let a = a as u64;
        let (h2, k2) = (a * h1 + h0, a * k1 + k0);
        if h2.max(k2) > MAX_FACTOR {
            break;
        }
        (h0, h1, k0, k1) = (h1, h2, k1, k2);
        if ((h1 as f64 / k1 as f64) - r).abs() <= 1e-6 * r {
            return Ok((h1, k1));
        }
        let f = v - a as f64;
        if f < 1e-15 {
            break;
        }
        v = 1.0 / f;
    }
    Err(ResampleError::RatioTooComplex { from_hz, to_hz })
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A `2 * half_len + 1`-tap low-pass with cutoff `cutoff` (fraction of the upsampled
/// Nyquist), Kaiser window `beta`, normalised to DC gain `gain` (SciPy's `firwin` scaled by
/// `up`, which restores the amplitude lost to zero-stuffing).
fn kaiser_sinc(half_len: usize, cutoff: f64, beta: f64, gain: f64) -> Vec<f64> {
    let len = 2 * half_len + 1;
    let i0b = bessel_i0(beta);
    let mut h: Vec<f64> = (0..len)
        .map(|i| {
            let m = i as f64 - half_len as f64;
            let x = cutoff * m;
            let sinc = if x == 0.0 {
                1.0
            } else {
                (::core::f64::consts::PI * x).sin() / (::core::f64::consts::PI * x)
            };
            let r = m / half_len as f64;
            let w = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0b;
            cutoff * sinc * w
        })
        .collect();
    let sum: f64 = h.iter().sum();
    for v in &mut h {
        *v *= gain / sum;
    }
    h
}

/// Modified Bessel function of the first kind, order 0 (power series; converges fast for the
/// Kaiser betas used here).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut term, mut sum) = (1.0, 1.0);
    for k in 1..200 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::core::f64::consts::PI;

    use crate::io::filter::tone;

    /// EEG-like band-limited test signal: a DC offset plus tones up to 47 Hz.
    fn eeg_like(fs: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / fs;
                (20.0
                    + 10.0 * (2.0 * PI * 10.0 * t).sin()
                    + 5.0 * (2.0 * PI * 3.0 * t + 0.3).sin()
                    + 3.0 * (2.0 * PI * 23.5 * t + 1.1).sin()
                    + 1.0 * (2.0 * PI * 47.0 * t + 2.0).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn round_trip_160_256_160_is_transparent_for_band_limited_eeg() {
        let x = eeg_like(160.0, 160 * 20);
        let up = Resampler::from_rates(160.0, 256.0).unwrap();
        let back = Resampler::from_rates(256.0, 160.0).unwrap();
        assert_eq!((up.up(), up.down()), (8, 5));
        let y = up.process(&x);
        assert_eq!(y.len(), 256 * 20);
        let z = back.process(&y);
        assert_eq!(z.len(), x.len());
        let err =
            |r: ::core::ops::Range<usize>| r.map(|i| (z[i] - x[i]).abs()).fold(0.0f32, f32::max);
        // Tones reach 47 Hz = 59% of the 80 Hz Nyquist, inside the flat pass band (ripple
        // < 2e-4 per pass); peak signal ~39, so 5e-3 absolute is 1.3e-4 relative (measured
        // 7e-4).
        let interior = err(200..x.len() - 200);
        assert!(interior < 5e-3, "interior round-trip error {interior}");
        // The odd extension keeps the edges close too (measured 0.09; zero padding would
        // droop by the 20-unit offset).
        let all = err(0..x.len());
        assert!(all < 0.2, "edge round-trip error {all}");
    }

    #[test]
    fn ten_hz_sine_keeps_frequency_amplitude_and_phase() {
        let fs_in = 160.0;
        let x: Vec<f32> = (0..1600)
            .map(|i| (2.0 * PI * 10.0 * i as f64 / fs_in).sin() as f32)
            .collect();
        for fs_out in [256.0, 100.0, 1000.0, 128.0] {
            let y = resample(&x, fs_in, fs_out).unwrap();
            let n = y.len();
            assert_eq!(n, (1600.0 * fs_out / fs_in) as usize);
            let (amp, in_phase) = tone(&y, 10.0, fs_out, n / 10..9 * n / 10);
            // Pass-band ripple of the default filter < 2e-4; f32 rounding far smaller.
            assert!((amp - 1.0).abs() < 1e-3, "{fs_out} Hz: amplitude {amp}");
            // Zero delay: all energy in the sine term, none in the cosine term.
            assert!((in_phase - 1.0).abs() < 1e-3, "{fs_out} Hz: phase");
            // The residual after removing the 10 Hz tone is tiny: no other frequency appeared.
            let res: f64 = (n / 10..9 * n / 10)
                .map(|i| {
                    let s = (2.0 * PI * 10.0 * i as f64 / fs_out).sin();
                    (f64::from(y[i]) - s).powi(2)
                })
                .sum::<f64>()
                / (8 * n / 10) as f64;
            assert!(
                res.sqrt() < 1e-3,
                "{fs_out} Hz: residual rms {}",
                res.sqrt()
            );
        }
    }

    #[test]
    fn downsampling_rejects_content_above_the_new_nyquist() {
        // 70 Hz at 160 Hz -> 100 Hz would alias to 30 Hz; the anti-alias filter must stop it.
        let x: Vec<f32> = (0..3200)
            .map(|i| (2.0 * PI * 70.0 * i as f64 / 160.0).sin() as f32)
            .collect();
        let y = resample(&x, 160.0, 100.0).unwrap();
        let n = y.len();
        let (alias, _) = tone(&y, 30.0, 100.0, n / 10..9 * n / 10);
        // The default filter's stop band is ~80 dB down from ~58 Hz (measured 3e-5); demand
        // 80 dB.
        assert!(alias < 1e-4, "alias amplitude {alias}");
    }

    #[test]
    fn scipy_quality_matches_scipy_resample_poly() {
        // SciPy 1.17.1: resample_poly(x, up, down, padtype="antireflect") with
        // x[i] = sin(0.1 i) + 0.5 sin(1.3 i) + 0.01 i + 3 rounded to f32, i < 300.
        let x: Vec<f32> = (0..300)
            .map(|i| {
                let t = i as f64;
                ((0.1 * t).sin() + 0.5 * (1.3 * t).sin() + 0.01 * t + 3.0) as f32
            })
            .collect();
        let cases: [(u64, u64, [f64; 6]); 3] = [
            (
                8,
                5,
                [
                    3.001996644792679,
                    3.430647738123168,
                    3.6364912089705563,
                    3.3814128377248536,
                    4.533505684551604,
                    4.551004950393818,
                ],
            ),
            (
                5,
                8,
                [
                    3.0007216409848922,
                    3.612422426350817,
                    2.92044341412917,
                    4.618030398906693,
                    5.501399224535335,
                    4.745451355906134,
                ],
            ),
            (
                3,
                1,
                [
                    3.001818520661332,
                    3.245909650903877,
                    3.453236498606946,
                    2.8394233559915425,
                    4.616200320524386,
                    4.690659328776615,
                ],
            ),
        ];
        for (up, down, want) in cases {
            let r = Resampler::with_quality(up, down, ResampleQuality::Scipy).unwrap();
            let y = r.process(&x);
            let n = y.len();
            for (&i, &w) in [0, 1, 2, 100, n - 3, n - 2].iter().zip(&want) {
                // f32 output of values ~5: 1e-5 absolute covers rounding only.
                assert!(
                    (f64::from(y[i]) - w).abs() < 1e-5,
                    "{up}/{down} sample {i}: {} vs {w}",
                    y[i]
                );
            }
        }
    }

    #[test]
    fn output_length_is_rounded_ratio() {
        let r = Resampler::new(5, 8).unwrap();
        assert_eq!(r.output_len(300), 188); // 187.5 rounds up
        assert_eq!(r.output_len(299), 187); // 186.875
        assert_eq!(r.output_len(0), 0);
        let r = Resampler::new(16, 10).unwrap();
        assert_eq!((r.up(), r.down()), (8, 5));
        assert_eq!(r.output_len(9760), 15616);
    }

    #[test]
    fn ratios_from_rates() {
        assert_eq!(rational_ratio(160.0, 256.0).unwrap(), (8, 5));
        assert_eq!(rational_ratio(1000.0, 256.0).unwrap(), (32, 125));
        // A fractional EDF record duration: 256 samples per 0.99897662 s.
        let fs = 256.0 / 0.99897662;
        let (up, down) = rational_ratio(fs, 256.0).unwrap();
        let got = up as f64 / down as f64;
        assert!((got - 256.0 / fs).abs() < 1e-6 * 256.0 / fs);
        assert!(matches!(
            rational_ratio(f64::NAN, 256.0),
            Err(ResampleError::BadRate { .. })
        ));
        assert!(matches!(
            rational_ratio(0.0, 256.0),
            Err(ResampleError::BadRate { .. })
        ));
        assert!(Resampler::new(0, 3).is_err());
        assert!(Resampler::new(MAX_FACTOR + 1, 1).is_err());
    }

    #[test]
    fn identity_and_tiny_inputs() {
        let x = [1.0f32, -2.0, 3.5];
        assert_eq!(resample(&x, 256.0, 256.0).unwrap(), x.to_vec());
        assert!(resample(&[], 160.0, 256.0).unwrap().is_empty());
        let one = resample(&[4.0], 160.0, 256.0).unwrap();
        assert_eq!(one.len(), 2);
        // A single sample extends as a constant.
        assert!(one.iter().all(|v| (v - 4.0).abs() < 1e-4), "{one:?}");
    }
}
