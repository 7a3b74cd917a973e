//! Congestion control in the manner of Google Congestion Control
//! (draft-ietf-rmcat-gcc-02, libwebrtc's send-side estimator): a delay-based
//! estimate (trendline over the one-way delay gradient of packet groups,
//! adaptive-threshold overuse detector, AIMD rate controller) capped by a
//! loss-based one, both fed by the receiver's per-packet arrival reports
//! (RFC 8888 style). Plus a pacer that spreads packets at a multiple of the
//! target.

use std::collections::VecDeque;
use std::time::Duration;

use netem::Time;
use serde::Serialize;

/// One packet of a feedback report, matched to what the sender sent.
#[derive(Copy, Clone, Debug)]
pub struct PacketResult {
    pub sent: Time,
    pub size: usize,
    /// Receiver clock, µs (only differences matter); `None` if lost.
    pub arrival_us: Option<u64>,
}

/// What the detector concludes about the path.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    Normal,
    Overusing,
    Underusing,
}

/// Packets sent within this span form one group (a burst).
const GROUP_SPAN: Duration = Duration::from_millis(5);
const TRENDLINE_WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const THRESHOLD_GAIN: f64 = 4.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const OVERUSE_TIME_MS: f64 = 10.0;
const BETA: f64 = 0.85;

#[derive(Copy, Clone, Debug)]
struct Group {
    first_sent: Time,
    last_sent: Time,
    last_arrival_us: u64,
}

/// The delay-based part: trendline filter and overuse detector.
struct DelayDetector {
    group: Option<Group>,
    prev: Option<Group>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    first_arrival_us: Option<u64>,
    window: VecDeque<(f64, f64)>,
    num_deltas: u32,
    threshold: f64,
    last_update_ms: Option<f64>,
    over_ms: f64,
    over_count: u32,
    prev_trend: f64,
    usage: Usage,
    trend: f64,
}

impl DelayDetector {
    fn new() -> Self {
        DelayDetector {
            group: None,
            prev: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            first_arrival_us: None,
            window: VecDeque::new(),
            num_deltas: 0,
            threshold: 12.5,
            last_update_ms: None,
            over_ms: -1.0,
            over_count: 0,
            prev_trend: 0.0,
            usage: Usage::Normal,
            trend: 0.0,
        }
    }

    /// One received packet, in send order.
    fn on_packet(&mut self, sent: Time, arrival_us: u64) {
        match &mut self.group {
            Some(g)
                if sent.saturating_since(g.first_sent) <= GROUP_SPAN && sent >= g.first_sent =>
            {
                g.last_sent = g.last_sent.max(sent);
                g.last_arrival_us = g.last_arrival_us.max(arrival_us);
            }
            _ => {
                if let Some(done) = self.group.take() {
                    if let Some(prev) = self.prev {
                        self.on_group_delta(prev, done);
                    }
                    self.prev = Some(done);
                }
                self.group = Some(Group {
                    first_sent: sent,
                    last_sent: sent,
                    last_arrival_us: arrival_us,
                });
            }
        }
    }

    fn on_group_delta(&mut self, prev: Group, cur: Group) {
        let send_ms = cur.last_sent.saturating_since(prev.last_sent).as_secs_f64() * 1e3;
        let arrival_ms = (cur.last_arrival_us as f64 - prev.last_arrival_us as f64) / 1e3;
        let d = arrival_ms - send_ms;
        self.num_deltas = (self.num_deltas + 1).min(1000);
        self.accumulated_ms += d;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let first = *self.first_arrival_us.get_or_insert(cur.last_arrival_us);
        let x = (cur.last_arrival_us.saturating_sub(first)) as f64 / 1e3;
        self.window.push_back((x, self.smoothed_ms));
        if self.window.len() > TRENDLINE_WINDOW {
            self.window.pop_front();
        }
        if self.window.len() == TRENDLINE_WINDOW
            && let Some(slope) = linear_fit_slope(&self.window)
        {
            self.trend = slope;
        }
        let modified = f64::from(self.num_deltas.min(60)) * self.trend * THRESHOLD_GAIN;
        self.detect(modified, send_ms, x);
    }

    fn detect(&mut self, modified: f64, ts_delta_ms: f64, now_ms: f64) {
        if modified > self.threshold {
            if self.over_ms < 0.0 {
                self.over_ms = ts_delta_ms / 2.0;
            } else {
                self.over_ms += ts_delta_ms;
            }
            self.over_count += 1;
            if self.over_ms > OVERUSE_TIME_MS && self.over_count > 1 && modified >= self.prev_trend
            {
                self.over_ms = 0.0;
                self.over_count = 0;
                self.usage = Usage::Overusing;
            }
        } else if modified < -self.threshold {
            self.over_ms = -1.0;
            self.over_count = 0;
            self.usage = Usage::Underusing;
        } else {
            self.over_ms = -1.0;
            self.over_count = 0;
            self.usage = Usage::Normal;
        }
        self.prev_trend = modified;
        // Adaptive threshold (not on spikes far above it).
        let last = self.last_update_ms.unwrap_or(now_ms);
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.last_update_ms = Some(now_ms);
        if modified.abs() <= self.threshold + 15.0 {
            let k = if modified.abs() < self.threshold {
                K_DOWN
            } else {
                K_UP
            };
            self.threshold =
                (self.threshold + k * (modified.abs() - self.threshold) * dt).clamp(6.0, 600.0);
        }
    }
}

/// Least-squares slope of (x, y).
fn linear_fit_slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    (den > 0.0).then(|| num / den)
}

/// One decision, for the time series.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct CcSample {
    pub at_ms: f64,
    pub target_bps: f64,
    pub receive_bps: f64,
    pub loss: f64,
    pub rtt_ms: f64,
    pub usage: Usage,
}

/// The controller.
pub struct Gcc {
    min_bps: f64,
    max_bps: f64,
    target: f64,
    delay: DelayDetector,
    last_increase: Option<Time>,
    last_decrease: Option<Time>,
    /// Receive rate when the last decrease happened (the link's capacity
    /// estimate, for additive increase near it).
    capacity: Option<f64>,
    /// (bytes received, span µs) of the last reports.
    received: VecDeque<(u64, u64)>,
    last_report_us: Option<u64>,
    receive_bps: Option<f64>,
    /// (lost, reported) since the loss estimate last moved.
    loss_acc: (u64, u64),
    last_loss: f64,
    last_loss_update: Option<Time>,
    samples: Vec<CcSample>,
}

/// Samples kept for the report (one per feedback, ~20/s: about 14 min).
const MAX_SAMPLES: usize = 16_384;

impl Gcc {
    pub fn new(start_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        Gcc {
            min_bps,
            max_bps,
            target: start_bps,
            delay: DelayDetector::new(),
            last_increase: None,
            last_decrease: None,
            capacity: None,
            received: VecDeque::new(),
            last_report_us: None,
            receive_bps: None,
            loss_acc: (0, 0),
            last_loss: 0.0,
            last_loss_update: None,
            samples: Vec::new(),
        }
    }

    pub fn target_bps(&self) -> f64 {
        self.target
    }

    /// Receive rate the reports show, bit/s.
    pub fn receive_bps(&self) -> Option<f64> {
        self.receive_bps
    }

    /// Loss fraction of the latest loss-estimate window.
    pub fn loss(&self) -> f64 {
        self.last_loss
    }

    pub fn usage(&self) -> Usage {
        self.delay.usage
    }

    pub fn samples(&self) -> &[CcSample] {
        &self.samples
    }

    /// One feedback report: `results` in send order, `report_us` the
    /// receiver's clock when it wrote the report.
    pub fn on_feedback(
        &mut self,
        now: Time,
        report_us: u64,
        results: &[PacketResult],
        rtt: Duration,
    ) {
        let mut bytes = 0u64;
        let mut lost = 0u64;
        for r in results {
            match r.arrival_us {
                Some(a) => {
                    bytes += r.size as u64;
                    self.delay.on_packet(r.sent, a);
                }
                None => lost += 1,
            }
        }
        // Receive rate over the last ~0.5 s of reports.
        if let Some(last) = self.last_report_us {
            let span = report_us.saturating_sub(last);
            if span > 0 {
                self.received.push_back((bytes, span));
                let mut total_span: u64 = self.received.iter().map(|r| r.1).sum();
                while total_span > 500_000 && self.received.len() > 1 {
                    if let Some((_, s)) = self.received.pop_front() {
                        total_span -= s;
                    }
                }
                let total_bytes: u64 = self.received.iter().map(|r| r.0).sum();
                if total_span >= 100_000 {
                    self.receive_bps = Some(total_bytes as f64 * 8.0 * 1e6 / total_span as f64);
                }
            }
        }
        self.last_report_us = Some(report_us);
        self.loss_acc.0 += lost;
        self.loss_acc.1 += results.len() as u64;

        let rtt_s = rtt.as_secs_f64().max(0.001);
        // Delay-based AIMD.
        let mut delay_rate = self.target;
        match self.delay.usage {
            Usage::Overusing => {
                let due = self
                    .last_decrease
                    .is_none_or(|t| now.saturating_since(t).as_secs_f64() >= rtt_s.max(0.05));
                if due {
                    let base = self.receive_bps.unwrap_or(self.target);
                    delay_rate = (BETA * base).min(self.target);
                    self.capacity = Some(match self.capacity {
                        Some(c) => 0.95 * c + 0.05 * base,
                        None => base,
                    });
                    self.last_decrease = Some(now);
                    self.delay.usage = Usage::Normal;
                }
                self.last_increase = Some(now);
            }
            Usage::Underusing => self.last_increase = Some(now),
            Usage::Normal => {
                let dt = self
                    .last_increase
                    .map_or(0.0, |t| now.saturating_since(t).as_secs_f64().min(1.0));
                self.last_increase = Some(now);
                let near = self
                    .capacity
                    .is_some_and(|c| self.target > 0.9 * c && self.target < 1.5 * c);
                delay_rate = if near {
                    // About one packet per response time.
                    let response = rtt_s + 0.1;
                    self.target + 1200.0 * 8.0 * dt / response
                } else {
                    self.target * 1.08f64.powf(dt)
                };
                // An increase stops at 1.5 × what the path was seen to
                // carry; it never becomes a decrease (libwebrtc's
                // `ClampBitrate`): a sender that had little to send (a
                // session's first reports, a relay's egress between key
                // frames) shows a low receive rate that says nothing about
                // the path. Capping the target to it cut an egress's pacing
                // to 1.5 × its first 100 ms and the queue behind the pacer
                // added 55 ms to every frame for the rest of the run.
                if let Some(r) = self.receive_bps {
                    let cap = 1.5 * r + 10_000.0;
                    if delay_rate > self.target && delay_rate > cap {
                        delay_rate = self.target.max(cap);
                    }
                }
            }
        }
        // Loss-based, once enough packets were reported.
        let mut target = delay_rate;
        let (l, n) = self.loss_acc;
        if n >= 20 {
            let loss = l as f64 / n as f64;
            self.last_loss = loss;
            self.loss_acc = (0, 0);
            let since = self
                .last_loss_update
                .map_or(f64::INFINITY, |t| now.saturating_since(t).as_secs_f64());
            if loss > 0.10 && since >= 0.3 + rtt_s {
                target = target.min(self.target * (1.0 - 0.5 * loss));
                self.last_loss_update = Some(now);
            }
        }
        if self.last_loss > 0.02 {
            // No increase while losing more than 2 %.
            target = target.min(self.target);
        }
        self.target = target.clamp(self.min_bps, self.max_bps);
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(CcSample {
                at_ms: now.as_secs_f64() * 1e3,
                target_bps: self.target,
                receive_bps: self.receive_bps.unwrap_or(0.0),
                loss: self.last_loss,
                rtt_ms: rtt.as_secs_f64() * 1e3,
                usage: self.delay.usage,
            });
        }
    }
}

/// Releases packets at `rate` with a small burst allowance (a leaky bucket).
pub struct Pacer {
    rate_bps: f64,
    budget_bytes: f64,
    last: Option<Time>,
}

/// Burst the pacer allows, in time at its rate.
const PACER_BURST: Duration = Duration::from_millis(5);

impl Pacer {
    pub fn new(rate_bps: f64) -> Self {
        Pacer {
            rate_bps,
            budget_bytes: 0.0,
            last: None,
        }
    }

    pub fn set_rate(&mut self, rate_bps: f64) {
        self.rate_bps = rate_bps.max(1.0);
    }

    /// The budget at `now`: refilled at the rate, capped at the burst.
    fn budget_at(&self, now: Time) -> f64 {
        let max = (self.rate_bps / 8.0 * PACER_BURST.as_secs_f64()).max(1500.0);
        match self.last {
            Some(last) => (self.budget_bytes
                + now.saturating_since(last).as_secs_f64() * self.rate_bps / 8.0)
                .min(max),
            None => max,
        }
    }

    /// When the next packet may leave (now, or once the budget is back to zero).
    pub fn next_send(&self, now: Time) -> Time {
        let b = self.budget_at(now);
        if b >= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(-b * 8.0 / self.rate_bps)
        }
    }

    pub fn on_sent(&mut self, now: Time, size: usize) {
        self.budget_bytes = self.budget_at(now) - size as f64;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the controller a path of capacity `cap_bps` with a queue: each
    /// report covers 50 ms of packets sent at the current target; arrivals
    /// queue behind each other at the capacity; `loss` of them are lost.
    fn simulate(cap_bps: f64, loss_every: Option<u64>, secs: u64) -> Gcc {
        simulate_app(cap_bps, loss_every, secs, |_| f64::INFINITY)
    }

    /// As [`simulate`], with a sender that has at most `app_bps(second)` to
    /// send (application-limited below its target).
    fn simulate_app(
        cap_bps: f64,
        loss_every: Option<u64>,
        secs: u64,
        app_bps: impl Fn(f64) -> f64,
    ) -> Gcc {
        let mut gcc = Gcc::new(1_000_000.0, 100_000.0, 20_000_000.0);
        let mut queue_free_us = 0.0f64; // when the bottleneck is free again
        let mut seq = 0u64;
        let size = 1200usize;
        for report in 0..(secs * 20) {
            let start_us = report as f64 * 50_000.0;
            let rate = gcc.target_bps().min(app_bps(start_us / 1e6));
            let n = ((rate * 0.05) / (size as f64 * 8.0)).ceil() as u64;
            let mut results = Vec::new();
            for i in 0..n {
                let sent_us = start_us + i as f64 * 50_000.0 / n as f64;
                seq += 1;
                let lost = loss_every.is_some_and(|e| seq.is_multiple_of(e));
                let arrival = if lost {
                    None
                } else {
                    let begin = queue_free_us.max(sent_us);
                    queue_free_us = begin + size as f64 * 8.0 * 1e6 / cap_bps;
                    Some((queue_free_us + 20_000.0) as u64)
                };
                results.push(PacketResult {
                    sent: Time::from_micros(sent_us as u64),
                    size,
                    arrival_us: arrival,
                });
            }
            let now = Time::from_micros((start_us + 50_000.0 + 20_000.0) as u64);
            gcc.on_feedback(
                now,
                (start_us + 50_000.0) as u64 + 20_000,
                &results,
                Duration::from_millis(40),
            );
        }
        gcc
    }

    #[test]
    fn the_target_settles_near_a_bottleneck_capacity() {
        let gcc = simulate(3_000_000.0, None, 30);
        let t = gcc.target_bps();
        assert!((1_500_000.0..=3_600_000.0).contains(&t), "target {t}");
        assert!(gcc.samples().iter().any(|s| s.usage == Usage::Overusing) || t < 3_600_000.0);
    }

    #[test]
    fn the_target_grows_on_a_clean_wide_path() {
        let gcc = simulate(100_000_000.0, None, 10);
        assert!(
            gcc.target_bps() > 1_500_000.0,
            "target {}",
            gcc.target_bps()
        );
    }

    #[test]
    fn a_sender_with_little_to_send_keeps_its_target() {
        // 200 kbit/s of media for the first second (a session's start),
        // then 900 kbit/s, on a wide clean path: nothing says the path is
        // short, so the target never drops below its 1 Mbit/s start (it
        // fell to 1.5 × 200 kbit/s when the increase cap also cut), and
        // once the sender has more to send the target follows it up.
        let gcc = simulate_app(100_000_000.0, None, 5, |s| {
            if s < 1.0 { 200_000.0 } else { 900_000.0 }
        });
        let lowest = gcc
            .samples()
            .iter()
            .map(|s| s.target_bps)
            .fold(f64::INFINITY, f64::min);
        assert!(lowest >= 1_000_000.0, "target fell to {lowest}");
        assert!(
            gcc.samples().iter().all(|s| s.usage != Usage::Overusing),
            "no overuse on a clean path"
        );
        // Increases still stop near 1.5 × what the path carried.
        let t = gcc.target_bps();
        assert!(t <= 1.5 * 900_000.0 + 10_000.0 + 100_000.0, "target {t}");
    }

    #[test]
    fn heavy_loss_cuts_the_rate_and_moderate_loss_holds_it() {
        let heavy = simulate(100_000_000.0, Some(5), 10); // 20 %
        assert!(
            heavy.target_bps() < 1_000_000.0,
            "target {}",
            heavy.target_bps()
        );
        assert!((heavy.loss() - 0.2).abs() < 0.05);
        let moderate = simulate(100_000_000.0, Some(20), 10); // 5 %
        // Held where it was when the loss was first measured (a few
        // reports of increase before that).
        assert!(
            (moderate.target_bps() - 1_000_000.0).abs() < 20_000.0,
            "target {}",
            moderate.target_bps()
        );
    }

    #[test]
    fn the_pacer_spreads_a_burst_at_its_rate() {
        let mut p = Pacer::new(8_000_000.0); // 1 byte/µs
        let mut t = Time::ZERO;
        let mut sent = 0;
        while sent < 100 {
            t = p.next_send(t);
            p.on_sent(t, 1000);
            sent += 1;
        }
        // 100 kB at 1 MB/s, less the 5 ms burst: about 95 ms.
        let ms = t.as_secs_f64() * 1e3;
        assert!((90.0..=100.0).contains(&ms), "{ms} ms");
    }
}
