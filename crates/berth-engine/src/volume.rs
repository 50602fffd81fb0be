//! Volumes: named volumes under `<root>/volumes/<name>/_data` (created on
//! first use, filled from the image like Docker), anonymous volumes from the
//! image's `Volumes`, bind mounts and tmpfs from `-v`, `--mount`, `--tmpfs`.

use crate::record::{io_err, now_rfc3339, random_id, write_atomic, RecordError};
use crate::spec::ResolvedMount;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("invalid volume specification {spec:?}: {why}")]
    BadSpec { spec: String, why: String },
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

/// Parses `-v`, `--mount`, `--tmpfs` and the image's `Volumes` into mounts,
/// creating named and anonymous volumes. Returns the mounts and the names of
/// volumes created now (to be filled from the image at first start).
pub fn resolve(
    root: &Path,
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
    image_volumes: &[String],
) -> Result<(Vec<ResolvedMount>, Vec<String>), VolumeError> {
    let mut out: Vec<ResolvedMount> = Vec::new();
    let mut fresh = Vec::new();
    let mut add_volume = |name: Option<&str>,
                          dest: &str,
                          ro: bool,
                          out: &mut Vec<ResolvedMount>|
     -> Result<(), VolumeError> {
        let anonymous = name.is_none();
        let name = match name {
            Some(n) => n.to_string(),
            None => random_id()?,
        };
        let (v, created) = ensure(root, &name, &[], anonymous)?;
        if created {
            fresh.push(name.clone());
        }
        out.push(ResolvedMount {
            kind: "volume".into(),
            source: v.mountpoint.to_string_lossy().into_owned(),
            destination: dest.into(),
            read_only: ro,
            name: Some(name),
            options: vec![],
            anonymous,
        });
        Ok(())
    };
    for spec in volumes {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dest, mode) = match parts.as_slice() {
            [d] => (None, *d, ""),
            [s, d] => (Some(*s), *d, ""),
            [s, d, m] => (Some(*s), *d, *m),
            _ => return Err(bad(spec, "expected [SOURCE:]DEST[:ro|rw]")),
        };
        if !dest.starts_with('/') {
            return Err(bad(spec, "the container path must be absolute"));
        }
        let ro = mode.split(',').any(|m| m == "ro");
        match src {
            Some(s) if s.starts_with('/') || s.starts_with('.') => {
                let p = Path::new(s);
                if !p.exists() {
                    // Docker creates missing bind sources for -v.
                    fs::create_dir_all(p).map_err(io_err(p))?;
                }
                let abs = fs::canonicalize(p).map_err(io_err(p))?;
                out.push(ResolvedMount {
                    kind: "bind".into(),
                    source: abs.to_string_lossy().into_owned(),
                    destination: dest.into(),
                    read_only: ro,
                    name: None,
                    options: vec![],
                    anonymous: false,
                });
            }
            Some(name) => add_volume(Some(name), dest, ro, &mut out)?,
            None => add_volume(None, dest, ro, &mut out)?,
        }
    }
    for spec in mounts {
        let mut kind = "volume".to_string();
        let (mut src, mut dest, mut ro) = (None::<String>, None::<String>, false);
        let mut opts = Vec::new();
        for kv in spec.split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            match k {
                "type" => kind = v.to_string(),
                "source" | "src" => src = Some(v.to_string()),
                "destination" | "dst" | "target" => dest = Some(v.to_string()),
                "readonly" | "ro" => ro = v != "false" && v != "0",
                "tmpfs-size" => opts.push(format!("size={v}")),
                "tmpfs-mode" => opts.push(format!("mode={v}")),
                _ => {}
            }
        }
        let dest = dest.ok_or_else(|| bad(spec, "a target= is required"))?;
        if !dest.starts_with('/') {
            return Err(bad(spec, "the target must be absolute"));
        }
        match kind.as_str() {
            "bind" => {
                let s = src.ok_or_else(|| bad(spec, "a bind mount needs source="))?;
                let abs = fs::canonicalize(&s).map_err(|_| VolumeError::NoSource(s.clone()))?;
                out.push(ResolvedMount {
                    kind: "bind".into(),
                    source: abs.to_string_lossy().into_owned(),
                    destination: dest,
                    read_only: ro,
                    name: None,
                    options: vec![],
                    anonymous: false,
                });
            }
            "volume" => add_volume(src.as_deref(), &dest, ro, &mut out)?,
            "tmpfs" => out.push(ResolvedMount {
                kind: "tmpfs".into(),
                source: "tmpfs".into(),
                destination: dest,
                read_only: ro,
                name: None,
                options: opts,
                anonymous: false,
            }),
            other => return Err(bad(spec, &format!("unknown mount type {other:?}"))),
        }
    }
    for spec in tmpfs {
        let (dest, o) = spec.split_once(':').unwrap_or((spec, ""));
        if !dest.starts_with('/') {
            return Err(bad(spec, "the tmpfs path must be absolute"));
        }
        out.push(ResolvedMount {
            kind: "tmpfs".into(),
            source: "tmpfs".into(),
            destination: dest.into(),
            read_only: false,
            name: None,
            options: o
                .split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect(),
            anonymous: false,
        });
    }
    for dest in image_volumes {
        if out.iter().any(|m| m.destination == *dest) {
            continue;
        }
        add_volume(None, dest, false, &mut out)?;
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
        assert_eq!(m[0].kind, "bind");
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
}
