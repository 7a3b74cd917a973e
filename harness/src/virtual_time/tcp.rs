//! TCP in virtual time: a host's smoltcp interface and sockets, driven
//! with the run's instants. Kernel TCP cannot run in virtual time, so RTMP
//! over TCP runs here over smoltcp's TCP (CUBIC or Reno), and its results
//! say so (`transport = "tcp (smoltcp)"`): smoltcp recovers from loss more
//! simply than the kernel (no SACK-based recovery, a small out-of-order
//! buffer), and its figures are not kernel TCP's.
//!
//! Each host has one IP interface at its address in the run's network;
//! what it transmits are whole IPv4 packets (1,500 bytes at most, TCP
//! timestamps on, so a full segment carries 1,448 bytes as the kernel's
//! do). A server keeps one spare listening socket, so every SYN finds one.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use netem::adapters::tcpinfo::TcpInfo;
use netem::time::Clock;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{self, CongestionControl, State};
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Packet, TcpPacket};

use super::stream::{Figures, StreamHost};
use crate::protocol::rtmp::quic::Mapping;

/// The links' MTU, as link mode's TUN and veth devices have.
const MTU: usize = 1500;
/// Socket buffers: room for a window of a few Mbit/s at a few hundred ms.
const RX_BUFFER: usize = 1 << 20;
const TX_BUFFER: usize = 256 * 1024;
/// A full segment's payload: 1,500 − IPv4 20 − TCP 20 − timestamps 12.
const FULL_SEGMENT: usize = 1448;

/// smoltcp's time from the run's (µs: smoltcp's resolution).
fn smol(clock: Clock, now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(clock.time(now).as_nanos() as i64 / 1_000)
}

/// TCP timestamps carry a constant: smoltcp measures RTT with its own
/// timers, and the option is there for the segment size (1,448 bytes of
/// payload in a 1,500-byte packet, as the kernel's).
fn tsval() -> u32 {
    1
}

/// IPv4 packets in and out of the interface.
#[derive(Default)]
struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

impl Device for Wire {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.max_transmission_unit = MTU;
        caps.medium = Medium::Ip;
        // Nothing corrupts a packet unseen here (corruption is the
        // engine's, counted): checksums are written, not checked.
        caps.checksum = ChecksumCapabilities::default();
        caps.checksum.ipv4 = phy::Checksum::Tx;
        caps.checksum.tcp = phy::Checksum::Tx;
        caps
    }

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(RxToken, TxToken<'_>)> {
        let buffer = self.rx.pop_front()?;
        Some((
            RxToken { buffer },
            TxToken {
                queue: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            queue: &mut self.tx,
        })
    }
}

struct RxToken {
    buffer: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.buffer)
    }
}

struct TxToken<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buffer = vec![0; len];
        let r = f(&mut buffer);
        self.queue.push_back(buffer);
        r
    }
}

/// One connection: its socket and what the run reads of it.
struct Conn {
    handle: SocketHandle,
    remote: SocketAddr,
    connected: Option<Instant>,
    lost: Option<String>,
    /// Segments sent again (a data segment starting below the highest
    /// sequence number sent so far), and that highest end.
    retransmits: u32,
    sent_end: Option<u32>,
    /// The highest acknowledgement number the peer sent.
    acked: Option<u32>,
}

/// A host's TCP stack.
pub struct TcpHost {
    addr: SocketAddr,
    clock: Clock,
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
    conns: BTreeMap<usize, Conn>,
    next_key: usize,
    /// A server's spare listening socket.
    listener: Option<SocketHandle>,
    congestion: CongestionControl,
    next_port: u16,
    /// The instant of the last poll (smoltcp's timers are relative to it).
    last: Instant,
}

impl TcpHost {
    /// A host at `addr`; a server (`listen`) accepts on its port.
    /// `congestion` is the scenario's (`cubic` or `reno`).
    pub fn new(
        addr: SocketAddr,
        listen: bool,
        congestion: &str,
        clock: Clock,
        now: Instant,
        seed: u64,
    ) -> Result<TcpHost> {
        let IpAddr::V4(v4) = addr.ip() else {
            return Err(anyhow!("smoltcp: IPv4 only ({addr})"));
        };
        let congestion = congestion_control(congestion)?;
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut wire = Wire::default();
        let mut iface = Interface::new(config, &mut wire, smol(clock, now));
        iface.update_ip_addrs(|a| {
            // The run's hosts share 198.18.0.0/15: all on-link.
            let _ = a.push(IpCidr::new(v4.into(), 15));
        });
        let mut host = TcpHost {
            addr,
            clock,
            iface,
            wire,
            sockets: SocketSet::new(Vec::new()),
            conns: BTreeMap::new(),
            next_key: 0,
            listener: None,
            congestion,
            next_port: addr.port(),
            last: now,
        };
        if listen {
            host.listen()?;
        }
        Ok(host)
    }

    fn socket(&self) -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
        );
        s.set_congestion_control(self.congestion);
        // As Glass's sockets: TCP_NODELAY.
        s.set_nagle_enabled(false);
        s.set_tsval_generator(Some(tsval));
        // An ACK for every segment: smoltcp's Reno and CUBIC grow the
        // window per ACK, where the kernel counts acknowledged bytes
        // (RFC 3465); with delayed ACKs (one per two segments) smoltcp's
        // window would grow half as fast as the kernel's.
        s.set_ack_delay(None);
        s
    }

    fn listen(&mut self) -> Result<()> {
        let mut s = self.socket();
        s.listen(self.addr.port())
            .map_err(|e| anyhow!("smoltcp listen: {e}"))?;
        self.listener = Some(self.sockets.add(s));
        Ok(())
    }

    fn insert(&mut self, handle: SocketHandle, remote: SocketAddr) -> usize {
        let k = self.next_key;
        self.next_key += 1;
        self.conns.insert(
            k,
            Conn {
                handle,
                remote,
                connected: None,
                lost: None,
                retransmits: 0,
                sent_end: None,
                acked: None,
            },
        );
        k
    }

    fn poll(&mut self, now: Instant) {
        let t = smol(self.clock, now);
        self.last = now;
        // Until nothing more goes and nothing is due at once (a send freed
        // by an ACK, a window update, a stream's tail once the full
        // segments before it left), bounded.
        for _ in 0..64 {
            self.segment_like_the_kernel();
            let sent = self.wire.tx.len();
            self.iface.poll(t, &mut self.wire, &mut self.sockets);
            for i in sent..self.wire.tx.len() {
                let p = std::mem::take(&mut self.wire.tx[i]);
                self.note_sent(&p);
                self.wire.tx[i] = p;
            }
            if self.wire.tx.len() == sent
                && self.iface.poll_at(t, &self.sockets).is_none_or(|at| at > t)
            {
                break;
            }
        }
        // A spare listener that took a connection becomes that connection.
        if let Some(h) = self.listener {
            let s = self.sockets.get::<tcp::Socket>(h);
            if s.state() != State::Listen {
                let remote = s
                    .remote_endpoint()
                    .map(|e| SocketAddr::new(e.addr.into(), e.port))
                    .unwrap_or(self.addr);
                self.insert(h, remote);
                self.listener = None;
                if let Err(e) = self.listen() {
                    tracing::warn!("{e}");
                }
            }
        }
        for c in self.conns.values_mut() {
            let s = self.sockets.get::<tcp::Socket>(c.handle);
            match s.state() {
                State::Established => {
                    c.connected.get_or_insert(now);
                }
                State::Closed | State::TimeWait | State::CloseWait if c.connected.is_some() => {
                    c.lost.get_or_insert_with(|| format!("TCP {}", s.state()));
                }
                State::Closed => {
                    c.lost
                        .get_or_insert_with(|| "TCP connection refused or timed out".into());
                }
                _ => {}
            }
        }
    }

    /// smoltcp counts its congestion window in bytes and, without Nagle,
    /// fills it to the byte: a window of 3.4 segments sends a fourth, short
    /// one, and a bulk sender's packets average ~900 bytes instead of
    /// 1,448 (each as likely to be lost as a full one). The kernel counts
    /// its window in segments and sends full ones while it has data
    /// queued. So Nagle is on while more than a segment waits (short
    /// segments are held back while data is in flight) and off for a
    /// stream's last bytes (a frame's tail goes at once, as TCP_NODELAY
    /// sends it).
    fn segment_like_the_kernel(&mut self) {
        for c in self.conns.values() {
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            // The buffer holds what is in flight and what is not sent yet.
            let in_flight = match (c.sent_end, c.acked) {
                (Some(end), Some(acked)) => end.wrapping_sub(acked) as usize,
                _ => 0,
            };
            let queued = s.send_queue().saturating_sub(in_flight);
            s.set_nagle_enabled(queued > FULL_SEGMENT);
        }
    }

    /// Keeps the highest acknowledgement the peer sent on `packet`'s
    /// connection (what of ours is no longer in flight).
    fn note_received(&mut self, packet: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return;
        };
        if !tcp.ack() {
            return;
        }
        let from = SocketAddr::new(IpAddr::V4(ip.src_addr()), tcp.src_port());
        let Some(c) = self.conns.values_mut().find(|c| c.remote == from) else {
            return;
        };
        let ack = tcp.ack_number().0 as u32;
        match c.acked {
            Some(a) if (ack.wrapping_sub(a) as i32) <= 0 => {}
            _ => c.acked = Some(ack),
        }
    }

    /// Counts `packet` as a retransmission when its data starts below the
    /// highest sequence number its connection sent before.
    fn note_sent(&mut self, packet: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return;
        };
        let len = tcp.payload().len() as u32;
        if len == 0 {
            return;
        }
        let to = SocketAddr::new(IpAddr::V4(ip.dst_addr()), tcp.dst_port());
        let Some(c) = self.conns.values_mut().find(|c| c.remote == to) else {
            return;
        };
        let seq = tcp.seq_number().0 as u32;
        let end = seq.wrapping_add(len);
        match c.sent_end {
            Some(high) if (seq.wrapping_sub(high) as i32) < 0 => {
                c.retransmits += 1;
                if (end.wrapping_sub(high) as i32) > 0 {
                    c.sent_end = Some(end);
                }
            }
            _ => c.sent_end = Some(end),
        }
    }
}

/// smoltcp's congestion control for the scenario's `tcp_congestion`.
pub fn congestion_control(name: &str) -> Result<CongestionControl> {
    match name {
        "cubic" => Ok(CongestionControl::Cubic),
        "reno" => Ok(CongestionControl::Reno),
        other => Err(anyhow!(
            "tcp_congestion = \"{other}\": smoltcp (RTMP over TCP in virtual time) has cubic and reno"
        )),
    }
}

impl StreamHost for TcpHost {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn sends_ip_packets(&self) -> bool {
        true
    }

    fn label(&self, _: Mapping) -> &'static str {
        "tcp (smoltcp)"
    }

    fn handshake_step(&self) -> &'static str {
        "tcp_connect"
    }

    fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<usize> {
        let IpAddr::V4(v4) = remote.ip() else {
            return Err(anyhow!("smoltcp: IPv4 only ({remote})"));
        };
        let mut s = self.socket();
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        s.connect(
            self.iface.context(),
            (smoltcp::wire::IpAddress::Ipv4(v4), remote.port()),
            port,
        )
        .map_err(|e| anyhow!("smoltcp connect: {e}"))?;
        let h = self.sockets.add(s);
        let k = self.insert(h, remote);
        self.poll(now);
        Ok(k)
    }

    fn handle_datagram(&mut self, now: Instant, _from: SocketAddr, data: &[u8]) {
        self.note_received(data);
        self.wire.rx.push_back(data.to_vec());
        self.poll(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.poll(now);
    }

    fn process(&mut self, now: Instant) {
        self.poll(now);
    }

    fn poll_transmit(&mut self, _now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let p = self.wire.tx.pop_front()?;
        let to = match Ipv4Packet::new_checked(&p[..]) {
            Ok(ip) => {
                let port = TcpPacket::new_checked(ip.payload()).map_or(0, |t| t.dst_port());
                SocketAddr::new(IpAddr::V4(ip.dst_addr()), port)
            }
            Err(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        };
        Some((to, p))
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let t = self
            .iface
            .poll_at(smol(self.clock, self.last), &self.sockets)?;
        Some(
            self.clock
                .instant(netem::Time::from_duration(Duration::from_micros(
                    t.total_micros().max(0) as u64,
                ))),
        )
    }

    fn close(&mut self, now: Instant) {
        for c in self.conns.values() {
            self.sockets.get_mut::<tcp::Socket>(c.handle).abort();
        }
        self.poll(now);
    }

    fn streams(&self) -> Vec<(usize, Mapping)> {
        self.conns
            .iter()
            .filter(|(_, c)| c.connected.is_some())
            .map(|(k, _)| (*k, Mapping::Stream))
            .collect()
    }

    fn connected(&self, k: usize) -> Option<Instant> {
        self.conns.get(&k)?.connected
    }

    fn lost(&self, k: usize) -> Option<String> {
        self.conns.get(&k)?.lost.clone()
    }

    fn fail(&mut self, k: usize, why: String) {
        if let Some(c) = self.conns.get_mut(&k) {
            c.lost.get_or_insert(why);
            self.sockets.get_mut::<tcp::Socket>(c.handle).abort();
        }
    }

    fn take_input(&mut self, k: usize) -> Vec<u8> {
        let Some(c) = self.conns.get(&k) else {
            return Vec::new();
        };
        let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
        let mut out = Vec::new();
        while s.can_recv() {
            let r = s.recv(|b| {
                out.extend_from_slice(b);
                (b.len(), ())
            });
            if r.is_err() {
                break;
            }
        }
        out
    }

    fn write(&mut self, k: usize, data: &[u8]) -> usize {
        let Some(c) = self.conns.get(&k) else {
            return 0;
        };
        let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
        if !s.may_send() {
            return 0;
        }
        s.send_slice(data).unwrap_or(0)
    }

    fn figures(&self, k: usize) -> Option<Figures> {
        let c = self.conns.get(&k)?;
        Some(Figures::Tcp(TcpInfo {
            total_retrans: c.retransmits,
            ..TcpInfo::default()
        }))
    }
}

/// What a bulk transfer carried: its goodput, and the loss it met.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Bulk {
    /// Bytes the receiver got within the measured time.
    pub bytes: u64,
    pub seconds: f64,
    pub goodput_bps: f64,
    /// Packets the engine dropped on the data direction, and of how many.
    pub dropped: u64,
    pub packets: u64,
    /// Data segments the sender sent again.
    pub retransmits: u64,
}

/// A bulk transfer from the publisher's host to the server over smoltcp
/// (congestion control `cc`) through `network`'s first mile, in virtual
/// time, for `seconds` after the connection is up: the userspace TCP's
/// goodput, to set beside the kernel's on the same link (`glass bench tcp`).
pub fn bulk_goodput(
    network: &crate::scenario::Network,
    cc: &str,
    seconds: f64,
    seed: u64,
) -> Result<Bulk> {
    use netem::Time;
    let start = Instant::now();
    let clock = Clock::new(start);
    let mut net = super::net::VirtualNet::new(network, seed)?;
    let addr = |h: &str, port| {
        net.addr(h, port)
            .ok_or_else(|| anyhow!("virtual network: no host \"{h}\""))
    };
    let (sender_addr, sink_addr) = (addr("publisher", 40_000)?, addr("server", 7_000)?);
    let seeds = netem::rng::SeedTree::new(seed).child("bulk");
    let mut sender = TcpHost::new(
        sender_addr,
        false,
        cc,
        clock,
        start,
        seeds.child("a").seed(),
    )?;
    let mut sink = TcpHost::new(sink_addr, true, cc, clock, start, seeds.child("b").seed())?;
    let k = sender.connect(start, sink_addr)?;
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut now = Time::ZERO;
    let mut up_at: Option<Time> = None;
    let mut received = 0u64;
    let limit = Duration::from_secs_f64(seconds);
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > 50_000_000 {
            return Err(anyhow!("bulk transfer: no end after 50 million steps"));
        }
        let at = clock.instant(now);
        net.handle_timeout(now);
        while let Some(d) = net.poll_arrival(now) {
            let h = if d.to.ip() == sink_addr.ip() {
                &mut sink
            } else {
                &mut sender
            };
            h.handle_datagram(at, d.from, &d.bytes);
        }
        sender.handle_timeout(at);
        sink.handle_timeout(at);
        if up_at.is_none() && sender.connected(k).is_some() {
            up_at = Some(now);
        }
        if let Some(t0) = up_at {
            if now.saturating_since(t0) >= limit {
                break;
            }
            while sender.write(k, &chunk) > 0 {}
            for (c, _) in sink.streams() {
                received += sink.take_input(c).len() as u64;
            }
        }
        for h in [&mut sender, &mut sink] {
            h.process(at);
            while let Some((to, p)) = h.poll_transmit(at) {
                net.send_ip(now, h.addr(), to, p);
            }
        }
        let next = [
            net.poll_timeout(),
            sender.poll_timeout().map(|i| clock.time(i)),
            sink.poll_timeout().map(|i| clock.time(i)),
        ]
        .into_iter()
        .flatten()
        .min();
        let deadline = up_at.map(|t| t + limit);
        now = match (next, deadline) {
            (Some(n), Some(d)) => n.min(d),
            (Some(n), None) => n,
            (None, Some(d)) => d,
            (None, None) => return Err(anyhow!("bulk transfer: nothing left to happen")),
        }
        .max(now);
    }
    let stats = net.stats();
    let up = stats.counters("first_mile-uplink");
    Ok(Bulk {
        bytes: received,
        seconds,
        goodput_bps: received as f64 * 8.0 / seconds,
        dropped: up.dropped_loss,
        packets: up.pushed,
        retransmits: u64::from(sender.conns.get(&k).map_or(0, |c| c.retransmits)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn network(up: &str) -> crate::scenario::Network {
        let text = format!(
            r#"
name = "t"
duration = "1s"
[[networks]]
name = "n"
first_mile = {{ uplink = "{up}", downlink = "delay 50ms" }}
[[protocols]]
kind = "rtmp"
"#
        );
        Scenario::from_toml("t", &text, None).unwrap().networks[0].clone()
    }

    /// A bulk transfer at 1 % loss and 100 ms RTT carries what Mathis's
    /// formula gives (1.41 Mbit/s for 1,448-byte segments) within its
    /// usual spread, for both congestion controls, with full segments
    /// and every drop sent again; a clean path carries far more.
    #[test]
    fn a_bulk_transfer_follows_the_mathis_formula() {
        let mathis = 1448.0 * 8.0 / 0.1 * 1.22 / 0.01f64.sqrt();
        for cc in ["reno", "cubic"] {
            let b = bulk_goodput(&network("delay 50ms loss 1%"), cc, 60.0, 1).unwrap();
            let ratio = b.goodput_bps / mathis;
            let mean_packet = b.bytes as f64 / b.packets as f64;
            assert!(
                (0.6..1.3).contains(&ratio),
                "{cc}: {b:?}, {ratio:.2} × Mathis"
            );
            assert!(mean_packet > 1_350.0, "{cc}: {mean_packet:.0} B a packet");
            assert!(b.retransmits >= b.dropped && b.dropped > 30, "{cc}: {b:?}");
        }
        let clean = bulk_goodput(&network("delay 50ms"), "cubic", 10.0, 1).unwrap();
        // (The 256 KiB send buffer over 100 ms caps it near 20 Mbit/s.)
        assert!(clean.goodput_bps > 10.0 * mathis, "{clean:?}");
        assert_eq!(clean.retransmits, 0);
    }
}
