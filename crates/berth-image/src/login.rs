//! `berth login`: checks credentials against a registry, then stores them.

use crate::auth::{self, AuthError, Credentials};
use crate::reference::{Reference, ReferenceError};
use crate::registry::{self, RegistryError, Repo};
use crate::settings::{insecure_registries, SettingsError};
use std::path::{Path, PathBuf};

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The host does not make a registry reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry settings could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The registry refused the credentials, or could not be reached.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The credentials could not be stored.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The async runtime for the registry client could not start.
    #[error("starting the login's async runtime")]
    Runtime(#[source] std::io::Error),
}

/// Checks `creds` against the registry at `host`, then stores them; returns the credentials
/// file. Blocking: its async runtime is shut down (threads joined) before it returns.
pub fn login_blocking(
    berth_root: &Path,
    host: &str,
    creds: &Credentials,
    extra_insecure: &[String],
) -> Result<PathBuf, LoginError> {
    let r = Reference::parse(&format!("{host}/berth-login-check"))?;
    let insecure = insecure_registries(berth_root, extra_insecure)?;
    let plain =
        registry::is_loopback_host(&r.registry) || insecure.iter().any(|h| h == &r.registry);
    let repo = Repo::new(
        r.api_host(),
        &r.repository,
        host,
        plain,
        Some(creds.clone()),
    )?;
    let rt = registry::runtime().map_err(LoginError::Runtime)?;
    let res = rt.block_on(repo.check_login());
    drop(rt);
    res?;
    Ok(auth::store(berth_root, &r.registry, creds)?)
}
