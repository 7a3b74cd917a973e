//! The WebRTC freeze (webrtc-stats' `freezeCount`/`totalFreezesDuration`):
//! an inter-frame gap longer than max(3 × mean frame interval, mean +
//! 150 ms), the mean over the last [`WINDOW`] intervals and only once 3 are
//! known. The player model applies it to display instants; a light viewer,
//! which displays nothing, to arrivals.

use std::collections::VecDeque;
use std::time::Duration;

use netem::Time;

/// Intervals the mean is taken over.
pub const WINDOW: usize = 30;

#[derive(Clone, Debug, Default)]
pub struct FreezeRule {
    last: Option<Time>,
    intervals: VecDeque<Duration>,
    /// Freezes so far.
    pub count: u64,
    /// Their gaps, summed.
    pub total: Duration,
}

impl FreezeRule {
    /// A frame at `t` (instants in order); true if the gap before it was a
    /// freeze.
    pub fn frame(&mut self, t: Time) -> bool {
        let Some(prev) = self.last.replace(t) else {
            return false;
        };
        let gap = t - prev;
        let mut froze = false;
        if self.intervals.len() >= 3 {
            let mean = self.intervals.iter().sum::<Duration>() / self.intervals.len() as u32;
            if gap > (mean * 3).max(mean + Duration::from_millis(150)) {
                self.count += 1;
                self.total += gap;
                froze = true;
            }
        }
        self.intervals.push_back(gap);
        if self.intervals.len() > WINDOW {
            self.intervals.pop_front();
        }
        froze
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_over_three_intervals_and_150_ms_is_one_freeze() {
        let mut f = FreezeRule::default();
        let at = |ms: u64| Time::from_millis(ms);
        for i in 0..10 {
            assert!(!f.frame(at(i * 33)));
        }
        // 3 × 33 = 99 ms, 33 + 150 = 183 ms: 150 ms is not a freeze, 200 ms is.
        assert!(!f.frame(at(9 * 33 + 150)));
        assert!(f.frame(at(9 * 33 + 150 + 200)));
        assert_eq!((f.count, f.total), (1, Duration::from_millis(200)));
    }

    #[test]
    fn at_5_fps_200_ms_is_the_pace() {
        let mut f = FreezeRule::default();
        for i in 0..20 {
            f.frame(Time::from_millis(i * 200));
        }
        assert_eq!(f.count, 0);
    }
}
