//! What a publisher client measured, whatever its protocol: frames and
//! bytes sent, the session's set-up step by step, ABR's decisions; and the
//! frame pacing every publisher shares.

use std::time::Duration;

use netem::Time;
use netem::adapters::tcpinfo::TcpInfo;
use netem::time::Clock;
use serde::Serialize;

use crate::media::abr::AbrSample;
use crate::protocol::rtmp::quic::QuicStats;

/// What the publisher did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublisherStats {
    pub video_frames_sent: u64,
    pub audio_frames_sent: u64,
    pub bytes_sent: u64,
    /// When the camera started (its first capture instant).
    pub started_at: Option<Time>,
    /// When the session could carry media (publish accepted, session up).
    pub ready_at: Option<Time>,
    /// The session's set-up: from dialling the relay until it could carry
    /// media (`ready_at`).
    pub connect_ms: Option<f64>,
    /// The set-up step by step, in order (transport handshake, protocol
    /// handshake, publish accepted…), each step's own duration.
    pub connect_steps: Vec<ConnectStep>,
    /// (sequence number, instant handed to the transport) of each video
    /// frame sent: the per-hop breakdown's first step.
    #[serde(skip)]
    pub sent: Vec<(u64, Time)>,
    /// TCP_INFO of the publisher's socket at the end (first-mile retransmits).
    pub tcp: TcpInfo,
    /// Bits sent per second of capture.
    pub per_second_bits: Vec<u64>,
    /// Capture instants of the video frames sent.
    #[serde(skip)]
    pub video_captures: Vec<Time>,
    /// "tcp", "quic/stream" or "quic/frames"; for a QUIC client that fell
    /// back, "tcp" (the fallback is in `RunResult::transports`).
    pub transport: String,
    /// QUIC's statistics of the publisher's connection.
    pub quic: Option<QuicStats>,
    /// What ABR did, when on.
    pub abr: Option<AbrReport>,
}

/// One step of a session's set-up.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectStep {
    pub step: &'static str,
    pub ms: f64,
}

/// Times a session's set-up from `begin`, one step at a time.
pub struct ConnectSteps {
    clock: Clock,
    begin: Time,
    last: Time,
    steps: Vec<ConnectStep>,
}

impl ConnectSteps {
    pub fn new(clock: Clock, begin: Time) -> ConnectSteps {
        ConnectSteps {
            clock,
            begin,
            last: begin,
            steps: Vec::new(),
        }
    }

    /// The clock the steps are timed on.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The step `step` has just finished.
    pub fn done(&mut self, step: &'static str) -> Time {
        self.done_at(step, self.clock.time(std::time::Instant::now()))
    }

    /// The step `step` finished at `now` (virtual time gives its own).
    pub fn done_at(&mut self, step: &'static str, now: Time) -> Time {
        self.steps.push(ConnectStep {
            step,
            ms: now.saturating_since(self.last).as_secs_f64() * 1e3,
        });
        self.last = now;
        now
    }

    /// Into the publisher's statistics: the steps, the whole set-up, and
    /// the instant it ended.
    pub fn record(self, stats: &mut PublisherStats) {
        stats.ready_at = Some(self.last);
        stats.connect_ms = Some(self.last.saturating_since(self.begin).as_secs_f64() * 1e3);
        stats.connect_steps = self.steps;
    }
}

/// ABR's decisions: backlog and target every sample, and the switch count.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AbrReport {
    pub switches: u32,
    pub samples: Vec<AbrSample>,
}

impl PublisherStats {
    /// A video frame was handed to the transport just now.
    pub fn note_sent(&mut self, seq: Option<u64>, clock: Clock) {
        self.note_sent_at(seq, clock.time(std::time::Instant::now()));
    }

    /// [`PublisherStats::note_sent`] at `now`.
    pub fn note_sent_at(&mut self, seq: Option<u64>, now: Time) {
        if let Some(seq) = seq {
            self.sent.push((seq, now));
        }
    }

    /// A message of the source handed to the transport: a video frame
    /// (its capture instant kept) or an audio frame, and its bits in the
    /// second of capture since the camera's `start`.
    pub fn count(&mut self, m: &crate::media::source::Message, start: Time) {
        if m.video {
            self.video_frames_sent += 1;
            self.video_captures.push(m.capture);
        } else {
            self.audio_frames_sent += 1;
        }
        self.count_bits(m.capture - start, m.data.len() as u64);
    }

    pub fn count_bits(&mut self, since_start: Duration, bytes: u64) {
        self.bytes_sent += bytes;
        let second = since_start.as_secs() as usize;
        if self.per_second_bits.len() <= second {
            self.per_second_bits.resize(second + 1, 0);
        }
        self.per_second_bits[second] += bytes * 8;
    }
}

/// How often ABR looks at the backlog.
pub const ABR_SAMPLE: Duration = Duration::from_millis(200);

/// Sleeps until `deadline` within a few µs: tokio's timer wakes up to ~2 ms
/// late (1 ms ticks), which would add to every frame's latency; so sleep
/// until shortly before, then spin the rest (at most ~1.5 ms per frame).
pub async fn precise_sleep_until(deadline: std::time::Instant) {
    let early = deadline
        .checked_sub(Duration::from_micros(1500))
        .unwrap_or(deadline);
    if early > std::time::Instant::now() {
        tokio::time::sleep_until(early.into()).await;
    }
    netem::adapters::timer::spin_until(deadline, || false);
}
