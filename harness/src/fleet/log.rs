//! What one light viewer keeps, and the figures across viewers.

use netem::Time;
use serde::Serialize;

use crate::media::freeze::FreezeRule;
use crate::media::source::unpack;
use crate::protocol::rtmp::client::Watched;

/// The frames that count: captured in `[from, to)` and after the viewer's
/// play request was accepted (a late joiner's catch-up GOP is old by
/// design, not slow).
#[derive(Copy, Clone, Debug)]
pub struct Window {
    pub from: Time,
    pub to: Time,
}

/// What one viewer saw.
#[derive(Clone, Debug, Default)]
pub struct ViewerLog {
    /// When it started to connect.
    pub dialled: Time,
    pub accepted: Option<Time>,
    /// Its first video frame (any: the catch-up GOP counts for joining).
    pub first_frame: Option<Time>,
    /// Capture → arrival of each counted video frame, µs.
    pub latency_us: Vec<u32>,
    pub freezes: FreezeRule,
    /// Video frames skipped in the sequence (never delivered) after its
    /// first.
    pub missing: u64,
    last_seq: Option<u64>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

impl ViewerLog {
    pub fn new(dialled: Time) -> ViewerLog {
        ViewerLog {
            dialled,
            ..ViewerLog::default()
        }
    }

    /// A viewer whose task ended without a log (`why`).
    pub fn failed(why: String) -> ViewerLog {
        ViewerLog {
            error: Some(why),
            ..ViewerLog::default()
        }
    }

    /// Notes what the viewer's session reported.
    pub fn on(&mut self, w: Watched<'_>, window: &Window) {
        let (at, body) = match w {
            Watched::Accepted(t) => {
                self.accepted = Some(t);
                return;
            }
            Watched::Media {
                at,
                video: true,
                body,
            } => (at, body),
            Watched::Media { video: false, .. } => return,
        };
        let Some(h) = unpack(body, true) else {
            return; // configuration, or not a Glass frame
        };
        self.first_frame.get_or_insert(at);
        if let Some(last) = self.last_seq
            && h.seq > last + 1
        {
            self.missing += h.seq - last - 1;
        }
        self.last_seq = Some(self.last_seq.map_or(h.seq, |l| l.max(h.seq)));
        let counted = self.accepted.is_some_and(|a| h.capture >= a)
            && h.capture >= window.from
            && h.capture < window.to;
        if counted {
            self.freezes.frame(at);
            let us = at.saturating_since(h.capture).as_micros();
            self.latency_us.push(us.min(u128::from(u32::MAX)) as u32);
        }
    }
}

/// Figures across a fleet's viewers (ms).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetSummary {
    pub viewers: usize,
    /// Viewers that failed to connect or were cut off.
    pub failed: usize,
    /// Video frames counted, all viewers.
    pub frames: usize,
    /// Every counted frame of every viewer together.
    pub pooled_p50_ms: f64,
    pub pooled_p99_ms: f64,
    /// Each viewer's p50 and p99, then their median and worst across
    /// viewers.
    pub viewer_p50_median_ms: f64,
    pub viewer_p99_median_ms: f64,
    pub viewer_p99_max_ms: f64,
    pub freezes: u64,
    pub viewers_with_freezes: usize,
    pub missing_frames: u64,
    /// Dial → first video frame, across viewers.
    pub join_p50_ms: f64,
    pub join_p99_ms: f64,
    /// The first error a viewer reported, if any.
    pub first_error: Option<String>,
}

/// The nearest-rank `q` quantile of sorted values (0 when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Summarises a fleet's logs.
pub fn summarize(logs: &[ViewerLog]) -> FleetSummary {
    let ms = |us: &u32| f64::from(*us) / 1e3;
    let pooled = sorted(
        logs.iter()
            .flat_map(|l| l.latency_us.iter().map(ms))
            .collect(),
    );
    let per_viewer: Vec<(f64, f64)> = logs
        .iter()
        .filter(|l| !l.latency_us.is_empty())
        .map(|l| {
            let v = sorted(l.latency_us.iter().map(ms).collect());
            (quantile(&v, 0.5), quantile(&v, 0.99))
        })
        .collect();
    let p50s = sorted(per_viewer.iter().map(|p| p.0).collect());
    let p99s = sorted(per_viewer.iter().map(|p| p.1).collect());
    let joins = sorted(
        logs.iter()
            .filter_map(|l| Some(l.first_frame?.saturating_since(l.dialled).as_secs_f64() * 1e3))
            .collect(),
    );
    FleetSummary {
        viewers: logs.len(),
        failed: logs.iter().filter(|l| l.error.is_some()).count(),
        frames: pooled.len(),
        pooled_p50_ms: quantile(&pooled, 0.5),
        pooled_p99_ms: quantile(&pooled, 0.99),
        viewer_p50_median_ms: quantile(&p50s, 0.5),
        viewer_p99_median_ms: quantile(&p99s, 0.5),
        viewer_p99_max_ms: p99s.last().copied().unwrap_or(0.0),
        freezes: logs.iter().map(|l| l.freezes.count).sum(),
        viewers_with_freezes: logs.iter().filter(|l| l.freezes.count > 0).count(),
        missing_frames: logs.iter().map(|l| l.missing).sum(),
        join_p50_ms: quantile(&joins, 0.5),
        join_p99_ms: quantile(&joins, 0.99),
        first_error: logs.iter().find_map(|l| l.error.clone()),
    }
}

/// One viewer's figures, for results.json (ms from the run's start, or
/// durations in ms).
#[derive(Clone, Debug, Serialize)]
pub struct ViewerFigures {
    pub joined_ms: f64,
    /// Dial → first video frame.
    pub join_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub frames: usize,
    pub freezes: u64,
    pub missing: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ViewerFigures {
    pub fn of(l: &ViewerLog) -> ViewerFigures {
        let v = sorted(l.latency_us.iter().map(|us| f64::from(*us) / 1e3).collect());
        let q = |p| (!v.is_empty()).then(|| quantile(&v, p));
        ViewerFigures {
            joined_ms: l.dialled.as_secs_f64() * 1e3,
            join_ms: l
                .first_frame
                .map(|f| f.saturating_since(l.dialled).as_secs_f64() * 1e3),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            frames: v.len(),
            freezes: l.freezes.count,
            missing: l.missing,
            error: l.error.clone(),
        }
    }
}

/// A group's light viewers in results.json: across viewers, then each.
#[derive(Clone, Debug, Serialize)]
pub struct ViewersReport {
    pub described: String,
    pub summary: FleetSummary,
    pub viewers: Vec<ViewerFigures>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{Frame, FrameHeader, FrameKind};

    fn frame(seq: u64, capture_ms: u64) -> Vec<u8> {
        let h = FrameHeader {
            kind: if seq == 0 { FrameKind::I } else { FrameKind::P },
            seq,
            gop: 0,
            capture: Time::from_millis(capture_ms),
            size: 200,
        };
        crate::media::source::video_tag(&Frame::new(h)).to_vec()
    }

    #[test]
    fn counts_frames_in_the_window_after_acceptance_and_gaps() {
        let window = Window {
            from: Time::from_millis(1000),
            to: Time::from_millis(2000),
        };
        let mut log = ViewerLog::new(Time::from_millis(900));
        log.on(Watched::Accepted(Time::from_millis(950)), &window);
        // The catch-up (captured before acceptance) does not count.
        let old = frame(0, 100);
        log.on(
            Watched::Media {
                at: Time::from_millis(960),
                video: true,
                body: &old,
            },
            &window,
        );
        for seq in [30u64, 31, 33] {
            let f = frame(seq, 1000 + seq);
            log.on(
                Watched::Media {
                    at: Time::from_millis(1000 + seq + 40),
                    video: true,
                    body: &f,
                },
                &window,
            );
        }
        assert_eq!(log.latency_us, vec![40_000; 3]);
        assert_eq!(log.missing, 29 + 1, "1–29 before the window, and 32");
        assert_eq!(log.first_frame, Some(Time::from_millis(960)));
        let s = summarize(&[log, ViewerLog::new(Time::ZERO)]);
        assert_eq!((s.viewers, s.frames, s.failed), (2, 3, 0));
        assert_eq!(s.pooled_p99_ms, 40.0);
        assert_eq!(s.viewer_p99_max_ms, 40.0);
        assert_eq!(s.join_p50_ms, 60.0);
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
