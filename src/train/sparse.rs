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
    assert!(
        m == 0 || k == 0 || last(a_rs, a_cs, m, k) < a.len(),
        "gemm: lhs out of bounds"
    );
    assert!(
        k == 0 || n == 0 || last(b_rs, b_cs, k, n) < b.len(),
        "gemm: rhs out of bounds"
    );
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
    /// Per-window mean square `[B]` the relative loss divides by, when it is not the target's
    /// own (a residual SAE's target is a correction; its loss is relative to the clean window).
    pub energy: Option<&'a [f32]>,
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

/// `dst[c, r] = src[r, c]` for a row-major `[rows, cols]` `src`, in column tiles that keep the
/// written rows in cache.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
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

/// Dot product with eight partial sums (vectorises; the summation order is fixed).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// Latent rows per task of the gradient scatter: small enough to balance the threads, large
/// enough that each task's scan of the selections stays cheap.
const SCATTER_ROWS: usize = 64;

/// Loss terms and gradients of one step (see the module docs).
///
/// Phases: (A) per SAE, the dense encoder product; (B) per window, TopK, decode, loss and its
/// gradient; (C) per window, AuxK's forward; (D) per block of latent rows, the scatter of
/// every gradient that lands on a latent's rows (decoder, encoder, `b_enc`), each row summing
/// over windows in order; (E) per SAE, `b_dec`'s gradient and the encoder layout. Every phase
/// is parallel over independent outputs, so the result does not depend on the thread count.
pub fn step(inp: &StepIn<'_>) -> StepOut {
    let (n, di, ds) = (inp.n, inp.d_in, inp.d_sae);
    let b = inp.x.len() / di;
    let k = inp.k.min(ds);
    let act = |p: f32| if inp.signed { p } else { p.max(0.0) };
    let rows = n * b;

    // (A) xc = x - b_dec and pre = xc W_enc + b_enc, per SAE.
    let mut xc = vec![0f32; rows * di];
    let mut pre = vec![0f32; rows * ds];
    xc.par_chunks_mut(b * di)
        .zip(pre.par_chunks_mut(b * ds))
        .enumerate()
        .for_each(|(s, (xc, pre))| {
            let b_dec = &inp.b_dec[s * di..(s + 1) * di];
            for (row, x) in xc.chunks_exact_mut(di).zip(inp.x.chunks_exact(di)) {
                for ((o, &x), &c) in row.iter_mut().zip(x).zip(b_dec) {
                    *o = x - c;
                }
            }
            let w_enc = &inp.w_enc[s * di * ds..(s + 1) * di * ds];
            matmul(pre, xc, (di, 1), w_enc, (ds, 1), b, ds, di);
            let b_enc = &inp.b_enc[s * ds..(s + 1) * ds];
            for row in pre.chunks_exact_mut(ds) {
                for (p, &c) in row.iter_mut().zip(b_enc) {
                    *p += c;
                }
            }
        });

    // (B) TopK, reconstruction, loss and upstream gradient g, per window.
    let mut idx = vec![0u32; rows * k];
    let mut x_hat = vec![0f32; rows * di];
    let mut g = vec![0f32; rows * di];
    let mut se = vec![0f64; rows];
    let scale = 1.0 / (b * di) as f32;
    idx.par_chunks_mut(k.max(1))
        .zip(x_hat.par_chunks_mut(di))
        .zip(g.par_chunks_mut(di))
        .zip(se.par_iter_mut())
        .enumerate()
        .for_each_init(
            || (Vec::with_capacity(ds), Vec::with_capacity(k)),
            |(buf, sel), (r, (((idx, xh), gw), se))| {
                let (s, w) = (r / b, r % b);
                let pw = &pre[r * ds..(r + 1) * ds];
                let dec = &inp.dec[s * ds * di..(s + 1) * ds * di];
                sel.clear();
                topk_row(pw, None, k, buf, sel);
                idx.copy_from_slice(sel);
                xh.copy_from_slice(&inp.b_dec[s * di..(s + 1) * di]);
                for &j in sel.iter() {
                    let a = act(pw[j as usize]);
                    if a != 0.0 {
                        axpy(a, &dec[j as usize * di..(j as usize + 1) * di], xh);
                    }
                }
                let tw = &inp.t[w * di..(w + 1) * di];
                let weight = match inp.relative_eps {
                    Some(eps) => {
                        let e = match inp.energy {
                            Some(en) => en[w],
                            None => tw.iter().map(|v| v * v).sum::<f32>() / di as f32,
                        };
                        1.0 / (e + eps as f32)
                    }
                    None => 1.0,
                };
                let mut e2 = 0f32;
                for ((gv, &h), &tv) in gw.iter_mut().zip(xh.iter()).zip(tw) {
                    let e = h - tv;
                    e2 += e * e;
                    *gv = 2.0 * weight * e * scale;
                }
                *se = (e2 * weight) as f64;
            },
        );
    let loss: Vec<f32> = se
        .chunks_exact(b)
        .map(|c| (c.iter().sum::<f64>() / (b * di) as f64) as f32)
        .collect();

    // (C) AuxK: the top k_aux dead latents reconstruct the (detached) residual e = t - x_hat;
    // ga = c_s (e_hat - e) is its upstream gradient.
    let aux = inp.auxk.map(|aux| auxk_forward(inp, aux, &pre, &x_hat, b));

    // (D) Scatter onto latent rows.
    let mut g_dec = vec![0f32; n * ds * di];
    let mut g_enc_t = vec![0f32; n * ds * di];
    let mut g_b_enc = vec![0f32; n * ds];
    let chunk = SCATTER_ROWS.min(ds);
    g_dec
        .par_chunks_mut(ds * di)
        .zip(g_enc_t.par_chunks_mut(ds * di))
        .zip(g_b_enc.par_chunks_mut(ds))
        .enumerate()
        .for_each(|(s, ((gd, ge), gb))| {
            gd.par_chunks_mut(chunk * di)
                .zip(ge.par_chunks_mut(chunk * di))
                .zip(gb.par_chunks_mut(chunk))
                .enumerate()
                .for_each(|(c, ((gd, ge), gb))| {
                    let lo = c * chunk;
                    let mut block = Block {
                        lo,
                        hi: lo + gb.len(),
                        g_dec: gd,
                        g_enc_t: ge,
                        g_b_enc: gb,
                    };
                    let dec = &inp.dec[s * ds * di..(s + 1) * ds * di];
                    let pre = &pre[s * b * ds..(s + 1) * b * ds];
                    let xc = &xc[s * b * di..(s + 1) * b * di];
                    for w in 0..b {
                        let sel = &idx[(s * b + w) * k..(s * b + w + 1) * k];
                        let gw = &g[(s * b + w) * di..(s * b + w + 1) * di];
                        block.backprop(
                            gw,
                            sel,
                            &pre[w * ds..(w + 1) * ds],
                            inp.signed,
                            dec,
                            &xc[w * di..(w + 1) * di],
                        );
                    }
                    if let Some(a) = &aux {
                        for w in 0..b {
                            let r = s * b + w;
                            let sel = &a.sel[a.bounds[r]..a.bounds[r + 1]];
                            block.backprop(
                                &a.ga[r * di..(r + 1) * di],
                                sel,
                                &pre[w * ds..(w + 1) * ds],
                                inp.signed,
                                dec,
                                &xc[w * di..(w + 1) * di],
                            );
                        }
                    }
                });
        });

    // (E) b_dec: + sum over windows of g (decoder side), - W_enc g_b_enc (through the encoder:
    // pre = x W_enc - b_dec W_enc + b_enc); the encoder gradient in the parameter's layout.
    let mut g_b_dec = vec![0f32; n * di];
    let mut g_w_enc = vec![0f32; n * di * ds];
    g_b_dec
        .par_chunks_mut(di)
        .zip(g_w_enc.par_chunks_mut(di * ds))
        .enumerate()
        .for_each(|(s, (gbd, gwe))| {
            for gw in g[s * b * di..(s + 1) * b * di].chunks_exact(di) {
                for (a, &v) in gbd.iter_mut().zip(gw) {
                    *a += v;
                }
            }
            let w_enc = &inp.w_enc[s * di * ds..(s + 1) * di * ds];
            let gb = &g_b_enc[s * ds..(s + 1) * ds];
            for (a, row) in gbd.iter_mut().zip(w_enc.chunks_exact(ds)) {
                *a -= dot(row, gb);
            }
            transpose(&g_enc_t[s * ds * di..(s + 1) * ds * di], ds, di, gwe);
        });

    StepOut {
        pre,
        idx,
        x_hat,
        loss,
        auxk: aux.map(|a| a.loss),
        g_w_enc,
        g_b_enc,
        g_b_dec,
        g_dec,
    }
}

/// A block of latent rows `lo..hi` of one SAE and its gradient rows.
struct Block<'a> {
    lo: usize,
    hi: usize,
    g_dec: &'a mut [f32],
    g_enc_t: &'a mut [f32],
    g_b_enc: &'a mut [f32],
}

impl Block<'_> {
    /// Back-propagates an upstream gradient `g` on a decoded sum `sum_j act(pre_j) dec_j`
    /// through the selected latents `sel` of one window that fall in this block.
    fn backprop(
        &mut self,
        g: &[f32],
        sel: &[u32],
        pre: &[f32],
        signed: bool,
        dec: &[f32],
        xc: &[f32],
    ) {
        let di = g.len();
        for &j in sel {
            let j = j as usize;
            if j < self.lo || j >= self.hi {
                continue;
            }
            let p = pre[j];
            let a = if signed { p } else { p.max(0.0) };
            let l = j - self.lo;
            if a != 0.0 {
                axpy(a, g, &mut self.g_dec[l * di..(l + 1) * di]);
            }
            if !signed && p <= 0.0 {
                continue;
            }
            let gp = dot(g, &dec[j * di..(j + 1) * di]);
            self.g_b_enc[l] += gp;
            axpy(gp, xc, &mut self.g_enc_t[l * di..(l + 1) * di]);
        }
    }
}

/// AuxK's forward on every window and the upstream gradient it sends back.
struct AuxOut {
    /// Selected dead latents of all windows, row `r`'s at `sel[bounds[r]..bounds[r + 1]]`.
    sel: Vec<u32>,
    bounds: Vec<usize>,
    /// Upstream gradient `[N * B, d_in]`, AuxK weight included.
    ga: Vec<f32>,
    /// Per-SAE loss.
    loss: Vec<f32>,
}

fn auxk_forward(inp: &StepIn<'_>, aux: AuxkIn<'_>, pre: &[f32], x_hat: &[f32], b: usize) -> AuxOut {
    let (n, di, ds) = (inp.n, inp.d_in, inp.d_sae);
    let rows = n * b;
    let k_aux = aux.k_aux.clamp(1, ds);
    let act = |p: f32| if inp.signed { p } else { p.max(0.0) };
    // Per window: its selections, diff = e_hat - e, and (num, den) partial sums.
    let mut diff = vec![0f32; rows * di];
    let per: Vec<(Vec<u32>, f32, f32)> = diff
        .par_chunks_mut(di)
        .enumerate()
        .map_init(
            || Vec::with_capacity(ds),
            |buf, (r, dw)| {
                let (s, w) = (r / b, r % b);
                let dead = &aux.dead[s * ds..(s + 1) * ds];
                let dec = &inp.dec[s * ds * di..(s + 1) * ds * di];
                let pw = &pre[r * ds..(r + 1) * ds];
                let mut sel = Vec::new();
                topk_row(pw, Some(dead), k_aux, buf, &mut sel);
                for &j in &sel {
                    let a = act(pw[j as usize]);
                    if a != 0.0 {
                        axpy(a, &dec[j as usize * di..(j as usize + 1) * di], dw);
                    }
                }
                let tw = &inp.t[w * di..(w + 1) * di];
                let xh = &x_hat[r * di..(r + 1) * di];
                let (mut num, mut den) = (0f32, 0f32);
                for ((d, &tv), &h) in dw.iter_mut().zip(tw).zip(xh) {
                    let e = tv - h;
                    den += e * e;
                    *d -= e;
                    num += *d * *d;
                }
                (sel, num, den)
            },
        )
        .collect();
    let mut loss = Vec::with_capacity(n);
    let mut coef = Vec::with_capacity(n);
    for s in 0..n {
        let dead = &aux.dead[s * ds..(s + 1) * ds];
        let n_dead = dead.iter().filter(|&&d| d).count();
        let weight = (n_dead as f32 / k_aux as f32).min(1.0);
        let (num, den) = per[s * b..(s + 1) * b]
            .iter()
            .fold((0f32, 0f32), |(a, c), p| (a + p.1, c + p.2));
        let den = den + 1e-30;
        loss.push(num / den * weight);
        coef.push((aux.alpha as f32) * weight * 2.0 / den);
    }
    let mut ga = diff;
    ga.par_chunks_mut(di).enumerate().for_each(|(r, row)| {
        let c = coef[r / b];
        for v in row.iter_mut() {
            *v *= c;
        }
    });
    let mut sel = Vec::new();
    let mut bounds = Vec::with_capacity(rows + 1);
    bounds.push(0);
    for p in per {
        sel.extend_from_slice(&p.0);
        bounds.push(sel.len());
    }
    AuxOut {
        sel,
        bounds,
        ga,
        loss,
    }
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
        .map(|c| {
            assign_max(c, ds, ds)
                .into_iter()
                .map(|j| j as u32)
                .collect()
        })
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
    let row = |s: usize, r: usize| &unit[(s * ds + r) * di..(s * ds + r + 1) * di];
    // Per pair: (row of D_i, row of D_j, coefficient) of every matched cosine in mmcs_p.
    let matched: Vec<Vec<(usize, usize, f32)>> = pairs
        .par_iter()
        .enumerate()
        .map(|(p, _)| {
            let c = &cos[p];
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
            terms
        })
        .collect();
    // The value through the matched rows, as the autodiff path evaluates it.
    let mmcs: Vec<f32> = pairs
        .par_iter()
        .zip(&matched)
        .map(|(&(i, j), terms)| {
            terms
                .iter()
                .map(|&(r, q, h)| h * dot(row(i, r), row(j, q)))
                .sum()
        })
        .collect();
    // d(weight * mean_p (1 - mmcs_p)) / d mmcs_p = -weight / P; each SAE's rows gather their
    // pairs' terms in pair order.
    let scale = -(weight as f32) / p_count;
    let mut g_unit = vec![0f32; n * ds * di];
    g_unit
        .par_chunks_mut(ds * di)
        .enumerate()
        .for_each(|(s, g)| {
            for (&(i, j), terms) in pairs.iter().zip(&matched) {
                for &(r, q, h) in terms {
                    let f = scale * h;
                    if s == i {
                        axpy(f, row(j, q), &mut g[r * di..(r + 1) * di]);
                    }
                    if s == j {
                        axpy(f, row(i, r), &mut g[q * di..(q + 1) * di]);
                    }
                }
            }
        });
    let penalty = mmcs.iter().map(|&m| 1.0 - m).sum::<f32>() / p_count;
    MfrOut {
        mmcs,
        penalty,
        g_unit,
    }
}
