//! The `[delay]`, `[reorder]`, `[duplicate]` and `[corrupt]` tables.

use serde::{Deserialize, Serialize};

use crate::delay::{DelaySpec, Order};
use crate::flow::FlowFilter;
use crate::jitter::Distribution;
use crate::units::{HumanDuration, Probability};

use super::{Result, bad};

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
