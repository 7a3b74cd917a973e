//! One run of RTMP over QUIC (`rtmpq://`, both mappings) in virtual time:
//! quinn-proto's endpoints on every host ([`super::quic::QuicHost`]),
//! RTMP's sans-IO ends on their streams ([`crate::protocol::rtmp::machine`]),
//! the relay's hub between them, the encoder and the player models.
//!
//! The run follows link mode's order: each player's QUIC handshake in
//! turn, then the publisher's; then every RTMP session starts at once
//! (link mode dials everyone, then publishes and plays together). The
//! publisher's camera starts when publishing is accepted; its messages
//! wait while QUIC's send window is full, as link mode's blocked writes
//! make them wait; everyone stops at the run's end.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use netem::Time;
use netem::rng::SeedTree;
use netem::time::Clock;

use super::quic::QuicHost;
use super::run::{Stepped, drive};
use super::{WALL_ORIGIN_MS, net::VirtualNet};
use crate::media::player::Player;
use crate::media::source::{Message, Source, unpack};
use crate::media::wallclock::{ForeignFrames, WallClock};
use crate::protocol::Stats;
use crate::protocol::TransportReport;
use crate::protocol::rtmp::client::metadata_of;
use crate::protocol::rtmp::machine::{ClientMachine, Goal, ServerMachine};
use crate::protocol::rtmp::quic::{self, Identity, Mapping, QuicSettings};
use crate::protocol::rtmp::{RTMP_PORT, RtmpServerStats, quic_table};
use crate::protocol::uri::StreamUri;
use crate::publisher::{ConnectSteps, PublisherStats};
use crate::relay::Hub;
use crate::runner::{
    Clients, G2gSource, RelayReport, RunResult, Sides, assemble, camera, run_seeds,
};
use crate::scenario::{Network, Protocol, Scenario};
use crate::topology::NetworkStats;

/// Client ports: the publisher's, then a player's per group.
const CLIENT_PORT: u16 = 41_000;

/// Whether `protocol` is RTMP over QUIC at both ends (this run's case).
pub fn is_rtmp_quic(protocol: &Protocol) -> bool {
    protocol.publisher_uri.scheme == "rtmpq" && protocol.player_uri.scheme == "rtmpq"
}

fn mapping_of(uri: &StreamUri) -> Mapping {
    match uri.option("mapping") {
        Some("frames") => Mapping::Frames,
        _ => Mapping::Stream,
    }
}

/// A client host: its endpoint, its one connection, its RTMP end.
struct ClientSide {
    host: QuicHost,
    mapping: Mapping,
    /// The connection's key in `host`, once dialled.
    conn: Option<usize>,
    dialled_at: Time,
    rtmp: Option<ClientMachine>,
}

impl ClientSide {
    fn new(host: QuicHost, mapping: Mapping) -> ClientSide {
        ClientSide {
            host,
            mapping,
            conn: None,
            dialled_at: Time::ZERO,
            rtmp: None,
        }
    }

    fn conn(&mut self) -> Option<&mut super::quic::Conn> {
        self.host.conns.get_mut(&self.conn?)
    }

    /// The QUIC handshake finished (scenario time).
    fn connected(&self, clock: Clock) -> Option<Time> {
        let c = self.host.conns.get(&self.conn?)?;
        c.connected.map(|i| clock.time(i))
    }

    fn lost(&self) -> Option<&str> {
        self.host.conns.get(&self.conn?)?.lost.as_deref()
    }

    /// Bytes between the connection's RTMP stream and the RTMP end.
    fn exchange(&mut self) -> Result<()> {
        let Some(k) = self.conn else { return Ok(()) };
        let (Some(c), Some(m)) = (self.host.conns.get_mut(&k), self.rtmp.as_mut()) else {
            return Ok(());
        };
        if !c.stream_in.is_empty() {
            let input = std::mem::take(&mut c.stream_in);
            m.handle_input(&input)?;
        }
        let n = c.write_stream(m.pending());
        m.consume(n);
        Ok(())
    }

    fn report(&self, role: &'static str, uri: &StreamUri, clock: Clock) -> TransportReport {
        let label = match self.mapping {
            Mapping::Stream => "quic/stream",
            Mapping::Frames => "quic/frames",
        };
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
struct PlayerSide {
    client: ClientSide,
    player: Player,
    foreign: ForeignFrames,
}

/// The state of one virtual RTMP-over-QUIC run.
struct QuicRun<'a> {
    scenario: &'a Scenario,
    network: &'a Network,
    protocol: &'a Protocol,
    seeds: SeedTree,
    clock: Clock,
    wall: WallClock,
    end: Time,
    now: Time,
    net: VirtualNet,
    hub: Hub,
    relay: QuicHost,
    /// The relay's RTMP end per connection (by the connection's key).
    sessions: std::collections::BTreeMap<usize, ServerMachine>,
    client_cfg: (quinn_proto::ClientConfig, quinn_proto::ClientConfig),
    publisher: ClientSide,
    publishing: Option<Publishing>,
    steps: Option<ConnectSteps>,
    players: Vec<PlayerSide>,
    /// Every QUIC handshake is done and the RTMP sessions have started.
    sessions_started: bool,
}

/// Runs `protocol` (RTMP over QUIC) over `network` once in virtual time.
pub fn run_groups(
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    repeat: u32,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<RunResult>> {
    let seeds = run_seeds(scenario.seed, network, repeat);
    let mut run = QuicRun::new(scenario, network, protocol, seeds)?;
    drive(&mut run, progress)?;
    Ok(run.finish())
}

/// 32 bytes from a seed tree (an endpoint's random numbers).
fn seed32(seeds: SeedTree) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, c) in b.chunks_mut(8).enumerate() {
        c.copy_from_slice(&seeds.child(&format!("w{i}")).seed().to_le_bytes());
    }
    b
}

impl<'a> QuicRun<'a> {
    fn new(
        scenario: &'a Scenario,
        network: &'a Network,
        protocol: &'a Protocol,
        seeds: SeedTree,
    ) -> Result<QuicRun<'a>> {
        let clock = Clock::new(Instant::now());
        let net = VirtualNet::new(network, seeds.child("link").seed())?;
        let addr = |host: &str, port| {
            net.addr(host, port)
                .ok_or_else(|| anyhow!("virtual network: no host \"{host}\""))
        };
        let id = Identity::fixed()?;
        let settings = QuicSettings {
            congestion: quic_table(protocol).congestion,
            ..QuicSettings::default()
        };
        let quic_seeds = seeds.child("quic");
        let relay = QuicHost::new(
            addr("server", RTMP_PORT)?,
            Some(quic::server_config(&id, &settings)?),
            seed32(quic_seeds.child("relay")),
        );
        let pub_mapping = mapping_of(&protocol.publisher_uri);
        let play_mapping = mapping_of(&protocol.player_uri);
        let client_cfg = (
            quic::client_config(&id, pub_mapping, &settings)?,
            quic::client_config(&id, play_mapping, &settings)?,
        );
        let publisher = ClientSide::new(
            QuicHost::new(
                addr("publisher", CLIENT_PORT)?,
                None,
                seed32(quic_seeds.child("publisher")),
            ),
            pub_mapping,
        );
        let wall = WallClock::from_origin_ms(WALL_ORIGIN_MS);
        let players = network
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let host = QuicHost::new(
                    addr(&g.host, CLIENT_PORT + 1 + i as u16)?,
                    None,
                    seed32(quic_seeds.child("player").repeat(i as u32)),
                );
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
        Ok(QuicRun {
            scenario,
            network,
            protocol,
            seeds,
            clock,
            wall,
            end: Time::from_duration(scenario.duration),
            now: Time::ZERO,
            net,
            hub: Hub::new(protocol.stream_key.clone()),
            relay,
            sessions: Default::default(),
            client_cfg,
            publisher,
            publishing: None,
            steps: None,
            players,
            sessions_started: false,
        })
    }

    fn instant(&self, t: Time) -> Instant {
        self.clock.instant(t)
    }

    /// QUIC handshakes in link mode's order (each player once the one
    /// before is up, then the publisher); then every RTMP session at once.
    fn connect_next(&mut self, now: Time) -> Result<()> {
        if now >= self.end || self.sessions_started {
            return Ok(());
        }
        let at = self.instant(now);
        let relay = self.relay.addr;
        let clock = self.clock;
        let mut previous_up = true;
        for (i, p) in self.players.iter_mut().enumerate() {
            let c = &mut p.client;
            if let Some(why) = c.lost() {
                bail!("player {i}: the QUIC connection failed: {why}");
            }
            if c.conn.is_none() {
                if previous_up {
                    c.conn = Some(c.host.connect(at, self.client_cfg.1.clone(), relay)?);
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
            bail!("publisher: the QUIC connection failed: {why}");
        }
        if c.conn.is_none() {
            c.conn = Some(c.host.connect(at, self.client_cfg.0.clone(), relay)?);
            c.dialled_at = now;
            self.steps = Some(ConnectSteps::new(clock, now));
            return Ok(());
        }
        let Some(up) = c.connected(clock) else {
            return Ok(());
        };
        if let Some(steps) = &mut self.steps {
            steps.done_at("quic_handshake", up);
        }
        let key = &self.protocol.publisher_uri.key;
        self.publisher.rtmp = Some(ClientMachine::new(Goal::Publish(key.clone()))?);
        for p in &mut self.players {
            let key = self.protocol.player_uri.key.clone();
            p.client.rtmp = Some(ClientMachine::new(Goal::Play(key))?);
        }
        self.sessions_started = true;
        Ok(())
    }

    /// The relay: an RTMP end for each new connection's stream, bytes in
    /// and out, a frames-mapping publisher's frames into the hub, and each
    /// player's subscription out as fast as QUIC takes it.
    fn serve(&mut self, now: Time) -> Result<()> {
        let at = self.instant(now);
        // What came in first, for every connection (a publisher's frames
        // reach the hub before any player's turn to send)...
        for (k, c) in self.relay.conns.iter_mut() {
            if c.bi.is_none() || c.lost.is_some() {
                continue;
            }
            let Some(mapping) = c.mapping() else { continue };
            let m = self.sessions.entry(*k).or_insert_with(|| {
                ServerMachine::new(self.hub.clone(), mapping == Mapping::Frames)
            });
            let input = std::mem::take(&mut c.stream_in);
            let frames: Vec<_> = c.frames_in.drain(..).collect();
            let r = m.handle_input(at, &input).and_then(|()| {
                frames
                    .into_iter()
                    .try_for_each(|(video, data, ts)| m.handle_frame(at, video, data, ts))
            });
            if let Err(e) = r {
                tracing::debug!("relay: RTMP session ended: {e:#}");
                c.lost = Some(format!("{e:#}"));
                m.close();
            }
        }
        // ...then what goes out, as fast as each connection takes it.
        for (k, m) in self.sessions.iter_mut() {
            let Some(c) = self.relay.conns.get_mut(k).filter(|c| c.lost.is_none()) else {
                continue;
            };
            loop {
                let n = c.write_stream(m.pending());
                m.consume(n);
                if !m.pending().is_empty() {
                    break;
                }
                while c.frame_room() {
                    let Some(f) = m.poll_frame() else { break };
                    let Some((video, d, ts)) = f.as_av() else {
                        continue;
                    };
                    if !c.send_frame(video, ts, d) {
                        m.requeue_frame(f);
                        break;
                    }
                    m.note_sent(&f, at);
                }
                if !c.frame_room() || !m.pump(at)? {
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
        let Some(m) = self.publisher.rtmp.as_mut() else {
            return Ok(());
        };
        while let Some(step) = m.poll_step() {
            if let Some(s) = &mut self.steps {
                s.done_at(step, now);
            }
        }
        if self.publishing.is_none() && m.is_ready() && now < self.end {
            let mut stats = PublisherStats::default();
            if let Some(s) = self.steps.take() {
                s.record(&mut stats);
            }
            let mut source = camera(self.scenario, self.protocol, self.seeds, self.wall, now);
            stats.started_at = Some(source.camera_start());
            stats.transport = if frames { "quic/frames" } else { "quic/stream" }.into();
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
        let (Some(c), Some(m)) = (
            self.publisher.host.conns.get_mut(&k),
            self.publisher.rtmp.as_mut(),
        ) else {
            return Ok(());
        };
        let start = p.source.camera_start();
        loop {
            // What was handed over before must be all taken first.
            let room = m.pending().is_empty() && (!frames || c.frame_room());
            if !room {
                return Ok(());
            }
            if let Some(seq) = p.unsent.take() {
                p.stats.note_sent_at(seq, now);
            }
            if now >= self.end {
                return Ok(());
            }
            let Some(msg) = p.source.poll_message(now) else {
                return Ok(());
            };
            p.stats.count(&msg, start);
            send(c, m, &msg, frames)?;
            p.unsent = Some(msg.seq);
        }
    }

    /// The players: frames off their streams into the player models.
    fn play(&mut self, now: Time) -> Result<()> {
        let playing = now < self.end;
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
            if let Some(c) = p.client.conn() {
                frames.extend(c.frames_in.drain(..));
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

    fn hosts_mut(&mut self) -> impl Iterator<Item = &mut QuicHost> {
        std::iter::once(&mut self.relay)
            .chain(std::iter::once(&mut self.publisher.host))
            .chain(self.players.iter_mut().map(|p| &mut p.client.host))
    }

    /// The results, one per group, as link mode assembles them.
    fn finish(mut self) -> Vec<RunResult> {
        let at = self.instant(self.now);
        let mut relay_stats = RtmpServerStats::default();
        for (k, m) in self.sessions.iter_mut() {
            if m.is_player()
                && let Some(c) = self.relay.conns.get(k)
            {
                relay_stats.to_players_quic.push(c.stats());
            }
            m.close();
        }
        let mut publisher = self.publishing.take().map(|p| p.stats).unwrap_or_default();
        if let Some(c) = self.publisher.conn() {
            publisher.quic = Some(c.stats());
        }
        for h in self.hosts_mut() {
            h.close(at);
        }
        let net = NetworkStats {
            link: Some(self.net.stats()),
            proxies: None,
        };
        let relay = RelayReport {
            hub: self.hub.stats(),
            servers: vec![("rtmp", Arc::new(relay_stats) as Arc<dyn Stats>)],
        };
        let mut clients = Clients {
            publisher: Some(self.publisher.report(
                "publisher",
                &self.protocol.publisher_uri,
                self.clock,
            )),
            ..Clients::default()
        };
        for p in &self.players {
            clients.players.push(
                p.client
                    .report("player", &self.protocol.player_uri, self.clock),
            );
            clients.player_stats.push(None);
        }
        let g2g_source = if self.scenario.replay.is_some() {
            G2gSource::RtmpTimestamp
        } else {
            G2gSource::GlassHeader
        };
        let mut out = Vec::new();
        for (i, side) in std::mem::take(&mut self.players).into_iter().enumerate() {
            let group_net = net.for_group(self.network, i);
            let sections = clients.sections_of_group(i, &publisher, &relay, &group_net);
            out.push(assemble(
                Sides {
                    player: side.player,
                    publisher: publisher.clone(),
                    sections,
                    transports: clients.transports_of_group(i),
                    relay: relay.clone(),
                    net: group_net,
                    ffmpeg: Vec::new(),
                    cross: Vec::new(),
                    hostile: None,
                    relay_killed: None,
                },
                self.scenario,
                &self.network.for_group(i),
                self.protocol,
                (self.clock, self.end),
                "virtual".into(),
                g2g_source,
            ));
        }
        out
    }
}

/// One message of the publisher onto its transport: on the RTMP stream,
/// or (frames mapping) audio and video frames on streams of their own.
fn send(
    c: &mut super::quic::Conn,
    m: &mut ClientMachine,
    msg: &Message,
    frames: bool,
) -> Result<()> {
    if frames {
        if !c.send_frame(msg.video, msg.timestamp, &msg.data) {
            bail!("publisher: the relay allows no more streams");
        }
        return Ok(());
    }
    m.publish(msg)?;
    let n = c.write_stream(m.pending());
    m.consume(n);
    Ok(())
}

impl Stepped for QuicRun<'_> {
    fn now(&self) -> Time {
        self.now
    }

    fn set_now(&mut self, t: Time) {
        self.now = t;
    }

    fn end(&self) -> Time {
        self.end
    }

    fn stop(&self) -> Time {
        self.end
    }

    fn step(&mut self) -> Result<()> {
        let now = self.now;
        let at = self.instant(now);
        self.connect_next(now)?;
        // The network: what arrived where.
        self.net.handle_timeout(now);
        while let Some(d) = self.net.poll_arrival(now) {
            if let Some(h) = self.hosts_mut().find(|h| h.addr == d.to) {
                h.handle_datagram(at, d.from, &d.bytes);
            }
        }
        for h in self.hosts_mut() {
            h.handle_timeout(at);
        }
        self.connect_next(now)?;
        self.serve(now)?;
        self.publish(now)?;
        self.play(now)?;
        // What the writes queued, through the connections' state, then out.
        let mut out = Vec::new();
        for h in self.hosts_mut() {
            h.process(at);
            while let Some((to, d)) = h.poll_transmit(at) {
                out.push((h.addr, to, d));
            }
        }
        for (from, to, d) in out {
            self.net.send(now, from, to, d);
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Time {
        let playing = self.now < self.end;
        let clock = self.clock;
        let mut t = self.end;
        if let Some(n) = self.net.poll_timeout() {
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
        let now = self.now;
        let clock = self.clock;
        let mut out = Vec::new();
        if self.net.poll_timeout().is_some_and(|t| t <= now) {
            out.push("the network".to_string());
        }
        let mut hosts = Vec::new();
        for h in self.hosts_mut() {
            if h.poll_timeout().is_some_and(|i| clock.time(i) <= now) {
                hosts.push(format!("the QUIC endpoint at {}", h.addr));
            }
        }
        out.extend(hosts);
        if let Some(p) = &self.publishing
            && now < self.end
            && p.source.poll_timeout() <= now
        {
            out.push("the publisher's camera".into());
        }
        for (i, p) in self.players.iter().enumerate() {
            if now < self.end && p.player.poll_timeout() <= now {
                out.push(format!("player {i}'s playout"));
            }
        }
        out
    }
}
