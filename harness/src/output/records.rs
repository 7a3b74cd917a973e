//! results.json (`glass.results.v1`): one record per run, the scenario's
//! summary, the budgets each run was held to. Written after every run
//! (write, then rename), so a run that fails keeps what finished before it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use netem::adapters::link::LinkDir;
use netem::check::LiveCheck;
use serde::Serialize;

use crate::runner::RunResult;
use crate::scenario::{Budgets, Scenario};

pub const SCHEMA: &str = "glass.results.v1";

#[derive(Serialize)]
struct ScenarioSummary<'a> {
    name: &'a str,
    description: Option<&'a str>,
    source: Option<String>,
    duration_s: f64,
    seed: u64,
    repeat: u32,
    media: MediaSummary<'a>,
    budgets: &'a Budgets,
}

#[derive(Serialize)]
struct MediaSummary<'a> {
    bitrate_bps: u64,
    fps: f64,
    gop: u32,
    resolution: &'a str,
    audio: bool,
    encode_delay_ms: f64,
}

#[derive(Serialize)]
pub struct RunRecord {
    /// Sweep coordinates (field path → value); empty without a sweep.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, String>,
    /// The coordinates as one label ("" without a sweep).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub point: String,
    pub network: String,
    pub protocol: String,
    pub repeat: u32,
    /// Requested impairment per direction, as written in the scenario.
    pub impairment: [String; 4],
    /// The first-mile uplink's capacity over time: [at_ms, bit/s or null].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capacity_steps: Vec<(f64, Option<f64>)>,
    /// The networks' timeline changes (rate steps, outages, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::events::ImpairmentEvent>,
    pub status: &'static str,
    pub error: Option<String>,
    /// Requested against realised, per direction, from the engine's counters.
    pub impairment_check: BTreeMap<LinkDir, LiveCheck>,
    pub result: Option<RunResult>,
    pub budgets: Vec<BudgetCheck>,
}

#[derive(Serialize)]
pub struct BudgetCheck {
    pub budget: &'static str,
    pub limit: f64,
    pub value: f64,
    pub within: bool,
}

#[derive(Serialize)]
struct Results<'a> {
    schema: &'static str,
    glass_version: &'static str,
    scenario: ScenarioSummary<'a>,
    runs: Vec<serde_json::Value>,
}

pub fn budgets(b: &Budgets, r: &RunResult) -> Vec<BudgetCheck> {
    let p = &r.player;
    let ms = |d: netem::units::HumanDuration| d.get().as_secs_f64() * 1e3;
    let mut out = Vec::new();
    let mut check = |budget, limit: Option<f64>, value: f64| {
        if let Some(limit) = limit {
            out.push(BudgetCheck {
                budget,
                limit,
                value,
                within: value <= limit,
            });
        }
    };
    check("g2g_p50_ms", b.g2g_p50.map(ms), p.g2g_p50_ms);
    check("g2g_p99_ms", b.g2g_p99.map(ms), p.g2g_p99_ms);
    check(
        "stall_ratio",
        b.stall_ratio.map(|r| r.fraction()),
        p.stall_ratio,
    );
    check(
        "startup_delay_ms",
        b.startup_delay.map(ms),
        p.startup_delay_ms.unwrap_or(f64::INFINITY),
    );
    let steady = |f: fn(&crate::g2g::G2gSummary) -> f64| p.steady.as_ref().map_or(f64::INFINITY, f);
    check(
        "steady_g2g_p50_ms",
        b.steady_g2g_p50.map(ms),
        steady(|s| s.p50_ms),
    );
    check(
        "steady_g2g_p99_ms",
        b.steady_g2g_p99.map(ms),
        steady(|s| s.p99_ms),
    );
    out
}

/// The runs of an earlier results.json in `dir` (for --resume).
pub fn previous_runs(dir: &Path) -> Result<Vec<serde_json::Value>> {
    let file = dir.join("results.json");
    if !file.exists() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
    )
    .with_context(|| format!("{}: not Glass results", file.display()))?;
    if v["schema"] != SCHEMA {
        anyhow::bail!(
            "{}: not {SCHEMA} results; cannot resume from it",
            file.display()
        );
    }
    Ok(v["runs"].as_array().cloned().unwrap_or_default())
}

/// Writes results.json in `dir`: the runs kept from before (`--resume`)
/// and this invocation's records.
pub fn write_results(
    dir: &Path,
    s: &Scenario,
    kept: &[serde_json::Value],
    records: &[RunRecord],
) -> Result<()> {
    let mut runs = kept.to_vec();
    for r in records {
        runs.push(serde_json::to_value(r)?);
    }
    let results = Results {
        schema: SCHEMA,
        glass_version: env!("CARGO_PKG_VERSION"),
        scenario: ScenarioSummary {
            name: &s.name,
            description: s.description.as_deref(),
            source: s.source.as_ref().map(|p| p.display().to_string()),
            duration_s: s.duration.as_secs_f64(),
            seed: s.seed,
            repeat: s.repeat,
            media: MediaSummary {
                bitrate_bps: s.encoder.bitrate.bits_per_sec(),
                fps: s.encoder.fps,
                gop: s.encoder.gop,
                resolution: &s.resolution,
                audio: s.encoder.audio.is_some(),
                encode_delay_ms: s.encoder.encode_delay.as_secs_f64() * 1e3,
            },
            budgets: &s.budgets,
        },
        runs,
    };
    // Write then rename, so a crash never leaves half a file.
    let tmp = dir.join("results.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&results)?)?;
    std::fs::rename(&tmp, dir.join("results.json"))?;
    Ok(())
}
