//! The bottleneck: a bounded queue in front of a link of limited capacity
//! (a constant rate or a mahimahi trace), with drop-tail or CoDel, and outages.
//!
//! Service is computed lazily but exactly: `advance(until)` starts every
//! transmission whose start instant is at or before `until`, in time order, so
//! the result does not depend on how often the caller polls.

use std::sync::Arc;
use std::time::Duration;

use crate::codel::{CoDel, Fifo, Queued};
use crate::time::Time;
use crate::trace::{Trace, TraceCursor};
use crate::units::{BitRate, QueueLimit};

/// The link's capacity.
#[derive(Clone, Debug, PartialEq)]
pub enum Capacity {
    /// No rate limit: packets pass at once (but still queue during a held outage).
    Unlimited,
    Rate(BitRate),
    Trace(Arc<Trace>),
}

impl Capacity {
    /// Mean capacity in bit/s, if limited.
    pub fn mean_bps(&self) -> Option<f64> {
        match self {
            Capacity::Unlimited => None,
            Capacity::Rate(r) => Some(r.bits_per_sec() as f64),
            Capacity::Trace(t) => Some(t.mean_rate_bps()),
        }
    }
}

/// Queue management.
#[derive(Clone, Debug, PartialEq)]
pub enum Aqm {
    DropTail,
    CoDel {
        target: Duration,
        interval: Duration,
    },
}

/// A bottleneck's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BottleneckSpec {
    pub capacity: Capacity,
    pub limit: QueueLimit,
    pub aqm: Aqm,
    /// Bytes added to each packet's size for serialisation (framing, headers).
    pub overhead: u32,
}

impl Default for BottleneckSpec {
    fn default() -> Self {
        BottleneckSpec {
            capacity: Capacity::Unlimited,
            limit: QueueLimit::default(),
            aqm: Aqm::DropTail,
            overhead: 0,
        }
    }
}

/// What an outage does to traffic.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutageMode {
    /// The link is cut: every packet whose transmission would start during the
    /// outage is lost (arrivals, and the queue draining into the void).
    Drop,
    /// The link pauses: packets wait in the queue (up to its limit) and leave
    /// when it comes back, as a radio link with deep buffers does.
    Hold,
}

/// Why the bottleneck discarded a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    Aqm,
    Outage,
}

/// What comes out of the bottleneck.
#[derive(Debug)]
pub enum Departure<T> {
    /// Serialised on the link from `start` until `finish`.
    Sent { item: T, start: Time, finish: Time },
    Dropped {
        item: T,
        at: Time,
        reason: DropReason,
    },
}

/// The bottleneck of one link direction.
#[derive(Debug)]
pub struct Bottleneck<T> {
    capacity: Capacity,
    cursor: TraceCursor,
    limit: QueueLimit,
    overhead: u64,
    codel: Option<CoDel>,
    queue: Fifo<T>,
    busy_until: Time,
    outage: Option<OutageMode>,
}

impl<T> Bottleneck<T> {
    pub fn new(spec: &BottleneckSpec) -> Self {
        let mut b = Bottleneck {
            capacity: Capacity::Unlimited,
            cursor: TraceCursor::new(),
            limit: spec.limit,
            overhead: 0,
            codel: None,
            queue: Fifo::new(),
            busy_until: Time::ZERO,
            outage: None,
        };
        b.set_spec(spec);
        b
    }

    /// Applies a new configuration; queued packets stay. A trace restarts from
    /// its beginning at the next opportunity after now.
    pub fn set_spec(&mut self, spec: &BottleneckSpec) {
        if self.capacity != spec.capacity {
            self.cursor = TraceCursor::new();
        }
        self.capacity = spec.capacity.clone();
        self.limit = spec.limit;
        self.overhead = u64::from(spec.overhead);
        self.codel = match spec.aqm {
            Aqm::DropTail => None,
            Aqm::CoDel { target, interval } => match self.codel.take() {
                Some(c) => Some(c),
                None => Some(CoDel::new(target, interval)),
            },
        };
    }

    /// Starts (`Some`) or ends (`None`) an outage at `now`. Call after
    /// `advance` up to just before `now`.
    pub fn set_outage(&mut self, now: Time, outage: Option<OutageMode>) {
        if self.outage == Some(OutageMode::Hold) && outage != Some(OutageMode::Hold) {
            // Nothing was transmitted while held; service resumes now.
            self.busy_until = self.busy_until.max(now);
        }
        self.outage = outage;
    }

    pub fn queued_packets(&self) -> usize {
        self.queue.len()
    }

    pub fn queued_bytes(&self) -> u64 {
        self.queue.bytes()
    }

    fn would_overflow(&self, bytes: u64) -> bool {
        match self.limit {
            QueueLimit::Packets(n) => self.queue.len() >= n as usize,
            QueueLimit::Bytes(b) => self.queue.bytes() + bytes > b.bytes(),
            QueueLimit::Time(d) => match self.capacity.mean_bps() {
                Some(bps) => {
                    let backlog = (self.queue.bytes() + bytes) as f64 * 8.0 / bps;
                    backlog > d.get().as_secs_f64()
                }
                // Without a rate a queue drains at once; a held outage is then
                // bounded by the validation (a time limit needs a capacity).
                None => false,
            },
        }
    }

    /// A packet of `bytes` arrives at `now` (after `advance(now)`).
    #[inline]
    pub fn enqueue(&mut self, now: Time, item: T, bytes: u64, out: &mut impl FnMut(Departure<T>)) {
        // Fast path: an idle link with an empty queue and no outage starts
        // the packet at once, exactly as a push and a dequeue would.
        if self.queue.is_empty() && self.outage.is_none() && self.busy_until <= now {
            let finish = match &self.capacity {
                Capacity::Unlimited => Some(now),
                Capacity::Rate(r) => Some(now + r.transmit_time(bytes + self.overhead)),
                Capacity::Trace(_) => None,
            };
            if let Some(finish) = finish {
                if let Some(codel) = &mut self.codel {
                    codel.on_direct_send();
                }
                self.busy_until = finish;
                out(Departure::Sent {
                    item,
                    start: now,
                    finish,
                });
                return;
            }
        }
        if self.would_overflow(bytes) {
            out(Departure::Dropped {
                item,
                at: now,
                reason: DropReason::QueueFull,
            });
            return;
        }
        self.queue.push(Queued {
            item,
            enqueued: now,
            bytes,
        });
        self.advance(now, out);
    }

    /// When the head of the queue would start service, if it can.
    pub fn next_start(&self) -> Option<Time> {
        if self.outage == Some(OutageMode::Hold) {
            return None;
        }
        let head = self.queue.front()?;
        let ready = head.enqueued.max(self.busy_until);
        Some(match &self.capacity {
            Capacity::Trace(t) => self.cursor.peek_start(t, ready),
            _ => ready,
        })
    }

    /// Starts every transmission whose start instant is at or before `until`.
    #[inline]
    pub fn advance(&mut self, until: Time, out: &mut impl FnMut(Departure<T>)) {
        // The common case on a link that keeps up: nothing waits.
        if self.queue.is_empty() {
            return;
        }
        self.serve(until, out);
    }

    fn serve(&mut self, until: Time, out: &mut impl FnMut(Departure<T>)) {
        while let Some(start) = self.next_start() {
            if start > until {
                break;
            }
            let popped = match &mut self.codel {
                Some(codel) => codel.dequeue(start, &mut self.queue, |q| {
                    out(Departure::Dropped {
                        item: q.item,
                        at: start,
                        reason: DropReason::Aqm,
                    })
                }),
                None => self.queue.pop(),
            };
            let Some(q) = popped else { break };
            let ready = q.enqueued.max(self.busy_until);
            let size = q.bytes + self.overhead;
            let (start, finish) = match &self.capacity {
                Capacity::Unlimited => (start, start),
                Capacity::Rate(r) => (start, start + r.transmit_time(size)),
                Capacity::Trace(t) => self.cursor.serve(t, ready, size),
            };
            self.busy_until = finish;
            if self.outage == Some(OutageMode::Drop) {
                out(Departure::Dropped {
                    item: q.item,
                    at: start,
                    reason: DropReason::Outage,
                });
            } else {
                out(Departure::Sent {
                    item: q.item,
                    start,
                    finish,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_spec(mbps: u64, limit: QueueLimit) -> BottleneckSpec {
        BottleneckSpec {
            capacity: Capacity::Rate(BitRate::from_bits_per_sec(mbps * 1_000_000)),
            limit,
            aqm: Aqm::DropTail,
            overhead: 0,
        }
    }

    fn collect(
        b: &mut Bottleneck<u32>,
        arrivals: &[(Time, u32)],
        until: Time,
    ) -> Vec<Departure<u32>> {
        let mut out = Vec::new();
        for &(t, id) in arrivals {
            b.advance(t, &mut |d| out.push(d));
            b.enqueue(t, id, 1250, &mut |d| out.push(d));
        }
        b.advance(until, &mut |d| out.push(d));
        out
    }

    #[test]
    fn serialises_back_to_back_at_the_rate() {
        // 1250 B at 10 Mbit/s = 1 ms each.
        let mut b = Bottleneck::new(&rate_spec(10, QueueLimit::Packets(100)));
        let arrivals: Vec<(Time, u32)> = (0..5).map(|i| (Time::ZERO, i)).collect();
        let out = collect(&mut b, &arrivals, Time::from_secs_f64(1.0));
        let finishes: Vec<u64> = out
            .iter()
            .map(|d| match d {
                Departure::Sent { finish, .. } => finish.as_nanos() / 1_000_000,
                _ => panic!("unexpected drop"),
            })
            .collect();
        assert_eq!(finishes, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn drop_tail_at_the_limit() {
        let mut b = Bottleneck::new(&rate_spec(10, QueueLimit::Packets(3)));
        let arrivals: Vec<(Time, u32)> = (0..10).map(|i| (Time::ZERO, i)).collect();
        let out = collect(&mut b, &arrivals, Time::from_secs_f64(1.0));
        let dropped = out
            .iter()
            .filter(|d| {
                matches!(
                    d,
                    Departure::Dropped {
                        reason: DropReason::QueueFull,
                        ..
                    }
                )
            })
            .count();
        // One in service plus three queued; six dropped.
        assert_eq!(dropped, 6);
    }

    #[test]
    fn byte_and_time_limits() {
        let mut b = Bottleneck::new(&rate_spec(
            10,
            QueueLimit::Bytes(crate::units::ByteSize::from_bytes(2500)),
        ));
        let out = collect(
            &mut b,
            &(0..10).map(|i| (Time::ZERO, i)).collect::<Vec<_>>(),
            Time::MAX,
        );
        assert_eq!(
            out.iter()
                .filter(|d| matches!(d, Departure::Sent { .. }))
                .count(),
            3
        );
        // 2 ms of queue at 10 Mbit/s holds two 1250-byte packets.
        let limit = QueueLimit::Time(crate::units::HumanDuration(Duration::from_millis(2)));
        let mut b = Bottleneck::new(&rate_spec(10, limit));
        let out = collect(
            &mut b,
            &(0..10).map(|i| (Time::ZERO, i)).collect::<Vec<_>>(),
            Time::MAX,
        );
        assert_eq!(
            out.iter()
                .filter(|d| matches!(d, Departure::Sent { .. }))
                .count(),
            3
        );
    }

    #[test]
    fn lazy_service_does_not_depend_on_poll_frequency() {
        let arrivals: Vec<(Time, u32)> = (0..200)
            .map(|i| (Time::from_micros(i as u64 * 700), i))
            .collect();
        let spec = BottleneckSpec {
            aqm: Aqm::CoDel {
                target: Duration::from_millis(5),
                interval: Duration::from_millis(100),
            },
            ..rate_spec(10, QueueLimit::Packets(1000))
        };
        let key = |d: &Departure<u32>| match d {
            Departure::Sent { item, finish, .. } => (*item, finish.as_nanos(), true),
            Departure::Dropped { item, at, .. } => (*item, at.as_nanos(), false),
        };
        let mut rare = Bottleneck::new(&spec);
        let a: Vec<_> = collect(&mut rare, &arrivals, Time::MAX)
            .iter()
            .map(key)
            .collect();
        // Same arrivals, polled every 10 µs in between.
        let mut often = Bottleneck::new(&spec);
        let mut out = Vec::new();
        let mut t = Time::ZERO;
        for &(at, id) in &arrivals {
            while t < at {
                often.advance(t, &mut |d| out.push(d));
                t = t + Duration::from_micros(10);
            }
            often.advance(at, &mut |d| out.push(d));
            often.enqueue(at, id, 1250, &mut |d| out.push(d));
        }
        often.advance(Time::MAX, &mut |d| out.push(d));
        let b: Vec<_> = out.iter().map(key).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn outage_hold_pauses_and_drop_discards() {
        let mut b = Bottleneck::new(&rate_spec(10, QueueLimit::Packets(100)));
        let mut out = Vec::new();
        b.set_outage(Time::ZERO, Some(OutageMode::Hold));
        b.enqueue(Time::ZERO, 1, 1250, &mut |d| out.push(d));
        b.advance(Time::from_millis(50), &mut |d| out.push(d));
        assert!(out.is_empty());
        b.set_outage(Time::from_millis(50), None);
        b.advance(Time::from_millis(100), &mut |d| out.push(d));
        assert!(matches!(out[0], Departure::Sent { start, .. } if start == Time::from_millis(50)));

        let mut out = Vec::new();
        let mut b = Bottleneck::<u32>::new(&BottleneckSpec::default());
        b.set_outage(Time::ZERO, Some(OutageMode::Drop));
        b.enqueue(Time::ZERO, 1, 100, &mut |d| out.push(d));
        assert!(matches!(
            out[0],
            Departure::Dropped {
                reason: DropReason::Outage,
                ..
            }
        ));
    }
}
