//! `glass bench relay`: a small ramp against Glass's relay and nginx-rtmp
//! side by side (the full ramp's figures are the note's, not a test's).
//! Checks that every viewer connected and counted frames, that both relays'
//! core time was measured, and the one behaviour that differs by design:
//! Glass's relay sends a joining viewer the GOP so far, nginx-rtmp waits for
//! the next key frame. Needs nginx and libnginx-mod-rtmp (`.ci/run`
//! installs them); without them, outside CI, it skips.

mod common;

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["bench", "relay"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn glass_and_nginx_rtmp_carry_a_small_fleet_side_by_side() {
    if !common::have_nginx_rtmp() {
        return;
    }
    let out = bench(&[
        "--steps",
        "30",
        "--players",
        "30",
        "--seconds",
        "2",
        "--peer",
        "nginx-rtmp",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ramps = v["ramps"].as_array().unwrap();
    assert_eq!(ramps.len(), 2, "{v}");
    assert_eq!(ramps[0]["server"], "glass");
    assert_eq!(ramps[1]["server"], "nginx-rtmp");
    let mut joins = Vec::new();
    for ramp in ramps {
        let steps = ramp["steps"].as_array().unwrap();
        let players: Vec<u64> = steps
            .iter()
            .map(|s| s["players"].as_u64().unwrap())
            .collect();
        assert_eq!(players, vec![1, 30], "{ramp}");
        for s in steps {
            let f = &s["fleet"];
            assert_eq!(f["viewers"], s["players"], "{s}");
            assert_eq!(f["failed"], 0, "{s}");
            // 30 fps for 2 s, each viewer.
            let frames = f["frames"].as_u64().unwrap();
            let want = 60 * s["players"].as_u64().unwrap();
            assert!(frames >= want * 9 / 10, "{frames} frames of {want}: {s}");
            // Capture → arrival on loopback: the encoder's 30 ms, little else.
            let p99 = f["pooled_p99_ms"].as_f64().unwrap();
            assert!((29.0..200.0).contains(&p99), "{s}");
        }
        let last = steps.last().unwrap();
        assert!(last["relay_cpu"].as_f64().unwrap() > 0.0, "{last}");
        joins.push(last["fleet"]["join_p50_ms"].as_f64().unwrap());
    }
    // Viewers join at random points of a 2 s GOP: Glass's starts them with
    // the GOP so far; nginx-rtmp (no GOP cache) at the next key frame.
    assert!(joins[0] < 200.0, "Glass's join p50 {} ms", joins[0]);
    assert!(joins[1] > 300.0, "nginx-rtmp's join p50 {} ms", joins[1]);
    assert!(
        stderr.contains("glass") && stderr.contains("nginx-rtmp"),
        "progress: {stderr}"
    );
}

#[test]
fn bad_flags_are_refused_with_the_reason() {
    let out = bench(&["--protocol", "hls"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only rtmp"));
    let out = bench(&["--players", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--players"));
}
