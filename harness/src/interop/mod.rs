//! Peers Glass did not write, run against Glass's relay and clients to
//! check them (ffmpeg today): external programs, not protocols.

pub mod ffmpeg;
