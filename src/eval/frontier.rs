//! Speed of the batched offline path ([`crate::batch`]) and the speed/quality frontier over
//! hop and model size, for the bench report: achieved GFLOP/s next to a plain sgemm of the
//! encoder's shape measured in the same run ([`measure_gflops`]), validation quality against
//! cost per (model, hop) ([`frontier`]), and one hour of generated 64-channel EEG timed
//! against a zero-phase band-pass of the same data ([`write_generated_edf`], [`hour_timing`]).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::EvalError;
use super::data::Window;
use super::harness::Method;
use crate::batch::{BatchModel, BatchScratch};
use crate::core::OlaShape;
use crate::model::Model;

/// A model run through the batched path at a chosen hop (quality equals the core's to f32
/// rounding, see [`crate::batch`]).
pub struct BatchedSae {
    name: String,
    model: BatchModel,
    hop: usize,
    scratch: BatchScratch,
}

impl BatchedSae {
    /// Wraps `model` at `hop`, with the model's OLA taper.
    pub fn new(name: impl Into<String>, model: &Model, hop: usize) -> Self {
        Self {
            name: name.into(),
            model: BatchModel::new(&model.view().sae()),
            hop,
            scratch: BatchScratch::default(),
        }
    }

    /// The same, recombining windows with the OLA taper `shape`.
    #[must_use]
    pub fn with_ola_shape(mut self, shape: OlaShape) -> Self {
        self.model = self.model.with_ola_shape(shape);
        self
    }
}

impl Method for BatchedSae {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn denoise(&mut self, x: &[f32]) -> Result<Vec<f32>, EvalError> {
        let mut out = vec![0.0; x.len()];
        self.model
            .denoise_into(self.hop, x, &mut out, &mut self.scratch)
            .map_err(|e| EvalError::Invalid(format!("SAE {}: {e}", self.name)))?;
        Ok(out)
    }
}

/// Mean (RRMSE_t, CC) of `model` at `hop` with OLA taper `shape` (`None`: the model's) over `windows`, on
/// `threads` threads; each thread takes a contiguous share and the sums are added in window
/// order (deterministic).
pub fn batched_quality(
    model: &Model,
    hop: usize,
    shape: Option<OlaShape>,
    windows: &[Window],
    threads: usize,
) -> Result<(f64, f64), EvalError> {
    let per = windows.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<(f64, f64)>, EvalError>> = std::thread::scope(|s| {
        let handles: Vec<_> = windows
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    let mut m = BatchedSae::new("q", model, hop);
                    if let Some(shape) = shape {
                        m = m.with_ola_shape(shape);
                    }
                    chunk
                        .iter()
                        .map(|w| {
                            let y = m.denoise(&w.noisy)?;
                            Ok((
                                super::metrics::rrmse_t(&y, &w.clean)?,
                                super::metrics::cc(&y, &w.clean)?,
                            ))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(EvalError::Invalid("quality worker panicked".into())))
            })
            .collect()
    });
    let (mut r, mut c) = (0.0, 0.0);
    for p in parts {
        for (a, b) in p? {
            r += a;
            c += b;
        }
    }
    let n = windows.len().max(1) as f64;
    Ok((r / n, c / n))
}

/// Achieved GFLOP/s of the batched path next to the plain sgemm of its encoder's shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GflopsRow {
    /// Model name.
    pub model: String,
    /// Hop used.
    pub hop: usize,
    /// Windows per encoder product.
    pub batch: usize,
    /// Plain sgemm (`[batch, d_in] x [d_in, d_sae]`, matrixmultiply, called from one thread;
    /// per second of the whole process's CPU time, which counts its pool's threads if any).
    pub sgemm_gflops: f64,
    /// The batched path, counting [`BatchModel::flops_per_window`] per window.
    pub batched_gflops: f64,
    /// The streaming core's offline path, same count.
    pub core_gflops: f64,
}

impl GflopsRow {
    /// Batched GFLOP/s as a fraction of the sgemm's.
    pub fn ratio(&self) -> f64 {
        self.batched_gflops / self.sgemm_gflops
    }
}

fn test_signal(n: usize, fs: f64) -> Vec<f32> {
    super::data::model_segment(77, 0, n, fs)
        .iter()
        .map(|v| v / 20.0)
        .collect()
}

/// CPU time this thread has run, in seconds (Linux `/proc/thread-self/schedstat`), or `None`
/// where that is not available. On a shared machine wall time also counts the time other
/// processes held the core; CPU time does not.
pub fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}

/// CPU time of the whole process (all threads), in seconds (Linux `/proc/self/schedstat`
/// sums only the main thread, so `/proc/self/stat`'s utime + stime in clock ticks is used;
/// 10 ms resolution), or `None`.
pub fn process_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Best of `reps` timings of `f`, in seconds: CPU time by `clock` where the system reports it
/// (so other processes on a shared machine do not count), else wall time.
fn best_of(reps: usize, clock: fn() -> Option<f64>, mut f: impl FnMut()) -> f64 {
    (0..reps.max(1))
        .map(|_| {
            let (t, c) = (Instant::now(), clock());
            f();
            match (c, clock()) {
                (Some(a), Some(b)) => b - a,
                _ => t.elapsed().as_secs_f64(),
            }
        })
        .fold(f64::INFINITY, f64::min)
        .max(1e-9)
}

/// CPU seconds per call of `f` by `clock`: `f` is repeated (x4 each time) until one
/// measurement takes at least 0.3 s, since the CPU clock advances in scheduler ticks; best of 2.
fn per_call(clock: fn() -> Option<f64>, mut f: impl FnMut()) -> f64 {
    let mut runs = 1usize;
    loop {
        let t = best_of(2, clock, || {
            for _ in 0..runs {
                f();
            }
        });
        if t >= 0.3 || runs >= 1 << 20 {
            return t / runs as f64;
        }
        runs *= 4;
    }
}

/// Measures, on this thread and interleaved so they see the same machine load: the plain
/// sgemm of the encoder's shape, the batched path and the core's offline path on `seconds` of
/// a test-like signal at the model's rate. Each is the best of `reps` runs of CPU time (this
/// thread's; the whole process's for the sgemm, which may use a thread pool); give a few
/// minutes of signal so each run lasts well over a scheduler tick.
pub fn measure_gflops(
    name: &str,
    model: &Model,
    hop: usize,
    seconds: f64,
    batch: usize,
    reps: usize,
) -> Result<GflopsRow, EvalError> {
    let sae = model.view().sae();
    let bm = BatchModel::new(&sae);
    let (d_in, d_sae) = (sae.d_in(), sae.d_sae());
    let fs = f64::from(model.meta().sample_rate_hz);
    let x = test_signal((seconds * fs).round() as usize, fs);
    let windows = (x.len() + 2 * crate::core::offline_pad(d_in)) / hop;
    let flops = windows as f64 * bm.flops_per_window() as f64;
    let mut out = vec![0.0; x.len()];
    let mut s = BatchScratch::with_batch(batch);
    let mut work = vec![0.0; crate::core::offline_work_len(&sae)];
    let mut topk = vec![0; sae.k()];
    let mut r = crate::rng::Rng::new(9);
    let a: Vec<f32> = (0..batch * d_in).map(|_| r.normal() as f32).collect();
    let w: Vec<f32> = (0..d_in * d_sae).map(|_| r.normal() as f32).collect();
    let mut c = vec![0.0f32; batch * d_sae];
    // As many sgemm calls as the signal has batches: about as long as its encodes. Keep the
    // signal long (minutes): the CPU clock is read from /proc at scheduler-tick resolution.
    let calls = windows.div_ceil(batch);
    let err = |e: crate::core::CoreError| EvalError::Invalid(format!("{name}: {e}"));
    let (mut t_gemm, mut t_batch, mut t_core) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..reps.max(1) {
        // The whole process's CPU time: with its `threading` feature (which burn-ndarray turns
        // on in `--features train` builds) matrixmultiply runs large products on a thread
        // pool, whose time this thread's clock would miss.
        t_gemm = t_gemm.min(per_call(process_cpu_s, || {
            for _ in 0..calls {
                // SAFETY: row-major batch x d_in, d_in x d_sae, batch x d_sae buffers.
                unsafe {
                    matrixmultiply::sgemm(
                        batch,
                        d_in,
                        d_sae,
                        1.0,
                        a.as_ptr(),
                        d_in as isize,
                        1,
                        w.as_ptr(),
                        d_sae as isize,
                        1,
                        0.0,
                        c.as_mut_ptr(),
                        d_sae as isize,
                        1,
                    );
                }
                std::hint::black_box(&c);
            }
        }));
        let mut res = Ok(());
        t_batch = t_batch.min(per_call(thread_cpu_s, || {
            res = bm.denoise_into(hop, &x, &mut out, &mut s).map(drop);
        }));
        res.map_err(err)?;
        let mut res = Ok(());
        t_core = t_core.min(per_call(thread_cpu_s, || {
            res = crate::core::denoise_offline_into(&sae, hop, &x, &mut out, &mut work, &mut topk)
                .map(drop);
        }));
        res.map_err(err)?;
    }
    let gemm_flops = 2.0 * (calls * batch * d_in * d_sae) as f64;
    Ok(GflopsRow {
        model: name.into(),
        hop,
        batch,
        sgemm_gflops: gemm_flops / t_gemm / 1e9,
        batched_gflops: flops / t_batch / 1e9,
        core_gflops: flops / t_core / 1e9,
    })
}

/// One point of the speed/quality frontier.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrontierRow {
    /// Model name.
    pub model: String,
    /// `[d_in, d_sae, k]`.
    pub shape: [usize; 3],
    /// Hop used.
    pub hop: usize,
    /// Mean RRMSE_t over the validation windows (EOG + EMG).
    pub val_rrmse_t: f64,
    /// Mean CC over the same windows.
    pub val_cc: f64,
    /// Model FLOPs per second of one channel at the model's rate.
    pub mflop_per_signal_s: f64,
    /// Signal seconds per CPU second, one channel on one thread, batched path.
    pub x_realtime_1thread: f64,
}

/// Validation quality and single-thread speed of each model at each hop (hops above a
/// model's window are skipped), windows recombined with the OLA taper `shape` (`None`: each
/// model's own). Speed:
/// `speed_seconds` of a test-like signal, best of 2.
pub fn frontier(
    models: &[(String, Model)],
    hops: &[usize],
    shape: Option<OlaShape>,
    val: &[Window],
    speed_seconds: f64,
    threads: usize,
) -> Result<Vec<FrontierRow>, EvalError> {
    let mut rows = Vec::new();
    for (name, m) in models {
        let meta = m.meta();
        let fs = f64::from(meta.sample_rate_hz);
        let bm = BatchModel::new(&m.view().sae());
        let x = test_signal((speed_seconds * fs).round() as usize, fs);
        let mut out = vec![0.0; x.len()];
        let mut s = BatchScratch::default();
        for &hop in hops.iter().filter(|&&h| h >= 1 && h <= meta.d_in) {
            let (r, c) = batched_quality(m, hop, shape, val, threads)?;
            let mut res = Ok(());
            let t = per_call(thread_cpu_s, || {
                res = bm.denoise_into(hop, &x, &mut out, &mut s).map(drop);
            });
            res.map_err(|e| EvalError::Invalid(format!("{name}: {e}")))?;
            rows.push(FrontierRow {
                model: name.clone(),
                shape: [meta.d_in, meta.d_sae, meta.k],
                hop,
                val_rrmse_t: r,
                val_cc: c,
                mflop_per_signal_s: bm.flops_per_window() as f64 * fs / hop as f64 / 1e6,
                x_realtime_1thread: speed_seconds / t,
            });
        }
    }
    Ok(rows)
}

/// Pareto-optimal rows: no other row costs at most as many FLOPs per signal second and is at
/// most as bad on RRMSE_t, one of them strictly. FLOPs rather than measured speed, because
/// they are exact while timings on a shared machine are not.
pub fn pareto(rows: &[FrontierRow]) -> Vec<bool> {
    rows.iter()
        .map(|a| {
            !rows.iter().any(|b| {
                b.mflop_per_signal_s <= a.mflop_per_signal_s
                    && b.val_rrmse_t <= a.val_rrmse_t
                    && (b.mflop_per_signal_s < a.mflop_per_signal_s
                        || b.val_rrmse_t < a.val_rrmse_t)
            })
        })
        .collect()
}

/// Writes a generated recording with the project's EDF writer: `channels` EEG channels of
/// `seconds` at `fs` (1 s records), each a physiological-model segment (seeded by channel),
/// in uV with a +-3276.8 uV range, 16-bit EDF.
pub fn write_generated_edf(
    path: &Path,
    channels: usize,
    seconds: usize,
    fs: usize,
    seed: u64,
) -> Result<(), EvalError> {
    use crate::io::edf::{EdfWriter, Format, Header, HeaderSpec, SignalHeader};
    let fail = |e: crate::io::edf::EdfError| EvalError::Format {
        path: path.to_path_buf(),
        problem: e.to_string(),
    };
    let signals = (0..channels)
        .map(|c| SignalHeader {
            label: format!("EEG{c:03}"),
            transducer: "generated".into(),
            physical_dimension: "uV".into(),
            physical_min: -3276.8,
            physical_max: 3276.7,
            digital_min: -32768,
            digital_max: 32767,
            prefiltering: String::new(),
            samples_per_record: fs,
            reserved: String::new(),
        })
        .collect();
    let spec = HeaderSpec {
        format: Format::Edf,
        patient: "X X X generated".into(),
        recording: "Startdate 01-JAN-2026 X mfr-eeg generated X".into(),
        start_date: "01.01.26".into(),
        start_time: "00.00.00".into(),
        reserved: String::new(),
        num_records: seconds as i64,
        record_duration: 1.0,
        signals,
    };
    let header = Header::from_spec(&spec).map_err(fail)?;
    let data: Vec<Vec<i16>> = (0..channels)
        .map(|c| {
            super::data::model_segment(seed, c as u64, seconds * fs, fs as f64)
                .iter()
                .map(|&v| (f64::from(v) * 10.0).round().clamp(-32768.0, 32767.0) as i16)
                .collect()
        })
        .collect();
    let mut w = EdfWriter::create(path, &header).map_err(fail)?;
    let mut rec = Vec::with_capacity(channels * fs * 2);
    for r in 0..seconds {
        rec.clear();
        for ch in &data {
            for &d in &ch[r * fs..(r + 1) * fs] {
                rec.extend_from_slice(&d.to_le_bytes());
            }
        }
        w.write_record(&rec).map_err(fail)?;
    }
    w.finish().map_err(fail)?;
    Ok(())
}

/// Wall times for one recording: a zero-phase band-pass and the batched denoiser at each hop.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HourTiming {
    /// File measured.
    pub file: String,
    /// Channels and seconds per channel.
    pub channels: usize,
    /// Seconds of signal per channel.
    pub seconds: f64,
    /// Threads used for every row.
    pub threads: usize,
    /// Runs per row; each row reports the run with the least CPU time (0 in reports written
    /// before this field: one run).
    #[serde(default)]
    pub reps: usize,
    /// Reading the file (physical values of all channels).
    pub read_s: f64,
    /// Zero-phase Butterworth band-pass (order 4, 1-40 Hz, SciPy `sosfiltfilt` semantics):
    /// (wall s, CPU s of all threads).
    pub bandpass_s: (f64, f64),
    /// (model, hop, wall s, CPU s of all threads) of the batched denoiser over all channels.
    pub denoise: Vec<(String, usize, f64, f64)>,
}

/// Wall and process CPU seconds of `f` (CPU NaN where unavailable).
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (t, c) = (Instant::now(), process_cpu_s());
    f();
    let cpu = match (c, process_cpu_s()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    (t.elapsed().as_secs_f64(), cpu)
}

/// Runs `f(channel)` over all channels on `threads` threads (each takes the next channel).
fn par_channels(data: &mut [Vec<f32>], threads: usize, f: impl Fn(&mut Vec<f32>) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<&mut Vec<f32>>> =
        data.iter_mut().map(std::sync::Mutex::new).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(slot) = slots.get(i) else { break };
                    let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
                    f(&mut g);
                }
            });
        }
    });
}

/// The (wall, CPU) run of `reps` (at least 1) with the least CPU time; on a shared machine
/// the others measured other processes as well.
fn least_cpu_of(reps: usize, mut run: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    (0..reps.max(1))
        .map(|_| run())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((f64::NAN, f64::NAN))
}

/// Times, on `threads` threads and best of `reps` runs each: reading every channel of `path`,
/// a zero-phase band-pass of all of them, and the batched denoiser of `models` at their hops
/// (each run on a fresh copy).
pub fn hour_timing(
    path: &Path,
    models: &[(String, Model, usize)],
    threads: usize,
    reps: usize,
) -> Result<HourTiming, EvalError> {
    use crate::io::filter::{Band, Filter};
    let t = Instant::now();
    let rec = super::data::Recording::from_edf(path)?;
    let read_s = t.elapsed().as_secs_f64();
    let fs = rec.sample_rate_hz;
    let bp = Filter::butterworth(Band::BandPass { lo: 1.0, hi: 40.0 }, 4, fs)
        .map_err(|e| EvalError::Invalid(e.to_string()))?;
    let bandpass_s = least_cpu_of(reps, || {
        let mut data = rec.channels.clone();
        timed(|| par_channels(&mut data, threads, |x| bp.filtfilt(x)))
    });
    let mut denoise = Vec::new();
    for (name, m, hop) in models {
        let bm = BatchModel::new(&m.view().sae());
        let failed = std::sync::Mutex::new(None);
        let (wall, cpu) = least_cpu_of(reps, || {
            let mut data = rec.channels.clone();
            timed(|| {
                par_channels(&mut data, threads, |x| {
                    let mut out = vec![0.0; x.len()];
                    let mut s = BatchScratch::default();
                    match bm.denoise_into(*hop, x, &mut out, &mut s) {
                        Ok(_) => x.copy_from_slice(&out),
                        Err(e) => *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
                    }
                })
            })
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(EvalError::Invalid(format!("{name}: {e}")));
        }
        denoise.push((name.clone(), *hop, wall, cpu));
    }
    Ok(HourTiming {
        file: path.display().to_string(),
        channels: rec.channels.len(),
        seconds: rec.channels.first().map_or(0, Vec::len) as f64 / fs,
        threads,
        reps: reps.max(1),
        read_s,
        bandpass_s,
        denoise,
    })
}

/// The report sections for these measurements (empty parts are left out).
pub fn to_markdown(
    gflops: &[GflopsRow],
    rows: &[FrontierRow],
    hour: Option<&HourTiming>,
) -> String {
    let mut s = String::new();
    if !gflops.is_empty() {
        let _ = writeln!(
            s,
            "## Batched offline path: GFLOP/s next to a plain sgemm (same run, one thread)\n"
        );
        let _ = writeln!(
            s,
            "FLOPs counted: dense encode 2·d_in·d_sae + sparse decode 2·k·d_in + linear path 2·taps·d_in per window. sgemm: matrixmultiply, [batch, d_in] x [d_in, d_sae], timed by the process's CPU time (it may run a thread pool); the batched path and the core by this thread's CPU time. Best of the repetitions, the three measured interleaved.\n"
        );
        let _ = writeln!(
            s,
            "| model | hop | batch | sgemm GFLOP/s | batched GFLOP/s | batched / sgemm | core GFLOP/s | batched / core |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for g in gflops {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.0}% | {:.1} | {:.1}x |",
                g.model,
                g.hop,
                g.batch,
                g.sgemm_gflops,
                g.batched_gflops,
                100.0 * g.ratio(),
                g.core_gflops,
                g.batched_gflops / g.core_gflops
            );
        }
        s.push('\n');
    }
    if !rows.is_empty() {
        let _ = writeln!(
            s,
            "## Speed/quality frontier (validation windows, EOG + EMG)\n"
        );
        let _ = writeln!(
            s,
            "| model | d_in/d_sae/k | hop | val RRMSE_t | val CC | MFLOP per signal s | x real time (1 thread, CPU time) | 1 h x 64 ch on 2 cores (projected) | Pareto (FLOPs vs RRMSE_t) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        let p = pareto(rows);
        for (r, p) in rows.iter().zip(p) {
            let _ = writeln!(
                s,
                "| {} | {}/{}/{} | {} | {:.4} | {:.4} | {:.1} | {:.0} | {:.1} s | {} |",
                r.model,
                r.shape[0],
                r.shape[1],
                r.shape[2],
                r.hop,
                r.val_rrmse_t,
                r.val_cc,
                r.mflop_per_signal_s,
                r.x_realtime_1thread,
                3600.0 * 64.0 / (2.0 * r.x_realtime_1thread),
                if p { "yes" } else { "" }
            );
        }
        s.push('\n');
    }
    if let Some(h) = hour {
        let _ = writeln!(
            s,
            "## {} channels x {:.0} s ({}), {} threads\n",
            h.channels, h.seconds, h.file, h.threads
        );
        let _ = writeln!(
            s,
            "Each row: the least CPU time of {} run(s). Wall time includes waiting for cores other processes hold; CPU time (all threads) / {} is the wall time on {} otherwise idle cores.\n",
            h.reps.max(1),
            h.threads,
            h.threads
        );
        let _ = writeln!(
            s,
            "| step | wall s | CPU s | CPU s / {} | x real time (CPU / {}) | / band-pass (CPU) |",
            h.threads, h.threads
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        let th = h.threads.max(1) as f64;
        let (bw, bc) = h.bandpass_s;
        let _ = writeln!(s, "| read (all channels) | {:.2} | | | | |", h.read_s);
        let _ = writeln!(
            s,
            "| zero-phase band-pass 1-40 Hz, order 4 | {bw:.2} | {bc:.2} | {:.2} | {:.0} | 1.00 |",
            bc / th,
            h.seconds * th / bc
        );
        for (name, hop, w, c) in &h.denoise {
            let _ = writeln!(
                s,
                "| {name} batched, hop {hop} | {w:.2} | {c:.2} | {:.2} | {:.0} | {:.2} |",
                c / th,
                h.seconds * th / c,
                c / bc
            );
        }
        s.push('\n');
    }
    s
}
