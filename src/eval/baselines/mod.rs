//! Classical baselines evaluated on the same windows as the SAE: zero-phase Butterworth
//! band-pass plus mains notch ([`BandPass`], via [`crate::io::filter`]) and wavelet
//! soft-thresholding ([`wavelet`]). The band-pass corners are tuned on the validation split
//! ([`tune_bandpass`]) so the baseline gets the same chance as the learned model.

pub mod wavelet;

use crate::eval::EvalError;
use crate::eval::data::Window;
use crate::io::filter::{Band, DEFAULT_NOTCH_Q, Filter};

/// Zero-phase band-pass (Butterworth, order 4 per pass) plus notches at the mains frequency
/// and its harmonics.
#[derive(Clone, Debug)]
pub struct BandPass {
    /// Low corner (Hz).
    pub lo_hz: f64,
    /// High corner (Hz).
    pub hi_hz: f64,
    filter: Filter,
}

impl BandPass {
    /// Designs the filter for sample rate `fs`; `line_hz` adds mains notches (skipped when
    /// the line frequency is above the band or at/above Nyquist).
    pub fn new(lo_hz: f64, hi_hz: f64, line_hz: Option<f64>, fs: f64) -> Result<Self, EvalError> {
        let err = |e: crate::io::filter::FilterError| {
            EvalError::Invalid(format!("band-pass {lo_hz}-{hi_hz} Hz at {fs} Hz: {e}"))
        };
        let mut filter = Filter::butterworth(
            Band::BandPass {
                lo: lo_hz,
                hi: hi_hz,
            },
            4,
            fs,
        )
        .map_err(err)?;
        if let Some(l) = line_hz.filter(|&l| l < fs / 2.0 && l < hi_hz * 1.5) {
            filter = filter.then(Filter::line_noise(l, true, DEFAULT_NOTCH_Q, fs).map_err(err)?);
        }
        Ok(Self {
            lo_hz,
            hi_hz,
            filter,
        })
    }

    /// Filters one window (zero phase, edges padded by odd reflection).
    pub fn denoise(&self, x: &[f32]) -> Vec<f32> {
        let mut y = x.to_vec();
        self.filter.filtfilt(&mut y);
        y
    }
}

/// Candidate corners tried by [`tune_bandpass`]: high-pass 0.5-4 Hz, low-pass 30-45 Hz (the
/// usual clinical range; EMG lives above 20 Hz and EOG below 4 Hz, so no band is perfect).
pub const BANDPASS_GRID: [(f64, f64); 8] = [
    (0.5, 30.0),
    (0.5, 45.0),
    (1.0, 30.0),
    (1.0, 40.0),
    (1.0, 45.0),
    (2.0, 40.0),
    (4.0, 40.0),
    (4.0, 45.0),
];

/// Picks the corners from [`BANDPASS_GRID`] with the lowest mean RRMSE_t on `val`.
pub fn tune_bandpass(val: &[Window], line_hz: Option<f64>, fs: f64) -> Result<BandPass, EvalError> {
    let mut best: Option<(f64, BandPass)> = None;
    for (lo, hi) in BANDPASS_GRID {
        if hi >= fs / 2.0 {
            continue;
        }
        let bp = BandPass::new(lo, hi, line_hz, fs)?;
        let mut sum = 0.0;
        for w in val {
            sum += crate::eval::metrics::rrmse_t(&bp.denoise(&w.noisy), &w.clean)?;
        }
        let score = sum / val.len().max(1) as f64;
        if best.as_ref().is_none_or(|b| score < b.0) {
            best = Some((score, bp));
        }
    }
    best.map(|b| b.1).ok_or_else(|| {
        EvalError::Invalid(format!(
            "no band-pass candidate fits below Nyquist at {fs} Hz"
        ))
    })
}
