//! Integration tests: the `mfr-eeg` binary (denoise, inspect, plot) and the offline pipeline
//! in `mfr_eeg::denoise`, on the shipped EEGMMIDB recording and on generated files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mfr_eeg::denoise::{DenoiseError, DenoiseOptions, denoise_file};
use mfr_eeg::io::edf::{
    EdfReader, EdfWriter, Format, Header, HeaderSpec, SignalHeader, encode_physical,
    read_annotations,
};
use mfr_eeg::model::{Model, identity_model, write_model};

const EEGMMIDB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/eegmmidb_S001R02_64ch_160Hz_61s.edf"
);

pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mfr-eeg"))
}

pub(crate) fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = bin();
    for a in args {
        c.arg(a);
    }
    c.output().expect("the mfr-eeg binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes an identity model (window `d_in`, hop `d_in / 4`) for `rate_hz` into `dir`.
pub(crate) fn identity_file(dir: &Path, d_in: usize, rate_hz: f32) -> PathBuf {
    let (meta, t) = identity_model(d_in, d_in / 4, rate_hz);
    let p = dir.join(format!("identity-{d_in}-{rate_hz}.safetensors"));
    write_model(&p, &meta, &t).unwrap();
    p
}

/// Names in `dir`, sorted (to prove nothing else, e.g. a temporary file, was left).
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn identity_round_trip_keeps_every_header_field_sample_and_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let model = identity_file(dir.path(), 32, 160.0);
    let out = dir.path().join("out.edf");
    let o = run(&[&"denoise", &EEGMMIDB, &out, &"--model", &model]);
    assert!(o.status.success(), "denoise failed: {}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("64 cleaned"), "summary: {summary}");
    assert!(summary.contains("x real time"), "summary: {summary}");

    let mut a = EdfReader::open(EEGMMIDB).unwrap();
    let mut b = EdfReader::open(&out).unwrap();
    let (ha, hb) = (a.header().clone(), b.header().clone());
    // Field by field (so a failure names the field), then the raw bytes as a whole.
    assert_eq!(ha.format(), hb.format());
    assert_eq!(ha.plus(), hb.plus());
    assert_eq!(ha.patient(), hb.patient());
    assert_eq!(ha.recording(), hb.recording());
    assert_eq!(ha.start_date(), hb.start_date());
    assert_eq!(ha.start_time(), hb.start_time());
    assert_eq!(ha.reserved(), hb.reserved());
    assert_eq!(ha.declared_records(), hb.declared_records());
    assert_eq!(ha.record_duration(), hb.record_duration());
    assert_eq!(ha.signals().len(), 65);
    for (sa, sb) in ha.signals().iter().zip(hb.signals()) {
        assert_eq!(sa.label, sb.label);
        assert_eq!(sa.transducer, sb.transducer, "{}", sa.label);
        assert_eq!(sa.physical_dimension, sb.physical_dimension, "{}", sa.label);
        assert_eq!(sa.prefiltering, sb.prefiltering, "{}", sa.label);
        assert_eq!(sa.physical_min, sb.physical_min, "{}", sa.label);
        assert_eq!(sa.physical_max, sb.physical_max, "{}", sa.label);
        assert_eq!(sa.digital_min, sb.digital_min, "{}", sa.label);
        assert_eq!(sa.digital_max, sb.digital_max, "{}", sa.label);
        assert_eq!(sa.samples_per_record, sb.samples_per_record, "{}", sa.label);
        assert_eq!(sa.reserved, sb.reserved, "{}", sa.label);
    }
    assert_eq!(ha.as_bytes(), hb.as_bytes());
    assert_eq!(a.num_records(), b.num_records());

    // Every sample within the quantisation step: the identity model returns each window to
    // f32 rounding (~1e-7 relative), far below half a digital step, so re-encoding lands on
    // the same digital value; one step is the stated tolerance.
    let eeg: Vec<usize> = (0..64).collect();
    let xa = a.read_channels_physical(&eeg).unwrap();
    let xb = b.read_channels_physical(&eeg).unwrap();
    let mut worst = 0.0f64;
    for (ch, (ca, cb)) in xa.iter().zip(&xb).enumerate() {
        let step = ha.signals()[ch].gain().abs();
        assert_eq!(ca.len(), 9760);
        assert_eq!(ca.len(), cb.len());
        for (i, (&va, &vb)) in ca.iter().zip(cb).enumerate() {
            let d = f64::from((va - vb).abs());
            assert!(
                d <= step,
                "channel {ch} sample {i}: {va} vs {vb} (step {step})"
            );
            worst = worst.max(d / step);
        }
    }
    assert!(worst <= 1.0, "worst deviation {worst} steps");

    // Annotations identical (onset, duration, text), and the annotation signal's bytes too.
    let ann_a = read_annotations(EEGMMIDB).unwrap();
    let ann_b = read_annotations(&out).unwrap();
    assert!(!ann_a.is_empty());
    assert_eq!(ann_a, ann_b);
    let (ra, rb) = (
        std::fs::read(EEGMMIDB).unwrap(),
        std::fs::read(&out).unwrap(),
    );
    assert_eq!(ra.len(), rb.len());
    assert_eq!(
        names(dir.path()),
        ["identity-32-160.safetensors", "out.edf"]
    );
}

#[test]
fn pipeline_summary_counts_channels_samples_and_time() {
    let (meta, t) = identity_model(64, 16, 160.0);
    let model = Model::from_tensors(&meta, &t).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("two.edf");
    let opts = DenoiseOptions {
        channels: Some(vec!["Fp1".into(), "cz..".into()]),
        threads: 2,
        ..DenoiseOptions::default()
    };
    let s = denoise_file(Path::new(EEGMMIDB), &out, &model, &opts, &|_| {}).unwrap();
    let labels: Vec<&str> = s.channels.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["Fp1.", "Cz.."]);
    assert_eq!(s.samples, 2 * 9760);
    assert_eq!(s.clipped, 0);
    assert_eq!(s.recording_seconds, 61.0);
    assert!(s.elapsed_seconds > 0.0 && s.x_real_time().is_finite());
    assert!(s.channels.iter().all(|c| c.resampled_to_hz.is_none()));

    // Unselected channels are copied bit for bit: the data bytes of every record differ
    // only inside Fp1 (signal 21) and Cz (signal 10) -- here not at all, since the model is
    // the identity; so the whole file is byte-identical.
    assert_eq!(
        std::fs::read(EEGMMIDB).unwrap(),
        std::fs::read(&out).unwrap()
    );
}

/// A two-channel EDF file: "EEG A" with `rate_a` and "EEG B" with `rate_b` samples per
/// `record_s`-second record,
/// band-limited sines (3, 10, 21 Hz) with a DC offset, plus its expected physical values.
fn mixed_rate_file(
    path: &Path,
    rate_a: usize,
    rate_b: usize,
    seconds: usize,
    record_s: f64,
) -> [Vec<f32>; 2] {
    let sig = |label: &str, spr: usize| SignalHeader {
        label: label.into(),
        transducer: "AgAgCl electrode".into(),
        physical_dimension: "uV".into(),
        physical_min: -500.0,
        physical_max: 500.0,
        digital_min: -32768,
        digital_max: 32767,
        prefiltering: "HP:0.1Hz LP:70Hz".into(),
        samples_per_record: spr,
        reserved: String::new(),
    };
    let spec = HeaderSpec::generated(
        seconds as i64,
        record_s,
        vec![sig("EEG A", rate_a), sig("EEG B", rate_b)],
    );
    let header = Header::from_spec(&spec).unwrap();
    let tone = |spr: usize| -> Vec<f32> {
        (0..spr * seconds)
            .map(|i| {
                let t = i as f64 * record_s / spr as f64;
                let w = 2.0 * std::f64::consts::PI;
                (15.0
                    + 40.0 * (w * 10.0 * t).sin()
                    + 20.0 * (w * 3.0 * t + 0.5).sin()
                    + 8.0 * (w * 21.0 * t + 1.0).sin()) as f32
            })
            .collect()
    };
    let (a, b) = (tone(rate_a), tone(rate_b));
    let mut w = EdfWriter::create(path, &header).unwrap();
    let sb = Format::Edf.sample_bytes();
    for r in 0..seconds {
        let mut rec = vec![0u8; (rate_a + rate_b) * sb];
        let (ra, rb) = rec.split_at_mut(rate_a * sb);
        encode_physical(
            &spec.signals[0],
            Format::Edf,
            &a[r * rate_a..][..rate_a],
            ra,
        )
        .unwrap();
        encode_physical(
            &spec.signals[1],
            Format::Edf,
            &b[r * rate_b..][..rate_b],
            rb,
        )
        .unwrap();
        w.write_record(&rec).unwrap();
    }
    w.finish().unwrap();
    [a, b]
}

#[test]
fn a_channel_at_another_rate_is_resampled_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.edf");
    let [a, b] = mixed_rate_file(&input, 256, 128, 20, 1.0);
    let model = identity_file(dir.path(), 256, 256.0);
    let out = dir.path().join("out.edf");
    let o = run(&[&"denoise", &input, &out, &"--model", &model]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("1 resampled to 256 Hz"), "{summary}");

    let mut r = EdfReader::open(&out).unwrap();
    let got = r.read_channels_physical(&[0, 1]).unwrap();
    assert_eq!(got[0].len(), a.len());
    assert_eq!(got[1].len(), b.len());
    let step = 1000.0 / 65535.0;
    // Channel A runs at the model's rate: identity within one quantisation step.
    let err_a = got[0]
        .iter()
        .zip(&a)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(f64::from(err_a) <= step, "A: {err_a}");
    // Channel B went 128 -> 256 -> 128 Hz: tones up to 21 Hz sit in the flat pass band
    // (ripple < 2e-4 of ~80 uV peak = 0.016 uV) plus two quantisations (0.015 uV); the
    // edges see the odd extension (measured in the resampler tests: < 0.3% of the peak).
    let err =
        |r: std::ops::Range<usize>| r.map(|i| (got[1][i] - b[i]).abs()).fold(0.0f32, f32::max);
    let interior = err(128..b.len() - 128);
    assert!(interior < 0.05, "B interior error {interior} uV");
    let all = err(0..b.len());
    assert!(all < 0.5, "B edge error {all} uV");
}

#[test]
fn fractional_record_duration_is_resampled_by_a_rational_approximation() {
    // 256 samples per 0.998977 s record = 256.262 Hz (records like this exist in the wild);
    // the model runs at 256 Hz, so both channels go through a ratio near 976/977 and back.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("frac.edf");
    let [a, _] = mixed_rate_file(&input, 256, 256, 12, 0.998977);
    let model = identity_file(dir.path(), 256, 256.0);
    let out = dir.path().join("out.edf");
    let o = run(&[&"denoise", &input, &out, &"--model", &model]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 resampled to 256 Hz"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let got = EdfReader::open(&out)
        .unwrap()
        .read_channels_physical(&[0])
        .unwrap()
        .remove(0);
    assert_eq!(got.len(), a.len());
    // Same budget as the integer-ratio case above: pass-band ripple plus quantisation.
    let interior = got[256..a.len() - 256]
        .iter()
        .zip(&a[256..a.len() - 256])
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(interior < 0.05, "interior error {interior} uV");
}

#[test]
fn prefilters_remove_line_noise_and_drift_before_denoising() {
    // Identity model + --notch 60 + --bandpass 1,40: the output is the prefiltered input, so
    // the 60 Hz line peak of the EEGMMIDB recording must drop sharply while alpha survives.
    let dir = tempfile::tempdir().unwrap();
    let model = identity_file(dir.path(), 32, 160.0);
    let out = dir.path().join("f.edf");
    let o = run(&[
        &"denoise",
        &EEGMMIDB,
        &out,
        &"--model",
        &model,
        &"--channels",
        &"Oz",
        &"--notch",
        &"60",
        &"--bandpass",
        &"1,40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let oz = |p: &Path| {
        let mut r = EdfReader::open(p).unwrap();
        let ch =
            mfr_eeg::io::edf::select_channels(r.header(), Some(&["Oz".to_string()])).unwrap()[0];
        r.read_channels_physical(&[ch]).unwrap().remove(0)
    };
    let (x, y) = (oz(Path::new(EEGMMIDB)), oz(&out));
    // Power at a frequency by Hann-windowed projection on sin/cos over the middle 40 s (a
    // rectangular window would leak the large low-frequency EEG into the 60 Hz estimate).
    let power = |v: &[f32], f: f64| {
        let (mut s, mut c) = (0.0, 0.0);
        for (j, &vi) in v[1600..8000].iter().enumerate() {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * j as f64 / 6400.0).cos();
            let t = 2.0 * std::f64::consts::PI * f * (j + 1600) as f64 / 160.0;
            s += w * f64::from(vi) * t.sin();
            c += w * f64::from(vi) * t.cos();
        }
        s * s + c * c
    };
    let line = power(&y, 60.0) / power(&x, 60.0);
    // SciPy's filtfilt(iirnotch) + sosfiltfilt(butter) rounded to the file's 1 uV step gives
    // 3.5e-5 here; the re-quantisation noise is the floor. Demand 30 dB.
    assert!(line < 1e-3, "60 Hz power ratio {line}");
    let alpha = power(&y, 10.0) / power(&x, 10.0);
    // 10 Hz is mid-pass-band for both filters (SciPy: 1.0007): within 1%.
    assert!((alpha - 1.0).abs() < 0.01, "10 Hz power ratio {alpha}");
}

#[test]
fn wav_export_inspect_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let model = identity_file(dir.path(), 32, 160.0);
    let out = dir.path().join("out.edf");
    let wav = dir.path().join("out.wav");
    let o = run(&[
        &"denoise",
        &EEGMMIDB,
        &out,
        &"--model",
        &model,
        &"--channels",
        &"Fp1,Fp2,Oz",
        &"--wav",
        &wav,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.spec().channels, 3);
    assert_eq!(r.spec().sample_rate, 160);
    assert_eq!(r.len(), 3 * 9760);

    let o = run(&[&"inspect", &EEGMMIDB]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let n_ann = read_annotations(EEGMMIDB).unwrap().len();
    assert!(text.contains("EDF+C"), "{text}");
    assert!(text.contains("65 (64 EEG"), "{text}");
    assert!(text.contains(&format!("annotations   {n_ann}\n")), "{text}");
    assert!(text.contains("61 x 1 s = 61 s"), "{text}");
    assert!(text.contains("Fp1."), "{text}");

    let fig = dir.path().join("fig.png");
    let o = run(&[
        &"plot",
        &EEGMMIDB,
        &out,
        &"--channel",
        &"Fp1",
        &"--from",
        &"8",
        &"--to",
        &"12",
        &"-o",
        &fig,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(&fig).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

/// Field offsets in the EEGMMIDB header (65 signals).
const NS: usize = 65;
fn sig_field(offset_per_signal: usize, width: usize, signal: usize) -> (usize, usize) {
    (256 + offset_per_signal * NS + width * signal, width)
}

fn patched(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(EEGMMIDB).unwrap();
    edit(&mut b);
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

fn set(b: &mut [u8], (at, width): (usize, usize), text: &str) {
    let mut f = text.as_bytes().to_vec();
    f.resize(width, b' ');
    b[at..at + width].copy_from_slice(&f);
}

#[test]
fn bad_inputs_exit_1_with_a_clear_message_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = identity_file(dir.path(), 32, 160.0);
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let d = dir.path();
    let rec_bytes = 64 * 160 * 2 + 80 * 2;
    let header_bytes = 256 * (NS + 1);
    let cases: Vec<(&str, PathBuf, &[&str])> = vec![
        (
            "truncated",
            patched(d, "truncated.edf", |b| {
                b.truncate(header_bytes + 10 * rec_bytes + 77)
            }),
            &["truncated", "record"],
        ),
        (
            "record count",
            patched(d, "count.edf", |b| set(b, (236, 8), "70")),
            &["count.edf", "70"],
        ),
        (
            "non-ASCII header",
            patched(d, "ascii.edf", |b| b[8 + 3] = 0xE9),
            &["ascii.edf", "ASCII"],
        ),
        (
            "zero record duration",
            patched(d, "dur0.edf", |b| set(b, (244, 8), "0")),
            &["dur0.edf", "duration"],
        ),
        (
            "negative record duration",
            patched(d, "durneg.edf", |b| set(b, (244, 8), "-1")),
            &["durneg.edf", "duration"],
        ),
        (
            "physical min == max",
            patched(d, "phys.edf", |b| set(b, sig_field(112, 8, 3), "-8092")),
            &["phys.edf", "Fcz"],
        ),
        (
            "digital min >= max",
            patched(d, "dig.edf", |b| set(b, sig_field(128, 8, 5), "-8092")),
            &["dig.edf", "Fc4"],
        ),
        (
            "samples per record 0",
            patched(d, "spr.edf", |b| set(b, sig_field(216, 8, 0), "0")),
            &["spr.edf", "Fc5"],
        ),
        (
            "bad scale gives non-finite values",
            patched(d, "scale.edf", |b| {
                set(b, sig_field(104, 8, 2), "-1e308");
                set(b, sig_field(112, 8, 2), "1e308");
            }),
            &["scale.edf", "Fc1"],
        ),
        (
            "empty file",
            patched(d, "empty.edf", |b| b.clear()),
            &["empty.edf"],
        ),
        ("directory as input", outdir.clone(), &["out", "directory"]),
    ];
    for (what, input, words) in cases {
        let out = outdir.join("result.edf");
        let o = run(&[&"denoise", &input, &out, &"--model", &model]);
        let msg = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {msg}");
        for w in words {
            assert!(
                msg.to_lowercase().contains(&w.to_lowercase()),
                "{what}: message lacks {w:?}: {msg}"
            );
        }
        assert!(!msg.contains("panicked"), "{what}: {msg}");
        assert!(
            names(&outdir).is_empty(),
            "{what}: left {:?}",
            names(&outdir)
        );
    }
}

#[test]
fn bad_paths_and_labels_exit_1_and_the_input_is_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let model = identity_file(dir.path(), 32, 160.0);
    let input = dir.path().join("in.edf");
    std::fs::copy(EEGMMIDB, &input).unwrap();
    let before = std::fs::read(&input).unwrap();

    // Output == input, also spelled differently.
    for out in [input.clone(), dir.path().join(".").join("in.edf")] {
        let o = run(&[&"denoise", &input, &out, &"--model", &model]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("input"), "{}", stderr(&o));
    }
    // Output in a missing directory.
    let missing = dir.path().join("nope").join("out.edf");
    let o = run(&[&"denoise", &input, &missing, &"--model", &model]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    // Unknown channel label: named in the message.
    let out = dir.path().join("out.edf");
    let o = run(&[
        &"denoise",
        &input,
        &out,
        &"--model",
        &model,
        &"--channels",
        &"Fp1,Xyz9",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Xyz9"), "{}", stderr(&o));
    // The same channel twice (two spellings): refused before any work.
    let o = run(&[
        &"denoise",
        &input,
        &out,
        &"--model",
        &model,
        &"--channels",
        &"Fp1,fp1.",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Fp1.") && stderr(&o).contains("twice"),
        "{}",
        stderr(&o)
    );
    // Missing model file.
    let o = run(&[
        &"denoise",
        &input,
        &out,
        &"--model",
        &dir.path().join("no.safetensors"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no.safetensors"), "{}", stderr(&o));
    // A model that is not a model.
    let o = run(&[&"denoise", &input, &out, &"--model", &input]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert_eq!(names(dir.path()), ["identity-32-160.safetensors", "in.edf"]);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.edf");
    let cases: [&[&str]; 12] = [
        &["denoise"],
        &["denoise", EEGMMIDB, "x.edf", "--gate", "0.6,0.2"],
        &["denoise", EEGMMIDB, "x.edf", "--gate-slow", "0.1,0.2,3"],
        &[
            "denoise",
            EEGMMIDB,
            "x.edf",
            "--gate",
            "off",
            "--gate-slow",
            "0.1,0.2,3",
        ],
        &[
            "denoise",
            EEGMMIDB,
            "x.edf",
            "--keep-slow",
            "--gate",
            "0.1,0.2",
            "--gate-slow",
            "0.1,0.2,3",
        ],
        &["denoise", EEGMMIDB, "x.edf", "--keep-slow", "--eye-only"],
        &["denoise", EEGMMIDB, "x.edf", "--no-spatial", "--eog", "Fp1"],
        &["denoise", EEGMMIDB, "x.edf", "--notch", "55"],
        &["denoise", EEGMMIDB, "x.edf", "--bandpass", "40,1"],
        &["denoise", EEGMMIDB, "x.edf", "--bandpass", "abc"],
        &["frobnicate"],
        &[
            "plot",
            EEGMMIDB,
            EEGMMIDB,
            "--channel",
            "Fp1",
            "--from",
            "5",
            "--to",
            "2",
            "-o",
            "f.png",
        ],
    ];
    for args in cases {
        let o = bin().args(args).current_dir(dir.path()).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
    assert!(!out.exists());
    assert!(names(dir.path()).is_empty());
    // --help is not an error.
    assert!(bin().arg("--help").output().unwrap().status.success());
}

#[test]
fn library_errors_name_file_and_channel() {
    let (meta, t) = identity_model(64, 16, 160.0);
    let model = Model::from_tensors(&meta, &t).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.edf");
    let opts = DenoiseOptions {
        channels: Some(vec!["EDF Annotations".into()]),
        ..DenoiseOptions::default()
    };
    let e = denoise_file(Path::new(EEGMMIDB), &out, &model, &opts, &|_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("eegmmidb") && msg.contains("Annotations"),
        "{msg}"
    );
    let opts = DenoiseOptions {
        bandpass_hz: Some((30.0, 10.0)),
        ..DenoiseOptions::default()
    };
    let e = denoise_file(Path::new(EEGMMIDB), &out, &model, &opts, &|_| {}).unwrap_err();
    assert!(matches!(e, DenoiseError::Options(_)), "{e}");
    assert!(!out.exists());
    for hop in [0, 65] {
        let opts = DenoiseOptions {
            hop: Some(hop),
            ..DenoiseOptions::default()
        };
        let e = denoise_file(Path::new(EEGMMIDB), &out, &model, &opts, &|_| {}).unwrap_err();
        assert!(
            matches!(e, DenoiseError::Options(_)) && e.to_string().contains("--hop"),
            "{e}"
        );
        assert!(!out.exists());
    }
}

/// Fp1 (signal 21 of the EEGMMIDB file) of `path`, in physical units.
fn fp1(path: impl AsRef<Path>) -> Vec<f32> {
    EdfReader::open(path.as_ref())
        .unwrap()
        .read_channels_physical(&[21])
        .unwrap()
        .remove(0)
}

#[test]
fn hop_override_keeps_the_identity_model_an_identity() {
    // The OLA weights sum to one for any hop, so overriding the hop must not change what an
    // identity model returns (up to the EDF's quantisation step).
    let (meta, t) = identity_model(64, 16, 160.0);
    let model = Model::from_tensors(&meta, &t).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hop7.edf");
    let opts = DenoiseOptions {
        channels: Some(vec!["Fp1".into()]),
        hop: Some(7),
        ..DenoiseOptions::default()
    };
    denoise_file(Path::new(EEGMMIDB), &out, &model, &opts, &|_| {}).unwrap();
    let x = fp1(EEGMMIDB);
    let y = fp1(&out);
    let worst = x
        .iter()
        .zip(&y)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    // The file quantises to well under 1 uV; a wrong OLA normalisation would be off by percents
    // of signals that reach hundreds of uV.
    assert!(worst <= 1.0, "max deviation {worst} uV");
}

#[test]
fn ola_sine_reaches_the_model_and_keeps_an_identity_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, t) = identity_model(64, 16, 160.0);
    let identity = Model::from_tensors(&meta, &t).unwrap();
    let out = dir.path().join("id.edf");
    let opts = DenoiseOptions {
        channels: Some(vec!["Fp1".into()]),
        hop: Some(12),
        ola: Some(mfr_eeg::core::OlaShape::Sine),
        ..DenoiseOptions::default()
    };
    denoise_file(Path::new(EEGMMIDB), &out, &identity, &opts, &|_| {}).unwrap();
    let x = fp1(EEGMMIDB);
    let worst = x
        .iter()
        .zip(&fp1(&out))
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1.0, "max deviation {worst} uV");

    // The shipped model through the CLI: the taper changes the output, a little; without
    // `--ola` the model's own taper is used.
    let shipped = Model::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/general-256hz.safetensors"
    )))
    .unwrap();
    let own = shipped.view().meta().ola.name();
    let mut outs = Vec::new();
    for ola in ["hann", "sine", "model's"] {
        let o = dir.path().join(format!("{ola}.edf"));
        let mut args = vec!["--channels", "Fp1", "--no-spatial", "--hop", "40"];
        if ola != "model's" {
            args.extend(["--ola", ola]);
        }
        let r = bin()
            .args(["denoise", EEGMMIDB])
            .arg(&o)
            .args(args)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", stderr(&r));
        let text = String::from_utf8_lossy(&r.stdout);
        assert_eq!(
            text.contains("hop 40 with the sine taper"),
            ola == "sine" || (ola == "model's" && own == "sine"),
            "{text}"
        );
        outs.push(fp1(&o));
    }
    let own_index = usize::from(own == "sine");
    assert_eq!(outs[2], outs[own_index], "no --ola: the model's {own}");
    let rms = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    let diff = outs[0]
        .iter()
        .zip(&outs[1])
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff > 0.5 && diff < rms, "{diff} uV (signal RMS {rms})");
    let r = bin()
        .args(["denoise", EEGMMIDB, "x.edf", "--ola", "cosine"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
}

#[test]
fn default_model_is_embedded_and_used_without_model_flag() {
    // Run from an unrelated directory: the default model must come from the binary itself.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clean.edf");
    let o = bin()
        .args(["denoise", EEGMMIDB])
        .arg(&out)
        .args(["--channels", "Fp1,Fp2"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("fast-256hz"), "{text}");
    assert!(text.contains("correction gate 0.125..0.625)"), "{text}");
    assert!(text.contains("2 resampled to 256 Hz"), "{text}");
    // The shipped model changes the signal (it is not an identity), yet stays in range.
    let x = fp1(EEGMMIDB);
    let y = fp1(&out);
    assert_eq!(x.len(), y.len());
    assert!(x.iter().zip(&y).any(|(a, b)| (a - b).abs() > 1.0));
    assert!(y.iter().all(|v| v.is_finite()));
}

/// `--gate` replaces the model's correction gate: `off` and `LO,HI` (with `--gate-slow`) give
/// what a copy of the model with that gate gives, and a harder gate changes the signal less.
#[test]
fn gate_override_reaches_the_model() {
    use mfr_eeg::core::{Blend, SlowGate};
    use mfr_eeg::model::write_model;
    // Central and parietal channels (signals 8-12 and 48-52): the eye channels' large
    // corrections pass every gate whole.
    const CHANNELS: &str = "C3..,C1..,Cz..,C2..,C4..,P3..,P1..,Pz..,P2..,P4..";
    let some = |p: &Path| -> Vec<f32> {
        EdfReader::open(p)
            .unwrap()
            .read_channels_physical(&[8, 9, 10, 11, 12, 48, 49, 50, 51, 52])
            .unwrap()
            .concat()
    };
    let dir = tempfile::tempdir().unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/models/fast-256hz.safetensors");
    let m = Model::load(Path::new(shipped)).unwrap();
    let copy = |name: &str, blend: Option<Blend>| {
        let mut meta = m.meta();
        meta.blend = blend;
        let p = dir.path().join(name);
        write_model(&p, &meta, &m.tensors()).unwrap();
        p
    };
    let denoise = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let o = bin()
            .args(["denoise", EEGMMIDB])
            .arg(&out)
            .args(["--channels", CHANNELS, "--no-spatial"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        (some(&out), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let x = some(Path::new(EEGMMIDB));
    // The median change: large artifacts (corrected whole under any gate) do not move it,
    // the many windows that need little correction do.
    let change = |y: &[f32]| {
        let mut d: Vec<f32> = x.iter().zip(y).map(|(a, b)| (a - b).abs()).collect();
        let mid = d.len() / 2;
        *d.select_nth_unstable_by(mid, f32::total_cmp).1
    };

    let (off, text) = denoise("off.edf", &["--gate", "off"]);
    assert!(!text.contains("correction gate"), "{text}");
    let plain = copy("plain.safetensors", None);
    let (want, _) = denoise("plain.edf", &["--model", plain.to_str().unwrap()]);
    assert_eq!(off, want);

    let two = Blend {
        slow: Some(SlowGate {
            lo: 0.125,
            hi: 0.625,
            half: 32,
        }),
        ..Blend::new(0.25, 0.75)
    };
    let (got, text) = denoise(
        "two.edf",
        &["--gate", "0.25,0.75", "--gate-slow", "0.125,0.625,32"],
    );
    assert!(
        text.contains("correction gate 0.25..0.75 on the fast part, 0.125..0.625 on the slow"),
        "{text}"
    );
    let gated = copy("two.safetensors", Some(two));
    let (want, _) = denoise("two-model.edf", &["--model", gated.to_str().unwrap()]);
    assert_eq!(got, want);

    // --keep-slow: the model's own ramp on the fast part, the slow part (33-sample mean at
    // 256 Hz) left out.
    let (got, text) = denoise("keep.edf", &["--keep-slow"]);
    assert!(
        text.contains(
            "correction gate 0.125..0.625 on the fast part; the slow part (33-sample mean) kept"
        ),
        "{text}"
    );
    let keep = Blend {
        slow: Some(SlowGate::never(16)),
        ..Blend::new(0.125, 0.625)
    };
    let kept = copy("keep.safetensors", Some(keep));
    let (want, _) = denoise("keep-model.edf", &["--model", kept.to_str().unwrap()]);
    assert_eq!(got, want);

    let (default, _) = denoise("default.edf", &[]);
    let (hard, text) = denoise("hard.edf", &["--gate", "0.425,0.625"]);
    assert!(text.contains("correction gate 0.425..0.625)"), "{text}");
    let (c_off, c_default, c_hard) = (change(&off), change(&default), change(&hard));
    assert!(
        c_hard < 0.9 * c_default && c_default < 0.9 * c_off,
        "{c_hard} {c_default} {c_off}"
    );
    let c_keep = change(&got);
    assert!(c_keep < c_default, "{c_keep} {c_default}");
}

/// The channels the eye stage cleans get the after-eye gate by default (the model's fast
/// ramp, its slow part only when large); `--gate model` keeps the model's gate everywhere.
/// EEGMMIDB's run has no blinks, so the eye stage leaves the samples as they were and only the
/// gate differs.
#[test]
fn after_eye_gate_on_the_channels_the_eye_stage_cleans() {
    const CHANNELS: &str = "C3..,Cz..,C4..,P3..,Pz..,P4..";
    let dir = tempfile::tempdir().unwrap();
    let denoise = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let o = bin()
            .args(["denoise", EEGMMIDB])
            .arg(&out)
            .args(["--channels", CHANNELS])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        let x = EdfReader::open(&out)
            .unwrap()
            .read_channels_physical(&[8, 10, 12, 48, 50, 52])
            .unwrap()
            .concat();
        (x, String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (auto, text) = denoise("auto.edf", &[]);
    assert!(
        text.contains(
            "after eye   the channels the eye stage cleans: correction gate 0.125..0.625 on the \
             fast part, 0.6..0.8 on the slow part (33-sample mean)"
        ),
        "{text}"
    );
    let (after, _) = denoise("after.edf", &["--no-spatial", "--gate", "after-eye"]);
    assert_eq!(auto, after);
    let (model, text) = denoise("model.edf", &["--gate", "model"]);
    assert!(!text.contains("after eye"), "{text}");
    let (plain, _) = denoise("plain.edf", &["--no-spatial"]);
    assert_eq!(model, plain);
    let x = EdfReader::open(Path::new(EEGMMIDB))
        .unwrap()
        .read_channels_physical(&[8, 10, 12, 48, 50, 52])
        .unwrap()
        .concat();
    let change = |y: &[f32]| {
        let d: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)).sum();
        let n: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
        (d / n).sqrt()
    };
    // Measured (full band, against the signal's own size): 0.28 vs 0.36; in 1-40 Hz,
    // `eog-check`'s blink-free change on all channels, 0.057 vs 0.174.
    assert!(
        change(&auto) < 0.85 * change(&model),
        "{} {}",
        change(&auto),
        change(&model)
    );
    let bad = bin()
        .args(["denoise", EEGMMIDB])
        .arg(dir.path().join("x.edf"))
        .args(["--gate", "model", "--gate-slow", "0.1,0.2,3"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("--gate-slow needs --gate LO,HI, not model"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn closed_stdout_pipe_is_not_a_panic() {
    // `mfr-eeg inspect f.edf | head -3`: the reader goes away; the CLI must end quietly.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = bin()
        .args(["inspect", EEGMMIDB])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// The eye stage runs by default on a file with EOG channels (the summary says which and what
/// it found), changes the EEG channels only and copies the EOG channels bit for bit;
/// `--no-spatial` skips it.
#[test]
fn eye_stage_runs_by_default_and_no_spatial_skips_it() {
    let input = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/eeglab_tutorial_32ch_128Hz_238s.edf"
    );
    let dir = tempfile::tempdir().unwrap();
    let (on, off) = (dir.path().join("on.edf"), dir.path().join("off.edf"));
    let o = run(&[&"denoise", &input, &on]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("eye         EOG channels EOG1, EOG2: 30 channels through a multi-channel")
            && text.contains("; blink source found ("),
        "{text}"
    );
    let o = run(&[&"denoise", &input, &off, &"--no-spatial"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("eye "));
    let read = |p: &Path| {
        let mut r = mfr_eeg::io::edf::EdfReader::open(p).unwrap();
        let h = r.header().clone();
        let all: Vec<usize> = (0..h.signals().len()).collect();
        r.read_channels_physical(&all).unwrap()
    };
    let (a, b, raw) = (read(&on), read(&off), read(Path::new(input)));
    // EOG1 and EOG2 (signals 1 and 5) are not denoised either way.
    for c in [1, 5] {
        assert!(a[c] == raw[c] && b[c] == raw[c], "EOG channel {c} changed");
    }
    // The eye stage takes the blink out of FPz before the model: at the largest blink the
    // output with it is far smaller than without.
    let peak = (0..raw[0].len())
        .max_by(|&i, &j| raw[0][i].total_cmp(&raw[0][j]))
        .unwrap();
    assert!(raw[0][peak] > 400.0, "{}", raw[0][peak]);
    assert!(
        a[0][peak].abs() < 0.5 * b[0][peak].abs(),
        "with {} without {}",
        a[0][peak],
        b[0][peak]
    );
}

/// `--eye-only`: the eye stage alone. The EEG channels written are the streaming filter's
/// output (within the file's digital step), the EOG channels their own bits; options that
/// would need the model are usage errors.
#[test]
fn eye_only_writes_the_filter_output_and_nothing_else() {
    use mfr_eeg::core::MwfConfig;
    use mfr_eeg::ocular::mwf_block;
    let input = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/eeglab_tutorial_32ch_128Hz_238s.edf"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eye.edf");
    let o = run(&[&"denoise", &input, &out, &"--eye-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("30 through the eye stage only (no model)"),
        "{text}"
    );
    let mut r = mfr_eeg::io::edf::EdfReader::open(Path::new(input)).unwrap();
    let h = r.header().clone();
    let all: Vec<usize> = (0..h.signals().len()).collect();
    let raw = r.read_channels_physical(&all).unwrap();
    let got = mfr_eeg::io::edf::EdfReader::open(&out)
        .unwrap()
        .read_channels_physical(&all)
        .unwrap();
    // The filter over the EEG channels, then EOG1 and EOG2, blinks detected on both.
    let eeg: Vec<usize> = all.iter().copied().filter(|&c| c != 1 && c != 5).collect();
    let mut want: Vec<Vec<f32>> = eeg.iter().map(|&c| raw[c].clone()).collect();
    let eog = vec![raw[1].clone(), raw[5].clone()];
    let rep = mwf_block(&mut want, &eog, &eog, MwfConfig::for_rate(128.0)).unwrap();
    assert!(rep.active);
    let mut moved = 0;
    for (k, &c) in eeg.iter().enumerate() {
        let step = h.signals()[c].gain().abs();
        for (t, (&g, &w)) in got[c].iter().zip(&want[k]).enumerate() {
            // Samples clipped at the channel's physical range are the exception.
            let lo = h.signals()[c].physical_min.min(h.signals()[c].physical_max);
            let hi = h.signals()[c].physical_min.max(h.signals()[c].physical_max);
            if f64::from(w) > lo && f64::from(w) < hi {
                assert!(
                    (f64::from(g) - f64::from(w)).abs() <= 0.5 * step + 1e-6,
                    "channel {c} sample {t}: {g} vs {w}"
                );
            }
        }
        moved += usize::from(got[c] != raw[c]);
    }
    assert_eq!(moved, eeg.len(), "every EEG channel is corrected somewhere");
    assert!(got[1] == raw[1] && got[5] == raw[5], "EOG channels changed");
    // Options that need the model are usage errors.
    for extra in ["--no-spatial", "--hop"] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"denoise", &input, &out];
        args.push(&"--eye-only");
        args.push(&extra);
        if extra == "--hop" {
            args.push(&"16");
        }
        assert_eq!(run(&args).status.code(), Some(2), "{extra}");
    }
}

/// `fit-blend` writes the model with a fitted gate and nothing else changed, and prints the
/// scores it chose by; a missing model is an error naming it, with no output written.
#[test]
fn fit_blend_adds_a_gate_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let input = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/general-256hz.safetensors"
    );
    let out = dir.path().join("gated.safetensors");
    let before = std::fs::read(input).unwrap();
    let o = run(&[&"fit-blend", &input, &out, &"--model-segments", &"20"]);
    assert!(o.status.success(), "fit-blend failed: {}", stderr(&o));
    assert_eq!(std::fs::read(input).unwrap(), before, "input modified");
    let text = String::from_utf8_lossy(&o.stdout);
    let score = |label: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap();
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    let (without, best) = (score("without a gate"), score("blend"));
    assert!(best <= without && best > 0.1, "{text}");
    let (a, b) = (
        Model::load(Path::new(input)).unwrap(),
        Model::load(&out).unwrap(),
    );
    assert!(a.meta().blend.is_none());
    let gate = b.meta().blend.expect("a gate");
    assert!(
        text.contains(&format!("wrote {} (blend {gate})", out.display())),
        "{text}"
    );
    assert_eq!(b.tensors(), a.tensors());
    let mut m = b.meta();
    m.blend = None;
    assert_eq!(m, a.meta());

    // Two ramps, fitted on EOG and the artifact-free windows: a format-7 file whose slow ramp
    // has the asked half-width, scoring no worse than the single ramp it started from.
    let out3 = dir.path().join("two.safetensors");
    let o = run(&[
        &"fit-blend",
        &input,
        &out3,
        &"--model-segments",
        &"20",
        &"--kinds",
        &"eog",
        &"--clean",
        &"--slow-half",
        &"8",
    ]);
    assert!(o.status.success(), "fit-blend failed: {}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let c = Model::load(&out3).unwrap();
    let gate = c.meta().blend.expect("a gate");
    let slow = gate.slow.expect("a slow ramp");
    assert_eq!(slow.half, 8);
    assert_eq!(
        c.view().meta().format_version,
        mfr_eeg::model::FORMAT_VERSION_BLEND_SLOW
    );
    assert!(
        text.contains(&format!(
            "wrote {} (blend {gate}, blend_slow {slow})",
            out3.display()
        )),
        "{text}"
    );
    let scores: Vec<f64> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("blend"))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(scores.len() == 2 && scores[1] <= scores[0], "{text}");
    assert_eq!(c.tensors(), a.tensors());
    let o = run(&[&"fit-blend", &input, &out3, &"--kinds", &"blinks"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let missing = dir.path().join("missing.safetensors");
    let out2 = dir.path().join("never.safetensors");
    let o = run(&[&"fit-blend", &missing, &out2]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.safetensors"), "{}", stderr(&o));
    assert!(!out2.exists());
}
