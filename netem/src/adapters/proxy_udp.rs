//! UDP datagram proxy: portable, unprivileged link emulation on loopback, and
//! the way to put an impaired hop in front of any existing UDP server.
//!
//! Each client (source address) gets its own socket towards the upstream, so
//! replies find their way back. All clients share one pipeline per direction
//! (uplink: client → upstream, downlink: back), as they would share a real
//! bottleneck. tokio drives the sockets; the engine decides.
//!
//! Precision: tokio's timer ticks at 1 ms, so releases can be up to ~1 ms late
//! here; link mode (`glass shell`) releases within tens of µs.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::timer;
use crate::event::Counters;
use crate::flow::{FlowMeta, Protocol};
use crate::packet::Payload;
use crate::pipeline::Pipeline;
use crate::rng::SeedTree;
use crate::spec::Profile;
use crate::time::Clock;

/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Most client mappings; further clients are ignored (and counted).
pub const MAX_CLIENTS: usize = 1024;

#[derive(Clone, Debug)]
pub struct UdpProxyConfig {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    /// (uplink: client → upstream, downlink: upstream → client).
    pub profiles: (Profile, Profile),
    pub seed: u64,
    /// Datagrams longer than this are dropped and counted (an MTU, say).
    pub max_datagram: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct UdpProxyStats {
    pub uplink: Counters,
    pub downlink: Counters,
    pub clients: usize,
    pub oversized: u64,
    pub refused_clients: u64,
    /// Sends that failed (e.g. the upstream port is closed: ICMP unreachable).
    pub send_errors: u64,
}

impl UdpProxyStats {
    /// Adds `other`'s counts: the proxies of one mile (a protocol's RTP
    /// and RTCP ports) as one.
    pub fn absorb(&mut self, other: &UdpProxyStats) {
        self.uplink.absorb(&other.uplink);
        self.downlink.absorb(&other.downlink);
        self.clients += other.clients;
        self.oversized += other.oversized;
        self.refused_clients += other.refused_clients;
        self.send_errors += other.send_errors;
    }
}

/// A datagram and the client it belongs to.
#[derive(Clone, Debug)]
struct Datagram {
    bytes: Vec<u8>,
    client: SocketAddr,
}

impl Payload for Datagram {
    fn len(&self) -> usize {
        self.bytes.len()
    }
    fn flip_bit(&mut self, bit: usize) {
        self.bytes.flip_bit(bit);
    }
}

/// A running proxy. Stop it with [`UdpProxy::stop`] (or drop it).
pub struct UdpProxy {
    local: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<io::Result<UdpProxyStats>>>,
    stats: watch::Receiver<UdpProxyStats>,
}

impl UdpProxy {
    /// Binds and starts the proxy on the current tokio runtime.
    pub async fn start(cfg: UdpProxyConfig) -> io::Result<UdpProxy> {
        let sock = Arc::new(UdpSocket::bind(cfg.listen).await?);
        let local = sock.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let (stats_tx, stats) = watch::channel(UdpProxyStats::default());
        let task = tokio::spawn(run(cfg, sock, stop_rx, stats_tx));
        Ok(UdpProxy {
            local,
            stop,
            task: Some(task),
            stats,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> UdpProxyStats {
        self.stats.borrow().clone()
    }

    pub async fn stop(mut self) -> io::Result<UdpProxyStats> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(t) => t.await.map_err(io::Error::other)?,
            None => Ok(self.stats()),
        }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn flow(client: SocketAddr, upstream: SocketAddr, up: bool) -> FlowMeta {
    let (src, dst) = if up {
        (client, upstream)
    } else {
        (upstream, client)
    };
    FlowMeta {
        protocol: Some(Protocol::Udp),
        src: Some(src.ip()),
        dst: Some(dst.ip()),
        src_port: Some(src.port()),
        dst_port: Some(dst.port()),
    }
}

async fn run(
    cfg: UdpProxyConfig,
    sock: Arc<UdpSocket>,
    mut stop: watch::Receiver<bool>,
    stats_tx: watch::Sender<UdpProxyStats>,
) -> io::Result<UdpProxyStats> {
    let clock = Clock::new(tokio::time::Instant::now().into_std());
    let seeds = SeedTree::new(cfg.seed);
    let mut up: Pipeline<Datagram> = Pipeline::new(&cfg.profiles.0, seeds.child("uplink"));
    let mut down: Pipeline<Datagram> = Pipeline::new(&cfg.profiles.1, seeds.child("downlink"));
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let (reply_tx, mut reply_rx) = mpsc::channel::<Datagram>(4096);
    let mut stats = UdpProxyStats::default();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let sleep = timer::until_earliest(&clock, [up.poll_timeout(), down.poll_timeout()]);
        tokio::select! {
            _ = stop.changed() => break,
            r = sock.recv_from(&mut buf) => {
                let (n, client) = match r {
                    Ok(x) => x,
                    // ICMP errors for earlier replies surface here; keep serving.
                    Err(_) => continue,
                };
                if n > cfg.max_datagram {
                    stats.oversized += 1;
                    continue;
                }
                if !upstreams.contains_key(&client) {
                    if upstreams.len() >= MAX_CLIENTS {
                        stats.refused_clients += 1;
                        continue;
                    }
                    let bind: SocketAddr = if cfg.upstream.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
                    let s = Arc::new(UdpSocket::bind(bind).await?);
                    s.connect(cfg.upstream).await?;
                    let (s2, tx) = (s.clone(), reply_tx.clone());
                    // The client's reader ends with the proxy (the reply
                    // channel closes): a reader blocked in recv would
                    // otherwise keep its socket and task for the life of the
                    // process (two per run in proxy mode; found by
                    // `glass soak`).
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; MAX_DATAGRAM];
                        loop {
                            let r = tokio::select! {
                                r = s2.recv(&mut buf) => r,
                                () = tx.closed() => break,
                            };
                            match r {
                                Ok(n) => {
                                    if tx.send(Datagram { bytes: buf[..n].to_vec(), client }).await.is_err() {
                                        break;
                                    }
                                }
                                // Upstream unreachable (ICMP): nothing to relay; keep listening.
                                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                                Err(_) => break,
                            }
                        }
                    });
                    upstreams.insert(client, s);
                    stats.clients = upstreams.len();
                }
                let now = clock.time(std::time::Instant::now());
                up.push(now, flow(client, cfg.upstream, true), Datagram { bytes: buf[..n].to_vec(), client });
            }
            Some(d) = reply_rx.recv() => {
                if d.bytes.len() > cfg.max_datagram {
                    stats.oversized += 1;
                    continue;
                }
                let now = clock.time(std::time::Instant::now());
                let client = d.client;
                down.push(now, flow(client, cfg.upstream, false), d);
            }
            _ = sleep => {}
        }
        let now = clock.time(std::time::Instant::now());
        while let Some(d) = up.poll_transmit(now) {
            if let Some(s) = upstreams.get(&d.payload.client)
                && s.send(&d.payload.bytes).await.is_err()
            {
                stats.send_errors += 1;
            }
        }
        while let Some(d) = down.poll_transmit(now) {
            if sock
                .send_to(&d.payload.bytes, d.payload.client)
                .await
                .is_err()
            {
                stats.send_errors += 1;
            }
        }
        stats.uplink = up.counters().clone();
        stats.downlink = down.counters().clone();
        let _ = stats_tx.send(stats.clone());
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stopped proxy closes the sockets it opened towards the upstream:
    /// their ports can be bound again.
    #[tokio::test]
    async fn stopping_closes_the_upstream_sockets() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let proxy = UdpProxy::start(UdpProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: upstream.local_addr().unwrap(),
            profiles: (Profile::default(), Profile::default()),
            seed: 1,
            max_datagram: MAX_DATAGRAM,
        })
        .await
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"hello", proxy.local_addr()).await.unwrap();
        let mut buf = [0u8; 16];
        let (_, from) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            upstream.recv_from(&mut buf),
        )
        .await
        .unwrap()
        .unwrap();
        // The upstream socket listens on 0.0.0.0:port.
        let port = from.port();
        assert!(
            std::net::UdpSocket::bind(("0.0.0.0", port)).is_err(),
            "the proxy's upstream socket holds its port while it runs"
        );
        proxy.stop().await.unwrap();
        let mut freed = false;
        for _ in 0..100 {
            if std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok() {
                freed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(freed, "port {port} still held after the proxy stopped");
    }
}
