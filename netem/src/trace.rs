//! Trace-driven links in mahimahi's format.
//!
//! A trace has one line per delivery opportunity: the millisecond at which the
//! link can deliver one 1500-byte packet; a number repeated means several in
//! that millisecond. The trace repeats with a period equal to its last
//! timestamp. As in mahimahi's `LinkQueue`, one opportunity's 1500 bytes can
//! carry several small packets or part of a large one, and an opportunity that
//! finds the queue empty is lost.

use crate::time::Time;

/// Bytes one delivery opportunity carries.
pub const OPPORTUNITY_BYTES: u64 = 1500;

/// A parsed mahimahi trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Delivery opportunities in ms, sorted.
    opportunities_ms: Vec<u64>,
    period_ms: u64,
}

impl Trace {
    /// Parses a trace; errors name the 1-based line.
    pub fn parse(text: &str) -> Result<Trace, String> {
        let mut opportunities_ms = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let ms: u64 = line.parse().map_err(|_| {
                format!(
                    "line {}: \"{line}\" is not a whole number of milliseconds",
                    i + 1
                )
            })?;
            if opportunities_ms.last().is_some_and(|&last| ms < last) {
                return Err(format!("line {}: timestamps must not decrease", i + 1));
            }
            opportunities_ms.push(ms);
        }
        let period_ms = *opportunities_ms
            .last()
            .ok_or("the trace has no delivery opportunity")?;
        if period_ms == 0 {
            return Err("the trace's last timestamp must be above 0 ms (it is the period)".into());
        }
        Ok(Trace {
            opportunities_ms,
            period_ms,
        })
    }

    /// Average capacity in bit/s over one period.
    pub fn mean_rate_bps(&self) -> f64 {
        self.opportunities_ms.len() as f64 * OPPORTUNITY_BYTES as f64 * 8.0
            / (self.period_ms as f64 / 1000.0)
    }

    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Capacity in bytes over `[from, to)` (for tests and reports).
    pub fn bytes_between(&self, from: Time, to: Time) -> u64 {
        let mut c = TraceCursor::new();
        c.seek(self, from);
        let mut bytes = 0;
        while c.time(self) < to {
            bytes += OPPORTUNITY_BYTES;
            c.step(self);
        }
        bytes
    }
}

/// A position in the (infinitely repeated) trace, with the bytes left in the
/// current opportunity.
#[derive(Clone, Debug)]
pub struct TraceCursor {
    cycle: u64,
    index: usize,
    credit: u64,
}

impl Default for TraceCursor {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceCursor {
    pub fn new() -> Self {
        TraceCursor {
            cycle: 0,
            index: 0,
            credit: OPPORTUNITY_BYTES,
        }
    }

    fn time(&self, t: &Trace) -> Time {
        Time::from_millis(self.cycle * t.period_ms + t.opportunities_ms[self.index])
    }

    fn step(&mut self, t: &Trace) {
        self.index += 1;
        if self.index == t.opportunities_ms.len() {
            self.index = 0;
            self.cycle += 1;
        }
        self.credit = OPPORTUNITY_BYTES;
    }

    /// Moves forward to the first later opportunity at or after `at`.
    fn seek(&mut self, t: &Trace, at: Time) {
        if self.time(t) >= at {
            return;
        }
        let period_ns = t.period_ms * 1_000_000;
        let cycle = at.as_nanos() / period_ns;
        let rel = at.as_nanos() - cycle * period_ns;
        let index = t.opportunities_ms.partition_point(|&o| o * 1_000_000 < rel);
        if (cycle, index) > (self.cycle, self.index) {
            self.cycle = cycle;
            self.index = index;
            self.credit = OPPORTUNITY_BYTES;
            if self.index == t.opportunities_ms.len() {
                self.index = 0;
                self.cycle += 1;
            }
        }
        while self.time(t) < at {
            self.step(t);
        }
    }

    /// The instant service of a packet ready at `ready` would start.
    pub fn peek_start(&self, t: &Trace, ready: Time) -> Time {
        let mut c = self.clone();
        c.ready(t, ready);
        c.time(t)
    }

    fn ready(&mut self, t: &Trace, ready: Time) {
        if self.credit == 0 || self.time(t) < ready {
            if self.credit == 0 {
                self.step(t);
            }
            self.seek(t, ready);
        }
    }

    /// Serves `bytes` for a packet ready at `ready`: (start, finish) instants.
    pub fn serve(&mut self, t: &Trace, ready: Time, mut bytes: u64) -> (Time, Time) {
        self.ready(t, ready);
        let start = self.time(t);
        loop {
            let take = bytes.min(self.credit);
            bytes -= take;
            self.credit -= take;
            if bytes == 0 {
                return (start, self.time(t));
            }
            self.step(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_rate() {
        // 12 opportunities in 12 ms: 12 × 1500 B per 12 ms = 12 Mbit/s.
        let t = Trace::parse("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n").unwrap();
        assert!((t.mean_rate_bps() - 12e6).abs() < 1.0);
        assert!(Trace::parse("").is_err());
        assert!(Trace::parse("5\n3\n").unwrap_err().contains("line 2"));
        assert!(Trace::parse("1\nx\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn serves_at_opportunities_and_shares_credit() {
        let t = Trace::parse("10\n10\n20\n").unwrap();
        let mut c = TraceCursor::new();
        // A 1500-byte packet ready at 0 leaves at the first opportunity, 10 ms.
        assert_eq!(
            c.serve(&t, Time::ZERO, 1500),
            (Time::from_millis(10), Time::from_millis(10))
        );
        // Two 700-byte packets share the second 10 ms opportunity.
        assert_eq!(c.serve(&t, Time::ZERO, 700).1, Time::from_millis(10));
        assert_eq!(c.serve(&t, Time::ZERO, 700).1, Time::from_millis(10));
        // 100 bytes are left there; the rest of 300 needs the 20 ms opportunity.
        assert_eq!(
            c.serve(&t, Time::ZERO, 300),
            (Time::from_millis(10), Time::from_millis(20))
        );
        // The trace wraps: next period starts at 20 ms, opportunities at 30, 30, 40.
        assert_eq!(
            c.serve(&t, Time::from_millis(21), 1500).1,
            Time::from_millis(30)
        );
        // An opportunity with nothing queued is lost.
        assert_eq!(
            c.serve(&t, Time::from_millis(35), 100).1,
            Time::from_millis(40)
        );
        assert_eq!(
            c.serve(&t, Time::from_millis(10_001), 100).1,
            Time::from_millis(10_010)
        );
    }

    #[test]
    fn capacity_over_a_window() {
        let t = Trace::parse("1\n1\n2\n").unwrap();
        assert_eq!(t.bytes_between(Time::ZERO, Time::from_millis(2)), 3000);
        assert_eq!(t.bytes_between(Time::ZERO, Time::from_millis(4)), 7500);
    }
}
