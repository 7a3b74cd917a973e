//! The UDP protocol's publisher and player clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use netem::Time;
use netem::time::Clock;
use tokio::net::UdpSocket;
use udpmedia::wire::Role;
use udpmedia::{Connection, Event, OutFrame};

use super::{UdpReport, flush, sleep_until};
use crate::media::abr::AbrSample;
use crate::media::player::Player;
use crate::media::source::{Source, unpack};
use crate::media::tag;
use crate::media::wallclock::{ForeignFrames, WallClock};
use crate::protocol::{
    ClientStats, DialCx, Dialed, Endpoint, LocalFuture, PublishCx, Session, Stats, TransportReport,
};
use crate::publisher::{ABR_SAMPLE, AbrReport, ConnectSteps, PublisherStats, precise_sleep_until};

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
        let mut nonce = [0u8; udpmedia::auth::NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow!("udp: no randomness from the OS: {e}"))?;
        let mut conn = Connection::connect(cfg, role, stream, nonce, clock.time(t0))
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
                        precise_sleep_until(self.clock.instant(wake)).await;
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
        steps: ConnectSteps,
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
                    key: tag::is_key_tag(m.video, &m.data),
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
                next_sample = now + ABR_SAMPLE;
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

/// The UDP protocol's client in the registry: its session and its report.
struct UdpSession(UdpClient);

impl Session for UdpSession {
    fn ordered(&self) -> bool {
        // Frames are released as they complete (recovered ones later).
        false
    }

    fn play<'a>(
        self: Box<Self>,
        player: &'a mut Player,
        end: Time,
    ) -> LocalFuture<'a, Result<ClientStats>> {
        Box::pin(async move {
            let r = self.0.play(player, end).await?;
            Ok(Some(Box::new(r) as Box<dyn Stats>))
        })
    }

    fn publish<'a>(
        self: Box<Self>,
        cx: PublishCx<'a>,
    ) -> LocalFuture<'a, Result<(PublisherStats, ClientStats)>> {
        Box::pin(async move {
            let (s, r) = self.0.publish(cx.source_for, cx.steps, cx.end).await?;
            Ok((s, Some(Box::new(r) as Box<dyn Stats>)))
        })
    }
}

/// Says hello to the relay's UDP endpoint `to` from the client's host.
pub(super) async fn dial(cx: DialCx<'_>, to: Endpoint) -> Result<Dialed> {
    let host = cx.place;
    let role = match cx.role {
        crate::protocol::Role::Publisher => Role::Publish,
        crate::protocol::Role::Player => Role::Play,
    };
    let stream = format!("{}/{}", cx.uri.app, cx.uri.key);
    let c = UdpClient::connect(
        cx.topo.udp_socket(host)?,
        cx.topo.addr_from(host, to)?,
        super::client_config(&super::udp_table(cx.settings), cx.media_bps),
        role,
        &stream,
        cx.clock,
    )
    .await
    .with_context(|| format!("{}: {}", cx.role.as_str(), cx.uri))?;
    let report = TransportReport {
        role: cx.role.as_str(),
        uri: cx.uri.redacted(),
        requested: "udp".into(),
        used: "udp".into(),
        fallback: None,
        handshake_ms: Some(c.handshake_ms),
    };
    Ok(Dialed {
        session: Box::new(UdpSession(c)),
        report,
        step: "udp_hello",
    })
}
