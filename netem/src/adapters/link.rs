//! Link mode: the three hosts of a Glass topology, each in a network namespace
//! with a TUN device, and the engine forwarding IP packets between them.
//!
//! ```text
//!  publisher 198.18.1.1 ──first mile──▶ server 198.18.0.1 ──last mile──▶ player 198.18.2.1
//! ```
//!
//! Each TUN has its address with a /15 prefix, so the whole 198.18.0.0/15
//! (RFC 2544's benchmarking range) routes through it. One reader thread per
//! TUN hands packets to one engine thread, which owns a [`Pipeline`] per link
//! direction and writes each packet to its next hop's TUN at the packet's
//! release instant (sleep, then spin: see [`super::timer`]). Publisher ↔
//! player traffic crosses both links. Packets outside 198.18.0.0/15 (IPv6
//! router solicitations the kernel sends on a new interface) are counted and
//! dropped. Buffers are recycled, so forwarding does not allocate per packet.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::capture::{Capture, DropCapture};
use super::netns::NetNs;
use super::port::{Backend, PacketPort, Port, TunPort};
use super::timer;
use crate::event::{Counters, EventKind};
use crate::flow::FlowMeta;
use crate::packet::{Delivery, PacketId};
use crate::pipeline::Pipeline;
use crate::rng::SeedTree;
use crate::spec::Profile;
use crate::time::{Clock, Time};

/// A host of the topology.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Host {
    Publisher,
    Server,
    Player,
}

impl Host {
    pub const ALL: [Host; 3] = [Host::Publisher, Host::Server, Host::Player];

    pub fn addr(self) -> Ipv4Addr {
        match self {
            Host::Server => Ipv4Addr::new(198, 18, 0, 1),
            Host::Publisher => Ipv4Addr::new(198, 18, 1, 1),
            Host::Player => Ipv4Addr::new(198, 18, 2, 1),
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_addr(ip: Ipv4Addr) -> Option<Host> {
        Host::ALL.into_iter().find(|h| h.addr() == ip)
    }

    pub fn name(self) -> &'static str {
        match self {
            Host::Publisher => "publisher",
            Host::Server => "server",
            Host::Player => "player",
        }
    }
}

/// One direction of one link.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkDir {
    /// Publisher → server.
    FirstMileUp,
    /// Server → publisher.
    FirstMileDown,
    /// Server → player.
    LastMileDown,
    /// Player → server.
    LastMileUp,
}

impl LinkDir {
    pub const ALL: [LinkDir; 4] = [
        LinkDir::FirstMileUp,
        LinkDir::FirstMileDown,
        LinkDir::LastMileDown,
        LinkDir::LastMileUp,
    ];

    /// `first_mile-uplink` and so on: file names, seeds, reports.
    pub fn label(self) -> &'static str {
        match self {
            LinkDir::FirstMileUp => "first_mile-uplink",
            LinkDir::FirstMileDown => "first_mile-downlink",
            LinkDir::LastMileDown => "last_mile-downlink",
            LinkDir::LastMileUp => "last_mile-uplink",
        }
    }

    fn to(self) -> Host {
        match self {
            LinkDir::FirstMileUp | LinkDir::LastMileUp => Host::Server,
            LinkDir::FirstMileDown => Host::Publisher,
            LinkDir::LastMileDown => Host::Player,
        }
    }

    /// The first link a packet from `from` to `to` crosses.
    fn route(from: Host, to: Host) -> Option<LinkDir> {
        use Host::*;
        match (from, to) {
            (Publisher, Server | Player) => Some(LinkDir::FirstMileUp),
            (Player, Server | Publisher) => Some(LinkDir::LastMileUp),
            (Server, Publisher) => Some(LinkDir::FirstMileDown),
            (Server, Player) => Some(LinkDir::LastMileDown),
            _ => None,
        }
    }
}

/// What to build.
#[derive(Clone, Debug, Default)]
pub struct LinkConfig {
    /// (uplink, downlink) of the first mile.
    pub first_mile: (Profile, Profile),
    /// (uplink, downlink) of the last mile.
    pub last_mile: (Profile, Profile),
    pub seed: u64,
    /// Write `in`/`out` pcap files per direction here.
    pub capture_dir: Option<PathBuf>,
    /// TUN devices, veth pairs, or whichever works.
    pub backend: Backend,
}

/// Release precision: how late packets left compared with their instant.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReleaseError {
    pub packets: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// What the link did, per direction.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LinkStats {
    /// Keyed by direction, so results read `link.directions.first_mile_up`.
    pub directions: BTreeMap<LinkDir, Counters>,
    /// Packets that were not for a Glass host (dropped, not impaired).
    pub unroutable: u64,
    /// Packets the kernel dropped before the engine could read them (its
    /// queue towards Glass overflowed: the engine fell behind), per host.
    /// Not part of the impairment; non-zero means the link was overloaded.
    pub kernel_drops: BTreeMap<Host, u64>,
    pub release_error: ReleaseError,
}

impl LinkStats {
    /// All packets the kernel dropped before the engine read them.
    pub fn total_kernel_drops(&self) -> u64 {
        self.kernel_drops.values().sum()
    }

    pub fn counters(&self, dir: LinkDir) -> Counters {
        self.directions.get(&dir).cloned().unwrap_or_default()
    }
}

struct Inbound {
    from: Host,
    buf: Vec<u8>,
    at: Instant,
}

/// Largest packet a TUN hands us (MTU 1500, no offloads), with room to spare.
const BUF: usize = 2048;
/// Packets in flight between readers and the engine before readers wait.
const QUEUE: usize = 65_536;

/// A running link: three namespaces, three TUN devices, four impaired directions.
pub struct LinkNetwork {
    hosts: [NetNs; 3],
    /// The veth backend's switch namespace (kept alive with the link).
    _switch: Option<NetNs>,
    backend: Backend,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    engine: Option<JoinHandle<io::Result<LinkStats>>>,
    stats: Arc<Mutex<LinkStats>>,
}

impl LinkNetwork {
    /// Builds the namespaces and devices and starts forwarding.
    pub fn start(cfg: LinkConfig) -> io::Result<LinkNetwork> {
        let hosts = [
            NetNs::new("publisher")?,
            NetNs::new("server")?,
            NetNs::new("player")?,
        ];
        let tun = || -> io::Result<Vec<Arc<dyn Port>>> {
            Host::ALL
                .iter()
                .map(|h| {
                    TunPort::create(&hosts[h.index()], h.addr())
                        .map(|p| Arc::new(p) as Arc<dyn Port>)
                })
                .collect()
        };
        let (ports, backend, switch) = match cfg.backend {
            Backend::Tun => (tun().map_err(explain_tun_error)?, Backend::Tun, None),
            Backend::Auto => match tun() {
                Ok(p) => (p, Backend::Tun, None),
                // No access to /dev/net/tun (a user namespace, a 0600 node): veth.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    let (p, s) = veth_ports(&hosts)?;
                    (p, Backend::Veth, Some(s))
                }
                Err(e) => return Err(e),
            },
            Backend::Veth => {
                let (p, s) = veth_ports(&hosts)?;
                (p, Backend::Veth, Some(s))
            }
        };
        let clock = Clock::new(Instant::now());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel::<Inbound>(QUEUE);
        let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
        let pool_rx = Arc::new(Mutex::new(pool_rx));
        let mut threads = Vec::new();
        for host in Host::ALL {
            let (dev, tx, stop, pool) = (
                ports[host.index()].clone(),
                tx.clone(),
                stop.clone(),
                pool_rx.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("glass-tun-{}", host.name()))
                    .spawn(move || read_loop(host, &dev, &tx, &stop, &pool))?,
            );
        }
        drop(tx);
        let seeds = SeedTree::new(cfg.seed);
        let mut pipes = LinkDir::ALL.map(|d| {
            let profile = match d {
                LinkDir::FirstMileUp => &cfg.first_mile.0,
                LinkDir::FirstMileDown => &cfg.first_mile.1,
                LinkDir::LastMileUp => &cfg.last_mile.0,
                LinkDir::LastMileDown => &cfg.last_mile.1,
            };
            Pipeline::new(profile, seeds.child(d.label()))
        });
        let captures = match &cfg.capture_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let start = SystemTime::now();
                let mut caps = Vec::new();
                for d in LinkDir::ALL {
                    caps.push(Captures {
                        input: Capture::create(&dir.join(format!("{}-in.pcap", d.label())), start)?,
                        output: Capture::create(
                            &dir.join(format!("{}-out.pcap", d.label())),
                            start,
                        )?,
                        dropped: DropCapture::create(
                            &dir.join(format!("{}-dropped.pcapng", d.label())),
                            start,
                        )?,
                        in_flight: HashMap::new(),
                    });
                }
                Some(caps)
            }
            None => None,
        };
        if captures.is_some() {
            // Drop captures need to know which packet was dropped, and why.
            for p in &mut pipes {
                p.record_events(1 << 20);
            }
        }
        let stats = Arc::new(Mutex::new(LinkStats::default()));
        let engine = Engine {
            clock,
            pipes,
            ports: [ports[0].clone(), ports[1].clone(), ports[2].clone()],
            rx,
            pool: pool_tx,
            captures,
            release_error: Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(io::Error::other)?,
            unroutable: 0,
            shared: stats.clone(),
        };
        let engine_stop = stop.clone();
        let engine = std::thread::Builder::new()
            .name("glass-link".into())
            .spawn(move || engine.run(&engine_stop))?;
        Ok(LinkNetwork {
            hosts,
            _switch: switch,
            backend,
            stop,
            threads,
            engine: Some(engine),
            stats,
        })
    }

    pub fn addr(&self, host: Host) -> Ipv4Addr {
        host.addr()
    }

    /// The data path in use (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn namespace(&self, host: Host) -> &NetNs {
        &self.hosts[host.index()]
    }

    /// Runs `f` inside `host`'s namespace: sockets it creates live there.
    pub fn run_in<T: Send>(
        &self,
        host: Host,
        f: impl FnOnce() -> io::Result<T> + Send,
    ) -> io::Result<T> {
        self.namespace(host).run(f)
    }

    /// A command that will start inside `host` and die with Glass.
    pub fn command(&self, host: Host, program: &str) -> io::Result<Command> {
        let mut cmd = Command::new(program);
        self.namespace(host).prepare_command(&mut cmd)?;
        Ok(cmd)
    }

    /// The latest counters (updated by the engine as it goes).
    pub fn stats(&self) -> LinkStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops forwarding and returns the final figures (captures flushed).
    pub fn stop(mut self) -> io::Result<LinkStats> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<LinkStats> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        match self.engine.take() {
            Some(e) => e
                .join()
                .map_err(|_| io::Error::other("link engine panicked"))?,
            None => Ok(self.stats()),
        }
    }
}

impl Drop for LinkNetwork {
    fn drop(&mut self) {
        if self.engine.is_some() {
            let _ = self.shutdown();
        }
    }
}

fn explain_tun_error(e: io::Error) -> io::Error {
    if e.kind() != io::ErrorKind::PermissionDenied {
        return e;
    }
    let mode = std::fs::metadata("/dev/net/tun")
        .map(|m| {
            format!(
                "{:o}",
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777
            )
        })
        .unwrap_or_else(|_| "missing".into());
    io::Error::new(
        e.kind(),
        format!(
            "cannot open /dev/net/tun (mode {mode}): {e}. Run Glass as root, or have an administrator \
             make the device usable by everyone (`chmod 0666 /dev/net/tun`, Debian's default); \
             proxy mode (`glass proxy`) needs neither"
        ),
    )
}

fn veth_ports(hosts: &[NetNs; 3]) -> io::Result<(Vec<Arc<dyn Port>>, NetNs)> {
    let switch = NetNs::new("switch")?;
    let mut ports: Vec<Arc<dyn Port>> = Vec::new();
    for h in Host::ALL {
        ports.push(Arc::new(PacketPort::create(
            &hosts[h.index()],
            &switch,
            h.index() as u8,
            h.addr(),
        )?));
    }
    Ok((ports, switch))
}

fn read_loop(
    host: Host,
    dev: &Arc<dyn Port>,
    tx: &SyncSender<Inbound>,
    stop: &AtomicBool,
    pool: &Mutex<Receiver<Vec<u8>>>,
) {
    let fd = dev.fd();
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a 50 ms timeout lets the loop see `stop`.
        let ready = unsafe { libc::poll(&mut pfd, 1, 50) };
        if ready <= 0 {
            continue;
        }
        let mut buf = pool
            .lock()
            .ok()
            .and_then(|p| p.try_recv().ok())
            .unwrap_or_default();
        buf.resize(BUF, 0);
        match dev.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                let mut item = Inbound {
                    from: host,
                    buf,
                    at: Instant::now(),
                };
                // Back-pressure instead of unbounded memory: wait while the engine is behind.
                loop {
                    match tx.try_send(item) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            item = back;
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// A direction's three capture files, and the packets in flight (to write a
/// dropped one with its bytes).
struct Captures {
    input: Capture,
    output: Capture,
    dropped: DropCapture,
    in_flight: HashMap<PacketId, Vec<u8>>,
}

impl Captures {
    /// Follows the pipeline's events: remembers pushed and duplicated packets,
    /// writes dropped ones, forgets delivered ones.
    fn follow(&mut self, pipe: &mut Pipeline<Vec<u8>>) -> io::Result<()> {
        while let Some(e) = pipe.poll_event() {
            let reason = match e.kind {
                EventKind::Duplicated { copy } => {
                    if let Some(bytes) = self.in_flight.get(&e.packet).cloned() {
                        self.in_flight.insert(copy, bytes);
                    }
                    continue;
                }
                EventKind::Delivered { .. } => {
                    self.in_flight.remove(&e.packet);
                    continue;
                }
                EventKind::Lost => "loss",
                EventKind::DroppedQueue => "queue full",
                EventKind::DroppedAqm => "aqm (CoDel)",
                EventKind::DroppedOutage => "outage",
                _ => continue,
            };
            if let Some(bytes) = self.in_flight.remove(&e.packet) {
                self.dropped.write(e.at, &bytes, reason)?;
            }
        }
        Ok(())
    }
}

struct Engine {
    clock: Clock,
    pipes: [Pipeline<Vec<u8>>; 4],
    ports: [Arc<dyn Port>; 3],
    rx: Receiver<Inbound>,
    pool: Sender<Vec<u8>>,
    captures: Option<Vec<Captures>>,
    release_error: Histogram<u64>,
    unroutable: u64,
    shared: Arc<Mutex<LinkStats>>,
}

impl Engine {
    fn run(mut self, stop: &AtomicBool) -> io::Result<LinkStats> {
        let mut last_publish = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let deadline = self.next_deadline();
            let now = Instant::now();
            let sleep = match deadline {
                Some(d) => timer::sleep_budget(now, d),
                None => Some(Duration::from_millis(50)),
            };
            if let Some(sleep) = sleep {
                match self.rx.recv_timeout(sleep.min(Duration::from_millis(50))) {
                    Ok(p) => self.push(p),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while let Ok(p) = self.rx.try_recv() {
                self.push(p);
            }
            if let Some(d) = self.next_deadline()
                && timer::sleep_budget(Instant::now(), d).is_none()
            {
                timer::spin_until(d, || false);
            }
            self.release()?;
            if last_publish.elapsed() > Duration::from_millis(20) {
                self.publish();
                last_publish = Instant::now();
            }
        }
        for c in self.captures.take().into_iter().flatten() {
            c.input.finish()?;
            c.output.finish()?;
            c.dropped.finish()?;
        }
        self.publish();
        Ok(self.shared.lock().map(|s| s.clone()).unwrap_or_default())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pipes
            .iter()
            .filter_map(Pipeline::poll_timeout)
            .min()
            .map(|t| self.clock.instant(t))
    }

    fn push(&mut self, p: Inbound) {
        let dst = match p.buf.first().map(|b| b >> 4) {
            Some(4) if p.buf.len() >= 20 => {
                Host::from_addr(Ipv4Addr::new(p.buf[16], p.buf[17], p.buf[18], p.buf[19]))
            }
            _ => None,
        };
        let Some(dir) = dst.and_then(|dst| LinkDir::route(p.from, dst)) else {
            self.unroutable += 1;
            let _ = self.pool.send(p.buf);
            return;
        };
        let now = self.clock.time(p.at);
        self.push_into(dir, now, p.buf);
    }

    fn push_into(&mut self, dir: LinkDir, now: Time, buf: Vec<u8>) {
        let flow = FlowMeta::from_ip_packet(&buf);
        match &mut self.captures {
            Some(caps) => {
                let cap = &mut caps[dir as usize];
                let _ = cap.input.write(now, &buf);
                let copy = buf.clone();
                let id = self.pipes[dir as usize].push(now, flow, buf);
                cap.in_flight.insert(id, copy);
                let _ = cap.follow(&mut self.pipes[dir as usize]);
            }
            None => {
                self.pipes[dir as usize].push(now, flow, buf);
            }
        }
    }

    fn release(&mut self) -> io::Result<()> {
        let now = self.clock.time(Instant::now());
        for dir in LinkDir::ALL {
            while let Some(d) = self.pipes[dir as usize].poll_transmit(now) {
                self.deliver(dir, d)?;
            }
            if let Some(caps) = &mut self.captures {
                caps[dir as usize].follow(&mut self.pipes[dir as usize])?;
            }
        }
        Ok(())
    }

    fn deliver(&mut self, dir: LinkDir, d: Delivery<Vec<u8>>) -> io::Result<()> {
        if let Some(caps) = &mut self.captures {
            let _ = caps[dir as usize].output.write(d.released_at, &d.payload);
        }
        let hop = dir.to();
        let dst = match d.flow.dst {
            Some(IpAddr::V4(ip)) => Host::from_addr(ip),
            _ => None,
        };
        match dst {
            Some(dst) if dst != hop => {
                // Publisher ↔ player: on to the other link, from the server.
                if let Some(next) = LinkDir::route(hop, dst) {
                    self.push_into(next, d.released_at, d.payload);
                }
            }
            _ => {
                let late =
                    Instant::now().saturating_duration_since(self.clock.instant(d.released_at));
                let _ = self.release_error.record((late.as_micros() as u64).max(1));
                match self.ports[hop.index()].send(&d.payload) {
                    Ok(_) => {}
                    // The receiving host's stack refused it (e.g. no route): a drop, not a failure.
                    Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {}
                    Err(e) => return Err(e),
                }
                let _ = self.pool.send(d.payload);
            }
        }
        Ok(())
    }

    fn publish(&self) {
        let h = &self.release_error;
        let q = |p: f64| h.value_at_quantile(p) as f64;
        let stats = LinkStats {
            directions: LinkDir::ALL
                .iter()
                .map(|&d| (d, self.pipes[d as usize].counters().clone()))
                .collect(),
            unroutable: self.unroutable,
            kernel_drops: Host::ALL
                .iter()
                .map(|&h| (h, self.ports[h.index()].kernel_drops()))
                .collect(),
            release_error: ReleaseError {
                packets: h.len(),
                p50_us: q(0.5),
                p90_us: q(0.9),
                p99_us: q(0.99),
                p999_us: q(0.999),
                max_us: h.max() as f64,
            },
        };
        if let Ok(mut s) = self.shared.lock() {
            *s = stats;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_serialise_as_maps_keyed_by_name() {
        let mut stats = LinkStats::default();
        stats.directions.insert(
            LinkDir::FirstMileUp,
            Counters {
                pushed: 3,
                ..Counters::default()
            },
        );
        stats.kernel_drops.insert(Host::Publisher, 0);
        let v = serde_json::to_value(&stats).unwrap();
        assert_eq!(v["directions"]["first_mile_up"]["pushed"], 3);
        assert_eq!(v["kernel_drops"]["publisher"], 0);
        assert_eq!(stats.counters(LinkDir::FirstMileUp).pushed, 3);
        assert_eq!(stats.counters(LinkDir::LastMileUp), Counters::default());
    }
}
