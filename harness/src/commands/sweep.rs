//! `glass sweep plan`, `glass run --plan P --index N` and `glass report
//! merge`: a sweep's runs spread over machines (see `crate::plan` and
//! `reports::merge`).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use reports::merge::{MANIFEST_SCHEMA, Manifest, read_manifest, write_manifest};

use crate::cli::{MergeArgs, PlanArgs, RunArgs};
use crate::output::records::write_results;
use crate::output::series::{FRAMES_HEADER, SECONDS_HEADER, csv_file};
use crate::plan::{self, GIT_REVISION};
use crate::topology::{Mode, link_available};

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `glass sweep plan`.
pub fn plan(args: &PlanArgs) -> Result<()> {
    let p = plan::plan(args.scenario.as_deref(), args.mode, args.fallback)?;
    let text = serde_json::to_string_pretty(&p)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "plan: {} — {} run(s), mode {}{} → {}",
        p.scenario.name,
        p.runs.len(),
        p.mode,
        p.fallback
            .map_or(String::new(), |f| format!(" (falling back to {f})")),
        args.out.display()
    );
    println!(
        "next: glass run --plan {} --index N --output DIR   for N in 0..{}, then glass report merge DIR… --out MERGED",
        args.out.display(),
        p.runs.len()
    );
    Ok(())
}

/// The mode an index runs in: the plan's, or its fallback (and why).
fn mode_for(p: &plan::Plan) -> Result<(Mode, Option<String>)> {
    match p.mode {
        Mode::Link => match link_available() {
            Ok(()) => Ok((Mode::Link, None)),
            Err(e) => match p.fallback {
                Some(f) => {
                    let why = format!("link mode cannot work here ({e}); the plan allows {f} mode");
                    eprintln!("glass: {why}");
                    Ok((f, Some(why)))
                }
                None => bail!(
                    "link mode cannot work here ({e}); the plan asks for link mode and allows no \
                     fallback (plan with --fallback proxy, or run where namespaces can be created: \
                     root, or CAP_NET_ADMIN and CAP_SYS_ADMIN in a pod)"
                ),
            },
        },
        m => Ok((m.resolve(), None)),
    }
}

/// `glass run --plan P --index N --output DIR`: exit 0 when the index is
/// finished (now or before), 1 when its run failed.
pub fn run_index(args: &RunArgs) -> Result<u8> {
    let (Some(plan_path), Some(index_arg), Some(out)) = (&args.plan, &args.index, &args.output)
    else {
        bail!("--plan needs --index and --output");
    };
    let loaded = plan::load(plan_path)?;
    let p = &loaded.plan;
    let index = plan::resolve_index(index_arg, p.runs.len())?;
    let dir = plan::index_dir(out, index);
    if let Some(m) = read_manifest(&dir)? {
        if m.plan_sha256 != loaded.sha256 {
            bail!(
                "{} holds index {index} of another plan (sha256 {}…); use another --output",
                dir.display(),
                &m.plan_sha256[..12.min(m.plan_sha256.len())]
            );
        }
        if m.status == "ok" {
            println!("index {index}: finished before ({}); kept", dir.display());
            return Ok(0);
        }
        eprintln!("glass: index {index} failed before; running it again");
    }
    // Whatever an interrupted or failed attempt left goes.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let points = plan::points(p)?;
    let (point, n, pr) = plan::job_of(p, &points, index)?;
    let scenario = &point.scenario;
    let (network, protocol) = (&scenario.networks[n], &scenario.protocols[pr]);
    let planned = &p.runs[index];
    let (mode, fallback) = mode_for(p)?;
    eprintln!(
        "glass: index {index} of {}: {}{} over {} (repeat {}), {mode} mode → {}",
        p.runs.len(),
        if planned.point.is_empty() {
            String::new()
        } else {
            format!("[{}] ", planned.point)
        },
        protocol.name,
        network.name,
        planned.repeat + 1,
        dir.display()
    );
    let started = unix_now();
    let rt = crate::runtime::runtime()?;
    let mut frames = csv_file(&dir.join("frames.csv"), FRAMES_HEADER, false)?;
    let mut seconds = csv_file(&dir.join("seconds.csv"), SECONDS_HEADER, false)?;
    let done = super::run::run_job(
        &rt,
        (point, network, protocol, planned.repeat),
        mode,
        (&mut frames, &mut seconds),
        &|_| {},
        &|e| eprintln!("{e}"),
    )?;
    std::io::Write::flush(&mut frames)?;
    std::io::Write::flush(&mut seconds)?;
    let (records, views): (Vec<_>, Vec<_>) = done.into_iter().unzip();
    write_results(&dir, scenario, &[], &records)?;
    super::run::print_summary(&records, views.iter());
    let ok = records.iter().all(|r| r.status == "ok");
    write_manifest(
        &dir,
        &Manifest {
            schema: MANIFEST_SCHEMA.into(),
            index,
            runs_in_plan: p.runs.len(),
            plan_sha256: loaded.sha256.clone(),
            scenario_sha256: p.scenario.sha256.clone(),
            glass_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: GIT_REVISION.into(),
            host: plan::host_name(),
            mode_asked: p.mode.to_string(),
            mode: mode.to_string(),
            fallback,
            network: planned.network.clone(),
            protocol: planned.protocol.clone(),
            repeat: planned.repeat,
            sweep: planned.sweep.clone(),
            seed: planned.seed,
            started_unix_s: started,
            finished_unix_s: unix_now(),
            status: if ok { "ok" } else { "failed" }.into(),
        },
    )?;
    println!(
        "index {index}: {} → {}",
        if ok { "ok" } else { "failed" },
        dir.display()
    );
    Ok(if ok { 0 } else { 1 })
}

/// `glass report merge`.
pub fn merge(args: &MergeArgs) -> Result<()> {
    let m = reports::merge::merge(&args.dirs, &args.out)?;
    println!(
        "merged {} run(s) of the plan → {}",
        m.runs_in_plan,
        m.results.display()
    );
    if !m.failed.is_empty() {
        eprintln!(
            "glass: {} index(es) failed and are kept as failed runs: {:?}",
            m.failed.len(),
            m.failed
        );
    }
    let report = reports::html::write_report(&args.out, &crate::protocol::report_figures())?;
    println!("report: {}", report.display());
    Ok(())
}
