//! The batched offline denoiser (std): the result of [`crate::core::denoise_offline_into`]
//! (reflected edges, the model's window normalisation, TopK, the gated linear path, weighted
//! overlap-add, the fault rules), computed with many windows per encoder matrix product.
//!
//! The streaming core encodes one window at a time as a matrix-vector product, which reads the
//! whole encoder matrix from cache for ~2 flops per weight. Here up to [`BatchScratch::batch`]
//! windows are normalised into the rows of a matrix `A` and encoded together by one blocked
//! product `A W_enc` (`encode`: `W_enc` packed once at load for an AVX2/FMA register-blocked
//! kernel, the `matrixmultiply` crate's sgemm on other CPUs), so each weight loaded into a
//! register is reused across windows. TopK, the sparse decode over the k kept rows, the linear
//! path and the overlap-add then run per window, in window order.
//!
//! - [`BatchModel`]: the model's weights decoded once into aligned `f32` (int8 matrices as
//!   their integer values, scales kept apart), shared read-only by any number of threads.
//! - [`BatchScratch`]: one thread's buffers (and a cached [`BatchModel`] for
//!   [`denoise_batched_into`]).
//! - [`denoise_batched_into`]: same inputs as the core function, with a scratch instead of
//!   `work`/`topk`.
//!
//! **Difference to the core.** Only roundings differ: the encoder's sums start from zero
//! instead of the bias and (with FMA) fuse each multiply-add, so pre-activations differ by f32
//! rounding (~1e-7 relative); the decode adds the kept rows in index order instead of largest
//! first, fused likewise; a convolutional front end runs as a direct convolution tiled over
//! output channels and samples (its sums in another order, fused likewise). Window statistics, the
//! linear path's gate and the TopK rule are the core's bit for bit. Where two pre-activations at the k-th place are closer than
//! that rounding, the kept set can differ by one latent; the integration tests measure the
//! resulting error over many windows of real EEG and state the bound. int8 models keep the
//! core's per-window activation quantisation; only the integer dot products are accumulated in
//! f32 (exact up to 2^24, rounding beyond).

mod encode;

use encode::{PackedEncoder, VectorIsa};

use crate::core::{
    Activation, Blend, CoreError, FaultCounts, FrontShape, Normalisation, OlaShape, Sae, SaeConfig,
    Skip, Weights, ola_window_shape_into, reflect_index, sane, sanitise, zscore_stats,
};

/// Windows encoded per matrix product unless [`BatchScratch::with_batch`] says otherwise.
/// Large enough that the product runs near the sgemm's speed for a 256 x 1024 encoder, small
/// enough that `A` and the pre-activations stay in the L2 cache of common CPUs.
pub const DEFAULT_BATCH: usize = 128;

fn le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The int8 parts of a [`BatchModel`].
#[derive(Clone, Debug, PartialEq)]
struct Int8Parts {
    /// `W_enc_scale [d_sae]`.
    enc_scale: Vec<f32>,
    /// `W_dec_scale [d_sae]`.
    dec_scale: Vec<f32>,
    /// Largest |activation code|: the core's bound, so codes are the same integers.
    qmax: f32,
}

/// The core's int8 activation-code bound (`d_in * 128 * qmax` fits an i32, at most 32767);
/// the same integers must come out here as there.
fn int8_qmax(d_in: usize) -> f32 {
    let bound = (i32::MAX as usize) / (128 * d_in.max(1));
    bound.min(32767) as f32
}

/// A model's weights decoded once for the batched path: aligned `f32` matrices (for int8
/// models the integer values, with the per-latent scales kept apart so the core's int8
/// arithmetic is reproduced), the biases, and the linear path's taps.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchModel {
    config: SaeConfig,
    /// `W_enc [d_in, d_sae]`, packed for the encoder product.
    enc: PackedEncoder,
    /// `W_dec [d_sae, d_in]` row-major.
    w_dec: Vec<f32>,
    b_enc: Vec<f32>,
    b_dec: Vec<f32>,
    int8: Option<Int8Parts>,
    /// Linear-path taps (little-endian bytes, as [`Skip`] reads them) and gate.
    skip: Option<(Vec<u8>, f32)>,
    /// The same taps decoded (empty without a linear path).
    taps: Vec<f32>,
    /// Overlap-add taper ([`Sae::ola_shape`]).
    ola: OlaShape,
    /// The correction gate ([`Sae::blend`]).
    blend: Option<Blend>,
    /// Convolutional front end (shape, little-endian parameters, as the core reads them).
    front: Option<(FrontShape, Vec<u8>)>,
    /// The same front end decoded layer by layer for [`front_by_products`].
    front_layers: Vec<FrontLayer>,
}

/// One front-end layer: weights `[cout, cin * k]` row-major (the file's `[out, in, k]`
/// packing read as a matrix), biases, and the sizes.
#[derive(Clone, Debug, PartialEq)]
struct FrontLayer {
    w: Vec<f32>,
    b: Vec<f32>,
    cin: usize,
    cout: usize,
    k: usize,
    /// `w` for the AVX-512 kernel's tiles: per block of [`WIDE_ROWS`] output rows, for each
    /// `(ci, l)` the block's weights side by side (`[cout / WIDE_ROWS][cin k][WIDE_ROWS]`).
    wide: Vec<f32>,
}

impl FrontLayer {
    /// A layer from its weights `[cout, cin k]`, biases and `(cin, cout, k)`.
    fn new(w: Vec<f32>, b: Vec<f32>, (cin, cout, k): (usize, usize, usize)) -> Self {
        let ck = cin * k;
        let wide = (0..cout / WIDE_ROWS)
            .flat_map(|blk| {
                let w = &w;
                (0..ck).flat_map(move |j| {
                    (0..WIDE_ROWS).map(move |r| w[(blk * WIDE_ROWS + r) * ck + j])
                })
            })
            .collect();
        Self {
            w,
            b,
            cin,
            cout,
            k,
            wide,
        }
    }
}

/// Splits the packed parameters of a front end of shape `f` into its layers.
fn front_layers(f: FrontShape, params: &[f32]) -> Vec<FrontLayer> {
    let mut dims = vec![(1, f.width, f.kernel)];
    dims.extend((1..f.depth).map(|_| (f.width, f.width, f.kernel)));
    dims.push((f.width, 1, 1));
    let mut off = 0;
    dims.into_iter()
        .map(|(cin, cout, k)| {
            let n = cout * cin * k;
            let layer = FrontLayer::new(
                params[off..off + n].to_vec(),
                params[off + n..off + n + cout].to_vec(),
                (cin, cout, k),
            );
            off += n + cout;
            layer
        })
        .collect()
}

impl BatchModel {
    /// Decodes the weights of a validated [`Sae`] (2 x `d_in * d_sae` floats).
    pub fn new(sae: &Sae<'_>) -> Self {
        let config = sae.config();
        let (w_enc, w_dec, b_enc, b_dec, int8) = match sae.weights() {
            Weights::F32(w) => (
                le_f32(w.w_enc),
                le_f32(w.w_dec),
                le_f32(w.b_enc),
                le_f32(w.b_dec),
                None,
            ),
            Weights::Int8(w) => {
                let ints = |b: &[u8]| b.iter().map(|&v| f32::from(v as i8)).collect();
                (
                    ints(w.w_enc),
                    ints(w.w_dec),
                    le_f32(w.b_enc),
                    le_f32(w.b_dec),
                    Some(Int8Parts {
                        enc_scale: le_f32(w.w_enc_scale),
                        dec_scale: le_f32(w.w_dec_scale),
                        qmax: int8_qmax(config.d_in),
                    }),
                )
            }
        };
        Self {
            config,
            enc: PackedEncoder::new(w_enc, config.d_in, config.d_sae),
            w_dec,
            b_enc,
            b_dec,
            int8,
            skip: sae.skip().map(|s| (s.taps.to_vec(), s.gate)),
            taps: sae.skip().map_or_else(Vec::new, |s| le_f32(s.taps)),
            ola: sae.ola_shape(),
            blend: sae.blend(),
            front: sae.front().map(|f| (f.shape, f.params.to_vec())),
            front_layers: sae
                .front()
                .map_or_else(Vec::new, |f| front_layers(f.shape, &le_f32(f.params))),
        }
    }

    /// The same model recombining windows with the OLA taper `shape` instead of its own.
    #[must_use]
    pub fn with_ola_shape(mut self, shape: OlaShape) -> Self {
        self.ola = shape;
        self
    }

    /// The OLA taper in use.
    pub const fn ola_shape(&self) -> OlaShape {
        self.ola
    }

    /// Sizes and modes of the model.
    pub const fn config(&self) -> SaeConfig {
        self.config
    }

    /// True if the model's matrices are int8.
    pub const fn is_int8(&self) -> bool {
        self.int8.is_some()
    }

    /// Floating-point operations per window: the dense encode (`2 d_in d_sae`), the sparse
    /// decode (`2 k d_in`) and, if present, the linear path (`2 taps d_in`) and the front end
    /// (2 x [`FrontShape::macs_per_window`]). Normalisation, TopK and overlap-add are not
    /// counted.
    pub fn flops_per_window(&self) -> u64 {
        let c = self.config;
        let taps = self.skip.as_ref().map_or(0, |(t, _)| t.len() / 4);
        let front = self
            .front
            .as_ref()
            .map_or(0, |(f, _)| f.macs_per_window(c.d_in));
        2 * (c.d_in * c.d_sae + c.k * c.d_in + taps * c.d_in + front) as u64
    }

    /// True if this is the decoded form of `sae`'s weights (compared value by value) with its
    /// taper.
    fn matches(&self, sae: &Sae<'_>) -> bool {
        let c = self.config;
        let same = |v: &[f32], b: &[u8]| {
            v.len() * 4 == b.len()
                && v.iter()
                    .zip(b.chunks_exact(4))
                    .all(|(x, c)| x.to_bits() == u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        };
        let same_i8 = |v: &[f32], b: &[u8]| {
            v.len() == b.len() && v.iter().zip(b).all(|(x, &q)| *x == f32::from(q as i8))
        };
        let skip_same = match (&self.skip, sae.skip()) {
            (None, None) => true,
            (Some((t, g)), Some(s)) => t.as_slice() == s.taps && g.to_bits() == s.gate.to_bits(),
            _ => false,
        };
        let front_same = match (&self.front, sae.front()) {
            (None, None) => true,
            (Some((shape, p)), Some(f)) => *shape == f.shape && p.as_slice() == f.params,
            _ => false,
        };
        self.config == sae.config()
            && self.ola == sae.ola_shape()
            && self.blend == sae.blend()
            && skip_same
            && front_same
            && match (sae.weights(), &self.int8) {
                (Weights::F32(w), None) => {
                    same(&self.b_enc, w.b_enc)
                        && same(&self.b_dec, w.b_dec)
                        && w.w_enc.len() == 4 * c.d_in * c.d_sae
                        && self
                            .enc
                            .all_runs(|v, s| same(v, &w.w_enc[4 * s..4 * (s + v.len())]))
                        && same(&self.w_dec, w.w_dec)
                }
                (Weights::Int8(w), Some(p)) => {
                    same(&self.b_enc, w.b_enc)
                        && same(&self.b_dec, w.b_dec)
                        && same(&p.enc_scale, w.w_enc_scale)
                        && same(&p.dec_scale, w.w_dec_scale)
                        && w.w_enc.len() == c.d_in * c.d_sae
                        && self
                            .enc
                            .all_runs(|v, s| same_i8(v, &w.w_enc[s..s + v.len()]))
                        && same_i8(&self.w_dec, w.w_dec)
                }
                _ => false,
            }
    }

    /// Denoises a whole single-channel signal (`out.len() == x.len()`) exactly as
    /// [`crate::core::denoise_offline_into`] specifies (module docs: the difference is f32
    /// rounding in the encoder). Returns the faults repaired, counted as the core counts them.
    pub fn denoise_into(
        &self,
        hop: usize,
        x: &[f32],
        out: &mut [f32],
        s: &mut BatchScratch,
    ) -> Result<FaultCounts, CoreError> {
        #[cfg(target_arch = "x86_64")]
        return self.denoise_on(encode::vector_isa(), hop, x, out, s);
        #[cfg(not(target_arch = "x86_64"))]
        return self.denoise_on(hop, x, out, s);
    }

    /// [`BatchModel::denoise_into`] with the per-window kernels of `isa` (one this CPU has).
    fn denoise_on(
        &self,
        #[cfg(target_arch = "x86_64")] isa: VectorIsa,
        hop: usize,
        x: &[f32],
        out: &mut [f32],
        s: &mut BatchScratch,
    ) -> Result<FaultCounts, CoreError> {
        let SaeConfig { d_in, k, .. } = self.config;
        if hop == 0 || hop > d_in {
            return Err(CoreError::InvalidHop { hop, d_in });
        }
        if out.len() != x.len() {
            return Err(CoreError::BufferLength {
                buffer: "out",
                expected: x.len(),
                got: out.len(),
            });
        }
        let mut faults = FaultCounts::default();
        let n = x.len();
        if n == 0 {
            return Ok(faults);
        }
        s.size_for(self, hop)?;
        s.hint = None;
        out.fill(0.0);
        let pad = d_in - 1;
        // The same windows as the core: m*hop - 1 is the stream time of window m's last sample.
        let m_first = d_in.div_ceil(hop);
        let m_last = (pad + n + d_in - 1) / hop;
        let mut m0 = m_first;
        while m0 <= m_last {
            let rows = s.batch.min(m_last + 1 - m0);
            self.prepare_rows(hop, m0, rows, x, s, &mut faults);
            self.enc.product(&s.a, rows, &mut s.c, &mut s.packed_a);
            for r in 0..rows {
                #[cfg(target_arch = "x86_64")]
                match isa {
                    // SAFETY: `vector_isa` found each kernel's features at run time.
                    VectorIsa::Avx512 => {
                        unsafe {
                            self.finish_window_avx512(hop, m0 + r, r, n, s, out, &mut faults, k)
                        };
                        continue;
                    }
                    VectorIsa::Avx2Fma => {
                        unsafe {
                            self.finish_window_avx2(hop, m0 + r, r, n, s, out, &mut faults, k)
                        };
                        continue;
                    }
                    VectorIsa::Baseline => {}
                }
                self.finish_window::<false, DECODE_BLOCK>(
                    hop,
                    m0 + r,
                    r,
                    n,
                    s,
                    out,
                    &mut faults,
                    k,
                );
            }
            m0 += rows;
        }
        Ok(faults)
    }

    /// Fills rows `0..rows` of `s.win` (sanitised windows `m0..m0 + rows`), `s.xn` (their
    /// normalised form) and `s.a` (the encoder's input: `xn - b_dec`, or for int8 its integer
    /// codes), and the per-window statistics.
    fn prepare_rows(
        &self,
        hop: usize,
        m0: usize,
        rows: usize,
        x: &[f32],
        s: &mut BatchScratch,
        faults: &mut FaultCounts,
    ) {
        let d_in = self.config.d_in;
        let n = x.len();
        let pad = d_in - 1;
        let norm = self.config.normalisation;
        for r in 0..rows {
            let start = ((m0 + r) * hop) as isize - d_in as isize - pad as isize;
            let win = &mut s.win[r * d_in..(r + 1) * d_in];
            let first = start.max(0) as usize;
            if start >= 0 && first + d_in <= n {
                // Interior window: a straight copy (reflection is the identity here).
                for (w, &v) in win.iter_mut().zip(&x[first..first + d_in]) {
                    *w = sanitise(v, faults);
                }
            } else {
                for (i, w) in win.iter_mut().enumerate() {
                    let v = x[reflect_index(start + i as isize, n)];
                    *w = sanitise(v, faults);
                }
            }
        }
        if norm != Normalisation::None {
            zscore_stats_rows(&s.win[..rows * d_in], d_in, &mut s.zs[..rows]);
        }
        for r in 0..rows {
            let win = &s.win[r * d_in..(r + 1) * d_in];
            let xn = &mut s.xn[r * d_in..(r + 1) * d_in];
            let (mean, scale) = match norm {
                Normalisation::None => {
                    xn.copy_from_slice(win);
                    (0.0, 1.0)
                }
                Normalisation::WindowZscore | Normalisation::WindowZscoreNoMean => {
                    let (mean, scale) = s.zs[r];
                    for (o, &v) in xn.iter_mut().zip(win.iter()) {
                        *o = (v - mean) / scale;
                    }
                    (mean, scale)
                }
            };
            // The encoder sees the front end's output.
            let enc_in: &[f32] = if self.front_layers.is_empty() {
                xn
            } else {
                let (g, rest) = s.front.split_at_mut(d_in);
                front_by_products(&self.front_layers, xn, g, rest);
                g
            };
            let a = &mut s.a[r * d_in..(r + 1) * d_in];
            let mut sx = 0.0;
            match &self.int8 {
                None => {
                    for ((o, &v), &b) in a.iter_mut().zip(enc_in).zip(&self.b_dec) {
                        *o = v - b;
                    }
                }
                Some(p) => {
                    // The core's per-window activation quantisation, to the same integers.
                    let mut amax = 0.0f32;
                    for ((o, &v), &b) in a.iter_mut().zip(enc_in).zip(&self.b_dec) {
                        let c = v - b;
                        *o = c;
                        let m = if c < 0.0 { -c } else { c };
                        if m > amax {
                            amax = m;
                        }
                    }
                    let inv = if amax > 0.0 && amax.is_finite() {
                        sx = amax / p.qmax;
                        p.qmax / amax
                    } else {
                        0.0
                    };
                    for o in a.iter_mut() {
                        let q = (*o * inv).round();
                        *o = if q > p.qmax {
                            p.qmax
                        } else if q < -p.qmax {
                            -p.qmax
                        } else if q.is_nan() {
                            0.0
                        } else {
                            q
                        };
                    }
                }
            }
            s.stats[r] = WindowStats { mean, scale, sx };
        }
    }

    /// [`BatchModel::finish_window`] compiled for AVX2 (8-wide vectors), with the decode's
    /// and the linear path's multiply-adds fused (one rounding instead of two).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    fn finish_window_avx2(
        &self,
        hop: usize,
        m: usize,
        r: usize,
        n: usize,
        s: &mut BatchScratch,
        out: &mut [f32],
        faults: &mut FaultCounts,
        k: usize,
    ) {
        self.finish_window::<true, DECODE_BLOCK>(hop, m, r, n, s, out, faults, k);
    }

    /// [`BatchModel::finish_window`] compiled for AVX-512F, the decode's blocks four times
    /// [`DECODE_BLOCK`] outputs: sixteen of the 32 16-lane registers hold a 256-sample
    /// window's sums, so each kept row is read once, front to back (with blocks of 128 the
    /// rows were read twice: 4 % slower over the hour file). The same fused multiply-adds in
    /// the same order per output: the AVX2 build's bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    fn finish_window_avx512(
        &self,
        hop: usize,
        m: usize,
        r: usize,
        n: usize,
        s: &mut BatchScratch,
        out: &mut [f32],
        faults: &mut FaultCounts,
        k: usize,
    ) {
        self.finish_window::<true, { 4 * DECODE_BLOCK }>(hop, m, r, n, s, out, faults, k);
    }

    /// Bias, TopK, sparse decode, linear path, de-normalisation, the fault rule and the
    /// overlap-add of row `r` (window `m`). `FMA`: multiply-adds fused (only where the caller
    /// enables the instruction; elsewhere `mul_add` would be a library call).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn finish_window<const FMA: bool, const DB: usize>(
        &self,
        hop: usize,
        m: usize,
        r: usize,
        n: usize,
        s: &mut BatchScratch,
        out: &mut [f32],
        faults: &mut FaultCounts,
        k: usize,
    ) {
        let SaeConfig {
            d_in,
            d_sae,
            activation,
            normalisation,
            ..
        } = self.config;
        let st = s.stats[r];
        let pre = &mut s.c[r * d_sae..(r + 1) * d_sae];
        match &self.int8 {
            None => {
                for (p, &b) in pre.iter_mut().zip(&self.b_enc) {
                    *p += b;
                }
            }
            Some(q) => {
                for ((p, &b), &sc) in pre.iter_mut().zip(&self.b_enc).zip(&q.enc_scale) {
                    *p = b + (st.sx * sc) * *p;
                }
            }
        }
        let kept = select_topk(
            pre,
            k,
            &mut s.ords,
            &mut s.keys,
            &mut s.cand,
            &mut s.topk,
            &mut s.hint,
        );
        // The kept rows' coefficients, zeros dropped as the core drops them.
        // Branch-free: every kept latent is written, the count advances past non-zero ones
        // (ReLU zeros among the k largest are data-dependent, so a branch mispredicted).
        let mut nc = 0;
        for &j in &s.topk[..kept] {
            let j = j as usize;
            let z = activate(activation, pre[j]);
            s.coef[nc] = (
                // The row's offset; j < d_sae, and d_sae * d_in elements exist.
                j.wrapping_mul(d_in),
                match &self.int8 {
                    None => z,
                    Some(q) => z * q.dec_scale[j],
                },
            );
            nc += usize::from(z != 0.0);
        }
        let coef = &s.coef[..nc];
        let y = &mut s.y;
        y.copy_from_slice(&self.b_dec);
        // Decode by blocks of DB outputs (DECODE_BLOCK, four times that with AVX-512),
        // all kept rows per block, so the block's sums stay in registers instead of going
        // through memory once per row. Each output still adds the rows in the same (index)
        // order.
        let mut b0 = 0;
        while b0 < d_in {
            let w = DB.min(d_in - b0);
            if w == DB {
                let mut acc = [0.0f32; DB];
                acc.copy_from_slice(&y[b0..b0 + DB]);
                for &(at, c) in coef {
                    let row = &self.w_dec[at + b0..at + b0 + DB];
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a = madd::<FMA>(c, v, *a);
                    }
                }
                y[b0..b0 + DB].copy_from_slice(&acc);
            } else {
                for &(at, c) in coef {
                    let row = &self.w_dec[at + b0..at + b0 + w];
                    for (o, &v) in y[b0..b0 + w].iter_mut().zip(row) {
                        *o = madd::<FMA>(c, v, *o);
                    }
                }
            }
            b0 += w;
        }
        let xn = &s.xn[r * d_in..(r + 1) * d_in];
        if let Some((bytes, gate)) = &self.skip {
            // The core's gate decision (decided alike on borderline windows, see
            // `gate_opens`), then its tap loop inlined here so it gets this function's vectors.
            if gate_opens(bytes, *gate, xn) {
                let c = self.taps.len() / 2;
                for (l, &t) in self.taps.iter().enumerate() {
                    let lo = c.saturating_sub(l);
                    let hi = (d_in + c).saturating_sub(l).min(d_in);
                    if lo >= hi {
                        continue;
                    }
                    let src = lo + l - c;
                    for (o, &v) in y[lo..hi].iter_mut().zip(&xn[src..src + (hi - lo)]) {
                        *o = madd::<FMA>(t, v, *o);
                    }
                }
            }
        }
        if let Some(b) = &self.blend {
            b.apply(xn, y);
        }
        if normalisation != Normalisation::None {
            let back = normalisation.output_offset(st.mean);
            for o in y.iter_mut() {
                *o = *o * st.scale + back;
            }
        }
        let win = &s.win[r * d_in..(r + 1) * d_in];
        if !y.iter().all(|&v| sane(v)) {
            y.copy_from_slice(win);
            faults.windows = faults.windows.saturating_add(1);
        }
        let pad = d_in - 1;
        let start = (m * hop) as isize - d_in as isize - pad as isize;
        // Output positions start..start + d_in, clipped to 0..n.
        let lo = (-start).max(0) as usize;
        let hi = (n as isize - start).clamp(0, d_in as isize) as usize;
        if lo < hi {
            let o0 = (start + lo as isize) as usize;
            for ((o, &w), &yv) in out[o0..o0 + (hi - lo)]
                .iter_mut()
                .zip(&s.ola_w[lo..hi])
                .zip(&y[lo..hi])
            {
                *o += w * yv;
            }
        }
    }
}

/// The core's front end ([`crate::core::Front`]) layer by layer, each layer a direct
/// convolution over a zero-padded input, tiled so that 4 output channels x 16 samples (12 x 32
/// with AVX-512F) accumulate in registers (fused multiply-adds where the CPU has them). Each
/// layer writes its output straight into the zero-padded rows the next layer reads (a copy
/// into a padded buffer per layer was 3 % of `denoise`'s time). An im2col copy and a general
/// sgemm cost about as much in copying and packing as in arithmetic at these sizes (16
/// channels, 256 samples). The sums are the core's up to f32 rounding (other order, fused
/// multiply-adds). `x`, `g`: `[d]`; `scratch`: [`front_scratch_len`] floats.
fn front_by_products(layers: &[FrontLayer], x: &[f32], g: &mut [f32], scratch: &mut [f32]) {
    let d = x.len();
    let width = layers.first().map_or(0, |l| l.cout);
    let kmax = layers.iter().map(|l| l.k).max().unwrap_or(1);
    let (h, pad) = scratch.split_at_mut(2 * width * (d + kmax - 1));
    let (mut src, mut dst) = h.split_at_mut(width * (d + kmax - 1));
    let isa = encode::vector_isa();
    let padded = |k: usize| Rows {
        stride: d + k - 1,
        off: k / 2,
    };
    let first = padded(layers[0].k);
    let pad = &mut pad[..first.stride];
    pad.fill(0.0);
    pad[first.off..first.off + d].copy_from_slice(x);
    let last = layers.len() - 1;
    for (i, layer) in layers.iter().enumerate() {
        let input: &[f32] = if i == 0 { pad } else { src };
        if i == last {
            conv_into(layer, input, g, Rows { stride: d, off: 0 }, d, false, isa);
        } else {
            let rows = padded(layers[i + 1].k);
            for row in dst[..layer.cout * rows.stride].chunks_exact_mut(rows.stride) {
                row[..rows.off].fill(0.0);
                row[rows.off + d..].fill(0.0);
            }
            conv_into(layer, input, dst, rows, d, true, isa);
            ::core::mem::swap(&mut src, &mut dst);
        }
    }
    for (gv, &xv) in g.iter_mut().zip(x) {
        *gv += xv;
    }
}

/// Floats of scratch [`front_by_products`] needs for a front of `width` channels and hidden
/// kernel `kernel` over windows of `d`: two layer outputs and the padded input, rows of
/// `d + kernel - 1`.
fn front_scratch_len(width: usize, kernel: usize, d: usize) -> usize {
    (2 * width + 1) * (d + kernel.max(1) - 1)
}

/// Where a layer's output rows go: row `co` at `co * stride + off`, `d` samples.
#[derive(Clone, Copy)]
struct Rows {
    stride: usize,
    off: usize,
}

/// One same-padded conv layer `y[co, n] = b[co] + sum_{ci, l} w[co, ci, l] x[ci, n + l - k/2]`
/// (zero outside the window), ReLU'd if `relu`. `xp`: the input's `cin` rows of `d + k - 1`,
/// zero-padded by `k / 2` on the left; `y`: the output rows as `out` places them (the floats
/// between them are left as they were, or ReLU'd).
fn conv_into(
    layer: &FrontLayer,
    xp: &[f32],
    y: &mut [f32],
    out: Rows,
    d: usize,
    relu: bool,
    isa: VectorIsa,
) {
    let xp = &xp[..layer.cin * (d + layer.k - 1)];
    let y = &mut y[..(layer.cout - 1) * out.stride + out.off + d];
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: each kernel runs only where `encode::vector_isa` found its features at run
        // time.
        VectorIsa::Avx512 => return unsafe { conv_avx512(layer, xp, y, out, d, relu) },
        VectorIsa::Avx2Fma => return unsafe { conv_fma(layer, xp, y, out, d, relu) },
        VectorIsa::Baseline => {}
    }
    let _ = isa;
    conv_tiles::<false, COLS>(layer, xp, y, out, d, relu, 0);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_fma(layer: &FrontLayer, xp: &[f32], y: &mut [f32], out: Rows, d: usize, relu: bool) {
    conv_tiles::<true, COLS>(layer, xp, y, out, d, relu, 0);
}

/// The AVX-512 kernel: tiles of [`WIDE_ROWS`] output channels x 32 samples (two 16-lane
/// vectors per channel, 24 accumulators), the weights read from [`FrontLayer::wide`]; the rows
/// beyond the last full tile go to [`conv_tiles`] at 32 samples. Same terms in the same order
/// per sample: the same bits as [`conv_fma`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn conv_avx512(
    layer: &FrontLayer,
    xp: &[f32],
    y: &mut [f32],
    out: Rows,
    d: usize,
    relu: bool,
) {
    use std::arch::x86_64::*;
    const R: usize = WIDE_ROWS;
    const C: usize = 2 * COLS;
    let FrontLayer {
        w, b, cin, cout, k, ..
    } = layer;
    let (cin, cout, k) = (*cin, *cout, *k);
    let (p, ck) = (d + k - 1, cin * k);
    assert!(
        xp.len() >= cin * p
            && out.off + d <= out.stride
            && y.len() >= (cout - 1) * out.stride + out.off + d
            && w.len() >= cout * ck
    );
    let mut co = 0;
    while co + R <= cout {
        let mut n = 0;
        while n + C <= d {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            for (r, a) in acc.iter_mut().enumerate() {
                let bv = _mm512_set1_ps(b[co + r]);
                *a = [bv, bv];
            }
            let wb = layer.wide[(co / R) * ck * R..(co / R + 1) * ck * R].as_ptr();
            for ci in 0..cin {
                let xs = xp[ci * p + n..ci * p + n + C + k - 1].as_ptr();
                let wc = ci * k * R;
                for l in 0..k {
                    // SAFETY: `xs` holds C + k - 1 floats, so l + 32 <= C + k - 1; `wide`
                    // holds R weights per (ci, l) of the block. Unaligned loads.
                    unsafe {
                        let (x0, x1) =
                            (_mm512_loadu_ps(xs.add(l)), _mm512_loadu_ps(xs.add(l + 16)));
                        let wp = wb.add(wc + l * R);
                        for (r, a) in acc.iter_mut().enumerate() {
                            let wv = _mm512_set1_ps(*wp.add(r));
                            a[0] = _mm512_fmadd_ps(wv, x0, a[0]);
                            a[1] = _mm512_fmadd_ps(wv, x1, a[1]);
                        }
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                // SAFETY: (co + r) * stride + off + n + 32 <= (cout - 1) * stride + off + d
                // <= y.len() (asserted above).
                unsafe {
                    let o = y.as_mut_ptr().add((co + r) * out.stride + out.off + n);
                    _mm512_storeu_ps(o, a[0]);
                    _mm512_storeu_ps(o.add(16), a[1]);
                }
            }
            n += C;
        }
        for n in n..d {
            for r in 0..R {
                let mut s = b[co + r];
                for ci in 0..cin {
                    for l in 0..k {
                        s = w[(co + r) * ck + ci * k + l].mul_add(xp[ci * p + n + l], s);
                    }
                }
                y[(co + r) * out.stride + out.off + n] = s;
            }
        }
        co += R;
    }
    // The remaining rows as the AVX2 kernel's tiles do them, twice as wide; then the ReLU.
    conv_tiles::<true, C>(layer, xp, y, out, d, relu, co);
}

/// Output rows per tile of the AVX-512 kernel ([`conv_avx512`]): 12 rows x 2 vectors are 24
/// accumulators of the 32 registers, so each loaded pair of input vectors feeds 24
/// multiply-adds (with 4 rows it fed 8, and the loads were the limit).
const WIDE_ROWS: usize = 12;

/// Output rows in blocks of [`ROWS`] and samples in blocks of [`COLS`], the rest one by one.
const ROWS: usize = 4;
const COLS: usize = 16;

/// Output rows `from..` of one layer in tiles, then the ReLU (if `relu`) over all of `y`.
#[inline(always)]
fn conv_tiles<const FMA: bool, const C: usize>(
    layer: &FrontLayer,
    xp: &[f32],
    y: &mut [f32],
    out: Rows,
    d: usize,
    relu: bool,
    from: usize,
) {
    let FrontLayer {
        w, b, cin, cout, k, ..
    } = layer;
    let (cin, cout, k) = (*cin, *cout, *k);
    let p = d + k - 1;
    let mut co = from;
    while co < cout {
        if co + ROWS <= cout {
            tile_rows::<ROWS, C, FMA>(w, b, xp, y, out, co, cin, k, p, d);
            co += ROWS;
        } else {
            tile_rows::<1, C, FMA>(w, b, xp, y, out, co, cin, k, p, d);
            co += 1;
        }
    }
    if relu {
        for v in y.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

/// Output rows `co .. co + R` of one layer: `R x C` accumulators per sample block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_rows<const R: usize, const C: usize, const FMA: bool>(
    w: &[f32],
    b: &[f32],
    xp: &[f32],
    y: &mut [f32],
    out: Rows,
    co: usize,
    cin: usize,
    k: usize,
    p: usize,
    d: usize,
) {
    let ck = cin * k;
    let madd = |acc: f32, wv: f32, xv: f32| {
        if FMA {
            wv.mul_add(xv, acc)
        } else {
            acc + wv * xv
        }
    };
    let mut n = 0;
    while n + C <= d {
        let mut acc = [[0.0f32; C]; R];
        for (r, a) in acc.iter_mut().enumerate() {
            *a = [b[co + r]; C];
        }
        for ci in 0..cin {
            for l in 0..k {
                let xs: &[f32; C] = xp[ci * p + n + l..][..C].try_into().unwrap();
                for (r, a) in acc.iter_mut().enumerate() {
                    let wv = w[(co + r) * ck + ci * k + l];
                    for (av, &xv) in a.iter_mut().zip(xs) {
                        *av = madd(*av, wv, xv);
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            y[(co + r) * out.stride + out.off + n..][..C].copy_from_slice(a);
        }
        n += C;
    }
    for n in n..d {
        for r in 0..R {
            let mut s = b[co + r];
            for ci in 0..cin {
                for l in 0..k {
                    s = madd(s, w[(co + r) * ck + ci * k + l], xp[ci * p + n + l]);
                }
            }
            y[(co + r) * out.stride + out.off + n] = s;
        }
    }
}

/// [`zscore_stats`] of each `d_in`-long row of `win` into `out`, bit for bit: eight rows'
/// sequential sums advance together (eight independent add chains instead of one, whose
/// latency bounded the one-row loop), each in the core's order.
fn zscore_stats_rows(win: &[f32], d_in: usize, out: &mut [(f32, f32)]) {
    const L: usize = 8;
    let rows = out.len();
    let full = rows / L * L;
    let n = d_in as f32;
    for r0 in (0..full).step_by(L) {
        let w = &win[r0 * d_in..(r0 + L) * d_in];
        // `Sum for f32` starts from -0.0; so do these, for the same bits on all-zero rows.
        let mut sum = [-0.0f32; L];
        for i in 0..d_in {
            for (l, s) in sum.iter_mut().enumerate() {
                *s += w[l * d_in + i];
            }
        }
        let mean = sum.map(|s| s / n);
        let mut var = [-0.0f32; L];
        for i in 0..d_in {
            for (l, v) in var.iter_mut().enumerate() {
                let d = w[l * d_in + i] - mean[l];
                *v += d * d;
            }
        }
        for l in 0..L {
            out[r0 + l] = (mean[l], libm::sqrtf(var[l] / n) + crate::core::ZSCORE_EPS);
        }
    }
    for r in full..rows {
        out[r] = zscore_stats(&win[r * d_in..(r + 1) * d_in]);
    }
}

/// `a * b + c`, fused where `FMA`.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// [`Skip::opens`] (`d <= gate * e` with the core's sequential f32 sums of squares and of
/// squared differences), decided from 8-lane sums where they leave no doubt.
///
/// Both sums add non-negative terms, so any f32 summation order lies within a relative
/// `(n + 1) 2^-24` of the exact sum, the core's sequential order included. When the lane sums
/// put `d` and `gate * e` further apart than twice that (plus the product's rounding), the
/// core's comparison cannot come out otherwise; only closer windows (rare) run the core's
/// sequential loop, so the decision is the core's in every case.
#[inline(always)]
fn gate_opens(taps: &[u8], gate: f32, x: &[f32]) -> bool {
    let exact = || Skip { taps, gate }.opens(x);
    let n = x.len();
    if n < 16 || !gate.is_finite() || gate < 0.0 {
        return exact();
    }
    let mut e = [0.0f32; 8];
    let mut d = [0.0f32; 8];
    for (c, p) in x[1..].chunks_exact(8).zip(x.chunks_exact(8)) {
        for l in 0..8 {
            e[l] += c[l] * c[l];
            let t = c[l] - p[l];
            d[l] += t * t;
        }
    }
    let done = (n - 1) / 8 * 8;
    let mut es = x[0] * x[0] + e.iter().sum::<f32>();
    let mut ds = d.iter().sum::<f32>();
    for i in done + 1..n {
        es += x[i] * x[i];
        let t = x[i] - x[i - 1];
        ds += t * t;
    }
    if !(es.is_finite() && ds.is_finite()) {
        return exact();
    }
    // Relative bound per sum (terms' and additions' roundings), both sums, gate product.
    let rel = 2.0 * (n as f64 + 4.0) * f64::from(f32::EPSILON) + 1e-12;
    let (d64, ge) = (f64::from(ds), f64::from(gate) * f64::from(es));
    if d64 * (1.0 + rel) < ge * (1.0 - rel) {
        true
    } else if d64 * (1.0 - rel) > ge * (1.0 + rel) {
        false
    } else {
        exact()
    }
}

#[inline(always)]
fn activate(a: Activation, pre: f32) -> f32 {
    match a {
        Activation::TopkRelu => {
            if pre > 0.0 {
                pre
            } else {
                0.0
            }
        }
        Activation::TopkSigned => pre,
    }
}

/// A u32 whose order is the IEEE order of `v` (`-0.0` mapped to `0.0`, so they tie as the
/// core's `>` makes them tie). NaN is excluded by the caller.
#[inline(always)]
fn order_u32(v: f32) -> u32 {
    let bits = (v + 0.0).to_bits(); // -0.0 + 0.0 == +0.0
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// A key whose descending order is the core's TopK order: value descending, then index
/// ascending. Unique per index, so a threshold on it selects exactly k.
#[inline(always)]
fn order_key(ord: u32, j: usize) -> u64 {
    (u64::from(ord) << 32) | u64::from(!(j as u32))
}

/// How many ords are >= t: a branch-free loop the compiler vectorises (wrapping adds, since
/// this crate keeps overflow checks on in release and a checked add would stay scalar; the
/// count cannot exceed `ords.len()`).
#[inline(always)]
fn count_ge(ords: &[u32], t: u32) -> usize {
    ords.iter()
        .fold(0u32, |a, &o| a.wrapping_add(u32::from(o >= t))) as usize
}

/// Outputs decoded together: eight AVX2 registers of sums, so that eight independent add
/// chains hide the add latency (with four, each row waited on the previous row's adds).
const DECODE_BLOCK: usize = 64;

/// Candidates at most this many are resolved by an exact selection on keys (larger: fewer
/// counting passes over all latents, a longer selection; 192 measured a few % faster than 64).
const TOPK_CANDIDATES: usize = 192;

/// The set [`crate::core::topk_into`] keeps (the k largest, ties to the lower index), written
/// into `idx[..got]` in ascending index order; returns `got = min(k, pre.len())`. `idx` needs
/// one slot more than k (the branch-free compaction writes one past the last kept index).
///
/// Why not the core's insertion: with k = 128 of 1024 it costs several times the window's
/// encode. Here thresholds on order-preserving integers are counted with vectorised passes:
/// starting from the previous window's threshold (`hint`; overlapping windows have close
/// thresholds), a bracket `[lo, hi)` with `count(>= lo) >= k > count(>= hi)` is found and
/// narrowed until few values lie inside; those few are ordered exactly by key. A NaN (kept out
/// by the core's fault rules in practice) falls back to the core's own selection, so the rule
/// is the core's in every case.
#[inline(always)]
fn select_topk(
    pre: &[f32],
    k: usize,
    ords: &mut Vec<u32>,
    keys: &mut Vec<u64>,
    cand: &mut Vec<u32>,
    idx: &mut [u32],
    hint: &mut Option<u32>,
) -> usize {
    let k = k.min(pre.len()).min(idx.len().saturating_sub(SPARE));
    if k == 0 {
        return 0;
    }
    // A fold without early exit vectorises; `any` stays a scalar loop with a branch per value.
    #[allow(clippy::eq_op)]
    let has_nan = pre.iter().fold(false, |a, &v| a | (v != v));
    if has_nan {
        let mut core_idx = vec![0usize; k];
        let got = crate::core::topk_into(pre, &mut core_idx);
        core_idx[..got].sort_unstable();
        for (o, &j) in idx.iter_mut().zip(&core_idx[..got]) {
            *o = j as u32;
        }
        return got;
    }
    ords.clear();
    ords.extend(pre.iter().map(|&v| order_u32(v)));
    let ords = ords.as_slice();
    // count(>= 0) = n >= k; count(>= u32::MAX) = 0 < k (no NaN, and +inf maps below MAX).
    let (mut lo, mut c_lo, mut hi, mut c_hi) = (0u32, ords.len(), u32::MAX, 0usize);
    if let Some(h) = *hint {
        let c = count_ge(ords, h);
        let mut d = 1u32 << 12;
        if c >= k {
            (lo, c_lo) = (h, c);
            loop {
                let t = lo.saturating_add(d);
                let ct = if t == u32::MAX { 0 } else { count_ge(ords, t) };
                if ct < k {
                    (hi, c_hi) = (t, ct);
                    break;
                }
                (lo, c_lo) = (t, ct);
                d = d.saturating_mul(4);
            }
        } else {
            (hi, c_hi) = (h, c);
            loop {
                let t = hi.saturating_sub(d);
                let ct = if t == 0 {
                    ords.len()
                } else {
                    count_ge(ords, t)
                };
                if ct >= k {
                    (lo, c_lo) = (t, ct);
                    break;
                }
                (hi, c_hi) = (t, ct);
                d = d.saturating_mul(4);
            }
        }
    }
    while c_lo - c_hi > TOPK_CANDIDATES && hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let c = count_ge(ords, mid);
        if c >= k {
            (lo, c_lo) = (mid, c);
        } else {
            (hi, c_hi) = (mid, c);
        }
    }
    *hint = Some(lo);
    // Everything >= hi is kept (c_hi < k of them); the remaining k - c_hi come from [lo, hi)
    // in key order.
    // Branch-free compaction of the c_lo - c_hi candidates (one spare slot at the end).
    keys.clear();
    keys.resize(c_lo - c_hi + SPARE, 0);
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(target_arch = "x86_64")]
    let nc = if avx2 {
        // SAFETY: AVX2 support was detected at run time.
        unsafe { candidates_avx2(ords, lo, hi, keys, idx_scratch_for(cand, c_lo - c_hi)) }
    } else {
        candidates(ords, lo, hi, keys)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let nc = candidates(ords, lo, hi, keys);
    let r = k - c_hi;
    let kth = *keys[..nc].select_nth_unstable_by(r - 1, |a, b| b.cmp(a)).1;
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: as above.
        return unsafe { kept_avx2(ords, kth, idx) };
    }
    kept(ords, kth, idx)
}

/// Writes the keys of the ords in `[lo, hi)` to `keys` (index order); returns how many.
/// `keys` has [`SPARE`] slots more than that count (the compaction writes past the last).
#[inline(always)]
fn candidates(ords: &[u32], lo: u32, hi: u32, keys: &mut [u64]) -> usize {
    let mut nc = 0usize;
    for (j, &o) in ords.iter().enumerate() {
        // Branch-free compaction: always write, advance only when inside.
        keys[nc] = order_key(o, j);
        nc = nc.wrapping_add(usize::from(o >= lo && o < hi));
    }
    nc
}

/// Writes the indices whose key is >= `kth` to `idx` in ascending order; returns how many
/// (exactly k: keys are unique). `idx` has [`SPARE`] slots more.
#[inline(always)]
fn kept(ords: &[u32], kth: u64, idx: &mut [u32]) -> usize {
    let mut got = 0;
    for (j, &o) in ords.iter().enumerate() {
        idx[got] = j as u32;
        got = got.wrapping_add(usize::from(order_key(o, j) >= kth));
    }
    got
}

/// [`candidates`] with AVX2 compares over 8 ords at a time: most groups hold no candidate
/// (at most [`TOPK_CANDIDATES`] of `d_sae`), so only set mask bits cost scalar work.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn candidates_avx2(ords: &[u32], lo: u32, hi: u32, keys: &mut [u64], cand: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    // Unsigned order through signed compares: flip the sign bit of both sides.
    let flip = _mm256_set1_epi32(i32::MIN);
    let lo_s = _mm256_xor_si256(_mm256_set1_epi32(lo as i32), flip);
    let hi_s = _mm256_xor_si256(_mm256_set1_epi32(hi as i32), flip);
    let groups = ords.len() / 8;
    let mut nc = 0;
    for g in 0..groups {
        let base = g * 8;
        // SAFETY: `base + 8 <= ords.len()`; unaligned load.
        let v = unsafe { _mm256_loadu_si256(ords.as_ptr().add(base).cast()) };
        let v_s = _mm256_xor_si256(v, flip);
        let below_lo = _mm256_cmpgt_epi32(lo_s, v_s);
        let below_hi = _mm256_cmpgt_epi32(hi_s, v_s);
        let inside = _mm256_andnot_si256(below_lo, below_hi);
        let bits = _mm256_movemask_ps(_mm256_castsi256_ps(inside)) as u32;
        // Branch-free (a loop over set bits mispredicted on the random mask counts).
        nc = compact_lanes(bits, base, cand, nc);
    }
    for (o, &j) in keys.iter_mut().zip(&cand[..nc]) {
        *o = order_key(ords[j as usize], j as usize);
    }
    for (j, &o) in ords.iter().enumerate().skip(groups * 8) {
        if o >= lo && o < hi {
            keys[nc] = order_key(o, j);
            nc += 1;
        }
    }
    nc
}

/// [`kept`] with AVX2 compares over 8 ords at a time; the index order is kept (bits are
/// taken lowest first, groups in order).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn kept_avx2(ords: &[u32], kth: u64, idx: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    // key(o, j) >= kth  <=>  o > ko, or o == ko and j <= kj (see `order_key`).
    let ko = (kth >> 32) as u32;
    let kj = !(kth as u32) as usize;
    let flip = _mm256_set1_epi32(i32::MIN);
    let ko_v = _mm256_set1_epi32(ko as i32);
    let ko_s = _mm256_xor_si256(ko_v, flip);
    let groups = ords.len() / 8;
    let mut got = 0;
    for g in 0..groups {
        let base = g * 8;
        // SAFETY: `base + 8 <= ords.len()`; unaligned load.
        let v = unsafe { _mm256_loadu_si256(ords.as_ptr().add(base).cast()) };
        let above = _mm256_cmpgt_epi32(_mm256_xor_si256(v, flip), ko_s);
        let equal = _mm256_cmpeq_epi32(v, ko_v);
        let mut bits = _mm256_movemask_ps(_mm256_castsi256_ps(above)) as u32;
        let mut ties = _mm256_movemask_ps(_mm256_castsi256_ps(equal)) as u32;
        while ties != 0 {
            let t = ties.trailing_zeros();
            if base + t as usize <= kj {
                bits |= 1 << t;
            }
            ties &= ties - 1;
        }
        got = compact_lanes(bits, base, idx, got);
    }
    for (j, &o) in ords.iter().enumerate().skip(groups * 8) {
        if order_key(o, j) >= kth {
            idx[got] = j as u32;
            got += 1;
        }
    }
    got
}

/// Appends `base + l` for each set bit `l` of the 8-bit `bits` to `out` at `at`, in ascending
/// order; returns the new length. Branch-free: the set lanes are moved to the front by a table
/// permutation and all 8 are stored (`out` needs [`SPARE`] slots past the final length).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn compact_lanes(bits: u32, base: usize, out: &mut [u32], at: usize) -> usize {
    use std::arch::x86_64::*;
    assert!(at + 8 <= out.len() && bits < 256);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // SAFETY: COMPACT rows hold 8 u32; the store writes out[at..at + 8], asserted above.
    unsafe {
        let perm = _mm256_loadu_si256(COMPACT[bits as usize].as_ptr().cast());
        let j = _mm256_add_epi32(
            _mm256_permutevar8x32_epi32(lanes, perm),
            _mm256_set1_epi32(base as i32),
        );
        _mm256_storeu_si256(out.as_mut_ptr().add(at).cast(), j);
    }
    at + bits.count_ones() as usize
}

/// `cand` grown to hold `n` candidate indices and the compaction's spare slots.
fn idx_scratch_for(cand: &mut Vec<u32>, n: usize) -> &mut [u32] {
    if cand.len() < n + SPARE {
        cand.resize(n + SPARE, 0);
    }
    cand
}

/// Spare slots past the last kept index or candidate key: the branch-free compactions write
/// whole 8-lane groups.
const SPARE: usize = 8;

/// For each 8-bit mask, its set bit positions in ascending order (then zeros).
static COMPACT: [[u32; 8]; 256] = {
    let mut t = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut n, mut l) = (0, 0);
        while l < 8 {
            if m & (1 << l) != 0 {
                t[m][n] = l as u32;
                n += 1;
            }
            l += 1;
        }
        m += 1;
    }
    t
};

/// Per-window values kept between the encode and the rest.
#[derive(Clone, Copy, Debug, Default)]
struct WindowStats {
    mean: f32,
    scale: f32,
    /// int8 activation scale (0 for f32 models).
    sx: f32,
}

/// One thread's buffers for the batched path, grown on first use and reused after. Holds a
/// decoded copy of the last model seen by [`denoise_batched_into`].
#[derive(Clone, Debug)]
pub struct BatchScratch {
    batch: usize,
    model: Option<BatchModel>,
    ola_w: Vec<f32>,
    /// (hop, taper) `ola_w` was computed for.
    ola_for: (usize, OlaShape),
    win: Vec<f32>,
    xn: Vec<f32>,
    a: Vec<f32>,
    /// `a` in the encoder kernel's row-block layout.
    packed_a: Vec<f32>,
    c: Vec<f32>,
    y: Vec<f32>,
    stats: Vec<WindowStats>,
    /// Mean and scale of each window (z-score normalisations).
    zs: Vec<(f32, f32)>,
    keys: Vec<u64>,
    ords: Vec<u32>,
    /// (decoder row offset, decode coefficient) of the kept latents of one window.
    coef: Vec<(usize, f32)>,
    /// The front end's output and scratch for one window (empty without a front end).
    front: Vec<f32>,
    /// The previous window's TopK threshold, where the next search starts.
    hint: Option<u32>,
    topk: Vec<u32>,
    /// Candidate indices of the TopK search.
    cand: Vec<u32>,
}

impl Default for BatchScratch {
    fn default() -> Self {
        Self::with_batch(DEFAULT_BATCH)
    }
}

impl BatchScratch {
    /// Buffers for `batch` windows per matrix product (at least 1).
    pub fn with_batch(batch: usize) -> Self {
        Self {
            batch: batch.max(1),
            model: None,
            ola_w: Vec::new(),
            ola_for: (0, OlaShape::Hann),
            win: Vec::new(),
            xn: Vec::new(),
            a: Vec::new(),
            packed_a: Vec::new(),
            c: Vec::new(),
            y: Vec::new(),
            stats: Vec::new(),
            zs: Vec::new(),
            keys: Vec::new(),
            ords: Vec::new(),
            coef: Vec::new(),
            front: Vec::new(),
            hint: None,
            topk: Vec::new(),
            cand: Vec::new(),
        }
    }

    /// Windows per matrix product.
    pub const fn batch(&self) -> usize {
        self.batch
    }

    fn size_for(&mut self, m: &BatchModel, hop: usize) -> Result<(), CoreError> {
        let SaeConfig { d_in, d_sae, k, .. } = m.config;
        let b = self.batch;
        if self.ola_w.len() != d_in || self.ola_for != (hop, m.ola) {
            self.ola_w.resize(d_in, 0.0);
            ola_window_shape_into(hop, m.ola, &mut self.ola_w)?;
            self.ola_for = (hop, m.ola);
        }
        self.win.resize(b * d_in, 0.0);
        self.xn.resize(b * d_in, 0.0);
        self.a.resize(b * d_in, 0.0);
        self.packed_a.resize(m.enc.packed_a_len(b), 0.0);
        self.c.resize(b * d_sae, 0.0);
        self.y.resize(d_in, 0.0);
        self.stats.resize(b, WindowStats::default());
        self.zs.resize(b, (0.0, 1.0));
        self.topk.resize(k + SPARE, 0);
        self.keys.reserve(d_sae);
        self.ords.reserve(d_sae);
        self.coef.resize(k, (0, 0.0));
        // g, then two layer outputs and the padded input of `front_by_products`.
        let front = m.front.as_ref().map_or(0, |(f, _)| {
            d_in + front_scratch_len(f.width, f.kernel, d_in)
        });
        self.front.resize(front, 0.0);
        Ok(())
    }
}

/// [`crate::core::denoise_offline_into`] computed by the batched path: same model, hop, input
/// and output, with a [`BatchScratch`] in place of the core's `work` and `topk` buffers. The
/// scratch decodes the model's weights on first use and keeps them while later calls pass
/// the same weights (checked value by value, ~2 x `d_in * d_sae` comparisons, small next to
/// one channel's denoising); callers with many short signals can hold a [`BatchModel`] and
/// call [`BatchModel::denoise_into`] instead.
pub fn denoise_batched_into(
    sae: &Sae<'_>,
    hop: usize,
    x: &[f32],
    out: &mut [f32],
    scratch: &mut BatchScratch,
) -> Result<FaultCounts, CoreError> {
    let model = match scratch.model.take() {
        Some(m) if m.matches(sae) => m,
        _ => BatchModel::new(sae),
    };
    let r = model.denoise_into(hop, x, out, scratch);
    scratch.model = Some(model);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 tiles (32 samples) and the AVX2 tiles (16) sum the same terms in the same
    /// order per sample, fused: the same bits, at lengths with both kernels' tails. Runs
    /// where the CPU has AVX-512F (elsewhere the AVX2 kernel is the only fused one).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn wide_conv_tiles_give_the_fused_tiles_bits() {
        if encode::vector_isa() != VectorIsa::Avx512 {
            eprintln!("no AVX-512F here: the wide tiles are not run");
            return;
        }
        let mut r = crate::rng::Rng::new(3);
        for (cin, cout, k, d) in [
            (1, 8, 3, 256),
            (8, 8, 3, 256),
            (8, 1, 1, 256),
            (5, 6, 5, 77),
            (1, 12, 3, 256),
            (12, 12, 3, 256),
            (12, 1, 1, 256),
            (3, 29, 3, 70),
        ] {
            let layer = FrontLayer::new(
                (0..cout * cin * k).map(|_| r.normal() as f32).collect(),
                (0..cout).map(|_| r.normal() as f32).collect(),
                (cin, cout, k),
            );
            let xp: Vec<f32> = (0..cin * (d + k - 1)).map(|_| r.normal() as f32).collect();
            let (mut a, mut b) = (vec![0.0f32; cout * d], vec![1.0f32; cout * d]);
            let plain = Rows { stride: d, off: 0 };
            // The same rows written 2 floats apart and 1 in, as into the next layer's padding.
            let padded = Rows {
                stride: d + 2,
                off: 1,
            };
            let mut c = vec![0.0f32; cout * (d + 2)];
            // SAFETY: AVX-512F (and with it AVX2 and FMA) checked above.
            unsafe {
                conv_fma(&layer, &xp, &mut a, plain, d, true);
                conv_avx512(&layer, &xp, &mut b, plain, d, true);
                conv_avx512(&layer, &xp, &mut c, padded, d, true);
            }
            let same = a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits());
            assert!(same, "cin {cin} cout {cout} k {k} d {d}");
            for (row_a, row_c) in a.chunks_exact(d).zip(c.chunks_exact(d + 2)) {
                assert_eq!((row_c[0], row_c[d + 1]), (0.0, 0.0), "padding written");
                let same = row_a
                    .iter()
                    .zip(&row_c[1..=d])
                    .all(|(u, v)| u.to_bits() == v.to_bits());
                assert!(same, "padded rows: cin {cin} cout {cout} k {k} d {d}");
            }
        }
    }

    /// The AVX-512 per-window finish (whole-window decode blocks) gives the AVX2 finish's
    /// output bit for bit on the default model (front, linear path, gate).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_windows_give_the_avx2_bits() {
        if encode::vector_isa() != VectorIsa::Avx512 {
            eprintln!("no AVX-512F here: the AVX-512 kernels are not run");
            return;
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join("fast-256hz.safetensors");
        let bytes = std::fs::read(path).unwrap();
        let view = crate::model::ModelView::parse(&bytes).unwrap();
        let model = BatchModel::new(&view.sae());
        let mut r = crate::rng::Rng::new(11);
        // EEG-like noise, a blink-sized slow wave and a pop: windows on both sides of the gate.
        let x: Vec<f32> = (0..3000)
            .map(|i| {
                let t = i as f32 / 256.0;
                20.0 * r.normal() as f32
                    + 150.0 * (-((t - 4.0) / 0.15).powi(2)).exp()
                    + if (2000..2100).contains(&i) {
                        300.0
                    } else {
                        0.0
                    }
            })
            .collect();
        let mut s = BatchScratch::default();
        let (mut a, mut b) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        model
            .denoise_on(VectorIsa::Avx2Fma, 32, &x, &mut a, &mut s)
            .unwrap();
        model
            .denoise_on(VectorIsa::Avx512, 32, &x, &mut b, &mut s)
            .unwrap();
        let differ = a
            .iter()
            .zip(&b)
            .filter(|(u, v)| u.to_bits() != v.to_bits())
            .count();
        assert_eq!(differ, 0, "of {} samples", x.len());
        assert!(
            a.iter().zip(&x).any(|(y, x)| (y - x).abs() > 1.0),
            "the model changed nothing"
        );
    }

    #[test]
    fn order_key_follows_the_core_rule() {
        // Larger value first; equal values (including -0.0 vs 0.0): lower index first.
        let key = |v: f32, j| order_key(order_u32(v), j);
        assert!(key(2.0, 5) > key(1.0, 0));
        assert!(key(1.0, 0) > key(1.0, 1));
        assert!(key(0.0, 3) > key(-0.0, 4));
        assert!(key(-0.0, 3) > key(0.0, 4));
        assert!(key(-1.0, 0) > key(-2.0, 0));
        assert!(key(-1e-30, 0) < key(0.0, 9));
        assert!(key(f32::INFINITY, 9) > key(f32::MAX, 0));
        assert!(order_u32(f32::INFINITY) < u32::MAX);
    }

    #[test]
    fn selection_equals_core_topk_including_ties_and_nan() {
        let mut r = crate::rng::Rng::new(7);
        let (mut keys, mut ords, mut cand) = (Vec::new(), Vec::new(), Vec::new());
        // One hint carried across trials, as across windows: any start must give the same set.
        let mut hint = None;
        for trial in 0..300 {
            let n = 1 + trial % 70;
            // Few distinct values, so ties are common; some signed zeros.
            let mut v: Vec<f32> = (0..n)
                .map(|_| ((r.normal() * 2.0).round() as f32) * 0.5)
                .collect();
            if trial % 7 == 0 {
                v[0] = -0.0;
            }
            if trial % 11 == 0 {
                v[n / 2] = f32::NAN;
            }
            for k in [1, n / 3 + 1, n] {
                let mut want = vec![0usize; k];
                let kw = crate::core::topk_into(&v, &mut want);
                want.truncate(kw);
                want.sort_unstable();
                let mut got = vec![0u32; k + SPARE];
                let kg = select_topk(&v, k, &mut ords, &mut keys, &mut cand, &mut got, &mut hint);
                let got: Vec<usize> = got[..kg].iter().map(|&j| j as usize).collect();
                assert_eq!(got, want, "values {v:?} k {k}");
            }
        }
        // Continuous values of a model's size: slowly drifting (the hint is close) and
        // unrelated (the hint is far), so the bracket search runs in both directions.
        let mut v: Vec<f32> = (0..1024).map(|_| r.normal() as f32).collect();
        for trial in 0..200 {
            if trial % 10 == 0 {
                let shift = (r.normal() * 3.0) as f32;
                v.iter_mut().for_each(|x| *x = r.normal() as f32 + shift);
            } else {
                v.iter_mut().for_each(|x| *x += (r.normal() * 0.01) as f32);
            }
            let k = [1, 64, 128, 1023, 1024][trial % 5];
            let mut want = vec![0usize; k];
            crate::core::topk_into(&v, &mut want);
            want.sort_unstable();
            let mut got = vec![0u32; k + SPARE];
            let kg = select_topk(&v, k, &mut ords, &mut keys, &mut cand, &mut got, &mut hint);
            let got: Vec<usize> = got[..kg].iter().map(|&j| j as usize).collect();
            assert_eq!(got, want, "trial {trial} k {k}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_compaction_equals_the_scalar_loops() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut r = crate::rng::Rng::new(11);
        for trial in 0..400 {
            let n = 1 + trial % 45;
            // Few distinct ords (ties), around the sign flip and the extremes.
            let pick = [
                0u32,
                1,
                0x7fff_ffff,
                0x8000_0000,
                0x8000_0001,
                u32::MAX - 1,
                5,
                9,
            ];
            let ords: Vec<u32> = (0..n)
                .map(|_| pick[(r.next_u64() % pick.len() as u64) as usize])
                .collect();
            let (lo, hi) = (pick[trial % 8], pick[(trial / 8) % 8]);
            let (mut a, mut b) = (vec![0u64; n + SPARE], vec![0u64; n + SPARE]);
            let na = candidates(&ords, lo, hi, &mut a);
            // SAFETY: AVX2 support was detected above.
            let nb = unsafe { candidates_avx2(&ords, lo, hi, &mut b, &mut vec![0; n + SPARE]) };
            assert_eq!(&a[..na], &b[..nb], "ords {ords:?} [{lo}, {hi})");
            let j = trial % n;
            let kth = order_key(ords[j], j);
            let (mut a, mut b) = (vec![0u32; n + SPARE], vec![0u32; n + SPARE]);
            let ka = kept(&ords, kth, &mut a);
            // SAFETY: as above.
            let kb = unsafe { kept_avx2(&ords, kth, &mut b) };
            assert_eq!(&a[..ka], &b[..kb], "ords {ords:?} kth of {j}");
            assert!(ka >= 1 && a[..ka].contains(&(j as u32)));
        }
    }

    /// The lane-sum gate decides as the core's sequential one, at gates placed at and around
    /// each window's own ratio (where the two sums' roundings could disagree).
    #[test]
    fn gate_decision_equals_the_core_on_borderline_windows() {
        let mut r = crate::rng::Rng::new(5);
        let taps = [0u8; 12];
        let (mut checked, mut opened) = (0, 0);
        for case in 0..400 {
            let n = [2usize, 15, 16, 17, 31, 256, 257][case % 7];
            let smooth = (case % 5) as f64 * 0.2;
            let mut prev = 0.0;
            let x: Vec<f32> = (0..n)
                .map(|_| {
                    prev = smooth * prev + r.normal();
                    prev as f32
                })
                .collect();
            let (mut e, mut d) = (0.0f64, 0.0f64);
            for i in 0..n {
                e += f64::from(x[i]).powi(2);
                if i > 0 {
                    d += f64::from(x[i] - x[i - 1]).powi(2);
                }
            }
            let ratio = (d / e) as f32;
            let mut g = ratio;
            for _ in 0..40 {
                g = f32::from_bits(g.to_bits() - 1);
            }
            for _ in 0..81 {
                let core = Skip {
                    taps: &taps,
                    gate: g,
                }
                .opens(&x);
                assert_eq!(
                    gate_opens(&taps, g, &x),
                    core,
                    "n {n} gate {g} ratio {ratio}"
                );
                checked += 1;
                opened += usize::from(core);
                g = f32::from_bits(g.to_bits() + 1);
            }
            for g in [0.0, ratio * 0.5, ratio * 2.0, f32::INFINITY, f32::NAN] {
                let core = Skip {
                    taps: &taps,
                    gate: g,
                }
                .opens(&x);
                assert_eq!(gate_opens(&taps, g, &x), core, "n {n} gate {g}");
            }
        }
        // Both outcomes occur among the borderline gates.
        assert!(
            opened > checked / 4 && opened < checked * 3 / 4,
            "{opened} of {checked}"
        );
    }

    /// The eight-row statistics are the core's, bit for bit (rows of every remainder,
    /// constant and all-zero rows included).
    #[test]
    fn zscore_rows_equal_the_core() {
        let mut r = crate::rng::Rng::new(3);
        for (rows, d_in) in [(1usize, 256usize), (8, 256), (13, 256), (17, 5), (16, 1)] {
            let mut win: Vec<f32> = (0..rows * d_in)
                .map(|_| (r.normal() * 30.0 + 5.0) as f32)
                .collect();
            win[..d_in].fill(0.1);
            if rows > 2 {
                win[d_in..2 * d_in].fill(-0.0);
            }
            let mut got = vec![(0.0, 0.0); rows];
            zscore_stats_rows(&win, d_in, &mut got);
            for (w, g) in win.chunks_exact(d_in).zip(&got) {
                let want = zscore_stats(w);
                assert_eq!(
                    (g.0.to_bits(), g.1.to_bits()),
                    (want.0.to_bits(), want.1.to_bits())
                );
            }
        }
    }

    #[test]
    fn int8_qmax_is_the_core_bound() {
        assert_eq!(int8_qmax(256), 32767.0);
        assert_eq!(int8_qmax(1024), 16383.0);
    }
}
