//! Quality regression tests: each shipped model on a small fixed test set, against the
//! numbers in its model card (with a stated margin), and on real recordings that no shipped
//! model was trained on (the shipped PLUX extracts, test split of `scripts/real_data.py`).

use std::path::Path;

use mfr_eeg::eval::baselines::BandPass;
use mfr_eeg::eval::corpus::{Corpus, CorpusConfig, Split};
use mfr_eeg::eval::data::{ArtifactKind, Recording};
use mfr_eeg::eval::harness::{Method, QualityRow, SaeMethod, evaluate};
use mfr_eeg::eval::real::{RealRecording, RealSet, emg_epochs, per_recording};
use mfr_eeg::model::Model;

const EEGMMIDB: &str = "data/eegmmidb_S001R02_64ch_160Hz_61s.edf";
const PLUX_EEG: &str = "data/plux_2ch_eeg_p3p4_1000Hz_40s.edf";
const PLUX_EMG: &str = "data/plux_1ch_emg_biceps_1000Hz_20s.edf";

/// Test segments per kind in the fixed set (each gives 10 windows, one per SNR level).
const SEGMENTS: usize = 40;

fn average(rows: &[QualityRow], method: &str, kind: ArtifactKind) -> (f64, f64) {
    let r = rows
        .iter()
        .find(|r| r.method == method && r.kind == kind && r.snr_db.is_none())
        .unwrap_or_else(|| panic!("no {method} {kind:?} row"));
    (r.rrmse_t, r.cc)
}

/// The card's corpus (data seed 2026, 600 model segments, the shipped EEGMMIDB file), the
/// first `SEGMENTS` test segments per kind, the shipped model and the card's band-pass.
fn card_subset(model: &str, fs: f64, band: (f64, f64)) -> Vec<QualityRow> {
    let corpus = Corpus::build(
        CorpusConfig::at_rate(fs),
        &[Recording::from_edf(Path::new(EEGMMIDB)).unwrap()],
    )
    .unwrap();
    let mut windows = Vec::new();
    for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
        windows.extend(
            corpus
                .level_windows(Split::Test, kind, corpus.config.seg_len, SEGMENTS)
                .unwrap(),
        );
    }
    let mut methods: Vec<Box<dyn Method>> = vec![
        Box::new(BandPass::new(band.0, band.1, Some(60.0), fs).unwrap()),
        Box::new(SaeMethod::new(
            "sae",
            Model::load(Path::new(model)).unwrap(),
        )),
    ];
    let rows = evaluate(&mut methods, &windows, fs).unwrap().rows;
    for k in [ArtifactKind::Eog, ArtifactKind::Emg] {
        let (bt, bc) = average(&rows, &methods[0].name(), k);
        let (t, c) = average(&rows, "sae", k);
        eprintln!("{model} {k:?}: sae {t:.4} / {c:.4}, band-pass {bt:.4} / {bc:.4}");
    }
    rows
}

/// Asserts the subset's mean RRMSE_t / CC within `margin` of the card's full-test-split
/// averages: RRMSE_t <= card * (1 + margin), CC >= card * (1 - margin). The first 40 test
/// segments are a little harder than the whole split (measured: RRMSE_t +4.0 to +6.1 %, CC
/// -0.2 to -3.7 %), so the margin is 8 %.
fn assert_card(rows: &[QualityRow], kind: ArtifactKind, card: (f64, f64), margin: f64) {
    let (t, c) = average(rows, "sae", kind);
    assert!(
        t <= card.0 * (1.0 + margin),
        "{kind:?}: RRMSE_t {t:.4} vs card {} (+{margin})",
        card.0
    );
    assert!(
        c >= card.1 * (1.0 - margin),
        "{kind:?}: CC {c:.4} vs card {} (-{margin})",
        card.1
    );
}

#[test]
fn general_model_keeps_its_card_quality_on_a_fixed_test_subset() {
    let rows = card_subset("models/general-256hz.safetensors", 256.0, (4.0, 40.0));
    // Card (models/general-256hz.md, all 522 test segments of its corpus, which adds the
    // real-data set's test recordings and recorded EMG): EOG 0.483 / 0.865, EMG 0.398 /
    // 0.911. On this subset of the EEGMMIDB corpus: EOG 0.500 / 0.859, EMG 0.412 / 0.916.
    assert_card(&rows, ArtifactKind::Eog, (0.483, 0.865), 0.08);
    assert_card(&rows, ArtifactKind::Emg, (0.398, 0.911), 0.08);
    // And it still beats the card's band-pass on the same windows, by the card's gap.
    let bp = "band-pass 4-40 Hz + notch";
    for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
        let (t, c) = average(&rows, "sae", kind);
        let (bt, bc) = average(&rows, bp, kind);
        assert!(
            t < bt - 0.05 && c > bc + 0.05,
            "{kind:?}: {t}/{c} vs {bt}/{bc}"
        );
    }
}

/// The model with the convolutional front end (format 5) on the same subset: its card's
/// numbers within the same margin, and its lead over `general-256hz` on EMG and on
/// artifact-free EEG, the reason it ships. Card (models/general-front-256hz.md, all 522 test
/// segments): EOG 0.464 / 0.876, EMG 0.356 / 0.929. On this subset: EOG 0.480 / 0.868, EMG
/// 0.366 / 0.931, artifact-free change 0.264; `general-256hz` there: EMG 0.412 / 0.916,
/// artifact-free change 0.316 (the tests above).
#[test]
fn front_end_model_keeps_its_card_quality_and_its_lead() {
    // Artifact-free bound: 7 % margin, which still keeps it 0.03 below `general-256hz`'s 0.316.
    let rows = keeps_card_on_subset(
        "models/general-front-256hz.safetensors",
        (0.464, 0.876),
        (0.356, 0.929),
        0.264,
    );
    let (t, _) = average(&rows, "sae", ArtifactKind::Emg);
    assert!(
        t < 0.412 - 0.02,
        "EMG {t:.4}: no lead over general-256hz's 0.412"
    );
}

/// The default model (`fast-256hz`: `general-256hz`'s SAE behind a small 12x3k3 front end,
/// hop 32, with a correction gate) on the same subset. Its card (all 522 test segments, with
/// the real-data set's recorded EMG) has EOG 0.476 / 0.867, EMG 0.384 / 0.919 without the
/// gate; this subset (generated EMG only) is harder for it than the card's mix: measured EOG
/// 0.500 / 0.856, EMG 0.404 / 0.914, artifact-free change 0.222 (the same model without its
/// gate: 0.499 / 0.857, 0.414 / 0.912, 0.306, which the change bound fails; `general-256hz`:
/// 0.316). Bounds: 8 % above those RRMSE_t, 8 % below those CC, 7 % above the change.
#[test]
fn fast_model_keeps_its_quality_on_a_fixed_test_subset() {
    keeps_card_on_subset(
        "models/fast-256hz.safetensors",
        (0.500, 0.856),
        (0.404, 0.914),
        0.222,
    );
}

/// A 256 Hz model on the card subset: EOG and EMG within 8 % of `eog` and `emg` (`assert_card`;
/// the card's values, or those measured on this subset), and its artifact-free change within
/// 7 % of the value measured on this subset. Returns the rows.
fn keeps_card_on_subset(
    model: &str,
    eog: (f64, f64),
    emg: (f64, f64),
    clean_change: f64,
) -> Vec<QualityRow> {
    let (change, _) = artifact_free_change(model, 256.0, (4.0, 40.0));
    let rows = card_subset(model, 256.0, (4.0, 40.0));
    assert_card(&rows, ArtifactKind::Eog, eog, 0.08);
    assert_card(&rows, ArtifactKind::Emg, emg, 0.08);
    assert!(
        change <= clean_change * 1.07,
        "{model}: artifact-free change {change:.4} vs {clean_change} measured"
    );
    rows
}

/// Artifact-free EEG is most of a real recording: the plain model must leave it nearly as it
/// is. Card (all 522 test segments of its corpus): RRMSE_t 0.288 between output and input.
/// On the first 160 test segments of the EEGMMIDB corpus: 0.316 (a model of the same shape
/// trained without artifact-free pairs: 0.401, which this bound fails); margin 7 %.
#[test]
fn general_model_passes_artifact_free_eeg_through() {
    let (t, b) = artifact_free_change("models/general-256hz.safetensors", 256.0, (4.0, 40.0));
    assert!(t <= 0.316 * 1.07, "{t:.4} vs 0.316 measured");
    assert!(t < 0.6 * b, "sae {t:.4} vs band-pass {b:.4}");
}

/// The tiny model, trained with the same share of artifact-free pairs, with its correction
/// gate. On the first 160 test segments of the EEGMMIDB corpus: 0.253 (the same weights
/// without the gate: 0.396, which this bound fails, as does a tiny model trained without
/// artifact-free pairs: 0.457); margin 7 %. The card's 1-30 Hz band-pass changes these
/// windows by 0.394.
#[test]
fn tiny_int8_model_passes_artifact_free_eeg_through() {
    let (t, b) = artifact_free_change("models/tiny-128hz-int8.safetensors", 128.0, (1.0, 30.0));
    assert!(t <= 0.253 * 1.07, "{t:.4} vs 0.253 measured");
    assert!(t < 0.7 * b, "sae {t:.4} vs band-pass {b:.4}");
}

/// RRMSE_t between output and input of `model` and of the card's band-pass on the artifact-free
/// windows of the first 160 test segments of the card's corpus.
fn artifact_free_change(model: &str, fs: f64, band: (f64, f64)) -> (f64, f64) {
    let corpus = Corpus::build(
        CorpusConfig::at_rate(fs),
        &[Recording::from_edf(Path::new(EEGMMIDB)).unwrap()],
    )
    .unwrap();
    let windows = corpus
        .clean_windows(Split::Test, corpus.config.seg_len, 4 * SEGMENTS)
        .unwrap();
    assert_eq!(windows.len(), 4 * SEGMENTS);
    let mut methods: Vec<Box<dyn Method>> = vec![
        Box::new(SaeMethod::new(
            "sae",
            Model::load(Path::new(model)).unwrap(),
        )),
        Box::new(BandPass::new(band.0, band.1, Some(60.0), fs).unwrap()),
    ];
    let c = mfr_eeg::eval::bench::clean_change(&mut methods, &windows).unwrap();
    eprintln!(
        "{model} artifact-free change: sae {:.4}, band-pass {:.4}",
        c[0].1, c[1].1
    );
    (c[0].1, c[1].1)
}

#[test]
fn tiny_int8_model_keeps_its_card_quality_on_a_fixed_test_subset() {
    let rows = card_subset("models/tiny-128hz-int8.safetensors", 128.0, (1.0, 30.0));
    // Card (models/tiny-128hz-int8.md, all 519 test segments of its corpus, with the
    // real-data set's test recordings and recorded EMG, before the correction gate): EOG
    // 0.497 / 0.861, EMG 0.466 / 0.884. On this subset of the EEGMMIDB corpus, with the gate:
    // EOG 0.504 / 0.857, EMG 0.452 / 0.896 (without it 0.515 / 0.858, 0.474 / 0.891).
    assert_card(&rows, ArtifactKind::Eog, (0.497, 0.861), 0.08);
    assert_card(&rows, ArtifactKind::Emg, (0.466, 0.884), 0.08);
    // Averaged over the levels it beats the card's band-pass (1-30 Hz) on RRMSE_t.
    let bp = "band-pass 1-30 Hz + notch";
    for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
        let (t, _) = average(&rows, "sae", kind);
        let (bt, _) = average(&rows, bp, kind);
        assert!(t < bt - 0.1, "{kind:?}: {t} vs {bt}");
    }
}

fn plux_set() -> RealSet {
    let eeg = Recording::from_edf(Path::new(PLUX_EEG)).unwrap();
    let emg = Recording::from_edf(Path::new(PLUX_EMG)).unwrap();
    RealSet {
        eeg: vec![RealRecording {
            recording: eeg,
            split: Split::Test,
            note: String::new(),
        }],
        emg: vec![RealRecording {
            recording: emg,
            split: Split::Test,
            note: String::new(),
        }],
    }
}

#[test]
fn real_emg_epochs_keep_the_active_half_and_the_emg_band() {
    let emg = Recording::from_edf(Path::new(PLUX_EMG)).unwrap();
    // 20 s at 1000 Hz, 1 s dropped at each end: 9 epochs of 2 s, the upper half by RMS kept.
    let e = emg_epochs(&emg, 256.0, 512).unwrap();
    assert_eq!(e.len(), 5);
    for x in &e {
        assert_eq!(x.len(), 512);
        // Band 1-120 Hz of surface EMG: under 1 % of the epoch's power below 1 Hz (DC and the
        // first bin) and most of it (> 80 %) in 20-120 Hz. Naive DFT, 0.5 Hz bins.
        let power = |k: usize| {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for (n, &v) in x.iter().enumerate() {
                let ph = -2.0 * std::f64::consts::PI * (k * n) as f64 / 512.0;
                re += v as f64 * ph.cos();
                im += v as f64 * ph.sin();
            }
            re * re + im * im
        };
        let p: Vec<f64> = (0..=256).map(power).collect();
        let total: f64 = p.iter().sum();
        let low: f64 = p[..2].iter().sum();
        let emg: f64 = p[40..=240].iter().sum();
        assert!(low < 0.01 * total, "below 1 Hz: {}", low / total);
        assert!(emg > 0.8 * total, "20-120 Hz: {}", emg / total);
    }
}

#[test]
fn general_model_on_a_held_out_real_recording_with_recorded_emg() {
    // P3/P4 from a biosignalsplux device and biceps EMG, neither seen in training.
    let real = plux_set();
    let corpus = real.corpus(CorpusConfig::at_rate(256.0), &[]).unwrap();
    let names = real.eeg_names(Split::Test);
    let mut methods: Vec<Box<dyn Method>> = vec![
        Box::new(BandPass::new(4.0, 40.0, Some(60.0), 256.0).unwrap()),
        Box::new(SaeMethod::new(
            "sae",
            Model::load(Path::new("models/general-256hz.safetensors")).unwrap(),
        )),
    ];
    let q = per_recording(
        &corpus,
        Split::Test,
        &names,
        &mut methods,
        &[ArtifactKind::Eog, ArtifactKind::Emg],
        usize::MAX,
    )
    .unwrap();
    assert_eq!(q.len(), 2, "one recording and the pool");
    let pooled = &q[1];
    assert!(pooled.segments >= 20, "{} clean segments", pooled.segments);
    for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
        let (t, c) = average(&pooled.rows, "sae", kind);
        let (bt, bc) = average(&pooled.rows, "band-pass 4-40 Hz + notch", kind);
        eprintln!("plux {kind:?}: sae {t:.4} / {c:.4}, band-pass {bt:.4} / {bc:.4}");
    }
    // Measured: EOG 0.541 / 0.803 (band-pass 0.549 / 0.808: a tie), EMG 0.549 / 0.756
    // (band-pass 0.859 / 0.664). Margin 7 % on the model; on EMG it must keep most of its
    // lead over the band-pass.
    let (t, c) = average(&pooled.rows, "sae", ArtifactKind::Eog);
    assert!(t <= 0.541 * 1.07 && c >= 0.803 * 0.93, "EOG {t} / {c}");
    let (t, c) = average(&pooled.rows, "sae", ArtifactKind::Emg);
    let (bt, bc) = average(&pooled.rows, "band-pass 4-40 Hz + notch", ArtifactKind::Emg);
    assert!(t <= 0.549 * 1.07 && c >= 0.756 * 0.93, "EMG {t} / {c}");
    assert!(
        t < bt - 0.2 && c > bc + 0.04,
        "EMG {t}/{c} vs band-pass {bt}/{bc}"
    );
    // Artifact-free windows of the unseen device: what the model changes where there is
    // nothing to remove.
    let change = |m: &str| pooled.clean.iter().find(|c| c.0 == m).unwrap().1;
    let (sae, bp) = (change("sae"), change("band-pass 4-40 Hz + notch"));
    eprintln!("plux artifact-free change: sae {sae:.4}, band-pass {bp:.4}");
    assert_eq!(pooled.clean[0].2, pooled.segments, "one window per segment");
    // Measured: sae 0.462, band-pass 0.518 (on the model's own test split the SAE changes
    // artifact-free windows by 0.288): an unseen device's clean EEG is changed far more.
    assert!(
        sae <= 0.462 * 1.07 && sae < bp,
        "sae {sae} vs band-pass {bp}"
    );
}

/// The real-data section ends with the validation row: the same methods on the corpus's
/// validation windows, so models meant for unseen recordings can be chosen there.
#[test]
fn real_bench_section_scores_the_validation_split_last() {
    let base = [Recording::from_edf(Path::new(EEGMMIDB)).unwrap()];
    let model = || Model::load(Path::new("models/general-256hz.safetensors")).unwrap();
    let q = mfr_eeg::eval::real::bench_section(
        &plux_set(),
        CorpusConfig::at_rate(256.0),
        &base,
        vec![("sae".into(), model())],
        Vec::new(),
        4,
        8,
    )
    .unwrap();
    assert_eq!(
        q.len(),
        3,
        "one test recording, the pool, the validation row"
    );
    let v = q.last().unwrap();
    assert_eq!(v.recording, mfr_eeg::eval::real::VALIDATION_ROW);
    assert_eq!(v.segments, 8);
    // The row's numbers are those of the model on the first 8 validation segments' windows.
    let corpus = plux_set()
        .corpus(CorpusConfig::at_rate(256.0), &base)
        .unwrap();
    let mut sae: Vec<Box<dyn Method>> = vec![Box::new(SaeMethod::new("sae", model()))];
    for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
        let w = corpus
            .level_windows(Split::Val, kind, corpus.config.seg_len, 8)
            .unwrap();
        let own = evaluate(&mut sae, &w, 256.0).unwrap().rows;
        let name = v
            .rows
            .iter()
            .find(|r| r.method.contains("sae"))
            .unwrap()
            .method
            .clone();
        assert_eq!(average(&v.rows, &name, kind), average(&own, "sae", kind));
    }
    let change = v.clean.iter().find(|c| c.0.contains("sae")).unwrap();
    assert_eq!(change.2, 8);
    assert!(change.1 > 0.0 && change.1 < 1.0, "{change:?}");
}

#[cfg(feature = "train")]
pub(crate) mod cnn {
    use mfr_eeg::eval::cnn::{CnnConfig, PeerArch, PeerNet, train_cnn, val_loss};
    use mfr_eeg::rng::Rng;
    use mfr_eeg::train::Dataset;

    /// `n` windows of `d` seeded standard-normal samples, each with half itself as target.
    pub(crate) fn half_of_noise(seed: u64, d: usize, n: usize) -> Dataset {
        let mut rng = Rng::new(seed);
        let inputs: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let targets: Vec<f32> = inputs.iter().map(|v| 0.5 * v).collect();
        Dataset {
            inputs,
            targets,
            dim: d,
        }
    }

    #[test]
    fn unet_shapes_and_parameter_count() {
        let dev = burn::tensor::Device::flex();
        let net = PeerNet::init(PeerArch::UNet, 8, 7, 256, 0, &dev);
        // 8*1*7+8 + 16*8*7+16 + 16*16*7+16 + 8*32*7+8 + 8*16*7+8 + 8+1
        assert_eq!(net.n_params(), 5497);
        let x = burn::tensor::Tensor::<2>::zeros([3, 256], &dev);
        assert_eq!(net.forward(x).dims(), [3, 256]);
    }

    #[test]
    fn unet_training_lowers_the_loss_on_a_learnable_map() {
        // Target = half the input: a conv net learns this in a few dozen steps.
        let d = 64;
        let data = half_of_noise(3, d, 256);
        let dev = burn::tensor::Device::flex();
        let cfg = CnnConfig {
            steps: 60,
            batch: 32,
            lr: 1e-2,
            ..CnnConfig::default_peer()
        };
        let before = val_loss(
            &PeerNet::init(PeerArch::UNet, 8, 7, d, 0, &dev),
            &data,
            1e-3,
            &dev,
        );
        let (_, run) = train_cnn(&cfg, &data, &data, &dev, |_, _| {}).unwrap();
        assert!(run.val_loss < 0.5 * before, "{before} -> {}", run.val_loss);
    }

    #[test]
    fn conv_front_sae_starts_as_the_plain_sae_and_learns() {
        use mfr_eeg::train::TrainConfig;
        use mfr_eeg::train::sae::SaeStack;
        let dev = burn::tensor::Device::flex();
        let (d, n_atoms, n) = (64, 4, 512);
        let arch = PeerArch::Sae {
            d_sae: 32,
            k: 8,
            width: 4,
            depth: 2,
        };
        let net = PeerNet::init(arch, 8, 5, d, 1, &dev);
        // front 4*1*5+4 + 4*4*5+4 + 4+1, SAE 64*32 + 32 + 64 + 32*64
        assert_eq!(net.n_params(), 113 + 2 * 64 * 32 + 32 + 64);
        // Windows in the span of a few fixed waveforms; target = half the input.
        let mut rng = Rng::new(5);
        let atoms: Vec<f32> = (0..n_atoms * d).map(|_| rng.normal() as f32).collect();
        let mut inputs = vec![0f32; n * d];
        for w in inputs.chunks_exact_mut(d) {
            for a in atoms.chunks_exact(d) {
                let c = rng.normal() as f32;
                for (v, &x) in w.iter_mut().zip(a) {
                    *v += c * x;
                }
            }
        }
        let targets: Vec<f32> = inputs.iter().map(|v| 0.5 * v).collect();
        let data = Dataset {
            inputs,
            targets,
            dim: d,
        };
        // The front's last layer starts at zero: the output is the plain SAE's.
        let x = burn::tensor::Tensor::<2>::from_data(
            burn::tensor::TensorData::new(data.inputs[..3 * d].to_vec(), [3, d]),
            &dev,
        );
        let cfg = TrainConfig::new(d, 32, 8).with_n_saes(1).with_seed(1);
        let plain = SaeStack::init(&cfg, &[0.0; 64], &dev)
            .forward(x.clone(), 8, mfr_eeg::train::ActivationKind::TopkRelu, true)
            .x_hat
            .reshape([3, d]);
        let diff = net
            .forward(x)
            .sub(plain)
            .abs()
            .max()
            .try_into_vec_as::<f32>()
            .unwrap()[0];
        assert!(diff < 1e-5, "{diff}");
        let before = val_loss(&net, &data, 1e-3, &dev);
        let run_cfg = CnnConfig {
            arch,
            kernel: 5,
            steps: 150,
            batch: 64,
            lr: 1e-2,
            ..CnnConfig::default_peer()
        };
        let (_, run) = train_cnn(&run_cfg, &data, &data, &dev, |_, _| {}).unwrap();
        assert!(run.val_loss < 0.2 * before, "{before} -> {}", run.val_loss);
    }
}
