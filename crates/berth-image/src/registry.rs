//! Talking to one repository of a registry (OCI distribution spec / Docker
//! Registry HTTP API v2).
//!
//! The authentication handshake (the `WWW-Authenticate` challenge, the bearer
//! token request with or without credentials, basic auth) is oci-client's.
//! Manifest and blob GETs are issued with reqwest directly because berth needs
//! what oci-client does not expose: the HTTP status of a failure (401/403/404/429
//! each get their own message), the `Retry-After` header, and the raw response
//! stream so a blob is hashed, stored and unpacked in one pass. Redirects (to
//! blob storage) are followed by reqwest, which drops the Authorization header
//! when the redirect leaves the registry's host.

use crate::auth::Credentials;
use std::time::Duration;

/// The async runtime a blocking call (a pull, a login) runs the client on: two workers, shut
/// down by the caller (dropping it joins every thread) before it returns, so callers may fork.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("berth-registry")
        .enable_all()
        .build()
}

/// Attempts per request (the first one included).
pub const MAX_ATTEMPTS: u32 = 5;
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{host} requires authentication to pull {image}: run `berth login {host}`")]
    AuthRequired { image: String, host: String },
    #[error("{host} rejected the credentials for {image} ({detail}): run `berth login {host}` with the right user name and password")]
    BadCredentials {
        image: String,
        host: String,
        detail: String,
    },
    #[error("{host} denied access to {image} (403 Forbidden): check that you may pull it, and log in with `berth login {host}` as a user who may")]
    Denied { image: String, host: String },
    #[error("{what} not found in {host} (404): check the image name and tag")]
    NotFound { what: String, host: String },
    #[error("{host} kept answering 429 Too Many Requests for {what} after {attempts} attempts: wait a while and pull again, or `berth login {host}` for a higher rate limit")]
    TooManyRequests {
        what: String,
        host: String,
        attempts: u32,
    },
    #[error("{host} answered {status} for {what} after {attempts} attempts: the registry is failing, try again later")]
    Server {
        what: String,
        host: String,
        status: u16,
        attempts: u32,
    },
    #[error("{host} answered {status} for {what}: {body}")]
    Unexpected {
        what: String,
        host: String,
        status: u16,
        body: String,
    },
    #[error("cannot reach registry {host}{hint} for {what} after {attempts} attempts")]
    Transport {
        what: String,
        host: String,
        attempts: u32,
        hint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("setting up an HTTP client")]
    Client(#[source] reqwest::Error),
}

impl RegistryError {
    /// Worth another try of the whole operation (a blob download restarted from 0).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Transport { .. }
                | RegistryError::Server { .. }
                | RegistryError::TooManyRequests { .. }
        )
    }
}

/// The exponential backoff before attempt `attempt` (1-based retries).
pub fn backoff(attempt: u32) -> Duration {
    let d = BACKOFF_START.saturating_mul(1u32 << attempt.saturating_sub(1).min(10));
    d.min(BACKOFF_MAX)
}

/// `Retry-After` as seconds or an HTTP date, capped.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    let d = if let Ok(secs) = v.trim().parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
        let now = chrono::Utc::now();
        (when.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(RETRY_AFTER_MAX))
}

/// Loopback hosts are always reached over plain HTTP, as Docker does.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    if name == "localhost" {
        return true;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// One repository on one registry, with its authentication state.
pub struct Repo {
    http: reqwest::Client,
    oci: oci_client::Client,
    oci_ref: oci_client::Reference,
    base: String,
    host: String,
    /// For messages: `127.0.0.1:5000/busybox:latest`.
    image: String,
    creds: Option<Credentials>,
    authorization: tokio::sync::RwLock<Option<String>>,
}

impl Repo {
    /// `host` is the API host, `image` the reference as the user should see it.
    pub fn new(
        host: &str,
        repository: &str,
        image: &str,
        plain_http: bool,
        creds: Option<Credentials>,
    ) -> Result<Repo, RegistryError> {
        let scheme = if plain_http { "http" } else { "https" };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RegistryError::Client)?;
        let protocol = if plain_http {
            oci_client::client::ClientProtocol::Http
        } else {
            oci_client::client::ClientProtocol::Https
        };
        let oci = oci_client::Client::try_from(oci_client::client::ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        })
        .map_err(|e| match e {
            oci_client::errors::OciDistributionError::RequestError(e) => RegistryError::Client(e),
            other => RegistryError::Unexpected {
                what: "client setup".into(),
                host: host.into(),
                status: 0,
                body: other.to_string(),
            },
        })?;
        Ok(Repo {
            http,
            oci,
            oci_ref: oci_client::Reference::with_tag(
                host.to_string(),
                repository.to_string(),
                "latest".to_string(),
            ),
            base: format!("{scheme}://{host}/v2/{repository}"),
            host: host.to_string(),
            image: image.to_string(),
            creds,
            authorization: tokio::sync::RwLock::new(None),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs the registry's authentication handshake and keeps the resulting
    /// Authorization header for later requests.
    pub async fn authenticate(&self) -> Result<(), RegistryError> {
        use oci_client::errors::OciDistributionError as E;
        use oci_client::secrets::RegistryAuth;
        let auth = match &self.creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let mut attempt = 0;
        let header = loop {
            attempt += 1;
            match self
                .oci
                .auth(&self.oci_ref, &auth, oci_client::RegistryOperation::Pull)
                .await
            {
                Ok(Some(token)) => break Some(format!("Bearer {token}")),
                Ok(None) => break self.creds.as_ref().map(basic_header),
                Err(E::AuthenticationFailure(detail)) => {
                    let detail = detail.trim().chars().take(200).collect::<String>();
                    return Err(match &self.creds {
                        Some(_) => RegistryError::BadCredentials {
                            image: self.image.clone(),
                            host: self.host.clone(),
                            detail,
                        },
                        None => RegistryError::AuthRequired {
                            image: self.image.clone(),
                            host: self.host.clone(),
                        },
                    });
                }
                Err(E::RequestError(source)) => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(self.transport("authentication", attempt, source));
                    }
                    tracing::debug!(attempt, error = %source, "auth request failed, retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(other) => {
                    return Err(RegistryError::Unexpected {
                        what: format!("authentication for {}", self.image),
                        host: self.host.clone(),
                        status: 0,
                        body: other.to_string(),
                    })
                }
            }
        };
        *self.authorization.write().await = header;
        Ok(())
    }

    fn transport(&self, what: &str, attempts: u32, source: reqwest::Error) -> RegistryError {
        let text = format!("{source:?}");
        let hint = if text.contains("InvalidContentType")
            || text.contains("CorruptMessage")
            || text.contains("wrong version number")
            || text.contains("HTTP response to HTTPS")
        {
            " (is it a plain-HTTP registry? list it in BERTH_INSECURE_REGISTRIES or <root>/registries.json)"
        } else if source.is_connect() {
            " (is the registry running and the host name right?)"
        } else {
            ""
        };
        RegistryError::Transport {
            what: what.to_string(),
            host: self.host.clone(),
            attempts,
            hint,
            source,
        }
    }

    /// GET with retries on dropped connections, 5xx and 429, one
    /// re-authentication on 401, and errors that say what to do.
    pub async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = format!("{}/{}", self.base, path);
        let mut attempt = 0;
        let mut reauthed = false;
        loop {
            attempt += 1;
            let mut req = self.http.get(&url);
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let Some(h) = self.authorization.read().await.as_ref() {
                req = req.header(reqwest::header::AUTHORIZATION, h);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(self.transport(what, attempt, e));
                    }
                    tracing::debug!(attempt, %url, error = %e, "request failed, retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            let code = status.as_u16();
            match code {
                401 if !reauthed => {
                    // A first request, or an expired token: authenticate and try again.
                    reauthed = true;
                    attempt -= 1;
                    self.authenticate().await?;
                }
                401 => {
                    return Err(match &self.creds {
                        Some(_) => RegistryError::BadCredentials {
                            image: self.image.clone(),
                            host: self.host.clone(),
                            detail: "401 Unauthorized".into(),
                        },
                        None => RegistryError::AuthRequired {
                            image: self.image.clone(),
                            host: self.host.clone(),
                        },
                    })
                }
                403 => {
                    return Err(RegistryError::Denied {
                        image: self.image.clone(),
                        host: self.host.clone(),
                    })
                }
                404 => {
                    return Err(RegistryError::NotFound {
                        what: what.to_string(),
                        host: self.host.clone(),
                    })
                }
                429 | 500..=599 => {
                    let wait = retry_after(&resp).unwrap_or_else(|| backoff(attempt));
                    if attempt >= MAX_ATTEMPTS {
                        return Err(if code == 429 {
                            RegistryError::TooManyRequests {
                                what: what.to_string(),
                                host: self.host.clone(),
                                attempts: attempt,
                            }
                        } else {
                            RegistryError::Server {
                                what: what.to_string(),
                                host: self.host.clone(),
                                status: code,
                                attempts: attempt,
                            }
                        });
                    }
                    tracing::debug!(attempt, %url, status = code, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(RegistryError::Unexpected {
                        what: what.to_string(),
                        host: self.host.clone(),
                        status: code,
                        body: body.trim().chars().take(300).collect(),
                    });
                }
            }
        }
    }

    /// Checks that the registry accepts these credentials (for `berth login`).
    pub async fn check_login(&self) -> Result<(), RegistryError> {
        self.authenticate().await?;
        let url = self
            .base
            .split("/v2/")
            .next()
            .unwrap_or(&self.base)
            .to_string()
            + "/v2/";
        let mut req = self.http.get(&url);
        if let Some(h) = self.authorization.read().await.as_ref() {
            req = req.header(reqwest::header::AUTHORIZATION, h);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport("login", 1, e))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(RegistryError::BadCredentials {
                image: self.image.clone(),
                host: self.host.clone(),
                detail: format!("{}", resp.status()),
            }),
            code => Err(RegistryError::Unexpected {
                what: "/v2/".into(),
                host: self.host.clone(),
                status: code,
                body: resp.text().await.unwrap_or_default(),
            }),
        }
    }
}

fn basic_header(c: &Credentials) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("localhost:5000"));
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.3.4.5"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
        assert!(!is_loopback_host("registry.example"));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
