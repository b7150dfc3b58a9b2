//! `mfr-eeg bench`: one command that measures quality (methods x artifact x metric x SNR),
//! MFR vs no MFR over seeds, core speed and model sizes, and writes `report.md`,
//! `report.json` and PNG figures. `--quick` shrinks every size so it runs in CI in under two
//! minutes on two cores; the full run uses the whole test split.

use std::path::{Path, PathBuf};

use super::EvalError;
use super::baselines::tune_bandpass;
use super::baselines::wavelet::WaveletDenoiser;
use super::corpus::{Corpus, CorpusConfig, Split};
use super::data::{ArtifactKind, Recording, Window};
use super::eegdenoisenet::EegDenoiseNet;
use super::harness::{
    Method, ModelInfo, Report, SaeMethod, Unprocessed, evaluate, measure_speed, write_figures,
};
use crate::model::Model;

/// What one bench run measures and where it writes. [`Default`] holds the defaults of
/// `mfr-eeg bench`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Small sizes for CI (< 2 minutes on 2 cores).
    pub quick: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Models to benchmark (missing files are skipped with a note).
    pub model: Vec<PathBuf>,
    /// Real recordings for clean EEG.
    pub edf: Vec<PathBuf>,
    /// Use EEGdenoiseNet's own files from this directory (256 Hz models only).
    pub eegdenoisenet: Option<PathBuf>,
    /// Seeds per arm in the MFR comparison.
    pub seeds: u64,
    /// Skip training (no MFR comparison, no training throughput).
    pub no_train: bool,
    /// The command line recorded in the report.
    pub command: String,
    /// A real-data set (`scripts/real_data.py` builds it: EEG and EMG recordings, each in one
    /// split): adds quality per held-out recording, with recorded EMG.
    pub real: Option<PathBuf>,
    /// Write the 256 Hz train/validation/test pairs as .npy plus export.json (splits,
    /// recordings, SNRs) into DIR, so an outside model can use exactly the same data.
    pub export_data: Option<PathBuf>,
    /// Train the peers for N steps (batch 128, the default SAE's loss and schedule; feature
    /// `train`) and score them beside the SAE; 0 = off.
    pub cnn_steps: usize,
    /// Which peers: `unet` (the compact U-Net), `sae` (the default SAE's shape trained by the
    /// peer loop, the control), `conv-sae` (the same behind a convolutional front end of 2
    /// hidden layers of 8 channels) or `conv-sae-WxD` (W channels, D layers); see
    /// `cnn::PeerArch`.
    pub peers: Vec<String>,
    /// Which pairs the U-Net trains on: `default` (the main 256 Hz corpus, the shipped default
    /// model's pairs) or `real` (that corpus plus the `--real` training recordings and EMG).
    pub cnn_data: String,
    /// At most this many test segments per artifact kind (and per real recording); default:
    /// all (12 and 6 with `--quick`).
    pub test_segments: Option<usize>,
    /// Real multi-channel recordings with blinks, scored as `mfr-eeg eog-check` does (eye
    /// stage, ICA, band-pass, ...) with the first model; `--quick` keeps those up to 60 s.
    pub eye: Vec<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            quick: false,
            out: "bench-report".into(),
            eye: vec![
                "data/eeglab_tutorial_32ch_128Hz_238s.edf".into(),
                "data/spkit_emotiv_14ch_128Hz_16s_blink.edf".into(),
            ],
            model: vec![
                "models/general-256hz.safetensors".into(),
                "models/tiny-128hz-int8.safetensors".into(),
            ],
            edf: vec!["data/eegmmidb_S001R02_64ch_160Hz_61s.edf".into()],
            eegdenoisenet: None,
            seeds: 3,
            no_train: false,
            command: String::new(),
            real: None,
            export_data: None,
            cnn_steps: 0,
            peers: vec!["unet".into()],
            cnn_data: "default".into(),
            test_segments: None,
        }
    }
}

/// Sizes of one bench run.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    /// Quick mode.
    pub quick: bool,
    /// Test segments per artifact kind (each gives 10 windows).
    pub max_test_segments: usize,
    /// Validation segments used to tune the band-pass.
    pub max_val_segments: usize,
    /// Physiological-model segments in the corpus.
    pub model_segments: usize,
    /// Channels and seconds for the speed test.
    pub speed: (usize, f64),
}

impl BenchPlan {
    /// The plan for `--quick` or the full run.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                max_test_segments: 12,
                max_val_segments: 8,
                model_segments: 60,
                speed: (64, 10.0),
            }
        } else {
            Self {
                quick,
                max_test_segments: usize::MAX,
                // The whole validation split, as the model cards use: the band-pass corners
                // then match the card's (60 segments picked 2-40 Hz, all pick 4-40 Hz).
                max_val_segments: usize::MAX,
                model_segments: 600,
                speed: (64, 60.0),
            }
        }
    }
}

/// Test windows of every kind from `corpus`'s test split.
pub fn test_windows(corpus: &Corpus, plan: &BenchPlan) -> Result<Vec<Window>, EvalError> {
    let mut w = Vec::new();
    for kind in ArtifactKind::ALL {
        w.extend(corpus.level_windows(
            Split::Test,
            kind,
            corpus.config.seg_len,
            plan.max_test_segments,
        )?);
    }
    Ok(w)
}

/// Quality of `models` (all at the corpus's rate) and the baselines on the corpus's test
/// windows. The band-pass corners are tuned on validation EOG+EMG windows.
pub fn quality(
    corpus: &Corpus,
    plan: &BenchPlan,
    models: Vec<(String, Model)>,
) -> Result<super::harness::Evaluation, EvalError> {
    quality_with(corpus, plan, models, Vec::new())
}

/// [`quality`] with `extra` methods (e.g. a trained peer) scored after the models.
pub fn quality_with<'a>(
    corpus: &Corpus,
    plan: &BenchPlan,
    models: Vec<(String, Model)>,
    extra: Vec<Box<dyn Method + 'a>>,
) -> Result<super::harness::Evaluation, EvalError> {
    Ok(quality_and_clean(corpus, plan, models, extra)?.0)
}

/// [`quality_with`] and, from the same methods (the band-pass tuned once), their
/// [`clean_change`] on the test split's artifact-free windows.
#[allow(clippy::type_complexity)]
fn quality_and_clean<'a>(
    corpus: &Corpus,
    plan: &BenchPlan,
    models: Vec<(String, Model)>,
    extra: Vec<Box<dyn Method + 'a>>,
) -> Result<(super::harness::Evaluation, Vec<(String, f64, usize)>), EvalError> {
    let val = val_level_windows(corpus, plan.max_val_segments)?;
    let mut methods = methods_with(corpus, &val, models, extra)?;
    let ev = evaluate(&mut methods, &test_windows(corpus, plan)?, corpus.config.fs)?;
    let clean = corpus.clean_windows(Split::Test, corpus.config.seg_len, plan.max_test_segments)?;
    Ok((ev, clean_change(&mut methods, &clean)?))
}

/// Per method, the mean RRMSE_t between its output and its input over artifact-free
/// `windows` (input = target; 0 = passed through), and their count.
pub fn clean_change(
    methods: &mut [Box<dyn Method + '_>],
    windows: &[Window],
) -> Result<Vec<(String, f64, usize)>, EvalError> {
    let mut out = Vec::new();
    for m in methods.iter_mut() {
        let mut sum = 0.0;
        for w in windows {
            sum += super::metrics::rrmse_t(&m.denoise(&w.noisy)?, &w.clean)?;
        }
        out.push((m.name(), sum / windows.len().max(1) as f64, windows.len()));
    }
    Ok(out)
}

/// The validation windows of every EOG and EMG level (at most `max_segments` segments each),
/// on which the band-pass corners are tuned.
pub(crate) fn val_level_windows(
    corpus: &Corpus,
    max_segments: usize,
) -> Result<Vec<Window>, EvalError> {
    let mut val = Vec::new();
    for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
        val.extend(corpus.level_windows(Split::Val, kind, corpus.config.seg_len, max_segments)?);
    }
    Ok(val)
}

/// The methods every quality table compares: the unprocessed input, the band-pass tuned on
/// `val`, both wavelet baselines, then `models`, then `extra`.
pub(crate) fn methods_with<'a>(
    corpus: &Corpus,
    val: &[Window],
    models: Vec<(String, Model)>,
    extra: Vec<Box<dyn Method + 'a>>,
) -> Result<Vec<Box<dyn Method + 'a>>, EvalError> {
    let fs = corpus.config.fs;
    let mut methods: Vec<Box<dyn Method + 'a>> = vec![
        Box::new(Unprocessed),
        Box::new(tune_bandpass(val, Some(corpus.config.line_hz), fs)?),
        Box::new(WaveletDenoiser::default()),
        Box::new(super::baselines::wavelet::SlowArtifactWavelet::new(
            fs, 2.0, 16.0,
        )),
    ];
    for (name, m) in models {
        methods.push(Box::new(SaeMethod::new(name, m)));
    }
    methods.extend(extra);
    Ok(methods)
}

fn corpus_at(
    fs: f64,
    plan: &BenchPlan,
    recs: &[Recording],
    edn: Option<&EegDenoiseNet>,
) -> Result<Corpus, EvalError> {
    let mut cfg = CorpusConfig::at_rate(fs);
    cfg.n_model_segments = plan.model_segments;
    match edn {
        Some(d) if (fs - 256.0).abs() < 1e-9 => Corpus::from_eegdenoisenet(cfg, d),
        _ => Corpus::build(cfg, recs),
    }
}

fn model_name(p: &Path) -> String {
    p.file_stem().map_or_else(
        || p.display().to_string(),
        |s| format!("SAE {}", s.to_string_lossy()),
    )
}

/// Scores the eye stage and its peers on `args.eye` ([`super::ocular::check_file`]) with the
/// first model into `report.eye`.
fn eye_section(args: &BenchOptions, report: &mut Report) -> Result<(), EvalError> {
    let Some(first) = args.model.iter().find(|p| p.exists()) else {
        return Ok(());
    };
    let model = Model::load(first).map_err(|e| EvalError::Model(e.to_string()))?;
    let iso = crate::ocular::Isolator::of_model(&model.view());
    for p in &args.eye {
        if !p.exists() {
            report
                .notes
                .push(format!("eye recording {} not found; skipped", p.display()));
            continue;
        }
        if args.quick {
            let r = crate::io::edf::EdfReader::open(p)
                .map_err(|e| EvalError::Invalid(e.to_string()))?;
            if r.num_records() as f64 * r.header().record_duration() > 60.0 {
                report.notes.push(format!(
                    "eye recording {} is over 60 s; skipped with --quick",
                    p.display()
                ));
                continue;
            }
        }
        let r = super::ocular::check_file(p, None, iso, 1)
            .map_err(|e| EvalError::Invalid(e.to_string()))?;
        report.eye.push_str(&r.markdown());
        report.eye.push('\n');
    }
    Ok(())
}

/// Runs the whole bench and writes the report into `args.out`.
pub fn run_report(args: &BenchOptions) -> Result<Report, EvalError> {
    let mut plan = BenchPlan::new(args.quick);
    if let Some(n) = args.test_segments {
        plan.max_test_segments = n;
    }
    let t0 = std::time::Instant::now();
    let recs: Vec<Recording> = args
        .edf
        .iter()
        .map(|p| Recording::from_edf(p))
        .collect::<Result<_, _>>()?;
    let edn = args
        .eegdenoisenet
        .as_deref()
        .map(EegDenoiseNet::load)
        .transpose()?;
    let mut report = Report {
        command: args.command.clone(),
        quick: args.quick,
        data: match &args.eegdenoisenet {
            Some(d) => format!(
                "EEGdenoiseNet files from {} (256 Hz); other rates use the generator",
                d.display()
            ),
            None => format!(
                "semi-synthetic: clean EEG from {} (low-artifact segments) plus {} physiological-model segments; generated artifacts; data seed 2026. Not EEGdenoiseNet's data: numbers are not directly comparable with its published ones.",
                args.edf
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                plan.model_segments
            ),
        },
        fs: 256.0,
        ..Report::default()
    };
    // Models grouped by rate; 256 Hz is the main table.
    let mut by_rate: Vec<(f64, Vec<(String, Model)>)> = vec![(256.0, Vec::new())];
    for p in &args.model {
        if !p.exists() {
            report
                .notes
                .push(format!("model {} not found; skipped", p.display()));
            continue;
        }
        let m = Model::load(p).map_err(|e| EvalError::Model(e.to_string()))?;
        let meta = m.meta();
        let bytes = std::fs::metadata(p)
            .map_err(|source| EvalError::Io {
                path: p.clone(),
                source,
            })?
            .len();
        report.models.push(ModelInfo {
            path: p.display().to_string(),
            bytes,
            shape: [meta.d_in, meta.d_sae, meta.k, meta.hop],
            sample_rate_hz: meta.sample_rate_hz as f64,
        });
        report.speed.push(measure_speed(
            &model_name(p),
            &m,
            plan.speed.0,
            plan.speed.1,
        )?);
        let fs = meta.sample_rate_hz as f64;
        match by_rate.iter_mut().find(|(r, _)| (r - fs).abs() < 1e-6) {
            Some((_, v)) => v.push((model_name(p), m)),
            None => by_rate.push((fs, vec![(model_name(p), m)])),
        }
    }
    let real = args
        .real
        .as_deref()
        .map(super::real::RealSet::load)
        .transpose()?;
    let peer = peer_cnn(args, &plan, &recs, edn.as_ref(), real.as_ref(), &mut report)?;
    eye_section(args, &mut report)?;
    for (fs, models) in by_rate {
        let corpus = corpus_at(fs, &plan, &recs, edn.as_ref())?;
        speed_frontier(&mut report, &corpus, &plan, &models)?;
        let main = (fs - 256.0).abs() < 1e-6;
        if main {
            report.candidate = models.first().map(|m| m.0.clone());
        }
        let extra = if main { peer.methods() } else { Vec::new() };
        let (ev, clean) = quality_and_clean(&corpus, &plan, models, extra)?;
        if main {
            report.clean = clean;
            for kind in ArtifactKind::ALL {
                let n = ev
                    .rows
                    .iter()
                    .filter(|r| r.kind == kind && r.snr_db.is_none())
                    .map(|r| r.n)
                    .next()
                    .unwrap_or(0);
                report.test_windows.insert(kind.name().into(), n);
            }
            report.figures = write_figures(&args.out, &ev, fs)?;
            if report.figures.is_empty() {
                report
                    .notes
                    .push("no TrueType font found (DejaVuSans); figures skipped".into());
            }
            report.quality = ev.rows;
        } else {
            report.other_rates.push((fs, ev.rows));
        }
    }
    if let (Some(dir), Some(real)) = (&args.real, &real) {
        let mut rates: Vec<f64> = vec![256.0];
        for m in &report.models {
            if !rates.iter().any(|r| (r - m.sample_rate_hz).abs() < 1e-6) {
                rates.push(m.sample_rate_hz);
            }
        }
        for fs in rates {
            let models = args
                .model
                .iter()
                .filter(|p| p.exists())
                .map(|p| Model::load(p).map(|m| (model_name(p), m)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EvalError::Model(e.to_string()))?
                .into_iter()
                .filter(|(_, m)| (m.meta().sample_rate_hz as f64 - fs).abs() < 1e-6)
                .collect();
            let mut cfg = CorpusConfig::at_rate(fs);
            cfg.n_model_segments = plan.model_segments;
            let extra = if (fs - 256.0).abs() < 1e-6 {
                peer.methods()
            } else {
                Vec::new()
            };
            let rows = super::real::bench_section(
                real,
                cfg,
                &recs,
                models,
                extra,
                args.test_segments
                    .unwrap_or(if plan.quick { 6 } else { 60 }),
                if plan.quick { 6 } else { usize::MAX },
            )?;
            report.real.push((fs, rows));
        }
        report.real_data = format!(
            "{}: test recordings {} (EOG generated, EMG recorded; band-pass tuned on the validation recordings)",
            dir.display(),
            real.eeg_names(Split::Test).join(", ")
        );
    }
    if let Some(dir) = &args.export_data {
        let mut cfg = CorpusConfig::at_rate(256.0);
        cfg.n_model_segments = plan.model_segments;
        let corpus = match &real {
            Some(r) => r.corpus(cfg, &recs)?,
            None => match &edn {
                Some(e) => Corpus::from_eegdenoisenet(cfg, e)?,
                None => Corpus::build(cfg, &recs)?,
            },
        };
        let written =
            super::export::export_data(&corpus, &super::export::ExportPlan::default_model(), dir)?;
        report.notes.push(format!(
            "exported {} to {}",
            written
                .iter()
                .map(|(n, r)| format!("{n} ({r} rows)"))
                .collect::<Vec<_>>()
                .join(", "),
            dir.display()
        ));
    }
    // Full run: the shipped model's own alpha sweep (same budget and tuning per arm, test
    // numbers measured at export) is the MFR comparison; quick runs train a small one.
    let runs = args
        .model
        .first()
        .map(|p| p.with_extension("runs.json"))
        .filter(|p| p.exists());
    match (&runs, args.quick, args.no_train) {
        (Some(p), false, _) => {
            let text = std::fs::read_to_string(p).map_err(|source| EvalError::Io {
                path: p.clone(),
                source,
            })?;
            report.mfr_seeds = serde_json::from_str(&text).map_err(|e| EvalError::Format {
                path: p.clone(),
                problem: e.to_string(),
            })?;
            report.mfr_arms = super::harness::summarise_arms(&report.mfr_seeds);
            report.mfr_budget = format!(
                "the shipped model's sweep, read from {} (budget and command in its model card)",
                p.display()
            );
        }
        (_, _, true) => report
            .notes
            .push("--no-train: MFR comparison and training throughput skipped".into()),
        _ => mfr_section(&mut report, &plan, &recs, args.seeds)?,
    }
    report.notes.push(format!(
        "bench wall time {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    report.write(&args.out)?;
    Ok(report)
}

/// The batched path's GFLOP/s next to a plain sgemm (first model at this rate) and the
/// speed/quality frontier of every model at its hop and 2, 4 and 8 times it, on the
/// validation windows (EOG + EMG) of `corpus`.
fn speed_frontier(
    report: &mut Report,
    corpus: &Corpus,
    plan: &BenchPlan,
    models: &[(String, Model)],
) -> Result<(), EvalError> {
    use super::frontier::{frontier, measure_gflops};
    if models.is_empty() {
        return Ok(());
    }
    let val = val_level_windows(corpus, plan.max_val_segments)?;
    let (name, m) = &models[0];
    let seconds = if plan.quick { 60.0 } else { 300.0 };
    report
        .batched
        .push(measure_gflops(name, m, m.meta().hop, seconds, 128, 3)?);
    for (name, m) in models {
        let h = m.meta().hop;
        let hops: Vec<usize> = [h, 2 * h, 4 * h, 8 * h]
            .into_iter()
            .filter(|&x| x <= m.meta().d_in)
            .collect();
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        report.frontier.extend(frontier(
            &[(name.clone(), m.clone())],
            &hops,
            None,
            &val,
            if plan.quick { 10.0 } else { 60.0 },
            threads,
        )?);
    }
    Ok(())
}

#[cfg(feature = "train")]
fn mfr_section(
    report: &mut Report,
    plan: &BenchPlan,
    recs: &[Recording],
    seeds: u64,
) -> Result<(), EvalError> {
    use super::train_denoiser::{DenoiserEvent, prepare, train_one};
    use crate::train::{BackendKind, TrainConfig};
    // Quick: a small model and budget (the comparison is noisy, but real). Full: the shipped
    // general model's shape at a reduced step budget.
    let (d_sae, k, n, steps, batch, per_seg, alphas): (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        Vec<f64>,
    ) = if plan.quick {
        (64, 8, 2, 120, 64, 4, vec![0.0, 1e-2])
    } else {
        (512, 16, 3, 1500, 256, 16, vec![0.0, 1e-3, 1e-2, 1e-1])
    };
    let corpus = corpus_at(256.0, plan, recs, None)?;
    // The same normalisation and loss as the shipped default model, so the arms compare like
    // for like.
    let data = prepare(
        &corpus,
        256,
        256,
        per_seg,
        super::train_denoiser::default_val_per_segment(per_seg),
        if plan.quick { 6 } else { 60 },
        0.0,
        crate::core::Normalisation::WindowZscoreNoMean,
    )?;
    report.mfr_budget = format!(
        "d_in 256, d_sae {d_sae}, k {k}, {n} SAEs, {steps} steps x batch {batch}, lr 1e-3, flex backend, {} training windows; alphas {:?}; seeds 0..{seeds}; test = EOG+EMG windows of the test split",
        data.train.inputs.len() / 256,
        alphas
    );
    for &alpha in &alphas {
        for seed in 0..seeds {
            let cfg = TrainConfig::new(256, d_sae, k)
                .with_n_saes(n)
                .with_steps(steps)
                .with_batch_size(batch)
                .with_k_aux(128.min(d_sae))
                .with_mfr_alpha(alpha)
                .with_mfr_warmup((steps / 10).max(1))
                .with_lr_warmup_steps((steps / 10).max(1))
                .with_dead_steps((steps / 4).max(10))
                .with_relative_loss(true)
                .with_seed(seed)
                .with_log_every(steps);
            let r = train_one(
                &data,
                &cfg,
                super::train_denoiser::RunSettings {
                    backend: BackendKind::Flex,
                    grad_path: None,
                    select_every: None,
                    skip: None,
                    relative_eps: None,
                    ola: crate::core::OlaShape::Hann,
                    front: None,
                    loss_taper: false,
                    init_sae: None,
                    sae_lr: None,
                },
                256.0,
                &[128],
                "bench",
                &mut |_: DenoiserEvent<'_>| {},
            )?;
            report.mfr_seeds.push(r.result);
        }
    }
    report.mfr_arms = super::harness::summarise_arms(&report.mfr_seeds);
    Ok(())
}

#[cfg(not(feature = "train"))]
fn mfr_section(
    report: &mut Report,
    _plan: &BenchPlan,
    _recs: &[Recording],
    _seeds: u64,
) -> Result<(), EvalError> {
    report
        .notes
        .push("built without the `train` feature: MFR comparison skipped".into());
    Ok(())
}

/// The trained peers (feature `train`), if `--cnn-steps` asked for them.
#[derive(Default)]
struct Peer {
    #[cfg(feature = "train")]
    nets: Vec<(super::cnn::PeerNet, String, usize, usize)>,
}

impl Peer {
    /// A fresh method per table (each keeps its own scratch).
    fn methods<'a>(&self) -> Vec<Box<dyn Method + 'a>> {
        #[cfg(feature = "train")]
        return self
            .nets
            .iter()
            .map(|(net, name, d_in, hop)| {
                Box::new(super::cnn::CnnMethod::new(
                    name.clone(),
                    net.clone(),
                    *d_in,
                    *hop,
                    burn::tensor::Device::flex(),
                )) as Box<dyn Method + 'a>
            })
            .collect();
        #[cfg(not(feature = "train"))]
        Vec::new()
    }
}

/// `unet`, `sae`, `conv-sae` or `conv-sae-WxD` (see [`BenchOptions::peers`]).
#[cfg(feature = "train")]
fn parse_peer(spec: &str) -> Result<super::cnn::PeerArch, EvalError> {
    let sae = |width, depth| super::cnn::PeerArch::Sae {
        d_sae: 1024,
        k: 128,
        width,
        depth,
    };
    let wxd = |s: &str| {
        let (w, d) = s.split_once('x')?;
        Some((w.parse().ok()?, d.parse().ok()?))
    };
    match spec {
        "unet" => Ok(super::cnn::PeerArch::UNet),
        "sae" => Ok(sae(0, 0)),
        "conv-sae" => Ok(sae(8, 2)),
        s => match s.strip_prefix("conv-sae-").and_then(wxd) {
            Some((w, d)) if w > 0 && d > 0 => Ok(sae(w, d)),
            _ => Err(EvalError::Invalid(format!(
                "unknown peer {spec:?} (unet, sae, conv-sae, conv-sae-WxD)"
            ))),
        },
    }
}

#[cfg(feature = "train")]
fn peer_cnn(
    args: &BenchOptions,
    plan: &BenchPlan,
    recs: &[Recording],
    edn: Option<&EegDenoiseNet>,
    real: Option<&super::real::RealSet>,
    report: &mut Report,
) -> Result<Peer, EvalError> {
    use super::cnn::{CnnConfig, train_cnn};
    if args.cnn_steps == 0 {
        return Ok(Peer::default());
    }
    // The default model's pairs (models/general-256hz.md, as exported by `--export-data`).
    let p = super::export::ExportPlan::default_model();
    let archs = args
        .peers
        .iter()
        .map(|a| parse_peer(a))
        .collect::<Result<Vec<_>, _>>()?;
    let corpus = match (args.cnn_data.as_str(), real) {
        ("real", Some(r)) => {
            let mut cfg = CorpusConfig::at_rate(256.0);
            cfg.n_model_segments = plan.model_segments;
            r.corpus(cfg, recs)?
        }
        ("real", None) => {
            return Err(EvalError::Invalid(
                "--cnn-data real needs --real DIR".into(),
            ));
        }
        _ => corpus_at(256.0, plan, recs, edn)?,
    };
    let data = super::train_denoiser::prepare(
        &corpus,
        p.d_in,
        p.mix_len,
        p.per_segment,
        p.val_per_segment,
        1,
        p.clean_fraction,
        p.normalisation,
    )?;
    let device = burn::tensor::Device::flex();
    let mut nets = Vec::new();
    for arch in archs {
        let cfg = CnnConfig {
            arch,
            steps: args.cnn_steps,
            // SAE peers get the shipped models' gated linear path (33 taps), so they compare
            // with them as deployed.
            path_taps: if matches!(arch, super::cnn::PeerArch::Sae { .. }) {
                33
            } else {
                0
            },
            ..CnnConfig::default_peer()
        };
        let (net, run) = train_cnn(&cfg, &data.train, &data.val, &device, |_, _| {})?;
        report.notes.push(format!(
            "{} peer: {} parameters, {} steps x batch {}, lr {}, relative loss, trained on the {} pairs ({} windows) in {:.0} s; validation relative loss {:.4} ({:.4} without the gated linear path; path {}); overlap-add hop {}",
            arch.label(),
            run.n_params,
            cfg.steps,
            cfg.batch,
            cfg.lr,
            args.cnn_data,
            data.train.inputs.len() / p.d_in,
            run.train_seconds,
            run.val_loss,
            run.val_loss_net,
            match (cfg.path_taps, run.path_gate) {
                (0, _) => "not fitted".to_string(),
                (t, Some(g)) => format!("{t} taps, gate {g}"),
                (_, None) => "none kept".to_string(),
            },
            cfg.hop
        ));
        nets.push((net, arch.label(), p.d_in, cfg.hop));
    }
    Ok(Peer { nets })
}

#[cfg(not(feature = "train"))]
fn peer_cnn(
    args: &BenchOptions,
    _plan: &BenchPlan,
    _recs: &[Recording],
    _edn: Option<&EegDenoiseNet>,
    _real: Option<&super::real::RealSet>,
    report: &mut Report,
) -> Result<Peer, EvalError> {
    if args.cnn_steps > 0 {
        report
            .notes
            .push("built without the `train` feature: the CNN peer was skipped".into());
    }
    Ok(Peer::default())
}
