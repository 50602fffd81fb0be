//! Registry credentials: `berth login` writes `<root>/auth.json` (or
//! `$REGISTRY_AUTH_FILE`), in Docker's `{"auths": {HOST: {"auth": base64(user:pass)}}}`
//! format, mode 0600. Lookups read that file first, then Docker's
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`).

use base64::Engine as _;
use berth_sys::atomic::Durability;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading credentials from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing credentials to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not logged in to {host}")]
    NotLoggedIn { host: String },
}

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The file `berth login` writes to.
pub fn login_file(berth_root: &Path) -> PathBuf {
    match std::env::var_os("REGISTRY_AUTH_FILE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => berth_root.join("auth.json"),
    }
}

/// Docker's client config file.
pub fn docker_config_file() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The key a registry host is stored under: Docker Hub keeps Docker's
/// historical `https://index.docker.io/v1/`.
fn key_for(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        h => h.to_string(),
    }
}

/// `https://host:5000/v2/` -> `host:5000`; Docker Hub's aliases -> `docker.io`.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        k => k.to_string(),
    }
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(|b| b.is_ascii_whitespace()) => Ok(Some(Map::new())),
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(_) => Ok(Some(Map::new())),
            Err(source) => Err(AuthError::Parse {
                path: path.to_path_buf(),
                source,
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AuthError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn decode_entry(entry: &Value) -> Option<Credentials> {
    let obj = entry.as_object()?;
    if let Some(auth) = obj.get("auth").and_then(Value::as_str) {
        if !auth.is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()?;
            let s = String::from_utf8(raw).ok()?;
            let (u, p) = s.split_once(':')?;
            return Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            });
        }
    }
    let u = obj.get("username").and_then(Value::as_str)?;
    let p = obj.get("password").and_then(Value::as_str)?;
    Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    })
}

fn lookup_in(path: &Path, host: &str) -> Result<Option<Credentials>, AuthError> {
    let Some(doc) = read_json(path)? else {
        return Ok(None);
    };
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let want = normalize_key(host);
    for (k, v) in auths {
        if normalize_key(k) == want {
            if let Some(c) = decode_entry(v) {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// Credentials for `host` (as written in references: `docker.io`,
/// `127.0.0.1:5000`), from berth's file, then Docker's.
pub fn lookup(berth_root: &Path, host: &str) -> Result<Option<Credentials>, AuthError> {
    if let Some(c) = lookup_in(&login_file(berth_root), host)? {
        return Ok(Some(c));
    }
    match docker_config_file() {
        Some(p) => lookup_in(&p, host),
        None => Ok(None),
    }
}

fn write_json(path: &Path, doc: &Map<String, Value>) -> Result<(), AuthError> {
    let werr = |source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let mut body = serde_json::to_vec_pretty(doc).expect("JSON map serializes");
    body.push(b'\n');
    berth_sys::atomic::write_mode(path, &body, Durability::Sync, 0o600).map_err(|e| werr(e.source))
}

/// Stores credentials for `host` in the login file.
pub fn store(berth_root: &Path, host: &str, creds: &Credentials) -> Result<PathBuf, AuthError> {
    let path = login_file(berth_root);
    let mut doc = read_json(&path)?.unwrap_or_default();
    let auths = doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("just made an object");
    let want = normalize_key(host);
    auths.retain(|k, _| normalize_key(k) != want);
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    auths.insert(key_for(host), serde_json::json!({ "auth": encoded }));
    write_json(&path, &doc)?;
    Ok(path)
}

/// Removes the credentials for `host` from the login file.
pub fn remove(berth_root: &Path, host: &str) -> Result<(), AuthError> {
    let path = login_file(berth_root);
    let not_logged_in = || AuthError::NotLoggedIn {
        host: host.to_string(),
    };
    let mut doc = read_json(&path)?.ok_or_else(not_logged_in)?;
    let Some(auths) = doc.get_mut("auths").and_then(Value::as_object_mut) else {
        return Err(not_logged_in());
    };
    let want = normalize_key(host);
    let before = auths.len();
    auths.retain(|k, _| normalize_key(k) != want);
    if auths.len() == before {
        return Err(not_logged_in());
    }
    write_json(&path, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_lookup_remove_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        let path = store(dir.path(), "127.0.0.1:5000", &c).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(lookup_in(&path, "127.0.0.1:5000").unwrap(), Some(c.clone()));
        assert_eq!(lookup_in(&path, "127.0.0.1:5001").unwrap(), None);
        store(dir.path(), "docker.io", &c).unwrap();
        let doc = std::fs::read_to_string(&path).unwrap();
        assert!(doc.contains("https://index.docker.io/v1/"), "{doc}");
        assert_eq!(lookup_in(&path, "docker.io").unwrap(), Some(c));
        remove(dir.path(), "127.0.0.1:5000").unwrap();
        assert_eq!(lookup_in(&path, "127.0.0.1:5000").unwrap(), None);
        assert!(matches!(
            remove(dir.path(), "127.0.0.1:5000"),
            Err(AuthError::NotLoggedIn { .. })
        ));
    }

    #[test]
    fn docker_config_keys_are_normalized() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://reg.example:5000/v2/":{"auth":"YWxpY2U6c2VjcmV0"}}}"#,
        )
        .unwrap();
        let c = lookup_in(&p, "reg.example:5000").unwrap().unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.password, "secret");
    }
}
