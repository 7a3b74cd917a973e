//! Cross traffic: competing flows that share a mile with the media, so a
//! loss-based protocol meets a queue that reacts to its own sending and
//! BBR or FEC are not flattered by loss that ignores load.
//!
//! A network's `cross = [ … ]` adds, per mile that has flows, one extra
//! host (`first_cross` next to the publisher, `last_cross` next to the
//! player) joined to that side by a clean link: its traffic to or from the
//! server crosses the same mile, in the same queue, as the media. Flows are
//! bulk TCP with a chosen congestion control, constant-bit-rate UDP, or
//! on/off UDP, each started and stopped on the run's timeline. Link mode
//! only: proxy mode has no shared queue to put them in.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use netem::ConfigError;
use netem::adapters::graph::HostSpec;
use netem::adapters::link::LinkNetwork;
use netem::adapters::tcpinfo::set_congestion;
use netem::time::Clock;
use netem::units::{BitRate, HumanDuration};
use serde::{Deserialize, Serialize};

/// Which mile a flow shares.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mile {
    First,
    Last,
}

/// Towards the server (`uplink`) or away from it (`downlink`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Way {
    Uplink,
    Downlink,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CrossKind {
    /// One bulk TCP transfer, as fast as its congestion control allows.
    Tcp,
    /// UDP at a constant bit rate.
    Cbr,
    /// UDP at `rate` for `on`, silent for `off`, repeated.
    Onoff,
}

/// One flow as a scenario writes it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CrossFile {
    /// `first` or `last`.
    pub mile: Mile,
    /// The player group whose last mile it shares (`mile = "last"` in a
    /// network with `players`; default: the first group).
    #[serde(default)]
    pub group: Option<String>,
    /// `uplink` (default: towards the server) or `downlink`.
    #[serde(default = "uplink")]
    pub direction: Way,
    /// `tcp`, `cbr` or `onoff`.
    pub kind: CrossKind,
    /// TCP's congestion control (default "cubic").
    #[serde(default)]
    pub cc: Option<String>,
    /// UDP's rate (cbr, onoff).
    #[serde(default)]
    pub rate: Option<BitRate>,
    /// On and off periods (onoff).
    #[serde(default)]
    pub on: Option<HumanDuration>,
    #[serde(default)]
    pub off: Option<HumanDuration>,
    /// When it starts and stops, from the run's start (default: the whole run).
    #[serde(default)]
    pub start: Option<HumanDuration>,
    #[serde(default)]
    pub stop: Option<HumanDuration>,
}

fn uplink() -> Way {
    Way::Uplink
}

/// What a flow sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Traffic {
    Tcp {
        cc: String,
    },
    Udp {
        bps: u64,
        on_off: Option<(Duration, Duration)>,
    },
}

/// A checked flow.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossFlow {
    pub mile: Mile,
    /// The player group whose last mile it shares (index, name if the
    /// scenario named one).
    pub group: (usize, Option<String>),
    pub way: Way,
    pub traffic: Traffic,
    pub start: Duration,
    pub stop: Duration,
}

impl CrossFile {
    /// Checks the flow against the run's `duration`; errors name `field`.
    /// `groups` are the network's player groups' names.
    pub fn validate(
        &self,
        field: &str,
        duration: Duration,
        groups: &[&str],
    ) -> Result<CrossFlow, ConfigError> {
        let bad = |f: &str, why: &str| Err(ConfigError::invalid(format!("{field}.{f}"), why));
        let group = match (&self.group, self.mile) {
            (None, _) => (0, None),
            (Some(_), Mile::First) => {
                return bad("group", "applies to the last mile (mile = \"last\")");
            }
            (Some(g), Mile::Last) => match groups.iter().position(|x| x == g) {
                Some(i) => (i, Some(g.clone())),
                None => {
                    return Err(ConfigError::invalid(
                        format!("{field}.group"),
                        format!(
                            "\"{g}\" is not one of the network's player groups ({})",
                            groups.join(", ")
                        ),
                    ));
                }
            },
        };
        let start = self.start.map_or(Duration::ZERO, HumanDuration::get);
        let stop = self.stop.map_or(duration, HumanDuration::get);
        if stop <= start {
            return bad("stop", "after `start`");
        }
        if stop > duration {
            return bad("stop", "within the run's duration");
        }
        if self.rate.is_some() && self.kind == CrossKind::Tcp {
            return bad("rate", "applies to UDP flows (kind = \"cbr\" or \"onoff\")");
        }
        let traffic = match self.kind {
            CrossKind::Tcp => {
                let cc = self.cc.clone().unwrap_or_else(|| "cubic".into());
                let ok = !cc.is_empty()
                    && cc.len() <= 15
                    && cc.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return bad(
                        "cc",
                        "a congestion control name such as \"cubic\" or \"bbr\"",
                    );
                }
                if self.on.is_some() || self.off.is_some() {
                    return bad("on", "applies to kind = \"onoff\"");
                }
                Traffic::Tcp { cc }
            }
            CrossKind::Cbr | CrossKind::Onoff => {
                if self.cc.is_some() {
                    return bad("cc", "applies to kind = \"tcp\"");
                }
                let Some(rate) = self.rate else {
                    return bad("rate", "a UDP flow needs a rate, e.g. \"2Mbit/s\"");
                };
                let bps = rate.bits_per_sec();
                if !(10_000..=1_000_000_000).contains(&bps) {
                    return bad("rate", "between 10 kbit/s and 1 Gbit/s");
                }
                let on_off = match (self.kind, self.on, self.off) {
                    (CrossKind::Onoff, Some(on), Some(off)) => {
                        if on.get() < Duration::from_millis(10)
                            || off.get() < Duration::from_millis(10)
                        {
                            return bad("on", "on and off are at least 10 ms each");
                        }
                        Some((on.get(), off.get()))
                    }
                    (CrossKind::Onoff, _, _) => {
                        return bad("on", "kind = \"onoff\" needs `on` and `off` periods");
                    }
                    (_, None, None) => None,
                    _ => return bad("on", "applies to kind = \"onoff\""),
                };
                Traffic::Udp { bps, on_off }
            }
        };
        Ok(CrossFlow {
            mile: self.mile,
            group,
            way: self.direction,
            traffic,
            start,
            stop,
        })
    }
}

/// What one flow did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CrossReport {
    /// "first mile uplink, tcp/cubic, 2–6 s".
    pub flow: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Received bits per second of its active period.
    pub goodput_mbps: f64,
    /// Received bits per second of the run, second by second.
    pub per_second_bits: Vec<u64>,
}

impl CrossFlow {
    /// The extra host that sends or receives the flow, and the host it
    /// hangs off: `first_cross` (198.18.1.2) next to the publisher, or per
    /// player group `g` `last_cross` (g = 0, 198.18.2.2) or
    /// `last_cross_G` (198.18.(2 + g).2) next to that group's host.
    pub fn host(&self) -> (HostSpec, usize) {
        match self.mile {
            Mile::First => (
                HostSpec {
                    name: "first_cross".into(),
                    addr: Ipv4Addr::new(198, 18, 1, 2),
                },
                0,
            ),
            Mile::Last => {
                let g = self.group.0;
                let name = match g {
                    0 => "last_cross".to_string(),
                    g => format!("last_cross_{g}"),
                };
                let addr = Ipv4Addr::new(198, 18, 2 + g as u8, 2);
                (HostSpec { name, addr }, 2 + g)
            }
        }
    }

    fn describe(&self) -> String {
        let mile = match (self.mile, &self.group.1) {
            (Mile::First, _) => "first mile".to_string(),
            (Mile::Last, None) => "last mile".to_string(),
            (Mile::Last, Some(g)) => format!("{g}'s last mile"),
        };
        let way = match self.way {
            Way::Uplink => "uplink",
            Way::Downlink => "downlink",
        };
        let what = match &self.traffic {
            Traffic::Tcp { cc } => format!("tcp/{cc}"),
            Traffic::Udp { bps, on_off: None } => format!("cbr {:.2} Mbit/s", *bps as f64 / 1e6),
            Traffic::Udp {
                bps,
                on_off: Some((on, off)),
            } => format!("onoff {:.2} Mbit/s {:?}/{:?}", *bps as f64 / 1e6, on, off),
        };
        format!(
            "{mile} {way}, {what}, {:.1}–{:.1} s",
            self.start.as_secs_f64(),
            self.stop.as_secs_f64()
        )
    }
}

/// The extra hosts a network's flows need (one per mile that has any).
pub fn hosts(flows: &[CrossFlow]) -> Vec<(HostSpec, usize)> {
    let mut out: Vec<(HostSpec, usize)> = Vec::new();
    for f in flows {
        let h = f.host();
        if !out.iter().any(|(o, _)| o.name == h.0.name) {
            out.push(h);
        }
    }
    out
}

/// How long a socket call waits before looking at the clock again.
const POLL: Duration = Duration::from_millis(100);
/// UDP datagram size.
const DATAGRAM: usize = 1200;

/// One flow's threads: the sender gives the bytes it sent, the sink the
/// bits it received per second.
struct Running {
    flow: String,
    sender: JoinHandle<u64>,
    sink: JoinHandle<Vec<u64>>,
    active: Duration,
}

/// The flows of a run, running on their own threads.
pub struct CrossTraffic {
    done: Arc<AtomicBool>,
    flows: Vec<Running>,
}

impl CrossTraffic {
    /// Opens each flow's sockets in its hosts' namespaces (the server's
    /// and the mile's cross host) and starts its sender and sink, which
    /// follow `clock` (the run's) until their stop instant.
    pub fn start(link: &LinkNetwork, flows: &[CrossFlow], clock: Clock) -> Result<CrossTraffic> {
        let done = Arc::new(AtomicBool::new(false));
        let mut out = Vec::new();
        for f in flows {
            let (cross, _) = f.host();
            let server = link.graph().hosts()[1].clone();
            let (from, to) = match f.way {
                Way::Uplink => (cross, server),
                Way::Downlink => (server, cross),
            };
            let ns = |h: &HostSpec| {
                link.namespace_of(&h.name)
                    .with_context(|| format!("no host {} in the link", h.name))
            };
            let (ns_from, ns_to) = (ns(&from)?, ns(&to)?);
            let what = f.describe();
            let active = f.stop - f.start;
            let (sender, sink) = match &f.traffic {
                Traffic::Tcp { cc } => {
                    let listener = ns_to.run(|| TcpListener::bind((to.addr, 0)))?;
                    let at = listener.local_addr()?;
                    let stream = ns_from.run(|| TcpStream::connect(at))?;
                    set_congestion(&stream, cc)
                        .with_context(|| format!("cross traffic: congestion control {cc}"))?;
                    let (accepted, _) = listener.accept()?;
                    let flow = f.clone();
                    let d = done.clone();
                    let sender = std::thread::Builder::new()
                        .name("glass-cross-tx".into())
                        .spawn(move || tcp_send(stream, &flow, clock, &d))?;
                    let d = done.clone();
                    let sink = std::thread::Builder::new()
                        .name("glass-cross-rx".into())
                        .spawn(move || tcp_sink(accepted, clock, &d))?;
                    (sender, sink)
                }
                Traffic::Udp { .. } => {
                    let rx = ns_to.run(|| UdpSocket::bind((to.addr, 0)))?;
                    let at = rx.local_addr()?;
                    let tx = ns_from.run(|| UdpSocket::bind((from.addr, 0)))?;
                    let flow = f.clone();
                    let d = done.clone();
                    let sender = std::thread::Builder::new()
                        .name("glass-cross-tx".into())
                        .spawn(move || udp_send(tx, at, &flow, clock, &d))?;
                    let d = done.clone();
                    let sink = std::thread::Builder::new()
                        .name("glass-cross-rx".into())
                        .spawn(move || udp_sink(rx, clock, &d))?;
                    (sender, sink)
                }
            };
            out.push(Running {
                flow: what,
                sender,
                sink,
                active,
            });
        }
        Ok(CrossTraffic { done, flows: out })
    }

    /// Stops every flow (they stop by themselves at their stop instant;
    /// this ends the sinks and anything still running) and reports.
    pub fn stop(mut self) -> Vec<CrossReport> {
        self.done.store(true, Ordering::SeqCst);
        std::mem::take(&mut self.flows)
            .into_iter()
            .map(
                |Running {
                     flow,
                     sender,
                     sink,
                     active,
                 }| {
                    let bytes_sent = sender.join().unwrap_or(0);
                    let per_second_bits = sink.join().unwrap_or_default();
                    let bytes_received = per_second_bits.iter().sum::<u64>() / 8;
                    CrossReport {
                        flow,
                        bytes_sent,
                        bytes_received,
                        goodput_mbps: bytes_received as f64 * 8.0 / active.as_secs_f64() / 1e6,
                        per_second_bits,
                    }
                },
            )
            .collect()
    }
}

impl Drop for CrossTraffic {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Sleeps until `t` on `clock`, in steps that notice `done`; false if done.
fn wait_until(clock: Clock, t: Duration, done: &AtomicBool) -> bool {
    loop {
        if done.load(Ordering::Relaxed) {
            return false;
        }
        let now = clock.time(Instant::now()).since_start();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(POLL));
    }
}

fn since_start(clock: Clock) -> Duration {
    clock.time(Instant::now()).since_start()
}

fn tcp_send(mut s: TcpStream, f: &CrossFlow, clock: Clock, done: &AtomicBool) -> u64 {
    let _ = s.set_write_timeout(Some(POLL));
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    if wait_until(clock, f.start, done) {
        while since_start(clock) < f.stop && !done.load(Ordering::Relaxed) {
            match s.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    sent
}

/// Adds `bytes` received now to their second of the run.
fn count(per_second: &mut Vec<u64>, clock: Clock, bytes: usize) {
    let second = since_start(clock).as_secs() as usize;
    if per_second.len() <= second {
        per_second.resize(second + 1, 0);
    }
    per_second[second] += bytes as u64 * 8;
}

/// Reads until the peer closes or the run is done: bits per second.
fn tcp_sink(mut s: TcpStream, clock: Clock, done: &AtomicBool) -> Vec<u64> {
    let _ = s.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 64 * 1024];
    let mut per_second = Vec::new();
    while !done.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => count(&mut per_second, clock, n),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    per_second
}

fn udp_send(s: UdpSocket, to: SocketAddr, f: &CrossFlow, clock: Clock, done: &AtomicBool) -> u64 {
    let Traffic::Udp { bps, on_off } = f.traffic else {
        return 0;
    };
    let gap = Duration::from_secs_f64(DATAGRAM as f64 * 8.0 / bps as f64);
    let payload = [0u8; DATAGRAM];
    let mut sent = 0u64;
    let mut next = f.start;
    while next < f.stop && wait_until(clock, next, done) {
        let on = match on_off {
            None => true,
            Some((on, off)) => {
                let phase = (next - f.start).as_nanos() % (on + off).as_nanos();
                phase < on.as_nanos()
            }
        };
        if on && s.send_to(&payload, to).is_ok() {
            sent += DATAGRAM as u64;
        }
        next += gap;
        // Behind (a busy machine): catch up without a burst.
        let now = since_start(clock);
        if now > next + 10 * gap {
            next = now;
        }
    }
    sent
}

fn udp_sink(s: UdpSocket, clock: Clock, done: &AtomicBool) -> Vec<u64> {
    let _ = s.set_read_timeout(Some(POLL));
    let mut buf = [0u8; 2048];
    let mut per_second = Vec::new();
    while !done.load(Ordering::Relaxed) {
        if let Ok(n) = s.recv(&mut buf) {
            count(&mut per_second, clock, n);
        }
    }
    per_second
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(toml: &str) -> Result<CrossFlow, ConfigError> {
        let f: CrossFile = toml::from_str(toml).map_err(|e| ConfigError::Toml(e.to_string()))?;
        f.validate("cross[0]", Duration::from_secs(10), &["player"])
    }

    #[test]
    fn a_last_mile_flow_names_its_player_group_and_hangs_off_its_host() {
        let groups = ["home", "mobile"];
        let parse = |t: &str| {
            let f: CrossFile = toml::from_str(t).unwrap();
            f.validate("cross[0]", Duration::from_secs(10), &groups)
        };
        let f = parse("mile = \"last\"\ngroup = \"mobile\"\nkind = \"tcp\"").unwrap();
        let (h, attach) = f.host();
        assert_eq!((h.name.as_str(), attach), ("last_cross_1", 3));
        assert_eq!(h.addr, Ipv4Addr::new(198, 18, 3, 2));
        assert!(f.describe().starts_with("mobile's last mile uplink"));
        // Without a group: the first group's last mile, as before groups.
        let f = parse("mile = \"last\"\nkind = \"tcp\"").unwrap();
        assert_eq!(f.host().0.name, "last_cross");
        let e = parse("mile = \"last\"\ngroup = \"office\"\nkind = \"tcp\"").unwrap_err();
        assert!(e.to_string().contains("home, mobile"), "{e}");
        let e = parse("mile = \"first\"\ngroup = \"home\"\nkind = \"tcp\"").unwrap_err();
        assert!(e.to_string().contains("cross[0].group"), "{e}");
    }

    #[test]
    fn flows_are_checked_with_the_field_named() {
        let f =
            flow("mile = \"first\"\nkind = \"tcp\"\ncc = \"bbr\"\nstart = \"2s\"\nstop = \"6s\"")
                .unwrap();
        assert_eq!(f.traffic, Traffic::Tcp { cc: "bbr".into() });
        assert_eq!(
            (f.start, f.stop),
            (Duration::from_secs(2), Duration::from_secs(6))
        );
        assert_eq!(f.way, Way::Uplink);
        let f = flow("mile = \"last\"\ndirection = \"downlink\"\nkind = \"onoff\"\nrate = \"2Mbit/s\"\non = \"500ms\"\noff = \"1s\"").unwrap();
        assert_eq!(
            f.traffic,
            Traffic::Udp {
                bps: 2_000_000,
                on_off: Some((Duration::from_millis(500), Duration::from_secs(1)))
            }
        );
        assert_eq!(f.stop, Duration::from_secs(10));
        for (toml, needle) in [
            ("mile = \"first\"\nkind = \"cbr\"", "cross[0].rate"),
            (
                "mile = \"first\"\nkind = \"tcp\"\nrate = \"1Mbit/s\"",
                "applies to UDP",
            ),
            (
                "mile = \"first\"\nkind = \"onoff\"\nrate = \"1Mbit/s\"",
                "needs `on` and `off`",
            ),
            (
                "mile = \"first\"\nkind = \"tcp\"\nstart = \"5s\"\nstop = \"4s\"",
                "after `start`",
            ),
            (
                "mile = \"first\"\nkind = \"tcp\"\nstop = \"11s\"",
                "within the run",
            ),
            (
                "mile = \"first\"\nkind = \"cbr\"\nrate = \"1Mbit/s\"\ncc = \"bbr\"",
                "applies to kind = \"tcp\"",
            ),
        ] {
            let e = flow(toml).unwrap_err().to_string();
            assert!(e.contains(needle), "{toml}: {e}");
        }
    }
}
