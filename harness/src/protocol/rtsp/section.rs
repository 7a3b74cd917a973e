//! RTSP's part of a run's results: per track of the publisher's session,
//! the RTP packets the relay received and lost against what the engine
//! dropped on the first mile's uplink (results.json's `result.rtsp_ingest`),
//! and the table of `glass run`'s summary.

use std::fmt::Write as _;

use netem::adapters::link::LinkDir;
use serde::Serialize;

use super::server::RtspServerStats;
use crate::output::records::RunRecord;
use crate::output::tables::net;
use crate::protocol::{RunCx, Stats};

/// One track of the run's RTSP ingest.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestTrack {
    pub transport: String,
    pub codec: String,
    pub rtp_packets: u64,
    pub rtp_lost: u64,
    pub rtcp_packets: u64,
    /// Access units damaged by loss, and pictures not passed on until the
    /// next key frame (damaged ones included).
    pub damaged: u64,
    pub undecodable: u64,
    /// UDP: packets the reorder buffer put back in order.
    pub reordered: u64,
    /// The engine's drops and packets on the first mile's uplink (every
    /// packet of it: RTP, RTCP and the RTSP connection's; in proxy mode
    /// the datagram proxies', none for TCP).
    pub link_dropped: u64,
    pub link_packets: u64,
}

/// The run's RTSP ingest (empty when no RTSP publisher recorded).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RtspSection {
    pub rtsp_ingest: Vec<IngestTrack>,
}

impl Stats for RtspSection {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        if self.rtsp_ingest.is_empty() {
            return serde_json::Map::new();
        }
        crate::protocol::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The section of one run: the tracks of the sessions that recorded.
pub fn section(cx: &RunCx) -> RtspSection {
    let (link_dropped, link_packets) = match (&cx.net.link, &cx.net.proxy) {
        (Some(l), _) => {
            let c = l.counters(LinkDir::FirstMileUp);
            (c.dropped(), c.pushed)
        }
        (None, Some(p)) => p
            .udp_first_mile
            .as_ref()
            .map_or((0, 0), |u| (u.uplink.dropped(), u.uplink.pushed)),
        (None, None) => (0, 0),
    };
    let rtsp_ingest = cx
        .servers
        .iter()
        .filter_map(|(_, s)| s.as_any().downcast_ref::<RtspServerStats>())
        .flat_map(|s| s.rtsp.iter())
        .filter(|s| s.recorded)
        .flat_map(|s| s.tracks.iter())
        .map(|t| IngestTrack {
            transport: t.transport.into(),
            codec: t.codec.into(),
            rtp_packets: t.rtp_packets,
            rtp_lost: t.rtp_lost,
            rtcp_packets: t.rtcp_packets,
            damaged: t.damaged,
            undecodable: t.undecodable,
            reordered: t.reorder_put_back,
            link_dropped,
            link_packets,
        })
        .collect();
    RtspSection { rtsp_ingest }
}

/// `glass run`'s RTSP table: per run and track, the first mile's drops
/// against the RTP packets lost and the pictures that could not be passed
/// on.
pub fn ingest_table(records: &[RunRecord]) -> String {
    let rows: Vec<(&RunRecord, &IngestTrack)> = records
        .iter()
        .flat_map(|r| {
            r.result
                .iter()
                .filter_map(|x| x.section::<RtspSection>())
                .flat_map(move |x| x.rtsp_ingest.iter().map(move |t| (r, t)))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "RTSP ingest (link = engine drops / packets on the first-mile uplink, all of its packets):\n{:<20} {:<18} {:<9} {:<5} {:>11} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9}",
        "network",
        "protocol",
        "transport",
        "track",
        "link",
        "rtp",
        "rtp lost",
        "rtcp",
        "damaged",
        "undecodable",
        "reordered"
    );
    for (r, t) in rows {
        let _ = writeln!(
            s,
            "{:<20} {:<18} {:<9} {:<5} {:>11} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9}",
            net(r),
            r.protocol,
            t.transport,
            t.codec,
            format!("{}/{}", t.link_dropped, t.link_packets),
            t.rtp_packets,
            t.rtp_lost,
            t.rtcp_packets,
            t.damaged,
            t.undecodable,
            t.reordered
        );
    }
    s
}
