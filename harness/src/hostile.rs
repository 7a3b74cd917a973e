//! Hostile clients: what a relay on the Internet meets besides its own
//! publishers and players, run against Glass's relay while a measured
//! stream crosses it, so a run says whether the stream's G2G and stalls
//! hold and whether the relay's memory stays bounded.
//!
//! A network's `hostile = [ … ]` lists attacks. They reach the relay
//! directly (from inside its namespace in link mode, on loopback in proxy
//! mode), not across an impaired mile: what is measured is the relay's
//! resistance, not a congested link. Each attack runs on its own thread
//! with blocking sockets, paced on the run's clock, bounded in count (its
//! rate × its window, or its connection count) and in time (its window).
//!
//! - `connect_flood`: TCP connections to RTMP's port at `rate` per second,
//!   each closed at once.
//! - `half_open`: `count` TCP connections to RTMP's port that send the
//!   handshake's first byte (C0) and nothing more, held to the end. (A SYN
//!   flood proper needs raw sockets and is the kernel's business: SYN
//!   cookies.)
//! - `slowloris`: `count` connections to RTSP's port that trickle a request
//!   line and headers one byte per `interval`, never ending them.
//! - `chunk_size`: every `interval`, an RTMP client that completes the
//!   handshake, sets a chunk size of 2³¹ and starts a 16 MiB message, sends
//!   64 KiB of it and goes silent.
//! - `taken_key`: at `rate` per second, an RTMP client that connects and
//!   publishes the measured stream's key (which the measured publisher
//!   holds), counting the refusals.
//! - `udp_junk`: seeded random datagrams (1–1200 bytes) to the UDP
//!   protocol's port at `rate` per second, sent in 1 ms batches.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netem::ConfigError;
use netem::time::Clock;
use netem::units::HumanDuration;
use serde::{Deserialize, Serialize};

/// The kinds of attack.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    ConnectFlood,
    HalfOpen,
    Slowloris,
    ChunkSize,
    TakenKey,
    UdpJunk,
}

/// What an attack kind takes: a rate per second (its bounds), a count of
/// connections (its bounds), an interval.
struct Needs {
    rate: Option<(f64, f64)>,
    count: Option<(u32, u32)>,
    interval: bool,
}

impl AttackKind {
    fn needs(self) -> Needs {
        let (rate, count, interval) = match self {
            AttackKind::ConnectFlood => (Some((1.0, 5_000.0)), None, false),
            AttackKind::HalfOpen => (None, Some((1, 4_096)), false),
            AttackKind::Slowloris => (None, Some((1, 4_096)), true),
            AttackKind::ChunkSize => (None, None, true),
            AttackKind::TakenKey => (Some((0.1, 200.0)), None, false),
            AttackKind::UdpJunk => (Some((1.0, 200_000.0)), None, false),
        };
        Needs {
            rate,
            count,
            interval,
        }
    }
}

/// One attack as a scenario writes it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttackFile {
    pub kind: AttackKind,
    /// Per second: connections (connect_flood), publish attempts
    /// (taken_key), datagrams (udp_junk).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Connections held (half_open, slowloris).
    #[serde(default)]
    pub count: Option<u32>,
    /// Between two bytes (slowloris) or two clients (chunk_size).
    #[serde(default)]
    pub interval: Option<HumanDuration>,
    /// The attack's window from the run's start (default: the whole run).
    #[serde(default)]
    pub start: Option<HumanDuration>,
    #[serde(default)]
    pub stop: Option<HumanDuration>,
}

/// A checked attack.
#[derive(Clone, Debug, PartialEq)]
pub struct Attack {
    pub kind: AttackKind,
    pub rate: f64,
    pub count: u32,
    pub interval: Duration,
    pub start: Duration,
    pub stop: Duration,
}

impl AttackFile {
    /// Checks the attack against the run's `duration`; errors name `field`.
    pub fn validate(&self, field: &str, duration: Duration) -> Result<Attack, ConfigError> {
        let bad = |f: &str, why: String| Err(ConfigError::invalid(format!("{field}.{f}"), why));
        let Needs {
            rate,
            count,
            interval,
        } = self.kind.needs();
        let name = format!("{:?}", self.kind);
        let rate = match (rate, self.rate) {
            (Some((lo, hi)), Some(r)) if (lo..=hi).contains(&r) => r,
            (Some((lo, hi)), Some(_)) => {
                return bad("rate", format!("between {lo} and {hi} per second"));
            }
            (Some(_), None) => return bad("rate", format!("{name} needs a rate (per second)")),
            (None, Some(_)) => return bad("rate", format!("{name} takes no rate")),
            (None, None) => 0.0,
        };
        let count = match (count, self.count) {
            (Some((lo, hi)), Some(c)) if (lo..=hi).contains(&c) => c,
            (Some((lo, hi)), Some(_)) => return bad("count", format!("between {lo} and {hi}")),
            (Some(_), None) => return bad("count", format!("{name} needs a count of connections")),
            (None, Some(_)) => return bad("count", format!("{name} takes no count")),
            (None, None) => 0,
        };
        let interval = match (interval, self.interval) {
            (true, Some(i)) if i.get() >= Duration::from_millis(10) => i.get(),
            (true, Some(_)) => return bad("interval", "at least 10ms".into()),
            (true, None) => Duration::from_secs(1),
            (false, Some(_)) => return bad("interval", format!("{name} takes no interval")),
            (false, None) => Duration::ZERO,
        };
        let start = self.start.map_or(Duration::ZERO, HumanDuration::get);
        let stop = self.stop.map_or(duration, HumanDuration::get);
        if stop <= start {
            return bad("stop", "after `start`".into());
        }
        if stop > duration {
            return bad("stop", "within the run's duration".into());
        }
        Ok(Attack {
            kind: self.kind,
            rate,
            count,
            interval,
            start,
            stop,
        })
    }
}

impl Attack {
    pub fn describe(&self) -> String {
        let what = match self.kind {
            AttackKind::ConnectFlood => format!("connect_flood {}/s", self.rate),
            AttackKind::HalfOpen => format!("half_open ×{}", self.count),
            AttackKind::Slowloris => {
                format!("slowloris ×{}, a byte per {:?}", self.count, self.interval)
            }
            AttackKind::ChunkSize => format!("chunk_size 2^31, a client per {:?}", self.interval),
            AttackKind::TakenKey => format!("taken_key {}/s", self.rate),
            AttackKind::UdpJunk => format!("udp_junk {}/s", self.rate),
        };
        format!(
            "{what}, {:.1}–{:.1} s",
            self.start.as_secs_f64(),
            self.stop.as_secs_f64()
        )
    }
}

/// Where the relay listens, as the attackers reach it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Targets {
    pub rtmp: Option<SocketAddr>,
    pub rtsp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
}

/// What one attack did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttackReport {
    pub attack: String,
    /// Connections (or publish attempts, or datagrams) tried.
    pub attempts: u64,
    /// Connections that the relay accepted (TCP's handshake completed).
    pub connected: u64,
    /// Connect errors and resets.
    pub failed: u64,
    /// Attempts the relay ended on its side: publishes refused, held
    /// connections it closed before the end.
    pub closed_by_relay: u64,
    /// taken_key: publishes the relay accepted (the key was free: the
    /// measured publisher had not claimed it yet, or had lost it).
    pub publish_accepted: u64,
    pub bytes_sent: u64,
}

/// The attacks' figures and the process's memory over the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostileReport {
    pub attacks: Vec<AttackReport>,
    /// Glass's resident memory (relay, clients and attackers: one process)
    /// when the attacks started, and the most seen during the run
    /// (sampled every 100 ms).
    pub rss_kib_start: u64,
    pub rss_kib_max: u64,
}

#[derive(Default)]
struct Counts {
    attempts: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    closed_by_relay: AtomicU64,
    publish_accepted: AtomicU64,
    bytes: AtomicU64,
}

struct Running {
    attack: String,
    counts: Arc<Counts>,
    thread: JoinHandle<()>,
}

/// A run's attackers, on their own threads.
pub struct Hostile {
    done: Arc<AtomicBool>,
    running: Vec<Running>,
    monitor: Option<JoinHandle<u64>>,
    rss_kib_start: u64,
}

/// What an attacker thread needs.
#[derive(Clone)]
struct Cx {
    clock: Clock,
    done: Arc<AtomicBool>,
    counts: Arc<Counts>,
    key: String,
    seed: u64,
}

impl Cx {
    fn now(&self) -> Duration {
        self.clock.time(Instant::now()).since_start()
    }

    /// Sleeps until `t` on the run's clock in short steps; false once the
    /// run is done.
    fn wait_until(&self, t: Duration) -> bool {
        loop {
            if self.done.load(Ordering::Relaxed) {
                return false;
            }
            let now = self.now();
            if now >= t {
                return true;
            }
            std::thread::sleep((t - now).min(Duration::from_millis(50)));
        }
    }

    fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

const IO_TIMEOUT: Duration = Duration::from_secs(1);

impl Hostile {
    /// Starts every attack on the relay at `targets`, from the server's
    /// host (threads spawned in its namespace stay there).
    pub fn start(
        attacks: &[Attack],
        targets: Targets,
        key: &str,
        (clock, seed): (Clock, u64),
        topo: &crate::topology::Topology,
    ) -> anyhow::Result<Hostile> {
        let done = Arc::new(AtomicBool::new(false));
        let mut cxs: Vec<(Attack, Cx)> = Vec::new();
        for (i, a) in attacks.iter().enumerate() {
            let target = match a.kind {
                AttackKind::Slowloris => targets.rtsp,
                AttackKind::UdpJunk => targets.udp,
                _ => targets.rtmp,
            };
            if target.is_none() {
                anyhow::bail!("{}: the relay has no port for it", a.describe());
            }
            cxs.push((
                a.clone(),
                Cx {
                    clock,
                    done: done.clone(),
                    counts: Arc::new(Counts::default()),
                    key: key.to_string(),
                    seed: seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                },
            ));
        }
        let jobs = cxs.clone();
        let spawn = move || -> std::io::Result<Vec<JoinHandle<()>>> {
            jobs.into_iter()
                .map(|(a, cx)| {
                    std::thread::Builder::new()
                        .name("glass-hostile".into())
                        .spawn(move || match a.kind {
                            AttackKind::ConnectFlood => connect_flood(&a, targets.rtmp, &cx),
                            AttackKind::HalfOpen => half_open(&a, targets.rtmp, &cx),
                            AttackKind::Slowloris => slowloris(&a, targets.rtsp, &cx),
                            AttackKind::ChunkSize => chunk_size(&a, targets.rtmp, &cx),
                            AttackKind::TakenKey => taken_key(&a, targets.rtmp, &cx),
                            AttackKind::UdpJunk => udp_junk(&a, targets.udp, &cx),
                        })
                })
                .collect()
        };
        let threads = topo.run_at_server(spawn)?;
        let rss_kib_start = crate::procstat::rss_kib();
        let monitor = {
            let done = done.clone();
            std::thread::Builder::new()
                .name("glass-hostile-rss".into())
                .spawn(move || {
                    let mut max = 0;
                    while !done.load(Ordering::Relaxed) {
                        max = max.max(crate::procstat::rss_kib());
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    max.max(crate::procstat::rss_kib())
                })?
        };
        Ok(Hostile {
            done,
            running: cxs
                .into_iter()
                .zip(threads)
                .map(|((a, cx), thread)| Running {
                    attack: a.describe(),
                    counts: cx.counts,
                    thread,
                })
                .collect(),
            monitor: Some(monitor),
            rss_kib_start,
        })
    }

    /// Ends every attack (each also ends at its stop instant) and reports.
    pub fn stop(mut self) -> HostileReport {
        self.done.store(true, Ordering::SeqCst);
        let attacks = std::mem::take(&mut self.running)
            .into_iter()
            .map(|r| {
                let _ = r.thread.join();
                let c = &r.counts;
                AttackReport {
                    attack: r.attack,
                    attempts: c.attempts.load(Ordering::Relaxed),
                    connected: c.connected.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    closed_by_relay: c.closed_by_relay.load(Ordering::Relaxed),
                    publish_accepted: c.publish_accepted.load(Ordering::Relaxed),
                    bytes_sent: c.bytes.load(Ordering::Relaxed),
                }
            })
            .collect();
        HostileReport {
            attacks,
            rss_kib_start: self.rss_kib_start,
            rss_kib_max: self.monitor.take().map_or(0, |m| m.join().unwrap_or(0)),
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

fn connect(to: SocketAddr, cx: &Cx) -> Option<TcpStream> {
    cx.add(&cx.counts.attempts, 1);
    match TcpStream::connect_timeout(&to, IO_TIMEOUT) {
        Ok(s) => {
            cx.add(&cx.counts.connected, 1);
            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            let _ = s.set_write_timeout(Some(IO_TIMEOUT));
            Some(s)
        }
        Err(_) => {
            cx.add(&cx.counts.failed, 1);
            None
        }
    }
}

/// Paced attempts: `f` at `rate` per second through the window; `f` is
/// given the attempt's index. Falls behind (a busy machine) without a
/// burst.
fn paced(a: &Attack, cx: &Cx, mut f: impl FnMut(u64)) {
    let gap = Duration::from_secs_f64(1.0 / a.rate);
    let mut next = a.start;
    let mut i = 0;
    while next < a.stop && cx.wait_until(next) {
        f(i);
        i += 1;
        next += gap;
        let now = cx.now();
        if now > next + gap * 10 {
            next = now;
        }
    }
}

fn connect_flood(a: &Attack, to: Option<SocketAddr>, cx: &Cx) {
    let Some(to) = to else { return };
    paced(a, cx, |_| {
        drop(connect(to, cx));
    });
}

/// Holds `conns` until the window ends; counts those the relay closed.
fn hold<T>(a: &Attack, conns: &mut Vec<T>, cx: &Cx, mut each_tick: impl FnMut(&mut T) -> bool) {
    // Held connections are looked at every `interval` (slowloris: a byte
    // each time), or every 100 ms.
    let tick = if a.interval.is_zero() {
        Duration::from_millis(100)
    } else {
        a.interval
    };
    let mut next = cx.now();
    while next < a.stop && cx.wait_until(next) {
        let before = conns.len();
        conns.retain_mut(&mut each_tick);
        cx.add(&cx.counts.closed_by_relay, (before - conns.len()) as u64);
        next += tick;
    }
}

fn half_open(a: &Attack, to: Option<SocketAddr>, cx: &Cx) {
    let Some(to) = to else { return };
    if !cx.wait_until(a.start) {
        return;
    }
    let mut conns: Vec<TcpStream> = (0..a.count)
        .filter_map(|_| {
            let mut s = connect(to, cx)?;
            // C0: the RTMP version; C1 never follows.
            s.write_all(&[3]).ok()?;
            cx.add(&cx.counts.bytes, 1);
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect();
    let mut buf = [0u8; 4096];
    hold(a, &mut conns, cx, |s| alive(s, &mut buf));
}

/// Whether a non-blocking connection is still open (reads what the relay
/// sent, e.g. S0 S1 S2).
fn alive(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    loop {
        match s.read(buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

fn slowloris(a: &Attack, to: Option<SocketAddr>, cx: &Cx) {
    let Some(to) = to else { return };
    if !cx.wait_until(a.start) {
        return;
    }
    const REQUEST: &[u8] = b"OPTIONS rtsp://relay/live/x RTSP/1.0\r\nCSeq: 1\r\n";
    let mut conns: Vec<(TcpStream, usize)> = (0..a.count)
        .filter_map(|_| {
            let s = connect(to, cx)?;
            s.set_nonblocking(true).ok()?;
            Some((s, 0))
        })
        .collect();
    let mut buf = [0u8; 4096];
    hold(a, &mut conns, cx, |(s, sent)| {
        // The request line, then one header byte after another forever.
        let byte = if *sent < REQUEST.len() {
            REQUEST[*sent]
        } else {
            b"X-Slow: a\r\n"[(*sent - REQUEST.len()) % 11]
        };
        let ok = alive(s, &mut buf) && s.write(&[byte]).is_ok_and(|n| n == 1);
        if ok {
            *sent += 1;
            cx.add(&cx.counts.bytes, 1);
        }
        ok
    });
}

/// An RTMP client's handshake on a blocking socket; the bytes that came
/// after it.
fn rtmp_handshake(s: &mut TcpStream, cx: &Cx) -> Option<Vec<u8>> {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    let mut h = Handshake::new(PeerType::Client);
    let c0c1 = h.generate_outbound_p0_and_p1().ok()?;
    s.write_all(&c0c1).ok()?;
    cx.add(&cx.counts.bytes, c0c1.len() as u64);
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok().filter(|&n| n > 0)?;
        match h.process_bytes(&buf[..n]).ok()? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                s.write_all(&response_bytes).ok()?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                s.write_all(&response_bytes).ok()?;
                return Some(remaining_bytes);
            }
        }
    }
}

fn chunk_size(a: &Attack, to: Option<SocketAddr>, cx: &Cx) {
    let Some(to) = to else { return };
    let rate = Attack {
        rate: 1.0 / a.interval.as_secs_f64(),
        ..a.clone()
    };
    paced(&rate, cx, |_| {
        let Some(mut s) = connect(to, cx) else { return };
        if rtmp_handshake(&mut s, cx).is_none() {
            cx.add(&cx.counts.closed_by_relay, 1);
            return;
        }
        // Set Chunk Size (type 1) on chunk stream 2: 2^31, which RTMP's
        // specification forbids (the top bit must be 0).
        let mut m = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
        m.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        // A video message (type 9) on chunk stream 6 claiming 16 MiB − 1,
        // then 64 KiB of it.
        m.extend_from_slice(&[0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
        m.extend(std::iter::repeat_n(0x17u8, 64 * 1024));
        match s.write_all(&m) {
            Ok(()) => cx.add(&cx.counts.bytes, m.len() as u64),
            Err(_) => cx.add(&cx.counts.closed_by_relay, 1),
        }
        // Silent for a while (the relay holds a part of a message), then
        // gone.
        let mut buf = [0u8; 1024];
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        if matches!(s.read(&mut buf), Ok(0)) {
            cx.add(&cx.counts.closed_by_relay, 1);
        }
    });
}

fn taken_key(a: &Attack, to: Option<SocketAddr>, cx: &Cx) {
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };
    let Some(to) = to else { return };
    let refused = |cx: &Cx| cx.add(&cx.counts.closed_by_relay, 1);
    paced(a, cx, |_| {
        let Some(mut s) = connect(to, cx) else { return };
        let Some(rest) = rtmp_handshake(&mut s, cx) else {
            refused(cx);
            return;
        };
        let Ok((mut session, mut out)) = ClientSession::new(ClientSessionConfig::new()) else {
            return;
        };
        let send =
            |s: &mut TcpStream, results: Vec<ClientSessionResult>| -> Vec<ClientSessionEvent> {
                let mut events = Vec::new();
                for r in results {
                    match r {
                        ClientSessionResult::OutboundResponse(p) => {
                            if s.write_all(&p.bytes).is_ok() {
                                cx.add(&cx.counts.bytes, p.bytes.len() as u64);
                            }
                        }
                        ClientSessionResult::RaisedEvent(e) => events.push(e),
                        ClientSessionResult::UnhandleableMessageReceived(_) => {}
                    }
                }
                events
            };
        out.extend(session.handle_input(&rest).unwrap_or_default());
        send(&mut s, out);
        if let Ok(r) = session.request_connection(crate::relay::APP.to_string()) {
            send(&mut s, vec![r]);
        }
        let mut buf = [0u8; 8192];
        let mut asked = false;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => {
                    refused(cx);
                    return;
                }
                Ok(n) => n,
            };
            let Ok(results) = session.handle_input(&buf[..n]) else {
                refused(cx);
                return;
            };
            for e in send(&mut s, results) {
                match e {
                    ClientSessionEvent::ConnectionRequestAccepted if !asked => {
                        asked = true;
                        if let Ok(r) =
                            session.request_publishing(cx.key.clone(), PublishRequestType::Live)
                        {
                            send(&mut s, vec![r]);
                        }
                    }
                    ClientSessionEvent::PublishRequestAccepted => {
                        // The key was free (counted; the connection then
                        // closes and frees it again).
                        cx.add(&cx.counts.publish_accepted, 1);
                        return;
                    }
                    _ => {}
                }
            }
        }
    });
}

fn udp_junk(a: &Attack, to: Option<SocketAddr>, cx: &Cx) {
    let Some(to) = to else { return };
    let any: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(sock) = UdpSocket::bind(any) else {
        cx.add(&cx.counts.failed, 1);
        return;
    };
    let mut rng = netem::rng::SeedTree::new(cx.seed).rng();
    let mut buf = [0u8; 1200];
    // Batches every millisecond: per-packet sleeps cannot pace 50k/s.
    let batch = Attack {
        rate: 1000.0,
        ..a.clone()
    };
    let per_ms = a.rate / 1000.0;
    let mut owed = 0.0;
    paced(&batch, cx, |_| {
        owed += per_ms;
        while owed >= 1.0 {
            owed -= 1.0;
            let len = 1 + rng.below(buf.len() as u64) as usize;
            for b in &mut buf[..len] {
                *b = rng.below(256) as u8;
            }
            cx.add(&cx.counts.attempts, 1);
            match sock.send_to(&buf[..len], to) {
                Ok(n) => cx.add(&cx.counts.bytes, n as u64),
                Err(_) => cx.add(&cx.counts.failed, 1),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attack(toml: &str) -> Result<Attack, ConfigError> {
        let f: AttackFile = toml::from_str(toml).map_err(|e| ConfigError::Toml(e.to_string()))?;
        f.validate("hostile[0]", Duration::from_secs(10))
    }

    #[test]
    fn attacks_are_checked_with_the_field_named() {
        let a =
            attack("kind = \"connect_flood\"\nrate = 1000\nstart = \"2s\"\nstop = \"8s\"").unwrap();
        assert_eq!(
            (a.rate, a.start, a.stop),
            (1000.0, Duration::from_secs(2), Duration::from_secs(8))
        );
        let a = attack("kind = \"slowloris\"\ncount = 50").unwrap();
        assert_eq!(
            (a.count, a.interval, a.stop),
            (50, Duration::from_secs(1), Duration::from_secs(10))
        );
        for (toml, needle) in [
            ("kind = \"connect_flood\"", "hostile[0].rate"),
            (
                "kind = \"udp_junk\"\nrate = 1000000",
                "between 1 and 200000",
            ),
            ("kind = \"half_open\"", "needs a count"),
            (
                "kind = \"half_open\"\ncount = 10\nrate = 5",
                "takes no rate",
            ),
            (
                "kind = \"taken_key\"\nrate = 5\ninterval = \"1s\"",
                "takes no interval",
            ),
            ("kind = \"chunk_size\"\ninterval = \"1ms\"", "at least 10ms"),
            ("kind = \"chunk_size\"\nstop = \"11s\"", "within the run"),
            (
                "kind = \"chunk_size\"\nstart = \"5s\"\nstop = \"5s\"",
                "after `start`",
            ),
        ] {
            let e = attack(toml).unwrap_err().to_string();
            assert!(e.contains(needle), "{toml}: {e}");
        }
        let e = attack("kind = \"syn_flood\"").unwrap_err().to_string();
        assert!(e.contains("connect_flood"), "{e}");
    }
}
