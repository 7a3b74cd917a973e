//! Link mode: the hosts of a Glass topology ([`Graph`]), each in a network
//! namespace with a TUN device, and the engine forwarding IP packets between
//! them along the topology's links. The default is three hosts:
//!
//! ```text
//!  publisher 198.18.1.1 ──first mile──▶ server 198.18.0.1 ──last mile──▶ player 198.18.2.1
//! ```
//!
//! Each TUN has its address with a /15 prefix, so the whole 198.18.0.0/15
//! (RFC 2544's benchmarking range) routes through it. One reader thread per
//! TUN hands packets to one engine thread, which owns a [`Pipeline`] per link
//! direction and writes each packet to its destination's TUN at the
//! packet's release instant (sleep, then spin: see [`super::timer`]). A
//! packet crosses every link on its route, one pipeline after the other
//! (publisher ↔ player traffic crosses both miles), so a route's delay is
//! the sum of its links' and a link shared by several routes is one queue. Packets outside 198.18.0.0/15 (IPv6
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
use super::graph::{Direction, Graph};
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

    /// Its direction in [`Graph::three_hosts`].
    pub fn index(self) -> usize {
        match self {
            LinkDir::FirstMileUp => 0,
            LinkDir::FirstMileDown => 1,
            LinkDir::LastMileUp => 2,
            LinkDir::LastMileDown => 3,
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
    /// Packets released more than [`LATE_RELEASE`] late.
    pub late: u64,
    /// When the first of them was due (ms after the link started).
    pub first_late_at_ms: Option<f64>,
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

/// What the link did, for any topology: per direction by its label
/// (`NAME-uplink`, `NAME-downlink`), kernel drops per host by name.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GraphStats {
    pub directions: BTreeMap<String, Counters>,
    pub unroutable: u64,
    pub kernel_drops: BTreeMap<String, u64>,
    pub release_error: ReleaseError,
}

impl GraphStats {
    /// Each direction's counters under its label (labels and pipelines in
    /// the graph's direction order).
    pub fn counters_by_label<P: crate::packet::Payload>(
        labels: &[String],
        pipes: &[crate::pipeline::Pipeline<P>],
    ) -> BTreeMap<String, Counters> {
        labels
            .iter()
            .zip(pipes)
            .map(|(l, p)| (l.clone(), p.counters().clone()))
            .collect()
    }

    /// One direction's counters, by label.
    pub fn counters(&self, label: &str) -> Counters {
        self.directions.get(label).cloned().unwrap_or_default()
    }
}

impl From<&GraphStats> for LinkStats {
    /// The three-host layout's view (other labels and hosts are left out).
    fn from(g: &GraphStats) -> LinkStats {
        LinkStats::of_group(g, "last_mile", "player")
    }
}

impl LinkStats {
    /// The view of one player group of a [`Graph::star`]: the first mile,
    /// and the group's link `last_mile` and host `player` as the last mile
    /// and the player (other labels and hosts are left out).
    pub fn of_group(g: &GraphStats, last_mile: &str, player: &str) -> LinkStats {
        let label = |d: LinkDir| match d {
            LinkDir::LastMileUp => format!("{last_mile}-uplink"),
            LinkDir::LastMileDown => format!("{last_mile}-downlink"),
            d => d.label().to_string(),
        };
        let host = |h: Host| match h {
            Host::Player => player,
            h => h.name(),
        };
        LinkStats {
            directions: LinkDir::ALL
                .iter()
                .filter_map(|&d| Some((d, g.directions.get(&label(d))?.clone())))
                .collect(),
            unroutable: g.unroutable,
            kernel_drops: Host::ALL
                .iter()
                .filter_map(|&h| Some((h, *g.kernel_drops.get(host(h))?)))
                .collect(),
            release_error: g.release_error.clone(),
        }
    }
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
    from: usize,
    buf: Vec<u8>,
    at: Instant,
}

/// Largest packet a TUN hands us (MTU 1500, no offloads), with room to spare.
const BUF: usize = 2048;
/// Packets in flight between readers and the engine before readers wait.
const QUEUE: usize = 65_536;

/// A running link: a namespace and a TUN device per host, an impaired
/// pipeline per link direction.
pub struct LinkNetwork {
    graph: Graph,
    hosts: Vec<NetNs>,
    /// The veth backend's switch namespace (kept alive with the link).
    _switch: Option<NetNs>,
    backend: Backend,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    engine: Option<JoinHandle<io::Result<GraphStats>>>,
    stats: Arc<Mutex<GraphStats>>,
}

/// What to build besides the topology.
#[derive(Clone, Debug, Default)]
pub struct GraphOptions {
    pub seed: u64,
    /// Write `in`/`out` pcap files per direction here.
    pub capture_dir: Option<PathBuf>,
    /// TUN devices, veth pairs, or whichever works.
    pub backend: Backend,
    /// Fault injection: at this instant after the start the engine thread
    /// sleeps this long, as a busy machine would stall it. Glass's runs
    /// use it to show that a late engine is noticed (see
    /// [`ReleaseError::late`]), never to shape traffic.
    pub stall: Option<(Duration, Duration)>,
}

/// A packet released later than this after its instant counts as late: the
/// engine fell behind (a stalled thread, an overloaded machine), and
/// figures around it measure the machine, not the network. Release error
/// is tens of µs at p99 and a few ms at worst on a quiet machine.
pub const LATE_RELEASE: Duration = Duration::from_millis(20);

impl LinkNetwork {
    /// Builds the three-host layout's namespaces and devices and starts
    /// forwarding.
    pub fn start(cfg: LinkConfig) -> io::Result<LinkNetwork> {
        LinkNetwork::start_graph(
            Graph::three_hosts(cfg.first_mile, cfg.last_mile),
            GraphOptions {
                seed: cfg.seed,
                capture_dir: cfg.capture_dir,
                backend: cfg.backend,
                stall: None,
            },
        )
    }

    /// Builds a namespace and a device per host of `graph` and starts
    /// forwarding along its links.
    pub fn start_graph(graph: Graph, cfg: GraphOptions) -> io::Result<LinkNetwork> {
        let hosts = graph
            .hosts()
            .iter()
            .map(|h| NetNs::new(&h.name))
            .collect::<io::Result<Vec<_>>>()?;
        let tun = || -> io::Result<Vec<Arc<dyn Port>>> {
            graph
                .hosts()
                .iter()
                .zip(&hosts)
                .map(|(h, ns)| TunPort::create(ns, h.addr).map(|p| Arc::new(p) as Arc<dyn Port>))
                .collect()
        };
        let (ports, backend, switch) = match cfg.backend {
            Backend::Tun => (tun().map_err(explain_tun_error)?, Backend::Tun, None),
            Backend::Auto => match tun() {
                Ok(p) => (p, Backend::Tun, None),
                // No access to /dev/net/tun (a user namespace, a 0600 node): veth.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    let (p, s) = veth_ports(&graph, &hosts)?;
                    (p, Backend::Veth, Some(s))
                }
                Err(e) => return Err(e),
            },
            Backend::Veth => {
                let (p, s) = veth_ports(&graph, &hosts)?;
                (p, Backend::Veth, Some(s))
            }
        };
        let clock = Clock::new(Instant::now());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel::<Inbound>(QUEUE);
        let (pool_tx, pool_rx) = mpsc::channel::<Vec<u8>>();
        let pool_rx = Arc::new(Mutex::new(pool_rx));
        let mut threads = Vec::new();
        for (host, spec) in graph.hosts().iter().enumerate() {
            let (dev, tx, stop, pool) = (
                ports[host].clone(),
                tx.clone(),
                stop.clone(),
                pool_rx.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("glass-tun-{}", spec.name))
                    .spawn(move || read_loop(host, &dev, &tx, &stop, &pool))?,
            );
        }
        drop(tx);
        let seeds = SeedTree::new(cfg.seed);
        let labels: Vec<String> = graph.directions().map(|(_, l)| l).collect();
        let mut pipes: Vec<Pipeline<Vec<u8>>> = graph
            .directions()
            .map(|(d, label)| Pipeline::new(graph.profile(d), seeds.child(&label)))
            .collect();
        let captures = match &cfg.capture_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let start = SystemTime::now();
                let mut caps = Vec::new();
                for label in &labels {
                    caps.push(Captures {
                        input: Capture::create(&dir.join(format!("{label}-in.pcap")), start)?,
                        output: Capture::create(&dir.join(format!("{label}-out.pcap")), start)?,
                        dropped: DropCapture::create(
                            &dir.join(format!("{label}-dropped.pcapng")),
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
        let stats = Arc::new(Mutex::new(GraphStats::default()));
        let engine = Engine {
            clock,
            graph: graph.clone(),
            labels,
            pipes,
            ports,
            rx,
            pool: pool_tx,
            captures,
            release_error: Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(io::Error::other)?,
            late: 0,
            first_late_at: None,
            stall: cfg.stall,
            unroutable: 0,
            shared: stats.clone(),
        };
        let engine_stop = stop.clone();
        let engine = std::thread::Builder::new()
            .name("glass-link".into())
            .spawn(move || engine.run(&engine_stop))?;
        Ok(LinkNetwork {
            graph,
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

    /// The topology it runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The namespace of the host called `name`.
    pub fn namespace_of(&self, name: &str) -> Option<&NetNs> {
        self.graph.host(name).map(|i| &self.hosts[i])
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

    /// The latest counters (updated by the engine as it goes), in the
    /// three-host layout's terms.
    pub fn stats(&self) -> LinkStats {
        LinkStats::from(&self.graph_stats())
    }

    /// The latest counters, per direction label and host name.
    pub fn graph_stats(&self) -> GraphStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops forwarding and returns the final figures (captures flushed),
    /// in the three-host layout's terms.
    pub fn stop(mut self) -> io::Result<LinkStats> {
        self.shutdown().map(|g| LinkStats::from(&g))
    }

    /// Stops forwarding and returns the final figures of any topology.
    pub fn stop_graph(mut self) -> io::Result<GraphStats> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<GraphStats> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        match self.engine.take() {
            Some(e) => e
                .join()
                .map_err(|_| io::Error::other("link engine panicked"))?,
            None => Ok(self.graph_stats()),
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

fn veth_ports(graph: &Graph, hosts: &[NetNs]) -> io::Result<(Vec<Arc<dyn Port>>, NetNs)> {
    let switch = NetNs::new("switch")?;
    let mut ports: Vec<Arc<dyn Port>> = Vec::new();
    for (i, (h, ns)) in graph.hosts().iter().zip(hosts).enumerate() {
        let index = u8::try_from(i)
            .map_err(|_| io::Error::other("the veth backend takes at most 256 hosts"))?;
        ports.push(Arc::new(PacketPort::create(ns, &switch, index, h.addr)?));
    }
    Ok((ports, switch))
}

fn read_loop(
    host: usize,
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
    graph: Graph,
    /// Each direction's label, by index.
    labels: Vec<String>,
    pipes: Vec<Pipeline<Vec<u8>>>,
    /// Each host's device, by index.
    ports: Vec<Arc<dyn Port>>,
    rx: Receiver<Inbound>,
    pool: Sender<Vec<u8>>,
    captures: Option<Vec<Captures>>,
    release_error: Histogram<u64>,
    late: u64,
    first_late_at: Option<Time>,
    stall: Option<(Duration, Duration)>,
    unroutable: u64,
    shared: Arc<Mutex<GraphStats>>,
}

impl Engine {
    fn run(mut self, stop: &AtomicBool) -> io::Result<GraphStats> {
        let mut last_publish = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if let Some((at, stall)) = self.stall
                && self.clock.time(now).since_start() >= at
            {
                self.stall = None;
                std::thread::sleep(stall);
            }
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
            Some(4) if p.buf.len() >= 20 => self
                .graph
                .host_at(Ipv4Addr::new(p.buf[16], p.buf[17], p.buf[18], p.buf[19])),
            _ => None,
        };
        let Some(dir) = dst.and_then(|dst| self.graph.next(p.from, dst)) else {
            self.unroutable += 1;
            let _ = self.pool.send(p.buf);
            return;
        };
        let now = self.clock.time(p.at);
        self.push_into(dir, now, p.buf);
    }

    fn push_into(&mut self, dir: Direction, now: Time, buf: Vec<u8>) {
        let i = dir.index();
        let flow = FlowMeta::from_ip_packet(&buf);
        match &mut self.captures {
            Some(caps) => {
                let cap = &mut caps[i];
                let _ = cap.input.write(now, &buf);
                let copy = buf.clone();
                let id = self.pipes[i].push(now, flow, buf);
                cap.in_flight.insert(id, copy);
                let _ = cap.follow(&mut self.pipes[i]);
            }
            None => {
                self.pipes[i].push(now, flow, buf);
            }
        }
    }

    fn release(&mut self) -> io::Result<()> {
        let now = self.clock.time(Instant::now());
        for i in 0..self.pipes.len() {
            while let Some(d) = self.pipes[i].poll_transmit(now) {
                self.deliver(Direction::from_index(i), d)?;
            }
            if let Some(caps) = &mut self.captures {
                caps[i].follow(&mut self.pipes[i])?;
            }
        }
        Ok(())
    }

    fn deliver(&mut self, dir: Direction, d: Delivery<Vec<u8>>) -> io::Result<()> {
        if let Some(caps) = &mut self.captures {
            let _ = caps[dir.index()].output.write(d.released_at, &d.payload);
        }
        let hop = self.graph.head(dir);
        let dst = match d.flow.dst {
            Some(IpAddr::V4(ip)) => self.graph.host_at(ip),
            _ => None,
        };
        match dst {
            Some(dst) if dst != hop => {
                // Not there yet: on to the next link of the route.
                if let Some(next) = self.graph.next(hop, dst) {
                    self.push_into(next, d.released_at, d.payload);
                }
            }
            _ => {
                let late =
                    Instant::now().saturating_duration_since(self.clock.instant(d.released_at));
                let _ = self.release_error.record((late.as_micros() as u64).max(1));
                if late > LATE_RELEASE {
                    self.late += 1;
                    self.first_late_at.get_or_insert(d.released_at);
                }
                match self.ports[hop].send(&d.payload) {
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
        let stats = GraphStats {
            directions: GraphStats::counters_by_label(&self.labels, &self.pipes),
            unroutable: self.unroutable,
            kernel_drops: self
                .graph
                .hosts()
                .iter()
                .zip(&self.ports)
                .map(|(h, p)| (h.name.clone(), p.kernel_drops()))
                .collect(),
            release_error: ReleaseError {
                packets: h.len(),
                p50_us: q(0.5),
                p90_us: q(0.9),
                p99_us: q(0.99),
                p999_us: q(0.999),
                max_us: h.max() as f64,
                late: self.late,
                first_late_at_ms: self.first_late_at.map(|t| t.as_secs_f64() * 1e3),
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
