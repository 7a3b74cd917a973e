//! `glass soak [SCENARIO] --hours H`: a scenario's runs over and over in one
//! process (one runtime, as `glass run` uses), with the process sampled every
//! `--sample-every` and after each run, so a leak of memory, sockets, TUN
//! devices, threads or async tasks shows as a trend (`reports::soak` has the method).
//!
//! Everything is written as it happens (soak.csv and soak-runs.csv are
//! flushed line by line), so a soak that is killed keeps its figures; the
//! summary, plots and page come at the end (or after Ctrl-C). Glass's own
//! bookkeeping must not look like a leak: the soak keeps a fixed-size
//! record per run (its case by number, not its names) in space reserved at
//! the start for as many runs as the soak can hold, so the heap it samples
//! does not grow with the runs done.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use reports::soak::{Sample, SoakRun, SoakSummary};

use crate::cli::SoakArgs;
use crate::commands::run::run_job;
use crate::output::series::{csv_file, quote};
use crate::scenario::{QUICKSTART, Scenario};

/// Most runs (and samples) the soak reserves room for: 262,144 (six days of
/// 2-s runs; ~45 MB of address space, resident only as it fills). A longer
/// soak grows its list past it, a visible step in the heap.
const MOST_RESERVED: usize = 1 << 18;

/// What the sampler thread and the run loop share.
#[derive(Default)]
struct Shared {
    runs: AtomicU64,
    failed: AtomicU64,
    /// Ctrl-C: no new run starts.
    interrupted: AtomicBool,
    /// The run loop has ended: take a last sample and stop.
    done: AtomicBool,
    samples: Mutex<Vec<Sample>>,
}

pub fn run(args: &SoakArgs) -> Result<i32> {
    if !(args.hours > 0.0 && args.hours <= 1000.0) {
        bail!("--hours: more than 0 and at most 1000");
    }
    let every = args.sample_every.0;
    if every < Duration::from_millis(100) {
        bail!("--sample-every: at least 100ms");
    }
    let points = match &args.scenario {
        Some(path) => Scenario::sweep_from_file(path)?,
        None => Scenario::sweep_from_toml("quickstart (built in)", QUICKSTART, None)?,
    };
    let name = points[0].scenario.name.clone();
    let out = args.output.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("results").join(format!("soak-{}-{secs}", name.replace(['/', ' '], "_")))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mode = args.mode.resolve();
    // Every (point, network, protocol) once per cycle; the cycle is the
    // repeat number, so each cycle draws new seeds.
    let jobs: Vec<_> = points
        .iter()
        .flat_map(|pt| {
            pt.scenario
                .networks
                .iter()
                .flat_map(move |n| pt.scenario.protocols.iter().map(move |p| (pt, n, p)))
        })
        .collect();
    let run_len = points[0].scenario.duration;
    let total = Duration::from_secs_f64(args.hours * 3600.0);
    eprintln!(
        "glass soak: {name} — {} network × protocol case(s) of {:.0} s in turn for {:.2} h ({mode:?} mode), sampled every {} → {}",
        jobs.len(),
        run_len.as_secs_f64(),
        args.hours,
        args.sample_every,
        out.display()
    );

    let mut samples_csv = csv_file(
        &out.join("soak.csv"),
        "t_s,rss_kib,heap_kib,fds,threads,tasks,runs,failed",
        false,
    )?;
    let mut runs_csv = csv_file(
        &out.join("soak-runs.csv"),
        "index,started_s,network,protocol,status,g2g_p50_ms,g2g_p99_ms,stall_ratio,rss_kib,heap_kib,fds,threads,tasks,error",
        false,
    )?;
    crate::signals::catch_interrupts();
    let rt = crate::runtime::runtime()?;
    let shared = Arc::new(Shared::default());
    shared
        .samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .reserve(((total.as_secs_f64() / every.as_secs_f64()) as usize + 16).min(MOST_RESERVED));
    let start = Instant::now();
    let bar = crate::output::progress_bar(total.as_secs());
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());

    let sampler = {
        let shared = shared.clone();
        let handle = rt.handle().clone();
        let bar = bar.clone();
        std::thread::Builder::new()
            .name("glass-soak-sampler".into())
            .spawn(move || -> std::io::Result<()> {
                let mut next = start;
                loop {
                    let done = shared.done.load(Ordering::SeqCst);
                    if done || Instant::now() >= next {
                        let s = reading(start, &shared, &handle);
                        writeln!(
                            samples_csv,
                            "{:.1},{},{},{},{},{},{},{}",
                            s.t_s,
                            s.rss_kib,
                            s.heap_kib,
                            s.fds,
                            s.threads,
                            s.tasks,
                            s.runs,
                            s.failed
                        )?;
                        samples_csv.flush()?;
                        bar.set_position(s.t_s as u64);
                        bar.set_message(format!(
                            "{} runs ({} failed); RSS {:.1} MiB (heap {:.1}), {} fds, {} threads, {} tasks",
                            s.runs,
                            s.failed,
                            s.rss_kib as f64 / 1024.0,
                            s.heap_kib as f64 / 1024.0,
                            s.fds,
                            s.threads,
                            s.tasks
                        ));
                        shared.samples.lock().unwrap_or_else(PoisonError::into_inner).push(s);
                        while next <= Instant::now() {
                            next += every;
                        }
                    }
                    if done {
                        return Ok(());
                    }
                    if crate::signals::take().is_some()
                        && !shared.interrupted.swap(true, Ordering::SeqCst)
                    {
                        bar.suspend(|| {
                            eprintln!(
                                "glass soak: interrupted: ending after the current run (Ctrl-C again to quit now)"
                            )
                        });
                        // A second Ctrl-C gets the default action.
                        // SAFETY: resetting a signal's disposition.
                        unsafe {
                            libc::signal(libc::SIGINT, libc::SIG_DFL);
                            libc::signal(libc::SIGTERM, libc::SIG_DFL);
                        }
                    }
                    std::thread::sleep(
                        next.saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(100)),
                    );
                }
            })?
    };

    // Room for every run the soak can do (each at least the scenario's
    // duration; player groups give a record each) and every sample.
    let most_runs = (total.as_secs_f64() / run_len.as_secs_f64().max(0.1)).ceil() as usize + 1;
    let per_run = jobs
        .iter()
        .map(|(_, n, _)| n.groups.len().max(1))
        .max()
        .unwrap_or(1);
    let mut runs: Vec<RunRecord> = Vec::with_capacity((most_runs * per_run).min(MOST_RESERVED));
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    let mut index = 0u64;
    while start.elapsed() < total && !shared.interrupted.load(Ordering::SeqCst) {
        let (point, network, protocol) = jobs[(index % jobs.len() as u64) as usize];
        let cycle = u32::try_from(index / jobs.len() as u64).unwrap_or(u32::MAX);
        let started_s = start.elapsed().as_secs_f64();
        let done = run_job(
            &rt,
            (point, network, protocol, cycle),
            mode,
            (&mut std::io::sink(), &mut std::io::sink()),
            &|_| {},
            &|e| bar.suspend(|| eprintln!("{e}")),
        );
        let records = match done {
            Ok(r) => r,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        for (record, _) in records {
            let ok = record.status == "ok";
            shared.runs.fetch_add(1, Ordering::SeqCst);
            if !ok {
                shared.failed.fetch_add(1, Ordering::SeqCst);
            }
            let player = record.result.as_ref().map(|r| &r.player);
            let case = match cases
                .iter()
                .position(|(n, p)| *n == record.network && *p == record.protocol)
            {
                Some(i) => i,
                None => {
                    cases.push((record.network.clone(), record.protocol.clone()));
                    cases.len() - 1
                }
            };
            let run = RunRecord {
                index,
                started_s,
                case,
                status: record.status,
                g2g: player.map(|p| (p.g2g_p50_ms, p.g2g_p99_ms, p.stall_ratio)),
                after: settled(start, &shared, rt.handle()),
                error: record.error.clone(),
            };
            let (network, protocol) = &cases[case];
            let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.3}"));
            writeln!(
                runs_csv,
                "{},{:.1},{},{},{},{},{},{},{},{},{},{},{},{}",
                run.index,
                run.started_s,
                quote(network),
                quote(protocol),
                run.status,
                opt(run.g2g.map(|g| g.0)),
                opt(run.g2g.map(|g| g.1)),
                opt(run.g2g.map(|g| g.2)),
                run.after.rss_kib,
                run.after.heap_kib,
                run.after.fds,
                run.after.threads,
                run.after.tasks,
                quote(run.error.as_deref().unwrap_or(""))
            )?;
            runs_csv.flush()?;
            if !terminal {
                eprintln!(
                    "glass soak: {:.1} min: run {} {} / {} {}; RSS {:.1} MiB (heap {:.1}), {} fds, {} threads, {} tasks",
                    run.after.t_s / 60.0,
                    run.index,
                    network,
                    protocol,
                    run.status,
                    run.after.rss_kib as f64 / 1024.0,
                    run.after.heap_kib as f64 / 1024.0,
                    run.after.fds,
                    run.after.threads,
                    run.after.tasks
                );
            }
            runs.push(run);
        }
        index += 1;
    }
    shared.done.store(true, Ordering::SeqCst);
    let sampled = sampler.join();
    bar.finish_and_clear();
    let ended = match (&failure, shared.interrupted.load(Ordering::SeqCst)) {
        (Some(e), _) => format!("error: {e:#}"),
        (None, true) => "interrupted".into(),
        (None, false) => "time".into(),
    };
    let samples = std::mem::take(
        &mut *shared
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let runs: Vec<SoakRun> = runs
        .into_iter()
        .map(|r| SoakRun {
            index: r.index,
            started_s: r.started_s,
            network: cases[r.case].0.clone(),
            protocol: cases[r.case].1.clone(),
            status: r.status.to_string(),
            g2g_p50_ms: r.g2g.map(|g| g.0),
            g2g_p99_ms: r.g2g.map(|g| g.1),
            stall_ratio: r.g2g.map(|g| g.2),
            after: r.after,
            error: r.error,
        })
        .collect();
    let summary = SoakSummary::new(
        &name,
        &format!("{mode:?}").to_lowercase(),
        (args.hours, every.as_secs_f64()),
        ended,
        &samples,
        &runs,
    );
    std::fs::write(
        out.join("soak.json"),
        serde_json::to_string_pretty(&summary)?,
    )
    .with_context(|| format!("writing {}", out.join("soak.json").display()))?;
    print!("{}", summary.text());
    match reports::soak::write_report(&out, &summary, &samples, &runs) {
        Ok(p) => println!("report: {}", p.display()),
        Err(e) => eprintln!("glass soak: the report could not be written: {e}"),
    }
    println!("results: {}", out.display());
    match sampled {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e).context("writing soak.csv"),
        Err(_) => bail!("the sampler thread panicked"),
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(if summary.passed { 0 } else { 1 })
}

/// What the soak keeps of a run while it goes on: fixed size (the case's
/// names once in `cases`), so its own memory does not grow per run.
struct RunRecord {
    index: u64,
    started_s: f64,
    /// Index into the soak's (network, protocol) names.
    case: usize,
    status: &'static str,
    /// G2G p50, p99 (ms) and stall ratio, when the run played.
    g2g: Option<(f64, f64, f64)>,
    after: Sample,
    /// Only failed runs carry one.
    error: Option<String>,
}

/// The process once the run's last tasks have ended (at most 1 s after it
/// returned: a socket closes when the task holding it sees the run end), so
/// "after each run" does not count a run's leftovers that are on their way
/// out; what is still there after 1 s counts.
fn settled(start: Instant, shared: &Shared, rt: &tokio::runtime::Handle) -> Sample {
    let until = Instant::now() + Duration::from_secs(1);
    while rt.metrics().num_alive_tasks() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    reading(start, shared, rt)
}

/// The process now, stamped with the soak's clock and run counts.
fn reading(start: Instant, shared: &Shared, rt: &tokio::runtime::Handle) -> Sample {
    Sample {
        t_s: start.elapsed().as_secs_f64(),
        tasks: rt.metrics().num_alive_tasks() as u64,
        runs: shared.runs.load(Ordering::SeqCst),
        failed: shared.failed.load(Ordering::SeqCst),
        ..crate::procstat::sample()
    }
}
