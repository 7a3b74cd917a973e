//! How the UDP media protocol recovered, per mile: the link's ground truth
//! (what the engine dropped) next to what the receiver found missing and
//! what FEC, retransmission and late arrival gave back (DESIGN, "Recovery").

use netem::Counters;
use serde::Serialize;
use udpmedia::{Percentiles, ReceiverStats, SenderStats};

#[derive(Clone, Debug, Serialize)]
pub struct MileRecovery {
    /// "first" (publisher → relay) or "last" (relay → player).
    pub mile: &'static str,
    /// Datagrams that entered the link in the media's direction, and how
    /// many the engine dropped (loss model, queue, AQM, outage): the ground
    /// truth, over data, FEC and control packets alike.
    pub link_packets: u64,
    pub link_dropped: u64,
    /// Data packets the sender sent (first transmissions).
    pub data_packets: u64,
    /// Data packets the receiver found missing.
    pub lost: u64,
    /// … rebuilt by FEC.
    pub fec: u64,
    /// … filled by a retransmission before their deadline.
    pub nack_in_time: u64,
    /// … that arrived late by themselves (reordering).
    pub reordered: u64,
    /// … whose repair came after it was given up.
    pub late: u64,
    /// … never recovered before their deadline.
    pub never: u64,
    /// never / data packets.
    pub residual_loss: f64,
    /// (FEC + retransmission in time + reordered) / lost.
    pub recovery_ratio: f64,
    /// (FEC + retransmitted bytes) / first-transmission bytes.
    pub overhead: f64,
    pub fec_packets: u64,
    pub retransmitted: u64,
    pub recovery_ms_fec: Percentiles,
    pub recovery_ms_nack: Percentiles,
    /// Loss events (one gap each), those not wholly recovered, and the time
    /// until every packet of a recovered event was back.
    pub loss_events: u64,
    pub loss_events_unrecovered: u64,
    pub recovery_ms_event: Percentiles,
    /// Audio frames rebuilt from RED copies.
    pub red_frames: u64,
}

impl MileRecovery {
    pub fn new(
        mile: &'static str,
        link: Option<&Counters>,
        s: &SenderStats,
        r: &ReceiverStats,
    ) -> MileRecovery {
        MileRecovery {
            mile,
            link_packets: link.map_or(0, |c| c.pushed),
            link_dropped: link.map_or(0, Counters::dropped),
            data_packets: s.pkt_sent_unique,
            lost: r.pkt_rcv_loss,
            fec: r.pkt_rcv_filter_supply,
            nack_in_time: r.pkt_rcv_retrans_supply,
            reordered: r.pkt_rcv_reordered,
            late: r.pkt_rcv_belated,
            never: r.pkt_rcv_drop,
            residual_loss: if s.pkt_sent_unique == 0 {
                0.0
            } else {
                r.pkt_rcv_drop as f64 / s.pkt_sent_unique as f64
            },
            recovery_ratio: r.recovery_ratio(),
            overhead: s.overhead(),
            fec_packets: s.pkt_snd_filter_extra,
            retransmitted: s.pkt_retrans,
            recovery_ms_fec: r.recovery_ms_fec.clone(),
            recovery_ms_nack: r.recovery_ms_nack.clone(),
            loss_events: r.loss_events,
            loss_events_unrecovered: r.loss_events_unrecovered,
            recovery_ms_event: r.recovery_ms_event.clone(),
            red_frames: r.pkt_rcv_red_supply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_from_both_ends() {
        let s = SenderStats {
            pkt_sent_unique: 1000,
            byte_sent_unique: 1_000_000,
            byte_retrans: 20_000,
            byte_snd_filter_extra: 100_000,
            ..SenderStats::default()
        };
        let r = ReceiverStats {
            pkt_rcv_loss: 50,
            pkt_rcv_filter_supply: 30,
            pkt_rcv_retrans_supply: 15,
            pkt_rcv_drop: 5,
            ..ReceiverStats::default()
        };
        let link = Counters {
            pushed: 1200,
            dropped_loss: 55,
            ..Counters::default()
        };
        let m = MileRecovery::new("first", Some(&link), &s, &r);
        assert_eq!((m.link_dropped, m.lost, m.never), (55, 50, 5));
        assert!((m.residual_loss - 0.005).abs() < 1e-12);
        assert!((m.recovery_ratio - 0.9).abs() < 1e-12);
        assert!((m.overhead - 0.12).abs() < 1e-12);
    }
}
