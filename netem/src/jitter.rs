//! Jitter: random delay variation with netem's distributions and a correlation
//! that keeps them intact.
//!
//! Shapes follow netem's tables (iproute2 `normal.c`, `pareto.c`,
//! `paretonormal.c`) for a jitter `j`:
//! - `uniform`: `[−j, +j)`, mean 0, std `j/√3`;
//! - `normal`: mean 0, std `j`;
//! - `pareto` (α = 3): `j·(U^(−1/3) − 1)`, never negative: mean `j/2`, std `j·√3/2`;
//! - `paretonormal`: `¼·pareto + ¾·normal`: mean `j/8`, std `j·√(3/64 + 9/16)`.
//!
//! netem's correlation (`get_crandom`) mixes the last uniform draw into the next
//! one, which narrows the distribution (a correlated 10 ms jitter no longer has a
//! 10 ms spread). Glass instead correlates through a Gaussian copula: an AR(1)
//! standard normal `z' = ρ·z + √(1−ρ²)·ε` is mapped through Φ and the target's
//! inverse CDF, so each draw keeps the exact distribution while successive draws
//! are correlated.
//!
//! Two ways to draw over time:
//! - per packet (netem's way, used when jitter may reorder): each packet gets
//!   its own draw, correlated with the previous packet's;
//! - continuous (used with FIFO order): the jitter is a process in *time*. The
//!   Gaussian is drawn on a grid of `coherence` spacing, interpolated linearly
//!   between grid points and divided by the interpolation's standard deviation,
//!   so at every instant it is exactly standard normal. Neighbouring packets
//!   then see nearly the same jitter, FIFO rarely has to hold a packet back, and
//!   the delay a flow sees does not depend on its packet rate: without this, a
//!   5 Mbit/s video flow and a 64 kbit/s audio flow crossing the same FIFO
//!   profile would see different delays (each packet would wait for the slowest
//!   of its recent predecessors).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rng::StageRng;
use crate::time::Time;

/// netem's delay distributions.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// netem's default when a jitter is given without a distribution.
    #[default]
    Uniform,
    Normal,
    Pareto,
    ParetoNormal,
}

impl Distribution {
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Normal => "normal",
            Distribution::Pareto => "pareto",
            Distribution::ParetoNormal => "paretonormal",
        }
    }

    /// Mean and standard deviation of the jitter term, in units of `j`.
    pub fn moments(self) -> (f64, f64) {
        match self {
            Distribution::Uniform => (0.0, 1.0 / 3f64.sqrt()),
            Distribution::Normal => (0.0, 1.0),
            Distribution::Pareto => (0.5, 3f64.sqrt() / 2.0),
            Distribution::ParetoNormal => (0.125, (3.0 / 64.0 + 9.0 / 16.0_f64).sqrt()),
        }
    }

    /// CDF of the jitter term in units of `j` (used by the tests' KS checks).
    pub fn cdf(self, x: f64) -> f64 {
        match self {
            Distribution::Uniform => ((x + 1.0) / 2.0).clamp(0.0, 1.0),
            Distribution::Normal => phi(x),
            Distribution::Pareto => {
                if x <= 0.0 {
                    0.0
                } else {
                    1.0 - (1.0 + x).powi(-3)
                }
            }
            // A sum has no simple closed form; the tests check its moments.
            Distribution::ParetoNormal => f64::NAN,
        }
    }
}

/// Standard normal CDF, by Abramowitz & Stegun 26.2.17: absolute error below
/// 7.5e-8 (under a nanosecond on a 10 ms jitter), and about three times
/// faster than `erfc`, which matters at millions of packets per second.
#[inline]
pub(crate) fn phi(z: f64) -> f64 {
    const P: f64 = 0.231_641_9;
    const B: [f64; 5] = [
        0.319_381_530,
        -0.356_563_782,
        1.781_477_937,
        -1.821_255_978,
        1.330_274_429,
    ];
    let x = z.abs();
    let t = 1.0 / (1.0 + P * x);
    let poly = t * (B[0] + t * (B[1] + t * (B[2] + t * (B[3] + t * B[4]))));
    let tail =
        (-0.5 * x * x).exp() * std::f64::consts::FRAC_1_SQRT_2 / std::f64::consts::PI.sqrt() * poly;
    if z >= 0.0 { 1.0 - tail } else { tail }
}

/// An AR(1) standard normal sequence: `z' = ρ·z + √(1−ρ²)·ε`.
#[derive(Clone, Debug)]
struct Ar1 {
    rho: f64,
    innovation: f64,
    z: f64,
}

impl Ar1 {
    fn new(rho: f64) -> Self {
        Ar1 {
            rho,
            innovation: (1.0 - rho * rho).sqrt(),
            z: 0.0,
        }
    }
    #[inline]
    fn next(&mut self, rng: &mut StageRng) -> f64 {
        self.z = if self.rho == 0.0 {
            rng.normal()
        } else {
            self.rho * self.z + self.innovation * rng.normal()
        };
        self.z
    }
}

/// A standard normal process in time: AR(1) values on a grid, interpolated
/// and re-normalised so that every instant is exactly N(0, 1).
#[derive(Clone, Debug)]
struct GridProcess {
    ar: Ar1,
    period_ns: u64,
    /// Grid instant of `z0`; `None` before the first sample.
    t0: Option<u64>,
    z0: f64,
    z1: f64,
}

impl GridProcess {
    fn new(rho: f64, period: Duration) -> Self {
        GridProcess {
            ar: Ar1::new(rho),
            period_ns: (period.as_nanos() as u64).max(1),
            t0: None,
            z0: 0.0,
            z1: 0.0,
        }
    }

    #[inline]
    fn at(&mut self, t: u64, rng: &mut StageRng) -> f64 {
        let p = self.period_ns;
        let t0 = match self.t0 {
            Some(t0) if t < t0 + p => t0,
            Some(t0) if t < t0 + 64 * p => {
                // Walk the grid forward; each step is one AR(1) draw.
                let mut t0 = t0;
                while t >= t0 + p {
                    self.z0 = self.z1;
                    self.z1 = self.ar.next(rng);
                    t0 += p;
                }
                t0
            }
            _ => {
                // First sample, or a long silence: the correlation has decayed,
                // start afresh on the grid line below `t`.
                self.z0 = self.ar.next(rng);
                self.z1 = self.ar.next(rng);
                t - t % p
            }
        };
        self.t0 = Some(t0);
        let w = (t - t0) as f64 / p as f64;
        let rho = self.ar.rho;
        let sd = ((1.0 - w).powi(2) + w * w + 2.0 * w * (1.0 - w) * rho).sqrt();
        ((1.0 - w) * self.z0 + w * self.z1) / sd
    }
}

/// How the Gaussian behind the jitter advances.
#[derive(Clone, Debug)]
enum Driver {
    PerPacket(Ar1, Ar1),
    Continuous(GridProcess, GridProcess),
}

/// Draws jitter values for one link direction.
#[derive(Clone, Debug)]
pub struct JitterSource {
    jitter_ns: f64,
    dist: Distribution,
    driver: Driver,
}

impl JitterSource {
    /// Per-packet draws, each correlated with the last by `correlation`.
    pub fn per_packet(jitter: Duration, dist: Distribution, correlation: f64) -> Self {
        let rho = correlation.clamp(0.0, 0.999_999);
        JitterSource {
            jitter_ns: jitter.as_nanos() as f64,
            dist,
            driver: Driver::PerPacket(Ar1::new(rho), Ar1::new(rho)),
        }
    }

    /// A process in time with a new value every `coherence`; `correlation`
    /// links successive grid values.
    pub fn continuous(
        jitter: Duration,
        dist: Distribution,
        correlation: f64,
        coherence: Duration,
    ) -> Self {
        let rho = correlation.clamp(0.0, 0.999_999);
        JitterSource {
            jitter_ns: jitter.as_nanos() as f64,
            dist,
            driver: Driver::Continuous(
                GridProcess::new(rho, coherence),
                GridProcess::new(rho, coherence),
            ),
        }
    }

    pub fn is_zero(&self) -> bool {
        self.jitter_ns == 0.0
    }

    /// The jitter term in nanoseconds (may be negative) for a packet at `t`.
    #[inline]
    pub fn sample_ns(&mut self, t: Time, rng: &mut StageRng) -> f64 {
        let paretonormal = self.dist == Distribution::ParetoNormal;
        let (z, z2) = match &mut self.driver {
            Driver::PerPacket(a, b) => {
                let z = a.next(rng);
                (z, if paretonormal { b.next(rng) } else { 0.0 })
            }
            Driver::Continuous(a, b) => {
                let z = a.at(t.as_nanos(), rng);
                (
                    z,
                    if paretonormal {
                        b.at(t.as_nanos(), rng)
                    } else {
                        0.0
                    },
                )
            }
        };
        let unit = match self.dist {
            Distribution::Normal => z,
            Distribution::Uniform => 2.0 * phi(z) - 1.0,
            Distribution::Pareto => pareto_from_uniform(phi(z)),
            Distribution::ParetoNormal => 0.25 * pareto_from_uniform(phi(z)) + 0.75 * z2,
        };
        unit * self.jitter_ns
    }
}

/// Inverse CDF of netem's pareto shape: `(1−u)^(−1/3) − 1`, α = 3.
#[inline]
fn pareto_from_uniform(u: f64) -> f64 {
    // 1−u lies in (0, 1] for u in [0, 1); guard the extreme tail of Φ.
    (1.0 - u).max(1e-300).powf(-1.0 / 3.0) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedTree;

    fn draw(dist: Distribution, rho: f64, n: usize) -> Vec<f64> {
        let mut src = JitterSource::per_packet(Duration::from_nanos(1_000_000), dist, rho);
        let mut rng = SeedTree::new(42).rng();
        (0..n)
            .map(|_| src.sample_ns(Time::ZERO, &mut rng) / 1e6)
            .collect()
    }

    /// Continuous mode sampled every 100 µs with a 10 ms coherence.
    fn draw_continuous(dist: Distribution, n: usize) -> Vec<f64> {
        let mut src = JitterSource::continuous(
            Duration::from_nanos(1_000_000),
            dist,
            0.0,
            Duration::from_millis(10),
        );
        let mut rng = SeedTree::new(42).rng();
        (0..n as u64)
            .map(|i| src.sample_ns(Time::from_micros(i * 100), &mut rng) / 1e6)
            .collect()
    }

    fn mean_std(v: &[f64]) -> (f64, f64) {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
        (m, var.sqrt())
    }

    /// Kolmogorov–Smirnov distance between the sample and the CDF.
    fn ks(mut v: Vec<f64>, dist: Distribution) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        v.iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = dist.cdf(x);
                (f - i as f64 / n).abs().max((f - (i + 1) as f64 / n).abs())
            })
            .fold(0.0, f64::max)
    }

    fn lag1(v: &[f64]) -> f64 {
        let (m, s) = mean_std(v);
        let c: f64 = v.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum::<f64>();
        c / ((v.len() - 1) as f64 * s * s)
    }

    const N: usize = 1_000_000;

    #[test]
    fn each_distribution_has_its_mean_and_std() {
        for dist in [
            Distribution::Uniform,
            Distribution::Normal,
            Distribution::Pareto,
            Distribution::ParetoNormal,
        ] {
            for rho in [0.0, 0.5] {
                let v = draw(dist, rho, N);
                let (m, s) = mean_std(&v);
                let (want_m, want_s) = dist.moments();
                // The mean's standard error is s/√N (≈0.001 here), inflated by
                // √((1+ρ)/(1−ρ)) under correlation; 6 of those bound it.
                let se = want_s / (N as f64).sqrt() * ((1.0 + rho) / (1.0 - rho)).sqrt();
                assert!(
                    (m - want_m).abs() < 6.0 * se,
                    "{dist:?} ρ={rho}: mean {m} vs {want_m}"
                );
                // Pareto (α=3) has no 4th moment, so its sample std converges
                // slowly: a 3 % band for it, 1 % for the others.
                let band = if matches!(dist, Distribution::Pareto | Distribution::ParetoNormal) {
                    0.03
                } else {
                    0.01
                };
                assert!(
                    (s - want_s).abs() < band * want_s,
                    "{dist:?} ρ={rho}: std {s} vs {want_s}"
                );
            }
        }
    }

    #[test]
    fn continuous_mode_keeps_the_distribution_and_is_smooth() {
        for dist in [
            Distribution::Normal,
            Distribution::Uniform,
            Distribution::Pareto,
        ] {
            let v = draw_continuous(dist, 4_000_000);
            // Neighbouring samples (100 µs apart, 1 % of the coherence) barely differ.
            assert!(lag1(&v) > 0.99, "{dist:?}: lag-1 {}", lag1(&v));
            // Midway between grid points (w = ½), where the interpolation is
            // re-normalised the most; every other one, so they are independent.
            let mid: Vec<f64> = v.iter().copied().skip(50).step_by(200).collect();
            let d = ks(mid.clone(), dist);
            assert!(
                d < 1.95 / (mid.len() as f64).sqrt(),
                "{dist:?}: KS {d} on {}",
                mid.len()
            );
        }
        // Moments over all samples, for the light-tailed shapes (20 000 grid
        // points: the mean's standard error is about 0.007).
        for dist in [Distribution::Normal, Distribution::Uniform] {
            let (m, s) = mean_std(&draw_continuous(dist, 2_000_000));
            let (want_m, want_s) = dist.moments();
            assert!((m - want_m).abs() < 0.03, "{dist:?}: mean {m}");
            assert!(
                (s - want_s).abs() < 0.03 * want_s,
                "{dist:?}: std {s} vs {want_s}"
            );
        }
    }

    #[test]
    fn phi_is_accurate() {
        for i in -800..=800 {
            let z = f64::from(i) / 100.0;
            let exact = 0.5 * libm::erfc(-z / std::f64::consts::SQRT_2);
            assert!((phi(z) - exact).abs() < 7.5e-8, "z = {z}");
        }
    }

    #[test]
    fn shapes_match_netem_tables() {
        // KS distance below 1.95/√N: the 0.1 % critical value.
        let crit = 1.95 / (N as f64).sqrt();
        for dist in [
            Distribution::Uniform,
            Distribution::Normal,
            Distribution::Pareto,
        ] {
            let d = ks(draw(dist, 0.0, N), dist);
            assert!(d < crit, "{dist:?}: KS {d} ≥ {crit}");
        }
        assert!(
            draw(Distribution::Pareto, 0.0, 10_000)
                .iter()
                .all(|&x| x >= 0.0)
        );
        assert!(
            draw(Distribution::Uniform, 0.0, 10_000)
                .iter()
                .all(|&x| (-1.0..1.0).contains(&x))
        );
    }

    #[test]
    fn correlation_correlates_without_narrowing() {
        let v = draw(Distribution::Uniform, 0.8, N);
        let r = lag1(&v);
        // Spearman-like: for the copula the lag-1 correlation of Φ(z) is close to
        // (6/π)·asin(ρ/2) ≈ 0.786 for ρ = 0.8.
        let want = 6.0 / std::f64::consts::PI * (0.4f64).asin();
        assert!((r - want).abs() < 0.01, "lag-1 {r} vs {want}");
        let (_, s) = mean_std(&v);
        assert!((s - 1.0 / 3f64.sqrt()).abs() < 0.01);
        assert!(lag1(&draw(Distribution::Normal, 0.0, N)).abs() < 0.005);
    }
}
