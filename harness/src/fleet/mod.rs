//! A fleet of light viewers: many players of one stream in one process,
//! each keeping only what the many-viewers figures need (DESIGN.md, "Many
//! viewers"): when it joined and saw its first frame, capture → arrival of
//! each video frame inside a measurement window, freezes by the webrtc-stats
//! rule applied to arrivals, and frames that never came. No player model
//! and no per-frame files: per-viewer percentiles, and the distribution of
//! those across viewers, are the figures (a pooled histogram alone would
//! hide one starved viewer among a thousand).
//!
//! `config`: the scenario's `viewers` table and the join schedule; `log`:
//! what one viewer keeps and the figures across viewers; `run`: the
//! viewers of a run, started and gathered.

mod config;
mod log;
mod run;

pub use config::{Arrival, ArrivalKind, MAX_VIEWERS, Viewers, ViewersFile};
pub use log::{FleetSummary, ViewerFigures, ViewerLog, ViewersReport, Window, quantile, summarize};
pub use run::{Dial, Running, check_open_files, start};
