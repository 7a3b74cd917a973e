//! results.json (`glass.results.v2`, typed in `reports::results`): one
//! record per run, the scenario's summary, the budgets each run was held
//! to. Written after every run (write, then rename), so a run that fails
//! keeps what finished before it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use netem::adapters::link::{GraphStats, LinkDir};
use netem::check::LiveCheck;
use reports::results::{self, DirectionPart, HostPart, LinkPart, Run, TopologyPart};
use serde::Serialize;

use crate::runner::RunResult;
use crate::scenario::{Budgets, Network, Scenario};

pub use reports::results::SCHEMA;

#[derive(Serialize)]
pub struct RunRecord {
    /// Sweep coordinates (field path → value); empty without a sweep.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, String>,
    /// The coordinates as one label ("" without a sweep).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub point: String,
    pub network: String,
    /// The player group, for a network with several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
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
    /// Every host and link of the network, each direction as asked and
    /// what the engine did (link mode).
    pub topology: Option<TopologyPart>,
    pub result: Option<RunResult>,
    pub budgets: Vec<BudgetCheck>,
    /// What makes the figures suspect ([`warnings`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What makes a run's figures suspect: the relay killed by a fault, the
/// link's engine released packets
/// late (a stalled thread, an overloaded machine: `netem::adapters::link::
/// LATE_RELEASE`), or the kernel dropped packets before the engine read
/// them. Either way the figures from that moment measure the machine, not
/// the network.
pub fn warnings(r: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(at) = r.relay_killed_at_ms {
        out.push(format!(
            "the relay was killed at {:.1} s (fault relay_killed): the figures after it are the players' without a relay",
            at / 1e3
        ));
    }
    if let Some(link) = &r.link {
        let e = &link.release_error;
        if e.late > 0 {
            out.push(format!(
                "the link's engine fell behind: {} packet(s) released more than {} ms late (up to {:.0} ms, first due at {:.1} s); figures from then on measure the machine, not the network",
                e.late,
                netem::adapters::link::LATE_RELEASE.as_millis(),
                e.max_us / 1e3,
                e.first_late_at_ms.unwrap_or(0.0) / 1e3
            ));
        }
        let drops: u64 = link.kernel_drops.values().sum();
        if drops > 0 {
            out.push(format!(
                "the kernel dropped {drops} packet(s) before the link's engine read them (it fell behind): losses the scenario did not ask for"
            ));
        }
    }
    out
}

#[derive(Serialize)]
pub struct BudgetCheck {
    pub budget: &'static str,
    pub limit: f64,
    pub value: f64,
    pub within: bool,
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

/// The network's topology for results v2: its hosts, and each link with
/// what each direction was asked and, from `graph` (link mode), what the
/// engine did.
pub fn topology_part(network: &Network, graph: Option<&GraphStats>) -> Option<TopologyPart> {
    let g = crate::topology::graph_of(network).ok()?;
    let asked = |link: &str| -> [String; 2] {
        if link == "first_mile" {
            return [network.described[0].clone(), network.described[1].clone()];
        }
        match network.groups.iter().find(|x| x.link == link) {
            Some(group) => group.described.clone(),
            // Cross traffic's leaves.
            None => ["clean".into(), "clean".into()],
        }
    };
    let hosts = g.hosts();
    Some(TopologyPart {
        hosts: hosts
            .iter()
            .map(|h| HostPart {
                name: h.name.clone(),
                addr: h.addr.to_string(),
            })
            .collect(),
        links: g
            .links()
            .iter()
            .map(|l| {
                let [up, down] = asked(&l.name);
                let counters = |way: bool| graph.map(|gs| gs.counters(&l.label(way)));
                LinkPart {
                    name: l.name.clone(),
                    a: hosts[l.a].name.clone(),
                    b: hosts[l.b].name.clone(),
                    uplink: DirectionPart {
                        asked: up,
                        counters: counters(true),
                    },
                    downlink: DirectionPart {
                        asked: down,
                        counters: counters(false),
                    },
                }
            })
            .collect(),
    })
}

/// The runs of an earlier results.json in `dir` (for --resume).
pub fn previous_runs(dir: &Path) -> Result<Vec<Run>> {
    let file = dir.join("results.json");
    if !file.exists() {
        return Ok(Vec::new());
    }
    let r = results::read(&file).context("cannot resume from it")?;
    if r.schema != SCHEMA {
        anyhow::bail!(
            "{}: {} results; --resume continues {SCHEMA} results only",
            file.display(),
            r.schema
        );
    }
    Ok(r.runs)
}

/// Writes results.json in `dir`: the runs kept from before (`--resume`)
/// and this invocation's records.
pub fn write_results(dir: &Path, s: &Scenario, kept: &[Run], records: &[RunRecord]) -> Result<()> {
    let mut runs = kept.to_vec();
    for r in records {
        runs.push(results::run_from(r)?);
    }
    let budgets = match serde_json::to_value(&s.budgets)? {
        serde_json::Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    let out = results::Results {
        schema: SCHEMA.into(),
        glass_version: env!("CARGO_PKG_VERSION").into(),
        scenario: results::ScenarioPart {
            name: s.name.clone(),
            description: s.description.clone(),
            source: s.source.as_ref().map(|p| p.display().to_string()),
            duration_s: s.duration.as_secs_f64(),
            seed: s.seed,
            repeat: s.repeat,
            media: results::MediaPart {
                bitrate_bps: s.encoder.bitrate.bits_per_sec(),
                fps: s.encoder.fps,
                gop: s.encoder.gop,
                resolution: s.resolution.clone(),
                audio: s.encoder.audio.is_some(),
                encode_delay_ms: s.encoder.encode_delay.as_secs_f64() * 1e3,
            },
            budgets,
        },
        runs,
    };
    results::write(dir, &out)?;
    Ok(())
}
