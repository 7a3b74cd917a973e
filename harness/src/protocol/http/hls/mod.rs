//! HLS egress: the packager that turns the hub's stream into MPEG-TS or
//! fragmented-MP4 segments and a live playlist (`packager` with `ts` or
//! `fmp4`, `sps` for the init segment's picture size), the origin that
//! serves them (`origin`), and Glass's HLS player (`player`), which reads
//! segments with `demux` (TS) or `fmp4_demux`.

pub mod abr;
pub mod demux;
pub mod fmp4;
pub mod fmp4_demux;
pub mod ingest;
pub mod ladder;
pub mod origin;
pub mod packager;
pub mod player;
pub mod sps;
pub mod ts;
