//! `glass bench virtual`: how much faster than real time a scenario runs in
//! virtual time. Each run is timed on the wall clock (the whole run: set-up,
//! the event loop, assembling the result); the ratio is simulated seconds
//! over the median wall time, so a shared, noisy machine moves it less than
//! a mean would.
//!
//! The default scenario is the issue's figure: 60 s each of Glass's UDP
//! protocol (NACK, FEC, congestion control), RTMP over QUIC (the frames
//! mapping) and RTMP over TCP (smoltcp's, CUBIC) over a first mile with
//! 2 % loss and 40 ms delay. Each protocol's own median is printed beside
//! the whole run's.

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
[[protocols]]
name = "rtmp-quic-frames"
kind = "rtmp"
uri = "rtmpq://server/live/glass?mapping=frames"
[[protocols]]
name = "rtmp-tcp-smoltcp"
kind = "rtmp"
uri = "rtmp://server/live/glass"
tcp_congestion = "cubic"
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
    /// Each protocol's median wall time per run (all networks), ms.
    pub per_protocol: Vec<ProtocolBench>,
}

#[derive(Debug, Serialize)]
pub struct ProtocolBench {
    pub protocol: String,
    pub median_wall_ms: f64,
    /// Its simulated seconds over its median wall time.
    pub faster_than_real_time: f64,
}

fn median(d: &[Duration]) -> Duration {
    let mut sorted = d.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2].max(Duration::from_nanos(1))
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
    let mut per: Vec<Vec<Duration>> = vec![Vec::new(); scenario.protocols.len()];
    for i in 0..args.runs {
        let mut run = Duration::ZERO;
        for (k, protocol) in scenario.protocols.iter().enumerate() {
            let t0 = Instant::now();
            for network in &scenario.networks {
                crate::virtual_time::run_groups(&scenario, network, protocol, i as u32, &|_| {})?;
            }
            let took = t0.elapsed();
            per[k].push(took);
            run += took;
        }
        wall.push(run);
    }
    let mut sorted = wall.clone();
    sorted.sort();
    let median_all = median(&wall);
    let per_protocol_s = scenario.duration.as_secs_f64() * scenario.networks.len() as f64;
    let report = VirtualBench {
        scenario: scenario.name.clone(),
        simulated_s: simulated,
        runs: args.runs,
        wall_ms: wall.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
        median_wall_ms: median_all.as_secs_f64() * 1e3,
        faster_than_real_time: simulated / median_all.as_secs_f64(),
        runs_per_minute: 60.0 / median_all.as_secs_f64(),
        per_protocol: scenario
            .protocols
            .iter()
            .zip(&per)
            .map(|(p, d)| {
                let m = median(d);
                ProtocolBench {
                    protocol: p.name.clone(),
                    median_wall_ms: m.as_secs_f64() * 1e3,
                    faster_than_real_time: per_protocol_s / m.as_secs_f64(),
                }
            })
            .collect(),
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
        for p in &report.per_protocol {
            println!(
                "  {}: median {:.0} ms per run, {:.0}× faster than real time",
                p.protocol, p.median_wall_ms, p.faster_than_real_time
            );
        }
    }
    Ok(())
}
