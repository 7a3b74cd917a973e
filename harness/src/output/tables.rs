//! The tables `glass run` prints: one row per run (latency, start-up,
//! steady state, smoothness, stalls, losses), G2G by hop, and the UDP
//! protocol's recovery per mile.

use std::fmt::Write as _;

use super::records::RunRecord;

/// The network column: the sweep point first, when there is one.
pub fn net(r: &RunRecord) -> String {
    if r.point.is_empty() {
        r.network.clone()
    } else {
        format!("[{}] {}", r.point, r.network)
    }
}

/// Each run's cross traffic, flow by flow (nothing without any): what it
/// sent and what got through, next to the media it competed with.
pub fn cross_table(records: &[RunRecord]) -> String {
    let mut s = String::new();
    for r in records {
        for c in r.result.iter().flat_map(|x| &x.cross) {
            if s.is_empty() {
                let _ = writeln!(s, "Cross traffic (competing flows on the miles):");
            }
            let _ = writeln!(
                s,
                "{:<20} {:<18} {:<50} {:>8.2} Mbit/s received, {:>5.1} % of what it sent",
                r.network,
                r.protocol,
                c.flow,
                c.goodput_mbps,
                if c.bytes_sent == 0 {
                    0.0
                } else {
                    c.bytes_received as f64 * 100.0 / c.bytes_sent as f64
                }
            );
        }
    }
    s
}

/// Each run's light viewers (nothing without any): capture → arrival
/// across viewers (each viewer's p50 and p99, their median and worst),
/// joins, freezes and failures.
pub fn viewers_table(records: &[RunRecord]) -> String {
    let mut s = String::new();
    for r in records {
        let Some(v) = r.result.as_ref().and_then(|x| x.viewers.as_ref()) else {
            continue;
        };
        if s.is_empty() {
            let _ = writeln!(
                s,
                "Light viewers (capture → arrival over the steady state; per viewer, then across viewers):"
            );
        }
        let f = &v.summary;
        let _ = writeln!(
            s,
            "{:<20} {:<18} {}: p50 {:.0} ms (median viewer), p99 {:.0} ms (median viewer) / {:.0} ms (worst); join p50 {:.0} ms, p99 {:.0} ms; {} freeze(s) at {} viewer(s); {} failed",
            net(r),
            r.protocol,
            v.described,
            f.viewer_p50_median_ms,
            f.viewer_p99_median_ms,
            f.viewer_p99_max_ms,
            f.join_p50_ms,
            f.join_p99_ms,
            f.freezes,
            f.viewers_with_freezes,
            f.failed
        );
    }
    s
}

/// Milliseconds for a table cell, "-" when unknown.
fn cell_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}

pub fn table(records: &[RunRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:<18} {:<9} {:<11} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6} {:>5} {:>7}",
        "network",
        "protocol",
        "mode",
        "transport",
        "connect",
        "startup",
        "G2G p50",
        "G2G p99",
        "steady50",
        "steady99",
        "smooth@1%",
        "stalls",
        "stale",
        "lost",
        "retrans"
    );
    for r in records {
        match &r.result {
            Some(x) => {
                let p = &x.player;
                let _ = writeln!(
                    s,
                    "{:<20} {:<18} {:<9} {:<11} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6.2}% {:>5.1}% {:>5} {:>7}",
                    net(r),
                    r.protocol,
                    x.mode,
                    x.transport(),
                    cell_ms(x.publisher.connect_ms),
                    cell_ms(p.startup_delay_ms),
                    cell_ms(Some(p.g2g_p50_ms)),
                    cell_ms(Some(p.g2g_p99_ms)),
                    cell_ms(p.steady.as_ref().map(|s| s.p50_ms)),
                    cell_ms(p.steady.as_ref().map(|s| s.p99_ms)),
                    cell_ms(x.equal_smoothness.as_ref().map(|e| e.g2g_p50_ms)),
                    p.stall_ratio * 100.0,
                    p.stale_refresh_ratio * 100.0,
                    x.frames_lost(),
                    x.retransmits()
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{:<20} {:<18} failed: {}",
                    net(r),
                    r.protocol,
                    r.error.as_deref().unwrap_or("?")
                );
            }
        }
    }
    s
}

/// Where each run's latency goes (p50 of each hop, Glass's own frames), and
/// what the player's live-edge control did.
pub fn hops_table(records: &[RunRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "G2G by hop, p50; the player's catch-up and skips; buffer@1% = the playout buffer that keeps stalls <= 1 %:\n{:<20} {:<18} {:>8} {:>10} {:>8} {:>10} {:>8} {:>9} {:>8} {:>9}",
        "network",
        "protocol",
        "encode",
        "first mile",
        "relay",
        "last mile",
        "playout",
        "catch-up",
        "skipped",
        "buffer@1%"
    );
    let mut any = false;
    for r in records {
        let Some(x) = &r.result else { continue };
        let Some(h) = &x.hops else { continue };
        any = true;
        let p50 = |seg: &Option<crate::g2g::Segment>| cell_ms(seg.as_ref().map(|s| s.p50_ms));
        let _ = writeln!(
            s,
            "{:<20} {:<18} {:>8} {:>10} {:>8} {:>10} {:>8} {:>9} {:>8} {:>9}",
            net(r),
            r.protocol,
            p50(&h.encode),
            p50(&h.first_mile),
            p50(&h.relay),
            p50(&h.last_mile),
            p50(&h.playout),
            cell_ms(Some(x.player.catch_up_ms)),
            x.player.frames_skipped,
            cell_ms(x.equal_smoothness.as_ref().map(|e| e.target_delay_ms)),
        );
    }
    if any { s } else { String::new() }
}
