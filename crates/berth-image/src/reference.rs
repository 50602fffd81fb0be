//! Image references, normalized the way Docker does it.
//!
//! `busybox` is `docker.io/library/busybox:latest`; the first path component
//! is a registry host only when it contains a `.` or a `:` or is `localhost`;
//! `name@sha256:<hex>` pins a digest (a tag may come before it, and is kept
//! for display only).

use std::fmt;

/// Docker Hub's canonical name, as shown in `berth images`.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Where Docker Hub's API really lives.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference {reference:?}: {why}")]
    Invalid { reference: String, why: String },
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (and port): `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path: `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>` when the reference pins a digest.
    pub digest: Option<String>,
}

fn invalid(reference: &str, why: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_string(),
        why: why.into(),
    }
}

/// True for `sha256:<64 lowercase hex>`.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_hex64)
}

pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    if !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    if !b[b.len() - 1].is_ascii_lowercase() && !b[b.len() - 1].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-"+.
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    // [\w][\w.-]{0,127}
    !t.is_empty()
        && t.len() <= 128
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    if h.is_empty() {
        return false;
    }
    // IPv6 literal in brackets, optionally with a port.
    if let Some(rest) = h.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let after = &rest[end + 1..];
        return rest[..end].parse::<std::net::Ipv6Addr>().is_ok()
            && (after.is_empty()
                || after
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())));
    }
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return false;
        }
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Reference {
    /// Parses and normalizes a reference the way `docker pull` does.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(invalid(s, "the reference is empty"));
        }
        if s.len() > 4096 {
            return Err(invalid(s, "the reference is too long"));
        }
        if s.chars().any(|c| c.is_whitespace()) {
            return Err(invalid(s, "it contains whitespace"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !d.starts_with("sha256:") {
                    return Err(invalid(
                        s,
                        format!(
                            "unsupported digest {d:?}: only sha256:<64 hex digits> is supported"
                        ),
                    ));
                }
                if !is_sha256_digest(d) {
                    return Err(invalid(
                        s,
                        format!("digest {d:?} is not sha256: followed by 64 lowercase hex digits"),
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(invalid(
                        s,
                        format!("tag {t:?} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"),
                    ));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid(s, "the repository name is empty"));
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_host(first) {
                    return Err(invalid(s, format!("registry host {first:?} is not valid")));
                }
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if repo.is_empty() {
            return Err(invalid(s, "the repository name is empty"));
        }
        if let Some(c) = repo.split('/').find(|c| !valid_path_component(c)) {
            let why = if c.bytes().any(|b| b.is_ascii_uppercase()) {
                "repository names must be lowercase".to_string()
            } else {
                format!("{c:?} is not a valid repository name component (lowercase letters, digits and single '.', '_', '__' or '-' runs between them)")
            };
            return Err(invalid(s, why));
        }
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
            _ => registry,
        };
        let repository = if registry == DEFAULT_REGISTRY && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        if repository.len() > 255 {
            return Err(invalid(
                s,
                "the repository name is longer than 255 characters",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host to connect to (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// What the registry API is asked for: the digest if pinned, else the tag.
    pub fn api_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// `docker.io/library/busybox:latest`, when there is a tag.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `docker.io/library/busybox@sha256:...` for a given manifest digest.
    pub fn digested_name(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// Docker's short display form of a repository: `busybox` for
    /// `docker.io/library/busybox`, `user/x` for `docker.io/user/x`, else the full name.
    pub fn familiar_name(&self) -> String {
        familiar_repository(&self.name())
    }
}

/// Docker's familiar form of a full repository name (no tag).
pub fn familiar_repository(full: &str) -> String {
    match full.strip_prefix("docker.io/") {
        Some(rest) => rest.strip_prefix("library/").unwrap_or(rest).to_string(),
        None => full.to_string(),
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_short_names() {
        let r = p("busybox");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(p("user/app:1.0").to_string(), "docker.io/user/app:1.0");
        assert_eq!(p("user/app").familiar_name(), "user/app");
        assert_eq!(
            p("index.docker.io/library/busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("docker.io/busybox").repository, "library/busybox");
    }

    #[test]
    fn host_detection() {
        let r = p("127.0.0.1:5000/x/y:tag");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "x/y");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(p("localhost/x").registry, "localhost");
        assert_eq!(p("localhost:5000/x").registry, "localhost:5000");
        assert_eq!(p("quay.io/a/b").registry, "quay.io");
        assert_eq!(p("[::1]:5000/a").registry, "[::1]:5000");
        // No dot, colon or localhost: a Docker Hub user name.
        assert_eq!(p("myhost/x").registry, "docker.io");
        assert_eq!(p("myhost/x").repository, "myhost/x");
        // Port without a tag must not be taken for a tag.
        let r = p("localhost:5000/x");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.repository, "x");
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("busybox@{d}"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.tag, None);
        assert_eq!(r.api_reference(), d);
        let r = p(&format!("127.0.0.1:5000/x:1@{d}"));
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.api_reference(), d);
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x:1@{d}"));
    }

    #[test]
    fn invalid_references_name_the_reference() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a b",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "x//y",
            "-x",
            "x-",
            "x..y",
            "bad_host:99999/x",
            "host:abc/x:tag:tag",
            ":tag",
            "@sha256:",
        ] {
            let err = Reference::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert!(Reference::parse("Busybox")
            .unwrap_err()
            .to_string()
            .contains("lowercase"));
    }

    #[test]
    fn familiar_names() {
        assert_eq!(familiar_repository("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar_repository("docker.io/u/x"), "u/x");
        assert_eq!(
            familiar_repository("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox"
        );
    }
}
