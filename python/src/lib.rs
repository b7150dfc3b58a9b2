//! `mfr_eeg._core`: the compiled part of the `mfr_eeg` Python package (the thin Python layer
//! in `python/mfr_eeg/` adds MNE and Dask glue). Arrays cross as numpy arrays; every call
//! copies its input once, releases the GIL for the work, and raises [`ModelError`] or
//! [`DenoiseError`] with the library's (the CLI's) messages.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use mfr_eeg::core::OlaShape;
use mfr_eeg::denoise::{
    DEFAULT_BANDPASS_ORDER, DenoiseOptions, GateChoice, HighBand, denoise_file as rust_denoise_file,
};
use mfr_eeg::embed::{
    ArrayStream, OwnedStreamer, STREAM_BLOCK_SECONDS, default_model, denoise_channels,
};
use mfr_eeg::model::Model as RustModel;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

pyo3::create_exception!(
    _core,
    ModelError,
    PyException,
    "A model file or buffer that cannot be read or is not a valid mfr-eeg model."
);
pyo3::create_exception!(
    _core,
    DenoiseError,
    PyValueError,
    "Data or options that cannot be denoised (messages as the mfr-eeg CLI's)."
);

fn model_err(e: impl ToString) -> PyErr {
    ModelError::new_err(e.to_string())
}

fn denoise_err(e: impl ToString) -> PyErr {
    DenoiseError::new_err(e.to_string())
}

fn shared_default() -> Arc<RustModel> {
    static DEFAULT: OnceLock<Arc<RustModel>> = OnceLock::new();
    DEFAULT.get_or_init(|| Arc::new(default_model())).clone()
}

/// A validated mfr-eeg model (safetensors file with metadata).
#[pyclass(frozen, module = "mfr_eeg._core")]
struct Model {
    inner: Arc<RustModel>,
}

#[pymethods]
impl Model {
    /// Loads and validates a model file.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let m = py.detach(|| RustModel::load(&path)).map_err(model_err)?;
        Ok(Self { inner: Arc::new(m) })
    }

    /// Validates model file bytes held in memory.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        let m = RustModel::from_bytes(data.to_vec()).map_err(model_err)?;
        Ok(Self { inner: Arc::new(m) })
    }

    /// The shipped default model (fast-256hz), built into the package.
    #[staticmethod]
    fn default() -> Self {
        Self {
            inner: shared_default(),
        }
    }

    /// Window length in samples.
    #[getter]
    fn d_in(&self) -> usize {
        self.inner.view().meta().d_in
    }

    /// Number of latents.
    #[getter]
    fn d_sae(&self) -> usize {
        self.inner.view().meta().d_sae
    }

    /// Latents kept per window.
    #[getter]
    fn k(&self) -> usize {
        self.inner.view().meta().k
    }

    /// Streaming hop in samples.
    #[getter]
    fn hop(&self) -> usize {
        self.inner.view().meta().hop
    }

    /// The sampling rate the model expects, in Hz.
    #[getter]
    fn sample_rate_hz(&self) -> f64 {
        f64::from(self.inner.view().meta().sample_rate_hz)
    }

    /// True if the matrices are int8.
    #[getter]
    fn int8(&self) -> bool {
        self.inner.view().meta().int8
    }

    /// The file it was loaded from ("<memory>" otherwise).
    #[getter]
    fn path(&self) -> String {
        self.inner.path().display().to_string()
    }

    /// Every metadata field of the file, as a dict.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let view = self.inner.view();
        let v = view.meta();
        let m = self.inner.meta();
        let d = PyDict::new(py);
        d.set_item("format_version", v.format_version)?;
        d.set_item("d_in", m.d_in)?;
        d.set_item("d_sae", m.d_sae)?;
        d.set_item("k", m.k)?;
        d.set_item("hop", m.hop)?;
        d.set_item("activation", m.activation.as_str())?;
        d.set_item("normalisation", m.normalisation.as_str())?;
        d.set_item("sample_rate_hz", f64::from(m.sample_rate_hz))?;
        d.set_item("channel_type", m.channel_type)?;
        d.set_item("provenance", m.provenance)?;
        d.set_item("int8", v.int8)?;
        d.set_item("skip_gate", v.skip_gate.map(f64::from))?;
        d.set_item("ola", v.ola.name())?;
        // `{width}x{depth}k{kernel}` of the convolutional front end, or None.
        d.set_item("front", v.front.map(|f| f.to_string()))?;
        // (lo, hi) of the correction gate, or None.
        d.set_item("blend", v.blend.map(|b| (f64::from(b.lo), f64::from(b.hi))))?;
        // (lo, hi, half) of the gate's slow ramp, or None.
        d.set_item(
            "blend_slow",
            v.blend
                .and_then(|b| b.slow)
                .map(|s| (f64::from(s.lo), f64::from(s.hi), s.half)),
        )?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let m = self.inner.meta();
        format!(
            "Model({:?}, window={}, hop={}, k={} of {}, {} Hz, {})",
            self.path(),
            m.d_in,
            m.hop,
            m.k,
            m.d_sae,
            m.sample_rate_hz,
            m.normalisation.as_str()
        )
    }
}

fn model_or_default(model: Option<&Bound<'_, Model>>) -> Arc<RustModel> {
    model.map_or_else(shared_default, |m| m.get().inner.clone())
}

#[allow(clippy::too_many_arguments)]
fn options(
    notch: Option<f64>,
    notch_harmonics: bool,
    bandpass: Option<(f64, f64)>,
    order: usize,
    hop: Option<usize>,
    ola: Option<&str>,
    threads: usize,
    channels: Option<Vec<String>>,
    above_model_band: &str,
) -> PyResult<DenoiseOptions> {
    let ola = ola
        .map(|o| {
            OlaShape::from_name(o).ok_or_else(|| {
                denoise_err(format!("invalid option: --ola {o}: must be hann or sine"))
            })
        })
        .transpose()?;
    let high_band = match above_model_band {
        "keep" => HighBand::Keep,
        "drop" => HighBand::Drop,
        other => {
            return Err(denoise_err(format!(
                "invalid option: --above-model-band {other}: must be keep or drop"
            )));
        }
    };
    // The CLI's argument rules (clap refuses these before the pipeline sees them).
    if let Some(f) = notch
        && f != 50.0
        && f != 60.0
    {
        return Err(denoise_err(format!(
            "invalid option: --notch {f}: the power-line frequency must be 50 or 60 Hz"
        )));
    }
    if notch_harmonics && notch.is_none() {
        return Err(denoise_err(
            "invalid option: --notch-harmonics needs --notch 50 or 60",
        ));
    }
    if !(1..=12).contains(&order) {
        return Err(denoise_err(format!(
            "invalid option: --order {order}: must be in 1..=12"
        )));
    }
    Ok(DenoiseOptions {
        channels,
        notch_hz: notch,
        notch_harmonics,
        bandpass_hz: bandpass,
        bandpass_order: order,
        threads,
        hop,
        ola,
        high_band,
        ..DenoiseOptions::default()
    })
}

/// Rows of a 2-D float32/float64 array as f32 in microvolts (`x * scale`), and whether it was
/// float64.
fn rows_in(x: &Bound<'_, PyAny>, scale: f64) -> PyResult<(Vec<Vec<f32>>, bool)> {
    if let Ok(a) = x.extract::<PyReadonlyArray2<'_, f32>>() {
        let v = a.as_array();
        let rows = v
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&s| (f64::from(s) * scale) as f32).collect())
            .collect();
        return Ok((rows, false));
    }
    if let Ok(a) = x.extract::<PyReadonlyArray2<'_, f64>>() {
        let v = a.as_array();
        let rows = v
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&s| (s * scale) as f32).collect())
            .collect();
        return Ok((rows, true));
    }
    let what = match x.cast::<numpy::PyUntypedArray>() {
        Ok(a) => format!("a {}-D {} array", a.ndim(), a.dtype()),
        Err(_) => format!("a {}", x.get_type().name()?),
    };
    Err(PyTypeError::new_err(format!(
        "expected a 2-D float32 or float64 array [channels, samples], got {what}"
    )))
}

/// Back to the input's dtype and unit (`/ scale`), shape `[rows, cols]`.
fn rows_out(
    py: Python<'_>,
    rows: Vec<f32>,
    n_rows: usize,
    scale: f64,
    f64_out: bool,
) -> PyResult<Py<PyAny>> {
    let cols = rows.len().checked_div(n_rows).unwrap_or(0);
    if f64_out {
        let v: Vec<f64> = rows.iter().map(|&s| f64::from(s) / scale).collect();
        let a = Array2::from_shape_vec((n_rows, cols), v)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(a.into_pyarray(py).into_any().unbind())
    } else {
        let v: Vec<f32> = if scale == 1.0 {
            rows
        } else {
            rows.iter()
                .map(|&s| (f64::from(s) / scale) as f32)
                .collect()
        };
        let a = Array2::from_shape_vec((n_rows, cols), v)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(a.into_pyarray(py).into_any().unbind())
    }
}

fn check_scale(scale: f64) -> PyResult<()> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(denoise_err(format!(
            "invalid option: scale {scale} to microvolts: need a finite scale > 0"
        )))
    }
}

/// Denoises `x` [channels, samples] (float32 or float64, `x * scale` in microvolts) sampled at
/// `sfreq` Hz with the pipeline of `mfr-eeg denoise`; returns a new array of the same shape
/// and dtype.
#[pyfunction]
#[pyo3(signature = (x, sfreq, model=None, *, scale=1.0, notch=None, notch_harmonics=false,
                    bandpass=None, order=DEFAULT_BANDPASS_ORDER, hop=None, ola=None, threads=0,
                    names=None, above_model_band="keep", gate=None, gate_slow=None,
                    keep_slow=false))]
#[allow(clippy::too_many_arguments)]
fn denoise(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    sfreq: f64,
    model: Option<&Bound<'_, Model>>,
    scale: f64,
    notch: Option<f64>,
    notch_harmonics: bool,
    bandpass: Option<(f64, f64)>,
    order: usize,
    hop: Option<usize>,
    ola: Option<&str>,
    threads: usize,
    names: Option<Vec<String>>,
    above_model_band: &str,
    gate: Option<&str>,
    gate_slow: Option<&str>,
    keep_slow: bool,
) -> PyResult<Py<PyAny>> {
    check_scale(scale)?;
    let gate = gate_choice(gate, gate_slow, keep_slow)?;
    let opts = options(
        notch,
        notch_harmonics,
        bandpass,
        order,
        hop,
        ola,
        threads,
        None,
        above_model_band,
    )?;
    let opts = DenoiseOptions {
        gate,
        keep_slow,
        ..opts
    };
    let (mut rows, f64_out) = rows_in(x, scale)?;
    let model = model_or_default(model);
    let n_rows = rows.len();
    let out = py.detach(move || {
        let mut refs: Vec<&mut [f32]> = rows.iter_mut().map(|r| &mut r[..]).collect();
        denoise_channels(&mut refs, names.as_deref(), sfreq, 1.0, &model, &opts)
            .map(|_| rows.concat())
            .map_err(|e| e.to_string())
    });
    let out = out.map_err(DenoiseError::new_err)?;
    rows_out(py, out, n_rows, scale, f64_out)
}

/// The CLI's `--gate` / `--gate-slow` / `--keep-slow` rules ([`GateChoice::from_args`]).
fn gate_choice(
    gate: Option<&str>,
    gate_slow: Option<&str>,
    keep_slow: bool,
) -> PyResult<GateChoice> {
    GateChoice::from_args(gate, gate_slow, keep_slow)
        .map_err(|e| denoise_err(format!("invalid option: {e}")))
}

/// Denoises an EDF/EDF+/BDF file into `output` exactly as `mfr-eeg denoise` does (a copy with
/// only the denoised channels' samples replaced, written atomically); returns a summary dict.
#[pyfunction]
#[pyo3(signature = (input, output, model=None, *, channels=None, notch=None,
                    notch_harmonics=false, bandpass=None, order=DEFAULT_BANDPASS_ORDER, hop=None,
                    ola=None, threads=0, above_model_band="keep", allow_clipping=false,
                    spatial=true,
                    eog=None, eye_only=false, gate=None, gate_slow=None, keep_slow=false))]
#[allow(clippy::too_many_arguments)]
fn denoise_file<'py>(
    py: Python<'py>,
    input: PathBuf,
    output: PathBuf,
    model: Option<&Bound<'_, Model>>,
    channels: Option<Vec<String>>,
    notch: Option<f64>,
    notch_harmonics: bool,
    bandpass: Option<(f64, f64)>,
    order: usize,
    hop: Option<usize>,
    ola: Option<&str>,
    threads: usize,
    above_model_band: &str,
    allow_clipping: bool,
    spatial: bool,
    eog: Option<Vec<String>>,
    eye_only: bool,
    gate: Option<&str>,
    gate_slow: Option<&str>,
    keep_slow: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let gate = gate_choice(gate, gate_slow, keep_slow)?;
    if !spatial && eog.is_some() {
        return Err(denoise_err(
            "eog names references of the eye stage; spatial=False skips it",
        ));
    }
    let opts = options(
        notch,
        notch_harmonics,
        bandpass,
        order,
        hop,
        ola,
        threads,
        channels,
        above_model_band,
    )?;
    let opts = DenoiseOptions {
        allow_clipping,
        spatial,
        eog,
        eye_only,
        gate,
        keep_slow,
        ..opts
    };
    let model = model_or_default(model);
    let s = py
        .detach(|| {
            rust_denoise_file(&input, &output, &model, &opts, &|_| {}).map_err(|e| e.to_string())
        })
        .map_err(DenoiseError::new_err)?;
    let d = PyDict::new(py);
    d.set_item("input", s.input.display().to_string())?;
    d.set_item("output", s.output.display().to_string())?;
    d.set_item(
        "channels",
        s.channels
            .iter()
            .map(|c| c.label.clone())
            .collect::<Vec<_>>(),
    )?;
    d.set_item("samples", s.samples)?;
    d.set_item("clipped", s.clipped)?;
    d.set_item("recording_seconds", s.recording_seconds)?;
    d.set_item("elapsed_seconds", s.elapsed_seconds)?;
    d.set_item("notes", s.notes)?;
    d.set_item("eye", s.spatial)?;
    Ok(d)
}

/// The core's low-latency streaming denoiser for `n_channels` channels at the model's rate
/// (no baseline, no resampling, no prefilters).
#[pyclass(frozen, module = "mfr_eeg._core")]
struct CoreStreamer {
    inner: Mutex<OwnedStreamer>,
    scale: f64,
    channels: usize,
    latency: usize,
    sfreq: f64,
}

#[pymethods]
impl CoreStreamer {
    #[new]
    #[pyo3(signature = (model, n_channels, sfreq, *, hop=None, scale=1.0))]
    fn new(
        model: Option<&Bound<'_, Model>>,
        n_channels: usize,
        sfreq: f64,
        hop: Option<usize>,
        scale: f64,
    ) -> PyResult<Self> {
        check_scale(scale)?;
        let model = model_or_default(model);
        let rate = f64::from(model.view().meta().sample_rate_hz);
        if (sfreq - rate).abs() > 1e-9 * rate {
            return Err(denoise_err(format!(
                "streaming runs at the model's rate ({rate} Hz), not {sfreq} Hz; resample the \
                 stream first, or use mfr_eeg.Streamer (which resamples)"
            )));
        }
        let s = OwnedStreamer::new(model, n_channels, hop)
            .map_err(|e| denoise_err(format!("cannot make a streamer: {e}")))?;
        Ok(Self {
            latency: s.latency(),
            inner: Mutex::new(s),
            scale,
            channels: n_channels,
            sfreq,
        })
    }

    /// Pushes `chunk` [n_channels, n] (any n >= 0) and returns the next n denoised samples
    /// per channel (same shape and dtype), delayed by `latency` samples.
    fn push(&self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let (rows, f64_out) = rows_in(chunk, self.scale)?;
        if rows.len() != self.channels {
            return Err(denoise_err(format!(
                "chunk has {} channels, the streamer {}",
                rows.len(),
                self.channels
            )));
        }
        let n = rows.first().map_or(0, Vec::len);
        let c = self.channels;
        let out = py.detach(|| {
            let mut input = vec![0.0f32; n * c];
            for (ch, r) in rows.iter().enumerate() {
                for (t, &v) in r.iter().enumerate() {
                    input[t * c + ch] = v;
                }
            }
            let mut y = vec![0.0f32; n * c];
            let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            s.push_interleaved(&input, &mut y)
                .map_err(|e| e.to_string())?;
            let mut planar = vec![0.0f32; n * c];
            for t in 0..n {
                for ch in 0..c {
                    planar[ch * n + t] = y[t * c + ch];
                }
            }
            Ok::<_, String>(planar)
        });
        let out = out.map_err(denoise_err)?;
        rows_out(py, out, c, self.scale, f64_out)
    }

    /// Delay between an input sample and its denoised output, in samples (`d_in - 1`).
    #[getter]
    fn latency(&self) -> usize {
        self.latency
    }

    /// The same delay in seconds.
    #[getter]
    fn latency_s(&self) -> f64 {
        self.latency as f64 / self.sfreq
    }

    /// Number of channels.
    #[getter]
    fn n_channels(&self) -> usize {
        self.channels
    }

    /// Input samples that were NaN, infinite or huge and were replaced by 0, so far.
    #[getter]
    fn faults(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .faults()
            .input_samples
    }
}

/// The pipeline of `denoise` fed in chunks: `push` returns the samples that became final,
/// `finish` the rest; concatenated they equal `denoise` on the whole recording bit for bit.
#[pyclass(frozen, module = "mfr_eeg._core")]
struct Streamer {
    inner: Mutex<StreamState>,
    scale: f64,
    latency: usize,
    sfreq: f64,
}

struct StreamState {
    stream: ArrayStream,
    /// Whether outputs are float64 (the dtype of the last chunk pushed).
    f64_out: bool,
}

#[pymethods]
impl Streamer {
    #[new]
    #[pyo3(signature = (model, n_channels, sfreq, *, scale=1.0, notch=None, notch_harmonics=false,
                        bandpass=None, order=DEFAULT_BANDPASS_ORDER, hop=None, ola=None,
                        names=None, above_model_band="keep",
                        block_seconds=STREAM_BLOCK_SECONDS, gate=None, gate_slow=None,
                        keep_slow=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        model: Option<&Bound<'_, Model>>,
        n_channels: usize,
        sfreq: f64,
        scale: f64,
        notch: Option<f64>,
        notch_harmonics: bool,
        bandpass: Option<(f64, f64)>,
        order: usize,
        hop: Option<usize>,
        ola: Option<&str>,
        names: Option<Vec<String>>,
        above_model_band: &str,
        block_seconds: f64,
        gate: Option<&str>,
        gate_slow: Option<&str>,
        keep_slow: bool,
    ) -> PyResult<Self> {
        check_scale(scale)?;
        let opts = DenoiseOptions {
            block_seconds: Some(block_seconds),
            gate: gate_choice(gate, gate_slow, keep_slow)?,
            keep_slow,
            ..options(
                notch,
                notch_harmonics,
                bandpass,
                order,
                hop,
                ola,
                1,
                None,
                above_model_band,
            )?
        };
        let stream = ArrayStream::new(
            model_or_default(model),
            n_channels,
            names,
            sfreq,
            1.0,
            &opts,
        )
        .map_err(denoise_err)?;
        Ok(Self {
            latency: stream.latency(),
            inner: Mutex::new(StreamState {
                stream,
                f64_out: false,
            }),
            scale,
            sfreq,
        })
    }

    /// Pushes `chunk` [n_channels, n] (any n >= 0, float32 or float64) and returns the samples
    /// that became final, [n_channels, m] in the chunk's dtype (m varies: whole blocks).
    fn push(&self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let (rows, f64_out) = rows_in(chunk, self.scale)?;
        let out = py.detach(|| {
            let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            let mut out = vec![Vec::new(); st.stream.channels()];
            st.stream.push(&refs, &mut out).map_err(|e| e.to_string())?;
            st.f64_out = f64_out;
            Ok::<_, String>(out)
        });
        let out = out.map_err(denoise_err)?;
        let n_rows = out.len();
        rows_out(py, out.concat(), n_rows, self.scale, f64_out)
    }

    /// Ends the recording and returns the remaining samples [n_channels, m] (dtype of the last
    /// chunk pushed). The streamer takes no more samples afterwards.
    fn finish(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let out = py.detach(|| {
            let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = vec![Vec::new(); st.stream.channels()];
            st.stream.finish(&mut out).map_err(|e| e.to_string())?;
            Ok::<_, String>((out, st.f64_out))
        });
        let (out, f64_out) = out.map_err(denoise_err)?;
        let n_rows = out.len();
        rows_out(py, out.concat(), n_rows, self.scale, f64_out)
    }

    /// Most samples between an input sample and its output (a block, the baseline's look-ahead
    /// and the model's window).
    #[getter]
    fn latency(&self) -> usize {
        self.latency
    }

    /// The same delay in seconds.
    #[getter]
    fn latency_s(&self) -> f64 {
        self.latency as f64 / self.sfreq
    }

    /// Number of channels.
    #[getter]
    fn n_channels(&self) -> usize {
        self.with_stream(ArrayStream::channels)
    }

    /// Samples per channel returned so far.
    #[getter]
    fn released(&self) -> usize {
        self.with_stream(ArrayStream::released)
    }

    /// Model inputs that were NaN, infinite or huge and were replaced by 0, so far.
    #[getter]
    fn faults(&self) -> u64 {
        self.with_stream(|s| s.faults().input_samples)
    }
}

impl Streamer {
    fn with_stream<R>(&self, f: impl FnOnce(&ArrayStream) -> R) -> R {
        f(&self.inner.lock().unwrap_or_else(|p| p.into_inner()).stream)
    }
}

/// `denoise`'s multi-channel eye stage for arrays fed in chunks (`mfr_eeg::embed::EyeStream`):
/// `push` returns the samples released (delayed by `latency`), `finish` the rest.
#[pyclass(frozen, module = "mfr_eeg._core")]
struct EyeStream {
    inner: Mutex<(mfr_eeg::embed::EyeStream, bool)>,
    scale: f64,
    latency: usize,
    sfreq: f64,
    references: String,
    n_channels: usize,
}

#[pymethods]
impl EyeStream {
    #[new]
    #[pyo3(signature = (ch_names, sfreq, *, eog=None, scale=1.0))]
    fn new(
        ch_names: Vec<String>,
        sfreq: f64,
        eog: Option<Vec<String>>,
        scale: f64,
    ) -> PyResult<Self> {
        check_scale(scale)?;
        let stage = mfr_eeg::embed::EyeStream::new(&ch_names, sfreq, eog.as_deref())
            .map_err(denoise_err)?
            .ok_or_else(|| {
                denoise_err(
                    "no EOG channel and no frontal channels (Fp1/Fp2/Fpz, AF*, F7-F8) among \
                     ch_names: the eye stage needs one of them",
                )
            })?;
        Ok(Self {
            latency: stage.latency(),
            references: stage.references().to_string(),
            n_channels: ch_names.len(),
            inner: Mutex::new((stage, false)),
            scale,
            sfreq,
        })
    }

    /// Pushes `chunk` [n_channels, n] and returns the samples released, [n_channels, m].
    fn push(&self, py: Python<'_>, chunk: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let (rows, f64_out) = rows_in(chunk, self.scale)?;
        let n = self.n_channels;
        let out = py.detach(|| {
            let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            let mut out = vec![Vec::new(); n];
            st.0.push(&refs, &mut out).map_err(|e| e.to_string())?;
            st.1 = f64_out;
            Ok::<_, String>(out)
        });
        let out = out.map_err(denoise_err)?;
        rows_out(py, out.concat(), n, self.scale, f64_out)
    }

    /// Ends the recording and returns the samples still held, [n_channels, latency].
    fn finish(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let n = self.n_channels;
        let out = py.detach(|| {
            let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = vec![Vec::new(); n];
            st.0.finish(&mut out).map_err(|e| e.to_string())?;
            Ok::<_, String>((out, st.1))
        });
        let (out, f64_out) = out.map_err(denoise_err)?;
        rows_out(py, out.concat(), n, self.scale, f64_out)
    }

    /// Samples between an input sample and its output.
    #[getter]
    fn latency(&self) -> usize {
        self.latency
    }

    /// The same delay in seconds.
    #[getter]
    fn latency_s(&self) -> f64 {
        self.latency as f64 / self.sfreq
    }

    /// Which references the stage uses.
    #[getter]
    fn references(&self) -> String {
        self.references.clone()
    }

    /// Whether the filter acts now (a blink source has been found).
    #[getter]
    fn active(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .active()
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Streamer>()?;
    m.add_class::<CoreStreamer>()?;
    m.add_class::<EyeStream>()?;
    m.add_function(wrap_pyfunction!(denoise, m)?)?;
    m.add_function(wrap_pyfunction!(denoise_file, m)?)?;
    m.add("ModelError", m.py().get_type::<ModelError>())?;
    m.add("DenoiseError", m.py().get_type::<DenoiseError>())?;
    Ok(())
}
