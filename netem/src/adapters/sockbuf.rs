//! Socket buffer sizes: a deep queue rides out scheduling hiccups (a burst
//! of datagrams while the reader's thread is busy). As root, `*BUFFORCE`
//! goes past the `rmem_max`/`wmem_max` caps; otherwise the capped size.

use std::os::fd::AsRawFd;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Buffer {
    Receive,
    Send,
}

/// Asks for `bytes` of `which` buffer on `s`; whether any size was set.
pub fn enlarge(s: &impl AsRawFd, which: Buffer, bytes: usize) -> bool {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let opts = match which {
        Buffer::Receive => [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF],
        Buffer::Send => [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF],
    };
    opts.into_iter().any(|opt| {
        // SAFETY: setsockopt with a valid int on an open descriptor; a
        // failure only leaves the default size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    })
}

/// The size of `which` buffer on `s` as the kernel reports it (Linux
/// reports twice the size asked for: the other half is its bookkeeping).
pub fn size(s: &impl AsRawFd, which: Buffer) -> std::io::Result<usize> {
    let opt = match which {
        Buffer::Receive => libc::SO_RCVBUF,
        Buffer::Send => libc::SO_SNDBUF,
    };
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a valid int with its length, on an open
    // descriptor.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(v).unwrap_or(0))
}

/// The most an unprivileged socket may ask for (`net.core.[rw]mem_max`).
#[cfg(test)]
fn cap(which: Buffer) -> usize {
    let f = match which {
        Buffer::Receive => "/proc/sys/net/core/rmem_max",
        Buffer::Send => "/proc/sys/net/core/wmem_max",
    };
    std::fs::read_to_string(f)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_socket_gets_a_larger_buffer() {
        const WANT: usize = 1 << 20;
        for which in [Buffer::Receive, Buffer::Send] {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let before = size(&s, which).unwrap();
            assert!(enlarge(&s, which, WANT));
            let after = size(&s, which).unwrap();
            // Root (the *BUFFORCE options) gets what it asked for (Linux
            // doubles it); otherwise the size is capped at the sysctl's
            // maximum, doubled, and grows only if the cap allows it.
            let expected = if cap(which) >= WANT || is_root() {
                2 * WANT
            } else {
                (2 * cap(which)).max(before)
            };
            assert_eq!(after, expected, "{which:?}: {before} → {after}");
        }
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
}
