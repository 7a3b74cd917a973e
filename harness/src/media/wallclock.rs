//! Timing frames Glass did not encode (ffmpeg publishing, a replayed FLV
//! file): they carry no Glass frame header, so their capture instant travels
//! in the RTMP timestamp, as the wall clock in milliseconds modulo 2³¹.
//!
//! ffmpeg does this with `-use_wallclock_as_timestamps 1 -copyts`: each
//! frame's timestamp is the wall clock when its input produced it, and the
//! FLV muxer keeps the low 31 bits of the milliseconds. The player takes the
//! instant with those low bits nearest to its own clock: exact while the
//! true latency is under 2³¹ ms (24 days). The resolution is 1 ms, so such a
//! G2G figure is good to ±0.5 ms; results label it as "rtmp-timestamp".

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use netem::Time;
use netem::time::Clock;

use super::frame::{FrameHeader, FrameKind};

/// Timestamps wrap at 2³¹ ms: FLV's extension byte is masked to 7 bits.
const WRAP_MS: i64 = 1 << 31;

/// The mapping between scenario time and the wall clock.
#[derive(Copy, Clone, Debug)]
pub struct WallClock {
    /// Wall clock at scenario time zero, in ms since the Unix epoch.
    origin_unix_ms: f64,
}

impl WallClock {
    /// Pairs `clock`'s origin with the system's wall clock, now.
    pub fn new(clock: Clock) -> WallClock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let since_origin = clock.time(Instant::now()).as_secs_f64() * 1e3;
        WallClock::from_origin_ms(unix_ms - since_origin)
    }

    pub fn from_origin_ms(origin_unix_ms: f64) -> WallClock {
        WallClock { origin_unix_ms }
    }

    /// The RTMP timestamp of scenario instant `t`.
    pub fn timestamp(&self, t: Time) -> u32 {
        let ms = (self.origin_unix_ms + t.as_secs_f64() * 1e3).round() as i64;
        ms.rem_euclid(WRAP_MS) as u32
    }

    /// The scenario instant a timestamp stands for: the one with those low
    /// 31 bits nearest to `now` (frames arrive after their capture, a
    /// little or a lot, never 12 days).
    pub fn capture(&self, ts: u32, now: Time) -> Time {
        let now_ms = (self.origin_unix_ms + now.as_secs_f64() * 1e3).round() as i64;
        let ts = i64::from(ts) % WRAP_MS;
        let mut ms = now_ms - now_ms.rem_euclid(WRAP_MS) + ts;
        if ms - now_ms > WRAP_MS / 2 {
            ms -= WRAP_MS;
        } else if now_ms - ms > WRAP_MS / 2 {
            ms += WRAP_MS;
        }
        Time::from_secs_f64((ms as f64 - self.origin_unix_ms) / 1e3)
    }
}

/// Frame headers for a foreign stream, built as its tags arrive (in order).
#[derive(Clone, Debug)]
pub struct ForeignFrames {
    wall: WallClock,
    video_seq: u64,
    audio_seq: u64,
    gop: Option<u32>,
}

impl ForeignFrames {
    pub fn new(wall: WallClock) -> ForeignFrames {
        ForeignFrames {
            wall,
            video_seq: 0,
            audio_seq: 0,
            gop: None,
        }
    }

    /// The header of an FLV-style tag (AVC NALU or AAC raw) that carries no
    /// Glass header; `None` for configuration and end-of-sequence tags.
    pub fn header(&mut self, data: &[u8], video: bool, ts: u32, now: Time) -> Option<FrameHeader> {
        if !super::tag::is_frame(data) {
            return None;
        }
        let capture = self.wall.capture(ts, now);
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if video {
            let key = super::tag::is_key_frame(data);
            if key {
                self.gop = Some(self.gop.map_or(0, |g| g + 1));
            }
            let seq = self.video_seq;
            self.video_seq += 1;
            Some(FrameHeader {
                kind: if key { FrameKind::I } else { FrameKind::P },
                seq,
                // Frames before the first key frame belong to no GOP the
                // player can decode; give them GOP 0's predecessor's id.
                gop: self.gop.unwrap_or(u32::MAX),
                capture,
                size,
            })
        } else {
            let seq = self.audio_seq;
            self.audio_seq += 1;
            Some(FrameHeader {
                kind: FrameKind::Audio,
                seq,
                gop: 0,
                capture,
                size,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_across_the_wrap() {
        // An origin just before a multiple of 2^31 ms: timestamps wrap mid-run.
        let origin = 836.0 * WRAP_MS as f64 - 1500.0;
        let w = WallClock::from_origin_ms(origin);
        for capture_ms in [0u64, 1000, 1499, 1500, 1501, 60_000] {
            let t = Time::from_millis(capture_ms);
            let ts = w.timestamp(t);
            for latency_ms in [0u64, 1, 250, 5000] {
                let now = Time::from_millis(capture_ms + latency_ms);
                assert_eq!(
                    w.capture(ts, now),
                    t,
                    "capture {capture_ms} latency {latency_ms}"
                );
            }
        }
        assert_eq!(w.timestamp(Time::from_millis(1500)), 0);
    }

    #[test]
    fn ffmpeg_style_timestamp_maps_to_its_wall_clock_instant() {
        // Measured: ffmpeg wrote 2082991953 for a frame at Unix ms 1795231838033.
        let w = WallClock::from_origin_ms(1_795_231_837_926.0);
        let at = w.capture(2_082_991_953, Time::from_millis(200));
        assert_eq!(at, Time::from_millis(107));
    }

    #[test]
    fn foreign_headers_follow_key_frames() {
        let w = WallClock::from_origin_ms(0.0);
        let mut f = ForeignFrames::new(w);
        let now = Time::from_millis(100);
        assert_eq!(
            f.header(&[0x17, 0, 0, 0, 0], true, 0, now),
            None,
            "sequence header"
        );
        let p0 = f.header(&[0x27, 1, 0, 0, 0, 1], true, 10, now).unwrap();
        assert_eq!((p0.kind, p0.seq, p0.gop), (FrameKind::P, 0, u32::MAX));
        let i = f.header(&[0x17, 1, 0, 0, 0, 1], true, 20, now).unwrap();
        assert_eq!(
            (i.kind, i.seq, i.gop, i.capture),
            (FrameKind::I, 1, 0, Time::from_millis(20))
        );
        let p = f.header(&[0x27, 1, 0, 0, 0, 1], true, 53, now).unwrap();
        assert_eq!((p.kind, p.seq, p.gop), (FrameKind::P, 2, 0));
        let a = f.header(&[0xAF, 1, 9], false, 30, now).unwrap();
        assert_eq!((a.kind, a.seq), (FrameKind::Audio, 0));
    }
}
