//! A validated impairment profile for one link direction: what the pipeline is
//! built from. Configuration (`config`, `netem_line`, `presets`) turns into
//! this after validation, so the engine never sees an unchecked value.

use crate::bottleneck::{BottleneckSpec, OutageMode};
use crate::delay::DelaySpec;
use crate::flow::FlowFilter;
use crate::loss::LossModel;
use crate::time::Time;

/// A stage's settings and the flows it applies to (`None`: all packets).
#[derive(Clone, Debug, PartialEq)]
pub struct Staged<T> {
    pub spec: T,
    pub flows: Option<FlowFilter>,
}

impl<T> Staged<T> {
    pub fn all(spec: T) -> Self {
        Staged { spec, flows: None }
    }
}

/// netem's reorder rule: probability and gap.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct ReorderSpec {
    pub p: f64,
    pub gap: u32,
}

/// A change that the timeline applies at an instant.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Loss(Option<LossModel>),
    Delay(DelaySpec),
    Reorder(Option<ReorderSpec>),
    Duplicate(f64),
    Corrupt(f64),
    Bottleneck(BottleneckSpec),
    OutageStart(OutageMode),
    OutageEnd,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimedChange {
    pub at: Time,
    pub change: Change,
}

/// One link direction's impairments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    pub loss: Option<Staged<LossModel>>,
    pub delay: Option<Staged<DelaySpec>>,
    pub reorder: Option<Staged<ReorderSpec>>,
    pub duplicate: Option<Staged<f64>>,
    pub corrupt: Option<Staged<f64>>,
    pub bottleneck: Option<Staged<BottleneckSpec>>,
    /// Sorted by instant; changes at the same instant apply in this order.
    pub timeline: Vec<TimedChange>,
}

impl Profile {
    /// A profile that changes nothing.
    pub fn transparent() -> Self {
        Profile::default()
    }
}
