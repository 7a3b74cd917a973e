//! `glass bench virtual`: how much faster than real time a scenario runs in
//! virtual time. Each run is timed on the wall clock (the whole run: set-up,
//! the event loop, assembling the result); the ratio is simulated seconds
//! over the median wall time, so a shared, noisy machine moves it less than
//! a mean would.
//!
//! The default scenario is the issue's figure: 60 s of Glass's UDP protocol
//! (NACK, FEC, congestion control) over a first mile with 2 % loss and
//! 40 ms delay.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::cli::BenchVirtualArgs;
use crate::scenario::Scenario;

/// What `glass bench virtual` measures without a scenario: the UDP
/// protocol over a lossy first mile; `DURATION` is replaced.
const DEFAULT: &str = r#"
name = "bench-virtual"
duration = "DURATION"
clock = "virtual"
[[networks]]
name = "2% loss 40ms"
first_mile = { uplink = "delay 40ms loss 2%", downlink = "delay 40ms" }
[[protocols]]
kind = "udp"
udp = { nack = true, cc = "gcc", fec = { kind = "rs", k = 10, m = 3, adaptive = true } }
"#;

#[derive(Debug, Serialize)]
pub struct VirtualBench {
    pub scenario: String,
    /// Simulated seconds per run (every network × protocol of the scenario).
    pub simulated_s: f64,
    pub runs: usize,
    /// Wall time of each run, ms.
    pub wall_ms: Vec<f64>,
    pub median_wall_ms: f64,
    /// Simulated / median wall time.
    pub faster_than_real_time: f64,
    /// Runs (of `simulated_s` each) per minute on this machine, one core.
    pub runs_per_minute: f64,
}

pub fn run(args: &BenchVirtualArgs) -> Result<()> {
    if !(1..=1000).contains(&args.runs) {
        bail!("--runs: 1 to 1000");
    }
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => {
            if !(1.0..=3600.0).contains(&args.seconds) {
                bail!("--seconds: 1 to 3600");
            }
            let text = DEFAULT.replace("DURATION", &format!("{}s", args.seconds));
            Scenario::from_toml("bench-virtual (built in)", &text, None)?
        }
    };
    scenario.set_virtual().map_err(anyhow::Error::msg)?;
    let cases = scenario.networks.len() * scenario.protocols.len();
    let simulated = scenario.duration.as_secs_f64() * cases as f64;
    let mut wall = Vec::new();
    for i in 0..args.runs {
        let t0 = Instant::now();
        for network in &scenario.networks {
            for protocol in &scenario.protocols {
                crate::virtual_time::run_groups(&scenario, network, protocol, i as u32, &|_| {})?;
            }
        }
        wall.push(t0.elapsed());
    }
    let mut sorted = wall.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2].max(Duration::from_nanos(1));
    let report = VirtualBench {
        scenario: scenario.name.clone(),
        simulated_s: simulated,
        runs: args.runs,
        wall_ms: wall.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
        median_wall_ms: median.as_secs_f64() * 1e3,
        faster_than_real_time: simulated / median.as_secs_f64(),
        runs_per_minute: 60.0 / median.as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} run(s) of {:.0} simulated s; wall time median {:.0} ms (min {:.0}, max {:.0}): {:.0}× faster than real time, {:.0} runs/minute",
            report.scenario,
            report.runs,
            report.simulated_s,
            report.median_wall_ms,
            sorted[0].as_secs_f64() * 1e3,
            sorted[sorted.len() - 1].as_secs_f64() * 1e3,
            report.faster_than_real_time,
            report.runs_per_minute
        );
    }
    Ok(())
}
