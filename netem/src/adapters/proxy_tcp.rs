//! TCP stream proxy: delay, jitter, bandwidth and outages on a byte stream,
//! plus a slow close (the FIN crosses the delay like data) and a reset.
//!
//! A proxy sees bytes, not packets: the kernel on each side retransmits what
//! is lost, invisibly. So a profile with packet loss, duplication,
//! corruption, reordering, CoDel or a dropping outage is refused here with a
//! pointer to link mode, where kernel TCP sees real loss. Jitter keeps the
//! stream's order (FIFO); a queue limit becomes back-pressure (reading stops
//! while a direction holds more than [`WINDOW`] bytes), because a stream
//! cannot drop bytes. Each connection has its own pair of pipelines.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::timer;
use crate::bottleneck::{Aqm, OutageMode};
use crate::delay::Order;
use crate::flow::FlowMeta;
use crate::packet::Payload;
use crate::pipeline::Pipeline;
use crate::rng::SeedTree;
use crate::spec::{Change, Profile};
use crate::time::Clock;
use crate::units::QueueLimit;

/// Bytes one direction may hold in flight before the proxy stops reading.
pub const WINDOW: u64 = 256 * 1024;
const CHUNK: usize = 16 * 1024;

/// Checks a profile for a byte stream and adapts what can be adapted.
pub fn stream_profile(p: &Profile) -> Result<Profile, String> {
    const LINK: &str = "use link mode (`glass run --mode link`, `glass shell`: root or user namespaces), where kernel TCP sees real packet loss";
    let mut p = p.clone();
    if p.loss.is_some()
        || p.timeline
            .iter()
            .any(|c| matches!(c.change, Change::Loss(Some(_))))
    {
        return Err(format!(
            "loss cannot be represented on a TCP stream: a proxy sees bytes, and the kernel retransmits lost packets invisibly; {LINK}"
        ));
    }
    let packet_only = p.duplicate.is_some()
        || p.corrupt.is_some()
        || p.reorder.is_some()
        || p.timeline.iter().any(|c| {
            matches!(
                c.change,
                Change::Duplicate(_) | Change::Corrupt(_) | Change::Reorder(Some(_))
            )
        });
    if packet_only {
        return Err(format!(
            "duplication, corruption and reordering are packet effects a TCP stream cannot show; {LINK}"
        ));
    }
    let drops = |aqm: &Aqm| matches!(aqm, Aqm::CoDel { .. });
    if p.bottleneck.as_ref().is_some_and(|b| drops(&b.spec.aqm))
        || p.timeline
            .iter()
            .any(|c| matches!(&c.change, Change::Bottleneck(b) if drops(&b.aqm)))
    {
        return Err(format!(
            "CoDel drops packets, which a TCP stream cannot show; {LINK}"
        ));
    }
    if p.timeline
        .iter()
        .any(|c| c.change == Change::OutageStart(OutageMode::Drop))
    {
        return Err(
            "a dropping outage loses bytes, which a TCP stream cannot; use outage_mode = \"hold\""
                .into(),
        );
    }
    if let Some(d) = &mut p.delay {
        d.spec.order = Order::Fifo;
    }
    for c in &mut p.timeline {
        match &mut c.change {
            Change::Delay(d) => d.order = Order::Fifo,
            Change::Bottleneck(b) => b.limit = QueueLimit::Packets(u32::MAX),
            _ => {}
        }
    }
    if let Some(b) = &mut p.bottleneck {
        b.spec.limit = QueueLimit::Packets(u32::MAX);
    }
    Ok(p)
}

/// A profile for a control connection beside a protocol's datagrams (RTSP's
/// TCP session while its RTP goes over UDP): delay, jitter, rate and holding
/// outages as [`stream_profile`] keeps them, and the packet effects a byte
/// stream cannot show (loss, duplication, corruption, reordering, CoDel's
/// and outages' drops) left out. The datagrams, which the protocol's
/// figures are about, get the whole profile from their own proxy.
pub fn control_profile(p: &Profile) -> Result<Profile, String> {
    let mut p = p.clone();
    p.loss = None;
    p.duplicate = None;
    p.corrupt = None;
    p.reorder = None;
    if let Some(b) = &mut p.bottleneck
        && matches!(b.spec.aqm, Aqm::CoDel { .. })
    {
        b.spec.aqm = Aqm::DropTail;
    }
    p.timeline.retain_mut(|c| match &mut c.change {
        Change::Loss(_) | Change::Duplicate(_) | Change::Corrupt(_) | Change::Reorder(_) => false,
        Change::OutageStart(m) => {
            *m = OutageMode::Hold;
            true
        }
        Change::Bottleneck(b) => {
            if matches!(b.aqm, Aqm::CoDel { .. }) {
                b.aqm = Aqm::DropTail;
            }
            true
        }
        _ => true,
    });
    stream_profile(&p)
}

#[derive(Clone, Debug)]
pub struct TcpProxyConfig {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    /// (uplink: client → upstream, downlink: upstream → client), already
    /// checked with [`stream_profile`].
    pub profiles: (Profile, Profile),
    pub seed: u64,
    /// Reset both sides (RST) this long after a connection opens.
    pub reset_after: Option<Duration>,
    pub connect_timeout: Duration,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TcpProxyStats {
    pub connections: u64,
    pub upstream_failures: u64,
    pub resets: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

#[derive(Default)]
struct Shared {
    connections: AtomicU64,
    upstream_failures: AtomicU64,
    resets: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> TcpProxyStats {
        TcpProxyStats {
            connections: self.connections.load(Ordering::Relaxed),
            upstream_failures: self.upstream_failures.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
        }
    }
}

/// A piece of the stream, or its end.
#[derive(Clone, Debug)]
struct Chunk {
    bytes: Vec<u8>,
    fin: bool,
}

impl Payload for Chunk {
    fn len(&self) -> usize {
        self.bytes.len()
    }
    fn flip_bit(&mut self, _bit: usize) {}
}

pub struct TcpProxy {
    local: SocketAddr,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpProxy {
    pub async fn start(cfg: TcpProxyConfig) -> io::Result<TcpProxy> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let local = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(cfg),
            stop_rx,
            shared.clone(),
        ));
        Ok(TcpProxy {
            local,
            stop,
            shared,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> TcpProxyStats {
        self.shared.snapshot()
    }

    pub async fn stop(mut self) -> TcpProxyStats {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.shared.snapshot()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    cfg: Arc<TcpProxyConfig>,
    mut stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => {
                let Ok((client, _)) = r else { continue };
                n += 1;
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let (cfg, shared, stop) = (cfg.clone(), shared.clone(), stop.clone());
                tokio::spawn(async move {
                    let upstream = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(cfg.upstream)).await {
                        Ok(Ok(s)) => s,
                        _ => {
                            // Unreachable upstream: the client sees its connection closed.
                            shared.upstream_failures.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let _ = connection(client, upstream, &cfg, n, &shared, stop).await;
                });
            }
        }
    }
}

/// One direction of a connection: the pipeline its bytes cross.
struct Direction {
    pipe: Pipeline<Chunk>,
    read_done: bool,
    write_done: bool,
}

impl Direction {
    /// Writes what is due to `to`; a released FIN half-closes it.
    async fn flush(
        &mut self,
        now: crate::time::Time,
        to: &mut tokio::net::tcp::OwnedWriteHalf,
        bytes: &AtomicU64,
    ) {
        while let Some(d) = self.pipe.poll_transmit(now) {
            if d.payload.fin {
                let _ = to.shutdown().await;
                self.write_done = true;
            } else if to.write_all(&d.payload.bytes).await.is_ok() {
                bytes.fetch_add(d.payload.bytes.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

async fn connection(
    client: TcpStream,
    upstream: TcpStream,
    cfg: &TcpProxyConfig,
    n: u64,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let clock = Clock::new(std::time::Instant::now());
    let seeds = SeedTree::new(cfg.seed).child(&format!("tcp-{n}"));
    let (mut c_rd, mut c_wr) = client.into_split();
    let (mut u_rd, mut u_wr) = upstream.into_split();
    let mut up = Direction {
        pipe: Pipeline::new(&cfg.profiles.0, seeds.child("uplink")),
        read_done: false,
        write_done: false,
    };
    let mut down = Direction {
        pipe: Pipeline::new(&cfg.profiles.1, seeds.child("downlink")),
        read_done: false,
        write_done: false,
    };
    let mut c_buf = vec![0u8; CHUNK];
    let mut u_buf = vec![0u8; CHUNK];
    let reset_at = cfg.reset_after.map(|d| tokio::time::Instant::now() + d);
    let in_flight =
        |d: &Direction| d.pipe.counters().bytes_pushed - d.pipe.counters().bytes_delivered;
    while !(up.write_done && down.write_done) {
        let sleep =
            timer::until_earliest(&clock, [up.pipe.poll_timeout(), down.pipe.poll_timeout()]);
        let reset = async {
            match reset_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let read_up = !up.read_done && in_flight(&up) < WINDOW;
        let read_down = !down.read_done && in_flight(&down) < WINDOW;
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = reset => {
                shared.resets.fetch_add(1, Ordering::Relaxed);
                let client = c_rd.reunite(c_wr).map_err(io::Error::other)?;
                let upstream = u_rd.reunite(u_wr).map_err(io::Error::other)?;
                // SO_LINGER 0: closing sends RST instead of FIN.
                client.set_zero_linger()?;
                upstream.set_zero_linger()?;
                return Ok(());
            }
            r = c_rd.read(&mut c_buf), if read_up => {
                let n = r.unwrap_or(0);
                let now = clock.time(std::time::Instant::now());
                up.read_done = n == 0;
                up.pipe.push(now, FlowMeta::default(), Chunk { bytes: c_buf[..n].to_vec(), fin: n == 0 });
            }
            r = u_rd.read(&mut u_buf), if read_down => {
                let n = r.unwrap_or(0);
                let now = clock.time(std::time::Instant::now());
                down.read_done = n == 0;
                down.pipe.push(now, FlowMeta::default(), Chunk { bytes: u_buf[..n].to_vec(), fin: n == 0 });
            }
            _ = sleep => {}
        }
        let now = clock.time(std::time::Instant::now());
        up.flush(now, &mut u_wr, &shared.bytes_up).await;
        down.flush(now, &mut c_wr, &shared.bytes_down).await;
    }
    Ok(())
}
