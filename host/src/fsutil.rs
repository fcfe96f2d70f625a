//! File helpers with errors that name the path: reading, and atomic replacement of an output file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The directory the output should go to does not exist.
    #[error("cannot write {}: directory {} does not exist", path.display(), dir.display())]
    MissingDir {
        /// The output file.
        path: PathBuf,
        /// Its parent directory.
        dir: PathBuf,
    },
    /// The path names no file (it is empty or ends in `..`).
    #[error("cannot write '{}': not a file name", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// Writing the temporary file or renaming it over the output failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// An exclusive lock on `path` (created if missing), held until the file is dropped; `on_wait` is called
/// once if another process holds it and this one has to wait.
pub fn lock_exclusive(path: &Path, on_wait: impl FnOnce()) -> Result<File, FsError> {
    let write_err = |source| FsError::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(write_err)?;
    }
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(write_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            on_wait();
            file.lock().map_err(write_err)?;
        }
        Err(fs::TryLockError::Error(e)) => return Err(write_err(e)),
    }
    Ok(file)
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(|source| FsError::Read { path: path.to_path_buf(), source })
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one, never a part.
///
/// The bytes go to a temporary file in the same directory (so the rename cannot cross file systems), which is
/// flushed to disk, then renamed over `path`; on Unix the directory is synced too so the rename survives a
/// power cut. On failure the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let name = path.file_name().ok_or_else(|| FsError::NotAFile { path: path.to_path_buf() })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(FsError::MissingDir { path: path.to_path_buf(), dir: dir.to_path_buf() });
    }
    let write_err = |source| FsError::Write { path: path.to_path_buf(), source };
    let (tmp_path, file) = create_temp(dir, &name.to_string_lossy()).map_err(write_err)?;
    let result = fill_and_sync(file, bytes).and_then(|()| fs::rename(&tmp_path, path));
    if let Err(e) = result {
        // The write already failed; a leftover temporary file is the lesser problem, so its error is dropped.
        let _ = fs::remove_file(&tmp_path);
        return Err(write_err(e));
    }
    sync_dir(dir).map_err(write_err)
}

/// Creates a new hidden file `.<name>.<pid>.<n>.tmp` in `dir`, never reusing an existing one.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    const ATTEMPTS: u32 = 100;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            // A leftover of a crashed run that had the same pid: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < ATTEMPTS => {}
            Err(e) => return Err(e),
        }
    }
}

fn fill_and_sync(mut file: File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_then_replaces_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.qfdm");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(read(&path).unwrap(), b"second");
        assert_eq!(entries(dir.path()), ["m.qfdm"]);
    }

    #[test]
    fn refuses_missing_directories_and_non_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("m.qfdm");
        assert!(matches!(write_atomic(&path, b"x"), Err(FsError::MissingDir { .. })));
        assert!(matches!(write_atomic(Path::new(".."), b"x"), Err(FsError::NotAFile { .. })));
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails on every platform.
        let target = dir.path().join("out");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"x").unwrap();
        assert!(matches!(write_atomic(&target, b"x"), Err(FsError::Write { .. })));
        assert_eq!(entries(dir.path()), ["out"]);
    }
}
