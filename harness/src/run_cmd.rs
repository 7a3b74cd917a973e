//! `glass run [SCENARIO]`: every protocol over every network of a scenario,
//! `repeat` times; a comparison table on stdout and a results directory.
//!
//! Results are written after every run, so a run that fails (or a Ctrl-C)
//! keeps all that finished before it. Layout of the directory, and the
//! `results.json` schema (`glass.results.v1`), are in `scenarios/README.md`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use netem::adapters::link::LinkDir;
use netem::check::LiveCheck;
use serde::Serialize;

use crate::cli::RunArgs;
use crate::runner::{RunResult, run_one};
use crate::scenario::{Budgets, QUICKSTART, Scenario, SweepPoint};

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
struct RunRecord {
    /// Sweep coordinates (field path → value); empty without a sweep.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    sweep: BTreeMap<String, String>,
    /// The coordinates as one label ("" without a sweep).
    #[serde(skip_serializing_if = "String::is_empty")]
    point: String,
    network: String,
    protocol: String,
    repeat: u32,
    /// Requested impairment per direction, as written in the scenario.
    impairment: [String; 4],
    /// The first-mile uplink's capacity over time: [at_ms, bit/s or null].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    capacity_steps: Vec<(f64, Option<f64>)>,
    /// The networks' timeline changes (rate steps, outages, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    events: Vec<crate::events::ImpairmentEvent>,
    status: &'static str,
    error: Option<String>,
    /// Requested against realised, per direction, from the engine's counters.
    impairment_check: BTreeMap<LinkDir, LiveCheck>,
    result: Option<RunResult>,
    budgets: Vec<BudgetCheck>,
}

#[derive(Serialize)]
struct BudgetCheck {
    budget: &'static str,
    limit: f64,
    value: f64,
    within: bool,
}

#[derive(Serialize)]
struct Results<'a> {
    schema: &'static str,
    glass_version: &'static str,
    scenario: ScenarioSummary<'a>,
    runs: Vec<serde_json::Value>,
}

fn budgets(b: &Budgets, r: &RunResult) -> Vec<BudgetCheck> {
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

/// Runs the scenario; returns the results directory.
pub fn run(args: &RunArgs) -> Result<PathBuf> {
    let points = match &args.scenario {
        Some(path) => Scenario::sweep_from_file(path)?,
        None => Scenario::sweep_from_toml("quickstart (built in)", QUICKSTART, None)?,
    };
    let scenario = &points[0].scenario;
    let out_dir = args.output.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("results").join(format!("{}-{secs}", scenario.name.replace(['/', ' '], "_")))
    });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mode = args.mode.resolve();
    let rt = crate::runtime::runtime()?;

    // Every point × network × protocol × repeat.
    let jobs: Vec<_> = points
        .iter()
        .flat_map(|pt| {
            let s = &pt.scenario;
            s.networks.iter().flat_map(move |n| {
                s.protocols
                    .iter()
                    .flat_map(move |p| (0..s.repeat).map(move |r| (pt, n, p, r)))
            })
        })
        .collect();
    // --resume: keep the runs that finished, run the others.
    let kept: Vec<serde_json::Value> = if args.resume {
        previous_runs(&out_dir)?
    } else {
        Vec::new()
    };
    let done = |pt: &SweepPoint, n: &str, p: &str, r: u32| {
        kept.iter().any(|k| {
            k["status"] == "ok"
                && k["network"] == n
                && k["protocol"] == p
                && k["repeat"] == r
                && k.get("sweep").map_or(serde_json::json!({}), |v| v.clone())
                    == serde_json::to_value(&pt.coords).unwrap_or_default()
        })
    };
    let kept: Vec<serde_json::Value> = kept
        .iter()
        .filter(|k| k["status"] == "ok")
        .cloned()
        .collect();
    let jobs: Vec<_> = jobs
        .into_iter()
        .filter(|(pt, n, p, r)| !done(pt, &n.name, &p.name, *r))
        .collect();
    if args.resume {
        eprintln!(
            "glass: resuming: {} run(s) kept from {}, {} to go",
            kept.len(),
            out_dir.display(),
            jobs.len()
        );
    }
    eprintln!(
        "glass: {} — {} run(s) of {:.0} s → {}",
        scenario.name,
        jobs.len(),
        scenario.duration.as_secs_f64(),
        out_dir.display()
    );
    let bar = ProgressBar::new((jobs.len() * 1000) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut records: Vec<RunRecord> = Vec::new();
    let mut frames_csv = csv_file(
        &out_dir.join("frames.csv"),
        "point,network,protocol,repeat,seq,capture_ms,arrival_ms,display_ms,g2g_ms,publisher_send_ms,relay_receive_ms,relay_send_ms",
        args.resume,
    )?;
    let mut seconds_csv = csv_file(
        &out_dir.join("seconds.csv"),
        "point,network,protocol,repeat,second,sent_kbps,frames_displayed,g2g_mean_ms,stalled_ms",
        args.resume,
    )?;
    for (i, (point, network, protocol, repeat)) in jobs.iter().enumerate() {
        let scenario = &point.scenario;
        let label = point.label();
        bar.set_message(format!(
            "{}{} over {} (repeat {})",
            if label.is_empty() {
                String::new()
            } else {
                format!("[{label}] ")
            },
            protocol.name,
            network.name,
            repeat + 1
        ));
        let base = (i * 1000) as u64;
        let outcome = run_one(&rt, scenario, network, protocol, *repeat, mode, &|f| {
            bar.set_position(base + (f * 1000.0) as u64)
        });
        bar.set_position(base + 1000);
        let (status, error, result) = match outcome {
            Ok(r) => ("ok", None, Some(r)),
            Err(e) => {
                bar.suspend(|| {
                    eprintln!(
                        "glass: {} over {} failed: {e:#}",
                        protocol.name, network.name
                    )
                });
                ("failed", Some(format!("{e:#}")), None)
            }
        };
        if let Some(r) = &result {
            write_series(
                &mut frames_csv,
                &mut seconds_csv,
                &label,
                &network.name,
                &protocol.name,
                *repeat,
                r,
                scenario.duration,
            )?;
        }
        records.push(RunRecord {
            sweep: point.coords.clone(),
            point: label.clone(),
            network: network.name.clone(),
            protocol: protocol.name.clone(),
            repeat: *repeat,
            impairment: network.described.clone(),
            events: crate::events::events(network),
            capacity_steps: crate::abr_metrics::capacity_steps(&network.first_mile.0)
                .into_iter()
                .filter(|_| network.first_mile.0.bottleneck.is_some())
                .map(|(t, c)| (t.as_secs_f64() * 1e3, c))
                .collect(),
            status,
            error,
            impairment_check: result
                .as_ref()
                .and_then(|r| r.link.as_ref())
                .map(|l| {
                    LinkDir::ALL
                        .into_iter()
                        .map(|d| (d, netem::check::live(network.profile(d), &l.counters(d))))
                        .collect()
                })
                .unwrap_or_default(),
            budgets: result
                .as_ref()
                .map(|r| budgets(&scenario.budgets, r))
                .unwrap_or_default(),
            result,
        });
        // On disk before the next run starts.
        write_results(&out_dir, scenario, &kept, &records)?;
    }
    bar.finish_and_clear();
    print!("{}", table(&records));
    print!("{}", hops_table(&records));
    print!("{}", recovery_table(&records));
    for r in &records {
        for t in r.result.iter().flat_map(|x| &x.transports) {
            if let Some(why) = &t.fallback {
                println!(
                    "{} / {}: the {} asked for {}: {why}",
                    r.network, r.protocol, t.role, t.requested
                );
            }
        }
    }
    for (r, network) in records.iter().zip(jobs.iter().map(|j| j.1)) {
        for dir in network.impaired() {
            if let Some(c) = r.impairment_check.get(&dir) {
                println!(
                    "{} / {}, {} ({}): {}",
                    net(r),
                    r.protocol,
                    dir.label(),
                    network.described(dir),
                    c.verdict
                );
            }
        }
    }
    for r in &records {
        for b in r.budgets.iter().filter(|b| !b.within) {
            println!(
                "budget {} over: {} over {} — {:.3} > {:.3}",
                b.budget, r.protocol, r.network, b.value, b.limit
            );
        }
    }
    println!("results: {}", out_dir.display());
    match crate::report_cmd::write_report(&out_dir) {
        Ok(p) => println!("report: {}", p.display()),
        Err(e) => eprintln!("glass: the report could not be written: {e:#}"),
    }
    Ok(out_dir)
}

fn csv_file(path: &Path, header: &str, append: bool) -> Result<std::io::BufWriter<std::fs::File>> {
    let exists = path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut f = std::io::BufWriter::new(file);
    if !(append && exists) {
        writeln!(f, "{header}")?;
    }
    Ok(f)
}

/// The runs of an earlier results.json in `dir` (for --resume).
fn previous_runs(dir: &Path) -> Result<Vec<serde_json::Value>> {
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

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[allow(clippy::too_many_arguments)]
fn write_series(
    frames: &mut impl std::io::Write,
    seconds: &mut impl std::io::Write,
    point: &str,
    network: &str,
    protocol: &str,
    repeat: u32,
    r: &RunResult,
    duration: Duration,
) -> Result<()> {
    let (pt, n, p) = (quote(point), quote(network), quote(protocol));
    let ms = |t: netem::Time| t.as_secs_f64() * 1e3;
    let opt = |t: Option<netem::Time>| t.map_or(String::new(), |t| format!("{:.3}", ms(t)));
    for d in &r.displayed {
        let h = r.frame_hops.get(&d.seq).copied().unwrap_or_default();
        writeln!(
            frames,
            "{pt},{n},{p},{repeat},{},{:.3},{:.3},{:.3},{:.3},{},{},{}",
            d.seq,
            ms(d.capture),
            ms(d.arrival),
            ms(d.display),
            d.g2g().as_secs_f64() * 1e3,
            opt(h.publisher_send),
            opt(h.relay_receive),
            opt(h.relay_send),
        )?;
    }
    for second in 0..duration.as_secs() {
        let (from, to) = (
            netem::Time::from_millis(second * 1000),
            netem::Time::from_millis((second + 1) * 1000),
        );
        let shown: Vec<_> = r
            .displayed
            .iter()
            .filter(|d| d.display >= from && d.display < to)
            .collect();
        let g2g = if shown.is_empty() {
            String::new()
        } else {
            format!(
                "{:.3}",
                shown
                    .iter()
                    .map(|d| d.g2g().as_secs_f64() * 1e3)
                    .sum::<f64>()
                    / shown.len() as f64
            )
        };
        let stalled: f64 = r
            .stalls
            .iter()
            .map(|&(a, b)| (b.min(to).as_secs_f64() - a.max(from).as_secs_f64()).max(0.0) * 1e3)
            .sum::<f64>()
            + 0.0; // an empty float sum is −0.0
        let kbps = r
            .publisher
            .per_second_bits
            .get(second as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1e3;
        writeln!(
            seconds,
            "{pt},{n},{p},{repeat},{second},{kbps:.1},{},{g2g},{stalled:.1}",
            shown.len()
        )?;
    }
    frames.flush()?;
    seconds.flush()?;
    Ok(())
}

fn write_results(
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

/// The network column: the sweep point first, when there is one.
fn net(r: &RunRecord) -> String {
    if r.point.is_empty() {
        r.network.clone()
    } else {
        format!("[{}] {}", r.point, r.network)
    }
}

/// The UDP protocol's recovery per run and mile (nothing without UDP runs):
/// what the link dropped, what the receiver found missing, how it came back.
fn recovery_table(records: &[RunRecord]) -> String {
    let rows: Vec<(&RunRecord, &crate::protocol::udp::recovery::MileRecovery)> = records
        .iter()
        .flat_map(|r| {
            r.result
                .iter()
                .flat_map(move |x| x.recovery.iter().map(move |m| (r, m)))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "UDP recovery (data packets; link = engine drops / datagrams):\n{:<20} {:<18} {:<5} {:>11} {:>6} {:>6} {:>6} {:>5} {:>6} {:>9} {:>9} {:>8} {:>10}",
        "network",
        "protocol",
        "mile",
        "link",
        "lost",
        "fec",
        "nack",
        "late",
        "never",
        "residual",
        "recovered",
        "overhead",
        "event p99"
    );
    for (r, m) in rows {
        // Time until every packet of a loss event was back, p99.
        let p99 = m.recovery_ms_event.p99;
        let _ = writeln!(
            s,
            "{:<20} {:<18} {:<5} {:>11} {:>6} {:>6} {:>6} {:>5} {:>6} {:>8.3}% {:>8.1}% {:>7.1}% {:>7.0} ms",
            net(r),
            r.protocol,
            m.mile,
            format!("{}/{}", m.link_dropped, m.link_packets),
            m.lost,
            m.fec,
            m.nack_in_time,
            m.late,
            m.never,
            m.residual_loss * 100.0,
            m.recovery_ratio * 100.0,
            m.overhead * 100.0,
            p99
        );
    }
    s
}

/// Milliseconds for a table cell, "-" when unknown.
fn cell_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}

fn table(records: &[RunRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<18} {:<9} {:<11} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6} {:>5} {:>7}",
        "network",
        "protocol",
        "mode",
        "transport",
        "connect",
        "startup",
        "G2G p50",
        "G2G p99",
        "steady50",
        "steady99",
        "smooth@1%",
        "stalls",
        "stale",
        "lost",
        "retrans"
    );
    for r in records {
        match &r.result {
            Some(x) => {
                let p = &x.player;
                let _ = writeln!(
                    s,
                    "{:<20} {:<18} {:<9} {:<11} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6.2}% {:>5.1}% {:>5} {:>7}",
                    net(r),
                    r.protocol,
                    x.mode,
                    x.transport(),
                    cell_ms(x.publisher.connect_ms),
                    cell_ms(p.startup_delay_ms),
                    cell_ms(Some(p.g2g_p50_ms)),
                    cell_ms(Some(p.g2g_p99_ms)),
                    cell_ms(p.steady.as_ref().map(|s| s.p50_ms)),
                    cell_ms(p.steady.as_ref().map(|s| s.p99_ms)),
                    cell_ms(x.equal_smoothness.as_ref().map(|e| e.g2g_p50_ms)),
                    p.stall_ratio * 100.0,
                    p.stale_refresh_ratio * 100.0,
                    x.frames_lost(),
                    x.retransmits()
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{:<20} {:<18} failed: {}",
                    net(r),
                    r.protocol,
                    r.error.as_deref().unwrap_or("?")
                );
            }
        }
    }
    s
}

/// Where each run's latency goes (p50 of each hop, Glass's own frames), and
/// what the player's live-edge control did.
fn hops_table(records: &[RunRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "G2G by hop, p50; the player's catch-up and skips; buffer@1% = the playout buffer that keeps stalls <= 1 %:\n{:<20} {:<18} {:>8} {:>10} {:>8} {:>10} {:>8} {:>9} {:>8} {:>9}",
        "network",
        "protocol",
        "encode",
        "first mile",
        "relay",
        "last mile",
        "playout",
        "catch-up",
        "skipped",
        "buffer@1%"
    );
    let mut any = false;
    for r in records {
        let Some(x) = &r.result else { continue };
        let Some(h) = &x.hops else { continue };
        any = true;
        let p50 = |seg: &Option<crate::g2g::Segment>| cell_ms(seg.as_ref().map(|s| s.p50_ms));
        let _ = writeln!(
            s,
            "{:<20} {:<18} {:>8} {:>10} {:>8} {:>10} {:>8} {:>9} {:>8} {:>9}",
            net(r),
            r.protocol,
            p50(&h.encode),
            p50(&h.first_mile),
            p50(&h.relay),
            p50(&h.last_mile),
            p50(&h.playout),
            cell_ms(Some(x.player.catch_up_ms)),
            x.player.frames_skipped,
            cell_ms(x.equal_smoothness.as_ref().map(|e| e.target_delay_ms)),
        );
    }
    if any { s } else { String::new() }
}
