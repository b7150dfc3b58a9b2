//! Atomic file writes: every file the crate writes (models, EDF/BDF, WAV, checkpoints, `.npy`,
//! reports, figures) goes through [`AtomicFile`] or [`write_atomic`].
//!
//! The content goes to a hidden temporary file in the target's own directory (so the rename
//! cannot cross file systems), which is flushed and fsynced, renamed over the target, and then
//! the directory is fsynced so the rename itself survives a power cut. Until the rename the
//! target is untouched; on any error, or when an [`AtomicFile`] is dropped without
//! [`AtomicFile::commit`], the temporary file is removed. A killed process may leave a hidden
//! `.NAME.PID.N.tmp` beside the target, never a torn NAME.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an atomic write failed. The target path is not part of the message: callers put it
/// into their own error (which names the file the user asked for).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AtomicError {
    /// The target's directory does not exist.
    #[error("directory {} does not exist", .dir.display())]
    DirMissing {
        /// The target.
        target: PathBuf,
        /// Its missing directory.
        dir: PathBuf,
    },
    /// The target is a directory (or a path without a file name, such as `/` or `..`).
    #[error("is a directory, not a file")]
    IsDirectory {
        /// The target.
        target: PathBuf,
    },
    /// An operating-system error at one step.
    #[error("cannot {step} {}: {source}", .path.display())]
    Io {
        /// The target.
        target: PathBuf,
        /// The path the step worked on (the temporary file, the target or the directory).
        path: PathBuf,
        /// What was being done: "create temporary file", "write", "sync", "rename", ...
        step: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl AtomicError {
    /// The file that was to be written.
    pub fn target(&self) -> &Path {
        match self {
            Self::DirMissing { target, .. }
            | Self::IsDirectory { target }
            | Self::Io { target, .. } => target,
        }
    }
}

impl From<AtomicError> for std::io::Error {
    /// For error types that hold a plain `io::Error` beside the target path: the kind is kept
    /// and the message says which step failed.
    fn from(e: AtomicError) -> Self {
        let kind = match &e {
            AtomicError::DirMissing { .. } => std::io::ErrorKind::NotFound,
            AtomicError::IsDirectory { .. } => std::io::ErrorKind::IsADirectory,
            AtomicError::Io { source, .. } => source.kind(),
        };
        std::io::Error::new(kind, e.to_string())
    }
}

/// Checks, before any work, that `target` can be written atomically: it has a file name, is
/// not a directory, and its directory exists. Returns that directory.
pub fn check_target(target: &Path) -> Result<PathBuf, AtomicError> {
    let is_dir = || AtomicError::IsDirectory {
        target: target.to_path_buf(),
    };
    if target.file_name().is_none() {
        return Err(is_dir());
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(AtomicError::DirMissing {
            target: target.to_path_buf(),
            dir,
        });
    }
    if target.is_dir() {
        return Err(is_dir());
    }
    Ok(dir)
}

/// A file written under a temporary name beside its target and renamed into place by
/// [`AtomicFile::commit`]; dropped without commit, the temporary file is removed.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    dir: PathBuf,
    file: Option<BufWriter<File>>,
}

/// Makes temporary names unique within the process (several writers may target one directory).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Creates the temporary file beside `target`. Errors if the target's directory is
    /// missing or the target is a directory.
    pub fn create(target: impl AsRef<Path>) -> Result<Self, AtomicError> {
        Self::create_with_suffix(target, "")
    }

    /// As [`AtomicFile::create`], with the temporary name ending in `suffix` (for writers
    /// that choose the encoding by extension, such as plotters with `".png"`).
    pub fn create_with_suffix(target: impl AsRef<Path>, suffix: &str) -> Result<Self, AtomicError> {
        let target = target.as_ref();
        let dir = check_target(target)?;
        // check_target refused paths without a file name.
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!(".{name}.{}.{n}.tmp{suffix}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
            {
                Ok(f) => {
                    return Ok(AtomicFile {
                        target: target.to_path_buf(),
                        temp,
                        dir,
                        file: Some(BufWriter::with_capacity(1 << 16, f)),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(AtomicError::Io {
                        target: target.to_path_buf(),
                        path: temp,
                        step: "create temporary file",
                        source,
                    });
                }
            }
        }
    }

    /// The writer for the content.
    ///
    /// # Panics
    /// Never in practice: the writer exists until [`AtomicFile::commit`] consumes `self`.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.file
            .as_mut()
            .expect("the writer lives until commit consumes the AtomicFile")
    }

    /// The temporary path being written (for writers that open the path themselves).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    fn io_error(&self, path: &Path, step: &'static str, source: std::io::Error) -> AtomicError {
        AtomicError::Io {
            target: self.target.clone(),
            path: path.to_path_buf(),
            step,
            source,
        }
    }

    /// Flushes and fsyncs the temporary file, renames it over the target, and fsyncs the
    /// directory. Content written to [`AtomicFile::temp_path`] by another writer (which opens,
    /// truncates and writes the same inode) is synced too.
    pub fn commit(mut self) -> Result<(), AtomicError> {
        let Some(w) = self.file.take() else {
            unreachable!("commit consumes self, so the writer is still there")
        };
        let f = w
            .into_inner()
            .map_err(|e| self.io_error(&self.temp, "write", e.into_error()))?;
        f.sync_all()
            .map_err(|e| self.io_error(&self.temp, "sync", e))?;
        drop(f);
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| self.io_error(&self.temp, "rename", e))?;
        // The rename is done: nothing for Drop to remove any more.
        self.temp = PathBuf::new();
        sync_dir(&self.dir).map_err(|e| self.io_error(&self.dir, "sync directory", e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            self.file.take();
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Makes a rename in `dir` durable. File systems that cannot fsync a directory (some network
/// and FUSE mounts answer EINVAL) are accepted: the rename has happened either way.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}

/// Directories cannot be opened as files off Unix; NTFS journals the rename itself.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicError> {
    let mut f = AtomicFile::create(path)?;
    if let Err(e) = f.writer().write_all(bytes) {
        let temp = f.temp_path().to_path_buf();
        return Err(f.io_error(&temp, "write", e));
    }
    f.commit()
}

/// Lets `write` fill the temporary file by path (for encoders that open the file themselves),
/// then commits it; the temporary name ends in `suffix`. An error from `write` removes the
/// temporary file and leaves the target untouched.
pub fn write_atomic_with<E>(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<Result<(), E>, AtomicError> {
    let f = AtomicFile::create_with_suffix(path, suffix)?;
    if let Err(e) = write(f.temp_path()) {
        return Ok(Err(e));
    }
    f.commit().map(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces_leaving_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        assert_eq!(names(dir.path()), ["a.bin"]);
    }

    #[test]
    fn failed_write_leaves_target_unchanged_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fig.png");
        std::fs::write(&p, b"old").unwrap();
        let r = write_atomic_with(&p, ".png", |temp: &Path| {
            assert!(temp.to_string_lossy().ends_with(".tmp.png"), "{temp:?}");
            std::fs::write(temp, b"half")?;
            Err(std::io::Error::other("encoder failed"))
        })
        .unwrap();
        assert_eq!(r.unwrap_err().to_string(), "encoder failed");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["fig.png"]);
    }

    #[test]
    fn dropped_without_commit_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.edf");
        std::fs::write(&p, b"keep").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.writer().write_all(b"partial").unwrap();
            assert!(f.temp_path().exists());
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        assert_eq!(names(dir.path()), ["x.edf"]);
    }

    #[test]
    fn rename_failure_keeps_target_and_removes_the_temporary() {
        // A target that is a non-empty directory created after the check cannot be replaced
        // by a file: the rename fails at commit.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("late");
        let mut f = AtomicFile::create(&p).unwrap();
        f.writer().write_all(b"data").unwrap();
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"x").unwrap();
        let e = f.commit().unwrap_err();
        assert!(matches!(e, AtomicError::Io { step: "rename", .. }), "{e:?}");
        assert_eq!(e.target(), p);
        assert_eq!(names(dir.path()), ["late"]);
        assert_eq!(std::fs::read(p.join("inside")).unwrap(), b"x");
    }

    #[test]
    fn missing_directory_and_directory_targets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_atomic(&dir.path().join("no/such/f"), b"x").unwrap_err();
        assert!(matches!(e, AtomicError::DirMissing { .. }), "{e:?}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(matches!(e, AtomicError::IsDirectory { .. }), "{e:?}");
        assert!(names(dir.path()).is_empty());
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::IsADirectory);
    }
}
