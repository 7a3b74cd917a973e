//! Runs one protocol over one network: builds the link, starts the relay in
//! the server namespace, the player and the publisher in theirs, plays for the
//! scenario's duration, and gathers what each side measured.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use netem::Time;
use netem::adapters::link::LinkStats;
use netem::rng::SeedTree;
use netem::time::Clock;
use serde::Serialize;
use tokio::sync::watch;

use crate::abr_metrics::{AbrMetrics, abr_metrics};
use crate::g2g::{self, EqualSmoothness, FrameHops, HopBreakdown};
use crate::interop::ffmpeg::{self, Ffmpeg, FfmpegReport};
use crate::media::encoder::Encoder;
use crate::media::flv::FlvReplay;
use crate::media::player::{Displayed, Player, PlayerReport};
use crate::media::source::Source;
use crate::media::wallclock::WallClock;
pub use crate::protocol::TransportReport;
use crate::protocol::uri::StreamUri;
use crate::protocol::{
    self, DialCx, Dialed, Endpoint, PublishCx, REGISTRY, Role, RunCx, ServeCx, ServerTask, Stats,
};
use crate::publisher::{ConnectSteps, PublisherStats};
use crate::relay::{Hub, HubStats};
use crate::scenario::{CaptureStarts, Network, Protocol, PublisherKind, Scenario};
use crate::topology::{ClientPath, GroupNetworkStats, Mode, Place, ProxyStats, Topology};

/// How the player knew each frame's capture instant.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum G2gSource {
    /// From the Glass frame header inside every frame (exact).
    GlassHeader,
    /// From the RTMP timestamp, carrying the wall clock in ms (ffmpeg, a
    /// replayed FLV file): good to ±0.5 ms.
    RtmpTimestamp,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct RunResult {
    /// "link/Tun", "link/Veth" or "proxy".
    pub mode: String,
    pub g2g_source: G2gSource,
    /// Congestion control of Glass's TCP sockets (publisher, relay, player).
    pub tcp_congestion: String,
    /// How the publisher and the player reached the relay (QUIC, TCP, a
    /// fallback and why, handshake time).
    pub transports: Vec<TransportReport>,
    /// ABR's figures against the first mile's capacity, when ABR was on.
    pub abr: Option<AbrMetrics>,
    pub player: PlayerReport,
    /// Video frames sent that were due on screen (plus one refresh) before
    /// the end; later ones were still in flight, not lost.
    pub frames_expected: u64,
    pub publisher: PublisherStats,
    pub relay: RelayReport,
    /// The packet-level link's counters (link mode).
    pub link: Option<LinkStats>,
    /// The proxies' byte counts (proxy mode).
    pub proxy: Option<ProxyStats>,
    /// Every link's counters by direction label (link mode): results v2's
    /// topology section.
    #[serde(skip)]
    pub graph: Option<netem::adapters::link::GraphStats>,
    /// ffmpeg publishers and players of this run, if any.
    pub ffmpeg: Vec<FfmpegReport>,
    /// The network's cross traffic, flow by flow (none: not written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cross: Vec<crate::cross::CrossReport>,
    /// The network's hostile clients and the process's memory under them
    /// (none: not written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostile: Option<crate::hostile::HostileReport>,
    /// When the relay_killed fault killed the relay (ms from the start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_killed_at_ms: Option<f64>,
    /// The group's light viewers: figures across them, then each one's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewers: Option<crate::fleet::ViewersReport>,
    /// Each registered protocol's section of the run (its fields join
    /// results.json's `result` object: the UDP protocol's `udp` sessions
    /// and `recovery` per mile).
    #[serde(flatten)]
    pub sections: Sections,
    /// Latency at equal smoothness: the smallest playout delay that keeps
    /// stalls ≤ 1 %, from replaying this run's arrivals through the player.
    pub equal_smoothness: Option<EqualSmoothness>,
    /// G2G broken into encode, first mile, relay, last mile and playout.
    pub hops: Option<HopBreakdown>,
    /// Per video frame (by sequence number): publisher send, relay receive
    /// and relay send instants (frames.csv).
    #[serde(skip)]
    pub frame_hops: std::collections::HashMap<u64, FrameHops>,
    #[serde(skip)]
    pub displayed: Vec<Displayed>,
    #[serde(skip)]
    pub stalls: Vec<(Time, Time)>,
    /// The stalls as [start, end] in ms since the start (plots mark them).
    pub stall_spans_ms: Vec<(f64, f64)>,
}

/// What the relay saw: the hub's counters and each protocol's section
/// (results.json's `relay` object holds all their fields side by side).
#[derive(Clone, Debug, Default)]
pub struct RelayReport {
    pub hub: HubStats,
    /// Each registered protocol's server statistics, by protocol name
    /// (shared by the runs of a network's player groups).
    pub servers: Vec<(&'static str, std::sync::Arc<dyn Stats>)>,
}

impl RelayReport {
    /// A protocol's section, typed (`RtmpServerStats`, `UdpServerStats`).
    pub fn server<T: 'static>(&self) -> Option<&T> {
        self.servers
            .iter()
            .find_map(|(_, s)| s.as_any().downcast_ref::<T>())
    }
}

impl Serialize for RelayReport {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        crate::protocol::merged_json(
            crate::protocol::json_fields(&self.hub),
            self.servers.iter().map(|(_, s)| s.as_ref()),
        )
        .serialize(ser)
    }
}

/// The protocols' sections of a run, by protocol name; serialized as one
/// object of all their fields.
#[derive(Debug, Default)]
pub struct Sections(pub Vec<(&'static str, Box<dyn Stats>)>);

impl Serialize for Sections {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        crate::protocol::merged_json(
            serde_json::Map::new(),
            self.0.iter().map(|(_, s)| s.as_ref()),
        )
        .serialize(ser)
    }
}

impl RunResult {
    /// A protocol's section, typed (`UdpSection`).
    pub fn section<T: 'static>(&self) -> Option<&T> {
        self.sections
            .0
            .iter()
            .find_map(|(_, s)| s.as_any().downcast_ref::<T>())
    }

    /// Video frames that were due before the end and never shown.
    pub fn frames_lost(&self) -> u64 {
        self.frames_expected
            .saturating_sub(self.player.frames_displayed)
    }

    /// Retransmissions on both miles as each protocol's transports count
    /// them (its section's `retransmits`: TCP's retransmitted segments,
    /// QUIC's lost packets, the UDP protocol's retransmissions).
    pub fn retransmits(&self) -> u64 {
        self.sections.0.iter().map(|(_, s)| s.retransmits()).sum()
    }

    /// Drops the per-frame series (displayed frames, hops, stalls, the
    /// publisher's send instants) once frames.csv and seconds.csv have
    /// them: what a results file or a summary reads stays.
    pub fn shed_frames(&mut self) {
        self.displayed = Vec::new();
        self.frame_hops = std::collections::HashMap::new();
        self.stalls = Vec::new();
        self.publisher.sent = Vec::new();
        self.publisher.video_captures = Vec::new();
    }

    /// The publisher's transport as used: "tcp", "quic/stream",
    /// "quic/frames", or "tcp*" after a fallback from QUIC.
    pub fn transport(&self) -> String {
        match self.transports.iter().find(|t| t.role == "publisher") {
            Some(t) if t.fallback.is_some() => format!("{}*", t.used),
            Some(t) => t.used.clone(),
            None => "tcp".into(),
        }
    }
}

/// The first refresh instant at or after `t`: the camera starts on the
/// display's grid, so latency figures do not wobble with the phase between
/// capture and refresh from one run to the next.
fn align(t: Time, refresh: Duration) -> Time {
    let r = refresh.as_nanos() as u64;
    Time::from_nanos(t.as_nanos().div_ceil(r) * r)
}

/// Where an ffmpeg player (a peer Glass did not write) plays from: the
/// player URI when ffmpeg can play its protocol (RTMP over TCP, HTTP-FLV, HLS),
/// else RTMP over TCP through the gateway. The relay's endpoint it reaches
/// and the URL it plays, given where that endpoint is from its host.
fn ffmpeg_player_source(
    protocol: &Protocol,
) -> Result<(Endpoint, impl Fn(std::net::SocketAddr) -> Option<String>)> {
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let given = &protocol.player_uri;
    let uri = match protocol::route(given)?.0.ffmpeg_input(given, any, protocol) {
        Some(_) => given.clone(),
        None => StreamUri::parse(&format!("rtmp://server/{}/{}", given.app, given.key))?,
    };
    let (p, to) = protocol::route(&uri)?;
    let settings = protocol.clone();
    Ok((to, move |at| p.ffmpeg_input(&uri, at, &settings)))
}

/// What the run's clients share to dial the relay.
struct Dial<'a> {
    topo: &'a Topology,
    protocol: &'a Protocol,
    media_bps: u64,
    clock: Clock,
}

impl Dial<'_> {
    /// Connects a client on `place`'s host to the relay with the protocol
    /// `uri`'s scheme names.
    async fn dial(&self, role: Role, place: Place, uri: &StreamUri) -> Result<Dialed> {
        let (p, to) = protocol::route(uri)?;
        let cx = DialCx {
            topo: self.topo,
            role,
            place,
            uri,
            settings: self.protocol,
            media_bps: self.media_bps,
            clock: self.clock,
        };
        p.dial(cx, to).await
    }
}

/// The relay endpoints the run's clients reach, from which host (proxy
/// mode puts a proxy on each): Glass's clients and ffmpeg's publisher by
/// their URIs (each protocol says which endpoints a URI uses), ffmpeg's
/// players over RTMP's TCP port; a player (and an ffmpeg player) per group.
fn client_paths(protocol: &Protocol, groups: usize) -> Result<Vec<ClientPath>> {
    let reach = |from: Place, uri: &StreamUri| -> Result<Vec<ClientPath>> {
        let (p, to) = protocol::route(uri)?;
        Ok(p.client_endpoints(uri, to)
            .into_iter()
            .map(|(to, control)| ClientPath { from, to, control })
            .collect())
    };
    let mut paths = reach(Place::Publisher, &protocol.publisher_uri)?;
    for i in 0..groups {
        let from = Place::Players(i);
        paths.extend(reach(from, &protocol.player_uri)?);
        if protocol.ffmpeg_player {
            paths.push(ClientPath::media(from, ffmpeg_player_source(protocol)?.0));
        }
    }
    Ok(paths)
}

/// Runs `protocol` over a network of one player group once (see
/// [`run_groups`]).
pub fn run_one(
    rt: &tokio::runtime::Runtime,
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    repeat: u32,
    mode: Mode,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<RunResult> {
    let mut runs = run_groups(rt, scenario, network, protocol, repeat, mode, progress)?;
    match runs.len() {
        1 => Ok(runs.remove(0)),
        n => Err(anyhow!(
            "network \"{}\" has {n} player groups; run it with run_groups",
            network.name
        )),
    }
}

/// Runs `protocol` over `network` once: one publisher, a player per
/// player group (each on its own last mile), all on one relay. Returns a
/// result per group, in the network's order; `progress` gets the elapsed
/// fraction.
/// The root of a run's seeds: the scenario's seed, the network's name and
/// the repeat (not the protocol: every protocol over a network meets the
/// same random sequences). Sweep plans list it per run.
pub fn run_seeds(seed: u64, network: &Network, repeat: u32) -> SeedTree {
    SeedTree::new(seed).child(&network.name).repeat(repeat)
}

pub fn run_groups(
    rt: &tokio::runtime::Runtime,
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    repeat: u32,
    mode: Mode,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<Vec<RunResult>> {
    // The same seeds for every protocol over a network (per repeat): the
    // link's impairment decisions and the encoder's frame sizes come from
    // the same random sequences, so protocols are compared on equal terms.
    let seeds = run_seeds(scenario.seed, network, repeat);
    let uses_ffmpeg = protocol.publisher == PublisherKind::Ffmpeg || protocol.ffmpeg_player;
    if uses_ffmpeg {
        ffmpeg::check_installed()?;
    }
    let groups = network.groups.len();
    let paths = client_paths(protocol, groups)?;
    let mut topo = Topology::start(rt, mode, network, seeds.child("link").seed(), &paths)?;
    let mode = topo.mode_label();
    let clock = Clock::new(Instant::now());
    let cross = topo.start_cross(&network.cross, clock)?;
    let wall = WallClock::new(clock);
    let end = Time::from_duration(scenario.duration);
    let mut players: Vec<Player> = (0..groups)
        .map(|_| Player::new(protocol.player.clone(), Time::from_duration(protocol.join)))
        .collect();
    let hub = Hub::new(protocol.stream_key.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let key = protocol.stream_key.clone();
    let real_h264 = protocol.publisher == PublisherKind::Ffmpeg || scenario.replay.is_some();
    let g2g_source = if real_h264 {
        G2gSource::RtmpTimestamp
    } else {
        G2gSource::GlassHeader
    };
    // An ffmpeg player joins first, like Glass's, so both see the stream
    // from its start: one per group.
    let mut ffmpeg_players = Vec::new();
    if protocol.ffmpeg_player {
        let (to, url_at) = ffmpeg_player_source(protocol)?;
        for i in 0..groups {
            let place = Place::Players(i);
            let url = url_at(topo.addr_from(place, to)?)
                .ok_or_else(|| anyhow!("ffmpeg cannot play {}", protocol.player_uri))?;
            ffmpeg_players.push(Ffmpeg::spawn(
                "player",
                topo.command(place, "ffmpeg")?,
                ffmpeg::player_args(&url, real_h264),
            )?);
        }
    }
    let mut ffmpeg_publisher: Option<(Ffmpeg, Time)> = None;
    let mut clients = Clients::default();
    let mut hostile = None;
    let mut relay_killed: Option<Duration> = None;
    let run = rt.block_on(async {
        let (servers, targets) = start_servers(
            &mut topo,
            protocol,
            &hub,
            &stop_rx,
            scenario.encoder.bitrate.bits_per_sec(),
            clock,
        )?;
        // The relay_killed fault: every server task (and its sessions)
        // aborted at its instant.
        let killer = crate::faults::relay_killed(&network.faults).map(|at| {
            let aborts: Vec<_> = servers.iter().map(|(_, t)| t.abort_handle()).collect();
            let when = clock.instant(Time::from_duration(at));
            tokio::spawn(async move {
                tokio::time::sleep_until(when.into()).await;
                for a in aborts {
                    a.abort();
                }
                at
            })
        });
        let attackers = if network.hostile.is_empty() {
            None
        } else {
            Some(crate::hostile::Hostile::start(
                &network.hostile,
                targets,
                &key,
                (clock, seeds.child("hostile").seed()),
                &topo,
            )?)
        };
        // Light viewers, per group: they join on their schedule, whatever
        // the full players do.
        let fleets = start_fleets(scenario, network, protocol, &topo, (clock, end), seeds)?;
        // Where the run is, for the message if it overruns its deadline.
        let progress_of_run = Stage::default();
        let cx = SessionCx {
            dial: Dial {
                topo: &topo,
                protocol,
                media_bps: scenario.encoder.bitrate.bits_per_sec(),
                clock,
            },
            scenario,
            protocol,
            seeds,
            wall,
            end,
        };
        let work = sessions(
            &cx,
            &mut players,
            &mut clients,
            &mut ffmpeg_publisher,
            &progress_of_run,
        );
        let r = within_deadline(work, scenario.duration, &progress_of_run, progress).await;
        if let Some(k) = killer {
            if k.is_finished() {
                relay_killed = k.await.ok();
            } else {
                k.abort();
            }
        }
        let r = match (r, relay_killed) {
            (Err(e), Some(at)) => Err(e.context(format!(
                "the relay was killed at {:.1} s (fault relay_killed)",
                at.as_secs_f64()
            ))),
            (r, _) => r,
        };
        let mut viewers = Vec::new();
        for f in fleets {
            viewers.push(match f {
                Some(f) => Some(f.finish().await),
                None => None,
            });
        }
        // The attacks end before the relay does (they would count its
        // shutdown as refusals).
        if let Some(a) = attackers {
            hostile = tokio::task::spawn_blocking(move || a.stop()).await.ok();
        }
        // ffmpeg finishes while the relay still listens (else: broken pipe).
        for f in ffmpeg_publisher
            .iter_mut()
            .map(|(f, _)| f)
            .chain(ffmpeg_players.iter_mut())
        {
            f.interrupt();
            f.wait_exit(Duration::from_secs(3)).await;
        }
        let _ = stop_tx.send(true);
        // The servers close their sessions and give their statistics
        // (the UDP side sends its closes; RTMP's sessions their last TCP_INFO).
        let mut stats = Vec::new();
        for (name, s) in servers {
            match tokio::time::timeout(Duration::from_secs(2), s).await {
                Ok(Ok(st)) => stats.push((name, std::sync::Arc::from(st))),
                Ok(Err(e)) if e.is_cancelled() && relay_killed.is_some() => {}
                _ => tracing::warn!(
                    "the relay's {name} side did not stop in time; its statistics are missing"
                ),
            }
        }
        r.map(|p| (p, stats, viewers))
    });
    let ffmpeg_started = ffmpeg_publisher.as_ref().map(|(_, t)| *t);
    let (ffmpeg_pub_report, ffmpeg_player_reports) =
        stop_ffmpeg(ffmpeg_publisher.map(|(p, _)| p), ffmpeg_players, &topo);
    let cross = cross
        .map(crate::cross::CrossTraffic::stop)
        .unwrap_or_default();
    let net = topo.stop(rt)?;
    let (published, servers, mut viewers) = run?;
    let relay = RelayReport {
        hub: hub.stats(),
        servers,
    };
    let publisher = match published {
        Some(p) => p,
        // ffmpeg published: what it sent, as the relay received it.
        None => ffmpeg_publisher_stats(
            ffmpeg_pub_report.clone().unwrap_or_default(),
            ffmpeg_started,
            &relay,
            wall,
            end,
        )?,
    };
    let mut ffmpeg_player_reports = ffmpeg_player_reports.into_iter();
    let mut out = Vec::new();
    for (i, player) in players.into_iter().enumerate() {
        let view = network.for_group(i);
        let ffmpeg_reports = ffmpeg_pub_report
            .iter()
            .cloned()
            .chain(ffmpeg_player_reports.next())
            .collect();
        let group_net = net.for_group(network, i);
        let sections = clients.sections_of_group(i, &publisher, &relay, &group_net);
        out.push(assemble(
            Sides {
                player,
                publisher: publisher.clone(),
                sections,
                transports: clients.transports_of_group(i),
                relay: relay.clone(),
                net: group_net,
                ffmpeg: ffmpeg_reports,
                cross: cross.clone(),
                hostile: hostile.clone(),
                relay_killed,
                viewers: viewers.get_mut(i).and_then(Option::take),
            },
            scenario,
            &view,
            protocol,
            (clock, end),
            mode.clone(),
            g2g_source,
        ));
    }
    Ok(out)
}

/// What the run's clients reported: the publisher's, then each player
/// group's.
#[derive(Default)]
pub(crate) struct Clients {
    pub publisher: Option<TransportReport>,
    pub publisher_stats: Option<Box<dyn Stats>>,
    pub players: Vec<TransportReport>,
    pub player_stats: Vec<Option<Box<dyn Stats>>>,
}

impl Clients {
    /// How group `i`'s player and the publisher reached the relay (player
    /// first, as it dials first).
    pub(crate) fn transports_of_group(&self, i: usize) -> Vec<TransportReport> {
        self.players
            .get(i)
            .iter()
            .copied()
            .chain(self.publisher.iter())
            .cloned()
            .collect()
    }

    /// Each registered protocol's section of group `i`'s run, from the
    /// publisher's and that group's player's statistics.
    pub(crate) fn sections_of_group(
        &self,
        i: usize,
        publisher: &PublisherStats,
        relay: &RelayReport,
        net: &GroupNetworkStats,
    ) -> Sections {
        let clients: Vec<&dyn Stats> = self
            .publisher_stats
            .iter()
            .chain(self.player_stats.get(i).into_iter().flatten())
            .map(|s| s.as_ref())
            .collect();
        let cx = RunCx {
            publisher,
            clients: &clients,
            servers: &relay.servers,
            net,
        };
        Sections(
            REGISTRY
                .iter()
                .filter_map(|p| Some((p.name(), p.run_section(&cx)?)))
                .collect(),
        )
    }
}

/// Where a run is, for the message if it overruns its deadline.
struct Stage {
    stage: std::cell::Cell<&'static str>,
    played: std::cell::Cell<bool>,
    published: std::cell::Cell<bool>,
}

impl Default for Stage {
    fn default() -> Self {
        Stage {
            stage: std::cell::Cell::new("connecting the player"),
            played: std::cell::Cell::new(false),
            published: std::cell::Cell::new(false),
        }
    }
}

/// What the publisher and the player of a run need.
struct SessionCx<'a> {
    dial: Dial<'a>,
    scenario: &'a Scenario,
    protocol: &'a Protocol,
    seeds: SeedTree,
    wall: WallClock,
    end: Time,
}

/// The run's sessions: the players join first, a group at a time (so they
/// see the stream from its start), then Glass's publisher (or ffmpeg's)
/// publishes until the end. Returns Glass's publisher's statistics (none
/// for ffmpeg's).
async fn sessions(
    cx: &SessionCx<'_>,
    players: &mut [Player],
    clients: &mut Clients,
    ffmpeg_publisher: &mut Option<(Ffmpeg, Time)>,
    stage: &Stage,
) -> Result<Option<PublisherStats>> {
    let SessionCx {
        dial,
        scenario,
        protocol,
        seeds,
        wall,
        end,
    } = cx;
    let (seeds, wall, end, clock) = (*seeds, *wall, *end, dial.clock);
    // Players that join at the start connect now, one group at a time;
    // later ones (`player.join`) connect at their instant, a running stream.
    let join = Time::from_duration(protocol.join);
    let mut plays = Vec::new();
    for (i, player) in players.iter_mut().enumerate() {
        let now = if join == Time::ZERO {
            Some(
                dial.dial(Role::Player, Place::Players(i), &protocol.player_uri)
                    .await?,
            )
        } else {
            None
        };
        plays.push(async move {
            let side = match now {
                Some(side) => side,
                None => {
                    tokio::time::sleep_until(clock.instant(join).into()).await;
                    dial.dial(Role::Player, Place::Players(i), &protocol.player_uri)
                        .await?
                }
            };
            if !side.session.ordered() {
                player.set_ordered(false);
            }
            let stats = side.session.play(player, end).await?;
            anyhow::Ok((side.report, stats))
        });
    }
    let play = async {
        let r = futures_util::future::join_all(plays).await;
        stage.played.set(true);
        r.into_iter().collect::<Result<Vec<_>>>()
    };
    match protocol.publisher {
        PublisherKind::Glass => {
            stage.stage.set("connecting the publisher");
            let mut steps = ConnectSteps::new(clock, clock.time(Instant::now()));
            let pub_side = dial
                .dial(Role::Publisher, Place::Publisher, &protocol.publisher_uri)
                .await?;
            steps.done(pub_side.step);
            clients.publisher = Some(pub_side.report);
            // The camera starts when the session can carry media
            // (`ready`), or at the run's start (a camera already running).
            let source_for = move |ready: Time| camera(scenario, protocol, seeds, wall, ready);
            let publish = async {
                let r = pub_side
                    .session
                    .publish(PublishCx {
                        source_for: Box::new(source_for),
                        steps,
                        end,
                    })
                    .await;
                stage.published.set(true);
                r
            };
            stage.stage.set("playing and publishing");
            let (played, published) = tokio::join!(play, publish);
            let (publisher, pub_stats) = published.context("publisher")?;
            clients.publisher_stats = pub_stats;
            (clients.players, clients.player_stats) = played.context("player")?.into_iter().unzip();
            Ok(Some(publisher))
        }
        PublisherKind::Ffmpeg => {
            let uri = &protocol.publisher_uri;
            let (p, to) = protocol::route(uri)?;
            let at = dial.topo.addr_from(Place::Publisher, to)?;
            let (output, used) = p
                .ffmpeg_output(uri, at)
                .ok_or_else(|| anyhow!("ffmpeg cannot publish {uri}"))?;
            clients.publisher = Some(TransportReport {
                role: Role::Publisher.as_str(),
                uri: uri.redacted(),
                requested: used.into(),
                used: used.into(),
                fallback: None,
                handshake_ms: None,
            });
            let args = ffmpeg_publisher_args(scenario, output)?;
            let started = clock.time(Instant::now());
            *ffmpeg_publisher = Some((
                Ffmpeg::spawn(
                    "publisher",
                    dial.topo.command(Place::Publisher, "ffmpeg")?,
                    args,
                )?,
                started,
            ));
            stage.stage.set("playing");
            (clients.players, clients.player_stats) =
                play.await.context("player")?.into_iter().unzip();
            Ok(None)
        }
    }
}

/// Starts each player group's light viewers (none where a group has
/// none): sockets on the group's host, a schedule from the run's seeds,
/// frames counted over the steady state.
fn start_fleets(
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    topo: &Topology,
    (clock, end): (Clock, Time),
    seeds: SeedTree,
) -> Result<Vec<Option<crate::fleet::Running>>> {
    let window = crate::fleet::Window {
        from: Time::from_duration(scenario.warmup),
        to: end,
    };
    let (_, endpoint) = protocol::route(&protocol.player_uri)?;
    // Each viewer holds its socket and the relay's side of it; in proxy
    // mode the proxy holds two more.
    let viewers: u64 = network
        .groups
        .iter()
        .filter_map(|g| g.viewers.as_ref())
        .map(|v| u64::from(v.count))
        .sum();
    let per_viewer = if topo.mode_label() == "proxy" { 4 } else { 2 };
    crate::fleet::check_open_files(viewers * per_viewer, "declare fewer viewers")
        .with_context(|| format!("{viewers} light viewers"))?;
    network
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let Some(v) = &g.viewers else { return Ok(None) };
            let (sockets, relay) =
                topo.tcp_sockets(Place::Players(i), endpoint, v.count as usize)?;
            let schedule = v.schedule(seeds.child("viewers").child(&g.name), scenario.duration);
            let dial = crate::fleet::Dial {
                sockets,
                relay,
                key: protocol.stream_key.clone(),
                clock,
            };
            Ok(Some(crate::fleet::start(v, dial, &schedule, window)))
        })
        .collect()
}

/// Stops ffmpeg's publisher and players (each already asked to finish) and
/// returns their reports: the publisher's, and a player's per group.
/// ffmpeg's sockets use their namespace's default
/// congestion control: Glass cannot choose it (outside the initial
/// namespace only `tcp_allowed_congestion_control` may be a default).
fn stop_ffmpeg(
    publisher: Option<Ffmpeg>,
    players: Vec<Ffmpeg>,
    topo: &Topology,
) -> (Option<FfmpegReport>, Vec<FfmpegReport>) {
    let grace = Duration::from_secs(3);
    let stop = |f: Ffmpeg, place| {
        let mut r = f.stop(grace);
        r.tcp_congestion = topo.default_congestion(place);
        r
    };
    (
        publisher.map(|f| stop(f, Place::Publisher)),
        players
            .into_iter()
            .enumerate()
            .map(|(i, f)| stop(f, Place::Players(i)))
            .collect(),
    )
}

/// Runs `work` (a run's sessions) reporting progress every 200 ms, and
/// gives up `duration` + 30 s after the start, saying where it was stuck.
async fn within_deadline<T>(
    work: impl std::future::Future<Output = Result<T>>,
    duration: Duration,
    stage: &Stage,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<T> {
    let ticker = async {
        let t0 = Instant::now();
        loop {
            progress((t0.elapsed().as_secs_f64() / duration.as_secs_f64()).min(1.0));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let deadline = duration + Duration::from_secs(30);
    tokio::select! {
        r = tokio::time::timeout(deadline, work) => r.unwrap_or_else(|_| {
            let pending: Vec<&str> = [("the player", stage.played.get()), ("the publisher", stage.published.get())]
                .into_iter()
                .filter(|(_, done)| !done)
                .map(|(who, _)| who)
                .collect();
            Err(anyhow!(
                "the run did not finish within its duration + 30 s (stuck {}; not finished: {})",
                stage.stage.get(),
                pending.join(", ")
            ))
        }),
        _ = ticker => unreachable!("the ticker never ends"),
    }
}

/// The publisher's media source: the synthetic encoder, or a replayed FLV
/// file. Its camera starts at `ready` (when the session can carry media) or
/// at the run's start (a camera already running), on the display's grid.
pub(crate) fn camera(
    scenario: &Scenario,
    protocol: &Protocol,
    seeds: SeedTree,
    wall: WallClock,
    ready: Time,
) -> Source {
    let start = match protocol.capture_starts {
        CaptureStarts::OnConnect => ready,
        CaptureStarts::AtStart => Time::ZERO,
    };
    let start = align(start, protocol.player.refresh);
    match &scenario.replay {
        Some(r) => Source::Replay {
            replay: FlvReplay::new(&r.tags, start),
            wall,
        },
        None => Source::Synthetic(Encoder::new(scenario.encoder.clone(), seeds, start)),
    }
}

/// ffmpeg's arguments to publish its test pattern at the scenario's media
/// settings with `output` (the protocol's format options and URL).
fn ffmpeg_publisher_args(scenario: &Scenario, output: Vec<String>) -> Result<Vec<String>> {
    let (width, height) = ffmpeg::parse_resolution(&scenario.resolution)
        .ok_or_else(|| anyhow!("media.resolution is not WIDTHxHEIGHT"))?;
    let e = &scenario.encoder;
    Ok(ffmpeg::publisher_args(&ffmpeg::PublisherArgs {
        output,
        width,
        height,
        fps: e.fps,
        gop: e.gop,
        bitrate_bps: e.bitrate.bits_per_sec(),
        frames: (scenario.duration.as_secs_f64() * e.fps).ceil() as u64,
    }))
}

/// What each side of a run measured, gathered after the run.
pub(crate) struct Sides {
    pub player: Player,
    pub publisher: PublisherStats,
    pub relay: RelayReport,
    pub net: GroupNetworkStats,
    pub transports: Vec<TransportReport>,
    pub sections: Sections,
    pub ffmpeg: Vec<FfmpegReport>,
    pub cross: Vec<crate::cross::CrossReport>,
    pub hostile: Option<crate::hostile::HostileReport>,
    pub relay_killed: Option<Duration>,
    pub viewers: Option<crate::fleet::ViewersReport>,
}

/// The run's figures from what each side measured: start-up and steady
/// state, equal smoothness, the per-hop breakdown, frames expected, ABR
/// and recovery.
pub(crate) fn assemble(
    sides: Sides,
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    (clock, end): (Clock, Time),
    mode: String,
    g2g_source: G2gSource,
) -> RunResult {
    let Sides {
        mut player,
        publisher,
        relay,
        net,
        transports,
        sections,
        ffmpeg: ffmpeg_reports,
        cross,
        hostile,
        relay_killed,
        viewers,
    } = sides;
    let mut report = player.finish(end);
    // Start-up vs steady state: frames captured after the warm-up.
    let camera = publisher.started_at.unwrap_or(Time::ZERO);
    report.steady = g2g::g2g_summary(player.displayed(), camera + scenario.warmup);
    let equal_smoothness = g2g::equal_smoothness(
        player.config(),
        player.arrivals(),
        end,
        camera + scenario.warmup,
    );
    let frame_hops = g2g::frame_hops(&publisher.sent, &relay.hub.hops, clock);
    let hops = HopBreakdown::of(player.displayed(), &frame_hops);
    // A player that joined a running stream expects the frames from the
    // first it showed (the GOP cache's key frame, an HLS segment's start).
    let first_shown = match protocol.join.is_zero() {
        true => Time::ZERO,
        false => player.displayed().first().map_or(end, |d| d.capture),
    };
    let frames_expected = match player.offset() {
        Some(offset) => publisher
            .video_captures
            .iter()
            .filter(|&&c| c >= first_shown && c + offset + protocol.player.refresh <= end)
            .count() as u64,
        None if protocol.join.is_zero() => publisher.video_frames_sent,
        None => 0,
    };
    RunResult {
        mode,
        sections,
        g2g_source,
        tcp_congestion: protocol.tcp_congestion.clone(),
        abr: match (&publisher.abr, &protocol.abr) {
            (Some(r), Some(cfg)) => Some(abr_metrics(
                &r.samples,
                r.switches,
                cfg,
                &network.first_mile.0,
            )),
            _ => None,
        },
        transports,
        player: report,
        frames_expected,
        publisher,
        relay,
        link: net.link,
        proxy: net.proxy,
        graph: net.graph,
        ffmpeg: ffmpeg_reports,
        cross,
        hostile,
        relay_killed_at_ms: relay_killed.map(|d| d.as_secs_f64() * 1e3),
        viewers,
        equal_smoothness,
        hops,
        frame_hops,
        displayed: player.displayed().to_vec(),
        stalls: player.stalls().to_vec(),
        stall_spans_ms: player
            .stalls()
            .iter()
            .map(|(a, b)| (a.as_secs_f64() * 1e3, b.as_secs_f64() * 1e3))
            .collect(),
    }
}

/// Every registered protocol's server side on the hub, on the endpoints
/// this network can carry. Needs the runtime (it spawns the servers).
fn start_servers(
    topo: &mut Topology,
    protocol: &Protocol,
    hub: &Hub,
    stop: &watch::Receiver<bool>,
    media_bps: u64,
    clock: Clock,
) -> Result<(Vec<(&'static str, ServerTask)>, crate::hostile::Targets)> {
    let mut out = Vec::new();
    let mut targets = crate::hostile::Targets::default();
    for p in REGISTRY {
        let socks = p
            .endpoints()
            .iter()
            .map(|&e| topo.bind_server(e))
            .collect::<Result<Vec<_>>>()?;
        for (&e, sock) in p.endpoints().iter().zip(&socks) {
            let at = crate::topology::bound_addr(sock).ok();
            match e {
                Endpoint::Tcp(crate::protocol::rtmp::RTMP_PORT) => targets.rtmp = at,
                Endpoint::Tcp(crate::protocol::rtsp::RTSP_PORT) => targets.rtsp = at,
                Endpoint::Udp(crate::protocol::udp::UDP_MEDIA_PORT) => targets.udp = at,
                _ => {}
            }
        }
        let publisher_ports = p
            .endpoints()
            .iter()
            .zip(&socks)
            .map(|(&e, sock)| topo.publisher_port(e, sock))
            .collect();
        let cx = ServeCx {
            hub: hub.clone(),
            stop: stop.clone(),
            media_bps,
            publisher_ports,
            clock: Some(clock),
        };
        let task = p
            .serve(socks, protocol, cx)
            .with_context(|| format!("starting the relay's {} side", p.name()))?;
        out.push((p.name(), task));
    }
    Ok((out, targets))
}

/// What an ffmpeg publisher did, from its own report and the relay's view
/// (its capture instants come from the timestamps the relay received, the
/// frames it published and those its ingest left out).
fn ffmpeg_publisher_stats(
    report: FfmpegReport,
    started: Option<Time>,
    relay: &RelayReport,
    wall: WallClock,
    end: Time,
) -> Result<PublisherStats> {
    let mut p = PublisherStats {
        video_frames_sent: report.frames,
        bytes_sent: report.bytes,
        started_at: started,
        ..PublisherStats::default()
    };
    // What the relay published and what its ingest had to leave out (a
    // picture damaged on the first mile): every frame that reached it.
    let mut captures: Vec<Time> = relay
        .hub
        .published_video_timestamps
        .iter()
        .chain(&relay.hub.withheld_video_timestamps)
        .map(|&ts| wall.capture(ts, end))
        .collect();
    captures.sort();
    p.video_captures = captures;
    if p.video_captures.is_empty() {
        return Err(anyhow!(
            "ffmpeg published nothing; its last errors: {}",
            report.errors.join(" | ")
        ));
    }
    Ok(p)
}
