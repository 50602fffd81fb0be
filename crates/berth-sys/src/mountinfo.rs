//! `/proc/PID/mountinfo` fields: the kernel writes space, tab, newline and backslash in paths
//! as a backslash and three octal digits; [`unescape`] undoes that, byte for byte.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// A path field of mountinfo (mount point or root) with its octal escapes undone.
pub fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok());
        match octal {
            Some(v) if b[i] == b'\\' => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::unescape;
    use std::path::Path;

    #[test]
    fn octal_escapes_are_undone_and_the_rest_kept() {
        assert_eq!(unescape(r"/a\040b\011c"), Path::new("/a b\tc"));
        assert_eq!(unescape(r"/back\134slash"), Path::new("/back\\slash"));
        assert_eq!(unescape(r"/nl\012"), Path::new("/nl\n"));
        assert_eq!(unescape("/plain"), Path::new("/plain"));
        assert_eq!(unescape(r"/end\"), Path::new(r"/end\"));
        assert_eq!(unescape(r"/short\04"), Path::new(r"/short\04"));
        assert_eq!(unescape(r"/not\999octal"), Path::new(r"/not\999octal"));
    }
}
