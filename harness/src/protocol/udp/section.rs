//! The UDP protocol's part of a run's results: its sessions and how it
//! recovered on each mile (results.json's `result.udp` and
//! `result.recovery`), the recovery table of `glass run`'s summary, and
//! the report's residual-loss figure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use netem::adapters::link::LinkDir;
use reports::plots::Chart;
use reports::results::Run;
use serde::{Deserialize, Serialize};

use super::recovery::MileRecovery;
use super::{UdpReport, UdpServerStats};
use crate::output::records::RunRecord;
use crate::output::tables::net;
use crate::protocol::{RunCx, Stats};
use crate::topology::GroupNetworkStats;

/// One run's UDP sessions (a player group's: the publisher's, its
/// player's, the relay's ingest and the egress that served that player)
/// and the recovery per mile.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UdpSection {
    pub udp: Vec<UdpReport>,
    pub recovery: Vec<MileRecovery>,
}

impl Stats for UdpSection {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::protocol::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    /// Retransmitted packets of every sender of the run's sessions.
    fn retransmits(&self) -> u64 {
        self.udp
            .iter()
            .filter_map(|u| u.stats.sender.as_ref())
            .map(|s| s.pkt_retrans)
            .sum()
    }
}

/// The section of one run: clients' sessions, then the relay's ingest and
/// the egress whose session number is this group's player's.
pub fn section(cx: &RunCx) -> UdpSection {
    let clients: Vec<UdpReport> = cx
        .clients
        .iter()
        .filter_map(|s| s.as_any().downcast_ref::<UdpReport>().cloned())
        .collect();
    let player = clients
        .iter()
        .find(|u| u.role == "player")
        .map(|u| u.session);
    let mut udp = clients;
    udp.extend(
        cx.servers
            .iter()
            .filter_map(|(_, s)| s.as_any().downcast_ref::<UdpServerStats>())
            .flat_map(|u| u.udp.iter())
            .filter(|r| r.role != "relay-egress" || Some(r.session) == player)
            .cloned(),
    );
    let recovery = mile_recovery(&udp, cx.net);
    UdpSection { udp, recovery }
}

/// Recovery per mile from the two ends of each UDP session: publisher →
/// relay ingest on the first mile, relay egress → player on the last.
fn mile_recovery(udp: &[UdpReport], net: &GroupNetworkStats) -> Vec<MileRecovery> {
    let find = |role: &str| udp.iter().find(|r| r.role == role).map(|r| &r.stats);
    let mut out = Vec::new();
    for (mile, from, to, dir) in [
        ("first", "publisher", "relay-ingest", LinkDir::FirstMileUp),
        ("last", "relay-egress", "player", LinkDir::LastMileDown),
    ] {
        if let (Some(s), Some(r)) = (
            find(from).and_then(|s| s.sender.as_ref()),
            find(to).and_then(|s| s.receiver.as_ref()),
        ) {
            // The ground truth: the link's direction, or the datagram proxy's.
            let counters = match (&net.link, &net.proxy) {
                (Some(l), _) => Some(l.counters(dir)),
                (None, Some(p)) if mile == "first" => {
                    p.udp_first_mile.as_ref().map(|u| u.uplink.clone())
                }
                (None, Some(p)) => p.udp_last_mile.as_ref().map(|u| u.downlink.clone()),
                _ => None,
            };
            out.push(MileRecovery::new(mile, counters.as_ref(), s, r));
        }
    }
    out
}

/// `glass run`'s recovery table: per run and mile, link drops, packets
/// lost, rebuilt by FEC, retransmitted in time, late, never; residual loss,
/// recovery ratio, overhead, loss-event repair p99.
pub fn recovery_table(records: &[RunRecord]) -> String {
    let rows: Vec<(&RunRecord, &MileRecovery)> = records
        .iter()
        .flat_map(|r| {
            r.result
                .iter()
                .filter_map(|x| x.section::<UdpSection>())
                .flat_map(move |x| x.recovery.iter().map(move |m| (r, m)))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "UDP recovery (data packets; link = engine drops / datagrams):\n{:<20} {:<18} {:<5} {:>11} {:>6} {:>6} {:>6} {:>5} {:>6} {:>9} {:>9} {:>8} {:>10}",
        "network",
        "protocol",
        "mile",
        "link",
        "lost",
        "fec",
        "nack",
        "late",
        "never",
        "residual",
        "recovered",
        "overhead",
        "event p99"
    );
    for (r, m) in rows {
        // Time until every packet of a loss event was back, p99.
        let p99 = m.recovery_ms_event.p99;
        let _ = writeln!(
            s,
            "{:<20} {:<18} {:<5} {:>11} {:>6} {:>6} {:>6} {:>5} {:>6} {:>8.3}% {:>8.1}% {:>7.1}% {:>7.0} ms",
            net(r),
            r.protocol,
            m.mile,
            format!("{}/{}", m.link_dropped, m.link_packets),
            m.lost,
            m.fec,
            m.nack_in_time,
            m.late,
            m.never,
            m.residual_loss * 100.0,
            m.recovery_ratio * 100.0,
            m.overhead * 100.0,
            p99
        );
    }
    s
}

/// The report's figure: residual packet loss on the first mile per
/// recovery mechanism, against the link's realised loss.
pub struct ResidualLoss;

/// What the figure reads of a run's `recovery` list.
#[derive(Deserialize)]
struct RecoveryRow {
    mile: String,
    residual_loss: f64,
}

impl reports::html::ReportFigures for ResidualLoss {
    fn figures(&self, runs: &[Run]) -> Vec<(String, Chart)> {
        let check_of = |r: &Run| r.impairment_check.get("first_mile_up").cloned();
        let delays: std::collections::BTreeSet<u64> = runs
            .iter()
            .filter_map(check_of)
            .map(|c| c.requested.delay_mean_ms.round() as u64)
            .collect();
        let mut residual: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for r in runs {
            let Some(check) = check_of(r) else {
                continue;
            };
            let rows: Vec<RecoveryRow> = r
                .result
                .as_ref()
                .and_then(|x| x.section("recovery"))
                .unwrap_or_default();
            let Some(first) = rows.iter().find(|m| m.mile == "first") else {
                continue;
            };
            let mut label = r.protocol.clone();
            if check.requested.mean_burst.is_some_and(|b| b > 1.5) {
                label.push_str(", bursty");
            }
            if delays.len() > 1 {
                let _ = write!(label, ", delay {:.0} ms", check.requested.delay_mean_ms);
            }
            residual
                .entry(label)
                .or_default()
                .push((check.loss_rate * 100.0, first.residual_loss * 100.0));
        }
        if !residual.values().any(|v| v.iter().any(|p| p.0 > 0.0)) {
            return Vec::new();
        }
        vec![(
            "udp-residual-loss".into(),
            Chart {
                title: "UDP protocol: residual packet loss per recovery mechanism".into(),
                x_label: "first-mile uplink loss, realised (%)".into(),
                y_label: "data packets never recovered in time (%)".into(),
                lines: reports::html::lines_by_x(residual),
                ..Chart::default()
            },
        )]
    }
}
