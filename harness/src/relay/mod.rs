//! The relay's protocol-neutral core: a hub of streams that every
//! protocol's server side publishes into and plays from (`hub`), over one
//! message type (`media`). Nothing here knows a protocol; the protocols'
//! server sides live in `crate::protocol`.

pub mod hub;
pub mod media;

pub use hub::{APP, Hub, HubStats, Poisoned, RelayHop, StreamCounters, Subscription};
pub use media::{Media, StreamInfo};
