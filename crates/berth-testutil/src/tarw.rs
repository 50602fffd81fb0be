//! A small tar writer with full control over every header field, for fixture
//! layers and hand-crafted (also hostile) archives. Names are written verbatim:
//! nothing is normalised or checked, so `..`, absolute names and odd link
//! targets can be produced on purpose. Names or link targets longer than the
//! ustar fields go into a PAX `path`/`linkpath` record.

use std::io::{self, Write};

/// The mtime given to entries that do not set one (2020-09-13T12:26:40Z).
pub const DEFAULT_MTIME: u64 = 1_600_000_000;

/// The kind of a tar entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    fn typeflag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// One tar entry. Build with the constructors, adjust with the chained setters.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub dev: (u32, u32),
    pub data: Vec<u8>,
    /// Extra PAX records written before the entry (e.g. `SCHILY.xattr.*`).
    pub pax: Vec<(String, Vec<u8>)>,
    /// Size written in the ustar header; defaults to `data.len()` (0 for non-files).
    pub header_size: Option<u64>,
    /// Raw typeflag overriding `kind` (for crafting unusual entries).
    pub typeflag: Option<u8>,
}

impl Entry {
    fn new(name: impl AsRef<[u8]>, kind: Kind, mode: u32) -> Entry {
        Entry {
            name: name.as_ref().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: DEFAULT_MTIME,
            link: Vec::new(),
            dev: (0, 0),
            data: Vec::new(),
            pax: Vec::new(),
            header_size: None,
            typeflag: None,
        }
    }
    /// A regular file.
    pub fn file(name: impl AsRef<[u8]>, mode: u32, data: impl Into<Vec<u8>>) -> Entry {
        let mut e = Entry::new(name, Kind::File, mode);
        e.data = data.into();
        e
    }
    /// A directory (a trailing `/` is added to the name when missing).
    pub fn dir(name: impl AsRef<[u8]>, mode: u32) -> Entry {
        let mut n = name.as_ref().to_vec();
        if !n.ends_with(b"/") {
            n.push(b'/');
        }
        Entry::new(n, Kind::Dir, mode)
    }
    /// A symbolic link `name -> target`.
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::new(name, Kind::Symlink, 0o777);
        e.link = target.as_ref().to_vec();
        e
    }
    /// A hard link `name` to the earlier entry `target` (an archive path).
    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::new(name, Kind::Hardlink, 0o644);
        e.link = target.as_ref().to_vec();
        e
    }
    /// A character device.
    pub fn char_dev(name: impl AsRef<[u8]>, mode: u32, major: u32, minor: u32) -> Entry {
        let mut e = Entry::new(name, Kind::Char, mode);
        e.dev = (major, minor);
        e
    }
    /// A block device.
    pub fn block_dev(name: impl AsRef<[u8]>, mode: u32, major: u32, minor: u32) -> Entry {
        let mut e = Entry::new(name, Kind::Block, mode);
        e.dev = (major, minor);
        e
    }
    /// A named pipe.
    pub fn fifo(name: impl AsRef<[u8]>, mode: u32) -> Entry {
        Entry::new(name, Kind::Fifo, mode)
    }
    /// An OCI whiteout for `dir/NAME`: an empty file `dir/.wh.NAME`.
    pub fn whiteout(path: &str) -> Entry {
        let (dir, base) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        Entry::file(format!("{dir}.wh.{base}"), 0o644, Vec::new())
    }
    /// An OCI opaque marker for directory `dir`: `dir/.wh..wh..opq`.
    pub fn opaque(dir: &str) -> Entry {
        let d = dir.trim_end_matches('/');
        Entry::file(format!("{d}/.wh..wh..opq"), 0o644, Vec::new())
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
    /// Adds an extended attribute as a PAX `SCHILY.xattr.KEY` record.
    pub fn xattr(mut self, key: &str, value: impl AsRef<[u8]>) -> Entry {
        self.pax
            .push((format!("SCHILY.xattr.{key}"), value.as_ref().to_vec()));
        self
    }
    /// Adds an arbitrary PAX record.
    pub fn pax(mut self, key: &str, value: impl AsRef<[u8]>) -> Entry {
        self.pax.push((key.to_string(), value.as_ref().to_vec()));
        self
    }
    /// Writes `size` in the ustar header instead of the real data length.
    pub fn header_size(mut self, size: u64) -> Entry {
        self.header_size = Some(size);
        self
    }
}

/// Streams tar entries into any writer.
pub struct TarWriter<W: Write> {
    out: W,
    pax_seq: u64,
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "LEN key=value\n" where LEN counts the whole record including itself.
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() + body > len {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    debug_assert_eq!(r.len(), len);
    r
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter { out, pax_seq: 0 }
    }

    fn write_padded(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        let rem = data.len() % 512;
        if rem != 0 {
            self.out.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    fn header(
        name: &[u8],
        typeflag: u8,
        mode: u32,
        uid: u64,
        gid: u64,
        size: u64,
        mtime: u64,
    ) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().expect("ustar header");
            let n = name.len().min(100);
            u.name[..n].copy_from_slice(&name[..n]);
            u.typeflag = [typeflag];
        }
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(mtime);
        h
    }

    /// Appends one entry (preceded by a PAX header when it needs one).
    pub fn append(&mut self, e: &Entry) -> io::Result<()> {
        let mut pax: Vec<u8> = Vec::new();
        if e.name.len() > 100 {
            pax.extend(pax_record("path", &e.name));
        }
        if e.link.len() > 100 {
            pax.extend(pax_record("linkpath", &e.link));
        }
        for (k, v) in &e.pax {
            pax.extend(pax_record(k, v));
        }
        if !pax.is_empty() {
            self.pax_seq += 1;
            let base = e
                .name
                .rsplit(|&c| c == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"entry");
            let mut pname = format!("PaxHeaders.{}/", self.pax_seq).into_bytes();
            pname.extend_from_slice(&base[..base.len().min(60)]);
            let mut h = Self::header(&pname, b'x', 0o644, 0, 0, pax.len() as u64, e.mtime);
            h.set_cksum();
            self.out.write_all(h.as_bytes())?;
            self.write_padded(&pax)?;
        }
        let size = e.header_size.unwrap_or(e.data.len() as u64);
        let tf = e.typeflag.unwrap_or(e.kind.typeflag());
        let mut h = Self::header(&e.name, tf, e.mode, e.uid, e.gid, size, e.mtime);
        {
            let u = h.as_ustar_mut().expect("ustar header");
            let n = e.link.len().min(100);
            u.linkname[..n].copy_from_slice(&e.link[..n]);
            u.uname[..4].copy_from_slice(if e.uid == 0 { b"root" } else { b"\0\0\0\0" });
            u.gname[..4].copy_from_slice(if e.gid == 0 { b"root" } else { b"\0\0\0\0" });
        }
        if matches!(e.kind, Kind::Char | Kind::Block) {
            h.set_device_major(e.dev.0)?;
            h.set_device_minor(e.dev.1)?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.write_padded(&e.data)
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// Builds a whole archive in memory.
pub fn tar_bytes(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut w = TarWriter::new(Vec::new());
    for e in entries {
        w.append(e)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn pax_record_lengths_are_self_consistent() {
        for n in 0..300 {
            let v = vec![b'a'; n];
            let r = pax_record("SCHILY.xattr.user.berth", &v);
            let len: usize = std::str::from_utf8(&r[..r.iter().position(|&c| c == b' ').unwrap()])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, r.len(), "value len {n}");
        }
    }

    #[test]
    fn tar_crate_reads_back_every_kind() {
        let long = "d/".repeat(80) + "file";
        let data = tar_bytes(&[
            Entry::dir("d", 0o2775).owner(0, 1000),
            Entry::file("d/f", 0o4755, b"abc".to_vec())
                .mtime(123)
                .xattr("user.berth", b"value"),
            Entry::hardlink("d/h", "d/f"),
            Entry::symlink("d/s", "/abs/target"),
            Entry::char_dev("d/null", 0o666, 1, 3),
            Entry::fifo("d/p", 0o600),
            Entry::whiteout("d/gone"),
            Entry::opaque("d"),
            Entry::file(&long, 0o644, b"x".to_vec()),
        ])
        .unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let mut seen = Vec::new();
        for ent in ar.entries().unwrap() {
            let mut ent = ent.unwrap();
            let path = ent.path().unwrap().to_string_lossy().into_owned();
            let ty = ent.header().entry_type();
            let mode = ent.header().mode().unwrap();
            if path == "d/f" {
                assert_eq!(mode, 0o4755);
                assert_eq!(ent.header().mtime().unwrap(), 123);
                let x: Vec<_> = ent
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|r| r.unwrap().key().unwrap().to_string())
                    .collect();
                assert_eq!(x, vec!["SCHILY.xattr.user.berth"]);
                let mut s = String::new();
                ent.read_to_string(&mut s).unwrap();
                assert_eq!(s, "abc");
            }
            if path == "d/null" {
                assert_eq!(ent.header().device_major().unwrap(), Some(1));
                assert_eq!(ent.header().device_minor().unwrap(), Some(3));
            }
            seen.push((path, ty));
        }
        let names: Vec<_> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "d/",
                "d/f",
                "d/h",
                "d/s",
                "d/null",
                "d/p",
                "d/.wh.gone",
                "d/.wh..wh..opq",
                &long
            ]
        );
        assert!(seen[2].1.is_hard_link());
        assert!(seen[3].1.is_symlink());
        assert!(seen[5].1.is_fifo());
    }

    #[test]
    fn raw_names_are_not_sanitised() {
        let data = tar_bytes(&[Entry::file("../escape", 0o644, b"x".to_vec())]).unwrap();
        assert_eq!(&data[..9], b"../escape");
    }
}
