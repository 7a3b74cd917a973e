//! A group's light viewers as the scenario declares them, checked, and
//! their join and leave instants.

use std::time::Duration;

use netem::ConfigError;
use netem::units::HumanDuration;
use serde::{Deserialize, Serialize};

/// Light viewers: many players of the stream beside a group's full
/// player, each a real RTMP session over the group's last mile, keeping
/// only its own figures (join time, capture → arrival per frame, freezes).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ViewersFile {
    /// How many (1 to 10,000).
    pub count: u32,
    /// How they join: "at-once" (all at `from`), "poisson" (at `rate`
    /// per second from `from`) or "flash" (a flash crowd: all within
    /// `within` from `from`, uniformly).
    #[serde(default)]
    pub arrival: ArrivalKind,
    /// When the first may join, from the run's start (default 0).
    #[serde(default)]
    pub from: Option<HumanDuration>,
    /// Joins per second ("poisson").
    #[serde(default)]
    pub rate: Option<f64>,
    /// The span of a flash crowd ("flash").
    #[serde(default)]
    pub within: Option<HumanDuration>,
    /// Mean time a viewer stays (exponential); default: to the end.
    #[serde(default)]
    pub stay: Option<HumanDuration>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ArrivalKind {
    #[default]
    AtOnce,
    Poisson,
    Flash,
}

/// Light viewers, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Viewers {
    pub count: u32,
    pub arrival: Arrival,
    /// Mean stay (exponential); `None`: to the end.
    pub stay: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    AtOnce { at: Duration },
    Poisson { from: Duration, per_s: f64 },
    Flash { from: Duration, within: Duration },
}

/// Most light viewers per group.
pub const MAX_VIEWERS: u32 = 10_000;

impl ViewersFile {
    /// Checks the table against a run of `duration`: the joins must fit in
    /// it (a Poisson process's expected last join included).
    pub fn validate(&self, field: &str, duration: Duration) -> Result<Viewers, ConfigError> {
        let bad = |f: &str, why: String| Err(ConfigError::invalid(format!("{field}.{f}"), why));
        if !(1..=MAX_VIEWERS).contains(&self.count) {
            return bad("count", format!("1 to {MAX_VIEWERS}, not {}", self.count));
        }
        let from = self.from.map_or(Duration::ZERO, HumanDuration::get);
        if from >= duration {
            return bad(
                "from",
                format!(
                    "{} is not inside the {} run",
                    HumanDuration(from),
                    HumanDuration(duration)
                ),
            );
        }
        let name = match self.arrival {
            ArrivalKind::AtOnce => "at-once",
            ArrivalKind::Poisson => "poisson",
            ArrivalKind::Flash => "flash",
        };
        if self.rate.is_some() && self.arrival != ArrivalKind::Poisson {
            return bad(
                "rate",
                format!("only \"poisson\" arrivals take a rate, not {name}"),
            );
        }
        if self.within.is_some() && self.arrival != ArrivalKind::Flash {
            return bad(
                "within",
                format!("only \"flash\" arrivals take `within`, not {name}"),
            );
        }
        let arrival = match self.arrival {
            ArrivalKind::AtOnce => Arrival::AtOnce { at: from },
            ArrivalKind::Poisson => {
                let per_s = match self.rate {
                    Some(r) if r.is_finite() && r > 0.0 && r <= 100_000.0 => r,
                    Some(r) => {
                        return bad(
                            "rate",
                            format!("joins per second, above 0 and at most 100,000, not {r}"),
                        );
                    }
                    None => {
                        return bad(
                            "rate",
                            "\"poisson\" arrivals need a rate (joins per second)".into(),
                        );
                    }
                };
                let last = from + Duration::from_secs_f64(f64::from(self.count) / per_s);
                if last >= duration {
                    return bad(
                        "rate",
                        format!(
                            "{} viewers at {per_s}/s from {} need about {} and the run lasts {}",
                            self.count,
                            HumanDuration(from),
                            HumanDuration(last),
                            HumanDuration(duration)
                        ),
                    );
                }
                Arrival::Poisson { from, per_s }
            }
            ArrivalKind::Flash => {
                let within = match self.within {
                    Some(w) if !w.get().is_zero() => w.get(),
                    _ => {
                        return bad(
                            "within",
                            "a flash crowd needs its span (`within`, above 0)".into(),
                        );
                    }
                };
                if from + within >= duration {
                    return bad(
                        "within",
                        format!(
                            "the crowd would still be joining when the {} run ends",
                            HumanDuration(duration)
                        ),
                    );
                }
                Arrival::Flash { from, within }
            }
        };
        let stay = match self.stay {
            Some(s) if s.get() < Duration::from_millis(100) => {
                return bad("stay", "at least 100ms".into());
            }
            s => s.map(HumanDuration::get),
        };
        Ok(Viewers {
            count: self.count,
            arrival,
            stay,
        })
    }
}

impl Viewers {
    /// Each viewer's join and leave instants (from the run's start), drawn
    /// from `seeds`; a viewer leaves at `end` unless it left earlier.
    pub fn schedule(
        &self,
        seeds: netem::rng::SeedTree,
        end: Duration,
    ) -> Vec<(Duration, Duration)> {
        let mut joins = seeds.child("joins").rng();
        let mut stays = seeds.child("stays").rng();
        let mut t = Duration::ZERO;
        (0..self.count)
            .map(|_| {
                let join = match self.arrival {
                    Arrival::AtOnce { at } => at,
                    Arrival::Poisson { from, per_s } => {
                        // Exponential gaps: -ln(U) / rate.
                        t += Duration::from_secs_f64(-(1.0 - joins.unit()).ln() / per_s);
                        from + t
                    }
                    Arrival::Flash { from, within } => from + within.mul_f64(joins.unit()),
                };
                let leave = match self.stay {
                    Some(mean) => join + mean.mul_f64(-(1.0 - stays.unit()).ln()),
                    None => end,
                };
                (join.min(end), leave.min(end))
            })
            .collect()
    }

    /// "N viewers, flash crowd within 5s from 2s" and the like.
    pub fn describe(&self) -> String {
        let arrival = match self.arrival {
            Arrival::AtOnce { at } => format!("all at {}", HumanDuration(at)),
            Arrival::Poisson { from, per_s } => {
                format!("Poisson {per_s}/s from {}", HumanDuration(from))
            }
            Arrival::Flash { from, within } => format!(
                "flash crowd within {} from {}",
                HumanDuration(within),
                HumanDuration(from)
            ),
        };
        let stay = self.stay.map_or(String::new(), |s| {
            format!(", staying {} on average", HumanDuration(s))
        });
        format!("{} viewers, {arrival}{stay}", self.count)
    }
}
