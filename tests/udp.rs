//! End-to-end: Glass's UDP media protocol through the link. Each recovery
//! mechanism against the same lossy first mile (residual loss, against the
//! engine's own drop count), the gateway from a UDP first mile to an RTMP
//! player, and a refused token.

mod common;

use harness::protocol::udp::recovery::MileRecovery;
use harness::runner::RunResult;
use harness::scenario::Scenario;
use netem::adapters::can_create_namespaces;

fn run(text: &str) -> RunResult {
    common::run_link(&Scenario::from_toml("test", text, None).unwrap())
}

fn scenario(network: &str, protocol: &str) -> String {
    format!(
        r#"
name = "udp"
duration = "6s"
seed = 3
[media]
bitrate = "2.5Mbit/s"
fps = 30
gop = 60
audio = true
encode_delay = "30ms"
[[networks]]
name = "lossy"
{network}
[[protocols]]
{protocol}
"#
    )
}

fn first_mile(r: &RunResult) -> &MileRecovery {
    common::udp_of(r)
        .recovery
        .iter()
        .find(|m| m.mile == "first")
        .expect("first-mile recovery")
}

#[test]
fn each_recovery_mechanism_against_five_percent_loss() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let net = r#"first_mile = { uplink = "delay 20ms loss 5%", downlink = "delay 20ms" }"#;
    let mut residual = Vec::new();
    for (name, udp) in [
        ("none", r#"{ nack = false, cc = "off" }"#),
        ("nack", r#"{ nack = true, cc = "off" }"#),
        (
            "fec",
            r#"{ nack = false, cc = "off", fec = { kind = "rs", k = 10, m = 3 } }"#,
        ),
        (
            "nack+fec",
            r#"{ nack = true, cc = "off", fec = { kind = "xor", cols = 5, rows = 5 } }"#,
        ),
    ] {
        let r = run(&scenario(
            net,
            &format!("kind = \"udp\"\nname = \"{name}\"\nudp = {udp}"),
        ));
        let m = first_mile(&r).clone();
        let drops = common::first_mile_drops(&r);
        eprintln!(
            "{name}: link dropped {drops}, lost {}, fec {}, nack {}, late {}, never {}, residual {:.3} %, overhead {:.1} %; frames shown {} of {}",
            m.lost,
            m.fec,
            m.nack_in_time,
            m.late,
            m.never,
            m.residual_loss * 100.0,
            m.overhead * 100.0,
            r.player.frames_displayed,
            r.frames_expected
        );
        // What the receiver found missing is at most what the engine dropped
        // (the rest were FEC, control and keepalive datagrams), and most of it.
        assert!(
            m.lost <= drops && m.lost * 10 >= drops * 6,
            "lost {} of {drops} drops",
            m.lost
        );
        assert_eq!(m.link_dropped, drops);
        residual.push((name, m.residual_loss, r.frames_lost()));
    }
    let [none, nack, fec, both] = residual[..] else {
        unreachable!()
    };
    // Without recovery, the residual loss is the link's.
    assert!((0.03..0.08).contains(&none.1), "none: {none:?}");
    assert!(none.2 > 20, "none: frames lost {}", none.2);
    // Each mechanism brings it down; both together to nothing.
    assert!(nack.1 < 0.002, "nack: {nack:?}");
    assert!(fec.1 < none.1 / 3.0, "fec: {fec:?}");
    assert_eq!(both.1, 0.0, "nack+fec: {both:?}");
    assert_eq!(both.2, 0, "nack+fec lost frames");
}

#[test]
fn a_udp_first_mile_feeds_an_rtmp_player_through_the_gateway() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let r = run(&scenario(
        r#"first_mile = { uplink = "delay 40ms loss 3%", downlink = "delay 40ms" }"#,
        r#"kind = "udp"
player_uri = "rtmp://server/live/glass"
player = { target_delay = "500ms" }
udp = { nack = true, cc = "gcc", red = 2, fec = { kind = "rs", k = 10, m = 2, adaptive = true } }"#,
    ));
    let roles: Vec<&str> = common::udp_of(&r)
        .udp
        .iter()
        .map(|u| u.role.as_str())
        .collect();
    eprintln!(
        "roles {roles:?}; transports {:?}; player {:?}; recovery {:?}",
        r.transports,
        r.player,
        common::udp_of(&r).recovery
    );
    assert_eq!(roles, vec!["publisher", "relay-ingest"]);
    assert_eq!(
        r.transports
            .iter()
            .find(|t| t.role == "player")
            .unwrap()
            .used,
        "tcp"
    );
    assert_eq!(r.transport(), "udp");
    let m = first_mile(&r);
    assert!(m.lost > 10 && m.never == 0, "{m:?}");
    // Every frame due was shown, in order through RTMP, within the buffer.
    assert_eq!(r.frames_lost(), 0, "{:?}", r.player);
    assert!(r.player.g2g_p99_ms < 650.0, "p99 {}", r.player.g2g_p99_ms);
    assert_eq!(r.player.stall_count, 0);
    // Congestion control reported its decisions.
    assert!(!common::udp_of(&r).udp[0].cc.is_empty());
    assert!(r.publisher.abr.is_some());
}

#[test]
fn the_relay_refuses_a_wrong_token_and_a_wrong_key() {
    // On loopback (no namespaces needed): the relay's UDP side with token
    // "right", and clients with the wrong token, the wrong key, both right.
    let rt = common::runtime();
    rt.block_on(async {
        let relay_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = relay_sock.local_addr().unwrap();
        let cfg = udpmedia::Config {
            token: "right".into(),
            ..udpmedia::Config::default()
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let hub = harness::relay::Hub::new("glass");
        let relay = tokio::spawn(harness::protocol::udp::serve(
            relay_sock,
            cfg.clone(),
            hub.clone(),
            stop_rx,
            std::sync::Arc::default(),
        ));
        let clock = netem::time::Clock::new(std::time::Instant::now());
        let connect = |token: &str, key: &str| {
            let c = udpmedia::Config {
                token: token.into(),
                ..udpmedia::Config::default()
            };
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let key = key.to_string();
            async move {
                harness::protocol::udp::UdpClient::connect(
                    sock,
                    addr,
                    c,
                    udpmedia::Role::Publish,
                    &key,
                    clock,
                )
                .await
            }
        };
        let e = connect("wrong", "live/glass")
            .await
            .err()
            .expect("a wrong token is refused");
        assert!(e.to_string().contains("wrong token"), "{e:#}");
        let e = connect("right", "live/other")
            .await
            .err()
            .expect("a wrong key is refused");
        assert!(e.to_string().contains("wrong stream key"), "{e:#}");
        let ok = connect("right", "live/glass")
            .await
            .expect("the right token and key are accepted");
        assert!(ok.handshake_ms < 100.0);
        let _ = stop_tx.send(true);
        relay.await.unwrap();
        let st = hub.stats();
        assert_eq!((st.publishes_accepted, st.publishes_refused), (1, 1));
    });
}

#[test]
fn proxy_mode_carries_the_udp_protocol_with_loss() {
    // No namespaces needed: a datagram proxy per mile on loopback, where
    // loss can be represented (proxy mode refuses loss only for TCP).
    let _serial = common::serial();
    let s = Scenario::from_toml(
        "test",
        &scenario(
            r#"first_mile = { uplink = "delay 20ms loss 5%", downlink = "delay 20ms" }
last_mile = { downlink = "delay 5ms loss 2%" }"#,
            r#"kind = "udp"
udp = { nack = true, cc = "off" }"#,
        ),
        None,
    )
    .unwrap();
    let rt = common::runtime();
    let r = harness::runner::run_one(
        &rt,
        &s,
        &s.networks[0],
        &s.protocols[0],
        0,
        harness::topology::Mode::Proxy,
        &|_| {},
    )
    .unwrap();
    assert_eq!(r.mode, "proxy");
    let proxy = r.proxy.as_ref().unwrap();
    let up = &proxy.udp_first_mile.as_ref().unwrap().uplink;
    let down = &proxy.udp_last_mile.as_ref().unwrap().downlink;
    eprintln!(
        "first mile dropped {} of {}, last mile {} of {}; recovery {:?}",
        up.dropped_loss,
        up.pushed,
        down.dropped_loss,
        down.pushed,
        common::udp_of(&r).recovery
    );
    assert!(up.dropped_loss > 20 && down.dropped_loss > 5);
    for m in &common::udp_of(&r).recovery {
        assert!(m.lost > 0 && m.never == 0, "{m:?}");
        assert!(m.link_dropped > 0);
    }
    assert_eq!(common::udp_of(&r).recovery.len(), 2);
    assert_eq!(r.frames_lost(), 0, "{:?}", r.player);
}
