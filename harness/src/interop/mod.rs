//! Peers Glass did not write, run against Glass's relay and clients to
//! check them (ffmpeg, nginx-rtmp): external programs, not protocols.

pub mod ffmpeg;
pub mod nginx;
