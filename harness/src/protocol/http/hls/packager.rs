//! The HLS packager (sans-IO): the hub's messages in, MPEG-TS segments cut
//! on key frames and a live media playlist with a sliding window out.
//!
//! A segment starts at the first key frame at least the target duration
//! after the current segment's start; its duration is the media time to
//! the next segment's start (the FLV timestamps' difference). Each segment
//! starts with PAT and PMT, and its key frame carries SPS and PPS, so any
//! segment decodes alone.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::ts::TsMuxer;
use crate::relay::Media;

/// A finished segment.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Its media sequence number.
    pub seq: u64,
    pub duration: Duration,
    /// When its first frame reached the packager (EXT-X-PROGRAM-DATE-TIME).
    pub date: SystemTime,
    pub bytes: Bytes,
}

/// The segment being written.
#[derive(Debug)]
struct Open {
    seq: u64,
    first_ms: u32,
    date: SystemTime,
    bytes: Vec<u8>,
}

/// How the packager cuts and keeps segments.
#[derive(Copy, Clone, Debug)]
pub struct PackagerConfig {
    /// EXT-X-TARGETDURATION: segments are cut at the first key frame after
    /// it (so they last at least that, up to a GOP more).
    pub target: Duration,
    /// Segments the playlist lists.
    pub window: usize,
}

/// One stream's HLS segments and playlist.
#[derive(Debug)]
pub struct Packager {
    cfg: PackagerConfig,
    mux: TsMuxer,
    open: Option<Open>,
    /// Finished segments: the playlist's window and, before it, a few kept
    /// for players that read the playlist just before it slid.
    done: VecDeque<Segment>,
    next_seq: u64,
    /// The longest segment so far (the target duration must cover it).
    longest: Duration,
}

/// Segments kept beyond the playlist's window.
const KEEP_BEYOND_WINDOW: usize = 3;

impl Packager {
    pub fn new(cfg: PackagerConfig) -> Packager {
        Packager {
            cfg,
            mux: TsMuxer::default(),
            open: None,
            done: VecDeque::new(),
            next_seq: 0,
            longest: Duration::ZERO,
        }
    }

    /// Takes one message of the stream, at wall-clock instant `now`; returns
    /// whether a segment was finished (the playlist changed).
    pub fn push(&mut self, m: &Media, now: SystemTime) -> bool {
        let Some((video, body, ts)) = m.as_av() else {
            return false;
        };
        let mut finished = false;
        if m.is_key_frame() {
            let due = self.open.as_ref().is_none_or(|o| {
                Duration::from_millis(u64::from(ts.wrapping_sub(o.first_ms))) >= self.cfg.target
            });
            if due {
                finished = self.close(ts);
                let mut bytes = Vec::with_capacity(256 * 1024);
                self.mux.tables(&mut bytes);
                self.open = Some(Open {
                    seq: self.next_seq,
                    first_ms: ts,
                    date: now,
                    bytes,
                });
                self.next_seq += 1;
            }
        }
        match &mut self.open {
            Some(o) => {
                self.mux.push(&mut o.bytes, video, body, ts);
            }
            // Before the first key frame: only the configuration is kept.
            None => {
                if m.is_config() {
                    self.mux.push(&mut Vec::new(), video, body, ts);
                }
            }
        }
        finished
    }

    /// Finishes the open segment, which lasts until `end_ms`.
    fn close(&mut self, end_ms: u32) -> bool {
        let Some(o) = self.open.take() else {
            return false;
        };
        let duration = Duration::from_millis(u64::from(end_ms.wrapping_sub(o.first_ms)));
        self.longest = self.longest.max(duration);
        self.done.push_back(Segment {
            seq: o.seq,
            duration,
            date: o.date,
            bytes: o.bytes.into(),
        });
        while self.done.len() > self.cfg.window + KEEP_BEYOND_WINDOW {
            self.done.pop_front();
        }
        true
    }

    /// The segment `seq`, while it is kept.
    pub fn segment(&self, seq: u64) -> Option<&Segment> {
        let first = self.done.front()?.seq;
        self.done
            .get(usize::try_from(seq.checked_sub(first)?).ok()?)
    }

    /// The live media playlist (None before the first segment is done).
    /// Segment URIs are relative: `seg{N}.ts`.
    pub fn playlist(&self) -> Option<String> {
        use std::fmt::Write;
        let skip = self.done.len().saturating_sub(self.cfg.window);
        let listed: Vec<&Segment> = self.done.iter().skip(skip).collect();
        let first = listed.first()?;
        let target = self.cfg.target.max(self.longest);
        // EXT-X-TARGETDURATION: every EXTINF rounded to the nearest
        // integer is at most it.
        let target_s = (target.as_secs_f64() + 0.5).floor().max(1.0) as u64;
        let mut p = String::new();
        let _ = write!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target_s}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            first.seq
        );
        for s in listed {
            let _ = write!(
                p,
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\nseg{}.ts\n",
                rfc3339_ms(s.date),
                s.duration.as_secs_f64(),
                s.seq
            );
        }
        Some(p)
    }
}

/// `t` as an RFC 3339 UTC date with milliseconds (2026-12-04T13:05:10.123Z).
pub fn rfc3339_ms(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::source::sequence_header;

    fn video(key: bool, ts: u32) -> Media {
        let t = if key { 0x17 } else { 0x27 };
        // One 4-byte-length NAL unit: a filler unit with two bytes.
        Media::Video(
            Bytes::from(vec![t, 0x01, 0, 0, 0, 0, 0, 0, 3, 12, 0, 0]),
            ts,
        )
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_389_510_123);
        assert_eq!(rfc3339_ms(t), "2026-12-04T13:05:10.123Z");
        assert_eq!(
            rfc3339_ms(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_ms(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn segments_are_cut_on_key_frames_after_the_target_and_the_window_slides() {
        let mut p = Packager::new(PackagerConfig {
            target: Duration::from_secs(2),
            window: 3,
        });
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!p.push(&Media::Video(sequence_header(), 0), t0));
        // A P frame before any key frame is not packaged.
        p.push(&video(false, 0), t0);
        assert_eq!(p.playlist(), None);
        // Key frames every second, 30 fps between them: segments of 2 s.
        let mut finished = 0;
        for ms in (1000..=15_000).step_by(100) {
            let key = ms % 1000 == 0;
            let at = t0 + Duration::from_millis(u64::from(ms));
            finished += usize::from(p.push(&video(key, ms), at));
        }
        // Segments start at 1, 3, 5, …, 13 s; 15 s opened the 8th.
        assert_eq!(finished, 7);
        let list = p.playlist().unwrap();
        assert!(list.contains("#EXT-X-TARGETDURATION:2\n"), "{list}");
        assert!(list.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{list}");
        assert_eq!(list.matches("#EXTINF:2.000,").count(), 3, "{list}");
        assert!(list.ends_with("seg6.ts\n"), "{list}");
        // The window's segments and 3 before it are kept.
        assert!(p.segment(3).is_some() && p.segment(1).is_some());
        assert!(p.segment(0).is_none() && p.segment(7).is_none());
        // Every segment is whole 188-byte packets and starts with the PAT.
        let s = p.segment(4).unwrap();
        assert_eq!(s.bytes.len() % 188, 0);
        assert_eq!(&s.bytes[..3], &[0x47, 0x40, 0x00], "PAT first");
        assert_eq!(s.date, t0 + Duration::from_millis(9000));
    }
}
