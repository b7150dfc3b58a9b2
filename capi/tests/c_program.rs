//! A C program compiled with `cc` against `include/mfr_eeg.h` and `libmfr_eeg_c.a` streams
//! samples of the shipped 64-channel recording through the C ABI in chunks of random sizes and
//! denoises them offline; both outputs must equal the Rust library's bit for bit, and the
//! pipeline stream fed in random chunks must equal the offline output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use mfr_eeg::denoise::DenoiseOptions;
use mfr_eeg::embed::{OwnedStreamer, denoise_channels};
use mfr_eeg::io::edf::EdfReader;
use mfr_eeg::model::Model;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CHANNELS: usize = 8;

fn have_cc() -> bool {
    Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The static library of this crate built for this test run: `cargo test` leaves it in
/// `deps/` beside the test executable; otherwise it is built.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let lib = dir.join("libmfr_eeg_c.a");
        if lib.exists() {
            return lib;
        }
    }
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "mfr-eeg-capi", "--lib"])
        .current_dir(ROOT)
        .status()
        .expect("cargo runs");
    assert!(st.success(), "cargo build of the static library failed");
    let lib = deps.parent().unwrap().join("libmfr_eeg_c.a");
    assert!(lib.exists(), "no {}", lib.display());
    lib
}

fn write_f32(path: &Path, x: &[f32]) {
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn c_program_streams_and_denoises_exactly_as_rust() {
    if !have_cc() {
        eprintln!("SKIPPED: no C compiler (`cc`) on this machine");
        return;
    }
    let lib = static_lib();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("stream");
    let o = Command::new("cc")
        .args(["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(Path::new(ROOT).join("include"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/stream.c"))
        .arg(&lib)
        .args(["-lm", "-lpthread", "-ldl", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The first CHANNELS channels of the whole recording (61 s at 160 Hz), in microvolts.
    let edf = Path::new(ROOT).join("data/eegmmidb_S001R02_64ch_160Hz_61s.edf");
    let mut reader = EdfReader::open(&edf).unwrap();
    let fs = reader.header().sample_rate(0);
    let picks: Vec<usize> = (0..CHANNELS).collect();
    let chans = reader.read_channels_physical(&picks).unwrap();
    let frames = chans[0].len();
    assert_eq!((fs, frames), (160.0, 9760));
    let interleaved: Vec<f32> = (0..frames)
        .flat_map(|t| chans.iter().map(move |c| c[t]))
        .collect();
    let input = dir.path().join("in.f32");
    write_f32(&input, &interleaved);
    let model_path = Path::new(ROOT).join("models/general-256hz.safetensors");
    let (stream_out, offline_out) = (dir.path().join("s.f32"), dir.path().join("o.f32"));
    let o = Command::new(&exe)
        .arg(&model_path)
        .arg(&input)
        .arg(CHANNELS.to_string())
        .arg(frames.to_string())
        .arg(fs.to_string())
        .arg(&stream_out)
        .arg(&offline_out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "C program failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout
            .contains("model: window 256, hop 8, k 128 of 1024, 256 Hz, sine taper, no front end, no correction gate\n"),
        "{stdout}"
    );
    assert!(stdout.contains("latency: 255 samples"), "{stdout}");
    // At 160 Hz: a 1 s block (160 samples) + the chain margin + the baseline's 2.25 s.
    assert!(
        stdout.contains("pipeline stream: latency 717 samples, 9760 frames in")
            && stdout.contains("calls, equal to offline"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "small output buffer: status 2, message: output holds 10 frames; a push of 10 needs 727"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("truncated model: status 3, message: <memory>: invalid model:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "bad band-pass: status 2, message: invalid option: --bandpass 40,1: need 0 < low < high (Hz)"
        ),
        "{stdout}"
    );

    let model = Arc::new(Model::load(&model_path).unwrap());
    let mut s = OwnedStreamer::new(model.clone(), CHANNELS, None).unwrap();
    let mut want = vec![0.0; interleaved.len()];
    s.push_interleaved(&interleaved, &mut want).unwrap();
    let got = read_f32(&stream_out);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "streamed output differs from Rust's");
    // Not a vacuous comparison: past the latency the output is real signal.
    let tail_rms = (want[CHANNELS * 1000..].iter().map(|v| v * v).sum::<f32>()
        / (want.len() - CHANNELS * 1000) as f32)
        .sqrt();
    assert!(tail_rms > 1.0, "denoised RMS {tail_rms} uV");

    let mut rows = chans.clone();
    let mut refs: Vec<&mut [f32]> = rows.iter_mut().map(|r| &mut r[..]).collect();
    denoise_channels(&mut refs, None, fs, 1.0, &model, &DenoiseOptions::default()).unwrap();
    let want: Vec<f32> = rows.concat();
    let got = read_f32(&offline_out);
    assert!(got == want, "offline output differs from Rust's");
    assert!(got != chans.concat(), "offline denoising changed nothing");
}

/// 9 channels (Fp1 Fp2 F7 F8 C3 C4 O1 O2 VEOG) at 256 Hz: independent sinusoid mixtures as
/// EEG, blinks of 100-190 uV every 3 s with a frontal topography, VEOG = 1.5 x the blink plus
/// noise; frame-major (interleaved).
fn blink_montage(frames: usize) -> Vec<f32> {
    const TOPO: [f32; 8] = [1.0, 0.9, 0.55, 0.45, 0.2, 0.18, 0.05, 0.04];
    let mut lcg = 12345u32;
    let mut next = move || {
        lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (lcg >> 8) as f32 / (1u32 << 24) as f32
    };
    let comps: Vec<Vec<(f32, f32, f32)>> = (0..8)
        .map(|_| {
            (0..12)
                .map(|_| {
                    (
                        2.0 + 28.0 * next(),
                        2.0 + 4.0 * next(),
                        std::f32::consts::TAU * next(),
                    )
                })
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(frames * 9);
    for t in 0..frames {
        let s = t as f32 / 256.0;
        let phase = t % 768;
        let blink = if (200..300).contains(&phase) {
            let x = (std::f32::consts::PI * (phase - 200) as f32 / 100.0).sin();
            (100.0 + 90.0 * ((t / 768) % 3) as f32 / 2.0) * x * x
        } else {
            0.0
        };
        for (c, comp) in comps.iter().enumerate() {
            let eeg: f32 = comp
                .iter()
                .map(|&(f, a, p)| a * (std::f32::consts::TAU * f * s + p).sin())
                .sum();
            out.push(eeg + TOPO[c] * blink);
        }
        out.push(1.5 * blink + next() - 0.5);
    }
    out
}

#[test]
fn c_program_runs_the_eye_stage_exactly_as_rust() {
    if !have_cc() {
        eprintln!("SKIPPED: no C compiler (`cc`) on this machine");
        return;
    }
    let lib = static_lib();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("eye");
    let o = Command::new("cc")
        .args(["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(Path::new(ROOT).join("include"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/eye.c"))
        .arg(&lib)
        .args(["-lm", "-lpthread", "-ldl", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let frames = 256 * 40;
    let x = blink_montage(frames);
    let (input, output) = (dir.path().join("in.f32"), dir.path().join("out.f32"));
    write_f32(&input, &x);
    let o = Command::new(&exe)
        .arg(&input)
        .arg(frames.to_string())
        .arg("256")
        .arg(&output)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("no references: status 2, message: no EOG channel and no frontal"),
        "{stdout}"
    );
    assert!(
        stdout.contains("eye stage: latency 128 frames, 10240 frames out, active 1"),
        "{stdout}"
    );
    // Rust's EyeStream over the whole recording at once.
    let names: Vec<String> = ["Fp1", "Fp2", "F7", "F8", "C3", "C4", "O1", "O2", "VEOG"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut eye = mfr_eeg::embed::EyeStream::new(&names, 256.0, None)
        .unwrap()
        .unwrap();
    let planar: Vec<Vec<f32>> = (0..9)
        .map(|c| x.iter().skip(c).step_by(9).copied().collect())
        .collect();
    let refs: Vec<&[f32]> = planar.iter().map(Vec::as_slice).collect();
    let mut out = vec![Vec::new(); 9];
    eye.push(&refs, &mut out).unwrap();
    eye.finish(&mut out).unwrap();
    let want: Vec<f32> = (0..frames)
        .flat_map(|t| out.iter().map(move |c| c[t]))
        .collect();
    let got = read_f32(&output);
    assert!(got == want, "the C eye stage differs from Rust's");
    assert!(got != x, "the eye stage changed nothing");
}
