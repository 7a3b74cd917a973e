//! The player model: a playout buffer with a target delay, decode
//! dependencies, and a display on a fixed refresh; and the viewer-side
//! metrics exactly as DESIGN.md defines them.
//!
//! Playback starts `target_delay` behind the live edge: the first I-frame
//! (captured at `c₀`) shows at `c₀ + d_min + target_delay`, and every frame
//! is due `offset = d_min + target_delay` after its capture, where `d_min` is
//! the lowest capture-to-arrival delay seen while buffering (the live edge's
//! delay, as a jitter buffer estimates its base delay). Anchoring on the first
//! frame's delay instead would bake TCP's slow start (an I-frame's transfer
//! on a fresh connection takes several round trips) into the whole run.
//! The display refreshes every `refresh` from the player's start;
//! at each refresh it shows the newest frame that is due and decodable (an
//! I-frame, or a P-frame whose predecessor was decoded).
//!
//! When the next frame is not there at its instant:
//! - [`LatePolicy::Wait`] (buffered players, RTMP/HLS): playback stops until
//!   it comes (rebuffering), then resumes from it; the delay added by the stall
//!   stays, as in real players that do not speed up.
//! - [`LatePolicy::Skip`] (low-delay players, WebRTC/the UDP protocol): the
//!   frame is given up and playback moves on; the frames that depend on it are
//!   undecodable until the next I-frame. If it arrives later it is counted as
//!   dropped late.
//!
//! On an ordered transport (TCP), a frame missing while a later one has
//! arrived will never come (it was lost before the transport, e.g. on a UDP
//! first mile behind a gateway): both policies give it up. On an unordered
//! one (QUIC's frames mapping, the UDP protocol), a buffered player waits
//! for a missing frame until a later I-frame is due, then gives it up (the
//! UDP protocol may have given it up for good).
//!
//! Live-edge control ([`LatencyControl`]): once playing, the player keeps
//! estimating the live edge's delay (the lowest capture-to-arrival delay of
//! the last [`LIVE_WINDOW`]), so its target latency is that delay plus
//! `target_delay`. A start-up burst (TCP's slow start on a fresh connection,
//! frames queued behind the set-up) or a stall leaves the playhead later
//! than that; `catch_up` plays faster (up to `max_rate`) until it is back
//! at the target, as hls.js and mpegts.js latency chasing do;
//! `skip_to_live` jumps to the newest decodable frame once it is more than
//! `threshold` behind, as low-delay players do (the skipped frames are
//! decoded, not shown, so the reference chain stays whole); `none` keeps
//! whatever latency start-up and stalls left (a plain buffered player).
//!
//! Metrics (DESIGN.md): glass-to-glass latency = display − capture, for
//! displayed frames only; startup delay = first display − player start; a
//! stall starts at the refresh where the player should show a frame and has
//! none decodable, and ends when a frame is shown again; stall ratio = total
//! stall time / playback time (first display to the end); a WebRTC freeze is
//! an inter-frame display gap > max(3 × mean frame interval, mean + 150 ms)
//! (mean over the last 30 intervals; [`super::freeze`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use hdrhistogram::Histogram;
use netem::Time;
use serde::Serialize;

use super::frame::{FrameHeader, FrameKind};
use super::freeze::FreezeRule;

/// What a player does with a frame that is not there at its instant.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatePolicy {
    Wait,
    Skip,
}

/// What a player does when it is later than its target latency (the live
/// edge's delay + `target_delay`).
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LatencyControl {
    /// Keep the latency start-up and stalls left.
    None,
    /// Play faster, at most `max_rate` × real time, until back at the target.
    CatchUp { max_rate: f64 },
    /// Jump to the newest decodable frame when more than `threshold` late.
    SkipToLive {
        #[serde(serialize_with = "ser_ms")]
        threshold: Duration,
    },
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

impl LatencyControl {
    /// mpegts.js's live sync rate (`liveSyncPlaybackRate`): 1.2×.
    pub const DEFAULT_MAX_RATE: f64 = 1.2;
    /// How late a low-delay player may fall before it jumps.
    pub const DEFAULT_SKIP_THRESHOLD: Duration = Duration::from_millis(100);

    /// The default for a player kind: a buffered player (`wait`, RTMP and
    /// HTTP-FLV players) catches up at 1.2× (mpegts.js's latency chasing;
    /// HLS players default to none, `Protocol::default_latency_control`);
    /// a low-delay player (`skip`, WebRTC-like) skips to the live edge once
    /// 100 ms late (a real-time jitter buffer drops what it cannot show in
    /// time).
    pub fn default_for(late: LatePolicy) -> LatencyControl {
        match late {
            LatePolicy::Wait => LatencyControl::CatchUp {
                max_rate: Self::DEFAULT_MAX_RATE,
            },
            LatePolicy::Skip => LatencyControl::SkipToLive {
                threshold: Self::DEFAULT_SKIP_THRESHOLD,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlayerConfig {
    /// Buffering between the first frame's arrival and its display.
    pub target_delay: Duration,
    /// Display refresh interval (1/60 s for a 60 Hz screen).
    pub refresh: Duration,
    pub late: LatePolicy,
    /// Frames arrive in order (TCP): a gap behind an arrived frame is a loss.
    pub ordered: bool,
    /// What to do when later than the target latency.
    pub latency_control: LatencyControl,
}

/// What the live-edge control does to the playhead at one refresh.
enum Adjust {
    Keep,
    /// Shorten the offset by this much (play faster for one refresh).
    CatchUp(Duration),
    /// Set the offset to this (the live edge + the buffer) at once.
    JumpTo(Duration),
}

/// The live edge's delay is the lowest capture-to-arrival delay over this
/// window: long enough to span a GOP's jitter, short enough to follow a
/// path whose delay changes.
pub const LIVE_WINDOW: Duration = Duration::from_secs(2);

/// One displayed frame.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct Displayed {
    pub seq: u64,
    pub capture: Time,
    pub arrival: Time,
    pub display: Time,
}

impl Displayed {
    pub fn g2g(&self) -> Duration {
        self.display - self.capture
    }
}

/// The viewer-side figures of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PlayerReport {
    pub frames_received: u64,
    pub audio_frames_received: u64,
    pub frames_displayed: u64,
    /// Arrived after their slot was given up, or superseded by a newer due frame.
    pub dropped_late: u64,
    /// Arrived, but their reference was missing.
    pub dropped_undecodable: u64,
    /// Not there when their slot passed, so given up (if one arrives later,
    /// it is also counted in `dropped_late`).
    pub given_up_missing: u64,
    pub g2g_p50_ms: f64,
    pub g2g_p90_ms: f64,
    pub g2g_p95_ms: f64,
    pub g2g_p99_ms: f64,
    pub g2g_p999_ms: f64,
    pub g2g_max_ms: f64,
    pub g2g_mean_ms: f64,
    pub startup_delay_ms: Option<f64>,
    pub stall_count: u64,
    pub stall_total_ms: f64,
    pub stall_ratio: f64,
    pub stalls_per_minute: f64,
    pub freeze_count: u64,
    pub freeze_total_ms: f64,
    pub playback_s: f64,
    /// Time spent playing faster than real time to get back to the target
    /// latency (`catch_up`).
    pub catch_up_ms: f64,
    /// Frames decoded but not shown because the player jumped to the live
    /// edge (`skip_to_live`).
    pub frames_skipped: u64,
    /// Jumps to the live edge (`skip_to_live`).
    pub skips: u64,
    /// Share of display refreshes after the first frame at which the
    /// screen shows a stale picture: nothing new was shown and the picture
    /// on screen is older than a frame interval (plus half a refresh). One
    /// smoothness figure for buffered players (stalls) and low-delay ones
    /// (skips, freezes) alike.
    pub stale_refresh_ratio: f64,
    /// G2G over the steady state: frames captured after the warm-up (set
    /// by the runner, which knows when the camera started).
    pub steady: Option<G2gSummary>,
}

#[derive(Copy, Clone, Debug)]
struct Arrived {
    header: FrameHeader,
    arrival: Time,
}

/// The player.
pub struct Player {
    cfg: PlayerConfig,
    start: Time,
    next_tick: Time,
    /// Capture → due; set once the buffer holds `target_delay` of media.
    offset: Option<Duration>,
    /// Capture instant of the first I-frame, while the buffer fills.
    first_capture: Option<Time>,
    /// Lowest capture-to-arrival delay seen while the buffer fills.
    min_delay: Option<Duration>,
    buffer: BTreeMap<u64, Arrived>,
    next_seq: u64,
    last_decoded: Option<u64>,
    /// (seq, capture) of the last frame consumed, to estimate missing ones' instants.
    last_capture: Option<(u64, Time)>,
    /// Learned from the frames themselves; unknown until two have been seen.
    frame_interval: Option<Duration>,
    /// The slot of a frame given up before it was due: when it comes, the
    /// player has nothing to show for it.
    empty_slot: Option<Time>,
    stall_start: Option<Time>,
    stalls: Vec<(Time, Time)>,
    displayed: Vec<Displayed>,
    freezes: FreezeRule,
    report: PlayerReport,
    /// (arrival, delay) of recent video frames, delays increasing from the
    /// front: the sliding minimum over [`LIVE_WINDOW`].
    live: VecDeque<(Time, Duration)>,
    /// The newest capture instant that has arrived: how far the buffer
    /// reaches ahead of the playhead.
    newest_capture: Option<Time>,
    catch_up: Duration,
    refreshes: u64,
    stale_refreshes: u64,
    /// Every video frame's arrival, for replays at other targets.
    arrivals: Vec<(Time, FrameHeader)>,
}

impl Player {
    /// A player that starts (connects) at `start`.
    pub fn new(cfg: PlayerConfig, start: Time) -> Player {
        Player {
            next_tick: start,
            start,
            offset: None,
            first_capture: None,
            min_delay: None,
            buffer: BTreeMap::new(),
            next_seq: 0,
            last_decoded: None,
            last_capture: None,
            frame_interval: None,
            empty_slot: None,
            stall_start: None,
            stalls: Vec::new(),
            displayed: Vec::new(),
            freezes: FreezeRule::default(),
            report: PlayerReport::default(),
            live: VecDeque::new(),
            newest_capture: None,
            catch_up: Duration::ZERO,
            refreshes: 0,
            stale_refreshes: 0,
            arrivals: Vec::new(),
            cfg,
        }
    }

    /// A complete frame arrived at `now`.
    pub fn on_frame(&mut self, now: Time, header: FrameHeader) {
        self.handle_timeout(now);
        if header.kind == FrameKind::Audio {
            self.report.audio_frames_received += 1;
            return;
        }
        self.report.frames_received += 1;
        self.arrivals.push((now, header));
        self.newest_capture = self.newest_capture.max(Some(header.capture));
        self.track_live_edge(now, now.saturating_since(header.capture));
        if self.first_capture.is_none() {
            if header.kind != FrameKind::I {
                if !self.cfg.ordered {
                    // Out of order, the I-frame before it may still come
                    // (a large frame on its own stream completes last).
                    self.buffer.insert(
                        header.seq,
                        Arrived {
                            header,
                            arrival: now,
                        },
                    );
                    return;
                }
                // Joined mid-GOP: nothing decodes before an I-frame.
                self.report.dropped_undecodable += 1;
                return;
            }
            self.first_capture = Some(header.capture);
            self.next_seq = header.seq;
            // Frames held for it that came from before it cannot decode.
            let before = self.buffer.len();
            self.buffer.retain(|&seq, _| seq > header.seq);
            self.report.dropped_undecodable += (before - self.buffer.len()) as u64;
            let arrivals: Vec<Duration> = self
                .buffer
                .values()
                .map(|a| a.arrival - a.header.capture)
                .collect();
            for d in arrivals {
                self.min_delay = Some(self.min_delay.map_or(d, |m| m.min(d)));
            }
        }
        if header.seq < self.next_seq || self.buffer.contains_key(&header.seq) {
            // Its slot has passed (or a duplicate).
            self.report.dropped_late += 1;
            return;
        }
        self.buffer.insert(
            header.seq,
            Arrived {
                header,
                arrival: now,
            },
        );
        if self.offset.is_none() {
            let delay = now - header.capture;
            self.min_delay = Some(self.min_delay.map_or(delay, |d| d.min(delay)));
        }
    }

    /// When the display next refreshes.
    pub fn poll_timeout(&self) -> Time {
        self.next_tick
    }

    /// Runs every refresh up to `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        while self.next_tick <= now {
            let t = self.next_tick;
            self.refresh(t);
            self.next_tick = t + self.cfg.refresh;
        }
    }

    /// When a missing frame `seq` would be due, estimated from the last frame
    /// consumed and the learned frame interval (unknown until learned).
    fn estimated_due(&self, seq: u64, offset: Duration) -> Option<Time> {
        let (s, c) = self.last_capture?;
        let n = u32::try_from(seq.saturating_sub(s)).unwrap_or(u32::MAX);
        Some(c + self.frame_interval? * n + offset)
    }

    fn consumed(&mut self, seq: u64, capture: Time) {
        if let Some((s, c)) = self.last_capture
            && seq > s
            && capture > c
        {
            // Learn the frame interval (a slow mean, robust to a missing frame).
            let d = (capture - c) / u32::try_from(seq - s).unwrap_or(1);
            self.frame_interval = Some(match self.frame_interval {
                Some(old) => (old * 7 + d) / 8,
                None => d,
            });
        }
        self.last_capture = Some((seq, capture));
    }

    fn refresh(&mut self, t: Time) {
        if self.offset.is_none()
            && let (Some(c0), Some(d_min)) = (self.first_capture, self.min_delay)
            && t >= c0 + d_min + self.cfg.target_delay
        {
            // Playback starts `target_delay` behind the live edge: the first
            // frame shows `target_delay` after it would have arrived on the
            // fastest path seen while buffering. (Waiting instead for the
            // frame captured `target_delay` after it to arrive starts late
            // whenever that frame was slower than the fastest: +2.5 ms of
            // G2G for the whole run behind a 50 ms path, measured.)
            self.offset = Some(d_min + self.cfg.target_delay);
        }
        let Some(mut offset) = self.offset else {
            return;
        };
        let (step, skipping) = match self.control_latency(t, offset) {
            Adjust::Keep => (Duration::ZERO, false),
            Adjust::CatchUp(step) => {
                offset -= step;
                (step, false)
            }
            Adjust::JumpTo(live) => {
                offset = live;
                (Duration::ZERO, true)
            }
        };
        self.offset = Some(offset);
        let mut show: Option<Arrived> = None;
        // Whether the timeline asked for a new picture at this refresh.
        let mut should_show = self.empty_slot.is_some_and(|slot| slot <= t);
        if should_show {
            self.empty_slot = None;
        }
        loop {
            let seq = self.next_seq;
            if let Some(f) = self.buffer.get(&seq).copied() {
                if f.header.capture + offset > t {
                    break;
                }
                should_show = true;
                self.buffer.remove(&seq);
                if self.cfg.late == LatePolicy::Wait
                    && !skipping
                    && t >= f.header.capture + offset + self.cfg.refresh + step
                {
                    // Resuming after rebuffering: the timeline restarts from
                    // this frame, so the frames behind it are not due yet and
                    // play in turn; the stall's delay stays.
                    offset = t - f.header.capture;
                    self.offset = Some(offset);
                }
                let decodable =
                    f.header.kind == FrameKind::I || self.last_decoded == Some(seq.wrapping_sub(1));
                self.consumed(seq, f.header.capture);
                if decodable {
                    self.last_decoded = Some(seq);
                    if show.replace(f).is_some() {
                        if skipping {
                            self.report.frames_skipped += 1; // jumped over to the live edge
                        } else {
                            self.report.dropped_late += 1; // superseded by a newer due frame
                        }
                    }
                } else {
                    self.report.dropped_undecodable += 1;
                }
                self.next_seq += 1;
                continue;
            }
            // `seq` is missing. The first frame after it that has arrived:
            let later = self.buffer.values().next().copied();
            let later_due = later.is_some_and(|f| f.header.capture + offset <= t);
            let overdue = self.estimated_due(seq, offset).is_some_and(|d| d <= t);
            // On an ordered transport it will never come; a low-delay player
            // gives it up once a later frame is due; a buffered one waits,
            // but not past a later I-frame that is due (on a lossy transport
            // the frame may never come, and a decoder restarts from an
            // I-frame anyway).
            let due_i_frame = self
                .buffer
                .values()
                .find(|f| f.header.kind == FrameKind::I && f.header.capture + offset <= t)
                .map(|f| f.header.seq);
            if self.cfg.late == LatePolicy::Wait
                && !self.cfg.ordered
                && let Some(i) = due_i_frame
            {
                // Straight to the I-frame: nothing between can be decoded.
                while self.next_seq < i {
                    match self.buffer.remove(&self.next_seq) {
                        Some(f) => {
                            self.consumed(f.header.seq, f.header.capture);
                            self.report.dropped_undecodable += 1;
                        }
                        None => self.report.given_up_missing += 1,
                    }
                    self.next_seq += 1;
                }
                should_show = true;
                continue;
            }
            let give_up = (self.cfg.ordered && later.is_some())
                || (self.cfg.late == LatePolicy::Skip && later_due);
            should_show |= overdue || later_due;
            if !give_up {
                break;
            }
            self.report.given_up_missing += 1;
            if let Some(slot) = self.estimated_due(seq, offset).filter(|d| *d > t) {
                self.empty_slot = Some(self.empty_slot.map_or(slot, |s| s.min(slot)));
            }
            self.next_seq += 1;
        }
        if !self.displayed.is_empty() {
            self.refreshes += 1;
        }
        match show {
            Some(f) => self.display(t, f),
            None => {
                // A frame was due and none decodable could be shown: a stall
                // begins (after the first frame), and lasts until one is shown.
                if should_show && !self.displayed.is_empty() && self.stall_start.is_none() {
                    self.stall_start = Some(t);
                }
                if let (Some(last), Some(interval)) = (self.displayed.last(), self.frame_interval)
                    && t - last.display > interval + self.cfg.refresh / 2
                {
                    self.stale_refreshes += 1;
                }
            }
        }
    }

    /// The live edge's delay: the lowest capture-to-arrival delay of the
    /// last [`LIVE_WINDOW`] of arrivals.
    fn track_live_edge(&mut self, now: Time, delay: Duration) {
        while self.live.back().is_some_and(|&(_, d)| d >= delay) {
            self.live.pop_back();
        }
        self.live.push_back((now, delay));
        while self
            .live
            .front()
            .is_some_and(|&(at, _)| at + LIVE_WINDOW < now)
        {
            self.live.pop_front();
        }
    }

    /// What the latency control does at refresh `t`, from the playhead's
    /// `offset` (capture → due), the live edge, and how much media the
    /// buffer holds beyond the playhead.
    ///
    /// It only acts on media that has arrived: catching up plays only what
    /// the buffer holds beyond `target_delay` (as hls.js speeds up only with
    /// buffer ahead), and a jump lands at the newest frame at the most. So a
    /// path that got slower (the live edge's delay estimate lags it) or a
    /// buffer that a stall emptied does not make the player stall again.
    fn control_latency(&mut self, t: Time, offset: Duration) -> Adjust {
        let (Some(&(_, edge)), Some(newest)) = (self.live.front(), self.newest_capture) else {
            return Adjust::Keep;
        };
        let target = edge + self.cfg.target_delay;
        let excess = offset.saturating_sub(target);
        // Media buffered beyond the playhead (the capture instant now due),
        // and what of it is more than the buffer the player wants.
        let ahead = newest.saturating_since(t - offset);
        let spare = ahead.saturating_sub(self.cfg.target_delay);
        // Only while playing (not stalled) and with the next frame at hand.
        let playing = !self.displayed.is_empty()
            && self.stall_start.is_none()
            && self.buffer.contains_key(&self.next_seq);
        match self.cfg.latency_control {
            LatencyControl::CatchUp { max_rate } if playing && !excess.min(spare).is_zero() => {
                // One refresh at `max_rate` plays `refresh × (rate − 1)` ahead.
                let step = self
                    .cfg
                    .refresh
                    .mul_f64(max_rate - 1.0)
                    .min(excess)
                    .min(spare);
                self.catch_up += step.div_f64(max_rate - 1.0);
                Adjust::CatchUp(step)
            }
            LatencyControl::SkipToLive { threshold }
                if playing && excess.min(spare) > threshold =>
            {
                self.report.skips += 1;
                Adjust::JumpTo(offset - excess.min(spare))
            }
            _ => Adjust::Keep,
        }
    }

    /// Every video frame's arrival so far, in arrival order (to replay the
    /// run through a player with another target, [`replay`]).
    pub fn arrivals(&self) -> &[(Time, FrameHeader)] {
        &self.arrivals
    }

    fn display(&mut self, t: Time, f: Arrived) {
        if let Some(start) = self.stall_start.take() {
            self.stalls.push((start, t));
        }
        self.freezes.frame(t);
        let d = Displayed {
            seq: f.header.seq,
            capture: f.header.capture,
            arrival: f.arrival,
            display: t,
        };
        self.displayed.push(d);
    }

    /// Whether frames arrive in order (TCP, one QUIC stream) or not (a QUIC
    /// stream per frame): out of order, a gap may still fill.
    pub fn set_ordered(&mut self, ordered: bool) {
        self.cfg.ordered = ordered;
    }

    /// The player's configuration (as `set_ordered` left it).
    pub fn config(&self) -> &PlayerConfig {
        &self.cfg
    }

    /// Capture → due, once playback has started.
    pub fn offset(&self) -> Option<Duration> {
        self.offset
    }

    /// Every displayed frame so far (the G2G time series).
    pub fn displayed(&self) -> &[Displayed] {
        &self.displayed
    }

    /// Stalls so far: (start, end).
    pub fn stalls(&self) -> &[(Time, Time)] {
        &self.stalls
    }

    /// Closes the run at `end` and returns the figures.
    pub fn finish(&mut self, end: Time) -> PlayerReport {
        self.handle_timeout(end);
        if let Some(start) = self.stall_start.take() {
            self.stalls.push((start, end));
        }
        let mut r = self.report.clone();
        r.frames_displayed = self.displayed.len() as u64;
        if let Some(g) = g2g_summary(&self.displayed, Time::ZERO) {
            r.g2g_p50_ms = g.p50_ms;
            r.g2g_p90_ms = g.p90_ms;
            r.g2g_p95_ms = g.p95_ms;
            r.g2g_p99_ms = g.p99_ms;
            r.g2g_p999_ms = g.p999_ms;
            r.g2g_max_ms = g.max_ms;
            r.g2g_mean_ms = g.mean_ms;
        }
        let first = self.displayed.first().map(|d| d.display);
        r.startup_delay_ms = first.map(|f| (f - self.start).as_secs_f64() * 1e3);
        let playback = first.map_or(Duration::ZERO, |f| end - f);
        let stalled: Duration = self.stalls.iter().map(|(a, b)| *b - *a).sum();
        r.stall_count = self.stalls.len() as u64;
        r.stall_total_ms = stalled.as_secs_f64() * 1e3;
        r.playback_s = playback.as_secs_f64();
        if !playback.is_zero() {
            r.stall_ratio = stalled.as_secs_f64() / playback.as_secs_f64();
            r.stalls_per_minute = self.stalls.len() as f64 / (playback.as_secs_f64() / 60.0);
        }
        r.freeze_count = self.freezes.count;
        r.freeze_total_ms = self.freezes.total.as_secs_f64() * 1e3;
        r.catch_up_ms = self.catch_up.as_secs_f64() * 1e3;
        if self.refreshes > 0 {
            r.stale_refresh_ratio = self.stale_refreshes as f64 / self.refreshes as f64;
        }
        r
    }
}

/// Replays a run's video arrivals through a player with `cfg` that started
/// at `start`: what that player would have shown. The player is sans-IO,
/// so this is exact and cheap.
pub fn replay(
    cfg: PlayerConfig,
    start: Time,
    arrivals: &[(Time, FrameHeader)],
    end: Time,
) -> (PlayerReport, Vec<Displayed>) {
    let mut p = Player::new(cfg, start);
    for &(at, h) in arrivals.iter().filter(|(at, _)| *at <= end) {
        p.on_frame(at, h);
    }
    let r = p.finish(end);
    (r, p.displayed)
}

/// Glass-to-glass percentiles over a set of displayed frames.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct G2gSummary {
    /// Frames captured at or after this instant (ms since the start) count.
    pub from_ms: f64,
    pub frames: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// G2G over the frames captured at or after `from` (the steady state, after
/// a warm-up); `None` when there are none.
pub fn g2g_summary(displayed: &[Displayed], from: Time) -> Option<G2gSummary> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok()?;
    for d in displayed.iter().filter(|d| d.capture >= from) {
        let _ = h.record((d.g2g().as_micros() as u64).max(1));
    }
    if h.is_empty() {
        return None;
    }
    let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
    Some(G2gSummary {
        from_ms: from.as_secs_f64() * 1e3,
        frames: h.len(),
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        max_ms: h.max() as f64 / 1000.0,
        mean_ms: h.mean() / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPS: f64 = 30.0;
    const GOP: u64 = 30;

    fn header(seq: u64) -> FrameHeader {
        FrameHeader {
            kind: if seq.is_multiple_of(GOP) {
                FrameKind::I
            } else {
                FrameKind::P
            },
            seq,
            gop: (seq / GOP) as u32,
            capture: Time::from_secs_f64(seq as f64 / FPS),
            size: 1000,
        }
    }

    fn cfg(late: LatePolicy, ordered: bool) -> PlayerConfig {
        PlayerConfig {
            target_delay: Duration::from_millis(100),
            refresh: Duration::from_secs_f64(1.0 / 60.0),
            late,
            ordered,
            latency_control: LatencyControl::None,
        }
    }

    /// Feeds frames `seqs` with arrival = capture + 10 ms, or as `arrival`
    /// overrides say, in arrival order; `None` in the override: never arrives.
    fn play(
        cfg: PlayerConfig,
        seqs: std::ops::Range<u64>,
        arrival: impl Fn(u64) -> Option<Time>,
        end_s: f64,
    ) -> (Player, PlayerReport) {
        let mut frames: Vec<(Time, FrameHeader)> = seqs
            .filter_map(|k| arrival(k).map(|a| (a, header(k))))
            .collect();
        frames.sort_by_key(|(a, h)| (*a, h.seq));
        let mut p = Player::new(cfg, Time::ZERO);
        for (a, h) in frames {
            p.on_frame(a, h);
        }
        let r = p.finish(Time::from_secs_f64(end_s));
        (p, r)
    }

    fn on_time(k: u64) -> Option<Time> {
        Some(header(k).capture + Duration::from_millis(10))
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn a_slow_start_does_not_move_the_playhead() {
        // Slow start behind a 50 ms path: the first frames arrive late
        // (186, 156, 129, 100 ms), then steadily at 82 ± 1 ms. The playhead
        // sits at the fastest delay seen + target, for every frame.
        let early = [186.0, 156.0, 129.0, 100.0];
        let arrival = |k: u64| {
            let d = early
                .get(k as usize)
                .copied()
                .unwrap_or(if k.is_multiple_of(2) { 81.0 } else { 83.0 });
            Some(header(k).capture + Duration::from_secs_f64(d / 1e3))
        };
        let mut c = cfg(LatePolicy::Wait, true);
        c.refresh = Duration::from_millis(1);
        c.target_delay = Duration::from_millis(500);
        let (_, r) = play(c, 0..300, arrival, 10.56);
        // Due 81 + 500 = 581 ms after capture; the 1 ms refresh adds < 1 ms.
        // (Starting when the frame captured 500 ms after the first arrived
        // gave 583: that frame came at 83 ms, and the wait policy then holds
        // the late start for the whole run.)
        assert!(
            close(r.g2g_p50_ms, 581.5, 1.0) && close(r.g2g_max_ms, 581.5, 1.0),
            "{r:?}"
        );
        assert_eq!(r.stall_count, 0);
        assert_eq!(r.frames_displayed, 300);
    }

    /// A start-up burst: the first second's frames arrive 500 ms late,
    /// draining to the path's 50 ms (TCP's slow start on a fresh connection
    /// behind a long path, as measured on the link), then 50 ms steadily.
    fn burst_then_steady(k: u64) -> Option<Time> {
        let c = header(k).capture;
        let queued = Duration::from_millis(500).saturating_sub(c.saturating_since(Time::ZERO) / 2);
        Some(c + Duration::from_millis(50) + queued)
    }

    fn with_control(control: LatencyControl) -> PlayerConfig {
        let mut c = cfg(LatePolicy::Wait, true);
        c.refresh = Duration::from_millis(1);
        c.target_delay = Duration::from_millis(300);
        c.latency_control = control;
        c
    }

    fn frames_after(p: &Player, from_s: f64) -> Vec<f64> {
        p.displayed()
            .iter()
            .filter(|d| d.capture >= Time::from_secs_f64(from_s))
            .map(|d| d.g2g().as_secs_f64() * 1e3)
            .collect()
    }

    #[test]
    fn without_control_a_start_up_burst_stays_for_the_whole_run() {
        let (p, r) = play(
            with_control(LatencyControl::None),
            0..600,
            burst_then_steady,
            20.5,
        );
        // The playhead anchored on the burst: ~500 ms more than the path's
        // 50 + 300 ms, for good.
        let late = frames_after(&p, 15.0);
        assert!(late.iter().all(|&g| g > 700.0), "{:?}", &late[..3]);
        assert_eq!(r.catch_up_ms, 0.0);
    }

    #[test]
    fn catch_up_plays_faster_until_back_at_the_live_edge() {
        let rate = 1.2;
        let (p, r) = play(
            with_control(LatencyControl::CatchUp { max_rate: rate }),
            0..600,
            burst_then_steady,
            20.32,
        );
        // Back at the path's delay + the buffer (+ < 1 ms of refresh).
        let late = frames_after(&p, 10.0);
        assert!(
            late.iter().all(|&g| (350.0..=351.0).contains(&g)),
            "{:?}",
            &late[..3]
        );
        // Playback started 699 ms after capture (buffering saw the burst
        // draining): ~350 ms of excess at 0.2 s per second, ~1.75 s of
        // catching up.
        assert!((1600.0..1900.0).contains(&r.catch_up_ms), "{r:?}");
        // Faster, never out of order, and nothing stalls or is dropped.
        assert_eq!(r.stall_count, 0, "{r:?}");
        assert_eq!(r.frames_displayed, 600);
        let shown = p.displayed();
        assert!(shown.windows(2).all(|w| w[0].seq < w[1].seq));
        // Never faster than max_rate: display gaps ≥ frame interval / rate,
        // less a refresh.
        let min_gap = shown
            .windows(2)
            .map(|w| (w[1].display - w[0].display).as_secs_f64())
            .fold(f64::MAX, f64::min);
        assert!(min_gap >= 1.0 / FPS / rate - 0.001, "{min_gap}");
    }

    #[test]
    fn skip_to_live_jumps_to_the_newest_frame() {
        let threshold = Duration::from_millis(100);
        let (p, r) = play(
            with_control(LatencyControl::SkipToLive { threshold }),
            0..600,
            burst_then_steady,
            20.34,
        );
        // Within the threshold of the live edge (it jumps only when further).
        let late = frames_after(&p, 5.0);
        assert!(
            late.iter().all(|&g| (350.0..451.0).contains(&g)),
            "{:?}",
            &late[..3]
        );
        assert!(r.skips >= 1 && r.frames_skipped >= 1, "{r:?}");
        // Skipped frames were decoded, not shown: nothing undecodable.
        assert_eq!(r.dropped_undecodable, 0, "{r:?}");
        assert_eq!(r.frames_displayed + r.frames_skipped, 600, "{r:?}");
        assert_eq!(r.stall_count, 0, "{r:?}");
    }

    #[test]
    fn stale_refreshes_count_the_share_of_time_a_picture_is_overdue() {
        // 60 Hz display, 30 fps: a smooth stream shows nothing stale.
        let (_, smooth) = play(cfg(LatePolicy::Wait, true), 0..300, on_time, 10.08);
        assert_eq!(smooth.stale_refresh_ratio, 0.0, "{smooth:?}");
        // A frame 1 s late (TCP): a 1 s stall in ~10 s of playback.
        let (_, r) = play(
            cfg(LatePolicy::Wait, true),
            0..300,
            |k| {
                on_time(k).map(|t| {
                    if k == 100 {
                        t + Duration::from_secs(1)
                    } else {
                        t
                    }
                })
            },
            11.08,
        );
        let stall_share = r.stall_total_ms / (r.playback_s * 1e3);
        assert!(
            (r.stale_refresh_ratio - stall_share).abs() < 0.01,
            "stale {} vs stalled {stall_share}",
            r.stale_refresh_ratio
        );
    }

    #[test]
    fn out_of_order_p_frames_before_the_first_i_frame_wait_for_it() {
        // A stream per frame: the large I-frame completes after the small
        // P-frames behind it.
        let arrival = |k: u64| {
            let extra = if k == 0 { 40.0 } else { 0.0 };
            Some(header(k).capture + Duration::from_secs_f64((10.0 + extra) / 1e3))
        };
        let (_, r) = play(cfg(LatePolicy::Wait, false), 0..300, arrival, 10.1);
        assert_eq!(r.dropped_undecodable, 0, "{r:?}");
        assert_eq!(r.frames_displayed, 300, "{r:?}");
        assert_eq!(r.stall_count, 0, "{r:?}");
    }

    #[test]
    fn startup_and_steady_latency() {
        let (p, r) = play(cfg(LatePolicy::Wait, true), 0..300, on_time, 10.1);
        // Offset = 10 ms network + 100 ms target; shown at the next 60 Hz
        // refresh: 116.67 ms after capture, every frame.
        assert!(
            close(r.g2g_p50_ms, 116.67, 0.2) && close(r.g2g_max_ms, 116.67, 0.2),
            "{r:?}"
        );
        assert!(close(r.startup_delay_ms.unwrap(), 116.67, 0.01), "{r:?}");
        assert_eq!(r.frames_displayed, 300);
        assert_eq!(
            (
                r.stall_count,
                r.freeze_count,
                r.dropped_late,
                r.dropped_undecodable
            ),
            (0, 0, 0, 0)
        );
        assert!(p.displayed().windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    }

    #[test]
    fn a_late_tcp_frame_stalls_and_the_delay_stays() {
        // Frame 40 is held 500 ms; everything behind it waits for it (TCP).
        let late_until = header(40).capture + Duration::from_millis(510);
        let arrival = |k: u64| {
            let a = on_time(k).unwrap();
            Some(if k >= 40 { a.max(late_until) } else { a })
        };
        let (p, r) = play(cfg(LatePolicy::Wait, true), 0..300, arrival, 10.5);
        assert_eq!(r.stall_count, 1, "{r:?}");
        // Due at 1443.3 ms → stall from the 1450 ms refresh; frame 40 arrives
        // at 1843.3 ms → shown at 1850 ms: 400 ms of stall.
        let (start, end) = p.stalls()[0];
        assert!(
            close(start.as_secs_f64() * 1e3, 1450.0, 0.01)
                && close(end.as_secs_f64() * 1e3, 1850.0, 0.01),
            "{start} {end}"
        );
        assert!(close(r.stall_total_ms, 400.0, 0.01));
        // The added delay stays: frames after 40 are 516.7 ms behind capture.
        let last = p.displayed().last().unwrap();
        assert!(
            close(last.g2g().as_secs_f64() * 1e3, 516.67, 0.01),
            "{last:?}"
        );
        assert_eq!(r.freeze_count, 1);
        assert_eq!(r.frames_displayed, 300);
        assert!(close(r.stall_ratio, 0.4 / (10.5 - 0.11667), 1e-4), "{r:?}");
    }

    #[test]
    fn a_lost_p_frame_breaks_the_chain_until_the_next_i_frame() {
        let (p, r) = play(
            cfg(LatePolicy::Skip, false),
            0..300,
            |k| if k == 10 { None } else { on_time(k) },
            10.1,
        );
        assert_eq!(r.given_up_missing, 1);
        assert_eq!(r.dropped_undecodable, 19); // frames 11..=29
        assert_eq!(r.frames_displayed, 300 - 20);
        assert_eq!(r.stall_count, 1);
        // From frame 10's refresh to frame 30's: 20 frames of 33.3 ms.
        assert!(close(r.stall_total_ms, 666.67, 0.05), "{r:?}");
        // Low-delay playback keeps its latency.
        assert!(close(r.g2g_max_ms, 116.67, 0.2));
        assert!(p.displayed().iter().all(|d| d.seq < 10 || d.seq >= 30));
    }

    #[test]
    fn a_frame_after_its_slot_is_dropped_late() {
        let arrival = |k: u64| {
            on_time(k).map(|a| {
                if k == 10 {
                    a + Duration::from_millis(300)
                } else {
                    a
                }
            })
        };
        let (_, r) = play(cfg(LatePolicy::Skip, false), 0..300, arrival, 10.1);
        assert_eq!(
            (r.given_up_missing, r.dropped_late, r.dropped_undecodable),
            (1, 1, 19),
            "{r:?}"
        );
    }

    #[test]
    fn a_gap_on_an_ordered_transport_is_a_loss_not_a_wait() {
        // A gateway lost frame 10 upstream; TCP delivers 11 next: waiting for
        // 10 would stall forever.
        let (_, r) = play(
            cfg(LatePolicy::Wait, true),
            0..300,
            |k| if k == 10 { None } else { on_time(k) },
            10.1,
        );
        assert_eq!(
            (r.given_up_missing, r.dropped_undecodable),
            (1, 19),
            "{r:?}"
        );
        assert_eq!(r.stall_count, 1);
        assert!(close(r.stall_total_ms, 666.67, 0.05), "{r:?}");
    }

    #[test]
    fn a_frame_lost_for_good_is_waited_for_until_the_next_i_frame_is_due() {
        // Unordered and lossy (the UDP protocol gave frame 10 up): a
        // buffered player stalls at 10 and resumes at the I-frame 30.
        let (p, r) = play(
            cfg(LatePolicy::Wait, false),
            0..300,
            |k| if k == 10 { None } else { on_time(k) },
            10.1,
        );
        assert_eq!((r.given_up_missing, r.stall_count), (1, 1), "{r:?}");
        assert!(close(r.stall_total_ms, 666.67, 0.05), "{r:?}");
        assert_eq!(r.frames_displayed, 300 - 20);
        // It resumed on time: the latency did not grow.
        assert!(close(r.g2g_max_ms, 116.67, 0.2), "{r:?}");
        assert!(p.displayed().iter().any(|d| d.seq == 30));
    }

    #[test]
    fn joining_mid_gop_waits_for_an_i_frame() {
        let (p, r) = play(cfg(LatePolicy::Skip, false), 5..300, on_time, 10.1);
        assert_eq!(r.dropped_undecodable, 25); // 5..=29
        assert_eq!(p.displayed()[0].seq, 30);
        // Frame 30 captured at 1000 ms, shown at 1116.67 ms after the start.
        assert!(close(r.startup_delay_ms.unwrap(), 1116.67, 0.01), "{r:?}");
        assert_eq!(r.stall_count, 0);
    }

    #[test]
    fn the_freeze_rule_follows_the_frame_rate() {
        // 5 frames per second: 200 ms gaps are the normal pace, not freezes.
        let slow = |k: u64| Some(Time::from_millis(k * 200 + 10));
        let mut p = Player::new(cfg(LatePolicy::Skip, false), Time::ZERO);
        for k in 0..50u64 {
            let h = FrameHeader {
                capture: Time::from_millis(k * 200),
                kind: FrameKind::I,
                ..header(k)
            };
            p.on_frame(slow(k).unwrap(), h);
        }
        let r = p.finish(Time::from_secs_f64(10.0));
        assert_eq!(r.frames_displayed, 50);
        assert_eq!((r.freeze_count, r.stall_count), (0, 0), "{r:?}");
    }

    #[test]
    fn a_stream_that_stops_is_a_stall_until_the_end() {
        let (p, r) = play(cfg(LatePolicy::Wait, true), 0..150, on_time, 10.0);
        assert_eq!(r.stall_count, 1);
        // Frame 150 would have been due at 5.0 s + 110 ms: the 5116.7 ms refresh.
        let (start, end) = p.stalls()[0];
        assert!(
            close(start.as_secs_f64(), 5.11667, 1e-4) && end == Time::from_millis(10_000),
            "{start} {end}"
        );
    }

    #[test]
    fn audio_is_counted_not_displayed() {
        let mut p = Player::new(cfg(LatePolicy::Skip, false), Time::ZERO);
        p.on_frame(
            Time::from_millis(5),
            FrameHeader {
                kind: FrameKind::Audio,
                ..header(0)
            },
        );
        let r = p.finish(Time::from_millis(1000));
        assert_eq!(
            (
                r.audio_frames_received,
                r.frames_received,
                r.frames_displayed
            ),
            (1, 0, 0)
        );
        assert_eq!(r.startup_delay_ms, None);
    }
}
