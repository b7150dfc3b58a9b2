//! Zero-copy, allocation-free parsing of a model file (`no_std`): a safetensors header read by
//! a small JSON scanner, validated completely, giving borrowed views of the tensors.

use crate::core::{
    Activation, Blend, CoreError, F32Weights, Front, FrontShape, Int8Weights, Normalisation,
    OlaShape, Sae, SaeConfig, Skip, SlowGate, TENSOR_NAMES, Weights,
};
use ::core::ops::Range;

/// Largest JSON header accepted (the safetensors crate's limit).
const MAX_HEADER: u64 = 100_000_000;
/// Deepest JSON nesting skipped in unknown values (keeps recursion bounded).
const MAX_DEPTH: usize = 16;

/// Metadata keys, in the order of [`ViewMeta`]'s fields.
pub const META_KEYS: [&str; 15] = [
    "format_version",
    "d_in",
    "d_sae",
    "k",
    "hop",
    "activation",
    "normalisation",
    "sample_rate_hz",
    "channel_type",
    "provenance",
    "skip_gate",
    "ola",
    "front",
    "blend",
    "blend_slow",
];

/// Format versions: 1 = f32 tensors; 2 = adds int8 matrices with per-latent f32 scales.
pub const FORMAT_VERSION_F32: u32 = 1;
/// Format version of files with int8 matrices.
pub const FORMAT_VERSION_INT8: u32 = 2;
/// Format version of files with the gated linear path ([`crate::core::Skip`]: tensor
/// `skip_taps`, metadata `skip_gate`); older readers refuse them rather than ignore the path.
pub const FORMAT_VERSION_SKIP: u32 = 3;
/// Format version of files naming an overlap-add taper other than Hann (metadata `ola`);
/// older readers refuse them rather than combine the windows differently.
pub const FORMAT_VERSION_OLA: u32 = 4;
/// Format version of files with a convolutional front end ([`crate::core::Front`]: tensor
/// `front`, metadata `front` = `{width}x{depth}k{kernel}`); older readers refuse them rather
/// than encode the raw window.
pub const FORMAT_VERSION_FRONT: u32 = 5;
/// Format version of files with a correction gate ([`crate::core::Blend`]: metadata `blend` =
/// `{lo},{hi}`); older readers refuse them rather than apply every correction whole.
pub const FORMAT_VERSION_BLEND: u32 = 6;
/// Format version of files whose correction gate has a separate ramp for the slow part
/// ([`crate::core::SlowGate`]: metadata `blend_slow` = `{lo},{hi},{half}`); older readers
/// refuse them rather than gate the whole correction with the fast part's ramp.
pub const FORMAT_VERSION_BLEND_SLOW: u32 = 7;

/// Metadata of a parsed model, borrowing its strings from the file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewMeta<'a> {
    /// 1 (f32) or 2 (int8 matrices allowed).
    pub format_version: u32,
    /// Window length in samples.
    pub d_in: usize,
    /// Number of latents.
    pub d_sae: usize,
    /// Latents kept per window.
    pub k: usize,
    /// Streaming hop in samples.
    pub hop: usize,
    /// TopK flavour.
    pub activation: Activation,
    /// Window normalisation.
    pub normalisation: Normalisation,
    /// Sample rate the model was trained for.
    pub sample_rate_hz: f32,
    /// Channel type it was trained for, as raw JSON string content (escapes not decoded; the
    /// std `Model::meta` decodes them). Empty if absent.
    pub channel_type: &'a str,
    /// Training provenance, raw JSON string content as `channel_type`. Empty if absent.
    pub provenance: &'a str,
    /// True if `W_enc`/`W_dec` are int8.
    pub int8: bool,
    /// Gate of the linear path ([`crate::core::Skip::gate`]), if the model has one.
    pub skip_gate: Option<f32>,
    /// Overlap-add taper the model was chosen with (metadata `ola`; Hann when absent).
    pub ola: OlaShape,
    /// Shape of the convolutional front end, if the model has one.
    pub front: Option<FrontShape>,
    /// The correction gate, if the model has one.
    pub blend: Option<Blend>,
}

/// A validated model: metadata plus the SAE borrowing the tensors.
#[derive(Clone, Copy, Debug)]
pub struct ModelView<'a> {
    meta: ViewMeta<'a>,
    sae: Sae<'a>,
}

impl<'a> ModelView<'a> {
    /// Parses and validates a whole model file held in `bytes` (any alignment); never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CoreError> {
        let layout = Layout::parse(bytes)?;
        Ok(layout.view(bytes))
    }

    /// The metadata.
    pub const fn meta(&self) -> &ViewMeta<'a> {
        &self.meta
    }

    /// The SAE.
    pub const fn sae(&self) -> Sae<'a> {
        self.sae
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    I8,
    Other,
}

impl Dtype {
    const fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::I8 => 1,
            Self::Other => 1,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct TensorInfo {
    dtype: Dtype,
    shape: [usize; 4],
    rank: usize,
    begin: u64,
    end: u64,
}

/// Where everything is in a validated file (no borrows, so an owner can keep it beside the
/// bytes and re-create views without re-validating).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    version: u32,
    config: SaeConfig,
    hop: usize,
    sample_rate_hz: f32,
    channel_type: Range<usize>,
    provenance: Range<usize>,
    int8: bool,
    skip_gate: Option<f32>,
    ola: OlaShape,
    front: Option<FrontShape>,
    blend: Option<Blend>,
    /// Absolute byte ranges, indexed like [`TENSOR_NAMES`].
    tensors: [Range<usize>; 8],
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn err(&self) -> CoreError {
        CoreError::HeaderSyntax { offset: self.pos }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> Result<(), CoreError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }

    /// A string's raw content (between the quotes) and its absolute range in `s`.
    fn string(&mut self) -> Result<(&'a [u8], Range<usize>), CoreError> {
        self.eat(b'"')?;
        let start = self.pos;
        loop {
            match self.s.get(self.pos) {
                None => return Err(self.err()),
                Some(b'"') => break,
                Some(b'\\') => match self.s.get(self.pos + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                    Some(b'u') => {
                        let hex = self.s.get(self.pos + 2..self.pos + 6).ok_or(self.err())?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(self.err());
                        }
                        self.pos += 6;
                    }
                    _ => return Err(self.err()),
                },
                Some(&c) if c < 0x20 => return Err(self.err()),
                Some(_) => self.pos += 1,
            }
        }
        let end = self.pos;
        self.pos += 1;
        Ok((&self.s[start..end], start..end))
    }

    fn uint(&mut self) -> Result<u64, CoreError> {
        self.ws();
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.s.get(self.pos) {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or(self.err())?;
            self.pos += 1;
        }
        if self.pos == start {
            Err(self.err())
        } else {
            Ok(v)
        }
    }

    /// `true` and consumes a `,` if another element follows, `false` and consumes `close` at
    /// the end.
    fn next_or_close(&mut self, close: u8) -> Result<bool, CoreError> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.err()),
        }
    }

    /// Skips any JSON value (for keys this format does not use).
    fn skip_value(&mut self, depth: usize) -> Result<(), CoreError> {
        if depth > MAX_DEPTH {
            return Err(self.err());
        }
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                self.pos += 1;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.string()?;
                    self.eat(b':')?;
                    self.skip_value(depth + 1)?;
                    if !self.next_or_close(b'}')? {
                        return Ok(());
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    if !self.next_or_close(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(_) => {
                // number, true, false, null: a run of literal characters
                let start = self.pos;
                while let Some(c) = self.s.get(self.pos) {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                if self.pos == start {
                    Err(self.err())
                } else {
                    Ok(())
                }
            }
            None => Err(self.err()),
        }
    }

    /// `[u, u, ...]` into `out`, returning the count (more than `out.len()` is reported as
    /// `out.len() + 1` without storing).
    fn uint_array(&mut self, out: &mut [u64]) -> Result<usize, CoreError> {
        self.eat(b'[')?;
        let mut n = 0;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(0);
        }
        loop {
            let v = self.uint()?;
            if let Some(slot) = out.get_mut(n) {
                *slot = v;
            }
            n = (n + 1).min(out.len() + 1);
            if !self.next_or_close(b']')? {
                return Ok(n);
            }
        }
    }

    fn tensor_info(&mut self, name: &'static str) -> Result<TensorInfo, CoreError> {
        self.eat(b'{')?;
        let mut dtype = None;
        let mut shape = None;
        let mut offsets = None;
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                let key_pos = self.pos;
                let (key, _) = self.string()?;
                self.eat(b':')?;
                let dup = CoreError::DuplicateKey { offset: key_pos };
                match key {
                    b"dtype" => {
                        let (d, _) = self.string()?;
                        let d = match d {
                            b"F32" => Dtype::F32,
                            b"I8" => Dtype::I8,
                            _ => Dtype::Other,
                        };
                        if dtype.replace(d).is_some() {
                            return Err(dup);
                        }
                    }
                    b"shape" => {
                        let mut dims = [0u64; 4];
                        let rank = self.uint_array(&mut dims)?;
                        let mut s = [0usize; 4];
                        for (o, &d) in s.iter_mut().zip(&dims) {
                            *o = usize::try_from(d)
                                .map_err(|_| CoreError::BadOffsets { tensor: name })?;
                        }
                        if shape.replace((s, rank)).is_some() {
                            return Err(dup);
                        }
                    }
                    b"data_offsets" => {
                        let mut o = [0u64; 2];
                        let n = self.uint_array(&mut o)?;
                        if n != 2 {
                            return Err(CoreError::BadOffsets { tensor: name });
                        }
                        if offsets.replace((o[0], o[1])).is_some() {
                            return Err(dup);
                        }
                    }
                    _ => self.skip_value(1)?,
                }
                if !self.next_or_close(b'}')? {
                    break;
                }
            }
        }
        let err = self.err();
        let dtype = dtype.ok_or(err)?;
        let (shape, rank) = shape.ok_or(err)?;
        let (begin, end) = offsets.ok_or(err)?;
        Ok(TensorInfo {
            dtype,
            shape,
            rank,
            begin,
            end,
        })
    }
}

fn parse_usize(raw: Option<&[u8]>, key: &'static str) -> Result<usize, CoreError> {
    let raw = raw.ok_or(CoreError::MissingMetadata { key })?;
    ::core::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or(CoreError::BadMetadata { key })
}

impl Layout {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, CoreError> {
        let file_len = bytes.len() as u64;
        let Some(&[a, b, c, d, e, f, g, h]) = bytes.get(..8) else {
            return Err(CoreError::Truncated {
                needed: 8,
                got: file_len,
            });
        };
        let header_len = u64::from_le_bytes([a, b, c, d, e, f, g, h]);
        if header_len > MAX_HEADER {
            return Err(CoreError::HeaderTooLarge { len: header_len });
        }
        let data_start = 8 + header_len;
        if data_start > file_len {
            return Err(CoreError::Truncated {
                needed: data_start,
                got: file_len,
            });
        }
        // Both fit in usize: they are <= bytes.len().
        let data_start = data_start as usize;
        let header = &bytes[8..data_start];
        let mut sc = Scanner { s: header, pos: 0 };

        let mut meta: [Option<(&[u8], Range<usize>)>; META_KEYS.len()] = Default::default();
        let mut tensors: [Option<TensorInfo>; 8] = [None; 8];
        let mut name_pos = [0usize; 8];

        sc.eat(b'{')?;
        if sc.peek() == Some(b'}') {
            sc.pos += 1;
        } else {
            let mut seen_meta = false;
            loop {
                let key_pos = sc.pos;
                let (key, _) = sc.string()?;
                sc.eat(b':')?;
                if key == b"__metadata__" {
                    if seen_meta {
                        return Err(CoreError::DuplicateKey { offset: key_pos });
                    }
                    seen_meta = true;
                    sc.eat(b'{')?;
                    if sc.peek() == Some(b'}') {
                        sc.pos += 1;
                    } else {
                        loop {
                            let kp = sc.pos;
                            let (mk, _) = sc.string()?;
                            sc.eat(b':')?;
                            let value = sc.string()?;
                            if let Some(i) = META_KEYS.iter().position(|k| k.as_bytes() == mk)
                                && meta[i].replace(value).is_some()
                            {
                                return Err(CoreError::DuplicateKey { offset: kp });
                            }
                            if !sc.next_or_close(b'}')? {
                                break;
                            }
                        }
                    }
                } else {
                    let i = TENSOR_NAMES
                        .iter()
                        .position(|n| n.as_bytes() == key)
                        .ok_or(CoreError::UnknownTensor { offset: key_pos })?;
                    let info = sc.tensor_info(TENSOR_NAMES[i])?;
                    if tensors[i].replace(info).is_some() {
                        return Err(CoreError::DuplicateKey { offset: key_pos });
                    }
                    name_pos[i] = key_pos;
                }
                if !sc.next_or_close(b'}')? {
                    break;
                }
            }
        }
        // Only padding may follow the object.
        if sc.peek().is_some() {
            return Err(sc.err());
        }

        // Metadata.
        let raw = |i: usize| meta[i].as_ref().map(|(v, _)| *v);
        let version = parse_usize(raw(0), META_KEYS[0])?;
        let version = match u32::try_from(version) {
            Ok(
                v @ (FORMAT_VERSION_F32
                | FORMAT_VERSION_INT8
                | FORMAT_VERSION_SKIP
                | FORMAT_VERSION_OLA
                | FORMAT_VERSION_FRONT
                | FORMAT_VERSION_BLEND
                | FORMAT_VERSION_BLEND_SLOW),
            ) => v,
            Ok(v) => return Err(CoreError::UnsupportedVersion { found: v }),
            Err(_) => return Err(CoreError::UnsupportedVersion { found: u32::MAX }),
        };
        let d_in = parse_usize(raw(1), META_KEYS[1])?;
        let d_sae = parse_usize(raw(2), META_KEYS[2])?;
        let k = parse_usize(raw(3), META_KEYS[3])?;
        let hop = parse_usize(raw(4), META_KEYS[4])?;
        let text = |i: usize| -> Result<&str, CoreError> {
            let v = raw(i).ok_or(CoreError::MissingMetadata { key: META_KEYS[i] })?;
            ::core::str::from_utf8(v).map_err(|_| CoreError::BadMetadata { key: META_KEYS[i] })
        };
        let activation = Activation::from_name(text(5)?)?;
        let normalisation = Normalisation::from_name(text(6)?)?;
        let sample_rate_hz = text(7)?
            .parse::<f32>()
            .ok()
            .filter(|r| r.is_finite() && *r > 0.0)
            .ok_or(CoreError::BadMetadata { key: META_KEYS[7] })?;
        for i in [8, 9] {
            if let Some((v, _)) = &meta[i] {
                ::core::str::from_utf8(v)
                    .map_err(|_| CoreError::BadMetadata { key: META_KEYS[i] })?;
            }
        }
        let range_of = |i: usize| {
            meta[i]
                .as_ref()
                .map(|(_, r)| (r.start + 8)..(r.end + 8))
                .unwrap_or(0..0)
        };
        if d_in == 0
            || d_sae == 0
            || d_in
                .checked_mul(d_sae)
                .and_then(|n| n.checked_mul(4))
                .is_none()
        {
            return Err(CoreError::InvalidDims { d_in, d_sae });
        }
        if k == 0 || k > d_sae {
            return Err(CoreError::InvalidK { k, d_sae });
        }
        if hop == 0 || hop > d_in {
            return Err(CoreError::InvalidHop { hop, d_in });
        }

        // Tensors: which are required depends on the matrices' dtype.
        let w_enc = tensors[0].ok_or(CoreError::MissingTensor {
            tensor: TENSOR_NAMES[0],
        })?;
        let int8 = w_enc.dtype == Dtype::I8;
        if int8 && version < FORMAT_VERSION_INT8 {
            return Err(CoreError::UnsupportedDtype {
                tensor: TENSOR_NAMES[0],
            });
        }
        let mat = if int8 { Dtype::I8 } else { Dtype::F32 };
        let skip_taps = tensors[6].map_or(0, |t| t.shape[0]);
        // Optional parts stored as a tensor plus a metadata key: both or neither, and only
        // from the format version that introduced them (older versions never had the tensor).
        let paired =
            |tensor: usize, key: usize, since: u32| -> Result<Option<&str>, CoreError> {
                match (tensors[tensor].is_some(), raw(key)) {
                    (false, None) => Ok(None),
                    (true, Some(v)) if version >= since => ::core::str::from_utf8(v)
                        .map(Some)
                        .map_err(|_| CoreError::BadMetadata {
                            key: META_KEYS[key],
                        }),
                    (true, Some(_)) => Err(CoreError::UnknownTensor {
                        offset: name_pos[tensor],
                    }),
                    (true, None) => Err(CoreError::MissingMetadata {
                        key: META_KEYS[key],
                    }),
                    (false, Some(_)) => Err(CoreError::MissingTensor {
                        tensor: TENSOR_NAMES[tensor],
                    }),
                }
            };
        // The front end (format 5) and the linear path's gate (format 3).
        let front = paired(7, 12, FORMAT_VERSION_FRONT)?
            .map(|v| FrontShape::parse(v).ok_or(CoreError::BadMetadata { key: META_KEYS[12] }))
            .transpose()?;
        let skip_gate = paired(6, 10, FORMAT_VERSION_SKIP)?
            .map(|v| {
                v.parse::<f32>()
                    .ok()
                    .filter(|g| g.is_finite() && *g >= 0.0)
                    .ok_or(CoreError::BadMetadata { key: META_KEYS[10] })
            })
            .transpose()?;
        let expect: [(Dtype, [usize; 2]); 8] = [
            (mat, [d_in, d_sae]),
            (mat, [d_sae, d_in]),
            (Dtype::F32, [d_sae, 0]),
            (Dtype::F32, [d_in, 0]),
            (Dtype::F32, [d_sae, 0]),
            (Dtype::F32, [d_sae, 0]),
            (Dtype::F32, [skip_taps.max(1), 0]),
            (Dtype::F32, [front.map_or(1, |f| f.n_params()), 0]),
        ];
        let required = if int8 { 6 } else { 4 };
        let ola = match raw(11) {
            None => OlaShape::Hann,
            Some(v) if version >= FORMAT_VERSION_OLA => ::core::str::from_utf8(v)
                .ok()
                .and_then(OlaShape::from_name)
                .ok_or(CoreError::BadMetadata { key: META_KEYS[11] })?,
            Some(_) => return Err(CoreError::BadMetadata { key: META_KEYS[11] }),
        };
        let blend = match raw(13) {
            None => None,
            Some(v) if version >= FORMAT_VERSION_BLEND => Some(
                ::core::str::from_utf8(v)
                    .ok()
                    .and_then(Blend::parse)
                    .ok_or(CoreError::BadMetadata { key: META_KEYS[13] })?,
            ),
            Some(_) => return Err(CoreError::BadMetadata { key: META_KEYS[13] }),
        };
        let blend = match (raw(14), blend) {
            (None, b) => b,
            (Some(v), Some(b)) if version >= FORMAT_VERSION_BLEND_SLOW => Some(Blend {
                slow: Some(
                    ::core::str::from_utf8(v)
                        .ok()
                        .and_then(SlowGate::parse)
                        .ok_or(CoreError::BadMetadata { key: META_KEYS[14] })?,
                ),
                ..b
            }),
            // A slow ramp without the fast one, or in a file too old to have it.
            (Some(_), _) => return Err(CoreError::BadMetadata { key: META_KEYS[14] }),
        };
        let data_len = file_len - data_start as u64;
        let mut ranges: [Range<usize>; 8] = Default::default();
        let mut covered = 0u64;
        for i in 0..8 {
            let name = TENSOR_NAMES[i];
            let Some(t) = tensors[i] else {
                if i < required {
                    return Err(CoreError::MissingTensor { tensor: name });
                }
                continue;
            };
            if i >= required && i < 6 {
                return Err(CoreError::UnknownTensor {
                    offset: name_pos[i],
                });
            }
            let (dtype, shape) = expect[i];
            if t.dtype != dtype {
                return Err(CoreError::UnsupportedDtype { tensor: name });
            }
            let shape_ok = if shape[1] == 0 {
                t.rank == 1 && t.shape[0] == shape[0]
            } else {
                t.rank == 2 && t.shape[0] == shape[0] && t.shape[1] == shape[1]
            };
            if !shape_ok {
                let got = match t.rank {
                    1 => [t.shape[0], 0],
                    2 => [t.shape[0], t.shape[1]],
                    r => [usize::MAX, r],
                };
                return Err(CoreError::ShapeMismatch {
                    tensor: name,
                    expected: shape,
                    got,
                });
            }
            let numel = (shape[0] * shape[1].max(1)) as u64;
            let size = numel * dtype.size();
            if t.end < t.begin || t.end - t.begin != size {
                return Err(CoreError::BadOffsets { tensor: name });
            }
            if t.end > data_len {
                let needed = (data_start as u64).saturating_add(t.end);
                return Err(CoreError::Truncated {
                    needed,
                    got: file_len,
                });
            }
            if t.begin % dtype.size() != 0 {
                return Err(CoreError::MisalignedTensor { tensor: name });
            }
            covered += size;
            ranges[i] = (data_start + t.begin as usize)..(data_start + t.end as usize);
        }
        for i in 0..8 {
            for j in i + 1..8 {
                let (a, b) = (&ranges[i], &ranges[j]);
                if !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end {
                    return Err(CoreError::OverlappingTensors {
                        a: TENSOR_NAMES[i],
                        b: TENSOR_NAMES[j],
                    });
                }
            }
        }
        if covered != data_len {
            return Err(CoreError::UncoveredData { data_len, covered });
        }

        let layout = Self {
            version,
            config: SaeConfig {
                d_in,
                d_sae,
                k,
                activation,
                normalisation,
            },
            hop,
            sample_rate_hz,
            channel_type: range_of(8),
            provenance: range_of(9),
            int8,
            skip_gate,
            ola,
            front,
            blend,
            tensors: ranges,
        };
        // Lengths and finiteness of every weight, the linear path's and the front's too.
        let sae = Sae::new(layout.config, layout.weights(bytes))?;
        if let Some(skip) = layout.skip(bytes) {
            sae.with_skip(skip)?;
        }
        if let Some(front) = layout.front(bytes) {
            sae.with_front(front)?;
        }
        Ok(layout)
    }

    fn weights<'a>(&self, bytes: &'a [u8]) -> Weights<'a> {
        let t = |i: usize| bytes.get(self.tensors[i].clone()).unwrap_or(&[]);
        if self.int8 {
            Weights::Int8(Int8Weights {
                w_enc: t(0),
                w_enc_scale: t(4),
                w_dec: t(1),
                w_dec_scale: t(5),
                b_enc: t(2),
                b_dec: t(3),
            })
        } else {
            Weights::F32(F32Weights {
                w_enc: t(0),
                w_dec: t(1),
                b_enc: t(2),
                b_dec: t(3),
            })
        }
    }

    fn skip<'a>(&self, bytes: &'a [u8]) -> Option<Skip<'a>> {
        self.skip_gate.map(|gate| Skip {
            taps: bytes.get(self.tensors[6].clone()).unwrap_or(&[]),
            gate,
        })
    }

    fn front<'a>(&self, bytes: &'a [u8]) -> Option<Front<'a>> {
        self.front.map(|shape| Front {
            shape,
            params: bytes.get(self.tensors[7].clone()).unwrap_or(&[]),
        })
    }

    /// The view of `bytes`, which must be the bytes this layout was parsed from.
    pub(crate) fn view<'a>(&self, bytes: &'a [u8]) -> ModelView<'a> {
        let s = |r: &Range<usize>| {
            bytes
                .get(r.clone())
                .and_then(|b| ::core::str::from_utf8(b).ok())
                .unwrap_or("")
        };
        ModelView {
            meta: ViewMeta {
                format_version: self.version,
                d_in: self.config.d_in,
                d_sae: self.config.d_sae,
                k: self.config.k,
                hop: self.hop,
                activation: self.config.activation,
                normalisation: self.config.normalisation,
                sample_rate_hz: self.sample_rate_hz,
                channel_type: s(&self.channel_type),
                provenance: s(&self.provenance),
                int8: self.int8,
                skip_gate: self.skip_gate,
                ola: self.ola,
                front: self.front,
                blend: self.blend,
            },
            sae: Sae::from_validated(
                self.config,
                self.weights(bytes),
                self.skip(bytes),
                self.front(bytes),
            )
            .with_ola_shape(self.ola)
            .with_validated_blend(self.blend),
        }
    }
}
