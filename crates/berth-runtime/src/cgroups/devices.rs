//! Device access rules: cgroup v1's `devices.allow`/`devices.deny`, and for cgroup v2 an eBPF
//! program of type `BPF_PROG_TYPE_CGROUP_DEVICE` assembled here and attached to the cgroup.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::error::CgroupError;
use super::fs;

/// One rule, normalised: `kind` is 'a', 'b' or 'c'; `None` major/minor is a wildcard;
/// `access` is a bit set of [`ACC_MKNOD`], [`ACC_READ`], [`ACC_WRITE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = 7;

/// `None` for rules that cannot apply to cgroups (FIFOs).
pub fn normalize(d: &LinuxDeviceCgroup) -> Result<Option<Rule>, CgroupError> {
    let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => return Ok(None),
    };
    let num = |v: Option<i64>, what: &str| -> Result<Option<u32>, CgroupError> {
        match v {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(CgroupError::Invalid(format!(
                "linux.resources.devices: invalid {what} {n}"
            ))),
        }
    };
    let mut access = 0;
    for c in d.access().as_deref().unwrap_or("rwm").chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(CgroupError::Invalid(format!(
                    "linux.resources.devices: invalid access {:?}: use a combination of r, w and m",
                    d.access().as_deref().unwrap_or("")
                )))
            }
        };
    }
    if access == 0 {
        access = ACC_ALL;
    }
    Ok(Some(Rule {
        allow: d.allow(),
        kind,
        major: num(d.major(), "major")?,
        minor: num(d.minor(), "minor")?,
        access,
    }))
}

impl Rule {
    /// The lines cgroup v1 takes: `c 1:3 rwm`, `a`. The kernel reads a leading `a` as
    /// "every device, every access" and ignores the rest, so an `a` rule with a major, a
    /// minor or less than `rwm` becomes one `c` and one `b` line.
    pub fn v1_strings(&self) -> Vec<String> {
        if self.kind == 'a'
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
        {
            return vec!["a".into()];
        }
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        let mut acc = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(c);
            }
        }
        let kinds: &[char] = if self.kind == 'a' {
            &['c', 'b']
        } else {
            &[self.kind]
        };
        kinds
            .iter()
            .map(|k| format!("{k} {}:{} {acc}", n(self.major), n(self.minor)))
            .collect()
    }
}

/// The devices runc allows in every container, in addition to `linux.resources.devices`:
/// mknod of any device, and use of null, zero, full, random, urandom, tty, console, ptmx
/// and the pty slaves.
pub fn default_allowed() -> Vec<LinuxDeviceCgroup> {
    let rule = |t: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(t));
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.to_string()));
        d
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(136), None, "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(5), Some(1), "rwm"),
    ]
}

/// cgroup v1: deny everything, then write each rule in order.
pub fn apply_v1(dir: &Path, devs: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    fs::write(&dir.join("devices.deny"), "a")?;
    for d in devs {
        if let Some(rule) = normalize(d)? {
            let file = if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            for line in rule.v1_strings() {
                fs::write(&dir.join(file), &line)?;
            }
        }
    }
    Ok(())
}

// ---- eBPF ----

const BPF_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const BPF_ALU32_AND_K: u8 = 0x54;
const BPF_ALU32_RSH_K: u8 = 0x74;
const BPF_ALU32_MOV_X: u8 = 0xbc;
const BPF_ALU64_MOV_K: u8 = 0xb7;
const BPF_JMP_JNE_K: u8 = 0x55;
const BPF_JMP_JNE_X: u8 = 0x5d;
const BPF_JMP_EXIT: u8 = 0x95;

/// Device types in `struct bpf_cgroup_dev_ctx.access_type` (low 16 bits).
const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;

/// Encodes one `struct bpf_insn` (little-endian) as a u64.
pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from((dst & 0xf) | ((src & 0xf) << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// Assembles the device program. Registers after the prologue: r2 = device type,
/// r3 = requested access, r4 = major, r5 = minor. Rules are checked last to first (the last
/// matching rule wins, as with v1's ordered writes); nothing matching means deny.
pub fn program(devs: &[LinuxDeviceCgroup]) -> Result<Vec<u64>, CgroupError> {
    let mut rules = Vec::new();
    for d in devs {
        if let Some(r) = normalize(d)? {
            rules.push(r);
        }
    }
    let mut prog = vec![
        insn(BPF_LDX_MEM_W, 2, 1, 0, 0),
        insn(BPF_ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(BPF_LDX_MEM_W, 3, 1, 0, 0),
        insn(BPF_ALU32_RSH_K, 3, 0, 0, 16),
        insn(BPF_LDX_MEM_W, 4, 1, 4, 0),
        insn(BPF_LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each jump carries a placeholder (-1) patched to "past this block".
        let mut block: Vec<(u8, u8, u8, i32, bool)> = Vec::new(); // code, dst, src, imm, is_skip
        match r.kind {
            'b' => block.push((BPF_JMP_JNE_K, 2, 0, BPF_DEVCG_DEV_BLOCK, true)),
            'c' => block.push((BPF_JMP_JNE_K, 2, 0, BPF_DEVCG_DEV_CHAR, true)),
            _ => {}
        }
        if r.access != ACC_ALL {
            block.push((BPF_ALU32_MOV_X, 1, 3, 0, false));
            block.push((BPF_ALU32_AND_K, 1, 0, r.access as i32, false));
            block.push((BPF_JMP_JNE_X, 1, 3, 0, true));
        }
        if let Some(m) = r.major {
            block.push((BPF_JMP_JNE_K, 4, 0, m as i32, true));
        }
        if let Some(m) = r.minor {
            block.push((BPF_JMP_JNE_K, 5, 0, m as i32, true));
        }
        block.push((BPF_ALU64_MOV_K, 0, 0, i32::from(r.allow), false));
        block.push((BPF_JMP_EXIT, 0, 0, 0, false));
        let len = block.len();
        let matches_all = block.iter().all(|b| !b.4);
        for (i, (code, dst, src, imm, skip)) in block.into_iter().enumerate() {
            let off = if skip { (len - i - 1) as i16 } else { 0 };
            prog.push(insn(code, dst, src, off, imm));
        }
        // Nothing after a rule that matches every access is reachable (and the verifier
        // refuses unreachable instructions).
        if matches_all {
            return Ok(prog);
        }
    }
    prog.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(BPF_JMP_EXIT, 0, 0, 0, 0));
    Ok(prog)
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, as a zeroed buffer the size the kernel accepts.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().unwrap_or([0; 4]))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a valid, writable buffer of the size passed; pointers stored inside it
    // point to live buffers owned by the caller for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the program into the kernel; the verifier's log is part of the error.
pub fn load_program(prog: &[u64]) -> Result<OwnedFd, CgroupError> {
    let license = c"Apache-2.0";
    let load = |log: Option<&mut Vec<u8>>| {
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_CGROUP_DEVICE)
            .u32(4, prog.len() as u32)
            .u64(8, prog.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64);
        if let Some(buf) = log {
            a.u32(24, 1)
                .u32(28, buf.len() as u32)
                .u64(32, buf.as_mut_ptr() as u64);
        }
        bpf(BPF_PROG_LOAD, &mut a)
    };
    match load(None) {
        // SAFETY: the kernel returned a new file descriptor that we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let mut log = vec![0u8; 1 << 16];
            let _ = load(Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(CgroupError::Bpf {
                what: if text.is_empty() {
                    "loading the cgroup device eBPF program".to_string()
                } else {
                    format!("loading the cgroup device eBPF program (verifier: {text})")
                },
                source: e,
            })
        }
    }
}

/// Ids of the device programs attached to the cgroup `dir_fd`.
fn query(dir_fd: &OwnedFd) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut a = Attr::new();
    a.u32(0, dir_fd.as_raw_fd() as u32)
        .u32(4, BPF_CGROUP_DEVICE)
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut a)?;
    let n = a.get_u32(24) as usize;
    ids.truncate(n.min(64));
    Ok(ids)
}

/// Replaces the device programs attached to the cgroup directory `dir` with one built from
/// `devs`: the new one is attached first (BPF_F_ALLOW_MULTI), then the old ones detached,
/// so there is no moment without a filter.
pub fn apply_bpf(dir: &Path, devs: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let prog = program(devs)?;
    let prog_fd = load_program(&prog)?;
    let dir_fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| CgroupError::Read {
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    let old = query(&dir_fd).unwrap_or_default();
    let mut a = Attr::new();
    a.u32(0, dir_fd.as_raw_fd() as u32)
        .u32(4, prog_fd.as_raw_fd() as u32)
        .u32(8, BPF_CGROUP_DEVICE)
        .u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut a).map_err(|source| CgroupError::Bpf {
        what: format!("attaching the device eBPF program to {}", dir.display()),
        source,
    })?;
    for id in old {
        let mut g = Attr::new();
        g.u32(0, id);
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut g) else {
            continue;
        };
        // SAFETY: the kernel returned a new file descriptor that we own.
        let old_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut dt = Attr::new();
        dt.u32(0, dir_fd.as_raw_fd() as u32)
            .u32(4, old_fd.as_raw_fd() as u32)
            .u32(8, BPF_CGROUP_DEVICE);
        bpf(BPF_PROG_DETACH, &mut dt).map_err(|source| CgroupError::Bpf {
            what: format!(
                "detaching the old device eBPF program {id} from {}",
                dir.display()
            ),
            source,
        })?;
    }
    Ok(())
}
