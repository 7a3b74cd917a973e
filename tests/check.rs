//! `glass check`, the CI gate, end to end: budgets pass and fail with exit
//! codes and messages; a baseline tells a real regression (more delay) from
//! seed noise. Proxy mode: no privileges needed, and delay is exact there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn scenario(dir: &Path, name: &str, seed: u64, delay_ms: u32, budget: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
name = "{name}"
duration = "3s"
seed = {seed}
repeat = 3
[[networks]]
name = "first mile"
first_mile = {{ uplink = "delay {delay_ms}ms 3ms" }}
[[protocols]]
kind = "rtmp"
player = {{ target_delay = "300ms", refresh = "1ms" }}
[budgets]
{budget}
"#
        ),
    )
    .unwrap();
    path
}

fn glass_check(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_glass"))
        .arg("check")
        .args(args)
        .args(["--mode", "proxy"])
        .output()
        .unwrap();
    eprintln!(
        "glass check {args:?} → {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn budgets_pass_or_fail_with_exit_code_and_reason() {
    let dir = Dir(std::env::temp_dir().join(format!("glass-check-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let ok = scenario(
        &dir.0,
        "ok",
        1,
        10,
        "g2g_p99 = \"2s\"\nstall_ratio = \"1%\"",
    );
    let out = glass_check(&[
        ok.to_str().unwrap(),
        "--output",
        dir.0.join("ok-out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("PASS"));

    let bad = scenario(&dir.0, "impossible", 1, 10, "g2g_p50 = \"1ms\"");
    let junit = dir.0.join("junit.xml");
    let md = dir.0.join("summary.md");
    let out = glass_check(&[
        bad.to_str().unwrap(),
        "--output",
        dir.0.join("bad-out").to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL first mile / rtmp [budget] g2g_p50_ms"),
        "{text}"
    );
    assert!(text.contains("over the budget 1.0 ms by"), "{text}");
    assert!(text.contains("bad-out/frames.csv"), "where to look: {text}");
    let j = std::fs::read_to_string(&junit).unwrap();
    assert!(
        j.contains("<failure message=") && j.contains("failures=\"1\""),
        "{j}"
    );
    assert!(std::fs::read_to_string(&md).unwrap().contains("❌"));
    // Results can be checked again without running.
    let again = glass_check(&[dir.0.join("bad-out").to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn a_baseline_catches_a_regression_and_not_seed_noise() {
    let dir = Dir(std::env::temp_dir().join(format!("glass-baseline-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let baseline = dir.0.join("baseline.json");
    let base = scenario(&dir.0, "base", 1, 10, "");
    let out = glass_check(&[
        base.to_str().unwrap(),
        "--output",
        dir.0.join("base-out").to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--update-baseline",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        std::fs::read_to_string(&baseline)
            .unwrap()
            .contains("glass.baseline.v1")
    );
    // Another seed, same network: noise only.
    let noise = scenario(&dir.0, "noise", 2, 10, "");
    let out = glass_check(&[
        noise.to_str().unwrap(),
        "--output",
        dir.0.join("noise-out").to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "seed noise failed the gate");
    // 50 ms more on the first mile: a real regression.
    let worse = scenario(&dir.0, "worse", 1, 60, "");
    let out = glass_check(&[
        worse.to_str().unwrap(),
        "--output",
        dir.0.join("worse-out").to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("REGRESSED") && text.contains("g2g_p50_ms"),
        "{text}"
    );
    // `glass compare` says the same about the two results directories.
    let compare = |other: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_glass"))
            .arg("compare")
            .arg(dir.0.join("base-out"))
            .arg(dir.0.join(other))
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = stdout(&out);
        eprintln!("{text}");
        text.lines()
            .find(|l| l.contains("g2g_p50_ms"))
            .unwrap()
            .to_string()
    };
    let worse = compare("worse-out");
    let delta: f64 = worse
        .split_whitespace()
        .find_map(|w| w.strip_prefix('+').and_then(|v| v.parse().ok()))
        .unwrap();
    assert!(
        worse.contains("different (95 %)") && (45.0..55.0).contains(&delta),
        "{worse}"
    );
    let noise = compare("noise-out");
    assert!(!noise.contains("different (95 %)"), "{noise}");
}

#[test]
fn v1_results_on_disk_still_load_in_check_compare_and_report() {
    // A results directory Glass wrote (`glass run ci/gate.toml` at 6dca0e0,
    // schema glass.results.v1, trimmed to two cases): what a newer Glass
    // must keep reading.
    let fixture = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/results-v1"
    ));
    let out = glass_check(&[fixture.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("PASS") && text.contains("clean / rtmp-tcp"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_glass"))
        .arg("compare")
        .args([fixture, fixture])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("first mile 30ms / udp-nack-fec") && text.contains("steady_g2g_p99_ms"),
        "{text}"
    );
    assert!(!text.contains("different (95 %)"), "{text}");
    // The report reads it too (into a copy: it writes plots/ and report.html).
    let dir = Dir(std::env::temp_dir().join(format!("glass-v1-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    for f in ["results.json", "frames.csv", "seconds.csv"] {
        std::fs::copy(fixture.join(f), dir.0.join(f)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_glass"))
        .arg("report")
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.0.join("report.html")).unwrap();
    assert!(html.contains("G2G latency CDF") && html.contains("udp-nack-fec"));
}
