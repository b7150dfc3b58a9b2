//! A small reader and writer for NumPy `.npy` files (format versions 1-3) holding f32 or f64
//! arrays, enough for EEGdenoiseNet's epoch files and for writing test fixtures.
//! Hand-written because it is ~150 lines and the crates that do it pull in ndarray.

use std::path::Path;

use super::EvalError;

/// A dense array read from `.npy`, converted to f64, in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements in row-major order.
    pub data: Vec<f64>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn bad(path: &Path, problem: impl Into<String>) -> EvalError {
    EvalError::Format {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Parses `.npy` bytes; `path` only names the source in errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<NpyArray, EvalError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(path, "not a .npy file (missing \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(path, "truncated header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(path, format!("unsupported .npy format version {v}"))),
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .ok_or_else(|| bad(path, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(path, "header is not UTF-8"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad(path, "header lacks 'descr'"))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order")
        .ok_or_else(|| bad(path, "header lacks 'fortran_order'"))?
        .trim()
        .starts_with("True");
    let shape_txt = dict_value(header, "shape").ok_or_else(|| bad(path, "header lacks 'shape'"))?;
    let shape_txt = shape_txt.trim().trim_start_matches('(');
    let shape_txt = shape_txt.split(')').next().unwrap_or("");
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(path, format!("bad shape entry {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (size, little) = match descr {
        "<f8" => (8, true),
        ">f8" => (8, false),
        "<f4" => (4, true),
        ">f4" => (4, false),
        d => {
            return Err(bad(
                path,
                format!("unsupported dtype {d:?} (need f4 or f8)"),
            ));
        }
    };
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(path, "shape overflows"))?;
    let body = &bytes[hstart + hlen..];
    let need = count
        .checked_mul(size)
        .ok_or_else(|| bad(path, "shape overflows"))?;
    if body.len() < need {
        return Err(bad(
            path,
            format!("data truncated: need {need} bytes, have {}", body.len()),
        ));
    }
    let mut data: Vec<f64> = body[..need]
        .chunks_exact(size)
        .map(|c| match (size, little) {
            (8, true) => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
            (8, false) => f64::from_be_bytes(c.try_into().unwrap_or([0; 8])),
            (_, true) => f32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64,
            (_, false) => f32::from_be_bytes(c.try_into().unwrap_or([0; 4])) as f64,
        })
        .collect();
    if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut t = vec![0.0; data.len()];
        for i in 0..r {
            for j in 0..c {
                t[i * c + j] = data[j * r + i];
            }
        }
        data = t;
    } else if fortran && shape.len() > 2 {
        return Err(bad(
            path,
            "Fortran-order arrays above 2-D are not supported",
        ));
    }
    Ok(NpyArray { shape, data })
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

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray, EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        path: path.into(),
        source,
    })?;
    parse_npy(&bytes, path)
}

/// Element type for [`write_npy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    /// Little-endian f32 (`<f4`).
    F32,
    /// Little-endian f64 (`<f8`), EEGdenoiseNet's type.
    F64,
}

/// Serialises a C-order array as `.npy` version 1.0 bytes.
pub fn npy_bytes(shape: &[usize], data: &[f64], dtype: NpyDtype) -> Result<Vec<u8>, EvalError> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(EvalError::LengthMismatch {
            expected: count,
            got: data.len(),
        });
    }
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let dims = if shape.len() == 1 {
        format!("{dims},")
    } else {
        dims
    };
    let descr = match dtype {
        NpyDtype::F32 => "<f4",
        NpyDtype::F64 => "<f8",
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    // Pad so the data starts on a 64-byte boundary, header ends with '\n' (format spec).
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in data {
        match dtype {
            NpyDtype::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            NpyDtype::F64 => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    Ok(out)
}

/// Writes a `.npy` file atomically (temporary file, then rename).
pub fn write_npy(
    path: &Path,
    shape: &[usize],
    data: &[f64],
    dtype: NpyDtype,
) -> Result<(), EvalError> {
    let bytes = npy_bytes(shape, data, dtype)?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` via a sibling temporary file and a rename, so a failure never
/// leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let io = |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_f64_and_f32() {
        let data: Vec<f64> = (0..12).map(|i| i as f64 * 0.5 - 2.0).collect();
        for dt in [NpyDtype::F64, NpyDtype::F32] {
            let b = npy_bytes(&[3, 4], &data, dt).unwrap();
            assert_eq!(
                (b.len() - data.len() * if dt == NpyDtype::F64 { 8 } else { 4 }) % 64,
                0
            );
            let a = parse_npy(&b, Path::new("x.npy")).unwrap();
            assert_eq!(a.shape, vec![3, 4]);
            assert_eq!(a.data, data); // halves are exact in f32
        }
    }

    #[test]
    fn fortran_order_is_transposed() {
        let mut b = npy_bytes(&[2, 3], &[1., 4., 2., 5., 3., 6.], NpyDtype::F64).unwrap();
        // Flip the flag (same byte length), then rebuild the body in column order.
        let at = b.windows(5).position(|w| w == b"False").unwrap();
        b[at..at + 5].copy_from_slice(b"True ");
        let hdr_end = b.iter().position(|&c| c == b'\n').unwrap() + 1;
        let body: Vec<u8> = [1., 4., 2., 5., 3., 6.]
            .iter()
            .flat_map(|v: &f64| v.to_le_bytes())
            .collect();
        b.truncate(hdr_end);
        b.extend_from_slice(&body);
        let a = parse_npy(&b, Path::new("f.npy")).unwrap();
        assert_eq!(a.data, vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let e = parse_npy(b"hello world", Path::new("bad.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.npy") && e.contains("magic"), "{e}");
        let mut b = npy_bytes(&[4], &[1., 2., 3., 4.], NpyDtype::F64).unwrap();
        b.truncate(b.len() - 3);
        let e = parse_npy(&b, Path::new("t.npy")).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
