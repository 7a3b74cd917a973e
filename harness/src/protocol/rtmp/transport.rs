//! What carries one RTMP session: a TCP connection, or a QUIC connection with
//! the RTMP byte stream on a bidirectional stream (and, in the frames
//! mapping, media on unidirectional streams). Reads and writes of the RTMP
//! byte stream go through [`AsyncRead`]/[`AsyncWrite`] either way, so the
//! RTMP code is the same over both.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use netem::adapters::tcpinfo::{TcpInfo, tcp_info};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::quic::{self, Mapping, QuicStats};

pub enum Transport {
    Tcp(TcpStream),
    /// An in-process byte pipe: the fuzzer drives the relay's RTMP code
    /// through it without a socket per input.
    Memory(tokio::io::DuplexStream),
    Quic {
        conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        mapping: Mapping,
    },
}

impl Transport {
    /// "tcp", "quic/stream" or "quic/frames".
    pub fn label(&self) -> &'static str {
        match self {
            Transport::Tcp(_) => "tcp",
            Transport::Memory(_) => "memory",
            Transport::Quic {
                mapping: Mapping::Stream,
                ..
            } => "quic/stream",
            Transport::Quic {
                mapping: Mapping::Frames,
                ..
            } => "quic/frames",
        }
    }

    /// The connection to send media on, one stream per message (frames mapping).
    pub fn frames_conn(&self) -> Option<&quinn::Connection> {
        match self {
            Transport::Quic {
                conn,
                mapping: Mapping::Frames,
                ..
            } => Some(conn),
            _ => None,
        }
    }

    /// The TCP socket's descriptor, for sampling it while a write holds the
    /// transport (valid as long as the transport lives).
    pub fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            Transport::Tcp(s) => Some(s.as_raw_fd()),
            Transport::Quic { .. } | Transport::Memory(_) => None,
        }
    }

    pub fn tcp_info(&self) -> Option<TcpInfo> {
        match self {
            Transport::Tcp(s) => tcp_info(s).ok(),
            Transport::Quic { .. } | Transport::Memory(_) => None,
        }
    }

    pub fn quic_stats(&self) -> Option<QuicStats> {
        match self {
            Transport::Tcp(_) | Transport::Memory(_) => None,
            Transport::Quic { conn, .. } => Some(quic::stats(conn)),
        }
    }
}

/// Unsent bytes of the TCP socket `fd` (SIOCOUTQNSD); 0 if it cannot say.
pub fn unsent_fd(fd: std::os::fd::RawFd) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one int; a closed or foreign fd only fails.
    let r = unsafe { libc::ioctl(fd, libc::SIOCOUTQNSD, &mut n) };
    if r != 0 { 0 } else { n.max(0) as u64 }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Memory(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Quic { recv, .. } => Pin::new(recv).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Memory(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Quic { send, .. } => {
                Pin::new(send).poll_write(cx, buf).map_err(io::Error::from)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Memory(s) => Pin::new(s).poll_flush(cx),
            Transport::Quic { send, .. } => Pin::new(send).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Memory(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Quic { send, .. } => Pin::new(send).poll_shutdown(cx),
        }
    }
}
