//! Atomic file writes: the data goes to a temporary file beside the destination (or a given
//! temporary path on the same filesystem), optionally synced, then renamed over the
//! destination, so a reader sees the old file or the new one and never a part of either.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether the file's data reaches the disk before it is renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` the file before the rename: after a crash the destination holds the old or the
    /// new contents. For records written one at a time.
    Sync,
    /// No `fsync`: the caller syncs the filesystem once for many files (a pull does `syncfs`
    /// at its end), or the file lives on a tmpfs.
    NoSync,
}

/// A failed atomic write, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct WriteError {
    /// The file that could not be written: the temporary file or the destination.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary name beside `dest`, unique to this process and call:
/// `.<name>.tmp<pid>.<n>`, hidden from listings that skip dot files.
pub fn temp_path_for(dest: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp{}.{n}", std::process::id()))
}

/// Writes `data` to `dest` atomically through a temporary file beside it.
pub fn write(dest: &Path, data: &[u8], durability: Durability) -> Result<(), WriteError> {
    write_via(&temp_path_for(dest), dest, data, durability)
}

/// Writes `data` to `dest` atomically through a temporary file beside it that is created with
/// permission bits `mode` (before the umask), so the data is never readable by others, not even
/// for a moment: for credentials, `0o600`.
pub fn write_mode(
    dest: &Path,
    data: &[u8],
    durability: Durability,
    mode: u32,
) -> Result<(), WriteError> {
    write_inner(&temp_path_for(dest), dest, data, durability, mode)
}

/// Writes `data` to `dest` atomically through the temporary path `tmp`, which must be on the
/// same filesystem. The temporary file is removed when anything fails.
pub fn write_via(
    tmp: &Path,
    dest: &Path,
    data: &[u8],
    durability: Durability,
) -> Result<(), WriteError> {
    write_inner(tmp, dest, data, durability, 0o666)
}

fn write_inner(
    tmp: &Path,
    dest: &Path,
    data: &[u8],
    durability: Durability,
    mode: u32,
) -> Result<(), WriteError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError { path, source }
    };
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(tmp)
            .map_err(err(tmp))?;
        f.write_all(data).map_err(err(tmp))?;
        if durability == Durability::Sync {
            f.sync_all().map_err(err(tmp))?;
        }
        drop(f);
        std::fs::rename(tmp, dest).map_err(err(dest))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("rec.json");
        write(&f, b"one", Durability::NoSync).unwrap();
        write(&f, b"two", Durability::Sync).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("rec.json")]);
    }

    #[test]
    fn a_failed_rename_keeps_the_old_file_and_removes_the_temporary() {
        let d = tempfile::tempdir().unwrap();
        // The destination is a non-empty directory: rename fails.
        let dest = d.path().join("dir");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("keep"), b"x").unwrap();
        let e = write(&dest, b"new", Durability::NoSync).unwrap_err();
        assert_eq!(e.path, dest);
        assert_eq!(std::fs::read(dest.join("keep")).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_private_file_is_never_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("auth.json");
        write_mode(&f, b"secret", Durability::Sync, 0o600).unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"secret");
    }

    #[test]
    fn temporary_names_differ_per_call() {
        let p = Path::new("/x/y.json");
        assert_ne!(temp_path_for(p), temp_path_for(p));
        assert_eq!(temp_path_for(p).parent(), Some(Path::new("/x")));
    }
}
