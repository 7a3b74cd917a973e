//! Light viewers beside a group's player: a flash crowd and a Poisson
//! stream of viewers with departures, each a real RTMP session through the
//! group's last mile (proxy mode: every machine can run it; link mode too
//! where namespaces can be made, where the viewers share the mile).

mod common;

use harness::runner::run_groups;
use harness::scenario::Scenario;
use harness::topology::Mode;

const SCENARIO: &str = r#"
name = "viewers"
duration = "6s"
warmup = "1s"
[media]
bitrate = "500kbit/s"
[[networks]]
name = "net"
first_mile = { profile = "delay 10ms" }
players = [
  { name = "near", last_mile = { profile = "delay 5ms" }, viewers = { count = 40, arrival = "flash", from = "500ms", within = "2s" } },
  { name = "far", last_mile = { profile = "delay 40ms" }, viewers = { count = 20, arrival = "poisson", rate = 10.0, stay = "1500ms" } },
]
[[protocols]]
kind = "rtmp"
player = { target_delay = "300ms" }
"#;

fn check(mode: Mode) {
    let _serial = common::serial();
    let s = Scenario::from_toml("viewers", SCENARIO, None).unwrap();
    let rt = common::runtime();
    let runs = run_groups(&rt, &s, &s.networks[0], &s.protocols[0], 0, mode, &|_| {}).unwrap();
    assert_eq!(runs.len(), 2);
    let near = runs[0].viewers.as_ref().expect("the near group's viewers");
    let far = runs[1].viewers.as_ref().expect("the far group's viewers");
    eprintln!("{mode:?} near: {:?}\nfar: {:?}", near.summary, far.summary);
    assert_eq!((near.summary.viewers, near.summary.failed), (40, 0));
    assert_eq!((far.summary.viewers, far.summary.failed), (20, 0));
    assert!(near.described.contains("flash crowd"), "{}", near.described);
    // The flash crowd joins within 0.5–2.5 s; every viewer watches to the end.
    for v in &near.viewers {
        assert!((499.0..2600.0).contains(&v.joined_ms), "{v:?}");
        assert!(v.frames > 60, "{v:?}");
        // The GOP cache: a joining viewer's first frame is one round trip away.
        assert!(v.join_ms.unwrap() < 500.0, "{v:?}");
    }
    // Capture → arrival: the encoder's 30 ms and the two miles' delays.
    let (n, f) = (&near.summary, &far.summary);
    assert!((40.0..120.0).contains(&n.viewer_p50_median_ms), "{n:?}");
    assert!(
        (25.0..60.0).contains(&(f.viewer_p50_median_ms - n.viewer_p50_median_ms)),
        "far {f:?} near {n:?}"
    );
    // Departures: a Poisson viewer stays 1.5 s on average, so watches far
    // fewer frames than a whole run's 150.
    let mean_frames =
        far.viewers.iter().map(|v| v.frames).sum::<usize>() as f64 / far.viewers.len() as f64;
    assert!(mean_frames < 100.0, "{mean_frames}");
    assert_eq!(n.missing_frames + f.missing_frames, 0);
    // The group's full player still played.
    assert!(runs[0].player.frames_displayed > 100);
}

#[test]
fn flash_crowd_and_poisson_viewers_in_proxy_mode() {
    check(Mode::Proxy);
}

#[test]
fn flash_crowd_and_poisson_viewers_share_the_link() {
    if !netem::adapters::can_create_namespaces() {
        eprintln!("skipped: no network namespaces here");
        return;
    }
    check(Mode::Link);
}

/// `glass run` writes the viewers into results.json, prints their line and
/// draws their distributions in the report.
#[test]
fn glass_run_reports_the_viewers() {
    let _serial = common::serial();
    let dir = std::env::temp_dir().join(format!("glass-viewers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("v.toml");
    std::fs::write(
        &scenario,
        r#"
name = "v"
duration = "3s"
warmup = "1s"
[media]
bitrate = "500kbit/s"
[[networks]]
name = "net"
last_mile = { profile = "delay 5ms" }
viewers = { count = 10, arrival = "flash", within = "500ms" }
[[protocols]]
kind = "rtmp"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_glass"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--mode",
            "proxy",
            "--output",
        ])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Light viewers") && stdout.contains("10 viewers, flash crowd"),
        "{stdout}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/results.json")).unwrap()).unwrap();
    let v = &results["runs"][0]["result"]["viewers"];
    assert_eq!(v["summary"]["viewers"], 10, "{v}");
    assert_eq!(v["viewers"].as_array().unwrap().len(), 10);
    assert!(dir.join("out/plots/viewers-0.svg").exists());
    assert!(dir.join("out/plots/viewers-join-0.svg").exists());
    let html = std::fs::read_to_string(dir.join("out/report.html")).unwrap();
    assert!(
        html.contains("Light viewers: capture"),
        "the report shows the viewers"
    );
    std::fs::remove_dir_all(&dir).ok();
}
