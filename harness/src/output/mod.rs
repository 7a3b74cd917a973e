//! What `glass run` writes and prints: results.json (`records`), the
//! frame and second series (`series`) and the summary tables (`tables`).

pub mod records;
pub mod series;
pub mod tables;
