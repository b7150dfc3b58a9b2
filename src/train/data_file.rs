//! Activation matrices on disk, read in batches without loading the file: `.npy` (f32/f16,
//! little-endian, C order, `[n, d]`) and `.safetensors` (one F32/F16/BF16 tensor `[n, d]`).
//!
//! Only the header is parsed up front; each batch reads its rows with a seek and a read, so a
//! matrix larger than memory trains fine. [`FileSource`] pairs an input matrix with an optional
//! target matrix (denoising pairs) and restricts both to a row range (train/validation split).

use super::TrainError;
use super::data::BatchSource;
use crate::io::npy::{self, NpyElement};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Element type of a matrix on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskDtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
}

impl DiskDtype {
    fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
}

/// A row-major `[rows, cols]` matrix inside a file, read row by row on demand.
#[derive(Debug)]
pub struct DiskMatrix {
    path: PathBuf,
    file: File,
    offset: u64,
    /// Number of rows.
    pub rows: usize,
    /// Row length.
    pub cols: usize,
    dtype: DiskDtype,
    buf: Vec<u8>,
}

fn bad(path: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::data(path.display().to_string(), problem)
}

impl DiskMatrix {
    /// Opens `.npy` or `.safetensors` (by extension); for safetensors `tensor` names the
    /// tensor (optional when the file holds exactly one).
    pub fn open(path: &Path, tensor: Option<&str>) -> Result<Self, TrainError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let mut file = File::open(path).map_err(|e| TrainError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| TrainError::io(path, e))?.len();
        let (offset, shape, dtype) = match ext.as_str() {
            "npy" => npy_header(path, &mut file)?,
            "safetensors" => safetensors_header(path, &mut file, tensor)?,
            _ => {
                return Err(bad(
                    path,
                    "unknown extension (expected .npy or .safetensors)",
                ));
            }
        };
        if shape.len() != 2 {
            return Err(bad(
                path,
                format!("expected a 2-D [n, d] matrix, found shape {shape:?}"),
            ));
        }
        let (rows, cols) = (shape[0], shape[1]);
        let need = offset + (rows * cols * dtype.size()) as u64;
        if file_len < need {
            return Err(bad(
                path,
                format!("file is truncated: {file_len} bytes, header promises {need}"),
            ));
        }
        Ok(Self {
            path: path.into(),
            file,
            offset,
            rows,
            cols,
            dtype,
            buf: Vec::new(),
        })
    }

    /// Appends row `r` (converted to f32) to `out`.
    pub fn read_row(&mut self, r: usize, out: &mut Vec<f32>) -> Result<(), TrainError> {
        let rb = self.cols * self.dtype.size();
        self.buf.resize(rb, 0);
        let pos = self.offset + (r * rb) as u64;
        self.file
            .seek(SeekFrom::Start(pos))
            .and_then(|_| self.file.read_exact(&mut self.buf))
            .map_err(|e| TrainError::io(&self.path, e))?;
        let start = out.len();
        match self.dtype {
            DiskDtype::F32 => out.extend(
                self.buf
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            DiskDtype::F16 => out.extend(
                self.buf
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            DiskDtype::Bf16 => out.extend(
                self.buf
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
        }
        if let Some(i) = out[start..].iter().position(|v| !v.is_finite()) {
            return Err(bad(
                &self.path,
                format!("non-finite value at row {r}, column {i}"),
            ));
        }
        Ok(())
    }
}

fn npy_header(path: &Path, f: &mut File) -> Result<(u64, Vec<usize>, DiskDtype), TrainError> {
    let mut pre = [0u8; 12];
    let got = read_up_to(f, &mut pre).map_err(|e| TrainError::io(path, e))?;
    let size = npy::header_size(&pre[..got]).map_err(|e| bad(path, e))?;
    let mut h = vec![0u8; size];
    h[..got].copy_from_slice(&pre[..got]);
    f.read_exact(&mut h[got..])
        .map_err(|_| bad(path, "truncated .npy header"))?;
    let h = npy::parse_header(&h).map_err(|e| bad(path, e))?;
    let dtype = match (h.element, h.little_endian) {
        (NpyElement::F32, true) => DiskDtype::F32,
        (NpyElement::F16, true) => DiskDtype::F16,
        (e, little) => {
            return Err(bad(
                path,
                format!(
                    "unsupported dtype {}{e:?} (expected little-endian float32 or float16)",
                    if little {
                        "little-endian "
                    } else {
                        "big-endian "
                    }
                ),
            ));
        }
    };
    if h.fortran_order {
        return Err(bad(
            path,
            "Fortran-ordered arrays are not supported (save C order)",
        ));
    }
    Ok((h.data_offset as u64, h.shape, dtype))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn safetensors_header(
    path: &Path,
    f: &mut File,
    tensor: Option<&str>,
) -> Result<(u64, Vec<usize>, DiskDtype), TrainError> {
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| bad(path, "too short for a safetensors header"))?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 {
        return Err(bad(path, "implausibly large safetensors header"));
    }
    let mut h = vec![0u8; n as usize];
    f.read_exact(&mut h)
        .map_err(|_| bad(path, "truncated safetensors header"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&h).map_err(|e| bad(path, format!("header JSON: {e}")))?;
    let map = v
        .as_object()
        .ok_or_else(|| bad(path, "header is not a JSON object"))?;
    let names: Vec<&String> = map.keys().filter(|k| *k != "__metadata__").collect();
    let name = match tensor {
        Some(t) => map
            .get_key_value(t)
            .map(|(k, _)| k)
            .ok_or_else(|| bad(path, format!("no tensor named '{t}' (has {names:?})")))?,
        None if names.len() == 1 => names[0],
        None => {
            return Err(bad(
                path,
                format!(
                    "{} tensors in the file; name one with --tensor ({names:?})",
                    names.len()
                ),
            ));
        }
    };
    let info = &map[name];
    let dtype = match info["dtype"].as_str() {
        Some("F32") => DiskDtype::F32,
        Some("F16") => DiskDtype::F16,
        Some("BF16") => DiskDtype::Bf16,
        other => {
            return Err(bad(
                path,
                format!("tensor '{name}' has unsupported dtype {other:?}"),
            ));
        }
    };
    let shape: Vec<usize> = info["shape"]
        .as_array()
        .ok_or_else(|| bad(path, format!("tensor '{name}' has no shape")))?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(path, "bad shape entry"))?;
    let start = info["data_offsets"][0]
        .as_u64()
        .ok_or_else(|| bad(path, "bad data_offsets"))?;
    Ok((8 + n + start, shape, dtype))
}

/// Inputs (and optional targets) from disk, restricted to rows `start..end`.
#[derive(Debug)]
pub struct FileSource {
    inputs: DiskMatrix,
    targets: Option<DiskMatrix>,
    start: usize,
    end: usize,
}

impl FileSource {
    /// Splits the rows of `inputs` (and `targets`, which must have the same shape) into a
    /// training part and the last `val_frac` as validation.
    pub fn open_split(
        inputs: &Path,
        targets: Option<&Path>,
        tensor: Option<&str>,
        val_frac: f64,
    ) -> Result<(Self, Self), TrainError> {
        let open = || -> Result<(DiskMatrix, Option<DiskMatrix>), TrainError> {
            let i = DiskMatrix::open(inputs, tensor)?;
            let t = match targets {
                Some(p) => {
                    let t = DiskMatrix::open(p, tensor)?;
                    if (t.rows, t.cols) != (i.rows, i.cols) {
                        return Err(bad(
                            p,
                            format!(
                                "targets are [{}, {}] but inputs are [{}, {}]",
                                t.rows, t.cols, i.rows, i.cols
                            ),
                        ));
                    }
                    Some(t)
                }
                None => None,
            };
            Ok((i, t))
        };
        let (i1, t1) = open()?;
        let (i2, t2) = open()?;
        let n = i1.rows;
        let n_val = ((n as f64 * val_frac).round() as usize).clamp(1, n.saturating_sub(1).max(1));
        if n < 2 {
            return Err(bad(
                inputs,
                format!("{n} rows: need at least 2 to split off validation"),
            ));
        }
        let cut = n - n_val;
        Ok((
            Self {
                inputs: i1,
                targets: t1,
                start: 0,
                end: cut,
            },
            Self {
                inputs: i2,
                targets: t2,
                start: cut,
                end: n,
            },
        ))
    }
}

impl BatchSource for FileSource {
    fn name(&self) -> String {
        self.inputs.path.display().to_string()
    }
    fn dim(&self) -> usize {
        self.inputs.cols
    }
    fn len(&self) -> usize {
        self.end - self.start
    }
    fn read_rows(
        &mut self,
        idx: &[usize],
        inputs: &mut Vec<f32>,
        targets: &mut Vec<f32>,
    ) -> Result<(), TrainError> {
        inputs.clear();
        targets.clear();
        for &i in idx {
            let r = self.start + i;
            self.inputs.read_row(r, inputs)?;
            match &mut self.targets {
                Some(t) => t.read_row(r, targets)?,
                None => {
                    let d = self.inputs.cols;
                    let at = inputs.len() - d;
                    targets.extend_from_slice(&inputs[at..]);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_to_f32(h: u16) -> f32 {
        half::f16::from_bits(h).to_f32()
    }

    #[test]
    fn f16_conversion_reference_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    fn npy(path: &Path, descr: &str, shape: (usize, usize), payload: &[u8]) {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}), }}",
            shape.0, shape.1
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(payload);
        std::fs::write(path, b).unwrap();
    }

    #[test]
    fn npy_rows_read_back_and_split() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let vals: Vec<f32> = (0..20).map(|i| i as f32 * 0.5).collect();
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        npy(&p, "<f4", (5, 4), &bytes);
        let (mut tr, mut va) = FileSource::open_split(&p, None, None, 0.2).unwrap();
        assert_eq!((tr.len(), va.len(), tr.dim()), (4, 1, 4));
        let (mut x, mut t) = (Vec::new(), Vec::new());
        tr.read_rows(&[3, 1], &mut x, &mut t).unwrap();
        assert_eq!(x, vec![6.0, 6.5, 7.0, 7.5, 2.0, 2.5, 3.0, 3.5]);
        assert_eq!(x, t);
        va.read_rows(&[0], &mut x, &mut t).unwrap();
        assert_eq!(x, vec![8.0, 8.5, 9.0, 9.5]);
    }

    #[test]
    fn npy_f16_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.npy");
        let bytes: Vec<u8> = [0x3c00u16, 0xc000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        npy(&p, "<f2", (1, 2), &bytes);
        let mut m = DiskMatrix::open(&p, None).unwrap();
        let mut out = Vec::new();
        m.read_row(0, &mut out).unwrap();
        assert_eq!(out, vec![1.0, -2.0]);
        let q = dir.path().join("t.npy");
        npy(&q, "<f4", (3, 2), &[0u8; 8]);
        let e = DiskMatrix::open(&q, None).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("t.npy"), "{e}");
        let r = dir.path().join("i.npy");
        npy(&r, "<i8", (1, 1), &[0u8; 8]);
        let e = DiskMatrix::open(&r, None).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype"), "{e}");
    }

    #[test]
    fn safetensors_named_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("acts.safetensors");
        let a: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let views = vec![
            (
                "acts",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 2], &a)
                    .unwrap(),
            ),
            (
                "other",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 2], &a[..8])
                    .unwrap(),
            ),
        ];
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        assert!(
            DiskMatrix::open(&p, None).is_err(),
            "two tensors need a name"
        );
        let mut m = DiskMatrix::open(&p, Some("acts")).unwrap();
        let mut out = Vec::new();
        m.read_row(2, &mut out).unwrap();
        assert_eq!(out, vec![5.0, 6.0]);
    }
}
