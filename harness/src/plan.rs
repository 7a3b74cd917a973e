//! Sweep plans: a scenario's runs as a numbered list, so that each can run
//! on its own machine (`glass sweep plan`, then `glass run --plan P --index
//! N` per index, then `glass report merge`).
//!
//! The plan is deterministic (the same scenario text gives the same plan,
//! byte for byte) and self-contained: it carries the scenario's text and its
//! SHA-256, so an index runs what was planned even where the file has since
//! changed. Files the scenario names (traces, recordings) are read relative
//! to the scenario's directory as planned, and are not hashed.
//!
//! Indices are numbered as `glass run` orders its runs: sweep point,
//! network, protocol, repeat (the last varies fastest).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scenario::{QUICKSTART, Scenario, SweepPoint};
use crate::topology::Mode;

/// The schema of plan.json.
pub const PLAN_SCHEMA: &str = "glass.plan.v1";

/// The name a plan of the built-in quickstart gives its scenario's path.
const BUILT_IN: &str = "quickstart (built in)";

/// A sweep's runs, each with its index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub schema: String,
    pub glass_version: String,
    pub scenario: PlannedScenario,
    /// The mode every index runs in (`auto`: each index picks).
    pub mode: Mode,
    /// The mode an index may fall back to when `mode` is `link` and link
    /// mode cannot work where it runs (only `proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Mode>,
    pub runs: Vec<PlannedRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedScenario {
    /// The file as given to `glass sweep plan` (relative paths inside it are
    /// read relative to its directory).
    pub path: String,
    pub name: String,
    pub sha256: String,
    pub text: String,
}

/// One index: a protocol over a network, one repeat, at one sweep point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    pub index: usize,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, String>,
    /// The sweep coordinates as one label ("" without a sweep).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub point: String,
    pub network: String,
    pub protocol: String,
    pub repeat: u32,
    /// The root of the run's random streams (see `runner::run_seeds`).
    pub seed: u64,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The plan of `scenario` (a file, or the quickstart for `None`).
pub fn plan(scenario: Option<&Path>, mode: Mode, fallback: Option<Mode>) -> Result<Plan> {
    if let Some(f) = fallback {
        if f != Mode::Proxy {
            bail!("--fallback: only proxy can be fallen back to (got {f})");
        }
        if mode != Mode::Link {
            bail!("--fallback proxy goes with --mode link (the mode it falls back from)");
        }
    }
    let (path, text) = match scenario {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => (BUILT_IN.to_string(), QUICKSTART.to_string()),
    };
    let points = points_of(&path, &text)?;
    let mut runs = Vec::new();
    for pt in &points {
        let s = &pt.scenario;
        for n in &s.networks {
            for p in &s.protocols {
                for r in 0..s.repeat {
                    runs.push(PlannedRun {
                        index: runs.len(),
                        sweep: pt.coords.clone(),
                        point: pt.label(),
                        network: n.name.clone(),
                        protocol: p.name.clone(),
                        repeat: r,
                        seed: crate::runner::run_seeds(s.seed, n, r).seed(),
                    });
                }
            }
        }
    }
    Ok(Plan {
        schema: PLAN_SCHEMA.into(),
        glass_version: env!("CARGO_PKG_VERSION").into(),
        scenario: PlannedScenario {
            path,
            name: points[0].scenario.name.clone(),
            sha256: sha256(text.as_bytes()),
            text,
        },
        mode,
        fallback,
        runs,
    })
}

/// The sweep points of a scenario's text, relative files read from the
/// directory of `path`.
fn points_of(path: &str, text: &str) -> Result<Vec<SweepPoint>> {
    if path == BUILT_IN {
        return Ok(Scenario::sweep_from_toml(BUILT_IN, text, None)?);
    }
    let p = Path::new(path);
    let mut points = Scenario::sweep_from_toml(path, text, p.parent())?;
    for pt in &mut points {
        pt.scenario.source = Some(p.to_path_buf());
    }
    Ok(points)
}

/// A plan read back, with its file's hash (the manifests' `plan_sha256`).
pub struct LoadedPlan {
    pub plan: Plan,
    pub sha256: String,
}

/// Reads and checks a plan file.
pub fn load(path: &Path) -> Result<LoadedPlan> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let plan: Plan = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a Glass sweep plan", path.display()))?;
    if plan.schema != PLAN_SCHEMA {
        bail!(
            "{}: schema \"{}\"; this Glass reads {PLAN_SCHEMA}",
            path.display(),
            plan.schema
        );
    }
    if sha256(plan.scenario.text.as_bytes()) != plan.scenario.sha256 {
        bail!(
            "{}: the scenario's text does not match its sha256 (the plan was edited)",
            path.display()
        );
    }
    if plan.runs.iter().enumerate().any(|(i, r)| r.index != i) {
        bail!("{}: the runs are not numbered 0, 1, 2, …", path.display());
    }
    Ok(LoadedPlan {
        sha256: sha256(&bytes),
        plan,
    })
}

/// The index to run: a number, or `auto` (the first of the batch systems'
/// variables that is set).
pub fn resolve_index(arg: &str, total: usize) -> Result<usize> {
    const VARS: [&str; 4] = [
        "GLASS_SWEEP_INDEX",
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "AWS_BATCH_JOB_ARRAY_INDEX",
    ];
    let (value, from) = if arg == "auto" {
        let Some((var, v)) = VARS
            .iter()
            .find_map(|v| std::env::var(v).ok().map(|x| (*v, x)))
        else {
            bail!("--index auto: none of {} is set", VARS.join(", "));
        };
        let from = format!("{var}={v}");
        (v, from)
    } else {
        (arg.to_string(), format!("--index {arg}"))
    };
    let i: usize = value
        .trim()
        .parse()
        .map_err(|_| anyhow!("{from}: not an index (a number from 0)"))?;
    if i >= total {
        bail!(
            "{from}: the plan has {total} runs (indices 0-{})",
            total.saturating_sub(1)
        );
    }
    Ok(i)
}

/// The scenario point, network and protocol an index names, checked
/// against the plan (same seed: the same Glass derives seeds the same way).
pub fn job_of<'a>(
    plan: &Plan,
    points: &'a [SweepPoint],
    index: usize,
) -> Result<(&'a SweepPoint, usize, usize)> {
    let run = &plan.runs[index];
    let point = points
        .iter()
        .find(|p| p.coords == run.sweep)
        .ok_or_else(|| anyhow!("index {index}: no sweep point {:?}", run.sweep))?;
    let s = &point.scenario;
    let n = s
        .networks
        .iter()
        .position(|n| n.name == run.network)
        .ok_or_else(|| anyhow!("index {index}: no network \"{}\"", run.network))?;
    let p = s
        .protocols
        .iter()
        .position(|p| p.name == run.protocol)
        .ok_or_else(|| anyhow!("index {index}: no protocol \"{}\"", run.protocol))?;
    let seed = crate::runner::run_seeds(s.seed, &s.networks[n], run.repeat).seed();
    if seed != run.seed {
        bail!(
            "index {index}: this Glass derives seed {seed}, the plan says {} (plan made by Glass {})",
            run.seed,
            plan.glass_version
        );
    }
    Ok((point, n, p))
}

/// The points of a loaded plan's scenario.
pub fn points(plan: &Plan) -> Result<Vec<SweepPoint>> {
    points_of(&plan.scenario.path, &plan.scenario.text)
}

/// DIR/runs/INDEX.
pub fn index_dir(out: &Path, index: usize) -> PathBuf {
    out.join("runs").join(index.to_string())
}

/// This machine's name, for manifests.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; gethostname NUL-terminates
    // when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The git revision Glass was built from (set by build.rs).
pub const GIT_REVISION: &str = env!("GLASS_GIT_REVISION");

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: &str = r#"
name = "plan"
duration = "2s"
repeat = 2
[[networks]]
name = "a"
first_mile = { uplink = "delay 10ms" }
[[networks]]
name = "b"
[[protocols]]
kind = "rtmp"
[[protocols]]
kind = "udp"
[sweep]
"networks.a.first_mile.uplink" = ["delay 10ms", "delay 20ms", "delay 30ms"]
"#;

    fn write(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let f = dir.join("s.toml");
        std::fs::write(&f, SWEEP).unwrap();
        f
    }

    #[test]
    fn a_plan_lists_every_run_in_glass_run_order_and_is_deterministic() {
        let dir = std::env::temp_dir().join(format!("glass-plan-{}", std::process::id()));
        let f = write(&dir);
        let p = plan(Some(&f), Mode::Proxy, None).unwrap();
        // 3 points × 2 networks × 2 protocols × 2 repeats.
        assert_eq!(p.runs.len(), 24);
        let r = &p.runs[3];
        assert_eq!(
            (r.index, r.network.as_str(), r.protocol.as_str(), r.repeat),
            (3, "a", "udp", 1)
        );
        assert_eq!(p.runs[8].point, "uplink=delay 20ms");
        // Same seeds for every protocol over a network and repeat; others differ.
        assert_eq!(p.runs[0].seed, p.runs[2].seed);
        assert_ne!(p.runs[0].seed, p.runs[1].seed);
        assert_ne!(p.runs[0].seed, p.runs[4].seed);
        let again = plan(Some(&f), Mode::Proxy, None).unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            serde_json::to_string(&again).unwrap()
        );
        // Every index finds its job, with the planned seed.
        let pts = points(&p).unwrap();
        for i in 0..p.runs.len() {
            let (pt, n, pr) = job_of(&p, &pts, i).unwrap();
            assert_eq!(pt.scenario.networks[n].name, p.runs[i].network);
            assert_eq!(pt.scenario.protocols[pr].name, p.runs[i].protocol);
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_plans_and_indices_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("glass-plan-bad-{}", std::process::id()));
        let f = write(&dir);
        let e = plan(Some(&f), Mode::Proxy, Some(Mode::Proxy)).unwrap_err();
        assert!(e.to_string().contains("goes with --mode link"), "{e}");
        let mut p = plan(Some(&f), Mode::Link, Some(Mode::Proxy)).unwrap();
        let file = dir.join("plan.json");
        std::fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(load(&file).unwrap().plan, p);
        p.scenario.text.push_str("\n# edited\n");
        std::fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
        let e = load(&file).err().unwrap();
        assert!(e.to_string().contains("does not match its sha256"), "{e}");
        std::fs::write(&file, "{").unwrap();
        assert!(load(&file).is_err());
        assert_eq!(resolve_index("3", 24).unwrap(), 3);
        let e = resolve_index("24", 24).unwrap_err();
        assert!(e.to_string().contains("indices 0-23"), "{e}");
        assert!(resolve_index("-1", 24).is_err() && resolve_index("x", 24).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
