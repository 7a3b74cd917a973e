//! Glass's protocols, one folder each: its server side on the relay's hub,
//! its publisher and player clients, its settings and statistics. Only
//! these folders know a protocol crate (rml_rtmp, quinn, udpmedia).

pub mod rtmp;
pub mod udp;
pub mod uri;
