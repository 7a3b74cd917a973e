//! Glass's own clock: an instant is nanoseconds since the scenario started.
//!
//! The engine never reads a clock. Callers pass `now` in; the I/O edges convert
//! between [`Time`] and [`std::time::Instant`] with a [`Clock`], the single place
//! where that conversion happens, so virtual-time tests and real links share
//! every line of engine code.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// An instant on the scenario clock, in nanoseconds since its start.
///
/// `u64` nanoseconds last 584 years, so arithmetic saturates instead of wrapping.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);
    /// "Never": used for timers that are not armed.
    pub const MAX: Time = Time(u64::MAX);

    pub const fn from_nanos(ns: u64) -> Self {
        Time(ns)
    }
    pub const fn from_micros(us: u64) -> Self {
        Time(us.saturating_mul(1_000))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Time(ms.saturating_mul(1_000_000))
    }
    pub fn from_secs_f64(s: f64) -> Self {
        Time((s.max(0.0) * 1e9) as u64)
    }
    /// The instant `d` after the scenario start.
    pub fn from_duration(d: Duration) -> Self {
        Time(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// Time elapsed since the scenario start.
    pub const fn since_start(self) -> Duration {
        Duration::from_nanos(self.0)
    }
    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(ns))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    /// Saturating at the scenario start.
    fn sub(self, d: Duration) -> Time {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Time(self.0.saturating_sub(ns))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// Saturating: an earlier minus a later instant is zero.
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.as_secs_f64())
    }
}

/// Converts between wall-clock [`Instant`]s and scenario [`Time`].
///
/// The origin is handed in (the adapter reads the clock once, at scenario start);
/// this type itself never reads a clock.
#[derive(Copy, Clone, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new(origin: Instant) -> Self {
        Clock { origin }
    }
    /// Scenario time of `instant`; instants before the origin map to zero.
    pub fn time(&self, instant: Instant) -> Time {
        Time::from_duration(instant.saturating_duration_since(self.origin))
    }
    /// Wall-clock instant of scenario time `t`.
    pub fn instant(&self, t: Time) -> Instant {
        self.origin + t.since_start()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Time::MAX + Duration::from_secs(1), Time::MAX);
        assert_eq!(Time::ZERO - Time::from_millis(5), Duration::ZERO);
        assert_eq!(
            Time::from_millis(5) - Time::from_millis(2),
            Duration::from_millis(3)
        );
    }

    #[test]
    fn clock_round_trips() {
        let origin = Instant::now();
        let clock = Clock::new(origin);
        let t = Time::from_micros(1_234_567);
        assert_eq!(clock.time(clock.instant(t)), t);
        assert_eq!(clock.time(origin), Time::ZERO);
    }
}
