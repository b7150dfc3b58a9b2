//! The TopK sparse autoencoder over borrowed little-endian weights (f32 or int8).
//!
//! Shapes follow SAELens: `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc [d_sae]`,
//! `b_dec [d_in]`, all row-major. Weights are byte slices read with `from_le_bytes`, so they may
//! sit at any alignment (a model embedded with `include_bytes!`, a memory-mapped file).
//! [`Sae::new`] checks every length and that every weight is finite once; the hot path only
//! indexes inside those checked lengths.

use super::error::{CoreError, check_len};
use super::stream::OlaShape;
use super::topk::topk_into;
use ::core::ops::Range;

/// Which nonlinearity follows the TopK selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Keep the k largest pre-activations, then ReLU them (`topk_relu`).
    TopkRelu,
    /// Keep the k largest pre-activations with their signs (`topk_signed`, the MFR paper's).
    TopkSigned,
}

impl Activation {
    /// The name used in model metadata.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TopkRelu => "topk_relu",
            Self::TopkSigned => "topk_signed",
        }
    }

    /// Parses the metadata name.
    pub fn from_name(s: &str) -> Result<Self, CoreError> {
        match s {
            "topk_relu" => Ok(Self::TopkRelu),
            "topk_signed" => Ok(Self::TopkSigned),
            _ => Err(CoreError::UnknownActivation),
        }
    }

    #[inline]
    fn apply(self, pre: f32) -> f32 {
        match self {
            Self::TopkRelu => {
                if pre > 0.0 {
                    pre
                } else {
                    0.0
                }
            }
            Self::TopkSigned => pre,
        }
    }
}

/// How a window is normalised before the SAE and mapped back after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Normalisation {
    /// `x_n = (x - mean) / (std + ZSCORE_EPS)` per window (population std); the output is
    /// mapped back with the same mean and scale (`window_zscore`).
    WindowZscore,
    /// The same z-score on the way in, but the output is only rescaled: the window's mean is
    /// not added back (`window_zscore_no_mean`). In EEG a window's mean is dominated by slow,
    /// large artifacts (blinks, drift, electrode pops), so re-adding the noisy mean puts them
    /// back; the model supplies its own offset instead. Content far below 1/window (< 1 Hz
    /// for 1 s windows) is lost, which EEG analysis filters out anyway.
    WindowZscoreNoMean,
    /// The window goes into the SAE as it is (`none`).
    None,
}

impl Normalisation {
    /// The name used in model metadata.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WindowZscore => "window_zscore",
            Self::WindowZscoreNoMean => "window_zscore_no_mean",
            Self::None => "none",
        }
    }

    /// What is added back to the rescaled SAE output of a window whose mean is `mean`.
    #[inline]
    pub const fn output_offset(self, mean: f32) -> f32 {
        match self {
            Self::WindowZscore => mean,
            Self::WindowZscoreNoMean | Self::None => 0.0,
        }
    }

    /// Normalises window `x` into `xn` as inference does; returns `(offset, scale)`, which map
    /// the SAE's output back: `y = y_n * scale + offset`.
    pub fn normalise_into(self, x: &[f32], xn: &mut [f32]) -> (f32, f32) {
        match self {
            Self::None => {
                for (n, &v) in xn.iter_mut().zip(x) {
                    *n = v;
                }
                (0.0, 1.0)
            }
            Self::WindowZscore | Self::WindowZscoreNoMean => {
                let (mean, scale) = zscore_stats(x);
                for (n, &v) in xn.iter_mut().zip(x) {
                    *n = (v - mean) / scale;
                }
                (self.output_offset(mean), scale)
            }
        }
    }

    /// Maps a raw (noisy input, clean target) window pair into the SAE's training domain, in
    /// place, exactly as inference will see the input and read the output.
    pub fn normalise_pair(self, input: &mut [f32], target: &mut [f32]) {
        if self == Self::None {
            return;
        }
        let (mean, scale) = zscore_stats(input);
        let back = self.output_offset(mean);
        for v in input.iter_mut() {
            *v = (*v - mean) / scale;
        }
        for v in target.iter_mut() {
            *v = (*v - back) / scale;
        }
    }

    /// Parses the metadata name.
    pub fn from_name(s: &str) -> Result<Self, CoreError> {
        match s {
            "window_zscore" => Ok(Self::WindowZscore),
            "window_zscore_no_mean" => Ok(Self::WindowZscoreNoMean),
            "none" => Ok(Self::None),
            _ => Err(CoreError::UnknownNormalisation),
        }
    }
}

/// Added to the window's standard deviation before dividing, so a flat window (std 0) maps to
/// zeros instead of NaN. Chosen for signals in microvolts (EEG std is 1-100 uV): it changes the
/// scale of any real window by < 1e-5 relative. Training must use the same constant.
pub const ZSCORE_EPS: f32 = 1e-6;

/// Mean and scale (`population std + ZSCORE_EPS`) of a window, computed in two f32 passes.
/// Training and evaluation use this function so they normalise exactly as the core does.
pub fn zscore_stats(x: &[f32]) -> (f32, f32) {
    if x.is_empty() {
        return (0.0, 1.0);
    }
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, libm::sqrtf(var) + ZSCORE_EPS)
}

/// Sizes and modes of an SAE (what the model metadata says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaeConfig {
    /// Window length in samples (input width).
    pub d_in: usize,
    /// Number of latents (dictionary size).
    pub d_sae: usize,
    /// Latents kept per window.
    pub k: usize,
    /// TopK flavour.
    pub activation: Activation,
    /// Per-window normalisation.
    pub normalisation: Normalisation,
}

/// Borrowed f32 weights, each a little-endian byte slice of any alignment.
#[derive(Clone, Copy, Debug)]
pub struct F32Weights<'a> {
    /// `W_enc [d_in, d_sae]`.
    pub w_enc: &'a [u8],
    /// `W_dec [d_sae, d_in]`.
    pub w_dec: &'a [u8],
    /// `b_enc [d_sae]`.
    pub b_enc: &'a [u8],
    /// `b_dec [d_in]`.
    pub b_dec: &'a [u8],
}

/// Borrowed int8 weights with one f32 scale per latent: `W_enc[i, j] ~ w_enc[i, j] *
/// w_enc_scale[j]` (per column) and `W_dec[j, i] ~ w_dec[j, i] * w_dec_scale[j]` (per row).
/// Biases stay f32.
#[derive(Clone, Copy, Debug)]
pub struct Int8Weights<'a> {
    /// `W_enc [d_in, d_sae]`, int8 stored as bytes.
    pub w_enc: &'a [u8],
    /// `W_enc_scale [d_sae]`, f32 LE.
    pub w_enc_scale: &'a [u8],
    /// `W_dec [d_sae, d_in]`, int8 stored as bytes.
    pub w_dec: &'a [u8],
    /// `W_dec_scale [d_sae]`, f32 LE.
    pub w_dec_scale: &'a [u8],
    /// `b_enc [d_sae]`, f32 LE.
    pub b_enc: &'a [u8],
    /// `b_dec [d_in]`, f32 LE.
    pub b_dec: &'a [u8],
}

/// The weights of an SAE in one of the supported storage types.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    /// f32 everywhere.
    F32(F32Weights<'a>),
    /// int8 matrices, f32 scales and biases.
    Int8(Int8Weights<'a>),
}

/// The optional gated linear path beside the SAE: an odd-length FIR (`taps`, f32 LE, centred,
/// zero outside the window) applied to the normalised window and added to the SAE's output,
/// only in windows whose high-frequency ratio `sum (x[i+1]-x[i])^2 / sum x^2` is at most
/// `gate`.
///
/// Why: a TopK code with k atoms reconstructs structured waveforms well but cannot pass
/// broadband, low-amplitude EEG detail through, which is what a band-pass filter keeps when a
/// slow artifact (EOG, drift) dominates the window. A linear path does that; the gate keeps it
/// out of windows full of high-frequency artifact (EMG), where passing the input through would
/// pass the artifact too. Fitted by least squares after the SAE is trained.
#[derive(Clone, Copy, Debug)]
pub struct Skip<'a> {
    /// FIR taps, f32 little-endian, odd count <= `d_in`; tap `taps.len()/2` is lag 0.
    pub taps: &'a [u8],
    /// Largest high-frequency ratio at which the path is applied (>= 0).
    pub gate: f32,
}

impl Skip<'_> {
    /// Number of taps.
    pub const fn len(&self) -> usize {
        self.taps.len() / 4
    }

    /// True if there are no taps.
    pub const fn is_empty(&self) -> bool {
        self.taps.len() < 4
    }

    /// True if the path is applied to window `x`.
    pub fn opens(&self, x: &[f32]) -> bool {
        let mut e = 0.0f32;
        let mut d = 0.0f32;
        let mut prev = None;
        for &v in x {
            e += v * v;
            if let Some(p) = prev {
                d += (v - p) * (v - p);
            }
            prev = Some(v);
        }
        d <= self.gate * e
    }

    /// `out[i] += sum_l taps[l] * x[i + l - c]` (`c = len/2`, zero outside `x`) if the gate
    /// opens.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        if !self.opens(x) {
            return;
        }
        let c = self.len() / 2;
        let n = x.len().min(out.len());
        for (l, t) in self.taps.chunks_exact(4).enumerate() {
            add_tap(le_chunk(t), l, c, x, out, 0..n);
        }
    }
}

/// `out[i] += t * x[i + l - c]` for the `i` in `range` whose source lies inside `x`: one tap
/// of a centred FIR over the samples it reaches, a contiguous multiply-add the compiler
/// vectorises (a per-sample inner loop over taps did not). Shared by the linear path and the
/// front end's edges.
#[inline]
fn add_tap(t: f32, l: usize, c: usize, x: &[f32], out: &mut [f32], range: Range<usize>) {
    let lo = c.saturating_sub(l).max(range.start);
    let hi = (x.len() + c).saturating_sub(l).min(range.end);
    if lo >= hi {
        return;
    }
    let src = lo + l - c;
    if let (Some(o), Some(xs)) = (out.get_mut(lo..hi), x.get(src..src + (hi - lo))) {
        for (o, &v) in o.iter_mut().zip(xs) {
            *o += t * v;
        }
    }
}

/// Largest front width, depth and kernel a model may declare (bounds every size computed
/// from them, so none can overflow).
pub const MAX_FRONT_WIDTH: usize = 256;
/// Largest number of hidden front layers.
pub const MAX_FRONT_DEPTH: usize = 16;
/// Largest front kernel length.
pub const MAX_FRONT_KERNEL: usize = 63;

/// Shape of a convolutional front end ([`Front`]): `depth` hidden layers of `width` channels
/// with odd kernels of `kernel` taps, then a 1x1 layer back to one channel. Written
/// `{width}x{depth}k{kernel}` (e.g. `16x3k7`) in model metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrontShape {
    /// Hidden channels.
    pub width: usize,
    /// Hidden layers (>= 1).
    pub depth: usize,
    /// Kernel length of the hidden layers (odd).
    pub kernel: usize,
}

impl FrontShape {
    /// True if the sizes are within the format's bounds and the kernel is odd.
    pub const fn is_valid(&self) -> bool {
        self.width >= 1
            && self.width <= MAX_FRONT_WIDTH
            && self.depth >= 1
            && self.depth <= MAX_FRONT_DEPTH
            && self.kernel % 2 == 1
            && self.kernel <= MAX_FRONT_KERNEL
    }

    /// Number of f32 parameters, packed layer by layer as weight `[out, in, kernel]` then
    /// bias `[out]`: `[width, 1, kernel]`, `depth - 1` times `[width, width, kernel]`, then
    /// `[1, width, 1]`. Meaningful for valid shapes only.
    pub const fn n_params(&self) -> usize {
        let (w, k) = (self.width, self.kernel);
        (w * k + w) + self.depth.saturating_sub(1) * (w * w * k + w) + (w + 1)
    }

    /// f32 scratch the front needs for a window of `d_in` samples: `(2 width + 1) d_in`.
    pub const fn scratch_len(&self, d_in: usize) -> usize {
        (2 * self.width + 1).saturating_mul(d_in)
    }

    /// Multiply-adds per window of `d_in` samples.
    pub const fn macs_per_window(&self, d_in: usize) -> usize {
        let (w, k) = (self.width, self.kernel);
        d_in * (w * k + self.depth.saturating_sub(1) * w * w * k + w)
    }

    /// Parses `{width}x{depth}k{kernel}`; `None` if malformed or out of bounds.
    pub fn parse(s: &str) -> Option<Self> {
        let (w, rest) = s.split_once('x')?;
        let (d, k) = rest.split_once('k')?;
        let shape = Self {
            width: w.parse().ok()?,
            depth: d.parse().ok()?,
            kernel: k.parse().ok()?,
        };
        shape.is_valid().then_some(shape)
    }
}

impl ::core::fmt::Display for FrontShape {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        write!(f, "{}x{}k{}", self.width, self.depth, self.kernel)
    }
}

/// A residual convolutional front end before the encoder: on the normalised window `x`,
/// `h_1 = relu(conv(x; 1 -> width))`, `h_i = relu(conv(h_{i-1}; width -> width))` for
/// `i = 2..=depth`, `g = x + conv1x1(h_depth; width -> 1)`, and the SAE encodes `g` instead of
/// `x`. Convolutions are cross-correlations with `kernel / 2` zeros of padding on each side
/// of the window (PyTorch's and burn's `conv1d`), so a window's result does not depend on its
/// neighbours and training and inference see the same function.
///
/// Why: a linear encoder cannot see local power, which is what separates muscle bursts and
/// line noise from EEG; a few thousand conv parameters give the encoder that nonlinearity while
/// the decoder stays a sparse unit-norm dictionary (so MFR still applies to it).
#[derive(Clone, Copy, Debug)]
pub struct Front<'a> {
    /// Layer sizes.
    pub shape: FrontShape,
    /// [`FrontShape::n_params`] f32 little-endian, in its packing order.
    pub params: &'a [u8],
}

impl Front<'_> {
    /// `g` (`[d_in]`) from `x` (`[d_in]`) with `h` (`[2 width d_in]`) as scratch.
    pub(crate) fn apply(&self, x: &[f32], g: &mut [f32], h: &mut [f32]) {
        let FrontShape {
            width,
            depth,
            kernel,
        } = self.shape;
        let d = x.len();
        let (mut src, rest) = h.split_at_mut((width * d).min(h.len()));
        let n = (width * d).min(rest.len());
        let mut dst = &mut rest[..n];
        let mut off = 0;
        off = conv_layer(self.params, off, (x, 1), (src, width), d, kernel, true);
        for _ in 1..depth {
            off = conv_layer(
                self.params,
                off,
                (src, width),
                (dst, width),
                d,
                kernel,
                true,
            );
            ::core::mem::swap(&mut src, &mut dst);
        }
        conv_layer(self.params, off, (src, width), (g, 1), d, 1, false);
        for (gv, &xv) in g.iter_mut().zip(x) {
            *gv += xv;
        }
    }
}

/// One same-padded conv layer: `y[o, n] = b[o] + sum_i sum_l w[o, i, l] x[i, n + l - k/2]`
/// (zero outside the window), ReLU'd if `relu`, for `x [cin, d]`, `y [cout, d]`; weights
/// then biases read from `p` at float offset `off`. Returns the offset after the layer.
fn conv_layer(
    p: &[u8],
    off: usize,
    (x, cin): (&[f32], usize),
    (y, cout): (&mut [f32], usize),
    d: usize,
    k: usize,
    relu: bool,
) -> usize {
    let bias = off + cout * cin * k;
    let c = k / 2;
    // Samples every tap reaches lie in c..d-c; whole blocks of them accumulate in registers,
    // the rest (edges, remainder) tap by tap. Both add the bias, then input channel by
    // channel and tap by tap, so each output sees the same sums in the same order.
    let n_blocks = d.saturating_sub(2 * c) / CONV_BLOCK;
    let (blk_lo, blk_hi) = (c, c + n_blocks * CONV_BLOCK);
    for (o, yo) in y.chunks_exact_mut(d.max(1)).take(cout).enumerate() {
        let b = le(p, bias + o);
        let w = off + o * cin * k;
        for (r0, r1) in [(0, blk_lo.min(d)), (blk_hi.min(d), d)] {
            if let Some(ys) = yo.get_mut(r0..r1) {
                ys.fill(b);
            }
            for (i, xi) in x.chunks_exact(d.max(1)).take(cin).enumerate() {
                for l in 0..k {
                    add_tap(le(p, w + i * k + l), l, c, xi, yo, r0..r1);
                }
            }
        }
        for n0 in (blk_lo..blk_hi).step_by(CONV_BLOCK) {
            let mut acc = [b; CONV_BLOCK];
            for (i, xi) in x.chunks_exact(d.max(1)).take(cin).enumerate() {
                for l in 0..k {
                    let t = le(p, w + i * k + l);
                    let s = n0 + l - c;
                    if let Some(Ok(xs)) = xi
                        .get(s..s + CONV_BLOCK)
                        .map(<&[f32; CONV_BLOCK]>::try_from)
                    {
                        for (a, &xv) in acc.iter_mut().zip(xs) {
                            *a += t * xv;
                        }
                    }
                }
            }
            if let Some(ys) = yo.get_mut(n0..n0 + CONV_BLOCK) {
                ys.copy_from_slice(&acc);
            }
        }
        if relu {
            for v in yo.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }
    bias + cout
}

/// The correction gate: a window's output is `x + g (x_hat - x)` in the normalised domain,
/// where `g` rises linearly from 0 to 1 as the relative correction `r = |x_hat - x| / |x|`
/// goes from `lo` to `hi`. Written `{lo},{hi}` in model metadata (`blend`).
///
/// Why: on EEG that needs no cleaning the SAE's output still differs from its input by its own
/// reconstruction error (about a quarter of the window's RMS), while a window with an artifact
/// needs a large correction. A small correction is more likely error than artifact, so it is
/// applied only in part, and clean EEG passes through. Fitted on validation windows after
/// training (`mfr-eeg fit-blend`; `eval::blend` in the std build).
///
/// With a [`SlowGate`] the correction is split into its slow part (a centred moving average)
/// and the fast rest, and each part is gated on its own size: the rest by `lo`, `hi` on
/// `r_f = |rest| / |x|`, the slow part by the [`SlowGate`]'s ramp on `r_s = |slow| / |x|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Blend {
    /// Relative correction below which the window passes through (`>= 0`).
    pub lo: f32,
    /// Relative correction from which the model's output is taken whole (`> lo`).
    pub hi: f32,
    /// A separate ramp for the correction's slow part (metadata `blend_slow`), if any.
    pub slow: Option<SlowGate>,
}

/// The slow half of a two-part correction gate ([`Blend::slow`]): the correction's centred
/// moving average over `2 half + 1` samples (fewer at the window's edges) is applied with the
/// gain that rises from 0 to 1 as its own relative size `r_s = |slow| / |x|` goes from `lo` to
/// `hi`. Written `{lo},{hi},{half}` in model metadata (`blend_slow`).
///
/// Why: a window with a muscle burst or line noise needs a large fast correction, and the
/// slow part the model outputs beside it is mostly its own error; a blink or drift needs a
/// large slow correction. Gated on one shared size, the slow error rides along with every
/// large fast correction. Two passes over the window and no state between windows; the moving
/// average needs a ring of `2 MAX_HALF + 2` floats (1 KiB) on the stack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowGate {
    /// Relative correction below which the slow part is not applied (`>= 0`).
    pub lo: f32,
    /// Relative correction from which the slow part is applied whole (`> lo`).
    pub hi: f32,
    /// Half-width of the moving average in samples (`1..=MAX_HALF`).
    pub half: u16,
}

/// Ramp gain: 0 below `lo`, 1 from `hi`, linear between (NaN gives 1).
fn ramp(lo: f32, hi: f32, r: f32) -> f32 {
    let g = (r - lo) / (hi - lo);
    if g.is_nan() { 1.0 } else { g.clamp(0.0, 1.0) }
}

fn valid_ramp(lo: f32, hi: f32) -> bool {
    lo.is_finite() && hi.is_finite() && lo >= 0.0 && hi > lo
}

fn parse_ramp(lo: &str, hi: &str) -> Option<(f32, f32)> {
    let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    valid_ramp(lo, hi).then_some((lo, hi))
}

impl SlowGate {
    /// Largest half-width: the ring the gate keeps on the stack holds `MAX_HALF + 1` samples.
    pub const MAX_HALF: u16 = 127;

    /// True if `0 <= lo < hi`, both finite, and `1 <= half <= MAX_HALF`.
    pub fn is_valid(&self) -> bool {
        valid_ramp(self.lo, self.hi) && (1..=Self::MAX_HALF).contains(&self.half)
    }

    /// The half-width that splits slow from fast at `rate_hz`: 1/16 s, rounded (16 samples at
    /// 256 Hz: the average's first null at 7.8 Hz, its half-power point near 3.5 Hz), within
    /// `1..=MAX_HALF`.
    pub const fn half_for_rate(rate_hz: f32) -> u16 {
        // `as` saturates (NaN gives 0); x + 0.5 truncated rounds a positive x.
        let h = (rate_hz / 16.0 + 0.5) as u32;
        if h < 1 {
            1
        } else if h > Self::MAX_HALF as u32 {
            Self::MAX_HALF
        } else {
            h as u16
        }
    }

    /// A slow ramp no finite relative correction reaches: the slow part of every correction
    /// is left out, and the model corrects only the fast rest.
    pub const fn never(half: u16) -> Self {
        Self {
            lo: f32::MAX / 2.0,
            hi: f32::MAX,
            half,
        }
    }

    /// True for [`SlowGate::never`]'s ramp (nothing of the slow part applied).
    pub fn is_never(&self) -> bool {
        self.lo >= f32::MAX / 2.0
    }

    /// The slow part's gain at relative correction `r`.
    pub fn gain(&self, r: f32) -> f32 {
        ramp(self.lo, self.hi, r)
    }

    /// Parses `{lo},{hi},{half}`; `None` if malformed or invalid.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(',');
        let (lo, hi) = parse_ramp(it.next()?, it.next()?)?;
        let half = it.next()?.trim().parse().ok()?;
        let g = Self { lo, hi, half };
        (it.next().is_none() && g.is_valid()).then_some(g)
    }
}

impl ::core::fmt::Display for SlowGate {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        write!(f, "{},{},{}", self.lo, self.hi, self.half)
    }
}

/// Relative size of a correction's slow part from which, on channels the multi-channel eye
/// stage cleaned, it starts to be applied, and from which it is applied whole
/// ([`Blend::after_eye`]). With the eye stage removing eye artifacts across channels, the slow
/// corrections the model still proposes are mostly brain activity below 4 Hz (on EEGLAB's
/// tutorial recording the model's own gate changes 1-4 Hz at occipital channels by 0.10 of
/// their 1-40 Hz power; the eye stage alone by 0.04); large ones, such as electrode pops and
/// drifts comparable to the EEG, still go. Chosen with `mfr-eeg eog-check` over 0.375 to 1.0
/// (`docs/experiments/correction-gate.md`): 0.6 is the lowest start that changes blink-free
/// EEG less than ICA with a margin on every recording with blinks, for the default and the
/// firmware model.
pub const AFTER_EYE_SLOW: (f32, f32) = (0.6, 0.8);

impl Blend {
    /// A ramp that applies every correction whole (from 0 to the smallest positive size).
    pub const ALWAYS: Self = Self {
        lo: 0.0,
        hi: f32::MIN_POSITIVE,
        slow: None,
    };

    /// A single ramp from `lo` to `hi` for the whole correction.
    pub const fn new(lo: f32, hi: f32) -> Self {
        Self { lo, hi, slow: None }
    }

    /// The gate for channels the eye stage cleaned, for a model with gate `model` at
    /// `rate_hz`: `model`'s ramp for the fast part (without one, every fast correction
    /// whole), and the slow part ([`SlowGate::half_for_rate`]) on the [`AFTER_EYE_SLOW`] ramp
    /// instead of any slow ramp the model has.
    pub const fn after_eye(model: Option<Blend>, rate_hz: f32) -> Self {
        let fast = match model {
            Some(b) => b,
            None => Self::ALWAYS,
        };
        Self {
            lo: fast.lo,
            hi: fast.hi,
            slow: Some(SlowGate {
                lo: AFTER_EYE_SLOW.0,
                hi: AFTER_EYE_SLOW.1,
                half: SlowGate::half_for_rate(rate_hz),
            }),
        }
    }

    /// True if the ramp applies every correction (or with a slow ramp, every fast part)
    /// whole, as [`Blend::ALWAYS`]'s.
    pub fn is_always(&self) -> bool {
        self.lo <= 0.0 && self.hi <= f32::MIN_POSITIVE
    }

    /// True if `0 <= lo < hi`, both finite, and the slow gate (if any) is valid.
    pub fn is_valid(&self) -> bool {
        valid_ramp(self.lo, self.hi) && self.slow.is_none_or(|s| s.is_valid())
    }

    /// The gain `g` at relative correction `r` (NaN gives 1: the model's output); with a slow
    /// gate, the gain of the fast part.
    pub fn gain(&self, r: f32) -> f32 {
        ramp(self.lo, self.hi, r)
    }

    /// Parses `{lo},{hi}` (no slow gate); `None` if malformed or invalid.
    pub fn parse(s: &str) -> Option<Self> {
        let (lo, hi) = s.split_once(',')?;
        let (lo, hi) = parse_ramp(lo, hi)?;
        Some(Self::new(lo, hi))
    }

    /// `r = |y - x| / |x|`, summed in a fixed order (infinite for an all-zero `x`: a window
    /// with no scale gets its correction whole).
    pub fn relative_correction(x: &[f32], y: &[f32]) -> f32 {
        // Eight running sums, so the loop vectorises (one sum is a chain of dependent adds);
        // the order is fixed, so every path gets the same r.
        const L: usize = 8;
        let (mut e, mut d) = ([0.0f32; L], [0.0f32; L]);
        let n = x.len().min(y.len());
        let (xb, yb) = (x[..n].chunks_exact(L), y[..n].chunks_exact(L));
        let (xr, yr) = (xb.remainder(), yb.remainder());
        for (xc, yc) in xb.zip(yb) {
            for i in 0..L {
                let c = yc[i] - xc[i];
                e[i] += c * c;
                d[i] += xc[i] * xc[i];
            }
        }
        for (i, (&xv, &yv)) in xr.iter().zip(yr).enumerate() {
            e[i] += (yv - xv) * (yv - xv);
            d[i] += xv * xv;
        }
        let (e, d) = (e.iter().sum::<f32>(), d.iter().sum::<f32>());
        if d > 0.0 {
            libm::sqrtf(e / d)
        } else {
            f32::INFINITY
        }
    }

    /// Gates the correction of output `y` on input `x` (both normalised, same length) in
    /// place.
    pub fn apply(&self, x: &[f32], y: &mut [f32]) {
        match self.slow {
            None => {
                let g = self.gain(Self::relative_correction(x, y));
                if g < 1.0 {
                    for (yv, &xv) in y.iter_mut().zip(x) {
                        *yv = xv + g * (*yv - xv);
                    }
                }
            }
            Some(s) => {
                let (rf, rs) = Self::relative_parts(x, y, usize::from(s.half));
                let (gf, gs) = (self.gain(rf), s.gain(rs));
                if gf < 1.0 || gs < 1.0 {
                    moving_average_pass(x, y, usize::from(s.half), |yi, xv, a| {
                        *yi = xv + gf * (*yi - xv - a) + gs * a;
                    });
                }
            }
        }
    }

    /// `(r_f, r_s)`: the sizes of the fast rest and of the slow part (the centred moving
    /// average over `2 half + 1` samples) of the correction `y - x`, each relative to `|x|`
    /// (infinite for an all-zero `x`), summed in a fixed order. `y` is only read (the pass is
    /// the one the gate writes with).
    pub(crate) fn relative_parts(x: &[f32], y: &mut [f32], half: usize) -> (f32, f32) {
        let (mut ef, mut es, mut d) = (0.0f32, 0.0f32, 0.0f32);
        moving_average_pass(x, y, half, |yi, xv, a| {
            let f = *yi - xv - a;
            ef += f * f;
            es += a * a;
            d += xv * xv;
        });
        if d > 0.0 {
            (libm::sqrtf(ef / d), libm::sqrtf(es / d))
        } else {
            (f32::INFINITY, f32::INFINITY)
        }
    }
}

/// Calls `visit(&mut y[i], x[i], a_i)` for every sample in order, `a_i` the centred moving
/// average over `2 half + 1` samples (fewer at the edges) of the correction `c = y - x`
/// as it was before the pass: `visit` may overwrite `y[i]`. Running prefix sums `P` of `c`,
/// `a_i = (P[min(i + half + 1, n)] - P[max(i - half, 0)]) / count`, with the prefix sums still
/// needed in a ring on the stack and `c` read `half + 1` samples ahead of the visit. Split at
/// the edges so the middle runs without branches on the index.
fn moving_average_pass(
    x: &[f32],
    y: &mut [f32],
    half: usize,
    mut visit: impl FnMut(&mut f32, f32, f32),
) {
    const R: usize = 2 * SlowGate::MAX_HALF as usize + 2;
    let n = x.len().min(y.len());
    let h = half.min(usize::from(SlowGate::MAX_HALF));
    let r = 2 * h + 2;
    let mut ring = [0.0f32; R];
    // The newest prefix sum P[min(i + h + 1, n)], and the ring slots of the next one to
    // write and of P[i - h] once i > h (P[j] lives in slot j mod r).
    let mut last = 0.0f32;
    for j in 0..(h + 1).min(n) {
        last += y[j] - x[j];
        ring[j + 1] = last;
    }
    let mut wslot = ((h + 1).min(n) + 1) % r;
    let mut rslot = 1;
    // Left edge: P[i - h] is P[0] = 0.
    let left = (h + 1).min(n);
    for i in 0..left {
        let a = last / ((i + h + 1).min(n) - i.saturating_sub(h)) as f32;
        if i + h + 1 < n {
            last += y[i + h + 1] - x[i + h + 1];
            ring[wslot] = last;
            wslot = if wslot + 1 == r { 0 } else { wslot + 1 };
        }
        visit(&mut y[i], x[i], a);
    }
    // Middle: every sum has 2h + 1 terms.
    let inv = 1.0 / (2 * h + 1) as f32;
    let right = n.saturating_sub(h + 1).max(left);
    for i in left..right {
        let a = (last - ring[rslot]) * inv;
        rslot = if rslot + 1 == r { 0 } else { rslot + 1 };
        last += y[i + h + 1] - x[i + h + 1];
        ring[wslot] = last;
        wslot = if wslot + 1 == r { 0 } else { wslot + 1 };
        visit(&mut y[i], x[i], a);
    }
    // Right edge: P[n] is the newest.
    for i in right..n {
        let a = (last - ring[rslot]) / (n - (i - h)) as f32;
        rslot = if rslot + 1 == r { 0 } else { rslot + 1 };
        visit(&mut y[i], x[i], a);
    }
}

impl ::core::fmt::Display for Blend {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        write!(f, "{},{}", self.lo, self.hi)
    }
}

/// Outputs of a front-end layer accumulated together in registers.
const CONV_BLOCK: usize = 16;

/// A validated TopK SAE borrowing its weights (zero-copy). Cheap to copy.
///
/// Forward (`x` one window of `d_in` samples, already normalised for [`Sae::forward_into`]):
/// `pre = (x - b_dec) W_enc + b_enc`; keep the k largest `pre` (ties to the lower index), apply
/// the [`Activation`]; `x_hat = z W_dec + b_dec` summed over the k kept rows only.
#[derive(Clone, Copy, Debug)]
pub struct Sae<'a> {
    config: SaeConfig,
    weights: Weights<'a>,
    skip: Option<Skip<'a>>,
    front: Option<Front<'a>>,
    blend: Option<Blend>,
    /// How overlapping windows' outputs are combined (the model's choice; not part of the
    /// forward itself, but carried here so every streamer follows the model).
    ola: OlaShape,
    /// Largest |activation code| in the int8 path, so `d_in * 128 * qmax` fits in an i32.
    qmax: f32,
}

/// Reads element `i` of a little-endian f32 byte slice (caller guarantees range).
#[inline(always)]
fn le(bytes: &[u8], i: usize) -> f32 {
    match bytes.get(4 * i..4 * i + 4) {
        Some(&[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]),
        _ => 0.0,
    }
}

#[inline(always)]
fn le_chunk(c: &[u8]) -> f32 {
    match *c {
        [a, b, c, d] => f32::from_le_bytes([a, b, c, d]),
        _ => 0.0,
    }
}

fn check_f32_tensor(tensor: &'static str, bytes: &[u8], n: usize) -> Result<(), CoreError> {
    if bytes.len() != n * 4 {
        return Err(CoreError::BufferLength {
            buffer: tensor,
            expected: n * 4,
            got: bytes.len(),
        });
    }
    match bytes.chunks_exact(4).position(|c| !le_chunk(c).is_finite()) {
        Some(index) => Err(CoreError::NonFiniteWeight { tensor, index }),
        None => Ok(()),
    }
}

fn check_i8_tensor(tensor: &'static str, bytes: &[u8], n: usize) -> Result<(), CoreError> {
    check_len(tensor, n, bytes.len())
}

/// Int8 activation codes are i16-range; with |w| <= 128 the i32 accumulator cannot overflow
/// while `d_in * 128 * qmax <= i32::MAX`.
fn int8_qmax(d_in: usize) -> f32 {
    let bound = (i32::MAX as usize) / (128 * d_in.max(1));
    bound.min(32767) as f32
}

/// Columns of `W_enc` accumulated together in the int8 path (one stack block of i32s).
const I8_BLOCK: usize = 32;

impl<'a> Sae<'a> {
    /// Validates sizes, `1 <= k <= d_sae`, every buffer length and that every f32 is finite.
    pub fn new(config: SaeConfig, weights: Weights<'a>) -> Result<Self, CoreError> {
        let SaeConfig { d_in, d_sae, k, .. } = config;
        let dims_err = CoreError::InvalidDims { d_in, d_sae };
        if d_in == 0 || d_sae == 0 {
            return Err(dims_err);
        }
        let n_mat = d_in.checked_mul(d_sae).ok_or(dims_err)?;
        n_mat.checked_mul(4).ok_or(dims_err)?;
        if k == 0 || k > d_sae {
            return Err(CoreError::InvalidK { k, d_sae });
        }
        match weights {
            Weights::F32(w) => {
                check_f32_tensor("W_enc", w.w_enc, n_mat)?;
                check_f32_tensor("W_dec", w.w_dec, n_mat)?;
                check_f32_tensor("b_enc", w.b_enc, d_sae)?;
                check_f32_tensor("b_dec", w.b_dec, d_in)?;
            }
            Weights::Int8(w) => {
                if int8_qmax(d_in) < 127.0 {
                    return Err(dims_err);
                }
                check_i8_tensor("W_enc", w.w_enc, n_mat)?;
                check_f32_tensor("W_enc_scale", w.w_enc_scale, d_sae)?;
                check_i8_tensor("W_dec", w.w_dec, n_mat)?;
                check_f32_tensor("W_dec_scale", w.w_dec_scale, d_sae)?;
                check_f32_tensor("b_enc", w.b_enc, d_sae)?;
                check_f32_tensor("b_dec", w.b_dec, d_in)?;
            }
        }
        Ok(Self {
            config,
            weights,
            skip: None,
            front: None,
            blend: None,
            ola: OlaShape::Hann,
            qmax: int8_qmax(d_in),
        })
    }

    /// Adds the gated linear path ([`Skip`]); checks an odd tap count <= `d_in`, finite taps
    /// and a finite gate >= 0.
    pub fn with_skip(mut self, skip: Skip<'a>) -> Result<Self, CoreError> {
        let n = skip.len();
        if !skip.taps.len().is_multiple_of(4) || n.is_multiple_of(2) || n > self.config.d_in {
            return Err(CoreError::ShapeMismatch {
                tensor: "skip_taps",
                expected: [self.config.d_in, 0],
                got: [n, 0],
            });
        }
        check_f32_tensor("skip_taps", skip.taps, n)?;
        if !(skip.gate.is_finite() && skip.gate >= 0.0) {
            return Err(CoreError::BadMetadata { key: "skip_gate" });
        }
        self.skip = Some(skip);
        Ok(self)
    }

    /// An SAE from parts already validated by [`Sae::new`] on the same bytes (the model
    /// loader re-creates views of bytes it parsed once).
    pub(crate) fn from_validated(
        config: SaeConfig,
        weights: Weights<'a>,
        skip: Option<Skip<'a>>,
        front: Option<Front<'a>>,
    ) -> Self {
        Self {
            config,
            weights,
            skip,
            front,
            blend: None,
            ola: OlaShape::Hann,
            qmax: int8_qmax(config.d_in),
        }
    }

    /// Adds a convolutional front end ([`Front`]); checks the shape's bounds and that the
    /// parameters are [`FrontShape::n_params`] finite f32s.
    pub fn with_front(mut self, front: Front<'a>) -> Result<Self, CoreError> {
        if !front.shape.is_valid() {
            return Err(CoreError::BadMetadata { key: "front" });
        }
        check_f32_tensor("front", front.params, front.shape.n_params())?;
        self.front = Some(front);
        Ok(self)
    }

    /// The convolutional front end, if the model has one.
    pub const fn front(&self) -> Option<Front<'a>> {
        self.front
    }

    /// The same SAE with the correction gate `blend` ([`Blend`]); refuses an invalid one.
    pub fn with_blend(mut self, blend: Blend) -> Result<Self, CoreError> {
        if !blend.is_valid() {
            return Err(CoreError::BadMetadata { key: "blend" });
        }
        self.blend = Some(blend);
        Ok(self)
    }

    /// The same SAE with a correction gate the model loader already validated.
    pub(crate) const fn with_validated_blend(mut self, blend: Option<Blend>) -> Self {
        self.blend = blend;
        self
    }

    /// The correction gate, if the model has one.
    pub const fn blend(&self) -> Option<Blend> {
        self.blend
    }

    /// The gated linear path, if the model has one.
    pub const fn skip(&self) -> Option<Skip<'a>> {
        self.skip
    }

    /// The same SAE with overlap-add taper `ola` for the streamers built on it.
    #[must_use]
    pub const fn with_ola_shape(mut self, ola: OlaShape) -> Self {
        self.ola = ola;
        self
    }

    /// The overlap-add taper streamers use with this SAE ([`OlaShape::Hann`] unless the model
    /// names another).
    pub const fn ola_shape(&self) -> OlaShape {
        self.ola
    }

    /// Window length (input and output width).
    pub const fn d_in(&self) -> usize {
        self.config.d_in
    }
    /// Number of latents.
    pub const fn d_sae(&self) -> usize {
        self.config.d_sae
    }
    /// Latents kept per window.
    pub const fn k(&self) -> usize {
        self.config.k
    }
    /// Sizes and modes.
    pub const fn config(&self) -> SaeConfig {
        self.config
    }
    /// The borrowed weights.
    pub const fn weights(&self) -> Weights<'a> {
        self.weights
    }
    /// True if the matrices are int8.
    pub const fn is_int8(&self) -> bool {
        matches!(self.weights, Weights::Int8(_))
    }
    /// f32 scratch length for [`Sae::forward_into`] and [`Sae::denoise_window_into`]:
    /// `d_in + pre_len()`.
    pub const fn scratch_len(&self) -> usize {
        self.config.d_in.saturating_add(self.pre_len())
    }

    /// f32 length of the pre-activation buffer the streamers hand the forward: `d_sae`, plus
    /// [`FrontShape::scratch_len`] when the model has a front end.
    pub const fn pre_len(&self) -> usize {
        match self.front {
            Some(f) => self
                .config
                .d_sae
                .saturating_add(f.shape.scratch_len(self.config.d_in)),
            None => self.config.d_sae,
        }
    }

    /// Bytes of weight data (matrices, scales, biases) the model borrows.
    pub const fn weight_bytes(&self) -> usize {
        let skip = match self.skip {
            Some(s) => s.taps.len(),
            None => 0,
        };
        let front = match self.front {
            Some(f) => f.params.len(),
            None => 0,
        };
        skip + front
            + match self.weights {
                Weights::F32(w) => w.w_enc.len() + w.w_dec.len() + w.b_enc.len() + w.b_dec.len(),
                Weights::Int8(w) => {
                    w.w_enc.len()
                        + w.w_enc_scale.len()
                        + w.w_dec.len()
                        + w.w_dec_scale.len()
                        + w.b_enc.len()
                        + w.b_dec.len()
                }
            }
    }

    /// The raw SAE: `out = decode(TopK(encode(x)))` (plus the [`Skip`] path if the model has
    /// one, without the [`Blend`] gate) on an already-normalised window.
    ///
    /// # Shapes
    /// `x`, `out`: `[d_in]`; `scratch`: `[scratch_len()]`; `topk`: `[k]`, receives the kept
    /// latent indices, largest pre-activation first.
    pub fn forward_into(
        &self,
        x: &[f32],
        out: &mut [f32],
        scratch: &mut [f32],
        topk: &mut [usize],
    ) -> Result<(), CoreError> {
        self.check_buffers(x, out, scratch, topk)?;
        let pre = &mut scratch[self.config.d_in..];
        self.forward_parts(x, out, pre, topk);
        Ok(())
    }

    /// The sparse code of an already-normalised window: `z` (`[d_sae]`) gets the activated
    /// values of the k kept latents and 0 elsewhere; `topk` gets their indices (largest
    /// pre-activation first). For parity tests against training code. Scratch as
    /// [`Sae::forward_into`].
    pub fn encode_into(
        &self,
        x: &[f32],
        z: &mut [f32],
        scratch: &mut [f32],
        topk: &mut [usize],
    ) -> Result<(), CoreError> {
        check_len("x", self.config.d_in, x.len())?;
        check_len("z", self.config.d_sae, z.len())?;
        check_len("scratch", self.scratch_len(), scratch.len())?;
        check_len("topk", self.config.k, topk.len())?;
        let (q, pre) = scratch.split_at_mut(self.config.d_in);
        self.encode_parts(x, q, pre);
        let pre = &mut pre[..self.config.d_sae];
        let kept = topk_into(pre, topk);
        z.fill(0.0);
        for &j in &topk[..kept.min(topk.len())] {
            if let (Some(zj), Some(&p)) = (z.get_mut(j), pre.get(j)) {
                *zj = self.config.activation.apply(p);
            }
        }
        Ok(())
    }

    /// One window through the model including its normalisation: for `window_zscore` the
    /// window is z-scored with [`zscore_stats`], passed through the SAE, and mapped back with
    /// the same mean and scale, with the model's [`Blend`] gate (if any) applied before that.
    /// Shapes as [`Sae::forward_into`].
    pub fn denoise_window_into(
        &self,
        x: &[f32],
        out: &mut [f32],
        scratch: &mut [f32],
        topk: &mut [usize],
    ) -> Result<(), CoreError> {
        self.check_buffers(x, out, scratch, topk)?;
        let (xn, pre) = scratch.split_at_mut(self.config.d_in);
        self.denoise_parts(x, out, xn, pre, topk);
        Ok(())
    }

    fn check_buffers(
        &self,
        x: &[f32],
        out: &[f32],
        scratch: &[f32],
        topk: &[usize],
    ) -> Result<(), CoreError> {
        check_len("x", self.config.d_in, x.len())?;
        check_len("out", self.config.d_in, out.len())?;
        check_len("scratch", self.scratch_len(), scratch.len())?;
        check_len("topk", self.config.k, topk.len())
    }

    /// [`Sae::denoise_window_into`] after the length checks (crate-internal hot path):
    /// `xn` is `[d_in]`, `pre` is `[pre_len()]`.
    pub(crate) fn denoise_parts(
        &self,
        x: &[f32],
        out: &mut [f32],
        xn: &mut [f32],
        pre: &mut [f32],
        topk: &mut [usize],
    ) {
        match self.config.normalisation {
            Normalisation::None => {
                self.forward_parts(x, out, pre, topk);
                if let Some(b) = self.blend {
                    b.apply(x, out);
                }
            }
            norm @ (Normalisation::WindowZscore | Normalisation::WindowZscoreNoMean) => {
                let (back, scale) = norm.normalise_into(x, xn);
                self.forward_parts(xn, out, pre, topk);
                if let Some(b) = self.blend {
                    b.apply(xn, out);
                }
                for o in out.iter_mut() {
                    *o = *o * scale + back;
                }
            }
        }
    }

    /// Encode, select, decode. `out` doubles as the int8 path's activation-code buffer, since
    /// it is only written by the decode that follows.
    fn forward_parts(&self, x: &[f32], out: &mut [f32], pre: &mut [f32], topk: &mut [usize]) {
        self.encode_parts(x, out, pre);
        let n = self.config.d_sae.min(pre.len());
        let pre = &mut pre[..n];
        let kept = topk_into(pre, topk);
        let topk = &topk[..kept.min(topk.len())];
        match self.weights {
            Weights::F32(w) => self.decode_f32(&w, pre, topk, out),
            Weights::Int8(w) => self.decode_i8(&w, pre, topk, out),
        }
        if let Some(skip) = self.skip {
            skip.apply(x, out);
        }
    }

    /// The pre-activations of `x` into `pre[..d_sae]`, through the front end (whose scratch
    /// is `pre[d_sae..]`) if the model has one; `q` (`[d_in]`) is the int8 path's code buffer.
    fn encode_parts(&self, x: &[f32], q: &mut [f32], pre: &mut [f32]) {
        let (pre, rest) = pre.split_at_mut(self.config.d_sae.min(pre.len()));
        let x = match self.front {
            Some(f) => {
                let (g, h) = rest.split_at_mut(self.config.d_in.min(rest.len()));
                f.apply(x, g, h);
                &*g
            }
            None => x,
        };
        match self.weights {
            Weights::F32(w) => self.encode_f32(&w, x, pre),
            Weights::Int8(w) => self.encode_i8(&w, x, q, pre),
        }
    }

    fn encode_f32(&self, w: &F32Weights<'_>, x: &[f32], pre: &mut [f32]) {
        let d_sae = self.config.d_sae;
        for (p, c) in pre.iter_mut().zip(w.b_enc.chunks_exact(4)) {
            *p = le_chunk(c);
        }
        let rows = w.w_enc.chunks_exact(4 * d_sae);
        for ((&xi, bd), row) in x.iter().zip(w.b_dec.chunks_exact(4)).zip(rows) {
            let a = xi - le_chunk(bd);
            for (p, c) in pre.iter_mut().zip(row.chunks_exact(4)) {
                *p += a * le_chunk(c);
            }
        }
    }

    fn decode_f32(&self, w: &F32Weights<'_>, pre: &[f32], topk: &[usize], out: &mut [f32]) {
        let d_in = self.config.d_in;
        for (o, c) in out.iter_mut().zip(w.b_dec.chunks_exact(4)) {
            *o = le_chunk(c);
        }
        for &j in topk {
            let z = self
                .config
                .activation
                .apply(pre.get(j).copied().unwrap_or(0.0));
            if z == 0.0 {
                continue;
            }
            if let Some(row) = w.w_dec.get(4 * d_in * j..4 * d_in * (j + 1)) {
                for (o, c) in out.iter_mut().zip(row.chunks_exact(4)) {
                    *o += z * le_chunk(c);
                }
            }
        }
    }

    /// int8 encode: `x - b_dec` is quantised per window to integer codes `q` (|q| <= qmax,
    /// scale `s_x = max|x - b_dec| / qmax`), dotted with the int8 columns in i32, then
    /// `pre_j = b_enc_j + s_x * W_enc_scale_j * acc_j`.
    fn encode_i8(&self, w: &Int8Weights<'_>, x: &[f32], q: &mut [f32], pre: &mut [f32]) {
        let d_sae = self.config.d_sae;
        let mut amax = 0.0f32;
        for ((qi, &xi), bd) in q.iter_mut().zip(x).zip(w.b_dec.chunks_exact(4)) {
            let c = xi - le_chunk(bd);
            *qi = c;
            let a = if c < 0.0 { -c } else { c };
            if a > amax {
                amax = a;
            }
        }
        let (sx, inv) = if amax > 0.0 && amax.is_finite() {
            (amax / self.qmax, self.qmax / amax)
        } else {
            (0.0, 0.0)
        };
        for qi in q.iter_mut() {
            let r = libm::roundf(*qi * inv);
            // Clamp keeps the proven accumulator bound even for NaN/rounding edge cases.
            *qi = if r > self.qmax {
                self.qmax
            } else if r < -self.qmax {
                -self.qmax
            } else if r.is_nan() {
                0.0
            } else {
                r
            };
        }
        let mut j0 = 0;
        while j0 < d_sae {
            let width = I8_BLOCK.min(d_sae - j0);
            let mut acc = [0i32; I8_BLOCK];
            for (i, &qf) in q.iter().enumerate() {
                // Both factors are i16 values widened to i32 (|q| <= qmax <= 32767, |w| <=
                // 128), which compilers map to 16-bit multiplies (pmullw/pmulhw, SMLABB); the
                // sum cannot overflow by construction of qmax.
                let qi = qf as i16 as i32;
                let start = i * d_sae + j0;
                let full = w
                    .w_enc
                    .get(start..start + I8_BLOCK)
                    .filter(|_| width == I8_BLOCK);
                if let Some(Ok(row)) = full.map(<&[u8; I8_BLOCK]>::try_from) {
                    // Fixed trip count: fully vectorised.
                    let q16 = qf as i16;
                    for jj in 0..I8_BLOCK {
                        let p = i32::from(q16) * i32::from(row[jj] as i8 as i16);
                        acc[jj] = acc[jj].wrapping_add(p);
                    }
                } else if let Some(row) = w.w_enc.get(start..start + width) {
                    for (a, &b) in acc.iter_mut().zip(row) {
                        *a = a.wrapping_add(qi.wrapping_mul(i32::from(b as i8 as i16)));
                    }
                }
            }
            let acc = &acc[..width];
            for (jj, &a) in acc.iter().enumerate() {
                let j = j0 + jj;
                if let Some(p) = pre.get_mut(j) {
                    *p = le(w.b_enc, j) + (sx * le(w.w_enc_scale, j)) * a as f32;
                }
            }
            j0 += width;
        }
    }

    fn decode_i8(&self, w: &Int8Weights<'_>, pre: &[f32], topk: &[usize], out: &mut [f32]) {
        let d_in = self.config.d_in;
        for (o, c) in out.iter_mut().zip(w.b_dec.chunks_exact(4)) {
            *o = le_chunk(c);
        }
        for &j in topk {
            let z = self
                .config
                .activation
                .apply(pre.get(j).copied().unwrap_or(0.0));
            if z == 0.0 {
                continue;
            }
            let c = z * le(w.w_dec_scale, j);
            if let Some(row) = w.w_dec.get(d_in * j..d_in * (j + 1)) {
                for (o, &b) in out.iter_mut().zip(row) {
                    *o += c * (b as i8 as f32);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Blend, SlowGate};

    /// `y = x + d` with `|d| = r |x|`.
    fn corrected(r: f32) -> ([f32; 4], [f32; 4]) {
        let x = [3.0, -1.0, 2.0, 0.5];
        let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        let d = [0.0, r * n, 0.0, 0.0];
        let mut y = x;
        for (a, b) in y.iter_mut().zip(d) {
            *a += b;
        }
        (x, y)
    }

    #[test]
    fn the_gate_passes_small_corrections_and_keeps_large_ones() {
        let b = Blend::new(0.2, 0.6);
        // Below lo: the input, bit for bit.
        let (x, mut y) = corrected(0.1);
        b.apply(&x, &mut y);
        assert_eq!(y, x);
        // Above hi: the model's output untouched.
        let (x, y0) = corrected(0.8);
        let mut y = y0;
        b.apply(&x, &mut y);
        assert_eq!(y, y0);
        // Halfway up the ramp: half the correction.
        let (x, y0) = corrected(0.4);
        let mut y = y0;
        b.apply(&x, &mut y);
        let want = x[1] + 0.5 * (y0[1] - x[1]);
        assert!((y[1] - want).abs() < 1e-5, "{} vs {want}", y[1]);
        assert_eq!([y[0], y[2], y[3]], [x[0], x[2], x[3]]);
        // No scale: the correction counts as large.
        let mut y = [1.0; 4];
        b.apply(&[0.0; 4], &mut y);
        assert_eq!(y, [1.0; 4]);
    }

    /// The two parts of `c = y - x` computed plainly: `a` the centred mean of `c` over
    /// `2 half + 1` samples (fewer at the edges) and the rest `c - a`.
    fn parts(x: &[f32], y: &[f32], half: usize) -> (Vec<f64>, Vec<f64>) {
        let n = x.len();
        let c: Vec<f64> = x.iter().zip(y).map(|(&a, &b)| f64::from(b - a)).collect();
        let slow: Vec<f64> = (0..n)
            .map(|i| {
                let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(n));
                c[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
            })
            .collect();
        let fast = c.iter().zip(&slow).map(|(c, a)| c - a).collect();
        (fast, slow)
    }

    #[test]
    fn the_slow_ramp_gates_the_moving_average_apart() {
        // A slow correction (a ramp and a step) plus a fast one (alternating signs).
        let n = 61;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
        let y: Vec<f32> = (0..n)
            .map(|i| {
                let slow = 0.05 * i as f32 + if i > 30 { 1.0 } else { 0.0 };
                let fast = if i % 2 == 0 { 0.4 } else { -0.4 };
                x[i] + slow + fast
            })
            .collect();
        let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
        let xn = norm(&x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
        for half in [1u16, 3, 16, 29, 30, 60, 127] {
            let h = usize::from(half);
            let (fast, slow) = parts(&x, &y, h);
            let (rf, rs) = (norm(&fast) / xn, norm(&slow) / xn);
            let (gf_rf, gs_rs) = Blend::relative_parts(&x, &mut y.clone(), h);
            assert!(
                (f64::from(gf_rf) - rf).abs() < 1e-5 * rf,
                "half {half}: r_f"
            );
            assert!(
                (f64::from(gs_rs) - rs).abs() < 1e-5 * rs,
                "half {half}: r_s"
            );
            let (rf, rs) = (rf as f32, rs as f32);
            // Each part on its own ramp, at its own size: half of one part, all of the other.
            for (fast_ramp, slow_ramp) in [
                ((0.0, 2.0 * rf), (0.0, 0.5 * rs)),
                ((0.0, 0.5 * rf), (0.0, 2.0 * rs)),
            ] {
                let b = Blend {
                    lo: fast_ramp.0,
                    hi: fast_ramp.1,
                    slow: Some(SlowGate {
                        lo: slow_ramp.0,
                        hi: slow_ramp.1,
                        half,
                    }),
                };
                assert!(b.is_valid());
                let (gf, gs) = (
                    if fast_ramp.1 > rf { 0.5 } else { 1.0 },
                    if slow_ramp.1 > rs { 0.5 } else { 1.0 },
                );
                let mut got = y.clone();
                b.apply(&x, &mut got);
                for i in 0..n {
                    let want = f64::from(x[i]) + gf * fast[i] + gs * slow[i];
                    let g = f64::from(got[i]);
                    assert!((g - want).abs() < 1e-4, "half {half} at {i}: {g} vs {want}");
                }
            }
        }
        // Both ramps past their ends: the model's output, bit for bit.
        let (rf, rs) = Blend::relative_parts(&x, &mut y.clone(), 4);
        let b = Blend {
            lo: 0.0,
            hi: 0.5 * rf,
            slow: Some(SlowGate {
                lo: 0.0,
                hi: 0.5 * rs,
                half: 4,
            }),
        };
        let mut got = y.clone();
        b.apply(&x, &mut got);
        assert_eq!(got, y);
    }

    #[test]
    fn slow_gates_parse_only_when_valid() {
        let g = SlowGate {
            lo: 0.2,
            hi: 0.5,
            half: 16,
        };
        assert_eq!(SlowGate::parse("0.2,0.5,16"), Some(g));
        assert_eq!(g.to_string(), "0.2,0.5,16");
        for bad in [
            "0.2,0.5",
            "0.2,0.5,0",
            "0.2,0.5,128",
            "0.5,0.2,16",
            "0.2,0.5,16,1",
            "0.2,0.5,-1",
            "0.2,0.5,x",
        ] {
            assert_eq!(SlowGate::parse(bad), None, "{bad}");
        }
        let b = Blend {
            slow: Some(SlowGate { half: 0, ..g }),
            ..Blend::new(0.1, 0.2)
        };
        assert!(!b.is_valid());
        // The ramp that leaves the slow part out: valid, and no finite r reaches it.
        let never = SlowGate::never(16);
        assert!(never.is_valid() && never.is_never() && !g.is_never());
        for r in [0.0, 0.5, 10.0, 1e30, f32::MAX / 4.0] {
            assert_eq!(never.gain(r), 0.0, "{r}");
        }
    }

    #[test]
    fn gates_parse_only_when_valid() {
        assert_eq!(Blend::parse("0.125,0.625"), Some(Blend::new(0.125, 0.625)));
        assert_eq!(
            Blend::parse("0.125,0.625").unwrap().to_string(),
            "0.125,0.625"
        );
        for bad in [
            "0.5,0.5", "0.6,0.2", "-0.1,0.3", "NaN,1", "0.1", "0.1,inf", "a,b",
        ] {
            assert_eq!(Blend::parse(bad), None, "{bad}");
        }
    }
}
