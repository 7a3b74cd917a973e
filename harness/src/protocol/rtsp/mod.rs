//! RTSP push ingest (issue #14), in progress: the sans-IO parts. The
//! session state machine (`session`: OPTIONS, ANNOUNCE, SETUP with
//! TCP-interleaved channels, RECORD, TEARDOWN, keep-alives, limits and
//! status codes), the ANNOUNCE's tracks (`sdp`), RTP and its sequence
//! tracking (`rtp`), the H.264 and AAC depacketizers and packetizers
//! (`h264`, `aac`), and the ingest that turns a track's packets into the
//! hub's media with wall-clock timestamps from RTCP sender reports
//! (`ingest`). Still to come: the server on the hub (a tokio edge around
//! `session` and `ingest`), UDP transport, Glass's RTSP publisher, ffmpeg
//! as an RTSP publisher, and the registry line; until then nothing runs
//! this protocol.

pub mod aac;
pub mod h264;
pub mod ingest;
pub mod rtp;
pub mod sdp;
pub mod session;
