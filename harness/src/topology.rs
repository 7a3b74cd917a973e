//! Where a run's publisher, relay and player live, and what carries their
//! traffic: the packet-level link (three network namespaces joined through
//! the impairment engine, so kernel TCP sees real loss), or, when namespaces
//! are not available, proxy mode (everything on loopback, a proxy per mile
//! and per relay endpoint its clients use: a TCP proxy for a TCP endpoint,
//! delay, jitter and rate on the byte stream, loss refused; a datagram
//! proxy for a UDP endpoint (QUIC, Glass's UDP protocol), loss included).
//!
//! Protocols see endpoints, not modes: a client asks where an endpoint is
//! from its host ([`Topology::addr_from`]) and for a socket on its host
//! ([`Topology::connect`], [`Topology::udp_socket`]); the relay asks for a
//! socket per endpoint ([`Topology::bind_server`]).

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::Command;

use anyhow::{Context, Result, anyhow};
use clap::ValueEnum;
use netem::adapters::graph::Graph;
use netem::adapters::link::{GraphOptions, GraphStats, Host, LinkNetwork, LinkStats};
use netem::adapters::netns::NetNs;
use netem::adapters::proxy_tcp::{
    TcpProxy, TcpProxyConfig, TcpProxyStats, control_profile, stream_profile,
};
use netem::adapters::proxy_udp::{MAX_DATAGRAM, UdpProxy, UdpProxyConfig, UdpProxyStats};
use serde::{Deserialize, Serialize};

use crate::protocol::{Bound, Endpoint};
use crate::scenario::Network;

/// How a run reaches its network (`glass run --mode`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The packet-level link when namespaces can be created, else proxy mode.
    #[default]
    Auto,
    /// Packet-level link (root or user namespaces).
    Link,
    /// Proxies on loopback: no privileges, but no packet loss for TCP (UDP
    /// endpoints, QUIC and Glass's UDP protocol, get a datagram proxy, loss
    /// included).
    Proxy,
}

impl Mode {
    /// `Auto` made concrete: whether this process can create a namespace.
    pub fn resolve(self) -> Mode {
        match self {
            Mode::Auto => match link_available() {
                Ok(()) => Mode::Link,
                Err(e) => {
                    eprintln!(
                        "glass: cannot create network namespaces ({e}); running in proxy mode: \
                         delay, jitter and rate only, and networks with loss are refused for TCP"
                    );
                    Mode::Proxy
                }
            },
            m => m,
        }
    }
}

/// Whether this process can create network namespaces (link mode), and
/// why not (no root and no user namespaces, a container without
/// CAP_NET_ADMIN, Ubuntu's AppArmor restriction on unprivileged user
/// namespaces, …).
pub fn link_available() -> std::io::Result<()> {
    netem::adapters::netns::NetNs::new("probe").map(|_| ())
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Link => "link",
            Mode::Proxy => "proxy",
        })
    }
}

/// Where a client runs: the publisher's host, or player group `i`'s (the
/// network's `groups[i]`; group 0 is the three-host layout's player).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Publisher,
    Players(usize),
}

/// Proxy mode's proxies and what they carried, as one player group sees
/// them (its last mile's proxies).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyStats {
    /// Each mile's TCP proxy (zeros when no client on that mile used TCP).
    pub first_mile: TcpProxyStats,
    pub last_mile: TcpProxyStats,
    /// The datagram proxies of miles whose clients used a UDP endpoint
    /// (RTMP over QUIC, Glass's UDP protocol).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_first_mile: Option<UdpProxyStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_last_mile: Option<UdpProxyStats>,
}

/// A relay endpoint a client reaches from its host: proxy mode puts a proxy
/// on that host's mile for it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ClientPath {
    pub from: Place,
    pub to: Endpoint,
    /// A control connection beside the client's datagrams (RTSP's TCP
    /// session while its RTP goes over UDP): proxy mode carries it with
    /// the mile's delay and rate only (`control_profile`), as a byte
    /// stream cannot show packet loss; link mode treats it like any path.
    pub control: bool,
}

impl ClientPath {
    /// A path that carries media.
    pub fn media(from: Place, to: Endpoint) -> ClientPath {
        ClientPath {
            from,
            to,
            control: false,
        }
    }
}

/// Which mile a client host is on.
fn mile_of(place: Place) -> &'static str {
    match place {
        Place::Players(_) => "last mile",
        Place::Publisher => "first mile",
    }
}

/// What the network did, by mode: the whole link's counters, or each
/// proxy's.
#[derive(Clone, Debug, Default)]
pub struct NetworkStats {
    pub link: Option<GraphStats>,
    pub proxies: Option<Vec<(ClientPath, ProxyCounters)>>,
}

/// What one proxy carried.
#[derive(Clone, Debug)]
pub enum ProxyCounters {
    Tcp(TcpProxyStats),
    Udp(Option<Box<UdpProxyStats>>),
}

/// One player group's view of the network: the link's counters with the
/// group's last mile as "the last mile", or the proxies of the first mile
/// and of the group's last mile.
#[derive(Clone, Debug, Default)]
pub struct GroupNetworkStats {
    pub link: Option<LinkStats>,
    pub proxy: Option<ProxyStats>,
    /// Every link's counters (link mode), for the topology section.
    pub graph: Option<GraphStats>,
}

impl NetworkStats {
    /// Group `i`'s view (`network` names its link and host).
    pub fn for_group(&self, network: &Network, i: usize) -> GroupNetworkStats {
        let link = match (&self.link, network.groups.get(i)) {
            (Some(g), Some(group)) => Some(LinkStats::of_group(g, &group.link, &group.host)),
            _ => None,
        };
        let proxy = self.proxies.as_ref().map(|proxies| {
            let mut stats = ProxyStats::default();
            for (path, counters) in proxies {
                let first = match path.from {
                    Place::Publisher => true,
                    Place::Players(j) if j == i => false,
                    Place::Players(_) => continue,
                };
                match (counters, first) {
                    (ProxyCounters::Tcp(s), true) => stats.first_mile = s.clone(),
                    (ProxyCounters::Tcp(s), false) => stats.last_mile = s.clone(),
                    // A mile's datagram proxies (RTSP's RTP and RTCP
                    // ports) count as one.
                    (ProxyCounters::Udp(Some(s)), first) => {
                        let mile = if first {
                            &mut stats.udp_first_mile
                        } else {
                            &mut stats.udp_last_mile
                        };
                        match mile {
                            Some(m) => m.absorb(s),
                            None => *mile = Some((**s).clone()),
                        }
                    }
                    (ProxyCounters::Udp(None), _) => {}
                }
            }
            stats
        });
        GroupNetworkStats {
            link,
            proxy,
            graph: self.link.clone(),
        }
    }
}

/// A UDP socket with deep buffers: the relay and the clients receive bursts
/// (a key frame's packets back to back, FEC after them) while their task may
/// be busy; the default 208 KB receive buffer overflowed in such bursts and
/// lost datagrams the link had delivered.
fn deep(s: std::net::UdpSocket) -> std::net::UdpSocket {
    use netem::adapters::sockbuf::{Buffer, enlarge};
    enlarge(&s, Buffer::Receive, 4 << 20);
    enlarge(&s, Buffer::Send, 4 << 20);
    s
}

/// A socket for `e` on loopback, any port.
/// Connections a relay's TCP port queues before it accepts them. std
/// listens with 128: a burst of connections (a popular stream starting, a
/// flood) then fills the queue, the kernel drops the next SYNs, and a
/// publisher arriving in it waits a SYN retransmission (1 s) to connect —
/// `scenarios/hostile.toml` measured 1,391 ms of startup instead of 340.
/// The kernel caps it at `net.core.somaxconn` (4,096 by default).
pub const RELAY_BACKLOG: i32 = 4096;

/// A TCP listener for the relay at `at`, with [`RELAY_BACKLOG`].
pub fn relay_listener(at: SocketAddr) -> std::io::Result<StdListener> {
    use std::os::fd::AsRawFd;
    let l = StdListener::bind(at)?;
    // Listening again on a listening socket sets its backlog (Linux).
    // SAFETY: listen(2) on a socket this function owns.
    if unsafe { libc::listen(l.as_raw_fd(), RELAY_BACKLOG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(l)
}

fn bind_loopback(e: Endpoint) -> Result<Bound> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    Ok(match e {
        Endpoint::Tcp(_) => Bound::Tcp(relay_listener(any)?),
        Endpoint::Udp(_) => Bound::Udp(deep(std::net::UdpSocket::bind(any)?)),
    })
}

/// Where a relay socket listens.
pub fn bound_addr(b: &Bound) -> Result<SocketAddr> {
    Ok(match b {
        Bound::Tcp(l) => l.local_addr()?,
        Bound::Udp(s) => s.local_addr()?,
    })
}

/// One proxy of proxy mode: a mile's path to one relay endpoint.
struct MileProxy {
    path: ClientPath,
    proxy: AnyProxy,
}

enum AnyProxy {
    Tcp(TcpProxy),
    Udp(UdpProxy),
}

impl AnyProxy {
    fn local_addr(&self) -> SocketAddr {
        match self {
            AnyProxy::Tcp(p) => p.local_addr(),
            AnyProxy::Udp(p) => p.local_addr(),
        }
    }
}

enum Carrier {
    Link {
        link: LinkNetwork,
        /// Each player group's host name.
        groups: Vec<String>,
    },
    Proxy {
        /// The relay's sockets the proxies forward to, until the relay
        /// takes them.
        relay: Vec<(Endpoint, Bound)>,
        proxies: Vec<MileProxy>,
    },
}

/// One run's network, started and ready for the relay to listen on.
pub struct Topology {
    carrier: Carrier,
}

impl Topology {
    /// Starts the network: in link mode the namespaces and the engine, in
    /// proxy mode the relay's sockets for `paths` and a proxy per path (a
    /// TCP proxy refuses profiles a byte stream cannot represent, with the
    /// reason).
    pub fn start(
        rt: &tokio::runtime::Runtime,
        mode: Mode,
        network: &Network,
        seed: u64,
        paths: &[ClientPath],
    ) -> Result<Topology> {
        match mode.resolve() {
            Mode::Proxy if !network.cross.is_empty() => Err(anyhow!(
                "network \"{}\" has cross traffic, which needs link mode (a shared queue); \
                 proxy mode has none",
                network.name
            )),
            Mode::Proxy if crate::faults::engine_stall(&network.faults).is_some() => Err(anyhow!(
                "network \"{}\" has an engine_stall fault, which needs link mode (it acts on the link's engine)",
                network.name
            )),
            Mode::Proxy => {
                let mut relay: Vec<(Endpoint, Bound)> = Vec::new();
                let mut proxies: Vec<MileProxy> = Vec::new();
                // A path that carries media first: it wins over a control
                // path to the same endpoint from the same host.
                let mut paths = paths.to_vec();
                paths.sort_by_key(|p| p.control);
                for &path in &paths {
                    if proxies
                        .iter()
                        .any(|p| (p.path.from, p.path.to) == (path.from, path.to))
                    {
                        continue;
                    }
                    if !relay.iter().any(|(e, _)| *e == path.to) {
                        relay.push((path.to, bind_loopback(path.to)?));
                    }
                    let upstream = relay
                        .iter()
                        .find(|(e, _)| *e == path.to)
                        .map(|(_, b)| bound_addr(b))
                        .transpose()?
                        .ok_or_else(|| anyhow!("no relay socket for {}", path.to))?;
                    let listen = pair_port(&paths, path, &proxies)?;
                    let proxy = start_proxy(rt, network, seed, path, upstream, listen)?;
                    proxies.push(MileProxy { path, proxy });
                }
                Ok(Topology {
                    carrier: Carrier::Proxy { relay, proxies },
                })
            }
            _ => {
                // Cross traffic's hosts hang off the publisher and the
                // player: their flows share those miles' queues.
                let graph = graph_of(network)?;
                let link = LinkNetwork::start_graph(
                    graph,
                    GraphOptions {
                        seed,
                        stall: crate::faults::engine_stall(&network.faults),
                        ..GraphOptions::default()
                    },
                )
                .context(
                    "starting the link (network namespaces); Glass needs root or user \
                     namespaces, or `--mode proxy`",
                )?;
                Ok(Topology {
                    carrier: Carrier::Link {
                        link,
                        groups: network.groups.iter().map(|g| g.host.clone()).collect(),
                    },
                })
            }
        }
    }

    /// "link/Tun", "link/Veth" or "proxy": results say which mode ran.
    pub fn mode_label(&self) -> String {
        match &self.carrier {
            Carrier::Link { link, .. } => format!("link/{:?}", link.backend()),
            Carrier::Proxy { .. } => "proxy".into(),
        }
    }

    /// A socket for a protocol's server endpoint on the relay's host. Link
    /// mode binds the port in the server's namespace; proxy mode hands over
    /// the socket its proxies forward to, or binds one on loopback that no
    /// client path uses.
    pub fn bind_server(&mut self, e: Endpoint) -> Result<Bound> {
        match &mut self.carrier {
            Carrier::Link { link: l, .. } => {
                let at = SocketAddr::from((Host::Server.addr(), e.port()));
                let b = match e {
                    Endpoint::Tcp(_) => l
                        .run_in(Host::Server, || relay_listener(at))
                        .map(Bound::Tcp),
                    Endpoint::Udp(_) => l
                        .run_in(Host::Server, || std::net::UdpSocket::bind(at))
                        .map(|s| Bound::Udp(deep(s))),
                };
                b.with_context(|| format!("binding the relay's {e}"))
            }
            Carrier::Proxy { relay, .. } => match relay.iter().position(|(x, _)| *x == e) {
                Some(i) => Ok(relay.swap_remove(i).1),
                None => bind_loopback(e),
            },
        }
    }

    /// Where a client on `host` sends to reach the relay's endpoint `e`:
    /// the relay (link mode) or the proxy on its mile for `e`.
    pub fn addr_from(&self, place: Place, e: Endpoint) -> Result<SocketAddr> {
        match &self.carrier {
            Carrier::Link { .. } => Ok(SocketAddr::from((Host::Server.addr(), e.port()))),
            Carrier::Proxy { proxies, .. } => proxies
                .iter()
                .find(|p| (p.path.from, p.path.to) == (place, e))
                .map(|p| p.proxy.local_addr())
                .ok_or_else(|| {
                    anyhow!(
                        "proxy mode has no proxy for the relay's {e} on the {}",
                        mile_of(place)
                    )
                }),
        }
    }

    /// The port a publisher reaches the relay's endpoint `e` (bound as
    /// `sock`) at: proxy mode's first-mile proxy for it, else the socket's
    /// own port.
    pub fn publisher_port(&self, e: Endpoint, sock: &Bound) -> u16 {
        match &self.carrier {
            Carrier::Proxy { proxies, .. } => proxies
                .iter()
                .find(|p| (p.path.from, p.path.to) == (Place::Publisher, e))
                .map(|p| p.proxy.local_addr().port()),
            Carrier::Link { .. } => None,
        }
        .or_else(|| bound_addr(sock).ok().map(|a| a.port()))
        .unwrap_or(e.port())
    }

    /// The namespace of the host at `place` (link mode).
    fn namespace(&self, place: Place) -> Option<&NetNs> {
        match (&self.carrier, place) {
            (Carrier::Link { link, .. }, Place::Publisher) => Some(link.namespace(Host::Publisher)),
            (Carrier::Link { link, groups }, Place::Players(i)) => {
                link.namespace_of(groups.get(i)?)
            }
            (Carrier::Proxy { .. }, _) => None,
        }
    }

    /// Runs `f` on `place`'s host: in its namespace (link mode), or here
    /// (proxy mode: everything is on loopback).
    fn run_at<T: Send>(
        &self,
        place: Place,
        f: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> Result<T> {
        match (&self.carrier, self.namespace(place)) {
            (Carrier::Proxy { .. }, _) => Ok(f()?),
            (Carrier::Link { .. }, Some(ns)) => Ok(ns.run(f)?),
            (Carrier::Link { .. }, None) => Err(anyhow!("the link has no host for {place:?}")),
        }
    }

    /// A UDP socket on `place`'s host (any port), with deep buffers.
    pub fn udp_socket(&self, place: Place) -> Result<std::net::UdpSocket> {
        let any = match self.carrier {
            Carrier::Link { .. } => Ipv4Addr::UNSPECIFIED,
            Carrier::Proxy { .. } => Ipv4Addr::LOCALHOST,
        };
        Ok(deep(
            self.run_at(place, || std::net::UdpSocket::bind((any, 0)))?,
        ))
    }

    /// Runs `f` on the relay's host: in the server's namespace (link mode;
    /// threads `f` spawns stay there), or here (proxy mode).
    pub fn run_at_server<T: Send>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send,
    ) -> Result<T> {
        match &self.carrier {
            Carrier::Link { link, .. } => Ok(link.namespace(Host::Server).run(f)?),
            Carrier::Proxy { .. } => Ok(f()?),
        }
    }

    /// Starts the network's cross traffic on the run's `clock` (link
    /// mode; none in proxy mode, which refuses networks that have any).
    pub fn start_cross(
        &self,
        flows: &[crate::cross::CrossFlow],
        clock: netem::time::Clock,
    ) -> Result<Option<crate::cross::CrossTraffic>> {
        match &self.carrier {
            Carrier::Link { link, .. } if !flows.is_empty() => {
                Ok(Some(crate::cross::CrossTraffic::start(link, flows, clock)?))
            }
            _ => Ok(None),
        }
    }

    /// A TCP connection from `place`'s host to the relay's endpoint `e`,
    /// through its mile.
    pub fn connect(&self, place: Place, e: Endpoint) -> Result<StdStream> {
        let to = self.addr_from(place, e)?;
        self.run_at(place, || StdStream::connect(to))
            .with_context(|| format!("connecting from the {place:?} to the relay at {to}"))
    }

    /// `n` unconnected TCP sockets on `place`'s host (made in its
    /// namespace in link mode, so they leave by its mile) and the address
    /// of the relay's endpoint `e` from there: light viewers connect them
    /// when they join.
    pub fn tcp_sockets(
        &self,
        place: Place,
        e: Endpoint,
        n: usize,
    ) -> Result<(Vec<tokio::net::TcpSocket>, SocketAddr)> {
        let to = self.addr_from(place, e)?;
        let sockets = self
            .run_at(place, || {
                (0..n)
                    .map(|_| tokio::net::TcpSocket::new_v4())
                    .collect::<std::io::Result<Vec<_>>>()
            })
            .with_context(|| format!("{n} sockets for the viewers of the {place:?}"))?;
        Ok((sockets, to))
    }

    /// The default TCP congestion control of `place`'s namespace (what
    /// sockets Glass does not configure, such as ffmpeg's, get).
    pub fn default_congestion(&self, place: Place) -> Option<String> {
        let read = || std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control");
        self.run_at(place, read).ok().map(|s| s.trim().to_string())
    }

    /// A command that starts on `place`'s host (its namespace in link mode)
    /// and dies with Glass.
    pub fn command(&self, place: Place, program: &str) -> Result<Command> {
        let mut cmd = Command::new(program);
        match self.namespace(place) {
            Some(ns) => ns.prepare_command(&mut cmd)?,
            None if matches!(self.carrier, Carrier::Link { .. }) => {
                return Err(anyhow!("the link has no host for {place:?}"));
            }
            None => die_with_parent(&mut cmd),
        }
        Ok(cmd)
    }

    /// Stops the network and returns what it did.
    pub fn stop(self, rt: &tokio::runtime::Runtime) -> Result<NetworkStats> {
        match self.carrier {
            Carrier::Link { link, .. } => Ok(NetworkStats {
                link: Some(link.stop_graph()?),
                proxies: None,
            }),
            Carrier::Proxy { proxies, .. } => {
                let stats = rt.block_on(async {
                    let mut out = Vec::new();
                    for MileProxy { path, proxy } in proxies {
                        let counters = match proxy {
                            AnyProxy::Tcp(p) => ProxyCounters::Tcp(p.stop().await),
                            AnyProxy::Udp(p) => {
                                ProxyCounters::Udp(p.stop().await.ok().map(Box::new))
                            }
                        };
                        out.push((path, counters));
                    }
                    out
                });
                Ok(NetworkStats {
                    link: None,
                    proxies: Some(stats),
                })
            }
        }
    }
}

/// The link-mode graph of `network`: publisher, server and a host per
/// player group (a star on the server), plus the cross-traffic hosts hung
/// off the publisher and the first group's player.
pub fn graph_of(network: &Network) -> Result<Graph> {
    let groups = network.groups.iter().map(|g| g.last_mile()).collect();
    Ok(Graph::star(network.first_mile.clone(), groups)?
        .with_leaves(crate::cross::hosts(&network.cross))?)
}

/// Where proxy mode's proxy for `path` listens. RTP's convention (RFC
/// 3550): RTCP is the RTP port plus one, and clients send there whatever
/// port the server names for RTCP (ffmpeg does). So a UDP endpoint whose
/// port plus one is another endpoint of the same host's paths gets an even
/// port whose next one is free, and that endpoint's proxy gets the next
/// one. Any other proxy listens on any port.
fn pair_port(paths: &[ClientPath], path: ClientPath, started: &[MileProxy]) -> Result<SocketAddr> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let Endpoint::Udp(port) = path.to else {
        return Ok(any);
    };
    if let Some(rtp) = port.checked_sub(1).and_then(|p| {
        started
            .iter()
            .find(|s| s.path.from == path.from && s.path.to == Endpoint::Udp(p))
    }) {
        let rtcp = rtp.proxy.local_addr().port() + 1;
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, rtcp)));
    }
    let rtcp = port.checked_add(1).map(Endpoint::Udp);
    if !paths
        .iter()
        .any(|c| c.from == path.from && Some(c.to) == rtcp)
    {
        return Ok(any);
    }
    // An even port with the next one free (probed, then released for the
    // proxies to bind).
    for _ in 0..64 {
        let a = std::net::UdpSocket::bind(any)?;
        let p = a.local_addr()?.port();
        if p % 2 == 1 || p == u16::MAX {
            continue;
        }
        if std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, p + 1)).is_ok() {
            return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
        }
    }
    Err(anyhow!(
        "proxy mode: no pair of adjacent free UDP ports on loopback for the relay's {} and {}",
        path.to,
        Endpoint::Udp(port.saturating_add(1))
    ))
}

/// Proxy mode's proxy for one client path: its mile's profiles (uplink,
/// downlink), a TCP proxy for a TCP endpoint (which refuses what a byte
/// stream cannot represent) or a datagram proxy for a UDP one. Seeds as
/// before endpoints had their own proxies: TCP first/last mile `seed` and
/// `seed + 1`, datagrams `seed + 2` and `seed + 3` (player group i's last
/// mile: 4 × i more).
fn start_proxy(
    rt: &tokio::runtime::Runtime,
    network: &Network,
    seed: u64,
    path: ClientPath,
    upstream: SocketAddr,
    listen: SocketAddr,
) -> Result<AnyProxy> {
    let (first, group) = match path.from {
        Place::Publisher => (true, 0),
        Place::Players(i) => (false, i),
    };
    let profiles = match path.from {
        Place::Publisher => &network.first_mile,
        Place::Players(i) => network
            .groups
            .get(i)
            .map(|g| &g.last_mile)
            .ok_or_else(|| anyhow!("network \"{}\" has no player group {i}", network.name))?,
    };
    // Group 0's proxies keep the seeds of the three-host layout; group i's
    // are 4 × i further on.
    let seed = seed.wrapping_add(4 * group as u64);
    match path.to {
        Endpoint::Tcp(_) => {
            let mile = mile_of(path.from);
            let check = |p, dir: &str| {
                let adapted = if path.control {
                    control_profile(p)
                } else {
                    stream_profile(p)
                };
                adapted.map_err(|e| anyhow!("proxy mode, {mile} {dir}: {e}"))
            };
            let profiles = (
                check(&profiles.0, "uplink")?,
                check(&profiles.1, "downlink")?,
            );
            let p = rt
                .block_on(TcpProxy::start(TcpProxyConfig {
                    listen,
                    upstream,
                    profiles,
                    seed: seed.wrapping_add(u64::from(!first)),
                    reset_after: None,
                    connect_timeout: std::time::Duration::from_secs(5),
                }))
                .context("starting a TCP proxy on loopback")?;
            Ok(AnyProxy::Tcp(p))
        }
        Endpoint::Udp(_) => {
            let p = rt
                .block_on(UdpProxy::start(UdpProxyConfig {
                    listen,
                    upstream,
                    profiles: profiles.clone(),
                    seed: seed.wrapping_add(2 + u64::from(!first)),
                    max_datagram: MAX_DATAGRAM,
                }))
                .context("starting a UDP proxy on loopback")?;
            Ok(AnyProxy::Udp(p))
        }
    }
}

/// Makes a child die with Glass (SIGKILL when the parent goes), even on
/// `kill -9`.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}
