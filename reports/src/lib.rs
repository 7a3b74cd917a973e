//! Turning Glass's results into what people and machines read: text tables,
//! JSON, plots and the HTML report.

pub mod decision;
pub mod gate;
pub mod html;
pub mod merge;
pub mod plots;
pub mod profile_check;
pub mod results;
pub mod soak;
pub mod stats;
