//! RTMP in virtual time, over QUIC (quinn-proto's endpoints driven by the
//! event loop; both mappings) and over TCP (smoltcp's, labelled
//! `tcp (smoltcp)`), RTMP's sans-IO ends on their streams: the same seed
//! gives the same bytes in two processes, and the figures agree with link
//! mode's (quinn and kernel TCP over real sockets through the TUN link).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::runner::{RunResult, run_one};
use harness::scenario::Scenario;
use harness::topology::Mode;

/// RTMP over QUIC (both mappings) and over TCP on one first mile; `SEED`
/// and `FIRST` are replaced.
const BOTH: &str = r#"
name = "rtmp-virtual"
duration = "6s"
seed = SEED
[[networks]]
name = "n"
first_mile = FIRST
[[protocols]]
name = "stream"
kind = "rtmp"
uri = "rtmpq://server/live/glass"
[[protocols]]
name = "frames"
kind = "rtmp"
uri = "rtmpq://server/live/glass?mapping=frames"
[[protocols]]
name = "tcp"
kind = "rtmp"
uri = "rtmp://server/live/glass"
tcp_congestion = "cubic"
"#;

const LOSSY: &str = r#"{ uplink = "delay 20ms loss 2%", downlink = "delay 20ms" }"#;
const CLEAN: &str = r#"{ profile = "delay 30ms" }"#;

fn text(seed: u64, first: &str) -> String {
    BOTH.replace("SEED", &seed.to_string())
        .replace("FIRST", first)
}

/// A scratch directory, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(what: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("glass-vquic-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn scenario(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn glass_run(clock: &str, scenario: &Path, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", "--clock", clock, "--output"])
        .arg(out)
        .arg(scenario)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_seed_gives_the_same_bytes_in_two_processes_and_another_seed_others() {
    let dir = Dir::new("seeds");
    let s7 = dir.scenario("s7.toml", &text(7, LOSSY));
    let s8 = dir.scenario("s8.toml", &text(8, LOSSY));
    let (a, b, c) = (dir.0.join("a"), dir.0.join("b"), dir.0.join("c"));
    glass_run("virtual", &s7, &a);
    glass_run("virtual", &s7, &b);
    glass_run("virtual", &s8, &c);
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert!(
        read(&a, "frames.csv").len() > 10_000,
        "frames.csv is written"
    );
    for f in ["frames.csv", "seconds.csv", "results.json"] {
        assert!(read(&a, f) == read(&b, f), "same seed: {f} byte for byte");
    }
    assert!(
        read(&a, "frames.csv") != read(&c, "frames.csv"),
        "another seed: other frames"
    );
    let r: serde_json::Value = serde_json::from_slice(&read(&a, "results.json")).unwrap();
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let res = &run["result"];
        assert_eq!(res["mode"], "virtual");
        let dropped = &res["link"]["directions"]["first_mile_up"]["dropped_loss"];
        if run["protocol"] == "tcp" {
            // smoltcp's TCP, said so; every dropped segment sent again.
            assert_eq!(res["transports"][0]["used"], "tcp (smoltcp)", "{res}");
            let retrans = res["publisher"]["tcp"]["total_retrans"].as_u64().unwrap();
            let drops = dropped.as_u64().unwrap();
            assert!(drops > 5 && retrans >= drops, "{retrans} of {drops}");
            continue;
        }
        let quic = &res["publisher"]["quic"];
        let (lost, drops) = (
            quic["lost_packets"].as_u64().unwrap(),
            dropped.as_u64().unwrap(),
        );
        assert!(lost > 5, "{quic}");
        assert!(
            declared_every_drop(lost, drops),
            "{}: {lost} of {drops}",
            run["protocol"]
        );
        // Path MTU discovery ran, as in link mode: packets past 1,200 bytes.
        let (bytes, n) = (
            quic["udp_bytes_sent"].as_f64().unwrap(),
            quic["udp_datagrams_sent"].as_f64().unwrap(),
        );
        assert!(bytes / n > 1_300.0, "mean datagram {} B", bytes / n);
    }
}

/// QUIC declared lost what the engine dropped: every packet, but those
/// dropped in the run's last round trip or so, which the run's end
/// catches before loss detection does (about 0.6 expected here).
fn declared_every_drop(lost: u64, drops: u64) -> bool {
    lost <= drops && drops - lost <= 2
}

/// Median capture → arrival (ms) of each protocol's frames captured after
/// the first 2 s, from a run's frames.csv.
fn arrival_p50(dir: &Path) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(dir.join("frames.csv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (p, c, a) = (col("protocol"), col("capture_ms"), col("arrival_ms"));
    let mut by: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let (Ok(cap), Ok(arr)) = (f[c].parse::<f64>(), f[a].parse::<f64>()) else {
            continue;
        };
        if cap >= 2_000.0 {
            by.entry(f[p].trim_matches('"').to_string())
                .or_default()
                .push(arr - cap);
        }
    }
    by.into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k, v[v.len() / 2])
        })
        .collect()
}

/// On a clean network the time from capture to arrival is the same in
/// both modes within 1 ms, for both QUIC mappings (TCP: see below). (Displayed G2G can differ by
/// a whole refresh: virtual time spends no CPU, so a frame's due instant
/// lands exactly on a refresh where link mode's lands just after it; the
/// note has the figures.) At 2 % loss QUIC declares lost the packets the
/// engine dropped, in both modes.
#[test]
fn rtmp_agrees_with_the_link() {
    let _serial = common::serial();
    if harness::topology::link_available().is_err() {
        eprintln!("skipped: no network namespaces here");
        return;
    }
    let dir = Dir::new("agree");
    let clean = dir.scenario("clean.toml", &text(1, CLEAN));
    let (v, l) = (dir.0.join("v"), dir.0.join("l"));
    glass_run("virtual", &clean, &v);
    glass_run("real", &clean, &l);
    let (av, al) = (arrival_p50(&v), arrival_p50(&l));
    assert_eq!(av.len(), 3, "{av:?}");
    for ((pv, xv), (pl, xl)) in av.iter().zip(&al) {
        eprintln!("clean, {pv}: capture → arrival p50 virtual {xv:.3} ms, link {xl:.3} ms");
        assert_eq!(pv, pl);
        // QUIC within 1 ms (the issue's check). Kernel TCP's frames take
        // 1.5–2 ms longer through the TUN link than the delay (measured:
        // its segments' processing, a real cost virtual time does not
        // have); smoltcp's TCP is checked against it on goodput instead
        // (`glass bench tcp`), so here within 3 ms.
        let within = if pv == "tcp" { 3.0 } else { 1.0 };
        assert!((xv - xl).abs() <= within, "{pv}: virtual {xv} vs link {xl}");
        // The encoder's 30 ms and the first mile's 30 ms.
        assert!((59.0..61.0).contains(xv), "{pv}: {xv}");
    }

    let s = Scenario::from_toml("lossy", &text(3, LOSSY), None).unwrap();
    let rt = common::runtime();
    for p in s.protocols.iter().filter(|p| p.name != "tcp") {
        let n = &s.networks[0];
        let runs: [(&str, RunResult); 2] = [
            (
                "virtual",
                harness::virtual_time::run_groups(&s, n, p, 0, &|_| {})
                    .unwrap()
                    .remove(0),
            ),
            (
                "link",
                run_one(&rt, &s, n, p, 0, Mode::Link, &|_| {}).unwrap(),
            ),
        ];
        for (mode, r) in runs {
            let lost = r.publisher.quic.as_ref().expect("QUIC stats").lost_packets;
            let drops = common::first_mile_drops(&r);
            eprintln!(
                "{mode} {}: engine dropped {drops}, QUIC lost {lost}; shown {} of {}, stalls {:.2} %",
                p.name,
                r.player.frames_displayed,
                r.frames_expected,
                r.player.stall_ratio * 100.0
            );
            assert_eq!(r.mode == "virtual", mode == "virtual");
            assert!(drops > 10, "{mode}");
            assert!(
                declared_every_drop(lost, drops),
                "{mode} {}: {lost} of {drops}",
                p.name
            );
        }
    }
}

/// Five repeats each way at 2 % loss and 100 ms RTT (QUIC's frames
/// mapping; a load the path cannot always carry, so stalls show): virtual
/// time's mean stall ratio and G2G p50 fall within the 95 % intervals of
/// link mode's. Slow (five 10 s link runs):
/// `cargo test --test virtual_quic -- --ignored`.
#[test]
#[ignore]
fn repeats_agree_with_the_link_within_their_intervals() {
    let _serial = common::serial();
    if harness::topology::link_available().is_err() {
        eprintln!("skipped: no network namespaces here");
        return;
    }
    let s = Scenario::from_toml(
        "lossy",
        r#"
name = "lossy"
duration = "10s"
repeat = 5
[[networks]]
name = "2% loss, 50 ms"
first_mile = { uplink = "delay 50ms loss 2%", downlink = "delay 50ms" }
[[protocols]]
name = "frames"
kind = "rtmp"
uri = "rtmpq://server/live/glass?mapping=frames"
"#,
        None,
    )
    .unwrap();
    common::assert_repeats_agree(&s, &["stall ratio %", "G2G p50 ms"], |r| {
        vec![r.player.stall_ratio * 100.0, r.player.g2g_p50_ms]
    });
}
