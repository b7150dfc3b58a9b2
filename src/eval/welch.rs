//! Welch power spectral density: Hann window (periodic), 50 % overlap, per-segment mean
//! removal, one-sided density scaling (units^2/Hz), segments averaged; the same conventions
//! as `scipy.signal.welch` defaults, which EEGdenoiseNet's RRMSE_s used.
//!
//! Key type: [`Welch`], a reusable plan for one segment length.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex, num_complex::Complex};

use super::EvalError;

/// A Welch estimator for a fixed segment length (`nperseg`), reusable across signals.
pub struct Welch {
    nperseg: usize,
    step: usize,
    window: Vec<f64>,
    window_power: f64,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl core::fmt::Debug for Welch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Welch")
            .field("nperseg", &self.nperseg)
            .finish()
    }
}

impl Welch {
    /// A plan with segments of `nperseg` samples (>= 2) and 50 % overlap.
    pub fn new(nperseg: usize) -> Result<Self, EvalError> {
        if nperseg < 2 {
            return Err(EvalError::Invalid(format!(
                "Welch nperseg must be >= 2, got {nperseg}"
            )));
        }
        // Periodic Hann (scipy's default for spectral analysis): exact DFT leakage of 1/4 into
        // each neighbouring bin, which the tests rely on.
        let window: Vec<f64> = (0..nperseg)
            .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / nperseg as f64).cos())
            .collect();
        let window_power = window.iter().map(|w| w * w).sum();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(nperseg);
        Ok(Self {
            nperseg,
            step: nperseg - nperseg / 2,
            window,
            window_power,
            fft,
        })
    }

    /// Segment length in samples.
    pub fn nperseg(&self) -> usize {
        self.nperseg
    }

    /// Number of frequency bins in the one-sided PSD (`nperseg / 2 + 1`).
    pub fn n_bins(&self) -> usize {
        self.nperseg / 2 + 1
    }

    /// Bin centre frequencies in Hz for sample rate `fs`.
    pub fn frequencies(&self, fs: f64) -> Vec<f64> {
        (0..self.n_bins())
            .map(|k| k as f64 * fs / self.nperseg as f64)
            .collect()
    }

    /// One-sided PSD of `x` (density, units^2/Hz) at sample rate `fs`.
    pub fn psd(&self, x: &[f32], fs: f64) -> Result<Vec<f64>, EvalError> {
        let mut out = vec![0.0; self.n_bins()];
        self.psd_into(x, fs, &mut out)?;
        Ok(out)
    }

    /// As [`Welch::psd`], writing into `out` (length [`Welch::n_bins`]).
    pub fn psd_into(&self, x: &[f32], fs: f64, out: &mut [f64]) -> Result<(), EvalError> {
        if x.len() < self.nperseg {
            return Err(EvalError::TooShort {
                needed: self.nperseg,
                got: x.len(),
            });
        }
        if out.len() != self.n_bins() {
            return Err(EvalError::LengthMismatch {
                expected: self.n_bins(),
                got: out.len(),
            });
        }
        if !(fs > 0.0 && fs.is_finite()) {
            return Err(EvalError::Invalid(format!(
                "sample rate must be positive, got {fs}"
            )));
        }
        out.fill(0.0);
        let mut buf = self.fft.make_input_vec();
        let mut spec: Vec<Complex<f64>> = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut n_seg = 0usize;
        let mut start = 0usize;
        while start + self.nperseg <= x.len() {
            let seg = &x[start..start + self.nperseg];
            let mean = seg.iter().map(|&v| v as f64).sum::<f64>() / self.nperseg as f64;
            for ((b, &v), &w) in buf.iter_mut().zip(seg).zip(&self.window) {
                *b = (v as f64 - mean) * w;
            }
            self.fft
                .process_with_scratch(&mut buf, &mut spec, &mut scratch)
                .map_err(|e| EvalError::Invalid(format!("FFT failed: {e}")))?;
            for (o, c) in out.iter_mut().zip(&spec) {
                *o += c.norm_sqr();
            }
            n_seg += 1;
            start += self.step;
        }
        let scale = 1.0 / (fs * self.window_power * n_seg as f64);
        let last = self.n_bins() - 1;
        for (k, o) in out.iter_mut().enumerate() {
            // One-sided: fold negative frequencies in, except DC and (even length) Nyquist.
            let fold = if k == 0 || (k == last && self.nperseg.is_multiple_of(2)) {
                1.0
            } else {
                2.0
            };
            *o *= scale * fold;
        }
        Ok(())
    }
}

/// Convenience: Welch PSD of `x` with segments of `nperseg` samples.
pub fn welch_psd(x: &[f32], fs: f64, nperseg: usize) -> Result<Vec<f64>, EvalError> {
    Welch::new(nperseg)?.psd(x, fs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_peaks_at_its_bin_with_parseval_power() {
        let (fs, n, amp, bin) = (256.0, 256usize, 3.0f64, 10usize);
        let f = bin as f64 * fs / n as f64;
        let x: Vec<f32> = (0..1024)
            .map(|i| (amp * (std::f64::consts::TAU * f * i as f64 / fs + 0.3).sin()) as f32)
            .collect();
        let w = Welch::new(n).unwrap();
        let p = w.psd(&x, fs).unwrap();
        let df = fs / n as f64;
        let argmax = p
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > p[b] { i } else { b });
        assert_eq!(argmax, bin);
        // Parseval: a sine of amplitude A has power A^2/2; f32 input limits accuracy to ~1e-6.
        let total: f64 = p.iter().sum::<f64>() * df;
        assert!(
            (total / (amp * amp / 2.0) - 1.0).abs() < 1e-5,
            "total {total}"
        );
        // Periodic Hann puts 1/4 of the amplitude in each neighbour: peak holds 2/3 of power.
        assert!((p[bin] * df / (amp * amp / 2.0) - 2.0 / 3.0).abs() < 1e-5);
        assert!(
            p[bin + 3] * df < 1e-9,
            "leakage beyond the main lobe {}",
            p[bin + 3]
        );
    }

    #[test]
    fn white_noise_density_matches_variance() {
        let mut rng = crate::rng::Rng::new(5);
        let x: Vec<f32> = (0..65536).map(|_| rng.normal() as f32).collect();
        let p = welch_psd(&x, 100.0, 128).unwrap();
        // Unit-variance white noise: density 1/(fs/2) one-sided = 0.02; averaging 1023
        // segments leaves ~3 % noise per bin, so test the mean over bins at 1 %.
        let mean = p[1..64].iter().sum::<f64>() / 63.0;
        assert!((mean / 0.02 - 1.0).abs() < 0.01, "mean density {mean}");
    }

    #[test]
    fn short_input_is_an_error() {
        assert!(matches!(
            welch_psd(&[0.0; 10], 256.0, 16),
            Err(EvalError::TooShort {
                needed: 16,
                got: 10
            })
        ));
    }
}
