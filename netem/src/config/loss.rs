//! The `[loss]` table: which model, its parameters, validated.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::flow::FlowFilter;
use crate::loss::LossModel;
use crate::time::Time;
use crate::units::{HumanDuration, Probability};

use super::{Result, bad};

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
