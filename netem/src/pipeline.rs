//! One direction of a link: loss → duplicate → corrupt → bottleneck → delay.
//!
//! The order follows a real path: a packet is lost or mangled, waits in the
//! bottleneck's queue, is serialised at the link rate, then propagates (with
//! jitter). Unlike netem, a lost packet is never duplicated, so each pushed
//! packet gets exactly one loss decision and the loss statistics stay exact.
//!
//! Sans-IO, in quinn's style: `push(now, ..)` puts a packet in,
//! `poll_transmit(now)` takes out what is due, `poll_timeout()` says when to
//! call again. Every release carries its exact instant, whatever the caller's
//! timer precision.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use crate::bottleneck::{Bottleneck, Departure, DropReason};
use crate::delay::{DelaySpec, DelayStage};
use crate::event::{Counters, EventKind, EventLog};
use crate::flow::{FlowFilter, FlowMeta, applies};
use crate::loss::LossStage;
use crate::packet::{Delivery, Packet, PacketId, Payload};
use crate::reorder::ReorderRule;
use crate::rng::{SeedTree, StageRng};
use crate::spec::{Change, Profile, ReorderSpec, TimedChange};
use crate::time::Time;

/// A Bernoulli trial with its own stream (duplicate, corrupt).
#[derive(Clone, Debug)]
struct Chance {
    p: f64,
    rng: StageRng,
    flows: Option<FlowFilter>,
}

/// Packets waiting for their release instant. Starts as a FIFO and turns into a
/// heap the first time a packet must overtake another (jitter that reorders,
/// the reorder rule, or flows that bypass the bottleneck).
enum ReleaseQueue<P> {
    Fifo(VecDeque<Delivery<P>>),
    Heap(BinaryHeap<Reverse<HeapEntry<P>>>, u64),
}

struct HeapEntry<P> {
    key: (Time, u64),
    delivery: Delivery<P>,
}
impl<P> PartialEq for HeapEntry<P> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl<P> Eq for HeapEntry<P> {}
impl<P> PartialOrd for HeapEntry<P> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<P> Ord for HeapEntry<P> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key.cmp(&o.key)
    }
}

impl<P> ReleaseQueue<P> {
    fn push(&mut self, d: Delivery<P>) {
        if let ReleaseQueue::Fifo(q) = self {
            if q.back().is_none_or(|b| b.released_at <= d.released_at) {
                q.push_back(d);
                return;
            }
            // Out of order: switch to a heap, keeping FIFO order among ties.
            let mut heap = BinaryHeap::with_capacity(q.len() + 1);
            let mut seq = 0;
            for d in q.drain(..) {
                heap.push(Reverse(HeapEntry {
                    key: (d.released_at, seq),
                    delivery: d,
                }));
                seq += 1;
            }
            *self = ReleaseQueue::Heap(heap, seq);
        }
        if let ReleaseQueue::Heap(h, seq) = self {
            h.push(Reverse(HeapEntry {
                key: (d.released_at, *seq),
                delivery: d,
            }));
            *seq += 1;
        }
    }

    fn peek_time(&self) -> Option<Time> {
        match self {
            ReleaseQueue::Fifo(q) => q.front().map(|d| d.released_at),
            ReleaseQueue::Heap(h, _) => h.peek().map(|e| e.0.key.0),
        }
    }

    fn pop_due(&mut self, now: Time) -> Option<Delivery<P>> {
        if self.peek_time()? > now {
            return None;
        }
        match self {
            ReleaseQueue::Fifo(q) => q.pop_front(),
            ReleaseQueue::Heap(h, _) => h.pop().map(|e| e.0.delivery),
        }
    }

    fn len(&self) -> usize {
        match self {
            ReleaseQueue::Fifo(q) => q.len(),
            ReleaseQueue::Heap(h, _) => h.len(),
        }
    }
}

/// Everything after the bottleneck, split out so the bottleneck's departure
/// callback can borrow it while the bottleneck itself is borrowed.
struct Downstream<P> {
    delay: DelayStage,
    delay_flows: Option<FlowFilter>,
    reorder_flows: Option<FlowFilter>,
    output: ReleaseQueue<P>,
    counters: Counters,
    events: Option<EventLog>,
}

impl<P: Payload> Downstream<P> {
    #[inline]
    fn event(&mut self, at: Time, id: PacketId, kind: EventKind) {
        if let Some(log) = &mut self.events {
            log.push(at, id, kind);
        }
    }

    /// A packet leaves the bottleneck (or bypasses it) at `at`.
    #[inline]
    fn depart(&mut self, at: Time, p: Packet<P>) {
        let release = if applies(&self.delay_flows, &p.flow) {
            let (release, early) = self
                .delay
                .release(at, applies(&self.reorder_flows, &p.flow));
            if early {
                self.counters.reordered += 1;
                self.event(at, p.id, EventKind::SentEarly);
            }
            release
        } else {
            at
        };
        self.output.push(Delivery {
            id: p.id,
            original: p.original,
            flow: p.flow,
            pushed_at: p.pushed_at,
            released_at: release,
            payload: p.payload,
        });
    }

    fn on_departure(&mut self, d: Departure<Packet<P>>) {
        match d {
            Departure::Sent { item, finish, .. } => self.depart(finish, item),
            Departure::Dropped { item, at, reason } => {
                let kind = match reason {
                    DropReason::QueueFull => {
                        self.counters.dropped_queue += 1;
                        EventKind::DroppedQueue
                    }
                    DropReason::Aqm => {
                        self.counters.dropped_aqm += 1;
                        EventKind::DroppedAqm
                    }
                    DropReason::Outage => {
                        self.counters.dropped_outage += 1;
                        EventKind::DroppedOutage
                    }
                };
                self.event(at, item.id, kind);
            }
        }
    }
}

/// One link direction's impairment pipeline.
pub struct Pipeline<P> {
    seeds: SeedTree,
    loss: Option<LossStage>,
    loss_flows: Option<FlowFilter>,
    duplicate: Option<Chance>,
    corrupt: Option<Chance>,
    bottleneck: Bottleneck<Packet<P>>,
    bottleneck_flows: Option<FlowFilter>,
    down: Downstream<P>,
    timeline: Vec<TimedChange>,
    next_change: usize,
    next_id: u64,
    now: Time,
    highest_original_delivered: Option<PacketId>,
}

impl<P: Payload> Pipeline<P> {
    /// Builds the pipeline. `seeds` is this direction's node in the scenario's
    /// seed tree; each stage draws from its own child stream.
    pub fn new(profile: &Profile, seeds: SeedTree) -> Self {
        let chance = |s: &Option<crate::spec::Staged<f64>>, label: &str| {
            s.as_ref().map(|s| Chance {
                p: s.spec,
                rng: seeds.child(label).rng(),
                flows: s.flows.clone(),
            })
        };
        let delay_spec = profile
            .delay
            .as_ref()
            .map(|d| d.spec.clone())
            .unwrap_or_else(|| DelaySpec::constant(Duration::ZERO));
        let mut delay = DelayStage::new(&delay_spec, seeds.child("delay").rng());
        if let Some(r) = &profile.reorder {
            delay.set_reorder(
                Some(ReorderRule::new(r.spec.p, r.spec.gap)),
                seeds.child("reorder").rng(),
            );
        }
        let mut timeline = profile.timeline.clone();
        timeline.sort_by_key(|c| c.at);
        Pipeline {
            seeds,
            loss: profile
                .loss
                .as_ref()
                .map(|l| LossStage::new(l.spec.clone(), seeds.child("loss").rng())),
            loss_flows: profile.loss.as_ref().and_then(|l| l.flows.clone()),
            duplicate: chance(&profile.duplicate, "duplicate"),
            corrupt: chance(&profile.corrupt, "corrupt"),
            bottleneck: Bottleneck::new(
                &profile
                    .bottleneck
                    .as_ref()
                    .map(|b| b.spec.clone())
                    .unwrap_or_default(),
            ),
            bottleneck_flows: profile.bottleneck.as_ref().and_then(|b| b.flows.clone()),
            down: Downstream {
                delay,
                delay_flows: profile.delay.as_ref().and_then(|d| d.flows.clone()),
                reorder_flows: profile.reorder.as_ref().and_then(|r| r.flows.clone()),
                output: ReleaseQueue::Fifo(VecDeque::new()),
                counters: Counters::default(),
                events: None,
            },
            timeline,
            next_change: 0,
            next_id: 0,
            now: Time::ZERO,
            highest_original_delivered: None,
        }
    }

    /// Keeps the last `capacity` events for `poll_event` (off by default: the
    /// counters are always kept, the log costs time).
    pub fn record_events(&mut self, capacity: usize) {
        self.down.events = Some(EventLog::new(capacity));
    }

    /// Events that did not fit in the log and were discarded.
    pub fn events_overflowed(&self) -> u64 {
        self.down.events.as_ref().map_or(0, |l| l.overflowed)
    }

    pub fn poll_event(&mut self) -> Option<crate::event::Event> {
        self.down.events.as_mut()?.pop()
    }

    pub fn counters(&self) -> &Counters {
        &self.down.counters
    }

    /// Packets inside the pipeline (queued or propagating).
    pub fn in_flight(&self) -> usize {
        self.bottleneck.queued_packets() + self.down.output.len()
    }

    /// Bytes waiting in the bottleneck queue.
    pub fn queued_bytes(&self) -> u64 {
        self.bottleneck.queued_bytes()
    }

    /// Brings the pipeline to `now`: timeline changes and transmissions due.
    /// Time never goes back: an earlier `now` is treated as the latest seen.
    pub fn handle_timeout(&mut self, now: Time) {
        let now = now.max(self.now);
        self.now = now;
        while let Some(change) = self.timeline.get(self.next_change) {
            if change.at > now {
                break;
            }
            let at = change.at;
            // Transmissions starting strictly before the change see the old state.
            self.run_bottleneck(Time::from_nanos(at.as_nanos().saturating_sub(1)));
            let change = self.timeline[self.next_change].change.clone();
            self.apply(at, change);
            self.next_change += 1;
        }
        self.run_bottleneck(now);
    }

    fn run_bottleneck(&mut self, until: Time) {
        let down = &mut self.down;
        self.bottleneck
            .advance(until, &mut |d| down.on_departure(d));
    }

    fn apply(&mut self, at: Time, change: Change) {
        match change {
            Change::Loss(None) => self.loss = None,
            Change::Loss(Some(model)) => match &mut self.loss {
                Some(stage) => stage.set_model(model),
                None => self.loss = Some(LossStage::new(model, self.seeds.child("loss").rng())),
            },
            Change::Delay(spec) => self.down.delay.set_spec(&spec),
            Change::Reorder(r) => self.down.delay.set_reorder(
                r.map(|ReorderSpec { p, gap }| ReorderRule::new(p, gap)),
                self.seeds
                    .child("reorder")
                    .child(&at.as_nanos().to_string())
                    .rng(),
            ),
            Change::Duplicate(p) => self.set_chance(true, p),
            Change::Corrupt(p) => self.set_chance(false, p),
            Change::Bottleneck(spec) => self.bottleneck.set_spec(&spec),
            Change::OutageStart(mode) => self.bottleneck.set_outage(at, Some(mode)),
            Change::OutageEnd => self.bottleneck.set_outage(at, None),
        }
    }

    fn set_chance(&mut self, duplicate: bool, p: f64) {
        let (slot, label) = if duplicate {
            (&mut self.duplicate, "duplicate")
        } else {
            (&mut self.corrupt, "corrupt")
        };
        match slot {
            Some(c) => c.p = p,
            None => {
                *slot = Some(Chance {
                    p,
                    rng: self.seeds.child(label).rng(),
                    flows: None,
                })
            }
        }
    }

    /// A packet enters the link at `now`. Returns its id.
    pub fn push(&mut self, now: Time, flow: FlowMeta, payload: P) -> PacketId {
        self.handle_timeout(now);
        let now = self.now;
        let id = PacketId(self.next_id);
        self.next_id += 1;
        let bytes = payload.len() as u64;
        let c = &mut self.down.counters;
        c.pushed += 1;
        c.bytes_pushed += bytes;
        self.down.event(now, id, EventKind::Pushed { bytes });

        if let Some(loss) = &mut self.loss
            && applies(&self.loss_flows, &flow)
        {
            let lost = loss.lose(now);
            self.down.counters.loss_met += 1;
            self.down.counters.loss_bursts = loss.bursts();
            if lost {
                self.down.counters.dropped_loss += 1;
                self.down.event(now, id, EventKind::Lost);
                return id;
            }
        }

        let packet = Packet {
            id,
            original: id,
            flow,
            pushed_at: now,
            payload,
        };
        if let Some(dup) = &mut self.duplicate
            && applies(&dup.flows, &packet.flow)
            && dup.rng.chance(dup.p)
        {
            let copy_id = PacketId(self.next_id);
            self.next_id += 1;
            self.down.counters.duplicated += 1;
            self.down
                .event(now, id, EventKind::Duplicated { copy: copy_id });
            let copy = Packet {
                id: copy_id,
                ..packet.clone()
            };
            self.forward(now, packet);
            self.forward(now, copy);
        } else {
            self.forward(now, packet);
        }
        id
    }

    /// Corrupts (maybe) and hands a packet to the bottleneck.
    #[inline]
    fn forward(&mut self, now: Time, mut packet: Packet<P>) {
        if let Some(c) = &mut self.corrupt
            && applies(&c.flows, &packet.flow)
            && c.rng.chance(c.p)
        {
            let bits = packet.payload.len() as u64 * 8;
            let bit = if bits > 0 { c.rng.below(bits) } else { 0 };
            packet.payload.flip_bit(bit as usize);
            self.down.counters.corrupted += 1;
            self.down
                .event(now, packet.id, EventKind::Corrupted { bit });
        }
        if applies(&self.bottleneck_flows, &packet.flow) {
            let bytes = packet.payload.len() as u64;
            let down = &mut self.down;
            self.bottleneck
                .enqueue(now, packet, bytes, &mut |d| down.on_departure(d));
        } else {
            self.down.depart(now, packet);
        }
    }

    /// The next packet due at `now`, if any, with its exact release instant.
    pub fn poll_transmit(&mut self, now: Time) -> Option<Delivery<P>> {
        // `push` and earlier polls already brought everything up to `self.now`.
        if now > self.now {
            self.handle_timeout(now);
        }
        let d = self.down.output.pop_due(self.now)?;
        let c = &mut self.down.counters;
        c.delivered += 1;
        c.bytes_delivered += d.payload.len() as u64;
        match self.highest_original_delivered {
            Some(h) if d.original < h => c.delivered_out_of_order += 1,
            _ => self.highest_original_delivered = Some(d.original),
        }
        let delay = d.delay();
        let ns = delay.as_nanos() as u64;
        c.delay_sum_ns = c.delay_sum_ns.saturating_add(ns);
        c.delay_max_ns = c.delay_max_ns.max(ns);
        self.down
            .event(d.released_at, d.id, EventKind::Delivered { delay });
        Some(d)
    }

    /// When to call `handle_timeout`/`poll_transmit` next; `None` when nothing
    /// is pending (push will wake the pipeline).
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.down.output.peek_time(),
            self.bottleneck.next_start(),
            self.timeline.get(self.next_change).map(|c| c.at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Applies a change now, as the timeline would (for adapters that steer a
    /// link interactively).
    pub fn reconfigure(&mut self, now: Time, change: Change) {
        self.handle_timeout(now);
        self.apply(self.now, change);
    }
}
