//! Container state on disk: `<root>/<id>/state.json` (written atomically), `<root>/<id>/exec.fifo`
//! (present from create until start), and a per-container `flock` on the directory.
//!
//! The status is derived from what is stored: the init pid plus its start time (field 22 of
//! `/proc/<pid>/stat`, so a recycled pid is not mistaken for the container) tell whether it is
//! alive; alive while `create` is still at work (the `creating` flag, written as soon as the
//! init exists and cleared when it waits for `start`) is `creating`; alive with the exec fifo
//! still present is `created`; alive and frozen by `pause` is `paused`; alive otherwise is
//! `running`; dead or a zombie is `stopped`.

use crate::sys;
use crate::sys::{SysCtx, SysError};
use berth_sys::atomic::{self, Durability, WriteError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Container ids, `state.json`, and operations the container's state does not allow.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not a valid container id.
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-' and '.'")]
    InvalidId(String),
    /// No container with this id.
    #[error("container {id:?} does not exist (no {})", path.display())]
    NotFound {
        /// The id.
        id: String,
        /// Its `state.json`.
        path: PathBuf,
    },
    /// A container with this id exists already.
    #[error("container with id {0:?} already exists: delete it first or pick another id")]
    Exists(String),
    /// `state.json` does not parse.
    #[error("corrupt state {}: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// Writing `state.json` (or the pid file) failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading or locking the container's directory failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The operation is not allowed in the container's state.
    #[error("{}", wrong_state(id, *op, *status))]
    WrongState {
        /// The container.
        id: String,
        /// What was asked.
        op: Op,
        /// The state it is in.
        status: Status,
    },
}

/// An operation on a container, for [`StateError::WrongState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `start`.
    Start,
    /// `kill`.
    Kill,
    /// `delete` without `--force`.
    Delete,
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `update`.
    Update,
    /// `events --stats`.
    Stats,
    /// `exec`.
    Exec,
}

fn wrong_state(id: &str, op: Op, status: Status) -> String {
    match (op, status) {
        (Op::Start, Status::Stopped) => {
            "cannot start a container that has stopped: delete it and create it again".into()
        }
        (Op::Start, Status::Creating) => format!("container {id:?} is still being created"),
        (Op::Start, _) => format!("cannot start an already running container {id:?}"),
        (Op::Kill, _) => format!("container not running: {id:?} has stopped (delete it)"),
        (Op::Delete, s) => format!(
            "cannot delete container {id:?} that is not stopped: {} (stop it first or use --force)",
            s.as_str()
        ),
        (Op::Pause, s) => format!("cannot pause container {id:?}: it is {}", s.as_str()),
        (Op::Resume, _) => format!("cannot resume container {id:?}: it is not paused"),
        (Op::Update, _) => format!("cannot update container {id:?}: it is stopped"),
        (Op::Stats, _) => format!("container {id:?} is stopped"),
        (Op::Exec, Status::Paused) => {
            format!("cannot exec in a paused container {id:?}: resume it first")
        }
        (Op::Exec, _) => format!("cannot exec in a stopped container {id:?}"),
    }
}

/// The default `--root`.
pub const DEFAULT_ROOT: &str = "/run/berth-runtime";
/// The OCI runtime-spec version berth implements.
pub const OCI_VERSION: &str = "1.2.0";

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// Container id.
    pub id: String,
    /// Host pid of the init.
    pub pid: i32,
    /// The init's start time in clock ticks since boot (detects pid reuse).
    pub pid_start: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// Annotations from the config.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The cgroup manager's saved state.
    #[serde(default)]
    pub cgroup: Option<serde_json::Value>,
    /// Set by `pause`, cleared by `resume`.
    #[serde(default)]
    pub paused: bool,
    /// `--no-pivot` was used (exec then chroots instead of relying on the mount ns root).
    #[serde(default)]
    pub no_pivot: bool,
    /// The uid that created the container.
    #[serde(default)]
    pub owner: u32,
    /// Set while `create` is still preparing the container (status `creating`); cleared once
    /// the init waits for `start`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
}

/// Container status as the runtime-spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for start.
    Created,
    /// The user program runs.
    Running,
    /// Frozen.
    Paused,
    /// The init exited.
    Stopped,
}

impl Status {
    /// Whether `op` is allowed in this state (`delete` here means without `--force`, which
    /// is allowed in every state).
    pub fn allows(self, op: Op) -> bool {
        use Status::*;
        match op {
            Op::Start => self == Created,
            Op::Kill | Op::Update | Op::Stats => self != Stopped,
            Op::Delete => self == Stopped,
            Op::Pause => self == Running,
            Op::Resume => self == Paused,
            Op::Exec => !matches!(self, Stopped | Paused),
        }
    }

    /// Ok when `op` is allowed in this state, else the error that says why not.
    pub fn check(self, id: &str, op: Op) -> Result<(), StateError> {
        if self.allows(op) {
            Ok(())
        } else {
            Err(StateError::WrongState {
                id: id.to_string(),
                op,
                status: self,
            })
        }
    }

    /// The spec's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// A container's directory under `--root`.
pub struct Container {
    /// `<root>/<id>`.
    pub dir: PathBuf,
    /// The saved state.
    pub saved: Saved,
}

/// Checks a container id the way runc does.
pub fn check_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if !ok {
        return Err(StateError::InvalidId(id.to_string()));
    }
    Ok(())
}

/// The directory of container `id`.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Locks the container directory exclusively until the returned fd is dropped.
pub fn lock(dir: &Path) -> Result<OwnedFd, SysError> {
    let fd = sys::open(
        dir.to_str().unwrap_or_default(),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .sys(|| format!("opening {}", dir.display()))?;
    // SAFETY: flock on an fd we own; it stays open for the call.
    sys::cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) })
        .sys(|| format!("locking {}", dir.display()))?;
    Ok(fd)
}

impl Container {
    /// Loads container `id` from `root`; "container does not exist" if absent.
    pub fn load(root: &Path, id: &str) -> Result<Container, StateError> {
        check_id(id)?;
        let dir = dir(root, id);
        let path = dir.join("state.json");
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound {
                    id: id.to_string(),
                    path,
                })
            }
            Err(e) => return Err(Err(e).sys(|| format!("reading {}", path.display()))?),
        };
        let saved: Saved =
            serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { path, source })?;
        Ok(Container { dir, saved })
    }

    /// Writes state.json atomically (temp file + rename; not synced: the state lives as
    /// long as the container, on a tmpfs under /run).
    pub fn save(&self) -> Result<(), StateError> {
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec(&self.saved).expect("state serializes");
        atomic::write_via(
            &tmp,
            &self.dir.join("state.json"),
            &data,
            Durability::NoSync,
        )?;
        Ok(())
    }

    /// The copy of config.json taken at create.
    pub fn config_copy(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The exec fifo's path.
    pub fn fifo(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    /// True while the init (the same process, not a recycled pid) is alive and not a zombie.
    pub fn alive(&self) -> bool {
        alive(self.saved.pid, self.saved.pid_start)
    }

    /// The derived status.
    pub fn status(&self) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if self.saved.creating {
            Status::Creating
        } else if self.saved.paused {
            Status::Paused
        } else if self.fifo().exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The runtime-spec state JSON (plus runc's rootfs/created/owner fields).
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if status == Status::Stopped {
            0
        } else {
            self.saved.pid
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.saved.id,
            "pid": pid,
            "status": status.as_str(),
            "bundle": self.saved.bundle,
            "rootfs": self.saved.rootfs,
            "created": self.saved.created,
            "owner": owner_name(self.saved.owner),
            "annotations": self.saved.annotations,
        })
    }
}

/// True while `pid` with start time `start` is alive and not a zombie.
pub fn alive(pid: i32, start: u64) -> bool {
    berth_sys::proc::alive(pid, Some(start))
}

fn owner_name(uid: u32) -> String {
    if let Ok(p) = std::fs::read_to_string("/etc/passwd") {
        for l in p.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() > 2 && f[2] == uid.to_string() {
                return f[0].to_string();
            }
        }
    }
    uid.to_string()
}

/// Now as RFC 3339 with nanoseconds, UTC (hand-rolled: this runs for every container, and
/// keeping the runtime's hot path small keeps its resident memory small; glibc's `gmtime_r`
/// would also read `/etc/localtime`).
pub fn now_rfc3339() -> String {
    // SAFETY: clock_gettime with a valid out-buffer.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        ts
    };
    let secs = ts.tv_sec;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ts.tv_nsec
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Removes a container directory: the files the runtime puts there, then the directory.
pub fn remove_dir(dir: &Path) {
    for f in ["state.json", "exec.fifo", ".state.json.tmp", "config.json"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    if std::fs::remove_dir(dir).is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_is_allowed_in_its_states() {
        use Status::*;
        let all = [Creating, Created, Running, Paused, Stopped];
        let allowed = |op| {
            all.iter()
                .filter(|s| s.allows(op))
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Op::Start), [Created]);
        assert_eq!(allowed(Op::Kill), [Creating, Created, Running, Paused]);
        assert_eq!(allowed(Op::Delete), [Stopped]);
        assert_eq!(allowed(Op::Pause), [Running]);
        assert_eq!(allowed(Op::Resume), [Paused]);
        assert_eq!(allowed(Op::Exec), [Creating, Created, Running]);
        assert!(Running.check("c", Op::Kill).is_ok());
    }

    #[test]
    fn wrong_state_messages() {
        let msg = |status: Status, op| status.check("c", op).unwrap_err().to_string();
        assert_eq!(
            msg(Status::Stopped, Op::Start),
            "cannot start a container that has stopped: delete it and create it again"
        );
        assert_eq!(
            msg(Status::Paused, Op::Start),
            "cannot start an already running container \"c\""
        );
        assert_eq!(
            msg(Status::Creating, Op::Start),
            "container \"c\" is still being created"
        );
        assert_eq!(
            msg(Status::Stopped, Op::Kill),
            "container not running: \"c\" has stopped (delete it)"
        );
        assert_eq!(
            msg(Status::Running, Op::Delete),
            "cannot delete container \"c\" that is not stopped: running (stop it first or use --force)"
        );
        assert_eq!(
            msg(Status::Created, Op::Pause),
            "cannot pause container \"c\": it is created"
        );
        assert_eq!(
            msg(Status::Running, Op::Resume),
            "cannot resume container \"c\": it is not paused"
        );
        assert_eq!(
            msg(Status::Paused, Op::Exec),
            "cannot exec in a paused container \"c\": resume it first"
        );
        assert_eq!(
            msg(Status::Stopped, Op::Exec),
            "cannot exec in a stopped container \"c\""
        );
    }

    #[test]
    fn a_missing_container_and_a_saved_one() {
        let d = tempfile::tempdir().unwrap();
        let e = Container::load(d.path(), "nope").err().unwrap();
        assert!(matches!(e, StateError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(matches!(
            Container::load(d.path(), "../x"),
            Err(StateError::InvalidId(_))
        ));
        let dir = d.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        let c = Container {
            dir: dir.clone(),
            saved: Saved {
                id: "c".into(),
                pid: 1,
                pid_start: 2,
                bundle: "/b".into(),
                rootfs: "/b/rootfs".into(),
                created: now_rfc3339(),
                annotations: HashMap::new(),
                cgroup: None,
                paused: false,
                no_pivot: false,
                owner: 0,
                creating: false,
            },
        };
        c.save().unwrap();
        assert_eq!(Container::load(d.path(), "c").unwrap().saved.pid_start, 2);
        assert!(!dir.join(".state.json.tmp").exists());
        std::fs::write(dir.join("state.json"), "{").unwrap();
        assert!(matches!(
            Container::load(d.path(), "c"),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok(), "{t}");
        assert_eq!(t.len(), "2026-01-01T00:00:00.000000000Z".len());
    }

    #[test]
    fn dates_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }

    #[test]
    fn ids_follow_runcs_rules() {
        assert!(check_id("abc-1_2+3.4").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_dead_pid_is_not_alive() {
        // SAFETY: getpid cannot fail.
        let me = unsafe { libc::getpid() };
        let start = berth_sys::proc::stat(me).unwrap().start_time;
        assert!(alive(me, start));
        assert!(
            !alive(me, start + 1),
            "a different start time means a recycled pid"
        );
        assert!(!alive(i32::MAX - 1, 0));
    }
}
