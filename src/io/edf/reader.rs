//! Streaming EDF/BDF reader: the header is parsed and checked against the file size at
//! open, then data records are read one at a time, so hours-long files never sit in memory.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{EdfError, FormatError};
use super::header::{FIXED_HEADER_BYTES, Format, Header, Plus, parse_header};
use super::tal::{Annotation, Tal, parse_tals};

/// Where each signal sits in a data record and how it converts to physical units.
#[derive(Debug)]
struct Layout {
    format: Format,
    plus: Plus,
    record_duration: f64,
    record_bytes: usize,
    /// (byte offset in the record, samples per record, gain, offset) per signal.
    signals: Vec<(usize, usize, f64, f64)>,
    annotation_channels: Vec<usize>,
    labels: Vec<String>,
}

impl Layout {
    fn new(h: &Header) -> Layout {
        let sb = h.format().sample_bytes();
        let mut at = 0;
        let signals = h
            .signals()
            .iter()
            .map(|s| {
                let e = (at, s.samples_per_record, s.gain(), s.offset());
                at += s.samples_per_record * sb;
                e
            })
            .collect();
        Layout {
            format: h.format(),
            plus: h.plus(),
            record_duration: h.record_duration(),
            record_bytes: at,
            signals,
            annotation_channels: h.annotation_channels(),
            labels: h
                .signals()
                .iter()
                .map(|s| s.label.trim().to_string())
                .collect(),
        }
    }
}

/// One data record: its raw bytes (every signal, bit for bit) and decoding helpers.
#[derive(Clone, Debug)]
pub struct Record {
    index: u64,
    bytes: Vec<u8>,
    layout: Arc<Layout>,
}

impl Record {
    /// 0-based index of the record in the file.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The whole record as stored in the file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The raw bytes of signal `ch` in this record (e.g. an annotation signal's TALs).
    /// Panics if `ch` is not a signal of the file.
    pub fn signal_bytes(&self, ch: usize) -> &[u8] {
        let (at, n, _, _) = self.layout.signals[ch];
        &self.bytes[at..at + n * self.layout.format.sample_bytes()]
    }

    /// Mutable raw bytes of signal `ch` (to write modified records).
    /// Panics if `ch` is not a signal of the file.
    pub fn signal_bytes_mut(&mut self, ch: usize) -> &mut [u8] {
        let (at, n, _, _) = self.layout.signals[ch];
        let sb = self.layout.format.sample_bytes();
        &mut self.bytes[at..at + n * sb]
    }

    /// Digital samples of signal `ch` into `out` (length = samples per record).
    /// Panics if `ch` is out of range or `out` has the wrong length.
    pub fn digital_into(&self, ch: usize, out: &mut [i32]) {
        let raw = self.signal_bytes(ch);
        assert_eq!(
            out.len(),
            self.layout.signals[ch].1,
            "output length must equal samples per record"
        );
        match self.layout.format {
            Format::Edf => {
                for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                    *o = i16::from_le_bytes([c[0], c[1]]) as i32;
                }
            }
            Format::Bdf => {
                for (o, c) in out.iter_mut().zip(raw.chunks_exact(3)) {
                    // Place the 24 bits high, then shift back to sign-extend.
                    *o = i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8;
                }
            }
        }
    }

    /// Digital samples of signal `ch`.
    pub fn digital(&self, ch: usize) -> Vec<i32> {
        let mut v = vec![0; self.layout.signals[ch].1];
        self.digital_into(ch, &mut v);
        v
    }

    /// Physical samples of signal `ch` into `out` (f64 gain/offset, rounded once to f32).
    /// Panics if `ch` is out of range or `out` has the wrong length.
    pub fn physical_into(&self, ch: usize, out: &mut [f32]) {
        let (_, n, gain, offset) = self.layout.signals[ch];
        assert_eq!(out.len(), n, "output length must equal samples per record");
        let raw = self.signal_bytes(ch);
        match self.layout.format {
            Format::Edf => {
                for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                    *o = (i16::from_le_bytes([c[0], c[1]]) as f64 * gain + offset) as f32;
                }
            }
            Format::Bdf => {
                for (o, c) in out.iter_mut().zip(raw.chunks_exact(3)) {
                    *o = ((i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8) as f64 * gain + offset)
                        as f32;
                }
            }
        }
    }

    /// Physical samples of signal `ch`.
    pub fn physical(&self, ch: usize) -> Vec<f32> {
        let mut v = vec![0.0; self.layout.signals[ch].1];
        self.physical_into(ch, &mut v);
        v
    }

    /// The TALs of every annotation signal in this record, in signal order.
    pub fn tals(&self) -> Result<Vec<Tal>, EdfError> {
        let mut out = Vec::new();
        for &ch in &self.layout.annotation_channels {
            let t =
                parse_tals(self.signal_bytes(ch)).map_err(|problem| FormatError::Annotation {
                    record: self.index,
                    channel: super::error::ChannelRef {
                        index: ch,
                        label: self.layout.labels[ch].clone(),
                    },
                    problem,
                })?;
            out.extend(t);
        }
        Ok(out)
    }

    /// Start of this record in seconds from the file start: the onset of the first TAL
    /// of the first annotation signal in EDF+/BDF+ files (required there, and the only
    /// source of truth in EDF+D), otherwise index x record duration.
    pub fn start_time(&self) -> Result<f64, EdfError> {
        let l = &self.layout;
        match (l.plus, l.annotation_channels.first()) {
            (Plus::No, _) | (_, None) => Ok(self.index as f64 * l.record_duration),
            (_, Some(&ch)) => {
                let bad = |problem: String| FormatError::Annotation {
                    record: self.index,
                    channel: super::error::ChannelRef {
                        index: ch,
                        label: l.labels[ch].clone(),
                    },
                    problem,
                };
                let tals = parse_tals(self.signal_bytes(ch)).map_err(bad)?;
                match tals.first() {
                    Some(t) => Ok(t.onset),
                    None => Err(bad(
                        "no time-keeping TAL (record start time) in this record".into()
                    )
                    .into()),
                }
            }
        }
    }
}

/// A streaming reader over an EDF/EDF+/BDF/BDF+ file (or any byte source).
#[derive(Debug)]
pub struct EdfReader<R = BufReader<File>> {
    inner: R,
    path: Option<PathBuf>,
    header: Header,
    layout: Arc<Layout>,
    num_records: u64,
    next: u64,
}

impl EdfReader<BufReader<File>> {
    /// Open a file, parse and validate its header, and check its size against the
    /// header's record count. Errors name the path.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EdfError> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| EdfError::io(path, "open", e))?;
        if meta.is_dir() {
            return Err(EdfError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        let file = File::open(path).map_err(|e| EdfError::io(path, "open", e))?;
        Self::from_reader(
            BufReader::with_capacity(1 << 16, file),
            meta.len(),
            Some(path.to_path_buf()),
        )
    }
}

impl<R: Read> EdfReader<R> {
    /// Read the header from `inner` (positioned at the file start) whose total length is
    /// `file_len`; `path` is used in error messages.
    pub fn from_reader(
        mut inner: R,
        file_len: u64,
        path: Option<PathBuf>,
    ) -> Result<Self, EdfError> {
        let named = |e: EdfError| match &path {
            Some(p) => e.in_file(p),
            None => e,
        };
        let io_err = |e: std::io::Error, action: &str| {
            EdfError::io(path.as_deref().unwrap_or(Path::new("<reader>")), action, e)
        };
        if file_len == 0 {
            return Err(named(FormatError::Empty.into()));
        }
        let mut buf = vec![0u8; (file_len.min(FIXED_HEADER_BYTES as u64)) as usize];
        inner
            .read_exact(&mut buf)
            .map_err(|e| io_err(e, "read the header"))?;
        let header = loop {
            match parse_header(&buf) {
                Ok(h) => break h,
                Err(EdfError::Format {
                    problem: FormatError::Truncated { needed, .. },
                    ..
                }) if needed > buf.len() as u64 && needed <= file_len => {
                    let have = buf.len();
                    buf.resize(needed as usize, 0);
                    inner
                        .read_exact(&mut buf[have..])
                        .map_err(|e| io_err(e, "read the header"))?;
                }
                Err(EdfError::Format {
                    problem: FormatError::Truncated { needed, what, .. },
                    ..
                }) => {
                    // Report the file's size, not the size of the part read so far.
                    return Err(named(
                        FormatError::Truncated {
                            what,
                            needed,
                            got: file_len,
                        }
                        .into(),
                    ));
                }
                Err(e) => return Err(named(e)),
            }
        };
        let num_records = header
            .records_in_file(file_len)
            .map_err(|p| named(p.into()))?;
        let layout = Arc::new(Layout::new(&header));
        Ok(EdfReader {
            inner,
            path,
            header,
            layout,
            num_records,
            next: 0,
        })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file path, when opened from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Number of data records in the file (counted from the size when the header says -1).
    pub fn num_records(&self) -> u64 {
        self.num_records
    }

    /// Index of the record the next read returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// An empty record buffer for [`EdfReader::read_record_into`].
    pub fn new_record(&self) -> Record {
        // Only sized when the file holds a record (so the size is bounded by the file's):
        // a header may declare huge records in a file that holds none.
        let n = if self.num_records > 0 {
            self.layout.record_bytes
        } else {
            0
        };
        Record {
            index: 0,
            bytes: vec![0; n],
            layout: self.layout.clone(),
        }
    }

    /// Read the next record into `rec` (reusing its buffer); false at the end.
    pub fn read_record_into(&mut self, rec: &mut Record) -> Result<bool, EdfError> {
        if self.next >= self.num_records {
            return Ok(false);
        }
        if !Arc::ptr_eq(&rec.layout, &self.layout) {
            rec.layout = self.layout.clone();
        }
        rec.bytes.resize(self.layout.record_bytes, 0);
        if let Err(e) = self.inner.read_exact(&mut rec.bytes) {
            let p = self
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from("<reader>"));
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                // The file shrank after it was opened.
                EdfError::Format {
                    file: self.path.clone(),
                    problem: FormatError::Truncated {
                        what: format!(
                            "data record {} (the file changed while being read)",
                            self.next
                        ),
                        needed: self.header.header_bytes() as u64
                            + (self.next + 1) * self.layout.record_bytes as u64,
                        got: 0,
                    },
                }
            } else {
                EdfError::io(&p, format!("read data record {}", self.next), e)
            });
        }
        rec.index = self.next;
        self.next += 1;
        Ok(true)
    }

    /// Read the next record; None at the end.
    pub fn read_record(&mut self) -> Result<Option<Record>, EdfError> {
        let mut r = self.new_record();
        Ok(if self.read_record_into(&mut r)? {
            Some(r)
        } else {
            None
        })
    }

    /// Read the physical samples of `channels` from the current position to the end, one
    /// Vec per channel (the other signals are read but not kept).
    pub fn read_channels_physical(
        &mut self,
        channels: &[usize],
    ) -> Result<Vec<Vec<f32>>, EdfError> {
        for &ch in channels {
            self.check_channel(ch)?;
        }
        let left = (self.num_records - self.next) as usize;
        let mut out: Vec<Vec<f32>> = channels
            .iter()
            .map(|&ch| {
                Vec::with_capacity(
                    left.saturating_mul(self.header.signals()[ch].samples_per_record),
                )
            })
            .collect();
        let mut rec = self.new_record();
        while self.read_record_into(&mut rec)? {
            for (o, &ch) in out.iter_mut().zip(channels) {
                let n = o.len();
                o.resize(n + self.layout.signals[ch].1, 0.0);
                rec.physical_into(ch, &mut o[n..]);
            }
        }
        Ok(out)
    }

    /// All annotations (one per text, time-keeping TALs left out) from the current
    /// position to the end, in file order.
    pub fn read_annotations(&mut self) -> Result<Vec<Annotation>, EdfError> {
        let mut out = Vec::new();
        let mut rec = self.new_record();
        while self.read_record_into(&mut rec)? {
            let tals = rec.tals().map_err(|e| self.name(e))?;
            for t in tals {
                for text in t.texts.into_iter().filter(|s| !s.is_empty()) {
                    out.push(Annotation {
                        onset: t.onset,
                        duration: t.duration,
                        text,
                    });
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn check_channel(&self, ch: usize) -> Result<(), EdfError> {
        if ch >= self.header.signals().len() {
            return Err(EdfError::InvalidRequest {
                file: self.path.clone(),
                channel: self.header.channel_ref(ch),
                problem: format!(
                    "no such channel: the file has {} signals",
                    self.header.signals().len()
                ),
            });
        }
        Ok(())
    }

    fn name(&self, e: EdfError) -> EdfError {
        match &self.path {
            Some(p) => e.in_file(p),
            None => e,
        }
    }
}

impl<R: Read + Seek> EdfReader<R> {
    /// Move to record `index` (0-based; `num_records()` means the end).
    pub fn seek_record(&mut self, index: u64) -> Result<(), EdfError> {
        if index > self.num_records {
            return Err(EdfError::RecordOutOfRange {
                file: self.path.clone(),
                index,
                records: self.num_records,
            });
        }
        let pos = self.header.header_bytes() as u64 + index * self.layout.record_bytes as u64;
        self.inner.seek(SeekFrom::Start(pos)).map_err(|e| {
            EdfError::io(
                self.path.as_deref().unwrap_or(Path::new("<reader>")),
                format!("seek to record {index}"),
                e,
            )
        })?;
        self.next = index;
        Ok(())
    }
}

impl<R: Read> Iterator for EdfReader<R> {
    type Item = Result<Record, EdfError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_record().transpose()
    }
}

/// Physical samples of the given channels over the whole file, one Vec per channel.
pub fn read_channels_physical(
    path: impl AsRef<Path>,
    channels: &[usize],
) -> Result<Vec<Vec<f32>>, EdfError> {
    EdfReader::open(path)?.read_channels_physical(channels)
}

/// Physical samples of one channel over the whole file.
pub fn read_channel_physical(path: impl AsRef<Path>, channel: usize) -> Result<Vec<f32>, EdfError> {
    Ok(read_channels_physical(path, &[channel])?.remove(0))
}

/// Every annotation in the file (one per text; time-keeping TALs left out).
pub fn read_annotations(path: impl AsRef<Path>) -> Result<Vec<Annotation>, EdfError> {
    EdfReader::open(path)?.read_annotations()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_memory_without_a_file() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/plux_1ch_eeg_motion_artefacts_1000Hz_128s.edf"
        ))
        .unwrap();
        let len = bytes.len() as u64;
        let mut r = EdfReader::from_reader(std::io::Cursor::new(bytes), len, None).unwrap();
        assert_eq!(r.num_records(), 128);
        r.seek_record(127).unwrap();
        let rec = r.read_record().unwrap().unwrap();
        assert_eq!((rec.index(), rec.digital(0).len()), (127, 1000));
        assert_eq!(rec.start_time().unwrap(), 127.0);
        assert!(r.read_record().unwrap().is_none());
        assert!(matches!(
            r.seek_record(129),
            Err(EdfError::RecordOutOfRange {
                index: 129,
                records: 128,
                ..
            })
        ));
        // A declared size past the bytes present is a truncation, reported without a path.
        let e = EdfReader::from_reader(std::io::Cursor::new(vec![b' '; 10]), 10, None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("<in-memory EDF bytes>: truncated"),
            "{e}"
        );
    }
}
