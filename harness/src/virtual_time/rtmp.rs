//! One run of RTMP in virtual time, over QUIC (`rtmpq://`, both mappings:
//! quinn-proto's endpoints, [`super::quic::QuicHost`]) or over TCP
//! (`rtmp://`: smoltcp's TCP, [`super::tcp::TcpHost`], reported as
//! `tcp (smoltcp)`): RTMP's sans-IO ends on the transport's streams
//! ([`crate::protocol::rtmp::machine`]), the relay's hub between them, the
//! encoder and the player models.
//!
//! The run follows link mode's order: each player's transport handshake in
//! turn, then the publisher's; then every RTMP session starts at once
//! (link mode dials everyone, then publishes and plays together). The
//! publisher's camera starts when publishing is accepted; its messages
//! wait while the transport's send buffer is full, as link mode's blocked
//! writes make them wait; everyone stops at the run's end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use netem::Time;
use netem::rng::SeedTree;
use netem::time::Clock;

use super::Base;
use super::quic::QuicHost;
use super::run::{Stepped, drive};
use super::stream::{Figures, StreamHost};
use super::tcp::TcpHost;
use crate::media::player::Player;
use crate::media::source::{Message, Source, unpack};
use crate::media::wallclock::ForeignFrames;
use crate::protocol::Stats;
use crate::protocol::TransportReport;
use crate::protocol::rtmp::client::metadata_of;
use crate::protocol::rtmp::machine::{ClientMachine, Goal, ServerMachine};
use crate::protocol::rtmp::quic::{self, Identity, Mapping, QuicSettings};
use crate::protocol::rtmp::{RTMP_PORT, RtmpServerStats, quic_table};
use crate::protocol::uri::StreamUri;
use crate::publisher::{ConnectSteps, PublisherStats};
use crate::runner::{Clients, RelayReport, RunResult, run_seeds};
use crate::scenario::{Network, Protocol, Scenario};

/// Client ports: the publisher's, then a player's per group.
const CLIENT_PORT: u16 = 41_000;

/// Whether `protocol` is RTMP (over QUIC or TCP) at both ends, with one
/// transport (this run's case).
pub fn is_rtmp(protocol: &Protocol) -> bool {
    let (a, b) = (protocol.publisher_uri.scheme, protocol.player_uri.scheme);
    a == b && matches!(a, "rtmp" | "rtmpq")
}

fn mapping_of(uri: &StreamUri) -> Mapping {
    match uri.option("mapping") {
        Some("frames") => Mapping::Frames,
        _ => Mapping::Stream,
    }
}

/// A client host: its transport, its one connection, its RTMP end.
struct ClientSide<H> {
    host: H,
    mapping: Mapping,
    /// The connection's key in `host`, once dialled.
    conn: Option<usize>,
    dialled_at: Time,
    rtmp: Option<ClientMachine>,
}

impl<H: StreamHost> ClientSide<H> {
    fn new(host: H, mapping: Mapping) -> ClientSide<H> {
        ClientSide {
            host,
            mapping,
            conn: None,
            dialled_at: Time::ZERO,
            rtmp: None,
        }
    }

    /// The transport's handshake finished (scenario time).
    fn connected(&self, clock: Clock) -> Option<Time> {
        self.host.connected(self.conn?).map(|i| clock.time(i))
    }

    fn lost(&self) -> Option<String> {
        self.host.lost(self.conn?)
    }

    /// Bytes between the connection's stream and the RTMP end.
    fn exchange(&mut self) -> Result<()> {
        let (Some(k), Some(m)) = (self.conn, self.rtmp.as_mut()) else {
            return Ok(());
        };
        let input = self.host.take_input(k);
        if !input.is_empty() {
            m.handle_input(&input)?;
        }
        let n = self.host.write(k, m.pending());
        m.consume(n);
        Ok(())
    }

    fn report(&self, role: &'static str, uri: &StreamUri, clock: Clock) -> TransportReport {
        let label = self.host.label(self.mapping);
        TransportReport {
            role,
            uri: uri.redacted(),
            requested: label.into(),
            used: label.into(),
            fallback: None,
            handshake_ms: self
                .connected(clock)
                .map(|t| t.saturating_since(self.dialled_at).as_secs_f64() * 1e3),
        }
    }
}

/// The publisher's media once publishing is accepted.
struct Publishing {
    source: Source,
    stats: PublisherStats,
    /// A message handed to the transport but not all taken yet: its
    /// sequence number is noted sent when it is.
    unsent: Option<Option<u64>>,
}

/// A player group's client and its player model.
struct PlayerSide<H> {
    client: ClientSide<H>,
    player: Player,
    foreign: ForeignFrames,
}

/// The state of one virtual RTMP run over transport `H`.
struct RtmpRun<'a, H> {
    b: Base<'a>,
    relay: H,
    /// The relay's RTMP end per connection (by the connection's key).
    sessions: std::collections::BTreeMap<usize, ServerMachine>,
    publisher: ClientSide<H>,
    publishing: Option<Publishing>,
    steps: Option<ConnectSteps>,
    players: Vec<PlayerSide<H>>,
}

/// Runs `protocol` (RTMP over QUIC or TCP) over `network` once in virtual
/// time.
pub fn run_groups(
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    repeat: u32,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<RunResult>> {
    let seeds = run_seeds(scenario.seed, network, repeat);
    if protocol.publisher_uri.scheme == "rtmpq" {
        let id = Identity::fixed()?;
        let settings = QuicSettings {
            congestion: quic_table(protocol).congestion,
            ..QuicSettings::default()
        };
        let server = quic::server_config(&id, &settings)?;
        let client = |uri: &StreamUri| quic::client_config(&id, mapping_of(uri), &settings);
        let (to_publish, to_play) = (
            client(&protocol.publisher_uri)?,
            client(&protocol.player_uri)?,
        );
        let quic_seeds = seeds.child("quic");
        let mut run = RtmpRun::new(scenario, network, protocol, seeds, |host, addr, _| {
            Ok(match host {
                Host::Relay => QuicHost::new(
                    addr,
                    Some(server.clone()),
                    None,
                    seed32(quic_seeds.child("relay")),
                ),
                Host::Publisher => QuicHost::new(
                    addr,
                    None,
                    Some(to_publish.clone()),
                    seed32(quic_seeds.child("publisher")),
                ),
                Host::Player(i) => QuicHost::new(
                    addr,
                    None,
                    Some(to_play.clone()),
                    seed32(quic_seeds.child("player").repeat(i)),
                ),
            })
        })?;
        drive(&mut run, progress)?;
        return Ok(run.finish());
    }
    let tcp_seeds = seeds.child("tcp");
    let cc = protocol.tcp_congestion.clone();
    let mut run = RtmpRun::new(
        scenario,
        network,
        protocol,
        seeds,
        |host, addr, (clock, now)| {
            let seed = match host {
                Host::Relay => tcp_seeds.child("relay"),
                Host::Publisher => tcp_seeds.child("publisher"),
                Host::Player(i) => tcp_seeds.child("player").repeat(i),
            };
            TcpHost::new(addr, host == Host::Relay, &cc, clock, now, seed.seed())
        },
    )?;
    drive(&mut run, progress)?;
    Ok(run.finish())
}

/// Which host a transport is made for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Host {
    Relay,
    Publisher,
    Player(u32),
}

/// 32 bytes from a seed tree (an endpoint's random numbers).
fn seed32(seeds: SeedTree) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, c) in b.chunks_mut(8).enumerate() {
        c.copy_from_slice(&seeds.child(&format!("w{i}")).seed().to_le_bytes());
    }
    b
}

impl<'a, H: StreamHost> RtmpRun<'a, H> {
    /// The run's state; `make` builds each host's transport at its address.
    fn new(
        scenario: &'a Scenario,
        network: &'a Network,
        protocol: &'a Protocol,
        seeds: SeedTree,
        mut make: impl FnMut(Host, SocketAddr, (Clock, Instant)) -> Result<H>,
    ) -> Result<RtmpRun<'a, H>> {
        let b = Base::new(scenario, network, protocol, seeds)?;
        let at = (b.clock, b.clock.instant(Time::ZERO));
        let relay = make(Host::Relay, b.addr("server", RTMP_PORT)?, at)?;
        let publisher = ClientSide::new(
            make(Host::Publisher, b.addr("publisher", CLIENT_PORT)?, at)?,
            mapping_of(&protocol.publisher_uri),
        );
        let play_mapping = mapping_of(&protocol.player_uri);
        let wall = b.wall;
        let players = network
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let host = make(
                    Host::Player(i as u32),
                    b.addr(&g.host, CLIENT_PORT + 1 + i as u16)?,
                    at,
                )?;
                let mut player = Player::new(protocol.player.clone(), Time::ZERO);
                // The frames mapping delivers frames in the order they complete.
                player.set_ordered(play_mapping == Mapping::Stream);
                Ok(PlayerSide {
                    client: ClientSide::new(host, play_mapping),
                    player,
                    foreign: ForeignFrames::new(wall),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RtmpRun {
            b,
            relay,
            sessions: Default::default(),
            publisher,
            publishing: None,
            steps: None,
            players,
        })
    }

    fn instant(&self, t: Time) -> Instant {
        self.b.clock.instant(t)
    }

    /// QUIC handshakes in link mode's order (each player once the one
    /// before is up, then the publisher); then every RTMP session at once.
    fn connect_next(&mut self, now: Time) -> Result<()> {
        // The RTMP sessions start once every handshake is done.
        if now >= self.b.end || self.publisher.rtmp.is_some() {
            return Ok(());
        }
        let at = self.instant(now);
        let relay = self.relay.addr();
        let clock = self.b.clock;
        let mut previous_up = true;
        for (i, p) in self.players.iter_mut().enumerate() {
            let c = &mut p.client;
            if let Some(why) = c.lost() {
                bail!("player {i}: the transport failed: {why}");
            }
            if c.conn.is_none() {
                if previous_up {
                    c.conn = Some(c.host.connect(at, relay)?);
                    c.dialled_at = now;
                }
                return Ok(());
            }
            previous_up = c.connected(clock).is_some();
            if !previous_up {
                return Ok(());
            }
        }
        let c = &mut self.publisher;
        if let Some(why) = c.lost() {
            bail!("publisher: the transport failed: {why}");
        }
        if c.conn.is_none() {
            c.conn = Some(c.host.connect(at, relay)?);
            c.dialled_at = now;
            self.steps = Some(ConnectSteps::new(clock, now));
            return Ok(());
        }
        let Some(up) = c.connected(clock) else {
            return Ok(());
        };
        if let Some(steps) = &mut self.steps {
            steps.done_at(self.publisher.host.handshake_step(), up);
        }
        let key = &self.b.protocol.publisher_uri.key;
        self.publisher.rtmp = Some(ClientMachine::new(Goal::Publish(key.clone()))?);
        for p in &mut self.players {
            let key = self.b.protocol.player_uri.key.clone();
            p.client.rtmp = Some(ClientMachine::new(Goal::Play(key))?);
        }
        Ok(())
    }

    /// The relay: an RTMP end for each new connection's stream, bytes in
    /// and out, a frames-mapping publisher's frames into the hub, and each
    /// player's subscription out as fast as the transport takes it.
    fn serve(&mut self, now: Time) -> Result<()> {
        let at = self.instant(now);
        // What came in first, for every connection (a publisher's frames
        // reach the hub before any player's turn to send)...
        for (k, mapping) in self.relay.streams() {
            if self.relay.lost(k).is_some() {
                continue;
            }
            let m = self.sessions.entry(k).or_insert_with(|| {
                ServerMachine::new(self.b.hub.clone(), mapping == Mapping::Frames)
            });
            let input = self.relay.take_input(k);
            let frames = self.relay.take_frames(k);
            let r = m.handle_input(at, &input).and_then(|()| {
                frames
                    .into_iter()
                    .try_for_each(|(video, data, ts)| m.handle_frame(at, video, data, ts))
            });
            if let Err(e) = r {
                tracing::debug!("relay: RTMP session ended: {e:#}");
                self.relay.fail(k, format!("{e:#}"));
                m.close();
            }
        }
        // ...then what goes out, as fast as each connection takes it.
        for (k, m) in self.sessions.iter_mut() {
            let k = *k;
            if self.relay.lost(k).is_some() {
                continue;
            }
            loop {
                let n = self.relay.write(k, m.pending());
                m.consume(n);
                if !m.pending().is_empty() {
                    break;
                }
                while self.relay.frame_room(k) {
                    let Some(f) = m.poll_frame() else { break };
                    let Some((video, d, ts)) = f.as_av() else {
                        continue;
                    };
                    if !self.relay.send_frame(k, video, ts, d) {
                        m.requeue_frame(f);
                        break;
                    }
                    m.note_sent(&f, at);
                }
                if !self.relay.frame_room(k) || !m.pump(at)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The publisher: set-up steps, then the camera's messages as they
    /// fall due while the transport takes them.
    fn publish(&mut self, now: Time) -> Result<()> {
        let frames = self.publisher.mapping == Mapping::Frames;
        // What the relay said first: an acceptance starts the camera now.
        self.publisher.exchange().context("publisher")?;
        let label = self.publisher.host.label(self.publisher.mapping);
        let Some(m) = self.publisher.rtmp.as_mut() else {
            return Ok(());
        };
        while let Some(step) = m.poll_step() {
            if let Some(s) = &mut self.steps {
                s.done_at(step, now);
            }
        }
        if self.publishing.is_none() && m.is_ready() && now < self.b.end {
            let mut stats = PublisherStats::default();
            if let Some(s) = self.steps.take() {
                s.record(&mut stats);
            }
            let mut source = self.b.camera(now);
            stats.started_at = Some(source.camera_start());
            stats.transport = label.into();
            m.publish_metadata(&metadata_of(&mut source))?;
            for h in source.sequence_headers() {
                m.publish(&h)?;
            }
            self.publishing = Some(Publishing {
                source,
                stats,
                unsent: None,
            });
        }
        self.publisher.exchange().context("publisher")?;
        let Some(p) = &mut self.publishing else {
            return Ok(());
        };
        let Some(k) = self.publisher.conn else {
            return Ok(());
        };
        let (c, Some(m)) = (&mut self.publisher.host, self.publisher.rtmp.as_mut()) else {
            return Ok(());
        };
        let start = p.source.camera_start();
        loop {
            // What was handed over before must be all taken first.
            let room = m.pending().is_empty() && (!frames || c.frame_room(k));
            if !room {
                return Ok(());
            }
            if let Some(seq) = p.unsent.take() {
                p.stats.note_sent_at(seq, now);
            }
            if now >= self.b.end {
                return Ok(());
            }
            let Some(msg) = p.source.poll_message(now) else {
                return Ok(());
            };
            p.stats.count(&msg, start);
            send(c, k, m, &msg, frames)?;
            p.unsent = Some(msg.seq);
        }
    }

    /// The players: frames off their streams into the player models.
    fn play(&mut self, now: Time) -> Result<()> {
        let playing = now < self.b.end;
        for (i, p) in self.players.iter_mut().enumerate() {
            p.client.exchange().with_context(|| format!("player {i}"))?;
            if !playing {
                continue;
            }
            let mut frames = Vec::new();
            if let Some(m) = p.client.rtmp.as_mut() {
                while m.poll_step().is_some() {}
                frames.extend(std::iter::from_fn(|| m.poll_media()));
            }
            if let Some(k) = p.client.conn {
                frames.extend(p.client.host.take_frames(k));
            }
            for (video, data, ts) in frames {
                let h = unpack(&data, video).or_else(|| p.foreign.header(&data, video, ts, now));
                if let Some(h) = h {
                    p.player.on_frame(now, h);
                }
            }
            if p.player.poll_timeout() <= now {
                p.player.handle_timeout(now);
            }
        }
        Ok(())
    }

    fn hosts_mut(&mut self) -> impl Iterator<Item = &mut H> {
        std::iter::once(&mut self.relay)
            .chain(std::iter::once(&mut self.publisher.host))
            .chain(self.players.iter_mut().map(|p| &mut p.client.host))
    }

    /// The results, one per group, as link mode assembles them.
    fn finish(mut self) -> Vec<RunResult> {
        let at = self.instant(self.b.now);
        let mut relay_stats = RtmpServerStats::default();
        for (k, m) in self.sessions.iter_mut() {
            if m.is_player() {
                match self.relay.figures(*k) {
                    Some(Figures::Quic(q)) => relay_stats.to_players_quic.push(q),
                    Some(Figures::Tcp(t)) => relay_stats.to_players_tcp.push(t),
                    None => {}
                }
            }
            m.close();
        }
        let mut publisher = self.publishing.take().map(|p| p.stats).unwrap_or_default();
        match self
            .publisher
            .conn
            .and_then(|k| self.publisher.host.figures(k))
        {
            Some(Figures::Quic(q)) => publisher.quic = Some(q),
            Some(Figures::Tcp(t)) => publisher.tcp = t,
            None => {}
        }
        for h in self.hosts_mut() {
            h.close(at);
        }
        let relay = RelayReport {
            hub: self.b.hub.stats(),
            servers: vec![("rtmp", Arc::new(relay_stats) as Arc<dyn Stats>)],
        };
        let mut clients = Clients {
            publisher: Some(self.publisher.report(
                "publisher",
                &self.b.protocol.publisher_uri,
                self.b.clock,
            )),
            ..Clients::default()
        };
        for p in &self.players {
            clients.players.push(p.client.report(
                "player",
                &self.b.protocol.player_uri,
                self.b.clock,
            ));
            clients.player_stats.push(None);
        }
        let players = std::mem::take(&mut self.players)
            .into_iter()
            .map(|p| p.player)
            .collect();
        self.b.results(relay, publisher, clients, players)
    }
}

/// One message of the publisher onto its transport: on the RTMP stream,
/// or (frames mapping) audio and video frames on streams of their own.
fn send(
    c: &mut impl StreamHost,
    k: usize,
    m: &mut ClientMachine,
    msg: &Message,
    frames: bool,
) -> Result<()> {
    if frames {
        if !c.send_frame(k, msg.video, msg.timestamp, &msg.data) {
            bail!("publisher: the relay allows no more streams");
        }
        return Ok(());
    }
    m.publish(msg)?;
    let n = c.write(k, m.pending());
    m.consume(n);
    Ok(())
}

impl<H: StreamHost> Stepped for RtmpRun<'_, H> {
    fn now(&self) -> Time {
        self.b.now
    }

    fn set_now(&mut self, t: Time) {
        self.b.now = t;
    }

    fn end(&self) -> Time {
        self.b.end
    }

    fn stop(&self) -> Time {
        self.b.end
    }

    fn step(&mut self) -> Result<()> {
        let now = self.b.now;
        let at = self.instant(now);
        // The network: what arrived where.
        self.b.net.handle_timeout(now);
        while let Some(d) = self.b.net.poll_arrival(now) {
            if let Some(h) = self.hosts_mut().find(|h| h.addr().ip() == d.to.ip()) {
                h.handle_datagram(at, d.from, &d.bytes);
            }
        }
        for h in self.hosts_mut() {
            h.handle_timeout(at);
        }
        // A handshake that just finished lets the next client dial now.
        self.connect_next(now)?;
        self.serve(now)?;
        self.publish(now)?;
        self.play(now)?;
        // What the writes queued, through the connections' state, then out.
        let mut out = Vec::new();
        for h in self.hosts_mut() {
            h.process(at);
            let (from, ip) = (h.addr(), h.sends_ip_packets());
            while let Some((to, d)) = h.poll_transmit(at) {
                out.push((from, to, d, ip));
            }
        }
        for (from, to, d, ip) in out {
            if ip {
                self.b.net.send_ip(now, from, to, d);
            } else {
                self.b.net.send(now, from, to, d);
            }
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Time {
        let playing = self.b.now < self.b.end;
        let clock = self.b.clock;
        let mut t = self.b.end;
        if let Some(n) = self.b.net.poll_timeout() {
            t = t.min(n);
        }
        for h in self.hosts_mut() {
            if let Some(i) = h.poll_timeout() {
                t = t.min(clock.time(i));
            }
        }
        if playing {
            for p in &self.players {
                t = t.min(p.player.poll_timeout());
            }
            // The camera, while the transport has room for its next message.
            if let (Some(p), Some(m)) = (&self.publishing, &self.publisher.rtmp)
                && m.pending().is_empty()
                && p.unsent.is_none()
            {
                t = t.min(p.source.poll_timeout());
            }
        }
        t
    }

    fn due_now(&mut self) -> Vec<String> {
        let now = self.b.now;
        let clock = self.b.clock;
        let mut out = Vec::new();
        if self.b.net.poll_timeout().is_some_and(|t| t <= now) {
            out.push("the network".to_string());
        }
        let mut hosts = Vec::new();
        for h in self.hosts_mut() {
            if h.poll_timeout().is_some_and(|i| clock.time(i) <= now) {
                hosts.push(format!("the transport at {}", h.addr()));
            }
        }
        out.extend(hosts);
        if let Some(p) = &self.publishing
            && now < self.b.end
            && p.source.poll_timeout() <= now
        {
            out.push("the publisher's camera".into());
        }
        for (i, p) in self.players.iter().enumerate() {
            if now < self.b.end && p.player.poll_timeout() <= now {
                out.push(format!("player {i}'s playout"));
            }
        }
        out
    }
}
