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
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bottleneck::{Aqm, BottleneckSpec, Capacity, OutageMode};
use crate::delay::{DelaySpec, Order};
use crate::error::ConfigError;
use crate::flow::FlowFilter;
use crate::jitter::Distribution;
use crate::loss::LossModel;
use crate::spec::{Change, Profile, ReorderSpec, Staged, TimedChange};
use crate::time::Time;
use crate::trace::Trace;
use crate::units::{BitRate, HumanDuration, Probability, QueueLimit};

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

/// Which loss model a `[loss]` table describes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// No loss (useful in a timeline, to end a lossy period).
    None,
    /// `rate`: each packet lost independently.
    Bernoulli,
    /// `rate` and `mean_burst`: Gilbert's model solved for both.
    Burst,
    /// netem's `gemodel`: `p`, `r`, `loss_bad` (1−h), `loss_good` (1−k).
    GilbertElliott,
    /// netem's `state`: `p13`, `p31`, `p32`, `p23`, `p14`.
    FourState,
    /// `packets` (0-based indices) and/or `ranges` (`[["10s", "12s"]]`).
    Scripted,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    pub model: LossKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_burst: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_bad: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_good: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p13: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p31: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p32: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p23: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p14: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<(HumanDuration, HumanDuration)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowFilter>,
}

impl LossConfig {
    /// A table with only the model set; the rest filled in by the caller.
    pub fn of(model: LossKind) -> Self {
        LossConfig {
            model,
            rate: None,
            mean_burst: None,
            p: None,
            r: None,
            loss_bad: None,
            loss_good: None,
            p13: None,
            p31: None,
            p32: None,
            p23: None,
            p14: None,
            packets: None,
            ranges: None,
            flows: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayConfig {
    /// Constant one-way delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<HumanDuration>,
    /// The jitter parameter `j` (see `jitter` module for each distribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Probability>,
    /// Required with jitter: `fifo` or `reorder`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    /// With `order = "fifo"`: how long one jitter value lasts (default: ten
    /// times the jitter, at least 10 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coherence: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowFilter>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderConfig {
    pub rate: Probability,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowFilter>,
}

/// `duplicate` and `corrupt`: a probability per packet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChanceConfig {
    pub rate: Probability,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowFilter>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AqmKind {
    DropTail,
    Codel,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BottleneckConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<BitRate>,
    /// A mahimahi trace file, relative to the profile file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<PathBuf>,
    /// Default: 1000 packets, netem's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aqm: Option<AqmKind>,
    /// CoDel's target (default 5 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<HumanDuration>,
    /// CoDel's interval (default 100 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Bytes added to each packet for serialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowFilter>,
}

/// A change at an instant. Each field given replaces that stage's settings
/// (its flow filter stays); `outage` cuts the link for a while.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineConfig {
    pub at: HumanDuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<BitRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<HumanDuration>,
    /// `drop` (default) or `hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage_mode: Option<OutageMode>,
}

type Result<T> = std::result::Result<T, ConfigError>;

fn bad<T>(field: &str, reason: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(field, reason))
}

impl LossConfig {
    /// The model, checked: required parameters present, none that the model
    /// does not use, netem's defaults for the optional ones.
    pub fn validate(&self) -> Result<Option<LossModel>> {
        let given: [(&str, bool); 14] = [
            ("rate", self.rate.is_some()),
            ("mean_burst", self.mean_burst.is_some()),
            ("p", self.p.is_some()),
            ("r", self.r.is_some()),
            ("loss_bad", self.loss_bad.is_some()),
            ("loss_good", self.loss_good.is_some()),
            ("p13", self.p13.is_some()),
            ("p31", self.p31.is_some()),
            ("p32", self.p32.is_some()),
            ("p23", self.p23.is_some()),
            ("p14", self.p14.is_some()),
            ("packets", self.packets.is_some()),
            ("ranges", self.ranges.is_some()),
            ("flows", self.flows.is_some()),
        ];
        let (allowed, name): (&[&str], &str) = match self.model {
            LossKind::None => (&[], "none"),
            LossKind::Bernoulli => (&["rate"], "bernoulli"),
            LossKind::Burst => (&["rate", "mean_burst"], "burst"),
            LossKind::GilbertElliott => (&["p", "r", "loss_bad", "loss_good"], "gilbert-elliott"),
            LossKind::FourState => (&["p13", "p31", "p32", "p23", "p14"], "four-state"),
            LossKind::Scripted => (&["packets", "ranges"], "scripted"),
        };
        for (field, present) in given {
            if present && field != "flows" && !allowed.contains(&field) {
                return bad(
                    field,
                    format!(
                        "not a parameter of loss model \"{name}\" (it takes: {})",
                        if allowed.is_empty() {
                            "nothing".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                );
            }
        }
        let need = |v: Option<Probability>, field: &str| {
            v.map(Probability::fraction).ok_or_else(|| {
                ConfigError::invalid(field, format!("loss model \"{name}\" needs {field}"))
            })
        };
        let or = |v: Option<Probability>, d: f64| v.map_or(d, Probability::fraction);
        Ok(Some(match self.model {
            LossKind::None => return Ok(None),
            LossKind::Bernoulli => LossModel::Bernoulli {
                p: need(self.rate, "rate")?,
            },
            LossKind::Burst => {
                let rate = need(self.rate, "rate")?;
                let b = self.mean_burst.ok_or_else(|| {
                    ConfigError::invalid(
                        "mean_burst",
                        "loss model \"burst\" needs mean_burst (packets)",
                    )
                })?;
                if !b.is_finite() {
                    return bad("mean_burst", "must be a finite number of packets");
                }
                LossModel::burst(rate, b).map_err(|e| ConfigError::invalid("mean_burst", e))?
            }
            LossKind::GilbertElliott => {
                let p = need(self.p, "p")?;
                // iproute2's defaults: r = 1−p, 1−h = 100 %, 1−k = 0 %.
                let r = or(self.r, 1.0 - p);
                if p + r == 0.0 {
                    return bad("r", "p and r cannot both be 0%");
                }
                LossModel::GilbertElliott {
                    p,
                    r,
                    loss_bad: or(self.loss_bad, 1.0),
                    loss_good: or(self.loss_good, 0.0),
                }
            }
            LossKind::FourState => {
                let p13 = need(self.p13, "p13")?;
                // iproute2's defaults: p31 = 1−p13, p32 = 0, p23 = 1, p14 = 0.
                let m = LossModel::FourState {
                    p13,
                    p31: or(self.p31, 1.0 - p13),
                    p32: or(self.p32, 0.0),
                    p23: or(self.p23, 1.0),
                    p14: or(self.p14, 0.0),
                };
                if let LossModel::FourState {
                    p13, p31, p32, p14, ..
                } = m
                {
                    if p13 + p14 > 1.0 {
                        return bad("p14", "p13 + p14 exceed 100%: they leave state 1 together");
                    }
                    if p31 + p32 > 1.0 {
                        return bad("p32", "p31 + p32 exceed 100%: they leave state 3 together");
                    }
                }
                m
            }
            LossKind::Scripted => {
                let packets = self.packets.clone().unwrap_or_default();
                let ranges: Vec<(Time, Time)> = self
                    .ranges
                    .iter()
                    .flatten()
                    .map(|(a, b)| (Time::from_duration(a.get()), Time::from_duration(b.get())))
                    .collect();
                if let Some(i) = ranges.iter().position(|(a, b)| a >= b) {
                    return bad(
                        &format!("ranges[{i}]"),
                        "a range's start must be before its end",
                    );
                }
                if packets.is_empty() && ranges.is_empty() {
                    return bad("packets", "a scripted loss needs packets and/or ranges");
                }
                LossModel::Scripted { packets, ranges }
            }
        }))
    }
}

impl DelayConfig {
    pub fn validate(&self) -> Result<DelaySpec> {
        let base = self.base.unwrap_or_default().get();
        let jitter = self.jitter.unwrap_or_default().get();
        let correlation = self.correlation.unwrap_or_default().fraction();
        if jitter.is_zero() {
            if self.distribution.is_some() {
                return bad("distribution", "has no effect without a jitter");
            }
            if correlation > 0.0 {
                return bad("correlation", "has no effect without a jitter");
            }
        }
        if correlation >= 1.0 {
            return bad(
                "correlation",
                "must be below 100% (100% would freeze the jitter)",
            );
        }
        let order = match (self.order, jitter.is_zero()) {
            (Some(o), _) => o,
            (None, true) => Order::Fifo,
            (None, false) => {
                return bad(
                    "order",
                    "jitter can reorder packets: say order = \"fifo\" (a packet waits for the one before it, as on one path) or \"reorder\" (netem's behaviour)",
                );
            }
        };
        let coherence = match (self.coherence, order) {
            (Some(c), Order::Fifo) if !c.get().is_zero() => c.get(),
            (Some(_), Order::Fifo) => return bad("coherence", "must be longer than 0"),
            (Some(_), Order::Reorder) => {
                return bad(
                    "coherence",
                    "applies to order = \"fifo\" only (reordering jitter is drawn per packet, as netem does)",
                );
            }
            (None, _) => crate::delay::default_coherence(jitter),
        };
        Ok(DelaySpec {
            base,
            jitter,
            distribution: self.distribution.unwrap_or_default(),
            correlation,
            order,
            coherence,
        })
    }
}

impl BottleneckConfig {
    /// `base_dir` resolves a relative trace path.
    pub fn validate(&self, base_dir: Option<&Path>) -> Result<BottleneckSpec> {
        let capacity = match (&self.rate, &self.trace) {
            (Some(_), Some(_)) => return bad("trace", "give either rate or trace, not both"),
            (Some(r), None) => Capacity::Rate(*r),
            (None, Some(path)) => Capacity::Trace(Arc::new(load_trace(path, base_dir)?)),
            (None, None) => Capacity::Unlimited,
        };
        let limit = self.queue.unwrap_or_default();
        if matches!(limit, QueueLimit::Time(_)) && capacity == Capacity::Unlimited {
            return bad(
                "queue",
                "a queue limit in time needs a rate or a trace to convert it",
            );
        }
        let aqm = match self.aqm.unwrap_or(AqmKind::DropTail) {
            AqmKind::DropTail => {
                if self.target.is_some() || self.interval.is_some() {
                    return bad(
                        "target",
                        "target and interval are CoDel's: set aqm = \"codel\"",
                    );
                }
                Aqm::DropTail
            }
            AqmKind::Codel => {
                let target = self
                    .target
                    .map_or(Duration::from_millis(5), HumanDuration::get);
                let interval = self
                    .interval
                    .map_or(Duration::from_millis(100), HumanDuration::get);
                if target.is_zero() || interval <= target {
                    return bad("interval", "CoDel needs 0 < target < interval");
                }
                Aqm::CoDel { target, interval }
            }
        };
        Ok(BottleneckSpec {
            capacity,
            limit,
            aqm,
            overhead: self.overhead.unwrap_or(0),
        })
    }
}

fn load_trace(path: &Path, base_dir: Option<&Path>) -> Result<Trace> {
    let full = match base_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    };
    let text = std::fs::read_to_string(&full).map_err(|source| ConfigError::Io {
        path: full.clone(),
        source,
    })?;
    Trace::parse(&text)
        .map_err(|e| ConfigError::invalid("trace", format!("{}: {e}", full.display())))
}

fn staged<T>(spec: T, flows: &Option<FlowFilter>) -> Staged<T> {
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
        let located = |e: ConfigError| locate(origin, text, e);
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
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

    /// Resolves a command-line profile argument: an existing file, else a
    /// preset name, else a netem line.
    pub fn resolve(arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        if path.is_file() {
            return Self::from_file(path);
        }
        if let Some(p) = crate::presets::preset(arg) {
            return p;
        }
        let first = arg.split_whitespace().next().unwrap_or("");
        if crate::netem_line::is_keyword(first) {
            let p = crate::netem_line::parse(arg)?;
            p.validate(None)?;
            return Ok(Self::symmetric(arg, p));
        }
        if arg.ends_with(".toml") {
            return Err(ConfigError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        Err(ConfigError::UnknownProfile(arg.to_string()))
    }
}

/// Adds the file name and, for a field error, the line of that field (any
/// TOML document whose validation errors use dotted field paths can use it).
pub fn locate(origin: &str, text: &str, e: ConfigError) -> ConfigError {
    let line = match &e {
        ConfigError::Invalid { field, .. } => line_of_field(text, field),
        _ => None,
    };
    match line {
        Some(line) => ConfigError::Located {
            origin: origin.to_string(),
            line,
            source: Box::new(e),
        },
        None => e.in_file(origin),
    }
}

/// The 1-based line of a dotted field path such as `timeline[1].rate`, or of
/// its nearest enclosing table that exists in the text.
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table = Some(root.get_ref());
    for segment in field.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some(t) = table else { break };
        let Some(v) = t.get(key) else { break };
        span = Some(v.span());
        let mut value = v;
        if let Some(i) = index {
            match v.get_ref().get(i) {
                Some(item) => {
                    span = Some(item.span());
                    value = item;
                }
                None => break,
            }
        }
        table = value.get_ref().as_table();
    }
    let start = span?.start;
    Some(text[..start.min(text.len())].matches('\n').count() + 1)
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
    fn missing_file_and_unknown_profile() {
        let e = LinkProfiles::resolve("/nonexistent/x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.toml"), "{e}");
        let e = LinkProfiles::resolve("5g-magic").unwrap_err().to_string();
        assert!(e.contains("not a preset") && e.contains("4g"), "{e}");
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
        let p = LinkProfiles::resolve("4g").unwrap();
        let text = toml::to_string(&p.uplink).unwrap();
        let again: ProfileConfig = toml::from_str(&text).unwrap();
        assert_eq!(again, p.uplink);
    }
}
