//! Sender-side ABR for RTMP, as OBS's dynamic bitrate does it: watch the
//! send backlog (media the encoder produced that the transport has not put
//! on the wire yet), cut the encoder's target bitrate when it grows, raise
//! it slowly again once it has drained. Sans-IO: the publisher feeds it
//! backlog samples with the time; it answers with a new target, if any.

use std::time::Duration;

use netem::Time;
use serde::{Deserialize, Serialize};

/// The controller's settings (`[protocols.abr]` in a scenario).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbrConfig {
    /// Lowest target, as a fraction of the scenario's bitrate.
    pub min_fraction: f64,
    /// Backlog above which the target is cut.
    pub high_backlog: netem::units::HumanDuration,
    /// Backlog below which the target may rise.
    pub low_backlog: netem::units::HumanDuration,
    /// Factor of a cut.
    pub down: f64,
    /// Factor of a rise.
    pub up: f64,
    /// Time between rises, and after a cut before the next cut or rise (the
    /// backlog needs that long to show the effect).
    pub hold: netem::units::HumanDuration,
}

impl Default for AbrConfig {
    fn default() -> Self {
        AbrConfig {
            min_fraction: 0.1,
            high_backlog: netem::units::HumanDuration(Duration::from_millis(250)),
            low_backlog: netem::units::HumanDuration(Duration::from_millis(50)),
            down: 0.7,
            up: 1.05,
            hold: netem::units::HumanDuration(Duration::from_secs(1)),
        }
    }
}

impl AbrConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.01..=1.0).contains(&self.min_fraction) {
            return Err("min_fraction: between 0.01 and 1".into());
        }
        if !(self.down > 0.0 && self.down < 1.0) {
            return Err("down: between 0 and 1 (exclusive)".into());
        }
        if !(self.up > 1.0 && self.up <= 2.0) {
            return Err("up: above 1, at most 2".into());
        }
        if self.low_backlog.get() >= self.high_backlog.get() {
            return Err("low_backlog must be below high_backlog".into());
        }
        Ok(())
    }
}

/// One decision, for the time series.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct AbrSample {
    pub at_ms: f64,
    pub backlog_ms: f64,
    pub target_bps: f64,
}

#[derive(Clone, Debug)]
pub struct Abr {
    cfg: AbrConfig,
    max_bps: f64,
    target_bps: f64,
    last_change: Option<Time>,
    switches: u32,
    samples: Vec<AbrSample>,
}

impl Abr {
    /// Starts at `max_bps` (the scenario's bitrate).
    pub fn new(cfg: AbrConfig, max_bps: f64) -> Abr {
        Abr {
            cfg,
            max_bps,
            target_bps: max_bps,
            last_change: None,
            switches: 0,
            samples: Vec::new(),
        }
    }

    pub fn target_bps(&self) -> f64 {
        self.target_bps
    }

    pub fn switches(&self) -> u32 {
        self.switches
    }

    pub fn samples(&self) -> &[AbrSample] {
        &self.samples
    }

    /// The backlog at `now`, and the rate the sender's queue drained at
    /// since the last sample (what the path carried), if known; returns the
    /// new target when it changes. A cut goes to 90 % of the drain rate
    /// when that is lower than `down` × the target: one step to below the
    /// capacity instead of several.
    pub fn on_backlog(
        &mut self,
        now: Time,
        backlog: Duration,
        drain_bps: Option<f64>,
    ) -> Option<f64> {
        let held = self
            .last_change
            .is_some_and(|t| now.saturating_since(t) < self.cfg.hold.get());
        let old = self.target_bps;
        if !held {
            if backlog > self.cfg.high_backlog.get() {
                let cut = match drain_bps {
                    Some(d) if d > 0.0 => (self.target_bps * self.cfg.down).min(0.9 * d),
                    _ => self.target_bps * self.cfg.down,
                };
                self.target_bps = cut.max(self.max_bps * self.cfg.min_fraction);
            } else if backlog < self.cfg.low_backlog.get() {
                self.target_bps = (self.target_bps * self.cfg.up).min(self.max_bps);
            }
        }
        self.samples.push(AbrSample {
            at_ms: now.as_secs_f64() * 1e3,
            backlog_ms: backlog.as_secs_f64() * 1e3,
            target_bps: self.target_bps,
        });
        if (self.target_bps - old).abs() > 0.5 {
            self.last_change = Some(now);
            self.switches += 1;
            Some(self.target_bps)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender into a fixed-capacity pipe: the backlog grows by
    /// (target − capacity) per second while positive, and drains otherwise.
    fn simulate(capacity: impl Fn(f64) -> f64, seconds: f64) -> Abr {
        let mut abr = Abr::new(AbrConfig::default(), 4e6);
        let mut backlog_bits = 0.0f64;
        let step = 0.1;
        let mut t = 0.0;
        while t < seconds {
            backlog_bits = (backlog_bits + (abr.target_bps() - capacity(t)) * step).max(0.0);
            let backlog = Duration::from_secs_f64(backlog_bits / abr.target_bps());
            abr.on_backlog(Time::from_secs_f64(t), backlog, Some(capacity(t)));
            t += step;
        }
        abr
    }

    #[test]
    fn cuts_below_a_capacity_drop_and_stays_near_it() {
        let abr = simulate(|t| if t < 10.0 { 4e6 } else { 1e6 }, 40.0);
        let late: Vec<f64> = abr
            .samples()
            .iter()
            .filter(|s| s.at_ms > 25_000.0)
            .map(|s| s.target_bps)
            .collect();
        let mean = late.iter().sum::<f64>() / late.len() as f64;
        assert!(mean < 1.05e6 && mean > 0.6e6, "mean target {mean}");
        // It was at the full rate before the drop.
        assert!(abr.samples()[50].target_bps == 4e6);
        assert!(abr.switches() >= 4);
    }

    #[test]
    fn never_leaves_its_bounds() {
        let abr = simulate(|_| 1e4, 30.0);
        assert!(abr.samples().iter().all(|s| s.target_bps >= 4e5 - 1.0));
        let abr = simulate(|_| 1e9, 30.0);
        assert!(abr.samples().iter().all(|s| s.target_bps <= 4e6 + 1.0));
        assert_eq!(abr.switches(), 0);
    }

    #[test]
    fn rejects_nonsense() {
        let bad = AbrConfig {
            up: 0.9,
            ..AbrConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(AbrConfig::default().validate().is_ok());
    }
}
