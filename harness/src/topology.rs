//! Where a run's publisher, relay and player live, and what carries their
//! traffic: the packet-level link (three network namespaces joined through
//! the impairment engine, so kernel TCP sees real loss), or, when namespaces
//! are not available, proxy mode (everything on loopback, a TCP proxy per
//! mile: delay, jitter and rate on the byte stream, loss refused; and a UDP
//! datagram proxy, loss included, for a mile that carries Glass's UDP
//! media protocol).

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::Command;

use anyhow::{Context, Result, anyhow};
use clap::ValueEnum;
use netem::Profile;
use netem::adapters::link::{Host, LinkConfig, LinkNetwork, LinkStats};
use netem::adapters::proxy_tcp::{TcpProxy, TcpProxyConfig, TcpProxyStats, stream_profile};
use netem::adapters::proxy_udp::{MAX_DATAGRAM, UdpProxy, UdpProxyConfig, UdpProxyStats};
use serde::Serialize;

use crate::protocol::{Bound, Endpoint};
use crate::scenario::Network;

/// How a run reaches its network (`glass run --mode`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The packet-level link when namespaces can be created, else proxy mode.
    #[default]
    Auto,
    /// Packet-level link (root or user namespaces).
    Link,
    /// Proxies on loopback: no privileges, but no packet loss for TCP (the
    /// UDP protocol gets a datagram proxy, loss included).
    Proxy,
}

impl Mode {
    /// `Auto` made concrete: whether this process can create a namespace.
    pub fn resolve(self) -> Mode {
        match self {
            Mode::Auto => match netem::adapters::netns::NetNs::new("probe") {
                Ok(_) => Mode::Link,
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

/// Proxy mode's proxies and what they carried.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProxyStats {
    pub first_mile: TcpProxyStats,
    pub last_mile: TcpProxyStats,
    /// The datagram proxies of miles that carried the UDP media protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_first_mile: Option<UdpProxyStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_last_mile: Option<UdpProxyStats>,
}

/// Which miles carry Glass's UDP media protocol: proxy mode gives those a
/// datagram proxy (where loss can be represented) instead of refusing.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct UdpMiles {
    pub first: bool,
    pub last: bool,
}

/// Proxy mode's UDP side: the relay's socket (until the relay takes it) and
/// a datagram proxy per mile that carries the UDP protocol.
struct ProxyUdp {
    relay: Option<std::net::UdpSocket>,
    first: Option<UdpProxy>,
    last: Option<UdpProxy>,
}

/// What the network did, by mode.
#[derive(Clone, Debug, Default)]
pub struct NetworkStats {
    pub link: Option<LinkStats>,
    pub proxy: Option<ProxyStats>,
}

/// The relay's port, TCP and UDP (QUIC).
pub use crate::protocol::uri::DEFAULT_PORT as RTMP_PORT;

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

enum Carrier {
    Link(LinkNetwork),
    Proxy {
        relay: SocketAddr,
        first_mile: TcpProxy,
        last_mile: TcpProxy,
        udp: ProxyUdp,
    },
}

/// One run's network, started and ready for the relay to listen on.
pub struct Topology {
    carrier: Carrier,
    relay_listener: Option<StdListener>,
}

impl Topology {
    /// Starts the network: in link mode the namespaces and the engine, in
    /// proxy mode the relay's listening socket and the two proxies (which
    /// refuse profiles a byte stream cannot represent, with the reason).
    pub fn start(
        rt: &tokio::runtime::Runtime,
        mode: Mode,
        network: &Network,
        seed: u64,
        udp_miles: UdpMiles,
    ) -> Result<Topology> {
        match mode.resolve() {
            Mode::Proxy => {
                let check = |p, what: &str| {
                    stream_profile(p).map_err(|e| anyhow!("proxy mode, {}: {e}", what))
                };
                // A mile that carries the UDP protocol has nothing on its TCP
                // proxy: the datagram proxy takes its profile, loss and all.
                let idle = || (Profile::transparent(), Profile::transparent());
                let first = if udp_miles.first {
                    idle()
                } else {
                    (
                        check(&network.first_mile.0, "first mile uplink")?,
                        check(&network.first_mile.1, "first mile downlink")?,
                    )
                };
                let last = if udp_miles.last {
                    idle()
                } else {
                    (
                        check(&network.last_mile.0, "last mile uplink")?,
                        check(&network.last_mile.1, "last mile downlink")?,
                    )
                };
                let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                let relay = listener.local_addr()?;
                let proxy = |profiles, seed| {
                    rt.block_on(TcpProxy::start(TcpProxyConfig {
                        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                        upstream: relay,
                        profiles,
                        seed,
                        reset_after: None,
                        connect_timeout: std::time::Duration::from_secs(5),
                    }))
                    .context("starting a TCP proxy on loopback")
                };
                let first_mile = proxy(first, seed)?;
                let last_mile = proxy(last, seed.wrapping_add(1))?;
                let relay_udp = if udp_miles.first || udp_miles.last {
                    Some(deep(std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?))
                } else {
                    None
                };
                let datagram_proxy = |on: bool,
                                      profiles: &(Profile, Profile),
                                      seed: u64|
                 -> Result<Option<UdpProxy>> {
                    let Some(upstream) = relay_udp.as_ref().filter(|_| on) else {
                        return Ok(None);
                    };
                    let upstream = upstream.local_addr()?;
                    let p = rt
                        .block_on(UdpProxy::start(UdpProxyConfig {
                            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                            upstream,
                            profiles: profiles.clone(),
                            seed,
                            max_datagram: MAX_DATAGRAM,
                        }))
                        .context("starting a UDP proxy on loopback")?;
                    Ok(Some(p))
                };
                let udp = ProxyUdp {
                    first: datagram_proxy(
                        udp_miles.first,
                        &network.first_mile,
                        seed.wrapping_add(2),
                    )?,
                    last: datagram_proxy(udp_miles.last, &network.last_mile, seed.wrapping_add(3))?,
                    relay: relay_udp,
                };
                Ok(Topology {
                    carrier: Carrier::Proxy {
                        relay,
                        first_mile,
                        last_mile,
                        udp,
                    },
                    relay_listener: Some(listener),
                })
            }
            _ => {
                let link = LinkNetwork::start(LinkConfig {
                    first_mile: network.first_mile.clone(),
                    last_mile: network.last_mile.clone(),
                    seed,
                    ..LinkConfig::default()
                })
                .context(
                    "starting the link (network namespaces); Glass needs root or user \
                     namespaces, or `--mode proxy`",
                )?;
                let server = SocketAddr::from((Host::Server.addr(), RTMP_PORT));
                let listener = link.run_in(Host::Server, || StdListener::bind(server))?;
                Ok(Topology {
                    carrier: Carrier::Link(link),
                    relay_listener: Some(listener),
                })
            }
        }
    }

    /// "link/Tun", "link/Veth" or "proxy": results say which mode ran.
    pub fn mode_label(&self) -> String {
        match &self.carrier {
            Carrier::Link(l) => format!("link/{:?}", l.backend()),
            Carrier::Proxy { .. } => "proxy".into(),
        }
    }

    /// A socket for a protocol's server endpoint on the relay's host, or
    /// `None` when this network cannot carry it. Link mode binds any port
    /// in the server's namespace. Proxy mode has the relay's TCP port behind
    /// the TCP proxies, and the UDP protocol's port behind the datagram
    /// proxies when a mile uses it; nothing else (so no RTMP over QUIC).
    pub fn bind_server(&mut self, e: Endpoint) -> Result<Option<Bound>> {
        if e == Endpoint::Tcp(RTMP_PORT)
            && let Some(l) = self.relay_listener.take()
        {
            return Ok(Some(Bound::Tcp(l)));
        }
        let bind = |l: &LinkNetwork| -> Result<Bound> {
            let at = SocketAddr::from((Host::Server.addr(), e.port()));
            Ok(match e {
                Endpoint::Tcp(_) => Bound::Tcp(l.run_in(Host::Server, || StdListener::bind(at))?),
                Endpoint::Udp(_) => Bound::Udp(deep(
                    l.run_in(Host::Server, || std::net::UdpSocket::bind(at))?,
                )),
            })
        };
        match (&mut self.carrier, e) {
            (Carrier::Link(l), _) => bind(l)
                .map(Some)
                .with_context(|| format!("binding the relay's {e}")),
            (Carrier::Proxy { udp, .. }, Endpoint::Udp(crate::protocol::udp::UDP_MEDIA_PORT)) => {
                Ok(udp.relay.take().map(Bound::Udp))
            }
            (Carrier::Proxy { .. }, _) => Ok(None),
        }
    }

    /// Where a client on `host` connects to reach the relay, through its mile.
    pub fn relay_addr_from(&self, host: Host) -> SocketAddr {
        match &self.carrier {
            Carrier::Link(_) => self.relay_addr(),
            Carrier::Proxy {
                first_mile,
                last_mile,
                ..
            } => match host {
                Host::Player => last_mile.local_addr(),
                _ => first_mile.local_addr(),
            },
        }
    }

    /// The relay's own address (proxy mode: on loopback, not impaired).
    pub fn relay_addr(&self) -> SocketAddr {
        match &self.carrier {
            Carrier::Link(_) => SocketAddr::from((Host::Server.addr(), RTMP_PORT)),
            Carrier::Proxy { relay, .. } => *relay,
        }
    }

    /// A QUIC client's UDP socket on `host` (any port). Link mode only:
    /// proxy mode has no UDP path for RTMP over QUIC (`bind_server` gives
    /// the relay no QUIC endpoint there).
    pub fn bind_udp(&self, host: Host) -> Result<std::net::UdpSocket> {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        match &self.carrier {
            Carrier::Link(l) => Ok(deep(l.run_in(host, || std::net::UdpSocket::bind(addr))?)),
            Carrier::Proxy { .. } => Err(anyhow!(
                "RTMP over QUIC and the UDP media protocol need link mode (root or user namespaces); proxy mode carries TCP only"
            )),
        }
    }

    /// The relay's UDP media address in link mode.
    pub fn udp_media_addr(&self) -> SocketAddr {
        SocketAddr::from((Host::Server.addr(), crate::protocol::udp::UDP_MEDIA_PORT))
    }

    /// Where a UDP media client on `host` sends: the relay (link mode) or
    /// its mile's datagram proxy.
    pub fn udp_media_addr_from(&self, host: Host) -> Result<SocketAddr> {
        match &self.carrier {
            Carrier::Link(_) => Ok(self.udp_media_addr()),
            Carrier::Proxy { udp, .. } => {
                let p = if host == Host::Player {
                    &udp.last
                } else {
                    &udp.first
                };
                p.as_ref()
                    .map(UdpProxy::local_addr)
                    .ok_or_else(|| anyhow!("proxy mode has no UDP proxy on the {host:?}'s mile"))
            }
        }
    }

    /// A UDP media client's socket on `host` (any port).
    pub fn bind_udp_client(&self, host: Host) -> Result<std::net::UdpSocket> {
        match &self.carrier {
            Carrier::Link(l) => Ok(deep(l.run_in(host, || {
                std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            })?)),
            Carrier::Proxy { .. } => Ok(deep(std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?)),
        }
    }

    pub fn is_link(&self) -> bool {
        matches!(self.carrier, Carrier::Link(_))
    }

    /// A TCP connection from `host` to the relay, through its mile.
    pub fn connect(&self, host: Host) -> Result<StdStream> {
        let to = self.relay_addr_from(host);
        let s = match &self.carrier {
            Carrier::Link(l) => l.run_in(host, || StdStream::connect(to)),
            Carrier::Proxy { .. } => StdStream::connect(to),
        };
        s.with_context(|| format!("connecting from the {host:?} to the relay at {to}"))
    }

    /// The default TCP congestion control of `host`'s namespace (what
    /// sockets Glass does not configure, such as ffmpeg's, get).
    pub fn default_congestion(&self, host: Host) -> Option<String> {
        let read = || std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control");
        let s = match &self.carrier {
            Carrier::Link(l) => l.run_in(host, read),
            Carrier::Proxy { .. } => read(),
        };
        s.ok().map(|s| s.trim().to_string())
    }

    /// A command that starts on `host` (its namespace in link mode) and dies
    /// with Glass.
    pub fn command(&self, host: Host, program: &str) -> Result<Command> {
        match &self.carrier {
            Carrier::Link(l) => Ok(l.command(host, program)?),
            Carrier::Proxy { .. } => {
                let mut cmd = Command::new(program);
                die_with_parent(&mut cmd);
                Ok(cmd)
            }
        }
    }

    /// Stops the network and returns what it did.
    pub fn stop(self, rt: &tokio::runtime::Runtime) -> Result<NetworkStats> {
        match self.carrier {
            Carrier::Link(l) => Ok(NetworkStats {
                link: Some(l.stop()?),
                proxy: None,
            }),
            Carrier::Proxy {
                first_mile,
                last_mile,
                udp,
                ..
            } => {
                let (first_mile, last_mile, udp_first_mile, udp_last_mile) = rt.block_on(async {
                    let f = first_mile.stop().await;
                    let l = last_mile.stop().await;
                    let uf = match udp.first {
                        Some(p) => p.stop().await.ok(),
                        None => None,
                    };
                    let ul = match udp.last {
                        Some(p) => p.stop().await.ok(),
                        None => None,
                    };
                    (f, l, uf, ul)
                });
                Ok(NetworkStats {
                    link: None,
                    proxy: Some(ProxyStats {
                        first_mile,
                        last_mile,
                        udp_first_mile,
                        udp_last_mile,
                    }),
                })
            }
        }
    }
}

/// Makes a child die with Glass (SIGKILL when the parent goes), even on
/// `kill -9`.
fn die_with_parent(cmd: &mut Command) {
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
