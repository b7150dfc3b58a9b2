//! The host training step of N TopK SAEs ([`crate::train::trainer::GradPath::Sparse`]): the
//! two dense products (encoder, MFR cosine matrices) by the `gemm` crate that burn-flex itself
//! uses, and everything else (TopK, decode, MSE or relative loss, AuxK, MFR matching, and the
//! gradients of all of it) touching only the k selected latents of each window and the matched
//! atoms of each dictionary pair.
//!
//! Why: with k of d_sae latents active, autodiff on dense `[N, B, d_sae]` tensors spends most of
//! a step on zeros: the decoder product, its two backward products and the encoder's weight
//! gradient are each a `B x d_sae x d_in` gemm, while the non-zero work is `B x k x d_in`
//! (32x less for k 16 of 512), and the elementwise passes over the dense latents add as much
//! again. OpenAI's TopK SAE trainer uses sparse decoder kernels for the same reason.
//!
//! Burn's autodiff on the dense formulation also spent most of its time outside the matmuls
//! (copies, element-wise passes, the `[P, d_sae, d_sae]` argmax); doing the step on the host
//! removes those too.
//!
//! The gradients are the analytic ones of the autodiff formulation in [`crate::train::sae`],
//! [`crate::train::auxk`] and [`crate::train::loss::mfr`] (the parity tests compare the two
//! paths, step by step, on every backend). The work is split by SAE (and by pair for MFR)
//! across threads; each sum runs in a fixed order, so results do not depend on the thread
//! count.

use super::config::MmcsKind;
use super::hungarian::assign_max;
use super::topk::topk_row;
use rayon::prelude::*;

/// `c[m, n] = a[m, k] * b[k, n]` with explicit row/column strides for `a` and `b` (`c`
/// row-major), by the `gemm` crate.
#[allow(clippy::too_many_arguments)]
fn matmul(
    c: &mut [f32],
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    m: usize,
    n: usize,
    k: usize,
) {
    assert!(c.len() >= m * n, "gemm: output too small");
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(m == 0 || k == 0 || last(a_rs, a_cs, m, k) < a.len(), "gemm: lhs out of bounds");
    assert!(k == 0 || n == 0 || last(b_rs, b_cs, k, n) < b.len(), "gemm: rhs out of bounds");
    // SAFETY: the asserts above keep every strided access of `a`, `b` and `c` in bounds, and
    // `c` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// AuxK inputs (see [`crate::train::auxk`]).
#[derive(Clone, Copy, Debug)]
pub struct AuxkIn<'a> {
    /// Dead flags `[N * d_sae]`.
    pub dead: &'a [bool],
    /// Dead latents used per window.
    pub k_aux: usize,
    /// Weight of the AuxK loss in the objective.
    pub alpha: f64,
}

/// Inputs of [`step`]. All slices are row-major host copies.
#[derive(Clone, Copy, Debug)]
pub struct StepIn<'a> {
    /// Number of SAEs.
    pub n: usize,
    /// Window length.
    pub d_in: usize,
    /// Latents per SAE.
    pub d_sae: usize,
    /// Latents kept per window.
    pub k: usize,
    /// Inputs `[B, d_in]`.
    pub x: &'a [f32],
    /// Targets `[B, d_in]`.
    pub t: &'a [f32],
    /// Encoders `[N, d_in, d_sae]`.
    pub w_enc: &'a [f32],
    /// Encoder biases `[N, d_sae]`.
    pub b_enc: &'a [f32],
    /// Decoders actually used `[N, d_sae, d_in]`.
    pub dec: &'a [f32],
    /// Decoder biases `[N, d_in]`.
    pub b_dec: &'a [f32],
    /// `topk_signed` (kept values not ReLU'd).
    pub signed: bool,
    /// `Some(eps)`: the relative loss with this epsilon; `None`: plain MSE.
    pub relative_eps: Option<f64>,
    /// AuxK, when some latent is dead and its weight is positive.
    pub auxk: Option<AuxkIn<'a>>,
}

/// What [`step`] returns: values of the loss terms and their gradients.
#[derive(Clone, Debug, Default)]
pub struct StepOut {
    /// Pre-activations `[N, B, d_sae]`: `(x - b_dec) W_enc + b_enc`.
    pub pre: Vec<f32>,
    /// Selected latents `[N, B, k]`, in increasing index order per window.
    pub idx: Vec<u32>,
    /// Reconstructions `[N, B, d_in]`.
    pub x_hat: Vec<f32>,
    /// Per-SAE reconstruction loss `[N]` (MSE or relative MSE).
    pub loss: Vec<f32>,
    /// Per-SAE AuxK loss `[N]`, when AuxK ran.
    pub auxk: Option<Vec<f32>>,
    /// Gradient of the objective w.r.t. `w_enc`, `[N, d_in, d_sae]` (direct use only).
    pub g_w_enc: Vec<f32>,
    /// W.r.t. `b_enc`, `[N, d_sae]`.
    pub g_b_enc: Vec<f32>,
    /// W.r.t. `b_dec`, `[N, d_in]`.
    pub g_b_dec: Vec<f32>,
    /// W.r.t. the decoder used, `[N, d_sae, d_in]` (chain it to the parameters for tied SAEs).
    pub g_dec: Vec<f32>,
}

/// One SAE's gradient accumulators; the encoder's by latent row (`[d_sae, d_in]`), the others
/// in place in the outputs.
struct Grads<'a> {
    g_enc_t: Vec<f32>,
    g_b_enc: &'a mut [f32],
    g_b_dec: &'a mut [f32],
    g_dec: &'a mut [f32],
}

/// One SAE's slices of [`StepOut`].
struct SaeOut<'a> {
    pre: &'a mut [f32],
    idx: &'a mut [u32],
    x_hat: &'a mut [f32],
    g_w_enc: &'a mut [f32],
    grads: Grads<'a>,
}

/// `dst[c, r] = src[r, c]` for a row-major `[rows, cols]` `src`, in column tiles that keep the
/// written rows in cache.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 16;
    for c0 in (0..cols).step_by(T) {
        let c1 = (c0 + T).min(cols);
        for (r, row) in src.chunks_exact(cols).enumerate() {
            for (c, &v) in (c0..c1).zip(&row[c0..c1]) {
                dst[c * rows + r] = v;
            }
        }
    }
}

#[inline]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums: lets the compiler vectorise without reassociating a single chain.
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Loss terms and gradients of one step (see the module docs).
pub fn step(inp: &StepIn<'_>) -> StepOut {
    let (n, di, ds) = (inp.n, inp.d_in, inp.d_sae);
    let b = inp.x.len() / di;
    let k = inp.k.min(ds);
    let mut out = StepOut {
        pre: vec![0f32; n * b * ds],
        idx: vec![0u32; n * b * k],
        x_hat: vec![0f32; n * b * di],
        g_w_enc: vec![0f32; n * di * ds],
        g_b_enc: vec![0f32; n * ds],
        g_b_dec: vec![0f32; n * di],
        g_dec: vec![0f32; n * ds * di],
        ..Default::default()
    };
    let losses: Vec<(f32, f32)> = out
        .pre
        .par_chunks_mut(b * ds)
        .zip(out.idx.par_chunks_mut(b * k))
        .zip(out.x_hat.par_chunks_mut(b * di))
        .zip(out.g_w_enc.par_chunks_mut(di * ds))
        .zip(out.g_b_enc.par_chunks_mut(ds))
        .zip(out.g_b_dec.par_chunks_mut(di))
        .zip(out.g_dec.par_chunks_mut(ds * di))
        .enumerate()
        .map(|(s, ((((((pre, idx), x_hat), g_w_enc), g_b_enc), g_b_dec), g_dec))| {
            let o = SaeOut {
                pre,
                idx,
                x_hat,
                g_w_enc,
                grads: Grads {
                    g_enc_t: vec![0f32; ds * di],
                    g_b_enc,
                    g_b_dec,
                    g_dec,
                },
            };
            one_sae(inp, s, o)
        })
        .collect();
    out.loss = losses.iter().map(|l| l.0).collect();
    out.auxk = inp.auxk.map(|_| losses.iter().map(|l| l.1).collect());
    out
}

/// Back-propagates an upstream gradient `g` on a decoded sum `sum_j act(pre_j) dec_j` through
/// the selected latents `sel` of one window.
#[allow(clippy::too_many_arguments)]
fn backprop_latents(
    g: &[f32],
    sel: &[u32],
    pre: &[f32],
    signed: bool,
    dec: &[f32],
    xc: &[f32],
    acc: &mut Grads<'_>,
) {
    let di = g.len();
    for &j in sel {
        let j = j as usize;
        let p = pre[j];
        let a = if signed { p } else { p.max(0.0) };
        let row = &dec[j * di..(j + 1) * di];
        if a != 0.0 {
            axpy(a, g, &mut acc.g_dec[j * di..(j + 1) * di]);
        }
        if !signed && p <= 0.0 {
            continue;
        }
        let gp = dot(g, row);
        // b_enc's gradient is the sum of gp over windows; b_dec's share through the encoder
        // (`-W_enc gp`, summed) is taken from it once at the end.
        acc.g_b_enc[j] += gp;
        axpy(gp, xc, &mut acc.g_enc_t[j * di..(j + 1) * di]);
    }
}

/// Loss and AuxK loss of SAE `s`; everything else goes into `o`.
fn one_sae(inp: &StepIn<'_>, s: usize, mut o: SaeOut<'_>) -> (f32, f32) {
    let (di, ds) = (inp.d_in, inp.d_sae);
    let b = inp.x.len() / di;
    let k = inp.k.min(ds);
    let dec = &inp.dec[s * ds * di..(s + 1) * ds * di];
    let b_dec = &inp.b_dec[s * di..(s + 1) * di];
    let w_enc = &inp.w_enc[s * di * ds..(s + 1) * di * ds];
    // The dense part: pre = (x - b_dec) W_enc + b_enc.
    let xc_all: Vec<f32> = inp
        .x
        .chunks_exact(di)
        .flat_map(|row| row.iter().zip(b_dec).map(|(&x, &c)| x - c))
        .collect();
    matmul(o.pre, &xc_all, (di, 1), w_enc, (ds, 1), b, ds, di);
    let b_enc = &inp.b_enc[s * ds..(s + 1) * ds];
    for row in o.pre.chunks_exact_mut(ds) {
        for (p, &c) in row.iter_mut().zip(b_enc) {
            *p += c;
        }
    }
    let pre: &[f32] = o.pre;
    let act = |p: f32| if inp.signed { p } else { p.max(0.0) };
    let mut idx: Vec<u32> = Vec::with_capacity(b * k);
    let mut buf = Vec::with_capacity(ds);
    // Forward and the loss's upstream gradient (kept per window in `g`).
    let mut g = vec![0f32; b * di];
    let mut loss = 0f64;
    let scale = 1.0 / (b * di) as f32;
    for w in 0..b {
        let pw = &pre[w * ds..(w + 1) * ds];
        let start = idx.len();
        topk_row(pw, None, k, &mut buf, &mut idx);
        let xh = &mut o.x_hat[w * di..(w + 1) * di];
        xh.copy_from_slice(b_dec);
        for &j in &idx[start..] {
            let a = act(pw[j as usize]);
            if a != 0.0 {
                axpy(a, &dec[j as usize * di..(j as usize + 1) * di], xh);
            }
        }
        let tw = &inp.t[w * di..(w + 1) * di];
        let weight = match inp.relative_eps {
            Some(eps) => 1.0 / (tw.iter().map(|v| v * v).sum::<f32>() / di as f32 + eps as f32),
            None => 1.0,
        };
        let gw = &mut g[w * di..(w + 1) * di];
        let mut se = 0f32;
        for ((gv, &h), &tv) in gw.iter_mut().zip(xh.iter()).zip(tw) {
            let e = h - tv;
            se += e * e;
            *gv = 2.0 * weight * e * scale;
        }
        loss += (se * weight) as f64;
    }
    let loss = (loss / (b * di) as f64) as f32;
    for w in 0..b {
        let xc = &xc_all[w * di..(w + 1) * di];
        let gw = &g[w * di..(w + 1) * di];
        for (a, &v) in o.grads.g_b_dec.iter_mut().zip(gw) {
            *a += v;
        }
        backprop_latents(
            gw,
            &idx[w * k..(w + 1) * k],
            &pre[w * ds..(w + 1) * ds],
            inp.signed,
            dec,
            xc,
            &mut o.grads,
        );
    }
    let aux_loss = match inp.auxk {
        Some(aux) => {
            let ctx = AuxCtx {
                pre,
                dec,
                xc_all: &xc_all,
                x_hat: o.x_hat,
            };
            auxk(inp, s, aux, &ctx, &mut buf, &mut o.grads)
        }
        None => 0.0,
    };
    o.idx.copy_from_slice(&idx);
    transpose(&o.grads.g_enc_t, ds, di, o.g_w_enc);
    // pre = x W_enc - b_dec W_enc + b_enc, so b_dec gets -W_enc times b_enc's gradient.
    for (gb, row) in o.grads.g_b_dec.iter_mut().zip(w_enc.chunks_exact(ds)) {
        *gb -= dot(row, o.grads.g_b_enc);
    }
    (loss, aux_loss)
}

/// What AuxK reads of one SAE's step.
struct AuxCtx<'a> {
    pre: &'a [f32],
    dec: &'a [f32],
    xc_all: &'a [f32],
    x_hat: &'a [f32],
}

/// AuxK for SAE `s`: the top `k_aux` dead latents reconstruct the (detached) residual.
#[allow(clippy::too_many_arguments)]
fn auxk(
    inp: &StepIn<'_>,
    s: usize,
    aux: AuxkIn<'_>,
    ctx: &AuxCtx<'_>,
    buf: &mut Vec<u32>,
    grads: &mut Grads<'_>,
) -> f32 {
    let AuxCtx {
        pre,
        dec,
        xc_all,
        x_hat,
    } = *ctx;
    let (di, ds) = (inp.d_in, inp.d_sae);
    let b = inp.x.len() / di;
    let dead = &aux.dead[s * ds..(s + 1) * ds];
    let k_aux = aux.k_aux.clamp(1, ds);
    let n_dead = dead.iter().filter(|&&d| d).count();
    let weight = (n_dead as f32 / k_aux as f32).min(1.0);
    let act = |p: f32| if inp.signed { p } else { p.max(0.0) };
    // e = t - x_hat (no gradient), e_hat from the dead latents; diff = e_hat - e.
    let mut diff = vec![0f32; b * di];
    let mut sel_all: Vec<u32> = Vec::new();
    let mut bounds = Vec::with_capacity(b + 1);
    bounds.push(0);
    let (mut num, mut den) = (0f32, 0f32);
    for w in 0..b {
        let pw = &pre[w * ds..(w + 1) * ds];
        let start = sel_all.len();
        topk_row(pw, Some(dead), k_aux, buf, &mut sel_all);
        bounds.push(sel_all.len());
        let dw = &mut diff[w * di..(w + 1) * di];
        for &j in &sel_all[start..] {
            let a = act(pw[j as usize]);
            if a != 0.0 {
                axpy(a, &dec[j as usize * di..(j as usize + 1) * di], dw);
            }
        }
        let tw = &inp.t[w * di..(w + 1) * di];
        let xh = &x_hat[w * di..(w + 1) * di];
        for ((d, &tv), &h) in dw.iter_mut().zip(tw).zip(xh) {
            let e = tv - h;
            den += e * e;
            *d -= e;
            num += *d * *d;
        }
    }
    let den = den + 1e-30;
    let loss = num / den * weight;
    if n_dead == 0 {
        return loss;
    }
    let c = (aux.alpha as f32) * weight * 2.0 / den;
    let mut gw = vec![0f32; di];
    for w in 0..b {
        let xc = &xc_all[w * di..(w + 1) * di];
        for (o, &d) in gw.iter_mut().zip(&diff[w * di..(w + 1) * di]) {
            *o = c * d;
        }
        let sel = &sel_all[bounds[w]..bounds[w + 1]];
        backprop_latents(
            &gw,
            sel,
            &pre[w * ds..(w + 1) * ds],
            inp.signed,
            dec,
            xc,
            grads,
        );
    }
    loss
}

/// Rows of `m` (`[rows, dim]`) scaled to unit norm as [`crate::train::sae::normalize_rows`]
/// does (`x / sqrt(|x|^2 + 1e-12)`); returns the rows and the norms used.
pub fn normalize_rows_host(m: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let mut out = m.to_vec();
    let mut norms = Vec::with_capacity(m.len() / dim.max(1));
    for row in out.chunks_exact_mut(dim) {
        let n = (dot(row, row) + 1e-12).sqrt();
        for v in row.iter_mut() {
            *v /= n;
        }
        norms.push(n);
    }
    (out, norms)
}

/// Adds to `g_x` the gradient through `u = x / n` (rows of `[rows, dim]`, `u` the unit rows,
/// `n` their norms) of an upstream gradient `g_u`: `(g_u - u (u . g_u)) / n`.
pub fn normalize_rows_backward(g_u: &[f32], u: &[f32], norms: &[f32], dim: usize, g_x: &mut [f32]) {
    for (((g, u), &n), out) in g_u
        .chunks_exact(dim)
        .zip(u.chunks_exact(dim))
        .zip(norms)
        .zip(g_x.chunks_exact_mut(dim))
    {
        let along = dot(g, u);
        for ((o, &gv), &uv) in out.iter_mut().zip(g).zip(u) {
            *o += (gv - uv * along) / n;
        }
    }
}

/// The MFR penalty's value and gradient on the host.
#[derive(Clone, Debug)]
pub struct MfrOut {
    /// MMCS of each pair `[P]`.
    pub mmcs: Vec<f32>,
    /// `mean_p (1 - mmcs_p)`.
    pub penalty: f32,
    /// Gradient of `weight * penalty` w.r.t. the unit-norm dictionaries `[N, d_sae, d_in]`.
    pub g_unit: Vec<f32>,
}

/// Cosine matrix `[d_sae, d_sae]` of each pair (`a`'s atoms by row, `b`'s by column).
pub fn cosines_host(unit: &[f32], pairs: &[(usize, usize)], ds: usize, di: usize) -> Vec<Vec<f32>> {
    pairs
        .par_iter()
        .map(|&(i, j)| {
            let mut c = vec![0f32; ds * ds];
            let a = &unit[i * ds * di..(i + 1) * ds * di];
            let b = &unit[j * ds * di..(j + 1) * ds * di];
            // b^T: element (r, c) of the [di, ds] operand is b[c * di + r].
            matmul(&mut c, a, (di, 1), b, (1, di), ds, ds, di);
            c
        })
        .collect()
}

/// One-to-one (Hungarian) assignment of each pair from its cosine matrix.
pub fn hungarian_host(cos: &[Vec<f32>], ds: usize) -> Vec<Vec<u32>> {
    cos.par_iter()
        .map(|c| assign_max(c, ds, ds).into_iter().map(|j| j as u32).collect())
        .collect()
}

/// Index of the first maximum (NaN never wins), like burn's `argmax`.
fn argmax(v: impl Iterator<Item = f32>) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i as u32, x);
        }
    }
    best.0
}

/// MMCS of every pair and the gradient of `weight * mean_p (1 - mmcs_p)` w.r.t. the unit
/// dictionaries `unit` (`[N, d_sae, d_in]`). `cos` are the pairs' cosine matrices; `assigned`
/// the Hungarian assignment when `kind` is [`MmcsKind::Hungarian`].
pub fn mfr_host(
    unit: &[f32],
    pairs: &[(usize, usize)],
    cos: &[Vec<f32>],
    kind: MmcsKind,
    assigned: Option<&[Vec<u32>]>,
    (n, ds, di): (usize, usize, usize),
    weight: f64,
) -> MfrOut {
    let p_count = pairs.len().max(1) as f32;
    let mut g_unit = vec![0f32; n * ds * di];
    let mut mmcs = Vec::with_capacity(pairs.len());
    let row = |s: usize, r: usize| &unit[(s * ds + r) * di..(s * ds + r + 1) * di];
    for (p, &(i, j)) in pairs.iter().enumerate() {
        let c = &cos[p];
        // (row of D_i, row of D_j, coefficient) of every matched cosine in mmcs_p.
        let mut terms: Vec<(usize, usize, f32)> = Vec::with_capacity(2 * ds);
        match kind {
            MmcsKind::Max => {
                let h = 0.5 / ds as f32;
                for r in 0..ds {
                    let best = argmax(c[r * ds..(r + 1) * ds].iter().copied());
                    terms.push((r, best as usize, h));
                }
                // Column maxima in one row-major pass (first maximum wins, like argmax).
                let (mut best_v, mut best_r) = (vec![f32::NEG_INFINITY; ds], vec![0usize; ds]);
                for (r, row) in c.chunks_exact(ds).enumerate() {
                    for ((bv, br), &v) in best_v.iter_mut().zip(best_r.iter_mut()).zip(row) {
                        if v > *bv {
                            *bv = v;
                            *br = r;
                        }
                    }
                }
                terms.extend(best_r.iter().enumerate().map(|(col, &r)| (r, col, h)));
            }
            MmcsKind::Hungarian => {
                let a = &assigned.expect("Hungarian assignment")[p];
                let h = 1.0 / ds as f32;
                terms.extend(a.iter().enumerate().map(|(r, &m)| (r, m as usize, h)));
            }
        }
        // The value through the matched rows, as the autodiff path evaluates it.
        let m: f32 = terms
            .iter()
            .map(|&(r, q, h)| h * dot(row(i, r), row(j, q)))
            .sum();
        mmcs.push(m);
        // d(weight * mean_p (1 - mmcs_p)) / d mmcs_p = -weight / P.
        let scale = -(weight as f32) / p_count;
        assert!(i < j, "MFR pairs are (i, j) with i < j");
        // D_i's gradient rows lie wholly before D_j's.
        let (gi, gj) = g_unit.split_at_mut(j * ds * di);
        let gi = &mut gi[i * ds * di..(i + 1) * ds * di];
        for &(r, q, h) in &terms {
            let f = scale * h;
            axpy(f, row(j, q), &mut gi[r * di..(r + 1) * di]);
            axpy(f, row(i, r), &mut gj[q * di..(q + 1) * di]);
        }
    }
    let penalty = mmcs.iter().map(|&m| 1.0 - m).sum::<f32>() / p_count;
    MfrOut {
        mmcs,
        penalty,
        g_unit,
    }
}
