//! `glass bench relay`: players per core. One relay, one publisher, and a
//! ramp of light RTMP viewers on loopback (no impairment); each step runs
//! for `--seconds` after every viewer has joined and measures capture →
//! arrival per viewer, freezes, frames never delivered, and the CPU time of
//! the relay's core. The ramp stops at the first step whose pooled p99
//! grows more than `--knee` over one viewer's, or where a viewer freezes,
//! misses frames or fails; such a step is the relay's knee only if the
//! relay's core was ≥ 90 % busy (else the load generator or the machine
//! gave out first, and the step says so).
//!
//! Capture → arrival, not display G2G: a player's display latency stays
//! pinned at its playout offset until it stalls, so it cannot show the knee.
//!
//! The relay (Glass's, on a current-thread runtime, or nginx-rtmp with one
//! process) is pinned to core 0 and the viewers and publisher to core 1, so
//! the relay's core time is the relay's alone. `--peer nginx-rtmp` runs the
//! same ramp against nginx-rtmp in the same invocation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use netem::Time;
use netem::rng::SeedTree;
use netem::time::Clock;
use serde::Serialize;

use crate::cli::{BenchRelayArgs, RelayPeer};
use crate::fleet::{FleetSummary, ViewerLog, Window, summarize};
use crate::interop::nginx::NginxRtmp;
use crate::media::encoder::{AudioConfig, Encoder, EncoderConfig};
use crate::media::source::Source;
use crate::procstat::CpuClock;
use crate::protocol::rtmp::client::{publish, watch};
use crate::protocol::rtmp::server::{RtmpServerStats, serve};
use crate::protocol::rtmp::transport::Transport;
use crate::publisher::ConnectSteps;
use crate::relay::Hub;

const KEY: &str = "bench";
/// The relay's core must be at least this busy for a degraded step to be
/// its knee.
const BUSY: f64 = 0.9;
/// Time for the publisher to connect before viewers start joining.
const LEAD: Duration = Duration::from_secs(1);
/// After the last viewer joined, before the window opens.
const SETTLE: Duration = Duration::from_secs(1);

/// Which relay a step measured.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Server {
    Glass,
    NginxRtmp,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Glass => "glass",
            Server::NginxRtmp => "nginx-rtmp",
        }
    }
}

/// One step of the ramp.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub server: Server,
    pub players: usize,
    pub fleet: FleetSummary,
    /// Share of one core the relay used over the window (0–1).
    pub relay_cpu: f64,
    /// Share of one core the viewers used (the load generator).
    pub viewers_cpu: f64,
    /// Relay CPU per viewer: µs of CPU per second of one viewer's stream.
    pub relay_cpu_us_per_viewer_s: f64,
    /// nginx's resident memory; for Glass the whole process's (relay,
    /// viewers and publisher share it), KiB.
    pub rss_kib: u64,
    pub degraded: Option<String>,
    /// Degraded with the relay's core ≥ 90 % busy: the relay's limit.
    pub knee: bool,
}

/// One server's ramp and what it comes to.
#[derive(Clone, Debug, Serialize)]
pub struct Ramp {
    pub server: Server,
    pub steps: Vec<Step>,
    /// The largest step that held (p99 within the knee of one viewer's, no
    /// freezes, none missing or failed).
    pub largest_good: Option<usize>,
    /// That step's players over its relay core share: players one core
    /// would carry at that cost per viewer.
    pub players_per_core: Option<f64>,
    /// Whether the ramp found the relay's knee (else it ended at
    /// `--players`, or the load generator gave out).
    pub knee_found: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct RelayBench {
    pub protocol: String,
    pub bitrate_bps: u64,
    pub seconds: f64,
    pub pinned: bool,
    pub knee_ms: f64,
    pub ramps: Vec<Ramp>,
}

pub fn run(args: &BenchRelayArgs) -> Result<()> {
    let report = bench(args, &mut |line| eprintln!("{line}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The ramp's player counts: 1 first (the baseline), then `steps` or the
/// default ladder, up to `max`.
pub fn ladder(steps: &[usize], max: usize) -> Vec<usize> {
    let base: Vec<usize> = if steps.is_empty() {
        [
            50, 100, 200, 400, 700, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 10_000,
        ]
        .into_iter()
        .filter(|&n| n < max)
        .chain([max])
        .collect()
    } else {
        steps.to_vec()
    };
    let mut v: Vec<usize> = std::iter::once(1)
        .chain(base.into_iter().filter(|&n| n > 1 && n <= max))
        .collect();
    v.dedup();
    v
}

/// Runs the ramps (Glass's, then the peer's), reporting each step through
/// `progress`.
pub fn bench(args: &BenchRelayArgs, progress: &mut dyn FnMut(String)) -> Result<RelayBench> {
    if args.protocol != "rtmp" {
        bail!(
            "--protocol {}: only rtmp can be benchmarked yet (light HTTP-FLV and HLS viewers are not built)",
            args.protocol
        );
    }
    if !(1.0..=600.0).contains(&args.seconds) {
        bail!("--seconds: 1 to 600");
    }
    if args.players == 0 || args.players > 10_000 {
        bail!("--players: 1 to 10,000");
    }
    // A viewer's socket and the relay's side of it.
    crate::fleet::check_open_files(2 * args.players as u64, "ramp to fewer players")?;
    if args.peer == Some(RelayPeer::NginxRtmp) {
        crate::interop::nginx::available()?;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = !args.no_pin && cores >= 2;
    if !args.no_pin && !pinned {
        progress("one core only: the relay and the viewers are not pinned apart".into());
    }
    let mut servers = vec![Server::Glass];
    if args.peer == Some(RelayPeer::NginxRtmp) {
        servers.push(Server::NginxRtmp);
    }
    let ladder = ladder(&args.steps, args.players);
    let mut ramps = Vec::new();
    for server in servers {
        let mut steps: Vec<Step> = Vec::new();
        for &n in &ladder {
            let mut step = measure(server, n, args, pinned)
                .with_context(|| format!("{} with {n} players", server.name()))?;
            let base = steps
                .first()
                .map_or(step.fleet.pooled_p99_ms, |s| s.fleet.pooled_p99_ms);
            step.degraded = degradation(&step.fleet, base, args.knee.get());
            step.knee = step.degraded.is_some() && step.relay_cpu >= BUSY;
            progress(step_line(&step));
            let stop = step.degraded.is_some();
            steps.push(step);
            if stop {
                break;
            }
        }
        let good = steps.iter().rev().find(|s| s.degraded.is_none());
        ramps.push(Ramp {
            server,
            largest_good: good.map(|s| s.players),
            players_per_core: good
                .filter(|s| s.relay_cpu > 0.0)
                .map(|s| s.players as f64 / s.relay_cpu),
            knee_found: steps.iter().any(|s| s.knee),
            steps,
        });
    }
    Ok(RelayBench {
        protocol: args.protocol.clone(),
        bitrate_bps: args.bitrate.bits_per_sec(),
        seconds: args.seconds,
        pinned,
        knee_ms: args.knee.get().as_secs_f64() * 1e3,
        ramps,
    })
}

/// Why a step does not hold, if it does not.
fn degradation(f: &FleetSummary, base_p99_ms: f64, knee: Duration) -> Option<String> {
    let knee_ms = knee.as_secs_f64() * 1e3;
    if f.failed > 0 {
        return Some(format!(
            "{} viewer(s) failed: {}",
            f.failed,
            f.first_error.as_deref().unwrap_or("?")
        ));
    }
    if f.frames == 0 {
        return Some("no frame arrived in the window".into());
    }
    if f.viewers_with_freezes > 0 {
        return Some(format!(
            "{} freeze(s) at {} viewer(s)",
            f.freezes, f.viewers_with_freezes
        ));
    }
    if f.missing_frames > 0 {
        return Some(format!("{} frame(s) never delivered", f.missing_frames));
    }
    if f.pooled_p99_ms > base_p99_ms + knee_ms {
        return Some(format!(
            "p99 {:.1} ms, over one viewer's {:.1} ms + {knee_ms:.0} ms",
            f.pooled_p99_ms, base_p99_ms
        ));
    }
    None
}

/// Pins the calling thread to `core` (no-op without one).
fn pin_to(core: Option<usize>) -> Result<()> {
    core.map_or(Ok(()), |c| set_affinity(0, c))
}

/// Pins another process to `core`.
fn pin_process(pid: u32, core: usize) -> Result<()> {
    set_affinity(pid as libc::pid_t, core)
}

/// sched_setaffinity to one core: `pid` 0 is the calling thread.
fn set_affinity(pid: libc::pid_t, core: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays in bounds
    // for core < CPU_SETSIZE (cores come from available_parallelism ≥ 2:
    // 0 and 1).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(anyhow!(
                "pinning {} to core {core}: {}",
                if pid == 0 {
                    "a thread".to_string()
                } else {
                    format!("process {pid}")
                },
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")
}

/// Glass's relay on a thread of its own (pinned to `core`): the RTMP
/// server and the hub, as `glass run` starts them.
struct GlassRelay {
    addr: SocketAddr,
    cpu: CpuClock,
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl GlassRelay {
    fn start(core: Option<usize>) -> Result<GlassRelay> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("glass-relay".into())
            .spawn(move || {
                let started = (|| {
                    pin_to(core)?;
                    let rt = current_thread_runtime()?;
                    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
                    let addr = listener.local_addr()?;
                    anyhow::Ok((rt, listener, addr))
                })();
                let (rt, listener, addr) = match started {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok((addr, CpuClock::this_thread())));
                let stats = std::sync::Arc::new(std::sync::Mutex::new(RtmpServerStats::default()));
                rt.block_on(serve(listener, None, Hub::new(KEY), None, stop_rx, stats));
            })?;
        let (addr, cpu) = rx
            .recv()
            .map_err(|_| anyhow!("the relay thread ended at start"))??;
        Ok(GlassRelay {
            addr,
            cpu,
            stop,
            thread,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

/// The relay under test, running.
enum Running {
    Glass(GlassRelay),
    Nginx(NginxRtmp, CpuClock),
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Glass(g) => g.addr,
            Running::Nginx(n, _) => n.addr(),
        }
    }
    fn cpu(&self) -> &CpuClock {
        match self {
            Running::Glass(g) => &g.cpu,
            Running::Nginx(_, c) => c,
        }
    }
    fn rss_kib(&self) -> u64 {
        match self {
            Running::Glass(_) => crate::procstat::rss_kib(),
            Running::Nginx(n, _) => crate::procstat::rss_kib_of(n.pid()),
        }
    }
    fn stop(self) -> Option<String> {
        match self {
            Running::Glass(g) => {
                g.stop();
                None
            }
            Running::Nginx(n, _) => {
                let log = n.log();
                drop(n);
                Some(log)
            }
        }
    }
}

/// The stream the publisher sends: `--bitrate` of video (30 fps, 2 s GOP)
/// and 64 kbit/s of audio in 20 ms frames, as a small live channel.
fn encoder(args: &BenchRelayArgs) -> EncoderConfig {
    EncoderConfig {
        bitrate: args.bitrate,
        audio: Some(AudioConfig {
            bitrate: netem::units::BitRate::from_bits_per_sec(64_000),
            frame: Duration::from_millis(20),
        }),
        ..EncoderConfig::default()
    }
}

/// One step: `n` viewers of a fresh relay.
fn measure(server: Server, n: usize, args: &BenchRelayArgs, pinned: bool) -> Result<Step> {
    let (relay_core, load_core) = if pinned {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let running = match server {
        Server::Glass => Running::Glass(GlassRelay::start(relay_core)?),
        Server::NginxRtmp => {
            let nginx = NginxRtmp::start(n + 16)?;
            if let Some(core) = relay_core {
                pin_process(nginx.pid(), core)?;
            }
            let cpu = CpuClock::process(nginx.pid());
            Running::Nginx(nginx, cpu)
        }
    };
    let result = drive(&running, n, args, load_core);
    let log = running.stop();
    result.map_err(|e| match log.filter(|l| !l.trim().is_empty()) {
        Some(l) => e.context(format!("nginx's error log: {}", l.trim())),
        None => e,
    })
}

/// Publishes, lets `n` viewers join at random points of the first GOP,
/// measures the window, and times the relay's core over it.
fn drive(running: &Running, n: usize, args: &BenchRelayArgs, core: Option<usize>) -> Result<Step> {
    let addr = running.addr();
    let cfg = encoder(args);
    let gop = Duration::from_secs_f64(f64::from(cfg.gop) / cfg.fps);
    let clock = Clock::new(Instant::now());
    let t0 = Time::from_millis(100);
    let joins_from = t0 + LEAD;
    let window = Window {
        from: joins_from + gop + SETTLE,
        to: joins_from + gop + SETTLE + Duration::from_secs_f64(args.seconds),
    };
    let end = window.to + Duration::from_millis(100);
    let seeds = SeedTree::new(args.seed).child("bench-relay");

    let publisher = std::thread::Builder::new()
        .name("bench-publisher".into())
        .spawn(move || -> Result<()> {
            pin_to(core)?;
            let rt = current_thread_runtime()?;
            rt.block_on(async move {
                tokio::time::sleep_until(clock.instant(t0).into()).await;
                let sock = tokio::net::TcpStream::connect(addr)
                    .await
                    .context("publisher: connecting")?;
                sock.set_nodelay(true)?;
                let steps = ConnectSteps::new(clock, clock.time(Instant::now()));
                let source_for = move |ready: Time| {
                    Source::Synthetic(Encoder::new(cfg, seeds.child("encoder"), ready))
                };
                publish(Transport::Tcp(sock), KEY, source_for, None, steps, end)
                    .await
                    .context("publisher")
                    .map(drop)
            })
        })?;

    let (cpu_tx, cpu_rx) = std::sync::mpsc::channel();
    let mut rng = seeds.child("joins").rng();
    let joins: Vec<Time> = (0..n)
        .map(|_| joins_from + gop.mul_f64(rng.unit()))
        .collect();
    let viewers = std::thread::Builder::new()
        .name("bench-viewers".into())
        .spawn(move || -> Result<Vec<ViewerLog>> {
            pin_to(core)?;
            let _ = cpu_tx.send(CpuClock::this_thread());
            let rt = current_thread_runtime()?;
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for (i, at) in joins.into_iter().enumerate() {
                    set.spawn(async move { (i, viewer(addr, clock, at, end, window).await) });
                }
                let mut logs = vec![ViewerLog::default(); n];
                while let Some(r) = set.join_next().await {
                    let (i, log) = r.map_err(|e| anyhow!("a viewer task: {e}"))?;
                    logs[i] = log;
                }
                Ok(logs)
            })
        })?;
    let viewers_cpu = cpu_rx
        .recv()
        .map_err(|_| anyhow!("the viewers' thread ended at start"))?;

    // The window's CPU time: read at its edges.
    let sample = |t: Time| {
        std::thread::sleep(clock.instant(t).saturating_duration_since(Instant::now()));
        (
            running.cpu().seconds(),
            viewers_cpu.seconds(),
            Instant::now(),
        )
    };
    let (r0, v0, w0) = sample(window.from);
    let (r1, v1, w1) = sample(window.to);
    let rss_kib = running.rss_kib();
    let logs = viewers
        .join()
        .map_err(|_| anyhow!("the viewers' thread panicked"))??;
    publisher
        .join()
        .map_err(|_| anyhow!("the publisher's thread panicked"))??;
    let wall = (w1 - w0).as_secs_f64().max(1e-3);
    let share = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (b - a) / wall,
        _ => 0.0,
    };
    let relay_cpu = share(r0, r1);
    Ok(Step {
        server: match running {
            Running::Glass(_) => Server::Glass,
            Running::Nginx(..) => Server::NginxRtmp,
        },
        players: n,
        fleet: summarize(&logs),
        relay_cpu,
        viewers_cpu: share(v0, v1),
        relay_cpu_us_per_viewer_s: relay_cpu * 1e6 / n as f64,
        rss_kib,
        degraded: None,
        knee: false,
    })
}

/// One light viewer: joins at `at`, watches until `end`.
async fn viewer(addr: SocketAddr, clock: Clock, at: Time, end: Time, window: Window) -> ViewerLog {
    tokio::time::sleep_until(clock.instant(at).into()).await;
    let mut log = ViewerLog::new(clock.time(Instant::now()));
    let r = async {
        let sock = tokio::net::TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        watch(Transport::Tcp(sock), KEY, clock, end, |w| {
            log.on(w, &window)
        })
        .await
    }
    .await;
    if let Err(e) = r {
        log.error = Some(format!("{e:#}"));
    }
    log
}

fn step_line(s: &Step) -> String {
    let f = &s.fleet;
    format!(
        "{:<10} {:>6} players  p50 {:>7.1} ms  p99 {:>7.1} ms  worst viewer p99 {:>7.1} ms  relay core {:>5.1} %  viewers' core {:>5.1} %  {}",
        s.server.name(),
        s.players,
        f.pooled_p50_ms,
        f.pooled_p99_ms,
        f.viewer_p99_max_ms,
        s.relay_cpu * 100.0,
        s.viewers_cpu * 100.0,
        match (&s.degraded, s.knee) {
            (None, _) => "ok".to_string(),
            (Some(d), true) => format!("KNEE: {d}"),
            (Some(d), false) => format!(
                "degraded ({d}) with the relay's core at {:.0} %: not the relay's knee (the load generator or the machine)",
                s.relay_cpu * 100.0
            ),
        }
    )
}

/// The ramps as tables and a verdict per server.
pub fn render(r: &RelayBench) -> String {
    let mut out = format!(
        "glass bench relay: {} players of one {:.0} kbit/s stream (+64 kbit/s audio) on loopback, {:.0} s per step{}; capture → arrival per frame\n",
        r.protocol,
        r.bitrate_bps as f64 / 1e3,
        r.seconds,
        if r.pinned {
            ", relay pinned to core 0, viewers and publisher to core 1"
        } else {
            ", not pinned"
        }
    );
    for ramp in &r.ramps {
        out.push_str(&format!(
            "\n{}\n{:>8} {:>9} {:>9} {:>12} {:>12} {:>8} {:>8} {:>8} {:>11} {:>10} {:>9}  verdict\n",
            ramp.server.name(),
            "players",
            "p50 ms",
            "p99 ms",
            "viewer p99",
            "worst p99",
            "freezes",
            "missing",
            "join p99",
            "relay core",
            "µs/viewer·s",
            "RSS MiB"
        ));
        for s in &ramp.steps {
            let f = &s.fleet;
            out.push_str(&format!(
                "{:>8} {:>9.1} {:>9.1} {:>12.1} {:>12.1} {:>8} {:>8} {:>8.0} {:>10.1}% {:>10.1} {:>9.1}  {}\n",
                s.players,
                f.pooled_p50_ms,
                f.pooled_p99_ms,
                f.viewer_p99_median_ms,
                f.viewer_p99_max_ms,
                f.freezes,
                f.missing_frames,
                f.join_p99_ms,
                s.relay_cpu * 100.0,
                s.relay_cpu_us_per_viewer_s,
                s.rss_kib as f64 / 1024.0,
                match (&s.degraded, s.knee) {
                    (None, _) => "ok".to_string(),
                    (Some(d), true) => format!("knee: {d}"),
                    (Some(d), false) => format!("degraded, relay core < 90 %: {d}"),
                }
            ));
        }
        out.push_str(&match (ramp.largest_good, ramp.players_per_core) {
            (Some(n), Some(ppc)) => format!(
                "{}: {n} players held{}; at that cost per viewer one core carries ≈ {ppc:.0} players\n",
                ramp.server.name(),
                if ramp.knee_found {
                    ", the next step was the relay's knee"
                } else {
                    " (no knee found: the ramp ended before the relay's core was full)"
                }
            ),
            _ => format!("{}: no step held\n", ramp.server.name()),
        });
    }
    out.push_str(
        "\nRSS: nginx-rtmp's process; Glass's whole process (its relay shares it with the viewers and the publisher).\n",
    );
    if let [a, b] = &r.ramps[..]
        && let (Some(x), Some(y)) = (a.players_per_core, b.players_per_core)
    {
        out.push_str(&format!(
            "\nplayers per core, {} / {}: {:.2}\n",
            a.server.name(),
            b.server.name(),
            x / y
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_starts_at_one_and_ends_at_the_most() {
        assert_eq!(ladder(&[], 300), vec![1, 50, 100, 200, 300]);
        assert_eq!(ladder(&[], 1), vec![1]);
        assert_eq!(ladder(&[10, 20, 5000], 100), vec![1, 10, 20]);
    }

    #[test]
    fn a_step_degrades_on_p99_freezes_losses_or_failures() {
        let ok = FleetSummary {
            viewers: 10,
            frames: 100,
            pooled_p99_ms: 40.0,
            ..FleetSummary::default()
        };
        let knee = Duration::from_millis(50);
        assert_eq!(degradation(&ok, 5.0, knee), None);
        assert!(degradation(&ok, 5.0, Duration::from_millis(20)).is_some());
        let frozen = FleetSummary {
            freezes: 2,
            viewers_with_freezes: 1,
            ..ok.clone()
        };
        assert!(degradation(&frozen, 40.0, knee).unwrap().contains("freeze"));
        let failed = FleetSummary {
            failed: 1,
            first_error: Some("refused".into()),
            ..ok.clone()
        };
        assert!(
            degradation(&failed, 40.0, knee)
                .unwrap()
                .contains("refused")
        );
        let empty = FleetSummary { frames: 0, ..ok };
        assert!(degradation(&empty, 40.0, knee).is_some());
    }
}
