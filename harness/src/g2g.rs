//! What a run's glass-to-glass figures are made of, beyond the player's own
//! percentiles: start-up vs steady state, latency at equal smoothness (the
//! figure to compare protocols on), and the per-hop breakdown.
//!
//! Comparing protocols at one fixed playout buffer mostly compares the
//! buffer: a protocol that repairs loss late needs a deeper buffer to play
//! smoothly, one that does not needs none. So each run is also replayed
//! through the player model (sans-IO, exact, cheap) at other targets to find
//! the smallest that keeps the stall ratio ≤ 1 %.

use std::collections::HashMap;
use std::time::Duration;

use netem::Time;
use netem::time::Clock;
use serde::Serialize;

use crate::media::frame::FrameHeader;
use crate::media::player::{Displayed, PlayerConfig, replay};
use crate::relay::RelayHop;

pub use crate::media::player::{G2gSummary, g2g_summary};

/// The stall ratio "smooth" allows.
pub const SMOOTH_STALL_RATIO: f64 = 0.01;
/// The deepest playout buffer the search tries.
const MAX_TARGET: Duration = Duration::from_secs(10);
/// The search's resolution.
const TARGET_STEP: Duration = Duration::from_millis(5);

/// The smallest playout delay at which this run's arrivals play with a
/// stall ratio ≤ [`SMOOTH_STALL_RATIO`], and what G2G it gives there.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EqualSmoothness {
    pub max_stall_ratio: f64,
    /// The playout buffer (`target_delay`) found, to 5 ms.
    pub target_delay_ms: f64,
    pub stall_ratio: f64,
    pub g2g_p50_ms: f64,
    pub g2g_p99_ms: f64,
    /// Over the steady state (frames captured after the warm-up).
    pub steady_g2g_p50_ms: Option<f64>,
}

/// Replays `arrivals` through players like `cfg` with targets from 0 to
/// 10 s or half the run, whichever is less (binary search, 5 ms steps; it
/// assumes a deeper buffer never stalls more, which holds for the player
/// model's policies) and returns the smallest smooth one; `None` when
/// nothing was shown or even the deepest buffer stalls.
pub fn equal_smoothness(
    cfg: &PlayerConfig,
    arrivals: &[(Time, FrameHeader)],
    end: Time,
    steady_from: Time,
) -> Option<EqualSmoothness> {
    let at = |steps: u32| {
        let c = PlayerConfig {
            target_delay: TARGET_STEP * steps,
            ..cfg.clone()
        };
        replay(c, Time::ZERO, arrivals, end)
    };
    let smooth = |r: &crate::media::player::PlayerReport| {
        r.frames_displayed > 0 && r.stall_ratio <= SMOOTH_STALL_RATIO
    };
    // A buffer longer than half the run leaves too little playback to judge.
    let deepest = MAX_TARGET.min(end.since_start() / 2);
    let (mut lo, mut hi) = (0u32, (deepest.as_millis() / TARGET_STEP.as_millis()) as u32);
    let (best, shown) = at(hi);
    if !smooth(&best) {
        return None;
    }
    let mut found = (hi, best, shown);
    // Invariant: `hi` is smooth; everything below `lo` is not.
    while lo < hi {
        let mid = (lo + hi) / 2;
        let (r, shown) = at(mid);
        if smooth(&r) {
            hi = mid;
            found = (mid, r, shown);
        } else {
            lo = mid + 1;
        }
    }
    let (steps, r, shown) = found;
    Some(EqualSmoothness {
        max_stall_ratio: SMOOTH_STALL_RATIO,
        target_delay_ms: (TARGET_STEP * steps).as_secs_f64() * 1e3,
        stall_ratio: r.stall_ratio,
        g2g_p50_ms: r.g2g_p50_ms,
        g2g_p99_ms: r.g2g_p99_ms,
        steady_g2g_p50_ms: g2g_summary(&shown, steady_from).map(|s| s.p50_ms),
    })
}

/// When one video frame left the publisher and passed the relay.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct FrameHops {
    /// Handed to the publisher's transport (TCP socket, QUIC stream, the UDP
    /// protocol's sender).
    pub publisher_send: Option<Time>,
    /// Handed by the relay's ingest to its stream table (for the UDP
    /// protocol's ordered gateway: after its in-order hold).
    pub relay_receive: Option<Time>,
    /// First handed to a player's transport by the relay.
    pub relay_send: Option<Time>,
}

/// Joins the publisher's send instants with the relay's, on one clock.
pub fn frame_hops(
    sent: &[(u64, Time)],
    relay: &HashMap<u64, RelayHop>,
    clock: Clock,
) -> HashMap<u64, FrameHops> {
    let mut out: HashMap<u64, FrameHops> = HashMap::new();
    for &(seq, at) in sent {
        out.entry(seq).or_default().publisher_send = Some(at);
    }
    for (&seq, hop) in relay {
        let e = out.entry(seq).or_default();
        e.relay_receive = hop.received.map(|i| clock.time(i));
        e.relay_send = hop.sent.map(|i| clock.time(i));
    }
    out
}

/// Percentiles of one segment of the path, ms.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Segment {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Segment {
    fn of(mut v: Vec<f64>) -> Option<Segment> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let q = |x: f64| v[((v.len() - 1) as f64 * x).round() as usize];
        Some(Segment {
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            max_ms: v[v.len() - 1],
        })
    }
}

/// G2G of the displayed frames split at each hop, on the one clock:
/// encode (capture → publisher send: the encoder's delay and the
/// publisher's send queue), first mile (→ relay receive), relay (→ relay
/// send), last mile (→ player receive) and playout (→ display). Only frames
/// whose every instant is known count (Glass's own frames).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct HopBreakdown {
    pub frames: u64,
    pub encode: Option<Segment>,
    pub first_mile: Option<Segment>,
    pub relay: Option<Segment>,
    pub last_mile: Option<Segment>,
    pub playout: Option<Segment>,
}

impl HopBreakdown {
    pub fn of(displayed: &[Displayed], hops: &HashMap<u64, FrameHops>) -> Option<HopBreakdown> {
        let ms = |a: Time, b: Time| b.saturating_since(a).as_secs_f64() * 1e3;
        let mut seg: [Vec<f64>; 5] = Default::default();
        for d in displayed {
            let Some(FrameHops {
                publisher_send: Some(ps),
                relay_receive: Some(rr),
                relay_send: Some(rs),
            }) = hops.get(&d.seq).copied()
            else {
                continue;
            };
            let instants = [d.capture, ps, rr, rs, d.arrival, d.display];
            for (i, s) in seg.iter_mut().enumerate() {
                s.push(ms(instants[i], instants[i + 1]));
            }
        }
        let frames = seg[0].len() as u64;
        if frames == 0 {
            return None;
        }
        let [e, f, r, l, p] = seg;
        Some(HopBreakdown {
            frames,
            encode: Segment::of(e),
            first_mile: Segment::of(f),
            relay: Segment::of(r),
            last_mile: Segment::of(l),
            playout: Segment::of(p),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::FrameKind;
    use crate::media::player::{LatePolicy, LatencyControl};

    fn header(seq: u64) -> FrameHeader {
        FrameHeader {
            kind: if seq.is_multiple_of(30) {
                FrameKind::I
            } else {
                FrameKind::P
            },
            seq,
            gop: (seq / 30) as u32,
            capture: Time::from_secs_f64(seq as f64 / 30.0),
            size: 1000,
        }
    }

    #[test]
    fn equal_smoothness_finds_the_buffer_a_late_frame_needs() {
        // Every frame 20 ms after capture, but in every 2 s one P-frame
        // comes 300 ms late (a repair): a low-delay player stalls for it
        // unless its buffer covers most of the 300 ms (≤ 1 % stalls: ≤ 20 ms
        // in every 2 s).
        let arrivals: Vec<(Time, FrameHeader)> = {
            let mut v: Vec<_> = (0..600u64)
                .map(|k| {
                    let extra = if k % 60 == 45 { 300 } else { 0 };
                    (
                        header(k).capture + Duration::from_millis(20 + extra),
                        header(k),
                    )
                })
                .collect();
            v.sort_by_key(|(a, h)| (*a, h.seq));
            v
        };
        let cfg = PlayerConfig {
            target_delay: Duration::from_millis(100),
            refresh: Duration::from_millis(1),
            late: LatePolicy::Skip,
            ordered: false,
            latency_control: LatencyControl::None,
        };
        let end = Time::from_millis(20_000);
        let e = equal_smoothness(&cfg, &arrivals, end, Time::from_millis(5_000))
            .expect("smooth at some target");
        assert!((270.0..=305.0).contains(&e.target_delay_ms), "found {e:?}");
        assert!(e.stall_ratio <= SMOOTH_STALL_RATIO);
        // 5 ms less is not smooth: the search found the edge.
        let less = PlayerConfig {
            target_delay: Duration::from_secs_f64(e.target_delay_ms / 1e3 - 0.005),
            ..cfg.clone()
        };
        assert!(replay(less, Time::ZERO, &arrivals, end).0.stall_ratio > SMOOTH_STALL_RATIO);
        // G2G there = base delay + the buffer.
        assert!(
            (e.g2g_p50_ms - (20.0 + e.target_delay_ms)).abs() <= 1.5,
            "{e:?}"
        );
        // With no frames at all there is no answer.
        assert_eq!(equal_smoothness(&cfg, &[], end, Time::ZERO), None);
    }

    #[test]
    fn the_breakdown_adds_up_to_g2g() {
        let t = Time::from_millis;
        let d = Displayed {
            seq: 7,
            capture: t(1000),
            arrival: t(1150),
            display: t(1450),
        };
        let hops = HashMap::from([(
            7,
            FrameHops {
                publisher_send: Some(t(1030)),
                relay_receive: Some(t(1080)),
                relay_send: Some(t(1081)),
            },
        )]);
        let b = HopBreakdown::of(&[d], &hops).expect("one frame");
        let parts = [&b.encode, &b.first_mile, &b.relay, &b.last_mile, &b.playout]
            .map(|s| s.as_ref().map_or(0.0, |s| s.p50_ms));
        assert_eq!(parts, [30.0, 50.0, 1.0, 69.0, 300.0]);
        assert_eq!(parts.iter().sum::<f64>(), d.g2g().as_secs_f64() * 1e3);
        // A frame without its relay instants is left out.
        assert_eq!(HopBreakdown::of(&[d], &HashMap::new()), None);
    }
}
