//! Runs one protocol over one network: builds the link, starts the relay in
//! the server namespace, the player and the publisher in theirs, plays for the
//! scenario's duration, and gathers what each side measured.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use netem::Time;
use netem::adapters::link::{Host, LinkConfig, LinkNetwork, LinkStats};
use netem::rng::SeedTree;
use netem::time::Clock;
use serde::Serialize;
use tokio::sync::watch;

use crate::media::encoder::Encoder;
use crate::media::player::{Displayed, Player, PlayerReport};
use crate::protocols::rtmp::{self, PublisherStats, RelayStats};
use crate::scenario::{Network, Protocol, ProtocolKind, Scenario};

pub const RTMP_PORT: u16 = 1935;

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct RunResult {
    /// "link/Tun" or "link/Veth".
    pub mode: String,
    pub player: PlayerReport,
    /// Video frames sent that were due on screen (plus one refresh) before
    /// the end; later ones were still in flight, not lost.
    pub frames_expected: u64,
    pub publisher: PublisherStats,
    pub relay: RelayStats,
    pub link: LinkStats,
    #[serde(skip)]
    pub displayed: Vec<Displayed>,
    #[serde(skip)]
    pub stalls: Vec<(Time, Time)>,
}

impl RunResult {
    /// Video frames that were due before the end and never shown.
    pub fn frames_lost(&self) -> u64 {
        self.frames_expected
            .saturating_sub(self.player.frames_displayed)
    }

    /// TCP retransmissions on both miles (publisher socket, relay → player sockets).
    pub fn retransmits(&self) -> u64 {
        u64::from(self.publisher.tcp.total_retrans)
            + self
                .relay
                .to_players_tcp
                .iter()
                .map(|t| u64::from(t.total_retrans))
                .sum::<u64>()
    }
}

fn to_tokio_listener(l: StdListener) -> Result<tokio::net::TcpListener> {
    l.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(l)?)
}

fn to_tokio_stream(s: StdStream) -> Result<tokio::net::TcpStream> {
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    Ok(tokio::net::TcpStream::from_std(s)?)
}

/// The first refresh instant at or after `t`: the camera starts on the
/// display's grid, so latency figures do not wobble with the phase between
/// capture and refresh from one run to the next.
fn align(t: Time, refresh: Duration) -> Time {
    let r = refresh.as_nanos() as u64;
    Time::from_nanos(t.as_nanos().div_ceil(r) * r)
}

/// Runs `protocol` over `network` once; `progress` gets the elapsed fraction.
pub fn run_one(
    rt: &tokio::runtime::Runtime,
    scenario: &Scenario,
    network: &Network,
    protocol: &Protocol,
    repeat: u32,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<RunResult> {
    let seeds = SeedTree::new(scenario.seed)
        .child(&network.name)
        .child(&protocol.name)
        .repeat(repeat);
    let link = LinkNetwork::start(LinkConfig {
        first_mile: network.first_mile.clone(),
        last_mile: network.last_mile.clone(),
        seed: seeds.child("link").seed(),
        ..LinkConfig::default()
    })
    .context("starting the link (network namespaces); Glass needs root or user namespaces")?;
    let mode = format!("link/{:?}", link.backend());
    let server = SocketAddr::from((Host::Server.addr(), RTMP_PORT));
    let listener = link.run_in(Host::Server, || StdListener::bind(server))?;
    let clock = Clock::new(Instant::now());
    let end = Time::from_duration(scenario.duration);
    let mut player = Player::new(protocol.player.clone(), Time::ZERO);
    let relay_stats = Arc::new(Mutex::new(RelayStats::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let key = protocol.stream_key.clone();
    let encoder_cfg = scenario.encoder.clone();
    let refresh = protocol.player.refresh;
    let run = rt.block_on(async {
        let listener = to_tokio_listener(listener)?;
        tokio::spawn(rtmp::relay(listener, key.clone(), stop_rx, relay_stats.clone()));
        let ticker = async {
            let t0 = Instant::now();
            loop {
                progress((t0.elapsed().as_secs_f64() / scenario.duration.as_secs_f64()).min(1.0));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let work = async {
            match protocol.kind {
                ProtocolKind::Rtmp => {
                    let player_sock = to_tokio_stream(link.run_in(Host::Player, || StdStream::connect(server))?)?;
                    let pub_sock = to_tokio_stream(link.run_in(Host::Publisher, || StdStream::connect(server))?)?;
                    let play = rtmp::play(player_sock, &key, &mut player, clock, end);
                    let publish = rtmp::publish(
                        pub_sock,
                        &key,
                        |start| Encoder::new(encoder_cfg.clone(), seeds, align(start, refresh)),
                        clock,
                        end,
                    );
                    let (played, published) = tokio::join!(play, publish);
                    let publisher = published.context("publisher")?;
                    played.context("player")?;
                    Ok::<_, anyhow::Error>(publisher)
                }
            }
        };
        let deadline = scenario.duration + Duration::from_secs(30);
        let r = tokio::select! {
            r = tokio::time::timeout(deadline, work) => r.map_err(|_| anyhow!("the run did not finish within its duration + 30 s"))?,
            _ = ticker => unreachable!("the ticker never ends"),
        };
        let _ = stop_tx.send(true);
        // Let the relay record its final TCP_INFO.
        tokio::time::sleep(Duration::from_millis(50)).await;
        r
    });
    let link_stats = link.stop()?;
    let publisher = run?;
    let report = player.finish(end);
    let frames_expected = match player.offset() {
        Some(offset) => publisher
            .video_captures
            .iter()
            .filter(|&&c| c + offset + protocol.player.refresh <= end)
            .count() as u64,
        None => publisher.video_frames_sent,
    };
    let relay = relay_stats.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(RunResult {
        mode,
        player: report,
        frames_expected,
        publisher,
        relay,
        link: link_stats,
        displayed: player.displayed().to_vec(),
        stalls: player.stalls().to_vec(),
    })
}
