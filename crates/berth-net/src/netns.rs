//! Network namespaces kept alive by a bind mount of their nsfs file, and running code inside one.
//!
//! Both work in a short-lived helper thread: `unshare(CLONE_NEWNET)` and `setns` change only the
//! calling thread, and the thread is joined before returning, so the caller's own namespace is
//! never changed and no thread outlives the call.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot create the namespace file {path}: {source}")]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a network namespace: {0}")]
    Unshare(nix::Error),
    #[error("cannot bind-mount the new network namespace onto {path}: {source}")]
    Mount { path: PathBuf, source: nix::Error },
    #[error("cannot unmount the network namespace {path}: {source}")]
    Unmount { path: PathBuf, source: nix::Error },
    #[error("cannot open the network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter the network namespace {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("the helper thread for {path} panicked")]
    Thread { path: PathBuf },
}

/// Creates a new network namespace and bind-mounts it onto `path` (created, parents too).
pub fn create_netns(path: &Path) -> Result<(), NetnsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| NetnsError::CreateFile {
            path: path.to_path_buf(),
            source: e,
        })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| NetnsError::CreateFile {
            path: path.to_path_buf(),
            source: e,
        })?;
    let target = path.to_path_buf();
    let res = std::thread::spawn(move || -> Result<(), NetnsError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(NetnsError::Unshare)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| NetnsError::Mount {
            path: target.clone(),
            source: e,
        })?;
        // Bring lo up inside, as every runtime does.
        let mut nl = crate::nl::Netlink::new().map_err(|e| NetnsError::Mount {
            path: target.clone(),
            source: nix::Error::from_raw(io_errno(&e)),
        })?;
        if let Ok(Some(lo)) = nl.link_index("lo") {
            let _ = nl.set_up(lo);
        }
        Ok(())
    })
    .join()
    .map_err(|_| NetnsError::Thread {
        path: path.to_path_buf(),
    })?;
    if res.is_err() {
        let _ = std::fs::remove_file(path);
    }
    res
}

fn io_errno(e: &crate::nl::NlError) -> i32 {
    e.errno().unwrap_or(libc::EIO)
}

/// Unmounts and removes a namespace file made by [`create_netns`]. Ok if it is gone already.
pub fn remove_netns(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(NetnsError::Unmount {
                path: path.to_path_buf(),
                source: e,
            })
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetnsError::CreateFile {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Runs `f` in a helper thread that has joined the network namespace at `path`.
pub fn in_netns<T: Send + 'static, E: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<Result<T, E>, NetnsError> {
    let file = File::open(path).map_err(|e| NetnsError::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    let p = path.to_path_buf();
    std::thread::spawn(move || -> Result<Result<T, E>, NetnsError> {
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
            path: p.clone(),
            source: e,
        })?;
        Ok(f())
    })
    .join()
    .map_err(|_| NetnsError::Thread {
        path: path.to_path_buf(),
    })?
}
