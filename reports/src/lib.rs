//! Turning Glass's results into what people and machines read: text tables,
//! JSON, and (with the runner) CSV, plots and HTML.

pub mod gate;
pub mod plots;
pub mod profile_check;
pub mod stats;
