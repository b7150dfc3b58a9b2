//! Denoising quality metrics with EEGdenoiseNet's definitions (Zhang et al. 2021):
//!
//! - RRMSE_t = RMS(denoised - clean) / RMS(clean)
//! - RRMSE_s = RMS(PSD(denoised) - PSD(clean)) / RMS(PSD(clean)), PSDs by Welch ([`super::welch`])
//! - CC = Pearson correlation between denoised and clean
//! - SNR = 10 log10(RMS(signal) / RMS(noise)). Note: this is EEGdenoiseNet's convention, ten
//!   times the log of an *amplitude* ratio, so its "dB" are half of power dB. We keep it so
//!   SNR levels and improvements are comparable with the published numbers.
//!
//! All sums are accumulated in f64.

use super::EvalError;
use super::welch::Welch;

fn check_pair(a: &[f32], b: &[f32]) -> Result<(), EvalError> {
    if a.len() != b.len() {
        return Err(EvalError::LengthMismatch {
            expected: b.len(),
            got: a.len(),
        });
    }
    if a.is_empty() {
        return Err(EvalError::TooShort { needed: 1, got: 0 });
    }
    check_finite(a, "estimate")?;
    check_finite(b, "reference")
}

fn check_finite(x: &[f32], what: &'static str) -> Result<(), EvalError> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(EvalError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Root mean square of `x` (0 for an empty slice).
pub fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Relative RMS error in time: RMS(denoised - clean) / RMS(clean).
pub fn rrmse_t(denoised: &[f32], clean: &[f32]) -> Result<f64, EvalError> {
    check_pair(denoised, clean)?;
    let rc = rms(clean);
    if rc == 0.0 {
        return Err(EvalError::ZeroEnergy {
            what: "clean signal",
        });
    }
    let se: f64 = denoised
        .iter()
        .zip(clean)
        .map(|(&d, &c)| (d as f64 - c as f64).powi(2))
        .sum();
    Ok((se / clean.len() as f64).sqrt() / rc)
}

/// Welch segment length used by [`rrmse_s`]: one second of signal (1 Hz bins), capped at the
/// window length, as scipy's default of 256 samples is at 256 Hz.
pub fn spectral_nperseg(len: usize, fs: f64) -> usize {
    (fs.round() as usize).clamp(2, len.max(2))
}

/// Relative RMS error between Welch PSDs: RMS(PSD(denoised) - PSD(clean)) / RMS(PSD(clean)).
pub fn rrmse_s(denoised: &[f32], clean: &[f32], fs: f64) -> Result<f64, EvalError> {
    check_pair(denoised, clean)?;
    let w = Welch::new(spectral_nperseg(clean.len(), fs))?;
    rrmse_s_with(&w, denoised, clean, fs)
}

/// [`rrmse_s`] with a prepared Welch plan (avoids re-planning the FFT per window).
pub fn rrmse_s_with(w: &Welch, denoised: &[f32], clean: &[f32], fs: f64) -> Result<f64, EvalError> {
    check_pair(denoised, clean)?;
    let pd = w.psd(denoised, fs)?;
    let pc = w.psd(clean, fs)?;
    let rc = (pc.iter().map(|v| v * v).sum::<f64>() / pc.len() as f64).sqrt();
    if rc == 0.0 {
        return Err(EvalError::ZeroEnergy { what: "clean PSD" });
    }
    let se: f64 = pd.iter().zip(&pc).map(|(d, c)| (d - c).powi(2)).sum();
    Ok((se / pc.len() as f64).sqrt() / rc)
}

/// Pearson correlation coefficient between `a` and `b`.
pub fn cc(a: &[f32], b: &[f32]) -> Result<f64, EvalError> {
    check_pair(a, b)?;
    let n = a.len() as f64;
    let ma = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 {
        return Err(EvalError::ZeroEnergy {
            what: "estimate (constant)",
        });
    }
    if sbb == 0.0 {
        return Err(EvalError::ZeroEnergy {
            what: "reference (constant)",
        });
    }
    Ok(sab / (saa * sbb).sqrt())
}

/// SNR in EEGdenoiseNet's convention: 10 log10(RMS(signal) / RMS(noise)).
pub fn snr_db(signal: &[f32], noise: &[f32]) -> Result<f64, EvalError> {
    check_pair(noise, signal)?;
    let (rs, rn) = (rms(signal), rms(noise));
    if rn == 0.0 {
        return Err(EvalError::ZeroEnergy { what: "noise" });
    }
    if rs == 0.0 {
        return Err(EvalError::ZeroEnergy { what: "signal" });
    }
    Ok(10.0 * (rs / rn).log10())
}

/// SNR of an estimate of `clean`: the residual `estimate - clean` is the noise.
pub fn snr_of_estimate_db(estimate: &[f32], clean: &[f32]) -> Result<f64, EvalError> {
    check_pair(estimate, clean)?;
    let resid: Vec<f32> = estimate.iter().zip(clean).map(|(e, c)| e - c).collect();
    snr_db(clean, &resid)
}

/// SNR improvement in dB: SNR(denoised) - SNR(noisy), both against `clean`.
pub fn snr_improvement_db(
    noisy: &[f32],
    denoised: &[f32],
    clean: &[f32],
) -> Result<f64, EvalError> {
    Ok(snr_of_estimate_db(denoised, clean)? - snr_of_estimate_db(noisy, clean)?)
}

/// All per-window metrics at once.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowMetrics {
    /// RRMSE in time.
    pub rrmse_t: f64,
    /// RRMSE between Welch PSDs.
    pub rrmse_s: f64,
    /// Pearson correlation.
    pub cc: f64,
    /// SNR improvement (dB, EEGdenoiseNet convention).
    pub snr_imp_db: f64,
}

impl WindowMetrics {
    /// Computes every metric of `denoised` against `clean`, with `noisy` for the SNR gain.
    pub fn compute(
        w: &Welch,
        noisy: &[f32],
        denoised: &[f32],
        clean: &[f32],
        fs: f64,
    ) -> Result<Self, EvalError> {
        Ok(Self {
            rrmse_t: rrmse_t(denoised, clean)?,
            rrmse_s: rrmse_s_with(w, denoised, clean, fs)?,
            cc: cc(denoised, clean)?,
            snr_imp_db: snr_improvement_db(noisy, denoised, clean)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize, f: f64, fs: f64, phase: f64, amp: f64) -> Vec<f32> {
        (0..n)
            .map(|i| (amp * (std::f64::consts::TAU * f * i as f64 / fs + phase).sin()) as f32)
            .collect()
    }

    #[test]
    fn rrmse_t_of_scaled_signal_is_the_scale_error() {
        let c = sine(512, 7.0, 256.0, 0.1, 2.0);
        let d: Vec<f32> = c.iter().map(|v| v * 1.25).collect();
        // d - c = 0.25 c, so RRMSE_t = 0.25 exactly (up to f32 rounding of d, ~1e-7).
        assert!((rrmse_t(&d, &c).unwrap() - 0.25).abs() < 1e-6);
        assert_eq!(rrmse_t(&c, &c).unwrap(), 0.0);
    }

    #[test]
    fn rrmse_s_of_scaled_signal_is_square_of_scale_minus_one() {
        let c = sine(512, 12.0, 256.0, 0.0, 1.0);
        let d: Vec<f32> = c.iter().map(|v| v * 2.0).collect();
        // PSD scales with the square: PSD(d) = 4 PSD(c), so RRMSE_s = 3 (1e-9: f64 sums).
        assert!((rrmse_s(&d, &c, 256.0).unwrap() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn cc_of_sine_and_shifted_sine_is_cos_of_shift() {
        // Whole periods: the cross term averages to exactly cos(shift) (f32 input: 1e-6).
        let a = sine(256, 4.0, 256.0, 0.0, 1.0);
        let b = sine(256, 4.0, 256.0, 1.0, 3.0);
        assert!((cc(&a, &b).unwrap() - 1.0f64.cos()).abs() < 1e-6);
        let neg: Vec<f32> = a.iter().map(|v| -v).collect();
        assert!((cc(&a, &neg).unwrap() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn snr_uses_eegdenoisenet_amplitude_convention() {
        let s = vec![10.0f32; 100];
        let n = vec![1.0f32; 100];
        // RMS ratio 10 -> 10 dB in this convention (a power-dB SNR would say 20).
        assert!((snr_db(&s, &n).unwrap() - 10.0).abs() < 1e-12);
        let noisy: Vec<f32> = s.iter().zip(&n).map(|(a, b)| a + b).collect();
        let better: Vec<f32> = s.iter().map(|a| a + 0.125).collect();
        // Residual RMS 1 -> 1/8 (exact in f32): improvement 10 log10(8) dB, f64 rounding only.
        let want = 10.0 * 8f64.log10();
        assert!((snr_improvement_db(&noisy, &better, &s).unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(matches!(
            rrmse_t(&[1.0; 3], &[1.0; 4]),
            Err(EvalError::LengthMismatch {
                expected: 4,
                got: 3
            })
        ));
        assert!(matches!(
            rrmse_t(&[1.0; 3], &[0.0; 3]),
            Err(EvalError::ZeroEnergy { .. })
        ));
        assert!(matches!(
            cc(&[1.0, f32::NAN], &[1.0, 2.0]),
            Err(EvalError::NonFinite { index: 1, .. })
        ));
    }
}
