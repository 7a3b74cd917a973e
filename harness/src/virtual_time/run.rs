//! One run of Glass's UDP protocol in virtual time: the publisher's
//! session and encoder, the relay, a player per group, and the network
//! between them, stepped from one event to the next.
//!
//! The loop is next-event time advance over a fixed set of state machines:
//! at each step `now` becomes the earliest instant any of them asked to be
//! woken at (`poll_timeout`), everything due then is handled in one fixed
//! order (network arrivals, timers, the camera, the relay, the players,
//! then every datagram sent goes into the network), and again. A heap of
//! events would order the same wake-ups; with a handful of components a
//! scan is as fast and keeps each component the owner of its own timer.
//!
//! The run follows link mode's order: each player says hello in turn, then
//! the publisher; its camera starts when its session is up; players play
//! until the run's end and the publisher lingers 100 ms after it for its
//! last repairs, as the real clients do.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use netem::Time;
use netem::rng::SeedTree;
use udpmedia::wire::Role;
use udpmedia::{Connection, Event};

use super::Base;
use crate::media::player::Player;
use crate::media::wallclock::ForeignFrames;
use crate::protocol::Stats;
use crate::protocol::TransportReport;
use crate::protocol::udp::client::play_frames;
use crate::protocol::udp::publish::Publishing;
use crate::protocol::udp::relay::UdpRelay;
use crate::protocol::udp::{UDP_MEDIA_PORT, UdpReport, UdpServerStats, client_config, udp_table};
use crate::publisher::{ConnectSteps, PublisherStats};
use crate::relay::Subscription;
use crate::runner::{Clients, RelayReport, RunResult, run_seeds};
use crate::scenario::{Network, Protocol, Scenario};

/// The publisher lingers this long after the end for its last repairs.
const LINGER: Duration = Duration::from_millis(100);

/// Steps at one instant before the loop is declared stuck (a component
/// that asks to be woken at `now` forever).
const MAX_STEPS_AT_ONE_INSTANT: u32 = 100_000;

/// Client ports: the publisher's, then a player's per group.
const CLIENT_PORT: u16 = 40_000;

/// A client's session: saying hello, then up.
struct Client {
    addr: SocketAddr,
    conn: Connection,
    /// When it said hello, and when the relay accepted it.
    hello_at: Time,
    connected_at: Option<Time>,
}

impl Client {
    fn new(
        addr: SocketAddr,
        cfg: udpmedia::Config,
        role: Role,
        stream: &str,
        seeds: SeedTree,
        now: Time,
    ) -> Result<Client> {
        let conn = Connection::connect(cfg, role, stream, bytes16(seeds), now)
            .map_err(|e| anyhow!("udp: {e}"))?;
        Ok(Client {
            addr,
            conn,
            hello_at: now,
            connected_at: None,
        })
    }

    /// Session events: connected, or why not.
    fn events(&mut self, now: Time, who: &str) -> Result<()> {
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::Connected { .. } => {
                    self.connected_at.get_or_insert(now);
                }
                Event::Rejected { reason } => bail!("{who}: the relay refused: {reason}"),
                Event::Closed { reason } => {
                    if self.connected_at.is_none() {
                        bail!("{who}: session closed before it was up: {reason}");
                    }
                }
            }
        }
        Ok(())
    }

    fn report(&self, role: &'static str, uri: String) -> TransportReport {
        TransportReport {
            role,
            uri,
            requested: "udp".into(),
            used: "udp".into(),
            fallback: None,
            handshake_ms: self
                .connected_at
                .map(|t| t.saturating_since(self.hello_at).as_secs_f64() * 1e3),
        }
    }
}

/// A player group's client: its session and the player model.
struct PlayerSide {
    client: Option<Client>,
    player: Player,
    /// Times frames without Glass's header (a replayed file) by their
    /// wall-clock timestamps.
    foreign: ForeignFrames,
    /// The relay's hub subscription for this player, fed to its egress.
    sub: Option<Subscription>,
    /// Its session's statistics, taken at the end of the run.
    report: Option<UdpReport>,
}

/// 16 bytes from a seed tree (nonces: virtual time has no OS entropy).
fn bytes16(seeds: SeedTree) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&seeds.child("lo").seed().to_le_bytes());
    b[8..].copy_from_slice(&seeds.child("hi").seed().to_le_bytes());
    b
}

/// Runs `protocol` (Glass's UDP protocol) over `network` once in virtual
/// time: a result per player group.
pub fn run_groups(
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    repeat: u32,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<RunResult>> {
    let seeds = run_seeds(scenario.seed, network, repeat);
    let mut run = UdpRun::new(scenario, network, protocol, seeds)?;
    run.run(progress)?;
    Ok(run.finish())
}

/// A virtual run as the loop sees it: components stepped at `now`, each
/// saying when it wants to be woken next.
pub(super) trait Stepped {
    fn now(&self) -> Time;
    fn set_now(&mut self, t: Time);
    /// The run's end (progress is measured against it).
    fn end(&self) -> Time;
    /// When the loop stops (the end, or a linger after it).
    fn stop(&self) -> Time;
    /// Everything due at `now()`, in a fixed order.
    fn step(&mut self) -> Result<()>;
    /// The earliest wake-up any component asked for (at most `stop()`).
    fn poll_timeout(&mut self) -> Time;
    /// The components whose wake-up is `now()` (for the stuck message).
    fn due_now(&mut self) -> Vec<String>;
}

/// Next-event time advance: steps `run` from one wake-up to the next
/// until it stops; a component that asks to be woken at the same instant
/// [`MAX_STEPS_AT_ONE_INSTANT`] times is reported by name.
pub(super) fn drive(run: &mut impl Stepped, progress: &(dyn Fn(f64) + Sync)) -> Result<()> {
    let stop = run.stop();
    let end = run.end();
    let mut last = Time::ZERO;
    let mut steps_here = 0u32;
    let mut reported = 0.0;
    loop {
        run.step()?;
        let now = run.now();
        let next = run.poll_timeout().min(stop);
        if next <= now {
            steps_here += 1;
            if steps_here >= MAX_STEPS_AT_ONE_INSTANT {
                bail!(
                    "virtual time is stuck at {:.6} s: {} keep asking to be woken then",
                    now.as_secs_f64(),
                    run.due_now().join(", ")
                );
            }
        } else {
            steps_here = 0;
        }
        if now >= stop {
            return Ok(());
        }
        let now = next.max(now);
        run.set_now(now);
        if now.saturating_since(last) >= Duration::from_millis(500) {
            last = now;
            let f = (now.as_secs_f64() / end.as_secs_f64()).min(1.0);
            if f - reported >= 0.01 {
                reported = f;
                progress(f);
            }
        }
    }
}

/// The state of one virtual run.
struct UdpRun<'a> {
    b: Base<'a>,
    relay: UdpRelay,
    relay_addr: SocketAddr,
    relay_stats: Arc<Mutex<UdpServerStats>>,
    cfg: udpmedia::Config,
    stream: String,
    publisher: Option<Client>,
    publisher_addr: SocketAddr,
    publishing: Option<Publishing>,
    published: Option<(PublisherStats, UdpReport)>,
    players: Vec<PlayerSide>,
    player_addrs: Vec<SocketAddr>,
    /// A component that asks to be woken at once, forever, from this
    /// instant on (the stuck detector's test).
    #[cfg(test)]
    stuck_from: Option<Time>,
}

impl<'a> UdpRun<'a> {
    fn new(
        scenario: &'a Scenario,
        network: &'a Network,
        protocol: &'a Protocol,
        seeds: SeedTree,
    ) -> Result<UdpRun<'a>> {
        let b = Base::new(scenario, network, protocol, seeds)?;
        let media_bps = scenario.encoder.bitrate.bits_per_sec();
        let cfg = client_config(&udp_table(protocol), media_bps);
        let relay_stats: Arc<Mutex<UdpServerStats>> = Arc::default();
        let mut gate_seed = [0u8; 32];
        let relay_seeds = seeds.child("udp-relay");
        gate_seed[..16].copy_from_slice(&bytes16(relay_seeds.child("a")));
        gate_seed[16..].copy_from_slice(&bytes16(relay_seeds.child("b")));
        // The relay orders frames for the RTMP players it may feed, as its
        // real server does.
        let relay_cfg = udpmedia::Config {
            ordered: true,
            ..cfg.clone()
        };
        let relay = UdpRelay::new(
            relay_cfg,
            b.hub.clone(),
            b.clock,
            gate_seed,
            relay_stats.clone(),
        );
        let relay_addr = b.addr("server", UDP_MEDIA_PORT)?;
        let publisher_addr = b.addr("publisher", CLIENT_PORT)?;
        let player_addrs = network
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| b.addr(&g.host, CLIENT_PORT + 1 + i as u16))
            .collect::<Result<Vec<_>>>()?;
        let wall = b.wall;
        let players = network
            .groups
            .iter()
            .map(|_| {
                let mut player = Player::new(protocol.player.clone(), Time::ZERO);
                // Frames are released as they complete (recovered ones later).
                player.set_ordered(false);
                PlayerSide {
                    client: None,
                    player,
                    foreign: ForeignFrames::new(wall),
                    sub: None,
                    report: None,
                }
            })
            .collect();
        let uri = &protocol.publisher_uri;
        Ok(UdpRun {
            b,
            relay,
            relay_addr,
            relay_stats,
            cfg,
            stream: format!("{}/{}", uri.app, uri.key),
            publisher: None,
            publisher_addr,
            publishing: None,
            published: None,
            players,
            player_addrs,
            #[cfg(test)]
            stuck_from: None,
        })
    }

    /// Steps the run to the end (and the publisher's linger).
    fn run(&mut self, progress: &(dyn Fn(f64) + Sync)) -> Result<()> {
        drive(self, progress)
    }

    /// Hellos in link mode's order: each player once the one before is up,
    /// then the publisher.
    fn connect_next(&mut self, now: Time) -> Result<()> {
        if now >= self.b.end {
            return Ok(());
        }
        let up = |c: &Option<Client>| c.as_ref().is_some_and(|c| c.connected_at.is_some());
        if let Some(i) = self.players.iter().position(|p| p.client.is_none()) {
            if i == 0 || up(&self.players[i - 1].client) {
                self.players[i].client = Some(Client::new(
                    self.player_addrs[i],
                    self.cfg.clone(),
                    Role::Play,
                    &self.stream,
                    self.b.seeds.child("nonce").child("player").repeat(i as u32),
                    now,
                )?);
            }
            return Ok(());
        }
        if self.publisher.is_none() && self.players.iter().all(|p| up(&p.client)) {
            self.publisher = Some(Client::new(
                self.publisher_addr,
                self.cfg.clone(),
                Role::Publish,
                &self.stream,
                self.b.seeds.child("nonce").child("publisher"),
                now,
            )?);
        }
        Ok(())
    }

    /// The publisher's media: the camera starts when its session is up;
    /// at the end (plus the linger) it reports and closes.
    fn publish(&mut self, now: Time) -> Result<()> {
        let Some(c) = &mut self.publisher else {
            return Ok(());
        };
        if self.publishing.is_none()
            && self.published.is_none()
            && let Some(ready) = c.connected_at
        {
            let mut steps = ConnectSteps::new(self.b.clock, c.hello_at);
            steps.done_at("udp_hello", ready);
            let mut stats = PublisherStats::default();
            steps.record(&mut stats);
            let source = self.b.camera(ready);
            self.publishing = Some(
                Publishing::start(source, stats, &mut c.conn, ready)
                    .map_err(|e| anyhow!("publisher: udp: {e}"))?,
            );
        }
        let Some(p) = &mut self.publishing else {
            return Ok(());
        };
        if now < self.b.end {
            if p.poll_timeout() <= now {
                p.handle_timeout(now, &mut c.conn)
                    .map_err(|e| anyhow!("publisher: udp: {e}"))?;
            }
        } else if now >= self.b.end + LINGER
            && let Some(p) = self.publishing.take()
        {
            let report = UdpReport::of("publisher", &c.conn);
            self.published = Some((p.finish(&c.conn), report));
            c.conn.close(now);
        }
        Ok(())
    }

    /// The results, one per group, as link mode assembles them.
    fn finish(mut self) -> Vec<RunResult> {
        self.relay.close(self.b.now);
        let stats = self
            .relay_stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let relay = RelayReport {
            hub: self.b.hub.stats(),
            servers: vec![("udp", Arc::new(stats) as Arc<dyn Stats>)],
        };
        let (publisher, pub_report) = self.published.take().unwrap_or_default();
        let uri = |u: &crate::protocol::uri::StreamUri| u.redacted();
        let mut clients = Clients {
            publisher: self
                .publisher
                .as_ref()
                .map(|c| c.report("publisher", uri(&self.b.protocol.publisher_uri))),
            publisher_stats: Some(Box::new(pub_report)),
            ..Clients::default()
        };
        for p in &self.players {
            let c = p.client.as_ref();
            clients
                .players
                .extend(c.map(|c| c.report("player", uri(&self.b.protocol.player_uri))));
            clients.player_stats.push(Some(
                Box::new(p.report.clone().unwrap_or_default()) as Box<dyn Stats>
            ));
        }
        let players = std::mem::take(&mut self.players)
            .into_iter()
            .map(|p| p.player)
            .collect();
        self.b.results(relay, publisher, clients, players)
    }
}

impl Stepped for UdpRun<'_> {
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
        self.b.end + LINGER
    }

    /// Everything due at `self.b.now`, in a fixed order.
    fn step(&mut self) -> Result<()> {
        let now = self.b.now;
        let playing = now < self.b.end;
        self.connect_next(now)?;
        // The network: what arrived where.
        self.b.net.handle_timeout(now);
        while let Some(d) = self.b.net.poll_arrival(now) {
            if d.to == self.relay_addr {
                if let Some(sub) = self.relay.handle_datagram(now, d.from, &d.bytes)
                    && let Some(i) = self.player_addrs.iter().position(|a| *a == d.from)
                {
                    self.players[i].sub = Some(sub);
                }
            } else if d.to == self.publisher_addr {
                if let Some(c) = &mut self.publisher {
                    c.conn.handle_datagram(now, &d.bytes);
                }
            } else if let Some(i) = self.player_addrs.iter().position(|a| *a == d.to)
                && let Some(c) = &mut self.players[i].client
            {
                c.conn.handle_datagram(now, &d.bytes);
            }
        }
        // Timers.
        self.relay.handle_timeout(now);
        if let Some(c) = &mut self.publisher {
            c.conn.handle_timeout(now);
            c.events(now, "publisher")?;
        }
        for (i, p) in self.players.iter_mut().enumerate() {
            if let Some(c) = &mut p.client {
                c.conn.handle_timeout(now);
                c.events(now, &format!("player {i}"))?;
            }
        }
        // The camera: starts when the session is up, stops at the end.
        self.publish(now)?;
        // The relay: publishers' frames into the hub, the hub out to players.
        self.relay.pump(now);
        for (p, addr) in self.players.iter_mut().zip(&self.player_addrs) {
            if let Some(sub) = &mut p.sub {
                while let Ok(m) = sub.rx.try_recv() {
                    self.relay.send_media(now, *addr, &m);
                }
            }
        }
        // The players, until the end.
        for (i, p) in self.players.iter_mut().enumerate() {
            let Some(c) = &mut p.client else { continue };
            if playing {
                play_frames(&mut c.conn, &mut p.player, &mut p.foreign, now);
                if p.player.poll_timeout() <= now {
                    p.player.handle_timeout(now);
                }
            } else if p.report.is_none() {
                play_frames(&mut c.conn, &mut p.player, &mut p.foreign, now);
                p.report = Some(UdpReport::of("player", &c.conn));
                c.conn.close(now);
                tracing::trace!("player {i} closed at the end");
            }
        }
        // Everything sent, into the network.
        while let Some((to, d)) = self.relay.poll_transmit(now) {
            self.b.net.send(now, self.relay_addr, to, d);
        }
        if let Some(c) = &mut self.publisher {
            while let Some(d) = c.conn.poll_transmit(now) {
                self.b.net.send(now, c.addr, self.relay_addr, d);
            }
        }
        for p in &mut self.players {
            if let Some(c) = &mut p.client {
                while let Some(d) = c.conn.poll_transmit(now) {
                    self.b.net.send(now, c.addr, self.relay_addr, d);
                }
            }
        }
        Ok(())
    }

    /// The earliest instant anything asked to be woken at (the end, or
    /// the end of the linger, at the latest). Called at every step: no
    /// allocation.
    fn poll_timeout(&mut self) -> Time {
        let now = self.b.now;
        let playing = now < self.b.end;
        let mut t = if playing {
            self.b.end
        } else {
            self.b.end + LINGER
        };
        let mut wake = |x: Option<Time>| {
            if let Some(x) = x {
                t = t.min(x);
            }
        };
        wake(self.b.net.poll_timeout());
        wake(self.relay.poll_timeout(now));
        if let Some(c) = &self.publisher {
            wake(c.conn.poll_timeout(now));
        }
        if let Some(p) = self.publishing.as_ref().filter(|_| playing) {
            wake(Some(p.poll_timeout()));
        }
        for p in &self.players {
            if let Some(c) = &p.client {
                wake(c.conn.poll_timeout(now));
                wake(playing.then(|| p.player.poll_timeout()));
            }
        }
        #[cfg(test)]
        wake(self.stuck_from.map(|s| s.max(now)));
        t
    }

    /// The components whose wake-up is `now` (for the stuck message).
    fn due_now(&mut self) -> Vec<String> {
        let now = self.b.now;
        let mut out = Vec::new();
        #[cfg(test)]
        if self.stuck_from.is_some_and(|s| now >= s) {
            out.push("the test's stuck component".to_string());
        }
        if self.b.net.poll_timeout().is_some_and(|t| t <= now) {
            out.push("the network".to_string());
        }
        if self.relay.poll_timeout(now).is_some_and(|t| t <= now) {
            out.push("the relay's UDP sessions".into());
        }
        if let Some(c) = &self.publisher
            && c.conn.poll_timeout(now).is_some_and(|t| t <= now)
        {
            out.push("the publisher's session".into());
        }
        if now < self.b.end
            && self
                .publishing
                .as_ref()
                .is_some_and(|p| p.poll_timeout() <= now)
        {
            out.push("the publisher's camera".into());
        }
        for (i, p) in self.players.iter().enumerate() {
            if let Some(c) = &p.client
                && c.conn.poll_timeout(now).is_some_and(|t| t <= now)
            {
                out.push(format!("player {i}'s session"));
            }
            if now < self.b.end && p.player.poll_timeout() <= now {
                out.push(format!("player {i}'s playout"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::from_toml(
            "t",
            r#"
name = "t"
duration = "3s"
[[networks]]
name = "n"
first_mile = { profile = "delay 20ms loss 3%" }
[[protocols]]
kind = "udp"
udp = { nack = true, fec = { kind = "rs", k = 10, m = 3 } }
"#,
            None,
        )
        .unwrap()
    }

    /// A component that asks to be woken at the same instant forever is
    /// reported by name, with the instant, instead of hanging the run.
    #[test]
    fn a_loop_that_makes_no_progress_names_what_is_stuck() {
        let s = scenario();
        let seeds = run_seeds(s.seed, &s.networks[0], 0);
        let mut run = UdpRun::new(&s, &s.networks[0], &s.protocols[0], seeds).unwrap();
        run.stuck_from = Some(Time::from_secs_f64(1.5));
        let e = run.run(&|_| {}).unwrap_err().to_string();
        assert!(
            e.contains("stuck at 1.500000 s") && e.contains("the test's stuck component"),
            "{e}"
        );
        // Without it the run ends, and every player group has a result.
        let r = run_groups(&s, &s.networks[0], &s.protocols[0], 0, &|_| {}).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].player.frames_displayed > 60, "{:?}", r[0].player);
    }
}
