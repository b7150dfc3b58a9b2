//! The batched encoder product `C = A W_enc` (`A`: windows x `d_in`, `W_enc`: `d_in` x
//! `d_sae`, all row-major), with `W_enc` packed once when the model is loaded.
//!
//! Why not only `matrixmultiply::sgemm`: a general sgemm packs both operands on every call, and
//! here one operand is the model's fixed 1 MB encoder, re-packed for every batch of 128 windows
//! (11 % of the batched path's time in a profile of the default model at hop 32). Packing it
//! once into 16-column panels, and multiplying with a 6 x 16 AVX2/FMA register block (12
//! accumulators: enough independent FMA chains to cover the FMA latency), leaves only the
//! small window matrix to pack per call. Where the CPU lacks AVX2/FMA, or `d_sae` is not a
//! multiple of 16, the product falls back to `matrixmultiply`.
//!
//! Each output is the sum over `d_in` in index order, as in the core's encoder, formed with
//! fused multiply-adds (one rounding per term instead of two).

/// Columns per packed panel of `W_enc` (two 8-wide vectors).
const NR: usize = 16;
/// Windows per register block.
const MR: usize = 6;

/// `W_enc` in the layout the kernel reads, or the plain matrix for the fallback (one copy
/// either way).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PackedEncoder {
    d_in: usize,
    d_sae: usize,
    packed: bool,
    /// Packed, and the CPU has AVX-512F: [`PackedEncoder::product_avx512`] runs the product.
    wide: bool,
    /// Packed: panel `p` at `p * d_in * NR` holds, for each input `i`, columns
    /// `p*NR..p*NR + NR`. Otherwise `W_enc [d_in, d_sae]` row-major (the fallback's operand).
    w: Vec<f32>,
}

/// True where the CPU has AVX2 and FMA, which the register-blocked kernels here and in the
/// batched front end need (checked at run time: the binary targets baseline x86_64).
pub(super) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The widest vector kernels this CPU runs, checked at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VectorIsa {
    /// Neither AVX2 nor FMA: the portable loops.
    Baseline,
    /// AVX2 and FMA (8 lanes).
    Avx2Fma,
    /// AVX-512F besides AVX2 and FMA (16 lanes).
    Avx512,
}

/// [`VectorIsa`] of this CPU.
pub(super) fn vector_isa() -> VectorIsa {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        return if std::arch::is_x86_feature_detected!("avx512f") {
            VectorIsa::Avx512
        } else {
            VectorIsa::Avx2Fma
        };
    }
    VectorIsa::Baseline
}

impl PackedEncoder {
    /// Packs `w_enc` (`d_in * d_sae` values, row-major) for this CPU.
    pub(super) fn new(w_enc: Vec<f32>, d_in: usize, d_sae: usize) -> Self {
        if !(Self::kernel_available() && d_sae.is_multiple_of(NR) && d_in > 0) {
            return Self {
                d_in,
                d_sae,
                packed: false,
                wide: false,
                w: w_enc,
            };
        }
        let mut w = Vec::with_capacity(d_in * d_sae);
        for p0 in (0..d_sae).step_by(NR) {
            for i in 0..d_in {
                w.extend_from_slice(&w_enc[i * d_sae + p0..i * d_sae + p0 + NR]);
            }
        }
        Self {
            d_in,
            d_sae,
            packed: true,
            wide: vector_isa() == VectorIsa::Avx512,
            w,
        }
    }

    fn kernel_available() -> bool {
        avx2_fma()
    }

    /// True if `f(values, start)` holds for every run of the weights, where `values` are the
    /// row-major `d_in x d_sae` weights from index `start` on (one run unpacked, one per panel
    /// row packed): how a model's stored matrix is compared without unpacking.
    pub(super) fn all_runs(&self, mut f: impl FnMut(&[f32], usize) -> bool) -> bool {
        if !self.packed {
            return f(&self.w, 0);
        }
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        self.w.chunks_exact(NR).enumerate().all(|(t, run)| {
            let (p, i) = (t / d_in, t % d_in);
            f(run, i * d_sae + p * NR)
        })
    }

    /// True if products run on the packed AVX2/FMA kernel.
    pub(super) fn is_packed(&self) -> bool {
        self.packed
    }

    /// Values `packed_a` must be able to hold for `rows` windows.
    pub(super) fn packed_a_len(&self, rows: usize) -> usize {
        rows.div_ceil(MR) * MR * self.d_in
    }

    /// `c[..rows * d_sae] = a[..rows * d_in] W_enc`, `packed_a` a scratch of at least
    /// [`Self::packed_a_len`] values.
    pub(super) fn product(&self, a: &[f32], rows: usize, c: &mut [f32], packed_a: &mut [f32]) {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        assert!(a.len() >= rows * d_in && c.len() >= rows * d_sae);
        if rows == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.is_packed() {
            assert!(packed_a.len() >= self.packed_a_len(rows));
            // Row block b at b * MR * d_in: for each input i, the MR windows' values (zero
            // past the last window), so the kernel broadcasts from one contiguous stream.
            for (b, blk) in packed_a[..self.packed_a_len(rows)]
                .chunks_exact_mut(MR * d_in)
                .enumerate()
            {
                for r in 0..MR {
                    let w = b * MR + r;
                    if w < rows {
                        let src = &a[w * d_in..(w + 1) * d_in];
                        for (i, &v) in src.iter().enumerate() {
                            blk[i * MR + r] = v;
                        }
                    } else {
                        for i in 0..d_in {
                            blk[i * MR + r] = 0.0;
                        }
                    }
                }
            }
            // SAFETY: the kernel was detected at construction (`is_packed`); the sizes were
            // asserted above and the panels hold d_in * d_sae values.
            unsafe {
                if self.wide {
                    self.product_avx512(rows, c, packed_a);
                } else {
                    self.product_avx2(rows, c, packed_a, 0);
                }
            }
            return;
        }
        let _ = packed_a;
        // SAFETY: `a` is rows x d_in, `w` d_in x d_sae, `c` rows x d_sae, all row-major
        // (sizes asserted above); the strides say exactly that.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                d_in,
                d_sae,
                1.0,
                a.as_ptr(),
                d_in as isize,
                1,
                self.w.as_ptr(),
                d_sae as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                d_sae as isize,
                1,
            );
        }
    }

    /// Panel by panel from panel `first` on (16 KB of weights for `d_in` 256, kept in L1),
    /// every row block.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn product_avx2(&self, rows: usize, c: &mut [f32], packed_a: &[f32], first: usize) {
        use std::arch::x86_64::*;
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let blocks = rows.div_ceil(MR);
        for (p, panel) in self.w.chunks_exact(d_in * NR).enumerate().skip(first) {
            for b in 0..blocks {
                let ap = packed_a[b * MR * d_in..(b + 1) * MR * d_in].as_ptr();
                let bp = panel.as_ptr();
                let mut acc = [[_mm256_setzero_ps(); 2]; MR];
                for i in 0..d_in {
                    // SAFETY: i < d_in; the panel holds d_in * NR values, the block
                    // d_in * MR.
                    let (b0, b1) = unsafe {
                        (
                            _mm256_loadu_ps(bp.add(i * NR)),
                            _mm256_loadu_ps(bp.add(i * NR + 8)),
                        )
                    };
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        // SAFETY: as above.
                        let av = unsafe { _mm256_broadcast_ss(&*ap.add(i * MR + r)) };
                        acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                        acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
                    }
                }
                for (r, acc_r) in acc.iter().enumerate().take(rows - b * MR) {
                    let o = (b * MR + r) * d_sae + p * NR;
                    // SAFETY: window b*MR + r < rows and column p*NR + 16 <= d_sae, inside
                    // the c.len() >= rows * d_sae asserted by the caller.
                    unsafe {
                        _mm256_storeu_ps(c.as_mut_ptr().add(o), acc_r[0]);
                        _mm256_storeu_ps(c.as_mut_ptr().add(o + 8), acc_r[1]);
                    }
                }
            }
        }
    }

    /// Two panels by two row blocks per tile: 12 windows x 32 columns, 24 of the 32 vector
    /// registers as accumulators, so each loaded weight vector feeds 12 multiply-adds of 16
    /// lanes (the AVX2 kernel: 6 of 8 lanes). Each output is the same chain of fused
    /// multiply-adds over `i` as in [`Self::product_avx2`]: the same bits. A last odd panel
    /// goes to the AVX2 kernel.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn product_avx512(&self, rows: usize, c: &mut [f32], packed_a: &[f32]) {
        use std::arch::x86_64::*;
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        let blocks = rows.div_ceil(MR);
        let panels = d_sae / NR;
        for pp in 0..panels / 2 {
            let w0 = self.w[2 * pp * d_in * NR..(2 * pp + 1) * d_in * NR].as_ptr();
            let w1 = self.w[(2 * pp + 1) * d_in * NR..(2 * pp + 2) * d_in * NR].as_ptr();
            let mut b = 0;
            while b < blocks {
                // Two row blocks where there are two, else the last one alone (its
                // accumulators for the missing block are computed from zeros and not stored).
                let two = b + 1 < blocks;
                let a0 = packed_a[b * MR * d_in..(b + 1) * MR * d_in].as_ptr();
                let a1 = if two {
                    packed_a[(b + 1) * MR * d_in..(b + 2) * MR * d_in].as_ptr()
                } else {
                    a0
                };
                let mut acc = [[_mm512_setzero_ps(); 2]; 2 * MR];
                for i in 0..d_in {
                    // SAFETY: i < d_in; each panel holds d_in * NR values, each row block
                    // d_in * MR.
                    let (v0, v1) = unsafe {
                        (
                            _mm512_loadu_ps(w0.add(i * NR)),
                            _mm512_loadu_ps(w1.add(i * NR)),
                        )
                    };
                    for (r, acc_r) in acc.iter_mut().enumerate() {
                        let ap = if r < MR { a0 } else { a1 };
                        // SAFETY: as above.
                        let av = _mm512_set1_ps(unsafe { *ap.add(i * MR + r % MR) });
                        acc_r[0] = _mm512_fmadd_ps(av, v0, acc_r[0]);
                        acc_r[1] = _mm512_fmadd_ps(av, v1, acc_r[1]);
                    }
                }
                let stored = if two { 2 * MR } else { MR };
                for (r, acc_r) in acc.iter().enumerate().take(stored.min(rows - b * MR)) {
                    let o = (b * MR + r) * d_sae + 2 * pp * NR;
                    // SAFETY: window b*MR + r < rows and column 2*pp*NR + 32 <= d_sae, inside
                    // the c.len() >= rows * d_sae asserted by the caller.
                    unsafe {
                        _mm512_storeu_ps(c.as_mut_ptr().add(o), acc_r[0]);
                        _mm512_storeu_ps(c.as_mut_ptr().add(o + NR), acc_r[1]);
                    }
                }
                b += if two { 2 } else { 1 };
            }
        }
        if panels % 2 == 1 {
            // SAFETY: AVX2 and FMA come with this function's features.
            unsafe { self.product_avx2(rows, c, packed_a, panels - 1) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 tiles give the AVX2 kernel's bits: odd and even panel counts, one and two
    /// row blocks and partial blocks. Runs where the CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn wide_product_gives_the_avx2_bits() {
        if vector_isa() != VectorIsa::Avx512 {
            eprintln!("no AVX-512F here: the wide product is not run");
            return;
        }
        let mut r = crate::rng::Rng::new(4);
        for &(d_in, d_sae) in &[(256usize, 1024usize), (33, 48), (5, 32)] {
            let w: Vec<f32> = (0..d_in * d_sae).map(|_| r.normal() as f32).collect();
            let enc = PackedEncoder::new(w, d_in, d_sae);
            assert!(enc.wide);
            for rows in [1usize, 6, 7, 12, 13, 18, 128] {
                let a: Vec<f32> = (0..rows * d_in).map(|_| r.normal() as f32).collect();
                let mut pa = vec![0.0; enc.packed_a_len(rows)];
                let (mut c1, mut c2) = (vec![0.0f32; rows * d_sae], vec![1.0f32; rows * d_sae]);
                enc.product(&a, rows, &mut c1, &mut pa);
                // SAFETY: AVX-512F (with AVX2 and FMA) checked above; `pa` is packed by the
                // call before.
                unsafe { enc.product_avx2(rows, &mut c2, &pa, 0) };
                let same = c1.iter().zip(&c2).all(|(u, v)| u.to_bits() == v.to_bits());
                assert!(same, "d_in {d_in} d_sae {d_sae} rows {rows}");
            }
        }
    }

    /// Every shape class (row remainders 0..5, d_sae with and without the kernel) against a
    /// plain f64 product, to f32 rounding.
    #[test]
    fn product_equals_the_plain_sum() {
        let mut r = crate::rng::Rng::new(9);
        for &(d_in, d_sae) in &[(256usize, 1024usize), (33, 48), (8, 20), (1, 16)] {
            let w: Vec<f32> = (0..d_in * d_sae).map(|_| r.normal() as f32).collect();
            let enc = PackedEncoder::new(w.clone(), d_in, d_sae);
            assert!(enc.all_runs(|v, s| v == &w[s..s + v.len()]));
            assert!(!enc.all_runs(|v, s| s != d_in * d_sae - v.len()));
            for rows in [1usize, 5, 6, 7, 13, 128] {
                let a: Vec<f32> = (0..rows * d_in).map(|_| r.normal() as f32).collect();
                let mut c = vec![f32::NAN; rows * d_sae];
                let mut pa = vec![0.0; enc.packed_a_len(rows)];
                enc.product(&a, rows, &mut c, &mut pa);
                for w_ in 0..rows {
                    for j in 0..d_sae {
                        let (mut s, mut m) = (0.0f64, 0.0f64);
                        for i in 0..d_in {
                            let t = f64::from(a[w_ * d_in + i]) * f64::from(w[i * d_sae + j]);
                            s += t;
                            m += t.abs();
                        }
                        let got = f64::from(c[w_ * d_sae + j]);
                        assert!(
                            (got - s).abs() <= 1.2e-7 * m * d_in as f64 + 1e-30,
                            "d_in {d_in} d_sae {d_sae} rows {rows} ({w_}, {j}): {got} vs {s}"
                        );
                    }
                }
            }
        }
    }
}
