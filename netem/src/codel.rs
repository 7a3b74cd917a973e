//! CoDel active queue management, as specified in RFC 8289 §5 (pseudocode).
//!
//! CoDel decides at dequeue time from the sojourn time of the packet at the
//! head: once it has stayed above `target` for a whole `interval`, it drops,
//! and drops again after `interval / √count`, until the sojourn time falls.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Time;

/// RFC 8289's MAXPACKET: a queue holding at most one MTU is never "bad".
const MAX_PACKET: u64 = 1514;

/// A packet waiting in a bottleneck queue.
#[derive(Debug)]
pub(crate) struct Queued<T> {
    pub item: T,
    pub enqueued: Time,
    pub bytes: u64,
}

/// A FIFO that keeps its byte count.
#[derive(Debug)]
pub(crate) struct Fifo<T> {
    items: VecDeque<Queued<T>>,
    bytes: u64,
}

impl<T> Fifo<T> {
    pub fn new() -> Self {
        Fifo {
            items: VecDeque::new(),
            bytes: 0,
        }
    }
    pub fn push(&mut self, q: Queued<T>) {
        self.bytes += q.bytes;
        self.items.push_back(q);
    }
    pub fn pop(&mut self) -> Option<Queued<T>> {
        let q = self.items.pop_front()?;
        self.bytes -= q.bytes;
        Some(q)
    }
    pub fn front(&self) -> Option<&Queued<T>> {
        self.items.front()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// CoDel's state.
#[derive(Clone, Debug)]
pub struct CoDel {
    target: Duration,
    interval: Duration,
    first_above_time: Option<Time>,
    drop_next: Time,
    count: u32,
    lastcount: u32,
    dropping: bool,
}

impl CoDel {
    /// RFC 8289's defaults are target 5 ms, interval 100 ms.
    pub fn new(target: Duration, interval: Duration) -> Self {
        CoDel {
            target,
            interval,
            first_above_time: None,
            drop_next: Time::ZERO,
            count: 0,
            lastcount: 0,
            dropping: false,
        }
    }

    fn control_law(&self, t: Time, count: u32) -> Time {
        t + self.interval.div_f64(f64::from(count.max(1)).sqrt())
    }

    /// RFC 8289 `dodequeue`: pops the head and says whether it may be dropped.
    fn do_dequeue<T>(&mut self, now: Time, q: &mut Fifo<T>) -> Option<(Queued<T>, bool)> {
        let Some(p) = q.pop() else {
            self.first_above_time = None;
            return None;
        };
        let sojourn = now - p.enqueued;
        let mut ok_to_drop = false;
        if sojourn < self.target || q.bytes() <= MAX_PACKET {
            self.first_above_time = None;
        } else {
            match self.first_above_time {
                None => self.first_above_time = Some(now + self.interval),
                Some(t) if now >= t => ok_to_drop = true,
                Some(_) => {}
            }
        }
        Some((p, ok_to_drop))
    }

    /// A packet went straight through an empty queue: what `dequeue` would
    /// have done with a sojourn time of zero (below target, so no drop state).
    pub fn on_direct_send(&mut self) {
        self.first_above_time = None;
        self.dropping = false;
    }

    /// RFC 8289 `dequeue` at `now`: returns the packet to send, calling `drop`
    /// for each packet CoDel discards on the way.
    pub(crate) fn dequeue<T>(
        &mut self,
        now: Time,
        q: &mut Fifo<T>,
        mut drop: impl FnMut(Queued<T>),
    ) -> Option<Queued<T>> {
        let mut r = self.do_dequeue(now, q);
        let Some((_, ok)) = &r else {
            self.dropping = false;
            return None;
        };
        let ok = *ok;
        if self.dropping {
            if !ok {
                self.dropping = false;
            }
            while self.dropping && now >= self.drop_next {
                let Some((p, _)) = r.take() else { break };
                drop(p);
                self.count += 1;
                r = self.do_dequeue(now, q);
                match &r {
                    Some((_, true)) => {
                        self.drop_next = self.control_law(self.drop_next, self.count)
                    }
                    _ => self.dropping = false,
                }
            }
        } else if ok {
            if let Some((p, _)) = r.take() {
                drop(p);
            }
            r = self.do_dequeue(now, q);
            self.dropping = true;
            let delta = self.count.wrapping_sub(self.lastcount);
            self.count = 1;
            if delta > 1 && delta < u32::MAX / 2 && (now - self.drop_next) < self.interval * 16 {
                self.count = delta;
            }
            self.drop_next = self.control_law(now, self.count);
            self.lastcount = self.count;
        }
        r.map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q_with(n: u64, enqueued: Time) -> Fifo<u64> {
        let mut q = Fifo::new();
        for i in 0..n {
            q.push(Queued {
                item: i,
                enqueued,
                bytes: 1500,
            });
        }
        q
    }

    #[test]
    fn short_sojourn_never_drops() {
        let mut c = CoDel::new(Duration::from_millis(5), Duration::from_millis(100));
        let mut q = q_with(100, Time::ZERO);
        let mut drops = 0;
        for i in 0..100 {
            let now = Time::from_micros(i * 40); // sojourn grows to 4 ms < target
            assert!(c.dequeue(now, &mut q, |_| drops += 1).is_some());
        }
        assert_eq!(drops, 0);
    }

    #[test]
    fn persistent_queue_drops_after_an_interval_then_faster() {
        let mut c = CoDel::new(Duration::from_millis(5), Duration::from_millis(100));
        let mut q = Fifo::new();
        let mut drop_times = Vec::new();
        // A standing queue: every packet waits 20 ms; dequeue one per ms.
        for ms in 0..1000u64 {
            q.push(Queued {
                item: ms,
                enqueued: Time::from_millis(ms),
                bytes: 1500,
            });
            q.push(Queued {
                item: ms,
                enqueued: Time::from_millis(ms),
                bytes: 1500,
            });
            if ms >= 20 {
                let now = Time::from_millis(ms);
                let mut dropped = 0;
                c.dequeue(now, &mut q, |_| dropped += 1);
                if dropped > 0 {
                    drop_times.push(ms);
                }
            }
        }
        assert!(!drop_times.is_empty());
        // Nothing before the first interval above target has passed.
        assert!(drop_times[0] >= 120, "first drop at {}", drop_times[0]);
        // The control law shortens the gaps: later gaps are below the interval.
        let gaps: Vec<u64> = drop_times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().rev().take(3).all(|&g| g < 100), "{gaps:?}");
    }
}
