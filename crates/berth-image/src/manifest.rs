//! Manifests and indexes (OCI and Docker schema 2), layer media types and
//! platform selection.

use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The Accept header for manifest requests: everything berth can read.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("{image} uses a Docker schema 1 manifest, which berth does not support (Docker deprecated it in 2019): push the image again with a current tool to get a schema 2 or OCI manifest")]
    Schema1 { image: String },
    #[error("{image}: unsupported manifest media type {media_type:?}: berth reads OCI manifests and indexes and Docker schema 2 manifests and manifest lists")]
    UnknownMediaType { image: String, media_type: String },
    #[error("{image}: the manifest is not valid JSON of its kind ({media_type}): {detail}")]
    Invalid {
        image: String,
        media_type: String,
        detail: String,
    },
    #[error(
        "{image} has no image for platform {wanted}; it has: {available}. Pick one with --platform"
    )]
    NoMatchingPlatform {
        image: String,
        wanted: String,
        available: String,
    },
    #[error("invalid platform {0:?}: expected os/arch or os/arch/variant, e.g. linux/arm64")]
    BadPlatform(String),
    #[error("{image}: layer {digest} has media type {media_type:?}, which is not a tar layer (plain, gzip or zstd)")]
    UnsupportedLayer {
        image: String,
        digest: String,
        media_type: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A fetched manifest, parsed by kind.
#[derive(Debug, Clone)]
pub enum Fetched {
    Manifest(Manifest),
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
}

/// Parses a manifest body, deciding its kind from the Content-Type, the body's
/// own mediaType, or its shape; refuses schema 1 and unknown types.
pub fn parse(
    image: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Fetched, ManifestError> {
    let invalid = |mt: &str, detail: String| ManifestError::Invalid {
        image: image.to_string(),
        media_type: mt.to_string(),
        detail,
    };
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| invalid("unknown", e.to_string()))?;
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    if probe.schema_version == Some(1)
        || probe.fs_layers.is_some()
        || matches!(ct.as_deref(), Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED))
    {
        return Err(ManifestError::Schema1 {
            image: image.to_string(),
        });
    }
    let media_type = match (ct, probe.media_type) {
        (Some(c), _) => c,
        (None, Some(m)) => m,
        (None, None) if probe.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if probe.layers.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => String::new(),
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => serde_json::from_slice(body)
            .map(Fetched::Manifest)
            .map_err(|e| invalid(&media_type, e.to_string())),
        OCI_INDEX | DOCKER_LIST => serde_json::from_slice(body)
            .map(Fetched::Index)
            .map_err(|e| invalid(&media_type, e.to_string())),
        _ => Err(ManifestError::UnknownMediaType {
            image: image.to_string(),
            media_type,
        }),
    }
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Result<Platform, ManifestError> {
    let parts: Vec<&str> = s.split('/').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
        return Err(ManifestError::BadPlatform(s.to_string()));
    }
    Ok(normalize(Platform {
        os: parts[0].to_ascii_lowercase(),
        architecture: parts[1].to_ascii_lowercase(),
        variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
    }))
}

/// Go's names for architectures, and the default variants Docker assumes.
fn normalize(mut p: Platform) -> Platform {
    p.architecture = match p.architecture.as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "armhf" => {
            p.variant.get_or_insert_with(|| "v7".into());
            "arm".into()
        }
        "armel" => {
            p.variant.get_or_insert_with(|| "v6".into());
            "arm".into()
        }
        "i386" | "i686" => "386".into(),
        a => a.into(),
    };
    if p.variant.as_deref() == Some("") {
        p.variant = None;
    }
    p
}

/// The platform of this machine, as an image index names it.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        a => a,
    };
    let variant = match arch {
        "arm" => Some("v7".to_string()),
        _ => None,
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant,
    }
}

/// How well an index entry fits the wanted platform: None when it does not.
/// Higher is better: an exact variant beats an assumed default one.
fn fit(want: &Platform, have: &Platform) -> Option<u8> {
    let have = normalize(have.clone());
    if have.os != want.os || have.architecture != want.architecture {
        return None;
    }
    // arm64's only variant is v8: an empty variant means v8.
    let default_variant = match want.architecture.as_str() {
        "arm64" => Some("v8"),
        _ => None,
    };
    let hv = have.variant.as_deref().or(default_variant);
    match want.variant.as_deref() {
        None => Some(if have.variant.is_none() { 2 } else { 1 }),
        Some(wv) if Some(wv) == hv => Some(3),
        Some(_) => None,
    }
}

/// Whether an image of platform `have` serves `want`.
pub fn platform_matches(want: &Platform, have: &Platform) -> bool {
    fit(want, have).is_some()
}

/// Picks the index entry for `want`, or explains which platforms there are.
pub fn select_platform<'a>(
    image: &str,
    index: &'a Index,
    want: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let mut best: Option<(u8, &Descriptor)> = None;
    for d in &index.manifests {
        let Some(p) = &d.platform else { continue };
        if let Some(score) = fit(want, p) {
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, d));
            }
        }
    }
    // An index without any platform fields and a single entry: take it.
    if best.is_none() && index.manifests.len() == 1 && index.manifests[0].platform.is_none() {
        return Ok(&index.manifests[0]);
    }
    best.map(|(_, d)| d).ok_or_else(|| {
        let mut avail: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(|p| p.to_string())
            .collect();
        avail.dedup();
        ManifestError::NoMatchingPlatform {
            image: image.to_string(),
            wanted: want.to_string(),
            available: if avail.is_empty() {
                "no platforms".into()
            } else {
                avail.join(", ")
            },
        }
    })
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Unknown media type: decide from the first bytes.
    Sniff,
}

/// The compression a layer media type says, or an error for non-layer types.
pub fn layer_compression(image: &str, d: &Descriptor) -> Result<Compression, ManifestError> {
    let mt = d.media_type.as_str();
    let c = match mt {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
        "" => Compression::Sniff,
        m if m.contains("encrypted") || m.ends_with("+json") || m.contains("helm") => {
            return Err(ManifestError::UnsupportedLayer {
                image: image.to_string(),
                digest: d.digest.clone(),
                media_type: mt.to_string(),
            })
        }
        _ => Compression::Sniff,
    };
    Ok(c)
}

/// The compression the first bytes of a blob show.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            urls: vec![],
        }
    }

    fn index() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                entry("unknown", "unknown", None, "att"),
                entry("linux", "amd64", None, "amd64"),
                entry("linux", "arm", Some("v6"), "armv6"),
                entry("linux", "arm", Some("v7"), "armv7"),
                entry("linux", "arm64", Some("v8"), "arm64"),
            ],
        }
    }

    #[test]
    fn platform_matching() {
        let idx = index();
        let pick = |p: &str| {
            select_platform("x", &idx, &parse_platform(p).unwrap()).map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64").unwrap(), "amd64");
        assert_eq!(pick("linux/x86_64").unwrap(), "amd64");
        assert_eq!(pick("linux/arm64").unwrap(), "arm64");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "arm64");
        assert_eq!(pick("linux/arm/v6").unwrap(), "armv6");
        assert_eq!(pick("linux/arm/v7").unwrap(), "armv7");
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(err.contains("linux/arm64/v8"), "{err}");
        assert!(!err.contains("unknown"), "{err}");
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux//v7").is_err());
        assert_eq!(host_platform().os, "linux");
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        assert!(platform_matches(
            &parse_platform("linux/amd64").unwrap(),
            &amd64
        ));
        assert!(!platform_matches(
            &parse_platform("linux/arm64").unwrap(),
            &amd64
        ));
    }

    #[test]
    fn media_types() {
        let d = |mt: &str| Descriptor {
            media_type: mt.into(),
            digest: "sha256:x".into(),
            size: 0,
            platform: Option::None,
            urls: vec![],
        };
        use Compression::*;
        let c = |mt: &str| layer_compression("img", &d(mt));
        assert_eq!(c("application/vnd.oci.image.layer.v1.tar+gzip"), Ok(Gzip));
        assert_eq!(
            c("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Ok(Gzip)
        );
        assert_eq!(c("application/vnd.oci.image.layer.v1.tar+zstd"), Ok(Zstd));
        assert_eq!(c("application/vnd.oci.image.layer.v1.tar"), Ok(None));
        assert_eq!(c("application/x-something"), Ok(Sniff));
        assert!(c("application/vnd.oci.image.layer.v1.tar+gzip+encrypted").is_err());
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Zstd);
        assert_eq!(sniff(b"etc/\0\0"), None);
    }

    #[test]
    fn manifest_kinds() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:a","size":1},"layers":[]}"#;
        assert!(matches!(parse("x", None, m), Ok(Fetched::Manifest(_))));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse("x", None, i), Ok(Fetched::Index(_))));
        assert!(matches!(
            parse("x", Some(DOCKER_LIST), i),
            Ok(Fetched::Index(_))
        ));
        let s1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let err = parse("x:1", Some(DOCKER_SCHEMA1_SIGNED), s1).unwrap_err();
        assert!(matches!(err, ManifestError::Schema1 { .. }));
        assert!(err.to_string().contains("x:1"));
        let err = parse("x", Some("application/vnd.foo+json"), i).unwrap_err();
        assert!(
            err.to_string().contains("application/vnd.foo+json"),
            "{err}"
        );
    }
}
