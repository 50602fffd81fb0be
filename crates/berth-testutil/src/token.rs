//! A small bearer-token server for the registry's `auth.token` mode: it
//! checks HTTP basic credentials on `GET /token` (or an OAuth2 password grant
//! on `POST /token`) and issues an RS256 JWT granting the requested scopes,
//! signed with a key and self-signed certificate made by the `openssl` CLI.
//! The certificate travels in the JWT's `x5c` header; the registry trusts it
//! through `rootcertbundle`. Requests without valid credentials get 401.

use crate::http::{base64, base64_decode, base64url, parse_query, read_request};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `service` the registry is configured with (the token's audience).
pub const TOKEN_SERVICE: &str = "berth-registry";
/// The token issuer the registry is configured to trust.
pub const TOKEN_ISSUER: &str = "berth-token-server";

/// Who gets which token.
#[derive(Clone, Debug, Default)]
pub struct TokenPolicy {
    /// Anonymous token requests (no credentials) get a token granting `pull`
    /// on repositories not listed in `private` (like Docker Hub); otherwise
    /// they are refused with 401.
    pub anonymous_pull: bool,
    /// Repository names (or `prefix/` prefixes) anonymous users never get.
    pub private: Vec<String>,
}

impl TokenPolicy {
    fn is_private(&self, repo: &str) -> bool {
        self.private
            .iter()
            .any(|p| repo == p || (p.ends_with('/') && repo.starts_with(p.as_str())))
    }
}

struct State {
    policy: TokenPolicy,
    user: String,
    pass: String,
    key: PathBuf,
    cert_der_b64: String,
    requests: AtomicU64,
    granted: AtomicU64,
    seq: AtomicU64,
}

/// A running token server; stops on Drop.
pub struct TokenServer {
    addr: SocketAddr,
    cert: PathBuf,
    stop: Arc<AtomicBool>,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

fn run_openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running openssl (install the openssl package)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl TokenServer {
    /// Generates `token-key.pem` and `token-cert.pem` in `dir` and starts
    /// serving on a free 127.0.0.1 port, accepting `user`/`pass`.
    pub fn start(dir: &Path, user: &str, pass: &str) -> Result<TokenServer> {
        Self::start_with_policy(dir, user, pass, TokenPolicy::default())
    }

    /// [`TokenServer::start`] with a policy for anonymous requests.
    pub fn start_with_policy(
        dir: &Path,
        user: &str,
        pass: &str,
        policy: TokenPolicy,
    ) -> Result<TokenServer> {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        run_openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            "/CN=berth-token-server",
            "-keyout",
            key.to_str().context("non-UTF-8 path")?,
            "-out",
            cert.to_str().context("non-UTF-8 path")?,
        ])?;
        let pem = std::fs::read_to_string(&cert)?;
        let der_b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            policy,
            user: user.into(),
            pass: pass.into(),
            key,
            cert_der_b64: der_b64,
            requests: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        });
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let st = st.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &st);
                    });
                }
            }
        });
        Ok(TokenServer {
            addr,
            cert,
            stop,
            state,
            thread: Some(thread),
        })
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
    /// The realm URL for the registry config and `WWW-Authenticate`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
    /// The PEM certificate the registry must trust (`rootcertbundle`).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
    /// Token requests seen so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.state.granted.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(conn: &mut TcpStream, status: &str, extra: &str, body: &str) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn serve(mut conn: TcpStream, st: &State) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let Some(req) = read_request(&mut r)? else {
        return Ok(());
    };
    st.requests.fetch_add(1, Ordering::SeqCst);
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    if path != "/token" {
        return Ok(respond(&mut conn, "404 Not Found", "", "{}")?);
    }
    let mut params = parse_query(query);
    let mut creds: Option<(String, String)> = req
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .and_then(|b| base64_decode(b.trim()))
        .and_then(|d| {
            let s = String::from_utf8(d).ok()?;
            let (u, p) = s.split_once(':')?;
            Some((u.to_string(), p.to_string()))
        });
    if req.method == "POST" {
        let mut body = vec![0u8; req.content_length().min(1 << 20) as usize];
        r.read_exact(&mut body)?;
        let form = parse_query(&String::from_utf8_lossy(&body));
        let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        if get("grant_type").as_deref() == Some("password") {
            creds = Some((
                get("username").unwrap_or_default(),
                get("password").unwrap_or_default(),
            ));
        }
        params.extend(form);
    }
    let ok = creds
        .as_ref()
        .is_some_and(|(u, p)| *u == st.user && *p == st.pass);
    let anonymous = creds.is_none() && st.policy.anonymous_pull;
    if !ok && !anonymous {
        return Ok(respond(
            &mut conn,
            "401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"berth-token-server\"\r\n",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"valid credentials are required to get a token"}]}"#,
        )?);
    }
    let user = creds.map(|c| c.0).unwrap_or_default();
    let mut access = Vec::new();
    for (k, v) in &params {
        if k != "scope" {
            continue;
        }
        for scope in v.split(' ').filter(|s| !s.is_empty()) {
            // type:name:actions, where name may itself contain ':'
            let Some((ty, rest)) = scope.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| !a.is_empty())
                .filter(|a| {
                    !anonymous
                        || (*a == "pull" && ty == "repository" && !st.policy.is_private(name))
                })
                .collect();
            access.push(json!({"type": ty, "name": name, "actions": actions}));
        }
    }
    let token = sign_jwt(st, &user, access)?;
    st.granted.fetch_add(1, Ordering::SeqCst);
    let body = json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    Ok(respond(&mut conn, "200 OK", "", &body)?)
}

fn sign_jwt(st: &State, sub: &str, access: Vec<serde_json::Value>) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [st.cert_der_b64]});
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": sub,
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 30,
        "iat": now,
        "jti": format!("berth-{}-{}", now, st.seq.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&st.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running openssl dgst")?;
    child
        .stdin
        .take()
        .context("openssl stdin")?
        .write_all(signing_input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "openssl dgst -sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(format!("{signing_input}.{}", base64url(&out.stdout)))
}

/// `Authorization: Basic ...` value for `user:pass`.
pub fn basic_auth_header(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}
