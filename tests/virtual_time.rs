//! Virtual time (`clock = "virtual"`, `glass run --clock virtual`): the
//! same seed gives the same bytes, another seed other bytes; the figures
//! agree with link mode's for the same scenario; parts that need real time
//! are refused by name.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::runner::{RunResult, run_one};
use harness::scenario::Scenario;
use harness::topology::Mode;

const LOSSY: &str = r#"
name = "udp-virtual"
duration = "6s"
seed = SEED
[[networks]]
name = "2% loss 40ms"
first_mile = { uplink = "delay 40ms loss 2%", downlink = "delay 40ms" }
last_mile = { profile = "delay 10ms" }
[[protocols]]
kind = "udp"
udp = { nack = true, cc = "gcc", fec = { kind = "rs", k = 10, m = 3 } }
"#;

/// A scratch directory, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(what: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("glass-virtual-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn glass_run(scenario: &Path, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", "--clock", "virtual", "--output"])
        .arg(out)
        .arg(scenario)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// results.json without what differs between two runs by nature (none so
/// far: virtual time writes no wall-clock instant).
fn results(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn a_seed_gives_the_same_bytes_and_another_seed_others() {
    let dir = Dir::new("seeds");
    let write = |name: &str, seed: u64| {
        let p = dir.0.join(name);
        std::fs::write(&p, LOSSY.replace("SEED", &seed.to_string())).unwrap();
        p
    };
    let (s7, s8) = (write("s7.toml", 7), write("s8.toml", 8));
    let (a, b, c) = (dir.0.join("a"), dir.0.join("b"), dir.0.join("c"));
    let t0 = std::time::Instant::now();
    glass_run(&s7, &a);
    let one_run = t0.elapsed();
    glass_run(&s7, &b);
    glass_run(&s8, &c);
    let frames = |d: &Path| std::fs::read(d.join("frames.csv")).unwrap();
    assert!(frames(&a).len() > 5_000, "frames.csv is written");
    assert_eq!(
        frames(&a),
        frames(&b),
        "same seed: frames.csv byte for byte"
    );
    assert_eq!(
        std::fs::read(a.join("seconds.csv")).unwrap(),
        std::fs::read(b.join("seconds.csv")).unwrap()
    );
    assert_eq!(results(&a), results(&b), "same seed: results.json");
    assert_ne!(frames(&a), frames(&c), "another seed: other frames");
    let r = results(&a);
    let run = &r["runs"][0];
    assert_eq!(run["result"]["mode"], "virtual", "{run}");
    // Loss happened and was repaired, deterministically.
    let rec = &run["result"]["recovery"][0];
    assert_eq!(rec["mile"], "first");
    assert!(rec["link_dropped"].as_u64().unwrap() > 20, "{rec}");
    // glass compare reads virtual results as any other.
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .arg("compare")
        .args([&a, &c])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        matches!(o.status.code(), Some(0 | 1)) && table.contains("steady_g2g_p50_ms"),
        "{table}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("one 6 s virtual run through the binary: {one_run:?}");
}

fn scenario(text: &str) -> Scenario {
    Scenario::from_toml("t", text, None).unwrap_or_else(|e| panic!("{e}"))
}

fn virtual_run(s: &Scenario) -> RunResult {
    let mut r =
        harness::virtual_time::run_groups(s, &s.networks[0], &s.protocols[0], 0, &|_| {}).unwrap();
    r.remove(0)
}

/// On a clean network (a fixed delay, no loss) the UDP protocol's G2G is
/// the same in both modes within 1 ms, and at 2 % loss each mode's
/// protocol counts exactly the losses its engine made.
#[test]
fn virtual_time_agrees_with_the_link() {
    let _serial = common::serial();
    if harness::topology::link_available().is_err() {
        eprintln!("skipped: no network namespaces here");
        return;
    }
    let clean = scenario(
        r#"
name = "clean"
duration = "6s"
[[networks]]
name = "30ms"
first_mile = { profile = "delay 30ms" }
[[protocols]]
kind = "udp"
"#,
    );
    let v = virtual_run(&clean);
    let l = run_one(
        &common::runtime(),
        &clean,
        &clean.networks[0],
        &clean.protocols[0],
        0,
        Mode::Link,
        &|_| {},
    )
    .unwrap();
    let (sv, sl) = (
        v.player.steady.as_ref().expect("steady state").p50_ms,
        l.player.steady.as_ref().expect("steady state").p50_ms,
    );
    eprintln!(
        "clean: steady G2G p50 virtual {sv:.2} ms, link {sl:.2} ms; shown {} / {}",
        v.player.frames_displayed, l.player.frames_displayed
    );
    assert_eq!(v.mode, "virtual");
    // The steady p50 is a display instant on the 60 Hz grid: a link whose
    // real delay lands a hair past a refresh shows every frame one refresh
    // later (seen: 266.75 vs 283.39 ms). Equal within 1 ms, or one refresh.
    let refresh = 1000.0 / 60.0;
    let off = (sv - sl).abs();
    assert!(
        off <= 1.0 || (off - refresh).abs() <= 1.0,
        "virtual {sv} vs link {sl}"
    );
    assert!(
        v.player.frames_displayed >= 150 && v.frames_lost() == 0,
        "{:?}",
        v.player
    );

    let lossy = scenario(&LOSSY.replace("SEED", "3"));
    for (mode, r) in [
        ("virtual", virtual_run(&lossy)),
        (
            "link",
            run_one(
                &common::runtime(),
                &lossy,
                &lossy.networks[0],
                &lossy.protocols[0],
                0,
                Mode::Link,
                &|_| {},
            )
            .unwrap(),
        ),
    ] {
        let m = &common::udp_of(&r).recovery[0];
        let drops = common::first_mile_drops(&r);
        eprintln!(
            "{mode}: first mile: engine dropped {drops} of {} datagrams, the receiver missed {} data packets, {} never recovered; shown {} of {}",
            m.link_packets, m.lost, m.never, r.player.frames_displayed, r.frames_expected
        );
        assert_eq!(m.mile, "first");
        assert!(drops > 10);
        // The ground truth is the engine's in both modes; what the receiver
        // found missing is at most that (the rest were FEC and control
        // datagrams: about a third here), and a good part of it.
        assert_eq!(m.link_dropped, drops, "{mode}");
        assert!(m.lost <= drops && m.lost * 3 >= drops, "{mode}: {m:?}");
    }
}

#[test]
fn what_needs_real_time_is_refused_by_name() {
    let e = Scenario::from_toml(
        "mixed.toml",
        r#"
name = "mixed"
duration = "2s"
clock = "virtual"
[[networks]]
name = "n"
faults = [ { kind = "relay_killed", at = "1s" } ]
[[protocols]]
kind = "udp"
[[protocols]]
kind = "rtmp"
publisher = "ffmpeg"
[[protocols]]
kind = "rtsp"
"#,
        None,
    )
    .unwrap_err()
    .to_string();
    for part in [
        "clock",
        "protocols[1] (\"rtmp\"): publisher = \"ffmpeg\"",
        "protocols[2] (\"rtsp\"): uri rtsp://",
        "networks[0] (\"n\"): faults",
    ] {
        assert!(e.contains(part), "{part:?} not in: {e}");
    }
    assert!(!e.contains("protocols[0]"), "the UDP protocol runs: {e}");
    assert!(
        !e.contains("uri rtmp://"),
        "RTMP over TCP runs (on smoltcp): {e}"
    );
    // The command line says the same, exit 2, nothing run.
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", "--clock", "virtual", "--output"])
        .arg(Dir::new("refused").0.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("cannot run in virtual time")
            && err.contains("a gudp:// publisher with rtmp:// players"),
        "{err}"
    );
}

/// Five repeats each way of a run whose losses show (2 % on the first
/// mile, NACK only, a buffer that some repairs miss): the mean
/// stall ratio, residual loss and steady G2G of virtual time fall within
/// the 95 % intervals of link mode's. Slow (five 10 s link runs):
/// `cargo test --test virtual_time -- --ignored`.
#[test]
#[ignore]
fn repeats_agree_with_the_link_within_their_intervals() {
    let _serial = common::serial();
    if harness::topology::link_available().is_err() {
        eprintln!("skipped: no network namespaces here");
        return;
    }
    let s = scenario(
        r#"
name = "lossy"
duration = "10s"
repeat = 5
[[networks]]
name = "2% loss, 50 ms"
first_mile = { uplink = "delay 50ms loss 2%", downlink = "delay 50ms" }
[[protocols]]
kind = "udp"
player = { target_delay = "150ms", late = "skip" }
udp = { nack = true, cc = "off" }
"#,
    );
    common::assert_repeats_agree(
        &s,
        &["stall ratio %", "residual loss %", "steady G2G p50 ms"],
        |r| {
            vec![
                r.player.stall_ratio * 100.0,
                common::udp_of(r).recovery[0].residual_loss * 100.0,
                r.player.steady.as_ref().map_or(f64::NAN, |s| s.p50_ms),
            ]
        },
    );
}

/// A replayed recording (no Glass header: G2G from its wall-clock
/// timestamps, which virtual time starts at a fixed instant): the first
/// mile's 50 ms plus the 500 ms buffer, as in link mode (550–551 ms).
#[test]
fn a_replayed_recording_plays_in_virtual_time() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"));
    let s = Scenario::from_toml(
        "replay.toml",
        r#"
name = "replay"
duration = "6s"
[media]
flv = "media/testsrc-640x360.flv"
[[networks]]
name = "first mile +50ms"
first_mile = { uplink = "delay 50ms" }
[[protocols]]
kind = "udp"
player = { target_delay = "500ms", refresh = "1ms" }
"#,
        Some(dir),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = virtual_run(&s);
    let p = &r.player;
    eprintln!(
        "replay: shown {} of {}, G2G p50 {} ms, source {:?}",
        p.frames_displayed, r.frames_expected, p.g2g_p50_ms, r.g2g_source
    );
    assert!(matches!(
        r.g2g_source,
        harness::runner::G2gSource::RtmpTimestamp
    ));
    assert!(p.frames_displayed > 140 && r.frames_lost() == 0, "{p:?}");
    assert!((549.0..552.0).contains(&p.g2g_p50_ms), "{p:?}");
}
