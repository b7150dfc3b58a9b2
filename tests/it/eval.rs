//! Integration tests: eval (data protocol, splits, determinism, EEGdenoiseNet loader).

use mfr_eeg::eval::data::{
    ArtifactKind, ArtifactSource, Recording, SelectionRule, SnrPlan, artifact, make_windows,
    mix_at_snr, model_segment, model_segments, recording_segments, split_segments,
};
use mfr_eeg::eval::eegdenoisenet::{EegDenoiseNet, split_bank};
use mfr_eeg::eval::metrics::{rms, snr_db};
use mfr_eeg::eval::npy::{NpyDtype, write_npy};
use mfr_eeg::rng::Rng;

#[test]
fn mixing_hits_the_requested_snr() {
    let mut rng = Rng::new(11);
    for (i, kind) in ArtifactKind::ALL.into_iter().enumerate() {
        let clean = model_segment(1, i as u64, 512, 256.0);
        let a = artifact(kind, &mut rng, 512, 256.0);
        for snr in kind.test_snr_levels_db() {
            let (noisy, lambda) = mix_at_snr(&clean, &a, snr).unwrap();
            // In f64 the definition holds to rounding (1e-9 dB).
            let exact = 10.0 * (rms(&clean) / (lambda * rms(&a))).log10();
            assert!((exact - snr).abs() < 1e-9, "{kind:?} {snr}: {exact}");
            // Measured from the stored f32 noisy signal: within 1e-6 dB (f32 rounding of the
            // sum perturbs the residual by ~1e-7 relative, i.e. ~4e-7 dB).
            let resid: Vec<f32> = noisy.iter().zip(&clean).map(|(n, c)| n - c).collect();
            let got = snr_db(&clean, &resid).unwrap();
            assert!((got - snr).abs() < 1e-6, "{kind:?} {snr}: measured {got}");
        }
    }
}

#[test]
fn windows_are_zscored_by_the_noisy_std_and_deterministic() {
    let segs = model_segments(5, 4, 512, 256.0, 0);
    let plan = SnrPlan::Levels(ArtifactKind::Emg.test_snr_levels_db().to_vec());
    let w1 = make_windows(
        &segs,
        ArtifactKind::Emg,
        ArtifactSource::Generated,
        &plan,
        512,
        256.0,
        9,
    )
    .unwrap();
    let w2 = make_windows(
        &segs,
        ArtifactKind::Emg,
        ArtifactSource::Generated,
        &plan,
        512,
        256.0,
        9,
    )
    .unwrap();
    let w3 = make_windows(
        &segs,
        ArtifactKind::Emg,
        ArtifactSource::Generated,
        &plan,
        512,
        256.0,
        10,
    )
    .unwrap();
    assert_eq!(w1.len(), 40);
    assert_eq!(w1, w2, "same seed must give identical windows");
    assert_ne!(
        w1[0].noisy, w3[0].noisy,
        "a different seed must change the artifacts"
    );
    for w in &w1 {
        let n = w.noisy.len() as f64;
        let m = w.noisy.iter().map(|&v| v as f64).sum::<f64>() / n;
        let sd = (w.noisy.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n).sqrt();
        assert!((sd - 1.0).abs() < 1e-5, "noisy std {sd}"); // f32 storage
        let resid: Vec<f32> = w.noisy.iter().zip(&w.clean).map(|(a, b)| a - b).collect();
        // Scaling both by the same std leaves the SNR unchanged (f32 rounding: 1e-5 dB).
        assert!((snr_db(&w.clean, &resid).unwrap() - w.snr_db).abs() < 1e-5);
    }
    // The physiological model itself is deterministic by (seed, index).
    assert_eq!(
        model_segment(3, 7, 256, 256.0),
        model_segment(3, 7, 256, 256.0)
    );
    assert_ne!(
        model_segment(3, 7, 256, 256.0),
        model_segment(4, 7, 256, 256.0)
    );
}

#[test]
fn splits_never_share_a_group() {
    let mut segs = model_segments(1, 30, 64, 256.0, 0);
    // Several segments per group, as a recording's channels share a time span.
    for (i, s) in segs.iter_mut().enumerate() {
        s.group = (i / 3) as u64;
    }
    let sp = split_segments(segs, (0.7, 0.15), 42);
    let groups = |v: &[mfr_eeg::eval::data::Segment]| {
        v.iter()
            .map(|s| s.group)
            .collect::<std::collections::HashSet<_>>()
    };
    let (a, b, c) = (groups(&sp.train), groups(&sp.val), groups(&sp.test));
    assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c));
    assert_eq!(a.len() + b.len() + c.len(), 10);
    assert_eq!(sp.train.len() + sp.val.len() + sp.test.len(), 30);
    assert_eq!((a.len(), b.len(), c.len()), (7, 2, 1));
    // Deterministic by seed.
    let again = split_segments(model_segments(1, 30, 64, 256.0, 0), (0.7, 0.15), 42);
    let again2 = split_segments(model_segments(1, 30, 64, 256.0, 0), (0.7, 0.15), 42);
    assert_eq!(again.test, again2.test);
}

#[test]
fn selection_rule_rejects_a_segment_with_a_big_blink() {
    let fs = 160.0;
    let n = (fs * 40.0) as usize;
    let channels: Vec<Vec<f32>> = (0..3).map(|c| model_segment(8, c, n, fs)).collect();
    let mut rec = Recording {
        name: "synthetic".into(),
        sample_rate_hz: fs,
        labels: vec!["Fp1.".into(), "Cz..".into(), "Oz..".into()],
        channels,
    };
    // A 300 uV blink-like bump at 11.0 s on Fp1 only.
    for (i, x) in rec.channels[0].iter_mut().enumerate() {
        let t = i as f64 / fs - 11.0;
        *x += (300.0 * (-(t / 0.15).powi(2)).exp()) as f32;
    }
    let (segs, rep) =
        recording_segments(&rec, 256.0, 512, 60.0, SelectionRule::default(), 100).unwrap();
    // 40 s minus the 1 s edges -> 19 segments of 2 s per channel.
    assert_eq!(rep.kept + rep.rejected, 57);
    // The blink sits in segment (11 - 1) / 2 = 5 of Fp1: it must be gone.
    assert!(
        !segs
            .iter()
            .any(|s| s.origin.starts_with("synthetic:Fp1.@11.0s"))
    );
    assert!(
        segs.iter()
            .any(|s| s.origin.starts_with("synthetic:Cz..@11.0s"))
    );
    assert!(rep.kept >= 45, "too many clean segments rejected: {rep:?}");
    assert!(
        segs.iter()
            .all(|s| s.samples.len() == 512 && s.group >= 100 && s.group < 119)
    );
}

#[test]
fn eegdenoisenet_loader_reads_the_published_layout() {
    let dir = tempfile::tempdir().unwrap();
    let sine = |n: usize, f: f64, fs: f64, a: f64| {
        (0..n).map(move |i| a * (std::f64::consts::TAU * f * i as f64 / fs).sin())
    };
    let eeg: Vec<f64> = (0..5)
        .flat_map(|r| sine(512, 10.0, 256.0, 1.0 + r as f64))
        .collect();
    let eog: Vec<f64> = (0..4).flat_map(|_| sine(512, 1.0, 256.0, 50.0)).collect();
    // EMG at 512 Hz: 64 Hz survives the move to 256 Hz, 200 Hz must be removed.
    let emg: Vec<f64> = (0..6)
        .flat_map(|_| {
            sine(1024, 64.0, 512.0, 2.0)
                .zip(sine(1024, 200.0, 512.0, 1.0))
                .map(|(a, b)| a + b)
        })
        .collect();
    write_npy(
        &dir.path().join("EEG_all_epochs.npy"),
        &[5, 512],
        &eeg,
        NpyDtype::F64,
    )
    .unwrap();
    write_npy(
        &dir.path().join("EOG_all_epochs.npy"),
        &[4, 512],
        &eog,
        NpyDtype::F64,
    )
    .unwrap();
    write_npy(
        &dir.path().join("EMG_all_epochs.npy"),
        &[6, 1024],
        &emg,
        NpyDtype::F64,
    )
    .unwrap();
    let d = EegDenoiseNet::load(dir.path()).unwrap();
    assert_eq!((d.eeg.len(), d.eog.len(), d.emg.len()), (5, 4, 6));
    assert!(d.emg.iter().all(|e| e.len() == 512));
    let want: Vec<f32> = sine(512, 64.0, 256.0, 2.0).map(|v| v as f32).collect();
    let err = d.emg[0]
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // Whole periods: spectral resampling is exact up to rounding (f32 storage, 1e-4).
    assert!(err < 1e-4, "EMG resampling error {err}");
    let segs = d.clean_segments(0);
    assert!((rms(&segs[2].samples) - 3.0 / 2f64.sqrt()).abs() < 1e-5);
    let [tr, va, te] = split_bank(&d.emg, (0.5, 0.25), 1);
    assert_eq!((tr.len(), va.len(), te.len()), (3, 2, 1));
    // A wrong shape names the file and the problem.
    write_npy(
        &dir.path().join("EOG_all_epochs.npy"),
        &[4, 256],
        &eog[..1024],
        NpyDtype::F32,
    )
    .unwrap();
    let e = EegDenoiseNet::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("EOG_all_epochs.npy") && e.contains("512"), "{e}");
}

#[test]
fn shipped_recording_yields_clean_segments_by_the_rule() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/eegmmidb_S001R02_64ch_160Hz_61s.edf");
    let rec = Recording::from_edf(&path).unwrap();
    assert_eq!((rec.channels.len(), rec.sample_rate_hz), (64, 160.0));
    assert!(rec.channels.iter().all(|c| c.len() == 160 * 61));
    let (segs, rep) =
        recording_segments(&rec, 256.0, 512, 60.0, SelectionRule::default(), 0).unwrap();
    // 61 s minus 1 s edges = 59 s -> 29 segments of 2 s on each of 64 channels.
    assert_eq!(rep.kept + rep.rejected, 29 * 64);
    // The rule is robust (median + 3 MAD): it removes a minority, not most of the data.
    assert!(rep.rejected > 0 && rep.kept > 29 * 64 * 6 / 10, "{rep:?}");
    // Conditioning removed the 60 Hz mains peak: averaged over kept segments, the 60 Hz bin
    // holds less than its neighbours at 56 and 64 Hz (in the raw file it stands above both).
    let w = mfr_eeg::eval::welch::Welch::new(256).unwrap();
    let mut p = vec![0.0; 129];
    for s in &segs {
        w.psd(&s.samples, 256.0)
            .unwrap()
            .iter()
            .zip(p.iter_mut())
            .for_each(|(a, b)| *b += a);
    }
    assert!(
        p[60] < 0.5 * (p[56] + p[64]),
        "60 Hz {} vs {} {}",
        p[60],
        p[56],
        p[64]
    );
    let raw = &rec.channels[0];
    let praw = mfr_eeg::eval::welch::welch_psd(raw, 160.0, 160).unwrap();
    assert!(
        praw[60] > praw[56] && praw[60] > praw[64],
        "raw file has no 60 Hz peak?"
    );
}

#[test]
fn harness_writes_a_report_of_real_numbers_at_tiny_size() {
    use mfr_eeg::eval::bench::{BenchPlan, quality};
    use mfr_eeg::eval::corpus::{Corpus, CorpusConfig};
    use mfr_eeg::eval::harness::{
        Report, SeedResult, measure_speed, summarise_arms, write_figures,
    };
    use mfr_eeg::model::{Model, identity_model};
    // Tiny corpus: model segments only, 2 test segments per kind.
    let mut cfg = CorpusConfig::at_rate(256.0);
    cfg.n_model_segments = 20;
    let corpus = Corpus::build(cfg, &[]).unwrap();
    let plan = BenchPlan {
        quick: true,
        max_test_segments: 2,
        max_val_segments: 2,
        model_segments: 20,
        speed: (2, 2.0),
    };
    // The identity model must reproduce the noisy input's numbers exactly.
    let (meta, t) = identity_model(256, 128, 256.0);
    let model = Model::from_tensors(&meta, &t).unwrap();
    let speed = measure_speed("identity", &model, 2, 2.0).unwrap();
    assert!(speed.windows_per_s > 0.0 && speed.x_realtime > 0.0);
    let ev = quality(&corpus, &plan, vec![("SAE identity".into(), model)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let figures = write_figures(dir.path(), &ev, 256.0).unwrap();
    let seeds = vec![
        SeedResult {
            alpha: 0.0,
            seed: 0,
            val_loss: 0.2,
            test_rrmse_t: 0.5,
            test_cc: 0.8,
            train_seconds: 1.0,
            windows_per_s: 10.0,
            step: None,
            val_windows_rrmse_t: None,
            skip_gate: None,
            val_clean_rrmse_t: None,
            test_clean_rrmse_t: None,
            dead_at: Vec::new(),
        },
        SeedResult {
            alpha: 0.0,
            seed: 1,
            val_loss: 0.4,
            test_rrmse_t: 0.7,
            test_cc: 0.6,
            train_seconds: 1.0,
            windows_per_s: 10.0,
            step: None,
            val_windows_rrmse_t: None,
            skip_gate: None,
            val_clean_rrmse_t: None,
            test_clean_rrmse_t: None,
            dead_at: Vec::new(),
        },
    ];
    let arms = summarise_arms(&seeds);
    assert_eq!(arms.len(), 1);
    assert!((arms[0].val_loss.0 - 0.3).abs() < 1e-12);
    assert!((arms[0].val_loss.1 - 0.02f64.sqrt()).abs() < 1e-12); // sample std of {0.2, 0.4}
    let report = Report {
        quality: ev.rows.clone(),
        candidate: Some("SAE identity".into()),
        speed: vec![speed],
        mfr_arms: arms,
        mfr_seeds: seeds,
        figures,
        fs: 256.0,
        ..Report::default()
    };
    report.write(dir.path()).unwrap();
    // 5 methods (noisy, band-pass, two wavelets, the SAE) x 6 kinds x (10 levels + 1 average).
    assert_eq!(ev.rows.len(), 5 * 6 * 11);
    for r in &ev.rows {
        assert!(
            r.rrmse_t.is_finite()
                && r.rrmse_s.is_finite()
                && r.cc.is_finite()
                && r.snr_imp_db.is_finite(),
            "{r:?}"
        );
        assert!(r.n == if r.snr_db.is_some() { 2 } else { 20 });
    }
    let row = |m: &str, k: ArtifactKind, s: f64| {
        ev.rows
            .iter()
            .find(|r| {
                r.method == m && r.kind == k && r.snr_db.is_some_and(|x| (x - s).abs() < 1e-9)
            })
            .unwrap()
            .clone()
    };
    for kind in ArtifactKind::ALL {
        let lo = kind.test_snr_levels_db()[0];
        let noisy = row("noisy input", kind, lo);
        let ident = row("SAE identity", kind, lo);
        // Identity SAE through the offline path = the input (overlap-add of exact copies;
        // f32 rounding only), so its metrics equal the unprocessed row's.
        assert!((noisy.rrmse_t - ident.rrmse_t).abs() < 1e-5, "{kind:?}");
        assert!(noisy.snr_imp_db.abs() < 1e-12 && ident.snr_imp_db.abs() < 1e-4);
        // At SNR s the unprocessed RRMSE_t is 10^(-s/10) (EEGdenoiseNet's convention).
        assert!(
            (noisy.rrmse_t - 10f64.powf(-lo / 10.0)).abs() < 1e-5,
            "{kind:?} {}",
            noisy.rrmse_t
        );
    }
    // Classical filters do help on muscle noise.
    let emg = |m: &str| {
        ev.rows
            .iter()
            .find(|r| r.method.starts_with(m) && r.kind == ArtifactKind::Emg && r.snr_db.is_none())
            .unwrap()
            .rrmse_t
    };
    assert!(emg("band-pass") < emg("noisy input"));
    // The slow-artifact wavelet does help on blinks (it zeroes < 2 Hz, clips 2-16 Hz).
    let eog = |m: &str| {
        ev.rows
            .iter()
            .find(|r| r.method.starts_with(m) && r.kind == ArtifactKind::Eog && r.snr_db.is_none())
            .unwrap()
            .rrmse_t
    };
    assert!(
        eog("wavelet db4 slow-artifact") < 0.8 * eog("noisy input"),
        "{} vs {}",
        eog("wavelet db4 slow-artifact"),
        eog("noisy input")
    );
    let json: Report =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    // serde_json's float parsing is not guaranteed round-trip exact: compare at 1e-12.
    assert_eq!(json.quality.len(), ev.rows.len());
    for (a, b) in json.quality.iter().zip(&ev.rows) {
        assert!(
            a.method == b.method
                && a.kind == b.kind
                && (a.rrmse_t - b.rrmse_t).abs() <= 1e-12 * b.rrmse_t.abs().max(1.0)
        );
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(
        md.contains("| emg | band-pass")
            && md.contains("## Acceptance")
            && md.contains("MFR vs no MFR")
    );
    assert!(
        md.contains("0.3000 ± 0.1414"),
        "MFR table must show mean ± std"
    );
    assert!(!md.contains("NaN") && !md.contains("inf"));
}

#[test]
fn bench_report_carries_the_eye_tables() {
    use mfr_eeg::eval::harness::Report;
    use mfr_eeg::eval::ocular::check_file;
    use mfr_eeg::model::Model;
    let model = Model::load(std::path::Path::new("models/general-256hz.safetensors")).unwrap();
    let iso = mfr_eeg::ocular::Isolator::of_model(&model.view());
    let path = std::path::Path::new("data/spkit_emotiv_14ch_128Hz_16s_blink.edf");
    let r = check_file(path, None, iso, 1).unwrap();
    let md = Report {
        eye: r.markdown(),
        ..Report::default()
    }
    .to_markdown();
    assert!(md.contains("\n## Eye artifacts on real multi-channel recordings\n"));
    assert!(
        md.contains("\n### data/spkit_emotiv_14ch_128Hz_16s_blink.edf\n"),
        "{md}"
    );
    // One row per method, the eye stage's with its measured numbers.
    let row = md
        .lines()
        .find(|l| l.starts_with("| mfr-eeg eye stage"))
        .unwrap();
    let cells: Vec<f64> = row
        .split('|')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    assert_eq!(cells.len(), 7, "{row}");
    // Leakage, blink left, blink kept (none of the blink's shape), blink-free change, then
    // injected pops and drifts left: the eye stage leaves electrode artifacts alone.
    assert!(
        cells[0] <= 0.05 && cells[1] < 0.15 && cells[2].abs() < 0.02,
        "{row}"
    );
    assert!(cells[4] > 0.9 && cells[5] > 0.9, "{row}");
}

/// `clean_fraction` gives that share of training pairs no artifact (input = target) and
/// leaves every pair as it was at 0; clean windows are z-scored and equal to their target.
#[test]
fn training_pairs_carry_the_asked_share_of_clean_windows() {
    use mfr_eeg::core::Normalisation;
    use mfr_eeg::eval::corpus::{Corpus, CorpusConfig, DEFAULT_MIX, Split};
    let mut cfg = CorpusConfig::at_rate(256.0);
    cfg.n_model_segments = 40;
    let corpus = Corpus::build(cfg, &[]).unwrap();
    let try_pairs = |p: f64| {
        corpus.training_pairs(
            Split::Train,
            256,
            256,
            8,
            &DEFAULT_MIX,
            p,
            Normalisation::WindowZscoreNoMean,
            3,
        )
    };
    let pairs = |p: f64| try_pairs(p).unwrap();
    let share = |(x, t): &(Vec<f32>, Vec<f32>)| {
        let rows: Vec<bool> = x
            .chunks_exact(256)
            .zip(t.chunks_exact(256))
            // Equal up to the f32 rounding of the input's (zero) mean being removed.
            .map(|(a, b)| a.iter().zip(b).all(|(u, v)| (u - v).abs() < 1e-5))
            .collect();
        rows.iter().filter(|&&c| c).count() as f64 / rows.len() as f64
    };
    let none = pairs(0.0);
    assert_eq!(share(&none), 0.0);
    assert_eq!(share(&pairs(1.0)), 1.0);
    let some = pairs(0.25);
    let n = (some.0.len() / 256) as f64;
    // Binomial: 4 standard deviations around the asked share.
    let sd = (0.25 * 0.75 / n).sqrt();
    assert!(
        (share(&some) - 0.25).abs() < 4.0 * sd,
        "share {}",
        share(&some)
    );
    assert_ne!(none.0, some.0);
    assert!(try_pairs(1.5).is_err());
    let clean = corpus.clean_windows(Split::Test, 512, 5).unwrap();
    assert_eq!(clean.len(), corpus.segments(Split::Test).len().min(5));
    for w in &clean {
        assert_eq!(w.noisy, w.clean);
        let sd = (w.noisy.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 512.0).sqrt();
        assert!((sd - 1.0).abs() < 1e-4, "std {sd}");
    }
}
