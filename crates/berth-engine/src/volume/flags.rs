//! The `-v`, `--mount` and `--tmpfs` flags, read as Docker reads them and checked before
//! anything is made: every option known, every value valid, no combination Docker refuses.
//! A refusal names the flag, its value, what is wrong and what is valid ([`FlagError`]).

use crate::spec::{BindRecursion, MountKind, Propagation};
use std::path::Path;

/// A `-v`, `--mount` or `--tmpfs` value that berth refuses.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {spec:?}: {why}")]
pub struct FlagError {
    /// The flag.
    pub flag: MountFlag,
    /// The flag's value.
    pub spec: String,
    /// What is wrong, and what is valid.
    pub why: String,
}

/// Whether `n` is a volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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
    /// A request for a mount of `kind` at `destination`, with Docker's defaults.
    pub fn new(kind: MountKind, destination: &str) -> MountRequest {
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
fn refuse(flag: MountFlag, spec: &str, why: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        spec: spec.to_string(),
        why: why.into(),
    }
}

/// Checks a container path: absolute, not the root itself.
fn check_destination(dest: &str) -> Result<(), String> {
    if !dest.starts_with('/') {
        return Err(format!("the container path {dest:?} must be absolute"));
    }
    if berth_runtime::rootfs::clean_rel(Path::new(dest)).is_empty() {
        return Err("the container path cannot be /".into());
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
) -> Result<Vec<MountRequest>, FlagError> {
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
fn parse_volume(spec: &str) -> Result<MountRequest, FlagError> {
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
    check_destination(dest).map_err(|why| refuse(f, spec, why))?;
    Ok(r)
}

/// `-v`'s options into `r`: each known, at most one of each group, and each for the kind of
/// mount it applies to.
fn check_options(
    f: MountFlag,
    spec: &str,
    mode: &str,
    r: &mut MountRequest,
) -> Result<(), FlagError> {
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

/// `--mount type=TYPE,KEY=VALUE,...`, with Docker's keys.
fn parse_mount(spec: &str) -> Result<MountRequest, FlagError> {
    let f = MountFlag::Mount;
    let fields = csv_fields(spec).map_err(|why| refuse(f, spec, why))?;
    let mut m = MountFields::default();
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
        m.set(&key, value, field)
            .map_err(|why| refuse(f, spec, why))?;
    }
    m.finish().map_err(|why| refuse(f, spec, why))
}

/// `--mount`'s fields as they are read, checked together at the end.
#[derive(Default)]
struct MountFields {
    /// `type=`, as given (volume when missing).
    kind: Option<String>,
    /// `target=`.
    destination: Option<String>,
    /// The `bind-*`, `volume-*` and `tmpfs-*` keys given, for the "cannot mix" check.
    family: Vec<String>,
    /// `bind-recursive=` (or `bind-nonrecursive`).
    recursion: Option<BindRecursion>,
    /// `bind-propagation=`.
    propagation: Option<Propagation>,
    /// The rest, straight into the request.
    r: Option<MountRequest>,
}

/// "invalid value ... (valid: ...)".
fn bad_value(key: &str, value: &str, valid: &str) -> String {
    format!("invalid value {value:?} for {key} (valid: {valid})")
}

/// One of `all` by name (case-insensitive), or the error that lists them.
fn one_of<T: Copy>(all: &[(&str, T)], key: &str, value: &str) -> Result<T, String> {
    let v = value.to_ascii_lowercase();
    all.iter()
        .find(|(n, _)| *n == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
            bad_value(key, value, &names.join(", "))
        })
}

impl MountFields {
    /// Applies `key=value` (from `field`); the error says why not.
    fn set(&mut self, key: &str, value: &str, field: &str) -> Result<(), String> {
        let bool_of = |v: &str| parse_bool(v).ok_or_else(|| bad_value(key, v, "true, false"));
        if ["bind-", "volume-", "tmpfs-"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            self.family.push(key.to_string());
        }
        let r = self
            .r
            .get_or_insert_with(|| MountRequest::new(MountKind::Volume, ""));
        match key {
            "type" => self.kind = Some(value.to_ascii_lowercase()),
            "source" | "src" => r.source = Some(value.to_string()),
            "target" | "dst" | "destination" => self.destination = Some(value.to_string()),
            "readonly" | "ro" => r.read_only = bool_of(value)?,
            "consistency" => {
                const C: [(&str, ()); 4] = [
                    ("default", ()),
                    ("consistent", ()),
                    ("cached", ()),
                    ("delegated", ()),
                ];
                one_of(&C, key, value)?;
            }
            "bind-propagation" => self.propagation = Some(one_of(&Propagation::ALL, key, value)?),
            "bind-recursive" => {
                let v = match parse_bool(value) {
                    Some(true) => "enabled",
                    Some(false) => "disabled",
                    None => value,
                };
                self.recursion = Some(one_of(&BindRecursion::ALL, key, v)?);
            }
            "bind-nonrecursive" => {
                if bool_of(value)? {
                    self.recursion = Some(BindRecursion::Disabled);
                }
            }
            "volume-nocopy" => r.nocopy = bool_of(value)?,
            "volume-label" => r.labels.push(value.to_string()),
            "volume-driver" if value != "local" => return Err(bad_value(key, value, "local")),
            "volume-driver" => {}
            "volume-opt" => {
                return Err(format!(
                    "volume-opt {value:?}: berth's local volumes are directories and take no \
                     driver options"
                ))
            }
            "tmpfs-size" => {
                let b = ram_in_bytes(value).ok_or_else(|| {
                    bad_value(key, value, "a size in bytes, such as 65536, 64k, 64m or 1g")
                })?;
                r.tmpfs.push(tmpfs_size(b));
            }
            "tmpfs-mode" => {
                let m = u32::from_str_radix(value, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| bad_value(key, value, "an octal mode such as 1777"))?;
                r.tmpfs.push(format!("mode={m:o}"));
            }
            _ => {
                return Err(format!(
                    "unknown key {key:?} in {field:?} (valid keys: {})",
                    MOUNT_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// The request, once the fields agree with each other and with the type.
    fn finish(self) -> Result<MountRequest, String> {
        let mut r = self
            .r
            .unwrap_or_else(|| MountRequest::new(MountKind::Volume, ""));
        const KINDS: [(&str, MountKind); 3] = [
            ("bind", MountKind::Bind),
            ("volume", MountKind::Volume),
            ("tmpfs", MountKind::Tmpfs),
        ];
        let kind = self.kind.as_deref().unwrap_or("volume");
        r.kind = KINDS
            .iter()
            .find(|(n, _)| *n == kind)
            .map(|(_, k)| *k)
            .ok_or_else(|| format!("unknown mount type {kind:?} (valid: bind, volume, tmpfs)"))?;
        r.destination = self
            .destination
            .ok_or_else(|| "a target= is required".to_string())?;
        check_destination(&r.destination)?;
        let own = r.kind.as_str();
        if let Some(k) = self
            .family
            .iter()
            .find(|k| !k.starts_with(&format!("{own}-")))
        {
            return Err(format!("{k} cannot be used with a mount of type {own}"));
        }
        if let Some(rec) = self.recursion {
            for (name, needs_ro) in [
                ("writable", BindRecursion::Writable),
                ("readonly", BindRecursion::Readonly),
            ] {
                if rec == needs_ro && !r.read_only {
                    return Err(format!("bind-recursive={name} needs readonly as well"));
                }
            }
            r.recursion = rec;
        }
        if let Some(p) = self.propagation {
            if r.recursion == BindRecursion::Readonly && p != Propagation::Rprivate {
                return Err(format!(
                    "bind-recursive=readonly needs bind-propagation=rprivate, not {}",
                    p.as_str()
                ));
            }
            r.propagation = p;
        }
        match r.kind {
            MountKind::Bind if r.source.as_deref().unwrap_or("").is_empty() => {
                return Err("a bind mount needs source=".into())
            }
            MountKind::Tmpfs if r.source.is_some() => return Err("a tmpfs takes no source=".into()),
            MountKind::Volume => match r.source.as_deref() {
                Some("") | None if r.read_only => {
                    return Err("an anonymous volume cannot be read-only (it starts empty)".into())
                }
                Some("") | None => r.source = None,
                Some(n) if !valid_name(n) => {
                    return Err(format!(
                        "invalid volume name {n:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
                    ))
                }
                Some(_) => {}
            },
            _ => {}
        }
        Ok(r)
    }
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
fn parse_tmpfs(spec: &str) -> Result<MountRequest, FlagError> {
    let f = MountFlag::Tmpfs;
    let (dest, opts) = spec.split_once(':').unwrap_or((spec, ""));
    check_destination(dest).map_err(|why| refuse(f, spec, why))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_options_bad_values_and_bad_combinations_are_refused() {
        let fails = |v: &[&str], m: &[&str], tm: &[&str], flag: MountFlag, words: &[&str]| {
            let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let e = parse(&s(v), &s(m), &s(tm)).unwrap_err();
            assert_eq!(e.flag, flag, "{e}");
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
    }
}
