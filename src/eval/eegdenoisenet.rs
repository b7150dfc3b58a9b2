//! Loader for EEGdenoiseNet's own epoch files (Zhang et al. 2021), so users who have them get
//! numbers directly comparable with the published benchmark:
//! `EEG_all_epochs.npy` (4514 x 512, 256 Hz), `EOG_all_epochs.npy` (3400 x 512, 256 Hz) and
//! `EMG_all_epochs.npy` (5598 x 1024, 512 Hz; resampled here to 256 Hz, 512 samples).
//! Each row is one 2 s epoch. EEG epochs become clean [`Segment`]s (one group each); EOG and
//! EMG epochs become artifact banks, split by epoch with the same fractions.

use std::path::Path;

use super::EvalError;
use super::data::{Segment, condition_channel};
use super::npy::read_npy;
use crate::rng::Rng;

/// Rate of all data after loading.
pub const FS: f64 = 256.0;
/// Samples per epoch after loading (2 s at 256 Hz).
pub const EPOCH_LEN: usize = 512;

/// The three EEGdenoiseNet arrays, at 256 Hz, one `Vec` per epoch.
#[derive(Clone, Debug, Default)]
pub struct EegDenoiseNet {
    /// Clean EEG epochs.
    pub eeg: Vec<Vec<f32>>,
    /// Ocular artifact epochs.
    pub eog: Vec<Vec<f32>>,
    /// Muscle artifact epochs (downsampled from 512 Hz).
    pub emg: Vec<Vec<f32>>,
}

fn rows(path: &Path, want_cols: usize) -> Result<Vec<Vec<f32>>, EvalError> {
    let a = read_npy(path)?;
    if a.shape.len() != 2 || a.shape[1] != want_cols {
        return Err(EvalError::Format {
            path: path.to_path_buf(),
            problem: format!("expected shape (epochs, {want_cols}), found {:?}", a.shape),
        });
    }
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::Format {
            path: path.to_path_buf(),
            problem: format!(
                "non-finite value in epoch {} sample {}",
                i / want_cols,
                i % want_cols
            ),
        });
    }
    Ok(a.data
        .chunks_exact(want_cols)
        .map(|r| r.iter().map(|&v| v as f32).collect())
        .collect())
}

impl EegDenoiseNet {
    /// Loads the three files from `dir`. EMG is downsampled 512 -> 256 Hz by spectral
    /// truncation (the `scipy.signal.resample` method).
    pub fn load(dir: &Path) -> Result<Self, EvalError> {
        let eeg = rows(&dir.join("EEG_all_epochs.npy"), EPOCH_LEN)?;
        let eog = rows(&dir.join("EOG_all_epochs.npy"), EPOCH_LEN)?;
        let emg = rows(&dir.join("EMG_all_epochs.npy"), 2 * EPOCH_LEN)?
            .iter()
            .map(|r| condition_channel(r, 512.0, FS, (0.0, 1e9), &[]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { eeg, eog, emg })
    }

    /// Clean EEG epochs as zero-mean segments, each its own split group (`group_base + i`).
    pub fn clean_segments(&self, group_base: u64) -> Vec<Segment> {
        self.eeg
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let m = e.iter().map(|&v| v as f64).sum::<f64>() / e.len().max(1) as f64;
                Segment {
                    samples: e.iter().map(|&v| (v as f64 - m) as f32).collect(),
                    group: group_base + i as u64,
                    origin: format!("EEGdenoiseNet EEG #{i}"),
                }
            })
            .collect()
    }
}

/// Splits an artifact bank by epoch into (train, val, test) with the given fractions after a
/// seeded shuffle, so no artifact epoch is shared between splits.
pub fn split_bank(bank: &[Vec<f32>], fractions: (f64, f64), seed: u64) -> [Vec<Vec<f32>>; 3] {
    let mut idx: Vec<usize> = (0..bank.len()).collect();
    Rng::derive(seed, 0xBA4C).shuffle(&mut idx);
    let n = bank.len();
    let a = ((n as f64) * fractions.0).round() as usize;
    let b = (a + ((n as f64) * fractions.1).round() as usize).min(n);
    let take = |r: &[usize]| r.iter().map(|&i| bank[i].clone()).collect::<Vec<_>>();
    [
        take(&idx[..a.min(n)]),
        take(&idx[a.min(n)..b]),
        take(&idx[b..]),
    ]
}
