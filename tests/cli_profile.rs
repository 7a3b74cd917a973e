//! End-to-end: the `glass profile` commands as a user runs them.

use std::process::Command;

fn glass(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(args)
        .output()
        .expect("run glass");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_a_preset_prints_asked_and_got() {
    let (code, out, err) = glass(&["profile", "check", "4g", "--packets", "50000"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("profile 4g"), "{out}");
    assert!(
        out.contains("asked 0.10 % loss, mean burst 2.00; got"),
        "{out}"
    );
    assert!(out.contains("delay mean ± std"), "{out}");
}

#[test]
fn check_a_netem_line_as_json() {
    let (code, out, err) = glass(&[
        "profile",
        "check",
        "delay 40ms 5ms distribution normal loss gemodel 1% 30%",
        "--packets",
        "200000",
        "--seed",
        "7",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    let d = &v["directions"][0];
    assert_eq!(d["seed"], 7);
    let asked = d["requested"]["loss_rate"].as_f64().unwrap();
    let got = d["realised"]["loss_rate"].as_f64().unwrap();
    let ci = d["realised"]["loss_rate_ci95"].as_f64().unwrap();
    assert!((asked - 1.0 / 31.0).abs() < 1e-12);
    assert!((got - asked).abs() < 3.0 * ci, "{got} vs {asked} ± {ci}");
    let delay = d["realised"]["delay_mean_ms"].as_f64().unwrap();
    assert!((delay - 40.0).abs() < 0.2, "{delay}");
}

#[test]
fn same_seed_same_report_other_seed_other_report() {
    let run = |seed: &str| {
        glass(&[
            "profile",
            "check",
            "wifi",
            "--packets",
            "20000",
            "--seed",
            seed,
            "--json",
        ])
        .1
    };
    assert_eq!(run("3"), run("3"));
    assert_ne!(run("3"), run("4"));
}

#[test]
fn check_a_toml_file_with_a_timeline() {
    let dir = std::env::temp_dir().join(format!("glass-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("step.toml");
    std::fs::write(
        &path,
        "[bottleneck]\nrate = \"5Mbit/s\"\nqueue = \"50 packets\"\n[[timeline]]\nat = \"10s\"\nrate = \"1Mbit/s\"\n",
    )
    .unwrap();
    let (code, out, err) = glass(&[
        "profile",
        "check",
        path.to_str().unwrap(),
        "--packets",
        "20000",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("timeline change"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code_2() {
    for (args, needle) in [
        (vec!["profile", "check", "5g-magic"], "not a preset"),
        (
            vec!["profile", "check", "/nonexistent/p.toml"],
            "/nonexistent/p.toml",
        ),
        (vec!["profile", "check", "loss 1% 25%"], "correlation"),
        (vec!["profile", "check", "4g", "--load", "0"], "--load"),
    ] {
        let (code, out, err) = glass(&args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // clap's own refusals (exit code 2 as well).
    let (code, _, err) = glass(&["profile", "check", "4g", "--packets", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--packets"), "{err}");
}

#[test]
fn list_and_show() {
    let (code, out, _) = glass(&["profile", "list"]);
    assert_eq!(code, 0);
    for name in ["none", "wifi", "lte", "4g", "3g", "satellite", "long-haul"] {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} missing in\n{out}"
        );
    }
    let (code, out, _) = glass(&["profile", "show", "3g"]);
    assert_eq!(code, 0);
    assert!(out.contains("WebPageTest"), "{out}");
    let (code, out, _) = glass(&["profile", "show", "delay 10ms 2ms distribution pareto"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("distribution = \"pareto\"") && out.contains("order = \"reorder\""),
        "{out}"
    );
}

#[test]
fn every_shipped_profile_checks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/profiles");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios/profiles") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, out, err) = glass(&[
                "profile",
                "check",
                path.to_str().unwrap(),
                "--packets",
                "5000",
            ]);
            assert_eq!(code, 0, "{}: {err}", path.display());
            assert!(out.contains("delay mean ± std"), "{out}");
            n += 1;
        }
    }
    assert!(n >= 3, "expected the shipped profiles in {}", dir.display());
}
