//! Propagation delay with jitter, and whether jitter may reorder packets.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jitter::{Distribution, JitterSource};
use crate::reorder::ReorderRule;
use crate::rng::StageRng;
use crate::time::Time;

/// Whether jittered packets keep their order.
///
/// Real paths mostly keep order (one queue, one wire), so jitter there means a
/// packet waits for the one before it. netem instead lets jitter reorder. Glass
/// makes the choice explicit because it changes what a protocol sees: a TCP
/// receiver treats reordering as loss signals.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// A packet is never released before one pushed earlier.
    Fifo,
    /// Each packet is released at its own jittered instant (netem's behaviour).
    Reorder,
}

/// The delay a direction adds: `base` plus a jitter term.
#[derive(Clone, Debug, PartialEq)]
pub struct DelaySpec {
    pub base: Duration,
    pub jitter: Duration,
    pub distribution: Distribution,
    /// Correlation of successive jitter terms, in `[0, 1)`.
    pub correlation: f64,
    pub order: Order,
    /// With FIFO order, how long a jitter value lasts (see `jitter`).
    pub coherence: Duration,
}

/// Default coherence of FIFO jitter: ten times the jitter (at least 10 ms).
/// The interpolated delay then changes with a standard deviation of about
/// √2/10 ≈ 0.14 of real time, so it almost never falls faster than time
/// passes and FIFO almost never holds a packet back: the realised delay keeps
/// the requested distribution at any packet rate.
pub fn default_coherence(jitter: Duration) -> Duration {
    (jitter * 10).max(Duration::from_millis(10))
}

impl DelaySpec {
    pub fn constant(base: Duration) -> Self {
        DelaySpec {
            base,
            jitter: Duration::ZERO,
            distribution: Distribution::Uniform,
            correlation: 0.0,
            order: Order::Fifo,
            coherence: default_coherence(Duration::ZERO),
        }
    }

    fn jitter_source(&self) -> JitterSource {
        match self.order {
            Order::Fifo => JitterSource::continuous(
                self.jitter,
                self.distribution,
                self.correlation,
                self.coherence,
            ),
            Order::Reorder => {
                JitterSource::per_packet(self.jitter, self.distribution, self.correlation)
            }
        }
    }

    /// Expected mean and standard deviation of the added delay, ignoring the
    /// clamp at zero and the FIFO hold-back (both only add delay).
    pub fn moments(&self) -> (Duration, Duration) {
        let (m, s) = self.distribution.moments();
        let j = self.jitter.as_secs_f64();
        (
            self.base + Duration::from_secs_f64(m * j),
            Duration::from_secs_f64(s * j),
        )
    }
}

/// The delay stage: release instant = arrival + base + jitter, clamped so a
/// packet never leaves before it arrived; FIFO or not; netem's reorder rule.
#[derive(Clone, Debug)]
pub struct DelayStage {
    base_ns: f64,
    order: Order,
    jitter: JitterSource,
    rng: StageRng,
    reorder: Option<(ReorderRule, StageRng)>,
    last_release: Time,
}

impl DelayStage {
    pub fn new(spec: &DelaySpec, rng: StageRng) -> Self {
        DelayStage {
            base_ns: spec.base.as_nanos() as f64,
            order: spec.order,
            jitter: spec.jitter_source(),
            rng,
            reorder: None,
            last_release: Time::ZERO,
        }
    }

    /// Replaces the delay (a timeline change); FIFO order still holds across it.
    pub fn set_spec(&mut self, spec: &DelaySpec) {
        self.base_ns = spec.base.as_nanos() as f64;
        self.order = spec.order;
        self.jitter = spec.jitter_source();
    }

    pub fn set_reorder(&mut self, rule: Option<ReorderRule>, rng: StageRng) {
        self.reorder = rule.map(|r| (r, rng));
    }

    /// Whether releases can come out of push order (so the output needs a heap).
    pub fn may_reorder(&self) -> bool {
        self.reorder.is_some() || (self.order == Order::Reorder && !self.jitter.is_zero())
    }

    /// The release instant of a packet that reaches this stage at `at`, and
    /// whether netem's reorder rule sent it early.
    #[inline]
    pub fn release(&mut self, at: Time, subject_to_reorder: bool) -> (Time, bool) {
        if subject_to_reorder
            && let Some((rule, rng)) = &mut self.reorder
            && rule.send_now(rng)
        {
            return (at, true);
        }
        let mut delay = self.base_ns;
        if !self.jitter.is_zero() {
            delay += self.jitter.sample_ns(at, &mut self.rng);
        }
        let mut release = at + Duration::from_nanos(delay.max(0.0) as u64);
        if self.order == Order::Fifo {
            release = release.max(self.last_release);
            self.last_release = release;
        }
        (release, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedTree;

    fn spec(order: Order) -> DelaySpec {
        DelaySpec {
            base: Duration::from_millis(40),
            jitter: Duration::from_millis(10),
            distribution: Distribution::Normal,
            correlation: 0.0,
            order,
            coherence: default_coherence(Duration::from_millis(10)),
        }
    }

    #[test]
    fn fifo_delay_does_not_depend_on_packet_rate() {
        // 1 000 and 10 000 packets per second through the same FIFO jitter:
        // both see the requested 40 ± 10 ms (normal), within a few percent.
        for gap_us in [1000u64, 100] {
            let mut s = DelayStage::new(&spec(Order::Fifo), SeedTree::new(1).rng());
            // 1000 s of traffic: 10 000 coherence periods of 100 ms, so the
            // standard error of the mean is about 0.1 ms; 0.5 ms is 5 of them.
            let n = 1_000_000_000 / gap_us;
            let d: Vec<f64> = (0..n)
                .map(|i| {
                    let t = Time::from_micros(i * gap_us);
                    (s.release(t, true).0 - t).as_secs_f64() * 1e3
                })
                .collect();
            let m = d.iter().sum::<f64>() / d.len() as f64;
            let sd = (d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
            assert!((m - 40.0).abs() < 0.5, "{gap_us} µs: mean {m}");
            assert!((sd - 10.0).abs() < 0.5, "{gap_us} µs: std {sd}");
        }
    }

    #[test]
    fn constant_delay_is_exact() {
        let mut s = DelayStage::new(
            &DelaySpec::constant(Duration::from_millis(50)),
            SeedTree::new(1).rng(),
        );
        for i in 0..100 {
            let t = Time::from_millis(i);
            assert_eq!(s.release(t, true).0, t + Duration::from_millis(50));
        }
    }

    #[test]
    fn fifo_never_reorders_and_reorder_mode_does() {
        for (order, expect_reorder) in [(Order::Fifo, false), (Order::Reorder, true)] {
            let mut s = DelayStage::new(&spec(order), SeedTree::new(1).rng());
            let releases: Vec<Time> = (0..10_000)
                .map(|i| s.release(Time::from_micros(i * 100), true).0)
                .collect();
            let reordered = releases.windows(2).any(|w| w[1] < w[0]);
            assert_eq!(reordered, expect_reorder, "{order:?}");
            // Never before arrival.
            assert!(
                releases
                    .iter()
                    .enumerate()
                    .all(|(i, r)| *r >= Time::from_micros(i as u64 * 100))
            );
        }
    }

    #[test]
    fn reorder_rule_sends_early() {
        let mut s = DelayStage::new(
            &DelaySpec::constant(Duration::from_millis(10)),
            SeedTree::new(1).rng(),
        );
        s.set_reorder(Some(ReorderRule::new(1.0, 3)), SeedTree::new(2).rng());
        assert!(s.may_reorder());
        let out: Vec<(Time, bool)> = (0..6)
            .map(|i| s.release(Time::from_millis(i), true))
            .collect();
        assert_eq!(out[2], (Time::from_millis(2), true));
        assert_eq!(out[3], (Time::from_millis(13), false));
        // Packets outside the reorder filter are never picked.
        assert!(!s.release(Time::from_millis(9), false).1);
    }
}
