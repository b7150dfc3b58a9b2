//! std side of the model format: owned metadata and tensors, atomic writing, loading.

use super::view::{
    FORMAT_VERSION_BLEND, FORMAT_VERSION_BLEND_SLOW, FORMAT_VERSION_F32, FORMAT_VERSION_FRONT,
    FORMAT_VERSION_INT8, FORMAT_VERSION_OLA, FORMAT_VERSION_SKIP, Layout, ModelView,
};
use crate::core::{Activation, Blend, CoreError, FrontShape, Normalisation, OlaShape};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Model metadata (everything but the tensors).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelMeta {
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
    /// Sample rate the model expects.
    pub sample_rate_hz: f32,
    /// Channel type it was trained for (e.g. "EEG").
    pub channel_type: String,
    /// Free-text training provenance.
    pub provenance: String,
    /// Overlap-add taper the model was chosen with (written as metadata `ola` unless Hann).
    pub ola: OlaShape,
    /// Correction gate ([`crate::core::Blend`], metadata `blend`), if any.
    pub blend: Option<Blend>,
}

/// The gated linear path of a model ([`crate::core::Skip`]), owned.
#[derive(Clone, Debug, PartialEq)]
pub struct SkipPath {
    /// FIR taps (odd count <= `d_in`), tap `len/2` at lag 0.
    pub taps: Vec<f32>,
    /// Largest high-frequency ratio at which the path is applied.
    pub gate: f32,
}

/// The convolutional front end of a model ([`crate::core::Front`]), owned.
#[derive(Clone, Debug, PartialEq)]
pub struct FrontParams {
    /// Layer sizes.
    pub shape: FrontShape,
    /// [`FrontShape::n_params`] values in its packing order.
    pub params: Vec<f32>,
}

/// f32 tensors, row-major, SAELens shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelTensors {
    /// `[d_in, d_sae]`.
    pub w_enc: Vec<f32>,
    /// `[d_sae, d_in]`.
    pub w_dec: Vec<f32>,
    /// `[d_sae]`.
    pub b_enc: Vec<f32>,
    /// `[d_in]`.
    pub b_dec: Vec<f32>,
    /// The gated linear path, if any (format 3).
    pub skip: Option<SkipPath>,
    /// The convolutional front end, if any (format 5).
    pub front: Option<FrontParams>,
}

/// int8 tensors with one f32 scale per latent (see [`crate::core::Int8Weights`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedTensors {
    /// `[d_in, d_sae]`.
    pub w_enc: Vec<i8>,
    /// `[d_sae]`: column scales of `w_enc`.
    pub w_enc_scale: Vec<f32>,
    /// `[d_sae, d_in]`.
    pub w_dec: Vec<i8>,
    /// `[d_sae]`: row scales of `w_dec`.
    pub w_dec_scale: Vec<f32>,
    /// `[d_sae]`.
    pub b_enc: Vec<f32>,
    /// `[d_in]`.
    pub b_dec: Vec<f32>,
    /// The gated linear path, if any (f32 taps; format 3).
    pub skip: Option<SkipPath>,
    /// The convolutional front end, if any (f32; format 5).
    pub front: Option<FrontParams>,
}

impl QuantizedTensors {
    /// The f32 tensors these int8 ones stand for (`q * scale`).
    pub fn dequantize(&self, d_in: usize, d_sae: usize) -> ModelTensors {
        let w_enc = self
            .w_enc
            .iter()
            .enumerate()
            .map(|(n, &q)| f32::from(q) * self.w_enc_scale[n % d_sae])
            .collect();
        let w_dec = self
            .w_dec
            .iter()
            .enumerate()
            .map(|(n, &q)| f32::from(q) * self.w_dec_scale[n / d_in])
            .collect();
        ModelTensors {
            w_enc,
            w_dec,
            b_enc: self.b_enc.clone(),
            b_dec: self.b_dec.clone(),
            skip: self.skip.clone(),
            front: self.front.clone(),
        }
    }
}

/// Errors reading or writing a model file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a valid model.
    #[error("{path}: invalid model: {source}")]
    Invalid {
        /// The file (`<memory>` for bytes not from a file).
        path: PathBuf,
        /// What is wrong.
        source: CoreError,
    },
    /// The tensors given to a writer do not fit the metadata.
    #[error("{path}: cannot write model: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn memory_path() -> PathBuf {
    PathBuf::from("<memory>")
}

/// A loaded, validated model owning its bytes.
#[derive(Clone, Debug)]
pub struct Model {
    bytes: Vec<u8>,
    layout: Layout,
    path: PathBuf,
}

impl Model {
    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Self, ModelFileError> {
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes_at(bytes, path.to_owned())
    }

    /// Validates model bytes held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ModelFileError> {
        Self::from_bytes_at(bytes, memory_path())
    }

    fn from_bytes_at(bytes: Vec<u8>, path: PathBuf) -> Result<Self, ModelFileError> {
        match Layout::parse(&bytes) {
            Ok(layout) => Ok(Self {
                bytes,
                layout,
                path,
            }),
            Err(source) => Err(ModelFileError::Invalid { path, source }),
        }
    }

    /// An in-memory f32 model (what [`write_model`] would write).
    pub fn from_tensors(meta: &ModelMeta, t: &ModelTensors) -> Result<Self, ModelFileError> {
        Self::from_bytes(serialize_f32(&memory_path(), meta, t)?)
    }

    /// An in-memory int8 model (what [`write_model_int8`] would write).
    pub fn from_int8(meta: &ModelMeta, t: &QuantizedTensors) -> Result<Self, ModelFileError> {
        Self::from_bytes(serialize_int8(&memory_path(), meta, t)?)
    }

    /// Zero-copy view (metadata + SAE) of the validated bytes.
    pub fn view(&self) -> ModelView<'_> {
        self.layout.view(&self.bytes)
    }

    /// The file bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file it came from (`<memory>` otherwise).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the matrices are int8.
    pub fn is_int8(&self) -> bool {
        self.view().meta().int8
    }

    /// Owned metadata, with JSON escapes in the strings decoded.
    pub fn meta(&self) -> ModelMeta {
        let v = self.view();
        let m = v.meta();
        ModelMeta {
            d_in: m.d_in,
            d_sae: m.d_sae,
            k: m.k,
            hop: m.hop,
            activation: m.activation,
            normalisation: m.normalisation,
            sample_rate_hz: m.sample_rate_hz,
            channel_type: unescape(m.channel_type),
            provenance: unescape(m.provenance),
            ola: m.ola,
            blend: m.blend,
        }
    }

    /// The f32 tensors (dequantised for an int8 model).
    pub fn tensors(&self) -> ModelTensors {
        let sae = self.view().sae();
        match sae.weights() {
            crate::core::Weights::F32(w) => ModelTensors {
                w_enc: le_f32s(w.w_enc),
                w_dec: le_f32s(w.w_dec),
                b_enc: le_f32s(w.b_enc),
                b_dec: le_f32s(w.b_dec),
                skip: self.skip(),
                front: self.front(),
            },
            crate::core::Weights::Int8(w) => {
                let m = self.view();
                int8_tensors(&w, self.skip(), self.front())
                    .dequantize(m.meta().d_in, m.meta().d_sae)
            }
        }
    }

    /// The int8 tensors, if this is an int8 model.
    pub fn quantized(&self) -> Option<QuantizedTensors> {
        match self.view().sae().weights() {
            crate::core::Weights::Int8(w) => Some(int8_tensors(&w, self.skip(), self.front())),
            crate::core::Weights::F32(_) => None,
        }
    }

    /// The gated linear path, if the model has one.
    pub fn skip(&self) -> Option<SkipPath> {
        self.view().sae().skip().map(|s| SkipPath {
            taps: le_f32s(s.taps),
            gate: s.gate,
        })
    }

    /// The convolutional front end, if the model has one.
    pub fn front(&self) -> Option<FrontParams> {
        self.view().sae().front().map(|f| FrontParams {
            shape: f.shape,
            params: le_f32s(f.params),
        })
    }
}

fn int8_tensors(
    w: &crate::core::Int8Weights<'_>,
    skip: Option<SkipPath>,
    front: Option<FrontParams>,
) -> QuantizedTensors {
    QuantizedTensors {
        w_enc: w.w_enc.iter().map(|&b| b as i8).collect(),
        w_enc_scale: le_f32s(w.w_enc_scale),
        w_dec: w.w_dec.iter().map(|&b| b as i8).collect(),
        w_dec_scale: le_f32s(w.w_dec_scale),
        b_enc: le_f32s(w.b_enc),
        b_dec: le_f32s(w.b_dec),
        skip,
        front,
    }
}

fn le_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn unescape(raw: &str) -> String {
    serde_json::from_str::<String>(&format!("\"{raw}\"")).unwrap_or_else(|_| raw.to_owned())
}

fn metadata(
    meta: &ModelMeta,
    version: u32,
    skip: Option<&SkipPath>,
    front: Option<&FrontParams>,
) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some(s) = skip {
        m.insert("skip_gate".into(), format!("{}", s.gate));
    }
    if let Some(f) = front {
        m.insert("front".into(), f.shape.to_string());
    }
    m.insert("format_version".into(), version.to_string());
    m.insert("d_in".into(), meta.d_in.to_string());
    m.insert("d_sae".into(), meta.d_sae.to_string());
    m.insert("k".into(), meta.k.to_string());
    m.insert("hop".into(), meta.hop.to_string());
    m.insert("activation".into(), meta.activation.as_str().into());
    m.insert("normalisation".into(), meta.normalisation.as_str().into());
    // `{}` of an f32 prints the shortest string that parses back to the same value.
    m.insert("sample_rate_hz".into(), format!("{}", meta.sample_rate_hz));
    m.insert("channel_type".into(), meta.channel_type.clone());
    m.insert("provenance".into(), meta.provenance.clone());
    if meta.ola != OlaShape::Hann {
        m.insert("ola".into(), meta.ola.name().into());
    }
    if let Some(b) = meta.blend {
        m.insert("blend".into(), b.to_string());
        if let Some(s) = b.slow {
            m.insert("blend_slow".into(), s.to_string());
        }
    }
    m
}

/// Rewrites the safetensors header with `__metadata__` keys in sorted order.
///
/// `safetensors::serialize` takes a `HashMap`, whose iteration order changes from run to run; a
/// shipped model must be reproducible byte for byte from its training command.
fn sort_metadata(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let bad = || "safetensors::serialize produced no valid header".to_owned();
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let n = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|_| bad())?;
    let json = bytes.get(8..8 + n).ok_or_else(bad)?;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| e.to_string())?;
    if let Some(serde_json::Value::Object(meta)) = header.remove("__metadata__") {
        let sorted: std::collections::BTreeMap<String, serde_json::Value> =
            meta.into_iter().collect();
        let sorted = serde_json::to_value(sorted).map_err(|e| e.to_string())?;
        header.insert("__metadata__".into(), sorted);
    }
    let mut text = serde_json::to_string(&header).map_err(|e| e.to_string())?;
    // Keep the data section 8-byte aligned, as safetensors itself does.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

fn check_lengths(path: &Path, items: &[(&str, usize, usize)]) -> Result<(), ModelFileError> {
    for &(name, got, expected) in items {
        if got != expected {
            return Err(ModelFileError::Write {
                path: path.to_owned(),
                message: format!("tensor {name} has {got} elements, metadata needs {expected}"),
            });
        }
    }
    Ok(())
}

fn serialize(
    path: &Path,
    meta: &ModelMeta,
    version: u32,
    mut tensors: Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)>,
    skip: Option<&SkipPath>,
    front: Option<&FrontParams>,
) -> Result<Vec<u8>, ModelFileError> {
    let werr = |message: String| ModelFileError::Write {
        path: path.to_owned(),
        message,
    };
    // Files without the linear path or a taper keep their old version, so old readers still
    // load them.
    let version = match skip {
        Some(s) => {
            tensors.push((
                "skip_taps",
                Dtype::F32,
                vec![s.taps.len()],
                f32_bytes(&s.taps),
            ));
            FORMAT_VERSION_SKIP
        }
        None => version,
    };
    let version = if meta.ola == OlaShape::Hann {
        version
    } else {
        FORMAT_VERSION_OLA
    };
    let version = match front {
        Some(f) => {
            if f.params.len() != f.shape.n_params() {
                return Err(werr(format!(
                    "front {} needs {} parameters, got {}",
                    f.shape,
                    f.shape.n_params(),
                    f.params.len()
                )));
            }
            tensors.push((
                "front",
                Dtype::F32,
                vec![f.params.len()],
                f32_bytes(&f.params),
            ));
            FORMAT_VERSION_FRONT
        }
        None => version,
    };
    let version = match meta.blend {
        Some(Blend { slow: Some(_), .. }) => FORMAT_VERSION_BLEND_SLOW,
        Some(_) => FORMAT_VERSION_BLEND,
        None => version,
    };
    let mut views = Vec::with_capacity(tensors.len());
    for (name, dtype, shape, data) in &tensors {
        let v = TensorView::new(*dtype, shape.clone(), data).map_err(|e| werr(e.to_string()))?;
        views.push((*name, v));
    }
    let bytes = safetensors::serialize(views, Some(metadata(meta, version, skip, front)))
        .map_err(|e| werr(e.to_string()))?;
    let bytes = sort_metadata(bytes).map_err(werr)?;
    // Never write what the reader would reject (NaN weights, k > d_sae, ...).
    Layout::parse(&bytes).map_err(|source| ModelFileError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    Ok(bytes)
}

fn serialize_f32(
    path: &Path,
    meta: &ModelMeta,
    t: &ModelTensors,
) -> Result<Vec<u8>, ModelFileError> {
    let (d_in, d_sae) = (meta.d_in, meta.d_sae);
    check_lengths(
        path,
        &[
            ("W_enc", t.w_enc.len(), d_in * d_sae),
            ("W_dec", t.w_dec.len(), d_in * d_sae),
            ("b_enc", t.b_enc.len(), d_sae),
            ("b_dec", t.b_dec.len(), d_in),
        ],
    )?;
    serialize(
        path,
        meta,
        FORMAT_VERSION_F32,
        vec![
            ("W_enc", Dtype::F32, vec![d_in, d_sae], f32_bytes(&t.w_enc)),
            ("W_dec", Dtype::F32, vec![d_sae, d_in], f32_bytes(&t.w_dec)),
            ("b_enc", Dtype::F32, vec![d_sae], f32_bytes(&t.b_enc)),
            ("b_dec", Dtype::F32, vec![d_in], f32_bytes(&t.b_dec)),
        ],
        t.skip.as_ref(),
        t.front.as_ref(),
    )
}

fn serialize_int8(
    path: &Path,
    meta: &ModelMeta,
    t: &QuantizedTensors,
) -> Result<Vec<u8>, ModelFileError> {
    let (d_in, d_sae) = (meta.d_in, meta.d_sae);
    check_lengths(
        path,
        &[
            ("W_enc", t.w_enc.len(), d_in * d_sae),
            ("W_dec", t.w_dec.len(), d_in * d_sae),
            ("W_enc_scale", t.w_enc_scale.len(), d_sae),
            ("W_dec_scale", t.w_dec_scale.len(), d_sae),
            ("b_enc", t.b_enc.len(), d_sae),
            ("b_dec", t.b_dec.len(), d_in),
        ],
    )?;
    let i8_bytes = |v: &[i8]| v.iter().map(|&q| q as u8).collect::<Vec<u8>>();
    serialize(
        path,
        meta,
        FORMAT_VERSION_INT8,
        vec![
            ("W_enc", Dtype::I8, vec![d_in, d_sae], i8_bytes(&t.w_enc)),
            ("W_dec", Dtype::I8, vec![d_sae, d_in], i8_bytes(&t.w_dec)),
            (
                "W_enc_scale",
                Dtype::F32,
                vec![d_sae],
                f32_bytes(&t.w_enc_scale),
            ),
            (
                "W_dec_scale",
                Dtype::F32,
                vec![d_sae],
                f32_bytes(&t.w_dec_scale),
            ),
            ("b_enc", Dtype::F32, vec![d_sae], f32_bytes(&t.b_enc)),
            ("b_dec", Dtype::F32, vec![d_in], f32_bytes(&t.b_dec)),
        ],
        t.skip.as_ref(),
        t.front.as_ref(),
    )
}

/// Writes `bytes` to `path` with the crate's one atomic writer ([`crate::io::atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelFileError> {
    crate::io::atomic::write_atomic(path, bytes).map_err(|e| ModelFileError::Io {
        path: path.to_owned(),
        source: e.into(),
    })
}

/// Writes an f32 model (format version 1) atomically, after checking it reads back valid.
pub fn write_model(path: &Path, meta: &ModelMeta, t: &ModelTensors) -> Result<(), ModelFileError> {
    let bytes = serialize_f32(path, meta, t)?;
    write_atomic(path, &bytes)
}

/// Writes an int8 model (format version 2) atomically, after checking it reads back valid.
pub fn write_model_int8(
    path: &Path,
    meta: &ModelMeta,
    t: &QuantizedTensors,
) -> Result<(), ModelFileError> {
    let bytes = serialize_int8(path, meta, t)?;
    write_atomic(path, &bytes)
}

/// A model whose output equals its input window exactly, for tests and plumbing checks:
/// `d_sae = 2 d_in`, `W_enc = [I, -I]`, `W_dec = [I; -I]`, zero biases, `k = d_in`,
/// `topk_relu`, no normalisation. For each sample exactly one of `x_i`, `-x_i` is a kept,
/// positive latent, and decoding it gives `x_i` back with a single exact product.
pub fn identity_model(d_in: usize, hop: usize, sample_rate_hz: f32) -> (ModelMeta, ModelTensors) {
    let d_sae = 2 * d_in;
    let mut w_enc = vec![0.0f32; d_in * d_sae];
    let mut w_dec = vec![0.0f32; d_sae * d_in];
    for i in 0..d_in {
        w_enc[i * d_sae + i] = 1.0;
        w_enc[i * d_sae + d_in + i] = -1.0;
        w_dec[i * d_in + i] = 1.0;
        w_dec[(d_in + i) * d_in + i] = -1.0;
    }
    let meta = ModelMeta {
        d_in,
        d_sae,
        k: d_in,
        hop,
        activation: Activation::TopkRelu,
        normalisation: Normalisation::None,
        sample_rate_hz,
        channel_type: "any".into(),
        provenance: "identity_model (test fixture, not trained)".into(),
        ola: OlaShape::Hann,
        blend: None,
    };
    let t = ModelTensors {
        w_enc,
        w_dec,
        b_enc: vec![0.0; d_sae],
        b_dec: vec![0.0; d_in],
        skip: None,
        front: None,
    };
    (meta, t)
}
