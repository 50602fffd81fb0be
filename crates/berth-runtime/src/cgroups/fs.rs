//! Small file helpers whose errors name the cgroup file and the value.

use std::io::{ErrorKind, Write};
use std::path::Path;

use super::error::CgroupError;

/// Writes `value` to an existing cgroup file in one `write(2)`.
pub fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let res = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Reads a cgroup file, trimmed.
pub fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads a cgroup file, `None` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a number; `max` (v2) and `-1` read as `u64::MAX`; missing files read as 0.
pub fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    Ok(match read_opt(path)? {
        None => 0,
        Some(s) if s == "max" || s == "-1" => u64::MAX,
        Some(s) => s.parse().unwrap_or(0),
    })
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events, ...).
pub fn read_keyed(path: &Path) -> Result<std::collections::BTreeMap<String, u64>, CgroupError> {
    let mut map = std::collections::BTreeMap::new();
    if let Some(text) = read_opt(path)? {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            if let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Ok(v) = v.parse() {
                    map.insert(k.to_string(), v);
                }
            }
        }
    }
    Ok(map)
}

/// Lexically cleans a path the way runc's `CleanPath` does: a relative path cannot climb
/// above its base (`../x` becomes `x`), `.` and duplicate slashes vanish.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return String::new();
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::clean_path;

    #[test]
    fn cleans_paths_like_runc() {
        assert_eq!(clean_path("/a/../b//c/."), "/b/c");
        assert_eq!(clean_path("../../x/y"), "x/y");
        assert_eq!(clean_path("/../.."), "/");
        assert_eq!(clean_path("a/./b"), "a/b");
        assert_eq!(clean_path(""), "");
    }
}
