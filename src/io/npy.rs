//! The one `.npy` header parser (NumPy format versions 1-3) and element decoder, shared by
//! the whole-file reader of `eval::npy` (EEGdenoiseNet's epoch files) and the streaming
//! row reader of `train::data_file` (training matrices larger than memory). Floats only:
//! f2 (through `half`), f4 and f8, either byte order.
//!
//! Errors are plain problem texts; each reader wraps them with the file's path.

/// The magic bytes every `.npy` file starts with.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// Largest header accepted: real headers are a few hundred bytes, and a corrupt length must
/// not make a streaming reader allocate gigabytes.
const MAX_HEADER: usize = 1 << 20;

/// Element type of an `.npy` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyElement {
    /// IEEE binary16 (`f2`).
    F16,
    /// IEEE binary32 (`f4`).
    F32,
    /// IEEE binary64 (`f8`).
    F64,
}

impl NpyElement {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// What an `.npy` header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub element: NpyElement,
    /// Little-endian elements (`<`; `|` for one-byte types counts as little).
    pub little_endian: bool,
    /// Column-major (Fortran) order.
    pub fortran_order: bool,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Byte offset of the data (preamble plus header).
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of elements (`None` on overflow).
    pub fn count(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Bytes of data the shape needs (`None` on overflow).
    pub fn data_len(&self) -> Option<usize> {
        self.count()?.checked_mul(self.element.size())
    }
}

/// Total bytes of preamble and header, read from the first 10 bytes (12 for versions 2 and
/// 3): how much a streaming reader must read before calling [`parse_header`].
pub fn header_size(prefix: &[u8]) -> Result<usize, String> {
    if prefix.len() < 10 || &prefix[..6] != MAGIC {
        return Err("not a .npy file (missing \\x93NUMPY magic)".into());
    }
    let (hlen, hstart) = match prefix[6] {
        1 => (u16::from_le_bytes([prefix[8], prefix[9]]) as usize, 10),
        2 | 3 => match prefix.get(8..12) {
            Some(b) => (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12),
            None => return Err("truncated .npy header".into()),
        },
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    if hlen > MAX_HEADER {
        return Err(format!("implausibly large .npy header ({hlen} bytes)"));
    }
    Ok(hstart + hlen)
}

/// Parses the preamble and header at the start of `bytes` (the data may follow or not).
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    let data_offset = header_size(bytes)?;
    let hstart = if bytes[6] == 1 { 10 } else { 12 };
    let header = bytes
        .get(hstart..data_offset)
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not UTF-8")?;
    let descr = dict_value(header, "descr").ok_or("header lacks 'descr'")?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let (element, little_endian) = match descr {
        "<f2" | "float16" => (NpyElement::F16, true),
        ">f2" => (NpyElement::F16, false),
        "<f4" | "float32" => (NpyElement::F32, true),
        ">f4" => (NpyElement::F32, false),
        "<f8" | "float64" => (NpyElement::F64, true),
        ">f8" => (NpyElement::F64, false),
        d => return Err(format!("unsupported dtype {d:?} (need f2, f4 or f8)")),
    };
    let fortran_order = dict_value(header, "fortran_order")
        .ok_or("header lacks 'fortran_order'")?
        .trim()
        .starts_with("True");
    let shape_txt = dict_value(header, "shape").ok_or("header lacks 'shape'")?;
    let shape_txt = shape_txt
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("malformed shape")?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry {s:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader {
        element,
        little_endian,
        fortran_order,
        shape,
        data_offset,
    })
}

/// The text after `'key':` up to the next top-level comma (tuples kept whole).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let start = header.find(&pat)? + pat.len();
    let rest = &header[start..];
    let mut depth = 0i32;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

/// One element of `element` type from exactly `element.size()` bytes, widened to f64.
fn element_f64(element: NpyElement, little: bool, c: &[u8]) -> f64 {
    match (element, little) {
        (NpyElement::F16, true) => half::f16::from_le_bytes([c[0], c[1]]).to_f64(),
        (NpyElement::F16, false) => half::f16::from_be_bytes([c[0], c[1]]).to_f64(),
        (NpyElement::F32, true) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]).into(),
        (NpyElement::F32, false) => f32::from_be_bytes([c[0], c[1], c[2], c[3]]).into(),
        (NpyElement::F64, true) => {
            f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
        }
        (NpyElement::F64, false) => {
            f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
        }
    }
}

/// Appends the elements in `bytes` (whole elements of `h`'s type) to `out` as f64.
pub fn decode_f64(h: &NpyHeader, bytes: &[u8], out: &mut Vec<f64>) {
    out.extend(
        bytes
            .chunks_exact(h.element.size())
            .map(|c| element_f64(h.element, h.little_endian, c)),
    );
}

/// Appends the elements in `bytes` to `out` as f32 (f64 elements are rounded).
pub fn decode_f32(h: &NpyHeader, bytes: &[u8], out: &mut Vec<f32>) {
    match (h.element, h.little_endian) {
        // The common training layout, without the detour through f64.
        (NpyElement::F32, true) => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        (NpyElement::F16, true) => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        (e, little) => out.extend(
            bytes
                .chunks_exact(e.size())
                .map(|c| element_f64(e, little, c) as f32),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(descr: &str, shape: &str, version: u8) -> Vec<u8> {
        let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut b = MAGIC.to_vec();
        b.extend([version, 0]);
        if version == 1 {
            b.extend((h.len() as u16).to_le_bytes());
        } else {
            b.extend((h.len() as u32).to_le_bytes());
        }
        b.extend(h.as_bytes());
        b
    }

    #[test]
    fn versions_dtypes_and_shapes() {
        let b = file("<f2", "(3, 4)", 1);
        let h = parse_header(&b).unwrap();
        assert_eq!(h.data_offset, b.len());
        assert_eq!(header_size(&b[..10]).unwrap(), b.len());
        assert_eq!((h.element, h.little_endian), (NpyElement::F16, true));
        assert_eq!((h.shape.clone(), h.data_len()), (vec![3, 4], Some(24)));
        let b = file(">f8", "(5,)", 2);
        let h = parse_header(&b).unwrap();
        assert_eq!(
            (h.element, h.little_endian, h.shape),
            (NpyElement::F64, false, vec![5])
        );
        assert_eq!(h.data_offset, b.len());
        let e = parse_header(&file("<i8", "(1, 1)", 1)).unwrap_err();
        assert!(e.contains("unsupported dtype"), "{e}");
        let e = parse_header(&file("<f4", "(1, 1)", 9)).unwrap_err();
        assert!(e.contains("version 9"), "{e}");
        let b = file("<f4", "(1, 1)", 1);
        let e = parse_header(&b[..b.len() - 5]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn f16_decodes_exactly_through_half() {
        // IEEE binary16 reference values: 1, -2, the largest finite, the smallest
        // subnormal, 1/3 rounded, +inf and a NaN.
        let bits = [0x3c00u16, 0xc000, 0x7bff, 0x0001, 0x3555, 0x7c00, 0x7e00];
        let h = NpyHeader {
            element: NpyElement::F16,
            little_endian: true,
            fortran_order: false,
            shape: vec![bits.len()],
            data_offset: 0,
        };
        let bytes: Vec<u8> = bits.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        decode_f32(&h, &bytes, &mut out);
        assert_eq!(out[..5], [1.0, -2.0, 65504.0, 2f32.powi(-24), 0.333_251_95]);
        assert!(out[5].is_infinite() && out[6].is_nan());
        let mut wide = Vec::new();
        decode_f64(&h, &bytes[..10], &mut wide);
        assert_eq!(
            wide,
            out[..5].iter().map(|&v| f64::from(v)).collect::<Vec<_>>()
        );
    }
}
