//! Random ids and numbers from the kernel's random source. Reading random bytes can fail
//! (`getrandom` before the pool is ready, seccomp); these functions then fail, never hand out
//! zeros, which would make every id the same.

use std::io;

/// Fills `buf` from `getrandom(2)`.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(0) => return Err(io::Error::other("getrandom returned no bytes")),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `2 * bytes` lowercase hex digits of randomness (`hex_id(32)` is a 64-digit id).
pub fn hex_id(bytes: usize) -> io::Result<String> {
    let mut b = vec![0u8; bytes];
    fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A random 64-bit number.
pub fn u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    fill(&mut b)?;
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_of_the_asked_length_and_differ() {
        let a = super::hex_id(32).unwrap();
        let b = super::hex_id(32).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_ne!(super::u64().unwrap(), super::u64().unwrap());
    }
}
