//! Typed errors for EDF/EDF+/BDF reading and writing.
//!
//! [`FormatError`] says what is wrong with the bytes (and where: field, channel, record);
//! [`EdfError`] adds the file it came from, or the I/O step that failed.

use std::fmt;
use std::path::{Path, PathBuf};

/// A channel named in an error: its 0-based index and its label (trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRef {
    /// 0-based index of the signal in the header.
    pub index: usize,
    /// The label as written in the header, trailing spaces removed.
    pub label: String,
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.label.is_empty() {
            write!(f, "channel {}", self.index)
        } else {
            write!(f, "channel {} '{}'", self.index, self.label)
        }
    }
}

/// What is wrong with the bytes of an EDF/BDF file (no file name: see [`EdfError`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Zero bytes.
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// The file ends before a part that the header says is there.
    #[error("truncated: {what} needs {needed} bytes but only {got} are there")]
    Truncated {
        /// The part that is cut off.
        what: String,
        /// Bytes that part needs (counted from the start of the file).
        needed: u64,
        /// Bytes there are.
        got: u64,
    },
    /// The version field is neither EDF's "0" nor BDF's 0xFF "BIOSEMI".
    #[error(
        "not an EDF or BDF file: version field is {found:?} (expected \"0\" for EDF or 0xFF \"BIOSEMI\" for BDF)"
    )]
    BadVersion {
        /// The version field, with non-printable bytes escaped.
        found: String,
    },
    /// A header byte outside printable ASCII (32..=126), which EDF forbids (this includes
    /// non-ASCII text and NUL padding).
    #[error("byte 0x{byte:02X} in header field '{field}'{} at file offset {offset} is not printable ASCII (EDF headers allow bytes 32..=126 only, space-padded)", chan_suffix(.channel))]
    NonAscii {
        /// Name of the header field.
        field: &'static str,
        /// The channel, for per-signal fields.
        channel: Option<ChannelRef>,
        /// Byte offset in the file.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A numeric header field that does not parse (or is not finite).
    #[error("header field '{field}'{} is {text:?}, not {expected}", chan_suffix(.channel))]
    NotNumber {
        /// Name of the header field.
        field: &'static str,
        /// The channel, for per-signal fields.
        channel: Option<ChannelRef>,
        /// The field's text.
        text: String,
        /// What it should be ("an integer", "a finite number").
        expected: &'static str,
    },
    /// A header field whose value is out of its allowed range or inconsistent.
    #[error("header field '{field}'{} is {value}: {problem}", chan_suffix(.channel))]
    BadField {
        /// Name of the header field.
        field: &'static str,
        /// The channel, for per-signal fields.
        channel: Option<ChannelRef>,
        /// The field's value as text.
        value: String,
        /// Why it is refused.
        problem: String,
    },
    /// Physical minimum equals physical maximum: the gain would be 0 or undefined.
    #[error(
        "{channel}: physical minimum equals physical maximum ({value}); the scale would be undefined"
    )]
    PhysicalRangeEmpty {
        /// The channel.
        channel: ChannelRef,
        /// The common value.
        value: f64,
    },
    /// The physical/digital ranges give a scale that is not a usable finite number
    /// (it would turn samples into NaN or infinity), or values beyond f32.
    #[error(
        "{channel}: physical range {physical_min:?} .. {physical_max:?} over digital {digital_min} .. {digital_max} gives an unusable scale ({problem})"
    )]
    BadScale {
        /// The channel.
        channel: ChannelRef,
        /// Physical minimum.
        physical_min: f64,
        /// Physical maximum.
        physical_max: f64,
        /// Digital minimum.
        digital_min: i64,
        /// Digital maximum.
        digital_max: i64,
        /// What is wrong.
        problem: &'static str,
    },
    /// Digital minimum is not below digital maximum.
    #[error("{channel}: digital minimum {min} is not below digital maximum {max}")]
    DigitalRange {
        /// The channel.
        channel: ChannelRef,
        /// Digital minimum.
        min: i64,
        /// Digital maximum.
        max: i64,
    },
    /// The data section is not `records x record size` bytes.
    #[error("record count mismatch: the header says {declared} data records of {record_bytes} bytes ({expected_bytes} data bytes), but the file has {data_bytes} data bytes ({whole} whole records{})", if *.remainder > 0 { format!(" + {} bytes", .remainder) } else { String::new() })]
    RecordCount {
        /// Records declared in the header.
        declared: i64,
        /// Bytes per data record.
        record_bytes: u64,
        /// Bytes the header implies.
        expected_bytes: u64,
        /// Bytes after the header in the file.
        data_bytes: u64,
        /// Whole records actually present.
        whole: u64,
        /// Bytes left over after the whole records.
        remainder: u64,
    },
    /// A malformed time-stamped annotation list in an annotation channel.
    #[error("record {record}, {channel}: bad annotation (TAL): {problem}")]
    Annotation {
        /// 0-based data record index.
        record: u64,
        /// The annotation channel.
        channel: ChannelRef,
        /// What is wrong.
        problem: String,
    },
}

fn chan_suffix(c: &Option<ChannelRef>) -> String {
    match c {
        Some(c) => format!(" of {c}"),
        None => String::new(),
    }
}

fn file_name(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => p.display().to_string(),
        None => "<in-memory EDF bytes>".to_string(),
    }
}

/// Any failure reading, validating or writing EDF/BDF files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdfError {
    /// The file's content is invalid.
    #[error("{}: {problem}", file_name(.file))]
    Format {
        /// The file (None for bytes parsed in memory).
        file: Option<PathBuf>,
        /// What is wrong.
        problem: FormatError,
    },
    /// An operating-system I/O error.
    #[error("{}: cannot {action}: {source}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What was being done ("open", "read record 3", "rename temp file to").
        action: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A directory was given where a file is expected.
    #[error("{}: is a directory, not an EDF/BDF file", .path.display())]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The output path is the input file (directly, via links or another spelling).
    #[error("refusing to write {}: it is the input file {} (the input is never overwritten)", .output.display(), .input.display())]
    OutputIsInput {
        /// The input file.
        input: PathBuf,
        /// The output path given.
        output: PathBuf,
    },
    /// The output's directory does not exist.
    #[error("{}: cannot write: directory {} does not exist", .output.display(), .dir.display())]
    OutputDirMissing {
        /// The output path given.
        output: PathBuf,
        /// Its missing parent directory.
        dir: PathBuf,
    },
    /// A channel label that is not in the file.
    #[error("{}: no channel labelled {label:?}; channels are: {}", file_name(.file), .available.join(", "))]
    UnknownChannel {
        /// The file, when known.
        file: Option<PathBuf>,
        /// The requested label.
        label: String,
        /// Labels in the file (trimmed).
        available: Vec<String>,
    },
    /// A requested label matches more than one channel.
    #[error("{}: channel name {label:?} is ambiguous: it matches {}", file_name(.file), .matches.join(", "))]
    AmbiguousChannel {
        /// The file, when known.
        file: Option<PathBuf>,
        /// The requested label.
        label: String,
        /// The labels it matches.
        matches: Vec<String>,
    },
    /// The default EEG channel rule selected nothing.
    #[error("{}: no EEG channels found (rule: not an annotation channel, physical dimension in volts, label without a non-EEG prefix); name channels explicitly. Channels: {}", file_name(.file), .available.join(", "))]
    NoEegChannels {
        /// The file, when known.
        file: Option<PathBuf>,
        /// Labels with their physical dimensions.
        available: Vec<String>,
    },
    /// A request that cannot be carried out on this file (bad channel index, wrong length...).
    #[error("{}: {channel}: {problem}", file_name(.file))]
    InvalidRequest {
        /// The file, when known.
        file: Option<PathBuf>,
        /// The channel concerned.
        channel: ChannelRef,
        /// What is wrong.
        problem: String,
    },
    /// A record index past the end of the file.
    #[error("{}: record {index} is past the end ({records} records)", file_name(.file))]
    RecordOutOfRange {
        /// The file, when known.
        file: Option<PathBuf>,
        /// The requested record.
        index: u64,
        /// Records in the file.
        records: u64,
    },
    /// A replacement value that is NaN or infinite (e.g. from a bad scale).
    #[error("{}: {channel}: sample {sample} (record {record}) is {value}, not a finite number; nothing was written", .output.display())]
    NonFiniteSample {
        /// The output being written.
        output: PathBuf,
        /// The channel.
        channel: ChannelRef,
        /// Data record index.
        record: u64,
        /// Sample index within the whole channel.
        sample: u64,
        /// The value.
        value: f32,
    },
    /// A header (or header change) that cannot be written as EDF.
    #[error("cannot build EDF header: {0}")]
    InvalidHeader(String),
    /// The writer was finished with a record count different from the header's.
    #[error("{}: header declares {declared} data records but {written} were written", .path.display())]
    WrongRecordCount {
        /// The output path.
        path: PathBuf,
        /// Records in the header.
        declared: i64,
        /// Records written.
        written: u64,
    },
}

impl EdfError {
    /// Attach (or replace) the file name on content errors.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            EdfError::Format { problem, .. } => EdfError::Format {
                file: Some(path.to_path_buf()),
                problem,
            },
            EdfError::UnknownChannel {
                label, available, ..
            } => EdfError::UnknownChannel {
                file: Some(path.to_path_buf()),
                label,
                available,
            },
            EdfError::AmbiguousChannel { label, matches, .. } => EdfError::AmbiguousChannel {
                file: Some(path.to_path_buf()),
                label,
                matches,
            },
            EdfError::NoEegChannels { available, .. } => EdfError::NoEegChannels {
                file: Some(path.to_path_buf()),
                available,
            },
            EdfError::InvalidRequest {
                channel, problem, ..
            } => EdfError::InvalidRequest {
                file: Some(path.to_path_buf()),
                channel,
                problem,
            },
            other => other,
        }
    }

    /// The format problem, if this is a content error.
    pub fn format_problem(&self) -> Option<&FormatError> {
        match self {
            EdfError::Format { problem, .. } => Some(problem),
            _ => None,
        }
    }

    pub(crate) fn io(path: &Path, action: impl Into<String>, source: std::io::Error) -> Self {
        EdfError::Io {
            path: path.to_path_buf(),
            action: action.into(),
            source,
        }
    }
}

impl From<crate::io::atomic::AtomicError> for EdfError {
    fn from(e: crate::io::atomic::AtomicError) -> Self {
        use crate::io::atomic::AtomicError as A;
        match e {
            A::DirMissing { target, dir } => EdfError::OutputDirMissing {
                output: target,
                dir,
            },
            A::IsDirectory { target } => EdfError::IsDirectory { path: target },
            A::Io {
                path, step, source, ..
            } => EdfError::io(&path, step, source),
        }
    }
}

impl From<FormatError> for EdfError {
    fn from(problem: FormatError) -> Self {
        EdfError::Format {
            file: None,
            problem,
        }
    }
}
