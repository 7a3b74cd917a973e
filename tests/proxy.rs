//! End-to-end: the UDP and TCP proxies on loopback (no privileges needed).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netem::Profile;
use netem::adapters::proxy_tcp::{TcpProxy, TcpProxyConfig, stream_profile};
use netem::adapters::proxy_udp::{MAX_DATAGRAM, UdpProxy, UdpProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

fn profile(line: &str) -> Profile {
    netem::resolve(line).unwrap().validate().unwrap().0
}

async fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
    addr
}

async fn udp_proxy(upstream: SocketAddr, up: &str, down: &str, max_datagram: usize) -> UdpProxy {
    UdpProxy::start(UdpProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream,
        profiles: (profile(up), profile(down)),
        seed: 1,
        max_datagram,
    })
    .await
    .unwrap()
}

async fn recv_timeout(s: &UdpSocket, buf: &mut [u8], ms: u64) -> Option<usize> {
    tokio::time::timeout(Duration::from_millis(ms), s.recv(buf))
        .await
        .ok()?
        .ok()
}

#[tokio::test]
async fn udp_delays_both_ways_and_keeps_clients_apart() {
    let upstream = udp_echo().await;
    let proxy = udp_proxy(upstream, "delay 20ms", "delay 20ms", MAX_DATAGRAM).await;
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    a.connect(proxy.local_addr()).await.unwrap();
    b.connect(proxy.local_addr()).await.unwrap();
    let t = Instant::now();
    a.send(b"from-a").await.unwrap();
    b.send(b"from-b").await.unwrap();
    let mut buf = [0u8; 64];
    let n = recv_timeout(&a, &mut buf, 1000).await.unwrap();
    assert_eq!(&buf[..n], b"from-a");
    let rtt = t.elapsed();
    let n = recv_timeout(&b, &mut buf, 1000).await.unwrap();
    assert_eq!(&buf[..n], b"from-b");
    // 40 ms of delay, plus tokio's 1 ms timer granularity per direction.
    assert!(
        rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(60),
        "{rtt:?}"
    );
    assert_eq!(proxy.stop().await.unwrap().clients, 2);
}

#[tokio::test]
async fn udp_loss_is_counted_exactly() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let proxy = udp_proxy(
        upstream.local_addr().unwrap(),
        "loss 30%",
        "none",
        MAX_DATAGRAM,
    )
    .await;
    // Read while sending, so the kernel's receive buffer never overflows.
    let counter = tokio::spawn(async move {
        let mut got = 0u64;
        let mut buf = [0u8; 16];
        while recv_timeout(&upstream, &mut buf, 300).await.is_some() {
            got += 1;
        }
        got
    });
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..500u32 {
        client
            .send_to(&i.to_be_bytes(), proxy.local_addr())
            .await
            .unwrap();
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let got = counter.await.unwrap();
    let stats = proxy.stop().await.unwrap();
    assert_eq!(stats.uplink.pushed, 500);
    assert_eq!(stats.uplink.delivered, got);
    assert_eq!(500 - got, stats.uplink.dropped_loss);
    // 30 % ± 4.5 binomial σ (σ ≈ 2 %).
    assert!((got as f64 / 500.0 - 0.7).abs() < 0.09, "{got}");
}

#[tokio::test]
async fn udp_survives_an_unreachable_upstream() {
    // A port with nothing behind it: sends there bounce (ICMP unreachable).
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let proxy = udp_proxy(closed, "none", "none", MAX_DATAGRAM).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(proxy.local_addr()).await.unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        client.send(b"anyone?").await.unwrap();
        assert!(recv_timeout(&client, &mut buf, 50).await.is_none());
    }
    // The upstream comes up on that port: the same proxy now relays.
    let up = UdpSocket::bind(closed).await.unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = up.recv_from(&mut buf).await {
            let _ = up.send_to(&buf[..n], from).await;
        }
    });
    client.send(b"hello").await.unwrap();
    let n = recv_timeout(&client, &mut buf, 1000)
        .await
        .expect("the proxy still relays");
    assert_eq!(&buf[..n], b"hello");
    let stats = proxy.stop().await.unwrap();
    assert_eq!(stats.uplink.pushed, 6);
}

#[tokio::test]
async fn udp_oversized_datagrams() {
    let upstream = udp_echo().await;
    // The largest IPv4 datagram passes intact.
    let proxy = udp_proxy(upstream, "none", "none", MAX_DATAGRAM).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(proxy.local_addr()).await.unwrap();
    let big: Vec<u8> = (0..MAX_DATAGRAM).map(|i| (i % 251) as u8).collect();
    client.send(&big).await.unwrap();
    let mut buf = vec![0u8; 70_000];
    let n = recv_timeout(&client, &mut buf, 1000).await.unwrap();
    assert_eq!(&buf[..n], &big[..]);
    proxy.stop().await.unwrap();
    // With an MTU-like limit, longer datagrams are dropped and counted.
    let proxy = udp_proxy(upstream, "none", "none", 1500).await;
    client.connect(proxy.local_addr()).await.unwrap();
    client.send(&[1u8; 2000]).await.unwrap();
    assert!(recv_timeout(&client, &mut buf, 200).await.is_none());
    client.send(&[2u8; 1000]).await.unwrap();
    assert_eq!(recv_timeout(&client, &mut buf, 1000).await, Some(1000));
    let stats = proxy.stop().await.unwrap();
    assert_eq!(stats.oversized, 1);
}

async fn tcp_proxy(upstream: SocketAddr, line: &str, reset_after: Option<Duration>) -> TcpProxy {
    let p = stream_profile(&profile(line)).unwrap();
    TcpProxy::start(TcpProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream,
        profiles: (p.clone(), p),
        seed: 1,
        reset_after,
        connect_timeout: Duration::from_secs(2),
    })
    .await
    .unwrap()
}

/// An upstream that echoes everything until EOF, then closes.
async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tcp_delay_and_bandwidth() {
    let proxy = tcp_proxy(tcp_echo().await, "delay 20ms rate 40mbit", None).await;
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    // A small echo takes one round trip through the delay.
    let t = Instant::now();
    s.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    s.read_exact(&mut four).await.unwrap();
    let rtt = t.elapsed();
    assert!(
        rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(70),
        "{rtt:?}"
    );
    // 1 MB each way at 40 Mbit/s takes at least 0.2 s, and arrives intact.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let t = Instant::now();
    let (mut r, mut w) = s.into_split();
    let send = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&send).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    let elapsed = t.elapsed();
    assert_eq!(back, data);
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    let stats = proxy.stop().await;
    assert_eq!(stats.bytes_up, 1_000_004);
}

#[tokio::test]
async fn tcp_unreachable_upstream_closes_the_client() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = tcp_proxy(closed, "delay 5ms", None).await;
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("closed promptly");
    assert!(matches!(r, Ok(0) | Err(_)));
    assert_eq!(proxy.stop().await.upstream_failures, 1);
}

#[tokio::test]
async fn tcp_reset_after() {
    let proxy = tcp_proxy(
        tcp_echo().await,
        "delay 5ms",
        Some(Duration::from_millis(200)),
    )
    .await;
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(proxy.stop().await.resets, 1);
}

#[tokio::test]
async fn tcp_slow_close_crosses_the_delay() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = l.local_addr().unwrap();
    let proxy = tcp_proxy(upstream, "delay 100ms", None).await;
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut server, _) = l.accept().await.unwrap();
    let t = Instant::now();
    client.shutdown().await.unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "FIN after {:?}",
        t.elapsed()
    );
    proxy.stop().await;
}

#[test]
fn tcp_refuses_packet_effects() {
    for (line, needle) in [
        ("loss 1%", "link mode"),
        ("delay 10ms duplicate 1%", "duplication"),
        ("delay 10ms reorder 5%", "reordering"),
    ] {
        let e = stream_profile(&profile(line)).unwrap_err();
        assert!(e.contains(needle), "{line}: {e}");
    }
    // Jitter is kept in order on a stream.
    let p = stream_profile(&profile("delay 10ms 5ms")).unwrap();
    assert_eq!(p.delay.unwrap().spec.order, netem::delay::Order::Fifo);
}
