//! `glass bench link`: how fast and how precisely the packet-level link
//! forwards, measured against the kernel's direct path in the same run.
//!
//! - Throughput: a UDP sender in the publisher namespace sends `size`-byte IP
//!   packets as fast as it can for a while; a receiver in the server namespace
//!   counts what arrives. The same is run between two sockets inside one
//!   namespace (the direct path, no TUN hop) and over kernel TCP.
//! - Release precision: packets paced through a link with a delay; the engine
//!   records how late each left compared with its release instant.
//!
//! Every loop is bounded by `--seconds` (and the packet count that fits in it).

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use netem::Profile;
use netem::adapters::link::{Host, LinkConfig, LinkDir, LinkNetwork, ReleaseError};
use netem::adapters::netns::NetNs;
use serde::Serialize;

use crate::cli::BenchLinkArgs;

const IP_UDP_HEADERS: usize = 28;

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub path: String,
    pub packets: u64,
    pub mbit_per_s: f64,
    pub packets_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub packet_size: usize,
    pub seconds: f64,
    /// Runs whose medians these figures are (1: a single run).
    pub runs: usize,
    pub throughput: Vec<Throughput>,
    /// UDP through the link divided by UDP over loopback in one namespace.
    pub udp_ratio: f64,
    /// UDP through the link divided by UDP over the veth pair.
    pub udp_veth_ratio: f64,
    /// TCP through the link divided by TCP over the veth pair (the same
    /// 1500-byte MTU and no offloads, like for like).
    pub tcp_ratio: f64,
    pub release_error: Vec<PacedError>,
    pub pacing: Pacing,
    /// With `--runs` above 1: every run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub each: Vec<BenchReport>,
}

/// A queue drained at 10 Mbit/s: 1500-byte packets leave 1.2 ms apart, and
/// the capture of what left (stamped when each was written) shows how
/// close to that the engine keeps them.
#[derive(Debug, Serialize)]
pub struct Pacing {
    pub gaps: usize,
    /// Share of gaps within 1.2 ms ± 20 µs.
    pub within_20us: f64,
    pub p1_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Serialize)]
pub struct PacedError {
    pub pps: u64,
    /// Packets sent back to back each time (1: evenly paced).
    pub burst: u64,
    /// The link's rate, if limited: then a burst's packets are due one
    /// serialisation time apart, and each is measured against its own
    /// instant rather than the burst's.
    pub rate_mbit_per_s: Option<f64>,
    pub error: ReleaseError,
}

pub fn run(args: &BenchLinkArgs) -> Result<()> {
    if !(0.2..=60.0).contains(&args.seconds) {
        bail!("--seconds must be between 0.2 and 60");
    }
    if !(64..=1500).contains(&args.size) {
        bail!("--size is an IP packet size from 64 to 1500 bytes");
    }
    if !(1..=9).contains(&args.runs) {
        bail!("--runs must be between 1 and 9");
    }
    let mut each = Vec::new();
    for i in 0..args.runs {
        if args.runs > 1 {
            eprintln!("glass: run {} of {}", i + 1, args.runs);
        }
        each.push(measure(args)?);
    }
    let report = if each.len() == 1 {
        each.remove(0)
    } else {
        median_report(each)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// The median of some figures (the mean of the middle two for an even count).
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Each figure's median over runs of the same measurement (same rows, same
/// order); the runs themselves under `each`.
fn median_report(each: Vec<BenchReport>) -> BenchReport {
    let first = &each[0];
    let med = |f: &dyn Fn(&BenchReport) -> f64| median(each.iter().map(f));
    let throughput = (0..first.throughput.len())
        .map(|i| Throughput {
            path: first.throughput[i].path.clone(),
            packets: med(&|r| r.throughput[i].packets as f64) as u64,
            mbit_per_s: med(&|r| r.throughput[i].mbit_per_s),
            packets_per_s: med(&|r| r.throughput[i].packets_per_s),
        })
        .collect();
    let release_error = (0..first.release_error.len())
        .map(|i| {
            let e = |r: &BenchReport| r.release_error[i].error.clone();
            PacedError {
                pps: first.release_error[i].pps,
                burst: first.release_error[i].burst,
                rate_mbit_per_s: first.release_error[i].rate_mbit_per_s,
                error: ReleaseError {
                    packets: med(&|r| e(r).packets as f64) as u64,
                    p50_us: med(&|r| e(r).p50_us),
                    p90_us: med(&|r| e(r).p90_us),
                    p99_us: med(&|r| e(r).p99_us),
                    p999_us: med(&|r| e(r).p999_us),
                    max_us: med(&|r| e(r).max_us),
                    late: med(&|r| e(r).late as f64) as u64,
                    first_late_at_ms: each
                        .iter()
                        .filter_map(|r| e(r).first_late_at_ms)
                        .reduce(f64::min),
                },
            }
        })
        .collect();
    BenchReport {
        packet_size: first.packet_size,
        seconds: first.seconds,
        runs: each.len(),
        throughput,
        udp_ratio: med(&|r| r.udp_ratio),
        udp_veth_ratio: med(&|r| r.udp_veth_ratio),
        tcp_ratio: med(&|r| r.tcp_ratio),
        release_error,
        pacing: Pacing {
            gaps: med(&|r| r.pacing.gaps as f64) as usize,
            within_20us: med(&|r| r.pacing.within_20us),
            p1_us: med(&|r| r.pacing.p1_us),
            p50_us: med(&|r| r.pacing.p50_us),
            p99_us: med(&|r| r.pacing.p99_us),
        },
        each,
    }
}

/// One run of every measurement.
fn measure(args: &BenchLinkArgs) -> Result<BenchReport> {
    let secs = Duration::from_secs_f64(args.seconds);
    let transparent = LinkConfig {
        backend: args.backend,
        ..LinkConfig::default()
    };
    let mut throughput = Vec::new();

    eprintln!("glass: UDP through the link ({:.1} s)...", args.seconds);
    let link = LinkNetwork::start(transparent.clone()).context("starting the link")?;
    eprintln!("glass: {:?} link", link.backend());
    let udp_link = udp_blast(&link, Host::Publisher, Host::Server, args.size, secs)?;
    let tcp_link = tcp_bulk(
        link.namespace(Host::Publisher),
        link.namespace(Host::Server),
        Host::Server.addr().into(),
        secs,
    )?;
    let stats = link.stop()?;
    let via = stats.counters(LinkDir::FirstMileUp);
    eprintln!(
        "glass: the engine forwarded {} packets publisher → server",
        via.delivered
    );

    eprintln!("glass: the direct paths (loopback in one namespace; a veth pair between two)...");
    let direct_ns = NetNs::new("direct")?;
    let loopback: std::net::IpAddr = "127.0.0.1".parse()?;
    let udp_direct = udp_blast_in(&direct_ns, &direct_ns, loopback, args.size, secs)?;
    let tcp_loopback = tcp_bulk(&direct_ns, &direct_ns, loopback, secs)?;
    let (veth_a, veth_b) = (NetNs::new("direct-a")?, NetNs::new("direct-b")?);
    let (a_addr, b_addr) = (
        std::net::Ipv4Addr::new(198, 19, 255, 1),
        std::net::Ipv4Addr::new(198, 19, 255, 2),
    );
    netem::adapters::port::direct_veth(&veth_a, &veth_b, a_addr, b_addr)
        .context("creating the veth pair of the direct path")?;
    let udp_veth = udp_blast_in(&veth_a, &veth_b, b_addr.into(), args.size, secs)?;
    let tcp_veth = tcp_bulk(&veth_a, &veth_b, b_addr.into(), secs)?;

    let udp_ratio = udp_link.mbit_per_s / udp_direct.mbit_per_s;
    let udp_veth_ratio = udp_link.mbit_per_s / udp_veth.mbit_per_s;
    let tcp_ratio = tcp_link.mbit_per_s / tcp_veth.mbit_per_s;
    throughput.extend([
        Throughput {
            path: "udp via link".into(),
            ..udp_link
        },
        Throughput {
            path: "udp loopback".into(),
            ..udp_direct
        },
        Throughput {
            path: "udp veth".into(),
            ..udp_veth
        },
        Throughput {
            path: "tcp via link".into(),
            ..tcp_link
        },
        Throughput {
            path: "tcp veth".into(),
            ..tcp_veth
        },
        Throughput {
            path: "tcp loopback".into(),
            ..tcp_loopback
        },
    ]);

    eprintln!("glass: release precision, paced through a 10 ms link...");
    let mut release_error = Vec::new();
    for (pps, burst, rate) in [
        (1_000u64, 1u64, None),
        (10_000, 1, None),
        (50_000, 1, None),
        (10_000, 10, Some(200.0)),
    ] {
        release_error.push(PacedError {
            pps,
            burst,
            rate_mbit_per_s: rate,
            error: paced(pps, burst, rate, args.size, secs, args.backend)?,
        });
    }

    eprintln!("glass: pacing on a 10 Mbit/s bottleneck (gaps in the capture of what left)...");
    let pacing = pacing_gaps(args.backend)?;

    Ok(BenchReport {
        packet_size: args.size,
        seconds: args.seconds,
        runs: 1,
        throughput,
        udp_ratio,
        udp_veth_ratio,
        tcp_ratio,
        release_error,
        pacing,
        each: Vec::new(),
    })
}

fn render(r: &BenchReport) -> String {
    let mut s = format!(
        "link benchmark: {}-byte packets, {:.1} s per measurement{}\n\n",
        r.packet_size,
        r.seconds,
        if r.runs > 1 {
            format!(", medians of {} runs", r.runs)
        } else {
            String::new()
        }
    );
    s.push_str(&format!(
        "  {:<14} {:>12} {:>14}\n",
        "path", "Mbit/s", "packets/s"
    ));
    for t in &r.throughput {
        s.push_str(&format!(
            "  {:<14} {:>12.0} {:>14.0}\n",
            t.path, t.mbit_per_s, t.packets_per_s
        ));
    }
    s.push_str(&format!(
        "\n  link / direct: UDP {:.2} of loopback, {:.2} of veth; TCP {:.2} of veth (same 1500-byte MTU, no offloads)\n\n  release error (how late packets left against each packet's instant, µs)\n",
        r.udp_ratio, r.udp_veth_ratio, r.tcp_ratio
    ));
    s.push_str(&format!(
        "  {:<42} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "traffic", "p50", "p90", "p99", "p99.9", "max"
    ));
    for PacedError {
        pps: rate,
        burst,
        error: e,
        ..
    } in &r.release_error
    {
        let what = if *burst > 1 {
            format!("{rate} pkt/s in bursts of {burst}, 200 Mbit/s")
        } else {
            format!("{rate} pkt/s, paced")
        };
        s.push_str(&format!(
            "  {:<42} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            what, e.p50_us, e.p90_us, e.p99_us, e.p999_us, e.max_us
        ));
    }
    let p = &r.pacing;
    s.push_str(&format!(
        "\n  pacing at 10 Mbit/s (1500-byte packets, due 1200 µs apart): {:.1} % of {} gaps within ± 20 µs; p1 {:.0} µs, p50 {:.0} µs, p99 {:.0} µs\n",
        p.within_20us * 100.0,
        p.gaps,
        p.p1_us,
        p.p50_us,
        p.p99_us
    ));
    s
}

/// Fills a 10 Mbit/s bottleneck with one burst of 1,000 1500-byte packets
/// and measures the gaps between them in the capture of what left the
/// engine, written when each packet was written to the receiving host.
fn pacing_gaps(backend: netem::adapters::port::Backend) -> Result<Pacing> {
    const PACKETS: usize = 1000;
    let dir = tempfile_dir("glass-bench-pacing")?;
    let profile: Profile = netem::resolve("rate 10mbit limit 2000")?.validate()?.0;
    let link = LinkNetwork::start(LinkConfig {
        first_mile: (profile, Profile::transparent()),
        backend,
        capture_dir: Some(dir.clone()),
        ..LinkConfig::default()
    })?;
    let rx = link.run_in(Host::Server, || UdpSocket::bind((Host::Server.addr(), 0)))?;
    set_buffers(&rx);
    let dst = rx.local_addr()?;
    let tx = link.run_in(Host::Publisher, || UdpSocket::bind("0.0.0.0:0"))?;
    set_buffers(&tx);
    let payload = vec![0x5au8; 1500 - IP_UDP_HEADERS];
    for _ in 0..PACKETS {
        tx.send_to(&payload, dst)?;
    }
    // 1,000 × 1.2 ms, and some.
    std::thread::sleep(Duration::from_millis(1300));
    link.stop()?;
    let out = netem::adapters::capture::read(&dir.join("first_mile-uplink-out.pcap"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let times: Vec<f64> = out
        .iter()
        .filter(|(_, p)| p.len() == 1500)
        .map(|(t, _)| t.as_secs_f64() * 1e6)
        .collect();
    if times.len() < PACKETS / 2 {
        bail!(
            "pacing: only {} of {PACKETS} packets left the link",
            times.len()
        );
    }
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let within = gaps.iter().filter(|g| (**g - 1200.0).abs() <= 20.0).count();
    gaps.sort_by(f64::total_cmp);
    let q = |p: f64| gaps[((gaps.len() - 1) as f64 * p).round() as usize];
    Ok(Pacing {
        gaps: gaps.len(),
        within_20us: within as f64 / gaps.len() as f64,
        p1_us: q(0.01),
        p50_us: q(0.5),
        p99_us: q(0.99),
    })
}

fn tempfile_dir(prefix: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn udp_blast(
    link: &LinkNetwork,
    from: Host,
    to: Host,
    size: usize,
    secs: Duration,
) -> Result<Throughput> {
    udp_blast_in(
        link.namespace(from),
        link.namespace(to),
        to.addr().into(),
        size,
        secs,
    )
}

/// Sends for `secs` from a socket in `from_ns` to `to_ip` in `to_ns`; counts
/// what arrives (IP bytes) during the sending window.
fn udp_blast_in(
    from_ns: &NetNs,
    to_ns: &NetNs,
    to_ip: std::net::IpAddr,
    size: usize,
    secs: Duration,
) -> Result<Throughput> {
    let rx = to_ns.run(|| UdpSocket::bind(SocketAddr::new(to_ip, 0)))?;
    set_buffers(&rx);
    rx.set_read_timeout(Some(Duration::from_millis(100)))?;
    let dst = rx.local_addr()?;
    let tx = from_ns.run(|| UdpSocket::bind("0.0.0.0:0"))?;
    set_buffers(&tx);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let counter = {
        let (stop, count) = (stop.clone(), count.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if rx.recv(&mut buf).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let payload = vec![0x5au8; size - IP_UDP_HEADERS];
    let start = Instant::now();
    let mut sent: u64 = 0;
    while start.elapsed() < secs {
        for _ in 0..64 {
            // ENOBUFS when a queue is full: the link is saturated, carry on.
            let _ = tx.send_to(&payload, dst);
            sent += 1;
        }
    }
    let elapsed = start.elapsed();
    std::thread::sleep(Duration::from_millis(50)); // let the last packets land
    stop.store(true, Ordering::Relaxed);
    let _ = counter.join();
    let packets = count.load(Ordering::Relaxed).min(sent);
    let pps = packets as f64 / elapsed.as_secs_f64();
    Ok(Throughput {
        path: String::new(),
        packets,
        mbit_per_s: pps * size as f64 * 8.0 / 1e6,
        packets_per_s: pps,
    })
}

fn set_buffers(s: &impl std::os::fd::AsRawFd) {
    use netem::adapters::sockbuf::{Buffer, enlarge};
    enlarge(s, Buffer::Receive, 8 << 20);
    enlarge(s, Buffer::Send, 8 << 20);
}

/// One kernel TCP stream for `secs`; payload bytes per second, as Mbit/s.
fn tcp_bulk(
    from_ns: &NetNs,
    to_ns: &NetNs,
    to_ip: std::net::IpAddr,
    secs: Duration,
) -> Result<Throughput> {
    use std::io::{Read, Write};
    let listener = to_ns.run(|| TcpListener::bind(SocketAddr::new(to_ip, 0)))?;
    let dst = listener.local_addr()?;
    let sink = std::thread::spawn(move || -> u64 {
        let Ok((mut s, _)) = listener.accept() else {
            return 0;
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let mut tx = from_ns.run(|| TcpStream::connect(dst))?;
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    while start.elapsed() < secs {
        tx.write_all(&chunk)?;
    }
    tx.shutdown(std::net::Shutdown::Write)?;
    let total = sink
        .join()
        .map_err(|_| anyhow::anyhow!("TCP sink panicked"))?;
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Throughput {
        path: String::new(),
        packets: 0,
        mbit_per_s: total as f64 * 8.0 / elapsed / 1e6,
        packets_per_s: 0.0,
    })
}

/// Sends `pps` packets per second through a 10 ms link (rate-limited to
/// `rate` Mbit/s if given) for `secs`, `burst` at a time, and returns the
/// engine's release error. The sender sleeps to each send's instant with
/// the smallest timer slack (a spinning sender would take the CPU the engine
/// needs on two cores); its own lateness does not matter, since each
/// packet's release instant counts from when the engine read it.
fn paced(
    pps: u64,
    burst: u64,
    rate: Option<f64>,
    size: usize,
    secs: Duration,
    backend: netem::adapters::port::Backend,
) -> Result<ReleaseError> {
    let spec = match rate {
        Some(mbit) => format!("delay 10ms rate {mbit}mbit limit 10000"),
        None => "delay 10ms".to_string(),
    };
    let profile: Profile = netem::resolve(&spec)?.validate()?.0;
    let link = LinkNetwork::start(LinkConfig {
        first_mile: (profile, Profile::transparent()),
        backend,
        ..LinkConfig::default()
    })?;
    let rx = link.run_in(Host::Server, || UdpSocket::bind((Host::Server.addr(), 0)))?;
    let dst = rx.local_addr()?;
    set_buffers(&rx);
    let tx = link.run_in(Host::Publisher, || UdpSocket::bind("0.0.0.0:0"))?;
    let payload = vec![0u8; size - IP_UDP_HEADERS];
    let tick = Duration::from_secs_f64(burst as f64 / pps as f64);
    let ticks = (secs.as_secs_f64() / tick.as_secs_f64()) as u32;
    std::thread::scope(|s| {
        s.spawn(|| {
            netem::adapters::timer::precise_wakeups();
            let start = Instant::now();
            for i in 0..ticks {
                if let Some(d) = (start + tick * i).checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                for _ in 0..burst {
                    let _ = tx.send_to(&payload, dst);
                }
            }
        });
    });
    std::thread::sleep(Duration::from_millis(30));
    Ok(link.stop()?.release_error)
}
