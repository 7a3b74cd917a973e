//! Protocol adapters: each turns frames into its wire format and back.

pub mod ffmpeg;
pub mod quic;
pub mod rtmp;
pub mod transport;
pub mod udp;
pub mod uri;
