//! WAV export (via `hound`): chosen channels as one multi-channel 32-bit float WAV, for
//! listening and audio tools. Written atomically (temporary file + rename).

use std::path::{Path, PathBuf};

use crate::io::edf::{AtomicFile, EdfError, EdfReader, check_output_is_not_input};

/// Failures of WAV export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// Reading the EDF input or creating the output failed.
    #[error(transparent)]
    Edf(#[from] EdfError),
    /// The WAV encoder failed.
    #[error("{}: cannot write WAV: {source}", .path.display())]
    Hound {
        /// The output path.
        path: PathBuf,
        /// The encoder error.
        source: hound::Error,
    },
    /// Nothing to write.
    #[error("{}: no channels to write", .path.display())]
    NoChannels {
        /// The output path.
        path: PathBuf,
    },
    /// The channels do not have the same number of samples.
    #[error("{}: channel {index} has {got} samples but channel 0 has {expected}; WAV channels must have equal length", .path.display())]
    LengthMismatch {
        /// The output path.
        path: PathBuf,
        /// Position of the channel in the list given.
        index: usize,
        /// Its length.
        got: usize,
        /// The first channel's length.
        expected: usize,
    },
    /// The selected EDF channels have different sampling rates.
    #[error("{}: channels have different sampling rates ({}); a WAV file has one rate, so choose channels of one rate", .path.display(), .rates.join(", "))]
    RateMismatch {
        /// The EDF input.
        path: PathBuf,
        /// "label: rate Hz" per selected channel.
        rates: Vec<String>,
    },
    /// A sample rate that WAV cannot hold.
    #[error("{}: sample rate {rate} Hz cannot be written to WAV (needs 1..=4294967295 Hz)", .path.display())]
    BadRate {
        /// The output path.
        path: PathBuf,
        /// The rate.
        rate: f64,
    },
}

/// Write `channels` (equal lengths) as interleaved 32-bit float samples at `sample_rate`.
pub fn write_wav(path: &Path, sample_rate: u32, channels: &[&[f32]]) -> Result<(), WavError> {
    if channels.is_empty() {
        return Err(WavError::NoChannels {
            path: path.to_path_buf(),
        });
    }
    if sample_rate == 0 {
        return Err(WavError::BadRate {
            path: path.to_path_buf(),
            rate: 0.0,
        });
    }
    let n = channels[0].len();
    if let Some((index, c)) = channels.iter().enumerate().find(|(_, c)| c.len() != n) {
        return Err(WavError::LengthMismatch {
            path: path.to_path_buf(),
            index,
            got: c.len(),
            expected: n,
        });
    }
    let n_ch = u16::try_from(channels.len()).map_err(|_| WavError::Hound {
        path: path.to_path_buf(),
        source: hound::Error::Unsupported,
    })?;
    let spec = hound::WavSpec {
        channels: n_ch,
        sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let hound_err = |source| WavError::Hound {
        path: path.to_path_buf(),
        source,
    };
    let mut file = AtomicFile::create(path).map_err(EdfError::from)?;
    {
        let mut w = hound::WavWriter::new(file.writer(), spec).map_err(hound_err)?;
        for i in 0..n {
            for c in channels {
                w.write_sample(c[i]).map_err(hound_err)?;
            }
        }
        w.finalize().map_err(hound_err)?;
    }
    file.commit().map_err(EdfError::from)?;
    Ok(())
}

/// Export EDF channels `channels` of `input` as a float WAV at their common rate
/// (rounded to whole Hz: WAV has integer rates, so a 256.26 Hz channel plays at 256 Hz).
/// Errors if the channels' rates differ. Returns the rate written.
pub fn export_wav(input: &Path, output: &Path, channels: &[usize]) -> Result<u32, WavError> {
    check_output_is_not_input(input, output)?;
    let mut r = EdfReader::open(input)?;
    if channels.is_empty() {
        return Err(WavError::NoChannels {
            path: output.to_path_buf(),
        });
    }
    for &ch in channels {
        r.check_channel(ch)?;
    }
    let h = r.header();
    let rate = h.sample_rate(channels[0]);
    if channels
        .iter()
        .any(|&c| h.signals()[c].samples_per_record != h.signals()[channels[0]].samples_per_record)
    {
        return Err(WavError::RateMismatch {
            path: input.to_path_buf(),
            rates: channels
                .iter()
                .map(|&c| format!("{}: {} Hz", h.signals()[c].label.trim(), h.sample_rate(c)))
                .collect(),
        });
    }
    let rounded = rate.round();
    if !(1.0..=u32::MAX as f64).contains(&rounded) {
        return Err(WavError::BadRate {
            path: output.to_path_buf(),
            rate,
        });
    }
    let data = r.read_channels_physical(channels)?;
    let refs: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
    write_wav(output, rounded as u32, &refs)?;
    Ok(rounded as u32)
}
