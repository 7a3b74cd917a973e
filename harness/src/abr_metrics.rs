//! ABR metrics of a run (DESIGN.md): the encoder's target against the
//! first mile's capacity over time, the time to adapt after a capacity
//! drop, the number of switches, and the mean target / capacity.

use netem::Time;
use netem::spec::{Change, Profile};
use serde::Serialize;

use crate::media::abr::{AbrConfig, AbrSample};

/// The capacity of a direction over time: (from, bit/s; `None` unlimited).
pub fn capacity_steps(p: &Profile) -> Vec<(Time, Option<f64>)> {
    let mut steps = vec![(
        Time::ZERO,
        p.bottleneck
            .as_ref()
            .and_then(|b| b.spec.capacity.mean_bps()),
    )];
    for c in &p.timeline {
        if let Change::Bottleneck(b) = &c.change {
            steps.push((c.at, b.capacity.mean_bps()));
        }
    }
    steps
}

fn capacity_at(steps: &[(Time, Option<f64>)], t: Time) -> Option<f64> {
    steps
        .iter()
        .take_while(|(at, _)| *at <= t)
        .last()
        .and_then(|(_, c)| *c)
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AbrMetrics {
    pub switches: u32,
    /// The first capacity drop on the first mile (scenario time, ms).
    pub capacity_drop_at_ms: Option<f64>,
    /// From that drop until the target is below the capacity and the send
    /// backlog has drained (below ABR's low mark); `None` if it never did.
    pub adaptation_time_ms: Option<f64>,
    /// Mean target / capacity over the samples where the capacity is
    /// limited (after the drop, when there is one).
    pub mean_target_over_capacity: Option<f64>,
    /// Mean target after the drop (or over the run), bit/s.
    pub mean_target_bps: f64,
}

/// Metrics from ABR's samples (scenario time) and the first-mile uplink's
/// profile (sample times are scenario time).
pub fn abr_metrics(
    samples: &[AbrSample],
    switches: u32,
    cfg: &AbrConfig,
    uplink: &Profile,
) -> AbrMetrics {
    let steps = capacity_steps(uplink);
    let drop = steps
        .windows(2)
        .find(|w| match (w[0].1, w[1].1) {
            (Some(a), Some(b)) => b < a,
            (None, Some(_)) => true,
            _ => false,
        })
        .map(|w| w[1].0);
    let after: Vec<&AbrSample> = samples
        .iter()
        .filter(|s| drop.is_none_or(|d| s.at_ms >= d.as_secs_f64() * 1e3))
        .collect();
    let low_ms = cfg.low_backlog.get().as_secs_f64() * 1e3;
    let adaptation_time_ms = drop.and_then(|d| {
        after
            .iter()
            .find(|s| {
                let t = Time::from_secs_f64(s.at_ms / 1e3);
                capacity_at(&steps, t).is_some_and(|c| s.target_bps <= c) && s.backlog_ms < low_ms
            })
            .map(|s| s.at_ms - d.as_secs_f64() * 1e3)
    });
    let ratios: Vec<f64> = after
        .iter()
        .filter_map(|s| {
            capacity_at(&steps, Time::from_secs_f64(s.at_ms / 1e3)).map(|c| s.target_bps / c)
        })
        .collect();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let targets: Vec<f64> = after.iter().map(|s| s.target_bps).collect();
    AbrMetrics {
        switches,
        capacity_drop_at_ms: drop.map(|d| d.as_secs_f64() * 1e3),
        adaptation_time_ms,
        mean_target_over_capacity: mean(&ratios),
        mean_target_bps: mean(&targets).unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netem::config::LinkProfiles;

    fn uplink(toml: &str) -> Profile {
        LinkProfiles::from_toml("t", toml, None)
            .unwrap()
            .validate()
            .unwrap()
            .0
    }

    #[test]
    fn adaptation_is_measured_from_the_drop() {
        let p = uplink(
            "[bottleneck]\nrate = \"4Mbit/s\"\n[[timeline]]\nat = \"10s\"\nrate = \"1Mbit/s\"\n",
        );
        assert_eq!(
            capacity_steps(&p),
            vec![
                (Time::ZERO, Some(4e6)),
                (Time::from_millis(10_000), Some(1e6))
            ]
        );
        let s = |at_ms: f64, backlog_ms: f64, target_bps: f64| AbrSample {
            at_ms,
            backlog_ms,
            target_bps,
        };
        let samples = [
            s(9_000.0, 0.0, 3e6),
            s(11_000.0, 900.0, 3e6),
            s(12_000.0, 600.0, 2.1e6),
            s(13_000.0, 300.0, 0.9e6),
            s(14_000.0, 20.0, 0.9e6),
            s(15_000.0, 10.0, 0.95e6),
        ];
        let m = abr_metrics(&samples, 3, &AbrConfig::default(), &p);
        assert_eq!(m.capacity_drop_at_ms, Some(10_000.0));
        assert_eq!(m.adaptation_time_ms, Some(4_000.0));
        assert!(m.mean_target_over_capacity.unwrap() > 1.0);
    }
}
