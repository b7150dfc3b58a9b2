//! Fitting a model's correction gate ([`crate::core::Blend`]) on validation windows
//! (`mfr-eeg fit-blend`).
//!
//! The gate changes only how much of each window's correction is applied, so the denoised
//! signal is `base + sum_m g_m c_m`: `base` is the overlap-add of the windows passed through
//! (the model's normalisation round trip), `c_m` window `m`'s correction weighted by the OLA
//! taper and `g_m` its gain. One pass of the model per window gives every `c_m`; each point of
//! the grid is then scored exactly from `|base - clean|²`, `<base - clean, c_m>` and
//! `<c_m, c_m'>` of overlapping windows, without running the model again.

use std::path::{Path, PathBuf};

use super::EvalError;
use super::corpus::{Corpus, CorpusConfig, Split};
use super::data::{ArtifactKind, Recording, Window};
use crate::core::{Blend, Sae, SlowGate, ola_window_shape_into, reflect_index};
use crate::model::Model;

/// Lower ends of the grid in thousandths: 0 to 0.6 in steps of 0.025 (start, step, count).
pub const GRID_LO: (u32, u32, u32) = (0, 25, 25);
/// Widths `hi - lo` of the grid in thousandths: 0.05 to 1.0 in steps of 0.05.
pub const GRID_WIDTH: (u32, u32, u32) = (50, 50, 20);

/// Where the validation windows come from: the corpus `train-denoiser` builds with the same
/// options.
#[derive(Clone, Debug)]
pub struct BlendData {
    /// Real recordings for clean EEG.
    pub edf: Vec<PathBuf>,
    /// A real-data set (`scripts/real_data.py`), as `train-denoiser --real`.
    pub real: Option<PathBuf>,
    /// Physiological-model segments added to the real ones.
    pub model_segments: usize,
    /// Seed of the corpus.
    pub data_seed: u64,
    /// Artifact kinds whose validation windows (every level) are fitted on.
    pub kinds: Vec<ArtifactKind>,
    /// Also fit on the artifact-free validation windows (one per segment), where the score is
    /// how much the denoiser changes EEG that needs no cleaning.
    pub clean: bool,
}

impl Default for BlendData {
    fn default() -> Self {
        Self {
            edf: vec!["data/eegmmidb_S001R02_64ch_160Hz_61s.edf".into()],
            real: None,
            model_segments: 600,
            data_seed: CorpusConfig::at_rate(256.0).seed,
            kinds: vec![ArtifactKind::Eog, ArtifactKind::Emg],
            clean: false,
        }
    }
}

impl BlendData {
    /// The validation windows of [`BlendData::kinds`] (every level), and the artifact-free
    /// ones with [`BlendData::clean`], of the corpus at `fs`.
    pub fn validation_windows(&self, fs: f64) -> Result<Vec<Window>, EvalError> {
        let recs = self
            .edf
            .iter()
            .map(|p| Recording::from_edf(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cfg = CorpusConfig::at_rate(fs);
        cfg.seed = self.data_seed;
        cfg.n_model_segments = self.model_segments;
        let corpus = match &self.real {
            Some(dir) => super::real::RealSet::load(dir)?.corpus(cfg, &recs)?,
            None => Corpus::build(cfg, &recs)?,
        };
        let mut val = Vec::new();
        for &kind in &self.kinds {
            val.extend(corpus.level_windows(
                Split::Val,
                kind,
                corpus.config.seg_len,
                usize::MAX,
            )?);
        }
        if self.clean {
            val.extend(corpus.clean_windows(Split::Val, corpus.config.seg_len, usize::MAX)?);
        }
        Ok(val)
    }
}

/// One window's statistics: everything the grid needs. Each model window's correction is
/// one component, or two (its fast rest, then its slow part) when fitting a [`SlowGate`].
struct WindowStats {
    /// `|base - clean|²`.
    a0: f64,
    /// `|clean|²`.
    clean: f64,
    /// Relative correction of each model window: whole, then of its fast rest and its slow
    /// part ([`Blend::relative_parts`]; the whole one again without a split).
    r: Vec<[f32; 3]>,
    /// `<base - clean, c_mp>`, row-major `[m][p]`.
    b: Vec<f64>,
    /// `<c_mp, c_{m+j}q>` for `j` in `0..band`, row-major `[m][j][p][q]`.
    g: Vec<f64>,
    band: usize,
    /// Components per model window (1 or 2).
    parts: usize,
}

impl WindowStats {
    /// RRMSE_t with each model window's gains (fast rest, slow part) from `gain(r)`; `gs` is
    /// scratch.
    fn rrmse(&self, gain: impl Fn([f32; 3]) -> [f64; 2], gs: &mut Vec<[f64; 2]>) -> f64 {
        gs.clear();
        gs.extend(self.r.iter().map(|&r| gain(r)));
        let (p, band) = (self.parts, self.band);
        let mut e = self.a0;
        for (m, gm) in gs.iter().enumerate() {
            for (u, &bv) in self.b[m * p..(m + 1) * p].iter().enumerate() {
                e += 2.0 * gm[u] * bv;
            }
            for (j, gmj) in gs[m..].iter().take(band).enumerate() {
                let block = &self.g[((m * band + j) * p * p)..((m * band + j + 1) * p * p)];
                let mut t = 0.0;
                for u in 0..p {
                    for v in 0..p {
                        t += gm[u] * gmj[v] * block[u * p + v];
                    }
                }
                e += if j == 0 { t } else { 2.0 * t };
            }
        }
        (e.max(0.0) / self.clean.max(f64::MIN_POSITIVE)).sqrt()
    }
}

/// The slow part of the correction `y - x` at each sample, in f64: the centred moving average
/// over `2 half + 1` samples (fewer at the edges) that [`Blend::apply`] computes in f32.
fn slow_part(x: &[f32], y: &[f32], half: usize, out: &mut [f64]) {
    let n = x.len().min(y.len()).min(out.len());
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    for i in 0..n {
        prefix.push(prefix[i] + f64::from(y[i] - x[i]));
    }
    for (i, o) in out[..n].iter_mut().enumerate() {
        let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(n));
        *o = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
    }
}

/// The statistics of `w` through `sae` (without a gate) at `hop`, windows placed as
/// [`crate::core::denoise_offline_into`] places them; each correction split at half-width
/// `half` if given.
fn window_stats(
    sae: &Sae<'_>,
    hop: usize,
    half: Option<u16>,
    w: &Window,
) -> Result<WindowStats, EvalError> {
    let err = |e: crate::core::CoreError| EvalError::Invalid(e.to_string());
    let (x, s) = (&w.noisy, &w.clean);
    let n = x.len();
    let d_in = sae.d_in();
    let parts = if half.is_some() { 2 } else { 1 };
    let pad = crate::core::offline_pad(d_in);
    let mut ola_w = vec![0.0f32; d_in];
    ola_window_shape_into(hop, sae.ola_shape(), &mut ola_w).map_err(err)?;
    let (mut win, mut xn, mut yn) = (vec![0.0f32; d_in], vec![0.0f32; d_in], vec![0.0f32; d_in]);
    let mut slow = vec![0.0f64; d_in];
    let mut scratch = vec![0.0f32; sae.scratch_len()];
    let mut topk = vec![0usize; sae.k()];
    let mut base = vec![0.0f64; n];
    // Each window's components over the output samples it reaches (`[p][i]`), and where it
    // starts.
    let mut corr: Vec<(isize, Vec<f64>)> = Vec::new();
    let mut r = Vec::new();
    let norm = sae.config().normalisation;
    for m in d_in.div_ceil(hop)..=(pad + n + d_in - 1) / hop {
        let start = (m * hop) as isize - d_in as isize - pad as isize;
        for (i, v) in win.iter_mut().enumerate() {
            *v = x[reflect_index(start + i as isize, n)];
        }
        let (back, scale) = norm.normalise_into(&win, &mut xn);
        sae.forward_into(&xn, &mut yn, &mut scratch, &mut topk)
            .map_err(err)?;
        let whole = Blend::relative_correction(&xn, &yn);
        r.push(match half {
            Some(h) => {
                slow_part(&xn, &yn, usize::from(h), &mut slow);
                let (rf, rs) = Blend::relative_parts(&xn, &mut yn, usize::from(h));
                [whole, rf, rs]
            }
            None => [whole; 3],
        });
        let mut c = vec![0.0f64; parts * d_in];
        for i in 0..d_in {
            let t = start + i as isize;
            let ws = f64::from(ola_w[i]) * f64::from(scale);
            let whole = f64::from(yn[i] - xn[i]);
            if parts == 2 {
                c[i] = ws * (whole - slow[i]);
                c[d_in + i] = ws * slow[i];
            } else {
                c[i] = ws * whole;
            }
            if let Some(b) = usize::try_from(t).ok().and_then(|t| base.get_mut(t)) {
                *b += f64::from(ola_w[i]) * f64::from(xn[i] * scale + back);
            }
        }
        corr.push((start, c));
    }
    let band = d_in.div_ceil(hop);
    let mut a0 = 0.0;
    let mut clean = 0.0;
    for (b, &sv) in base.iter_mut().zip(s) {
        *b -= f64::from(sv);
        a0 += *b * *b;
        clean += f64::from(sv) * f64::from(sv);
    }
    let in_range = |t: isize| usize::try_from(t).ok().filter(|&t| t < n);
    let mut bv = Vec::with_capacity(corr.len() * parts);
    let mut g = vec![0.0f64; corr.len() * band * parts * parts];
    for (m, (start, c)) in corr.iter().enumerate() {
        for u in 0..parts {
            let cu = &c[u * d_in..(u + 1) * d_in];
            let mut dot = 0.0;
            for (i, &cv) in cu.iter().enumerate() {
                if let Some(t) = in_range(start + i as isize) {
                    dot += base[t] * cv;
                }
            }
            bv.push(dot);
        }
        for j in 0..band {
            let Some((s2, c2)) = corr.get(m + j) else {
                break;
            };
            // Samples both windows reach inside the output.
            let lo = (*start).max(*s2).max(0);
            let hi = (start + d_in as isize)
                .min(s2 + d_in as isize)
                .min(n as isize);
            for u in 0..parts {
                for v in 0..parts {
                    let mut dot = 0.0;
                    for t in lo..hi {
                        dot +=
                            c[u * d_in + (t - start) as usize] * c2[v * d_in + (t - s2) as usize];
                    }
                    g[((m * band + j) * parts + u) * parts + v] = dot;
                }
            }
        }
    }
    Ok(WindowStats {
        a0,
        clean,
        r,
        b: bv,
        g,
        band,
        parts,
    })
}

/// The result of a fit: mean RRMSE_t over the windows without a gate, passing every window
/// through, with the best single ramp and with the best gate overall.
#[derive(Clone, Debug, PartialEq)]
pub struct BlendFit {
    /// Windows scored.
    pub windows: usize,
    /// Hop the windows were combined at.
    pub hop: usize,
    /// Every correction applied whole (the model without a gate).
    pub without: f64,
    /// No correction applied (the normalisation round trip alone).
    pub passthrough: f64,
    /// The best single ramp for the whole correction and its score.
    pub single: (Blend, f64),
    /// The best gate (with a [`SlowGate`] when one was fitted) and its score.
    pub best: (Blend, f64),
}

impl std::fmt::Display for BlendFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "RRMSE_t over {} validation windows at hop {} (mean per kind, averaged over kinds):",
            self.windows, self.hop
        )?;
        writeln!(f, "  without a gate      {:.4}", self.without)?;
        writeln!(f, "  nothing corrected   {:.4}", self.passthrough)?;
        write!(
            f,
            "  blend {:<13} {:.4}",
            self.single.0.to_string(),
            self.single.1
        )?;
        if let Some(s) = self.best.0.slow {
            write!(
                f,
                "\n  blend {:<13} {:.4}  (fast rest; slow part {s})",
                self.best.0.to_string(),
                self.best.1
            )?;
        }
        Ok(())
    }
}

/// The ramps of the grid ([`GRID_LO`] x [`GRID_WIDTH`]), from integers so that each bound is
/// the f32 nearest its decimal (and prints as it).
fn grid() -> Vec<(f32, f32)> {
    let mut out = Vec::new();
    for i in 0..GRID_LO.2 {
        for j in 0..GRID_WIDTH.2 {
            let lo = GRID_LO.0 + GRID_LO.1 * i;
            let hi = lo + GRID_WIDTH.0 + GRID_WIDTH.1 * j;
            out.push((lo as f32 / 1000.0, hi as f32 / 1000.0));
        }
    }
    out
}

/// The group a window is scored in: its artifact kind, or the artifact-free windows (infinite
/// SNR) apart.
fn group(w: &Window) -> usize {
    if w.snr_db.is_finite() {
        w.kind as usize
    } else {
        ArtifactKind::ALL.len()
    }
}

/// The fit's score of every gate in `gates`: mean RRMSE_t over the windows of each group
/// (`groups[i]` is window `i`'s), averaged over the groups, so each kind (and the artifact-free
/// windows) weighs the same however many windows it has. On `threads` threads; each window's
/// scores are summed in window order, so the result does not depend on `threads`.
fn mean_scores(
    stats: &[WindowStats],
    groups: &[usize],
    gates: &[Blend],
    threads: usize,
) -> Vec<f64> {
    let per = stats.len().div_ceil(threads.max(1)).max(1);
    let blocks: Vec<Vec<f64>> = std::thread::scope(|sc| {
        let handles: Vec<_> = stats
            .chunks(per)
            .map(|chunk| {
                sc.spawn(move || {
                    let mut gs = Vec::new();
                    let mut out = Vec::with_capacity(chunk.len() * gates.len());
                    for b in gates {
                        let gain = |r: [f32; 3]| match b.slow {
                            None => [f64::from(b.gain(r[0])); 2],
                            Some(s) => [f64::from(b.gain(r[1])), f64::from(s.gain(r[2]))],
                        };
                        out.extend(chunk.iter().map(|s| s.rrmse(gain, &mut gs)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let n_groups = groups.iter().max().map_or(0, |g| g + 1);
    let mut count = vec![0usize; n_groups];
    for &g in groups {
        count[g] += 1;
    }
    let used = count.iter().filter(|&&c| c > 0).count().max(1);
    (0..gates.len())
        .map(|gi| {
            let mut sum = vec![0.0; n_groups];
            let mut w = 0;
            for (chunk, block) in stats.chunks(per).zip(&blocks) {
                for v in &block[gi * chunk.len()..(gi + 1) * chunk.len()] {
                    sum[groups[w]] += v;
                    w += 1;
                }
            }
            let means = sum.iter().zip(&count).filter(|(_, c)| **c > 0);
            means.map(|(s, &c)| s / c as f64).sum::<f64>() / used as f64
        })
        .collect()
}

/// The lowest score of `gates` (the first on ties).
fn best_of(
    stats: &[WindowStats],
    groups: &[usize],
    gates: Vec<Blend>,
    threads: usize,
) -> Option<(Blend, f64)> {
    let scores = mean_scores(stats, groups, &gates, threads);
    let mut best: Option<(Blend, f64)> = None;
    for (b, s) in gates.into_iter().zip(scores) {
        if best.is_none_or(|(_, bs)| s < bs) {
            best = Some((b, s));
        }
    }
    best
}

/// Scores every single ramp of the grid ([`GRID_LO`] x [`GRID_WIDTH`]) on `windows` with
/// `model` (its own gate ignored) at `hop`, on `threads` threads; with `slow_half`, then fits a
/// [`SlowGate`] of that half-width beside the fast ramp by coordinate descent over the same
/// grid (the slow ramp with the fast one fixed, then the fast with the slow fixed, from the best
/// single ramp for both, until neither moves). Deterministic.
pub fn fit_blend(
    model: &Model,
    hop: usize,
    slow_half: Option<u16>,
    windows: &[Window],
    threads: usize,
) -> Result<BlendFit, EvalError> {
    if windows.is_empty() {
        return Err(EvalError::Invalid("no validation windows to fit on".into()));
    }
    let view = model.view();
    let sae = view.sae().with_validated_blend(None);
    if hop == 0 || hop > sae.d_in() {
        return Err(EvalError::Invalid(format!(
            "hop {hop} is outside 1..={}",
            sae.d_in()
        )));
    }
    if let Some(h) = slow_half
        && !(1..=SlowGate::MAX_HALF).contains(&h)
    {
        return Err(EvalError::Invalid(format!(
            "slow half-width {h} is outside 1..={}",
            SlowGate::MAX_HALF
        )));
    }
    let per = windows.len().div_ceil(threads.max(1));
    let stats: Vec<WindowStats> = std::thread::scope(|sc| {
        let handles: Vec<_> = windows
            .chunks(per)
            .map(|chunk| {
                sc.spawn(move || {
                    chunk
                        .iter()
                        .map(|w| window_stats(&sae, hop, slow_half, w))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(EvalError::Invalid("fit worker panicked".into())))
            })
            .collect::<Result<Vec<_>, _>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    // Ramps no r reaches: every correction whole, or none.
    let groups: Vec<usize> = windows.iter().map(group).collect();
    let fixed = mean_scores(
        &stats,
        &groups,
        &[Blend::new(-2.0, -1.0), Blend::new(f32::MAX / 2.0, f32::MAX)],
        threads,
    );
    let ramps = grid();
    let empty = || EvalError::Invalid("empty grid".into());
    let single = best_of(
        &stats,
        &groups,
        ramps.iter().map(|&(lo, hi)| Blend::new(lo, hi)).collect(),
        threads,
    )
    .ok_or_else(empty)?;
    let mut best = single;
    if let Some(half) = slow_half {
        let mut cur = (
            single.0,
            SlowGate {
                lo: single.0.lo,
                hi: single.0.hi,
                half,
            },
        );
        // Each round moves to a strictly lower score, so this ends; the bound is a guard.
        for _ in 0..16 {
            let before = cur;
            let slow_gates = ramps
                .iter()
                .map(|&(lo, hi)| Blend {
                    slow: Some(SlowGate { lo, hi, half }),
                    ..cur.0
                })
                .collect();
            let (b, _) = best_of(&stats, &groups, slow_gates, threads).ok_or_else(empty)?;
            cur.1 = b.slow.unwrap_or(cur.1);
            let fast_gates = ramps
                .iter()
                .map(|&(lo, hi)| Blend {
                    lo,
                    hi,
                    slow: Some(cur.1),
                })
                .collect();
            let (b, score) = best_of(&stats, &groups, fast_gates, threads).ok_or_else(empty)?;
            cur.0 = Blend::new(b.lo, b.hi);
            if score < best.1 {
                best = (b, score);
            }
            if cur == before {
                break;
            }
        }
    }
    Ok(BlendFit {
        windows: stats.len(),
        hop,
        without: fixed[0],
        passthrough: fixed[1],
        single,
        best,
    })
}

/// Fits the gate of the model at `input` on `data`'s validation windows at the model's hop
/// (with a slow ramp of half-width `slow_half` if given) and writes the model with it to
/// `output` (atomically; `input` is read whole first, so the two may be the same path).
pub fn fit_blend_file(
    input: &Path,
    output: &Path,
    data: &BlendData,
    slow_half: Option<u16>,
    threads: usize,
) -> Result<BlendFit, EvalError> {
    let model = Model::load(input).map_err(|e| EvalError::Model(e.to_string()))?;
    let meta = model.meta();
    let val = data.validation_windows(f64::from(meta.sample_rate_hz))?;
    let fit = fit_blend(&model, meta.hop, slow_half, &val, threads)?;
    let mut meta = meta;
    meta.blend = Some(fit.best.0);
    match model.quantized() {
        Some(q) => crate::model::write_model_int8(output, &meta, &q),
        None => crate::model::write_model(output, &meta, &model.tensors()),
    }
    .map_err(|e| EvalError::Model(e.to_string()))?;
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::frontier::batched_quality;
    use crate::rng::Rng;

    /// 2 s windows at 256 Hz: rhythms plus noise, with slow bumps (EOG-like) or broadband
    /// bursts (EMG-like) of several sizes added; a third are left clean.
    fn windows() -> Vec<Window> {
        let mut r = Rng::new(5);
        (0..18)
            .map(|i| {
                let n = 512;
                let f = 6.0 + i as f64;
                let clean: Vec<f32> = (0..n)
                    .map(|t| {
                        let t = t as f64 / 256.0;
                        ((2.0 * std::f64::consts::PI * f * t).sin() + 0.5 * r.normal()) as f32
                    })
                    .collect();
                let size = (i % 3) as f64 * 1.5;
                let noisy = clean
                    .iter()
                    .enumerate()
                    .map(|(t, &c)| {
                        let a = if i % 2 == 0 {
                            let u = (t as f64 - 256.0) / 40.0;
                            size * 3.0 * (-u * u).exp()
                        } else {
                            size * r.normal()
                        };
                        c + a as f32
                    })
                    .collect();
                Window {
                    noisy,
                    clean,
                    snr_db: 0.0,
                    kind: if i % 2 == 0 {
                        ArtifactKind::Eog
                    } else {
                        ArtifactKind::Emg
                    },
                }
            })
            .collect()
    }

    fn general() -> Model {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/general-256hz.safetensors"
        );
        Model::load(Path::new(p)).unwrap()
    }

    fn with_blend(m: &Model, blend: Option<Blend>) -> Model {
        let mut meta = m.meta();
        meta.blend = blend;
        Model::from_tensors(&meta, &m.tensors()).unwrap()
    }

    /// The grid's scores are the denoiser's own: without a gate, with no correction at all,
    /// and with the chosen gate (one ramp, or two with the slow part apart), the batched path
    /// gives the mean RRMSE_t the fit reported.
    #[test]
    fn the_fit_scores_what_the_denoiser_does() {
        let m = general();
        let w = windows();
        let score = |b: Option<Blend>| {
            batched_quality(&with_blend(&m, b), 32, None, &w, 1)
                .unwrap()
                .0
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1e-3);
        let fit = fit_blend(&m, 32, None, &w, 2).unwrap();
        let without = score(None);
        assert!(close(fit.without, without), "{} vs {without}", fit.without);
        let never = score(Some(Blend::new(1e6, 2e6)));
        assert!(
            close(fit.passthrough, never),
            "{} vs {never}",
            fit.passthrough
        );
        assert_eq!(fit.best, fit.single);
        let best = score(Some(fit.best.0));
        assert!(close(fit.best.1, best), "{} vs {best}", fit.best.1);
        // The gate helps on these windows, and the clean third is why.
        assert!(fit.best.1 < 0.98 * fit.without, "{fit}");
        assert_eq!(fit.windows, w.len());

        let split = fit_blend(&m, 32, Some(8), &w, 3).unwrap();
        let slow = split.best.0.slow.expect("a slow ramp");
        assert_eq!(slow.half, 8);
        // The single ramps score the same whether each correction is split or not.
        assert!(close(split.single.1, fit.single.1), "{split} vs {fit}");
        assert!(split.best.1 <= split.single.1, "{split}");
        let best = score(Some(split.best.0));
        assert!(close(split.best.1, best), "{} vs {best}", split.best.1);
    }

    #[test]
    fn nothing_to_fit_on_is_an_error() {
        let m = general();
        assert!(fit_blend(&m, 32, None, &[], 1).is_err());
        assert!(fit_blend(&m, 0, None, &windows(), 1).is_err());
        assert!(fit_blend(&m, 257, None, &windows(), 1).is_err());
        assert!(fit_blend(&m, 32, Some(0), &windows(), 1).is_err());
        assert!(fit_blend(&m, 32, Some(SlowGate::MAX_HALF + 1), &windows(), 1).is_err());
    }
}
