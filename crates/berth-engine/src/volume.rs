//! Volumes: named volumes under `<root>/volumes/<name>/_data` (created on
//! first use, filled from the image like Docker), anonymous volumes from the
//! image's `Volumes`, bind mounts and tmpfs from `-v`, `--mount`, `--tmpfs`.

use crate::record::{io_err, now_rfc3339, random_id, write_atomic, RecordError};
pub mod flags;

use crate::spec::{MountKind, ResolvedMount};
pub use flags::{parse, FlagError, MountFlag};
use flags::{valid_name, MountRequest};
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
    #[error(transparent)]
    Flag(#[from] FlagError),
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
        let key = |d: &str| berth_runtime::rootfs::clean_rel(Path::new(d));
        if !requests.iter().any(|m| key(&m.destination) == key(dest)) {
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
        // A bad flag stops everything: the volume before it is not made.
        let e = resolve(
            t.path(),
            &["new:/n".into(), "a:/b:bogus".into()],
            &[],
            &[],
            &[],
        );
        assert!(matches!(e, Err(VolumeError::Flag(_))));
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
