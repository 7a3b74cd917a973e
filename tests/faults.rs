//! Faults injected into a run: the link's engine thread stalled for 200 ms
//! (as a busy machine would stall it). The run says so: a warning on the
//! terminal, in results.json and in the report, with how late packets
//! left. Link mode (skipped where namespaces cannot be created).

use std::process::Command;

#[test]
fn a_stalled_engine_is_reported_and_the_run_marked() {
    if !netem::adapters::can_create_namespaces() {
        eprintln!("skipped: no network namespaces here");
        return;
    }
    let dir = std::env::temp_dir().join(format!("glass-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stall.toml");
    std::fs::write(
        &file,
        r#"
name = "stall"
duration = "6s"
[[networks]]
name = "stalled"
first_mile = { uplink = "delay 10ms" }
faults = [{ kind = "engine_stall", at = "3s", duration = "200ms" }]
[[networks]]
name = "quiet"
first_mile = { uplink = "delay 10ms" }
[[protocols]]
kind = "rtmp"
player = { target_delay = "300ms", refresh = "1ms" }
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", file.to_str().unwrap(), "--mode", "link", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("rtmp over stalled: warning: the link's engine fell behind"),
        "{stderr}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let runs = r["runs"].as_array().unwrap();
    let stalled = &runs[0];
    let w = stalled["warnings"][0].as_str().unwrap();
    assert!(w.contains("more than 20 ms late"), "{w}");
    let e = &stalled["result"]["link"]["release_error"];
    assert!(e["max_us"].as_f64().unwrap() >= 150_000.0, "{e}");
    assert!(e["late"].as_u64().unwrap() > 0, "{e}");
    let first = e["first_late_at_ms"].as_f64().unwrap();
    assert!((2_900.0..3_400.0).contains(&first), "{e}");
    // The same network without the fault: no warning.
    assert!(runs[1].get("warnings").is_none(), "{}", runs[1]);
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("<h2>Warnings</h2>") && page.contains("fell behind"));
    // Proxy mode refuses the fault with the reason.
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", file.to_str().unwrap(), "--mode", "proxy", "--output"])
        .arg(dir.join("proxy"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("engine_stall fault, which needs link mode"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The relay killed mid-run (every server task and its sessions aborted at
/// 2 s): the run reports it (RTMP's publisher loses its connection: the run
/// fails with the reason; the UDP protocol's clients keep waiting: the run
/// carries a warning and its stalls), neither hangs, and the runs before
/// and after it are whole. Proxy mode: no privileges needed.
#[test]
fn a_killed_relay_is_reported_and_the_other_runs_are_kept() {
    let dir = std::env::temp_dir().join(format!("glass-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kill.toml");
    std::fs::write(
        &file,
        r#"
name = "kill"
duration = "5s"
[[networks]]
name = "before"
[[networks]]
name = "killed"
faults = [{ kind = "relay_killed", at = "2s" }]
[[networks]]
name = "after"
[[protocols]]
kind = "rtmp"
player = { target_delay = "300ms", refresh = "1ms" }
[[protocols]]
name = "udp"
kind = "udp"
uri = "gudp://server/live/stream"
player = { target_delay = "300ms", refresh = "1ms" }
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", file.to_str().unwrap(), "--mode", "proxy", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // Six 5-second runs and their set-up; a hang would add 30 s.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{stderr}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let run = |n: &str, p: &str| {
        r["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["network"] == n && x["protocol"] == p)
            .unwrap()
            .clone()
    };
    for n in ["before", "after"] {
        for p in ["rtmp", "udp"] {
            let x = run(n, p);
            assert_eq!(x["status"], "ok", "{x}");
            assert_eq!(x["result"]["player"]["stall_ratio"], 0.0, "{n} {p}");
            assert!(x.get("warnings").is_none(), "{x}");
        }
    }
    let rtmp = run("killed", "rtmp");
    assert_eq!(rtmp["status"], "failed");
    let e = rtmp["error"].as_str().unwrap();
    assert!(e.starts_with("the relay was killed at 2.0 s"), "{e}");
    let udp = run("killed", "udp");
    let w = udp["warnings"][0].as_str().unwrap_or_default();
    assert!(w.contains("the relay was killed at 2.0 s"), "{udp}");
    assert_eq!(udp["result"]["relay_killed_at_ms"], 2000.0);
    // Nothing displayed after the kill (+ the playout buffer).
    let stalls = udp["result"]["player"]["stall_ratio"].as_f64().unwrap();
    assert!(stalls > 0.3, "{udp}");
    std::fs::remove_dir_all(&dir).ok();
}
