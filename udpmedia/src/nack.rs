//! ARQ: the receiver's list of missing packets (when to ask, when to stop)
//! and the sender's bounded retransmission buffer (what one request may
//! cost).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use netem::Time;

/// Missing packets tracked at most; a larger gap is counted and forgotten.
pub const MAX_MISSING: usize = 4096;
/// Requests for one packet at most.
pub const MAX_NACKS_PER_PACKET: u32 = 8;

#[derive(Clone, Debug)]
pub struct Missing {
    pub detected: Time,
    /// Asked for no earlier than this (reordering tolerance).
    eligible: Time,
    /// Past this the packet is of no use: stop asking.
    pub deadline: Time,
    last_nack: Option<Time>,
    nacks: u32,
    /// The loss event (one gap) it belongs to.
    event: u64,
}

/// A loss event: the packets one gap revealed, recovered when all of them are.
struct LossEvent {
    remaining: u64,
    /// The slowest recovery so far.
    slowest: Duration,
    failed: bool,
}

/// Finished events kept for the statistics at most.
const MAX_FINISHED: usize = 1 << 20;

/// The receiver's view of what is missing.
#[derive(Default)]
pub struct LossTracker {
    missing: BTreeMap<u64, Missing>,
    events: BTreeMap<u64, LossEvent>,
    next_event: u64,
    /// Finished loss events: (time to recover all its packets, recovered?).
    finished: Vec<(Duration, bool)>,
    /// Gaps too large to track (their packets were never asked for).
    pub untracked: u64,
}

/// A missing packet that arrived (an original late, a retransmission, or
/// rebuilt by FEC): `delay` after it was found missing, asked `nacks` times.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrived {
    pub delay: Duration,
    pub nacks: u32,
}

impl LossTracker {
    pub fn len(&self) -> usize {
        self.missing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
    }

    /// `from..to` went missing (found at `now`); they are asked for after
    /// `reorder` unless more packets arrive first, until `deadline`.
    pub fn gap(&mut self, now: Time, from: u64, to: u64, reorder: Duration, deadline: Time) {
        let n = to.saturating_sub(from);
        let tracked = n.min(MAX_MISSING as u64);
        self.untracked += n - tracked;
        if tracked == 0 {
            return;
        }
        let event = self.next_event;
        self.next_event += 1;
        self.events.insert(
            event,
            LossEvent {
                remaining: tracked,
                slowest: Duration::ZERO,
                failed: false,
            },
        );
        for seq in to - tracked..to {
            self.missing.insert(
                seq,
                Missing {
                    detected: now,
                    eligible: now + reorder,
                    deadline,
                    last_nack: None,
                    nacks: 0,
                    event,
                },
            );
        }
        while self.missing.len() > MAX_MISSING {
            if let Some((_, m)) = self.missing.pop_first() {
                self.resolve(m.event, None);
            }
            self.untracked += 1;
        }
    }

    /// One packet of `event` recovered after `delay`, or (`None`) given up.
    fn resolve(&mut self, event: u64, delay: Option<Duration>) {
        let Some(e) = self.events.get_mut(&event) else {
            return;
        };
        e.remaining = e.remaining.saturating_sub(1);
        match delay {
            Some(d) => e.slowest = e.slowest.max(d),
            None => e.failed = true,
        }
        if e.remaining == 0 {
            if self.finished.len() < MAX_FINISHED {
                self.finished.push((e.slowest, !e.failed));
            }
            self.events.remove(&event);
        }
    }

    /// Loss events finished since the last call: (time until every packet
    /// of the gap was back, whether all of them came back).
    pub fn take_finished(&mut self) -> Vec<(Duration, bool)> {
        std::mem::take(&mut self.finished)
    }

    /// Missing packets up to `limit` (inclusive) may be asked for at once:
    /// enough later packets arrived, or the FEC that could have rebuilt them
    /// came and did not.
    pub fn eligible_through(&mut self, now: Time, limit: u64) {
        for (_, m) in self.missing.range_mut(..=limit) {
            m.eligible = m.eligible.min(now);
        }
    }

    /// `seq` arrived; `None` unless it was being waited for.
    pub fn arrived(&mut self, now: Time, seq: u64) -> Option<Arrived> {
        let m = self.missing.remove(&seq)?;
        let delay = now.saturating_since(m.detected);
        self.resolve(m.event, Some(delay));
        Some(Arrived {
            delay,
            nacks: m.nacks,
        })
    }

    /// Drops the packets whose deadline passed; returns them.
    pub fn expire(&mut self, now: Time) -> Vec<u64> {
        let gone: Vec<(u64, u64)> = self
            .missing
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(&s, m)| (s, m.event))
            .collect();
        for (seq, event) in &gone {
            self.missing.remove(seq);
            self.resolve(*event, None);
        }
        gone.into_iter().map(|(seq, _)| seq).collect()
    }

    /// The packets to ask for now: eligible, before their deadline, not
    /// asked within `retry`, asked fewer than the maximum times.
    /// `wait(seq)` says FEC will rebuild `seq` once the others arrive (not
    /// asked for while that holds).
    pub fn due(
        &mut self,
        now: Time,
        retry: Duration,
        limit: usize,
        wait: impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        let mut out = Vec::new();
        for (&seq, m) in self.missing.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if m.eligible > now || m.deadline <= now || m.nacks >= MAX_NACKS_PER_PACKET {
                continue;
            }
            if m.last_nack.is_some_and(|t| now < t + retry) {
                continue;
            }
            if wait(seq) {
                // Looked at again on the next arrival, or after `retry`.
                m.eligible = now + retry;
                continue;
            }
            m.last_nack = Some(now);
            m.nacks += 1;
            out.push(seq);
        }
        out
    }

    /// When the tracker next has something to do.
    pub fn poll_timeout(&self, retry: Duration) -> Option<Time> {
        self.missing
            .values()
            .filter(|m| m.nacks < MAX_NACKS_PER_PACKET)
            // As `due` decides: eligible, and `retry` after the last ask
            // (a packet FEC will rebuild is made eligible later, after it
            // was asked for once), or its deadline (expired then).
            .map(|m| {
                match m.last_nack {
                    None => m.eligible,
                    Some(t) => (t + retry).max(m.eligible),
                }
                .min(m.deadline)
            })
            .min()
    }
}

/// A packet the sender may be asked for again.
#[derive(Clone, Debug)]
struct Stored {
    seq: u64,
    datagram: Vec<u8>,
    first_sent: Time,
    last_sent: Time,
    retransmits: u32,
}

/// Retransmissions one NACK datagram can cause at most.
pub const MAX_RETRANSMITS_PER_NACK: usize = 64;
/// Times one packet is sent again at most.
pub const MAX_RETRANSMITS_PER_PACKET: u32 = 8;

/// The sender's recent packets, bounded by count and age.
pub struct RetransmitBuffer {
    packets: VecDeque<Stored>,
    capacity: usize,
}

impl RetransmitBuffer {
    pub fn new(capacity: usize) -> Self {
        RetransmitBuffer {
            packets: VecDeque::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    pub fn store(&mut self, now: Time, seq: u64, datagram: Vec<u8>) {
        if self.packets.len() >= self.capacity {
            self.packets.pop_front();
        }
        self.packets.push_back(Stored {
            seq,
            datagram,
            first_sent: now,
            last_sent: now,
            retransmits: 0,
        });
    }

    /// Forgets packets older than `max_age` (no longer useful to the receiver).
    pub fn expire(&mut self, now: Time, max_age: Duration) {
        while self
            .packets
            .front()
            .is_some_and(|p| now.saturating_since(p.first_sent) > max_age)
        {
            self.packets.pop_front();
        }
    }

    fn find(&mut self, seq: u64) -> Option<&mut Stored> {
        let first = self.packets.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        let p = self.packets.get_mut(i)?;
        (p.seq == seq).then_some(p)
    }

    /// The datagrams to send again for `seqs` (one NACK's worth): each
    /// packet at most once per `min_interval` and [`MAX_RETRANSMITS_PER_PACKET`]
    /// times, at most [`MAX_RETRANSMITS_PER_NACK`] in all, and only while
    /// younger than `max_age`.
    pub fn answer(
        &mut self,
        now: Time,
        seqs: impl IntoIterator<Item = u64>,
        min_interval: Duration,
        max_age: Duration,
    ) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for seq in seqs {
            if out.len() >= MAX_RETRANSMITS_PER_NACK {
                break;
            }
            let Some(p) = self.find(seq) else { continue };
            if p.retransmits >= MAX_RETRANSMITS_PER_PACKET
                || (p.retransmits > 0 && now < p.last_sent + min_interval)
                || now.saturating_since(p.first_sent) > max_age
            {
                continue;
            }
            p.retransmits += 1;
            p.last_sent = now;
            out.push((seq, p.datagram.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Time = Time::from_millis;

    #[test]
    fn a_gap_is_asked_for_after_the_reorder_tolerance_and_again_after_retry() {
        let mut t = LossTracker::default();
        t.gap(MS(100), 10, 12, Duration::from_millis(10), MS(300));
        assert!(
            t.due(MS(105), Duration::from_millis(30), 64, |_| false)
                .is_empty()
        );
        // Three packets later, no need to wait.
        t.eligible_through(MS(106), 15 - 3);
        assert_eq!(
            t.due(MS(106), Duration::from_millis(30), 64, |_| false),
            vec![10, 11]
        );
        assert!(
            t.due(MS(120), Duration::from_millis(30), 64, |_| false)
                .is_empty()
        );
        assert_eq!(t.poll_timeout(Duration::from_millis(30)), Some(MS(136)));
        assert_eq!(
            t.due(MS(136), Duration::from_millis(30), 64, |_| false),
            vec![10, 11]
        );
        assert_eq!(
            t.arrived(MS(150), 10),
            Some(Arrived {
                delay: Duration::from_millis(50),
                nacks: 2
            })
        );
        assert_eq!(t.arrived(MS(150), 10), None);
    }

    /// A packet asked for once, then left to FEC (made eligible `retry`
    /// later), is not due before then: the timer says so, so a driver does
    /// not spin (virtual time found it stuck at one instant).
    #[test]
    fn a_packet_left_to_fec_after_an_ask_wakes_when_eligible_again() {
        let retry = Duration::from_millis(30);
        let mut t = LossTracker::default();
        t.gap(MS(0), 5, 6, Duration::ZERO, MS(500));
        assert_eq!(t.due(MS(10), retry, 64, |_| false), vec![5]);
        // Retry is due at 40 ms, but FEC can rebuild it now: wait.
        assert!(t.due(MS(45), retry, 64, |_| true).is_empty());
        assert_eq!(t.poll_timeout(retry), Some(MS(75)));
        assert!(t.due(MS(60), retry, 64, |_| false).is_empty());
        assert_eq!(t.due(MS(75), retry, 64, |_| false), vec![5]);
    }

    #[test]
    fn a_gap_is_one_loss_event_recovered_when_all_its_packets_are() {
        let mut t = LossTracker::default();
        t.gap(MS(0), 10, 13, Duration::ZERO, MS(500));
        t.gap(MS(5), 20, 21, Duration::ZERO, MS(50));
        t.arrived(MS(20), 11);
        t.arrived(MS(40), 10);
        assert!(t.take_finished().is_empty());
        t.arrived(MS(30), 12);
        assert_eq!(t.take_finished(), vec![(Duration::from_millis(40), true)]);
        t.expire(MS(60));
        assert_eq!(t.take_finished(), vec![(Duration::ZERO, false)]);
    }

    #[test]
    fn past_the_deadline_nothing_is_asked_for() {
        let mut t = LossTracker::default();
        t.gap(MS(0), 0, 1, Duration::ZERO, MS(50));
        assert_eq!(
            t.due(MS(49), Duration::from_millis(100), 64, |_| false),
            vec![0]
        );
        assert!(
            t.due(MS(200), Duration::from_millis(1), 64, |_| false)
                .is_empty()
        );
        assert_eq!(t.expire(MS(50)), vec![0]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_huge_gap_tracks_a_bounded_number() {
        let mut t = LossTracker::default();
        t.gap(MS(0), 0, 1 << 40, Duration::ZERO, MS(50));
        assert_eq!(t.len(), MAX_MISSING);
        assert_eq!(t.untracked, (1 << 40) - MAX_MISSING as u64);
    }

    #[test]
    fn one_nack_costs_a_bounded_amount() {
        let mut b = RetransmitBuffer::new(8192);
        for s in 0..8192 {
            b.store(MS(0), s, vec![0; 1200]);
        }
        // A NACK naming every packet, many times over.
        let all = (0..8192u64).cycle().take(100_000);
        let out = b.answer(
            MS(10),
            all,
            Duration::from_millis(20),
            Duration::from_secs(1),
        );
        assert_eq!(out.len(), MAX_RETRANSMITS_PER_NACK);
        // Asking again at once gets nothing for those (min interval).
        let again = b.answer(
            MS(11),
            0..64u64,
            Duration::from_millis(20),
            Duration::from_secs(1),
        );
        assert!(again.is_empty());
        // Unknown and absurd sequence numbers cost nothing.
        assert!(
            b.answer(
                MS(50),
                [u64::MAX, 1 << 50],
                Duration::ZERO,
                Duration::from_secs(1)
            )
            .is_empty()
        );
        // Nor do packets older than what the receiver can use.
        assert!(
            b.answer(MS(5000), [100], Duration::ZERO, Duration::from_secs(1))
                .is_empty()
        );
    }

    #[test]
    fn a_packet_is_sent_again_a_bounded_number_of_times() {
        let mut b = RetransmitBuffer::new(64);
        b.store(MS(0), 7, vec![1]);
        let mut n = 0;
        for i in 0..100 {
            n += b
                .answer(
                    MS(i * 100),
                    [7],
                    Duration::from_millis(10),
                    Duration::from_secs(60),
                )
                .len();
        }
        assert_eq!(n, MAX_RETRANSMITS_PER_PACKET as usize);
    }
}
