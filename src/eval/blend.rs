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
use crate::core::{Blend, Sae, ola_window_shape_into, reflect_index};
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
}

impl Default for BlendData {
    fn default() -> Self {
        Self {
            edf: vec!["data/eegmmidb_S001R02_64ch_160Hz_61s.edf".into()],
            real: None,
            model_segments: 600,
            data_seed: CorpusConfig::at_rate(256.0).seed,
        }
    }
}

impl BlendData {
    /// The EOG and EMG validation windows (every level) of the corpus at `fs`.
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
        for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
            val.extend(corpus.level_windows(
                Split::Val,
                kind,
                corpus.config.seg_len,
                usize::MAX,
            )?);
        }
        Ok(val)
    }
}

/// One window's statistics: everything the grid needs.
struct WindowStats {
    /// `|base - clean|²`.
    a0: f64,
    /// `|clean|²`.
    clean: f64,
    /// Relative correction of each model window.
    r: Vec<f32>,
    /// `<base - clean, c_m>`.
    b: Vec<f64>,
    /// `<c_m, c_{m+j}>` for `j` in `0..band`, row-major `[m][j]`.
    g: Vec<f64>,
    band: usize,
}

impl WindowStats {
    /// Mean squared error over mean squared clean (RRMSE_t squared) with gains `gain`.
    fn rrmse(&self, gain: impl Fn(f32) -> f32) -> f64 {
        let gs: Vec<f64> = self.r.iter().map(|&r| f64::from(gain(r))).collect();
        let mut e = self.a0;
        for (m, &gm) in gs.iter().enumerate() {
            e += 2.0 * gm * self.b[m];
            let row = &self.g[m * self.band..(m + 1) * self.band];
            e += gm * gm * row[0];
            for (j, &gmj) in gs[m + 1..].iter().take(self.band - 1).enumerate() {
                e += 2.0 * gm * gmj * row[j + 1];
            }
        }
        (e.max(0.0) / self.clean.max(f64::MIN_POSITIVE)).sqrt()
    }
}

/// The statistics of `w` through `sae` (without a gate) at `hop`, windows placed as
/// [`crate::core::denoise_offline_into`] places them.
fn window_stats(sae: &Sae<'_>, hop: usize, w: &Window) -> Result<WindowStats, EvalError> {
    let err = |e: crate::core::CoreError| EvalError::Invalid(e.to_string());
    let (x, s) = (&w.noisy, &w.clean);
    let n = x.len();
    let d_in = sae.d_in();
    let pad = crate::core::offline_pad(d_in);
    let mut ola_w = vec![0.0f32; d_in];
    ola_window_shape_into(hop, sae.ola_shape(), &mut ola_w).map_err(err)?;
    let (mut win, mut xn, mut yn) = (vec![0.0f32; d_in], vec![0.0f32; d_in], vec![0.0f32; d_in]);
    let mut scratch = vec![0.0f32; sae.scratch_len()];
    let mut topk = vec![0usize; sae.k()];
    let mut base = vec![0.0f64; n];
    // Each window's correction over the output samples it reaches, and where it starts.
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
        r.push(Blend::relative_correction(&xn, &yn));
        let mut c = vec![0.0f64; d_in];
        for i in 0..d_in {
            let t = start + i as isize;
            let wv = f64::from(ola_w[i]);
            c[i] = wv * f64::from((yn[i] - xn[i]) * scale);
            if let Some(b) = usize::try_from(t).ok().and_then(|t| base.get_mut(t)) {
                *b += wv * f64::from(xn[i] * scale + back);
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
    let mut bv = Vec::with_capacity(corr.len());
    let mut g = vec![0.0f64; corr.len() * band];
    for (m, (start, c)) in corr.iter().enumerate() {
        let mut dot = 0.0;
        for (i, &cv) in c.iter().enumerate() {
            if let Some(t) = in_range(start + i as isize) {
                dot += base[t] * cv;
            }
        }
        bv.push(dot);
        for j in 0..band {
            let Some((s2, c2)) = corr.get(m + j) else {
                break;
            };
            let mut dot = 0.0;
            for (i, &cv) in c.iter().enumerate() {
                let t = start + i as isize;
                let i2 = t - s2;
                if in_range(t).is_some() && i2 >= 0 && (i2 as usize) < c2.len() {
                    dot += cv * c2[i2 as usize];
                }
            }
            g[m * band + j] = dot;
        }
    }
    Ok(WindowStats {
        a0,
        clean,
        r,
        b: bv,
        g,
        band,
    })
}

/// The result of a fit: mean RRMSE_t over the windows without a gate, passing every window
/// through, and at the best grid point.
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
    /// The best gate and its score.
    pub best: (Blend, f64),
}

impl std::fmt::Display for BlendFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "mean RRMSE_t over {} validation windows at hop {}:",
            self.windows, self.hop
        )?;
        writeln!(f, "  without a gate      {:.4}", self.without)?;
        writeln!(f, "  nothing corrected   {:.4}", self.passthrough)?;
        write!(
            f,
            "  blend {:<13} {:.4}",
            self.best.0.to_string(),
            self.best.1
        )
    }
}

/// Scores every gate of the grid ([`GRID_LO`] x [`GRID_WIDTH`]) on `windows` with `model`
/// (its own gate ignored) at `hop`, on `threads` threads; deterministic.
pub fn fit_blend(
    model: &Model,
    hop: usize,
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
    let per = windows.len().div_ceil(threads.max(1));
    let stats: Vec<WindowStats> = std::thread::scope(|sc| {
        let handles: Vec<_> = windows
            .chunks(per)
            .map(|chunk| {
                sc.spawn(move || {
                    chunk
                        .iter()
                        .map(|w| window_stats(&sae, hop, w))
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
    let mean = |gain: &dyn Fn(f32) -> f32| {
        stats.iter().map(|s| s.rrmse(gain)).sum::<f64>() / stats.len() as f64
    };
    let without = mean(&|_| 1.0);
    let passthrough = mean(&|_| 0.0);
    let mut best: Option<(Blend, f64)> = None;
    for i in 0..GRID_LO.2 {
        for j in 0..GRID_WIDTH.2 {
            // From integers, so each bound is the f32 nearest its decimal (and prints as it).
            let lo = GRID_LO.0 + GRID_LO.1 * i;
            let hi = lo + GRID_WIDTH.0 + GRID_WIDTH.1 * j;
            let b = Blend {
                lo: lo as f32 / 1000.0,
                hi: hi as f32 / 1000.0,
            };
            let score = mean(&|r| b.gain(r));
            if best.is_none_or(|(_, s)| score < s) {
                best = Some((b, score));
            }
        }
    }
    let best = best.ok_or_else(|| EvalError::Invalid("empty grid".into()))?;
    Ok(BlendFit {
        windows: stats.len(),
        hop,
        without,
        passthrough,
        best,
    })
}

/// Fits the gate of the model at `input` on `data`'s validation windows at the model's hop
/// and writes the model with it to `output` (atomically; `input` is read whole first, so the
/// two may be the same path).
pub fn fit_blend_file(
    input: &Path,
    output: &Path,
    data: &BlendData,
    threads: usize,
) -> Result<BlendFit, EvalError> {
    let model = Model::load(input).map_err(|e| EvalError::Model(e.to_string()))?;
    let meta = model.meta();
    let val = data.validation_windows(f64::from(meta.sample_rate_hz))?;
    let fit = fit_blend(&model, meta.hop, &val, threads)?;
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
    /// and with the chosen gate, the batched path gives the mean RRMSE_t the fit reported.
    #[test]
    fn the_fit_scores_what_the_denoiser_does() {
        let m = general();
        let w = windows();
        let fit = fit_blend(&m, 32, &w, 2).unwrap();
        let score = |b: Option<Blend>| {
            batched_quality(&with_blend(&m, b), 32, None, &w, 1)
                .unwrap()
                .0
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1e-3);
        let without = score(None);
        assert!(close(fit.without, without), "{} vs {without}", fit.without);
        let never = score(Some(Blend { lo: 1e6, hi: 2e6 }));
        assert!(
            close(fit.passthrough, never),
            "{} vs {never}",
            fit.passthrough
        );
        let best = score(Some(fit.best.0));
        assert!(close(fit.best.1, best), "{} vs {best}", fit.best.1);
        // The gate helps on these windows, and the clean third is why.
        assert!(fit.best.1 < 0.98 * fit.without, "{fit}");
        assert_eq!(fit.windows, w.len());
    }

    #[test]
    fn nothing_to_fit_on_is_an_error() {
        let m = general();
        assert!(fit_blend(&m, 32, &[], 1).is_err());
        assert!(fit_blend(&m, 0, &windows(), 1).is_err());
        assert!(fit_blend(&m, 257, &windows(), 1).is_err());
    }
}
