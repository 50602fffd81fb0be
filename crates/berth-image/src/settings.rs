//! Registry settings outside the command line: which registries are reached over plain HTTP
//! (`BERTH_INSECURE_REGISTRIES` and `<root>/registries.json`). Pulls and `berth login` read them.

use std::path::{Path, PathBuf};

/// A settings file that cannot be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file exists but could not be read.
    #[error("{}", path.display())]
    Read {
        /// The settings file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("reading {path}: {detail}")]
    Parse {
        /// The settings file.
        path: PathBuf,
        /// What is wrong, and what was expected.
        detail: String,
    },
}

/// Registries reached over plain HTTP: `--insecure-registry` values,
/// `BERTH_INSECURE_REGISTRIES` (comma separated) and `<root>/registries.json`
/// (`{"insecure": ["host:port", ...]}`).
pub fn insecure_registries(
    berth_root: &Path,
    extra: &[String],
) -> Result<Vec<String>, SettingsError> {
    let mut out: Vec<String> = extra.to_vec();
    if let Ok(v) = std::env::var("BERTH_INSECURE_REGISTRIES") {
        out.extend(
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    let p = berth_root.join("registries.json");
    match std::fs::read(&p) {
        Ok(b) => {
            #[derive(serde::Deserialize)]
            struct Conf {
                #[serde(default)]
                insecure: Vec<String>,
            }
            let c: Conf = serde_json::from_slice(&b).map_err(|e| SettingsError::Parse {
                path: p.clone(),
                detail: format!("{e} (expected {{\"insecure\": [\"host:port\"]}})"),
            })?;
            out.extend(c.insecure);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SettingsError::Read { path: p, source }),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn insecure_registries_from_flag_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let flag = vec!["flag.example:5000".to_string()];
        std::fs::write(
            dir.path().join("registries.json"),
            r#"{"insecure": ["file.example"]}"#,
        )
        .unwrap();
        let got = super::insecure_registries(dir.path(), &flag).unwrap();
        assert!(got.contains(&"flag.example:5000".to_string()), "{got:?}");
        assert!(got.contains(&"file.example".to_string()), "{got:?}");
        std::fs::write(dir.path().join("registries.json"), "[1]").unwrap();
        let err = super::insecure_registries(dir.path(), &flag).unwrap_err();
        assert!(err.to_string().contains("registries.json"), "{err}");
        assert!(matches!(err, super::SettingsError::Parse { .. }), "{err}");
    }
}
