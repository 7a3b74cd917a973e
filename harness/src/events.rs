//! Impairment events of a network, for reports and plots: each timeline
//! change of each direction, with its instant and what it does.

use netem::adapters::link::LinkDir;
use netem::spec::Change;
use serde::Serialize;

use crate::scenario::Network;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImpairmentEvent {
    pub at_ms: f64,
    /// `first_mile-uplink` and so on.
    pub direction: &'static str,
    pub what: String,
}

fn describe(c: &Change) -> String {
    match c {
        Change::Loss(None) => "loss off".into(),
        Change::Loss(Some(m)) => match m.expected() {
            Some(e) => format!("loss {:.2} %", e.rate * 100.0),
            None => "loss changes".into(),
        },
        Change::Delay(d) => {
            let (mean, _) = d.moments();
            format!("delay {:.0} ms", mean.as_secs_f64() * 1e3)
        }
        Change::Reorder(_) => "reordering changes".into(),
        Change::Duplicate(p) => format!("duplicate {:.2} %", p * 100.0),
        Change::Corrupt(p) => format!("corrupt {:.2} %", p * 100.0),
        Change::Bottleneck(b) => match b.capacity.mean_bps() {
            Some(bps) => format!("rate {:.2} Mbit/s", bps / 1e6),
            None => "rate unlimited".into(),
        },
        Change::OutageStart(mode) => format!("outage starts ({mode:?})").to_lowercase(),
        Change::OutageEnd => "outage ends".into(),
    }
}

/// Every timeline change of `network`, in time order.
pub fn events(network: &Network) -> Vec<ImpairmentEvent> {
    let mut out: Vec<ImpairmentEvent> = LinkDir::ALL
        .into_iter()
        .flat_map(|d| {
            network
                .profile(d)
                .timeline
                .iter()
                .map(move |c| ImpairmentEvent {
                    at_ms: c.at.as_secs_f64() * 1e3,
                    direction: d.label(),
                    what: describe(&c.change),
                })
        })
        .collect();
    out.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    out
}
