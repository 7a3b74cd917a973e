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
    pub throughput: Vec<Throughput>,
    /// Link throughput divided by the direct path's (UDP).
    pub udp_ratio: f64,
    pub tcp_ratio: f64,
    pub release_error: Vec<PacedError>,
}

#[derive(Debug, Serialize)]
pub struct PacedError {
    pub pps: u64,
    pub error: ReleaseError,
}

pub fn run(args: &BenchLinkArgs) -> Result<()> {
    if !(0.2..=60.0).contains(&args.seconds) {
        bail!("--seconds must be between 0.2 and 60");
    }
    if !(64..=1500).contains(&args.size) {
        bail!("--size is an IP packet size from 64 to 1500 bytes");
    }
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

    eprintln!("glass: the direct path (loopback in one namespace)...");
    let direct_ns = NetNs::new("direct")?;
    let udp_direct = udp_blast_in(
        &direct_ns,
        &direct_ns,
        "127.0.0.1".parse()?,
        args.size,
        secs,
    )?;
    let tcp_direct = tcp_bulk(&direct_ns, &direct_ns, "127.0.0.1".parse()?, secs)?;

    let udp_ratio = udp_link.mbit_per_s / udp_direct.mbit_per_s;
    let tcp_ratio = tcp_link.mbit_per_s / tcp_direct.mbit_per_s;
    throughput.extend([
        Throughput {
            path: "udp via link".into(),
            ..udp_link
        },
        Throughput {
            path: "udp direct".into(),
            ..udp_direct
        },
        Throughput {
            path: "tcp via link".into(),
            ..tcp_link
        },
        Throughput {
            path: "tcp direct".into(),
            ..tcp_direct
        },
    ]);

    eprintln!("glass: release precision, paced through a 10 ms link...");
    let rates = [1_000u64, 10_000, 50_000];
    let mut release_error = Vec::new();
    for pps in rates {
        release_error.push(PacedError {
            pps,
            error: paced(pps, args.size, secs, args.backend)?,
        });
    }

    let report = BenchReport {
        packet_size: args.size,
        seconds: args.seconds,
        throughput,
        udp_ratio,
        tcp_ratio,
        release_error,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn render(r: &BenchReport) -> String {
    let mut s = format!(
        "link benchmark: {}-byte packets, {:.1} s per measurement\n\n",
        r.packet_size, r.seconds
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
        "\n  link / direct: UDP {:.2}, TCP {:.2} (TCP direct runs over loopback's 64 KiB MTU, the link over 1500 bytes)\n\n  release error (how late packets left, µs)\n",
        r.udp_ratio, r.tcp_ratio
    ));
    s.push_str(&format!(
        "  {:<16} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "paced at", "p50", "p90", "p99", "p99.9", "max"
    ));
    for PacedError {
        pps: rate,
        error: e,
    } in &r.release_error
    {
        s.push_str(&format!(
            "  {:<16} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            format!("{rate} pkt/s"),
            e.p50_us,
            e.p90_us,
            e.p99_us,
            e.p999_us,
            e.max_us
        ));
    }
    s
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

/// Paces `pps` packets per second through a 10 ms link for `secs` and
/// returns the engine's release error.
fn paced(
    pps: u64,
    size: usize,
    secs: Duration,
    backend: netem::adapters::port::Backend,
) -> Result<ReleaseError> {
    let delay: Profile = netem::resolve("delay 10ms")?.validate()?.0;
    let link = LinkNetwork::start(LinkConfig {
        first_mile: (delay, Profile::transparent()),
        backend,
        ..LinkConfig::default()
    })?;
    let rx = link.run_in(Host::Server, || UdpSocket::bind((Host::Server.addr(), 0)))?;
    let dst = rx.local_addr()?;
    set_buffers(&rx);
    let tx = link.run_in(Host::Publisher, || UdpSocket::bind("0.0.0.0:0"))?;
    let payload = vec![0u8; size - IP_UDP_HEADERS];
    // Pace by sleeping, not spinning: on two cores a spinning sender would
    // take the CPU the engine needs. Above 2000 pkt/s, one burst per ms.
    let per_tick = pps.div_ceil(1000).max(1);
    let tick = Duration::from_secs_f64(per_tick as f64 / pps as f64);
    let start = Instant::now();
    let ticks = (secs.as_secs_f64() / tick.as_secs_f64()) as u32;
    for i in 0..ticks {
        let at = start + tick * i;
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        for _ in 0..per_tick {
            let _ = tx.send_to(&payload, dst);
        }
    }
    std::thread::sleep(Duration::from_millis(30));
    Ok(link.stop()?.release_error)
}
