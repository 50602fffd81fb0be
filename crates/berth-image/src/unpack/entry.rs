//! Tar headers: extension headers (PAX, GNU long names) read with a size cap, and the checks that
//! turn one header into a trusted [`Meta`].

use std::io::{self, Read};

use tar::{Entry, Header, PaxExtensions};

use super::UnpackError;

/// Largest PAX or GNU long-name extension accepted. Real ones are a few hundred bytes; xattrs
/// (e.g. ACLs, capabilities) stay far below this.
const MAX_EXTENSION: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryKind {
    Regular,
    Directory,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// Seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// One entry's checked metadata. Reused from entry to entry to avoid allocations.
#[derive(Debug)]
pub(super) struct Meta {
    /// The entry's name as the tar spells it (lossy UTF-8), for messages.
    pub display: String,
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid, sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Time,
    pub atime: Option<Time>,
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes from PAX `SCHILY.xattr.NAME`; names carry a trailing NUL.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            display: String::new(),
            path: Vec::new(),
            link: Vec::new(),
            kind: EntryKind::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: Time::default(),
            atime: None,
            size: 0,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }
}

impl Meta {
    pub fn xattr_name(name: &[u8]) -> &str {
        std::str::from_utf8(name.strip_suffix(b"\0").unwrap_or(name)).unwrap_or("?")
    }
}

/// Extension headers seen since the last real entry.
#[derive(Default)]
pub(super) struct Extensions {
    pax: Vec<u8>,
    has_pax: bool,
    long_name: Vec<u8>,
    has_long_name: bool,
    long_link: Vec<u8>,
    has_long_link: bool,
}

fn bad(entry: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::BadHeader {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Extensions {
    /// Consumes `entry` if it is an extension header; returns whether it was one.
    pub fn absorb<R: Read>(&mut self, entry: &mut Entry<'_, R>) -> Result<bool, UnpackError> {
        let (buf, flag, what) = match entry.header().as_old().linkflag[0] {
            b'x' => (&mut self.pax, &mut self.has_pax, "PAX extended header"),
            b'L' => (
                &mut self.long_name,
                &mut self.has_long_name,
                "GNU long name",
            ),
            b'K' => (
                &mut self.long_link,
                &mut self.has_long_link,
                "GNU long link name",
            ),
            b'g' => {
                // Global PAX headers carry archive-wide defaults; like Docker, ignore them.
                tracing::debug!("ignoring PAX global extended header");
                return Ok(true);
            }
            _ => return Ok(false),
        };
        let name = lossy(&entry.header().path_bytes());
        if *flag {
            return Err(bad(&name, format!("two {what}s describe the same entry")));
        }
        let size = entry
            .header()
            .entry_size()
            .map_err(|e| bad(&name, format!("bad size field: {e}")))?;
        if size > MAX_EXTENSION {
            return Err(bad(
                &name,
                format!("{what} of {size} bytes exceeds the {MAX_EXTENSION}-byte limit"),
            ));
        }
        buf.clear();
        entry
            .take(size)
            .read_to_end(buf)
            .map_err(|source| UnpackError::Read {
                entry: name.clone(),
                source,
            })?;
        if buf.len() as u64 != size {
            return Err(bad(&name, format!("{what} is truncated")));
        }
        *flag = true;
        Ok(true)
    }

    /// Errors if extension headers dangle at the end of the archive.
    pub fn finish(&self, last: &str) -> Result<(), UnpackError> {
        if self.has_pax || self.has_long_name || self.has_long_link {
            return Err(bad(
                &format!("after {last}"),
                "extension header with no entry after it",
            ));
        }
        Ok(())
    }

    /// Fills `meta` from a real entry's header and the pending extensions, and checks it.
    pub fn take_meta<R: Read>(
        &mut self,
        entry: &Entry<'_, R>,
        meta: &mut Meta,
    ) -> Result<(), UnpackError> {
        let header = entry.header();
        let has_pax = std::mem::take(&mut self.has_pax);
        let has_long_name = std::mem::take(&mut self.has_long_name);
        let has_long_link = std::mem::take(&mut self.has_long_link);
        let pax: &[u8] = if has_pax { &self.pax } else { &[] };

        // Pass over the PAX records: remember the values this entry needs.
        let mut pax_path = None;
        let mut pax_link = None;
        let mut pax_size = None;
        let mut pax_uid = None;
        let mut pax_gid = None;
        let mut pax_mtime = None;
        let mut pax_atime = None;
        let mut sparse = false;
        let mut pax_error = None;
        meta.xattrs.clear();
        for rec in PaxExtensions::new(pax) {
            let rec = match rec {
                Ok(rec) => rec,
                Err(e) => {
                    pax_error = Some(format!("malformed PAX record: {e}"));
                    break;
                }
            };
            let v = rec.value_bytes();
            match rec.key_bytes() {
                b"path" => pax_path = Some(v),
                b"linkpath" => pax_link = Some(v),
                b"size" => pax_size = Some(v),
                b"uid" => pax_uid = Some(v),
                b"gid" => pax_gid = Some(v),
                b"mtime" => pax_mtime = Some(v),
                b"atime" => pax_atime = Some(v),
                k if k.starts_with(b"GNU.sparse.") => sparse = true,
                k => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        let mut n = Vec::with_capacity(name.len() + 1);
                        n.extend_from_slice(name);
                        n.push(0);
                        meta.xattrs.push((n, v.to_vec()));
                    }
                }
            }
        }

        // The name first, so every later error can name the entry.
        pick_name(
            &mut meta.path,
            has_long_name.then_some(&self.long_name[..]),
            pax_path,
            Some(header.path_bytes()),
        );
        meta.display.clear();
        meta.display.push_str(&String::from_utf8_lossy(&meta.path));
        let name = meta.display.as_str();
        if let Some(e) = pax_error {
            return Err(bad(name, e));
        }
        if meta.path.contains(&0) {
            return Err(bad(name, "the name contains a NUL byte"));
        }
        if meta.path.is_empty() {
            return Err(bad(name, "the name is empty"));
        }

        let flag = header.as_old().linkflag[0];
        meta.kind = match flag {
            b'\0' if meta.path.ends_with(b"/") => EntryKind::Directory,
            b'\0' | b'0' | b'7' => EntryKind::Regular,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::Char,
            b'4' => EntryKind::Block,
            b'5' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            b'S' => return Err(unsupported(name, "GNU sparse file")),
            other => {
                return Err(unsupported(
                    name,
                    format!("{:?}", char::from(other).escape_default().to_string()),
                ))
            }
        };
        if sparse {
            return Err(unsupported(name, "PAX sparse file"));
        }

        // Sizes: the ustar field must be a sane non-negative number, and a PAX size must agree
        // with it (two parsers that disagree on where an entry ends see two different layers).
        let raw = &header.as_old().size;
        if raw[0] & 0x80 != 0 && (raw[0] != 0x80 || raw[1..4] != [0, 0, 0] || raw[4] & 0x80 != 0) {
            return Err(bad(name, "the size field is negative or overflows"));
        }
        meta.size = header
            .entry_size()
            .map_err(|e| bad(name, format!("bad size field: {e}")))?;
        if let Some(v) = pax_size {
            match parse_u64(v) {
                Some(s) if s == meta.size => {}
                Some(s) => {
                    return Err(bad(
                        name,
                        format!(
                            "PAX size {s} disagrees with the ustar header size {}",
                            meta.size
                        ),
                    ))
                }
                None => {
                    return Err(bad(
                        name,
                        format!("PAX size {:?} is not a valid size", lossy(v)),
                    ))
                }
            }
        }

        meta.mode = header
            .mode()
            .map_err(|e| bad(name, format!("bad mode field: {e}")))?
            & 0o7777;
        meta.uid = id(name, "uid", pax_uid, header.uid())?;
        meta.gid = id(name, "gid", pax_gid, header.gid())?;
        meta.mtime = match pax_mtime {
            Some(v) => parse_time(v)
                .ok_or_else(|| bad(name, format!("PAX mtime {:?} is invalid", lossy(v))))?,
            None => {
                let s = header
                    .mtime()
                    .map_err(|e| bad(name, format!("bad mtime field: {e}")))?;
                Time {
                    sec: i64::try_from(s).map_err(|_| bad(name, "mtime overflows"))?,
                    nsec: 0,
                }
            }
        };
        meta.atime = match pax_atime {
            Some(v) => Some(
                parse_time(v)
                    .ok_or_else(|| bad(name, format!("PAX atime {:?} is invalid", lossy(v))))?,
            ),
            None => None,
        };
        if matches!(meta.kind, EntryKind::Char | EntryKind::Block) {
            meta.dev_major = header
                .device_major()
                .map_err(|e| bad(name, format!("bad device major: {e}")))?
                .unwrap_or(0);
            meta.dev_minor = header
                .device_minor()
                .map_err(|e| bad(name, format!("bad device minor: {e}")))?
                .unwrap_or(0);
        }

        meta.link.clear();
        if matches!(meta.kind, EntryKind::Symlink | EntryKind::Hardlink) {
            pick_name(
                &mut meta.link,
                has_long_link.then_some(&self.long_link[..]),
                pax_link,
                header.link_name_bytes(),
            );
            if meta.link.is_empty() {
                return Err(bad(name, "the link target is empty"));
            }
            if meta.link.contains(&0) {
                return Err(bad(name, "the link target contains a NUL byte"));
            }
        }
        for (xname, _) in &meta.xattrs {
            if xname.len() == 1 || xname[..xname.len() - 1].contains(&0) {
                return Err(bad(name, "an xattr name is empty or contains a NUL byte"));
            }
        }
        Ok(())
    }
}

/// A name (or link target) in order of precedence: GNU long name (NUL-terminated), PAX record,
/// ustar header.
fn pick_name(
    out: &mut Vec<u8>,
    gnu: Option<&[u8]>,
    pax: Option<&[u8]>,
    header: Option<std::borrow::Cow<'_, [u8]>>,
) {
    out.clear();
    if let Some(n) = gnu {
        out.extend_from_slice(n.strip_suffix(b"\0").unwrap_or(n));
    } else if let Some(p) = pax {
        out.extend_from_slice(p);
    } else if let Some(h) = header {
        out.extend_from_slice(&h);
    }
}

fn unsupported(entry: &str, kind: impl Into<String>) -> UnpackError {
    UnpackError::Unsupported {
        entry: entry.to_string(),
        kind: kind.into(),
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn id(
    entry: &str,
    what: &str,
    pax: Option<&[u8]>,
    header: io::Result<u64>,
) -> Result<u32, UnpackError> {
    let v = match pax {
        Some(v) => parse_u64(v)
            .ok_or_else(|| bad(entry, format!("PAX {what} {:?} is invalid", lossy(v))))?,
        None => header.map_err(|e| bad(entry, format!("bad {what} field: {e}")))?,
    };
    u32::try_from(v)
        .ok()
        .filter(|&v| v != u32::MAX)
        .ok_or_else(|| bad(entry, format!("{what} {v} is out of range")))
}

/// Parses a PAX time: `[-]SECONDS[.FRACTION]`.
fn parse_time(v: &[u8]) -> Option<Time> {
    let (neg, v) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (secs, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    let secs = i64::try_from(parse_u64(secs)?).ok()?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nsec: u32 = 0;
    for i in 0..9 {
        nsec = nsec * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    if !neg {
        return Some(Time { sec: secs, nsec });
    }
    // -1.25 is 1.25 s before the epoch: sec -2, nsec 0.75e9.
    if nsec == 0 {
        Some(Time {
            sec: -secs,
            nsec: 0,
        })
    } else {
        Some(Time {
            sec: -secs - 1,
            nsec: 1_000_000_000 - nsec,
        })
    }
}

/// A reader that remembers the last complete 512-byte block it passed on, so that when the tar
/// parser fails on a header we can still name the entry that header describes.
pub(super) struct Tap<R> {
    inner: R,
    pos: u64,
    partial: [u8; 512],
    complete: [u8; 512],
    have_complete: bool,
}

impl<R: Read> Tap<R> {
    pub fn new(inner: R) -> Self {
        Tap {
            inner,
            pos: 0,
            partial: [0; 512],
            complete: [0; 512],
            have_complete: false,
        }
    }

    fn record(&mut self, data: &[u8]) {
        let off = (self.pos % 512) as usize;
        self.pos += data.len() as u64;
        if off + data.len() < 512 {
            self.partial[off..off + data.len()].copy_from_slice(data);
            return;
        }
        let k = 512 - off;
        self.partial[off..].copy_from_slice(&data[..k]);
        let rest = &data[k..];
        let full = rest.len() / 512;
        if full > 0 {
            self.complete
                .copy_from_slice(&rest[(full - 1) * 512..full * 512]);
        } else {
            self.complete = self.partial;
        }
        let tail = &rest[full * 512..];
        self.partial[..tail.len()].copy_from_slice(tail);
        self.have_complete = true;
    }

    /// The name in the last complete block, read as a tar header.
    pub fn last_header_name(&self) -> String {
        if !self.have_complete {
            return "(start of archive)".into();
        }
        lossy(&Header::from_byte_slice(&self.complete).path_bytes())
    }
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.record(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = parse_time(b"1700000000.5").unwrap();
        assert_eq!((t.sec, t.nsec), (1_700_000_000, 500_000_000));
        let t = parse_time(b"-1.25").unwrap();
        assert_eq!((t.sec, t.nsec), (-2, 750_000_000));
        assert!(parse_time(b"12x").is_none());
        assert!(parse_time(b"").is_none());
    }

    #[test]
    fn tap_keeps_last_block() {
        let data: Vec<u8> = (0..2048u32).map(|i| (i / 512) as u8 + 1).collect();
        for chunk in [1usize, 7, 100, 512, 513, 1000, 4096] {
            let mut tap = Tap::new(&data[..1536]);
            let mut buf = vec![0u8; chunk];
            while tap.read(&mut buf).unwrap() > 0 {}
            assert!(tap.complete.iter().all(|&b| b == 3), "chunk {chunk}");
        }
    }
}
