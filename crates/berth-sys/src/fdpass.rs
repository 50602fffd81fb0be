//! File descriptors over a unix socket (`SCM_RIGHTS`): the one implementation the runtime's
//! stage channel, runc's `--console-socket`, the seccomp listener and the monitor use.
//! Received descriptors are close-on-exec (`MSG_CMSG_CLOEXEC`).

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The most descriptors one message carries.
pub const MAX_FDS: usize = 8;

/// What one [`recv`] got.
#[derive(Debug)]
pub struct Received {
    /// Bytes of data written to the buffer; 0 with no descriptors is the end of the stream.
    pub len: usize,
    /// The descriptors that came with the data, in order.
    pub fds: Vec<OwnedFd>,
}

/// Sends `data` (at least one byte is sent: a stream socket carries no descriptors without
/// data, so an empty `data` is sent as one zero byte) with `fds` attached.
pub fn send(sock: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors in one message (at most {MAX_FDS})",
                fds.len()
            ),
        ));
    }
    let data = if data.is_empty() { &[0u8][..] } else { data };
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "the descriptors do not fit the control buffer",
        ));
    }
    loop {
        match sendmsg(
            sock.as_fd(),
            &[IoSlice::new(data)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(Into::into),
        }
    }
}

/// Receives one message into `buf` with the descriptors attached to it. A message that
/// carried more descriptors than [`MAX_FDS`] is an error (the kernel closed the rest).
pub fn recv(sock: impl AsFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match recvmsg(
            sock.as_fd(),
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::other(format!(
            "a message carried more than {MAX_FDS} descriptors"
        )));
    }
    Ok(Received {
        len: msg.bytes,
        fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn descriptors_and_data_arrive_together() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"through the socket").unwrap();
        send(&a, b"hello", &[f.as_fd()]).unwrap();
        let mut buf = [0u8; 16];
        let r = recv(&b, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.fds.len(), 1);
        let mut got = std::fs::File::from(r.fds.into_iter().next().unwrap());
        got.rewind().unwrap();
        let mut s = String::new();
        got.read_to_string(&mut s).unwrap();
        assert_eq!(s, "through the socket");
        let flags = rustix::io::fcntl_getfd(&got).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }

    #[test]
    fn empty_data_still_carries_descriptors_and_eof_reads_zero() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = tempfile::tempfile().unwrap();
        send(&a, b"", &[f.as_fd(), f.as_fd()]).unwrap();
        drop(a);
        let mut buf = [0u8; 4];
        let r = recv(&b, &mut buf).unwrap();
        assert_eq!((r.len, r.fds.len()), (1, 2));
        let r = recv(&b, &mut buf).unwrap();
        assert_eq!((r.len, r.fds.len()), (0, 0));
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let f = tempfile::tempfile().unwrap();
        let fds = vec![f.as_fd(); MAX_FDS + 1];
        assert_eq!(
            send(&a, b"x", &fds).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
