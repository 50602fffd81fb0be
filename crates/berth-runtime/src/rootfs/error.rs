//! The errors of the root filesystem's set-up: what was being done, on which path, and the
//! OS error (so its errno survives).

use super::syscall::BoxError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A step of the root filesystem's set-up, with the path it was working on; its `Display` is
/// the message people read ("creating /dev/pts in the rootfs").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Setting the propagation of `/` in the new mount namespace.
    RootPropagation,
    /// Making the mount holding the rootfs private, for pivot_root.
    MakePrivate(String),
    /// Bind-mounting the rootfs onto itself.
    BindRootfs(String),
    /// Opening the rootfs directory.
    OpenRootfs(String),
    /// Reading `/proc/self/mountinfo`.
    ReadMountinfo,
    /// Reading `/proc/self/cgroup`.
    ReadProcCgroup,
    /// Opening the root while creating directories.
    OpenRoot,
    /// A path with a NUL byte in it.
    BadPath,
    /// Creating `/rel` in the rootfs.
    Create(String),
    /// Reading a dangling symlink met while creating directories.
    ReadLink(String),
    /// Opening `/rel` in the rootfs.
    Open(String),
    /// Opening a mount target `/rel` in the rootfs.
    OpenTarget(String),
    /// stat of a bind mount's source.
    BindSource(String),
    /// Bind-mounting a host path (or the container's cgroup directory).
    Bind(String),
    /// Reopening a mount target after mounting on it.
    Reopen,
    /// Opening the directory a tmpcopyup tmpfs will cover.
    OpenCovered(String),
    /// Opening the new tmpfs of a tmpcopyup mount.
    OpenTmpfs(String),
    /// mount -t TYPE SOURCE with DATA.
    MountFs {
        /// The filesystem type.
        typ: String,
        /// The mount's source.
        src: String,
        /// The comma-separated data.
        data: String,
    },
    /// Bind-mounting the host's /sys where sysfs may not be mounted.
    BindSys,
    /// statfs of a new mount.
    Statfs,
    /// statvfs of a mount whose flags are locked.
    Statvfs,
    /// Remounting with the requested flags.
    Remount,
    /// Setting a mount's propagation.
    Propagation,
    /// mount_setattr for the recursive options.
    SetAttr,
    /// Finding the mount id of a mount whose tree is remounted.
    MountId,
    /// Opening a submount (its host path) of a tree remounted one mount at a time.
    OpenSubmount(String),
    /// Remounting a submount (its host path) with the recursive options' flags.
    RemountSubmount(String),
    /// mount -t cgroup2.
    MountCgroup2,
    /// The tmpfs holding the cgroup v1 hierarchies.
    CgroupTmpfs,
    /// Remounting that tmpfs read-only.
    CgroupTmpfsReadOnly,
    /// Creating the /dev/ptmx symlink.
    DevPtmx,
    /// fstat of `/rel` (a device already in the rootfs).
    FstatDevice(String),
    /// A device name with a NUL byte.
    BadDeviceName,
    /// Bind-mounting a host device (in a user namespace).
    BindDevice(String),
    /// mknod of `/rel`.
    Mknod(String),
    /// chown of `/rel`.
    Chown(String),
    /// A rootfs path with a NUL byte.
    BadRootPath,
    /// chdir into the rootfs.
    Chdir(String),
    /// MS_MOVE of the rootfs to `/` (--no-pivot).
    MoveRoot,
    /// chroot(".") (--no-pivot).
    Chroot,
    /// Opening `/`.
    OpenSlash,
    /// pivot_root into the rootfs.
    PivotRoot(String),
    /// fchdir back to the old root.
    FchdirOldRoot,
    /// Making the old root a slave before detaching it.
    OldRootSlave,
    /// Detaching the old root.
    DetachOldRoot,
    /// chdir("/") in the new root.
    ChdirSlash,
    /// linux.rootfsPropagation on the new root.
    ApplyPropagation,
    /// Opening /dev/null in the container without following symlinks.
    OpenDevNull,
    /// fstat of /dev/null.
    FstatDevNull,
    /// Opening a masked path.
    OpenMasked(String),
    /// fstat of a masked path.
    FstatMasked(String),
    /// Masking a directory with a read-only tmpfs.
    MaskTmpfs(String),
    /// Masking a file with /dev/null.
    MaskNull(String),
    /// Opening a read-only path.
    OpenReadonly(String),
    /// Bind-mounting a read-only path onto itself.
    BindReadonly(String),
    /// Reopening a read-only path after its bind mount.
    ReopenReadonly(String),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Step::*;
        match self {
            RootPropagation => {
                write!(
                    f,
                    "setting the propagation of / in the container's mount namespace"
                )
            }
            MakePrivate(p) => write!(f, "making {p} private for pivot_root"),
            BindRootfs(r) => write!(f, "bind-mounting the rootfs {r} onto itself"),
            OpenRootfs(r) => write!(f, "opening the rootfs {r}"),
            ReadMountinfo => write!(f, "reading mountinfo"),
            ReadProcCgroup => write!(f, "reading /proc/self/cgroup"),
            OpenRoot => write!(f, "opening the rootfs"),
            BadPath => write!(f, "bad path"),
            Create(rel) => write!(f, "creating /{rel} in the rootfs"),
            ReadLink(rel) => write!(f, "reading the symlink /{rel} in the rootfs"),
            Open(rel) => write!(f, "opening /{rel} in the rootfs"),
            OpenTarget(rel) => write!(f, "opening mount target /{rel} in the rootfs"),
            BindSource(src) => write!(f, "bind source {src}"),
            Bind(src) => write!(f, "bind-mounting {src}"),
            Reopen => write!(f, "reopening the target"),
            OpenCovered(rel) => write!(f, "opening /{rel} for tmpcopyup"),
            OpenTmpfs(rel) => write!(f, "opening the tmpfs at /{rel}"),
            MountFs { typ, src, data } => write!(f, "mount -t {typ} {src} with {data:?}"),
            BindSys => write!(f, "bind-mounting /sys (sysfs mount not permitted)"),
            Statfs => write!(f, "statfs of the new mount"),
            Statvfs => write!(f, "statvfs"),
            Remount => write!(f, "remounting with the requested flags"),
            Propagation => write!(f, "setting mount propagation"),
            SetAttr => write!(f, "mount_setattr (recursive mount options such as rro)"),
            MountId => write!(f, "finding the mount id (/proc/self/fdinfo)"),
            OpenSubmount(p) => write!(f, "opening the submount {p}"),
            RemountSubmount(p) => write!(
                f,
                "remounting the submount {p} (recursive mount options without mount_setattr)"
            ),
            MountCgroup2 => write!(f, "mount -t cgroup2"),
            CgroupTmpfs => write!(f, "mounting the tmpfs for cgroup v1 hierarchies"),
            CgroupTmpfsReadOnly => write!(f, "remounting the cgroup tmpfs read-only"),
            DevPtmx => write!(f, "creating /dev/ptmx"),
            FstatDevice(rel) => write!(f, "fstat /{rel}"),
            BadDeviceName => write!(f, "bad device name"),
            BindDevice(host) => write!(f, "bind-mounting device {host}"),
            Mknod(rel) => write!(f, "mknod /{rel}"),
            Chown(rel) => write!(f, "chown /{rel}"),
            BadRootPath => write!(f, "bad rootfs path"),
            Chdir(root) => write!(f, "chdir {root}"),
            MoveRoot => write!(f, "moving the rootfs to /"),
            Chroot => write!(f, "chroot"),
            OpenSlash => write!(f, "opening /"),
            PivotRoot(root) => write!(f, "pivot_root into {root} (use --no-pivot on a ramfs root)"),
            FchdirOldRoot => write!(f, "fchdir to the old root"),
            OldRootSlave => write!(f, "making the old root a slave"),
            DetachOldRoot => write!(f, "detaching the old root"),
            ChdirSlash => write!(f, "chdir /"),
            ApplyPropagation => write!(f, "applying linux.rootfsPropagation to the root"),
            OpenDevNull => write!(
                f,
                "opening /dev/null in the container (it must be a device, not a symlink)"
            ),
            FstatDevNull => write!(f, "fstat /dev/null"),
            OpenMasked(p) => write!(f, "opening masked path {p}"),
            FstatMasked(p) => write!(f, "fstat {p}"),
            MaskTmpfs(p) => write!(f, "masking {p} with a read-only tmpfs"),
            MaskNull(p) => write!(f, "masking {p} with /dev/null"),
            OpenReadonly(p) => write!(f, "opening read-only path {p}"),
            BindReadonly(p) => write!(f, "bind-mounting read-only path {p}"),
            ReopenReadonly(p) => write!(f, "reopening {p}"),
        }
    }
}

/// Errors of the root filesystem's set-up.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A system call failed during `step`.
    #[error("{step}: {source}")]
    Sys {
        /// What was being done, on which path.
        step: Step,
        /// The OS error.
        source: io::Error,
    },
    /// Creating directories met more than 40 symlinks.
    #[error("too many levels of symbolic links creating /{0} in the rootfs")]
    TooManyLinks(String),
    /// A bind mount has no source.
    #[error("bind mount without a source")]
    BindWithoutSource,
    /// After mounting proc, sysfs or devpts, the target is not that filesystem.
    #[error("/{rel} is not a {typ} mount after mounting it (the rootfs raced the runtime)")]
    Raced {
        /// The mount's target in the rootfs.
        rel: String,
        /// The filesystem type mounted.
        typ: String,
    },
    /// A linux.devices entry outside /dev.
    #[error("linux.devices path {} must be under /dev", .0.display())]
    DeviceOutsideDev(PathBuf),
    /// A linux.devices entry of type "a".
    #[error("linux.devices {}: type \"a\" is not a device type", .0.display())]
    DeviceTypeAll(PathBuf),
    /// A linux.devices entry where the rootfs has another file.
    #[error("linux.devices {}: a different file already exists there in the rootfs", .0.display())]
    DeviceExists(PathBuf),
    /// /dev/null in the container is not char 1:3.
    #[error("/dev/null in the container is not the null device (char 1:3): refusing to use it for maskedPaths")]
    NotNullDevice,
    /// One of the spec's mounts failed.
    #[error("mounting {} ({typ}): {source}", dest.display())]
    Mount {
        /// The mount's destination.
        dest: PathBuf,
        /// Its type ("bind" when none).
        typ: String,
        /// What failed.
        source: Box<RootfsError>,
    },
    /// root.readonly could not be applied.
    #[error("making the root read-only: {0}")]
    ReadOnlyRoot(Box<RootfsError>),
    /// A linux.readonlyPaths entry could not be made read-only.
    #[error("making {path} read-only: {source}")]
    ReadOnlyPath {
        /// The path as the spec gives it.
        path: String,
        /// What failed.
        source: Box<RootfsError>,
    },
    /// The tmpcopyup copy failed.
    #[error("/{rel}: {source}")]
    Copyup {
        /// The tmpfs's target in the rootfs.
        rel: String,
        /// The copy's error.
        source: BoxError,
    },
    /// Attaching an idmapped tree failed.
    #[error(transparent)]
    Idmap(BoxError),
    /// Waiting to be in the container's cgroups failed.
    #[error(transparent)]
    Cgroup(BoxError),
}

impl RootfsError {
    /// The OS errno behind the error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RootfsError::Sys { source, .. } => source.raw_os_error(),
            RootfsError::Mount { source, .. } | RootfsError::ReadOnlyPath { source, .. } => {
                source.errno()
            }
            RootfsError::ReadOnlyRoot(source) => source.errno(),
            RootfsError::Copyup { source, .. } | RootfsError::Idmap(source) => {
                errno_of(source.as_ref())
            }
            RootfsError::Cgroup(e) => errno_of(e.as_ref()),
            _ => None,
        }
    }
}

/// The errno of a boxed error: the first OS error in its chain of sources.
fn errno_of(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<i32> {
    crate::sys::chain_errno(e)
}

/// Adds the step to an `io::Result`.
pub(super) trait StepCtx<T> {
    /// Wraps the error as [`RootfsError::Sys`] of `step`.
    fn step(self, step: impl FnOnce() -> Step) -> Result<T, RootfsError>;
}

impl<T> StepCtx<T> for io::Result<T> {
    fn step(self, step: impl FnOnce() -> Step) -> Result<T, RootfsError> {
        self.map_err(|source| RootfsError::Sys {
            step: step(),
            source,
        })
    }
}
