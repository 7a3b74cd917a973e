//! Glass's UDP media protocol (the `udpmedia` crate's sans-IO sessions) on
//! real UDP sockets: the relay's gateway (UDP publishers in, UDP players
//! out, sharing the relay's streams with RTMP) and the publisher and player
//! clients. The state machines take `now` and return datagrams and wake-up
//! instants; these tasks only move datagrams and sleep.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use netem::Time;
use netem::time::Clock;
use rml_rtmp::time::RtmpTimestamp;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use udpmedia::cc::CcSample;
use udpmedia::wire::{self, Body, Role};
use udpmedia::{ConnStats, Connection, Event, OutFrame};

use super::rtmp::{
    self, AbrReport, Media, PublisherStats, RelayStats, Stream, claim_publish, published,
    release_publish, subscribe,
};
use crate::media::abr::AbrSample;
use crate::media::player::Player;
use crate::media::source::{Source, unpack};
use crate::media::wallclock::{ForeignFrames, WallClock};

/// The relay's UDP port for this protocol (QUIC has UDP 1935).
pub const UDP_MEDIA_PORT: u16 = 5000;

/// What one end of a session measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UdpReport {
    /// "publisher", "relay-ingest", "relay-egress" or "player".
    pub role: String,
    #[serde(flatten)]
    pub stats: ConnStats,
    /// Congestion control's decisions (a sender with `cc = "gcc"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<CcSample>,
}

impl UdpReport {
    fn of(role: &str, conn: &Connection) -> UdpReport {
        UdpReport {
            role: role.into(),
            stats: conn.stats(),
            cc: conn
                .sender()
                .map(|s| s.cc_samples().to_vec())
                .unwrap_or_default(),
        }
    }
}

/// Sends what `conn` has to send. UDP send errors are not fatal (the
/// datagram is lost, as on any network); they are logged.
async fn flush(sock: &UdpSocket, conn: &mut Connection, to: SocketAddr, clock: Clock) {
    while let Some(d) = conn.poll_transmit(clock.time(Instant::now())) {
        if let Err(e) = sock.send_to(&d, to).await {
            tracing::debug!("udp media: send to {to}: {e}");
        }
    }
}

/// Sleeps until `t` (not at all if it passed).
async fn sleep_until(clock: Clock, t: Time) {
    let at = clock.instant(t);
    if at > Instant::now() {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// A video tag is a key frame when its frame type (high nibble) is 1.
fn is_key(video: bool, data: &[u8]) -> bool {
    video && data.first().is_some_and(|b| b >> 4 == 1)
}

/// One session the relay serves.
struct Peer {
    conn: Connection,
    /// The stream it publishes (ingest) or plays (egress).
    key: String,
    publishing: bool,
    /// Its entry in `RelayStats::udp`.
    slot: usize,
}

impl Peer {
    fn send(&mut self, now: Time, m: &Media, stats: &Mutex<RelayStats>) {
        let (video, data, ts) = match m {
            Media::Video(d, t) => (true, d, t.value),
            Media::Audio(d, t) => (false, d, t.value),
            Media::Metadata(_) => return,
        };
        let f = OutFrame {
            video,
            key: is_key(video, data),
            timestamp: ts,
            data,
        };
        if let Err(e) = self.conn.send_frame(now, f) {
            tracing::debug!("udp media: to a player: {e}");
        }
        if video {
            rtmp::note_hop(stats, data, true);
        }
    }
}

/// The relay's UDP side: accepts publishers (with the relay's stream key)
/// and players, until `stop` changes. Frames from a publisher go into the
/// relay's stream table exactly as an RTMP publisher's do (so RTMP and QUIC
/// players get them: the gateway); UDP players are fed from it.
pub(crate) async fn serve(
    sock: UdpSocket,
    cfg: udpmedia::Config,
    stream_key: String,
    streams: Arc<Mutex<HashMap<String, Stream>>>,
    stats: Arc<Mutex<RelayStats>>,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Clock::new(Instant::now());
    let (media_tx, mut media_rx) = mpsc::channel::<(SocketAddr, Media)>(65_536);
    let mut peers: HashMap<SocketAddr, Peer> = HashMap::new();
    let mut next_session = 1u32;
    let mut buf = vec![0u8; 65_536];
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    let record = |peers: &HashMap<SocketAddr, Peer>| {
        if let Ok(mut st) = stats.lock() {
            for p in peers.values() {
                let role = if p.publishing {
                    "relay-ingest"
                } else {
                    "relay-egress"
                };
                st.udp[p.slot] = UdpReport::of(role, &p.conn);
            }
        }
    };
    loop {
        let now = clock.time(Instant::now());
        for (addr, p) in peers.iter_mut() {
            while let Some(f) = p.conn.poll_frame() {
                let ts = RtmpTimestamp::new(f.timestamp);
                if let Err(e) =
                    published(&streams, &stats, &p.key, f.video, Bytes::from(f.data), ts)
                {
                    tracing::warn!("udp media: {e:#}");
                }
            }
            flush(&sock, &mut p.conn, *addr, clock).await;
        }
        let closed: Vec<SocketAddr> = peers
            .iter()
            .filter(|(_, p)| p.conn.is_closed())
            .map(|(a, _)| *a)
            .collect();
        if !closed.is_empty() {
            record(&peers);
            for a in closed {
                if let Some(p) = peers.remove(&a)
                    && p.publishing
                {
                    release_publish(&streams, &p.key);
                }
            }
        }
        let wake = peers
            .values()
            .filter_map(|p| p.conn.poll_timeout(now))
            .min();
        tokio::select! {
            _ = stop.changed() => {
                let now = clock.time(Instant::now());
                for (addr, p) in peers.iter_mut() {
                    p.conn.close(now);
                    flush(&sock, &mut p.conn, *addr, clock).await;
                }
                record(&peers);
                return;
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let now = clock.time(Instant::now());
                let d = &buf[..n];
                if let Some(p) = peers.get_mut(&from) {
                    p.conn.handle_datagram(now, d);
                    continue;
                }
                let Ok(wire::Packet { body: Body::Hello(h), .. }) = wire::parse(d) else { continue };
                if peers.len() >= 64 {
                    continue;
                }
                let key = String::from_utf8_lossy(h.key).into_owned();
                let refuse = |reason: &str| udpmedia::Refusal { code: wire::REJECT_KEY, reason: reason.into() };
                let Some(stream) = key.strip_prefix(&format!("{}/", rtmp::APP)).map(str::to_string) else {
                    let _ = sock.send_to(&refuse(&format!("unknown application in \"{key}\"")).datagram(), from).await;
                    continue;
                };
                let publishing = h.role == Role::Publish;
                match Connection::accept(cfg.clone(), &h, next_session, now) {
                    Err(r) => {
                        let _ = sock.send_to(&r.datagram(), from).await;
                    }
                    Ok(conn) => {
                        if publishing && !claim_publish(&streams, &stats, &stream, &stream_key).unwrap_or(false) {
                            let _ = sock.send_to(&refuse("wrong stream key, or already publishing").datagram(), from).await;
                            continue;
                        }
                        next_session = next_session.wrapping_add(1).max(1);
                        let slot = match stats.lock() {
                            Ok(mut st) => {
                                if !publishing {
                                    st.players += 1;
                                }
                                st.udp.push(UdpReport::default());
                                st.udp.len() - 1
                            }
                            Err(_) => continue,
                        };
                        let mut peer = Peer { conn, key: stream, publishing, slot };
                        if !publishing {
                            // A player: what it missed, then the stream as it comes.
                            let Ok((catch_up, mut rx)) = subscribe(&streams, &peer.key) else { continue };
                            for m in &catch_up {
                                peer.send(now, m, &stats);
                            }
                            let tx = media_tx.clone();
                            tokio::spawn(async move {
                                while let Some(m) = rx.recv().await {
                                    if tx.send((from, m)).await.is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        peers.insert(from, peer);
                    }
                }
            }
            Some((to, m)) = media_rx.recv() => {
                if let Some(p) = peers.get_mut(&to) {
                    p.send(clock.time(Instant::now()), &m, &stats);
                }
            }
            _ = sleep_until(clock, wake.unwrap_or(Time::MAX)), if wake.is_some() => {
                let now = clock.time(Instant::now());
                for p in peers.values_mut() {
                    p.conn.handle_timeout(now);
                }
            }
            _ = sample.tick() => record(&peers),
        }
    }
}

/// A client session with the relay, connected.
pub struct UdpClient {
    sock: UdpSocket,
    to: SocketAddr,
    conn: Connection,
    clock: Clock,
    pub handshake_ms: f64,
}

/// A client gives up if the handshake does not finish in this long.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

impl UdpClient {
    /// Connects to the relay at `to` to publish or play `app/key`.
    pub async fn connect(
        sock: std::net::UdpSocket,
        to: SocketAddr,
        cfg: udpmedia::Config,
        role: Role,
        stream: &str,
        clock: Clock,
    ) -> Result<UdpClient> {
        sock.set_nonblocking(true)?;
        let sock = UdpSocket::from_std(sock)?;
        let t0 = Instant::now();
        let mut conn = Connection::connect(cfg, role, stream, clock.time(t0))
            .map_err(|e| anyhow!("udp: {e}"))?;
        let mut buf = vec![0u8; 65_536];
        loop {
            if t0.elapsed() > HANDSHAKE_LIMIT {
                bail!("no answer from the relay's UDP port {to}");
            }
            let now = clock.time(Instant::now());
            conn.handle_timeout(now);
            flush(&sock, &mut conn, to, clock).await;
            if let Some(e) = conn.poll_event() {
                match e {
                    Event::Connected { .. } => {
                        return Ok(UdpClient {
                            sock,
                            to,
                            conn,
                            clock,
                            handshake_ms: t0.elapsed().as_secs_f64() * 1e3,
                        });
                    }
                    Event::Rejected { reason } => {
                        bail!("the relay refused the UDP session: {reason}")
                    }
                    Event::Closed { reason } => bail!("UDP session: {reason}"),
                }
            }
            let wake = conn
                .poll_timeout(now)
                .unwrap_or(now + Duration::from_millis(50));
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    let (n, from) = r?;
                    if from == to {
                        conn.handle_datagram(clock.time(Instant::now()), &buf[..n]);
                    }
                }
                _ = sleep_until(clock, wake) => {}
            }
        }
    }

    /// Reads and handles every datagram waiting, without blocking.
    fn drain(&mut self, buf: &mut [u8]) {
        while let Ok((n, from)) = self.sock.try_recv_from(buf) {
            if from == self.to {
                self.conn
                    .handle_datagram(self.clock.time(Instant::now()), &buf[..n]);
            }
        }
    }

    /// Waits until `deadline` (or a frame is ready), handling datagrams and
    /// the session's timers meanwhile; `precise` spins the last stretch (a
    /// camera's frame clock).
    async fn wait_until(&mut self, deadline: Time, precise: bool, buf: &mut [u8]) -> Result<()> {
        loop {
            let now = self.clock.time(Instant::now());
            self.conn.handle_timeout(now);
            flush(&self.sock, &mut self.conn, self.to, self.clock).await;
            if let Some(Event::Closed { reason }) = self.conn.poll_event() {
                bail!("UDP session closed: {reason}");
            }
            if now >= deadline || self.conn.has_frame() {
                return Ok(());
            }
            let wake = self
                .conn
                .poll_timeout(now)
                .map_or(deadline, |t| t.min(deadline));
            let spin = precise && wake == deadline;
            tokio::select! {
                r = self.sock.recv_from(buf) => {
                    let (n, from) = r?;
                    if from == self.to {
                        self.conn.handle_datagram(self.clock.time(Instant::now()), &buf[..n]);
                    }
                    self.drain(buf);
                }
                _ = async {
                    if spin {
                        rtmp::precise_sleep_until(self.clock.instant(wake)).await;
                    } else {
                        sleep_until(self.clock, wake).await;
                    }
                } => {}
            }
        }
    }

    /// Publishes `source`'s media until `end`; `source_for` gets the instant
    /// the session was accepted (it can carry media) and makes the source;
    /// `steps` has timed the set-up (the hello) so far. With congestion
    /// control on, the encoder's bitrate follows its target (never above the
    /// scenario's).
    pub async fn publish(
        mut self,
        source_for: impl FnOnce(Time) -> Source,
        steps: rtmp::ConnectSteps,
        end: Time,
    ) -> Result<(PublisherStats, UdpReport)> {
        let clock = self.clock;
        let ready = clock.time(Instant::now());
        let mut source = source_for(ready);
        let start = source.camera_start();
        let mut stats = PublisherStats {
            started_at: Some(start),
            transport: "udp".into(),
            ..PublisherStats::default()
        };
        steps.record(&mut stats);
        let ceiling = source.encoder_mut().map(|e| e.target_bitrate());
        let mut abr = ceiling.map(|_| AbrReport::default());
        let mut next_sample = ready;
        let mut buf = vec![0u8; 65_536];
        for m in source.sequence_headers() {
            let f = OutFrame {
                video: m.video,
                key: false,
                timestamp: m.timestamp,
                data: &m.data,
            };
            self.conn
                .send_frame(ready, f)
                .map_err(|e| anyhow!("udp: {e}"))?;
        }
        loop {
            let due = source.poll_timeout();
            if due >= end {
                break;
            }
            self.wait_until(due, true, &mut buf).await?;
            let now = clock.time(Instant::now());
            if now >= end {
                break;
            }
            while let Some(m) = source.poll_message(now) {
                if m.video {
                    stats.video_frames_sent += 1;
                    stats.video_captures.push(m.capture);
                } else {
                    stats.audio_frames_sent += 1;
                }
                stats.count_bits(m.capture - start, m.data.len() as u64);
                let f = OutFrame {
                    video: m.video,
                    key: is_key(m.video, &m.data),
                    timestamp: m.timestamp,
                    data: &m.data,
                };
                self.conn
                    .send_frame(now, f)
                    .map_err(|e| anyhow!("udp: {e}"))?;
                stats.note_sent(m.seq, clock);
            }
            let target = self.conn.sender_mut().and_then(|s| s.poll_target());
            if let (Some(t), Some(max), Some(e)) = (target, ceiling, source.encoder_mut()) {
                let new = (t as f64).min(max);
                if (new - e.target_bitrate()).abs() > 1.0
                    && let Some(a) = &mut abr
                {
                    a.switches += 1;
                }
                e.set_target_bitrate(new);
            }
            if now >= next_sample
                && let (Some(a), Some(e), Some(s)) =
                    (&mut abr, source.encoder_mut(), self.conn.sender())
            {
                next_sample = now + rtmp::ABR_SAMPLE;
                let target = e.target_bitrate();
                // The send queue as time at the current rate.
                let queued_bits = s.queued_bytes() as f64 * 8.0;
                a.samples.push(AbrSample {
                    at_ms: now.as_secs_f64() * 1e3,
                    backlog_ms: queued_bits / target.max(1.0) * 1e3,
                    target_bps: target,
                });
            }
            flush(&self.sock, &mut self.conn, self.to, clock).await;
        }
        // Let the last packets and their repairs out, then close.
        let linger = clock.time(Instant::now()) + Duration::from_millis(100);
        self.wait_until(linger, false, &mut buf).await?;
        let report = UdpReport::of("publisher", &self.conn);
        self.conn.close(clock.time(Instant::now()));
        flush(&self.sock, &mut self.conn, self.to, clock).await;
        stats.abr = abr.filter(|_| {
            self.conn
                .sender()
                .is_some_and(|s| s.media_target().is_some())
        });
        Ok((stats, report))
    }

    /// Plays into `player` until `end`.
    pub async fn play(mut self, player: &mut Player, end: Time) -> Result<UdpReport> {
        let clock = self.clock;
        let mut foreign = ForeignFrames::new(WallClock::new(clock));
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = clock.time(Instant::now());
            while let Some(f) = self.conn.poll_frame() {
                let h = unpack(&f.data, f.video)
                    .or_else(|| foreign.header(&f.data, f.video, f.timestamp, now));
                if let Some(h) = h {
                    player.on_frame(now, h);
                }
            }
            if now >= end {
                break;
            }
            player.handle_timeout(now);
            let wake = player.poll_timeout().min(end);
            self.wait_until(wake, false, &mut buf).await?;
        }
        let report = UdpReport::of("player", &self.conn);
        self.conn.close(clock.time(Instant::now()));
        flush(&self.sock, &mut self.conn, self.to, clock).await;
        Ok(report)
    }
}
