//! Entry points for other languages (the C ABI in `capi/`, the Python package in `python/`):
//! the offline pipeline of `mfr-eeg denoise` on channels held in memory instead of a file
//! ([`denoise_channels`]), the same pipeline fed in chunks ([`ArrayStream`], equal to it bit for
//! bit), and the core's low-latency streaming denoiser owning its buffers and its model
//! ([`OwnedStreamer`], no baseline, no resampling), so a foreign handle can keep it between
//! calls.
//!
//! The first two go through the same pieces as [`crate::denoise::denoise_file`]
//! ([`Prefilter`], [`Denoiser::plan`], [`Denoiser::process_block`]) and report errors with the
//! same messages ([`DenoiseError`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::core::{CoreError, FaultCounts, StreamView};
use crate::denoise::{DenoiseError, DenoiseOptions, Denoiser, Prefilter, RatePlan, Scratch};
use crate::model::Model;

/// The name errors give as the "file" of data that came from memory.
pub const ARRAY_SOURCE: &str = "<array>";

/// The shipped default model (`models/fast-256hz.safetensors`), embedded.
pub static DEFAULT_MODEL_BYTES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/fast-256hz.safetensors"
));

/// The shipped default model, validated.
pub fn default_model() -> Model {
    Model::from_bytes(DEFAULT_MODEL_BYTES.to_vec())
        .expect("the embedded default model is validated by the test suite")
}

/// What [`denoise_channels`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArrayReport {
    /// Non-finite inputs or model outputs the core repaired, over all channels.
    pub faults: FaultCounts,
    /// `Some(model rate)` when the channels were resampled to the model's rate and back.
    pub resampled_to_hz: Option<f64>,
    /// Things the caller should know (filters skipped or reduced, content above the model's
    /// Nyquist frequency removed).
    pub notes: Vec<String>,
}

fn channel_error(labels: Option<&[String]>, k: usize, problem: String) -> DenoiseError {
    DenoiseError::Channel {
        file: PathBuf::from(ARRAY_SOURCE),
        channel: labels
            .and_then(|l| l.get(k).cloned())
            .unwrap_or_else(|| format!("#{k}")),
        problem,
    }
}

/// The model side and the rate plan shared by [`denoise_channels`] and [`ArrayStream`],
/// after the checks both make.
struct ArraySetup<'m> {
    denoiser: Denoiser<'m>,
    plan: RatePlan,
    notes: Vec<String>,
}

/// Checks what does not depend on the samples (options, rate, scale, channel count, names,
/// hop, model rate) and builds the denoiser and its plan for `n_channels` channels at `fs_hz`.
fn array_setup<'m>(
    model: &'m Model,
    n_channels: usize,
    labels: Option<&[String]>,
    fs_hz: f64,
    to_uv: f64,
    opts: &DenoiseOptions,
) -> Result<ArraySetup<'m>, DenoiseError> {
    if let Some((lo, hi)) = opts.bandpass_hz
        && !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo < hi)
    {
        return Err(DenoiseError::Options(format!(
            "--bandpass {lo},{hi}: need 0 < low < high (Hz)"
        )));
    }
    if opts.channels.is_some() || opts.wav.is_some() {
        return Err(DenoiseError::Options(
            "channel selection and WAV export apply to files, not to arrays".into(),
        ));
    }
    if opts.spatial || opts.eog.is_some() {
        return Err(DenoiseError::Options(
            "the multi-channel eye-artifact stage (spatial, eog) applies to files, not to \
             arrays"
                .into(),
        ));
    }
    if !(fs_hz.is_finite() && fs_hz > 0.0) {
        return Err(DenoiseError::Options(format!(
            "sampling rate {fs_hz} Hz: need a finite rate > 0"
        )));
    }
    if !(to_uv.is_finite() && to_uv > 0.0) {
        return Err(DenoiseError::Options(format!(
            "unit scale {to_uv} to microvolts: need a finite scale > 0"
        )));
    }
    if n_channels == 0 {
        return Err(DenoiseError::Options("no channels to denoise".into()));
    }
    if let Some(l) = labels
        && l.len() != n_channels
    {
        return Err(DenoiseError::Options(format!(
            "{} channel names for {n_channels} channels",
            l.len(),
        )));
    }
    // The file path's own constructor: hop, rate and gate rules alike.
    let denoiser = crate::denoise::make_denoiser(model, opts, false)?;
    let model_rate_hz = denoiser.rate_hz;
    let pre = Prefilter::design(opts, fs_hz).map_err(|e| {
        channel_error(
            labels,
            0,
            format!("cannot design the prefilter at {fs_hz} Hz: {e}"),
        )
    })?;
    let mut notes = pre.notes.clone();
    if fs_hz > model_rate_hz * (1.0 + 1e-9) {
        notes.push(format!(
            "{fs_hz} Hz channels keep content up to the model's Nyquist frequency ({} Hz) only",
            model_rate_hz / 2.0
        ));
    }
    let plan: RatePlan = denoiser
        .plan(fs_hz, pre.filter)
        .map_err(|e| channel_error(labels, 0, e.to_string()))?;
    Ok(ArraySetup {
        denoiser,
        plan,
        notes,
    })
}

/// The first sample of `c` (global index `offset + i`) that is not finite in microvolts.
fn check_finite(
    c: &[f32],
    to_uv: f64,
    offset: usize,
    labels: Option<&[String]>,
    k: usize,
) -> Result<(), DenoiseError> {
    match c.iter().position(|&v| !(f64::from(v) * to_uv).is_finite()) {
        Some(i) => Err(channel_error(
            labels,
            k,
            format!("sample {} is {} (not a finite number)", offset + i, c[i]),
        )),
        None => Ok(()),
    }
}

/// Denoises equally long channels sampled at `fs_hz` in place, each as a whole signal through
/// [`Denoiser::denoise_in_place`], the per-channel computation of
/// [`crate::denoise::denoise_file`] (prefilters, baseline, scaling by `to_uv` to microvolts,
/// resampling to the model's rate and back, the core's offline denoiser, `opts.high_band`).
/// `opts.channels`, `opts.wav` and the spatial stage concern files and must be off;
/// `allow_clipping` and `block_seconds` do not apply (nothing is clipped, the whole signal is
/// one block). Channels run on `opts.threads` threads (0: one per core). `labels` name the
/// channels in errors (`#k` otherwise).
///
/// Errors: options the CLI would refuse (same messages), no channels or no samples, channels of
/// different lengths, a rate or scale that is not finite and positive, and any non-finite
/// sample after scaling (named by channel and index). Nothing is changed on error.
pub fn denoise_channels(
    channels: &mut [&mut [f32]],
    labels: Option<&[String]>,
    fs_hz: f64,
    to_uv: f64,
    model: &Model,
    opts: &DenoiseOptions,
) -> Result<ArrayReport, DenoiseError> {
    let ArraySetup {
        denoiser,
        plan,
        notes,
    } = array_setup(model, channels.len(), labels, fs_hz, to_uv, opts)?;
    let n = channels[0].len();
    if n == 0 {
        return Err(DenoiseError::Options("channels have no samples".into()));
    }
    if let Some(k) = channels.iter().position(|c| c.len() != n) {
        return Err(channel_error(
            labels,
            k,
            format!("has {} samples, channel 0 has {n}", channels[k].len()),
        ));
    }
    for (k, c) in channels.iter().enumerate() {
        check_finite(c, to_uv, 0, labels, k)?;
    }

    let total = channels.len();
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        opts.threads
    }
    .clamp(1, total);
    // Work on copies so an error leaves the caller's data untouched.
    let mut work: Vec<Vec<f32>> = channels.iter().map(|c| c.to_vec()).collect();
    let slots: Vec<std::sync::Mutex<Option<&mut Vec<f32>>>> = work
        .iter_mut()
        .map(|v| std::sync::Mutex::new(Some(v)))
        .collect();
    type ChannelResult = Result<(FaultCounts, Option<f64>), crate::denoise::SignalError>;
    let results: Vec<std::sync::Mutex<Option<ChannelResult>>> =
        (0..total).map(|_| std::sync::Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut scratch = Scratch::default();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total {
                        break;
                    }
                    let x = slots[k]
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take()
                        .expect("each channel is taken once");
                    let r = denoiser.denoise_in_place(x, &plan, to_uv, &mut scratch);
                    *results[k].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    drop(slots);
    let mut report = ArrayReport {
        notes,
        ..ArrayReport::default()
    };
    for (k, r) in results.into_iter().enumerate() {
        let (faults, resampled) = r
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .expect("every channel was processed")
            .map_err(|e| channel_error(labels, k, e.to_string()))?;
        report.faults.input_samples += faults.input_samples;
        report.faults.windows += faults.windows;
        report.resampled_to_hz = resampled;
    }
    for (dst, src) in channels.iter_mut().zip(&work) {
        dst.copy_from_slice(src);
    }
    Ok(report)
}

/// Default block length of [`ArrayStream`] in seconds: each block recomputes the pipeline's
/// margins on both sides (the baseline's 2.25 s, the model's window), so shorter blocks cost
/// more CPU per sample; one second keeps that overhead near 3x at the shipped model's rate.
pub const STREAM_BLOCK_SECONDS: f64 = 1.0;

/// [`denoise_channels`] fed in chunks: push samples as they arrive, get the denoised samples
/// that are final, then [`ArrayStream::finish`] for the rest. The concatenated output equals
/// [`denoise_channels`] on the whole recording bit for bit (the blocks of
/// [`crate::denoise::denoise_file`], with the recording's end unknown until `finish`).
///
/// Output lags input by at most [`ArrayStream::latency`] samples: the centred baseline median
/// looks [`crate::denoise::baseline::WINDOW_SECONDS`] / 2 ahead, the model a window, and
/// samples are released a block at a time. For a lower delay without the baseline, use the
/// core's [`OwnedStreamer`]. Memory is bounded by the block and its margins, whatever the
/// recording's length.
#[derive(Debug)]
pub struct ArrayStream {
    model: Arc<Model>,
    hop: usize,
    high_band: crate::denoise::HighBand,
    ola: crate::core::OlaShape,
    /// The correction gate the options chose ([`crate::denoise::effective_gate`]).
    blend: Option<crate::core::Blend>,
    plan: RatePlan,
    to_uv: f64,
    labels: Option<Vec<String>>,
    notes: Vec<String>,
    block: usize,
    /// Samples a block needs after its end.
    ahead: usize,
    /// Raw samples held per channel, from global index `raw_start`.
    raw: Vec<Vec<f32>>,
    raw_start: usize,
    /// Samples pushed per channel.
    pushed: usize,
    /// Start of the next block to compute.
    next: usize,
    finished: bool,
    faults: FaultCounts,
    scratch: Scratch,
}

impl ArrayStream {
    /// A stream of `n_channels` channels at `fs_hz` (physical units, `to_uv` to microvolts)
    /// with the options of [`denoise_channels`] (same checks and messages);
    /// `opts.block_seconds` sets the block (default [`STREAM_BLOCK_SECONDS`]).
    pub fn new(
        model: Arc<Model>,
        n_channels: usize,
        labels: Option<Vec<String>>,
        fs_hz: f64,
        to_uv: f64,
        opts: &DenoiseOptions,
    ) -> Result<Self, DenoiseError> {
        let ArraySetup {
            denoiser,
            plan,
            notes,
        } = array_setup(&model, n_channels, labels.as_deref(), fs_hz, to_uv, opts)?;
        let seconds = opts.block_seconds.unwrap_or(STREAM_BLOCK_SECONDS);
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err(DenoiseError::Options(format!(
                "block of {seconds} s: need a finite length > 0"
            )));
        }
        let block = ((seconds * fs_hz).ceil() as usize)
            .div_ceil(plan.align)
            .max(1)
            * plan.align;
        let ahead = plan.chain_margin + plan.baseline.margin() + plan.prefilter_margin;
        let (hop, high_band, ola) = (denoiser.hop, denoiser.high_band, denoiser.sae.ola_shape());
        let blend = denoiser.sae.blend();
        Ok(Self {
            hop,
            high_band,
            ola,
            blend,
            plan,
            to_uv,
            labels,
            notes,
            block,
            ahead,
            raw: vec![Vec::new(); n_channels],
            raw_start: 0,
            pushed: 0,
            next: 0,
            finished: false,
            faults: FaultCounts::default(),
            scratch: Scratch::default(),
            model,
        })
    }

    /// Most samples between an input sample and its denoised output: a block plus what a
    /// block needs after its end.
    pub fn latency(&self) -> usize {
        self.block + self.ahead
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.raw.len()
    }

    /// Samples per channel released so far.
    pub fn released(&self) -> usize {
        self.next
    }

    /// Non-finite model inputs or outputs the core repaired so far.
    pub fn faults(&self) -> FaultCounts {
        self.faults
    }

    /// What [`ArrayReport::notes`] would say (filters skipped or reduced, content above the
    /// model's band).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Appends `chunk` (one equally long slice per channel, any length) and appends the
    /// samples that became final to `out[k]`; returns how many per channel. On error (wrong
    /// channel count or lengths, a non-finite sample, a call after `finish`) nothing is taken
    /// and nothing is released.
    pub fn push(&mut self, chunk: &[&[f32]], out: &mut [Vec<f32>]) -> Result<usize, DenoiseError> {
        let c = self.channels();
        if self.finished {
            return Err(DenoiseError::Options(
                "the stream was finished; start a new one".into(),
            ));
        }
        if chunk.len() != c {
            return Err(DenoiseError::Options(format!(
                "chunk has {} channels, the stream {c}",
                chunk.len()
            )));
        }
        if out.len() != c {
            return Err(DenoiseError::Options(format!(
                "output has {} channels, the stream {c}",
                out.len()
            )));
        }
        let m = chunk[0].len();
        let labels = self.labels.as_deref();
        if let Some(k) = chunk.iter().position(|x| x.len() != m) {
            return Err(channel_error(
                labels,
                k,
                format!("chunk has {} samples, channel 0 has {m}", chunk[k].len()),
            ));
        }
        for (k, x) in chunk.iter().enumerate() {
            check_finite(x, self.to_uv, self.pushed, labels, k)?;
        }
        for (r, x) in self.raw.iter_mut().zip(chunk) {
            r.extend_from_slice(x);
        }
        self.pushed += m;
        let mut released = 0;
        // `usize::MAX` as the length: ranges are not clipped at an end not yet known, which is
        // what the whole recording gives any block this far from its end.
        while self.next + self.block + self.ahead <= self.pushed {
            released += self.run(self.next..self.next + self.block, usize::MAX, out)?;
        }
        Ok(released)
    }

    /// Ends the recording: appends the remaining samples to `out[k]` and returns how many per
    /// channel. Errors if nothing was pushed or if already finished.
    pub fn finish(&mut self, out: &mut [Vec<f32>]) -> Result<usize, DenoiseError> {
        if self.finished {
            return Err(DenoiseError::Options(
                "the stream was finished; start a new one".into(),
            ));
        }
        if out.len() != self.channels() {
            return Err(DenoiseError::Options(format!(
                "output has {} channels, the stream {}",
                out.len(),
                self.channels()
            )));
        }
        if self.pushed == 0 {
            return Err(DenoiseError::Options("channels have no samples".into()));
        }
        self.finished = true;
        let n = self.pushed;
        let mut released = 0;
        while self.next < n {
            released += self.run(self.next..(self.next + self.block).min(n), n, out)?;
        }
        self.raw.iter_mut().for_each(Vec::clear);
        Ok(released)
    }

    /// Computes `core` of a recording of `n` samples on every channel, appends it to `out`,
    /// and drops the raw samples no later block needs.
    fn run(
        &mut self,
        core: std::ops::Range<usize>,
        n: usize,
        out: &mut [Vec<f32>],
    ) -> Result<usize, DenoiseError> {
        let view = self.model.view();
        let d = Denoiser {
            sae: view
                .sae()
                .with_ola_shape(self.ola)
                .with_validated_blend(self.blend),
            hop: self.hop,
            rate_hz: f64::from(view.meta().sample_rate_hz),
            high_band: self.high_band,
        };
        let len = core.len();
        // Every channel first, then release: an error leaves `out` as it was.
        let mut blocks = vec![vec![0.0f32; len]; self.raw.len()];
        for (k, (r, b)) in self.raw.iter().zip(&mut blocks).enumerate() {
            let f = d
                .process_block(
                    &self.plan,
                    r,
                    self.raw_start,
                    n,
                    core.clone(),
                    self.to_uv,
                    b,
                    &mut self.scratch,
                )
                .map_err(|e| channel_error(self.labels.as_deref(), k, e.to_string()))?;
            self.faults.input_samples += f.input_samples;
            self.faults.windows += f.windows;
        }
        for (o, b) in out.iter_mut().zip(&blocks) {
            o.extend_from_slice(b);
        }
        self.next = core.end;
        let keep = self
            .plan
            .raw_range(&(self.next..self.next + self.block), usize::MAX)
            .start;
        let drop = keep
            .saturating_sub(self.raw_start)
            .min(self.pushed - self.raw_start);
        for r in &mut self.raw {
            r.drain(..drop);
        }
        self.raw_start += drop;
        Ok(len)
    }
}

/// The core's [`StreamView`] owning its buffers and sharing its model, for handles that live
/// across foreign calls. Same algorithm and output as [`crate::core::Streamer`]: interleaved
/// frames in, as many frames out, delayed by [`OwnedStreamer::latency`] = `d_in - 1` samples
/// (255 samples, 1.0 s, for the shipped 256 Hz model). No allocation after construction.
pub struct OwnedStreamer {
    // Declared first so it is dropped before what it borrows.
    view: StreamView<'static, 'static>,
    buf: *mut [f32],
    topk: *mut [usize],
    model: Arc<Model>,
}

// SAFETY: the raw pointers are unique owners of their allocations (made by `Box::into_raw` in
// `new`, freed only in `drop`), the view borrows only them and the model kept alive by the
// `Arc`; nothing is shared with another thread.
unsafe impl Send for OwnedStreamer {}

impl OwnedStreamer {
    /// A fresh streamer for `channels` interleaved channels with window hop `hop` (`None`: the
    /// model's own).
    pub fn new(model: Arc<Model>, channels: usize, hop: Option<usize>) -> Result<Self, CoreError> {
        // SAFETY: the `Arc` keeps the model (and the bytes its SAE borrows) at a fixed address
        // until `self.model` is dropped, after `self.view` (field order).
        let m: &'static Model = unsafe { &*Arc::as_ptr(&model) };
        let view = m.view();
        let sae = view.sae();
        let hop = hop.unwrap_or(view.meta().hop);
        if channels == 0 {
            return Err(CoreError::NoChannels);
        }
        let buf: *mut [f32] =
            Box::into_raw(vec![0.0f32; StreamView::buffer_len(&sae, channels)].into_boxed_slice());
        let topk: *mut [usize] = Box::into_raw(vec![0usize; sae.k()].into_boxed_slice());
        // SAFETY: both allocations are live and referenced nowhere else until `drop`.
        let (b, t) = unsafe { (&mut *buf, &mut *topk) };
        match StreamView::new(sae, hop, channels, b, t) {
            Ok(view) => Ok(Self {
                view,
                buf,
                topk,
                model,
            }),
            Err(e) => {
                // SAFETY: made by `Box::into_raw` above; the failed view is gone.
                unsafe {
                    drop(Box::from_raw(buf));
                    drop(Box::from_raw(topk));
                }
                Err(e)
            }
        }
    }

    /// Pushes interleaved frames (`input.len()` a multiple of [`OwnedStreamer::channels`],
    /// `output.len() == input.len()`) and writes as many denoised frames.
    pub fn push_interleaved(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), CoreError> {
        self.view.push_interleaved(input, output)
    }

    /// Delay in samples between an input sample and its denoised output: `d_in - 1`.
    pub fn latency(&self) -> usize {
        self.view.latency()
    }

    /// Number of interleaved channels.
    pub fn channels(&self) -> usize {
        self.view.channels()
    }

    /// Faults repaired so far.
    pub fn faults(&self) -> FaultCounts {
        self.view.faults()
    }

    /// The model it runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
}

impl Drop for OwnedStreamer {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` in `new` and freed only here; the view that borrows
        // them is never used again (it has no drop glue that reads them).
        unsafe {
            drop(Box::from_raw(self.buf));
            drop(Box::from_raw(self.topk));
        }
    }
}

impl std::fmt::Debug for OwnedStreamer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedStreamer")
            .field("channels", &self.channels())
            .field("latency", &self.latency())
            .field("faults", &self.faults())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::identity_model;

    #[test]
    fn owned_streamer_equals_the_stream_view_bit_for_bit() {
        let model = Arc::new(default_model());
        let sae = model.view().sae();
        let hop = model.view().meta().hop;
        let c = 3;
        let x: Vec<f32> = (0..c * 700)
            .map(|i| (i as f32 * 0.37).sin() * 40.0 + (i % 17) as f32)
            .collect();
        let mut buf = vec![0.0; StreamView::buffer_len(&sae, c)];
        let mut topk = vec![0; sae.k()];
        let mut reference = StreamView::new(sae, hop, c, &mut buf, &mut topk).unwrap();
        let mut want = vec![0.0; x.len()];
        reference.push_interleaved(&x, &mut want).unwrap();
        let mut s = OwnedStreamer::new(model.clone(), c, None).unwrap();
        assert_eq!(s.latency(), 255);
        let mut got = vec![0.0; x.len()];
        // Uneven chunks (whole frames) must not change anything.
        let mut at = 0;
        for (i, frames) in [1usize, 7, 250, 3, 300, 139].iter().enumerate() {
            let len = frames * c;
            s.push_interleaved(&x[at..at + len], &mut got[at..at + len])
                .unwrap_or_else(|e| panic!("chunk {i}: {e}"));
            at += len;
        }
        assert_eq!(at, x.len());
        assert_eq!(got, want);
        assert!(
            got[c * 400..].iter().any(|&v| v != 0.0),
            "past the latency the output is not all zero"
        );
        assert!(matches!(
            OwnedStreamer::new(model, 0, None),
            Err(CoreError::NoChannels)
        ));
    }

    #[test]
    fn arrays_follow_the_file_pipeline_and_refuse_bad_input() {
        // Every channel goes through the file pipeline's whole-signal step, whatever the
        // thread count.
        let model = default_model();
        let x: Vec<f32> = (0..1000)
            .map(|i| (i as f32 * 0.05).sin() * 3e-5 + 1e-5 + (i as f32 * 0.9).sin() * 5e-6)
            .collect();
        let mut a = x.clone();
        let mut b = x.clone();
        let mut chans: Vec<&mut [f32]> = vec![&mut a, &mut b];
        let opts = DenoiseOptions {
            threads: 2,
            ..DenoiseOptions::default()
        };
        let r = denoise_channels(&mut chans, None, 256.0, 1e6, &model, &opts).unwrap();
        assert_eq!(r.resampled_to_hz, None);
        let view = model.view();
        let d = Denoiser {
            sae: view.sae(),
            hop: view.meta().hop,
            rate_hz: 256.0,
            high_band: opts.high_band,
        };
        let plan = d.plan(256.0, crate::io::filter::Filter::default()).unwrap();
        let mut want = x.clone();
        d.denoise_in_place(&mut want, &plan, 1e6, &mut Scratch::default())
            .unwrap();
        assert_eq!(a, want);
        assert_eq!(b, want);
        let moved = a
            .iter()
            .zip(&x)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(moved > 1e-7, "the model changed nothing ({moved} V)");

        // Errors name the channel and sample, and leave the data as it was.
        let mut bad = x.clone();
        bad[17] = f32::NAN;
        let before = bad.clone();
        let labels = vec!["Fp1".to_string()];
        let e = denoise_channels(
            &mut [&mut bad[..]],
            Some(&labels),
            256.0,
            1.0,
            &model,
            &DenoiseOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "<array>: channel \"Fp1\": sample 17 is NaN (not a finite number)"
        );
        assert_eq!(bad[..17], before[..17]);
        let opts = DenoiseOptions {
            bandpass_hz: Some((40.0, 1.0)),
            ..DenoiseOptions::default()
        };
        let e = denoise_channels(&mut [&mut a[..]], None, 256.0, 1.0, &model, &opts)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid option: --bandpass 40,1: need 0 < low < high (Hz)"
        );
        let e = denoise_channels(
            &mut [],
            None,
            256.0,
            1.0,
            &model,
            &DenoiseOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "invalid option: no channels to denoise");
        let mut short = [0.0f32; 3];
        let e = denoise_channels(
            &mut [&mut a[..], &mut short[..]],
            None,
            256.0,
            1.0,
            &model,
            &DenoiseOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "<array>: channel \"#1\": has 3 samples, channel 0 has 1000"
        );

        // Another rate: resampled to the model's and back, same length; the identity model
        // returns a slow tone (deep in the pass band) to 1e-3 of its amplitude.
        let (meta, t) = identity_model(64, 16, 256.0);
        let ident = Model::from_tensors(&meta, &t).unwrap();
        let tone: Vec<f32> = (0..999)
            .map(|i| (2.0 * std::f64::consts::PI * 7.0 * i as f64 / 200.0).sin() as f32)
            .collect();
        let mut y = tone.clone();
        let r = denoise_channels(
            &mut [&mut y[..]],
            None,
            200.0,
            1.0,
            &ident,
            &DenoiseOptions::default(),
        )
        .unwrap();
        assert_eq!(r.resampled_to_hz, Some(256.0));
        let err = tone[50..949]
            .iter()
            .zip(&y[50..949])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-3, "identity through resampling: error {err}");
    }
}

/// `denoise`'s multi-channel eye stage for channels streamed in chunks: the core's
/// [`crate::core::BlinkMwf`] over every channel, with the references found from the channel
/// names as `denoise` finds them ([`crate::ocular::find_references`]). Output comes
/// [`EyeStream::latency`] samples late; EOG channels come out unchanged. Run it before
/// [`ArrayStream`] (or any per-channel stage), all channels in microvolts at one rate.
#[derive(Debug)]
pub struct EyeStream {
    mwf: crate::core::BlinkMwf<Vec<crate::core::MwfChannel>, Vec<f64>, Vec<f32>>,
    /// Each reference as weights over the channels.
    weights: Vec<Vec<(usize, f64)>>,
    /// EOG channels (returned unchanged) and their delay lines.
    eog: Vec<(usize, std::collections::VecDeque<f32>)>,
    describe: String,
    frame: Vec<f32>,
    out: Vec<f32>,
    refs: Vec<f32>,
}

impl EyeStream {
    /// A stage for channels named `names` (their count is the channel count) at `fs_hz`;
    /// `eog` names the reference channels (else EOG-labelled channels, else the frontal
    /// channels). `Ok(None)`: the montage has neither EOG nor frontal channels.
    pub fn new(
        names: &[String],
        fs_hz: f64,
        eog: Option<&[String]>,
    ) -> Result<Option<Self>, DenoiseError> {
        let ocular = |error| DenoiseError::Ocular {
            file: PathBuf::from(ARRAY_SOURCE),
            error: Box::new(error),
        };
        if !(fs_hz.is_finite() && fs_hz > 0.0) {
            return Err(DenoiseError::Options(format!(
                "sampling rate must be positive and finite, got {fs_hz}"
            )));
        }
        let Some(plan) = crate::ocular::find_references(names, eog).map_err(ocular)? else {
            return Ok(None);
        };
        let n = names.len();
        let cfg = crate::core::MwfConfig::for_rate(fs_hz);
        type Mwf = crate::core::BlinkMwf<Vec<crate::core::MwfChannel>, Vec<f64>, Vec<f32>>;
        let mwf = Mwf::new(
            cfg,
            vec![crate::core::MwfChannel::default(); n],
            vec![
                0.0;
                crate::core::MwfEstimator::<Vec<crate::core::MwfChannel>, Vec<f64>>::workspace_len(
                    n
                )
            ],
            vec![0.0; Mwf::line_len(n, cfg.delay)],
        )
        .map_err(|e| ocular(e.into()))?;
        let weights = plan
            .references
            .iter()
            .map(|r| {
                let p = 1.0 / r.plus.len() as f64;
                let mut w: Vec<(usize, f64)> = r.plus.iter().map(|&c| (c, p)).collect();
                if !r.minus.is_empty() {
                    let m = -1.0 / r.minus.len() as f64;
                    w.extend(r.minus.iter().map(|&c| (c, m)));
                }
                w
            })
            .collect();
        let eog = match plan.kind {
            crate::ocular::ReferenceKind::Eog => plan
                .references
                .iter()
                .flat_map(|r| r.channels())
                .map(|c| (c, std::collections::VecDeque::with_capacity(cfg.delay + 1)))
                .collect(),
            crate::ocular::ReferenceKind::Frontal => Vec::new(),
        };
        Ok(Some(EyeStream {
            mwf,
            weights,
            eog,
            describe: plan.describe(),
            frame: vec![0.0; n],
            out: vec![0.0; n],
            refs: vec![0.0; plan.references.len()],
        }))
    }

    /// Which references the stage uses, e.g. `EOG channels VEOG` or `frontal references
    /// mean(Fp1,Fp2), F7-F8 (no EOG channel)`.
    pub fn references(&self) -> &str {
        &self.describe
    }

    /// Output delay in samples.
    pub fn latency(&self) -> usize {
        self.mwf.delay()
    }

    /// Whether the filter acts now (a blink source has been found).
    pub fn active(&self) -> bool {
        self.mwf.estimator().active()
    }

    fn emit(&mut self, out: &mut [Vec<f32>]) {
        for (o, &v) in out.iter_mut().zip(&self.out) {
            o.push(v);
        }
        for (c, line) in &mut self.eog {
            if let (Some(v), Some(o)) = (line.pop_front(), out.get_mut(*c)) {
                *o.last_mut().expect("pushed above") = v;
            }
        }
    }

    /// Takes the next samples of every channel (`chunk[c]`, one length) and appends the
    /// samples now released to `out[c]`; returns how many per channel.
    pub fn push(&mut self, chunk: &[&[f32]], out: &mut [Vec<f32>]) -> Result<usize, DenoiseError> {
        let n = self.frame.len();
        if chunk.len() != n || out.len() != n {
            return Err(DenoiseError::Options(format!(
                "the stage has {n} channels; got {} in and {} out",
                chunk.len(),
                out.len()
            )));
        }
        let len = chunk.first().map_or(0, |c| c.len());
        if let Some(k) = chunk.iter().position(|c| c.len() != len) {
            return Err(channel_error(
                None,
                k,
                format!("{} samples, channel 0 has {len}", chunk[k].len()),
            ));
        }
        let mut released = 0;
        for t in 0..len {
            for (f, c) in self.frame.iter_mut().zip(chunk) {
                *f = c[t];
            }
            for (r, w) in self.refs.iter_mut().zip(&self.weights) {
                *r = w
                    .iter()
                    .map(|&(i, wi)| wi * f64::from(self.frame[i]))
                    .sum::<f64>() as f32;
            }
            for (c, line) in &mut self.eog {
                line.push_back(self.frame[*c]);
            }
            let ready = self
                .mwf
                .push(&self.refs, &self.frame, &mut self.out)
                .map_err(|e| DenoiseError::Options(format!("eye stage: {e}")))?;
            if ready {
                self.emit(out);
                released += 1;
            }
        }
        Ok(released)
    }

    /// After the last push: appends the samples still held to `out[c]`; returns how many.
    pub fn finish(&mut self, out: &mut [Vec<f32>]) -> Result<usize, DenoiseError> {
        let mut released = 0;
        while self
            .mwf
            .drain(&mut self.out)
            .map_err(|e| DenoiseError::Options(format!("eye stage: {e}")))?
        {
            self.emit(out);
            released += 1;
        }
        Ok(released)
    }
}
