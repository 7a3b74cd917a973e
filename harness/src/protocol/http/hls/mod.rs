//! HLS egress: the packager that turns the hub's stream into MPEG-TS
//! segments and a live playlist (`packager`, `ts`), and Glass's HLS player
//! (`player`), which reads segments with `demux`.

pub mod demux;
pub mod origin;
pub mod packager;
pub mod player;
pub mod ts;
