//! Denoising many files: inputs from files and directories (recursive, filtered by a glob),
//! outputs mirrored under one directory, files in parallel with the threads shared out so
//! that files x channels never exceeds the thread budget.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use globset::{GlobBuilder, GlobMatcher};

use super::{DenoiseError, DenoiseOptions, DenoiseSummary, Progress, denoise_file_cancellable};
use crate::model::Model;

/// The default `--glob`: EDF and BDF files, any letter case.
pub const DEFAULT_GLOB: &str = "*.{edf,bdf}";

/// One input and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The input file.
    pub input: PathBuf,
    /// The output file (same relative path under the output directory).
    pub output: PathBuf,
}

/// What became of one file.
#[derive(Debug)]
pub enum Outcome {
    /// Denoised.
    Done(DenoiseSummary),
    /// The output existed and overwriting was not asked for.
    Skipped,
    /// The file failed; the others went on.
    Failed(DenoiseError),
}

/// Problems with the list of inputs (before any file is processed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManyError {
    /// The glob pattern does not parse.
    #[error("--glob {pattern:?}: {problem}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        problem: String,
    },
    /// An input path does not exist or cannot be listed.
    #[error("{}: {problem}", .path.display())]
    Input {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// Two inputs would write the same output.
    #[error("{} and {} would both be written to {}", .a.display(), .b.display(), .output.display())]
    Collision {
        /// The first input.
        a: PathBuf,
        /// The second input.
        b: PathBuf,
        /// Their common output.
        output: PathBuf,
    },
    /// No input matched.
    #[error("no input file matches {pattern:?} in {}", .paths.join(", "))]
    NoInputs {
        /// The pattern.
        pattern: String,
        /// The paths searched.
        paths: Vec<String>,
    },
}

/// Lists the jobs for `inputs` (files are taken as they are; directories are walked
/// recursively, in name order, for files whose name matches `glob`, case-insensitively),
/// with outputs under `out_dir`: a file argument's output is `out_dir/NAME`, a file found
/// under a directory argument keeps its path relative to that directory. Files under
/// `out_dir` itself are never inputs, so a second run does not pick up the first one's output.
pub fn plan_jobs(inputs: &[PathBuf], out_dir: &Path, glob: &str) -> Result<Vec<Job>, ManyError> {
    let matcher: GlobMatcher = GlobBuilder::new(glob)
        .case_insensitive(true)
        .literal_separator(true)
        .build()
        .map_err(|e| ManyError::Glob {
            pattern: glob.to_string(),
            problem: e.kind().to_string(),
        })?
        .compile_matcher();
    let out_canon = out_dir.canonicalize().ok();
    let mut jobs: Vec<Job> = Vec::new();
    for path in inputs {
        let meta = std::fs::metadata(path).map_err(|e| ManyError::Input {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        if meta.is_dir() {
            let walker = walkdir::WalkDir::new(path)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    !(e.file_type().is_dir()
                        && out_canon.is_some()
                        && e.path().canonicalize().ok() == out_canon)
                });
            for entry in walker {
                let entry = entry.map_err(|e| ManyError::Input {
                    path: e.path().map_or_else(|| path.clone(), Path::to_path_buf),
                    problem: e.to_string(),
                })?;
                if !entry.file_type().is_file() || !matcher.is_match(entry.file_name()) {
                    continue;
                }
                let rel = entry.path().strip_prefix(path).unwrap_or(entry.path());
                jobs.push(Job {
                    input: entry.path().to_path_buf(),
                    output: out_dir.join(rel),
                });
            }
        } else {
            let name = path.file_name().ok_or_else(|| ManyError::Input {
                path: path.clone(),
                problem: "has no file name".into(),
            })?;
            jobs.push(Job {
                input: path.clone(),
                output: out_dir.join(name),
            });
        }
    }
    for (i, a) in jobs.iter().enumerate() {
        if let Some(b) = jobs[..i].iter().find(|b| b.output == a.output) {
            return Err(ManyError::Collision {
                a: b.input.clone(),
                b: a.input.clone(),
                output: a.output.clone(),
            });
        }
    }
    if jobs.is_empty() {
        return Err(ManyError::NoInputs {
            pattern: glob.to_string(),
            paths: inputs.iter().map(|p| p.display().to_string()).collect(),
        });
    }
    Ok(jobs)
}

/// Denoises every job, `opts.threads` threads in all (0: one per core): `min(threads, jobs)`
/// files at once, each with an equal share of the threads for its channels. Existing outputs
/// are skipped unless `overwrite`; output directories are created. `done` is called once per
/// file as it finishes (from worker threads). Returns the outcomes in job order. A set
/// `cancel` makes running files fail with [`DenoiseError::Interrupted`] and skips the rest.
pub fn denoise_many(
    jobs: &[Job],
    model: &Model,
    opts: &DenoiseOptions,
    overwrite: bool,
    cancel: &AtomicBool,
    done: &(dyn Fn(&Job, &Outcome) + Sync),
) -> Vec<Outcome> {
    let total = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        opts.threads
    };
    let files_at_once = total.clamp(1, jobs.len().max(1));
    let per_file = DenoiseOptions {
        threads: (total / files_at_once).max(1),
        ..opts.clone()
    };
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let quiet = |_: Progress| {};
    std::thread::scope(|s| {
        for _ in 0..files_at_once {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    let outcome = if cancel.load(Ordering::Relaxed) {
                        Outcome::Failed(DenoiseError::Interrupted {
                            file: job.input.clone(),
                        })
                    } else if job.output.exists() && !overwrite {
                        Outcome::Skipped
                    } else {
                        let made = match job.output.parent() {
                            Some(d) if !d.as_os_str().is_empty() => std::fs::create_dir_all(d)
                                .map_err(|e| {
                                    DenoiseError::Edf(crate::io::edf::EdfError::io(
                                        d,
                                        "create output directory",
                                        e,
                                    ))
                                }),
                            _ => Ok(()),
                        };
                        match made.and_then(|()| {
                            denoise_file_cancellable(
                                &job.input,
                                &job.output,
                                model,
                                &per_file,
                                &quiet,
                                cancel,
                            )
                        }) {
                            Ok(s) => Outcome::Done(s),
                            Err(e) => Outcome::Failed(e),
                        }
                    };
                    done(job, &outcome);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every job has an outcome")
        })
        .collect()
}
