//! Sweeps end to end (proxy mode: no privileges): a `[sweep]` runs the
//! product of its values, results keep the coordinates, and `--resume`
//! carries on after an interruption, keeping what finished.

use std::process::Command;

#[test]
fn a_sweep_runs_every_point_and_resumes() {
    let dir = std::env::temp_dir().join(format!("glass-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sweep.toml");
    std::fs::write(
        &file,
        r#"
name = "sweep"
duration = "3s"
repeat = 2
[[networks]]
name = "first mile"
first_mile = { uplink = "delay 10ms" }
[[protocols]]
kind = "rtmp"
player = { target_delay = "300ms", refresh = "1ms" }
[sweep]
"networks.first mile.first_mile.uplink" = ["delay 10ms", "delay 40ms"]
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let glass = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_glass"))
            .args(["run", file.to_str().unwrap(), "--mode", "proxy", "--output"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("{text}");
        assert!(o.status.success());
        text
    };
    let text = glass(&[]);
    assert!(text.contains("[uplink=delay 40ms] first mile"), "{text}");
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
    };
    let results = read();
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let p50 = |delay: &str| -> f64 {
        let v: Vec<f64> = runs
            .iter()
            .filter(|r| r["sweep"]["networks.first mile.first_mile.uplink"] == delay)
            .map(|r| r["result"]["player"]["g2g_p50_ms"].as_f64().unwrap())
            .collect();
        assert_eq!(v.len(), 2, "two repeats at {delay}");
        v.iter().sum::<f64>() / 2.0
    };
    let rise = p50("delay 40ms") - p50("delay 10ms");
    assert!(
        (rise - 30.0).abs() < 3.0,
        "30 ms more delay rose G2G by {rise} ms"
    );
    // Interrupted after three runs: drop the last from results.json.
    let mut cut = results.clone();
    cut["runs"].as_array_mut().unwrap().pop();
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string(&cut).unwrap(),
    )
    .unwrap();
    let text = glass(&["--resume"]);
    assert!(
        text.contains("3 run(s) kept") && text.contains("1 to go"),
        "{text}"
    );
    assert_eq!(read()["runs"].as_array().unwrap().len(), 4);
    // The CSVs were appended to, not rewritten: one header.
    let frames = std::fs::read_to_string(out.join("frames.csv")).unwrap();
    assert_eq!(
        frames.lines().filter(|l| l.starts_with("point,")).count(),
        1
    );
    // The gate sees each point as its own case.
    let check = Command::new(env!("CARGO_BIN_EXE_glass"))
        .arg("check")
        .arg(&out)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{t}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The issue's sweep: RTMP over TCP across first-mile loss 0–5 %, 3
/// repeats; results, plots and the report come out, and the plots hold the
/// expected series. Link mode (loss needs it).
#[test]
fn a_loss_sweep_produces_results_plots_and_a_report() {
    if !netem::adapters::can_create_namespaces() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("glass-loss-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("loss.toml");
    std::fs::write(
        &file,
        r#"
name = "loss-sweep"
duration = "3s"
repeat = 3
[media]
bitrate = "1Mbit/s"
[[networks]]
name = "lossy"
first_mile = { uplink = "delay 20ms", downlink = "delay 20ms" }
[[protocols]]
name = "rtmp-tcp"
kind = "rtmp"
player = { target_delay = "300ms" }
[sweep]
"networks.lossy.first_mile.uplink" = ["delay 20ms loss 0%", "delay 20ms loss 2%", "delay 20ms loss 5%"]
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", file.to_str().unwrap(), "--mode", "link", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success());
    assert!(text.contains("report: "), "{text}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["runs"].as_array().unwrap().len(), 9);
    for f in [
        "frames.csv",
        "seconds.csv",
        "report.html",
        "plots/cdf-0.svg",
        "plots/cdf-0.png",
        "plots/recovery.svg",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // The sweep plot has the protocol's series over the three points.
    let sweep = std::fs::read_to_string(out.join("plots/sweep-0-g2g_p99_ms.svg")).unwrap();
    assert!(
        sweep.contains("rtmp-tcp") && sweep.contains("loss 5%"),
        "sweep plot lacks its series"
    );
    let cdf = std::fs::read_to_string(out.join("plots/cdf-2.svg")).unwrap();
    assert!(cdf.contains("rtmp-tcp") && cdf.contains("glass-to-glass latency (ms)"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Impairment: asked and realised"));
    // Self-contained: nothing to fetch (SVG's xmlns is a name, not a fetch).
    for fetch in ["src=\"http", "href=\"http", "<link ", "<script"] {
        assert!(!html.contains(fetch), "the report would fetch: {fetch}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
