//! Taking a container's running state apart, and removing a container: shared by the
//! engine's commands (`stop`'s reconciling, `rm`) and the monitor (a container's exit,
//! `--rm`), so that neither imports the other for it.

use crate::overlay::{self, OverlayError};
use crate::record::Records;
use crate::runtime::Runtime;
use crate::{network, volume};
use berth_image::{Store, StoreError};
use std::fs;
use std::path::{Path, PathBuf};

/// Why tearing down or removing a container failed.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TeardownError + '_ {
    move |source| TeardownError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Releases the image holds of containers whose directory is gone (deleted by hand, or a
/// remover killed between the rename and the release), so that `rmi` works again. A
/// container takes its hold only after its directory exists (`Engine::create`), so a hold
/// without one is never a container still being created.
pub fn release_orphan_holds(berth_root: &Path, store: &Store) -> Result<Vec<String>, StoreError> {
    let containers = berth_root.join("containers");
    store.release_orphan_holds(|holder| containers.join(holder).is_dir())
}

/// Unmounts every mount at or below the given directories, deepest first (lazily when busy),
/// reading `/proc/self/mountinfo` once: for a container whose record cannot say what it
/// mounted.
pub fn unmount_under(dirs: &[&Path]) -> Result<(), TeardownError> {
    let info = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(info).map_err(io(info))?;
    let mut targets: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(berth_sys::mountinfo::unescape)
        .filter(|m| dirs.iter().any(|d| m.starts_with(d)))
        .collect();
    targets.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    targets.dedup();
    for t in targets {
        if let Err(e) = rustix::mount::unmount(&t, rustix::mount::UnmountFlags::DETACH) {
            if e != rustix::io::Errno::INVAL && e != rustix::io::Errno::NOENT {
                return Err(io(&t)(e.into()));
            }
        }
    }
    Ok(())
}

/// Where a container's root is mounted: `<runroot>/containers/<id>/bundle/rootfs`.
pub(crate) fn rootfs(records: &Records, id: &str) -> PathBuf {
    records.run_dir(id).join("bundle/rootfs")
}

/// Releases the container's network (as Docker does when a container stops: its address,
/// published ports and namespace; `start` connects it again) and unmounts its root (and
/// anything left below it).
pub fn teardown(records: &Records, id: &str) -> Result<(), TeardownError> {
    teardown_after(records, id, || {})
}

/// [`teardown`], with `first` (deleting the runtime's container) run meanwhile: the
/// network is released and `first` run on two more threads while this one unmounts the
/// root, since all three wait on the kernel (namespace, cgroup and mount teardown) more
/// than they work.
pub fn teardown_after(
    records: &Records,
    id: &str,
    first: impl FnOnce() + Send,
) -> Result<(), TeardownError> {
    std::thread::scope(|scope| {
        let net = records
            .dir
            .parent()
            .map(|root| spawn_or_run(scope, "network", move || network::release(root, id)));
        let runtime = spawn_or_run(scope, "runtime", first);
        let unmounted = overlay::unmount(&rootfs(records, id)).and_then(|()| {
            // Where a berth that kept bundles under --root mounted it.
            overlay::unmount(&records.container_dir(id).join("bundle/rootfs"))
        });
        if runtime.join().is_err() {
            tracing::warn!("deleting {id} from the runtime: the thread panicked");
        }
        match net.map(Job::join) {
            Some(Ok(Err(e))) => tracing::warn!("releasing the network of {id}: {e}"),
            Some(Err(_)) => tracing::warn!("releasing the network of {id}: the thread panicked"),
            _ => {}
        }
        unmounted?;
        Ok(())
    })
}

/// Work on a scoped thread, or its result when no thread could be started for it.
pub(crate) enum Job<'scope, T> {
    Thread(std::thread::ScopedJoinHandle<'scope, T>),
    Done(T),
}

impl<T> Job<'_, T> {
    /// The result; Err when the thread panicked.
    pub(crate) fn join(self) -> std::thread::Result<T> {
        match self {
            Job::Thread(h) => h.join(),
            Job::Done(v) => Ok(v),
        }
    }
}

/// Runs `f` on a scoped thread named `name`, or here and now when no thread can be started
/// (so that the work is never skipped).
pub(crate) fn spawn_or_run<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Job<'scope, T> {
    let cell = std::sync::Arc::new(std::sync::Mutex::new(Some(f)));
    let take = |c: &std::sync::Mutex<Option<_>>| {
        c.lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("run once")
    };
    let theirs = cell.clone();
    match std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(scope, move || take(&theirs)())
    {
        Ok(h) => Job::Thread(h),
        Err(_) => Job::Done(take(&cell)()),
    }
}

/// Removes everything of a stopped container: runtime state, overlay, its
/// directory, its image hold and (with `volumes`) its anonymous volumes.
pub fn remove_files(
    root: &Path,
    records: &Records,
    runtime: &Runtime,
    id: &str,
    volumes: bool,
) -> Result<(), TeardownError> {
    remove_files_later(root, records, runtime, id, volumes)?.delete();
    Ok(())
}

/// A removed container's directory tree, already renamed out of sight
/// (`containers/.trash/<id>`): what is left is deleting its files.
#[must_use = "the directory is only deleted by delete()"]
pub struct Leftover(Option<PathBuf>);

impl Leftover {
    pub fn delete(self) {
        if let Some(p) = self.0 {
            if let Err(e) = fs::remove_dir_all(&p) {
                tracing::warn!("deleting {}: {e}", p.display());
            }
        }
    }
}

/// [`remove_files`] up to the deletion of the directory's contents: the container is gone
/// (no record, name, image hold, runtime state, mounts or network) when this returns, and
/// its directory is one rename away in the trash. The monitor of a `--rm` container reports
/// the exit first and deletes the files after: on a busy filesystem, unlinking a container's
/// files costs more than everything else in its removal.
pub fn remove_files_later(
    root: &Path,
    records: &Records,
    runtime: &Runtime,
    id: &str,
    volumes: bool,
) -> Result<Leftover, TeardownError> {
    let c = records.load(id).ok();
    teardown_after(records, id, || runtime.delete_force(id))?;
    let run = records.run_dir(id);
    if run.exists() {
        // Unmounted above; on the run root's tmpfs these few files go at once.
        fs::remove_dir_all(&run).map_err(io(&run))?;
    }
    let dir = records.container_dir(id);
    let mut left = Leftover(None);
    if dir.exists() {
        let trash = records.trash_dir().join(id);
        let moved = fs::create_dir_all(records.trash_dir()).and_then(|_| fs::rename(&dir, &trash));
        match moved {
            Ok(()) => left = Leftover(Some(trash)),
            Err(_) => fs::remove_dir_all(&dir).map_err(io(&dir))?,
        }
    }
    if let Some(c) = &c {
        records.release_name(&c.name, id);
    }
    // The container is gone already: a hold left behind here is released by the next
    // `rmi` or `image prune` (release_orphan_holds), so this failure is only reported.
    match Store::open(root).and_then(|store| store.remove_hold(id)) {
        Ok(()) => {}
        Err(e) => tracing::warn!("releasing the image hold of {id}: {e}"),
    }
    if let (true, Some(c)) = (volumes, c) {
        for m in c.mounts.iter().filter(|m| m.anonymous) {
            if let Some(n) = &m.name {
                let _ = volume::delete(root, n);
            }
        }
    }
    Ok(left)
}
