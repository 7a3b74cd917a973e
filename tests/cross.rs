//! Cross traffic end to end (link mode, needs root): a bulk TCP flow that
//! shares the first mile's bottleneck fills its queue, and the media's
//! latency shows it; a CBR flow on a clean last mile arrives whole.

mod common;

use harness::scenario::Scenario;
use netem::adapters::can_create_namespaces;

fn scenario(cross: &str) -> Scenario {
    let text = format!(
        r#"
name = "cross"
duration = "8s"
warmup = "1s"
[media]
bitrate = "1.5Mbit/s"
[[networks]]
name = "4 Mbit/s first mile"
first_mile = {{ uplink = {{ delay = {{ base = "20ms" }}, bottleneck = {{ rate = "4Mbit/s", queue = "200ms" }} }}, downlink = "delay 20ms" }}
{cross}
[[protocols]]
kind = "rtmp"
"#
    );
    Scenario::from_toml("cross.toml", &text, None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_competing_bulk_flow_fills_the_shared_queue_and_the_media_waits_in_it() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let alone = common::run_link(&scenario(""));
    let shared = common::run_link(&scenario(
        r#"cross = [
  { mile = "first", kind = "tcp", cc = "cubic", start = "2s", stop = "7s" },
  { mile = "last", direction = "downlink", kind = "cbr", rate = "1Mbit/s" },
]"#,
    ));
    let q = |r: &harness::runner::RunResult| common::first_mile_counters(r).dropped_queue;
    for c in &shared.cross {
        eprintln!(
            "{}: sent {} B, received {} B, {:.2} Mbit/s",
            c.flow, c.bytes_sent, c.bytes_received, c.goodput_mbps
        );
    }
    // The player's fixed playout delay hides the queue from G2G (the buffer
    // absorbs it); the first mile's hop (handed to TCP → at the relay) shows it.
    let first_mile = |r: &harness::runner::RunResult| {
        let s = r.hops.as_ref().and_then(|h| h.first_mile.clone()).unwrap();
        (s.p50_ms, s.p99_ms)
    };
    let (a50, a99) = first_mile(&alone);
    let (s50, s99) = first_mile(&shared);
    eprintln!(
        "media first mile p50/p99: alone {a50:.0}/{a99:.0} ms, with cross traffic {s50:.0}/{s99:.0} ms; G2G p99 {:.0} vs {:.0} ms; first-mile queue drops {} vs {}",
        alone.player.g2g_p99_ms,
        shared.player.g2g_p99_ms,
        q(&alone),
        q(&shared)
    );
    assert!(alone.cross.is_empty());
    assert_eq!(shared.cross.len(), 2);
    let (tcp, cbr) = (&shared.cross[0], &shared.cross[1]);
    // The bulk flow takes what the media leaves of 4 Mbit/s, and overflows the queue.
    assert!(tcp.goodput_mbps > 0.8 && tcp.goodput_mbps < 4.0, "{tcp:?}");
    assert_eq!(q(&alone), 0);
    assert!(q(&shared) > 0, "the shared queue never overflowed");
    // The media waits in the queue the bulk flow keeps full.
    assert!(
        s99 > a99 + 50.0,
        "first mile p99: alone {a99} ms, shared {s99} ms"
    );
    // A clean last mile carries the CBR flow whole: 1 Mbit/s for 8 s.
    assert!(cbr.bytes_sent > 900_000, "{cbr:?}");
    assert_eq!(cbr.bytes_received, cbr.bytes_sent, "{cbr:?}");
}

#[test]
fn proxy_mode_refuses_cross_traffic() {
    let s = scenario(r#"cross = [ { mile = "first", kind = "tcp" } ]"#);
    let e = harness::runner::run_one(
        &common::runtime(),
        &s,
        &s.networks[0],
        &s.protocols[0],
        0,
        harness::topology::Mode::Proxy,
        &|_| {},
    )
    .expect_err("proxy mode cannot share a queue");
    assert!(e.to_string().contains("needs link mode"), "{e:#}");
}
