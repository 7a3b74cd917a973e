//! `glass run [SCENARIO]`: every protocol over every network of a scenario,
//! `repeat` times; a comparison table on stdout and a results directory.
//!
//! Results are written after every run, so a run that fails (or a Ctrl-C)
//! keeps all that finished before it. Layout of the directory, and the
//! `results.json` schema (`glass.results.v2`, typed in `reports::results`),
//! are in `scenarios/README.md`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use netem::adapters::link::LinkDir;

use crate::cli::RunArgs;
use crate::output::records::{RunRecord, budgets, previous_runs, topology_part, write_results};
use crate::output::series::{FRAMES_HEADER, SECONDS_HEADER, csv_file, write_series};
use crate::output::tables::{cross_table, hops_table, net, table, viewers_table};
use crate::runner::run_groups;
use crate::scenario::{ClockKind, Network, Protocol, QUICKSTART, Scenario, SweepPoint};
use crate::topology::Mode;

/// Runs the scenario; returns the results directory.
pub fn run(args: &RunArgs) -> Result<PathBuf> {
    let mut points = match &args.scenario {
        Some(path) => Scenario::sweep_from_file(path)?,
        None => Scenario::sweep_from_toml("quickstart (built in)", QUICKSTART, None)?,
    };
    for pt in &mut points {
        match args.clock {
            Some(ClockKind::Virtual) => pt.scenario.set_virtual().map_err(anyhow::Error::msg)?,
            Some(ClockKind::Real) => pt.scenario.clock = ClockKind::Real,
            None => {}
        }
    }
    let virtual_time = points[0].scenario.clock == ClockKind::Virtual;
    let scenario = &points[0].scenario;
    let out_dir = args.output.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("results").join(format!("{}-{secs}", scenario.name.replace(['/', ' '], "_")))
    });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // Virtual time crosses no real network: no mode to resolve.
    let mode = if virtual_time {
        args.mode
    } else {
        args.mode.resolve()
    };
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
    let kept: Vec<reports::results::Run> = if args.resume {
        previous_runs(&out_dir)?
            .into_iter()
            .filter(|k| k.ok())
            .collect()
    } else {
        Vec::new()
    };
    let done = |pt: &SweepPoint, n: &str, p: &str, r: u32| {
        kept.iter()
            .any(|k| k.network == n && k.protocol == p && k.repeat == r && k.sweep == pt.coords)
    };
    let jobs: Vec<_> = jobs
        .into_iter()
        .filter(|(pt, n, p, r)| !n.group_names().iter().all(|g| done(pt, g, &p.name, *r)))
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
        "glass: {} — {} run(s) of {:.0} s{} → {}",
        scenario.name,
        jobs.len(),
        scenario.duration.as_secs_f64(),
        if virtual_time { " in virtual time" } else { "" },
        out_dir.display()
    );
    let bar = crate::output::progress_bar((jobs.len() * 1000) as u64);
    let mut records: Vec<RunRecord> = Vec::new();
    // The network each record ran over (a player group's view).
    let mut record_networks: Vec<crate::scenario::Network> = Vec::new();
    let mut frames_csv = csv_file(&out_dir.join("frames.csv"), FRAMES_HEADER, args.resume)?;
    let mut seconds_csv = csv_file(&out_dir.join("seconds.csv"), SECONDS_HEADER, args.resume)?;
    let mut written = std::time::Instant::now();
    let mut write_every = std::time::Duration::from_secs(1);
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
        let done = match run_job(
            &rt,
            (point, network, protocol, *repeat),
            mode,
            (&mut frames_csv, &mut seconds_csv),
            &|f| bar.set_position(base + (f * 1000.0) as u64),
            &|e| bar.suspend(|| eprintln!("{e}")),
        ) {
            Ok(done) => done,
            Err(e) => {
                // What finished is kept.
                write_results(&out_dir, scenario, &kept, &records)?;
                return Err(e);
            }
        };
        bar.set_position(base + 1000);
        for (record, view) in done {
            records.push(record);
            record_networks.push(view);
        }
        // On disk before the next run starts (frames.csv and seconds.csv
        // are appended as each run ends). results.json is rewritten whole,
        // so runs that take well under a second (virtual time) write it at
        // most once a second, and at most a fifth of the time: a thousand
        // runs would otherwise rewrite it a thousand times as it grows.
        let last = i + 1 == jobs.len();
        if last || written.elapsed() >= write_every {
            let t0 = std::time::Instant::now();
            write_results(&out_dir, scenario, &kept, &records)?;
            written = std::time::Instant::now();
            write_every = (4 * t0.elapsed()).max(std::time::Duration::from_secs(1));
        }
    }
    bar.finish_and_clear();
    print_summary(&records, record_networks.iter());
    println!("results: {}", out_dir.display());
    match reports::html::write_report(&out_dir, &crate::protocol::report_figures()) {
        Ok(p) => println!("report: {}", p.display()),
        Err(e) => eprintln!("glass: the report could not be written: {e:#}"),
    }
    Ok(out_dir)
}

/// One job of a run: a protocol over a network (every player group of
/// it), one repeat, at one sweep point.
pub type Job<'a> = (&'a SweepPoint, &'a Network, &'a Protocol, u32);

/// Runs one job; appends its frames and seconds to the CSVs and returns a
/// record per player group (failed ones too: a run that fails is a result,
/// reported through `warn`), each with the network as its group saw it.
pub fn run_job(
    rt: &tokio::runtime::Runtime,
    (point, network, protocol, repeat): Job,
    mode: Mode,
    (frames_csv, seconds_csv): (&mut impl std::io::Write, &mut impl std::io::Write),
    progress: &(dyn Fn(f64) + Sync),
    warn: &dyn Fn(String),
) -> Result<Vec<(RunRecord, Network)>> {
    let scenario = &point.scenario;
    let label = point.label();
    let outcome = match scenario.clock {
        ClockKind::Real => run_groups(rt, scenario, network, protocol, repeat, mode, progress),
        ClockKind::Virtual => {
            crate::virtual_time::run_groups(scenario, network, protocol, repeat, progress)
        }
    };
    // A result per player group, or the failure for each.
    let per_group: Vec<_> = match outcome {
        Ok(results) => results
            .into_iter()
            .enumerate()
            .map(|(g, r)| (g, ("ok", None), Some(r)))
            .collect(),
        Err(e) => {
            warn(format!(
                "glass: {} over {} failed: {e:#}",
                protocol.name, network.name
            ));
            (0..network.groups.len())
                .map(|g| (g, ("failed", Some(format!("{e:#}"))), None))
                .collect()
        }
    };
    let mut out = Vec::new();
    for (group, status, mut result) in per_group {
        let view = network.for_group(group);
        if let Some(r) = &mut result {
            write_series(
                frames_csv,
                seconds_csv,
                &label,
                &view.name,
                &protocol.name,
                repeat,
                r,
                scenario.duration,
            )?;
            // In the CSVs now: a sweep's thousand runs need not keep them.
            r.shed_frames();
        }
        let record = record_of(
            point,
            (network, group),
            &protocol.name,
            repeat,
            status,
            result,
        );
        for w in &record.warnings {
            warn(format!(
                "glass: {} over {}: warning: {w}",
                protocol.name, view.name
            ));
        }
        out.push((record, view));
    }
    Ok(out)
}

/// One run's record: where it ran, what was asked, what it measured.
fn record_of(
    point: &SweepPoint,
    (whole, group): (&crate::scenario::Network, usize),
    protocol: &str,
    repeat: u32,
    (status, error): (&'static str, Option<String>),
    result: Option<crate::runner::RunResult>,
) -> RunRecord {
    let network = &whole.for_group(group);
    RunRecord {
        sweep: point.coords.clone(),
        point: point.label(),
        network: network.name.clone(),
        group: whole.has_groups().then(|| whole.groups[group].name.clone()),
        topology: topology_part(whole, result.as_ref().and_then(|r| r.graph.as_ref())),
        protocol: protocol.to_string(),
        repeat,
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
            .map(|r| budgets(&point.scenario.budgets, r))
            .unwrap_or_default(),
        warnings: result
            .as_ref()
            .map(crate::output::records::warnings)
            .unwrap_or_default(),
        result,
    }
}

/// The tables, the transports' fallbacks, the impairment asked against
/// realised, and the budgets exceeded.
pub(crate) fn print_summary<'a>(
    records: &[RunRecord],
    networks: impl Iterator<Item = &'a crate::scenario::Network>,
) {
    print!("{}", table(records));
    print!("{}", hops_table(records));
    for p in crate::protocol::REGISTRY {
        print!("{}", p.summary(records));
    }
    print!("{}", cross_table(records));
    print!("{}", viewers_table(records));
    for r in records {
        for t in r.result.iter().flat_map(|x| &x.transports) {
            if let Some(why) = &t.fallback {
                println!(
                    "{} / {}: the {} asked for {}: {why}",
                    r.network, r.protocol, t.role, t.requested
                );
            }
        }
    }
    for (r, network) in records.iter().zip(networks) {
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
    for r in records {
        for b in r.budgets.iter().filter(|b| !b.within) {
            println!(
                "budget {} over: {} over {} — {:.3} > {:.3}",
                b.budget, r.protocol, r.network, b.value, b.limit
            );
        }
    }
}
