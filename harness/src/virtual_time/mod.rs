//! Virtual time: a whole run in one thread with no sockets and no sleeping.
//! Every link is an engine pipeline ([`net::VirtualNet`], seeded as link
//! mode seeds its own), every endpoint a sans-IO state machine (the UDP
//! protocol's sessions, its relay, the encoder, the player), and the clock
//! jumps from one event to the next ([`run::UdpRun`]). Nothing reads the
//! wall clock and every random choice comes from the run's seed tree, so a
//! seed gives the same `frames.csv` byte for byte, and a 60 s run takes a
//! fraction of a second.
//!
//! What runs in virtual time so far: Glass's UDP protocol (`gudp://`
//! publisher and players, the relay between them; [`run::UdpRun`]), RTMP
//! over QUIC (`rtmpq://`, both mappings: quinn-proto's endpoints) and RTMP
//! over TCP (`rtmp://`: smoltcp's TCP, not the kernel's, and labelled
//! `tcp (smoltcp)` in the results), RTMP's sans-IO ends on their streams
//! ([`rtmp`]), with the synthetic encoder or a replayed FLV file.
//! Everything else is refused at validation with the reason
//! ([`refusals`]): RTSP, ffmpeg and Chromium (real processes), a gateway
//! between two protocols, RTMP's ABR, TCP congestion controls smoltcp does
//! not have, cross traffic, hostile clients and faults (real sockets and
//! tasks).

pub mod net;
pub mod quic;
pub mod rtmp;
pub mod run;
pub mod stream;
pub mod tcp;

use crate::scenario::{PublisherKind, Scenario};

use anyhow::{Result, bail};

use crate::runner::RunResult;
use crate::scenario::{Network, Protocol};

/// Runs `protocol` over `network` once in virtual time: a result per
/// player group, as [`crate::runner::run_groups`] gives in link mode.
pub fn run_groups(
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    repeat: u32,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<RunResult>> {
    let refused = refusals(scenario);
    if !refused.is_empty() {
        bail!(
            "this scenario cannot run in virtual time:\n  {}",
            refused.join("\n  ")
        );
    }
    if rtmp::is_rtmp(protocol) {
        rtmp::run_groups(scenario, network, protocol, repeat, progress)
    } else {
        run::run_groups(scenario, network, protocol, repeat, progress)
    }
}

/// Scenario time zero on the wall clock, fixed so that timestamps carrying
/// the wall clock (a replayed file's) are the same in every run:
/// 2023-11-14T22:13:20Z, in ms since 1970.
pub const WALL_ORIGIN_MS: f64 = 1.7e12;

/// The protocols that run in virtual time.
const VIRTUAL_SCHEMES: [&str; 3] = ["gudp", "rtmpq", "rtmp"];

/// What every virtual run holds whatever its protocol: the scenario's
/// parts, the clocks, the network and the relay's hub; and what every run
/// does with them at its start (addresses, the camera) and its end (the
/// results).
pub(crate) struct Base<'a> {
    pub scenario: &'a Scenario,
    pub network: &'a Network,
    pub protocol: &'a Protocol,
    pub seeds: netem::rng::SeedTree,
    /// Only an anchor for the instants the hub and hops are kept in:
    /// scenario time maps to it and back exactly.
    pub clock: netem::time::Clock,
    pub wall: crate::media::wallclock::WallClock,
    pub end: netem::Time,
    pub now: netem::Time,
    pub net: net::VirtualNet,
    pub hub: crate::relay::Hub,
}

impl<'a> Base<'a> {
    pub fn new(
        scenario: &'a Scenario,
        network: &'a Network,
        protocol: &'a Protocol,
        seeds: netem::rng::SeedTree,
    ) -> Result<Base<'a>> {
        Ok(Base {
            scenario,
            network,
            protocol,
            seeds,
            clock: netem::time::Clock::new(std::time::Instant::now()),
            wall: crate::media::wallclock::WallClock::from_origin_ms(WALL_ORIGIN_MS),
            end: netem::Time::from_duration(scenario.duration),
            now: netem::Time::ZERO,
            net: net::VirtualNet::new(network, seeds.child("link").seed())?,
            hub: crate::relay::Hub::new(protocol.stream_key.clone()),
        })
    }

    /// A host's address by name, and port.
    pub fn addr(&self, host: &str, port: u16) -> Result<std::net::SocketAddr> {
        self.net
            .addr(host, port)
            .ok_or_else(|| anyhow::anyhow!("virtual network: no host \"{host}\""))
    }

    /// The publisher's media source, its camera started at `ready`.
    pub fn camera(&self, ready: netem::Time) -> crate::media::source::Source {
        crate::runner::camera(self.scenario, self.protocol, self.seeds, self.wall, ready)
    }

    /// The run's results, one per player group, assembled as link mode
    /// assembles them (`mode = "virtual"`).
    pub fn results(
        &self,
        relay: crate::runner::RelayReport,
        publisher: crate::publisher::PublisherStats,
        clients: crate::runner::Clients,
        players: Vec<crate::media::player::Player>,
    ) -> Vec<RunResult> {
        use crate::runner::{G2gSource, Sides, assemble};
        let net = crate::topology::NetworkStats {
            link: Some(self.net.stats()),
            proxies: None,
        };
        let g2g_source = if self.scenario.replay.is_some() {
            G2gSource::RtmpTimestamp
        } else {
            G2gSource::GlassHeader
        };
        players
            .into_iter()
            .enumerate()
            .map(|(i, player)| {
                let group_net = net.for_group(self.network, i);
                let sections = clients.sections_of_group(i, &publisher, &relay, &group_net);
                assemble(
                    Sides {
                        player,
                        publisher: publisher.clone(),
                        sections,
                        transports: clients.transports_of_group(i),
                        relay: relay.clone(),
                        net: group_net,
                        ffmpeg: Vec::new(),
                        cross: Vec::new(),
                        hostile: None,
                        relay_killed: None,
                        viewers: None,
                    },
                    self.scenario,
                    &self.network.for_group(i),
                    self.protocol,
                    (self.clock, self.end),
                    "virtual".into(),
                    g2g_source,
                )
            })
            .collect()
    }
}

/// Why `scenario` cannot run in virtual time: one line per part, empty
/// when it can.
pub fn refusals(scenario: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in scenario.protocols.iter().enumerate() {
        let at = format!("protocols[{i}] (\"{}\")", p.name);
        if p.publisher == PublisherKind::Ffmpeg {
            out.push(format!(
                "{at}: publisher = \"ffmpeg\" is a real process on real time"
            ));
        }
        if p.ffmpeg_player {
            out.push(format!(
                "{at}: ffmpeg_player is a real process on real time"
            ));
        }
        if !p.join.is_zero() {
            out.push(format!(
                "{at}: player.join (players joining a running stream) runs on real time only"
            ));
        }
        let (publish, play) = (p.publisher_uri.scheme, p.player_uri.scheme);
        for (what, scheme) in [("uri", publish), ("player_uri", play)] {
            if !VIRTUAL_SCHEMES.contains(&scheme) {
                out.push(format!(
                    "{at}: {what} {scheme}:// — only Glass's UDP protocol (gudp://), RTMP over \
                     QUIC (rtmpq://) and RTMP over TCP (rtmp://, on smoltcp's TCP) run in \
                     virtual time so far (RTSP, HTTP-FLV and HLS are not built for it yet)"
                ));
            }
        }
        if publish != play && [publish, play].iter().all(|s| VIRTUAL_SCHEMES.contains(s)) {
            out.push(format!(
                "{at}: a {publish}:// publisher with {play}:// players (a gateway through the \
                 hub) does not run in virtual time yet: use one scheme at both ends"
            ));
        }
        if matches!(publish, "rtmp" | "rtmpq") && p.abr.is_some() {
            out.push(format!(
                "{at}: abr on RTMP reads the send backlog of link mode's socket or quinn \
                 endpoint; it does not run in virtual time yet"
            ));
        }
        if publish == "rtmp"
            && let Err(e) = tcp::congestion_control(&p.tcp_congestion)
        {
            out.push(format!("{at}: {e}"));
        }
    }
    for (i, n) in scenario.networks.iter().enumerate() {
        let at = format!("networks[{i}] (\"{}\")", n.name);
        for (what, present) in [
            ("cross traffic uses real sockets", !n.cross.is_empty()),
            ("hostile clients use real sockets", !n.hostile.is_empty()),
            ("faults act on real tasks and links", !n.faults.is_empty()),
            (
                "light viewers are real RTMP sessions on real sockets",
                n.groups.iter().any(|g| g.viewers.is_some()),
            ),
        ] {
            if present {
                out.push(format!("{at}: {what}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_that_needs_real_time_is_named() {
        let s = Scenario::from_toml(
            "t",
            r#"
name = "t"
duration = "2s"
[[networks]]
name = "busy"
first_mile = { profile = "delay 10ms" }
cross = [ { mile = "first", kind = "tcp", cc = "cubic" } ]
[[protocols]]
kind = "rtsp"
[[protocols]]
kind = "udp"
[[protocols]]
kind = "rtmp"
tcp_congestion = "bbr"
[[protocols]]
name = "quic"
kind = "rtmp"
uri = "rtmpq://server/live/glass"
"#,
            None,
        )
        .unwrap();
        let r = refusals(&s);
        assert_eq!(r.len(), 3, "{r:#?}");
        assert!(
            r[0].starts_with("protocols[0] (\"rtsp\"): uri rtsp://"),
            "{}",
            r[0]
        );
        // RTMP over TCP runs on smoltcp, which has no BBR; over QUIC it runs.
        assert!(
            r[1].starts_with("protocols[2] (\"rtmp\"): tcp_congestion = \"bbr\""),
            "{}",
            r[1]
        );
        assert!(r[2].starts_with("networks[0] (\"busy\"): cross traffic"));
    }
}
