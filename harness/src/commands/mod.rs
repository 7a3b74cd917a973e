//! One module per `glass` subcommand: each parses nothing (clap did) and
//! returns an error instead of exiting, so `main.rs` decides how to print it.

pub mod bench;
pub mod bench_relay;
pub mod bench_tcp;
pub mod bench_virtual;
pub mod check;
pub mod profile;
pub mod proxy;
pub mod report;
pub mod run;
pub mod serve;
pub mod shell;
pub mod soak;
pub mod sweep;
