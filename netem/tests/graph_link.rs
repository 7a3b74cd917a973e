//! The link over a topology of named hosts, end to end through real
//! namespaces, TUN devices and kernel UDP sockets (needs root): a route's
//! round trip is the sum of its links' delays, and a link that several
//! routes share is one queue. Every loop is bounded in count and time.

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netem::Profile;
use netem::adapters::can_create_namespaces;
use netem::adapters::graph::{Graph, HostSpec, LinkSpec};
use netem::adapters::link::{GraphOptions, LinkNetwork};
use netem::config::LinkProfiles;

fn delay(ms: u64) -> Profile {
    netem::resolve(&format!("delay {ms}ms"))
        .and_then(|p| p.validate())
        .unwrap()
        .0
}

fn bottleneck(rate: &str, queue: &str) -> Profile {
    let toml = format!("[uplink]\nbottleneck = {{ rate = \"{rate}\", queue = \"{queue}\" }}\n");
    LinkProfiles::from_toml("test", &toml, None)
        .and_then(|p| p.validate())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn host(name: &str, a: u8, b: u8) -> HostSpec {
    HostSpec {
        name: name.into(),
        addr: Ipv4Addr::new(198, 18, a, b),
    }
}

fn link(name: &str, a: usize, b: usize, up: Profile, down: Profile) -> LinkSpec {
    LinkSpec {
        name: name.into(),
        a,
        b,
        up,
        down,
    }
}

/// A UDP socket bound in `host`'s namespace on its address.
fn socket(net: &LinkNetwork, host: &str) -> UdpSocket {
    let i = net.graph().host(host).unwrap();
    let addr = net.graph().hosts()[i].addr;
    let s = net
        .namespace_of(host)
        .unwrap()
        .run(|| UdpSocket::bind((addr, 0)))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// The smallest of `n` UDP round trips from `from` to an echo on `to`.
fn min_rtt(net: &LinkNetwork, from: &str, to: &str, n: usize) -> Duration {
    let echo = socket(net, to);
    let echo_addr = echo.local_addr().unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 64];
            // Bounded: at most 4 s of listening.
            let t0 = Instant::now();
            while !done.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(4) {
                if let Ok((k, peer)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..k], peer);
                }
            }
        });
        let sock = socket(net, from);
        let mut best = Duration::MAX;
        let mut buf = [0u8; 64];
        for i in 0..n {
            let t0 = Instant::now();
            sock.send_to(&[i as u8; 32], echo_addr).unwrap();
            if sock.recv_from(&mut buf).is_ok() {
                best = best.min(t0.elapsed());
            }
        }
        done.store(true, Ordering::Relaxed);
        best
    })
}

#[test]
fn a_round_trip_is_the_sum_of_the_link_delays_on_its_route() {
    if !can_create_namespaces() {
        return;
    }
    // publisher —10 ms— origin —20 ms— edge —5 ms— viewer (each way).
    let hosts = vec![
        host("publisher", 1, 1),
        host("origin", 0, 1),
        host("edge", 3, 1),
        host("viewer", 2, 1),
    ];
    let links = vec![
        link("first", 0, 1, delay(10), delay(10)),
        link("backbone", 2, 1, delay(20), delay(20)),
        link("last", 3, 2, delay(5), delay(5)),
    ];
    let delays = [10u64, 20, 5];
    let graph = Graph::new(hosts, links).unwrap();
    let net = LinkNetwork::start_graph(graph.clone(), GraphOptions::default()).unwrap();
    let names: Vec<String> = graph.hosts().iter().map(|h| h.name.clone()).collect();
    for a in 0..names.len() {
        for b in (a + 1)..names.len() {
            let one_way: u64 = graph.route(a, b).iter().map(|d| delays[d.link]).sum();
            let expected = Duration::from_millis(2 * one_way);
            let rtt = min_rtt(&net, &names[a], &names[b], 5);
            eprintln!(
                "{} ↔ {}: RTT {:.2} ms, links sum to {} ms",
                names[a],
                names[b],
                rtt.as_secs_f64() * 1e3,
                2 * one_way
            );
            assert!(
                rtt >= expected && rtt < expected + Duration::from_millis(4),
                "{} ↔ {}: {rtt:?} vs {expected:?}",
                names[a],
                names[b]
            );
        }
    }
    net.stop_graph().unwrap();
}

#[test]
fn a_shared_link_is_one_queue_and_routes_around_it_are_untouched() {
    if !can_create_namespaces() {
        return;
    }
    // server —5 Mbit/s— isp — group_a, isp — group_b; publisher — server clean.
    let clean = Profile::transparent;
    let hosts = vec![
        host("server", 0, 1),
        host("isp", 4, 1),
        host("group_a", 5, 1),
        host("group_b", 6, 1),
        host("publisher", 1, 1),
    ];
    let links = vec![
        // Uplink is isp → server; the downlink carries the viewers' media.
        link("shared", 1, 0, clean(), bottleneck("5Mbit/s", "100ms")),
        link("a", 2, 1, clean(), clean()),
        link("b", 3, 1, clean(), clean()),
        link("first", 4, 0, clean(), clean()),
    ];
    let net = LinkNetwork::start_graph(Graph::new(hosts, links).unwrap(), GraphOptions::default())
        .unwrap();
    let server = socket(&net, "server");
    let group_a = socket(&net, "group_a");
    let group_b = socket(&net, "group_b");
    let publisher = socket(&net, "publisher");
    let to_server = server.local_addr().unwrap();
    let (to_a, to_b) = (group_a.local_addr().unwrap(), group_b.local_addr().unwrap());
    // 10 Mbit/s offered: 1200-byte datagrams, one to each group every 1.92 ms,
    // for 3 s; the publisher sends 300 datagrams to the server meanwhile.
    const SIZE: usize = 1200;
    const PAIRS: u32 = 1560;
    let gap = Duration::from_secs_f64(SIZE as f64 * 8.0 / 5e6);
    let received = |s: &UdpSocket| {
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let mut bytes = 0u64;
        // Bounded: at most PAIRS datagrams, and 400 ms of silence ends it.
        for _ in 0..PAIRS {
            match s.recv_from(&mut buf) {
                Ok((n, _)) => bytes += n as u64,
                Err(_) => break,
            }
        }
        bytes
    };
    let (a, b, from_publisher) = std::thread::scope(|s| {
        let a = s.spawn(|| received(&group_a));
        let b = s.spawn(|| received(&group_b));
        let p = s.spawn(|| received(&server));
        s.spawn(|| {
            for i in 0..300u32 {
                let _ = publisher.send_to(&[1u8; SIZE], to_server);
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        let t0 = Instant::now();
        let payload = [0u8; SIZE];
        for i in 0..PAIRS {
            let due = t0 + gap * i;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // Alternate who goes first: a drop-tail queue that frees one
            // slot per pair would otherwise always admit the first of two
            // phase-locked senders (lockout), which is FIFO, not unfairness.
            let (first, second) = if i % 2 == 0 {
                (to_a, to_b)
            } else {
                (to_b, to_a)
            };
            let _ = server.send_to(&payload, first);
            let _ = server.send_to(&payload, second);
        }
        let sent_for = t0.elapsed();
        eprintln!(
            "offered {:.1} Mbit/s for {sent_for:?}",
            2.0 * PAIRS as f64 * SIZE as f64 * 8.0 / sent_for.as_secs_f64() / 1e6
        );
        (a.join().unwrap(), b.join().unwrap(), p.join().unwrap())
    });
    let stats = net.stop_graph().unwrap();
    let shared = stats.counters("shared-downlink");
    eprintln!(
        "group a {:.2} MB, group b {:.2} MB; shared link dropped {} of {} (queue); from the publisher {} bytes",
        a as f64 / 1e6,
        b as f64 / 1e6,
        shared.dropped_queue,
        shared.pushed,
        from_publisher
    );
    // Drops on the shared link only, in its queue.
    assert!(shared.dropped_queue > 500, "{shared:?}");
    for (label, c) in &stats.directions {
        if label != "shared-downlink" {
            let drops = c.dropped_queue + c.dropped_loss + c.dropped_aqm + c.dropped_outage;
            assert_eq!(drops, 0, "{label}: {c:?}");
        }
    }
    // Each group gets about half of 5 Mbit/s over ~3.1 s (+ the queue's 100 ms).
    let capacity = 5e6 / 8.0 * (PAIRS as f64 * gap.as_secs_f64() + 0.1);
    let (a, b) = (a as f64, b as f64);
    assert!((0.8..1.25).contains(&(a / b)), "a {a} b {b}");
    assert!(
        (a + b) > 0.85 * capacity && (a + b) < 1.1 * capacity,
        "a + b = {} vs capacity {capacity}",
        a + b
    );
    // The publisher's route does not cross the shared link: all arrived.
    assert_eq!(from_publisher, 300 * SIZE as u64);
    assert_eq!(stats.counters("first-uplink").delivered, 300);
}
