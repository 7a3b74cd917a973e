//! Protocol adapters: each turns frames into its wire format and back.

pub mod ffmpeg;
pub mod rtmp;
