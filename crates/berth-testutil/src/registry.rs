//! Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with temporary
//! storage, optionally behind basic auth (htpasswd) or bearer tokens.

use crate::http::http_get;
use crate::token::{TokenPolicy, TokenServer, TOKEN_ISSUER, TOKEN_SERVICE};
use anyhow::{bail, Context, Result};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary.
pub const REGISTRY_BIN: &str = "docker-registry";

/// How a registry authenticates clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryAuth {
    None,
    /// `auth.htpasswd` with a bcrypt htpasswd file.
    Basic {
        htpasswd: PathBuf,
    },
    /// `auth.token` trusting `rootcertbundle`.
    Token {
        realm: String,
        rootcertbundle: PathBuf,
    },
}

/// The registry's YAML config: filesystem storage under `storage`, listening
/// on 127.0.0.1:`port`, deletes enabled, logs at warn level.
pub fn registry_config(storage: &Path, port: u16, auth: &RegistryAuth) -> String {
    let mut c = format!(
        "version: 0.1\n\
log:\n  level: warn\n  accesslog:\n    disabled: true\n\
storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
http:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n",
        storage.display()
    );
    match auth {
        RegistryAuth::None => {}
        RegistryAuth::Basic { htpasswd } => c.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: berth-registry\n    path: {}\n",
            htpasswd.display()
        )),
        RegistryAuth::Token {
            realm,
            rootcertbundle,
        } => c.push_str(&format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            rootcertbundle.display()
        )),
    }
    c
}

/// Writes an htpasswd file with a bcrypt entry for `user` (`htpasswd -Bbn`).
pub fn write_htpasswd(path: &Path, user: &str, pass: &str) -> Result<()> {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .context("running htpasswd (install apache2-utils)")?;
    if !out.status.success() {
        bail!("htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    fs::write(path, out.stdout)?;
    Ok(())
}

/// A free TCP port on 127.0.0.1 (free when checked; callers retry on a race).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether process `pid` holds a listening TCP socket on 127.0.0.1:`port`.
fn pid_listens_on(pid: u32, port: u16) -> bool {
    let Ok(tcp) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let want = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| f[9].to_string())
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|t| {
            let t = t.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
    })
}

/// A running `docker-registry`; killed and its storage deleted on Drop.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    auth: RegistryAuth,
    child: Option<Child>,
    creds: Option<(String, String)>,
    token: Option<TokenServer>,
}

impl Registry {
    /// An open registry (no auth).
    pub fn start() -> Result<Registry> {
        Self::start_with(RegistryAuth::None, None, None)
    }

    /// A registry requiring HTTP basic auth for `user`/`pass`.
    pub fn start_basic_auth(user: &str, pass: &str) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()?;
        let htpasswd = dir.path().join("htpasswd");
        write_htpasswd(&htpasswd, user, pass)?;
        Self::start_in(
            dir,
            RegistryAuth::Basic { htpasswd },
            Some((user.into(), pass.into())),
            None,
        )
    }

    /// A registry requiring bearer tokens from a [`TokenServer`] that grants
    /// any requested scope to `user`/`pass` and refuses anonymous requests.
    pub fn start_token_auth(user: &str, pass: &str) -> Result<Registry> {
        Self::start_token_auth_with(user, pass, TokenPolicy::default())
    }

    /// A token-auth registry whose token server follows `policy` (e.g.
    /// anonymous pulls of public repositories, like Docker Hub).
    pub fn start_token_auth_with(user: &str, pass: &str, policy: TokenPolicy) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()?;
        let token = TokenServer::start_with_policy(dir.path(), user, pass, policy)?;
        let auth = RegistryAuth::Token {
            realm: token.realm(),
            rootcertbundle: token.cert_path().to_path_buf(),
        };
        Self::start_in(dir, auth, Some((user.into(), pass.into())), Some(token))
    }

    fn start_with(
        auth: RegistryAuth,
        creds: Option<(String, String)>,
        token: Option<TokenServer>,
    ) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()?;
        Self::start_in(dir, auth, creds, token)
    }

    fn start_in(
        dir: tempfile::TempDir,
        auth: RegistryAuth,
        creds: Option<(String, String)>,
        token: Option<TokenServer>,
    ) -> Result<Registry> {
        fs::create_dir_all(dir.path().join("storage"))?;
        let mut reg = Registry {
            dir,
            port: 0,
            auth,
            child: None,
            creds,
            token,
        };
        let mut last_err = None;
        for _ in 0..8 {
            reg.port = free_port()?;
            match reg.spawn() {
                Ok(()) => return Ok(reg),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap()).context("starting docker-registry")
    }

    /// Starts the process on `self.port` and waits until it answers /v2/.
    fn spawn(&mut self) -> Result<()> {
        let cfg = self.dir.path().join("config.yml");
        fs::write(
            &cfg,
            registry_config(&self.dir.path().join("storage"), self.port, &self.auth),
        )?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let mut child = crate::guards::spawn_tied(cmd)
            .context("running docker-registry (install the docker-registry package)")?;
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait()? {
                bail!(
                    "docker-registry on port {} exited with {st}: {}",
                    self.port,
                    self.log_tail()
                );
            }
            if pid_listens_on(pid, self.port) && http_get(&self.addr(), "/v2/", &[]).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "docker-registry on port {} did not answer /v2/ in 20s: {}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// "http://127.0.0.1:PORT".
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }
    /// The credentials this registry was started with, if any.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }
    /// The token server of a token-auth registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }
    /// The registry's storage root directory.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
    /// Where the registry keeps the bytes of blob `digest` (`sha256:...`):
    /// overwrite it to serve corrupt content.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }
    /// The file collecting the registry's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
    /// The registry process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs the registry (for fault tests); storage is kept.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the registry if running and starts it again on the same port
    /// with the same storage; waits until it answers.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::basic_auth_header;
    use std::process::Command;

    fn curl_status(args: &[&str]) -> String {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn registry_serves_v2_and_cleans_up() {
        let mut reg = Registry::start().unwrap();
        let url = format!("{}/v2/", reg.url());
        assert_eq!(curl_status(&[&url]), "200");
        let r = http_get(&reg.addr(), "/v2/", &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("Docker-Distribution-API-Version"),
            Some("registry/2.0")
        );
        let pid = reg.pid().unwrap();
        let storage = reg.storage_dir();
        reg.kill();
        assert!(
            http_get(&reg.addr(), "/v2/", &[]).is_err(),
            "killed registry still answers"
        );
        reg.restart().unwrap();
        assert_ne!(reg.pid().unwrap(), pid);
        assert_eq!(http_get(&reg.addr(), "/v2/", &[]).unwrap().status, 200);
        let pid = reg.pid().unwrap();
        drop(reg);
        assert!(!storage.exists(), "storage left behind");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "registry process {pid} left behind"
        );
    }

    #[test]
    fn parallel_registries_get_distinct_ports() {
        let regs: Vec<Registry> = (0..3).map(|_| Registry::start().unwrap()).collect();
        let mut ports: Vec<u16> = regs.iter().map(Registry::port).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        for r in &regs {
            assert!(pid_listens_on(r.pid().unwrap(), r.port()));
        }
    }

    #[test]
    fn basic_auth_rejects_bad_password() {
        let reg = Registry::start_basic_auth("alice", "s3cret").unwrap();
        let url = format!("{}/v2/", reg.url());
        assert_eq!(curl_status(&[&url]), "401");
        assert_eq!(curl_status(&["-u", "alice:wrong", &url]), "401");
        assert_eq!(curl_status(&["-u", "alice:s3cret", &url]), "200");
        let r = http_get(&reg.addr(), "/v2/", &[]).unwrap();
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
    }

    #[test]
    fn token_auth_flow() {
        let reg = Registry::start_token_auth("bob", "hunter2").unwrap();
        let ts = reg.token_server().unwrap();
        // The registry challenges with a Bearer realm pointing at the token server.
        let r = http_get(&reg.addr(), "/v2/private/img/manifests/latest", &[]).unwrap();
        assert_eq!(r.status, 401);
        let chal = r.header("www-authenticate").unwrap().to_string();
        assert!(chal.starts_with("Bearer "), "{chal}");
        assert!(chal.contains(&ts.realm()), "{chal}");
        assert!(
            chal.contains("scope=\"repository:private/img:pull\""),
            "{chal}"
        );
        // Anonymous and wrong-password token requests are refused.
        let q = "/token?service=berth-registry&scope=repository%3Aprivate%2Fimg%3Apull";
        assert_eq!(http_get(&ts.addr(), q, &[]).unwrap().status, 401);
        let bad = basic_auth_header("bob", "nope");
        let r = http_get(&ts.addr(), q, &[("Authorization", &bad)]).unwrap();
        assert_eq!(r.status, 401);
        // With credentials: a token the registry accepts (404: no such manifest, not 401).
        let good = basic_auth_header("bob", "hunter2");
        let r = http_get(&ts.addr(), q, &[("Authorization", &good)]).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let tok = v["token"].as_str().unwrap();
        let bearer = format!("Authorization: Bearer {tok}");
        let murl = format!("{}/v2/private/img/manifests/latest", reg.url());
        assert_eq!(curl_status(&["-H", &bearer, &murl]), "404");
        // The token only grants what was asked: another repository is refused.
        let other = format!("{}/v2/other/manifests/latest", reg.url());
        assert_eq!(curl_status(&["-H", &bearer, &other]), "401");
        // A tampered token is refused.
        let bad_tok = format!("Authorization: Bearer {}x", tok);
        assert_eq!(curl_status(&["-H", &bad_tok, &murl]), "401");
        // OAuth2 password grant works too.
        let body = "grant_type=password&username=bob&password=hunter2&service=berth-registry&scope=repository:private/img:pull";
        let r = crate::http::http_request(
            &ts.addr(),
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(ts.tokens_issued(), 2);
    }

    #[test]
    fn token_auth_anonymous_pull_of_public_repos() {
        let tmp = tempfile::tempdir().unwrap();
        let bb = tmp.path().join("bb");
        crate::fixtures::busybox_layout(&bb).unwrap();
        let policy = TokenPolicy {
            anonymous_pull: true,
            private: vec!["secret/".into()],
        };
        let reg = Registry::start_token_auth_with("carol", "pw", policy).unwrap();
        reg.push(&bb, "latest", "library/busybox:latest", None)
            .unwrap();
        reg.push(&bb, "latest", "secret/busybox:latest", None)
            .unwrap();
        let ts = reg.token_server().unwrap();
        let token_for = |scope: &str| {
            let r = http_get(
                &ts.addr(),
                &format!("/token?service=berth-registry&scope={scope}"),
                &[],
            )
            .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            format!("Bearer {}", v["token"].as_str().unwrap())
        };
        let accept = ("Accept", crate::fixtures::MT_OCI_MANIFEST);
        let public = token_for("repository:library/busybox:pull,push");
        let r = http_get(
            &reg.addr(),
            "/v2/library/busybox/manifests/latest",
            &[("Authorization", &public), accept],
        )
        .unwrap();
        assert_eq!(r.status, 200);
        // Anonymous tokens never carry push.
        let r = crate::http::http_request(
            &reg.addr(),
            "POST",
            "/v2/library/busybox/blobs/uploads/",
            &[("Authorization", &public)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 401);
        let private = token_for("repository:secret/busybox:pull");
        let r = http_get(
            &reg.addr(),
            "/v2/secret/busybox/manifests/latest",
            &[("Authorization", &private), accept],
        )
        .unwrap();
        assert_eq!(r.status, 401);
        // Wrong credentials are still refused outright.
        let bad = basic_auth_header("carol", "nope");
        let r = http_get(
            &ts.addr(),
            "/token?service=berth-registry&scope=repository:secret/busybox:pull",
            &[("Authorization", &bad)],
        )
        .unwrap();
        assert_eq!(r.status, 401);
    }
}
