//! Pushing fixture layouts to a registry with skopeo, an independent client.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// The manifest format skopeo writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFormat {
    /// OCI manifests (`--format oci`).
    Oci,
    /// Docker schema 2 (`--format v2s2`); not possible for zstd layers.
    V2s2,
}

/// Options for [`push`].
#[derive(Clone, Debug, Default)]
pub struct PushOpts {
    /// `--dest-creds user:pass`.
    pub creds: Option<(String, String)>,
    /// `--format`; `None` keeps the layout's own format.
    pub format: Option<PushFormat>,
    /// `--all`: copy every image of an index. Set automatically when the
    /// tag names an index.
    pub all: bool,
}

impl PushOpts {
    pub fn creds(mut self, user: &str, pass: &str) -> PushOpts {
        self.creds = Some((user.into(), pass.into()));
        self
    }
    pub fn format(mut self, f: PushFormat) -> PushOpts {
        self.format = Some(f);
        self
    }
    pub fn all(mut self) -> PushOpts {
        self.all = true;
        self
    }
}

/// Whether `tag` in the layout's `index.json` names an image index.
fn tag_is_index(layout: &Path, tag: &str) -> Result<bool> {
    let idx: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json"))
            .with_context(|| format!("reading {}/index.json", layout.display()))?,
    )?;
    let m = idx["manifests"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| m["annotations"][crate::fixtures::ANNOTATION_REF_NAME] == tag)
        })
        .with_context(|| format!("no tag {tag:?} in {}", layout.display()))?;
    Ok(m["mediaType"] == crate::fixtures::MT_OCI_INDEX
        || m["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json")
}

/// Pushes `oci:LAYOUT:TAG` to `docker://DEST` (`DEST` like
/// `127.0.0.1:5000/repo:tag`, with or without `docker://`) using
/// `skopeo copy --dest-tls-verify=false`. Returns the pushed manifest's digest.
pub fn push(layout: &Path, tag: &str, dest: &str, opts: &PushOpts) -> Result<String> {
    let dest = dest.strip_prefix("docker://").unwrap_or(dest);
    let digest_file = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
    ])
    .arg("--digestfile")
    .arg(digest_file.path());
    if let Some((u, p)) = &opts.creds {
        cmd.arg(format!("--dest-creds={u}:{p}"));
    }
    match opts.format {
        Some(PushFormat::Oci) => {
            cmd.args(["--format", "oci"]);
        }
        Some(PushFormat::V2s2) => {
            cmd.args(["--format", "v2s2"]);
        }
        None => {}
    }
    if opts.all || tag_is_index(layout, tag)? {
        cmd.arg("--all");
    }
    let src = format!("oci:{}:{tag}", layout.display());
    cmd.arg(&src).arg(format!("docker://{dest}"));
    // Keep skopeo away from the caller's credentials.
    let authdir = tempfile::tempdir()?;
    cmd.env("REGISTRY_AUTH_FILE", authdir.path().join("auth.json"))
        .env("DOCKER_CONFIG", authdir.path());
    let out = cmd.output().context("running skopeo (install skopeo)")?;
    if !out.status.success() {
        bail!(
            "skopeo copy {src} docker://{dest} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let digest = std::fs::read_to_string(digest_file.path())?
        .trim()
        .to_string();
    if !digest.starts_with("sha256:") {
        bail!("skopeo wrote no digest for {dest}");
    }
    Ok(digest)
}

impl crate::registry::Registry {
    /// Pushes `layout:tag` to `ADDR/repo_ref` (e.g. `library/busybox:latest`)
    /// with this registry's credentials. Returns the manifest digest.
    pub fn push(
        &self,
        layout: &Path,
        tag: &str,
        repo_ref: &str,
        format: Option<PushFormat>,
    ) -> Result<String> {
        let mut opts = PushOpts {
            format,
            ..Default::default()
        };
        if let Some((u, p)) = self.creds() {
            opts = opts.creds(u, p);
        }
        push(layout, tag, &format!("{}/{repo_ref}", self.addr()), &opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::http::http_get;
    use crate::token::basic_auth_header;
    use crate::Registry;
    use std::process::Command;

    const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json";

    fn curl_manifest(url: &str, extra: &[&str]) -> (String, String) {
        let out = Command::new("curl")
            .args(["-s", "-D", "-", "-H", &format!("Accept: {ACCEPT}")])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_string(), body.to_string())
    }

    #[test]
    fn pushed_images_are_fetchable() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::start().unwrap();
        let bb = tmp.path().join("bb");
        fixtures::busybox_layout(&bb).unwrap();
        let d = reg
            .push(&bb, "latest", "library/busybox:latest", None)
            .unwrap();
        let (head, body) = curl_manifest(
            &format!("{}/v2/library/busybox/manifests/latest", reg.url()),
            &[],
        );
        assert!(head.contains(" 200"), "{head}");
        assert!(
            head.contains("application/vnd.oci.image.manifest.v1+json"),
            "{head}"
        );
        assert!(head.contains(&d), "{head}");
        assert!(body.contains("tar+gzip"));
        let m: serde_json::Value = serde_json::from_str(&body).unwrap();
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        let data = std::fs::read(reg.blob_data_path(layer)).unwrap();
        assert_eq!(fixtures::sha256_digest(&data), layer);

        // Docker schema 2 by conversion.
        let d2 = reg
            .push(&bb, "latest", "docker/busybox:v2", Some(PushFormat::V2s2))
            .unwrap();
        let (head, body) = curl_manifest(
            &format!("{}/v2/docker/busybox/manifests/v2", reg.url()),
            &[],
        );
        assert!(
            head.contains("application/vnd.docker.distribution.manifest.v2+json"),
            "{head}"
        );
        assert!(
            body.contains("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            "{body}"
        );
        assert_ne!(d, d2);

        // Multi-arch: the index and every platform's manifest are there.
        let ma = tmp.path().join("ma");
        fixtures::multiarch_layout(&ma).unwrap();
        reg.push(&ma, "latest", "multi:latest", None).unwrap();
        let r = http_get(
            &reg.addr(),
            "/v2/multi/manifests/latest",
            &[("Accept", ACCEPT)],
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let idx: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(idx["manifests"].as_array().unwrap().len(), 3);
        for m in idx["manifests"].as_array().unwrap() {
            let p = format!("/v2/multi/manifests/{}", m["digest"].as_str().unwrap());
            assert_eq!(
                http_get(&reg.addr(), &p, &[("Accept", ACCEPT)])
                    .unwrap()
                    .status,
                200
            );
        }

        // zstd layers keep their media type.
        let zs = tmp.path().join("zs");
        fixtures::zstd_layout(&zs).unwrap();
        reg.push(&zs, "latest", "zstd:latest", None).unwrap();
        let r = http_get(
            &reg.addr(),
            "/v2/zstd/manifests/latest",
            &[("Accept", ACCEPT)],
        )
        .unwrap();
        assert!(r.text().contains("tar+zstd"), "{}", r.text());
    }

    #[test]
    fn push_to_auth_registries() {
        let tmp = tempfile::tempdir().unwrap();
        let bb = tmp.path().join("bb");
        fixtures::busybox_layout(&bb).unwrap();

        let basic = Registry::start_basic_auth("alice", "pw").unwrap();
        let dest = format!("{}/private/bb:latest", basic.addr());
        assert!(push(&bb, "latest", &dest, &PushOpts::default()).is_err());
        assert!(push(
            &bb,
            "latest",
            &dest,
            &PushOpts::default().creds("alice", "bad")
        )
        .is_err());
        push(
            &bb,
            "latest",
            &dest,
            &PushOpts::default().creds("alice", "pw"),
        )
        .unwrap();
        let url = format!("{}/v2/private/bb/manifests/latest", basic.url());
        assert!(curl_manifest(&url, &[]).0.contains(" 401"));
        assert!(curl_manifest(&url, &["-u", "alice:pw"]).0.contains(" 200"));

        let tok = Registry::start_token_auth("bob", "pw2").unwrap();
        tok.push(&bb, "latest", "private/bb:latest", None).unwrap();
        let ts = tok.token_server().unwrap();
        let q = "/token?service=berth-registry&scope=repository:private/bb:pull";
        // Anonymous pull of the private repository is refused...
        assert_eq!(http_get(&ts.addr(), q, &[]).unwrap().status, 401);
        // ...and works with credentials.
        let r = http_get(
            &ts.addr(),
            q,
            &[("Authorization", &basic_auth_header("bob", "pw2"))],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let bearer = format!("Bearer {}", v["token"].as_str().unwrap());
        let r = http_get(
            &tok.addr(),
            "/v2/private/bb/manifests/latest",
            &[("Authorization", &bearer), ("Accept", ACCEPT)],
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
}
