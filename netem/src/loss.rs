//! Loss models: Bernoulli, Gilbert–Elliott, netem's 4-state model, and scripts.
//!
//! The Markov models follow the Linux kernel's `sch_netem.c` transition rules so
//! that a netem line means the same thing here as under `tc`, and each model can
//! state its expected loss rate and mean burst length in closed form — the
//! figures `glass profile check` and the statistical tests compare against.

use crate::rng::StageRng;
use crate::time::Time;

/// A loss model with its parameters, as probabilities in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub enum LossModel {
    /// Each packet lost independently with probability `p`.
    Bernoulli { p: f64 },
    /// Two states, Good and Bad. netem's parameters: `p` = P(Good→Bad),
    /// `r` = P(Bad→Good), `loss_bad` = 1−h, `loss_good` = 1−k.
    GilbertElliott {
        p: f64,
        r: f64,
        loss_bad: f64,
        loss_good: f64,
    },
    /// netem's 4-state model (Salsano et al., "NetemCLG"): 1 = received in a
    /// gap, 2 = received in a burst, 3 = lost in a burst, 4 = isolated loss.
    FourState {
        p13: f64,
        p31: f64,
        p32: f64,
        p23: f64,
        p14: f64,
    },
    /// Drop exactly these packets (0-based index among the packets this stage
    /// sees) and every packet inside these time ranges `[from, to)`.
    Scripted {
        packets: Vec<u64>,
        ranges: Vec<(Time, Time)>,
    },
}

/// What a model promises in the long run.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct LossExpectation {
    /// Fraction of packets lost.
    pub rate: f64,
    /// Mean number of consecutive losses in a burst (a run of lost packets).
    pub mean_burst: f64,
}

impl LossModel {
    /// Gilbert's simple model that gives loss `rate` with mean burst length
    /// `mean_burst` (shared/FIELD-NOTES.md): p = L/((1−L)·B), r = 1/B.
    pub fn burst(rate: f64, mean_burst: f64) -> Result<LossModel, String> {
        if mean_burst < 1.0 {
            return Err("a mean burst length is at least 1 packet".into());
        }
        if rate >= 1.0 {
            return Err("the loss rate must be below 100% for a burst model".into());
        }
        let p = rate / ((1.0 - rate) * mean_burst);
        if p > 1.0 {
            return Err(format!(
                "loss {:.2}% with mean burst {mean_burst} needs P(good→bad) = {p:.3} > 1; use a longer burst",
                rate * 100.0
            ));
        }
        Ok(LossModel::GilbertElliott {
            p,
            r: 1.0 / mean_burst,
            loss_bad: 1.0,
            loss_good: 0.0,
        })
    }

    /// Expected loss rate and mean burst length, where a closed form exists
    /// (not for scripted loss).
    pub fn expected(&self) -> Option<LossExpectation> {
        match *self {
            LossModel::Bernoulli { p } => Some(LossExpectation {
                rate: p,
                mean_burst: if p < 1.0 {
                    1.0 / (1.0 - p)
                } else {
                    f64::INFINITY
                },
            }),
            LossModel::GilbertElliott {
                p,
                r,
                loss_bad,
                loss_good,
            } => {
                // Stationary P(Bad) = p/(p+r); loss is decided from the state a
                // packet finds, then the chain moves (as the kernel does).
                let (pi_g, pi_b) = if p + r > 0.0 {
                    (r / (p + r), p / (p + r))
                } else {
                    (1.0, 0.0)
                };
                let (eg, eb) = (loss_good, loss_bad);
                let rate = pi_g * eg + pi_b * eb;
                // Bursts start where a kept packet is followed by a lost one.
                let starts = pi_g * (1.0 - eg) * ((1.0 - p) * eg + p * eb)
                    + pi_b * (1.0 - eb) * (r * eg + (1.0 - r) * eb);
                Some(LossExpectation {
                    rate,
                    mean_burst: burst_from(rate, starts),
                })
            }
            LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            } => {
                // shared/FIELD-NOTES.md: D = p31·p23 + p13·p32 + p13·p23 + p14·p31·p23,
                // loss = (p13·p23 + p14·p31·p23)/D.
                let d = p31 * p23 + p13 * p32 + p13 * p23 + p14 * p31 * p23;
                if d == 0.0 {
                    return Some(LossExpectation {
                        rate: 0.0,
                        mean_burst: 0.0,
                    });
                }
                let rate = (p13 * p23 + p14 * p31 * p23) / d;
                // Stationary probabilities of the two "received" states.
                let pi1 = p31 * p23 / d;
                let pi2 = p13 * p32 / d;
                // A burst starts on 1→3, 1→4 or 2→3.
                let starts = pi1 * (p13 + p14) + pi2 * p23;
                Some(LossExpectation {
                    rate,
                    mean_burst: burst_from(rate, starts),
                })
            }
            LossModel::Scripted { .. } => None,
        }
    }
}

fn burst_from(rate: f64, burst_starts: f64) -> f64 {
    if burst_starts > 0.0 {
        rate / burst_starts
    } else if rate > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// The loss stage: a model, its state and its random stream.
#[derive(Clone, Debug)]
pub struct LossStage {
    model: LossModel,
    rng: StageRng,
    /// Markov state: 0/1 = Good/Bad; 1..=4 for the 4-state model.
    state: u8,
    /// Packets this stage has seen (the scripted model's index).
    seen: u64,
    /// Position in the sorted scripted packet list.
    script_cursor: usize,
    last_lost: bool,
    /// Runs of consecutive losses so far.
    bursts: u64,
}

impl LossStage {
    pub fn new(model: LossModel, rng: StageRng) -> Self {
        let mut stage = LossStage {
            state: Self::initial_state(&model),
            model: LossModel::Bernoulli { p: 0.0 },
            rng,
            seen: 0,
            script_cursor: 0,
            last_lost: false,
            bursts: 0,
        };
        stage.set_model(model);
        stage
    }

    fn initial_state(model: &LossModel) -> u8 {
        match model {
            LossModel::FourState { .. } => 1,
            _ => 0,
        }
    }

    /// Replaces the model (a timeline change). The random stream, the packet
    /// count and the burst count carry on; the Markov state resets only when
    /// the kind of model changes.
    pub fn set_model(&mut self, mut model: LossModel) {
        self.script_cursor = 0;
        if let LossModel::Scripted { packets, .. } = &mut model {
            packets.sort_unstable();
            packets.dedup();
            self.script_cursor = packets.partition_point(|&p| p < self.seen);
        }
        if std::mem::discriminant(&model) != std::mem::discriminant(&self.model) {
            self.state = Self::initial_state(&model);
        }
        self.model = model;
    }

    pub fn model(&self) -> &LossModel {
        &self.model
    }

    /// Number of loss bursts (runs of consecutive lost packets) so far.
    pub fn bursts(&self) -> u64 {
        self.bursts
    }

    /// Decides the fate of the next packet: `true` = lost.
    #[inline]
    pub fn lose(&mut self, now: Time) -> bool {
        let lost = self.decide(now);
        self.seen += 1;
        if lost && !self.last_lost {
            self.bursts += 1;
        }
        self.last_lost = lost;
        lost
    }

    #[inline]
    fn decide(&mut self, now: Time) -> bool {
        match &self.model {
            LossModel::Bernoulli { p } => self.rng.chance(*p),
            &LossModel::GilbertElliott {
                p,
                r,
                loss_bad,
                loss_good,
            } => {
                // Loss from the state the packet finds, then a transition: the
                // kernel's order (`loss_gilb_ell`).
                let (loss, leave) = if self.state == 0 {
                    (loss_good, p)
                } else {
                    (loss_bad, r)
                };
                let lost = self.rng.chance(loss);
                if self.rng.chance(leave) {
                    self.state ^= 1;
                }
                lost
            }
            &LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            } => {
                // The kernel's `loss_4state`: one draw moves the chain; the packet
                // is lost if the chain lands in state 3 or 4.
                let u = self.rng.unit();
                self.state = match self.state {
                    1 if u < p14 => 4,
                    1 if u < p14 + p13 => 3,
                    1 => 1,
                    2 if u < p23 => 3,
                    2 => 2,
                    3 if u < p32 => 2,
                    3 if u < p32 + p31 => 1,
                    3 => 3,
                    _ => 1, // 4 always returns to 1
                };
                self.state >= 3
            }
            LossModel::Scripted { packets, ranges } => {
                let mut lost = false;
                if packets.get(self.script_cursor) == Some(&self.seen) {
                    self.script_cursor += 1;
                    lost = true;
                }
                lost || ranges.iter().any(|&(from, to)| from <= now && now < to)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedTree;

    /// Statistics of a loss sequence, with a batch-means standard error so that
    /// tolerances account for the correlation of Markov models.
    struct Realised {
        rate: f64,
        rate_se: f64,
        mean_burst: f64,
        burst_se: f64,
    }

    fn run(model: LossModel, n: usize, seed: u64) -> Realised {
        const BATCHES: usize = 50;
        let mut stage = LossStage::new(model, SeedTree::new(seed).rng());
        let per = n / BATCHES;
        let mut rates = Vec::new();
        let mut bursts_mean = Vec::new();
        let (mut total_lost, mut total_bursts) = (0u64, 0u64);
        for _ in 0..BATCHES {
            let (lost0, bursts0) = (total_lost, stage.bursts());
            for _ in 0..per {
                total_lost += u64::from(stage.lose(Time::ZERO));
            }
            total_bursts = stage.bursts();
            let lost = (total_lost - lost0) as f64;
            rates.push(lost / per as f64);
            let b = (total_bursts - bursts0).max(1) as f64;
            bursts_mean.push(lost / b);
        }
        let se = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
            (var / v.len() as f64).sqrt()
        };
        Realised {
            rate: total_lost as f64 / (per * BATCHES) as f64,
            rate_se: se(&rates),
            mean_burst: total_lost as f64 / total_bursts.max(1) as f64,
            burst_se: se(&bursts_mean),
        }
    }

    /// Realised figures must lie within 5 standard errors of the formula (a
    /// false alarm under 1e-6 for a normal estimator; the error comes from 50
    /// batch means, which holds for correlated Markov losses too), and that band
    /// must be narrower than 10 % of the target, so a wrong model cannot hide
    /// behind a wide band.
    fn assert_matches(model: LossModel) {
        let want = model.expected().unwrap();
        let got = run(model.clone(), 4_000_000, 0xC0FFEE);
        let tol_rate = 5.0 * got.rate_se;
        let tol_burst = 5.0 * got.burst_se;
        assert!(
            tol_rate < 0.1 * want.rate && tol_burst < 0.1 * want.mean_burst,
            "{model:?}: tolerance too loose to mean anything ({tol_rate}, {tol_burst})"
        );
        assert!(
            (got.rate - want.rate).abs() <= tol_rate,
            "{model:?}: loss {} vs formula {} (tol {tol_rate})",
            got.rate,
            want.rate
        );
        assert!(
            (got.mean_burst - want.mean_burst).abs() <= tol_burst,
            "{model:?}: burst {} vs formula {} (tol {tol_burst})",
            got.mean_burst,
            want.mean_burst
        );
    }

    #[test]
    fn bernoulli_matches_formula() {
        for p in [0.002, 0.01, 0.05, 0.2] {
            assert_matches(LossModel::Bernoulli { p });
        }
    }

    #[test]
    fn gilbert_elliott_matches_formula() {
        // Simple Gilbert, and the general model with loss in both states.
        for (p, r, lb, lg) in [
            (0.01, 0.3, 1.0, 0.0),
            (0.005, 0.5, 1.0, 0.0),
            (0.02, 0.1, 0.8, 0.001),
            (0.05, 0.25, 0.5, 0.01),
        ] {
            assert_matches(LossModel::GilbertElliott {
                p,
                r,
                loss_bad: lb,
                loss_good: lg,
            });
        }
    }

    #[test]
    fn burst_form_hits_rate_and_burst() {
        for (l, b) in [(0.02, 3.0), (0.05, 1.5), (0.01, 4.0)] {
            let m = LossModel::burst(l, b).unwrap();
            let e = m.expected().unwrap();
            assert!((e.rate - l).abs() < 1e-12 && (e.mean_burst - b).abs() < 1e-9);
            assert_matches(m);
        }
        assert!(LossModel::burst(0.9, 1.0).is_err());
        assert!(LossModel::burst(0.1, 0.5).is_err());
    }

    #[test]
    fn four_state_matches_formula() {
        for (p13, p31, p32, p23, p14) in [
            (0.01, 0.99, 0.0, 1.0, 0.0), // netem defaults for `loss state 1%`
            (0.02, 0.3, 0.2, 0.4, 0.005),
            (0.005, 0.5, 0.4, 0.1, 0.01),
        ] {
            assert_matches(LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            });
        }
    }

    #[test]
    fn scripted_drops_exactly_what_it_says() {
        let model = LossModel::Scripted {
            packets: vec![5, 1, 1],
            ranges: vec![(Time::from_millis(10), Time::from_millis(12))],
        };
        let mut s = LossStage::new(model, SeedTree::new(1).rng());
        let lost: Vec<bool> = (0..15).map(|i| s.lose(Time::from_millis(i))).collect();
        let idx: Vec<usize> = lost
            .iter()
            .enumerate()
            .filter(|x| *x.1)
            .map(|x| x.0)
            .collect();
        assert_eq!(idx, vec![1, 5, 10, 11]);
        assert!(
            LossModel::Scripted {
                packets: vec![],
                ranges: vec![]
            }
            .expected()
            .is_none()
        );
    }

    #[test]
    fn changing_the_model_keeps_the_packet_count() {
        let mut s = LossStage::new(LossModel::Bernoulli { p: 0.0 }, SeedTree::new(1).rng());
        for _ in 0..3 {
            assert!(!s.lose(Time::ZERO));
        }
        s.set_model(LossModel::Scripted {
            packets: vec![2, 3],
            ranges: vec![],
        });
        // Packet 3 (the fourth seen) is still ahead; packet 2 has passed.
        assert!(s.lose(Time::ZERO));
        assert!(!s.lose(Time::ZERO));
    }
}
