//! `glass-fuzz`: runs the fuzz targets on stable Rust.
//!
//! ```text
//! glass-fuzz list
//! glass-fuzz run [TARGET…] --inputs 10000000 [--seed 1] [--crashes DIR] [--json FILE]
//! glass-fuzz replay TARGET FILE
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use fuzz::{Options, Outcome, fuzz, human, targets};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "glass-fuzz",
    about = "Fuzz every parser Glass runs on bytes from the network or a file (stable Rust, structure-aware inputs, seeded)",
    long_about = "Fuzz every parser Glass runs on bytes from the network or a file.\n\n\
        Inputs are generated from a seed (the same seed gives the same inputs) and turned into \
        well-formed messages with fields the input chooses, then damaged, so they get past the \
        first length check. A panic is a bug: its input is saved and `replay` runs it again \
        (with a backtrace under RUST_BACKTRACE=1). Build with --release: the debug build is \
        many times slower.\n\n\
        Examples:\n  glass-fuzz list\n  glass-fuzz run --inputs 10000000\n  \
        glass-fuzz run udp rtmp --inputs 1000000 --seed 7\n  \
        glass-fuzz replay udp fuzz-crashes/udp-seed1-input42.bin"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The targets and what each feeds.
    List,
    /// Runs targets (all without names) for a number of inputs each.
    Run {
        /// Targets to run (see `list`); all when none is given.
        targets: Vec<String>,
        /// Inputs per target.
        #[arg(long, default_value_t = 100_000)]
        inputs: u64,
        /// Seed of the input generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Longest input in bytes.
        #[arg(long, default_value_t = 8192)]
        max_len: usize,
        /// Count every panic instead of stopping a target at its first.
        #[arg(long)]
        keep_going: bool,
        /// Where crashing inputs are saved.
        #[arg(long, default_value = "fuzz-crashes")]
        crashes: PathBuf,
        /// Also write the outcomes as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Runs one saved input (a crash) again, with the panic's message.
    Replay { target: String, file: PathBuf },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("glass-fuzz: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List => {
            for t in targets::ALL {
                println!("{:<11} {}", t.name, t.about);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { target, file } => {
            let t = find(&target)?;
            let input =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            t.run_once(&input);
            println!("{}: {} bytes ran without a panic", t.name, input.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            targets: names,
            inputs,
            seed,
            max_len,
            keep_going,
            crashes,
            json,
        } => {
            if inputs == 0 || max_len == 0 {
                bail!("--inputs and --max-len must be above 0");
            }
            let chosen = if names.is_empty() {
                targets::ALL.iter().collect()
            } else {
                names.iter().map(|n| find(n)).collect::<Result<Vec<_>>>()?
            };
            let opts = Options {
                inputs,
                seed,
                max_len,
                keep_going,
            };
            let mut outcomes = Vec::new();
            for t in chosen {
                let bar = ProgressBar::new(inputs).with_style(
                    ProgressStyle::with_template(
                        "{prefix:>11} {bar:30} {pos}/{len} inputs ({per_sec}, {eta} left)",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(t.name);
                let o = fuzz(t, &opts, |n| bar.set_position(n));
                bar.finish_and_clear();
                report(&o, &crashes)?;
                outcomes.push(o);
            }
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&outcomes)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let panics: u64 = outcomes.iter().map(|o| o.panics).sum();
            Ok(if panics == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn find(name: &str) -> Result<&'static fuzz::Target> {
    targets::find(name).with_context(|| {
        let names: Vec<&str> = targets::ALL.iter().map(|t| t.name).collect();
        format!("no target \"{name}\" (targets: {})", names.join(", "))
    })
}

/// One line per target, and each crash's input saved for `replay`.
fn report(o: &Outcome, dir: &std::path::Path) -> Result<()> {
    println!(
        "{:<11} {:>10} inputs in {:>8} ({:>8.0}/s)  panics {} ({} distinct)  RSS {} → max {} MiB  heap {:.1} → max {:.1} MiB",
        o.target,
        o.inputs,
        human(Duration::from_secs_f64(o.seconds)),
        o.inputs_per_sec(),
        o.panics,
        o.crashes.len(),
        o.rss_warm_kib / 1024,
        o.rss_max_kib / 1024,
        o.heap_warm_kib as f64 / 1024.0,
        o.heap_max_kib as f64 / 1024.0,
    );
    if o.crashes.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for c in &o.crashes {
        let path = dir.join(format!("{}-seed{}-input{}.bin", o.target, o.seed, c.index));
        std::fs::write(&path, &c.input).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "  input {}: {}\n  saved: {} (glass-fuzz replay {} {})",
            c.index,
            c.message,
            path.display(),
            o.target,
            path.display()
        );
    }
    Ok(())
}
