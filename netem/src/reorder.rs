//! netem's reordering rule: some packets skip the delay and overtake the rest.

use crate::rng::StageRng;

/// netem's `reorder PERCENT gap DISTANCE`: after `gap − 1` packets that took
/// the normal delay, each packet is sent at once with probability `p`; one that
/// is sent at once restarts the count. `gap` defaults to 1 (every packet is a
/// candidate), as in iproute2. Reordering needs a delay to overtake.
#[derive(Clone, Debug)]
pub struct ReorderRule {
    p: f64,
    gap: u32,
    counter: u32,
}

impl ReorderRule {
    pub fn new(p: f64, gap: u32) -> Self {
        ReorderRule {
            p,
            gap: gap.max(1),
            counter: 0,
        }
    }

    /// `true`: send this packet now, ahead of the delayed ones.
    #[inline]
    pub fn send_now(&mut self, rng: &mut StageRng) -> bool {
        // The kernel's test, in the same order: the gap is checked before a
        // random number is drawn.
        if self.counter < self.gap - 1 || !rng.chance(self.p) {
            self.counter += 1;
            false
        } else {
            self.counter = 0;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedTree;

    #[test]
    fn gap_with_certain_reorder_is_every_nth_packet() {
        let mut r = ReorderRule::new(1.0, 5);
        let mut rng = SeedTree::new(1).rng();
        let picks: Vec<usize> = (0..20).filter(|_| r.send_now(&mut rng)).collect();
        assert_eq!(picks, vec![4, 9, 14, 19]);
    }

    #[test]
    fn percent_without_gap_picks_that_share() {
        let mut r = ReorderRule::new(0.25, 1);
        let mut rng = SeedTree::new(2).rng();
        let n = 200_000;
        let k = (0..n).filter(|_| r.send_now(&mut rng)).count() as f64;
        // Binomial standard error √(p(1−p)/n) ≈ 0.001; 5 of them.
        assert!((k / n as f64 - 0.25).abs() < 0.005);
    }
}
