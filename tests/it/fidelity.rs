//! Fidelity of `denoise` on real-world file shapes: DC offsets with tight physical ranges
//! (EDF and BDF), the band above the model, blocks equal to the whole signal, clipping as an
//! error, interrupts, and many files.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mfr_eeg::denoise::{DenoiseError, DenoiseOptions, HighBand, denoise_file};
use mfr_eeg::io::edf::{
    EdfReader, EdfWriter, Format, Header, HeaderSpec, SignalHeader, encode_physical,
};
use mfr_eeg::model::Model;

use super::cli::{bin, identity_file, names, run};
use mfr_eeg::rng::Rng;

const EEGMMIDB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/eegmmidb_S001R02_64ch_160Hz_61s.edf"
);
const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/general-256hz.safetensors"
);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn quiet(_: mfr_eeg::denoise::Progress) {}

fn all_physical(path: &Path) -> (Header, Vec<Vec<f32>>) {
    let mut r = EdfReader::open(path).unwrap();
    let h = r.header().clone();
    let chans: Vec<usize> = (0..h.signals().len())
        .filter(|&c| !h.signals()[c].is_annotation())
        .collect();
    let data = r.read_channels_physical(&chans).unwrap();
    (h, data)
}

/// Writes `data` (one vector per signal of `spec`, annotation signals copied from `src`'s
/// records) as a new file.
fn write_file(path: &Path, spec: &HeaderSpec, data: &[Vec<f32>], src: Option<&Path>) {
    let header = Header::from_spec(spec).unwrap();
    let mut w = EdfWriter::create(path, &header).unwrap();
    let sb = spec.format.sample_bytes();
    let mut src = src.map(|p| EdfReader::open(p).unwrap());
    let records = spec.num_records as usize;
    for r in 0..records {
        let src_rec = src.as_mut().map(|s| s.read_record().unwrap().unwrap());
        let mut rec = Vec::new();
        let mut k = 0;
        for (c, sig) in spec.signals.iter().enumerate() {
            let spr = sig.samples_per_record;
            if sig.is_annotation() {
                let s = src_rec.as_ref().expect("annotation source");
                rec.extend_from_slice(s.signal_bytes(c));
                continue;
            }
            let mut enc = vec![0u8; spr * sb];
            let clipped =
                encode_physical(sig, spec.format, &data[k][r * spr..][..spr], &mut enc).unwrap();
            assert_eq!(clipped, 0, "the test data fits its own range");
            rec.extend_from_slice(&enc);
            k += 1;
        }
        w.write_record(&rec).unwrap();
    }
    w.finish().unwrap();
}

/// The shipped 64-channel file with per-channel offsets of +-50..400 uV and every physical
/// range narrowed to the channel's data (a DC-coupled amplifier's file). Returns the
/// offsets.
fn offset_copy(path: &Path, format: Format) -> Vec<f64> {
    let (h, data) = all_physical(Path::new(EEGMMIDB));
    let mut rng = Rng::new(13);
    let mut spec = h.to_spec();
    spec.format = format;
    spec.reserved = match format {
        Format::Edf => spec.reserved.clone(),
        Format::Bdf => spec.reserved.replace("EDF", "BDF"),
    };
    let (dlo, dhi) = format.digital_limits();
    let mut offsets = Vec::new();
    let mut shifted = Vec::new();
    let mut excluding_zero = 0;
    let mut k = 0;
    for sig in spec.signals.iter_mut() {
        if sig.is_annotation() {
            if format == Format::Bdf {
                sig.label = format.annotation_label().into();
                // BDF+ annotations use 3-byte samples: the same bytes in 2/3 the samples.
                sig.samples_per_record = sig.samples_per_record * 2 / 3;
            }
            continue;
        }
        let sign = if rng.below(2) == 0 { -1.0 } else { 1.0 };
        let off = sign * rng.uniform(50.0, 400.0);
        let x: Vec<f32> = data[k]
            .iter()
            .map(|&v| (f64::from(v) + off) as f32)
            .collect();
        let lo = x.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let hi = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        // Tight: 5 % of the span beyond the data's extremes, in whole microvolts. (Denoised
        // output is not bounded by the input's extremes: on Iz a spike at 226 uV rides on a
        // slow deflection the model removes, and comes out at 235 uV.)
        let head = 0.05 * (hi - lo);
        sig.physical_min = (lo - head).floor();
        sig.physical_max = (hi + head).ceil();
        sig.digital_min = dlo;
        sig.digital_max = dhi;
        excluding_zero += usize::from(sig.physical_min > 0.0 || sig.physical_max < 0.0);
        offsets.push(off);
        shifted.push(x);
        k += 1;
    }
    // Most ranges exclude 0, as on a DC-coupled amplifier (channels with small offsets and
    // large eye movements straddle it; seed 13 gives 41 of 64).
    assert!(
        excluding_zero > 32,
        "{excluding_zero} of 64 ranges exclude 0"
    );
    if format == Format::Bdf {
        // EDF annotation bytes do not fit BDF records; generate the file without them.
        spec.signals.retain(|s| !s.is_annotation());
        spec.reserved = String::new();
        write_file(path, &spec, &shifted, None);
    } else {
        write_file(path, &spec, &shifted, Some(Path::new(EEGMMIDB)));
    }
    offsets
}

fn denoise(input: &Path, output: &Path, opts: &DenoiseOptions) -> mfr_eeg::denoise::DenoiseSummary {
    let model = Model::load(Path::new(DEFAULT_MODEL)).unwrap();
    denoise_file(input, output, &model, opts, &quiet).unwrap()
}

#[test]
fn dc_offsets_with_tight_ranges_pass_through_in_edf_and_bdf() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.edf");
    let opts = DenoiseOptions::default();
    denoise(Path::new(EEGMMIDB), &reference, &opts);
    let (h0, want) = all_physical(&reference);
    for format in [Format::Edf, Format::Bdf] {
        let input = dir.path().join(format!("offset-{format:?}.edf"));
        let offsets = offset_copy(&input, format);
        // For measuring other versions of the tool on the same file.
        if let Some(keep) = std::env::var_os("MFR_EEG_KEEP_FIDELITY_INPUTS") {
            std::fs::copy(&input, Path::new(&keep).join(input.file_name().unwrap())).unwrap();
        }
        let out = dir.path().join(format!("offset-{format:?}-clean.edf"));
        let s = denoise(&input, &out, &opts);
        assert_eq!(s.clipped, 0, "{format:?}: clipped samples {:?}", s.channels);
        let (h1, got) = all_physical(&out);
        let mut worst = 0.0f64;
        for (c, ((g, w), off)) in got.iter().zip(&want).zip(&offsets).enumerate() {
            let q0 = h0.signals()[c].gain();
            let q1 = h1.signals()[c].gain();
            // Both outputs are rounded to their own grids (half a step each); the inputs
            // differ by the offset file's rounding, which the model passes on.
            let tol = 0.5 * q0 + 0.5 * q1 + 0.02;
            for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
                let d = (f64::from(a) - off - f64::from(b)).abs();
                worst = worst.max(d / q0);
                assert!(
                    d <= tol,
                    "{format:?} channel {c} sample {i}: {a} - {off} vs {b} (tol {tol})"
                );
            }
        }
        eprintln!("{format:?}: worst |out - offset - reference| = {worst:.3} reference steps");
    }
}

#[test]
fn blocks_equal_the_whole_signal_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.edf");
    let base = DenoiseOptions {
        hop: Some(32),
        ..DenoiseOptions::default()
    };
    let s = denoise(
        Path::new(EEGMMIDB),
        &whole,
        &DenoiseOptions {
            block_seconds: Some(f64::INFINITY),
            ..base.clone()
        },
    );
    assert!(s.block_seconds.is_infinite());
    let want = std::fs::read(&whole).unwrap();
    // 7.3 s = 1168 samples at 160 Hz: blocks end mid-record and mid-window; 60.99 s leaves a
    // last block of 2 samples.
    for b in [7.3, 60.99] {
        let out = dir.path().join(format!("blocks-{b}.edf"));
        denoise(
            Path::new(EEGMMIDB),
            &out,
            &DenoiseOptions {
                block_seconds: Some(b),
                ..base.clone()
            },
        );
        assert!(
            std::fs::read(&out).unwrap() == want,
            "blocks of {b} s differ"
        );
    }
}

/// With more than one thread, records are read (and pass the eye stage) ahead while lanes
/// compute: the output is the one-thread and whole-file output, byte for byte.
#[test]
fn reading_ahead_with_the_eye_stage_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let base = DenoiseOptions {
        spatial: true,
        ..DenoiseOptions::default()
    };
    let mut outputs = Vec::new();
    for (threads, block) in [(1, f64::INFINITY), (1, 7.3), (2, 7.3), (3, 2.0)] {
        let out = dir.path().join(format!("t{threads}-b{block}.edf"));
        let s = denoise(
            Path::new(EEGMMIDB),
            &out,
            &DenoiseOptions {
                threads,
                block_seconds: Some(block),
                ..base.clone()
            },
        );
        assert!(s.spatial.is_some(), "the eye stage ran");
        outputs.push(std::fs::read(&out).unwrap());
    }
    let input = std::fs::read(EEGMMIDB).unwrap();
    assert!(outputs[0] != input, "denoising changed the file");
    for (i, o) in outputs.iter().enumerate().skip(1) {
        assert!(*o == outputs[0], "run {i} differs");
    }
}

/// A generated file with a 256 Hz, a 1000 Hz and a 200 Hz channel (0.5 s records): EEG-like
/// noise plus tones and a blink-like bump, on offsets.
fn generated_mixed(path: &Path, seconds: f64) -> Vec<Vec<f32>> {
    let record_s = 0.5;
    let records = (seconds / record_s) as usize;
    let rates = [256usize, 1000, 200];
    let sig = |label: &str, spr: usize| SignalHeader {
        label: label.into(),
        transducer: "AgAgCl electrode".into(),
        physical_dimension: "uV".into(),
        physical_min: -1000.0,
        physical_max: 1000.0,
        digital_min: -32768,
        digital_max: 32767,
        prefiltering: String::new(),
        samples_per_record: spr,
        reserved: String::new(),
    };
    let spec = HeaderSpec::generated(
        records as i64,
        record_s,
        vec![
            sig("Fz", (256.0 * record_s) as usize),
            sig("Cz", (1000.0 * record_s) as usize),
            sig("Pz", (200.0 * record_s) as usize),
        ],
    );
    let mut rng = Rng::new(7);
    let data: Vec<Vec<f32>> = rates
        .iter()
        .enumerate()
        .map(|(c, &fs)| {
            let n = (fs as f64 * seconds) as usize;
            let mut brown = 0.0f64;
            (0..n)
                .map(|i| {
                    let t = i as f64 / fs as f64;
                    let w = 2.0 * std::f64::consts::PI;
                    brown = 0.98 * brown + rng.normal() * 3.0;
                    let blink = 120.0 * (-((t % 7.0) - 3.0).powi(2) / 0.02).exp();
                    (50.0 * (c as f64 - 1.0) + brown + 20.0 * (w * 10.0 * t).sin() + blink) as f32
                })
                .collect()
        })
        .collect();
    write_file(path, &spec, &data, None);
    data
}

#[test]
fn blocks_at_awkward_places_equal_the_whole_signal_at_mixed_rates() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.edf");
    generated_mixed(&input, 40.0);
    let base = DenoiseOptions {
        hop: Some(32),
        ..DenoiseOptions::default()
    };
    let whole = dir.path().join("whole.edf");
    denoise(
        &input,
        &whole,
        &DenoiseOptions {
            block_seconds: Some(f64::INFINITY),
            ..base.clone()
        },
    );
    let want = std::fs::read(&whole).unwrap();
    // 1.37 s: 351 / 1370 / 274 samples, ends mid-record and mid-window at every rate;
    // 13.333 s leaves short last blocks; 39.999 s a last block of a sample or so.
    for b in [1.37, 13.333, 39.999] {
        let out = dir.path().join(format!("b{b}.edf"));
        denoise(
            &input,
            &out,
            &DenoiseOptions {
                block_seconds: Some(b),
                ..base.clone()
            },
        );
        assert!(
            std::fs::read(&out).unwrap() == want,
            "blocks of {b} s differ"
        );
    }
    // With zero-phase IIR prefilters the blocks' margins end where the impulse response has
    // decayed below 1e-9: equal to the whole signal within one quantisation step.
    let pre = DenoiseOptions {
        notch_hz: Some(50.0),
        bandpass_hz: Some((0.5, 45.0)),
        ..base.clone()
    };
    let whole_pre = dir.path().join("whole-pre.edf");
    denoise(
        &input,
        &whole_pre,
        &DenoiseOptions {
            block_seconds: Some(f64::INFINITY),
            ..pre.clone()
        },
    );
    let blocks_pre = dir.path().join("blocks-pre.edf");
    denoise(
        &input,
        &blocks_pre,
        &DenoiseOptions {
            block_seconds: Some(3.1),
            ..pre
        },
    );
    let (h, a) = all_physical(&whole_pre);
    let (_, b) = all_physical(&blocks_pre);
    for (c, (x, y)) in a.iter().zip(&b).enumerate() {
        let step = h.signals()[c].gain() as f32;
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= step * 1.001,
            "channel {c}: {worst} > one step {step}"
        );
    }
}

/// Power of `x` at `f_hz` (a single-bin DFT, normalised to the amplitude of a sine).
fn amplitude_at(x: &[f32], fs: f64, f_hz: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let ph = 2.0 * std::f64::consts::PI * f_hz * i as f64 / fs;
        re += f64::from(v) * ph.cos();
        im += f64::from(v) * ph.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

#[test]
fn the_band_above_the_model_is_kept_or_dropped_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("fast.edf");
    let fs = 1000.0;
    let seconds = 8usize;
    let spec = HeaderSpec::generated(
        seconds as i64,
        1.0,
        vec![SignalHeader {
            label: "C3".into(),
            transducer: String::new(),
            physical_dimension: "uV".into(),
            physical_min: -200.0,
            physical_max: 200.0,
            digital_min: -32768,
            digital_max: 32767,
            prefiltering: String::new(),
            samples_per_record: 1000,
            reserved: String::new(),
        }],
    );
    // 10 Hz (inside the model's band) and 200 Hz high gamma (above its 128 Hz Nyquist).
    let x: Vec<f32> = (0..1000 * seconds)
        .map(|i| {
            let t = i as f64 / fs;
            let w = 2.0 * std::f64::consts::PI;
            (30.0 * (w * 10.0 * t).sin() + 5.0 * (w * 200.0 * t).sin()) as f32
        })
        .collect();
    write_file(&input, &spec, std::slice::from_ref(&x), None);
    let model = identity_file(dir.path(), 256, 256.0);
    let inner = 1000..x.len() - 1000;
    for (flag, high_band) in [("keep", HighBand::Keep), ("drop", HighBand::Drop)] {
        let out = dir.path().join(format!("{flag}.edf"));
        let o = run(&[
            &"denoise",
            &input,
            &out,
            &"--model",
            &model,
            &"--above-model-band",
            &flag,
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let summary = text(&o.stdout);
        let note = match high_band {
            HighBand::Keep => "passed through unchanged",
            HighBand::Drop => "removed",
        };
        assert!(summary.contains(note), "{summary}");
        let (_, y) = all_physical(&out);
        let y = &y[0];
        let a10 = amplitude_at(&y[inner.clone()], fs, 10.0);
        let a200 = amplitude_at(&y[inner.clone()], fs, 200.0);
        assert!((a10 - 30.0).abs() < 0.05, "{flag}: 10 Hz amplitude {a10}");
        match high_band {
            // The identity model's correction is zero: the output is the input.
            HighBand::Keep => {
                assert!((a200 - 5.0).abs() < 0.01, "keep: 200 Hz amplitude {a200}");
                let worst = y[inner.clone()]
                    .iter()
                    .zip(&x[inner.clone()])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    worst < 0.02,
                    "keep: output differs from the input by {worst} uV"
                );
            }
            // The resampler's stop band (~80 dB) removes it.
            HighBand::Drop => assert!(a200 < 5.0 * 1e-3, "drop: 200 Hz amplitude {a200}"),
        }
    }
}

#[test]
fn output_that_would_clip_is_an_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("offset.edf");
    offset_copy(&input, Format::Edf);
    let model = identity_file(dir.path(), 64, 160.0);
    // A 1 Hz high-pass removes each channel's offset, so the output sits around 0, outside
    // every (offset, tight) physical range.
    let out = dir.path().join("hp.edf");
    let o = run(&[
        &"denoise",
        &input,
        &out,
        &"--model",
        &model,
        &"--bandpass",
        &"1,40",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("offset.edf") && err.contains("channel \""),
        "{err}"
    );
    assert!(
        err.contains("would be clipped") && err.contains("--allow-clipping"),
        "{err}"
    );
    assert_eq!(
        names(dir.path()),
        ["identity-64-160.safetensors", "offset.edf"]
    );
    let o = run(&[
        &"denoise",
        &input,
        &out,
        &"--model",
        &model,
        &"--bandpass",
        &"1,40",
        &"--allow-clipping",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("samples to the channel's physical range"));
    // Library: the typed error carries the counts.
    let m = Model::load(&model).unwrap();
    let e = denoise_file(
        &input,
        &dir.path().join("lib.edf"),
        &m,
        &DenoiseOptions {
            bandpass_hz: Some((1.0, 40.0)),
            ..DenoiseOptions::default()
        },
        &quiet,
    )
    .unwrap_err();
    match e {
        DenoiseError::Clipping {
            clipped, samples, ..
        } => assert!(
            clipped as f64 > mfr_eeg::denoise::MAX_CLIP_FRACTION * samples as f64
                && samples == 9760,
            "{clipped} of {samples}"
        ),
        other => panic!("expected a clipping error, got {other}"),
    }
    assert!(!dir.path().join("lib.edf").exists());
}

#[test]
fn sigint_and_sigterm_leave_no_output_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.edf");
    generated_mixed(&input, 600.0);
    for signal in ["-INT", "-TERM"] {
        let out_dir = dir.path().join(format!("out{signal}"));
        std::fs::create_dir(&out_dir).unwrap();
        let out = out_dir.join("clean.edf");
        // Hop 4: slow enough that the signal always arrives mid-way.
        let child = bin()
            .args(["denoise", "--threads", "1", "--hop", "4"])
            .arg(&input)
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the temporary output exists: the run is mid-way.
        let t0 = Instant::now();
        while names(&out_dir).is_empty() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no temporary file appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let k = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(k.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(130), "{signal}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("interrupted"),
            "{}",
            text(&o.stderr)
        );
        assert!(
            names(&out_dir).is_empty(),
            "{signal}: left {:?}",
            names(&out_dir)
        );
    }
}

#[test]
fn many_files_in_parallel_skip_existing_and_report_failures() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    generated_mixed(&src.join("a.edf"), 6.0);
    generated_mixed(&src.join("sub/b.EDF"), 4.0);
    std::fs::write(src.join("notes.txt"), "not a recording").unwrap();
    std::fs::write(src.join("sub/broken.edf"), b"0       truncated").unwrap();
    let model = identity_file(dir.path(), 256, 256.0);
    let out = dir.path().join("out");
    let o = run(&[
        &"denoise",
        &src,
        &"--out-dir",
        &out,
        &"--model",
        &model,
        &"--threads",
        &"2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(s.contains("ok    ") && s.contains("a.edf"), "{s}");
    assert!(s.contains("FAIL  ") && s.contains("broken.edf"), "{s}");
    assert!(
        s.contains("3 files: 2 denoised (10.0 s of recording), 0 skipped, 1 failed"),
        "{s}"
    );
    assert!(out.join("a.edf").is_file() && out.join("sub/b.EDF").is_file());
    assert!(!out.join("sub/broken.edf").exists() && !out.join("notes.txt").exists());
    assert_eq!(names(&out.join("sub")), ["b.EDF"]);
    // The identity model returns the input: same samples.
    let (_, a_in) = all_physical(&src.join("a.edf"));
    let (_, a_out) = all_physical(&out.join("a.edf"));
    assert_eq!(a_in.len(), a_out.len());
    // Again: finished outputs are skipped; --overwrite redoes them; a glob narrows the set.
    let o = run(&[&"denoise", &src, &"--out-dir", &out, &"--model", &model]);
    assert!(text(&o.stdout).contains("2 skipped"), "{}", text(&o.stdout));
    let o = run(&[
        &"denoise",
        &src,
        &"--out-dir",
        &out,
        &"--model",
        &model,
        &"--overwrite",
        &"--glob",
        &"a.*",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("1 files: 1 denoised"),
        "{}",
        text(&o.stdout)
    );
    // Usage errors: IN OUT needs exactly two paths; a bad glob.
    let o = run(&[&"denoise", &src.join("a.edf")]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[
        &"denoise",
        &src,
        &"--out-dir",
        &out,
        &"--glob",
        &"[",
        &"--model",
        &model,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}
