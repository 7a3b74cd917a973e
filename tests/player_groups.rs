//! Player groups end to end: one publisher feeds two groups of players on
//! different last miles through one relay, in link mode (needs root) and in
//! proxy mode (`glass run`, no privileges); each group's figures are its
//! own and its last mile's delay shows in its latency alone.

mod common;

use std::process::Command;

use harness::runner::{RunResult, run_groups};
use harness::scenario::Scenario;
use harness::topology::Mode;
use netem::adapters::can_create_namespaces;
use netem::adapters::link::LinkDir;

/// "near" has a 5 ms last mile each way, "far" 40 ms; the first mile is
/// 10 ms each way. Glass's UDP protocol, which proxy mode carries too.
const SCENARIO: &str = r#"
name = "groups"
duration = "5s"
warmup = "1s"
[media]
bitrate = "1Mbit/s"
[[networks]]
name = "net"
first_mile = { profile = "delay 10ms" }
players = [
  { name = "near", last_mile = { profile = "delay 5ms" } },
  { name = "far", last_mile = { profile = "delay 40ms" } },
]
[[protocols]]
kind = "udp"
player = { target_delay = "200ms" }
# With a token: the relay admits each player by a challenge, one round trip
# more (the far group once showed a 55 ms standing queue from it: #22).
udp = { token = "t" }
"#;

fn last_mile_p50(r: &RunResult) -> f64 {
    r.hops
        .as_ref()
        .and_then(|h| h.last_mile.clone())
        .expect("a last-mile hop")
        .p50_ms
}

/// The far group's last-mile hop is 35 ms longer; both groups saw every
/// frame the publisher sent in time.
fn check_groups(runs: &[RunResult]) {
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert!(
            r.player.frames_displayed > 100,
            "{}",
            r.player.frames_displayed
        );
        assert_eq!(r.frames_lost(), 0);
    }
    let (near, far) = (last_mile_p50(&runs[0]), last_mile_p50(&runs[1]));
    eprintln!("last mile p50: near {near:.1} ms, far {far:.1} ms");
    assert!(
        (30.0..45.0).contains(&(far - near)),
        "near {near}, far {far}"
    );
    // One publisher: both groups report the same publisher.
    assert_eq!(
        runs[0].publisher.video_frames_sent,
        runs[1].publisher.video_frames_sent
    );
}

#[test]
fn two_groups_on_different_last_miles_in_link_mode() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    // Link mode also carries 1 Mbit/s of CBR cross traffic down the far
    // group's last mile, which its link counts and the near one does not.
    let text = SCENARIO.replace(
        "[[protocols]]",
        "cross = [ { mile = \"last\", group = \"far\", direction = \"downlink\", kind = \"cbr\", rate = \"1Mbit/s\" } ]\n[[protocols]]",
    );
    let s = Scenario::from_toml("groups.toml", &text, None).unwrap_or_else(|e| panic!("{e}"));
    let n = &s.networks[0];
    let runs = run_groups(
        &common::runtime(),
        &s,
        n,
        &s.protocols[0],
        0,
        Mode::Link,
        &|_| {},
    )
    .unwrap();
    check_groups(&runs);
    // Each group's view of the link: the same first mile, its own last mile.
    let link = |r: &RunResult, d| r.link.as_ref().expect("link mode").counters(d);
    let mean_ms = |c: &netem::Counters| c.delay_sum_ns as f64 / c.delivered.max(1) as f64 / 1e6;
    assert_eq!(
        link(&runs[0], LinkDir::FirstMileUp).pushed,
        link(&runs[1], LinkDir::FirstMileUp).pushed
    );
    let near = link(&runs[0], LinkDir::LastMileDown);
    let far = link(&runs[1], LinkDir::LastMileDown);
    assert!(near.delivered > 100 && far.delivered > 100);
    assert!((mean_ms(&near) - 5.0).abs() < 0.5, "{}", mean_ms(&near));
    assert!((mean_ms(&far) - 40.0).abs() < 0.5, "{}", mean_ms(&far));
    // The cross flow: ~1 Mbit/s for 5 s (≈ 625 kB) arrived, on the far
    // group's last mile only (its bytes are on top of the media's).
    let cross = &runs[1].cross;
    assert_eq!(cross.len(), 1);
    assert!(
        cross[0].flow.starts_with("far's last mile downlink"),
        "{}",
        cross[0].flow
    );
    assert!(cross[0].bytes_received > 500_000, "{:?}", cross[0]);
    let extra = far.bytes_pushed as f64 - near.bytes_pushed as f64;
    eprintln!(
        "cross: {} B received; far − near last-mile bytes {extra:.0}",
        cross[0].bytes_received
    );
    assert!(extra > 0.8 * cross[0].bytes_received as f64, "{extra}");
    // The UDP protocol's recovery per group: the egress that served it.
    for r in &runs {
        let egress: Vec<_> = common::udp_of(r)
            .udp
            .iter()
            .filter(|u| u.role == "relay-egress")
            .collect();
        let player = common::udp_of(r)
            .udp
            .iter()
            .find(|u| u.role == "player")
            .unwrap();
        assert_eq!(egress.len(), 1);
        assert_eq!(egress[0].session, player.session);
    }
}

#[test]
fn two_groups_in_proxy_mode_through_glass_run() {
    let _serial = common::serial();
    let dir = std::env::temp_dir().join(format!("glass-groups-{}", std::process::id()));
    let file = dir.join("groups.toml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, SCENARIO).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", "--mode", "proxy", "--output"])
        .arg(dir.join("results"))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("net · near") && stdout.contains("net · far"),
        "{stdout}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results/results.json")).unwrap())
            .unwrap();
    let runs = results["runs"].as_array().unwrap();
    let names: Vec<&str> = runs
        .iter()
        .map(|r| r["network"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["net · near", "net · far"]);
    let hop = |r: &serde_json::Value| r["result"]["hops"]["last_mile"]["p50_ms"].as_f64().unwrap();
    let (near, far) = (hop(&runs[0]), hop(&runs[1]));
    eprintln!("proxy mode, last mile p50: near {near:.1} ms, far {far:.1} ms");
    assert!(
        (30.0..45.0).contains(&(far - near)),
        "near {near}, far {far}"
    );
    // Each group's own datagram proxy on its last mile.
    let proxied = |r: &serde_json::Value| {
        r["result"]["proxy"]["udp_last_mile"]["downlink"]["delivered"]
            .as_u64()
            .unwrap()
    };
    assert!(proxied(&runs[0]) > 100 && proxied(&runs[1]) > 100);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same two groups in virtual time (token challenge included): the
/// same checks, and each group's own last mile in its link counters.
#[test]
fn two_groups_on_different_last_miles_in_virtual_time() {
    let s = Scenario::from_toml("groups.toml", SCENARIO, None).unwrap_or_else(|e| panic!("{e}"));
    let runs =
        harness::virtual_time::run_groups(&s, &s.networks[0], &s.protocols[0], 0, &|_| {}).unwrap();
    check_groups(&runs);
    let link = |r: &RunResult, d| r.link.as_ref().expect("the virtual link").counters(d);
    let mean_ms = |c: &netem::Counters| c.delay_sum_ns as f64 / c.delivered.max(1) as f64 / 1e6;
    assert_eq!(runs[0].mode, "virtual");
    assert!((mean_ms(&link(&runs[0], LinkDir::LastMileDown)) - 5.0).abs() < 0.01);
    assert!((mean_ms(&link(&runs[1], LinkDir::LastMileDown)) - 40.0).abs() < 0.01);
    let udp = runs[0]
        .relay
        .server::<harness::protocol::udp::UdpServerStats>()
        .expect("the UDP relay's statistics");
    assert_eq!(
        udp.udp_challenges, 3,
        "a publisher and two players challenged"
    );
}
