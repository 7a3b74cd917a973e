//! QUIC in virtual time: a host's `quinn_proto::Endpoint` and its
//! connections, driven with the run's instants. quinn (the async crate
//! link mode uses) is this same state machine behind tokio's sockets and
//! timers; here datagrams come from and go to [`super::net::VirtualNet`],
//! and the endpoint's random numbers come from the run's seed tree.
//!
//! Streams are what RTMP needs: one bidirectional stream per connection
//! (the RTMP session; whoever connects opens it) and, for the frames
//! mapping, a unidirectional stream per audio/video message, written with
//! the same head and priority as link mode's [`quic::write_message`] and
//! read whole when it finishes.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow};
use bytes::{Bytes, BytesMut};
use quinn_proto::{
    ClientConfig, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig, Event,
    ServerConfig, StreamEvent, StreamId, WriteError,
};

use super::stream::{Figures, Frame, StreamHost};
use crate::protocol::rtmp::quic::{self, Mapping, QuicStats};

/// One connection and its streams.
pub struct Conn {
    pub conn: quinn_proto::Connection,
    pub remote: SocketAddr,
    /// Handshake finished (instant), or the connection ended (why).
    pub connected: Option<Instant>,
    /// The mapping the client asked for (ALPN), known once connected.
    pub mapping: Option<Mapping>,
    pub lost: Option<String>,
    /// The RTMP session's stream, once opened (client) or accepted (server).
    pub bi: Option<StreamId>,
    /// Bytes read off the bidirectional stream, not yet taken.
    pub stream_in: Vec<u8>,
    /// Unidirectional streams being read, and the frames read whole.
    uni_in: BTreeMap<StreamId, Vec<u8>>,
    pub frames_in: VecDeque<Frame>,
    /// A frame's stream with bytes not yet taken by the send window: the
    /// next frame waits for it, as link mode's `write_all` does.
    uni_out: Option<(StreamId, Bytes)>,
    /// Messages sent on streams of their own (their priority order).
    sent_on_streams: u64,
}

impl Conn {
    fn new(conn: quinn_proto::Connection, remote: SocketAddr) -> Conn {
        Conn {
            conn,
            remote,
            connected: None,
            mapping: None,
            lost: None,
            bi: None,
            stream_in: Vec::new(),
            uni_in: BTreeMap::new(),
            frames_in: VecDeque::new(),
            uni_out: None,
            sent_on_streams: 0,
        }
    }

    /// Writes as much of `data` on the RTMP stream as flow control and the
    /// send window take; returns how much.
    /// A client opens the stream with its first write (its first bytes
    /// make it known to the server).
    pub fn write_stream(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        if self.bi.is_none() && self.conn.side().is_client() {
            self.bi = self.conn.streams().open(Dir::Bi);
        }
        let Some(id) = self.bi else { return 0 };
        match self.conn.send_stream(id).write(data) {
            Ok(n) => n,
            Err(WriteError::Blocked) => 0,
            Err(e) => {
                self.lost.get_or_insert(format!("RTMP stream: {e}"));
                0
            }
        }
    }

    /// Whether a frame can go now (the one before it is all written).
    pub fn frame_room(&mut self) -> bool {
        self.flush_frame();
        self.uni_out.is_none()
    }

    /// Opens a stream for one message and writes what the window takes;
    /// false when no stream can be opened yet (the peer's limit).
    pub fn send_frame(&mut self, video: bool, ts: u32, body: &[u8]) -> bool {
        let Some(id) = self.conn.streams().open(Dir::Uni) else {
            return false;
        };
        self.sent_on_streams += 1;
        let mut s = self.conn.send_stream(id);
        let _ = s.set_priority(quic::priority(self.sent_on_streams));
        let kind = if video {
            quic::MSG_VIDEO
        } else {
            quic::MSG_AUDIO
        };
        let mut all = Vec::with_capacity(5 + body.len());
        all.extend_from_slice(&quic::message_head(kind, ts));
        all.extend_from_slice(body);
        self.uni_out = Some((id, Bytes::from(all)));
        self.flush_frame();
        true
    }

    /// Writes the waiting frame's rest; finishes its stream when done.
    fn flush_frame(&mut self) {
        let Some((id, rest)) = self.uni_out.take() else {
            return;
        };
        let mut s = self.conn.send_stream(id);
        match s.write(&rest) {
            Ok(n) if n == rest.len() => {
                let _ = s.finish();
            }
            Ok(n) => self.uni_out = Some((id, rest.slice(n..))),
            Err(WriteError::Blocked) => self.uni_out = Some((id, rest)),
            Err(_) => {}
        }
    }

    /// The connection's figures, as link mode reports quinn's.
    pub fn stats(&self) -> QuicStats {
        quic::stats_of(&self.conn.stats(), self.conn.rtt())
    }

    /// Handles the connection's events: handshake, streams opened by the
    /// peer, data to read.
    fn events(&mut self, now: Instant) {
        while let Some(e) = self.conn.poll() {
            match e {
                Event::Connected => {
                    self.connected.get_or_insert(now);
                    match quic::mapping_of_handshake(self.conn.crypto_session().handshake_data()) {
                        Ok(m) => self.mapping = Some(m),
                        Err(e) => {
                            self.lost.get_or_insert(format!("{e:#}"));
                        }
                    }
                }
                Event::ConnectionLost { reason } => {
                    self.lost.get_or_insert(reason.to_string());
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                    if let Some(id) = self.conn.streams().accept(Dir::Bi) {
                        self.bi.get_or_insert(id);
                        self.read(id);
                    }
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    while let Some(id) = self.conn.streams().accept(Dir::Uni) {
                        self.uni_in.insert(id, Vec::new());
                        self.read(id);
                    }
                }
                Event::Stream(StreamEvent::Readable { id }) => self.read(id),
                _ => {}
            }
        }
    }

    /// Reads what `id` has, in order; a frame's stream read to its end
    /// becomes a frame.
    fn read(&mut self, id: StreamId) {
        let bi = self.bi == Some(id);
        if !bi && !self.uni_in.contains_key(&id) {
            return;
        }
        let mut recv = self.conn.recv_stream(id);
        let Ok(mut chunks) = recv.read(true) else {
            return;
        };
        let mut finished = false;
        let mut too_long = false;
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(c)) => {
                    if bi {
                        self.stream_in.extend_from_slice(&c.bytes);
                    } else if let Some(b) = self.uni_in.get_mut(&id) {
                        b.extend_from_slice(&c.bytes);
                        too_long = b.len() > quic::MAX_MESSAGE;
                        if too_long {
                            break;
                        }
                    }
                }
                Ok(None) => {
                    finished = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let _ = chunks.finalize();
        if too_long {
            // As link mode's `read_to_end(MAX_MESSAGE)`: refused, not parsed.
            self.uni_in.remove(&id);
            let _ = self.conn.recv_stream(id).stop(0u32.into());
            tracing::debug!("frames-mapping stream over {} bytes", quic::MAX_MESSAGE);
            return;
        }
        if finished && !bi {
            let Some(all) = self.uni_in.remove(&id) else {
                return;
            };
            match quic::parse_message(all) {
                Ok((kind, ts, body)) => {
                    self.frames_in
                        .push_back((kind == quic::MSG_VIDEO, body, ts))
                }
                Err(e) => tracing::debug!("frames-mapping stream: {e:#}"),
            }
        }
    }
}

/// A host's QUIC endpoint and its connections, by handle (a fixed order).
pub struct QuicHost {
    pub addr: SocketAddr,
    endpoint: Endpoint,
    server: Option<Arc<ServerConfig>>,
    client: Option<ClientConfig>,
    pub conns: BTreeMap<usize, Conn>,
    /// Datagrams the endpoint answered by itself (a refused handshake).
    responses: VecDeque<(SocketAddr, Vec<u8>)>,
    buf: Vec<u8>,
}

impl QuicHost {
    /// A host at `addr`; with `server`, it accepts connections; with
    /// `client`, it dials.
    pub fn new(
        addr: SocketAddr,
        server: Option<ServerConfig>,
        client: Option<ClientConfig>,
        seed: [u8; 32],
    ) -> QuicHost {
        let server = server.map(Arc::new);
        QuicHost {
            addr,
            // Path MTU discovery on, as quinn's sockets allow it in link
            // mode: packets grow from 1,200 bytes to what the path carries
            // (1,452 by default), and with them what each loss costs.
            endpoint: Endpoint::new(
                Arc::new(EndpointConfig::default()),
                server.clone(),
                true,
                Some(seed),
            ),
            server,
            client,
            conns: BTreeMap::new(),
            responses: VecDeque::new(),
            buf: Vec::new(),
        }
    }

    fn insert(&mut self, h: ConnectionHandle, conn: quinn_proto::Connection, remote: SocketAddr) {
        self.conns.insert(h.0, Conn::new(conn, remote));
    }
}

impl StreamHost for QuicHost {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn sends_ip_packets(&self) -> bool {
        false
    }

    fn label(&self, mapping: Mapping) -> &'static str {
        match mapping {
            Mapping::Stream => "quic/stream",
            Mapping::Frames => "quic/frames",
        }
    }

    /// Connects to `remote`; the RTMP stream is opened on the first
    /// write (the server's stream limit is known after the handshake).
    fn handshake_step(&self) -> &'static str {
        "quic_handshake"
    }

    fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<usize> {
        let cfg = self
            .client
            .clone()
            .ok_or_else(|| anyhow!("QUIC: this host does not dial"))?;
        let (h, conn) = self
            .endpoint
            .connect(now, cfg, remote, quic::SERVER_NAME)
            .map_err(|e| anyhow!("QUIC connect: {e}"))?;
        self.insert(h, conn, remote);
        Ok(h.0)
    }

    /// A datagram from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let event =
            self.endpoint
                .handle(now, from, None, None, BytesMut::from(data), &mut self.buf);
        match event {
            Some(DatagramEvent::ConnectionEvent(h, e)) => {
                if let Some(c) = self.conns.get_mut(&h.0) {
                    c.conn.handle_event(e);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                let mut buf = Vec::new();
                match self
                    .endpoint
                    .accept(incoming, now, &mut buf, self.server.clone())
                {
                    Ok((h, conn)) => self.insert(h, conn, from),
                    Err(e) => {
                        if let Some(t) = e.response {
                            self.responses
                                .push_back((t.destination, buf[..t.size].to_vec()));
                        }
                    }
                }
            }
            Some(DatagramEvent::Response(t)) => {
                self.responses
                    .push_back((t.destination, self.buf[..t.size].to_vec()));
            }
            None => {}
        }
        self.process(now);
    }

    /// Timers due at `now`, then everything they caused.
    fn handle_timeout(&mut self, now: Instant) {
        for c in self.conns.values_mut() {
            if c.conn.poll_timeout().is_some_and(|t| t <= now) {
                c.conn.handle_timeout(now);
            }
        }
        self.process(now);
    }

    /// Exchanges endpoint events and handles each connection's own.
    fn process(&mut self, now: Instant) {
        for (k, c) in self.conns.iter_mut() {
            let h = ConnectionHandle(*k);
            while let Some(e) = c.conn.poll_endpoint_events() {
                if let Some(back) = self.endpoint.handle_event(h, e) {
                    c.conn.handle_event(back);
                }
            }
            c.events(now);
        }
    }

    /// The next datagram any connection (or the endpoint) has to send.
    fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if let Some(r) = self.responses.pop_front() {
            return Some(r);
        }
        for c in self.conns.values_mut() {
            self.buf.clear();
            if let Some(t) = c.conn.poll_transmit(now, 1, &mut self.buf) {
                return Some((t.destination, self.buf[..t.size].to_vec()));
            }
        }
        None
    }

    /// The earliest timer of any connection.
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.conns
            .values_mut()
            .filter_map(|c| c.conn.poll_timeout())
            .min()
    }

    /// Closes every connection (the run's end).
    fn close(&mut self, now: Instant) {
        for c in self.conns.values_mut() {
            c.conn
                .close(now, 0u32.into(), Bytes::from_static(b"the run ended"));
        }
        self.process(now);
    }

    fn streams(&self) -> Vec<(usize, Mapping)> {
        self.conns
            .iter()
            .filter(|(_, c)| c.bi.is_some() && c.lost.is_none())
            .filter_map(|(k, c)| Some((*k, c.mapping?)))
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
        }
    }

    fn take_input(&mut self, k: usize) -> Vec<u8> {
        self.conns
            .get_mut(&k)
            .map(|c| std::mem::take(&mut c.stream_in))
            .unwrap_or_default()
    }

    fn write(&mut self, k: usize, data: &[u8]) -> usize {
        self.conns.get_mut(&k).map_or(0, |c| c.write_stream(data))
    }

    fn take_frames(&mut self, k: usize) -> Vec<Frame> {
        self.conns
            .get_mut(&k)
            .map(|c| c.frames_in.drain(..).collect())
            .unwrap_or_default()
    }

    fn frame_room(&mut self, k: usize) -> bool {
        self.conns.get_mut(&k).is_some_and(|c| c.frame_room())
    }

    fn send_frame(&mut self, k: usize, video: bool, ts: u32, body: &[u8]) -> bool {
        self.conns
            .get_mut(&k)
            .is_some_and(|c| c.send_frame(video, ts, body))
    }

    fn figures(&self, k: usize) -> Option<Figures> {
        Some(Figures::Quic(self.conns.get(&k)?.stats()))
    }
}
