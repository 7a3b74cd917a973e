//! What flows through a pipeline: packets with an id, flow metadata and a payload.

use serde::{Deserialize, Serialize};

use crate::flow::FlowMeta;
use crate::time::Time;

/// Identifies one packet within one link direction: the push order, starting at
/// 0. A duplicate gets an id of its own and remembers its original.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct PacketId(pub u64);

/// The bytes (or a stand-in) a packet carries.
///
/// The engine needs the length (for rate and queue limits), a copy (for
/// duplication) and a way to flip one bit (for corruption).
pub trait Payload: Clone {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Flips bit `bit` (0 = most significant bit of the first byte).
    fn flip_bit(&mut self, bit: usize);
}

impl Payload for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn flip_bit(&mut self, bit: usize) {
        if let Some(b) = self.get_mut(bit / 8) {
            *b ^= 0x80 >> (bit % 8);
        }
    }
}

impl Payload for Box<[u8]> {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn flip_bit(&mut self, bit: usize) {
        if let Some(b) = self.get_mut(bit / 8) {
            *b ^= 0x80 >> (bit % 8);
        }
    }
}

/// A payload with a size and no bytes: virtual-time checks and benchmarks push
/// millions of these without allocating. Corruption is counted but has nothing
/// to flip.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Synthetic(pub u32);

impl Payload for Synthetic {
    fn len(&self) -> usize {
        self.0 as usize
    }
    fn flip_bit(&mut self, _bit: usize) {}
}

/// A packet inside the engine.
#[derive(Clone, Debug)]
pub struct Packet<P> {
    pub id: PacketId,
    /// For a duplicate, the packet it copies; otherwise its own id.
    pub original: PacketId,
    pub flow: FlowMeta,
    /// When it entered the pipeline.
    pub pushed_at: Time,
    pub payload: P,
}

/// A packet leaving the pipeline, with the instant the link releases it.
#[derive(Clone, Debug)]
pub struct Delivery<P> {
    pub id: PacketId,
    pub original: PacketId,
    pub flow: FlowMeta,
    pub pushed_at: Time,
    /// The exact release instant, even if `poll_transmit` was called later.
    pub released_at: Time,
    pub payload: P,
}

impl<P> Delivery<P> {
    /// One-way delay through the link: release minus push.
    pub fn delay(&self) -> std::time::Duration {
        self.released_at - self.pushed_at
    }
}
