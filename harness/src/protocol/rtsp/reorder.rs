//! The reorder (jitter) buffer of RTSP's UDP path: datagrams can arrive out
//! of order (jitter, a reordering link), and a depacketizer that sees a
//! packet after its successors has already given its access unit up. Packets
//! in order pass straight through; after a gap the later packets wait, at
//! most `wait` after the first of them arrived, for the missing ones. When
//! the wait runs out the gap is given up (those packets are lost, the
//! ingest counts them and marks their unit damaged) and what waited is
//! released in order.
//!
//! The price is latency only when a packet is missing: up to `wait` on the
//! frames behind a loss. `wait = 0` turns the buffer off.
//!
//! Sans-IO in the style of the rest: packets and `now` in, packets in
//! sequence order out, and a deadline ([`Reorder::poll_timeout`]).

use std::collections::BTreeMap;
use std::time::Duration;

use netem::Time;

/// At most this many packets wait; one more gives the gap up at once.
pub const MAX_HELD: usize = 1024;

/// A forward jump this large is a restart of the numbering, not a gap
/// (RFC 3550 A.1's MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;

/// One track's reorder buffer.
#[derive(Debug)]
pub struct Reorder {
    wait: Duration,
    /// The extended sequence number expected next (RFC 3550's 16 bits,
    /// counted on past wraps so the order below holds across them).
    next: Option<u64>,
    /// Waiting packets by extended sequence number, with their arrival.
    held: BTreeMap<u64, (Time, Vec<u8>)>,
    /// Packets that waited for a missing one that then came (reordered
    /// ones put back in order); not those released when a gap was given up.
    pub put_back: u64,
    /// Gaps given up when the wait ran out.
    pub gaps_given_up: u64,
}

impl Reorder {
    pub fn new(wait: Duration) -> Reorder {
        Reorder {
            wait,
            next: None,
            held: BTreeMap::new(),
            put_back: 0,
            gaps_given_up: 0,
        }
    }

    /// An RTP packet with sequence number `seq` arrived; what can go on
    /// is appended to `out`, in order.
    pub fn push(&mut self, seq: u16, packet: Vec<u8>, now: Time, out: &mut Vec<Vec<u8>>) {
        let Some(next) = self.next.filter(|_| !self.wait.is_zero()) else {
            // Far from 0 so that packets before the first never underflow.
            self.next = Some((1 << 32) + u64::from(seq) + 1);
            out.push(packet);
            return;
        };
        let ahead = seq.wrapping_sub(next as u16);
        if ahead >= 0x8000 {
            // Behind what went on already: a duplicate, or too late (the
            // ingest counts it). It goes on as it is.
            out.push(packet);
        } else if ahead >= MAX_DROPOUT {
            // A restart of the numbering: what waited goes, then this.
            self.flush(out);
            self.next = Some(next + u64::from(ahead) + 1);
            out.push(packet);
        } else if ahead == 0 {
            out.push(packet);
            self.next = Some(next + 1);
            // What waited for this packet was put back in order.
            self.release_run(out, true);
        } else {
            if self.held.len() >= MAX_HELD {
                self.give_up(out);
                return self.push(seq, packet, now, out);
            }
            self.held
                .entry(next + u64::from(ahead))
                .or_insert((now, packet));
        }
    }

    /// When the oldest waiting packet's wait runs out.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.held
            .values()
            .map(|(t, _)| *t)
            .min()
            .map(|t| t + self.wait)
    }

    /// Gives up the gaps whose wait ran out by `now`.
    pub fn handle_timeout(&mut self, now: Time, out: &mut Vec<Vec<u8>>) {
        while self.poll_timeout().is_some_and(|t| now >= t) {
            self.give_up(out);
        }
    }

    /// Gives up the first gap: releases from the first waiting packet on.
    fn give_up(&mut self, out: &mut Vec<Vec<u8>>) {
        let Some((&first, _)) = self.held.first_key_value() else {
            return;
        };
        self.gaps_given_up += 1;
        self.next = Some(first);
        self.release_run(out, false);
    }

    /// Releases everything waiting, gaps and all.
    fn flush(&mut self, out: &mut Vec<Vec<u8>>) {
        while !self.held.is_empty() {
            self.give_up(out);
        }
    }

    /// Releases the waiting packets that now follow in order (`reordered`:
    /// because the packet they waited for came).
    fn release_run(&mut self, out: &mut Vec<Vec<u8>>, reordered: bool) {
        let Some(mut next) = self.next else { return };
        while let Some((_, p)) = self.held.remove(&next) {
            out.push(p);
            self.put_back += u64::from(reordered);
            next += 1;
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Time {
        Time::from_duration(Duration::from_millis(v))
    }

    fn seqs(out: &[Vec<u8>]) -> Vec<u8> {
        out.iter().map(|p| p[0]).collect()
    }

    #[test]
    fn in_order_packets_pass_and_a_swap_is_put_back() {
        let mut r = Reorder::new(Duration::from_millis(50));
        let mut out = Vec::new();
        for s in [1u16, 2, 4, 3, 5] {
            r.push(s, vec![s as u8], ms(0), &mut out);
        }
        assert_eq!(seqs(&out), [1, 2, 3, 4, 5]);
        assert_eq!(r.put_back, 1);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.gaps_given_up, 0);
    }

    #[test]
    fn a_lost_packet_holds_the_rest_for_the_wait_then_is_given_up() {
        let mut r = Reorder::new(Duration::from_millis(50));
        let mut out = Vec::new();
        r.push(10, vec![10], ms(0), &mut out);
        r.push(12, vec![12], ms(5), &mut out);
        r.push(13, vec![13], ms(8), &mut out);
        assert_eq!(seqs(&out), [10]);
        assert_eq!(r.poll_timeout(), Some(ms(55)));
        r.handle_timeout(ms(54), &mut out);
        assert_eq!(seqs(&out), [10]);
        r.handle_timeout(ms(55), &mut out);
        assert_eq!(seqs(&out), [10, 12, 13]);
        // 11 after all: too late, passed on for the ingest to count.
        r.push(11, vec![11], ms(60), &mut out);
        r.push(14, vec![14], ms(60), &mut out);
        assert_eq!(seqs(&out), [10, 12, 13, 11, 14]);
        assert_eq!((r.gaps_given_up, r.put_back), (1, 0));
    }

    #[test]
    fn wraparound_restarts_and_zero_wait() {
        let mut r = Reorder::new(Duration::from_millis(50));
        let mut out = Vec::new();
        for s in [65534u16, 0, 65535, 1] {
            r.push(s, vec![s as u8], ms(0), &mut out);
        }
        assert_eq!(seqs(&out), [254, 255, 0, 1]);
        // A jump past MAX_DROPOUT is a restart, not a gap to wait for.
        r.push(20_000, vec![7], ms(1), &mut out);
        r.push(20_001, vec![8], ms(1), &mut out);
        assert_eq!(seqs(&out), [254, 255, 0, 1, 7, 8]);
        let mut r = Reorder::new(Duration::ZERO);
        let mut out = Vec::new();
        for s in [1u16, 3, 2] {
            r.push(s, vec![s as u8], ms(0), &mut out);
        }
        assert_eq!(seqs(&out), [1, 3, 2]);
    }

    proptest::proptest! {
        /// Whatever the order, nothing is lost or duplicated, what waits is
        /// bounded, and once the wait has run out nothing is left.
        #[test]
        fn every_packet_comes_out_once(
            start in proptest::prelude::any::<u16>(),
            swaps in proptest::collection::vec((0usize..200, 0usize..200), 0..60),
            drop in proptest::collection::vec(0usize..200, 0..20),
        ) {
            let mut order: Vec<u16> = (0..200u16).map(|i| start.wrapping_add(i)).collect();
            for (a, b) in swaps {
                order.swap(a, b);
            }
            let mut r = Reorder::new(Duration::from_millis(20));
            let mut out = Vec::new();
            let mut sent = 0;
            for (i, s) in order.iter().enumerate() {
                if drop.contains(&i) { continue; }
                sent += 1;
                r.push(*s, s.to_be_bytes().to_vec(), ms(i as u64), &mut out);
                r.handle_timeout(ms(i as u64), &mut out);
                proptest::prop_assert!(r.held.len() <= MAX_HELD);
            }
            r.handle_timeout(ms(10_000), &mut out);
            proptest::prop_assert_eq!(out.len(), sent);
            let mut seen: Vec<Vec<u8>> = out.clone();
            seen.sort();
            seen.dedup();
            proptest::prop_assert_eq!(seen.len(), sent);
        }
    }
}
