//! `glass check`: the CI gate over `glass run`'s results (logic and
//! renderings in `reports::gate`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use reports::gate::{self, Baseline, Tolerance};

use crate::cli::{GateArgs, RunArgs};

/// A results directory's (or file's) results, of schema v2 or v1.
pub fn load_results(dir: &Path) -> Result<gate::Results> {
    let file = if dir.is_dir() {
        dir.join("results.json")
    } else {
        dir.to_path_buf()
    };
    Ok(reports::results::read(&file)?)
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Returns the exit code: 0 passed, 1 failed.
pub fn run(args: &GateArgs) -> Result<i32> {
    if !(0.0..=10.0).contains(&args.tolerance) {
        bail!("--tolerance: a fraction between 0 and 10");
    }
    let dir: PathBuf = if args.is_results() {
        args.target.clone()
    } else {
        crate::commands::run::run(&RunArgs {
            scenario: Some(args.target.clone()),
            output: args.output.clone(),
            mode: args.mode,
            clock: None,
            resume: false,
            plan: None,
            index: None,
        })?
    };
    let results = load_results(&dir)?;
    let where_to_look = if dir.is_dir() {
        dir.display().to_string()
    } else {
        dir.parent().map_or(".".into(), |p| p.display().to_string())
    };
    let baseline = match (&args.baseline, args.update_baseline) {
        (Some(path), true) => {
            let b = gate::baseline_from(
                &results,
                Tolerance {
                    relative: args.tolerance,
                    ..Tolerance::default()
                },
            );
            write(path, &serde_json::to_string_pretty(&b)?)?;
            println!(
                "baseline written: {} ({} cases)",
                path.display(),
                b.cases.len()
            );
            None
        }
        (Some(path), false) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the baseline {}", path.display()))?;
            let b: Baseline = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a Glass baseline", path.display()))?;
            if b.schema != gate::BASELINE_SCHEMA {
                bail!(
                    "{}: schema \"{}\", expected \"{}\"",
                    path.display(),
                    b.schema,
                    gate::BASELINE_SCHEMA
                );
            }
            Some(b)
        }
        (None, _) => None,
    };
    let verdict = gate::check(&results, baseline.as_ref(), &where_to_look);
    print!("{}", gate::render_text(&verdict));
    if let Some(p) = &args.junit {
        write(p, &gate::render_junit(&verdict))?;
    }
    if let Some(p) = &args.markdown {
        write(p, &gate::render_markdown(&verdict))?;
    }
    Ok(if verdict.passed() { 0 } else { 1 })
}

/// `glass compare A B`: two results side by side, with deltas and whether
/// each is significant.
pub fn compare(args: &crate::cli::CompareArgs) -> Result<()> {
    let a = load_results(&args.a)?;
    let b = load_results(&args.b)?;
    let rows = gate::compare(&a, &b);
    if rows.is_empty() {
        bail!("no (network, protocol) case is in both results");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!(
            "{}",
            gate::render_comparison(
                &rows,
                &args.a.display().to_string(),
                &args.b.display().to_string()
            )
        );
    }
    Ok(())
}
