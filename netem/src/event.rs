//! Ground truth: counters of every decision, and an optional event log.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::packet::PacketId;
use crate::time::Time;

/// What happened to packets in one link direction. Every packet pushed or
/// duplicated ends as exactly one of: delivered, a drop, or still in flight:
/// `pushed + duplicated = delivered + dropped() + in_flight`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub pushed: u64,
    pub bytes_pushed: u64,
    /// Packets the loss model decided on (all pushed, unless its `flows`
    /// filter leaves some out): the denominator of the realised loss rate.
    #[serde(default)]
    pub loss_met: u64,
    /// Dropped by the loss model.
    pub dropped_loss: u64,
    /// Runs of consecutive packets dropped by the loss model.
    pub loss_bursts: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    /// Dropped because the bottleneck queue was full.
    pub dropped_queue: u64,
    /// Dropped by CoDel.
    pub dropped_aqm: u64,
    /// Dropped by an outage in drop mode.
    pub dropped_outage: u64,
    /// Sent ahead of the delay by netem's reorder rule.
    pub reordered: u64,
    pub delivered: u64,
    pub bytes_delivered: u64,
    /// Delivered after a packet pushed later (jitter or the reorder rule).
    pub delivered_out_of_order: u64,
    /// Sum and maximum of push → release over delivered packets, in ns: the
    /// realised one-way delay of a live run, with no per-packet record.
    #[serde(default)]
    pub delay_sum_ns: u64,
    #[serde(default)]
    pub delay_max_ns: u64,
}

impl Counters {
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_queue + self.dropped_aqm + self.dropped_outage
    }

    /// Adds `other`'s counts: two pipelines of one mile (a protocol's RTP
    /// and RTCP ports, say) as one.
    pub fn absorb(&mut self, other: &Counters) {
        let Counters {
            pushed,
            bytes_pushed,
            loss_met,
            dropped_loss,
            loss_bursts,
            duplicated,
            corrupted,
            dropped_queue,
            dropped_aqm,
            dropped_outage,
            reordered,
            delivered,
            bytes_delivered,
            delivered_out_of_order,
            delay_sum_ns,
            delay_max_ns,
        } = other;
        self.pushed += pushed;
        self.bytes_pushed += bytes_pushed;
        self.loss_met += loss_met;
        self.dropped_loss += dropped_loss;
        self.loss_bursts += loss_bursts;
        self.duplicated += duplicated;
        self.corrupted += corrupted;
        self.dropped_queue += dropped_queue;
        self.dropped_aqm += dropped_aqm;
        self.dropped_outage += dropped_outage;
        self.reordered += reordered;
        self.delivered += delivered;
        self.bytes_delivered += bytes_delivered;
        self.delivered_out_of_order += delivered_out_of_order;
        self.delay_sum_ns += delay_sum_ns;
        self.delay_max_ns = self.delay_max_ns.max(*delay_max_ns);
    }
}

/// One decision about one packet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: Time,
    pub packet: PacketId,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Pushed {
        bytes: u64,
    },
    Lost,
    Duplicated {
        copy: PacketId,
    },
    Corrupted {
        bit: u64,
    },
    DroppedQueue,
    DroppedAqm,
    DroppedOutage,
    /// Sent ahead of the delay by the reorder rule.
    SentEarly,
    Delivered {
        delay: Duration,
    },
}

/// A bounded event log: a caller that never drains it loses the oldest events
/// (and can see how many), never memory.
#[derive(Debug)]
pub(crate) struct EventLog {
    buf: VecDeque<Event>,
    cap: usize,
    pub(crate) overflowed: u64,
}

impl EventLog {
    pub(crate) fn new(cap: usize) -> Self {
        EventLog {
            buf: VecDeque::new(),
            cap: cap.max(1),
            overflowed: 0,
        }
    }

    pub(crate) fn push(&mut self, at: Time, packet: PacketId, kind: EventKind) {
        if self.buf.len() == self.cap {
            self.buf.pop_front();
            self.overflowed += 1;
        }
        self.buf.push_back(Event { at, packet, kind });
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.buf.pop_front()
    }
}
