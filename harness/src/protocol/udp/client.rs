//! The UDP protocol's publisher and player clients.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use netem::Time;
use netem::time::Clock;
use tokio::net::UdpSocket;
use udpmedia::wire::Role;
use udpmedia::{Connection, Event};

use super::publish::Publishing;
use super::{UdpReport, flush, sleep_until};
use crate::media::player::Player;
use crate::media::source::{Source, unpack};
use crate::media::wallclock::{ForeignFrames, WallClock};
use crate::protocol::{
    ClientStats, DialCx, Dialed, Endpoint, LocalFuture, PublishCx, Session, Stats, TransportReport,
};
use crate::publisher::{ConnectSteps, PublisherStats, precise_sleep_until};

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
        let mut stats = PublisherStats::default();
        steps.record(&mut stats);
        let mut publishing = Publishing::start(source_for(ready), stats, &mut self.conn, ready)
            .map_err(|e| anyhow!("udp: {e}"))?;
        let mut buf = vec![0u8; 65_536];
        loop {
            let due = publishing.poll_timeout();
            if due >= end {
                break;
            }
            self.wait_until(due, true, &mut buf).await?;
            let now = clock.time(Instant::now());
            if now >= end {
                break;
            }
            publishing
                .handle_timeout(now, &mut self.conn)
                .map_err(|e| anyhow!("udp: {e}"))?;
            flush(&self.sock, &mut self.conn, self.to, clock).await;
        }
        // Let the last packets and their repairs out, then close.
        let linger = clock.time(Instant::now()) + Duration::from_millis(100);
        self.wait_until(linger, false, &mut buf).await?;
        let report = UdpReport::of("publisher", &self.conn);
        let stats = publishing.finish(&self.conn);
        self.conn.close(clock.time(Instant::now()));
        flush(&self.sock, &mut self.conn, self.to, clock).await;
        Ok((stats, report))
    }

    /// Plays into `player` until `end`.
    pub async fn play(mut self, player: &mut Player, end: Time) -> Result<UdpReport> {
        let clock = self.clock;
        let mut foreign = ForeignFrames::new(WallClock::new(clock));
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = clock.time(Instant::now());
            play_frames(&mut self.conn, player, &mut foreign, now);
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

/// The session's complete frames into `player` at `now` (a frame without
/// Glass's header, from ffmpeg or a replayed file, timed by `foreign`).
pub fn play_frames(
    conn: &mut Connection,
    player: &mut Player,
    foreign: &mut ForeignFrames,
    now: Time,
) {
    while let Some(f) = conn.poll_frame() {
        let h =
            unpack(&f.data, f.video).or_else(|| foreign.header(&f.data, f.video, f.timestamp, now));
        if let Some(h) = h {
            player.on_frame(now, h);
        }
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
