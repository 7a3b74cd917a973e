//! Link mode: the hosts of a Glass topology ([`Graph`]), each in a network
//! namespace with a TUN device, and the engine forwarding IP packets between
//! them along the topology's links. The default is three hosts:
//!
//! ```text
//!  publisher 198.18.1.1 ──first mile──▶ server 198.18.0.1 ──last mile──▶ player 198.18.2.1
//! ```
//!
//! Each TUN has its address with a /15 prefix, so the whole 198.18.0.0/15
//! (RFC 2544's benchmarking range) routes through it. One engine thread does
//! all the I/O: it polls every TUN, stamps each packet with the instant it
//! read it, runs it through a [`Pipeline`] per link direction and writes it
//! to its destination's TUN at its release instant (wait in `ppoll`, then
//! spin: see [`super::timer`]); packets due together are written together.
//! A packet crosses every link on its route, one pipeline after the other
//! (publisher ↔ player traffic crosses both miles), so a route's delay is
//! the sum of its links' and a link shared by several routes is one queue.
//! Packets outside 198.18.0.0/15 (IPv6 router solicitations the kernel sends
//! on a new interface) are counted and dropped. Buffers are recycled, so
//! forwarding does not allocate per packet.
//!
//! Why one thread: with a reader thread per TUN and a channel to the engine,
//! every packet cost two thread wake-ups; on two cores those cost more than
//! the packet's own system calls (UDP through the link went from ≈ 0.5 to
//! ≈ 0.7 of loopback's throughput without them). TUN segmentation offload
//! (IFF_VNET_HDR, 64 KB TCP reads split in user space, segments coalesced on
//! write) was measured too: TCP +5–8 %, UDP −13 % (the engine then computes
//! the checksums the sender skipped), and TCP's 64 KB bursts would all be
//! stamped one instant; it is not used.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::capture::{Capture, DropCapture};
use super::graph::{Direction, Graph};
use super::netns::NetNs;
use super::port::{Backend, MAX_PACKET, PacketPort, Port, TunPort};
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
///
/// Each packet's instant counts from when the engine read it, so a packet
/// that waited in the kernel because the engine was not looking (a stalled
/// or overloaded engine thread) would look on time. The engine therefore
/// also counts, for the packets it finds after being away from its ports
/// for longer than [`LATE_RELEASE`], that time away (an upper bound of their
/// wait) as their lateness: one more sample each, and late.
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

/// Packets read from one port before the engine looks at the others and
/// at its release deadlines again: a batch amortises the poll, a cap keeps
/// a flood on one port from delaying releases (about 1 µs per read).
const READ_BATCH: usize = 32;
/// How often the engine publishes its figures for readers of the link.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// Room before the next release that a publish needs.
const PUBLISH_ROOM: Duration = Duration::from_micros(300);
/// Spare buffers kept for reads (more are freed).
const POOL: usize = 4096;
/// Longest the engine waits in one poll, so that it sees `stop`.
const IDLE: Duration = Duration::from_millis(50);

/// A running link: a namespace and a TUN device per host, an impaired
/// pipeline per link direction.
pub struct LinkNetwork {
    graph: Graph,
    hosts: Vec<NetNs>,
    /// The veth backend's switch namespace (kept alive with the link).
    _switch: Option<NetNs>,
    backend: Backend,
    stop: Arc<AtomicBool>,
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
            poll_fds: ports
                .iter()
                .map(|p| libc::pollfd {
                    fd: p.fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect(),
            reads: (0..READ_BATCH).map(|_| vec![0; MAX_PACKET]).collect(),
            sizes: vec![0; READ_BATCH],
            outbox: vec![Vec::new(); ports.len()],
            due: vec![Vec::new(); ports.len()],
            ports,
            pool: Vec::new(),
            captures,
            release_error: Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(io::Error::other)?,
            late: 0,
            first_late_at: None,
            looked_until: Instant::now(),
            away: None,
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
    /// The ports' descriptors for `ppoll`, in the same order.
    poll_fds: Vec<libc::pollfd>,
    /// Buffers of released packets, reused for the next reads.
    pool: Vec<Vec<u8>>,
    /// Buffers one read fills, and their lengths.
    reads: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    /// Per port, the packets due now, with the instant each was due and the
    /// direction it leaves by; written together at the end of a release,
    /// measured (and captured) after the writes.
    outbox: Vec<Vec<Vec<u8>>>,
    due: Vec<Vec<(Time, usize)>>,
    captures: Option<Vec<Captures>>,
    release_error: Histogram<u64>,
    late: u64,
    /// When the engine last stopped waiting on its ports.
    looked_until: Instant,
    /// Set when the engine finds packets after being away from its ports
    /// longer than [`LATE_RELEASE`]: how long, and since when.
    away: Option<(Duration, Instant)>,
    first_late_at: Option<Time>,
    stall: Option<(Duration, Duration)>,
    unroutable: u64,
    shared: Arc<Mutex<GraphStats>>,
}

impl Engine {
    /// One thread does all the I/O: it waits in `ppoll` on every port until
    /// a packet comes or shortly before the next release, reads what is
    /// there in batches, spins (still reading) to the release instant and
    /// writes what is due. No reader threads and no channel: on a machine
    /// with two cores every hand-over between threads was a wake-up that
    /// cost more than the packet's own system calls.
    fn run(mut self, stop: &AtomicBool) -> io::Result<GraphStats> {
        timer::precise_wakeups();
        let mut last_publish = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Some((at, stall)) = self.stall
                && self.clock.time(Instant::now()).since_start() >= at
            {
                self.stall = None;
                std::thread::sleep(stall);
            }
            let wait = match self.next_deadline() {
                Some(d) => timer::sleep_budget(Instant::now(), d).unwrap_or(Duration::ZERO),
                None => IDLE,
            };
            if self.wait_readable(wait.min(IDLE))? {
                self.read_ready();
            }
            // Close to a release: spin to it, reading whatever comes meanwhile
            // (a packet read now may be due sooner: on a direction with no
            // delay, at once).
            if let Some(mut d) = self.next_deadline()
                && timer::sleep_budget(Instant::now(), d).is_none()
            {
                while Instant::now() < d {
                    if self.wait_readable(Duration::ZERO)? {
                        self.read_ready();
                        d = self.next_deadline().map_or(d, |n| n.min(d));
                    }
                    std::hint::spin_loop();
                }
            }
            self.release()?;
            // Publishing takes 10–100 µs (/proc reads, quantiles): not
            // right before a release, unless it has waited too long.
            let since = last_publish.elapsed();
            let release_soon = self
                .next_deadline()
                .is_some_and(|d| d.saturating_duration_since(Instant::now()) < PUBLISH_ROOM);
            if since > PUBLISH_EVERY && (!release_soon || since > 5 * PUBLISH_EVERY) {
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

    /// Waits up to `timeout` for a packet on any port; true if some port has
    /// one. Notes how long the engine was away from its ports before.
    fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        let since = self.looked_until;
        let away = Instant::now().saturating_duration_since(since);
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `poll_fds` is a live, initialised array of its length.
        let n = unsafe {
            libc::ppoll(
                self.poll_fds.as_mut_ptr(),
                self.poll_fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        self.looked_until = Instant::now();
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        let mut readable = false;
        for pfd in &mut self.poll_fds {
            if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
                && pfd.revents & libc::POLLIN == 0
            {
                // The device is gone: poll it no more (ppoll skips negative
                // fds), or every poll would return at once and the engine
                // spin; that host's traffic stops, which its figures show.
                pfd.fd = -1;
            }
            readable |= pfd.revents & libc::POLLIN != 0;
        }
        if readable && away > LATE_RELEASE {
            self.away = Some((away, since));
        }
        Ok(readable)
    }

    /// Reads up to [`READ_BATCH`] packets from each port `ppoll` found
    /// readable (in one system call where the port can), each stamped with
    /// the instant its read returned.
    fn read_ready(&mut self) {
        let away = self.away.take();
        for host in 0..self.ports.len() {
            if self.poll_fds[host].revents & libc::POLLIN == 0 {
                continue;
            }
            let mut left = READ_BATCH;
            while left > 0 {
                let want = left.min(self.reads.len());
                let n = match self.ports[host]
                    .recv_many(&mut self.reads[..want], &mut self.sizes[..want])
                {
                    Ok(n) if n > 0 => n,
                    // WouldBlock (drained), or an error the next poll reports again.
                    _ => break,
                };
                let at = Instant::now();
                if let Some((away, since)) = away {
                    // These may have waited all that time: count them late.
                    for _ in 0..n {
                        let _ = self.release_error.record(away.as_micros() as u64);
                    }
                    self.late += n as u64;
                    self.first_late_at.get_or_insert(self.clock.time(since));
                }
                for i in 0..n {
                    let mut fresh = self.pool.pop().unwrap_or_default();
                    fresh.resize(MAX_PACKET, 0);
                    let mut buf = std::mem::replace(&mut self.reads[i], fresh);
                    buf.truncate(self.sizes[i]);
                    self.push(host, at, buf);
                }
                left -= n;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pipes
            .iter()
            .filter_map(Pipeline::poll_timeout)
            .min()
            .map(|t| self.clock.instant(t))
    }

    fn push(&mut self, from: usize, at: Instant, buf: Vec<u8>) {
        let dst = match buf.first().map(|b| b >> 4) {
            Some(4) if buf.len() >= 20 => self
                .graph
                .host_at(Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19])),
            _ => None,
        };
        let Some(dir) = dst.and_then(|dst| self.graph.next(from, dst)) else {
            self.unroutable += 1;
            if self.pool.len() < POOL {
                self.pool.push(buf);
            }
            return;
        };
        let now = self.clock.time(at);
        self.push_into(dir, now, buf);
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

    /// Takes every packet due out of the pipelines, then writes each port's
    /// batch and measures how late each packet left once its batch was
    /// written (the write is part of the lateness: it is when the receiving
    /// host gets the packet).
    fn release(&mut self) -> io::Result<()> {
        let now = self.clock.time(Instant::now());
        for i in 0..self.pipes.len() {
            while let Some(d) = self.pipes[i].poll_transmit(now) {
                self.deliver(Direction::from_index(i), d);
            }
            if let Some(caps) = &mut self.captures {
                caps[i].follow(&mut self.pipes[i])?;
            }
        }
        for port in 0..self.ports.len() {
            if self.outbox[port].is_empty() {
                continue;
            }
            self.ports[port].send_batch(&self.outbox[port])?;
            let written = Instant::now();
            let written_at = self.clock.time(written);
            for (&(due, dir), packet) in self.due[port].iter().zip(&self.outbox[port]) {
                // The capture of what left shows when it really left.
                if let Some(caps) = &mut self.captures {
                    let _ = caps[dir].output.write(written_at.max(due), packet);
                }
                let late = written.saturating_duration_since(self.clock.instant(due));
                let _ = self.release_error.record((late.as_micros() as u64).max(1));
                if late > LATE_RELEASE {
                    self.late += 1;
                    self.first_late_at.get_or_insert(due);
                }
            }
            self.due[port].clear();
            for buf in self.outbox[port].drain(..) {
                if self.pool.len() < POOL {
                    self.pool.push(buf);
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, dir: Direction, d: Delivery<Vec<u8>>) {
        let hop = self.graph.head(dir);
        let dst = match d.flow.dst {
            Some(IpAddr::V4(ip)) => self.graph.host_at(ip),
            _ => None,
        };
        match dst {
            Some(dst) if dst != hop => {
                // Not there yet: on to the next link of the route (the hand-over
                // is the release instant itself: no write in between).
                if let Some(caps) = &mut self.captures {
                    let _ = caps[dir.index()].output.write(d.released_at, &d.payload);
                }
                if let Some(next) = self.graph.next(hop, dst) {
                    self.push_into(next, d.released_at, d.payload);
                }
            }
            _ => {
                self.outbox[hop].push(d.payload);
                self.due[hop].push((d.released_at, dir.index()));
            }
        }
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
