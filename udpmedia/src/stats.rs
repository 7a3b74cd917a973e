//! Statistics, named after SRT's (`srt_bstats`: pktSent, pktRetrans,
//! pktRcvLoss, pktRcvDrop, pktRcvBelated, pktRcvFilterSupply, msRTT,
//! mbpsBandwidth, …) so they read like the numbers streaming engineers know;
//! plus what SRT does not report: RED, and recovery delay per mechanism.

use serde::Serialize;

/// Sender side.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderStats {
    /// Data packets sent, retransmissions included.
    pub pkt_sent: u64,
    /// Data packets sent for the first time.
    pub pkt_sent_unique: u64,
    pub pkt_retrans: u64,
    /// FEC packets sent (SRT's packet-filter "extra").
    pub pkt_snd_filter_extra: u64,
    /// Media packets dropped before sending: older than the latency.
    pub pkt_snd_drop: u64,
    #[serde(rename = "pktRecvNAK")]
    pub pkt_recv_nak: u64,
    /// Retransmission requests not answered (unknown, too old, asked too
    /// often or too soon).
    #[serde(rename = "pktNAKIgnored")]
    pub pkt_nak_ignored: u64,
    pub byte_sent: u64,
    pub byte_sent_unique: u64,
    pub byte_retrans: u64,
    pub byte_snd_filter_extra: u64,
    /// Media payload bytes (what the overhead is relative to).
    pub byte_media: u64,
    pub frames_sent: u64,
    /// Audio frames carried again in later packets (RED).
    pub red_copies: u64,
    #[serde(rename = "msRTT")]
    pub ms_rtt: f64,
    /// The congestion controller's receive-rate estimate.
    pub mbps_bandwidth: f64,
    /// The congestion controller's target.
    pub mbps_send_rate: f64,
    /// Loss the receiver reported (before recovery), latest window.
    pub loss_reported: f64,
    /// FEC packets per media packet currently added.
    pub fec_overhead: f64,
}

/// Receiver side.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStats {
    /// Data packets received, duplicates and retransmissions included.
    pub pkt_recv: u64,
    /// Distinct data packets received or rebuilt.
    pub pkt_recv_unique: u64,
    /// Packets found missing (sequence gaps), whether recovered later or not.
    pub pkt_rcv_loss: u64,
    /// Packets never recovered in time (given up at their deadline, or in
    /// a gap too large to track).
    pub pkt_rcv_drop: u64,
    /// Packets that arrived after they were given up (too late).
    pub pkt_rcv_belated: u64,
    /// Retransmitted packets received.
    pub pkt_rcv_retrans: u64,
    /// Missing packets a retransmission filled in time.
    pub pkt_rcv_retrans_supply: u64,
    /// FEC packets received.
    pub pkt_rcv_filter_extra: u64,
    /// Missing packets FEC rebuilt.
    pub pkt_rcv_filter_supply: u64,
    /// Lost packets FEC had a group for but could not rebuild.
    pub pkt_rcv_filter_loss: u64,
    /// Missing packets that arrived late by themselves (reordered).
    pub pkt_rcv_reordered: u64,
    /// Audio frames rebuilt from RED copies.
    pub pkt_rcv_red_supply: u64,
    pub pkt_rcv_duplicate: u64,
    #[serde(rename = "pktSentNAK")]
    pub pkt_sent_nak: u64,
    /// Packets named in NACKs (a packet asked twice counts twice).
    pub pkt_nak_requested: u64,
    /// Datagrams that were not valid packets of this session.
    pub pkt_rcv_invalid: u64,
    pub byte_recv: u64,
    pub frames_delivered: u64,
    /// Frames given up incomplete at their deadline.
    pub frames_dropped: u64,
    #[serde(rename = "msRTT")]
    pub ms_rtt: f64,
    /// Delay from finding a packet missing to having it, ms.
    pub recovery_ms_fec: Percentiles,
    pub recovery_ms_nack: Percentiles,
    /// Loss events (the packets one gap revealed), how many were not wholly
    /// recovered, and the time until every packet of a recovered one was
    /// back, ms.
    pub loss_events: u64,
    pub loss_events_unrecovered: u64,
    pub recovery_ms_event: Percentiles,
}

/// p50/p90/p99/max of a sample (ms).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(values: &[f32]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f32::total_cmp);
        let at = |q: f64| f64::from(v[((v.len() - 1) as f64 * q).round() as usize]);
        Percentiles {
            count: v.len() as u64,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

impl ReceiverStats {
    /// Of the packets found missing, the share recovered in time (FEC,
    /// retransmission, or late arrival within the deadline).
    pub fn recovery_ratio(&self) -> f64 {
        if self.pkt_rcv_loss == 0 {
            return 1.0;
        }
        let got = self.pkt_rcv_filter_supply + self.pkt_rcv_retrans_supply + self.pkt_rcv_reordered;
        (got as f64 / self.pkt_rcv_loss as f64).min(1.0)
    }
}

impl SenderStats {
    /// (FEC + retransmitted bytes) / media bytes, DESIGN's overhead.
    pub fn overhead(&self) -> f64 {
        if self.byte_sent_unique == 0 {
            0.0
        } else {
            (self.byte_snd_filter_extra + self.byte_retrans) as f64 / self.byte_sent_unique as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_ratios() {
        let p = Percentiles::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((p.count, p.p50, p.max), (5, 3.0, 5.0));
        let r = ReceiverStats {
            pkt_recv_unique: 98,
            pkt_rcv_drop: 2,
            pkt_rcv_loss: 10,
            pkt_rcv_filter_supply: 5,
            pkt_rcv_retrans_supply: 3,
            ..ReceiverStats::default()
        };
        assert!((r.recovery_ratio() - 0.8).abs() < 1e-12);
        let json = serde_json::to_string(&SenderStats::default()).unwrap();
        for name in [
            "pktSent",
            "pktRetrans",
            "pktSndFilterExtra",
            "msRTT",
            "mbpsBandwidth",
            "pktRecvNAK",
        ] {
            assert!(json.contains(name), "{name} missing from {json}");
        }
        let json = serde_json::to_string(&ReceiverStats::default()).unwrap();
        for name in [
            "pktRcvLoss",
            "pktRcvDrop",
            "pktRcvBelated",
            "pktRcvFilterSupply",
            "pktSentNAK",
        ] {
            assert!(json.contains(name), "{name} missing from {json}");
        }
    }
}
