//! End-to-end: kernel TCP between Glass's network namespaces, through the TUN
//! link and the impairment engine. Needs root (or CAP_SYS_ADMIN); CI has it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use netem::Profile;
use netem::adapters::can_create_namespaces;
use netem::adapters::capture;
use netem::adapters::link::{Host, LinkConfig, LinkDir, LinkNetwork};
use netem::adapters::port::Backend;
use netem::adapters::tcpinfo::tcp_info;

fn profile(line: &str) -> Profile {
    netem::resolve(line).unwrap().validate().unwrap().0
}

fn start(backend: Backend, first_up: &str, first_down: &str) -> LinkNetwork {
    let link = LinkNetwork::start(LinkConfig {
        first_mile: (profile(first_up), profile(first_down)),
        last_mile: (Profile::transparent(), Profile::transparent()),
        seed: 42,
        capture_dir: None,
        backend,
    })
    .expect("start link");
    assert_eq!(link.backend(), backend);
    link
}

/// Held by the tests that load both cores (the bench) or time packets
/// (pacing), so that one does not run beside the other.
static CPU_BOUND: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A TUN link with `first_up` on the first mile's uplink, capturing into `dir`.
fn captured_link(first_up: &str, dir: &std::path::Path) -> LinkNetwork {
    LinkNetwork::start(LinkConfig {
        first_mile: (profile(first_up), Profile::transparent()),
        last_mile: (Profile::transparent(), Profile::transparent()),
        seed: 1,
        capture_dir: Some(dir.to_path_buf()),
        backend: Backend::Tun,
    })
    .expect("start link")
}

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::from((Host::Server.addr(), port))
}

#[test]
fn rtt_is_the_configured_delay_tun() {
    rtt_is_the_configured_delay(Backend::Tun);
}

#[test]
fn rtt_is_the_configured_delay_veth() {
    rtt_is_the_configured_delay(Backend::Veth);
}

fn rtt_is_the_configured_delay(backend: Backend) {
    if !can_create_namespaces() {
        return;
    }
    let link = start(backend, "delay 50ms", "delay 50ms");
    let listener = link
        .run_in(Host::Server, || TcpListener::bind(server_addr(7000)))
        .unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut client = link
        .run_in(Host::Publisher, || TcpStream::connect(server_addr(7000)))
        .unwrap();
    client.set_nodelay(true).unwrap();
    let mut rtts = Vec::new();
    let mut buf = [0u8; 8];
    for i in 0..15u64 {
        let t = Instant::now();
        client.write_all(&i.to_be_bytes()).unwrap();
        client.read_exact(&mut buf).unwrap();
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    let info = tcp_info(&client).unwrap();
    drop(client);
    echo.join().unwrap();
    let stats = link.stop().unwrap();
    eprintln!(
        "median RTT {median:?}; TCP_INFO rtt {} µs, min_rtt {} µs; release error {:?}",
        info.rtt_us, info.min_rtt_us, stats.release_error
    );
    assert!(
        median >= Duration::from_millis(100) && median <= Duration::from_millis(101),
        "median RTT {median:?} (want 100 ms ± 1 ms)"
    );
    assert!(
        (99_000..=101_500).contains(&info.min_rtt_us),
        "TCP_INFO min_rtt {} µs",
        info.min_rtt_us
    );
    // The smoothed RTT keeps 1/8 of each new sample, so one packet the
    // engine released late (a scheduling hiccup on a busy machine, which the
    // link measures) lifts it for several round trips: it may exceed
    // 101.5 ms by at most the link's worst release error, never more. Seen
    // once: one release 35.7 ms late at 1.26 s gave an srtt of 103.3 ms.
    let worst_us = stats.release_error.max_us.ceil() as u32;
    assert!(
        (99_000..=101_500 + worst_us).contains(&info.rtt_us),
        "TCP_INFO rtt {} µs (the link's worst release error {} µs)",
        info.rtt_us,
        worst_us
    );
}

#[test]
fn tcp_under_loss_retransmits_what_the_engine_dropped_tun() {
    tcp_under_loss_retransmits_what_the_engine_dropped(Backend::Tun);
}

#[test]
fn tcp_under_loss_retransmits_what_the_engine_dropped_veth() {
    tcp_under_loss_retransmits_what_the_engine_dropped(Backend::Veth);
}

fn tcp_under_loss_retransmits_what_the_engine_dropped(backend: Backend) {
    if !can_create_namespaces() {
        return;
    }
    // 2 % loss on the data direction only, so every engine drop is a data
    // segment the sender must retransmit (ACKs come back on a clean path).
    let link = start(backend, "delay 10ms loss 2%", "delay 10ms");
    let listener = link
        .run_in(Host::Server, || TcpListener::bind(server_addr(7001)))
        .unwrap();
    let sink = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    let mut client = link
        .run_in(Host::Publisher, || TcpStream::connect(server_addr(7001)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let size = 2 * 1024 * 1024;
    for _ in 0..size / chunk.len() {
        client.write_all(&chunk).unwrap();
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let received = sink.join().unwrap();
    let info = tcp_info(&client).unwrap();
    let stats = link.stop().unwrap();
    let up = stats.counters(LinkDir::FirstMileUp);
    eprintln!(
        "sent {size} B, received {received} B; engine: {} pushed, {} dropped by loss; TCP_INFO: {} retransmits, rtt {} µs",
        up.pushed, up.dropped_loss, info.total_retrans, info.rtt_us
    );
    assert_eq!(received, size);
    assert!(up.dropped_loss > 0 && info.total_retrans > 0);
    // Nothing was lost outside the engine (a kernel queue towards it
    // overflowing), so the engine's drops are all the loss TCP met.
    assert_eq!(stats.total_kernel_drops(), 0, "{:?}", stats.kernel_drops);
    // Every dropped segment is retransmitted at least once; a few spurious or
    // repeated retransmissions (a lost retransmit, an early RTO) may add to it.
    let (drops, retrans) = (up.dropped_loss as f64, f64::from(info.total_retrans));
    assert!(
        retrans >= drops * 0.95 && retrans <= drops * 1.25 + 3.0,
        "retransmits {retrans} vs drops {drops}"
    );
    // The realised loss rate is what was asked: 2 % within 4 binomial σ.
    let rate = drops / up.pushed as f64;
    let sigma = (0.02 * 0.98 / up.pushed as f64).sqrt();
    assert!(
        (rate - 0.02).abs() < 4.0 * sigma,
        "loss {rate} over {} packets",
        up.pushed
    );
}

#[test]
fn captures_show_packets_before_and_after_impairment() {
    if !can_create_namespaces() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("glass-pcap-{}", std::process::id()));
    let link = captured_link("loss 50%", &dir);
    let rx = link
        .run_in(Host::Server, || UdpSocket::bind(server_addr(7002)))
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = link
        .run_in(Host::Publisher, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap();
    for i in 0..200u32 {
        tx.send_to(format!("glass-probe-{i}").as_bytes(), server_addr(7002))
            .unwrap();
    }
    let mut got = 0;
    let mut buf = [0u8; 64];
    while rx.recv(&mut buf).is_ok() {
        got += 1;
    }
    let stats = link.stop().unwrap();
    let up = stats.counters(LinkDir::FirstMileUp);
    let probes = |name: &str| {
        capture::read(&dir.join(name))
            .unwrap()
            .iter()
            .filter(|(_, p)| p.windows(12).any(|w| w == b"glass-probe-"))
            .count()
    };
    let (before, after) = (
        probes("first_mile-uplink-in.pcap"),
        probes("first_mile-uplink-out.pcap"),
    );
    eprintln!(
        "200 sent, {got} received; capture: {before} in, {after} out; engine dropped {}",
        up.dropped_loss
    );
    assert_eq!(before, 200);
    assert_eq!(after, got);
    assert_eq!(before - after, up.dropped_loss as usize);
    // Every dropped probe is in the drop capture, with its cause.
    let drops = capture::read_drops(&dir.join("first_mile-uplink-dropped.pcapng")).unwrap();
    let dropped_probes: Vec<_> = drops
        .iter()
        .filter(|(p, _)| p.windows(12).any(|w| w == b"glass-probe-"))
        .collect();
    assert_eq!(dropped_probes.len(), up.dropped_loss as usize);
    assert!(
        dropped_probes.iter().all(|(_, c)| c == "dropped: loss"),
        "{:?}",
        dropped_probes.first()
    );
    assert!(after > 50 && after < 150);
    std::fs::remove_dir_all(&dir).ok();
}

/// A queue drained at 10 Mbit/s leaves 1500-byte packets 1.2 ms apart in the
/// capture of what left (stamped when each was written to the host): the
/// engine writes packets due together in one go, and this guards that it
/// never writes a queue's worth at once (the span from the first packet to
/// the last is 199 serialisation times). The bounds are loose (± 100 µs on
/// three gaps in four) so that a busy machine does not fail it; `glass bench
/// link` measures the precision (± 20 µs).
#[test]
fn a_drained_queue_leaves_one_serialisation_time_apart() {
    if !can_create_namespaces() {
        return;
    }
    let _alone = CPU_BOUND.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("glass-pacing-{}", std::process::id()));
    let link = captured_link("rate 10mbit limit 1000", &dir);
    let rx = link
        .run_in(Host::Server, || UdpSocket::bind(server_addr(7003)))
        .unwrap();
    let tx = link
        .run_in(Host::Publisher, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap();
    let payload = [0x5au8; 1472];
    for _ in 0..200 {
        tx.send_to(&payload, server_addr(7003)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    link.stop().unwrap();
    drop(rx);
    let times: Vec<f64> = capture::read(&dir.join("first_mile-uplink-out.pcap"))
        .unwrap()
        .iter()
        .filter(|(_, p)| p.len() == 1500)
        .map(|(t, _)| t.as_secs_f64() * 1e6)
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(times.len() >= 200, "{} of 200 left", times.len());
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let near = gaps
        .iter()
        .filter(|g| (**g - 1200.0).abs() <= 100.0)
        .count();
    let least = gaps.iter().copied().fold(f64::INFINITY, f64::min);
    eprintln!(
        "{near} of {} gaps within 1.2 ms ± 100 µs; smallest {least:.0} µs",
        gaps.len()
    );
    // The queue drains at the link's rate: 199 serialisation times from
    // the first packet to the last, however late single writes were (a
    // late write shortens the gap after it). A batch written at once would
    // shrink the span; a busy machine moves single packets, not the span.
    let span = times[times.len() - 1] - times[0];
    assert!(
        (span - 199.0 * 1200.0).abs() <= 5_000.0,
        "{span:.0} µs from the first to the last"
    );
    // Most gaps are one serialisation time (all but a few late wake-ups:
    // 89 % to 100 % seen on a 2-core machine under a test suite).
    assert!(
        near * 100 >= gaps.len() * 75,
        "{near} of {} gaps",
        gaps.len()
    );
}

/// `glass bench link` end to end: every figure in its JSON, the medians of
/// `--runs` with each run kept, and a clear refusal of a bad count.
#[test]
fn bench_link_reports_every_figure_and_medians_over_runs() {
    if !can_create_namespaces() {
        return;
    }
    let _alone = CPU_BOUND.lock().unwrap_or_else(|e| e.into_inner());
    let glass = env!("CARGO_BIN_EXE_glass");
    let o = std::process::Command::new(glass)
        .args(["bench", "link", "--seconds", "0.2", "--runs", "2", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["runs"], 2);
    assert_eq!(r["each"].as_array().unwrap().len(), 2);
    let paths: Vec<&str> = r["throughput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["path"].as_str().unwrap())
        .collect();
    for p in [
        "udp via link",
        "udp loopback",
        "udp veth",
        "tcp via link",
        "tcp veth",
    ] {
        assert!(paths.contains(&p), "{paths:?}");
    }
    for ratio in ["udp_ratio", "udp_veth_ratio", "tcp_ratio"] {
        let v = r[ratio].as_f64().unwrap();
        assert!(v > 0.0 && v < 2.0, "{ratio} {v}");
    }
    assert_eq!(r["release_error"].as_array().unwrap().len(), 4);
    assert!(
        r["pacing"]["gaps"].as_u64().unwrap() >= 500,
        "{}",
        r["pacing"]
    );
    let o = std::process::Command::new(glass)
        .args(["bench", "link", "--runs", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--runs must be between 1 and 9"));
}
