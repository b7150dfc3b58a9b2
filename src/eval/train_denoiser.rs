//! `mfr-eeg train-denoiser`: trains MFR denoising SAEs on the benchmark corpus with the
//! training engine, selects on validation, exports to the model format and writes a model
//! card beside it.
//!
//! With `--sweep-alpha a,b,..` and `--seeds s,t,..` it trains every (alpha, seed) with the
//! same budget and tuning, picks the alpha with the lowest mean validation loss (alpha 0, no
//! MFR, competes on equal terms), and ships that arm's best-validation seed. The card records
//! every run, and the single-run command that regenerates the shipped file bit for bit.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::EvalError;
use super::corpus::{Corpus, CorpusConfig, DEFAULT_MIX, Split};
use super::data::{ArtifactKind, Recording, Window};
use super::eegdenoisenet::EegDenoiseNet;
use super::harness::{Evaluation, Method, SaeMethod, SeedResult, mean_std, summarise_arms};
use crate::core::{Activation, FrontShape, Normalisation, OlaShape};
use crate::model::{Model, ModelMeta, ModelTensors};
use crate::train::trainer::GradPath;
use crate::train::{ActivationKind, BackendKind, Dataset, TrainConfig};
use std::fmt::Write as _;

/// One `train-denoiser` job. [`Default`] holds the defaults of `mfr-eeg train-denoiser`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainDenoiserOptions {
    /// Output model file (safetensors); the card goes beside it as `.md`, all runs as `.runs.json`.
    pub out: PathBuf,
    /// Sample rate of the model (Hz); recordings are resampled to it.
    pub sample_rate: f64,
    /// Window length in samples (`None`: one second).
    pub d_in: Option<usize>,
    /// Latents per SAE.
    pub d_sae: usize,
    /// Latents kept per window.
    pub k: usize,
    /// Hop candidates tried on validation (samples; empty: d_in/2 and d_in/4).
    pub hops: Vec<usize>,
    /// Overlap-add taper the hops are scored with, recorded in the model.
    pub ola: OlaShape,
    /// SAEs trained side by side (MFR needs >= 2).
    pub n_saes: usize,
    /// MFR alphas to sweep (log scale, include 0); empty: `mfr_alpha` alone.
    pub sweep_alpha: Vec<f64>,
    /// MFR alpha when not sweeping.
    pub mfr_alpha: f64,
    /// Training seeds (each arm runs every seed).
    pub seeds: Vec<u64>,
    /// Optimiser steps per run.
    pub steps: usize,
    /// Windows per batch.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Training windows cut from each training segment (fresh artifact each).
    pub per_segment: usize,
    /// Validation windows per validation segment (`None`: a quarter of `per_segment`). Fix
    /// it when comparing runs with different `per_segment`, so they share one validation set.
    pub val_per_segment: Option<usize>,
    /// Samples the artifact is mixed into at the drawn SNR before a `d_in` window is cut
    /// from them (`None`: `d_in`, so each window holds its SNR exactly). The benchmark defines
    /// SNR over 2 s segments, as EEGdenoiseNet does; a 1 s model sliding over them sees local
    /// SNRs spread around that, which `mix_len` = two seconds of samples trains for.
    pub mix_len: Option<usize>,
    /// Fit a gated linear path beside each trained SAE (an FIR of `skip_taps` taps,
    /// applied in windows whose high-frequency ratio is at most the gate) for each of these
    /// gates, and keep the gate the validation windows prefer, or none (empty: no path).
    pub skip_gates: Vec<f32>,
    /// Taps of the linear path (odd).
    pub skip_taps: usize,
    /// Choose the shipped run by validation loss (1 s windows, all artifact kinds) or by the
    /// RRMSE_t of the validation EOG+EMG level windows through the model's overlap-add (what
    /// the benchmark measures; needs `skip_gates`).
    pub select_by: SelectBy,
    /// Validate every this many steps and keep each SAE's best weights (early stopping;
    /// the final weights compete too).
    pub select_every: Option<usize>,
    /// Real recordings for clean EEG (EDF/EDF+/BDF).
    pub edf: Vec<PathBuf>,
    /// A real-data set (`scripts/real_data.py`): its EEG recordings join the splits whole
    /// (train, validation or test as its manifest says) and its EMG recordings become the
    /// EMG artifacts of each split.
    pub real: Option<PathBuf>,
    /// Physiological-model segments added to the real ones.
    pub model_segments: usize,
    /// Use EEGdenoiseNet's own files from this directory instead of the generator.
    pub eegdenoisenet: Option<PathBuf>,
    /// Seed of the corpus (split and artifacts), independent of the training seeds.
    pub data_seed: u64,
    /// Train on the relative (per-window) squared error instead of plain MSE, so low-SNR
    /// windows count as much as clean ones (what RRMSE_t measures).
    pub relative_loss: bool,
    /// Energy floor of the relative loss (larger: closer to plain MSE).
    pub relative_eps: f64,
    /// Train residual SAEs: each predicts the correction to its input, which an always-open
    /// linear path (the identity, or an FIR fitted on every window) carries to the output.
    pub residual: bool,
    /// With `residual`: only windows whose high-frequency ratio is at most this are learnt
    /// (and applied) as corrections; the others are rebuilt whole.
    pub residual_gate: Option<f32>,
    /// Share of training and validation pairs with no artifact (target = input).
    pub clean_fraction: f64,
    /// Per-window normalisation (recorded in the model).
    pub normalisation: Normalisation,
    /// Training backend.
    pub backend: BackendKind,
    /// Gradient computation (`None`: the backend's default).
    pub grad_path: Option<GradPath>,
    /// Also quantise to int8 (the file at `out` is then the int8 model).
    pub int8: bool,
    /// Put a convolutional front end of this shape before the encoder
    /// ([`crate::core::Front`]). Trained end to end with the SAE by autodiff
    /// ([`super::cnn::train_cnn`]): one SAE, no MFR or AuxK, relative loss.
    pub front: Option<FrontShape>,
    /// Weight the front-end run's loss by the overlap-add taper (`ola`), so a window's edges,
    /// which the overlap-add barely uses, count little ([`super::cnn::CnnConfig::loss_taper`]).
    pub loss_taper: bool,
    /// With `front`: start the SAE from this model file's SAE (same `d_in` and `d_sae`; its
    /// own front, if any, is not used). The front still starts at zero, so training starts
    /// from that model.
    pub init_sae: Option<PathBuf>,
    /// With `front`: the SAE's own peak learning rate (`lr` then drives the front alone), so
    /// a warm-started SAE can move slower than the front ([`super::cnn::CnnConfig::sae_lr`]).
    pub sae_lr: Option<f64>,
}

impl Default for TrainDenoiserOptions {
    fn default() -> Self {
        let train = TrainConfig::default();
        Self {
            out: "models/general-256hz.safetensors".into(),
            sample_rate: 256.0,
            d_in: None,
            d_sae: train.d_sae,
            k: train.k,
            hops: Vec::new(),
            ola: OlaShape::Hann,
            n_saes: 3,
            sweep_alpha: Vec::new(),
            mfr_alpha: 1e-2,
            seeds: vec![0],
            steps: 3000,
            batch_size: train.batch_size,
            lr: train.lr,
            per_segment: 16,
            val_per_segment: None,
            mix_len: None,
            skip_gates: Vec::new(),
            skip_taps: 33,
            select_by: SelectBy::ValLoss,
            select_every: None,
            edf: vec!["data/eegmmidb_S001R02_64ch_160Hz_61s.edf".into()],
            real: None,
            model_segments: 600,
            eegdenoisenet: None,
            data_seed: 2026,
            relative_loss: false,
            residual: false,
            residual_gate: None,
            clean_fraction: 0.0,
            relative_eps: train.relative_eps,
            normalisation: Normalisation::WindowZscore,
            backend: BackendKind::Flex,
            grad_path: None,
            int8: false,
            front: None,
            loss_taper: false,
            init_sae: None,
            sae_lr: None,
        }
    }
}

/// What `train-denoiser` ranks runs by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectBy {
    /// Validation loss of the SAE.
    ValLoss,
    /// RRMSE_t of the validation EOG+EMG level windows, linear path included.
    ValWindows,
}

impl SelectBy {
    /// A run's score under this rule (lower is better).
    pub fn score(self, r: &SeedResult) -> f64 {
        match self {
            Self::ValLoss => r.val_loss,
            Self::ValWindows => r.val_windows_rrmse_t.unwrap_or(f64::NAN),
        }
    }

    /// Mean score of the runs at `alpha`.
    pub fn arm_mean(self, results: &[SeedResult], alpha: f64) -> f64 {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.alpha == alpha)
            .map(|r| self.score(r))
            .collect();
        mean_std(&v).0
    }
}

/// Validation windows per validation segment when `--val-per-segment` is not given.
pub fn default_val_per_segment(per_segment: usize) -> usize {
    per_segment.div_ceil(4)
}

/// Windows and datasets derived from a corpus for one model width.
pub struct TrainData {
    /// Training pairs (model-normalised).
    pub train: Dataset,
    /// Validation pairs (model-normalised).
    pub val: Dataset,
    /// Validation windows (2 s, EOG + EMG at the test levels), for hop choice.
    pub val_windows: Vec<Window>,
    /// Test windows (2 s, EOG + EMG at the test levels).
    pub test_windows: Vec<Window>,
    /// Validation windows with no artifact (2 s, one per segment): what the model does to
    /// clean EEG.
    pub val_clean: Vec<Window>,
    /// Test windows with no artifact (2 s, one per segment).
    pub test_clean: Vec<Window>,
    /// How the pairs were normalised (recorded in every model trained on them).
    pub normalisation: Normalisation,
}

/// Builds the training data for width `d_in` from `corpus`.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    corpus: &Corpus,
    d_in: usize,
    mix_len: usize,
    per_segment: usize,
    val_per_segment: usize,
    max_eval_segments: usize,
    clean_fraction: f64,
    normalisation: Normalisation,
) -> Result<TrainData, EvalError> {
    let seed = corpus.config.seed;
    let (ti, tt) = corpus.training_pairs(
        Split::Train,
        d_in,
        mix_len,
        per_segment,
        &DEFAULT_MIX,
        clean_fraction,
        normalisation,
        seed,
    )?;
    let (vi, vt) = corpus.training_pairs(
        Split::Val,
        d_in,
        mix_len,
        val_per_segment,
        &DEFAULT_MIX,
        clean_fraction,
        normalisation,
        seed ^ 0xA1,
    )?;
    let seg = corpus.config.seg_len;
    let mut val_windows = Vec::new();
    let mut test_windows = Vec::new();
    for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
        val_windows.extend(corpus.level_windows(Split::Val, kind, seg, max_eval_segments)?);
        test_windows.extend(corpus.level_windows(Split::Test, kind, seg, max_eval_segments)?);
    }
    let val_clean = corpus.clean_windows(Split::Val, seg, max_eval_segments)?;
    let test_clean = corpus.clean_windows(Split::Test, seg, max_eval_segments)?;
    Ok(TrainData {
        train: Dataset {
            inputs: ti,
            targets: tt,
            dim: d_in,
        },
        val: Dataset {
            inputs: vi,
            targets: vt,
            dim: d_in,
        },
        val_windows,
        test_windows,
        val_clean,
        test_clean,
        normalisation,
    })
}

/// Mean (RRMSE_t, CC) of the SAE `model` over `windows`, the windows spread over threads
/// (each with its own scratch) and summed in window order, so the result is that of
/// [`mean_quality`].
pub fn sae_quality(model: &Model, windows: &[Window]) -> Result<(f64, f64), EvalError> {
    use rayon::prelude::*;
    let per: Vec<Result<(f64, f64), EvalError>> = windows
        .par_iter()
        .map_init(
            || SaeMethod::new("sae", model.clone()),
            |m, w| {
                let y = m.denoise(&w.noisy)?;
                Ok((
                    super::metrics::rrmse_t(&y, &w.clean)?,
                    super::metrics::cc(&y, &w.clean)?,
                ))
            },
        )
        .collect();
    let (mut r, mut c) = (0.0, 0.0);
    for p in per {
        let (a, b) = p?;
        r += a;
        c += b;
    }
    let n = windows.len().max(1) as f64;
    Ok((r / n, c / n))
}

/// Mean (RRMSE_t, CC) of `m` over `windows`.
pub fn mean_quality(m: &mut dyn Method, windows: &[Window]) -> Result<(f64, f64), EvalError> {
    let (mut r, mut c) = (0.0, 0.0);
    for w in windows {
        let y = m.denoise(&w.noisy)?;
        r += super::metrics::rrmse_t(&y, &w.clean)?;
        c += super::metrics::cc(&y, &w.clean)?;
    }
    let n = windows.len().max(1) as f64;
    Ok((r / n, c / n))
}

/// The model metadata for a trained config (provenance is canonical: it depends only on the
/// settings, so re-running the same settings gives the same bytes).
pub fn meta_for(
    cfg: &TrainConfig,
    normalisation: Normalisation,
    (hop, ola): (usize, OlaShape),
    fs: f64,
    provenance: String,
) -> ModelMeta {
    ModelMeta {
        d_in: cfg.d_in,
        d_sae: cfg.d_sae,
        k: cfg.k,
        hop,
        activation: match cfg.activation {
            ActivationKind::TopkRelu => Activation::TopkRelu,
            ActivationKind::TopkSigned => Activation::TopkSigned,
        },
        normalisation,
        sample_rate_hz: fs as f32,
        channel_type: "EEG".into(),
        provenance,
        ola,
        blend: None,
    }
}

/// One trained run: its selected SAE as a model, and its row in the comparison.
#[derive(Clone, Debug)]
pub struct Run {
    /// Metadata (hop chosen on validation).
    pub meta: ModelMeta,
    /// Tensors of the SAE with the lowest validation loss.
    pub tensors: ModelTensors,
    /// The run's numbers.
    pub result: SeedResult,
    /// Mean RRMSE_t on the validation EOG+EMG level windows at the chosen hop (NaN when
    /// no hop was tried).
    pub val_windows_rrmse_t: f64,
}

/// How [`train_one`] drives the trainer.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Training backend.
    pub backend: BackendKind,
    /// Gradient path (`None`: the backend's default).
    pub grad_path: Option<GradPath>,
    /// Early stopping period ([`crate::train::trainer::TrainOptions::select_every`]).
    pub select_every: Option<usize>,
    /// Fit the gated linear path ([`crate::core::Skip`]) with this many taps for each of
    /// these gates and keep the one validation prefers (or none); `None`: no path.
    pub skip: Option<(usize, Vec<f32>)>,
    /// Energy floor of the relative loss if the SAE was trained with it (weights the fit).
    pub relative_eps: Option<f64>,
    /// Overlap-add taper of the exported model (hops and gates are scored with it).
    pub ola: OlaShape,
    /// Train an SAE behind a convolutional front end of this shape instead (see
    /// [`TrainDenoiserOptions::front`]).
    pub front: Option<FrontShape>,
    /// Weight the front-end run's loss by the taper `ola` ([`TrainDenoiserOptions::loss_taper`]).
    pub loss_taper: bool,
    /// The SAE a front-end run starts from ([`TrainDenoiserOptions::init_sae`]).
    pub init_sae: Option<ModelTensors>,
    /// The front-end run's SAE learning rate ([`TrainDenoiserOptions::sae_lr`]).
    pub sae_lr: Option<f64>,
}

/// Trains one configuration, selects the best SAE and hop on validation, measures test;
/// `on_event` hears each linear-path gate tried.
pub fn train_one(
    data: &TrainData,
    cfg: &TrainConfig,
    run: RunSettings,
    fs: f64,
    hops: &[usize],
    provenance: &str,
    on_event: &mut dyn FnMut(DenoiserEvent<'_>),
) -> Result<Run, EvalError> {
    let t0 = Instant::now();
    for (d, what) in [(&data.train, "training set"), (&data.val, "validation set")] {
        d.validate(what)
            .map_err(|e| EvalError::Train(e.to_string()))?;
    }
    let (tensors, val_loss, best_step, dead_at) = match run.front {
        None => {
            let mut forward = |e: crate::train::TrainEvent<'_>| on_event(DenoiserEvent::Train(e));
            let opts = crate::train::trainer::TrainOptions {
                grad_path: run.grad_path,
                select_every: run.select_every,
                progress: Some(&mut forward),
                ..Default::default()
            };
            let out =
                crate::train::train_with(cfg, &mut &data.train, &mut &data.val, run.backend, opts)
                    .map_err(|e| EvalError::Train(e.to_string()))?;
            let best = out.best;
            (
                crate::train::export::model_tensors(
                    &out.saes[best],
                    cfg.residual,
                    cfg.residual_gate,
                ),
                out.val_loss[best] as f64,
                out.best_step[best],
                Vec::new(),
            )
        }
        Some(front) => train_front(data, cfg, front, &run, on_event)?,
    };
    let secs = t0.elapsed().as_secs_f64();
    let meta_at = |hop| {
        meta_for(
            cfg,
            data.normalisation,
            (hop, run.ola),
            fs,
            provenance.to_string(),
        )
    };
    let mut best_hop: Option<(f64, usize)> = None;
    for &hop in hops {
        let meta = meta_at(hop);
        let model =
            Model::from_tensors(&meta, &tensors).map_err(|e| EvalError::Model(e.to_string()))?;
        let (r, _) = sae_quality(&model, &data.val_windows)?;
        if best_hop.is_none_or(|b| r < b.0) {
            best_hop = Some((r, hop));
        }
    }
    let meta = meta_at(best_hop.map_or(cfg.d_in / 2, |b| b.1));
    let mut model =
        Model::from_tensors(&meta, &tensors).map_err(|e| EvalError::Model(e.to_string()))?;
    let mut tensors = tensors;
    let mut val_windows = best_hop.map_or(f64::NAN, |b| b.0);
    if let Some((taps, gates)) = &run.skip {
        // A residual model's path must stay open where the SAE learnt corrections (it carries
        // the input there), so its only candidate is a fitted FIR under the same gate in place
        // of the identity.
        let bare = ModelTensors {
            skip: None,
            ..tensors.clone()
        };
        let bare =
            Model::from_tensors(&meta, &bare).map_err(|e| EvalError::Model(e.to_string()))?;
        let gates = if cfg.residual {
            vec![
                cfg.residual_gate
                    .unwrap_or(crate::train::export::ALWAYS_OPEN),
            ]
        } else {
            gates.clone()
        };
        let fits = crate::train::skip::fit_skips(
            &bare.view().sae(),
            &data.train.inputs,
            &data.train.targets,
            *taps,
            &gates,
            run.relative_eps,
        );
        for fit in fits {
            let t = ModelTensors {
                skip: Some(fit),
                ..tensors.clone()
            };
            let m = Model::from_tensors(&meta, &t).map_err(|e| EvalError::Model(e.to_string()))?;
            let (r, _) = sae_quality(&m, &data.val_windows)?;
            on_event(DenoiserEvent::Gate {
                gate: t.skip.as_ref().map_or(0.0, |s| s.gate),
                rrmse_t: r,
                best_before: val_windows,
            });
            if val_windows.is_nan() || r < val_windows {
                val_windows = r;
                tensors = t;
                model = m;
            }
        }
    }
    let (tr, tc) = sae_quality(&model, &data.test_windows)?;
    let pass = |w: &[Window]| -> Result<Option<f64>, EvalError> {
        Ok((!w.is_empty())
            .then(|| sae_quality(&model, w))
            .transpose()?
            .map(|q| q.0))
    };
    let result = SeedResult {
        alpha: cfg.mfr_alpha,
        seed: cfg.seed,
        val_loss,
        test_rrmse_t: tr,
        test_cc: tc,
        train_seconds: secs,
        windows_per_s: (cfg.steps * cfg.batch_size) as f64 / secs.max(1e-9),
        step: run.select_every.map(|_| best_step),
        val_windows_rrmse_t: run.skip.as_ref().map(|_| val_windows),
        skip_gate: tensors.skip.as_ref().map(|s| s.gate),
        val_clean_rrmse_t: pass(&data.val_clean)?,
        test_clean_rrmse_t: pass(&data.test_clean)?,
        dead_at,
    };
    Ok(Run {
        meta,
        tensors,
        result,
        val_windows_rrmse_t: val_windows,
    })
}

/// Trains the SAE of `cfg` behind a front end of shape `front` by the peer loop (autodiff,
/// Adam, the relative loss, `cfg`'s steps, batch, learning rate and seed; `run`'s backend,
/// loss taper, starting SAE and SAE learning rate). Returns its tensors, its validation loss,
/// the final step and the steps at which dead initialisations were restarted.
fn train_front(
    data: &TrainData,
    cfg: &TrainConfig,
    front: FrontShape,
    run: &RunSettings,
    on_event: &mut dyn FnMut(DenoiserEvent<'_>),
) -> Result<(ModelTensors, f64, usize, Vec<usize>), EvalError> {
    let device = run
        .backend
        .device()
        .map_err(|e| EvalError::Train(e.to_string()))?;
    let peer = super::cnn::CnnConfig {
        arch: super::cnn::PeerArch::Sae {
            d_sae: cfg.d_sae,
            k: cfg.k,
            width: front.width,
            depth: front.depth,
        },
        width: front.width,
        kernel: front.kernel,
        steps: cfg.steps,
        batch: cfg.batch_size,
        lr: cfg.lr,
        relative_eps: cfg.relative_eps,
        seed: cfg.seed,
        path_taps: 0,
        loss_taper: run.loss_taper.then_some(run.ola),
        init_sae: run.init_sae.clone(),
        sae_lr: run.sae_lr,
        ..super::cnn::CnnConfig::default_peer()
    };
    use crate::train::TrainEvent;
    on_event(DenoiserEvent::Train(TrainEvent::Start {
        step: 0,
        steps: cfg.steps,
    }));
    let trained = super::cnn::train_cnn(&peer, &data.train, &data.val, &device, |step, _| {
        on_event(DenoiserEvent::Train(TrainEvent::Step(step)));
    });
    on_event(DenoiserEvent::Train(TrainEvent::Done));
    let (net, r) = trained?;
    let tensors = net
        .model_tensors()
        .ok_or_else(|| EvalError::Train("the front-end SAE exported no tensors".into()))?;
    Ok((tensors, r.val_loss_net, cfg.steps, r.dead_at))
}

/// Loads the recordings named on the command line.
pub fn load_recordings(paths: &[PathBuf]) -> Result<Vec<Recording>, EvalError> {
    paths.iter().map(|p| Recording::from_edf(p)).collect()
}

/// Builds the corpus for `fs` from EDFs (or EEGdenoiseNet when given).
pub fn build_corpus(
    fs: f64,
    edf: &[PathBuf],
    model_segments: usize,
    data_seed: u64,
    eegdenoisenet: Option<&Path>,
) -> Result<Corpus, EvalError> {
    let mut cfg = CorpusConfig::at_rate(fs);
    cfg.seed = data_seed;
    cfg.n_model_segments = model_segments;
    match eegdenoisenet {
        Some(dir) => Corpus::from_eegdenoisenet(cfg, &EegDenoiseNet::load(dir)?),
        None => Corpus::build(cfg, &load_recordings(edf)?),
    }
}

/// FNV-1a 64-bit hash, to print a short content fingerprint of a model file.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The training config of one (alpha, seed) run of `a`.
pub fn config_of(a: &TrainDenoiserOptions, d_in: usize, alpha: f64, seed: u64) -> TrainConfig {
    TrainConfig::new(d_in, a.d_sae, a.k)
        .with_n_saes(a.n_saes)
        .with_steps(a.steps)
        .with_batch_size(a.batch_size)
        .with_lr(a.lr)
        .with_k_aux((d_in / 2).min(a.d_sae))
        .with_mfr_alpha(alpha)
        .with_mfr_warmup((a.steps / 10).max(1))
        .with_seed(seed)
        .with_relative_loss(a.relative_loss)
        .with_relative_eps(a.relative_eps)
        .with_residual(a.residual)
        .with_residual_gate(a.residual_gate)
        .with_log_every(a.steps.max(1))
}

fn fmt_list<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// What [`run`] reports while it works (the library prints nothing).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum DenoiserEvent<'a> {
    /// The corpus is being built at `fs` Hz.
    BuildingCorpus {
        /// Sample rate.
        fs: f64,
    },
    /// The corpus and training data are ready.
    CorpusReady {
        /// Training, validation and test segments.
        segments: [usize; 3],
        /// Training windows.
        windows: usize,
        /// Window length.
        d_in: usize,
    },
    /// One (alpha, seed) run starts.
    Training {
        /// MFR weight.
        alpha: f64,
        /// Training seed.
        seed: u64,
    },
    /// A linear-path gate was tried on the validation windows.
    Gate {
        /// The gate.
        gate: f32,
        /// Mean validation-window RRMSE_t with it.
        rrmse_t: f64,
        /// The best before it (NaN when no hop was tried).
        best_before: f64,
    },
    /// The trainer's progress within the current run (start, steps done, end); a front-end
    /// run reports every 500 steps and starts again after a restart.
    Train(crate::train::TrainEvent<'a>),
    /// One run is done.
    Trained(&'a Run),
    /// The shipped model file was written.
    ModelWritten {
        /// Its path.
        path: &'a Path,
        /// Its size.
        bytes: usize,
        /// Its FNV-1a 64 fingerprint.
        fnv1a64: u64,
    },
}

/// Files a [`run`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct DenoiserReport {
    /// The shipped model.
    pub model: PathBuf,
    /// Its model card (`.md`).
    pub card: PathBuf,
    /// Every run's numbers (`.runs.json`).
    pub runs: PathBuf,
}

/// Sizes derived from the options and checked before any work.
struct Plan {
    fs: f64,
    d_in: usize,
    hops: Vec<usize>,
    alphas: Vec<f64>,
}

impl Plan {
    fn new(a: &TrainDenoiserOptions) -> Result<Self, EvalError> {
        let fs = a.sample_rate;
        let d_in = a.d_in.unwrap_or(fs.round() as usize);
        let hops: Vec<usize> = if a.hops.is_empty() {
            vec![d_in / 2, d_in / 4]
        } else {
            a.hops.clone()
        };
        // Any hop up to the window works: the OLA window is normalised per phase.
        if hops.iter().any(|&h| h == 0 || h > d_in) {
            return Err(EvalError::Invalid(format!(
                "hops must be in 1..={d_in} (the window): {hops:?}"
            )));
        }
        let alphas = if a.sweep_alpha.is_empty() {
            vec![a.mfr_alpha]
        } else {
            a.sweep_alpha.clone()
        };
        if a.select_by == SelectBy::ValWindows && a.skip_gates.is_empty() {
            return Err(EvalError::Invalid(
                "--select-by val-windows needs --skip-gates (the runs' validation-window scores are measured while fitting the linear path)".into(),
            ));
        }
        if a.skip_taps.is_multiple_of(2) || a.skip_taps > d_in {
            return Err(EvalError::Invalid(format!(
                "--skip-taps must be odd and at most the window ({d_in}): {}",
                a.skip_taps
            )));
        }
        if a.skip_gates.iter().any(|g| !(g.is_finite() && *g >= 0.0)) {
            return Err(EvalError::Invalid(format!(
                "--skip-gates must be finite and >= 0: {:?}",
                a.skip_gates
            )));
        }
        if a.seeds.is_empty() {
            return Err(EvalError::Invalid("--seeds needs at least one seed".into()));
        }
        if let Some(f) = a.front {
            // The front-end trainer is the peer loop: one SAE, relative loss, no MFR/AuxK.
            if a.n_saes != 1
                || alphas.iter().any(|&x| x != 0.0)
                || !a.relative_loss
                || a.residual
                || a.select_every.is_some()
                || a.grad_path.is_some()
            {
                return Err(EvalError::Invalid(format!(
                    "--front {f} trains one SAE with the relative loss: it needs --n-saes 1, --mfr-alpha 0 (no sweep), --relative-loss, and no --residual, --select-every or --grad-path"
                )));
            }
            if a.sae_lr.is_some_and(|l| !(l.is_finite() && l >= 0.0)) {
                return Err(EvalError::Invalid(format!(
                    "--sae-lr must be finite and >= 0: {:?}",
                    a.sae_lr
                )));
            }
            if f.kernel > d_in {
                return Err(EvalError::Invalid(format!(
                    "--front {f}: kernel longer than the window ({d_in})"
                )));
            }
        } else if a.loss_taper {
            return Err(EvalError::Invalid(
                "--loss-taper weights the front-end trainer's loss: it needs --front".into(),
            ));
        } else if a.init_sae.is_some() {
            return Err(EvalError::Invalid(
                "--init-sae starts the front-end trainer's SAE: it needs --front".into(),
            ));
        } else if a.sae_lr.is_some() {
            return Err(EvalError::Invalid(
                "--sae-lr sets the front-end trainer's SAE learning rate: it needs --front".into(),
            ));
        }
        Ok(Self {
            fs,
            d_in,
            hops,
            alphas,
        })
    }
}

/// Builds the corpus and cuts the training data from it.
fn corpus_and_data(
    a: &TrainDenoiserOptions,
    plan: &Plan,
    on_event: &mut dyn FnMut(DenoiserEvent<'_>),
) -> Result<(Corpus, TrainData), EvalError> {
    let (fs, d_in) = (plan.fs, plan.d_in);
    on_event(DenoiserEvent::BuildingCorpus { fs });
    let corpus = match &a.real {
        Some(dir) => {
            let mut cfg = CorpusConfig::at_rate(fs);
            cfg.seed = a.data_seed;
            cfg.n_model_segments = a.model_segments;
            super::real::RealSet::load(dir)?.corpus(cfg, &load_recordings(&a.edf)?)?
        }
        None => build_corpus(
            fs,
            &a.edf,
            a.model_segments,
            a.data_seed,
            a.eegdenoisenet.as_deref(),
        )?,
    };
    let data = prepare(
        &corpus,
        d_in,
        a.mix_len.unwrap_or(d_in),
        a.per_segment,
        a.val_per_segment
            .unwrap_or_else(|| default_val_per_segment(a.per_segment)),
        usize::MAX,
        a.clean_fraction,
        a.normalisation,
    )?;
    on_event(DenoiserEvent::CorpusReady {
        segments: [
            corpus.splits.train.len(),
            corpus.splits.val.len(),
            corpus.splits.test.len(),
        ],
        windows: data.train.inputs.len() / d_in,
        d_in,
    });
    Ok((corpus, data))
}

/// One line naming the training data, for provenance and the card.
fn data_description(a: &TrainDenoiserOptions) -> String {
    match &a.eegdenoisenet {
        Some(d) => format!("EEGdenoiseNet files in {}", d.display()),
        None => format!(
            "{}{} + {} physiological-model segments, data seed {}",
            a.edf
                .iter()
                .map(|p| p
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(" + "),
            a.real.as_ref().map_or_else(String::new, |d| format!(
                " + the EEG recordings of {}",
                d.display()
            )),
            a.model_segments,
            a.data_seed
        ),
    }
}

/// Trains every (alpha, seed) of the sweep.
fn train_all(
    a: &TrainDenoiserOptions,
    plan: &Plan,
    data: &TrainData,
    data_desc: &str,
    init_sae: Option<&ModelTensors>,
    on_event: &mut dyn FnMut(DenoiserEvent<'_>),
) -> Result<Vec<Run>, EvalError> {
    let (fs, d_in) = (plan.fs, plan.d_in);
    let mut runs: Vec<Run> = Vec::new();
    for &alpha in &plan.alphas {
        for &seed in &a.seeds {
            let cfg = config_of(a, d_in, alpha, seed);
            let prov = format!(
                "mfr-eeg train-denoiser: {data_desc}; fs {fs} Hz, d_in {d_in}, d_sae {}, k {}, n_saes {}, mfr_alpha {alpha}, seed {seed}, steps {}, batch {}, lr {}, per_segment {}",
                a.d_sae, a.k, a.n_saes, a.steps, a.batch_size, a.lr, a.per_segment
            ) + &a
                .mix_len
                .map_or_else(String::new, |m| format!(", mix_len {m}"))
                + &a.front.map_or_else(String::new, |f| format!(", front {f}"))
                + &a.init_sae.as_ref().map_or_else(String::new, |p| {
                    format!(", SAE started from {}", p.display())
                })
                + &a.sae_lr
                    .map_or_else(String::new, |l| format!(", SAE lr {l}"));
            on_event(DenoiserEvent::Training { alpha, seed });
            let r = train_one(
                data,
                &cfg,
                RunSettings {
                    backend: a.backend,
                    grad_path: a.grad_path,
                    select_every: a.select_every,
                    skip: (!a.skip_gates.is_empty()).then(|| (a.skip_taps, a.skip_gates.clone())),
                    relative_eps: a.relative_loss.then_some(a.relative_eps),
                    ola: a.ola,
                    front: a.front,
                    loss_taper: a.loss_taper,
                    init_sae: init_sae.cloned(),
                    sae_lr: a.sae_lr,
                },
                fs,
                &plan.hops,
                &prov,
                on_event,
            )?;
            on_event(DenoiserEvent::Trained(&r));
            runs.push(r);
        }
    }
    Ok(runs)
}

/// The run to ship: the arm (alpha) with the best mean score, then its best seed.
fn choose<'r>(runs: &'r [Run], plan: &Plan, by: SelectBy) -> Result<&'r Run, EvalError> {
    let results: Vec<SeedResult> = runs.iter().map(|r| r.result.clone()).collect();
    let chosen_alpha = summarise_arms(&results)
        .iter()
        .min_by(|x, y| {
            by.arm_mean(&results, x.alpha)
                .total_cmp(&by.arm_mean(&results, y.alpha))
        })
        .map_or(plan.alphas[0], |x| x.alpha);
    runs.iter()
        .filter(|r| r.result.alpha == chosen_alpha)
        .min_by(|x, y| by.score(&x.result).total_cmp(&by.score(&y.result)))
        .ok_or_else(|| EvalError::Invalid("no run to ship".into()))
}

/// Writes the shipped run to `a.out` (int8 when asked) and returns the file's bytes.
fn write_shipped(a: &TrainDenoiserOptions, ship: &Run) -> Result<Vec<u8>, EvalError> {
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| EvalError::Io {
            path: dir.into(),
            source,
        })?;
    }
    let meta = &ship.meta;
    if a.int8 {
        let q = crate::model::quantize::quantize_tensors(meta, &ship.tensors);
        crate::model::write_model_int8(&a.out, meta, &q)
            .map_err(|e| EvalError::Model(e.to_string()))?;
    } else {
        crate::model::write_model(&a.out, meta, &ship.tensors)
            .map_err(|e| EvalError::Model(e.to_string()))?;
    }
    std::fs::read(&a.out).map_err(|source| EvalError::Io {
        path: a.out.clone(),
        source,
    })
}

/// The single-run command (as a model card prints it) that trains run (`alpha`, `seed`) of
/// the sweep `a` describes: with the same binary and backend it rebuilds that run's file bit
/// for bit.
pub fn regen_command(a: &TrainDenoiserOptions, alpha: f64, seed: u64) -> Result<String, EvalError> {
    let plan = Plan::new(a)?;
    Ok(single_run_command(a, &plan, alpha, seed))
}

fn single_run_command(a: &TrainDenoiserOptions, plan: &Plan, alpha: f64, seed: u64) -> String {
    format!(
        "cargo run --release --features train -- train-denoiser --out {} --sample-rate {} --d-in {} --d-sae {} --k {} --n-saes {} --hops {}{} --mfr-alpha {} --seeds {} --steps {} --batch-size {} --lr {} --per-segment {}{}{} --model-segments {} --data-seed {} --backend {}{} --normalisation {}{}{}{}{}{}",
        a.out.display(),
        plan.fs,
        plan.d_in,
        a.d_sae,
        a.k,
        a.n_saes,
        fmt_list(&plan.hops),
        match a.ola {
            OlaShape::Hann => String::new(),
            other => format!(" --ola {}", other.name()),
        },
        alpha,
        seed,
        a.steps,
        a.batch_size,
        a.lr,
        a.per_segment,
        a.val_per_segment
            .map_or_else(String::new, |v| format!(" --val-per-segment {v}"))
            + &a.mix_len
                .map_or_else(String::new, |m| format!(" --mix-len {m}")),
        a.select_every
            .map_or_else(String::new, |v| format!(" --select-every {v}"))
            + &if a.skip_gates.is_empty() {
                String::new()
            } else {
                format!(
                    " --skip-gates {} --skip-taps {}{}",
                    fmt_list(&a.skip_gates),
                    a.skip_taps,
                    if a.select_by == SelectBy::ValWindows {
                        " --select-by val-windows"
                    } else {
                        ""
                    }
                )
            },
        a.model_segments,
        a.data_seed,
        a.backend.name(),
        a.grad_path
            .map_or_else(String::new, |p| format!(" --grad-path {}", p.name())),
        // The CLI spells the metadata name with dashes.
        a.normalisation.as_str().replace('_', "-"),
        if a.relative_loss {
            format!(" --relative-loss --relative-eps {}", a.relative_eps)
        } else {
            String::new()
        },
        if a.residual {
            " --residual".to_string()
                + &a.residual_gate
                    .map_or_else(String::new, |g| format!(" --residual-gate {g}"))
        } else {
            String::new()
        } + &if a.clean_fraction > 0.0 {
            format!(" --clean-fraction {}", a.clean_fraction)
        } else {
            String::new()
        },
        a.front
            .map_or_else(String::new, |f| format!(" --front {f}"))
            + if a.loss_taper { " --loss-taper" } else { "" }
            + &a.init_sae
                .as_ref()
                .map_or_else(String::new, |p| format!(" --init-sae {}", p.display()))
            + &a.sae_lr
                .map_or_else(String::new, |l| format!(" --sae-lr {l}"))
            + &a.edf
                .iter()
                .map(|p| format!(" --edf {}", p.display()))
                .collect::<String>(),
        a.real
            .as_ref()
            .map_or_else(String::new, |d| format!(" --real {}", d.display()))
            + &a.eegdenoisenet
                .as_ref()
                .map_or_else(String::new, |d| format!(" --eegdenoisenet {}", d.display())),
        if a.int8 { " --int8" } else { "" }
    )
}

/// Trains the sweep, ships the chosen run to `a.out` and writes its model card (`.md`) and
/// every run's numbers (`.runs.json`) beside it; `on_event` hears the progress.
pub fn run(
    a: &TrainDenoiserOptions,
    on_event: &mut dyn FnMut(DenoiserEvent<'_>),
) -> Result<DenoiserReport, EvalError> {
    let plan = Plan::new(a)?;
    // Read before the corpus is built, so a bad file fails at once.
    let init_sae = a
        .init_sae
        .as_deref()
        .map(|p| {
            Model::load(p)
                .map(|m| m.tensors())
                .map_err(|e| EvalError::Model(format!("--init-sae: {e}")))
        })
        .transpose()?;
    let (corpus, data) = corpus_and_data(a, &plan, on_event)?;
    let data_desc = data_description(a);
    let runs = train_all(a, &plan, &data, &data_desc, init_sae.as_ref(), on_event)?;
    let ship = choose(&runs, &plan, a.select_by)?;
    let bytes = write_shipped(a, ship)?;
    on_event(DenoiserEvent::ModelWritten {
        path: &a.out,
        bytes: bytes.len(),
        fnv1a64: fnv1a64(&bytes),
    });
    // Card: the shipped file on the test split beside the baselines.
    let shipped = Model::from_bytes(bytes.clone()).map_err(|e| EvalError::Model(e.to_string()))?;
    let regen = single_run_command(a, &plan, ship.result.alpha, ship.result.seed);
    let sweep_cmd = regen.replace(
        &format!(
            "--mfr-alpha {} --seeds {}",
            ship.result.alpha, ship.result.seed
        ),
        &format!(
            "--sweep-alpha {} --seeds {}",
            fmt_list(&plan.alphas),
            fmt_list(&a.seeds)
        ),
    );
    let results: Vec<SeedResult> = runs.iter().map(|r| r.result.clone()).collect();
    let card = Card {
        args: a,
        fs: plan.fs,
        corpus: &corpus,
        shipped: &shipped,
        bytes: &bytes,
        ship: &ship.result,
        results: &results,
        regen: &regen,
        sweep_cmd: &sweep_cmd,
        data_desc: &data_desc,
    };
    let md = card.render()?;
    let card_path = a.out.with_extension("md");
    super::npy::write_atomic(&card_path, md.as_bytes())?;
    let json =
        serde_json::to_string_pretty(&results).map_err(|e| EvalError::Invalid(e.to_string()))?;
    let runs_path = a.out.with_extension("runs.json");
    super::npy::write_atomic(&runs_path, json.as_bytes())?;
    Ok(DenoiserReport {
        model: a.out.clone(),
        card: card_path,
        runs: runs_path,
    })
}

struct Card<'a> {
    args: &'a TrainDenoiserOptions,
    fs: f64,
    corpus: &'a Corpus,
    shipped: &'a Model,
    bytes: &'a [u8],
    ship: &'a SeedResult,
    results: &'a [SeedResult],
    regen: &'a str,
    sweep_cmd: &'a str,
    data_desc: &'a str,
}

impl Card<'_> {
    /// The card in markdown: header, training, MFR sweep, test split, regeneration, limits.
    fn render(&self) -> Result<String, EvalError> {
        let name = self
            .args
            .out
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let ev = self.evaluate_test_split(&name)?;
        let mut s = String::new();
        self.write_header(&mut s, &name);
        self.write_training(&mut s);
        self.write_sweep(&mut s);
        write_test_split(&mut s, &ev, &name);
        self.write_regeneration(&mut s);
        self.write_limits(&mut s);
        Ok(s)
    }

    /// The shipped model beside the band-pass (tuned on the EOG+EMG validation windows) and
    /// the wavelet baseline, on every test window.
    fn evaluate_test_split(&self, name: &str) -> Result<Evaluation, EvalError> {
        let val: Vec<Window> = [ArtifactKind::Eog, ArtifactKind::Emg]
            .iter()
            .map(|&k| {
                self.corpus
                    .level_windows(Split::Val, k, self.corpus.config.seg_len, usize::MAX)
            })
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        let copy =
            Model::from_bytes(self.bytes.to_vec()).map_err(|e| EvalError::Model(e.to_string()))?;
        let mut methods: Vec<Box<dyn Method>> = vec![
            Box::new(super::baselines::tune_bandpass(
                &val,
                Some(self.corpus.config.line_hz),
                self.fs,
            )?),
            Box::new(super::baselines::wavelet::WaveletDenoiser::default()),
            Box::new(SaeMethod::new(name.to_string(), copy)),
        ];
        let mut windows = Vec::new();
        for kind in ArtifactKind::ALL {
            windows.extend(self.corpus.level_windows(
                Split::Test,
                kind,
                self.corpus.config.seg_len,
                usize::MAX,
            )?);
        }
        super::harness::evaluate(&mut methods, &windows, self.fs)
    }

    /// Title and the one-paragraph description of the model file.
    fn write_header(&self, s: &mut String, name: &str) {
        let meta = self.shipped.meta();
        let _ = writeln!(s, "# Model card: `{name}`\n");
        let _ = writeln!(
            s,
            "Denoising TopK sparse autoencoder for **one EEG channel**, {}-sample windows ({:.2} s) at **{} Hz**, hop {} (overlap-add{}), d_sae {}, k {}, activation {}, normalisation `{}`. {} bytes{}. Content fingerprint (FNV-1a 64): `{:016x}`.\n",
            meta.d_in,
            meta.d_in as f64 / self.fs,
            meta.sample_rate_hz,
            meta.hop,
            match meta.ola {
                OlaShape::Hann => String::new(),
                other => format!(", {} taper", other.name()),
            },
            meta.d_sae,
            meta.k,
            meta.activation.as_str(),
            meta.normalisation.as_str(),
            self.bytes.len(),
            if self.shipped.is_int8() {
                " (int8 weights with per-latent f32 scales)"
            } else {
                " (f32 weights)"
            },
            fnv1a64(self.bytes)
        );
    }

    /// Data, artifacts, trainer settings, the linear path and the selected run.
    fn write_training(&self, s: &mut String) {
        let a = self.args;
        let _ = writeln!(s, "## Training\n");
        let _ = writeln!(
            s,
            "- Data: {}. Clean EEG segments of 2 s, split by time span (train/val/test {}/{}/{} segments, never sharing a source segment); low-artifact rule: per channel, reject segments whose peak-to-peak, 1-4 Hz or 30-80 Hz power exceeds median + 3·1.4826·MAD, or peak-to-peak > 500 µV.",
            self.data_desc,
            self.corpus.splits.train.len(),
            self.corpus.splits.val.len(),
            self.corpus.splits.test.len()
        );
        for (n, r) in &self.corpus.selection {
            let _ = writeln!(
                s,
                "  - {n}: kept {} segments, rejected {}.",
                r.kept, r.rejected
            );
        }
        let _ = writeln!(
            s,
            "- Artifacts: generated EOG (blinks/saccades), EMG (20-150 Hz bursts), line noise, electrode pops, drift and mixtures; EEGdenoiseNet mixing (SNR -7..2 dB EOG, -7..4 dB others){}, windows normalised like the core does at inference. {} training windows{}.",
            a.mix_len.map_or_else(String::new, |m| format!(
                " over {m} samples ({:.2} s), each training window a random {}-sample crop of its mixture",
                m as f64 / self.fs,
                self.shipped.meta().d_in
            )),
            a.per_segment * self.corpus.splits.train.len(),
            if a.clean_fraction > 0.0 {
                format!(
                    ", a share {} of them (and of the validation pairs) with no artifact, the target then equal to the input",
                    a.clean_fraction
                )
            } else {
                String::new()
            }
        );
        if let Some(dir) = &self.args.real {
            let _ = writeln!(
                s,
                "- Real-data set {} (`scripts/real_data.py`): its EEG recordings join the splits whole (no recording in two splits; the per-recording counts above include them), and its recorded EMG replaces the generated EMG in every split (EMG epochs of each split from that split's EMG recordings only).",
                dir.display()
            );
        }
        if let Some(f) = a.front {
            let _ = writeln!(
                s,
                "- Front end: a residual convolutional stack before the encoder, `g = x + conv1x1(relu(conv(... relu(conv(x)) ...)))`, {} hidden layers of {} channels with kernel {} ({} parameters, {} multiply-adds per window), its last layer started at zero so training starts from the plain SAE{}. The SAE encodes `g`; the decoder is the usual unit-norm dictionary and the linear path still acts on the normalised window.",
                f.depth,
                f.width,
                f.kernel,
                f.n_params(),
                f.macs_per_window(self.shipped.view().meta().d_in),
                a.init_sae.as_ref().map_or_else(String::new, |p| format!(
                    ", here the trained SAE of `{}` (its encoder, decoder and biases)",
                    p.display()
                ))
            );
            let _ = writeln!(
                s,
                "- Trainer: one TopK SAE with its front end, trained end to end by autodiff (burn), Adam, relative (per-window) squared-error loss with floor {}{}; {} steps, batch {}, lr {}{}, backend {}. The final weights are exported; the hop is chosen on validation windows.",
                a.relative_eps,
                if a.loss_taper {
                    format!(
                        ", each sample weighted by the {} overlap-add taper (mean 1)",
                        a.ola.name()
                    )
                } else {
                    String::new()
                },
                a.steps,
                a.batch_size,
                a.lr,
                a.sae_lr.map_or_else(String::new, |l| format!(
                    " for the front and {l} for the SAE (same schedule)"
                )),
                a.backend.name()
            );
        } else {
            let _ = writeln!(
                s,
                "- Trainer: {} TopK SAEs side by side, {}, AuxK, Adam, {} loss; {} steps, batch {}, lr {}, backend {}. The SAE with the lowest validation loss is exported; the hop is chosen on validation windows.",
                a.n_saes,
                // An alpha-0 pick trains the same SAEs with no coupling; saying "with MFR" there
                // would misdescribe the shipped weights.
                if self.ship.alpha > 0.0 {
                    format!(
                        "coupled by MFR (max-MMCS penalty, alpha {}, cosine warm-up)",
                        self.ship.alpha
                    )
                } else {
                    "uncoupled (MFR alpha 0)".to_string()
                },
                if a.relative_loss {
                    "relative (per-window) squared-error"
                } else {
                    "mean-squared-error"
                },
                a.steps,
                a.batch_size,
                a.lr,
                a.backend.name()
            );
        }
        if a.residual {
            let _ = writeln!(
                s,
                "- Residual: each SAE predicts the correction to its (normalised) input{}, trained on target - input with the loss still relative to the target's energy; a linear path carries the input to the output in those windows: the identity, or a {}-tap FIR fitted by {}least squares over them, whichever the validation windows prefer. This run: {}.",
                a.residual_gate.map_or_else(
                    || " in every window".to_string(),
                    |g| format!(" in windows whose high-frequency ratio sum(dx^2)/sum(x^2) is at most {g} (the others are rebuilt whole, as by a plain SAE)")
                ),
                a.skip_taps,
                if a.relative_loss {
                    "relative-loss-weighted "
                } else {
                    ""
                },
                if self.shipped.skip().is_some_and(|p| p.taps.len() > 1) {
                    "the fitted FIR"
                } else {
                    "the identity"
                }
            );
        } else if !a.skip_gates.is_empty() {
            let _ = writeln!(
                s,
                "- Linear path: beside each trained SAE, a {}-tap FIR on the normalised window, added to the SAE's output in windows whose high-frequency ratio sum(dx^2)/sum(x^2) is at most a gate; taps fitted by {}least squares on the SAE's residuals over the training windows, for gates {}; the gate (or no path) is chosen on the validation windows. This run: {}.",
                a.skip_taps,
                if a.relative_loss {
                    "relative-loss-weighted "
                } else {
                    ""
                },
                fmt_list(&a.skip_gates),
                self.ship.skip_gate.map_or_else(
                    || "no path (validation preferred none)".to_string(),
                    |g| format!("gate {g}")
                )
            );
        }
        let _ = writeln!(
            s,
            "- Selected run: MFR alpha **{}**, seed **{}** (validation loss {:.5}; training took {:.0} s, {:.0} windows/s).{}{}\n",
            self.ship.alpha,
            self.ship.seed,
            self.ship.val_loss,
            self.ship.train_seconds,
            self.ship.windows_per_s,
            self.ship.test_clean_rrmse_t.map_or_else(String::new, |t| format!(
                " On artifact-free test windows (2 s, one per test segment) the output differs from its input by RRMSE_t {t:.3}."
            )),
            if self.ship.dead_at.is_empty() {
                String::new()
            } else {
                format!(
                    " Its SAE went dead (fewer than 1/{} of its TopK slots fired for {} steps) at step(s) {:?} of earlier initialisations, each restarted from a fresh one.",
                    super::cnn::STARVED_FRACTION,
                    super::cnn::DEAD_SAE_STEPS,
                    self.ship.dead_at
                )
            }
        );
    }

    /// The MFR alpha sweep (mean ± std per arm over seeds) and which arm validation chose;
    /// nothing for a single run.
    fn write_sweep(&self, s: &mut String) {
        let a = self.args;
        if self.results.len() <= 1 {
            return;
        }
        let _ = writeln!(
            s,
            "### MFR alpha sweep (same budget and tuning; mean ± std over seeds {})\n",
            fmt_list(&a.seeds)
        );
        let windows = a.select_by == SelectBy::ValWindows;
        let _ = writeln!(
            s,
            "| alpha | val loss |{} test RRMSE_t (EOG+EMG) | test CC (EOG+EMG) |\n|---|---|{}---|---|",
            if windows {
                " val windows RRMSE_t (EOG+EMG) |"
            } else {
                ""
            },
            if windows { "---|" } else { "" }
        );
        for arm in summarise_arms(self.results) {
            let vw = if windows {
                let v: Vec<f64> = self
                    .results
                    .iter()
                    .filter(|r| r.alpha == arm.alpha)
                    .filter_map(|r| r.val_windows_rrmse_t)
                    .collect();
                let (m, sd) = mean_std(&v);
                format!(" {m:.4} ± {sd:.4} |")
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| {} | {:.5} ± {:.5} |{vw} {:.4} ± {:.4} | {:.4} ± {:.4} |",
                arm.alpha,
                arm.val_loss.0,
                arm.val_loss.1,
                arm.test_rrmse_t.0,
                arm.test_rrmse_t.1,
                arm.test_cc.0,
                arm.test_cc.1
            );
        }
        let _ = writeln!(
            s,
            "\n{} Selection used the {} only; the test columns are reported, not used.\n",
            self.sweep_verdict(),
            if windows {
                "validation windows"
            } else {
                "validation loss"
            }
        );
    }

    /// One sentence: which alpha validation preferred, against no MFR when it was swept.
    fn sweep_verdict(&self) -> String {
        let a = self.args;
        let what = if a.select_by == SelectBy::ValWindows {
            "mean validation-window RRMSE_t"
        } else {
            "mean val loss"
        };
        if self.ship.alpha == 0.0 {
            "Validation preferred **no MFR** (alpha 0), so this file is the alpha-0 model; MFR did not help at this budget.".to_string()
        } else if !self.results.iter().any(|r| r.alpha == 0.0) {
            "alpha 0 was not in the sweep.".to_string()
        } else {
            format!(
                "Validation preferred MFR alpha {} ({what} {:.5}) over no MFR ({:.5}).",
                self.ship.alpha,
                a.select_by.arm_mean(self.results, self.ship.alpha),
                a.select_by.arm_mean(self.results, 0.0)
            )
        }
    }

    /// The commands that rebuild this file and the sweep that chose it.
    fn write_regeneration(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## Regenerate bit for bit\n\n```sh\n{}\n```\n",
            self.regen
        );
        let _ = writeln!(
            s,
            "Trained on {}. The same machine class and backend give identical bytes (the model writer sorts the metadata keys); another vector width sums in another order, so the same command there trains a slightly different model. The corpus, splits, artifacts, initialisation and batch order are all fixed by the data seed and the training seed. The full sweep that chose this run:\n",
            machine_class()
        );
        let _ = writeln!(s, "```sh\n{}\n```", self.sweep_cmd);
    }

    /// What the model is not: data it was not trained on, and its normalisation's blind spot.
    fn write_limits(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## Limits\n\n{} One channel at a time; no spatial information.{}",
            if self.args.eegdenoisenet.is_some() {
                "Trained on EEGdenoiseNet's epochs (real EEG, EOG and EMG, mixed by its protocol); other recordings and artifact kinds are outside that data.".to_string()
            } else {
                format!(
                    "Trained on semi-synthetic data (real EEG from the recordings listed above plus a physiological model; {}), not on EEGdenoiseNet; numbers are not directly comparable with published EEGdenoiseNet results.",
                    if self.args.real.is_some() {
                        "generated EOG, line noise, pops and drift, recorded EMG"
                    } else {
                        "generated artifacts"
                    }
                )
            },
            match self.shipped.meta().normalisation {
                Normalisation::WindowZscore =>
                    " Known weakness: slow, large artifacts (EOG, drift, electrode pops) are removed poorly: `window_zscore` adds each window's *noisy* mean back after the SAE, and that mean is mostly artifact (`window_zscore_no_mean` fixes this).",
                Normalisation::WindowZscoreNoMean =>
                    " `window_zscore_no_mean` does not add the window's mean back, so the output keeps almost nothing below ~1/window (1 Hz for 1 s windows) beyond what the model itself predicts; analyses of slow potentials (< 1 Hz) should not use it.",
                Normalisation::None => "",
            }
        );
    }
}

/// The per-artifact test table and the acceptance count against band-pass and wavelet.
fn write_test_split(s: &mut String, ev: &Evaluation, name: &str) {
    let _ = writeln!(
        s,
        "## Test split (2 s windows, 10 SNR levels per artifact)\n"
    );
    super::harness::average_table(s, ev.rows.iter().filter(|r| r.snr_db.is_none()));
    let base = super::harness::acceptance_baselines(ev.rows.iter().map(|r| r.method.as_str()));
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    let (pass, total, fails) = super::harness::acceptance_summary(&ev.rows, name, &base);
    let _ = writeln!(
        s,
        "\nBeats band-pass and wavelet on both RRMSE_t and CC at **{pass} of {total}** EOG/EMG test SNR levels."
    );
    if !fails.is_empty() {
        let _ = writeln!(s, "Not beaten at: {}.", fails.join(", "));
    }
}

/// The CPU class a card's "bit for bit" promise holds on: the architecture and the widest
/// vector unit the float kernels (gemm, burn's backends) dispatch to at run time.
fn machine_class() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let simd = if std::arch::is_x86_feature_detected!("avx512f") {
            "AVX-512"
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            "AVX2 and FMA"
        } else {
            "SSE2 only"
        };
        format!("x86_64 with {simd}")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::TrainEvent;

    /// Each run reports its steps through `DenoiserEvent::Train`, the plain trainer every
    /// step and the front-end trainer every 500, each bracketed by `Start` and `Done`; the
    /// steps a run reports are the steps it was asked for.
    #[test]
    fn runs_report_their_steps() {
        let dir = tempfile::tempdir().unwrap();
        for (front, steps, want) in [
            (None, 40, (1..=40).collect::<Vec<_>>()),
            (
                Some(FrontShape {
                    width: 2,
                    depth: 1,
                    kernel: 3,
                }),
                1000,
                vec![500, 1000],
            ),
        ] {
            let a = TrainDenoiserOptions {
                out: dir.path().join("m.safetensors"),
                d_sae: 64,
                k: 8,
                hops: vec![128],
                n_saes: 1,
                mfr_alpha: 0.0,
                steps,
                batch_size: 16,
                model_segments: 20,
                relative_loss: true,
                front,
                ..TrainDenoiserOptions::default()
            };
            let mut seen = Vec::new();
            run(&a, &mut |e| {
                if let DenoiserEvent::Train(t) = e {
                    seen.push(match t {
                        TrainEvent::Start { step, steps } => format!("start {step}/{steps}"),
                        TrainEvent::Step(s) => format!("{s}"),
                        TrainEvent::Done => "done".into(),
                        _ => String::new(),
                    });
                }
            })
            .unwrap();
            seen.retain(|s| !s.is_empty());
            let mut expect = vec![format!("start 0/{steps}")];
            expect.extend(want.iter().map(|s| s.to_string()));
            expect.push("done".into());
            assert_eq!(seen, expect, "front {front:?}");
        }
    }
}
