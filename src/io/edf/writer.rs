//! Writing EDF/BDF files atomically, and rewriting a file with some channels replaced.
//!
//! [`rewrite_checked`] (and its simpler forms [`rewrite_with`] and [`rewrite`]) streams the
//! input record by record, copying every byte (header, other channels, annotations) and
//! re-encoding only the replaced channels, whose samples a callback supplies record by record
//! (the denoise pipeline computes them in blocks just ahead of the writer). Output goes to a
//! temporary file beside the target and is renamed at the end, so a failure never leaves a
//! partial output (only a process killed outright may leave a hidden `.NAME.*.tmp` beside it,
//! never a truncated NAME).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use super::error::{ChannelRef, EdfError};
use super::header::{Format, Header, SignalHeader};
use super::reader::EdfReader;

pub use crate::io::atomic::AtomicFile;

/// Refuse `output` when it is the input file: same path after canonicalisation (symlinks,
/// `./`, `..`) or, on Unix, the same inode (hard links).
pub fn check_output_is_not_input(input: &Path, output: &Path) -> Result<(), EdfError> {
    let refuse = || {
        Err(EdfError::OutputIsInput {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
        })
    };
    let Ok(inc) = std::fs::canonicalize(input) else {
        return Ok(());
    };
    let outc = match std::fs::canonicalize(output) {
        Ok(p) => Some(p),
        // A dangling or absent output: compare its canonical directory + name.
        Err(_) => match (output.parent(), output.file_name()) {
            (Some(d), Some(n)) => {
                let d = if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                };
                std::fs::canonicalize(d).ok().map(|d| d.join(n))
            }
            _ => None,
        },
    };
    if outc.as_deref() == Some(inc.as_path()) {
        return refuse();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(input), std::fs::metadata(output))
            && a.dev() == b.dev()
            && a.ino() == b.ino()
        {
            return refuse();
        }
    }
    Ok(())
}

/// Encode physical values into the raw sample bytes of one signal: rounded to the
/// nearest digital value and clipped to [digital min, digital max]. Returns the number of
/// clipped samples, or the index of the first non-finite value.
pub fn encode_physical(
    sig: &SignalHeader,
    format: Format,
    physical: &[f32],
    out: &mut [u8],
) -> Result<u64, usize> {
    let sb = format.sample_bytes();
    debug_assert_eq!(out.len(), physical.len() * sb);
    let gain = sig.gain();
    let (dmin, dmax) = (sig.digital_min as f64, sig.digital_max as f64);
    let mut clipped = 0u64;
    for (i, (&p, o)) in physical.iter().zip(out.chunks_exact_mut(sb)).enumerate() {
        if !p.is_finite() {
            return Err(i);
        }
        let mut d = ((p as f64 - sig.physical_min) / gain + dmin).round();
        if d < dmin {
            d = dmin;
            clipped += 1;
        } else if d > dmax {
            d = dmax;
            clipped += 1;
        }
        let b = (d as i32).to_le_bytes();
        o.copy_from_slice(&b[..sb]);
    }
    Ok(clipped)
}

/// Sequential writer of a new EDF/BDF file (atomic: nothing appears at the path unless
/// [`EdfWriter::finish`] succeeds).
#[derive(Debug)]
pub struct EdfWriter {
    file: AtomicFile,
    header: Header,
    record_bytes: usize,
    written: u64,
}

impl EdfWriter {
    /// Start writing `header` to a temporary file beside `path`.
    pub fn create(path: impl AsRef<Path>, header: &Header) -> Result<Self, EdfError> {
        let mut file = AtomicFile::create(path)?;
        let t = file.temp_path().to_path_buf();
        file.writer()
            .write_all(header.as_bytes())
            .map_err(|e| EdfError::io(&t, "write header", e))?;
        Ok(EdfWriter {
            file,
            header: header.clone(),
            record_bytes: header.record_bytes() as usize,
            written: 0,
        })
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Append one raw data record (exactly `header.record_bytes()` bytes).
    pub fn write_record(&mut self, bytes: &[u8]) -> Result<(), EdfError> {
        if bytes.len() != self.record_bytes {
            return Err(EdfError::InvalidHeader(format!(
                "data record {} has {} bytes, the header needs {}",
                self.written,
                bytes.len(),
                self.record_bytes
            )));
        }
        let t = self.file.temp_path().to_path_buf();
        self.file
            .writer()
            .write_all(bytes)
            .map_err(|e| EdfError::io(&t, "write data record", e))?;
        self.written += 1;
        Ok(())
    }

    /// Check the record count, fill it in when the header said -1, sync and rename into
    /// place. Returns the number of records written.
    pub fn finish(mut self) -> Result<u64, EdfError> {
        let declared = self.header.declared_records();
        let t = self.file.temp_path().to_path_buf();
        if declared == -1 {
            let h = self.header.with_num_records(self.written as i64)?;
            let w = self.file.writer();
            w.seek(SeekFrom::Start(236))
                .and_then(|_| w.write_all(&h.as_bytes()[236..244]))
                .map_err(|e| EdfError::io(&t, "write record count", e))?;
        } else if declared as u64 != self.written {
            return Err(EdfError::WrongRecordCount {
                path: self.file.target().to_path_buf(),
                declared,
                written: self.written,
            });
        }
        self.file.commit()?;
        Ok(self.written)
    }
}

/// Clipping count for one replaced channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipCount {
    /// The channel.
    pub channel: ChannelRef,
    /// Samples whose value was outside the channel's range and was clipped.
    pub clipped: u64,
    /// Samples written for this channel.
    pub samples: u64,
}

/// What [`rewrite`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewriteSummary {
    /// Data records written.
    pub records: u64,
    /// Per replaced channel, in the order given.
    pub clipped: Vec<ClipCount>,
}

impl RewriteSummary {
    /// Clipped samples over all channels.
    pub fn total_clipped(&self) -> u64 {
        self.clipped.iter().map(|c| c.clipped).sum()
    }
}

/// New physical samples for one whole channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelData<'a> {
    /// 0-based signal index.
    pub channel: usize,
    /// Every sample of the channel (records x samples per record), physical units.
    pub physical: &'a [f32],
}

/// Copy `input` to `output` byte for byte, except the samples of the `replacements`
/// channels, which are encoded from the given physical values (rounded, clipped and
/// counted). The header is copied unchanged (a -1 record count is filled in).
pub fn rewrite(
    input: &Path,
    output: &Path,
    replacements: &[ChannelData<'_>],
) -> Result<RewriteSummary, EdfError> {
    let channels: Vec<usize> = replacements.iter().map(|r| r.channel).collect();
    {
        // Check lengths before anything is created.
        let reader = EdfReader::open(input)?;
        let h = reader.header();
        for r in replacements {
            reader.check_channel(r.channel)?;
            let want = reader.num_records() * h.signals()[r.channel].samples_per_record as u64;
            if r.physical.len() as u64 != want {
                return Err(EdfError::InvalidRequest {
                    file: Some(input.to_path_buf()),
                    channel: h.channel_ref(r.channel),
                    problem: format!(
                        "replacement has {} samples, the channel has {want} ({} records x {})",
                        r.physical.len(),
                        reader.num_records(),
                        h.signals()[r.channel].samples_per_record
                    ),
                });
            }
        }
    }
    rewrite_with(input, output, &channels, |k, rec, out| {
        let r = &replacements[k];
        let n = out.len();
        let start = rec as usize * n;
        match r.physical.get(start..start + n) {
            Some(src) => {
                out.copy_from_slice(src);
                Ok(())
            }
            None => Err(format!(
                "replacement has {} samples, the file has {} records x {n} samples",
                r.physical.len(),
                rec + 1
            )),
        }
    })
}

/// Streaming form of [`rewrite`]: for each record and each of `channels` (the k-th),
/// `fill(k, record_index, buf)` gets the record's current physical samples in `buf` and
/// replaces them in place (or returns an error message, which aborts the write).
pub fn rewrite_with<F>(
    input: &Path,
    output: &Path,
    channels: &[usize],
    mut fill: F,
) -> Result<RewriteSummary, EdfError>
where
    F: FnMut(usize, u64, &mut [f32]) -> Result<(), String>,
{
    let header = EdfReader::open(input)?.header().clone();
    let r = rewrite_checked(
        input,
        output,
        channels,
        |k, rec, buf| {
            fill(k, rec, buf).map_err(|problem| EdfError::InvalidRequest {
                file: Some(input.to_path_buf()),
                channel: header.channel_ref(channels[k]),
                problem,
            })
        },
        |_| Ok(()),
    );
    r.map_err(|e| match e {
        RewriteError::Edf(e) | RewriteError::Caller(e) => e,
    })
}

/// Why [`rewrite_checked`] stopped: the codec, or an error of the caller's closures.
#[derive(Debug)]
pub enum RewriteError<E> {
    /// Reading, validating or writing EDF failed.
    Edf(EdfError),
    /// `fill` or `check` returned this error.
    Caller(E),
}

impl<E> From<EdfError> for RewriteError<E> {
    fn from(e: EdfError) -> Self {
        RewriteError::Edf(e)
    }
}

/// [`rewrite_with`] with the caller's own error type and a last look before the output
/// appears: `check` sees the finished summary (records, clipping per channel) while the data
/// is still in the temporary file; an error from it (or from `fill`) removes the temporary
/// file and leaves `output` untouched.
pub fn rewrite_checked<E, F, C>(
    input: &Path,
    output: &Path,
    channels: &[usize],
    mut fill: F,
    check: C,
) -> Result<RewriteSummary, RewriteError<E>>
where
    F: FnMut(usize, u64, &mut [f32]) -> Result<(), E>,
    C: FnOnce(&RewriteSummary) -> Result<(), E>,
{
    check_output_is_not_input(input, output)?;
    let mut reader = EdfReader::open(input)?;
    let header = reader.header().clone();
    let n_rec = reader.num_records();
    for (k, &ch) in channels.iter().enumerate() {
        reader.check_channel(ch)?;
        let bad = |problem: &str| {
            Err(RewriteError::Edf(EdfError::InvalidRequest {
                file: Some(input.to_path_buf()),
                channel: header.channel_ref(ch),
                problem: problem.to_string(),
            }))
        };
        if header.signals()[ch].is_annotation() {
            return bad("annotation channels cannot be replaced with samples");
        }
        if channels[..k].contains(&ch) {
            return bad("channel given twice");
        }
    }
    let out_header = if header.declared_records() == -1 {
        header.with_num_records(n_rec as i64)?
    } else {
        header.clone()
    };
    let mut w = EdfWriter::create(output, &out_header)?;
    let mut clipped: Vec<ClipCount> = channels
        .iter()
        .map(|&ch| ClipCount {
            channel: header.channel_ref(ch),
            clipped: 0,
            samples: 0,
        })
        .collect();
    let mut rec = reader.new_record();
    let mut buf: Vec<f32> = Vec::new();
    let mut enc: Vec<u8> = Vec::new();
    while reader.read_record_into(&mut rec)? {
        for (k, &ch) in channels.iter().enumerate() {
            let sig = &header.signals()[ch];
            buf.resize(sig.samples_per_record, 0.0);
            rec.physical_into(ch, &mut buf);
            fill(k, rec.index(), &mut buf).map_err(RewriteError::Caller)?;
            enc.resize(rec.signal_bytes(ch).len(), 0);
            let c = encode_physical(sig, header.format(), &buf, &mut enc).map_err(|i| {
                EdfError::NonFiniteSample {
                    output: output.to_path_buf(),
                    channel: header.channel_ref(ch),
                    record: rec.index(),
                    sample: rec.index() * sig.samples_per_record as u64 + i as u64,
                    value: buf[i],
                }
            })?;
            rec.signal_bytes_mut(ch).copy_from_slice(&enc);
            clipped[k].clipped += c;
            clipped[k].samples += sig.samples_per_record as u64;
        }
        w.write_record(rec.bytes())?;
    }
    let summary = RewriteSummary {
        records: n_rec,
        clipped,
    };
    check(&summary).map_err(RewriteError::Caller)?;
    let records = w.finish()?;
    Ok(RewriteSummary { records, ..summary })
}
