//! Lexical cleaning of tar names.

/// The cleaned name would climb above the layer root.
#[derive(Debug)]
pub(super) struct Escapes;

/// Cleans `raw` into `out`: leading `/` and `./` dropped, empty and `.` components dropped, `..`
/// removes the previous component. A `..` with nothing left to remove is refused (as Docker does),
/// so no name can leave the root even lexically; symlinks are handled by `RESOLVE_IN_ROOT`.
pub(super) fn clean(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Escapes> {
    out.clear();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return Err(Escapes);
                }
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(())
}

/// Splits a cleaned name into its parent (maybe empty: the root) and last component.
pub(super) fn split(name: &[u8]) -> (&[u8], &[u8]) {
    match name.iter().rposition(|&b| b == b'/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (&[], name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Result<String, Escapes> {
        let mut out = Vec::new();
        clean(s.as_bytes(), &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn cleaning() {
        assert_eq!(c("./a/b/").unwrap(), "a/b");
        assert_eq!(c("/abs/path").unwrap(), "abs/path");
        assert_eq!(c("a//./b/../c").unwrap(), "a/c");
        assert_eq!(c("./").unwrap(), "");
        assert_eq!(c("a/..").unwrap(), "");
        assert!(c("../x").is_err());
        assert!(c("a/../../x").is_err());
        assert!(c("/..").is_err());
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
    }
}
