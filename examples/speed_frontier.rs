//! Speed of the batched offline path and the speed/quality frontier, written as a markdown
//! report: GFLOP/s next to a plain sgemm (same run), validation quality and speed for each
//! model at each hop, and (with `--hour FILE`) one hour of 64-channel EEG timed against a
//! zero-phase band-pass. The file is generated with the project's EDF writer if missing.
//!
//! ```sh
//! cargo run --release --example speed_frontier -- --out frontier-report \
//!     --models models/general-256hz.safetensors --hops 8,16,32,64 --hour /tmp/hour64.edf
//! ```
//!
//! `--hour-hops 8,32` times the first model at hops 8 and 32; `--hour-hops 8,small:32` adds
//! the model whose file stem is `small` at hop 32. `--real DIR` scores validation windows of
//! the corpus that adds the real-data set (`scripts/real_data.py`), as `train-denoiser --real`
//! selects on them. `--hour-reps N` (default 3): each hour row reports the least CPU time of N
//! runs. `--ola hann|sine` scores the frontier with that OLA taper instead of each model's
//! own (`mfr_eeg::core::OlaShape`); speed does not depend on it. `--split test` scores the test
//! windows instead of the validation windows (a check of a choice made on validation).

use std::path::PathBuf;

use mfr_eeg::core::OlaShape;
use mfr_eeg::eval::corpus::{Corpus, CorpusConfig, Split};
use mfr_eeg::eval::data::{ArtifactKind, Recording};
use mfr_eeg::eval::frontier::{
    FrontierRow, frontier, hour_timing, measure_gflops, to_markdown, write_generated_edf,
};
use mfr_eeg::eval::real::RealSet;
use mfr_eeg::model::Model;

fn list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',').filter_map(|v| v.trim().parse().ok()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = PathBuf::from("frontier-report");
    let mut models = vec![PathBuf::from("models/general-256hz.safetensors")];
    let mut hops: Vec<usize> = vec![8, 16, 32, 64];
    let mut hour: Option<PathBuf> = None;
    // Hour timings: `H` (the first model at hop H) or `STEM:H` (the model of that file stem).
    let mut hour_hops: Vec<String> = vec!["8".into(), "32".into()];
    let mut val_segments = usize::MAX;
    let mut threads = 2usize;
    let mut hour_reps = 3usize;
    let mut real: Option<PathBuf> = None;
    let mut ola = None;
    let mut split = Split::Val;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = PathBuf::from(v()?),
            "--models" => models = v()?.split(',').map(PathBuf::from).collect(),
            "--hops" => hops = list(&v()?),
            "--hour" => hour = Some(PathBuf::from(v()?)),
            "--hour-hops" => hour_hops = v()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--val-segments" => val_segments = v()?.parse()?,
            "--threads" => threads = v()?.parse()?,
            "--hour-reps" => hour_reps = v()?.parse()?,
            "--real" => real = Some(PathBuf::from(v()?)),
            "--split" => {
                split = match v()?.as_str() {
                    "val" => Split::Val,
                    "test" => Split::Test,
                    o => return Err(format!("--split {o}: val or test").into()),
                }
            }
            "--ola" => {
                let o = v()?;
                ola = Some(OlaShape::from_name(&o).ok_or(format!("--ola {o}: hann or sine"))?);
            }
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    std::fs::create_dir_all(&out)?;
    let loaded: Vec<(String, Model)> = models
        .iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into());
            Model::load(p).map(|m| (name, m))
        })
        .collect::<Result<_, _>>()?;
    let mut report = format!(
        "# Batched path: speed and frontier\n\nCommand: `{}`\n\n",
        std::env::args().collect::<Vec<_>>().join(" ")
    );

    let mut gflops = Vec::new();
    if let Some((name, m)) = loaded.first() {
        for batch in [64, 128, 256] {
            let g = measure_gflops(name, m, m.meta().hop, 300.0, batch, 3)?;
            eprintln!("{g:?} ratio {:.2}", g.ratio());
            gflops.push(g);
        }
    }

    // Validation windows exactly as the bench's band-pass tuning and train-denoiser's hop
    // choice use them: EOG + EMG of the validation split of the default corpus (or, with
    // `--real`, of the corpus train-denoiser builds with that set).
    let rec = Recording::from_edf(std::path::Path::new(
        "data/eegmmidb_S001R02_64ch_160Hz_61s.edf",
    ))?;
    let real = real.as_deref().map(RealSet::load).transpose()?;
    let mut rows: Vec<FrontierRow> = Vec::new();
    let mut by_rate: Vec<(f64, Vec<(String, Model)>)> = Vec::new();
    for (n, m) in &loaded {
        let fs = f64::from(m.meta().sample_rate_hz);
        match by_rate.iter_mut().find(|(r, _)| (r - fs).abs() < 1e-6) {
            Some((_, v)) => v.push((n.clone(), m.clone())),
            None => by_rate.push((fs, vec![(n.clone(), m.clone())])),
        }
    }
    for (fs, ms) in &by_rate {
        let mut cfg = CorpusConfig::at_rate(*fs);
        cfg.n_model_segments = 600;
        let corpus = match &real {
            Some(set) => set.corpus(cfg, std::slice::from_ref(&rec))?,
            None => Corpus::build(cfg, std::slice::from_ref(&rec))?,
        };
        let mut val = Vec::new();
        for kind in [ArtifactKind::Eog, ArtifactKind::Emg] {
            val.extend(corpus.level_windows(split, kind, corpus.config.seg_len, val_segments)?);
        }
        eprintln!("{} validation windows at {fs} Hz", val.len());
        let r = frontier(ms, &hops, ola, &val, 120.0, threads)?;
        for row in &r {
            eprintln!("{row:?}");
        }
        rows.extend(r);
    }

    let timing = match &hour {
        Some(p) => {
            if !p.exists() {
                eprintln!(
                    "writing {} (64 channels x 3600 s at 256 Hz) ...",
                    p.display()
                );
                write_generated_edf(p, 64, 3600, 256, 2026)?;
            }
            let mut with: Vec<(String, Model, usize)> = Vec::new();
            for spec in &hour_hops {
                let (stem, hop) = match spec.rsplit_once(':') {
                    Some((s, h)) => (Some(s), h),
                    None => (None, spec.as_str()),
                };
                let hop: usize = hop
                    .parse()
                    .map_err(|_| format!("--hour-hops {spec}: bad hop"))?;
                let (name, m) = match stem {
                    None => loaded.first().ok_or("no model")?,
                    Some(s) => loaded
                        .iter()
                        .find(|(n, _)| n == s)
                        .ok_or(format!("--hour-hops {spec}: no model {s} in --models"))?,
                };
                with.push((name.clone(), m.clone(), hop));
            }
            let t = hour_timing(p, &with, threads, hour_reps)?;
            eprintln!("{t:?}");
            Some(t)
        }
        None => None,
    };
    report.push_str(&to_markdown(&gflops, &rows, timing.as_ref()));
    std::fs::write(out.join("report.md"), &report)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&(gflops, rows, timing))?,
    )?;
    println!("wrote {}", out.join("report.md").display());
    Ok(())
}
