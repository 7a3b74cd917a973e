//! The `glass` binary: parse arguments, set up logging, run a command, and
//! turn an error into a message and a non-zero exit code.

use std::process::ExitCode;

use clap::Parser;
use harness::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// Whether a command running in `mode` needs namespaces: required (link),
/// wanted (auto: it falls back to proxy mode), or not at all.
fn link_needed(mode: harness::topology::Mode) -> Option<bool> {
    match mode {
        harness::topology::Mode::Proxy => None,
        harness::topology::Mode::Link => Some(true),
        harness::topology::Mode::Auto => Some(false),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Link mode needs namespaces: an unprivileged user enters a user namespace
    // now, while the process still has a single thread.
    let needs_link = match &cli.command {
        Command::Shell(_) | Command::Bench(harness::cli::BenchCommand::Link(_)) => Some(true),
        // `glass run` falls back to proxy mode unless link mode was asked for.
        Command::Check(args) if !args.is_results() => link_needed(args.mode),
        // Virtual time crosses no real network.
        Command::Run(args) if args.clock == Some(harness::scenario::ClockKind::Virtual) => None,
        Command::Run(args) => link_needed(args.mode),
        Command::Soak(args) => link_needed(args.mode),
        _ => None,
    };
    if let Some(required) = needs_link
        && let Err(e) = netem::adapters::netns::ensure_privilege()
        && required
    {
        eprintln!("glass: {e}");
        return ExitCode::from(2);
    }
    harness::runtime::raise_open_files_limit();
    let level = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let result = match &cli.command {
        Command::Profile(cmd) => harness::commands::profile::run(cmd).map(|()| 0),
        Command::Run(args) if args.plan.is_some() => {
            harness::commands::sweep::run_index(args).map(i32::from)
        }
        Command::Run(args) => harness::commands::run::run(args).map(|_| 0),
        Command::Sweep(harness::cli::SweepCommand::Plan(args)) => {
            harness::commands::sweep::plan(args).map(|()| 0)
        }
        Command::Check(args) => harness::commands::check::run(args),
        Command::Compare(args) => harness::commands::check::compare(args).map(|()| 0),
        Command::Report(args) => harness::commands::report::run(args).map(|()| 0),
        Command::Shell(args) => harness::commands::shell::run(args),
        Command::Proxy(cmd) => harness::commands::proxy::run(cmd).map(|()| 0),
        Command::Soak(args) => harness::commands::soak::run(args),
        Command::Serve(args) => harness::commands::serve::run(args).map(|()| 0),
        Command::Bench(harness::cli::BenchCommand::Link(args)) => {
            harness::commands::bench::run(args).map(|()| 0)
        }
        Command::Bench(harness::cli::BenchCommand::Virtual(args)) => {
            harness::commands::bench_virtual::run(args).map(|()| 0)
        }
        Command::Bench(harness::cli::BenchCommand::Tcp(args)) => {
            harness::commands::bench_tcp::run(args).map(|()| 0)
        }
        Command::Bench(harness::cli::BenchCommand::Relay(args)) => {
            harness::commands::bench_relay::run(args).map(|()| 0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("glass: {e:#}");
            ExitCode::from(2)
        }
    }
}
