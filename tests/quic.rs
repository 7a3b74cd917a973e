//! End-to-end: RTMP over QUIC through the link. Fallback to TCP when UDP is
//! blocked, TCP and QUIC clients mixed on one relay, QUIC's lost-packet
//! count against the engine's drops, and the ABR step response.

mod common;

use harness::protocol::rtmp::RtmpServerStats;
use harness::runner::RunResult;
use harness::scenario::Scenario;
use netem::adapters::can_create_namespaces;

fn run(text: &str) -> RunResult {
    common::run_link(&Scenario::from_toml("test", text, None).unwrap())
}

fn transport<'a>(r: &'a RunResult, role: &str) -> &'a harness::runner::TransportReport {
    r.transports.iter().find(|t| t.role == role).unwrap()
}

#[test]
fn quic_falls_back_to_tcp_when_udp_is_blocked() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let r = run(r#"
name = "fallback"
duration = "4s"
[[networks]]
name = "udp blocked"
first_mile = { uplink = { loss = { model = "bernoulli", rate = "100%", flows = { protocol = "udp" } } } }
[[protocols]]
kind = "rtmp"
uri = "rtmpq://server/live/glass"
quic = { handshake_timeout = "500ms" }
"#);
    let p = transport(&r, "publisher");
    eprintln!("{p:?}; G2G p50 {} ms", r.player.g2g_p50_ms);
    assert_eq!(
        (p.requested.as_str(), p.used.as_str()),
        ("quic/stream", "tcp")
    );
    assert!(
        p.fallback
            .as_deref()
            .unwrap()
            .contains("did not finish within 0.5 s")
    );
    assert_eq!(r.transport(), "tcp*");
    // The player's last mile lets UDP through: it got QUIC.
    assert_eq!(transport(&r, "player").used, "quic/stream");
    assert!(
        r.player.frames_displayed > 50 && r.frames_lost() == 0,
        "{:?}",
        r.player
    );
}

fn mixed(publisher: &str, player: &str) -> RunResult {
    run(&format!(
        r#"
name = "mixed"
duration = "4s"
[[protocols]]
kind = "rtmp"
uri = "{publisher}"
player_uri = "{player}"
player = {{ refresh = "1ms" }}
"#
    ))
}

#[test]
fn tcp_and_quic_clients_share_streams_on_one_relay() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    // A QUIC publisher feeds a TCP player ...
    let a = mixed("rtmpq://server/live/k", "rtmp://server/live/k");
    // ... and a TCP publisher a QUIC player, with a stream per frame.
    let b = mixed(
        "rtmp://server/live/k",
        "rtmpq://server/live/k?mapping=frames",
    );
    for (r, publisher, player) in [(&a, "quic/stream", "tcp"), (&b, "tcp", "quic/frames")] {
        eprintln!(
            "{publisher} → {player}: G2G p50 {} ms, shown {} of {}, handshakes {:?}",
            r.player.g2g_p50_ms,
            r.player.frames_displayed,
            r.frames_expected,
            r.transports
                .iter()
                .map(|t| t.handshake_ms)
                .collect::<Vec<_>>()
        );
        assert_eq!(transport(r, "publisher").used, publisher);
        assert_eq!(transport(r, "player").used, player);
        assert_eq!(r.relay.hub.publishes_accepted, 1);
        assert!(
            r.frames_lost() == 0 && r.player.frames_displayed > 80,
            "{:?}",
            r.player
        );
        // Clean: the pipeline's delay (30 ms encode + 500 ms buffer) and
        // at most a 1 ms refresh and a millisecond of transport.
        assert!(
            r.player.g2g_p50_ms > 530.0 && r.player.g2g_p50_ms < 533.0,
            "{:?}",
            r.player
        );
    }
    assert_eq!(players_by_transport(&a), (1, 0));
    assert_eq!(players_by_transport(&b), (0, 1));
    assert!(a.publisher.quic.is_some() && b.publisher.quic.is_none());
}

#[test]
fn quic_lost_packets_match_the_engine_drops() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    for mapping in ["", "?mapping=frames"] {
        let r = run(&format!(
            r#"
name = "loss"
duration = "8s"
[[networks]]
name = "5%"
first_mile = {{ uplink = "delay 20ms loss 5%", downlink = "delay 20ms" }}
[[protocols]]
kind = "rtmp"
uri = "rtmpq://server/live/glass{mapping}"
"#
        ));
        let drops = common::first_mile_drops(&r);
        let lost = r.publisher.quic.as_ref().unwrap().lost_packets;
        eprintln!(
            "quic{mapping}: engine dropped {drops} on the first-mile uplink, quinn declared {lost} lost; G2G p99 {} ms",
            r.player.g2g_p99_ms
        );
        // quinn tracks ack-eliciting packets only: a lost ACK-only packet is
        // never "lost" to it; and a packet can be declared lost at the very
        // end before its loss shows. So: close, not equal.
        let (d, l) = (drops as f64, lost as f64);
        assert!(drops > 20, "{drops}");
        assert!(
            l >= 0.85 * d - 3.0 && l <= 1.05 * d + 3.0,
            "quinn {lost} vs engine {drops}"
        );
    }
}

#[test]
fn proxy_mode_carries_quic_through_a_datagram_proxy_with_loss() {
    // No namespaces needed: the relay's QUIC endpoint gets a datagram proxy
    // on each mile whose client uses it, where loss can be represented.
    // 1 Mbit/s: under what loss-based congestion control sustains at 3 %
    // and 40 ms RTT (Mathis: ~1.7 Mbit/s), so frames are not queued.
    let _serial = common::serial();
    let s = Scenario::from_toml(
        "test",
        r#"
name = "quic via proxy"
duration = "6s"
[media]
bitrate = "1Mbit/s"
[[networks]]
name = "3% up, 2% down"
first_mile = { uplink = "delay 20ms loss 3%", downlink = "delay 20ms" }
last_mile = { downlink = "delay 5ms loss 2%" }
[[protocols]]
kind = "rtmp"
uri = "rtmpq://server/live/glass"
player_uri = "rtmpq://server/live/glass?mapping=frames"
"#,
        None,
    )
    .unwrap();
    let r = common::run_proxy(&s);
    assert_eq!(r.mode, "proxy");
    assert_eq!(transport(&r, "publisher").used, "quic/stream");
    assert_eq!(transport(&r, "player").used, "quic/frames");
    let proxy = r.proxy.as_ref().unwrap();
    let up = &proxy.udp_first_mile.as_ref().unwrap().uplink;
    let down = &proxy.udp_last_mile.as_ref().unwrap().downlink;
    let lost = r.publisher.quic.as_ref().unwrap().lost_packets;
    eprintln!(
        "first mile: proxy dropped {} of {}, quinn declared {lost} lost; last mile dropped {} of {}; G2G p50 {} ms",
        up.dropped_loss, up.pushed, down.dropped_loss, down.pushed, r.player.g2g_p50_ms
    );
    assert!(
        up.dropped_loss > 5 && down.dropped_loss > 2,
        "{up:?} {down:?}"
    );
    let (d, l) = (up.dropped_loss as f64, lost as f64);
    assert!(
        l >= 0.85 * d - 3.0 && l <= 1.05 * d + 3.0,
        "quinn {lost} vs proxy {}",
        up.dropped_loss
    );
    // Nothing went over TCP: those proxies carried no bytes.
    assert_eq!(proxy.first_mile.bytes_up, 0, "{:?}", proxy.first_mile);
    assert!(r.player.frames_displayed > 100, "{:?}", r.player);
}

#[test]
fn abr_settles_below_a_capacity_drop() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    for uri in ["rtmp://server/live/glass", "rtmpq://server/live/glass"] {
        let r = run(&format!(
            r#"
name = "abr"
duration = "24s"
[media]
bitrate = "3Mbit/s"
fps = 30
gop = 60
resolution = "1280x720"
audio = true
encode_delay = "30ms"
[[networks]]
name = "4 to 1 Mbit/s at 8 s"
first_mile = {{ uplink = {{ delay = {{ base = "20ms" }}, bottleneck = {{ rate = "4Mbit/s", queue = "200ms" }}, timeline = [ {{ at = "8s", rate = "1Mbit/s" }} ] }}, downlink = "delay 20ms" }}
[[protocols]]
kind = "rtmp"
uri = "{uri}"
abr = {{}}
"#
        ));
        let m = r.abr.as_ref().unwrap();
        eprintln!(
            "{uri}: {m:?}; G2G p50 {} p99 {} ms, stall ratio {:.3}",
            r.player.g2g_p50_ms, r.player.g2g_p99_ms, r.player.stall_ratio
        );
        assert_eq!(m.capacity_drop_at_ms, Some(8000.0));
        let t = m.adaptation_time_ms.expect("adapted");
        assert!(t < 8000.0, "adaptation took {t} ms");
        // After the drop the target stays below the 1 Mbit/s capacity on average.
        let ratio = m.mean_target_over_capacity.unwrap();
        assert!(ratio < 1.0 && ratio > 0.2, "mean target / capacity {ratio}");
        assert!(m.switches >= 2);
    }
}

/// (TCP players, QUIC players) the relay's RTMP side served.
fn players_by_transport(r: &RunResult) -> (usize, usize) {
    let rtmp = r
        .relay
        .server::<RtmpServerStats>()
        .expect("the RTMP side's statistics");
    (rtmp.to_players_tcp.len(), rtmp.to_players_quic.len())
}
