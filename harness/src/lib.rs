//! Glass's scenario runner and command-line tool.
//!
//! `main.rs` only parses arguments ([`cli`]) and dispatches to a command
//! module; each command returns an error instead of exiting, so the binary's
//! edge decides how to print it.

pub mod abr_metrics;
pub mod cli;
pub mod commands;
pub mod cross;
pub mod events;
pub mod faults;
pub mod fleet;
pub mod g2g;
pub mod hostile;
pub mod interop;
pub mod media;
pub mod output;
pub mod plan;
pub mod procstat;
pub mod protocol;
pub mod publisher;
pub mod redact;
pub mod relay;
pub mod runner;
pub mod runtime;
pub mod scenario;
pub mod signals;
pub mod topology;
pub mod virtual_time;
