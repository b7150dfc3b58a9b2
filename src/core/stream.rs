//! Streaming denoiser: windows of `d_in` samples every `hop` samples, denoised by the SAE and
//! recombined by weighted overlap-add (OLA), for many channels at once, with no allocation.
//!
//! - [`Streamer`]: owns its state in const-generic arrays (firmware: build it once at start-up,
//!   e.g. into a static cell or the main stack).
//! - [`StreamView`]: the same streamer over caller buffers sized at run time (CLI, tests).
//! - [`denoise_offline_into`]: a whole signal at once, output length == input length, equal
//!   bit for bit to streaming the reflect-padded signal.
//!
//! The OLA window is `w'[n] = w[n] / S[n mod hop]` with `w[n] = sin²(π (n + ½) / d_in)` (a Hann
//! window shifted half a sample, so no weight is zero) and `S[r] = Σ_q w[r + q·hop]`: the
//! hop-shifted copies of `w'` sum to 1 for any `1 <= hop <= d_in` (to f32 rounding), so a model
//! that returns its input window reproduces the signal. [`ola_window_shape_into`] gives the
//! same normalisation for other shapes ([`OlaShape`]); every streamer uses the shape its SAE
//! carries ([`Sae::ola_shape`], from the model file; Hann unless the model names another).

use super::error::{CoreError, check_len};
use super::sae::Sae;

/// Inputs whose magnitude exceeds this (or that are NaN/inf) are treated as faults. It keeps
/// every intermediate finite: the z-score's sum of squares of 65 536 such samples is < 1e35.
pub const SAMPLE_LIMIT: f32 = 1e15;

/// Faults the streamer repaired instead of propagating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Input samples that were NaN, infinite or beyond [`SAMPLE_LIMIT`]; each was replaced by 0.
    pub input_samples: u64,
    /// Windows whose model output was non-finite or beyond [`SAMPLE_LIMIT`]; each was replaced
    /// by its (sanitised) input window, i.e. passed through undenoised.
    pub windows: u64,
}

#[inline(always)]
pub(crate) fn sane(v: f32) -> bool {
    // NaN fails both comparisons.
    (-SAMPLE_LIMIT..=SAMPLE_LIMIT).contains(&v)
}

/// `v` if it is [`sane`], else 0 (counted in `faults`).
#[inline(always)]
pub(crate) fn sanitise(v: f32, faults: &mut FaultCounts) -> f32 {
    if sane(v) {
        v
    } else {
        faults.input_samples = faults.input_samples.saturating_add(1);
        0.0
    }
}

/// The taper `w[n]` of the OLA window before its normalisation (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OlaShape {
    /// `sin²(π (n + ½) / d_in)`: the taper of models that name none.
    #[default]
    Hann,
    /// `sin(π (n + ½) / d_in)`: flatter, so each output averages more windows' estimates
    /// with less weight on their centres.
    Sine,
}

impl OlaShape {
    /// Every shape.
    pub const ALL: [Self; 2] = [Self::Hann, Self::Sine];

    /// The shape's name in options: `hann` or `sine`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hann => "hann",
            Self::Sine => "sine",
        }
    }

    /// The shape named `name` ([`OlaShape::name`]), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Fills `w` (length `d_in`) with the normalised OLA window described in the module docs.
pub fn ola_window_into(hop: usize, w: &mut [f32]) -> Result<(), CoreError> {
    ola_window_shape_into(hop, OlaShape::Hann, w)
}

/// Fills `w` (length `d_in`) with the OLA window of taper `shape`, normalised as in the
/// module docs (hop-shifted copies sum to 1).
pub fn ola_window_shape_into(hop: usize, shape: OlaShape, w: &mut [f32]) -> Result<(), CoreError> {
    let d_in = w.len();
    if hop == 0 || hop > d_in {
        return Err(CoreError::InvalidHop { hop, d_in });
    }
    let raw = |n: usize| {
        let s = libm::sin(::core::f64::consts::PI * (n as f64 + 0.5) / d_in as f64);
        match shape {
            OlaShape::Hann => s * s,
            OlaShape::Sine => s,
        }
    };
    for (n, wn) in w.iter_mut().enumerate() {
        let mut sum = 0.0f64;
        let mut m = n % hop;
        while m < d_in {
            sum += raw(m);
            m += hop;
        }
        *wn = (raw(n) / sum) as f32;
    }
    Ok(())
}

/// Index into a signal of length `n >= 1` for position `i` of its symmetric ("reflect", edge
/// not repeated: `x[-1] = x[1]`) periodic extension; used for the offline edges.
pub fn reflect_index(i: isize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period as isize) as usize;
    if m < n { m } else { period - m }
}

/// Scalar state shared by the owned streamer and the view.
#[derive(Clone, Copy, Debug)]
struct Counters {
    hop: usize,
    channels: usize,
    /// Samples pushed since the last window was processed.
    phase: usize,
    /// Frames pushed so far (saturating), to emit zeros during the warm-up.
    pushed: u64,
    faults: FaultCounts,
}

/// Borrowed buffers of one streamer, whatever owns them.
struct Bufs<'b> {
    ola_w: &'b [f32],
    input: &'b mut [f32],
    ola: &'b mut [f32],
    y: &'b mut [f32],
    xn: &'b mut [f32],
    pre: &'b mut [f32],
    topk: &'b mut [usize],
}

/// Processes one window: `x` (sanitised) through the model into `y`, with the fault rule.
/// Streaming and offline both go through here so they agree bit for bit.
#[inline]
fn window_into(
    sae: &Sae<'_>,
    x: &[f32],
    y: &mut [f32],
    xn: &mut [f32],
    pre: &mut [f32],
    topk: &mut [usize],
    faults: &mut FaultCounts,
) {
    sae.denoise_parts(x, y, xn, pre, topk);
    if !y.iter().all(|&v| sane(v)) {
        y.copy_from_slice(x);
        faults.windows = faults.windows.saturating_add(1);
    }
}

fn push_impl(
    sae: &Sae<'_>,
    st: &mut Counters,
    b: Bufs<'_>,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), CoreError> {
    let c_n = st.channels;
    if !input.len().is_multiple_of(c_n) {
        return Err(CoreError::BufferLength {
            buffer: "input (whole frames)",
            expected: input.len() - input.len() % c_n,
            got: input.len(),
        });
    }
    check_len("output", input.len(), output.len())?;
    let d_in = sae.d_in();
    let hop = st.hop;
    let latency = (d_in - 1) as u64;
    for (fin, fout) in input.chunks_exact(c_n).zip(output.chunks_exact_mut(c_n)) {
        let pos = d_in - hop + st.phase;
        for (c, &v) in fin.iter().enumerate() {
            if let Some(slot) = b.input.get_mut(c * d_in + pos) {
                *slot = sanitise(v, &mut st.faults);
            }
        }
        st.phase += 1;
        if st.phase == hop {
            st.phase = 0;
            for c in 0..c_n {
                let range = c * d_in..(c + 1) * d_in;
                let (Some(ola), Some(x)) = (b.ola.get_mut(range.clone()), b.input.get_mut(range))
                else {
                    continue;
                };
                ola.copy_within(hop.., 0);
                ola[d_in - hop..].fill(0.0);
                window_into(sae, x, b.y, b.xn, b.pre, b.topk, &mut st.faults);
                for ((o, &w), &y) in ola.iter_mut().zip(b.ola_w).zip(b.y.iter()) {
                    *o += w * y;
                }
                x.copy_within(hop.., 0);
            }
        }
        let warm = st.pushed >= latency;
        for (c, o) in fout.iter_mut().enumerate() {
            *o = if warm {
                b.ola.get(c * d_in + st.phase).copied().unwrap_or(0.0)
            } else {
                0.0
            };
        }
        st.pushed = st.pushed.saturating_add(1);
    }
    Ok(())
}

fn check_hop(sae: &Sae<'_>, hop: usize) -> Result<(), CoreError> {
    if hop == 0 || hop > sae.d_in() {
        Err(CoreError::InvalidHop {
            hop,
            d_in: sae.d_in(),
        })
    } else {
        Ok(())
    }
}

/// A multi-channel streaming denoiser owning all its memory in const-generic arrays.
///
/// `D` = `d_in` (window), `S` = `d_sae`, `K` = `k`, `C` = channels; they must match the model
/// (checked by [`Streamer::new`]). The hop comes from the model at run time.
///
/// **Latency**: every pushed frame yields one output frame; output sample `n` is the denoised
/// input sample `n - (d_in - 1)`. The first `d_in - 1` outputs are 0 (warm-up), and outputs for
/// the first `d_in - hop` input samples mix in windows that start before the stream (filled with
/// zeros). **OLA normalisation**: each window's output is weighted by `w'` (module docs), whose
/// hop-shifted copies sum to 1, so the identity model reproduces the input (to f32 rounding).
///
/// Faults: non-finite or huge inputs become 0 and windows with non-finite output pass through
/// undenoised; both are counted in [`Streamer::faults`], so the output is always finite.
///
/// ```
/// use mfr_eeg::core::{Activation, Normalisation, Sae, SaeConfig, Streamer, Weights, F32Weights};
/// // A 4-sample identity "model": W_enc = W_dec = I, biases 0, keep all 4 latents.
/// let mut eye = [0u8; 64];
/// for i in 0..4 {
///     eye[4 * (i * 4 + i)..][..4].copy_from_slice(&1.0f32.to_le_bytes());
/// }
/// let zeros = [0u8; 16];
/// let cfg = SaeConfig { d_in: 4, d_sae: 4, k: 4, activation: Activation::TopkSigned,
///                       normalisation: Normalisation::None };
/// let w = Weights::F32(F32Weights { w_enc: &eye, w_dec: &eye, b_enc: &zeros, b_dec: &zeros });
/// let sae = Sae::new(cfg, w).unwrap();
/// // 4-sample windows, hop 2, two channels (interleaved frames).
/// let mut s: Streamer<'_, 4, 4, 4, 2> = Streamer::new(sae, 2).unwrap();
/// assert_eq!(s.latency(), 3);
/// let input: Vec<f32> = (0..40).map(|i| i as f32).collect(); // 20 frames
/// let mut out = vec![0.0; 40];
/// s.push_interleaved(&input[..6], &mut out[..6]).unwrap(); // any number of frames per call
/// s.push_interleaved(&input[6..], &mut out[6..]).unwrap();
/// for f in 3 + 1..20 { // past the latency and the zero-history start
///     for c in 0..2 {
///         let (got, want) = (out[2 * f + c], input[2 * (f - 3) + c]);
///         assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0));
///     }
/// }
/// ```
pub struct Streamer<'m, const D: usize, const S: usize, const K: usize, const C: usize> {
    sae: Sae<'m>,
    counters: Counters,
    ola_w: [f32; D],
    input: [[f32; D]; C],
    ola: [[f32; D]; C],
    y: [f32; D],
    xn: [f32; D],
    pre: [f32; S],
    topk: [usize; K],
}

impl<'m, const D: usize, const S: usize, const K: usize, const C: usize> Streamer<'m, D, S, K, C> {
    /// A streamer for `sae` (whose sizes must equal `D`, `S`, `K`) with window hop `hop`.
    pub fn new(sae: Sae<'m>, hop: usize) -> Result<Self, CoreError> {
        const {
            assert!(
                D > 0 && S > 0 && K > 0 && K <= S && C > 0,
                "invalid streamer sizes"
            )
        };
        for (what, expected, got) in [
            ("d_in", D, sae.d_in()),
            ("d_sae", S, sae.d_sae()),
            ("k", K, sae.k()),
        ] {
            if expected != got {
                return Err(CoreError::ModelMismatch {
                    what,
                    expected,
                    got,
                });
            }
        }
        // The front end's scratch has no compile-time size here.
        if let Some(f) = sae.front() {
            return Err(CoreError::FrontNeedsStreamView {
                scratch: f.shape.scratch_len(sae.d_in()),
            });
        }
        check_hop(&sae, hop)?;
        let mut ola_w = [0.0; D];
        ola_window_shape_into(hop, sae.ola_shape(), &mut ola_w)?;
        Ok(Self {
            sae,
            counters: Counters {
                hop,
                channels: C,
                phase: 0,
                pushed: 0,
                faults: FaultCounts::default(),
            },
            ola_w,
            input: [[0.0; D]; C],
            ola: [[0.0; D]; C],
            y: [0.0; D],
            xn: [0.0; D],
            pre: [0.0; S],
            topk: [0; K],
        })
    }

    /// Pushes interleaved frames (`input.len()` a multiple of `C`) and writes as many output
    /// frames, delayed by [`Streamer::latency`].
    pub fn push_interleaved(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), CoreError> {
        let b = Bufs {
            ola_w: &self.ola_w,
            input: self.input.as_flattened_mut(),
            ola: self.ola.as_flattened_mut(),
            y: &mut self.y,
            xn: &mut self.xn,
            pre: &mut self.pre,
            topk: &mut self.topk,
        };
        push_impl(&self.sae, &mut self.counters, b, input, output)
    }

    /// Delay in samples between an input sample and its denoised output: `d_in - 1`.
    pub const fn latency(&self) -> usize {
        D - 1
    }

    /// Window hop in samples.
    pub const fn hop(&self) -> usize {
        self.counters.hop
    }

    /// Faults repaired so far.
    pub const fn faults(&self) -> FaultCounts {
        self.counters.faults
    }

    /// Forgets all history (as if newly constructed).
    pub fn reset(&mut self) {
        self.counters.phase = 0;
        self.counters.pushed = 0;
        self.counters.faults = FaultCounts::default();
        self.input = [[0.0; D]; C];
        self.ola = [[0.0; D]; C];
    }

    /// Bytes of state and scratch this streamer holds (excluding the weights it borrows).
    pub const fn state_bytes() -> usize {
        ::core::mem::size_of::<Self>()
    }
}

/// The streaming denoiser over caller-provided buffers, for sizes known only at run time.
/// Same algorithm, latency and output as [`Streamer`].
pub struct StreamView<'b, 'm> {
    sae: Sae<'m>,
    counters: Counters,
    ola_w: &'b mut [f32],
    input: &'b mut [f32],
    ola: &'b mut [f32],
    y: &'b mut [f32],
    xn: &'b mut [f32],
    pre: &'b mut [f32],
    topk: &'b mut [usize],
}

impl<'b, 'm> StreamView<'b, 'm> {
    /// f32 buffer length needed for `channels` channels: `(2 * channels + 3) * d_in +
    /// pre_len` ([`Sae::pre_len`]: `d_sae`, plus the front end's scratch if the model has
    /// one). Saturates instead of overflowing, so an absurd channel count fails the length
    /// check.
    pub const fn buffer_len(sae: &Sae<'_>, channels: usize) -> usize {
        channels
            .saturating_mul(2)
            .saturating_add(3)
            .saturating_mul(sae.d_in())
            .saturating_add(sae.pre_len())
    }

    /// A fresh streamer over `buf` (length [`StreamView::buffer_len`]) and `topk` (length k).
    pub fn new(
        sae: Sae<'m>,
        hop: usize,
        channels: usize,
        buf: &'b mut [f32],
        topk: &'b mut [usize],
    ) -> Result<Self, CoreError> {
        if channels == 0 {
            return Err(CoreError::NoChannels);
        }
        check_hop(&sae, hop)?;
        check_len("stream buffer", Self::buffer_len(&sae, channels), buf.len())?;
        check_len("topk", sae.k(), topk.len())?;
        let d_in = sae.d_in();
        buf.fill(0.0);
        let (ola_w, rest) = buf.split_at_mut(d_in);
        let (input, rest) = rest.split_at_mut(channels * d_in);
        let (ola, rest) = rest.split_at_mut(channels * d_in);
        let (y, rest) = rest.split_at_mut(d_in);
        let (xn, pre) = rest.split_at_mut(d_in);
        ola_window_shape_into(hop, sae.ola_shape(), ola_w)?;
        Ok(Self {
            sae,
            counters: Counters {
                hop,
                channels,
                phase: 0,
                pushed: 0,
                faults: FaultCounts::default(),
            },
            ola_w,
            input,
            ola,
            y,
            xn,
            pre,
            topk,
        })
    }

    /// Pushes interleaved frames (`input.len()` a multiple of the channel count) and writes as
    /// many output frames, delayed by [`StreamView::latency`].
    pub fn push_interleaved(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), CoreError> {
        let b = Bufs {
            ola_w: self.ola_w,
            input: self.input,
            ola: self.ola,
            y: self.y,
            xn: self.xn,
            pre: self.pre,
            topk: self.topk,
        };
        push_impl(&self.sae, &mut self.counters, b, input, output)
    }

    /// Delay in samples between an input sample and its denoised output: `d_in - 1`.
    pub const fn latency(&self) -> usize {
        self.sae.d_in() - 1
    }

    /// Number of channels.
    pub const fn channels(&self) -> usize {
        self.counters.channels
    }

    /// Faults repaired so far.
    pub const fn faults(&self) -> FaultCounts {
        self.counters.faults
    }
}

/// Reflected samples the offline function places before (and after) the signal: `d_in - 1`,
/// so every output sample is covered only by windows of real (or reflected) data.
pub const fn offline_pad(d_in: usize) -> usize {
    d_in - 1
}

/// f32 work length for [`denoise_offline_into`]: `4 * d_in + pre_len` ([`Sae::pre_len`]).
pub const fn offline_work_len(sae: &Sae<'_>) -> usize {
    (4 * sae.d_in()).saturating_add(sae.pre_len())
}

/// Denoises a whole single-channel signal; `out.len() == x.len()`.
///
/// Edges: the signal is extended by reflection ([`reflect_index`]) by [`offline_pad`] samples
/// on both sides, so the first and last samples see full windows. The result equals, bit for
/// bit, pushing `x[reflect(t - P)]` for `t in 0..P + n + P` (`P = offline_pad(d_in)`) through a
/// fresh one-channel streamer and keeping outputs `P + latency .. P + latency + n`.
/// Returns the faults repaired (counted over the padded signal).
pub fn denoise_offline_into(
    sae: &Sae<'_>,
    hop: usize,
    x: &[f32],
    out: &mut [f32],
    work: &mut [f32],
    topk: &mut [usize],
) -> Result<FaultCounts, CoreError> {
    check_hop(sae, hop)?;
    check_len("out", x.len(), out.len())?;
    check_len("work", offline_work_len(sae), work.len())?;
    check_len("topk", sae.k(), topk.len())?;
    let mut faults = FaultCounts::default();
    let n = x.len();
    if n == 0 {
        return Ok(faults);
    }
    let d_in = sae.d_in();
    let pad = offline_pad(d_in);
    let (ola_w, rest) = work.split_at_mut(d_in);
    let (win, rest) = rest.split_at_mut(d_in);
    let (y, rest) = rest.split_at_mut(d_in);
    let (xn, pre) = rest.split_at_mut(d_in);
    ola_window_shape_into(hop, sae.ola_shape(), ola_w)?;
    out.fill(0.0);
    // Window m ends at stream time m*hop - 1; only those reaching stream time >= pad touch the
    // output (earlier ones cover only the padding), and none starting after the last sample.
    let m_first = d_in.div_ceil(hop);
    let m_last = (pad + n + d_in - 1) / hop;
    for m in m_first..=m_last {
        let start = (m * hop) as isize - d_in as isize; // stream time of the window's first sample
        for (i, wv) in win.iter_mut().enumerate() {
            let s = start + i as isize - pad as isize;
            let v = x.get(reflect_index(s, n)).copied().unwrap_or(0.0);
            *wv = sanitise(v, &mut faults);
        }
        window_into(sae, win, y, xn, pre, topk, &mut faults);
        for (i, (&w, &yv)) in ola_w.iter().zip(y.iter()).enumerate() {
            let s = start + i as isize - pad as isize;
            if let Some(o) = usize::try_from(s).ok().and_then(|s| out.get_mut(s)) {
                *o += w * yv;
            }
        }
    }
    Ok(faults)
}
