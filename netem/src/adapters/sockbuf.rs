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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_socket_gets_a_larger_buffer() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enlarge(&s, Buffer::Receive, 1 << 20));
        assert!(enlarge(&s, Buffer::Send, 1 << 20));
    }
}
