//! RTSP's server side on the relay's hub: the tokio edge around the sans-IO
//! [`ServerSession`], [`UdpRoutes`], [`Reorder`] and [`TrackIngest`]. It
//! accepts publishers on its TCP port; a session that RECORDs claims its
//! stream key on the hub and publishes what its tracks carry, whether
//! interleaved on the connection or as datagrams on the relay's RTP and
//! RTCP ports (one pair for every session, routed by source). The key is
//! released when the session ends (TEARDOWN, silence, an error, the
//! connection closed, or the relay stopping).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netem::Time;
use netem::time::Clock;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::auth::Credentials;
use super::ingest::{TrackIngest, TrackStats};
use super::reorder::Reorder;
use super::rtp::RtpPacket;
use super::session::{Event, Limits, ServerSession, Transport};
use super::udp::{Datagram, Delivery, Expect, Port, UdpRoutes};
use crate::relay::{Hub, Media};

/// At most this many sessions at once; more connections are closed.
pub const MAX_SESSIONS: usize = 64;
/// Datagrams queued for one session before more are dropped (counted).
const SESSION_QUEUE: usize = 4096;
/// How long a UDP session that ended still takes its datagrams.
const UDP_STRAGGLERS: Duration = Duration::from_millis(50);

/// What RTSP's server side saw (results.json's `relay.rtsp`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RtspServerStats {
    pub rtsp: Vec<SessionStats>,
    /// Datagrams on the relay's RTP/RTCP ports that no session took.
    pub rtsp_udp_stray: u64,
    /// Connections closed at once: MAX_SESSIONS were running.
    pub rtsp_refused: u64,
}

/// One publisher's session.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SessionStats {
    pub peer: String,
    /// Whether it recorded onto the hub.
    pub recorded: bool,
    pub tracks: Vec<TrackStats>,
    /// Interleaved frames outside a recording track.
    pub stray_frames: u64,
    /// Datagrams dropped because the session's queue was full.
    pub udp_overflow: u64,
    /// Why it ended.
    pub ended: String,
}

impl crate::protocol::Stats for RtspServerStats {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::protocol::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The relay's UDP side: its RTP and RTCP sockets and the ports clients
/// reach them at (`server_port`).
pub struct UdpSide {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub ports: (u16, u16),
}

/// How sessions run.
#[derive(Clone, Debug)]
pub struct Config {
    pub limits: Limits,
    /// The UDP path's reorder buffer wait.
    pub jitter_buffer: Duration,
    /// Credentials publishers must give.
    pub auth: Option<Credentials>,
}

/// Where the datagram receiver hands a session its datagrams.
#[derive(Clone)]
struct Inbox {
    tx: mpsc::Sender<Datagram>,
    /// Datagrams dropped because the queue was full.
    overflow: Arc<AtomicU64>,
}

type Routes = Arc<Mutex<UdpRoutes<Inbox>>>;

/// Accepts publishers until `stop` changes; each session's statistics go
/// to `stats` as it ends.
pub async fn serve(
    listener: TcpListener,
    udp: Option<UdpSide>,
    hub: Hub,
    config: Config,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<RtspServerStats>>,
) {
    let server_ports = udp.as_ref().map(|u| u.ports);
    let routes: Routes = Arc::new(Mutex::new(UdpRoutes::default()));
    let mut sessions = tokio::task::JoinSet::new();
    if let Some(u) = udp {
        sessions.spawn(receive_datagrams(
            u,
            routes.clone(),
            stop.clone(),
            stats.clone(),
        ));
    }
    let mut next_id: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((sock, peer)) = accepted else {
                    // Out of file descriptors (EMFILE): pause rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                while sessions.try_join_next().is_some() {}
                // The datagram receiver is one of the tasks.
                if sessions.len() > MAX_SESSIONS {
                    tracing::info!("RTSP: {peer} refused, {MAX_SESSIONS} sessions running");
                    if let Ok(mut st) = stats.lock() {
                        st.rtsp_refused += 1;
                    }
                    continue;
                }
                let _ = sock.set_nodelay(true);
                next_id += 1;
                let edge = SessionEdge {
                    number: next_id,
                    peer,
                    hub: hub.clone(),
                    config: config.clone(),
                    server_ports,
                    routes: routes.clone(),
                };
                let (stop, stats) = (stop.clone(), stats.clone());
                sessions.spawn(async move {
                    let s = edge.run(sock, stop).await;
                    if let Ok(mut st) = stats.lock() {
                        st.rtsp.push(SessionStats { peer: peer.to_string(), ..s });
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    // Sessions see the same stop and end with their statistics.
    while sessions.join_next().await.is_some() {}
}

/// Reads the relay's RTP and RTCP sockets and hands each datagram to its
/// session, until the relay stops.
async fn receive_datagrams(
    udp: UdpSide,
    routes: Routes,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<RtspServerStats>>,
) {
    let mut rtp_buf = vec![0u8; 65_536];
    let mut rtcp_buf = vec![0u8; 65_536];
    loop {
        let (port, got, buf) = tokio::select! {
            // Either when both are ready (a flood on one cannot starve the
            // other): the ingest waits for a first sender report read
            // after the first RTP packet.
            r = udp.rtp.recv_from(&mut rtp_buf) => (Port::Rtp, r, &rtp_buf),
            r = udp.rtcp.recv_from(&mut rtcp_buf) => (Port::Rtcp, r, &rtcp_buf),
            _ = stop.changed() => break,
        };
        // An ICMP error on a socket (a client gone) is not the relay's end.
        let Ok((n, from)) = got else { continue };
        let deliveries = match routes.lock() {
            Ok(mut r) => r.route(port, from, &buf[..n]),
            Err(_) => break,
        };
        for Delivery { to, datagram } in deliveries {
            // A full queue drops the datagram; the session counts its
            // packets as lost through their sequence numbers.
            if to.tx.try_send(datagram).is_err() {
                to.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if let (Ok(mut st), Ok(r)) = (stats.lock(), routes.lock()) {
        st.rtsp_udp_stray = r.stray;
    }
}

/// What one session's task needs besides its connection.
struct SessionEdge {
    number: u64,
    peer: SocketAddr,
    hub: Hub,
    config: Config,
    server_ports: Option<(u16, u16)>,
    routes: Routes,
}

/// The session's tracks as they ingest.
struct Tracks {
    ingest: Vec<TrackIngest>,
    reorder: Vec<Reorder>,
    claimed: Option<String>,
}

impl Tracks {
    /// An RTP packet of `track` into its ingest, and what came of it onto
    /// the hub.
    fn rtp(&mut self, hub: &Hub, track: usize, packet: &[u8]) {
        if let Some(ingest) = self.ingest.get_mut(track) {
            let media = ingest.rtp(packet);
            publish(hub, self.claimed.as_deref(), media, ingest);
        }
    }

    /// A datagram for one of the tracks.
    fn datagram(&mut self, hub: &Hub, d: Datagram, now: Time) {
        match d.port {
            Port::Rtp => self.rtp_datagram(hub, d.track, d.packet, now),
            Port::Rtcp => self.rtcp(hub, d.track, &d.packet),
        }
    }

    /// An RTCP packet of `track` into its ingest, and the frames that
    /// waited for its sender report onto the hub.
    fn rtcp(&mut self, hub: &Hub, track: usize, packet: &[u8]) {
        if let Some(ingest) = self.ingest.get_mut(track) {
            let media = ingest.rtcp(packet);
            publish(hub, self.claimed.as_deref(), media, ingest);
        }
    }

    /// A datagram's RTP packet through its track's reorder buffer.
    fn rtp_datagram(&mut self, hub: &Hub, track: usize, packet: Vec<u8>, now: Time) {
        let Some(reorder) = self.reorder.get_mut(track) else {
            return;
        };
        let mut ready = Vec::new();
        match RtpPacket::parse(&packet) {
            Ok(p) => reorder.push(p.sequence, packet, now, &mut ready),
            Err(_) => ready.push(packet), // the ingest counts it
        }
        for p in ready {
            self.rtp(hub, track, &p);
        }
    }

    /// When a reorder buffer's wait runs out next.
    fn deadline(&self) -> Option<Time> {
        self.reorder.iter().filter_map(Reorder::poll_timeout).min()
    }

    fn handle_timeout(&mut self, hub: &Hub, now: Time) {
        for i in 0..self.reorder.len() {
            let mut ready = Vec::new();
            self.reorder[i].handle_timeout(now, &mut ready);
            for p in ready {
                self.rtp(hub, i, &p);
            }
        }
    }
}

/// Media of the stream `key` claimed (None: not recording) onto the hub,
/// and the pictures the track's ingest had to leave out.
fn publish(hub: &Hub, key: Option<&str>, media: Vec<Media>, ingest: &mut TrackIngest) {
    let withheld = ingest.take_withheld();
    if let Some(key) = key {
        for ts in withheld {
            hub.withhold(key, ts);
        }
        for m in media {
            let _ = hub.publish(key, m);
        }
    }
}

impl SessionEdge {
    /// One connection, until it ends.
    async fn run(self, mut sock: TcpStream, mut stop: watch::Receiver<bool>) -> SessionStats {
        let clock = Clock::new(Instant::now());
        let now = || clock.time(Instant::now());
        let limits = self.config.limits;
        let mut s = ServerSession::new(
            format!("{:08x}", 0x6c61_0000 + self.number),
            self.hub.stream_key(),
            limits,
            self.server_ports,
            now(),
        )
        .with_auth(self.config.auth.clone());
        let (tx, mut rx) = mpsc::channel::<Datagram>(SESSION_QUEUE);
        let inbox = Inbox {
            tx,
            overflow: Arc::new(AtomicU64::new(0)),
        };
        let mut tracks = Tracks {
            ingest: Vec::new(),
            reorder: Vec::new(),
            claimed: None,
        };
        let mut recorded = false;
        let mut out = SessionStats::default();
        let mut buf = vec![0u8; 64 * 1024];
        let ended = 'run: loop {
            // Replies first, then what happened.
            while let Some(bytes) = s.poll_transmit() {
                if let Err(e) = sock.write_all(&bytes).await {
                    break 'run format!("writing: {e}");
                }
            }
            while let Some(event) = s.poll_event() {
                match event {
                    Event::Announced { key, tracks: t, .. } => {
                        tracks.reorder = t
                            .iter()
                            .map(|_| Reorder::new(self.config.jitter_buffer))
                            .collect();
                        tracks.ingest = t.into_iter().map(TrackIngest::new).collect();
                        tracks.claimed = Some(key);
                    }
                    Event::Recording { transports } => {
                        let key = tracks.claimed.clone().unwrap_or_default();
                        match self.hub.claim(&key) {
                            Ok(true) => recorded = true,
                            _ => {
                                tracks.claimed = None;
                                break 'run format!(
                                    "stream \"{}\" is already published",
                                    crate::redact::key(&key)
                                );
                            }
                        }
                        if let Err(why) = self.route(&transports, &mut tracks, &inbox) {
                            break 'run why;
                        }
                    }
                    Event::Rtp { track, packet } => tracks.rtp(&self.hub, track, &packet),
                    Event::Rtcp { track, packet } => tracks.rtcp(&self.hub, track, &packet),
                    Event::Closed { reason } => break 'run reason,
                }
            }
            let deadline = [s.poll_timeout(), tracks.deadline()]
                .into_iter()
                .flatten()
                .min()
                .map(|t| clock.instant(t))
                .unwrap_or_else(|| Instant::now() + limits.timeout);
            tokio::select! {
                read = sock.read(&mut buf) => match read {
                    Ok(0) => break 'run "the publisher closed the connection".into(),
                    Ok(n) => s.input(&buf[..n], now()),
                    Err(e) => break 'run format!("reading: {e}"),
                },
                Some(d) = rx.recv() => {
                    // Media keeps a UDP session alive as its requests do.
                    s.keep_alive(now());
                    tracks.datagram(&self.hub, d, now());
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    s.handle_timeout(now());
                    tracks.handle_timeout(&self.hub, now());
                }
                _ = stop.changed() => break 'run "the relay stopped".into(),
            }
        };
        // A publisher sends its last datagrams just before its TEARDOWN,
        // which can overtake them: what comes within a moment still counts.
        if tracks.ingest.iter().any(|t| t.stats.transport == "udp") {
            while let Ok(Some(d)) = tokio::time::timeout(UDP_STRAGGLERS, rx.recv()).await {
                tracks.datagram(&self.hub, d, now());
            }
        }
        if let Ok(mut r) = self.routes.lock() {
            r.remove_session(self.number);
        }
        // What waited in the reorder buffers still goes on.
        tracks.handle_timeout(&self.hub, Time::MAX);
        if recorded && let Some(key) = &tracks.claimed {
            self.hub.release(key);
        }
        tracing::info!("RTSP session ended: {ended}");
        out.recorded = recorded;
        out.tracks = tracks
            .ingest
            .into_iter()
            .zip(tracks.reorder)
            .map(|(t, r)| TrackStats {
                reorder_put_back: r.put_back,
                reorder_gaps_given_up: r.gaps_given_up,
                ..t.stats
            })
            .collect();
        out.stray_frames = s.stray_frames;
        out.udp_overflow = inbox.overflow.load(Ordering::Relaxed);
        out.ended = ended;
        out
    }

    /// Routes the session's UDP tracks' datagrams to it.
    fn route(
        &self,
        transports: &[Option<Transport>],
        tracks: &mut Tracks,
        inbox: &Inbox,
    ) -> Result<(), String> {
        let mut routes = self
            .routes
            .lock()
            .map_err(|_| "the UDP routes are poisoned".to_string())?;
        for (i, t) in transports.iter().enumerate() {
            let Some(ingest) = tracks.ingest.get_mut(i) else {
                continue;
            };
            ingest.stats.transport = match t {
                Some(Transport::Interleaved { .. }) => "tcp",
                Some(Transport::Udp { .. }) => "udp",
                None => "",
            };
            if let Some(Transport::Udp {
                client_rtp,
                client_rtcp,
            }) = *t
            {
                routes
                    .add(
                        Expect {
                            session: self.number,
                            track: i,
                            client_ip: self.peer.ip(),
                            client_ports: (client_rtp, client_rtcp),
                            payload_type: ingest.payload_type(),
                        },
                        inbox.clone(),
                    )
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}
