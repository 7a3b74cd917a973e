//! Glass's UDP media protocol: the reference point for "a private UDP
//! protocol on the first mile" (SRT, RIST, vendors' own), with every
//! recovery mechanism observable and switchable.
//!
//! * Frames are split into MTU-sized packets (sequence number, frame id,
//!   fragment index/count, media timestamp, send time) — [`wire`].
//! * NACK/ARQ: gaps are asked for after a reorder tolerance, again after an
//!   RTT-based interval, never past the packet's deadline; the sender's
//!   retransmission buffer is bounded and one NACK can cost only a bounded
//!   number of packets — [`nack`].
//! * FEC: XOR rows/columns (SMPTE 2022-1 style) and Reed–Solomon — [`fec`].
//! * RED for audio (RFC 2198 style) — [`sender`], [`receiver`].
//! * GCC-like congestion control from per-packet arrival feedback (RFC 8888
//!   style) driving the encoder's bitrate; FEC overhead following the
//!   reported loss — [`cc`].
//! * SRT-named statistics — [`stats`].
//!
//! Everything is a sans-IO state machine ([`Connection`]): datagrams and
//! `now` in, datagrams, frames, events and the next wake-up out. [`sim`] runs
//! two of them over a virtual link, for tests and benchmarks; Glass's
//! harness puts them on real UDP sockets.

pub mod auth;
pub mod cc;
pub mod config;
pub mod conn;
pub mod error;
pub mod fec;
pub mod nack;
pub mod receiver;
pub mod sender;
pub mod seq;
pub mod sim;
pub mod stats;
pub mod wire;

pub use auth::{Admission, Admitted, Gate};
pub use config::{CcMode, Config, FecConfig};
pub use conn::{ConnStats, Connection, Event, Refusal};
pub use error::{ConfigError, ConnError, WireError};
pub use receiver::InFrame;
pub use sender::OutFrame;
pub use stats::{Percentiles, ReceiverStats, SenderStats};
pub use wire::Role;
