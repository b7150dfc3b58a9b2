//! Peak memory and time of `mfr-eeg denoise` on generated long recordings (64 channels,
//! 256 Hz, 1 s records): the streaming path (default blocks) against the whole-recording
//! path (`--block-seconds inf`, which holds every channel in memory as earlier versions did).
//!
//! `cargo bench --bench denoise_file [-- HOURS...] [--hop N]` (default: 1 and 4 hours, hop 32
//! so the run takes minutes; memory does not depend on the hop). Prints one line per run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mfr_eeg::io::edf::{EdfWriter, Format, Header, HeaderSpec, SignalHeader, encode_physical};
use mfr_eeg::rng::Rng;

const CHANNELS: usize = 64;
const RATE: usize = 256;

fn generate(path: &Path, hours: f64) {
    let records = (hours * 3600.0) as i64;
    let sig = |k: usize| SignalHeader {
        label: format!("EEG{k:03}"),
        transducer: "AgAgCl electrode".into(),
        physical_dimension: "uV".into(),
        physical_min: -1000.0,
        physical_max: 1000.0,
        digital_min: -32768,
        digital_max: 32767,
        prefiltering: String::new(),
        samples_per_record: RATE,
        reserved: String::new(),
    };
    let spec = HeaderSpec::generated(records, 1.0, (0..CHANNELS).map(sig).collect());
    let header = Header::from_spec(&spec).unwrap();
    let mut w = EdfWriter::create(path, &header).unwrap();
    let mut rng = Rng::new(1);
    let mut state = [0.0f64; CHANNELS];
    let mut x = vec![0.0f32; RATE];
    let mut rec = vec![0u8; CHANNELS * RATE * 2];
    for r in 0..records as usize {
        for (c, st) in state.iter_mut().enumerate() {
            for (i, v) in x.iter_mut().enumerate() {
                let t = (r * RATE + i) as f64 / RATE as f64;
                *st = 0.97 * *st + 4.0 * rng.normal();
                *v = (*st + 25.0 * (2.0 * std::f64::consts::PI * (9.0 + c as f64 * 0.02) * t).sin())
                    as f32;
            }
            encode_physical(
                &spec.signals[c],
                Format::Edf,
                &x,
                &mut rec[c * RATE * 2..][..RATE * 2],
            )
            .unwrap();
        }
        w.write_record(&rec).unwrap();
    }
    w.finish().unwrap();
}

/// Runs the command and returns (wall seconds, CPU seconds, peak RSS in MB) of the child.
// wait4 reaps the child itself (it also returns the child's own rusage, which Child::wait
// cannot), so clippy's zombie check does not see the wait.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (f64, f64, f64) {
    let t0 = Instant::now();
    let child = cmd.spawn().expect("mfr-eeg runs");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `usage` is a valid out-pointer.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "denoise failed"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (
        t0.elapsed().as_secs_f64(),
        secs(usage.ru_utime) + secs(usage.ru_stime),
        usage.ru_maxrss as f64 / 1024.0,
    )
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut hop = "32".to_string();
    let mut hours = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--hop" {
            hop = it.next().expect("--hop N").clone();
        } else if let Ok(h) = a.parse::<f64>() {
            hours.push(h);
        }
    }
    if hours.is_empty() {
        hours = vec![1.0, 4.0];
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "hours  path     block        wall s  x real time   CPU s  peak RSS MB  (64 ch, 256 Hz, hop {hop})"
    );
    for h in hours {
        let input = dir.path().join(format!("{h}h.edf"));
        generate(&input, h);
        for (name, block) in [("stream", None), ("whole", Some("inf"))] {
            let out = dir.path().join("out.edf");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mfr-eeg"));
            cmd.arg("denoise")
                .arg(&input)
                .arg(&out)
                .args(["--hop", &hop]);
            cmd.stdout(std::process::Stdio::null());
            if let Some(b) = block {
                cmd.args(["--block-seconds", b]);
            }
            let (wall, cpu, rss) = measure(&mut cmd);
            println!(
                "{h:<6} {name:<8} {:<12} {wall:>7.1}  {:>11.0}  {cpu:>6.1}  {rss:>11.0}",
                block.unwrap_or("auto (300 s)"),
                h * 3600.0 / wall
            );
            std::fs::remove_file(&out).unwrap();
        }
        std::fs::remove_file(&input).unwrap();
    }
}
