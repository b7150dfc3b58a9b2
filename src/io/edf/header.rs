//! The EDF/BDF header: a pure parser over bytes ([`parse_header`]) with strict validation,
//! and a builder ([`HeaderSpec`]) for new files.
//!
//! A parsed [`Header`] keeps the exact header bytes it came from, so a writer can reproduce
//! every byte (including number spellings such as `"+1"` or `"0001"`); the parsed values are
//! derived from those bytes and cannot drift from them.

use super::error::{ChannelRef, EdfError, FormatError};

/// Size of the fixed part of the header.
pub const FIXED_HEADER_BYTES: usize = 256;
/// Header bytes per signal.
pub const SIGNAL_HEADER_BYTES: usize = 256;

/// Sample encoding of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// EDF / EDF+: 16-bit little-endian two's complement samples.
    Edf,
    /// BDF / BDF+ (BioSemi): 24-bit little-endian two's complement samples.
    Bdf,
}

impl Format {
    /// Bytes per sample (2 or 3).
    pub const fn sample_bytes(self) -> usize {
        match self {
            Format::Edf => 2,
            Format::Bdf => 3,
        }
    }

    /// Smallest and largest digital value the encoding can hold.
    pub const fn digital_limits(self) -> (i32, i32) {
        match self {
            Format::Edf => (i16::MIN as i32, i16::MAX as i32),
            Format::Bdf => (-(1 << 23), (1 << 23) - 1),
        }
    }

    /// The label of this format's annotation signal ("EDF Annotations" / "BDF Annotations").
    pub const fn annotation_label(self) -> &'static str {
        match self {
            Format::Edf => "EDF Annotations",
            Format::Bdf => "BDF Annotations",
        }
    }
}

/// EDF+/BDF+ continuity, from the reserved field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plus {
    /// Plain EDF or BDF (no '+' marker): records are contiguous, no annotation semantics.
    No,
    /// EDF+C / BDF+C: contiguous records.
    Continuous,
    /// EDF+D / BDF+D: records may have gaps; each record's start comes from its first TAL.
    Discontinuous,
}

/// One signal (channel) of the header. Text fields have trailing space padding removed.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalHeader {
    /// Label, e.g. "Fp1." or "EEG Fp1-REF" or "EDF Annotations" (16 chars).
    pub label: String,
    /// Transducer type (80 chars).
    pub transducer: String,
    /// Physical dimension, e.g. "uV" (8 chars).
    pub physical_dimension: String,
    /// Physical value of `digital_min`.
    pub physical_min: f64,
    /// Physical value of `digital_max`.
    pub physical_max: f64,
    /// Smallest digital value.
    pub digital_min: i32,
    /// Largest digital value.
    pub digital_max: i32,
    /// Prefiltering text, e.g. "HP:0.1Hz LP:75Hz" (80 chars).
    pub prefiltering: String,
    /// Samples of this signal in each data record.
    pub samples_per_record: usize,
    /// Per-signal reserved field (32 chars).
    pub reserved: String,
}

impl SignalHeader {
    /// Physical units per digital step: (pmax - pmin) / (dmax - dmin). Negative when the
    /// physical range is inverted (allowed by EDF).
    pub fn gain(&self) -> f64 {
        (self.physical_max - self.physical_min)
            / (self.digital_max as f64 - self.digital_min as f64)
    }

    /// Physical value of digital 0: physical = digital * gain + offset.
    pub fn offset(&self) -> f64 {
        self.physical_min - self.digital_min as f64 * self.gain()
    }

    /// Digital to physical (f64).
    pub fn to_physical(&self, digital: i32) -> f64 {
        self.physical_min + (digital as f64 - self.digital_min as f64) * self.gain()
    }

    /// Physical to digital: rounded to nearest (half away from zero), clipped to the digital
    /// range. Returns the value and whether it was clipped. NaN maps to `None`.
    pub fn to_digital(&self, physical: f64) -> Option<(i32, bool)> {
        if physical.is_nan() {
            return None;
        }
        let d = ((physical - self.physical_min) / self.gain() + self.digital_min as f64).round();
        if d < self.digital_min as f64 {
            Some((self.digital_min, true))
        } else if d > self.digital_max as f64 {
            Some((self.digital_max, true))
        } else {
            Some((d as i32, false))
        }
    }

    /// Whether this is an EDF+/BDF+ annotation signal (label "EDF Annotations" or
    /// "BDF Annotations").
    pub fn is_annotation(&self) -> bool {
        let l = self.label.trim();
        l == "EDF Annotations" || l == "BDF Annotations"
    }
}

/// A validated EDF/EDF+/BDF/BDF+ header, with the exact bytes it was parsed from.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    raw: Vec<u8>,
    format: Format,
    plus: Plus,
    patient: String,
    recording: String,
    start_date: String,
    start_time: String,
    reserved: String,
    declared_records: i64,
    record_duration: f64,
    signals: Vec<SignalHeader>,
}

/// Everything needed to build a new header (see [`Header::from_spec`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderSpec {
    /// Sample encoding.
    pub format: Format,
    /// Patient identification (80 chars).
    pub patient: String,
    /// Recording identification (80 chars).
    pub recording: String,
    /// Start date "dd.mm.yy".
    pub start_date: String,
    /// Start time "hh.mm.ss".
    pub start_time: String,
    /// Reserved field: "" (plain EDF), "EDF+C", "EDF+D", "24BIT", "BDF+C", "BDF+D".
    pub reserved: String,
    /// Number of data records (-1 = unknown, only while recording).
    pub num_records: i64,
    /// Record duration in seconds (written with at most 8 characters).
    pub record_duration: f64,
    /// Signals.
    pub signals: Vec<SignalHeader>,
}

impl HeaderSpec {
    /// A plain EDF header with anonymous EDF+-style identification ("X" fields) starting
    /// 01.01.20 10.00.00, for generated recordings.
    pub fn generated(num_records: i64, record_duration: f64, signals: Vec<SignalHeader>) -> Self {
        Self {
            format: Format::Edf,
            patient: "X X X X".into(),
            recording: "Startdate 01-JAN-2020 X X X".into(),
            start_date: "01.01.20".into(),
            start_time: "10.00.00".into(),
            reserved: String::new(),
            num_records,
            record_duration,
            signals,
        }
    }
}

impl Header {
    /// Build a header from values, formatting each field as space-padded ASCII, then
    /// validate it exactly as a parsed file would be.
    pub fn from_spec(spec: &HeaderSpec) -> Result<Header, EdfError> {
        let ns = spec.signals.len();
        let mut b = Vec::with_capacity(FIXED_HEADER_BYTES + SIGNAL_HEADER_BYTES * ns);
        match spec.format {
            Format::Edf => put_text(&mut b, "0", 8, "version")?,
            Format::Bdf => {
                b.push(0xFF);
                b.extend_from_slice(b"BIOSEMI");
            }
        }
        put_text(&mut b, &spec.patient, 80, "patient")?;
        put_text(&mut b, &spec.recording, 80, "recording")?;
        put_text(&mut b, &spec.start_date, 8, "start date")?;
        put_text(&mut b, &spec.start_time, 8, "start time")?;
        put_text(
            &mut b,
            &(FIXED_HEADER_BYTES + SIGNAL_HEADER_BYTES * ns).to_string(),
            8,
            "header bytes",
        )?;
        put_text(&mut b, &spec.reserved, 44, "reserved")?;
        put_text(
            &mut b,
            &spec.num_records.to_string(),
            8,
            "number of data records",
        )?;
        put_number(&mut b, spec.record_duration, 8, "record duration")?;
        put_text(&mut b, &ns.to_string(), 4, "number of signals")?;
        let s = &spec.signals;
        for x in s {
            put_text(&mut b, &x.label, 16, "label")?;
        }
        for x in s {
            put_text(&mut b, &x.transducer, 80, "transducer")?;
        }
        for x in s {
            put_text(&mut b, &x.physical_dimension, 8, "physical dimension")?;
        }
        for x in s {
            put_number(&mut b, x.physical_min, 8, "physical minimum")?;
        }
        for x in s {
            put_number(&mut b, x.physical_max, 8, "physical maximum")?;
        }
        for x in s {
            put_text(&mut b, &x.digital_min.to_string(), 8, "digital minimum")?;
        }
        for x in s {
            put_text(&mut b, &x.digital_max.to_string(), 8, "digital maximum")?;
        }
        for x in s {
            put_text(&mut b, &x.prefiltering, 80, "prefiltering")?;
        }
        for x in s {
            put_text(
                &mut b,
                &x.samples_per_record.to_string(),
                8,
                "samples per record",
            )?;
        }
        for x in s {
            put_text(&mut b, &x.reserved, 32, "signal reserved")?;
        }
        parse_header(&b)
    }

    /// The values of this header as a spec (to build a modified copy).
    pub fn to_spec(&self) -> HeaderSpec {
        HeaderSpec {
            format: self.format,
            patient: self.patient.clone(),
            recording: self.recording.clone(),
            start_date: self.start_date.clone(),
            start_time: self.start_time.clone(),
            reserved: self.reserved.clone(),
            num_records: self.declared_records,
            record_duration: self.record_duration,
            signals: self.signals.clone(),
        }
    }

    /// The exact header bytes (256 * (signals + 1)).
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// A copy with the "number of data records" field replaced (every other byte unchanged).
    pub fn with_num_records(&self, n: i64) -> Result<Header, EdfError> {
        let text = n.to_string();
        if text.len() > 8 || n < -1 {
            return Err(EdfError::InvalidHeader(format!(
                "record count {n} does not fit the 8-character field"
            )));
        }
        let mut raw = self.raw.clone();
        let field = &mut raw[236..244];
        field.fill(b' ');
        field[..text.len()].copy_from_slice(text.as_bytes());
        parse_header(&raw)
    }

    /// EDF or BDF.
    pub fn format(&self) -> Format {
        self.format
    }
    /// EDF+/BDF+ continuity.
    pub fn plus(&self) -> Plus {
        self.plus
    }
    /// Patient identification (trailing spaces removed).
    pub fn patient(&self) -> &str {
        &self.patient
    }
    /// Recording identification (trailing spaces removed).
    pub fn recording(&self) -> &str {
        &self.recording
    }
    /// Start date as written, "dd.mm.yy".
    pub fn start_date(&self) -> &str {
        &self.start_date
    }
    /// Start time as written, "hh.mm.ss".
    pub fn start_time(&self) -> &str {
        &self.start_time
    }
    /// Start date and time as (year, month, day, hour, minute, second); years 85-99 are
    /// 1985-1999, 00-84 are 2000-2084 (the EDF clipping rule).
    pub fn start_datetime(&self) -> (u16, u8, u8, u8, u8, u8) {
        let d = |s: &str, i: usize| {
            s.as_bytes()[i..i + 2]
                .iter()
                .fold(0u8, |a, c| a * 10 + (c - b'0'))
        };
        let yy = d(&self.start_date, 6) as u16;
        let year = if yy >= 85 { 1900 + yy } else { 2000 + yy };
        (
            year,
            d(&self.start_date, 3),
            d(&self.start_date, 0),
            d(&self.start_time, 0),
            d(&self.start_time, 3),
            d(&self.start_time, 6),
        )
    }
    /// Reserved field (trailing spaces removed), e.g. "EDF+C".
    pub fn reserved(&self) -> &str {
        &self.reserved
    }
    /// Number of data records as declared (-1 = unknown; the reader then counts them from
    /// the file size).
    pub fn declared_records(&self) -> i64 {
        self.declared_records
    }
    /// Duration of one data record in seconds (0 only in annotation-only EDF+ files).
    pub fn record_duration(&self) -> f64 {
        self.record_duration
    }
    /// The signals, in file order.
    pub fn signals(&self) -> &[SignalHeader] {
        &self.signals
    }
    /// Header size in bytes.
    pub fn header_bytes(&self) -> usize {
        self.raw.len()
    }
    /// Bytes in one data record.
    pub fn record_bytes(&self) -> u64 {
        self.signals
            .iter()
            .map(|s| s.samples_per_record as u64)
            .sum::<u64>()
            * self.format.sample_bytes() as u64
    }
    /// Sampling rate of signal `ch` in Hz (samples per record / record duration).
    pub fn sample_rate(&self, ch: usize) -> f64 {
        self.signals[ch].samples_per_record as f64 / self.record_duration
    }
    /// Indices of the annotation signals.
    pub fn annotation_channels(&self) -> Vec<usize> {
        (0..self.signals.len())
            .filter(|&i| self.signals[i].is_annotation())
            .collect()
    }
    /// The channel reference (index + label) used in error messages.
    pub fn channel_ref(&self, ch: usize) -> ChannelRef {
        ChannelRef {
            index: ch,
            label: self
                .signals
                .get(ch)
                .map(|s| s.label.trim().to_string())
                .unwrap_or_default(),
        }
    }

    /// Check the data section size against the header and return the number of data
    /// records. `file_len` is the whole file's length in bytes. When the header declares
    /// -1 records (unknown, allowed while recording), the count is the data size divided by
    /// the record size, which must divide exactly.
    pub fn records_in_file(&self, file_len: u64) -> Result<u64, FormatError> {
        let hb = self.raw.len() as u64;
        if file_len < hb {
            return Err(FormatError::Truncated {
                what: "the header".into(),
                needed: hb,
                got: file_len,
            });
        }
        let data = file_len - hb;
        let rb = self.record_bytes();
        // rb > 0 for any parsed header (signals >= 1, samples >= 1).
        let whole = data.checked_div(rb).unwrap_or(0);
        let remainder = data.checked_rem(rb).unwrap_or(data);
        if self.declared_records == -1 {
            if remainder != 0 {
                return Err(FormatError::RecordCount {
                    declared: -1,
                    record_bytes: rb,
                    expected_bytes: whole * rb,
                    data_bytes: data,
                    whole,
                    remainder,
                });
            }
            return Ok(whole);
        }
        let declared = self.declared_records as u64;
        let expected = declared.saturating_mul(rb);
        if data == expected {
            return Ok(declared);
        }
        if data < expected && remainder != 0 {
            return Err(FormatError::Truncated {
                what: format!("data record {whole} of {declared}"),
                needed: hb + (whole + 1) * rb,
                got: file_len,
            });
        }
        Err(FormatError::RecordCount {
            declared: self.declared_records,
            record_bytes: rb,
            expected_bytes: expected,
            data_bytes: data,
            whole,
            remainder,
        })
    }
}

fn put_text(b: &mut Vec<u8>, s: &str, width: usize, field: &str) -> Result<(), EdfError> {
    if !s.bytes().all(|c| (32..=126).contains(&c)) {
        return Err(EdfError::InvalidHeader(format!(
            "field '{field}' {s:?} is not printable ASCII"
        )));
    }
    if s.len() > width {
        return Err(EdfError::InvalidHeader(format!(
            "field '{field}' {s:?} is longer than {width} characters"
        )));
    }
    b.extend_from_slice(s.as_bytes());
    b.extend(std::iter::repeat_n(b' ', width - s.len()));
    Ok(())
}

fn put_number(b: &mut Vec<u8>, v: f64, width: usize, field: &str) -> Result<(), EdfError> {
    let s = format_number(v, width).ok_or_else(|| {
        EdfError::InvalidHeader(format!(
            "field '{field}' value {v} cannot be written in {width} characters"
        ))
    })?;
    put_text(b, &s, width, field)
}

/// The most precise spelling of `v` in at most `width` characters (None if even the
/// integer part does not fit or `v` is not finite).
pub fn format_number(v: f64, width: usize) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    let s = format!("{v}");
    if s.len() <= width {
        return Some(s);
    }
    for prec in (0..width).rev() {
        let mut s = format!("{v:.prec$}");
        if s.contains('.') {
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
        }
        if s.len() <= width && s != "-0" {
            return Some(s);
        }
        if s == "-0" {
            return Some("0".into());
        }
    }
    None
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> (&'a [u8], usize) {
        let at = self.pos;
        self.pos += n;
        (&self.b[at..at + n], at)
    }
}

fn check_ascii(
    field: &'static str,
    channel: Option<ChannelRef>,
    bytes: &[u8],
    offset: usize,
) -> Result<String, FormatError> {
    if let Some(i) = bytes.iter().position(|c| !(32..=126).contains(c)) {
        return Err(FormatError::NonAscii {
            field,
            channel,
            offset: offset + i,
            byte: bytes[i],
        });
    }
    // Only ASCII, so this cannot fail.
    let s = String::from_utf8_lossy(bytes);
    Ok(s.trim_end_matches(' ').to_string())
}

fn parse_int(
    field: &'static str,
    channel: Option<ChannelRef>,
    text: &str,
) -> Result<i64, FormatError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| FormatError::NotNumber {
            field,
            channel,
            text: text.to_string(),
            expected: "an integer",
        })
}

fn parse_f64(
    field: &'static str,
    channel: Option<ChannelRef>,
    text: &str,
) -> Result<f64, FormatError> {
    let t = text.trim();
    // Rust also accepts "inf"/"NaN"/"infinity"; EDF numbers are plain decimals.
    let ok = !t.is_empty()
        && t.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E'));
    match t.parse::<f64>() {
        Ok(v) if ok && v.is_finite() => Ok(v),
        _ => Err(FormatError::NotNumber {
            field,
            channel,
            text: text.to_string(),
            expected: "a finite decimal number",
        }),
    }
}

fn check_clock(field: &'static str, text: &str, ranges: [(u8, u8); 3]) -> Result<(), FormatError> {
    let b = text.as_bytes();
    let bad = |problem: &str| FormatError::BadField {
        field,
        channel: None,
        value: format!("{text:?}"),
        problem: problem.to_string(),
    };
    if b.len() != 8 || b[2] != b'.' || b[5] != b'.' {
        return Err(bad(if field == "start date" {
            "expected dd.mm.yy"
        } else {
            "expected hh.mm.ss"
        }));
    }
    for (k, (lo, hi)) in ranges.iter().enumerate() {
        let p = &b[k * 3..k * 3 + 2];
        if !p.iter().all(|c| c.is_ascii_digit()) {
            return Err(bad("contains non-digits"));
        }
        let v = (p[0] - b'0') * 10 + (p[1] - b'0');
        if v < *lo || v > *hi {
            return Err(bad(&format!("part {} is {v}, outside {lo}..={hi}", k + 1)));
        }
    }
    Ok(())
}

/// Parse and validate an EDF/EDF+/BDF/BDF+ header from the start of `bytes` (the rest, if
/// any, is ignored: pass the whole file or just its header). Pure: no I/O.
///
/// Checks, in order: non-empty; the 256-byte fixed header is present; version is "0" (EDF)
/// or 0xFF "BIOSEMI" (BDF); every other header byte is printable ASCII; numeric fields parse;
/// header size = 256 * (signals + 1) and the bytes are all there; start date/time are
/// dd.mm.yy / hh.mm.ss; record count >= -1; record duration > 0 (0 only when every signal is
/// an annotation signal, as EDF+ allows) and finite; per signal: physical min != max, digital
/// min < max and within the 16/24-bit range, a finite normal gain and physical values within
/// f32 (so conversion never produces NaN or infinity), samples per record >= 1; EDF+/BDF+
/// files have an annotation signal.
pub fn parse_header(bytes: &[u8]) -> Result<Header, EdfError> {
    parse_header_inner(bytes).map_err(EdfError::from)
}

fn parse_header_inner(bytes: &[u8]) -> Result<Header, FormatError> {
    check_fixed_size(bytes)?;
    let mut c = Cursor { b: bytes, pos: 0 };
    let format = parse_version(c.take(8).0)?;
    let fixed = FixedText::read(&mut c)?;
    let (ns, header_len) = signal_count(&fixed, bytes.len())?;
    check_clock("start date", &fixed.start_date, [(1, 31), (1, 12), (0, 99)])?;
    check_clock("start time", &fixed.start_time, [(0, 23), (0, 59), (0, 59)])?;
    let declared_records = parse_int("number of data records", None, &fixed.records)?;
    if declared_records < -1 {
        return Err(FormatError::BadField {
            field: "number of data records",
            channel: None,
            value: declared_records.to_string(),
            problem: "must be >= 0 (or -1 while recording)".into(),
        });
    }
    let record_duration = parse_f64("record duration", None, &fixed.duration)?;
    let plus = parse_plus(format, &fixed.reserved)?;
    let (labels, cols) = read_signal_columns(&mut c, ns)?;
    let signals = (0..ns)
        .map(|i| parse_signal(format, i, &labels, &cols))
        .collect::<Result<Vec<_>, _>>()?;
    check_record_layout(format, plus, &fixed, record_duration, &signals)?;
    Ok(Header {
        raw: bytes[..header_len].to_vec(),
        format,
        plus,
        patient: fixed.patient,
        recording: fixed.recording,
        start_date: fixed.start_date,
        start_time: fixed.start_time,
        reserved: fixed.reserved,
        declared_records,
        record_duration,
        signals,
    })
}

/// Something to parse, and the 256-byte fixed header present.
fn check_fixed_size(bytes: &[u8]) -> Result<(), FormatError> {
    if bytes.is_empty() {
        return Err(FormatError::Empty);
    }
    if bytes.len() < FIXED_HEADER_BYTES {
        return Err(FormatError::Truncated {
            what: "the 256-byte fixed header".into(),
            needed: FIXED_HEADER_BYTES as u64,
            got: bytes.len() as u64,
        });
    }
    Ok(())
}

/// The format from the 8-byte version field.
fn parse_version(version: &[u8]) -> Result<Format, FormatError> {
    if version == b"0       " {
        Ok(Format::Edf)
    } else if version == b"\xFFBIOSEMI" {
        Ok(Format::Bdf)
    } else {
        let found: String = version
            .iter()
            .flat_map(|&b| std::ascii::escape_default(b))
            .map(char::from)
            .collect();
        Err(FormatError::BadVersion { found })
    }
}

/// The fixed header's text fields after the version, checked to be printable ASCII and
/// trimmed of trailing spaces.
struct FixedText {
    patient: String,
    recording: String,
    start_date: String,
    start_time: String,
    header_bytes: String,
    reserved: String,
    records: String,
    duration: String,
    signals: String,
}

impl FixedText {
    fn read(c: &mut Cursor<'_>) -> Result<Self, FormatError> {
        let mut text = |n: usize, field: &'static str| {
            let (b, at) = c.take(n);
            check_ascii(field, None, b, at)
        };
        Ok(Self {
            patient: text(80, "patient")?,
            recording: text(80, "recording")?,
            start_date: text(8, "start date")?,
            start_time: text(8, "start time")?,
            header_bytes: text(8, "header bytes")?,
            reserved: text(44, "reserved")?,
            records: text(8, "number of data records")?,
            duration: text(8, "record duration")?,
            signals: text(4, "number of signals")?,
        })
    }
}

/// The number of signals, checked against the header-bytes field and the bytes present;
/// returns it with the header's length.
fn signal_count(fixed: &FixedText, have: usize) -> Result<(usize, usize), FormatError> {
    let ns = parse_int("number of signals", None, &fixed.signals)?;
    if ns < 1 {
        return Err(FormatError::BadField {
            field: "number of signals",
            channel: None,
            value: ns.to_string(),
            problem: "a file needs at least one signal".into(),
        });
    }
    let ns = ns as usize; // < 10_000 (4 digits)
    let header_bytes = parse_int("header bytes", None, &fixed.header_bytes)?;
    let expected_hb = FIXED_HEADER_BYTES + SIGNAL_HEADER_BYTES * ns;
    if header_bytes != expected_hb as i64 {
        return Err(FormatError::BadField {
            field: "header bytes",
            channel: None,
            value: header_bytes.to_string(),
            problem: format!("must be 256 * (signals + 1) = {expected_hb} for {ns} signals"),
        });
    }
    if have < expected_hb {
        return Err(FormatError::Truncated {
            what: format!("the header of {ns} signals"),
            needed: expected_hb as u64,
            got: have as u64,
        });
    }
    Ok((ns, expected_hb))
}

/// EDF+/BDF+ continuity from the reserved field ("EDF+C", "EDF+D", or plain).
fn parse_plus(format: Format, reserved: &str) -> Result<Plus, FormatError> {
    let r = reserved.as_bytes();
    let tag = match format {
        Format::Edf => b"EDF+",
        Format::Bdf => b"BDF+",
    };
    if !r.starts_with(tag) {
        return Ok(Plus::No);
    }
    match r.get(4) {
        Some(b'C') => Ok(Plus::Continuous),
        Some(b'D') => Ok(Plus::Discontinuous),
        _ => Err(FormatError::BadField {
            field: "reserved",
            channel: None,
            value: format!("{reserved:?}"),
            problem: format!(
                "{} must be followed by C or D",
                String::from_utf8_lossy(tag)
            ),
        }),
    }
}

/// Widths and names of the per-signal fields, in file order.
const SIGNAL_FIELDS: [(usize, &str); 10] = [
    (16, "label"),
    (80, "transducer"),
    (8, "physical dimension"),
    (8, "physical minimum"),
    (8, "physical maximum"),
    (8, "digital minimum"),
    (8, "digital maximum"),
    (80, "prefiltering"),
    (8, "samples per record"),
    (32, "signal reserved"),
];

/// The per-signal text fields (each field for all signals, then the next field), checked to
/// be printable ASCII: the labels, and one column of `ns` texts per field.
fn read_signal_columns(
    c: &mut Cursor<'_>,
    ns: usize,
) -> Result<(Vec<String>, Vec<Vec<String>>), FormatError> {
    let mut cols: Vec<Vec<String>> = Vec::with_capacity(SIGNAL_FIELDS.len());
    let mut labels: Vec<String> = Vec::with_capacity(ns);
    for (w, field) in SIGNAL_FIELDS {
        let mut col = Vec::with_capacity(ns);
        for i in 0..ns {
            let (b, at) = c.take(w);
            // Labels are not known yet while the label field itself is checked.
            let label = labels
                .get(i)
                .map(|l| l.trim().to_string())
                .unwrap_or_default();
            let chan = Some(ChannelRef { index: i, label });
            let s = check_ascii(field, chan, b, at)?;
            if field == "label" {
                labels.push(s.clone());
            }
            col.push(s);
        }
        cols.push(col);
    }
    Ok((labels, cols))
}

/// Signal `i` from the columns: numbers parsed, ranges and scale checked.
fn parse_signal(
    format: Format,
    i: usize,
    labels: &[String],
    cols: &[Vec<String>],
) -> Result<SignalHeader, FormatError> {
    let (dlo, dhi) = format.digital_limits();
    let ch = || {
        Some(ChannelRef {
            index: i,
            label: labels[i].trim().to_string(),
        })
    };
    let pmin = parse_f64("physical minimum", ch(), &cols[3][i])?;
    let pmax = parse_f64("physical maximum", ch(), &cols[4][i])?;
    let dmin = parse_int("digital minimum", ch(), &cols[5][i])?;
    let dmax = parse_int("digital maximum", ch(), &cols[6][i])?;
    let spr = parse_int("samples per record", ch(), &cols[8][i])?;
    if pmin == pmax {
        return Err(FormatError::PhysicalRangeEmpty {
            channel: ch().unwrap(),
            value: pmin,
        });
    }
    for (v, field) in [(dmin, "digital minimum"), (dmax, "digital maximum")] {
        if v < dlo as i64 || v > dhi as i64 {
            return Err(FormatError::BadField {
                field,
                channel: ch(),
                value: v.to_string(),
                problem: format!(
                    "outside the {}-bit sample range {dlo}..={dhi}",
                    8 * format.sample_bytes()
                ),
            });
        }
    }
    if dmin >= dmax {
        return Err(FormatError::DigitalRange {
            channel: ch().unwrap(),
            min: dmin,
            max: dmax,
        });
    }
    if let Some(problem) = scale_problem(pmin, pmax, dmin, dmax) {
        return Err(FormatError::BadScale {
            channel: ch().unwrap(),
            physical_min: pmin,
            physical_max: pmax,
            digital_min: dmin,
            digital_max: dmax,
            problem,
        });
    }
    if spr < 1 {
        return Err(FormatError::BadField {
            field: "samples per record",
            channel: ch(),
            value: spr.to_string(),
            problem: "must be at least 1".into(),
        });
    }
    Ok(SignalHeader {
        label: labels[i].clone(),
        transducer: cols[1][i].clone(),
        physical_dimension: cols[2][i].clone(),
        physical_min: pmin,
        physical_max: pmax,
        digital_min: dmin as i32,
        digital_max: dmax as i32,
        prefiltering: cols[7][i].clone(),
        samples_per_record: spr as usize, // <= 99_999_999 (8 digits)
        reserved: cols[9][i].clone(),
    })
}

/// Why converting digital to physical values would give NaN or infinity, if it would.
fn scale_problem(pmin: f64, pmax: f64, dmin: i64, dmax: i64) -> Option<&'static str> {
    let gain = (pmax - pmin) / (dmax - dmin) as f64;
    if !gain.is_finite() {
        Some("the gain overflows")
    } else if !gain.is_normal() {
        Some("the gain underflows to zero or a subnormal number")
    } else if pmin.abs() > f32::MAX as f64 || pmax.abs() > f32::MAX as f64 {
        Some("physical values beyond the f32 range")
    } else {
        None
    }
}

/// A positive record duration (0 only for EDF+ files of annotations alone), and an
/// annotation signal in every EDF+/BDF+ file.
fn check_record_layout(
    format: Format,
    plus: Plus,
    fixed: &FixedText,
    record_duration: f64,
    signals: &[SignalHeader],
) -> Result<(), FormatError> {
    let only_annotations = signals.iter().all(|s| s.is_annotation());
    let duration_ok =
        record_duration > 0.0 || (record_duration == 0.0 && plus != Plus::No && only_annotations);
    if !duration_ok {
        return Err(FormatError::BadField {
            field: "record duration",
            channel: None,
            value: fixed.duration.trim().to_string(),
            problem:
                "must be > 0 seconds (0 is allowed only in EDF+ files holding annotations alone)"
                    .into(),
        });
    }
    if plus != Plus::No && !signals.iter().any(|s| s.is_annotation()) {
        return Err(FormatError::BadField {
            field: "reserved",
            channel: None,
            value: format!("{:?}", fixed.reserved),
            problem: format!(
                "an {} file must have an '{}' signal",
                &fixed.reserved[..5],
                format.annotation_label()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HeaderSpec {
        HeaderSpec {
            format: Format::Edf,
            patient: "X X X X".into(),
            recording: "Startdate X X X X".into(),
            start_date: "01.02.03".into(),
            start_time: "04.05.06".into(),
            reserved: String::new(),
            num_records: 2,
            record_duration: 0.5,
            signals: vec![SignalHeader {
                label: "Fp1".into(),
                transducer: "AgAgCl".into(),
                physical_dimension: "uV".into(),
                physical_min: -100.0,
                physical_max: 100.0,
                digital_min: -2048,
                digital_max: 2047,
                prefiltering: "HP:0.1Hz".into(),
                samples_per_record: 64,
                reserved: String::new(),
            }],
        }
    }

    #[test]
    fn spec_round_trip_and_padding() {
        let h = Header::from_spec(&spec()).unwrap();
        assert_eq!(h.as_bytes().len(), 512);
        assert!(!h.as_bytes().contains(&0), "never NUL padding");
        assert_eq!(&h.as_bytes()[..8], b"0       ");
        assert_eq!(h.to_spec(), spec());
        assert_eq!(h.sample_rate(0), 128.0);
        assert_eq!(h.start_datetime(), (2003, 2, 1, 4, 5, 6));
    }

    #[test]
    fn conversion_inverts_and_clips() {
        let s = &spec().signals[0];
        for d in [-2048, -1, 0, 5, 2047] {
            assert_eq!(s.to_digital(s.to_physical(d)), Some((d, false)));
        }
        assert_eq!(s.to_digital(1e9), Some((2047, true)));
        assert_eq!(s.to_digital(-1e9), Some((-2048, true)));
        assert_eq!(s.to_digital(f64::NAN), None);
    }

    #[test]
    fn format_number_fits_width() {
        assert_eq!(format_number(0.5, 8).unwrap(), "0.5");
        assert_eq!(format_number(-35.9006, 8).unwrap(), "-35.9006");
        assert_eq!(format_number(0.998976623, 8).unwrap(), "0.998977");
        assert_eq!(format_number(-1e-12, 8).unwrap(), "0");
        assert_eq!(format_number(1e12, 8), None);
        assert_eq!(format_number(f64::NAN, 8), None);
    }

    #[test]
    fn zero_duration_only_for_annotation_only_edf_plus() {
        let mut sp = spec();
        sp.record_duration = 0.0;
        sp.signals[0].label = "EDF Annotations".into();
        sp.reserved = "EDF+C".into();
        assert!(
            Header::from_spec(&sp).is_ok(),
            "EDF+ allows 0 s records holding annotations alone"
        );
        sp.reserved.clear();
        assert!(Header::from_spec(&sp).is_err(), "plain EDF does not");
        sp.reserved = "EDF+C".into();
        sp.signals.push(spec().signals[0].clone());
        assert!(
            Header::from_spec(&sp).is_err(),
            "nor EDF+ with ordinary signals"
        );
    }

    #[test]
    fn with_num_records_changes_only_that_field() {
        let h = Header::from_spec(&spec()).unwrap();
        let h2 = h.with_num_records(-1).unwrap();
        assert_eq!(h2.declared_records(), -1);
        let diff: Vec<usize> = (0..512)
            .filter(|&i| h.as_bytes()[i] != h2.as_bytes()[i])
            .collect();
        assert!(diff.iter().all(|&i| (236..244).contains(&i)), "{diff:?}");
    }
}
