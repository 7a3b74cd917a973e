//! The `[bottleneck]` table (rate or trace, queue, AQM, outages) and the
//! `[[timeline]]` of changes.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bottleneck::{Aqm, BottleneckSpec, Capacity, OutageMode};
use crate::error::ConfigError;
use crate::flow::FlowFilter;
use crate::trace::Trace;
use crate::units::{BitRate, HumanDuration, Probability, QueueLimit};

use super::{DelayConfig, LossConfig, Result, bad};

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
    let text = std::fs::read_to_string(&full).map_err(|error| ConfigError::Io {
        path: full.clone(),
        error,
    })?;
    Trace::parse(&text)
        .map_err(|e| ConfigError::invalid("trace", format!("{}: {e}", full.display())))
}
