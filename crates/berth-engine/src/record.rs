//! Containers on disk: `<root>/containers/<id>/config.json` is the record
//! (Docker-like), written atomically, changed under a per-container flock.
//! Names are unique under a store-wide lock.

use crate::options::RunOptions;
use crate::spec::ResolvedMount;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt container record")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple containers match {0:?}: use more of the id or the full name")]
    Ambiguous(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    /// The kernel gave no random bytes for an id or a name.
    #[error("reading random bytes for an id: {0}")]
    Random(#[source] std::io::Error),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A container's state, as Docker names them. On disk and in `inspect` and `ps` each is its
/// lowercase name (`"running"`, ...). berth itself writes [`Status::Created`],
/// [`Status::Running`], [`Status::Paused`] and [`Status::Exited`]; the others are Docker's
/// remaining states, which berth understands when it reads them but does not enter.
///
/// A name this berth does not know (a record written by another version) reads as
/// [`Status::Exited`]: nothing of the container is assumed to be alive, and it can be
/// started or removed as a stopped container can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Status {
    /// Recorded and never started, or its start failed before the process ran.
    #[default]
    Created,
    /// Its process runs under a monitor.
    Running,
    /// Its processes are frozen (`pause`).
    Paused,
    /// Being restarted by a restart policy (Docker's; berth has no restart policies).
    Restarting,
    /// Its removal is under way.
    Removing,
    /// Its process ended (or its monitor died and it was reconciled).
    Exited,
    /// Docker's state for a container whose removal failed half-way.
    Dead,
}

impl Status {
    /// The name on disk and in `inspect`/`ps`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// The state named `s`; an empty name (a record without one) is [`Status::Created`], an
    /// unknown one [`Status::Exited`] (see the type's docs).
    pub fn from_name(s: &str) -> Status {
        match s {
            "created" | "" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "restarting" => Status::Restarting,
            "removing" => Status::Removing,
            "dead" => Status::Dead,
            _ => Status::Exited,
        }
    }

    /// A monitor and a process may be alive: running or paused (or restarting). Docker's
    /// `State.Running`, and what `ps` lists without `-a`.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }

    /// Whether the record must be checked against the processes it names before it is
    /// believed: an active container, or a created one whose monitor is starting it.
    pub fn needs_reconcile(self) -> bool {
        self.is_active() || self == Status::Created
    }

    /// `start` may start it: it is not active, not being removed, not dead.
    pub fn can_start(self) -> bool {
        matches!(self, Status::Created | Status::Exited)
    }

    /// `kill` (and `stop`'s signals) reach it: it has a process.
    pub fn can_kill(self) -> bool {
        self.is_active()
    }

    /// `pause` applies: it runs.
    pub fn can_pause(self) -> bool {
        self == Status::Running
    }

    /// `unpause` applies: it is paused.
    pub fn can_unpause(self) -> bool {
        self == Status::Paused
    }

    /// `exec` may run a process in it: it runs (and is not paused).
    pub fn can_exec(self) -> bool {
        self == Status::Running
    }

    /// `attach`, `top` and `logs --follow` have a live container to follow.
    pub fn can_attach(self) -> bool {
        self.is_active()
    }

    /// `rm` without `--force` may remove it: nothing of it runs.
    pub fn can_remove_without_force(self) -> bool {
        !self.is_active()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Status::from_name(&name))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    /// The start time of `pid` (`/proc/PID/stat`'s field 22), so that a recycled pid is not
    /// taken for the container's process. None in records of an older berth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_start_time: Option<u64>,
    pub exit_code: i32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub oom_killed: bool,
    /// Pid of the monitor process while it runs.
    pub monitor_pid: i32,
    /// The start time of `monitor_pid`, as for [`State::pid_start_time`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor_start_time: Option<u64>,
    pub error: String,
}

impl State {
    /// Records the container's process and its monitor, with their start times.
    pub fn set_processes(&mut self, pid: i32, monitor_pid: i32) {
        let start = |p: i32| berth_sys::proc::stat(p).ok().map(|s| s.start_time);
        self.pid = pid;
        self.pid_start_time = start(pid);
        self.monitor_pid = monitor_pid;
        self.monitor_start_time = start(monitor_pid);
    }

    /// Forgets the container's process and monitor (they are gone).
    pub fn clear_processes(&mut self) {
        self.pid = 0;
        self.pid_start_time = None;
        self.monitor_pid = 0;
        self.monitor_start_time = None;
    }

    /// Whether the recorded container process still lives (and is the same process: its pid
    /// may have been reused since).
    pub fn process_alive(&self) -> bool {
        berth_sys::proc::alive(self.pid, self.pid_start_time)
    }

    /// Whether the recorded monitor still lives, as for [`State::process_alive`].
    pub fn monitor_alive(&self) -> bool {
        berth_sys::proc::alive(self.monitor_pid, self.monitor_start_time)
    }
}

/// The command that created a container in order to start it (`berth run`): its pid and
/// that process's start time, so that a reused pid is not taken for it. While it lives, a
/// container that has not started yet is its business (`prune` and `rm` leave it alone);
/// once it is gone and no monitor took over, reconciling removes a `--rm` container
/// (`Engine::list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    pub pid: i32,
    /// `/proc/PID/stat`'s field 22.
    pub start_time: u64,
}

impl Creator {
    /// This process, or None when its `/proc` entry cannot be read.
    pub fn current() -> Option<Creator> {
        let pid = std::process::id() as i32;
        berth_sys::proc::stat(pid).ok().map(|s| Creator {
            pid,
            start_time: s.start_time,
        })
    }

    /// Whether that process still runs.
    pub fn alive(&self) -> bool {
        berth_sys::proc::alive(self.pid, Some(self.start_time))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// As the user wrote it.
    pub image: String,
    pub image_id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub options: RunOptions,
    pub image_config: serde_json::Value,
    /// Image layer dirs, lowest first.
    pub layers: Vec<PathBuf>,
    pub mounts: Vec<ResolvedMount>,
    /// Named volumes created for this container, still to be filled from the image.
    pub copy_up: Vec<String>,
    pub hostname: String,
    /// The networks the container is connected to (bridge modes), in order.
    pub networks: Vec<berth_net::Attachment>,
    pub restart_count: u32,
    pub state: State,
    /// The `run` that created the container to start it (None for `create`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<Creator>,
}

/// `<root>/containers`, and `<runroot>/containers` for what a container needs only while it
/// runs.
#[derive(Debug, Clone)]
pub struct Records {
    pub dir: PathBuf,
    pub run: PathBuf,
}

/// The default `--root`.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

/// Where a root keeps its transient state (`--runroot`): `/run/berth` for the default root,
/// as podman keeps its runroot in `/run` (a tmpfs on a standard host, emptied at boot);
/// `<root>/run` for any other root, so that roots never share it.
pub fn default_run_root(berth_root: &Path) -> PathBuf {
    if berth_root == Path::new(DEFAULT_ROOT) {
        PathBuf::from("/run/berth")
    } else {
        berth_root.join("run")
    }
}

/// An exclusive flock, released on drop.
pub struct Lock(#[allow(dead_code)] File);

pub fn lock_file(path: &Path) -> Result<Lock, RecordError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(path)(e.into()))?;
    Ok(Lock(f))
}

/// Replaces the file at `path` atomically (records, volume metadata).
///
/// Without fsync ([`Durability::NoSync`]): a record is rewritten at every start, exit and
/// state change, and a sync on each would put a disk flush on the path of every container
/// start. A reader never sees a partial record (the rename is atomic); after a host crash a
/// record may be the previous one, which reconciling (no monitor alive) turns into an exited
/// container, as it does for every container that was running.
///
/// [`Durability::NoSync`]: berth_sys::atomic::Durability::NoSync
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RecordError> {
    berth_sys::atomic::write(path, data, berth_sys::atomic::Durability::NoSync).map_err(|e| {
        RecordError::Io {
            path: e.path,
            source: e.source,
        }
    })
}

impl Records {
    /// The records of `berth_root`, with transient state under `run_root`.
    pub fn open(berth_root: &Path, run_root: &Path) -> Result<Records, RecordError> {
        let dir = berth_root.join("containers");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Records {
            dir,
            run: run_root.join("containers"),
        })
    }

    /// The run root (`--runroot`).
    pub fn run_root(&self) -> &Path {
        self.run.parent().unwrap_or(&self.run)
    }

    /// A container's transient files (`<runroot>/containers/<id>`): the bundle (spec and the
    /// overlay's mount point), the generated /etc files, the monitor's socket. Made at each
    /// start, removed with the container.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.run.join(id)
    }

    /// Where removed containers' directories wait to be deleted (see
    /// `teardown::remove_files_later`); leftovers older than a minute (their remover died)
    /// are deleted by [`Records::sweep`].
    pub fn trash_dir(&self) -> PathBuf {
        self.dir.join(".trash")
    }

    /// Deletes trash left by a remover that died (entries older than a minute), and run
    /// dirs without a container.
    pub fn sweep(&self) {
        use std::os::unix::fs::MetadataExt;
        self.sweep_run_dirs();
        let Ok(rd) = fs::read_dir(self.trash_dir()) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for e in rd.flatten() {
            // Renaming a directory into the trash sets its ctime.
            if e.metadata().is_ok_and(|m| now - m.ctime() > 60) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Deletes the transient files of containers whose record is gone (a remover killed
    /// between the two, or a record deleted by hand), never while a root is mounted there.
    fn sweep_run_dirs(&self) {
        let Ok(rd) = fs::read_dir(&self.run) else {
            return;
        };
        for e in rd.flatten() {
            let id = e.file_name();
            if self.dir.join(&id).exists() {
                continue;
            }
            if crate::overlay::is_mounted(&e.path().join("bundle/rootfs")) {
                tracing::warn!(
                    "{}: a root is mounted there but its container is gone",
                    e.path().display()
                );
                continue;
            }
            let _ = fs::remove_dir_all(e.path());
        }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The store-wide lock (names, create, remove).
    pub fn lock_names(&self) -> Result<Lock, RecordError> {
        lock_file(&self.dir.join(".names.lock"))
    }

    /// The per-container lock: an flock on the container's directory itself (no
    /// lock file to create and delete for every container).
    pub fn lock(&self, id: &str) -> Result<Lock, RecordError> {
        let dir = self.dir.join(id);
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&dir)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    RecordError::NotFound(id.to_string())
                } else {
                    io_err(&dir)(e)
                }
            })?;
        rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(&dir)(e.into()))?;
        Ok(Lock(f))
    }

    pub fn load(&self, id: &str) -> Result<Container, RecordError> {
        let p = self.dir.join(id).join("config.json");
        let data = fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RecordError::NotFound(id.to_string())
            } else {
                io_err(&p)(e)
            }
        })?;
        serde_json::from_slice(&data).map_err(|source| RecordError::Corrupt { path: p, source })
    }

    pub fn save(&self, c: &Container) -> Result<(), RecordError> {
        let p = self.dir.join(&c.id).join("config.json");
        let data = serde_json::to_vec_pretty(c).expect("record serializes");
        write_atomic(&p, &data)
    }

    /// Load, change and save under the container's lock.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container),
    ) -> Result<Container, RecordError> {
        let _l = self.lock(id)?;
        let mut c = self.load(id)?;
        f(&mut c);
        self.save(&c)?;
        Ok(c)
    }

    /// Every container, oldest first. A record that cannot be parsed is reported (a warning
    /// naming its path) and skipped: one corrupt record must not hide the others; `rm -f`
    /// removes it. A directory without a record older than a minute (its `create` was
    /// killed before writing one) is deleted.
    pub fn list(&self) -> Result<Vec<Container>, RecordError> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(io_err(&self.dir))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if !e.path().join("config.json").exists() {
                self.sweep_unrecorded(&e.path());
                continue;
            }
            match self.load(&name) {
                Ok(c) => out.push(c),
                Err(RecordError::NotFound(_)) => {}
                Err(RecordError::Corrupt { path, source }) => tracing::warn!(
                    "skipping container {name}: {}: corrupt container record: {source} \
                     (`berth rm -f {name}` removes it)",
                    path.display()
                ),
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Deletes a container directory that never got a record, once it is a minute old (a
    /// `create` killed half-way; one still working writes its record within milliseconds).
    /// Its image hold, if it took one, is released by the next `rmi`.
    fn sweep_unrecorded(&self, dir: &Path) {
        use std::os::unix::fs::MetadataExt;
        let old = fs::symlink_metadata(dir).is_ok_and(|m| {
            m.is_dir() && {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                now - m.ctime() > 60
            }
        });
        if old {
            tracing::info!(
                "{}: removing a container that never got a record",
                dir.display()
            );
            let _ = fs::remove_dir_all(dir);
        }
    }

    /// Releases every name that points at `id` (for a container whose record, and so its
    /// name, cannot be read).
    pub fn release_names_of(&self, id: &str) {
        let Ok(rd) = fs::read_dir(self.dir.join(".names")) else {
            return;
        };
        for e in rd.flatten() {
            if fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == id) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn name_link(&self, name: &str) -> PathBuf {
        self.dir.join(".names").join(name)
    }

    /// The id holding `name`, if any (stale links of removed containers are dropped).
    pub fn name_owner(&self, name: &str) -> Option<String> {
        let link = self.name_link(name);
        let id = fs::read_link(&link).ok()?.to_string_lossy().into_owned();
        if self.dir.join(&id).join("config.json").exists() {
            Some(id)
        } else {
            let _ = fs::remove_file(&link);
            None
        }
    }

    /// Records `name` as taken by `id` (under [`Records::lock_names`]).
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<(), RecordError> {
        let link = self.name_link(name);
        let parent = link.parent().unwrap().to_path_buf();
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        std::os::unix::fs::symlink(id, &link).map_err(io_err(&link))
    }

    pub fn release_name(&self, name: &str, id: &str) {
        let link = self.name_link(name);
        if fs::read_link(&link).is_ok_and(|t| t.as_os_str() == id) {
            let _ = fs::remove_file(&link);
        }
    }

    /// Full id from a name, full id, or unique id prefix.
    pub fn find(&self, key: &str) -> Result<String, RecordError> {
        let key = key.trim_start_matches('/');
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(RecordError::NotFound(key.to_string()));
        }
        if key.len() == 64 && self.dir.join(key).join("config.json").exists() {
            return Ok(key.to_string());
        }
        if let Some(id) = self.name_owner(key) {
            return Ok(id);
        }
        let rd = fs::read_dir(&self.dir).map_err(io_err(&self.dir))?;
        let m: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n.starts_with(key))
            .filter(|n| self.dir.join(n).join("config.json").exists())
            .collect();
        match m.len() {
            0 => Err(RecordError::NotFound(key.to_string())),
            1 => Ok(m[0].clone()),
            _ => Err(RecordError::Ambiguous(key.to_string())),
        }
    }

    /// Checks a requested name (under [`Records::lock_names`]).
    pub fn check_name(&self, name: &str) -> Result<(), RecordError> {
        let ok = !name.is_empty()
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(RecordError::BadName(name.to_string()));
        }
        if let Some(id) = self.name_owner(name) {
            return Err(RecordError::NameInUse {
                name: name.to_string(),
                id,
            });
        }
        Ok(())
    }

    /// A Docker-like `adjective_noun` name not in use.
    pub fn random_name(&self) -> Result<String, RecordError> {
        for attempt in 0..1000u32 {
            let r = berth_sys::rand::u64().map_err(RecordError::Random)?;
            let mut n = format!(
                "{}_{}",
                ADJECTIVES[(r % ADJECTIVES.len() as u64) as usize],
                NOUNS[((r >> 20) % NOUNS.len() as u64) as usize]
            );
            if attempt > 10 {
                n.push_str(&((r >> 40) % 10).to_string());
            }
            if self.name_owner(&n).is_none() {
                return Ok(n);
            }
        }
        Ok(random_id()?[..12].to_string())
    }
}

/// A new id: 64 hex digits of randomness (containers, anonymous volumes). Fails when the
/// kernel gives no random bytes, rather than handing out the same id twice.
pub fn random_id() -> Result<String, RecordError> {
    berth_sys::rand::hex_id(32).map_err(RecordError::Random)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Time since an RFC 3339 timestamp (zero if unparsable or in the future).
pub fn age(ts: &str) -> std::time::Duration {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or_default()
}

/// Nanoseconds since the epoch of an RFC 3339 timestamp.
pub fn unix_nanos(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

/// `--since`: RFC 3339, a unix time, or a duration ago (`10s`, `5m`, `2h`);
/// returns nanoseconds since the epoch.
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Some(n) = unix_nanos(s) {
        return Ok(n);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1_000_000_000));
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| {
        format!("--since {s:?}: expected RFC 3339, a unix time, or a duration like 10s, 5m, 2h")
    })?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("--since {s:?}: the unit must be s, m or h")),
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    Ok(now - secs * 1_000_000_000)
}

/// Docker's "5 seconds", "About a minute", "3 hours".
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=31_535_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

impl Container {
    /// Docker's `STATUS` column: "Up 5 minutes", "Exited (0) 2 hours ago", "Created".
    pub fn status_text(&self) -> String {
        let c = self;
        let ago = |t: &Option<String>| human_duration(age(t.as_deref().unwrap_or("")));
        match c.state.status {
            Status::Running => format!("Up {}", ago(&c.state.started_at)),
            Status::Paused => format!("Up {} (Paused)", ago(&c.state.started_at)),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                c.state.exit_code,
                ago(&c.state.finished_at)
            ),
            // Docker's texts for the states berth reads but never enters.
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                c.state.exit_code,
                ago(&c.state.finished_at)
            ),
            Status::Removing => "Removal In Progress".into(),
            Status::Dead => "Dead".into(),
            Status::Created => "Created".into(),
        }
    }
}

const ADJECTIVES: [&str; 40] = [
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "charming",
    "clever",
    "cool",
    "compassionate",
    "determined",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "loving",
    "modest",
    "nice",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "vibrant",
    "zealous",
];
const NOUNS: [&str; 40] = [
    "albattani",
    "babbage",
    "bardeen",
    "bell",
    "bohr",
    "cannon",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "hamilton",
    "hawking",
    "hopper",
    "hypatia",
    "joliot",
    "kepler",
    "knuth",
    "lamport",
    "lovelace",
    "maxwell",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "ritchie",
    "shannon",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wilson",
    "wozniak",
    "wright",
    "yalow",
];

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Status; 7] = [
        Status::Created,
        Status::Running,
        Status::Paused,
        Status::Restarting,
        Status::Removing,
        Status::Exited,
        Status::Dead,
    ];

    #[test]
    fn statuses_serialize_as_docker_names_and_read_back() {
        for s in ALL {
            let text = serde_json::to_string(&s).unwrap();
            assert_eq!(text, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), s);
        }
        assert_eq!(
            serde_json::to_string(&Status::Running).unwrap(),
            r#""running""#
        );
        assert_eq!(Status::Paused.to_string(), "paused");
    }

    #[test]
    fn unknown_or_missing_statuses_still_load() {
        let st: State = serde_json::from_str(r#"{"status": "hibernating", "pid": 7}"#).unwrap();
        assert_eq!(st.status, Status::Exited);
        assert_eq!(st.pid, 7);
        let st: State = serde_json::from_str(r#"{"pid": 7}"#).unwrap();
        assert_eq!(st.status, Status::Created);
        let st: State = serde_json::from_str(r#"{"status": ""}"#).unwrap();
        assert_eq!(st.status, Status::Created);
    }

    #[test]
    fn status_texts_are_dockers() {
        use std::time::Duration;
        assert_eq!(human_duration(Duration::from_secs(0)), "Less than a second");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
        let mut c = Container::default();
        assert_eq!(c.status_text(), "Created");
        c.state.status = Status::Exited;
        c.state.exit_code = 3;
        c.state.finished_at = Some(now_rfc3339());
        assert_eq!(c.status_text(), "Exited (3) Less than a second ago");
        c.state.status = Status::Paused;
        c.state.started_at = Some(now_rfc3339());
        assert_eq!(c.status_text(), "Up Less than a second (Paused)");
    }

    #[test]
    fn what_each_status_allows() {
        use Status::*;
        let active: Vec<Status> = ALL.into_iter().filter(|s| s.is_active()).collect();
        assert_eq!(active, [Running, Paused, Restarting]);
        let startable: Vec<Status> = ALL.into_iter().filter(|s| s.can_start()).collect();
        assert_eq!(startable, [Created, Exited]);
        assert!(Running.can_pause() && !Paused.can_pause() && !Exited.can_pause());
        assert!(Paused.can_unpause() && !Running.can_unpause());
        assert!(Running.can_exec() && !Paused.can_exec());
        assert!(Running.can_kill() && Paused.can_kill() && !Exited.can_kill());
        for s in ALL {
            assert_eq!(s.can_remove_without_force(), !s.is_active(), "{s}");
            assert_eq!(s.can_attach(), s.is_active(), "{s}");
        }
        assert!(Created.needs_reconcile() && Running.needs_reconcile());
        assert!(!Exited.needs_reconcile() && !Dead.needs_reconcile());
    }
}
