//! The media model: what the publisher's camera and encoder produce, and what
//! the player does with it (DESIGN.md, "Media model").

pub mod abr;
pub mod encoder;
pub mod flv;
pub mod frame;
pub mod freeze;
pub mod player;
pub mod source;
pub mod tag;
pub mod wallclock;
