//! Glass's impairment engine: a deterministic, sans-IO model of one direction
//! of a network link.
//!
//! Packets go in with the current instant ([`Pipeline::push`]) and come out with
//! their release instant ([`Pipeline::poll_transmit`]); [`Pipeline::poll_timeout`]
//! says when to call again. Time is always passed in ([`Time`]), never read, and
//! every random choice comes from a seeded stream ([`SeedTree`]), so the same
//! seed gives the same decisions packet for packet, and tests run in virtual
//! time without sleeping.
//!
//! A profile is configured as TOML ([`config`]), as a netem line
//! ([`netem_line`]) or by preset name ([`presets`]); [`check`] runs one on
//! synthetic traffic and compares what it did with what it was asked.

#[cfg(feature = "adapters")]
pub mod adapters;
pub mod bottleneck;
pub mod check;
mod codel;
pub mod config;
pub mod delay;
pub mod error;
pub mod event;
pub mod flow;
pub mod jitter;
pub mod locate;
pub mod loss;
pub mod netem_line;
pub mod packet;
pub mod pipeline;
pub mod presets;
pub mod reorder;
pub mod resolve;
pub mod rng;
pub mod spec;
pub mod time;
pub mod trace;
pub mod units;

pub use config::{LinkProfiles, ProfileConfig};
pub use error::{ConfigError, UnitError};
pub use event::{Counters, Event, EventKind};
pub use flow::{FlowFilter, FlowMeta, Protocol};
pub use locate::locate;
pub use packet::{Delivery, PacketId, Payload, Synthetic};
pub use pipeline::Pipeline;
pub use resolve::resolve;
pub use rng::SeedTree;
pub use spec::Profile;
pub use time::{Clock, Time};
