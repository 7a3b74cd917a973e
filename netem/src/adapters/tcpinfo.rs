//! The kernel's own view of a TCP connection (`TCP_INFO`): retransmissions,
//! RTT, congestion window. Ground truth for what TCP did with the link's loss.

use std::io;
use std::os::fd::AsRawFd;

use serde::Serialize;

/// A snapshot of `struct tcp_info`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize)]
pub struct TcpInfo {
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Smoothed RTT, µs.
    pub rtt_us: u32,
    /// The smallest RTT the kernel measured over the connection's life, µs:
    /// the path's floor, untouched by one late sample (srtt keeps 1/8 of it).
    #[serde(default)]
    pub min_rtt_us: u32,
    /// RTT variance, µs.
    pub rtt_var_us: u32,
    /// Congestion window, segments.
    pub snd_cwnd: u32,
    /// Segments the sender currently believes lost.
    pub lost: u32,
    /// Bytes the peer acknowledged over the connection's life: its delivery
    /// over time is what the path carried.
    #[serde(default)]
    pub bytes_acked: u64,
}

/// Reads `TCP_INFO` from a connected TCP socket.
pub fn tcp_info(sock: &impl AsRawFd) -> io::Result<TcpInfo> {
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let ret = libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpInfo {
            total_retrans: info.tcpi_total_retrans,
            rtt_us: info.tcpi_rtt,
            min_rtt_us: info.tcpi_min_rtt,
            rtt_var_us: info.tcpi_rttvar,
            snd_cwnd: info.tcpi_snd_cwnd,
            lost: info.tcpi_lost,
            bytes_acked: info.tcpi_bytes_acked,
        })
    }
}
/// Sets the socket's congestion control (`TCP_CONGESTION`), e.g. "cubic".
/// Per socket, so a run does not inherit the machine's default (this one's
/// is BBR, whose pacing spreads each video frame over milliseconds on a
/// long-RTT path). Needs CAP_NET_ADMIN for algorithms outside
/// `tcp_allowed_congestion_control`: Glass has it in its namespaces.
pub fn set_congestion(sock: &impl AsRawFd, name: &str) -> io::Result<()> {
    // SAFETY: setsockopt reads `name.len()` bytes from a valid slice.
    let ret = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if ret != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "setting TCP congestion control \"{name}\": {e} (see /proc/sys/net/ipv4/tcp_available_congestion_control)"
            ),
        ));
    }
    Ok(())
}
