//! The relay's HLS origin for its stream: a packager fed from the hub (a
//! tap, not a player) on its own task, and what the HTTP server answers
//! from it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use netem::time::Clock;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ladder::Transcoder;
use super::packager::{Packager, PackagerConfig, Progress};
use crate::relay::{Hub, Poisoned};

/// One stream's HLS segments and playlist, shared with the server.
#[derive(Debug)]
pub struct Origin {
    packager: Mutex<Packager>,
    /// Parts and segments finished so far: requests that wait for one
    /// (blocking playlist reloads, preload hints) watch it.
    changes: watch::Sender<u64>,
}

/// Why a blocking playlist request is not answered with the playlist.
#[derive(Debug, PartialEq, Eq)]
pub enum Blocked {
    /// It asks too far ahead (400).
    TooFarAhead,
    /// What it waits for did not come within three target durations (503).
    TimedOut,
}

impl Origin {
    /// Packages `key`'s stream from now until `stop` changes. With the
    /// run's `clock`, a segment's EXT-X-PROGRAM-DATE-TIME is its first
    /// frame's capture instant (Glass's frames carry it), so a player that
    /// reads PDT measures glass to glass; otherwise (foreign frames, `glass
    /// serve`) it is when that frame reached the packager.
    pub fn start(
        hub: &Hub,
        key: &str,
        cfg: PackagerConfig,
        stop: watch::Receiver<bool>,
        clock: Option<Clock>,
    ) -> Result<(Arc<Origin>, JoinHandle<()>), Poisoned> {
        Origin::start_rendition(hub, key, cfg, stop, clock, None)
    }

    /// [`Origin::start`] of a rendition: the stream through `transcoder`
    /// (the ladder's model) before the packager.
    pub fn start_rendition(
        hub: &Hub,
        key: &str,
        cfg: PackagerConfig,
        mut stop: watch::Receiver<bool>,
        clock: Option<Clock>,
        mut transcoder: Option<Transcoder>,
    ) -> Result<(Arc<Origin>, JoinHandle<()>), Poisoned> {
        let sub = hub.tap(key)?;
        let origin = Arc::new(Origin {
            packager: Mutex::new(Packager::new(cfg)),
            changes: watch::Sender::new(0),
        });
        let o = origin.clone();
        let task = tokio::spawn(async move {
            let mut rx = sub.rx;
            for m in sub.catch_up {
                match &mut transcoder {
                    Some(t) => t.push(m, Instant::now()),
                    None => o.push(&m, clock),
                }
            }
            loop {
                // What the transcoder has done by now, then the next message
                // or when it will have done more.
                let wake = match &mut transcoder {
                    Some(t) => {
                        while let Some(m) = t.poll(Instant::now()) {
                            o.push(&m, clock);
                        }
                        t.poll_timeout()
                    }
                    None => None,
                };
                let sleep = async {
                    match wake {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => match &mut transcoder {
                            Some(t) => t.push(m, Instant::now()),
                            None => o.push(&m, clock),
                        },
                        None => break,
                    },
                    _ = sleep => {}
                    _ = stop.changed() => break,
                }
            }
        });
        Ok((origin, task))
    }

    fn push(&self, m: &crate::relay::Media, clock: Option<Clock>) {
        let now = SystemTime::now();
        let date = clock
            .zip(m.as_av())
            .and_then(|(clock, (video, body, _))| {
                let capture = crate::media::source::unpack(body, video)?.capture;
                let age = clock.time(Instant::now()).saturating_since(capture);
                now.checked_sub(age)
            })
            .unwrap_or(now);
        let changed = self.packager.lock().is_ok_and(|mut p| p.push(m, date));
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    fn progress(&self) -> Progress {
        self.packager
            .lock()
            .map(|p| p.progress())
            .unwrap_or_default()
    }

    /// How long a request may wait for a part or segment: three target
    /// durations (the LL-HLS specification's limit for blocking requests).
    pub fn hold_limit(&self) -> Duration {
        self.packager
            .lock()
            .map_or(Duration::from_secs(1), |p| p.config().target * 3)
    }

    /// The segments' container.
    pub fn format(&self) -> super::packager::SegmentFormat {
        self.packager
            .lock()
            .map(|p| p.config().format)
            .unwrap_or_default()
    }

    /// The fMP4 init segment, once there is one.
    pub fn init(&self) -> Option<Bytes> {
        self.packager.lock().ok()?.init().cloned()
    }

    /// Whether parts are on (the playlist is LL-HLS).
    pub fn low_latency(&self) -> bool {
        self.packager
            .lock()
            .is_ok_and(|p| p.config().part.is_some())
    }

    /// Waits up to `wait` until `done` holds of the stream's progress.
    async fn wait_until(&self, wait: Duration, done: impl Fn(&Progress) -> bool) -> bool {
        let mut rx = self.changes.subscribe();
        let reached = tokio::time::timeout(wait, async {
            loop {
                if done(&self.progress()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The packager is gone: nothing more will come.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        reached.is_ok()
    }

    /// The live media playlist, once a segment is done (`uri_query` on
    /// every URI it lists).
    pub fn playlist(&self, uri_query: Option<&str>) -> Option<String> {
        self.packager.lock().ok()?.playlist(uri_query)
    }

    /// The playlist, waiting up to `wait` for the stream's first segment:
    /// a player that asks before the stream has begun is answered when it
    /// has (ffmpeg's HLS reader gives up on a first 404; hls.js retries).
    pub async fn first_playlist(&self, wait: Duration, uri_query: Option<&str>) -> Option<String> {
        self.wait_until(wait, |p| p.segment.is_some()).await;
        self.playlist(uri_query)
    }

    /// A blocking playlist reload (LL-HLS): the playlist once it holds
    /// segment `msn` (and part `part` of it) or anything later; before the
    /// stream has begun it waits as long as a first playlist request.
    pub async fn blocking_playlist(
        &self,
        msn: u64,
        part: Option<u64>,
        first_wait: Duration,
        uri_query: Option<&str>,
    ) -> Result<String, Blocked> {
        let now = self.progress();
        if now.too_far_ahead(msn, part) {
            return Err(Blocked::TooFarAhead);
        }
        let limit = if now == Progress::default() {
            first_wait.max(self.hold_limit())
        } else {
            self.hold_limit()
        };
        if !self.wait_until(limit, |p| p.reached(msn, part)).await {
            return Err(Blocked::TimedOut);
        }
        self.playlist(uri_query).ok_or(Blocked::TimedOut)
    }

    /// Segment `seq`'s bytes, while it is kept.
    pub fn segment(&self, seq: u64) -> Option<Bytes> {
        Some(self.packager.lock().ok()?.segment(seq)?.bytes.clone())
    }

    /// Part `index` of segment `seq`; the part being written (the preload
    /// hint) is answered when it is done, within the hold limit.
    pub async fn part(&self, seq: u64, index: usize) -> Option<Bytes> {
        let get = || -> Option<Bytes> {
            Some(self.packager.lock().ok()?.part(seq, index)?.bytes.clone())
        };
        if let Some(b) = get() {
            return Some(b);
        }
        if self.progress().open_part != Some((seq, index)) {
            return None;
        }
        // The part being written always becomes a part: it ends at its
        // target or at its segment's end.
        self.wait_until(self.hold_limit(), |p| p.open_part != Some((seq, index)))
            .await;
        get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{Frame, FrameHeader, FrameKind};
    use crate::media::source::{sequence_header, video_tag};
    use crate::relay::Media;

    /// With the run's clock, a segment's date is its first frame's capture
    /// (300 ms before it reached the packager here), not its arrival.
    #[tokio::test]
    async fn segments_are_dated_by_their_first_frames_capture() {
        let clock = Clock::new(Instant::now() - Duration::from_secs(10));
        let hub = Hub::new("k");
        let (_stop_tx, stop) = watch::channel(false);
        let cfg = PackagerConfig {
            target: Duration::from_millis(500),
            window: 3,
            part: None,
            format: Default::default(),
        };
        let (origin, _task) = Origin::start(&hub, "k", cfg, stop, Some(clock)).unwrap();
        hub.publish("k", Media::Video(sequence_header(), 0))
            .unwrap();
        let captured = clock.time(Instant::now()) - Duration::from_millis(300);
        for (seq, ts) in [(0u64, 0u32), (1, 600)] {
            let frame = Frame::new(FrameHeader {
                kind: FrameKind::I,
                seq,
                gop: seq as u32,
                capture: captured + Duration::from_millis(ts.into()),
                size: 1000,
            });
            hub.publish("k", Media::Video(video_tag(&frame), ts))
                .unwrap();
        }
        let done = origin
            .wait_until(Duration::from_secs(2), |p| p.segment.is_some())
            .await;
        assert!(done);
        let date = origin.packager.lock().unwrap().segment(0).unwrap().date;
        let expected = SystemTime::now() - Duration::from_millis(300);
        let off = match date.duration_since(expected) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(off < Duration::from_millis(100), "{off:?} off");
    }
}
