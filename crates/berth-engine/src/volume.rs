//! Volumes: named volumes under `<root>/volumes/<name>/_data` (created on
//! first use, filled from the image like Docker), anonymous volumes from the
//! image's `Volumes`, bind mounts and tmpfs from `-v`, `--mount`, `--tmpfs`.

use crate::record::{io_err, now_rfc3339, random_id, write_atomic, RecordError};
use crate::spec::{BindRecursion, MountKind, Propagation, ResolvedMount};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("invalid volume specification {spec:?}: {why}")]
    BadSpec { spec: String, why: String },
    /// A `-v`, `--mount` or `--tmpfs` that berth refuses: unknown option, bad value.
    #[error("invalid {flag} {spec:?}: {why}")]
    BadOption {
        /// The flag.
        flag: MountFlag,
        /// The flag's value.
        spec: String,
        /// What is wrong, and what is valid.
        why: String,
    },
    #[error("bind source path does not exist: {0}")]
    NoSource(String),
    #[error("get {0}: no such volume")]
    NoVolume(String),
    #[error("remove {name}: volume is in use - [{ids}]")]
    InUse { name: String, ids: String },
    #[error("copying image content into volume {name}: {source}")]
    Copy {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Mountpoint")]
    pub mountpoint: PathBuf,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "Labels")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(rename = "Scope")]
    pub scope: String,
    #[serde(rename = "Anonymous", default)]
    pub anonymous: bool,
}

pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

fn bad(spec: &str, why: &str) -> VolumeError {
    VolumeError::BadSpec {
        spec: spec.into(),
        why: why.into(),
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Creates the volume if missing; returns it and whether it was created now.
pub fn ensure(
    root: &Path,
    name: &str,
    labels: &[String],
    anonymous: bool,
) -> Result<(Volume, bool), VolumeError> {
    if !valid_name(name) {
        return Err(bad(name, "volume names use [a-zA-Z0-9][a-zA-Z0-9_.-]"));
    }
    let dir = volumes_dir(root).join(name);
    let meta = dir.join("volume.json");
    if let Ok(d) = fs::read(&meta) {
        if let Ok(v) = serde_json::from_slice(&d) {
            return Ok((v, false));
        }
    }
    let data = dir.join("_data");
    fs::create_dir_all(&data).map_err(|e| RecordError::Io {
        path: data.clone(),
        source: e,
    })?;
    let v = Volume {
        name: name.into(),
        driver: "local".into(),
        mountpoint: data,
        created_at: now_rfc3339(),
        labels: labels
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        scope: "local".into(),
        anonymous,
    };
    write_atomic(&meta, &serde_json::to_vec_pretty(&v).unwrap())?;
    Ok((v, true))
}

pub fn list(root: &Path) -> Result<Vec<Volume>, VolumeError> {
    let dir = volumes_dir(root);
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        if let Ok(d) = fs::read(e.path().join("volume.json")) {
            if let Ok(v) = serde_json::from_slice::<Volume>(&d) {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn get(root: &Path, name: &str) -> Result<Volume, VolumeError> {
    list(root)?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| VolumeError::NoVolume(name.into()))
}

/// Deletes a volume's directory (the caller checked it is unused).
pub fn delete(root: &Path, name: &str) -> Result<(), VolumeError> {
    let dir = volumes_dir(root).join(name);
    if !dir.join("volume.json").exists() {
        return Err(VolumeError::NoVolume(name.into()));
    }
    fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    Ok(())
}

/// The flag a mount came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountFlag {
    /// `-v` / `--volume`.
    Volume,
    /// `--mount`.
    Mount,
    /// `--tmpfs`.
    Tmpfs,
}

impl std::fmt::Display for MountFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MountFlag::Volume => "-v",
            MountFlag::Mount => "--mount",
            MountFlag::Tmpfs => "--tmpfs",
        })
    }
}

/// `-v`'s options, by group: at most one of each (Docker's `linuxValidMountMode`).
const V_ACCESS: [&str; 2] = ["rw", "ro"];
const V_LABEL: [&str; 2] = ["z", "Z"];
const V_COPY: [&str; 1] = ["nocopy"];
const V_CONSISTENCY: [&str; 3] = ["consistent", "cached", "delegated"];

/// `--mount`'s keys.
const MOUNT_KEYS: [&str; 18] = [
    "type",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "consistency",
    "bind-propagation",
    "bind-recursive",
    "bind-nonrecursive",
    "volume-nocopy",
    "volume-label",
    "volume-driver",
    "volume-opt",
    "tmpfs-size",
    "tmpfs-mode",
];

/// Flag options a tmpfs takes (Docker's list, less those that make no sense for a tmpfs).
const TMPFS_FLAGS: [&str; 28] = [
    "defaults",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "unbindable",
    "runbindable",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
];

/// `key=value` options a tmpfs takes.
const TMPFS_DATA: [&str; 7] = [
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// A mount asked for by `-v`, `--mount` or `--tmpfs`, checked, before anything is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// Bind, volume or tmpfs.
    pub kind: MountKind,
    /// A bind's host path (as given), a named volume's name; None for an anonymous volume
    /// and a tmpfs.
    pub source: Option<String>,
    /// Where it is mounted in the container.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
    /// A bind whose missing source is created (`-v`, as Docker does; `--mount` refuses).
    pub create_source: bool,
    /// Binds: what happens to submounts.
    pub recursion: BindRecursion,
    /// Binds: propagation.
    pub propagation: Propagation,
    /// Volumes: not filled from the image (`nocopy`, `volume-nocopy`).
    pub nocopy: bool,
    /// Volumes: labels of a volume created now (`volume-label`).
    pub labels: Vec<String>,
    /// A tmpfs's options (flags and `key=value` data), checked.
    pub tmpfs: Vec<String>,
}

impl MountRequest {
    fn new(kind: MountKind, destination: &str) -> MountRequest {
        MountRequest {
            kind,
            source: None,
            destination: destination.to_string(),
            read_only: false,
            create_source: false,
            recursion: BindRecursion::Enabled,
            propagation: Propagation::Rprivate,
            nocopy: false,
            labels: Vec::new(),
            tmpfs: Vec::new(),
        }
    }
}

/// An error about `spec` given to `flag`.
fn refuse(flag: MountFlag, spec: &str, why: impl Into<String>) -> VolumeError {
    VolumeError::BadOption {
        flag,
        spec: spec.to_string(),
        why: why.into(),
    }
}

/// Checks a container path: absolute, not the root itself.
fn check_destination(flag: MountFlag, spec: &str, dest: &str) -> Result<(), VolumeError> {
    if !dest.starts_with('/') {
        return Err(refuse(
            flag,
            spec,
            format!("the container path {dest:?} must be absolute"),
        ));
    }
    if berth_runtime::rootfs::clean_rel(Path::new(dest)).is_empty() {
        return Err(refuse(flag, spec, "the container path cannot be /"));
    }
    Ok(())
}

/// Parses and checks every `-v`, `--mount` and `--tmpfs` without touching the disk: an
/// unknown option, a bad value or a combination Docker refuses is an error that names the
/// flag, the option and what is valid.
pub fn parse(
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
) -> Result<Vec<MountRequest>, VolumeError> {
    let mut out: Vec<MountRequest> = Vec::new();
    let all = volumes
        .iter()
        .map(|s| (MountFlag::Volume, s))
        .chain(mounts.iter().map(|s| (MountFlag::Mount, s)))
        .chain(tmpfs.iter().map(|s| (MountFlag::Tmpfs, s)));
    for (flag, spec) in all {
        let r = match flag {
            MountFlag::Volume => parse_volume(spec)?,
            MountFlag::Mount => parse_mount(spec)?,
            MountFlag::Tmpfs => parse_tmpfs(spec)?,
        };
        let key = |d: &str| berth_runtime::rootfs::clean_rel(Path::new(d));
        if out
            .iter()
            .any(|o| key(&o.destination) == key(&r.destination))
        {
            return Err(refuse(
                flag,
                spec,
                format!("duplicate mount point {}", r.destination),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

/// `-v [SOURCE:]DESTINATION[:OPTIONS]`.
fn parse_volume(spec: &str) -> Result<MountRequest, VolumeError> {
    let f = MountFlag::Volume;
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dest, mode) = match parts.as_slice() {
        [d] => (None, *d, ""),
        [s, d] => (Some(*s), *d, ""),
        [s, d, m] => (Some(*s), *d, *m),
        _ => return Err(refuse(f, spec, "expected [SOURCE:]DESTINATION[:OPTIONS]")),
    };
    let kind = match src {
        Some("") => return Err(refuse(f, spec, "the source is empty")),
        Some(s) if s.starts_with('/') || s.starts_with('.') => MountKind::Bind,
        Some(s) if !valid_name(s) => {
            return Err(refuse(
                f,
                spec,
                format!(
                    "{s:?} is neither an absolute path nor a volume name \
                     ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
                ),
            ))
        }
        _ => MountKind::Volume,
    };
    let mut r = MountRequest::new(kind, dest);
    r.source = src.map(String::from);
    r.create_source = kind == MountKind::Bind;
    check_options(f, spec, mode, &mut r)?;
    check_destination(f, spec, dest)?;
    Ok(r)
}

/// `-v`'s options into `r`: each known, at most one of each group, and each for the kind of
/// mount it applies to.
fn check_options(
    f: MountFlag,
    spec: &str,
    mode: &str,
    r: &mut MountRequest,
) -> Result<(), VolumeError> {
    let kind = r.kind;
    let valid = || {
        let mut all: Vec<&str> = V_ACCESS.to_vec();
        all.extend(V_LABEL);
        all.extend(Propagation::ALL.map(|(n, _)| n));
        all.extend(V_COPY);
        all.extend(V_CONSISTENCY);
        all.join(", ")
    };
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        let group = if V_ACCESS.contains(&opt) {
            r.read_only = opt == "ro";
            "access mode (rw, ro)"
        } else if V_LABEL.contains(&opt) {
            "SELinux label (z, Z)"
        } else if let Some((_, p)) = Propagation::ALL.iter().find(|(n, _)| *n == opt) {
            r.propagation = *p;
            "propagation"
        } else if V_COPY.contains(&opt) {
            r.nocopy = true;
            "copy mode (nocopy)"
        } else if V_CONSISTENCY.contains(&opt) {
            "consistency"
        } else {
            return Err(refuse(
                f,
                spec,
                format!("unknown option {opt:?} (valid: {})", valid()),
            ));
        };
        if let Some((prev, _)) = seen.iter().find(|(_, g)| *g == group) {
            return Err(refuse(
                f,
                spec,
                format!("{prev:?} and {opt:?} both set the {group}: give one"),
            ));
        }
        seen.push((opt, group));
    }
    if r.nocopy && kind != MountKind::Volume {
        return Err(refuse(f, spec, "nocopy applies to volumes, not binds"));
    }
    if kind == MountKind::Volume && seen.iter().any(|(_, g)| *g == "propagation") {
        return Err(refuse(
            f,
            spec,
            "a propagation option applies to binds, not volumes",
        ));
    }
    Ok(())
}

/// Splits a `--mount` value into fields as Docker does (CSV: a field in double quotes may
/// hold commas, `""` is a quote).
fn csv_fields(spec: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed");
    }
    out.push(cur);
    Ok(out)
}

/// Docker's booleans (`strconv.ParseBool`).
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A size in bytes as Docker's `RAMInBytes` reads it: a number (decimals allowed), an
/// optional space, an optional binary unit k, m, g, t or p, then an optional `i` and `b`.
fn ram_in_bytes(v: &str) -> Option<u64> {
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, rest) = v.split_at(end);
    let n: f64 = num.parse().ok()?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let rest = rest.strip_suffix('b').unwrap_or(&rest);
    let rest = rest.strip_suffix('i').unwrap_or(rest);
    let mult: u64 = match rest {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    let bytes = n * mult as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A tmpfs `size=` in Docker's form: the largest of g, m, k that divides it.
fn tmpfs_size(bytes: u64) -> String {
    for (suffix, div) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if bytes.is_multiple_of(div) {
            return format!("size={}{suffix}", bytes / div);
        }
    }
    format!("size={bytes}")
}

/// `--mount type=TYPE,KEY=VALUE,...`, with docker's keys.
fn parse_mount(spec: &str) -> Result<MountRequest, VolumeError> {
    let f = MountFlag::Mount;
    let fields = csv_fields(spec).map_err(|why| refuse(f, spec, why))?;
    let mut kind = "volume".to_string();
    let mut r = MountRequest::new(MountKind::Volume, "");
    let mut dest = None;
    // The keys given of each type-specific family, for the "cannot mix" check.
    let mut family: Vec<String> = Vec::new();
    let mut recursion = None;
    let mut propagation = None;
    let bad_value = |key: &str, v: &str, valid: &str| {
        refuse(
            f,
            spec,
            format!("invalid value {v:?} for {key} (valid: {valid})"),
        )
    };
    for field in fields.iter().filter(|x| !x.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let value = match (key.as_str(), value) {
            (_, Some(v)) => v,
            ("readonly" | "ro" | "volume-nocopy" | "bind-nonrecursive", None) => "true",
            (_, None) if MOUNT_KEYS.contains(&key.as_str()) => {
                return Err(refuse(f, spec, format!("{key} needs a value: {key}=VALUE")))
            }
            (_, None) => "",
        };
        let bool_of = |v: &str| parse_bool(v).ok_or_else(|| bad_value(&key, v, "true, false"));
        if key.starts_with("bind-") || key.starts_with("volume-") || key.starts_with("tmpfs-") {
            family.push(key.clone());
        }
        match key.as_str() {
            "type" => kind = value.to_ascii_lowercase(),
            "source" | "src" => r.source = Some(value.to_string()),
            "target" | "dst" | "destination" => dest = Some(value.to_string()),
            "readonly" | "ro" => r.read_only = bool_of(value)?,
            "consistency" => {
                const C: [&str; 4] = ["default", "consistent", "cached", "delegated"];
                if !C.contains(&value.to_ascii_lowercase().as_str()) {
                    return Err(bad_value(&key, value, &C.join(", ")));
                }
            }
            "bind-propagation" => {
                let v = value.to_ascii_lowercase();
                let p = Propagation::ALL
                    .iter()
                    .find(|(n, _)| *n == v)
                    .ok_or_else(|| {
                        bad_value(&key, value, &Propagation::ALL.map(|(n, _)| n).join(", "))
                    })?;
                propagation = Some(p.1);
            }
            "bind-recursive" => {
                let v = match parse_bool(value) {
                    Some(true) => "enabled".to_string(),
                    Some(false) => "disabled".to_string(),
                    None => value.to_ascii_lowercase(),
                };
                let b = BindRecursion::ALL
                    .iter()
                    .find(|(n, _)| *n == v)
                    .ok_or_else(|| {
                        bad_value(&key, value, &BindRecursion::ALL.map(|(n, _)| n).join(", "))
                    })?;
                recursion = Some(b.1);
            }
            "bind-nonrecursive" => {
                if bool_of(value)? {
                    recursion = Some(BindRecursion::Disabled);
                }
            }
            "volume-nocopy" => r.nocopy = bool_of(value)?,
            "volume-label" => r.labels.push(value.to_string()),
            "volume-driver" => {
                if value != "local" {
                    return Err(bad_value(&key, value, "local"));
                }
            }
            "volume-opt" => {
                return Err(refuse(
                    f,
                    spec,
                    format!(
                        "volume-opt {value:?}: berth's local volumes are directories and \
                         take no driver options"
                    ),
                ))
            }
            "tmpfs-size" => {
                let b = ram_in_bytes(value).ok_or_else(|| {
                    bad_value(
                        &key,
                        value,
                        "a size in bytes, such as 65536, 64k, 64m or 1g",
                    )
                })?;
                r.tmpfs.push(tmpfs_size(b));
            }
            "tmpfs-mode" => {
                let m = u32::from_str_radix(value, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| bad_value(&key, value, "an octal mode such as 1777"))?;
                r.tmpfs.push(format!("mode={m:o}"));
            }
            _ => {
                return Err(refuse(
                    f,
                    spec,
                    format!(
                        "unknown key {key:?} in {field:?} (valid keys: {})",
                        MOUNT_KEYS.join(", ")
                    ),
                ))
            }
        }
    }
    r.kind = match kind.as_str() {
        "bind" => MountKind::Bind,
        "volume" => MountKind::Volume,
        "tmpfs" => MountKind::Tmpfs,
        other => {
            return Err(refuse(
                f,
                spec,
                format!("unknown mount type {other:?} (valid: bind, volume, tmpfs)"),
            ))
        }
    };
    let dest = dest.ok_or_else(|| refuse(f, spec, "a target= is required"))?;
    check_destination(f, spec, &dest)?;
    r.destination = dest;
    let own = r.kind.as_str();
    if let Some(k) = family.iter().find(|k| !k.starts_with(&format!("{own}-"))) {
        return Err(refuse(
            f,
            spec,
            format!("{k} cannot be used with a mount of type {own}"),
        ));
    }
    if let Some(rec) = recursion {
        let needs_ro = matches!(rec, BindRecursion::Writable | BindRecursion::Readonly);
        if needs_ro && !r.read_only {
            let name = BindRecursion::ALL
                .iter()
                .find(|(_, b)| *b == rec)
                .unwrap()
                .0;
            return Err(refuse(
                f,
                spec,
                format!("bind-recursive={name} needs readonly as well"),
            ));
        }
        r.recursion = rec;
    }
    if let Some(p) = propagation {
        if r.recursion == BindRecursion::Readonly && p != Propagation::Rprivate {
            return Err(refuse(
                f,
                spec,
                format!(
                    "bind-recursive=readonly needs bind-propagation=rprivate, not {}",
                    p.as_str()
                ),
            ));
        }
        r.propagation = p;
    }
    match r.kind {
        MountKind::Bind if r.source.as_deref().unwrap_or("").is_empty() => {
            return Err(refuse(f, spec, "a bind mount needs source="))
        }
        MountKind::Tmpfs if r.source.is_some() => {
            return Err(refuse(f, spec, "a tmpfs takes no source="))
        }
        MountKind::Volume => match r.source.as_deref() {
            Some("") | None if r.read_only => {
                return Err(refuse(
                    f,
                    spec,
                    "an anonymous volume cannot be read-only (it starts empty)",
                ))
            }
            Some("") | None => r.source = None,
            Some(n) if !valid_name(n) => {
                return Err(refuse(
                    f,
                    spec,
                    format!("invalid volume name {n:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
                ))
            }
            Some(_) => {}
        },
        _ => {}
    }
    Ok(r)
}

/// A tmpfs size-like value: digits with an optional k, m, g, t, p or e (and `%` for `size`).
fn tmpfs_number(v: &str, percent: bool) -> bool {
    let v = v.strip_suffix('%').filter(|_| percent).unwrap_or(v);
    let v = v
        .strip_suffix(|c: char| "kKmMgGtTpPeE".contains(c))
        .unwrap_or(v);
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

/// `--tmpfs DESTINATION[:OPTIONS]`.
fn parse_tmpfs(spec: &str) -> Result<MountRequest, VolumeError> {
    let f = MountFlag::Tmpfs;
    let (dest, opts) = spec.split_once(':').unwrap_or((spec, ""));
    check_destination(f, spec, dest)?;
    let mut r = MountRequest::new(MountKind::Tmpfs, dest);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            None if opt == "ro" || opt == "rw" => {
                // Kept in `read_only`, which the spec turns into `ro`.
                r.read_only = opt == "ro";
                continue;
            }
            None if TMPFS_FLAGS.contains(&opt) => {}
            Some((k, v)) if TMPFS_DATA.contains(&k) => {
                let ok = match k {
                    "size" => tmpfs_number(v, true),
                    "nr_inodes" | "nr_blocks" => tmpfs_number(v, false),
                    "mode" => u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777),
                    "uid" | "gid" => v.parse::<u32>().is_ok(),
                    _ => !v.is_empty(),
                };
                if !ok {
                    return Err(refuse(f, spec, format!("invalid value {v:?} for {k}")));
                }
            }
            _ => {
                return Err(refuse(
                    f,
                    spec,
                    format!(
                        "unknown option {opt:?} (valid: {}, and {})",
                        TMPFS_FLAGS.join(", "),
                        TMPFS_DATA.map(|k| format!("{k}=")).join(", ")
                    ),
                ))
            }
        }
        r.tmpfs.push(opt.to_string());
    }
    Ok(r)
}

/// Checks `-v`, `--mount` and `--tmpfs` as [`parse`] does, then makes what they need:
/// missing `-v` bind sources, named and anonymous volumes (also for the image's `Volumes`).
/// Returns the mounts and the names of volumes created now (to be filled from the image at
/// first start, unless `nocopy`). Nothing is made when a flag is refused.
pub fn resolve(
    root: &Path,
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
    image_volumes: &[String],
) -> Result<(Vec<ResolvedMount>, Vec<String>), VolumeError> {
    let mut requests = parse(volumes, mounts, tmpfs)?;
    for dest in image_volumes {
        if !requests.iter().any(|m| m.destination == *dest) {
            requests.push(MountRequest::new(MountKind::Volume, dest));
        }
    }
    let mut out = Vec::new();
    let mut fresh = Vec::new();
    for r in requests {
        let mut m = ResolvedMount {
            kind: r.kind,
            destination: r.destination,
            read_only: r.read_only,
            recursion: r.recursion,
            propagation: r.propagation,
            ..Default::default()
        };
        match r.kind {
            MountKind::Bind => {
                let s = r.source.unwrap_or_default();
                let p = Path::new(&s);
                if r.create_source && !p.exists() {
                    // Docker creates missing bind sources for -v.
                    fs::create_dir_all(p).map_err(io_err(p))?;
                }
                let abs = fs::canonicalize(p).map_err(|_| VolumeError::NoSource(s.clone()))?;
                m.source = abs.to_string_lossy().into_owned();
            }
            MountKind::Volume => {
                m.anonymous = r.source.is_none();
                let name = match r.source {
                    Some(n) => n,
                    None => random_id()?,
                };
                let (v, created) = ensure(root, &name, &r.labels, m.anonymous)?;
                if created && !r.nocopy {
                    fresh.push(name.clone());
                }
                m.source = v.mountpoint.to_string_lossy().into_owned();
                m.name = Some(name);
            }
            MountKind::Tmpfs => {
                m.source = "tmpfs".into();
                m.options = r.tmpfs;
            }
        }
        out.push(m);
    }
    Ok((out, fresh))
}

/// Fills a new volume `dst` with what the image has at `rel` in the container's `rootfs`, as
/// Docker does, keeping modes, owners, times and symlinks. The image is not trusted: `rel` is
/// resolved inside the rootfs and nothing below it is followed
/// ([`berth_runtime::copyup`]). Nothing there, or not a directory: nothing to copy.
pub fn copy_tree(rootfs: &Path, rel: &str, dst: &Path) -> std::io::Result<()> {
    use rustix::fs::{fchmod, fchown, fstat, open, openat, FileType, Gid, Mode, OFlags, Uid};
    use std::os::fd::AsFd;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let Ok(src) = berth_runtime::rootfs::open_in_root(&root, rel.trim_start_matches('/')) else {
        return Ok(());
    };
    let st = fstat(&src)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(());
    }
    let src = openat(&src, c".", dir_flags, Mode::empty())?;
    let to = open(dst, dir_flags, Mode::empty())?;
    fchown(
        &to,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(&to, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    berth_runtime::copyup::copy_dir(src.as_fd(), to.as_fd())
        .map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn specs_parse_into_mounts() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("h");
        fs::create_dir(&host).unwrap();
        let (m, fresh) = resolve(
            t.path(),
            &[
                format!("{}:/data:ro", host.display()),
                "named:/n".into(),
                "/anon".into(),
            ],
            &["type=tmpfs,target=/t,tmpfs-size=1m".into()],
            &["/run:size=2m".into()],
            &["/anon".into(), "/img".into()],
        )
        .unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].kind, MountKind::Bind);
        assert!(m[0].read_only);
        assert_eq!(m[1].name.as_deref(), Some("named"));
        assert!(m[2].anonymous);
        assert_eq!(m[3].options, ["size=1m"]);
        assert_eq!(m[4].options, ["size=2m"]);
        assert_eq!(m[5].destination, "/img");
        assert_eq!(fresh.len(), 3);
        assert!(t.path().join("volumes/named/_data").is_dir());
        // Second use: not fresh.
        let (_, fresh) = resolve(t.path(), &["named:/n".into()], &[], &[], &[]).unwrap();
        assert!(fresh.is_empty());
        assert!(resolve(t.path(), &["rel".into()], &[], &[], &[]).is_err());
    }

    /// The runtime-spec options of the first mount `flags` give (a bind of `dir`).
    fn options_of(volumes: &[String], mounts: &[String]) -> Vec<&'static str> {
        let t = tempfile::tempdir().unwrap();
        let (m, _) = resolve(t.path(), volumes, mounts, &[], &[]).unwrap();
        m[0].bind_options()
    }

    #[test]
    fn read_only_binds_and_volumes_are_recursively_read_only_unless_asked() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().display();
        let v = |s: String| options_of(&[s], &[]);
        let m = |s: String| options_of(&[], &[s]);
        assert_eq!(v(format!("{d}:/n")), ["rbind", "rprivate", "rw"]);
        assert_eq!(v(format!("{d}:/n:ro")), ["rbind", "rprivate", "ro", "rro"]);
        assert_eq!(
            v(format!("{d}:/n:ro,rslave")),
            ["rbind", "rslave", "ro", "rro"]
        );
        assert_eq!(v("vol:/n:ro".into()), ["rbind", "rprivate", "ro", "rro"]);
        let b = format!("type=bind,src={d},dst=/n");
        assert_eq!(
            m(format!("{b},readonly")),
            ["rbind", "rprivate", "ro", "rro"]
        );
        assert_eq!(
            m(format!("{b},ro=1,bind-recursive=readonly")),
            ["rbind", "rprivate", "ro", "rro"]
        );
        assert_eq!(
            m(format!("{b},readonly,bind-recursive=writable")),
            ["rbind", "rprivate", "ro"]
        );
        assert_eq!(
            m(format!("{b},readonly,bind-recursive=disabled")),
            ["bind", "rprivate", "ro"]
        );
        assert_eq!(
            m(format!("{b},bind-recursive=false")),
            ["bind", "rprivate", "rw"]
        );
        assert_eq!(
            m(format!("{b},bind-propagation=rshared")),
            ["rbind", "rshared", "rw"]
        );
        assert_eq!(
            m("type=volume,src=vol,dst=/n,readonly".into()),
            ["rbind", "rprivate", "ro", "rro"]
        );
    }

    #[test]
    fn mount_flags_are_checked_before_anything_is_made() {
        let t = tempfile::tempdir().unwrap();
        let fails = |v: &[&str], m: &[&str], tm: &[&str], flag: MountFlag, words: &[&str]| {
            let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            // parse: a case that wrongly passes must not create host paths such as /x.
            let e = parse(&s(v), &s(m), &s(tm)).unwrap_err();
            assert!(
                matches!(&e, VolumeError::BadOption { flag: f, .. } if *f == flag),
                "{e}"
            );
            let text = e.to_string();
            for w in words {
                assert!(text.contains(w), "{w:?} not in {text:?}");
            }
        };
        let v = MountFlag::Volume;
        fails(
            &["new:/n", "a:b:bogus"],
            &[],
            &[],
            v,
            &["-v", "bogus", "ro", "nocopy"],
        );
        fails(&["/x:/n:ro,rw"], &[], &[], v, &["ro", "rw"]);
        fails(
            &["/x:/n:rshared,rslave"],
            &[],
            &[],
            v,
            &["rshared", "rslave"],
        );
        fails(&["v:/n:rshared"], &[], &[], v, &["propagation"]);
        fails(&["/x:/n:nocopy"], &[], &[], v, &["nocopy"]);
        fails(&["/x:n"], &[], &[], v, &["absolute"]);
        fails(&["/x:/"], &[], &[], v, &["/"]);
        fails(&["/x:/a/.."], &[], &[], v, &["cannot be /"]);
        fails(
            &["/x:/n", "/y:/n/"],
            &[],
            &[],
            v,
            &["duplicate mount point"],
        );
        fails(&["/x:/n"], &[], &["/n"], MountFlag::Tmpfs, &["duplicate"]);
        fails(&["a b:/n"], &[], &[], v, &["volume name"]);
        fails(&["/a:/b:ro:x"], &[], &[], v, &["[SOURCE:]"]);
        let m = MountFlag::Mount;
        fails(
            &[],
            &["type=bind,src=/x,dst=/n,x=1"],
            &[],
            m,
            &["--mount", "\"x\"", "bind-recursive"],
        );
        fails(
            &[],
            &["type=bind,src=/x,dst=/n,bind-recursive=no-way"],
            &[],
            m,
            &["no-way", "writable"],
        );
        fails(
            &[],
            &["type=bind,src=/x,dst=/n,bind-recursive=readonly"],
            &[],
            m,
            &["readonly"],
        );
        fails(
            &[],
            &["type=bind,src=/x,dst=/n,ro,bind-recursive=readonly,bind-propagation=shared"],
            &[],
            m,
            &["rprivate", "shared"],
        );
        fails(
            &[],
            &["type=bind,src=/x,dst=/n,bind-propagation=up"],
            &[],
            m,
            &["rslave"],
        );
        fails(
            &[],
            &["type=bind,src=/x,dst=/n,readonly=yes"],
            &[],
            m,
            &["yes"],
        );
        fails(&[], &["type=tmpfs,dst=/n,tmpfs-mode=999"], &[], m, &["999"]);
        fails(&[], &["type=tmpfs,src=x,dst=/n"], &[], m, &["source"]);
        fails(
            &[],
            &["type=tmpfs,dst=/n,volume-nocopy"],
            &[],
            m,
            &["volume-nocopy", "tmpfs"],
        );
        fails(&[], &["type=bind,dst=/n"], &[], m, &["source="]);
        fails(
            &[],
            &["type=volume,dst=/n,volume-opt=type=nfs"],
            &[],
            m,
            &["volume-opt"],
        );
        fails(
            &[],
            &["type=volume,dst=/n,volume-driver=nfs"],
            &[],
            m,
            &["local"],
        );
        fails(&[], &["type=volume,dst=/n,ro"], &[], m, &["anonymous"]);
        fails(
            &[],
            &["type=image,src=x,dst=/n"],
            &[],
            m,
            &["image", "tmpfs"],
        );
        fails(&[], &["src=/x"], &[], m, &["target"]);
        fails(&[], &["\"type=bind,dst=/n"], &[], m, &["quote"]);
        let tm = MountFlag::Tmpfs;
        fails(
            &[],
            &[],
            &["/t:bogus"],
            tm,
            &["--tmpfs", "bogus", "noexec", "size="],
        );
        fails(&[], &[], &["/t:size=1q"], tm, &["size"]);
        fails(&[], &[], &["/t:mode=9"], tm, &["mode"]);
        fails(&[], &[], &["/t:uid=x"], tm, &["uid"]);
        fails(&[], &[], &["t"], tm, &["absolute"]);
        // A bad flag stops everything: the volume before it is not made.
        let e = resolve(
            t.path(),
            &["new:/n".into(), "a:/b:bogus".into()],
            &[],
            &[],
            &[],
        );
        assert!(matches!(e, Err(VolumeError::BadOption { .. })));
        assert!(!volumes_dir(t.path()).join("new").exists());
    }

    #[test]
    fn docker_forms_of_mount_values_are_read() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        fs::create_dir(&d).unwrap();
        let (m, fresh) = resolve(
            t.path(),
            &["keep:/k:nocopy,ro".into()],
            &[
                format!(
                    "\"type=bind\",\"source={}\",target=/b,ro=false",
                    d.display()
                ),
                "type=tmpfs,dst=/t,tmpfs-size=1.5g,tmpfs-mode=0700,readonly".into(),
                "type=tmpfs,dst=/u,tmpfs-size=1000".into(),
                "type=volume,source=lab,target=/l,volume-label=a=b,volume-driver=local".into(),
            ],
            &["/r:ro,size=10%,nr_inodes=1k,uid=1,gid=2,mode=1777,mpol=local,exec".into()],
            &[],
        )
        .unwrap();
        assert_eq!(
            fresh,
            ["lab"],
            "nocopy volumes are not filled from the image"
        );
        assert!(m[0].read_only);
        assert_eq!(m[1].source, d.canonicalize().unwrap().to_string_lossy());
        assert!(!m[1].read_only);
        assert_eq!(m[2].options, ["size=1536m", "mode=700"]);
        assert!(m[2].read_only);
        assert_eq!(m[3].options, ["size=1000"]);
        assert_eq!(get(t.path(), "lab").unwrap().labels["a"], "b");
        assert!(m[5].read_only && m[5].options.contains(&"exec".to_string()));
        assert!(
            !m[5].options.contains(&"ro".to_string()),
            "read_only carries it"
        );
    }
}
