//! Image config + `berth run` flags -> the OCI runtime spec (`config.json`).
//!
//! The spec is built as typed [`oci_spec::runtime::Spec`] values by small steps, one per
//! concern, applied in order to an empty spec ([`STEPS`]; containerd's `SpecOpts` are the
//! model): [`process`] (command, environment, user, capabilities, rlimits), [`mounts`]
//! (kernel filesystems, the /etc files, volumes and tmpfs), [`linux`] (namespaces,
//! resources, devices, masked paths, sysctls, seccomp, cgroup path). The engine applies two
//! more once it knows them: [`with_network_namespace`] and [`with_init`].
//!
//! Pure functions: everything read from disk (the container's passwd/group, the caller's
//! limits, resolved volume sources) comes in through [`SpecContext`].

pub mod linux;
pub mod mounts;
pub mod process;

use crate::options::{DeviceSpec, RunOptions};
use crate::{seccomp, user};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use mounts::{BindRecursion, MountKind, Propagation, ResolvedMount};
pub use process::{capabilities, command, environment, security_opts, SecurityOpts};

/// The `PATH` a container gets when its image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `ociVersion` berth writes.
pub const OCI_VERSION: &str = "1.0.2";

pub use crate::caps::{ALL_CAPS, DEFAULT_CAPS};

/// Docker's masked paths (not with `--privileged`).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths (not with `--privileged`).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Why a spec cannot be built from an image and a set of options.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "no command specified: the image has no Entrypoint or Cmd; give one after the image name"
    )]
    NoCommand,
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error("invalid capability {0:?}: see capabilities(7) for the names (with or without CAP_)")]
    BadCap(String),
    #[error("invalid {flag} value {value:?}: {why}")]
    BadFlag {
        flag: &'static str,
        value: String,
        why: String,
    },
    #[error("ulimit {name}: the requested hard limit {requested} is above the caller's hard limit {max}; berth lacks CAP_SYS_RESOURCE to raise it: ask for at most {max}")]
    UlimitTooHigh {
        name: String,
        requested: u64,
        max: u64,
    },
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("device {path}: {why}")]
    Device { path: String, why: String },
    #[error("building the spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
    /// A flag's value refused by [`RunOptions::check`].
    #[error(transparent)]
    Option(#[from] crate::options::OptionError),
}

fn bad(flag: &'static str, value: &str, why: impl Into<String>) -> SpecError {
    SpecError::BadFlag {
        flag,
        value: value.to_string(),
        why: why.into(),
    }
}

/// A host device to expose (`--device`), already stat'ed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostDevice {
    pub path_in_container: String,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub permissions: String,
}

impl HostDevice {
    /// Stats `--device`'s host node, which must be a character or block device.
    pub fn stat(d: &DeviceSpec) -> Result<HostDevice, SpecError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let err = |why: String| SpecError::Device {
            path: d.host.clone(),
            why,
        };
        let m = std::fs::metadata(&d.host).map_err(|e| err(e.to_string()))?;
        let ft = m.file_type();
        let kind = if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else {
            return Err(err("not a device node".into()));
        };
        let rdev = m.rdev();
        Ok(HostDevice {
            path_in_container: d.container.clone(),
            kind,
            major: rustix::fs::major(rdev) as i64,
            minor: rustix::fs::minor(rdev) as i64,
            file_mode: m.mode() & 0o777,
            permissions: d.permissions.clone(),
        })
    }
}

/// Facts from the host and the container's files that the spec depends on.
#[derive(Debug, Clone, Default)]
pub struct SpecContext {
    pub id: String,
    /// The container's hostname (also its `HOSTNAME`): `-h`, the id's first 12 digits, the
    /// host's with `--network host`, the other container's with `container:NAME`.
    pub hostname: String,
    pub rootfs: PathBuf,
    /// Where hosts, hostname and resolv.conf live.
    pub container_dir: PathBuf,
    /// Contents of the container's /etc/passwd and /etc/group (empty if absent).
    pub passwd: String,
    pub group: String,
    pub mounts: Vec<ResolvedMount>,
    pub devices: Vec<HostDevice>,
    /// The caller's hard RLIMIT_NOFILE and whether it may raise hard limits.
    pub nofile_hard: u64,
    pub can_raise_limits: bool,
    /// Docker's name for the host architecture (amd64, arm64, ...).
    pub arch: String,
    /// Host values of `-e NAME` without a value.
    pub host_env: BTreeMap<String, String>,
    /// Contents of `--env-file`s, in order.
    pub env_files: Vec<String>,
    /// The runtime cgroup parent (`/berth`).
    pub cgroup_parent: String,
    /// The caller's bounding set (bit per capability); 0 = unknown, no filter.
    /// `--privileged` and `--cap-add ALL` cannot give more than this.
    pub bounding: u64,
}

/// What every step reads: the image, the options, the host's facts, and what is derived
/// from them once (the capability set, the security options).
pub struct Inputs<'a> {
    pub image: &'a ImageConfiguration,
    pub opts: &'a RunOptions,
    pub ctx: &'a SpecContext,
    /// The text of `--security-opt seccomp=PROFILE`, read by the caller.
    pub seccomp_file: Option<&'a str>,
    /// The capabilities after `--cap-add`/`--cap-drop`/`--privileged` and the caller's
    /// bounding set, as `CAP_*` names.
    pub caps: Vec<String>,
    pub security: SecurityOpts,
}

impl<'a> Inputs<'a> {
    /// Derives what the steps share; fails on an invalid capability or security option.
    pub fn new(
        image: &'a ImageConfiguration,
        opts: &'a RunOptions,
        ctx: &'a SpecContext,
        seccomp_file: Option<&'a str>,
    ) -> Result<Inputs<'a>, SpecError> {
        let mut caps = capabilities(opts);
        if ctx.bounding != 0 {
            caps.retain(|c| {
                let bit = ALL_CAPS.iter().position(|x| x == c).unwrap_or(63);
                ctx.bounding & (1u64 << bit) != 0
            });
        }
        Ok(Inputs {
            image,
            opts,
            ctx,
            seccomp_file,
            caps,
            security: security_opts(opts),
        })
    }
}

/// One concern of the spec, applied to it in place.
pub type Step = fn(&mut Spec, &Inputs) -> Result<(), SpecError>;

/// The steps of [`generate`], in order. Later steps may read what earlier ones set.
pub const STEPS: &[Step] = &[
    with_version,
    with_root,
    with_hostname,
    process::with_process,
    mounts::with_mounts,
    linux::with_linux,
];

/// An empty spec: `Spec::default()` is a sample container (youki's), not a blank one.
pub fn empty() -> Spec {
    let mut s = Spec::default();
    s.set_version(String::new())
        .set_root(None)
        .set_mounts(None)
        .set_process(None)
        .set_hostname(None)
        .set_annotations(None)
        .set_linux(None);
    s
}

/// Builds the whole runtime spec: [`STEPS`] applied to [`empty`].
pub fn generate(
    image: &ImageConfiguration,
    opts: &RunOptions,
    ctx: &SpecContext,
    seccomp_file: Option<&str>,
) -> Result<Spec, SpecError> {
    let inputs = Inputs::new(image, opts, ctx, seccomp_file)?;
    let mut spec = empty();
    for step in STEPS {
        step(&mut spec, &inputs)?;
    }
    Ok(spec)
}

/// `ociVersion`.
pub fn with_version(spec: &mut Spec, _: &Inputs) -> Result<(), SpecError> {
    spec.set_version(OCI_VERSION.into());
    Ok(())
}

/// `root`: the overlay mountpoint, read-only with `--read-only`.
pub fn with_root(spec: &mut Spec, i: &Inputs) -> Result<(), SpecError> {
    let mut root = oci_spec::runtime::Root::default();
    root.set_path(i.ctx.rootfs.clone())
        .set_readonly(Some(i.opts.read_only));
    spec.set_root(Some(root));
    Ok(())
}

/// `hostname`: [`SpecContext::hostname`].
pub fn with_hostname(spec: &mut Spec, i: &Inputs) -> Result<(), SpecError> {
    spec.set_hostname(Some(i.ctx.hostname.clone()));
    Ok(())
}

/// The hostname: `--hostname` or the first 12 hex digits of the id.
pub fn hostname(opts: &RunOptions, id: &str) -> String {
    opts.hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect())
}

/// Joins the network namespace bind-mounted at `path` instead of creating one.
pub fn with_network_namespace(spec: &mut Spec, path: &Path) {
    linux::set_namespace_path(spec, LinuxNamespaceType::Network, path);
}

/// `--init`: the init's program before the container's command, and its directory
/// bind-mounted read-only at [`crate::init::INIT_DIR`].
pub fn with_init(spec: &mut Spec, args_prefix: &[String], host_dir: &Path) {
    if let Some(p) = spec.process_mut() {
        let mut args = args_prefix.to_vec();
        args.extend(p.args().iter().flatten().cloned());
        p.set_args(Some(args));
    }
    let init = mounts::mount(
        crate::init::INIT_DIR,
        "bind",
        host_dir,
        &["rbind", "ro", "nosuid", "nodev"],
    );
    spec.mounts_mut().get_or_insert_with(Vec::new).push(init);
}

/// Whether no process can reach a container's init before it execs the program: the spec
/// gives it a new pid namespace and has no hooks (a startContainer hook would run in the
/// container while the init waits). Only then may the init be cloned from berth's own binary.
pub fn init_unreachable(spec: &Spec) -> bool {
    let own_pid_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|l| {
            l.iter().any(|n| {
                n.typ() == LinuxNamespaceType::Pid
                    && n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
            })
        });
    own_pid_ns && spec.hooks().is_none()
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests;
