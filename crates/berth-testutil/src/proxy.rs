//! A fault-injecting HTTP/1.1 proxy for registry tests. It sits on a free
//! 127.0.0.1 port in front of a registry and, per its configuration, answers
//! requests with 500/429, cuts blob downloads after K body bytes, flips a
//! byte in blob bodies, stalls blob downloads until released, or redirects
//! blob downloads to a separate "blob store" port (like registries that
//! redirect to S3). Everything else passes through unchanged (keep-alive,
//! Content-Length, chunked and read-until-close bodies).

use crate::http::{find_header, read_request, read_response_head, Request};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to requests. Counts are "remaining times"; 0 = off.
#[derive(Clone, Debug, Default)]
pub struct FaultConfig {
    /// Answer this many (matching) requests with `fail_status`.
    pub fail_next: u32,
    /// The status for `fail_next` (500 if 0). 429 and 503 also send `Retry-After`.
    pub fail_status: u16,
    /// `Retry-After` seconds sent with 429/503 (default 1).
    pub retry_after: u32,
    /// Only fail requests whose path contains this.
    pub fail_path_contains: Option<String>,
    /// Cut the connection after this many body bytes of a blob GET response.
    pub cut_blob_after: Option<u64>,
    /// How many blob responses to cut (with `cut_blob_after`); `u32::MAX` = all.
    pub cut_times: u32,
    /// How many blob GET responses get one byte flipped.
    pub corrupt_blobs: u32,
    /// Stop sending a blob GET response after this many body bytes until
    /// [`FaultProxy::release_stalls`] (or Drop).
    pub stall_blob_after: Option<u64>,
    /// How many blob responses to stall; `u32::MAX` = all.
    pub stall_times: u32,
    /// Answer blob GETs with `307` to the proxy's blob-store port, which
    /// serves the blob without needing the client's `Authorization`.
    pub redirect_blobs: bool,
    /// Fixed responses, checked in order after `fail_next`, every time.
    pub canned: Vec<Canned>,
}

/// A fixed response for every request whose path contains `path_contains`
/// (e.g. a schema 1 manifest or an unknown media type).
#[derive(Clone, Debug)]
pub struct Canned {
    pub path_contains: String,
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

/// Builds a [`FaultProxy`].
#[derive(Clone, Debug)]
pub struct FaultProxyBuilder {
    upstream: String,
    cfg: FaultConfig,
}

impl FaultProxyBuilder {
    /// Answer the next `n` requests with 500 Internal Server Error.
    pub fn fail_next(mut self, n: u32) -> Self {
        self.cfg.fail_next = n;
        self.cfg.fail_status = 500;
        self
    }
    /// Answer the next `n` requests with `status` (429 adds `Retry-After: 1`).
    pub fn fail_next_with(mut self, n: u32, status: u16) -> Self {
        self.cfg.fail_next = n;
        self.cfg.fail_status = status;
        self
    }
    /// Answer the next `n` requests with 429 Too Many Requests and `Retry-After: 1`.
    pub fn too_many_requests(self, n: u32) -> Self {
        self.fail_next_with(n, 429)
    }
    /// Only fail requests whose path contains `s` (e.g. "/blobs/").
    pub fn fail_only_paths_containing(mut self, s: &str) -> Self {
        self.cfg.fail_path_contains = Some(s.into());
        self
    }
    /// Cut the first `times` blob downloads after `bytes` body bytes.
    pub fn cut_blobs_after(mut self, bytes: u64, times: u32) -> Self {
        self.cfg.cut_blob_after = Some(bytes);
        self.cfg.cut_times = times;
        self
    }
    /// Flip one byte in the next `times` blob downloads.
    pub fn corrupt_blobs(mut self, times: u32) -> Self {
        self.cfg.corrupt_blobs = times;
        self
    }
    /// Stall the first `times` blob downloads after `bytes` body bytes until
    /// [`FaultProxy::release_stalls`]: a pull is then reliably in flight.
    pub fn stall_blobs_after(mut self, bytes: u64, times: u32) -> Self {
        self.cfg.stall_blob_after = Some(bytes);
        self.cfg.stall_times = times;
        self
    }
    /// Answer every request whose path contains `path_contains` with
    /// `status`, `Content-Type: content_type` and `body`.
    pub fn respond(
        mut self,
        path_contains: &str,
        status: u16,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Self {
        self.cfg.canned.push(Canned {
            path_contains: path_contains.into(),
            status,
            content_type: content_type.into(),
            body: body.into(),
            headers: Vec::new(),
        });
        self
    }
    /// Redirect blob GETs (307) to the blob-store port.
    pub fn redirect_blobs(mut self) -> Self {
        self.cfg.redirect_blobs = true;
        self
    }
    pub fn start(self) -> Result<FaultProxy> {
        FaultProxy::start_with(&self.upstream, self.cfg)
    }
}

/// Counters of a [`FaultProxy`] (see [`FaultProxy::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests seen on the proxy port (including failed ones).
    pub requests: u64,
    /// GET/HEAD requests whose path contains `/blobs/` on the proxy port.
    pub blob_requests: u64,
    /// Faults injected (failures, cuts, corruptions and stalls).
    pub faults: u64,
    /// Client connections accepted on the proxy port.
    pub connections: u64,
    /// Responses that reached their stall point.
    pub stalled: u64,
    /// Blob GETs answered with a redirect to the blob store.
    pub redirects: u64,
    /// Requests received by the blob store.
    pub blob_store_requests: u64,
    /// Blob-store requests that carried an `Authorization` header (a client
    /// leaking registry credentials to the storage host).
    pub blob_store_auth_headers: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    blob_requests: AtomicU64,
    faults: AtomicU64,
    connections: AtomicU64,
    stalled: AtomicU64,
    redirects: AtomicU64,
    store_requests: AtomicU64,
    store_auth: AtomicU64,
}

struct Shared {
    upstream: String,
    store_addr: SocketAddr,
    cfg: Mutex<FaultConfig>,
    counters: Counters,
    log: Mutex<Vec<String>>,
    /// Open sockets (clients and upstreams) by id, shut down on Drop.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
    /// Authorization header (if any) of each redirected request, by key.
    redirect_auth: Mutex<HashMap<u64, Option<String>>>,
    /// Bumped by release_stalls; stalled responses wait for a change.
    stall_gen: Mutex<u64>,
    stall_cv: Condvar,
    stop: AtomicBool,
}

/// A running proxy; stops and drops its connections on Drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>, store: bool) {
    for conn in listener.incoming() {
        if sh.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        if !store {
            sh.counters.connections.fetch_add(1, Ordering::SeqCst);
        }
        let sh = sh.clone();
        std::thread::spawn(move || {
            let id = sh.track(&conn);
            let mut upstream_id = None;
            let _ = handle(&conn, &sh, store, &mut upstream_id);
            sh.untrack(id);
            if let Some(u) = upstream_id {
                sh.untrack(u);
            }
        });
    }
}

impl FaultProxy {
    /// A builder for a proxy in front of `upstream` ("127.0.0.1:PORT").
    pub fn builder(upstream: &str) -> FaultProxyBuilder {
        FaultProxyBuilder {
            upstream: upstream.into(),
            cfg: FaultConfig::default(),
        }
    }

    /// A pass-through proxy (configure faults later with [`FaultProxy::set`]).
    pub fn start(upstream: &str) -> Result<FaultProxy> {
        Self::start_with(upstream, FaultConfig::default())
    }

    pub fn start_with(upstream: &str, cfg: FaultConfig) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fault proxy")?;
        let store = TcpListener::bind("127.0.0.1:0").context("binding the blob store")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.into(),
            store_addr: store.local_addr()?,
            cfg: Mutex::new(cfg),
            counters: Counters::default(),
            log: Mutex::new(Vec::new()),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            redirect_auth: Mutex::new(HashMap::new()),
            stall_gen: Mutex::new(0),
            stall_cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (a, b) = (shared.clone(), shared.clone());
        let threads = vec![
            std::thread::spawn(move || accept_loop(listener, a, false)),
            std::thread::spawn(move || accept_loop(store, b, true)),
        ];
        Ok(FaultProxy {
            addr,
            shared,
            threads,
        })
    }

    /// "127.0.0.1:PORT" of the proxy: use it as the registry address.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
    /// "127.0.0.1:PORT" of the blob store that redirects point to.
    pub fn blob_store_addr(&self) -> String {
        self.shared.store_addr.to_string()
    }
    /// Replaces the fault configuration (takes effect for the next request).
    pub fn set(&self, cfg: FaultConfig) {
        *self.shared.cfg.lock().unwrap() = cfg;
    }
    /// Edits the fault configuration in place.
    pub fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        f(&mut self.shared.cfg.lock().unwrap());
    }
    /// The current configuration (with remaining counts).
    pub fn config(&self) -> FaultConfig {
        self.shared.cfg.lock().unwrap().clone()
    }
    /// Lets every stalled response continue.
    pub fn release_stalls(&self) {
        *self.shared.stall_gen.lock().unwrap() += 1;
        self.shared.stall_cv.notify_all();
    }
    /// Waits until at least `n` responses have stalled; false on timeout.
    pub fn wait_stalled(&self, n: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.stats().stalled < n {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
    /// A snapshot of every counter.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            requests: get(&c.requests),
            blob_requests: get(&c.blob_requests),
            faults: get(&c.faults),
            connections: get(&c.connections),
            stalled: get(&c.stalled),
            redirects: get(&c.redirects),
            blob_store_requests: get(&c.store_requests),
            blob_store_auth_headers: get(&c.store_auth),
        }
    }
    /// Requests seen on the proxy port (`stats().requests`).
    pub fn requests(&self) -> u64 {
        self.stats().requests
    }
    /// Faults injected so far (`stats().faults`).
    pub fn faults_injected(&self) -> u64 {
        self.stats().faults
    }
    /// "METHOD TARGET -> STATUS" for every request, in order.
    pub fn log(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.release_stalls();
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let _ = TcpStream::connect_timeout(&self.shared.store_addr, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for (_, c) in self.shared.conns.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Shared {
    fn track(&self, s: &TcpStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(c) = s.try_clone() {
            self.conns.lock().unwrap().insert(id, c);
        }
        id
    }
    /// Forgets a socket and shuts it down, so every clone of it is closed.
    fn untrack(&self, id: u64) {
        if let Some(c) = self.conns.lock().unwrap().remove(&id) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
    /// Blocks until release_stalls (or Drop) after the generation `since`.
    fn wait_release(&self, since: u64) {
        let mut g = self.stall_gen.lock().unwrap();
        while *g == since && !self.stop.load(Ordering::SeqCst) {
            g = self.stall_cv.wait(g).unwrap();
        }
    }
}

enum Action {
    Fail(u16, u32),
    Canned(Canned),
    Redirect,
    Forward {
        cut: Option<u64>,
        corrupt: bool,
        stall: Option<u64>,
    },
}

/// Takes one use of a "remaining times" counter (`u32::MAX` = unlimited).
fn take(times: &mut u32) -> bool {
    if *times == 0 {
        return false;
    }
    if *times != u32::MAX {
        *times -= 1;
    }
    true
}

fn decide(sh: &Shared, req: &Request, store: bool) -> Action {
    let path = req.target.split('?').next().unwrap_or("");
    let blob_get = req.method == "GET" && path.contains("/blobs/") && !path.contains("/uploads");
    let mut guard = sh.cfg.lock().unwrap();
    let cfg = &mut *guard;
    let matches = cfg
        .fail_path_contains
        .as_ref()
        .is_none_or(|s| path.contains(s.as_str()));
    if cfg.fail_next > 0 && matches {
        cfg.fail_next -= 1;
        sh.counters.faults.fetch_add(1, Ordering::SeqCst);
        let status = if cfg.fail_status == 0 {
            500
        } else {
            cfg.fail_status
        };
        return Action::Fail(status, cfg.retry_after.max(1));
    }
    if let Some(c) = cfg.canned.iter().find(|c| path.contains(&c.path_contains)) {
        return Action::Canned(c.clone());
    }
    if !blob_get {
        return Action::Forward {
            cut: None,
            corrupt: false,
            stall: None,
        };
    }
    if cfg.redirect_blobs && !store {
        return Action::Redirect;
    }
    let cut = match cfg.cut_blob_after {
        Some(k) if take(&mut cfg.cut_times) => Some(k),
        _ => None,
    };
    let stall = match cfg.stall_blob_after {
        Some(k) if cut.is_none() && take(&mut cfg.stall_times) => Some(k),
        _ => None,
    };
    let corrupt = cut.is_none() && take(&mut cfg.corrupt_blobs);
    Action::Forward {
        cut,
        corrupt,
        stall,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    find_header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn wants_close(headers: &[(String, String)]) -> bool {
    find_header(headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

fn content_length(headers: &[(String, String)]) -> Option<u64> {
    find_header(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

/// Copies `n` bytes; with `flip_at`, xors the byte at that offset.
fn copy_n(
    r: &mut impl Read,
    w: &mut impl Write,
    mut n: u64,
    flip_at: Option<u64>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while n > 0 {
        let want = buf.len().min(n as usize);
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(f) = flip_at {
            if f >= off && f < off + got as u64 {
                buf[(f - off) as usize] ^= 0xff;
            }
        }
        w.write_all(&buf[..got])?;
        off += got as u64;
        n -= got as u64;
    }
    Ok(())
}

/// Copies a chunked body verbatim (sizes, extensions, trailers).
fn copy_chunked(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        w.write_all(&line)?;
        let s = String::from_utf8_lossy(&line);
        let size = u64::from_str_radix(s.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // trailers up to an empty line
            loop {
                let mut t = Vec::new();
                r.read_until(b'\n', &mut t)?;
                w.write_all(&t)?;
                if t.is_empty() || t == b"\r\n" || t == b"\n" {
                    return Ok(());
                }
            }
        }
        copy_n(r, w, size + 2, None)?;
    }
}

fn write_head(w: &mut impl Write, first: &str, headers: &[(String, String)]) -> io::Result<()> {
    let mut h = format!("{first}\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    w.write_all(h.as_bytes())
}

/// Writes a response made up by the proxy.
fn write_own_response(
    w: &mut impl Write,
    method: &str,
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: Vec<(String, String)>,
) -> io::Result<()> {
    let mut headers = vec![
        ("Content-Type".to_string(), content_type.to_string()),
        ("Content-Length".to_string(), body.len().to_string()),
    ];
    headers.extend(extra);
    write_head(
        w,
        &format!("HTTP/1.1 {status} {}", reason(status)),
        &headers,
    )?;
    if method != "HEAD" {
        w.write_all(body)?;
    }
    w.flush()
}

/// Turns a blob-store request back into the registry request it stands for;
/// `None` when its key is unknown.
fn store_to_registry(sh: &Shared, req: &mut Request) -> Option<()> {
    let rest = req.target.strip_prefix("/blobstore")?;
    let (path, query) = rest.split_once('?')?;
    let key: u64 = query.strip_prefix("key=")?.parse().ok()?;
    let auth = sh.redirect_auth.lock().unwrap().get(&key)?.clone();
    if find_header(&req.headers, "authorization").is_some() {
        sh.counters.store_auth.fetch_add(1, Ordering::SeqCst);
    }
    req.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    if let Some(a) = auth {
        req.headers.push(("Authorization".into(), a));
    }
    req.target = path.to_string();
    Some(())
}

fn handle(
    client: &TcpStream,
    sh: &Shared,
    store: bool,
    upstream_id: &mut Option<u64>,
) -> Result<()> {
    let mut client_r = BufReader::new(client.try_clone()?);
    let mut client_w = client.try_clone()?;
    let mut upstream: Option<(BufReader<TcpStream>, TcpStream)> = None;
    loop {
        let Some(mut req) = read_request(&mut client_r)? else {
            return Ok(());
        };
        if sh.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let orig_target = req.target.clone();
        let req_body_len = content_length(&req.headers);
        let req_chunked = is_chunked(&req.headers);
        let client_close = wants_close(&req.headers);
        let mut action = None;
        if store {
            sh.counters.store_requests.fetch_add(1, Ordering::SeqCst);
            if store_to_registry(sh, &mut req).is_none() {
                action = Some(Action::Fail(403, 1));
            }
        } else {
            sh.counters.requests.fetch_add(1, Ordering::SeqCst);
            let path = req.target.split('?').next().unwrap_or("");
            if (req.method == "GET" || req.method == "HEAD") && path.contains("/blobs/") {
                sh.counters.blob_requests.fetch_add(1, Ordering::SeqCst);
            }
        }
        let action = action.unwrap_or_else(|| decide(sh, &req, store));
        let own_status = match action {
            Action::Fail(status, _) => Some(status),
            Action::Canned(ref c) => Some(c.status),
            Action::Redirect => Some(307),
            Action::Forward { .. } => None,
        };
        if let Some(status) = own_status {
            // Drain the request body, then answer.
            if req_chunked {
                copy_chunked(&mut client_r, &mut io::sink())?;
            } else if let Some(n) = req_body_len {
                copy_n(&mut client_r, &mut io::sink(), n, None)?;
            }
            let mut extra = Vec::new();
            if let Action::Fail(429 | 503, retry_after) = action {
                extra.push(("Retry-After".to_string(), retry_after.to_string()));
            }
            if let Action::Redirect = action {
                let key = sh.next_id.fetch_add(1, Ordering::SeqCst);
                let auth = find_header(&req.headers, "authorization").map(String::from);
                sh.redirect_auth.lock().unwrap().insert(key, auth);
                sh.counters.redirects.fetch_add(1, Ordering::SeqCst);
                let path = req.target.split('?').next().unwrap_or("");
                let loc = format!("http://{}/blobstore{path}?key={key}", sh.store_addr);
                extra.push(("Location".to_string(), loc));
            }
            let fault_body = format!(
                "{{\"errors\":[{{\"code\":\"UNKNOWN\",\"message\":\"injected fault {status}\"}}]}}"
            );
            let (what, ctype, body) = match &action {
                Action::Canned(c) => {
                    extra.extend(c.headers.iter().cloned());
                    ("canned", c.content_type.as_str(), c.body.as_slice())
                }
                Action::Redirect => ("redirect", "application/json", &b""[..]),
                _ => ("injected", "application/json", fault_body.as_bytes()),
            };
            write_own_response(&mut client_w, &req.method, status, ctype, body, extra)?;
            sh.log
                .lock()
                .unwrap()
                .push(format!("{} {orig_target} -> {status} ({what})", req.method));
            if client_close {
                return Ok(());
            }
            continue;
        }
        let Action::Forward {
            cut,
            corrupt,
            stall,
        } = action
        else {
            unreachable!()
        };
        if upstream.is_none() {
            let s = TcpStream::connect(&sh.upstream)
                .with_context(|| format!("connecting to upstream {}", sh.upstream))?;
            *upstream_id = Some(sh.track(&s));
            upstream = Some((BufReader::new(s.try_clone()?), s));
        }
        let (up_r, up_w) = upstream.as_mut().unwrap();
        write_head(
            up_w,
            &format!("{} {} HTTP/1.1", req.method, req.target),
            &req.headers,
        )?;
        if req_chunked {
            copy_chunked(&mut client_r, up_w)?;
        } else if let Some(n) = req_body_len {
            copy_n(&mut client_r, up_w, n, None)?;
        }
        up_w.flush()?;
        let (status, headers) = read_response_head(up_r)?;
        sh.log
            .lock()
            .unwrap()
            .push(format!("{} {orig_target} -> {status}", req.method));
        write_head(
            &mut client_w,
            &format!("HTTP/1.1 {status} {}", reason(status)),
            &headers,
        )?;
        let no_body =
            req.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
        let close = client_close || wants_close(&headers);
        let len = content_length(&headers);
        if no_body {
        } else if let (Some(k), true) = (cut, status == 200) {
            sh.counters.faults.fetch_add(1, Ordering::SeqCst);
            let n = len.map_or(k, |l| l.min(k));
            let _ = copy_n(up_r, &mut client_w, n, None);
            let _ = client_w.flush();
            let _ = client_w.shutdown(Shutdown::Both);
            let _ = up_w.shutdown(Shutdown::Both);
            return Ok(());
        } else if is_chunked(&headers) {
            copy_chunked(up_r, &mut client_w)?;
        } else if let Some(n) = len {
            let flip = (corrupt && status == 200 && n > 0).then_some(n / 2);
            if flip.is_some() {
                sh.counters.faults.fetch_add(1, Ordering::SeqCst);
            }
            let pause = match stall {
                Some(k) if status == 200 => Some(k.min(n)),
                _ => None,
            };
            if let Some(k) = pause {
                let gen = *sh.stall_gen.lock().unwrap();
                copy_n(up_r, &mut client_w, k, flip)?;
                client_w.flush()?;
                sh.counters.faults.fetch_add(1, Ordering::SeqCst);
                sh.counters.stalled.fetch_add(1, Ordering::SeqCst);
                sh.wait_release(gen);
                if sh.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                copy_n(
                    up_r,
                    &mut client_w,
                    n - k,
                    flip.and_then(|f| f.checked_sub(k)),
                )?;
            } else {
                copy_n(up_r, &mut client_w, n, flip)?;
            }
        } else {
            io::copy(up_r, &mut client_w)?;
            return Ok(());
        }
        client_w.flush()?;
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, sha256_digest};
    use crate::http::http_get;
    use crate::Registry;
    use std::process::Command;

    /// A registry with busybox pushed; returns it and the layer digest.
    fn registry_with_busybox() -> (Registry, String) {
        let tmp = tempfile::tempdir().unwrap();
        let bb = tmp.path().join("bb");
        fixtures::busybox_layout(&bb).unwrap();
        let reg = Registry::start().unwrap();
        reg.push(&bb, "latest", "library/busybox:latest", None)
            .unwrap();
        let r = http_get(
            &reg.addr(),
            "/v2/library/busybox/manifests/latest",
            &[("Accept", fixtures::MT_OCI_MANIFEST)],
        )
        .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        (reg, m["layers"][0]["digest"].as_str().unwrap().to_string())
    }

    #[test]
    fn fails_n_times_then_passes_through() {
        let reg = Registry::start().unwrap();
        let p = FaultProxy::builder(&reg.addr())
            .fail_next(3)
            .start()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(http_get(&p.addr(), "/v2/", &[]).unwrap().status, 500);
        }
        let r = http_get(&p.addr(), "/v2/", &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
        assert_eq!(p.requests(), 4);
        assert_eq!(p.faults_injected(), 3);

        p.update(|c| {
            c.fail_next = 2;
            c.fail_status = 429;
        });
        let r = http_get(&p.addr(), "/v2/", &[]).unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(http_get(&p.addr(), "/v2/", &[]).unwrap().status, 429);
        assert_eq!(http_get(&p.addr(), "/v2/", &[]).unwrap().status, 200);
    }

    #[test]
    fn keep_alive_pass_through_with_curl() {
        let (reg, layer) = registry_with_busybox();
        let p = FaultProxy::start(&reg.addr()).unwrap();
        let blob = format!("http://{}/v2/library/busybox/blobs/{layer}", p.addr());
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} ",
            ])
            .arg(format!("http://{}/v2/", p.addr()))
            .arg(&blob)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200 200 ");
        assert_eq!(p.requests(), 2);
        assert_eq!(p.stats().connections, 1, "curl should reuse the connection");
        let r = http_get(
            &p.addr(),
            &format!("/v2/library/busybox/blobs/{layer}"),
            &[],
        )
        .unwrap();
        assert_eq!(sha256_digest(&r.body), layer);
    }

    #[test]
    fn cuts_and_corrupts_blobs() {
        let (reg, layer) = registry_with_busybox();
        let path = format!("/v2/library/busybox/blobs/{layer}");
        let p = FaultProxy::builder(&reg.addr())
            .cut_blobs_after(1000, 1)
            .start()
            .unwrap();
        let r = http_get(&p.addr(), &path, &[]).unwrap();
        assert_eq!(r.status, 200);
        let full: u64 = r.header("content-length").unwrap().parse().unwrap();
        assert!(full > 1000);
        assert_eq!(r.body.len(), 1000);
        // Manifests are not cut; the next blob request is whole again.
        let r = http_get(&p.addr(), &path, &[]).unwrap();
        assert_eq!(r.body.len() as u64, full);
        assert_eq!(sha256_digest(&r.body), layer);

        p.set(FaultConfig {
            corrupt_blobs: 1,
            ..Default::default()
        });
        let r = http_get(&p.addr(), &path, &[]).unwrap();
        assert_eq!(r.body.len() as u64, full);
        assert_ne!(sha256_digest(&r.body), layer);
        let r = http_get(&p.addr(), &path, &[]).unwrap();
        assert_eq!(sha256_digest(&r.body), layer);
        assert_eq!(p.faults_injected(), 2);
        assert_eq!(p.stats().blob_requests, 4);
    }

    #[test]
    fn failures_can_target_blobs_only() {
        let (reg, layer) = registry_with_busybox();
        let schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
        let p = FaultProxy::builder(&reg.addr())
            .respond("/manifests/old", 200, schema1, r#"{"schemaVersion":1}"#)
            .fail_next(1)
            .fail_only_paths_containing("/blobs/")
            .start()
            .unwrap();
        assert_eq!(http_get(&p.addr(), "/v2/", &[]).unwrap().status, 200);
        let path = format!("/v2/library/busybox/blobs/{layer}");
        assert_eq!(http_get(&p.addr(), &path, &[]).unwrap().status, 500);
        assert_eq!(http_get(&p.addr(), &path, &[]).unwrap().status, 200);
        let r = http_get(&p.addr(), "/v2/library/busybox/manifests/old", &[]).unwrap();
        assert_eq!((r.status, r.header("content-type")), (200, Some(schema1)));
        assert_eq!(r.text(), r#"{"schemaVersion":1}"#);
        assert_eq!(p.log().len(), 4);
    }

    #[test]
    fn stalls_until_released() {
        let (reg, layer) = registry_with_busybox();
        let path = format!("/v2/library/busybox/blobs/{layer}");
        let p = FaultProxy::builder(&reg.addr())
            .stall_blobs_after(4096, 2)
            .start()
            .unwrap();
        let (addr, p1) = (p.addr(), path.clone());
        let t = std::thread::spawn(move || http_get(&addr, &p1, &[]).unwrap());
        assert!(p.wait_stalled(1, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!t.is_finished(), "stalled download finished early");
        p.release_stalls();
        let r = t.join().unwrap();
        assert_eq!(sha256_digest(&r.body), layer);

        // Dropping the proxy ends a stalled download (truncated).
        let (addr, p2) = (p.addr(), path.clone());
        let t = std::thread::spawn(move || http_get(&addr, &p2, &[]));
        assert!(p.wait_stalled(2, Duration::from_secs(10)));
        drop(p);
        let r = t.join().unwrap().unwrap();
        assert!(r.body.len() < 8192, "got {} bytes", r.body.len());
    }

    #[test]
    fn redirects_blobs_to_a_store_without_credentials() {
        let tmp = tempfile::tempdir().unwrap();
        let bb = tmp.path().join("bb");
        fixtures::busybox_layout(&bb).unwrap();
        let reg = Registry::start_basic_auth("u", "p").unwrap();
        reg.push(&bb, "latest", "bb:latest", None).unwrap();
        let auth = crate::token::basic_auth_header("u", "p");
        let p = FaultProxy::builder(&reg.addr())
            .redirect_blobs()
            .start()
            .unwrap();
        let r = http_get(
            &p.addr(),
            "/v2/bb/manifests/latest",
            &[
                ("Authorization", &auth),
                ("Accept", fixtures::MT_OCI_MANIFEST),
            ],
        )
        .unwrap();
        assert_eq!(r.status, 200, "manifests are not redirected");
        let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        let r = http_get(
            &p.addr(),
            &format!("/v2/bb/blobs/{layer}"),
            &[("Authorization", &auth)],
        )
        .unwrap();
        assert_eq!(r.status, 307);
        let loc = r.header("location").unwrap().to_string();
        let rest = loc.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        assert_eq!(host, p.blob_store_addr());
        // The store serves the blob without the registry's credentials.
        let r = http_get(host, path, &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(sha256_digest(&r.body), layer);
        assert_eq!(p.stats().blob_store_auth_headers, 0);
        http_get(host, path, &[("Authorization", &auth)]).unwrap();
        assert_eq!(p.stats().blob_store_auth_headers, 1);
        assert_eq!(p.stats().redirects, 1);
        assert_eq!(p.stats().blob_store_requests, 2);
        // Unknown keys are refused.
        assert_eq!(
            http_get(host, "/blobstore/v2/bb/blobs/x?key=999999", &[])
                .unwrap()
                .status,
            403
        );
        // curl follows the redirect and does not leak credentials across hosts.
        let out = Command::new("curl")
            .args([
                "-s",
                "-L",
                "-u",
                "u:p",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("http://{}/v2/bb/blobs/{layer}", p.addr()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        assert_eq!(p.stats().blob_store_auth_headers, 1);
    }
}
