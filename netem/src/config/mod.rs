//! Profile configuration: plain serde structs with human units, and the one
//! place where they are validated into a [`Profile`].
//!
//! A profile file is TOML. Either the stage tables sit at the top level (the
//! same impairment both ways), or under `[uplink]` and `[downlink]`:
//!
//! ```toml
//! description = "LTE uplink at a busy cell"
//! [delay]
//! base = "35ms"
//! jitter = "8ms"
//! distribution = "normal"
//! order = "fifo"
//! [loss]
//! model = "burst"
//! rate = "0.5%"
//! mean_burst = 2.0
//! [bottleneck]
//! rate = "8Mbit/s"
//! queue = "150ms"
//! [[timeline]]
//! at = "10s"
//! rate = "2Mbit/s"
//! ```
//!
//! Every field is documented in `scenarios/README.md`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bottleneck::{BottleneckSpec, Capacity, OutageMode};
use crate::error::ConfigError;
use crate::flow::FlowFilter;
use crate::spec::{Change, Profile, ReorderSpec, Staged, TimedChange};
use crate::time::Time;

mod bottleneck;
mod delay;
mod loss;

pub use bottleneck::{AqmKind, BottleneckConfig, TimelineConfig};
pub use delay::{ChanceConfig, DelayConfig, ReorderConfig};
pub use loss::{LossConfig, LossKind};

/// One direction's impairments, as written in TOML.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<ReorderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<ChanceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<ChanceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<BottleneckConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineConfig>,
}

pub(super) type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn bad<T>(field: &str, reason: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(field, reason))
}

pub(super) fn staged<T>(spec: T, flows: &Option<FlowFilter>) -> Staged<T> {
    Staged {
        spec,
        flows: flows.clone(),
    }
}

impl ProfileConfig {
    /// Checks every value and builds the engine's [`Profile`]. Errors name the
    /// field by its dotted path (`timeline[1].rate`).
    pub fn validate(&self, base_dir: Option<&Path>) -> Result<Profile> {
        let loss = match &self.loss {
            Some(l) => l
                .validate()
                .map_err(|e| e.within("loss"))?
                .map(|m| staged(m, &l.flows)),
            None => None,
        };
        let delay = match &self.delay {
            Some(d) => Some(staged(
                d.validate().map_err(|e| e.within("delay"))?,
                &d.flows,
            )),
            None => None,
        };
        let reorder = match &self.reorder {
            Some(r) => {
                let has_delay = delay
                    .as_ref()
                    .is_some_and(|d| !d.spec.base.is_zero() || !d.spec.jitter.is_zero());
                if !has_delay {
                    return bad(
                        "reorder",
                        "reordering sends packets ahead of the delay: it needs a [delay]",
                    );
                }
                if r.gap == Some(0) {
                    return bad("reorder.gap", "gap is at least 1");
                }
                Some(staged(
                    ReorderSpec {
                        p: r.rate.fraction(),
                        gap: r.gap.unwrap_or(1),
                    },
                    &r.flows,
                ))
            }
            None => None,
        };
        let chance =
            |c: &Option<ChanceConfig>| c.as_ref().map(|c| staged(c.rate.fraction(), &c.flows));
        let bottleneck = match &self.bottleneck {
            Some(b) => Some(staged(
                b.validate(base_dir).map_err(|e| e.within("bottleneck"))?,
                &b.flows,
            )),
            None => None,
        };
        let timeline = self.validate_timeline(bottleneck.as_ref().map(|b| &b.spec))?;
        Ok(Profile {
            loss,
            delay,
            reorder,
            duplicate: chance(&self.duplicate),
            corrupt: chance(&self.corrupt),
            bottleneck,
            timeline,
        })
    }

    fn validate_timeline(&self, base: Option<&BottleneckSpec>) -> Result<Vec<TimedChange>> {
        let mut order: Vec<usize> = (0..self.timeline.len()).collect();
        order.sort_by_key(|&i| self.timeline[i].at);
        let mut bottleneck = base.cloned().unwrap_or_default();
        let mut out = Vec::new();
        let mut outage_until: Option<(Time, usize)> = None;
        for i in order {
            let e = &self.timeline[i];
            let field = |f: &str| format!("timeline[{i}].{f}");
            let at = Time::from_duration(e.at.get());
            let mut push = |change| out.push(TimedChange { at, change });
            let mut any = false;
            if let Some(l) = &e.loss {
                if l.flows.is_some() {
                    return bad(
                        &field("loss.flows"),
                        "a timeline change keeps the stage's flows; set flows on [loss]",
                    );
                }
                push(Change::Loss(
                    l.validate().map_err(|e| e.within(&field("loss")))?,
                ));
                any = true;
            }
            if let Some(d) = &e.delay {
                if d.flows.is_some() {
                    return bad(
                        &field("delay.flows"),
                        "a timeline change keeps the stage's flows; set flows on [delay]",
                    );
                }
                push(Change::Delay(
                    d.validate().map_err(|e| e.within(&field("delay")))?,
                ));
                any = true;
            }
            if let Some(r) = e.rate {
                if matches!(bottleneck.capacity, Capacity::Trace(_)) {
                    return bad(
                        &field("rate"),
                        "the bottleneck follows a trace; a rate would replace it",
                    );
                }
                bottleneck.capacity = Capacity::Rate(r);
                push(Change::Bottleneck(bottleneck.clone()));
                any = true;
            }
            if let Some(p) = e.duplicate {
                push(Change::Duplicate(p.fraction()));
                any = true;
            }
            if let Some(p) = e.corrupt {
                push(Change::Corrupt(p.fraction()));
                any = true;
            }
            if let Some(p) = e.reorder {
                let gap = self.reorder.as_ref().and_then(|r| r.gap).unwrap_or(1);
                push(Change::Reorder((!p.is_zero()).then_some(ReorderSpec {
                    p: p.fraction(),
                    gap,
                })));
                any = true;
            }
            match (e.outage, e.outage_mode) {
                (Some(d), mode) => {
                    if d.get().is_zero() {
                        return bad(&field("outage"), "an outage lasts longer than 0");
                    }
                    if let Some((until, j)) = outage_until
                        && at < until
                    {
                        return bad(
                            &field("outage"),
                            format!("overlaps the outage of timeline[{j}]"),
                        );
                    }
                    push(Change::OutageStart(mode.unwrap_or(OutageMode::Drop)));
                    let end = at + d.get();
                    out.push(TimedChange {
                        at: end,
                        change: Change::OutageEnd,
                    });
                    outage_until = Some((end, i));
                    any = true;
                }
                (None, Some(_)) => {
                    return bad(&field("outage_mode"), "goes with outage = \"<duration>\"");
                }
                (None, None) => {}
            }
            if !any {
                return bad(
                    &format!("timeline[{i}]"),
                    "changes nothing: give loss, delay, rate, duplicate, corrupt, reorder or outage",
                );
            }
        }
        // Outage ends were pushed out of order; a stable sort keeps same-instant order.
        out.sort_by_key(|c| c.at);
        Ok(out)
    }
}

/// A link's two directions. `uplink` runs towards the media server, `downlink`
/// away from it: on the first mile the media goes up (publisher → server), on
/// the last mile it goes down (server → player) and the feedback goes up.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LinkProfiles {
    /// Preset name, file path or netem line the profiles came from.
    pub name: String,
    pub description: Option<String>,
    pub uplink: ProfileConfig,
    pub downlink: ProfileConfig,
    /// Where relative trace paths are resolved.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TwoWayFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    uplink: ProfileConfig,
    #[serde(default)]
    downlink: ProfileConfig,
}

impl LinkProfiles {
    /// The same profile in both directions.
    pub fn symmetric(name: &str, p: ProfileConfig) -> Self {
        LinkProfiles {
            name: name.to_string(),
            description: p.description.clone(),
            uplink: p.clone(),
            downlink: p,
            base_dir: None,
        }
    }

    /// Parses a profile file's text; `origin` names it in errors. Both TOML
    /// errors and validation errors carry the line.
    pub fn from_toml(origin: &str, text: &str, base_dir: Option<&Path>) -> Result<Self> {
        let located = |e: ConfigError| crate::locate(origin, text, e);
        let table: toml::Table =
            toml::from_str(text).map_err(|e| located(ConfigError::Toml(e.to_string())))?;
        let two_way = table.contains_key("uplink") || table.contains_key("downlink");
        let profiles = if two_way {
            let f: TwoWayFile =
                toml::from_str(text).map_err(|e| located(ConfigError::Toml(e.to_string())))?;
            LinkProfiles {
                name: origin.to_string(),
                description: f.description,
                uplink: f.uplink,
                downlink: f.downlink,
                base_dir: base_dir.map(Path::to_path_buf),
            }
        } else {
            let p: ProfileConfig =
                toml::from_str(text).map_err(|e| located(ConfigError::Toml(e.to_string())))?;
            LinkProfiles {
                base_dir: base_dir.map(Path::to_path_buf),
                ..LinkProfiles::symmetric(origin, p)
            }
        };
        // Validate now, so a bad file fails at load with its line.
        if two_way {
            profiles
                .uplink
                .validate(base_dir)
                .map_err(|e| located(e.within("uplink")))?;
            profiles
                .downlink
                .validate(base_dir)
                .map_err(|e| located(e.within("downlink")))?;
        } else {
            profiles.uplink.validate(base_dir).map_err(located)?;
        }
        Ok(profiles)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_toml(&path.display().to_string(), &text, path.parent())
    }

    /// Both directions, validated: (uplink, downlink).
    pub fn validate(&self) -> Result<(Profile, Profile)> {
        let dir = self.base_dir.as_deref();
        Ok((
            self.uplink.validate(dir).map_err(|e| e.within("uplink"))?,
            self.downlink
                .validate(dir)
                .map_err(|e| e.within("downlink"))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> String {
        LinkProfiles::from_toml("p.toml", toml, None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_file_line_and_field() {
        for (toml, needles) in [
            // Unknown field: TOML's own error, with the line.
            (
                "[delay]\nbase = \"10ms\"\njiter = \"5ms\"\n",
                &["p.toml", "line 3", "jiter"][..],
            ),
            // Bad unit.
            (
                "[delay]\nbase = \"10 parsecs\"\n",
                &["line 2", "unknown time unit"][..],
            ),
            // Negative rate.
            (
                "[bottleneck]\nrate = \"-5Mbit/s\"\n",
                &["line 2", "greater than zero"][..],
            ),
            // Bare number where a percentage is needed.
            (
                "[loss]\nmodel = \"bernoulli\"\nrate = 2\n",
                &["line 3", "% sign"][..],
            ),
            // Validation errors carry the line too.
            (
                "[delay]\nbase = \"10ms\"\njitter = \"5ms\"\n",
                &["p.toml, line 1", "delay.order", "fifo"][..],
            ),
            (
                "[loss]\nmodel = \"bernoulli\"\nrate = \"1%\"\np = \"2%\"\n",
                &["line 4", "loss.p", "takes: rate"][..],
            ),
            (
                "[loss]\nmodel = \"gilbert-elliott\"\n",
                &["loss.p", "needs p"][..],
            ),
            (
                "[loss]\nmodel = \"burst\"\nrate = \"60%\"\nmean_burst = 1.0\n",
                &["loss.mean_burst", "> 1"][..],
            ),
            (
                "[[timeline]]\nat = \"1s\"\noutage = \"2s\"\n[[timeline]]\nat = \"2s\"\noutage = \"1s\"\n",
                &["line 6", "timeline[1].outage", "overlaps"][..],
            ),
            (
                "[[timeline]]\nat = \"1s\"\n",
                &["timeline[0]", "changes nothing"][..],
            ),
            (
                "[bottleneck]\nqueue = \"50ms\"\n",
                &["bottleneck.queue", "needs a rate"][..],
            ),
            (
                "[uplink.loss]\nmodel = \"four-state\"\np13 = \"60%\"\np14 = \"50%\"\n",
                &["line 4", "uplink.loss.p14"][..],
            ),
            (
                "[reorder]\nrate = \"5%\"\n",
                &["reorder", "needs a [delay]"][..],
            ),
            ("[delay\n", &["p.toml", "line 1"][..]),
        ] {
            let e = err(toml);
            for n in needles {
                assert!(e.contains(n), "{toml:?}\n  gave: {e}\n  missing: {n}");
            }
        }
    }

    #[test]
    fn two_way_and_symmetric_forms() {
        let two = LinkProfiles::from_toml("x", "[uplink.delay]\nbase = \"5ms\"\n", None).unwrap();
        let (up, down) = two.validate().unwrap();
        assert!(up.delay.is_some() && down.delay.is_none());
        let sym = LinkProfiles::from_toml("x", "[delay]\nbase = \"5ms\"\n", None).unwrap();
        let (up, down) = sym.validate().unwrap();
        assert_eq!(up, down);
        // Mixing the forms is refused.
        assert!(LinkProfiles::from_toml("x", "[uplink]\n[delay]\nbase = \"5ms\"\n", None).is_err());
    }

    #[test]
    fn config_round_trips_through_toml() {
        let p = crate::resolve("4g").unwrap();
        let text = toml::to_string(&p.uplink).unwrap();
        let again: ProfileConfig = toml::from_str(&text).unwrap();
        assert_eq!(again, p.uplink);
    }
}
