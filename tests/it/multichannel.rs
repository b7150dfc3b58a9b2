//! Multi-channel eye-artifact removal: a synthetic montage with a known blink topography,
//! reference finding from labels, and the measures on the shipped real blink segment.

use mfr_eeg::core::{ChannelState, MwfConfig, RefRegression, RegressionConfig, SpatialError};
use mfr_eeg::eval::ocular::{FileReport, MethodRow, check_file};
use mfr_eeg::model::Model;
use mfr_eeg::ocular::{
    Isolation, Isolator, MwfReport, OcularError, ReferenceKind, clean_block, find_references,
    mwf_block,
};
use mfr_eeg::rng::Rng;

const FS: f64 = 256.0;
const LABELS: [&str; 8] = ["Fp1", "Fp2", "F7", "F8", "C3", "C4", "O1", "O2"];
/// Blink topography: strong at Fp1/Fp2, fading toward the back.
const TOPO: [f32; 8] = [1.0, 0.9, 0.55, 0.45, 0.2, 0.18, 0.05, 0.04];
const MODEL: &str = "models/general-256hz.safetensors";
const EEGLAB: &str = "data/eeglab_tutorial_32ch_128Hz_238s.edf";
const SPKIT_BLINK: &str = "data/spkit_emotiv_14ch_128Hz_16s_blink.edf";

struct Montage {
    brain: Vec<Vec<f32>>,
    blink: Vec<f32>,
    /// Samples inside a blink.
    in_blink: Vec<bool>,
    /// Samples at least 0.6 s from any blink.
    free: Vec<bool>,
}

/// `seconds` of 8-channel "EEG" (independent per channel, 2-30 Hz, see below) and blinks of 100-200 uV lasting
/// 0.3-0.45 s every 2.5-5 s, seen with [`TOPO`].
fn montage(seed: u64, seconds: f64) -> Montage {
    let n = (seconds * FS) as usize;
    let mut rng = Rng::new(seed);
    // 40 sinusoids per channel between 2 and 30 Hz with 1/f amplitudes and random phases
    // (about 10 uV RMS), plus a 10 Hz alpha and 1 uV of white noise.
    let brain = (0..LABELS.len())
        .map(|_| {
            let comps: Vec<(f64, f64, f64)> = (0..40)
                .map(|_| {
                    let f = rng.uniform(2.0, 30.0);
                    (f, 12.0 / f.sqrt(), rng.uniform(0.0, std::f64::consts::TAU))
                })
                .collect();
            let (amp, ph) = (
                rng.uniform(3.0, 8.0),
                rng.uniform(0.0, std::f64::consts::TAU),
            );
            (0..n)
                .map(|t| {
                    let w = 2.0 * std::f64::consts::PI * t as f64 / FS;
                    let s: f64 = comps.iter().map(|&(f, a, p)| a * (w * f + p).sin()).sum();
                    (s / 4.0 + amp * (w * 10.0 + ph).sin() + rng.normal()) as f32
                })
                .collect()
        })
        .collect();
    let mut blink = vec![0.0f32; n];
    let mut in_blink = vec![false; n];
    let mut t0 = rng.uniform(1.0, 2.0);
    while t0 < seconds - 1.0 {
        let dur = rng.uniform(0.3, 0.45);
        let amp = rng.uniform(100.0, 200.0);
        let (s, len) = ((t0 * FS) as usize, (dur * FS) as usize);
        for i in 0..len {
            let x = (std::f64::consts::PI * i as f64 / len as f64).sin();
            blink[s + i] += (amp * x * x) as f32;
            in_blink[s + i] = true;
        }
        t0 += rng.uniform(2.5, 5.0);
    }
    let m = (0.6 * FS) as usize;
    let free = (0..n)
        .map(|t| {
            !in_blink[t.saturating_sub(m)..(t + m + 1).min(n)]
                .iter()
                .any(|&b| b)
        })
        .collect();
    Montage {
        brain,
        blink,
        in_blink,
        free,
    }
}

fn rms_ratio(num: impl Iterator<Item = f64>, den: impl Iterator<Item = f64>) -> f64 {
    let a: f64 = num.map(|v| v * v).sum();
    let b: f64 = den.map(|v| v * v).sum();
    (a / b).sqrt()
}

/// Per channel: blink residual (cleaned - brain) relative to the blink seen there, over blink
/// samples after `skip` samples; and the change (cleaned - raw) relative to the raw signal
/// over blink-free samples after `skip`.
fn residuals(m: &Montage, cleaned: &[Vec<f32>], skip: usize) -> Vec<(f64, f64)> {
    (0..LABELS.len())
        .map(|c| {
            let blink_idx: Vec<usize> = (skip..m.blink.len()).filter(|&t| m.in_blink[t]).collect();
            let free_idx: Vec<usize> = (skip..m.blink.len()).filter(|&t| m.free[t]).collect();
            let res = rms_ratio(
                blink_idx
                    .iter()
                    .map(|&t| f64::from(cleaned[c][t] - m.brain[c][t])),
                blink_idx.iter().map(|&t| f64::from(TOPO[c] * m.blink[t])),
            );
            let raw = |t: usize| f64::from(m.brain[c][t] + TOPO[c] * m.blink[t]);
            let change = rms_ratio(
                free_idx.iter().map(|&t| f64::from(cleaned[c][t]) - raw(t)),
                free_idx.iter().map(|&t| raw(t)),
            );
            (res, change)
        })
        .collect()
}

/// After `skip_s` seconds, on every channel: blink residual under `max_residual`, and
/// blink-free change under `slope * blink weight + floor` (`change_bound = (slope, floor)`).
fn assert_cleaned(
    m: &Montage,
    cleaned: &[Vec<f32>],
    skip_s: f64,
    max_residual: f64,
    change_bound: (f64, f64),
) {
    for (c, (res, change)) in residuals(m, cleaned, (skip_s * FS) as usize)
        .into_iter()
        .enumerate()
    {
        assert!(
            res < max_residual,
            "channel {}: blink residual {res:.3}",
            LABELS[c]
        );
        let bound = change_bound.0 * f64::from(TOPO[c]) + change_bound.1;
        eprintln!(
            "{}: blink residual {res:.3}, blink-free change {change:.3}",
            LABELS[c]
        );
        assert!(
            change < bound,
            "channel {}: blink-free change {change:.3} >= {bound:.3}",
            LABELS[c]
        );
    }
}

fn raw_channels(m: &Montage) -> Vec<Vec<f32>> {
    (0..LABELS.len())
        .map(|c| {
            m.brain[c]
                .iter()
                .zip(&m.blink)
                .map(|(b, k)| b + TOPO[c] * k)
                .collect()
        })
        .collect()
}

/// `eog-check`'s measures of `file` with the model at `model` (its own hop and rate).
fn check_with(model: &str, file: &str) -> FileReport {
    let model = Model::load(std::path::Path::new(model)).unwrap();
    check_file(
        std::path::Path::new(file),
        None,
        Isolator::of_model(&model.view()),
        1,
    )
    .unwrap()
}

/// The row of the first method whose name starts with `prefix`.
fn method_row(r: &FileReport, prefix: &str) -> MethodRow {
    r.rows
        .iter()
        .find(|x| x.method.starts_with(prefix))
        .unwrap()
        .clone()
}

fn labels(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn eog_channel_removes_known_blink_topography() {
    let m = montage(11, 60.0);
    let mut rng = Rng::new(5);
    // The EOG electrode sees the blink at 1.5x Fp1 plus 2 uV of its own noise.
    let eog: Vec<f32> = m
        .blink
        .iter()
        .map(|&b| 1.5 * b + 2.0 * rng.normal() as f32)
        .collect();
    let mut cleaned = raw_channels(&m);
    let report = clean_block(&mut cleaned, &[eog], FS, Isolation::Raw, true).unwrap();
    // The gains are the topography over 1.5 (within 10 %).
    for (c, g) in report.gains.iter().enumerate() {
        let want = f64::from(TOPO[c]) / 1.5;
        assert!(
            (g[0] - want).abs() < 0.1 * want + 0.005,
            "channel {c}: gain {} want {want}",
            g[0]
        );
    }
    // After the first 10 s: the blink is removed to within 12 % of its size on every channel
    // (measured 8-9 %), and blink-free EEG changes by less than 0.4 x the channel's blink
    // weight + 0.02 (measured 0.32 at Fp1, 0.012 at O2: what changes there is the gated
    // reference's own noise and the tail of the blink after its DC blocker, times the gain).
    assert_cleaned(&m, &cleaned, 10.0, 0.12, (0.4, 0.02));
}

#[test]
fn frontal_reference_with_sae_removes_blinks_without_eog() {
    let model = Model::load(std::path::Path::new(MODEL)).unwrap();
    let iso = Isolator::of_model(&model.view());
    let m = montage(12, 60.0);
    let raw = raw_channels(&m);
    let plan = find_references(&labels(&LABELS), None).unwrap().unwrap();
    assert_eq!(plan.kind, ReferenceKind::Frontal);
    let refs: Vec<Vec<f32>> = plan
        .references
        .iter()
        .map(|r| r.signal(|c| &raw[c][..]))
        .collect();
    let mut cleaned = raw.clone();
    clean_block(&mut cleaned, &refs, FS, Isolation::Sae(iso), true).unwrap();
    // After 10 s the blink is removed to within 20 % of its size (measured 10-16 %) and
    // blink-free EEG changes by less than 0.35 x the blink weight + 0.03 (measured 0.25 at
    // Fp2, 0.013 at O2): the frontal reference carries Fp EEG, of which the SAE-isolated,
    // gated waveform still lets some through.
    assert_cleaned(&m, &cleaned, 10.0, 0.2, (0.35, 0.03));
}

#[test]
fn references_are_found_by_label() {
    // EOG channels by label, after any EEG prefix and padding.
    let l = labels(&[
        "EEG Fp1-REF",
        "EEG Fp2-REF",
        "EEG F7-REF",
        "EEG F8-REF",
        "EEG C3-REF",
        "EOG left",
        "VEOG",
    ]);
    let p = find_references(&l, None).unwrap().unwrap();
    assert_eq!(p.kind, ReferenceKind::Eog);
    assert_eq!(
        p.references
            .iter()
            .map(|r| r.plus.clone())
            .collect::<Vec<_>>(),
        vec![vec![5], vec![6]]
    );
    assert_eq!(p.describe(), "EOG channels EOG left, VEOG");
    // --eog names a channel: matched without case, dots or the EEG prefix.
    let p = find_references(&l, Some(&labels(&["fp1"])))
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.kind, p.references[0].plus.clone()),
        (ReferenceKind::Eog, vec![0])
    );
    let p = find_references(&l, Some(&labels(&["eog LEFT"])))
        .unwrap()
        .unwrap();
    assert_eq!(p.references[0].plus, vec![5]);
    // An unknown --eog label is an error that lists the channels.
    match find_references(&l, Some(&labels(&["HEOG"]))) {
        Err(e @ OcularError::UnknownEog { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("\"HEOG\"") && msg.contains("EOG left"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    // No EOG: the frontal average and F7-F8 (EEGMMIDB's dotted labels).
    let l = labels(&[
        "Fc5.", "Fp1.", "Fpz.", "Fp2.", "Af7.", "F7..", "F8..", "Cz..",
    ]);
    let p = find_references(&l, None).unwrap().unwrap();
    assert_eq!(p.kind, ReferenceKind::Frontal);
    assert_eq!(p.references[0].plus, vec![1, 3, 2]);
    assert_eq!(
        (p.references[1].plus.clone(), p.references[1].minus.clone()),
        (vec![5], vec![6])
    );
    assert_eq!(
        p.describe(),
        "frontal references mean(Fp1,Fp2,Fpz), F7-F8 (no EOG channel)"
    );
    // Emotiv: no Fp, so AF3/AF4.
    let l = labels(&[
        "AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4",
    ]);
    let p = find_references(&l, None).unwrap().unwrap();
    assert_eq!(p.references[0].name, "mean(AF3,AF4)");
    assert_eq!(p.references[1].name, "F7-F8");
    // Nothing frontal: no plan (the caller falls back to the single-channel model).
    assert_eq!(
        find_references(&labels(&["C3", "C4", "O1", "O2"]), None).unwrap(),
        None
    );
    // Too many EOG channels.
    let l = labels(&["EOG1", "EOG2", "EOG3", "EOG4", "EOG5", "Cz"]);
    assert!(matches!(
        find_references(&l, None),
        Err(OcularError::TooManyReferences { got: 5 })
    ));
}

#[test]
fn reference_signal_is_mean_minus_mean() {
    let data = [vec![2.0f32, 4.0], vec![4.0, 8.0], vec![1.0, -1.0]];
    let l = labels(&["Fp1", "Fp2", "F7"]);
    let p = find_references(&l, None).unwrap().unwrap();
    assert_eq!(p.references.len(), 1);
    assert_eq!(p.references[0].signal(|c| &data[c][..]), vec![3.0, 6.0]);
}

#[test]
fn regression_rejects_wrong_frames() {
    let mut st = vec![ChannelState::<2>::default(); 4];
    let mut reg = RefRegression::new(RegressionConfig::for_rate(256.0), &mut st).unwrap();
    assert_eq!(
        reg.process_frame(&[0.0, 0.0], &mut [0.0; 5]),
        Err(SpatialError::FrameLength {
            expected: 4,
            got: 5
        })
    );
    let mut ch = vec![vec![0.0f32; 10]; 2];
    let refs = vec![vec![0.0f32; 9]];
    assert!(matches!(
        clean_block(&mut ch, &refs, 256.0, Isolation::Raw, false),
        Err(OcularError::Length {
            index: 0,
            expected: 10,
            got: 9
        })
    ));
}

/// The shipped real blink segment: the eye stage `denoise` runs reaches the leakage goal
/// (<= 0.05) and changes blink-free EEG less than ICA does; the gated regression on the
/// SAE-isolated reference, an alternative design, keeps its measured place (leakage 0.097,
/// change 0.517 vs ICA's 0.634, with the default model; 0.042 and 0.457 with an SAE trained
/// without artifact-free pairs, which isolates more of the blink and more EEG with it), both
/// with the SAE at hop 8 and the Hann taper.
#[test]
fn real_blinks_spkit_segment_beats_ica() {
    let model = Model::load(std::path::Path::new(MODEL)).unwrap();
    let view = model.view();
    let meta = view.meta();
    let iso = Isolator {
        sae: view.sae().with_ola_shape(mfr_eeg::core::OlaShape::Hann),
        hop: 8,
        rate_hz: f64::from(meta.sample_rate_hz),
    };
    let r = check_file(std::path::Path::new(SPKIT_BLINK), None, iso, 1).unwrap();
    let row = |p: &str| method_row(&r, p);
    let (raw, ica, spatial) = (
        row("raw"),
        row("ICA"),
        row("regression on gated SAE-isolated reference"),
    );
    assert!(raw.leakage > 0.9, "{raw:?}");
    assert!(spatial.leakage <= 0.097 * 1.1, "{spatial:?}");
    assert!(
        spatial.blink_free_change < 0.517 * 1.07
            && spatial.blink_free_change < ica.blink_free_change,
        "{spatial:?} vs {ica:?}"
    );
    assert!(r.regression_latency_s <= 1.0);
    // The Wiener filter `denoise` runs: leakage 0.019, blink left 0.102 (ICA 0.088), blink-free
    // change 0.42 (ICA 0.63), 0.5 s late.
    let mwf = row("mfr-eeg eye stage");
    assert!(mwf.leakage <= 0.05, "{mwf:?}");
    assert!(mwf.blink_residual < 0.15, "{mwf:?}");
    assert!(
        mwf.blink_free_change < 0.7 * ica.blink_free_change,
        "{mwf:?} vs {ica:?}"
    );
    assert!(r.latency_s <= 0.5);
}

/// A 256 Hz EDF with the given labels: `seconds` of the synthetic montage's channels
/// (cycled).
fn montage_file(path: &std::path::Path, labels: &[&str], seconds: usize) {
    use mfr_eeg::io::edf::{EdfWriter, Format, Header, HeaderSpec, SignalHeader, encode_physical};
    let m = montage(21, seconds as f64);
    let raw = raw_channels(&m);
    let sig = |label: &str| SignalHeader {
        label: label.into(),
        transducer: String::new(),
        physical_dimension: "uV".into(),
        physical_min: -1000.0,
        physical_max: 1000.0,
        digital_min: -32768,
        digital_max: 32767,
        prefiltering: String::new(),
        samples_per_record: 256,
        reserved: String::new(),
    };
    let spec = HeaderSpec::generated(seconds as i64, 1.0, labels.iter().map(|l| sig(l)).collect());
    let header = Header::from_spec(&spec).unwrap();
    let mut w = EdfWriter::create(path, &header).unwrap();
    for r in 0..seconds {
        let mut rec = vec![0u8; labels.len() * 256 * 2];
        for (c, chunk) in rec.chunks_mut(512).enumerate() {
            let x = &raw[c % raw.len()][r * 256..][..256];
            encode_physical(&spec.signals[c], Format::Edf, x, chunk).unwrap();
        }
        w.write_record(&rec).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn denoise_without_frontal_channels_falls_back_with_a_note() {
    use mfr_eeg::denoise::{DenoiseOptions, denoise_file};
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("c.edf"), dir.path().join("c-out.edf"));
    montage_file(&inp, &["C3", "Cz", "C4"], 8);
    let model = Model::load(std::path::Path::new(MODEL)).unwrap();
    let on = DenoiseOptions {
        spatial: true,
        ..DenoiseOptions::default()
    };
    let s = denoise_file(&inp, &out, &model, &on, &|_| {}).unwrap();
    assert_eq!(s.spatial, None);
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("no EOG channel and no frontal channels")
                && n.contains("single-channel model")),
        "{:?}",
        s.notes
    );
    // --eye-only has nothing to run there: refused, nothing written.
    std::fs::remove_file(&out).unwrap();
    let eye_only = DenoiseOptions {
        eye_only: true,
        ..on
    };
    let e = denoise_file(&inp, &out, &model, &eye_only, &|_| {}).unwrap_err();
    assert!(
        e.to_string()
            .contains("c.edf: --eye-only, but the eye stage cannot run: no EOG channel"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn denoise_reports_the_references_it_used() {
    use mfr_eeg::denoise::{DenoiseError, DenoiseOptions, denoise_file};
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("m.edf"), dir.path().join("m-out.edf"));
    montage_file(&inp, &LABELS, 8);
    let model = Model::load(std::path::Path::new(MODEL)).unwrap();
    let on = DenoiseOptions {
        spatial: true,
        ..DenoiseOptions::default()
    };
    let s = denoise_file(&inp, &out, &model, &on, &|_| {}).unwrap();
    let line = s.spatial.expect("frontal channels are present");
    assert!(
        line.starts_with("frontal references mean(Fp1,Fp2), F7-F8"),
        "{line}"
    );
    assert!(line.contains(": 8 channels through"), "{line}");
    // --eog names a channel; it is then left unchanged by the spatial stage.
    let opts = DenoiseOptions {
        eog: Some(vec!["fp1".into()]),
        ..on.clone()
    };
    let s = denoise_file(&inp, &out, &model, &opts, &|_| {}).unwrap();
    assert!(
        s.spatial
            .as_deref()
            .unwrap()
            .starts_with("EOG channels Fp1: 7 channels through a multi-channel Wiener filter")
    );
    // An unknown label is an error naming the file and the label.
    let opts = DenoiseOptions {
        eog: Some(vec!["HEOG".into()]),
        ..on.clone()
    };
    let e = denoise_file(&inp, &out, &model, &opts, &|_| {}).unwrap_err();
    assert!(matches!(e, DenoiseError::Ocular { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("m.edf") && msg.contains("\"HEOG\"") && msg.contains("Fp2"),
        "{msg}"
    );
    // spatial: false (the default): no stage, no note.
    let opts = DenoiseOptions {
        spatial: false,
        ..on.clone()
    };
    let s = denoise_file(&inp, &out, &model, &opts, &|_| {}).unwrap();
    assert_eq!(s.spatial, None);
}

/// Blink residual and blink-free change of the multi-channel Wiener filter on the synthetic
/// montage, after `skip` seconds.
fn mwf_montage(seed: u64, with_eog: bool) -> (Montage, Vec<Vec<f32>>, MwfReport) {
    let m = montage(seed, 60.0);
    let mut rng = Rng::new(seed + 100);
    let mut cleaned = raw_channels(&m);
    let rep = if with_eog {
        let eog: Vec<f32> = m
            .blink
            .iter()
            .map(|&b| 1.5 * b + 2.0 * rng.normal() as f32)
            .collect();
        mwf_block(
            &mut cleaned,
            std::slice::from_ref(&eog),
            std::slice::from_ref(&eog),
            MwfConfig::for_rate(FS),
        )
        .unwrap()
    } else {
        let plan = find_references(&labels(&LABELS), None).unwrap().unwrap();
        let refs: Vec<Vec<f32>> = plan
            .references
            .iter()
            .map(|r| r.signal(|c| &cleaned[c][..]))
            .collect();
        mwf_block(&mut cleaned, &[], &refs, MwfConfig::for_rate(FS)).unwrap()
    };
    (m, cleaned, rep)
}

/// With an EOG channel, after the first 5 s: the blink is removed to within 15 % of its size on
/// every channel (measured 0.6-4 % frontal, 8-9 % occipital, where it is 20x smaller) and
/// blink-free EEG changes by less than 0.3 x the channel's blink weight + 0.02 (measured 0.094
/// at Fp1, 0.0035 at O2: the filter removes, at all times, what lies along the blink pattern
/// below 15 Hz).
#[test]
fn mwf_with_eog_removes_known_blink_topography() {
    let (m, cleaned, rep) = mwf_montage(11, true);
    assert!(rep.active && rep.reference_corr > 0.9, "{rep:?}");
    assert_cleaned(&m, &cleaned, 5.0, 0.15, (0.3, 0.02));
}

/// Without EOG, blinks are detected on mean(Fp1, Fp2): after 5 s the blink is removed to within
/// 20 % (measured 2-4 % frontal, 13-14 % occipital) and blink-free EEG changes by less than
/// 0.55 x the blink weight + 0.03 (measured 0.39 at Fp2, 0.015 at O2: without an EOG channel,
/// Fp1/Fp2's own EEG along the blink pattern goes with it).
#[test]
fn mwf_without_eog_uses_the_frontal_channels() {
    let (m, cleaned, rep) = mwf_montage(12, false);
    assert!(rep.active, "{rep:?}");
    assert_cleaned(&m, &cleaned, 5.0, 0.2, (0.55, 0.03));
}

/// No blink anywhere: the filter never acts and every sample keeps its bits.
#[test]
fn mwf_leaves_a_recording_without_blinks_alone() {
    let m = montage(13, 60.0);
    let raw: Vec<Vec<f32>> = m.brain.clone();
    let plan = find_references(&labels(&LABELS), None).unwrap().unwrap();
    let refs: Vec<Vec<f32>> = plan
        .references
        .iter()
        .map(|r| r.signal(|c| &raw[c][..]))
        .collect();
    let mut cleaned = raw.clone();
    let rep = mwf_block(&mut cleaned, &[], &refs, MwfConfig::for_rate(FS)).unwrap();
    assert!(!rep.active, "{rep:?}");
    assert!(cleaned == raw, "samples changed");
}

/// Blinks detected on an EOG channel that the filter does not see, while the EEG channels
/// carry only 5 Hz bursts at O1/O2 under the same envelope (no blink): the strongest source at
/// blink times is the bursts, which do not explain the reference, so the filter never acts.
#[test]
fn mwf_ignores_a_source_the_reference_does_not_explain() {
    let m = montage(14, 60.0);
    let mut raw = m.brain.clone();
    let mut rng = Rng::new(7);
    let eog: Vec<f32> = m.blink.iter().map(|&b| b + rng.normal() as f32).collect();
    for (t, &b) in m.blink.iter().enumerate() {
        let burst = b * (2.0 * std::f32::consts::PI * 5.0 * t as f32 / FS as f32).sin();
        raw[6][t] += 0.5 * burst;
        raw[7][t] += 0.4 * burst;
    }
    let mut cleaned = raw.clone();
    let rep = mwf_block(
        &mut cleaned,
        &[],
        std::slice::from_ref(&eog),
        MwfConfig::for_rate(FS),
    )
    .unwrap();
    assert!(
        !rep.active && rep.lambda > 10.0 && rep.reference_corr < 0.5,
        "{rep:?}"
    );
    assert!(cleaned == raw, "samples changed");
}

/// `denoise`'s eye stage (the file streamed once, then applied record by record) equals the
/// streaming filter frame for frame, bit for bit.
#[test]
fn spatial_stage_equals_the_streaming_filter() {
    use mfr_eeg::io::edf::{EdfReader, select_channels};
    use mfr_eeg::ocular::{SpatialPlan, SpatialStage};
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("m.edf");
    montage_file(&inp, &LABELS, 20);
    let mut reader = EdfReader::open(&inp).unwrap();
    let header = reader.header().clone();
    let selected = select_channels(&header, None).unwrap();
    let SpatialPlan::Run(mut stage, line) =
        SpatialStage::prepare(&inp, &header, &selected, None).unwrap()
    else {
        panic!("frontal channels are present")
    };
    assert!(line.contains("multi-channel Wiener filter"), "{line}");
    let mut staged = vec![Vec::new(); selected.len()];
    let mut rec = reader.new_record();
    while reader.read_record_into(&mut rec).unwrap() {
        let mut block: Vec<Vec<f32>> = selected
            .iter()
            .map(|&c| {
                let mut x = vec![0.0f32; 256];
                rec.physical_into(c, &mut x);
                x
            })
            .collect();
        let mut lanes: Vec<&mut [f32]> = block.iter_mut().map(|b| &mut b[..]).collect();
        stage.apply(&mut lanes).unwrap();
        for (s, b) in staged.iter_mut().zip(block) {
            s.extend(b);
        }
    }
    let raw = mfr_eeg::io::edf::read_channels_physical(&inp, &selected).unwrap();
    let plan = find_references(&labels(&LABELS), None).unwrap().unwrap();
    let refs: Vec<Vec<f32>> = plan
        .references
        .iter()
        .map(|r| r.signal(|c| &raw[c][..]))
        .collect();
    let mut streamed = raw.clone();
    let rep = mwf_block(&mut streamed, &[], &refs, MwfConfig::for_rate(FS)).unwrap();
    assert!(rep.active, "{rep:?}");
    assert_ne!(streamed, raw);
    for (c, (a, b)) in staged.iter().zip(&streamed).enumerate() {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same && a.len() == b.len(), "channel {c} differs");
    }
}

/// EEGLAB's tutorial recording (32 channels, two EOG channels, real blinks; never used to fit
/// anything in the project): the filter removes most of the blink (blink left 0.30; ICA 0.25;
/// the floor of EEG that does not average out 0.22) and changes blink-free EEG less than ICA
/// (0.045 vs 0.081).
#[test]
fn real_blinks_eeglab_recording_mwf_against_ica() {
    let r = check_with(MODEL, EEGLAB);
    let row = |p: &str| method_row(&r, p);
    let (raw, ica, mwf) = (row("raw"), row("ICA"), row("mfr-eeg eye stage"));
    assert_eq!(r.references, "EOG channels EOG1, EOG2");
    assert!(r.blink_epochs >= 15, "{}", r.blink_epochs);
    assert!((0.15..0.3).contains(&r.blink_floor), "{}", r.blink_floor);
    // Without the blinks the EOG channels still correlate with the EEG (0.235, above the
    // whole recording's 0.202): the leakage cannot reach 0.05 here by removing blinks.
    assert!(
        (0.22..0.25).contains(&r.blink_free_leakage),
        "{}",
        r.blink_free_leakage
    );
    assert_eq!(raw.blink_residual, 1.0);
    assert_eq!(raw.blink_kept, 1.0);
    assert!(mwf.blink_residual < 0.32, "{mwf:?}");
    // Of the blink's own shape the eye stage keeps less than a quarter.
    assert!((0.0..0.25).contains(&mwf.blink_kept), "{mwf:?}");
    assert!(
        mwf.blink_residual < ica.blink_residual + 0.07,
        "{mwf:?} vs {ica:?}"
    );
    assert!(
        mwf.blink_free_change < ica.blink_free_change,
        "{mwf:?} vs {ica:?}"
    );
    assert!(mwf.leakage < raw.leakage, "{mwf:?} vs {raw:?}");
    assert!(r.latency_s <= 0.5);
    // `denoise` with this model (no gate of its own) and the after-eye gate: blink-free
    // change 0.119, the model's gate (none) 0.240; ICA and the eye stage leave injected
    // electrode pops and drifts whole.
    let (den, own) = (
        row("mfr-eeg denoise: eye stage"),
        row("mfr-eeg denoise --gate model"),
    );
    assert!(
        1.5 * den.blink_free_change < own.blink_free_change,
        "{den:?} vs {own:?}"
    );
    for m in [&ica, &mwf] {
        assert!(m.pops_left > 0.95 && m.drift_left > 0.95, "{m:?}");
    }
}

/// The default model's `denoise` on EEGLAB's recording (`eog-check`'s row): the eye stage,
/// then the model with the after-eye gate changes blink-free EEG less than ICA (measured 0.065
/// vs 0.081; with the model's own gate 0.173) and leaves 0.57 of electrode pops and 0.34 of
/// drifts injected at 0 dB (the model's gate: 0.29 and 0.20; ICA all of them).
#[test]
fn real_blinks_eeglab_default_denoise_changes_blink_free_eeg_less_than_ica() {
    let r = check_with("models/fast-256hz.safetensors", EEGLAB);
    let row = |p: &str| method_row(&r, p);
    let (ica, den, own) = (
        row("ICA"),
        row("mfr-eeg denoise: eye stage"),
        row("mfr-eeg denoise --gate model"),
    );
    assert!(
        den.blink_free_change < ica.blink_free_change
            && 2.0 * den.blink_free_change < own.blink_free_change,
        "{den:?} vs {ica:?}, {own:?}"
    );
    assert!(den.pops_left < 0.7 && den.drift_left < 0.45, "{den:?}");
    assert!(
        own.pops_left < den.pops_left && own.drift_left < den.drift_left,
        "{own:?}"
    );
    assert!(ica.pops_left > 0.95 && ica.drift_left > 0.95, "{ica:?}");
}

/// The eye stage for streamed arrays: chunks of any size give the same samples as the whole
/// filter over the arrays, `latency` samples late, and an EOG channel comes out unchanged.
#[test]
fn eye_stream_in_chunks_equals_the_filter() {
    use mfr_eeg::embed::EyeStream;
    let m = montage(15, 30.0);
    let mut rng = Rng::new(3);
    let mut raw = raw_channels(&m);
    raw.push(
        m.blink
            .iter()
            .map(|&b| 1.5 * b + rng.normal() as f32)
            .collect(),
    );
    let mut names = labels(&LABELS);
    names.push("VEOG".into());
    let mut s = EyeStream::new(&names, FS, None).unwrap().unwrap();
    assert_eq!(s.references(), "EOG channels VEOG");
    assert_eq!(s.latency(), 128);
    let n = raw[0].len();
    let mut out = vec![Vec::new(); names.len()];
    let mut at = 0;
    let mut first = true;
    while at < n {
        let len = (rng.below(700) as usize).min(n - at);
        let chunk: Vec<&[f32]> = raw.iter().map(|c| &c[at..at + len]).collect();
        let got = s.push(&chunk, &mut out).unwrap();
        if first && len > 0 {
            // Nothing comes out before `latency` samples are in.
            assert_eq!(got, len.saturating_sub(128));
            first = false;
        }
        at += len;
    }
    s.finish(&mut out).unwrap();
    assert!(s.active());
    let mut whole = raw[..8].to_vec();
    mwf_block(&mut whole, &raw[8..], &raw[8..], MwfConfig::for_rate(FS)).unwrap();
    for c in 0..8 {
        assert!(out[c] == whole[c], "channel {c} differs");
    }
    assert!(out[8] == raw[8], "the EOG channel changed");
    // No EOG or frontal channel: no stage.
    assert!(
        EyeStream::new(&labels(&["C3", "C4"]), FS, None)
            .unwrap()
            .is_none()
    );
}

/// The smallest montage, two channels (Fp1 and O1, blinks detected on Fp1 itself): after 5 s
/// the blink is removed to within 30 % on both (measured 4 % at Fp1, 26 % at O1, where it is
/// 20x smaller), and O1's blink-free EEG changes by less than 0.08 (measured 0.034).
#[test]
fn mwf_works_on_two_channels() {
    let m = montage(16, 60.0);
    let raw = raw_channels(&m);
    let mut two = vec![raw[0].clone(), raw[6].clone()];
    let detect = vec![raw[0].clone()];
    let rep = mwf_block(&mut two, &[], &detect, MwfConfig::for_rate(FS)).unwrap();
    assert!(rep.active, "{rep:?}");
    let skip = (5.0 * FS) as usize;
    for (k, c) in [0usize, 6].into_iter().enumerate() {
        let blink_idx: Vec<usize> = (skip..m.blink.len()).filter(|&t| m.in_blink[t]).collect();
        let res = rms_ratio(
            blink_idx
                .iter()
                .map(|&t| f64::from(two[k][t] - m.brain[c][t])),
            blink_idx.iter().map(|&t| f64::from(TOPO[c] * m.blink[t])),
        );
        assert!(res < 0.3, "{}: blink residual {res:.3}", LABELS[c]);
    }
    let free: Vec<usize> = (skip..m.blink.len()).filter(|&t| m.free[t]).collect();
    let change = rms_ratio(
        free.iter().map(|&t| f64::from(two[1][t] - raw[6][t])),
        free.iter().map(|&t| f64::from(raw[6][t])),
    );
    assert!(change < 0.08, "O1 blink-free change {change:.3}");
}

/// A file too slow for the eye stage's 1-8 Hz band (2 Hz) is denoised channel by channel with
/// a note, not refused.
#[test]
fn denoise_skips_the_eye_stage_below_its_band_with_a_note() {
    use mfr_eeg::denoise::{DenoiseOptions, denoise_file};
    use mfr_eeg::io::edf::{EdfWriter, Format, Header, HeaderSpec, SignalHeader, encode_physical};
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("slow.edf"), dir.path().join("slow-out.edf"));
    let sig = |label: &str| SignalHeader {
        label: label.into(),
        transducer: String::new(),
        physical_dimension: "uV".into(),
        physical_min: -100.0,
        physical_max: 100.0,
        digital_min: -32768,
        digital_max: 32767,
        prefiltering: String::new(),
        samples_per_record: 2,
        reserved: String::new(),
    };
    let spec = HeaderSpec::generated(30, 1.0, ["Fp1", "Fp2", "C3"].map(sig).to_vec());
    let header = Header::from_spec(&spec).unwrap();
    let mut w = EdfWriter::create(&inp, &header).unwrap();
    let mut rng = Rng::new(4);
    for _ in 0..30 {
        let mut rec = vec![0u8; 3 * 2 * 2];
        for (c, chunk) in rec.chunks_mut(4).enumerate() {
            let x = [10.0 * rng.normal() as f32, 10.0 * rng.normal() as f32];
            encode_physical(&spec.signals[c], Format::Edf, &x, chunk).unwrap();
        }
        w.write_record(&rec).unwrap();
    }
    w.finish().unwrap();
    let model = Model::load(std::path::Path::new(MODEL)).unwrap();
    let on = DenoiseOptions {
        spatial: true,
        ..DenoiseOptions::default()
    };
    let s = denoise_file(&inp, &out, &model, &on, &|_| {}).unwrap();
    assert_eq!(s.spatial, None);
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("2 Hz is too slow for its 1-8 Hz blink band")),
        "{:?}",
        s.notes
    );
}

/// The largest montage, 256 channels and an EOG channel: each channel's "EEG" is independent
/// low-pass noise (an AR(1) of white noise, about 10 uV RMS), the blink seen with a gain from
/// 1 (frontal) down to 0.02, 120 s with about 30 blinks. Over the last 30 s the blink is
/// removed to within 10 % of its size on the 64 channels that see it most (measured 0.067) and
/// blink-free EEG changes by less than 0.08 on average (measured 0.069). A 256-dimensional
/// pattern needs many blinks: over 10-40 s of a 40 s recording the same gives 0.164 and 0.207.
#[test]
fn mwf_works_on_256_channels() {
    const C: usize = 256;
    let m = montage(17, 120.0);
    let n = m.blink.len();
    let mut rng = Rng::new(117);
    let gain: Vec<f32> = (0..C)
        .map(|c| (-(c as f32) / 64.0).exp().max(0.02))
        .collect();
    let brain: Vec<Vec<f32>> = (0..C)
        .map(|_| {
            let mut y = 0.0f64;
            (0..n)
                .map(|_| {
                    y = 0.95 * y + 3.0 * rng.normal();
                    y as f32
                })
                .collect()
        })
        .collect();
    let raw: Vec<Vec<f32>> = (0..C)
        .map(|c| {
            brain[c]
                .iter()
                .zip(&m.blink)
                .map(|(b, k)| b + gain[c] * k)
                .collect()
        })
        .collect();
    let eog: Vec<f32> = m
        .blink
        .iter()
        .map(|&b| 1.5 * b + 2.0 * rng.normal() as f32)
        .collect();
    let mut cleaned = raw.clone();
    let rep = mwf_block(
        &mut cleaned,
        std::slice::from_ref(&eog),
        std::slice::from_ref(&eog),
        MwfConfig::for_rate(FS),
    )
    .unwrap();
    assert!(rep.active && rep.reference_corr > 0.9, "{rep:?}");
    let skip = (90.0 * FS) as usize;
    let blink_idx: Vec<usize> = (skip..n).filter(|&t| m.in_blink[t]).collect();
    let free: Vec<usize> = (skip..n).filter(|&t| m.free[t]).collect();
    let mut worst: f64 = 0.0;
    for c in 0..64 {
        let res = rms_ratio(
            blink_idx
                .iter()
                .map(|&t| f64::from(cleaned[c][t] - brain[c][t])),
            blink_idx.iter().map(|&t| f64::from(gain[c] * m.blink[t])),
        );
        worst = worst.max(res);
    }
    let change: f64 = (0..C)
        .map(|c| {
            rms_ratio(
                free.iter().map(|&t| f64::from(cleaned[c][t] - raw[c][t])),
                free.iter().map(|&t| f64::from(raw[c][t])),
            )
        })
        .sum::<f64>()
        / C as f64;
    println!(
        "256 channels: worst blink residual {worst:.4} (first 64), mean blink-free change {change:.4}, {rep:?}"
    );
    assert!(worst < 0.1, "blink residual {worst:.3}");
    assert!(change < 0.08, "blink-free change {change:.3}");
}
