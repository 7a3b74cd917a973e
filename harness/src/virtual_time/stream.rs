//! What RTMP's virtual run needs of a host's transport: connections that
//! each carry one byte stream (the RTMP session) and, over QUIC's frames
//! mapping, frames on streams of their own. quinn-proto
//! ([`super::quic::QuicHost`]) and smoltcp ([`super::tcp::TcpHost`])
//! provide it, so one run ([`super::rtmp`]) drives RTMP over either.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use netem::adapters::tcpinfo::TcpInfo;

use crate::protocol::rtmp::quic::{Mapping, QuicStats};

/// A frames-mapping message read whole off its stream: (video, body, ts).
pub type Frame = (bool, Bytes, u32);

/// A connection's figures for the results, as link mode reports them.
pub enum Figures {
    Quic(QuicStats),
    Tcp(TcpInfo),
}

/// A host's transport: its endpoint and connections, keyed by number in
/// the order they were made (a fixed order for every loop over them).
pub trait StreamHost {
    fn addr(&self) -> SocketAddr;
    /// What it sends are whole IP packets (a TCP stack) rather than UDP
    /// payloads (QUIC): the network counts the headers accordingly.
    fn sends_ip_packets(&self) -> bool;
    /// The transport's name in the results for `mapping`.
    fn label(&self, mapping: Mapping) -> &'static str;
    /// The publisher's connect step for the transport, as link mode names it.
    fn handshake_step(&self) -> &'static str;
    /// Dials `remote`; the connection's key.
    fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<usize>;
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]);
    /// Timers due at `now`, then what they caused.
    fn handle_timeout(&mut self, now: Instant);
    /// Brings every connection up to date after reads and writes.
    fn process(&mut self, now: Instant);
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)>;
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// Ends every connection (the run's end).
    fn close(&mut self, now: Instant);
    /// Connections whose byte stream is open, with the mapping their
    /// client speaks (a server learns it from ALPN over QUIC).
    fn streams(&self) -> Vec<(usize, Mapping)>;
    /// When connection `k`'s handshake finished.
    fn connected(&self, k: usize) -> Option<Instant>;
    /// Why connection `k` ended, if it did.
    fn lost(&self, k: usize) -> Option<String>;
    /// Ends connection `k` for `why` (its RTMP session failed).
    fn fail(&mut self, k: usize, why: String);
    /// Bytes read off `k`'s stream since the last call.
    fn take_input(&mut self, k: usize) -> Vec<u8>;
    /// Writes what the transport takes of `data` on `k`'s stream.
    fn write(&mut self, k: usize, data: &[u8]) -> usize;
    /// Frames read whole off their own streams (QUIC's frames mapping).
    fn take_frames(&mut self, _k: usize) -> Vec<Frame> {
        Vec::new()
    }
    /// Whether a frame can go on a stream of its own now.
    fn frame_room(&mut self, _k: usize) -> bool {
        true
    }
    /// Sends a frame on a stream of its own; false if none can open yet.
    fn send_frame(&mut self, _k: usize, _video: bool, _ts: u32, _body: &[u8]) -> bool {
        false
    }
    fn figures(&self, k: usize) -> Option<Figures>;
}
