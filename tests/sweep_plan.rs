//! A sweep spread over processes as a batch system would run it (proxy
//! mode: no privileges): `glass sweep plan`, then every index as its own
//! `glass run --plan --index` process, in shuffled order, two at a time,
//! then `glass report merge`. The merge equals a sequential `glass run` of
//! the scenario: the same runs in the same order, once each, with the
//! planned seeds, and metrics within the repeat noise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The sweep every test here plans: 12 runs (3 points × 2 protocols × 2
/// repeats of 2 s); ci/slurm-smoke.sh runs it on Slurm.
const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/plan-sweep.toml"
);

/// A fresh temporary directory for one test.
fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glass-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn glass(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_glass"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `glass run --plan PLAN --index INDEX --output OUT`.
fn run_index(plan: &str, index: &str, out: &str) -> Output {
    glass(
        &["run", "--plan", plan, "--index", index, "--output", out],
        &[],
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn indices_run_apart_and_merged_equal_a_sequential_run() {
    let dir = temp("sweep-plan");
    let file = PathBuf::from(SCENARIO);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (plan, out, merged, seq) = (
        dir.join("plan.json"),
        dir.join("out"),
        dir.join("merged"),
        dir.join("seq"),
    );
    let o = glass(
        &[
            "sweep",
            "plan",
            &s(&file),
            "--mode",
            "proxy",
            "--out",
            &s(&plan),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let planned = json(&plan);
    let runs = planned["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 12);

    // A fixed shuffle, two processes at a time; `--index auto` through the
    // batch systems' variables for half of them.
    let order = [7, 2, 11, 0, 5, 9, 3, 10, 1, 6, 8, 4];
    for pair in order.chunks(2) {
        let handles: Vec<_> = pair
            .iter()
            .map(|&i| {
                let (plan, out) = (s(&plan), s(&out));
                std::thread::spawn(move || {
                    let var = ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"][i % 2];
                    let o = if i % 3 == 0 {
                        glass(
                            &["run", "--plan", &plan, "--index", "auto", "--output", &out],
                            &[(var, i.to_string())],
                        )
                    } else {
                        run_index(&plan, &i.to_string(), &out)
                    };
                    assert!(o.status.success(), "index {i}: {}", text(&o));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    // A finished index is kept; an interrupted one (no manifest) is redone.
    let o = run_index(&s(&plan), "3", &s(&out));
    assert!(text(&o).contains("finished before"), "{}", text(&o));
    std::fs::remove_file(out.join("runs/5/manifest.json")).unwrap();
    std::fs::write(out.join("runs/5/frames.csv"), "half a file").unwrap();
    let o = glass(&["report", "merge", &s(&out), "--out", &s(&merged)], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("1 missing: 5"),
        "the merge names the missing index: {}",
        text(&o)
    );
    let o = run_index(&s(&plan), "5", &s(&out));
    assert!(o.status.success() && !text(&o).contains("finished before"));
    assert!(
        std::fs::read_to_string(out.join("runs/5/frames.csv"))
            .unwrap()
            .starts_with("point,")
    );

    let o = glass(&["report", "merge", &s(&out), "--out", &s(&merged)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(merged.join("report.html").exists());
    // Every manifest has its planned seed, index and Glass's revision.
    let manifests = json(&merged.join("manifests.json"));
    for (i, m) in manifests.as_array().unwrap().iter().enumerate() {
        assert_eq!(m["index"], i);
        assert_eq!(m["seed"], runs[i]["seed"]);
        assert_eq!(m["mode"], "proxy");
        assert!(!m["git_revision"].as_str().unwrap().is_empty());
    }

    let o = glass(
        &["run", &s(&file), "--mode", "proxy", "--output", &s(&seq)],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let (m, q) = (
        json(&merged.join("results.json")),
        json(&seq.join("results.json")),
    );
    let key = |r: &serde_json::Value| {
        (
            r["point"].clone(),
            r["network"].clone(),
            r["protocol"].clone(),
            r["repeat"].clone(),
            r["status"].clone(),
        )
    };
    let (mr, qr) = (m["runs"].as_array().unwrap(), q["runs"].as_array().unwrap());
    assert_eq!(
        mr.iter().map(key).collect::<Vec<_>>(),
        qr.iter().map(key).collect::<Vec<_>>(),
        "the same runs in the same order"
    );
    // The same metrics within the repeat noise: no median G2G that
    // `glass compare` calls different (95 % intervals and 1 % apart).
    let o = glass(&["compare", &s(&seq), &s(&merged), "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let cmp: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p50s: Vec<&serde_json::Value> = cmp
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["metric"] == "g2g_p50_ms")
        .collect();
    assert_eq!(p50s.len(), 6, "3 points × 2 protocols");
    for c in p50s {
        assert_ne!(c["verdict"], "different", "{c}");
    }
    // The merged directory is a results directory like any other.
    let o = glass(&["check", &s(&merged)], &[]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plan_options_and_indices_are_checked_with_the_reason() {
    let dir = temp("sweep-plan-opts");
    let file = PathBuf::from(SCENARIO);
    let plan = dir.join("plan.json");
    let plan_with = |mode: &str, fallback: &str| {
        glass(
            &[
                "sweep",
                "plan",
                file.to_str().unwrap(),
                "--mode",
                mode,
                "--fallback",
                fallback,
                "--out",
                plan.to_str().unwrap(),
            ],
            &[],
        )
    };
    // A fallback only from link mode, and only to proxy mode.
    let o = plan_with("proxy", "proxy");
    assert!(text(&o).contains("goes with --mode link"), "{}", text(&o));
    let o = plan_with("link", "link");
    assert!(text(&o).contains("only proxy"), "{}", text(&o));
    let o = plan_with("link", "proxy");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&plan)["fallback"], "proxy");
    // `--index auto` with none of the variables set, or out of range.
    let mut c = Command::new(env!("CARGO_BIN_EXE_glass"));
    c.args([
        "run",
        "--plan",
        plan.to_str().unwrap(),
        "--index",
        "auto",
        "--output",
    ])
    .arg(&dir);
    for v in [
        "GLASS_SWEEP_INDEX",
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "AWS_BATCH_JOB_ARRAY_INDEX",
    ] {
        c.env_remove(v);
    }
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("none of GLASS_SWEEP_INDEX"),
        "{}",
        text(&o)
    );
    let o = glass(
        &[
            "run",
            "--plan",
            plan.to_str().unwrap(),
            "--index",
            "auto",
            "--output",
            dir.to_str().unwrap(),
        ],
        &[("GLASS_SWEEP_INDEX", "12".into())],
    );
    assert!(
        text(&o).contains("GLASS_SWEEP_INDEX=12: the plan has 12 runs"),
        "{}",
        text(&o)
    );
    // A plan whose scenario was edited after planning.
    let edited = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("delay 70ms", "delay 80ms");
    std::fs::write(&plan, edited).unwrap();
    let o = run_index(plan.to_str().unwrap(), "0", dir.to_str().unwrap());
    assert!(
        text(&o).contains("does not match its sha256"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_batch_templates_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Both Kubernetes Jobs against the Job schema, unknown fields refused.
    let manifests = [
        root.join("deploy/k8s/glass-sweep-link.yaml"),
        root.join("deploy/k8s/glass-sweep-proxy.yaml"),
    ];
    for m in &manifests {
        let text = std::fs::read_to_string(m).unwrap();
        assert!(
            text.contains("completionMode: Indexed")
                && text.contains("\"--index\", \"auto\"")
                && text.contains("backoffLimitPerIndex"),
            "{}",
            m.display()
        );
    }
    match Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&manifests)
        .output()
    {
        Ok(o) => assert!(o.status.success(), "{}", text(&o)),
        Err(_) => netem::adapters::skip::skip(
            "no kubernetes-validate (pip install kubernetes-validate; .ci/run does)",
        ),
    }
    // The Slurm scripts parse.
    for script in ["deploy/slurm/glass-sweep.sbatch", "ci/slurm-smoke.sh"] {
        let o = Command::new("bash")
            .arg("-n")
            .arg(root.join(script))
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {}", text(&o));
    }
}
