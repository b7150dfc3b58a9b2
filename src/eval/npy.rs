//! Whole-file `.npy` reading (through the crate's one header parser, [`crate::io::npy`]) and
//! writing of f32/f64 arrays: enough for EEGdenoiseNet's epoch files and for test fixtures.
//! Hand-written because it is small and the crates that do it pull in ndarray.

use std::path::Path;

use super::EvalError;
use crate::io::npy::{self, MAGIC};

/// A dense array read from `.npy`, converted to f64, in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements in row-major order.
    pub data: Vec<f64>,
}

fn bad(path: &Path, problem: impl Into<String>) -> EvalError {
    EvalError::Format {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Parses `.npy` bytes (f2, f4 or f8 elements); `path` only names the source in errors.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<NpyArray, EvalError> {
    let h = npy::parse_header(bytes).map_err(|e| bad(path, e))?;
    let shape = h.shape.clone();
    let need = h.data_len().ok_or_else(|| bad(path, "shape overflows"))?;
    let body = &bytes[h.data_offset..];
    if body.len() < need {
        return Err(bad(
            path,
            format!("data truncated: need {need} bytes, have {}", body.len()),
        ));
    }
    let mut data = Vec::with_capacity(need / h.element.size());
    npy::decode_f64(&h, &body[..need], &mut data);
    if h.fortran_order && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut t = vec![0.0; data.len()];
        for i in 0..r {
            for j in 0..c {
                t[i * c + j] = data[j * r + i];
            }
        }
        data = t;
    } else if h.fortran_order && shape.len() > 2 {
        return Err(bad(
            path,
            "Fortran-order arrays above 2-D are not supported",
        ));
    }
    Ok(NpyArray { shape, data })
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

/// Writes `bytes` to `path` with the crate's one atomic writer ([`crate::io::atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    crate::io::atomic::write_atomic(path, bytes).map_err(|e| EvalError::Io {
        path: path.to_path_buf(),
        source: e.into(),
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
