//! The HLS packager (sans-IO): the hub's messages in, segments cut on key
//! frames (MPEG-TS, or fragmented MP4 after an init segment) and a live
//! media playlist with a sliding window out, and, for Low-Latency HLS, each
//! segment's partial segments ("parts").
//!
//! A segment starts at the first key frame at least the target duration
//! after the current segment's start; its duration is the media time to
//! the next segment's start (the FLV timestamps' difference). With parts
//! on, a part ends at the video frame nearest its target (before a frame
//! whose slot, judged by the last frame interval, would end more than half
//! an interval past it) and at each segment's end; a segment is its parts'
//! bytes end to end. In MPEG-TS each part (each segment when parts are
//! off) starts with PAT and PMT, and a segment's key frame carries SPS and
//! PPS, so a segment decodes alone and a part decodes after its segment's
//! first (INDEPENDENT) part. In fMP4 each part (each segment) is one
//! fragment (`moof` + `mdat`), and the init segment (EXT-X-MAP) carries
//! the decoder configuration.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use serde::{Deserialize, Serialize};

use super::fmp4::Fmp4Muxer;
use super::ts::TsMuxer;
use crate::relay::Media;

/// The container of segments and parts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentFormat {
    /// MPEG-TS (`.ts`): what every HLS player reads.
    #[default]
    Ts,
    /// Fragmented MP4 (`.m4s` after the init segment `init.mp4`): what
    /// CMAF pipelines and LL-HLS deployments mostly serve.
    Fmp4,
}

impl SegmentFormat {
    /// Its name in scenarios and results (`http.hls_format`).
    pub fn name(self) -> &'static str {
        match self {
            SegmentFormat::Ts => "ts",
            SegmentFormat::Fmp4 => "fmp4",
        }
    }

    /// The file extension of its segments and parts.
    pub fn extension(self) -> &'static str {
        match self {
            SegmentFormat::Ts => "ts",
            SegmentFormat::Fmp4 => "m4s",
        }
    }

    /// The Content-Type of its segments and parts.
    pub fn content_type(self) -> &'static str {
        match self {
            SegmentFormat::Ts => "video/mp2t",
            SegmentFormat::Fmp4 => "video/mp4",
        }
    }
}

/// The name of the fMP4 init segment under `/APP/KEY/`.
pub const INIT_SEGMENT: &str = "init.mp4";

/// The muxer of the configured format.
#[derive(Debug)]
enum Muxer {
    Ts(TsMuxer),
    Fmp4(Fmp4Muxer),
}

impl Muxer {
    /// A part's first bytes: PAT and PMT in TS, nothing in fMP4.
    fn start_part(&mut self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(64 * 1024);
        if let Muxer::Ts(m) = self {
            m.tables(&mut bytes);
        }
        bytes
    }

    /// One FLV tag body into the part being written (`out`; fMP4 holds
    /// it until [`Muxer::end_part`]).
    fn push(&mut self, out: &mut Vec<u8>, video: bool, body: &Bytes, ts: u32) {
        match self {
            Muxer::Ts(m) => {
                m.push(out, video, body, ts);
            }
            Muxer::Fmp4(m) => {
                m.push(body, video, ts);
            }
        }
    }

    /// Finishes the part being written (`out`), which lasts until `end_ms`.
    fn end_part(&mut self, out: &mut Vec<u8>, end_ms: u32) {
        if let Muxer::Fmp4(m) = self {
            m.fragment(out, end_ms);
        }
    }
}

/// A finished partial segment.
#[derive(Clone, Debug)]
pub struct Part {
    pub duration: Duration,
    /// It starts with a key frame (EXT-X-PART's INDEPENDENT=YES).
    pub independent: bool,
    pub bytes: Bytes,
}

/// A finished segment.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Its media sequence number.
    pub seq: u64,
    pub duration: Duration,
    /// Its first frame's wall-clock date (EXT-X-PROGRAM-DATE-TIME): the
    /// instant `push` was given with it.
    pub date: SystemTime,
    pub bytes: Bytes,
    /// Its parts (empty when parts are off).
    pub parts: Vec<Part>,
}

/// The segment being written.
#[derive(Debug)]
struct Open {
    seq: u64,
    first_ms: u32,
    date: SystemTime,
    /// Its finished parts.
    parts: Vec<Part>,
    /// The part being written: its first timestamp, whether it starts
    /// with a key frame, its bytes.
    part_ms: u32,
    part_key: bool,
    part: Vec<u8>,
    /// The last video frame's timestamp (parts end on video frames).
    last_video_ms: Option<u32>,
}

/// How the packager cuts and keeps segments.
#[derive(Copy, Clone, Debug)]
pub struct PackagerConfig {
    /// EXT-X-TARGETDURATION: segments are cut at the first key frame after
    /// it (so they last at least that, up to a GOP more).
    pub target: Duration,
    /// Segments the playlist lists.
    pub window: usize,
    /// LL-HLS's part target duration (EXT-X-PART-INF), or no parts.
    pub part: Option<Duration>,
    /// MPEG-TS or fMP4.
    pub format: SegmentFormat,
}

/// Where a stream's newest media is: the last finished segment and the
/// newest finished part (`(seq, index)`), each if any.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub segment: Option<u64>,
    pub part: Option<(u64, usize)>,
    /// The part being written, which the playlist's preload hint names.
    pub open_part: Option<(u64, usize)>,
}

/// Parts a blocking playlist request may ask for beyond the newest one
/// (the LL-HLS specification's Advance Part Limit).
pub const ADVANCE_PART_LIMIT: u64 = 3;

impl Progress {
    /// Whether the playlist holds segment `msn` (`part`: part `part` of it)
    /// or anything later: what a blocking playlist request waits for.
    pub fn reached(&self, msn: u64, part: Option<u64>) -> bool {
        match part {
            None => self.segment.is_some_and(|s| s >= msn),
            Some(i) => self.part.is_some_and(|(m, p)| (m, p as u64) >= (msn, i)),
        }
    }

    /// Whether a blocking request asks too far ahead (the specification's
    /// 400): `msn` more than two segments after the newest finished one, or
    /// `part` more than [`ADVANCE_PART_LIMIT`] parts after the newest part
    /// (counted from the start of a segment after the open one).
    pub fn too_far_ahead(&self, msn: u64, part: Option<u64>) -> bool {
        let last = self.segment.map_or(-1, i128::from);
        if i128::from(msn) > last + 2 {
            return true;
        }
        let Some(i) = part else { return false };
        let (m, newest) = match (self.part, self.open_part) {
            (_, Some((m, open))) => (m, open as i128 - 1),
            (Some((m, p)), None) => (m, p as i128),
            (None, None) => return i >= ADVANCE_PART_LIMIT,
        };
        match msn.cmp(&m) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => i128::from(i) > newest + ADVANCE_PART_LIMIT as i128,
            std::cmp::Ordering::Greater => i >= ADVANCE_PART_LIMIT,
        }
    }
}

/// One stream's HLS segments and playlist.
#[derive(Debug)]
pub struct Packager {
    cfg: PackagerConfig,
    mux: Muxer,
    open: Option<Open>,
    /// Finished segments: the playlist's window and, before it, a few kept
    /// for players that read the playlist just before it slid.
    done: VecDeque<Segment>,
    next_seq: u64,
    /// The longest segment and part so far (the advertised targets must
    /// cover them).
    longest: Duration,
    longest_part: Duration,
}

/// Segments kept beyond the playlist's window.
const KEEP_BEYOND_WINDOW: usize = 3;

fn ms_between(from: u32, to: u32) -> Duration {
    Duration::from_millis(u64::from(to.wrapping_sub(from)))
}

impl Packager {
    pub fn new(cfg: PackagerConfig) -> Packager {
        Packager {
            cfg,
            mux: match cfg.format {
                SegmentFormat::Ts => Muxer::Ts(TsMuxer::default()),
                SegmentFormat::Fmp4 => Muxer::Fmp4(Fmp4Muxer::default()),
            },
            open: None,
            done: VecDeque::new(),
            next_seq: 0,
            longest: Duration::ZERO,
            longest_part: Duration::ZERO,
        }
    }

    pub fn config(&self) -> &PackagerConfig {
        &self.cfg
    }

    /// Takes one message of the stream, whose wall-clock date is `now` (its
    /// capture, or its arrival); returns whether a part or a segment was
    /// finished (the playlist changed).
    pub fn push(&mut self, m: &Media, now: SystemTime) -> bool {
        let Some((video, body, ts)) = m.as_av() else {
            return false;
        };
        let mut finished = false;
        let frame = video && !m.is_config();
        if m.is_key_frame() {
            let due = self
                .open
                .as_ref()
                .is_none_or(|o| ms_between(o.first_ms, ts) >= self.cfg.target);
            if due {
                finished = self.close(ts);
                self.open = Some(Open {
                    seq: self.next_seq,
                    first_ms: ts,
                    date: now,
                    parts: Vec::new(),
                    part_ms: ts,
                    part_key: true,
                    part: self.new_part_bytes(),
                    last_video_ms: None,
                });
                self.next_seq += 1;
            }
        }
        if frame && let Some(part) = self.cfg.part {
            finished |= self.maybe_end_part(ts, m.is_key_frame(), part);
        }
        match &mut self.open {
            Some(o) => {
                self.mux.push(&mut o.part, video, body, ts);
                if frame {
                    o.last_video_ms = Some(ts);
                }
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

    /// A part's first bytes (PAT and PMT in TS).
    fn new_part_bytes(&mut self) -> Vec<u8> {
        self.mux.start_part()
    }

    /// The fMP4 init segment (EXT-X-MAP), once the first part or segment
    /// is done; None in TS.
    pub fn init(&self) -> Option<&Bytes> {
        match &self.mux {
            Muxer::Fmp4(m) => m.init(),
            Muxer::Ts(_) => None,
        }
    }

    /// Ends the open part before a video frame at `ts` (`key`: a key frame)
    /// when that frame is nearer the part's target than the next one would
    /// be.
    fn maybe_end_part(&mut self, ts: u32, key: bool, target: Duration) -> bool {
        let Some(o) = &self.open else { return false };
        let Some(last) = o.last_video_ms else {
            return false;
        };
        let elapsed = ms_between(o.part_ms, ts);
        let interval = ms_between(last, ts);
        if elapsed + interval / 2 <= target {
            return false;
        }
        let bytes = self.new_part_bytes();
        let Some(o) = &mut self.open else {
            return false;
        };
        self.mux.end_part(&mut o.part, ts);
        let part = std::mem::replace(&mut o.part, bytes);
        o.parts.push(Part {
            duration: elapsed,
            independent: o.part_key,
            bytes: part.into(),
        });
        o.part_ms = ts;
        o.part_key = key;
        self.longest_part = self.longest_part.max(elapsed);
        true
    }

    /// Finishes the open segment, which lasts until `end_ms`.
    fn close(&mut self, end_ms: u32) -> bool {
        let Some(mut o) = self.open.take() else {
            return false;
        };
        self.mux.end_part(&mut o.part, end_ms);
        let duration = ms_between(o.first_ms, end_ms);
        self.longest = self.longest.max(duration);
        let bytes = if self.cfg.part.is_some() {
            let last = ms_between(o.part_ms, end_ms);
            self.longest_part = self.longest_part.max(last);
            o.parts.push(Part {
                duration: last,
                independent: o.part_key,
                bytes: o.part.into(),
            });
            let mut all = Vec::with_capacity(o.parts.iter().map(|p| p.bytes.len()).sum());
            for p in &o.parts {
                all.extend_from_slice(&p.bytes);
            }
            all.into()
        } else {
            o.part.into()
        };
        self.done.push_back(Segment {
            seq: o.seq,
            duration,
            date: o.date,
            bytes,
            parts: o.parts,
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

    /// Part `index` of segment `seq`, while it is kept (the open segment's
    /// finished parts included).
    pub fn part(&self, seq: u64, index: usize) -> Option<&Part> {
        match &self.open {
            Some(o) if o.seq == seq => o.parts.get(index),
            _ => self.segment(seq)?.parts.get(index),
        }
    }

    /// Where the stream's newest media is.
    pub fn progress(&self) -> Progress {
        let segment = self.done.back().map(|s| s.seq);
        let open = self.open.as_ref().filter(|_| self.cfg.part.is_some());
        let part = match open {
            Some(o) if !o.parts.is_empty() => Some((o.seq, o.parts.len() - 1)),
            _ => self
                .done
                .back()
                .filter(|s| !s.parts.is_empty())
                .map(|s| (s.seq, s.parts.len() - 1)),
        };
        Progress {
            segment,
            part,
            open_part: open.map(|o| (o.seq, o.parts.len())),
        }
    }

    /// The advertised part target: the configured one, or the longest part
    /// if one ran over (irregular frame timing).
    fn part_target(&self) -> Option<Duration> {
        self.cfg.part.map(|p| p.max(self.longest_part))
    }

    /// The live media playlist (None before the first segment is done; with
    /// parts on, before the first part is).
    /// Segment URIs are relative: `seg{N}.ts`, parts `seg{N}.{I}.ts` (in
    /// fMP4 `.m4s`, after EXT-X-MAP's `init.mp4`). With
    /// parts on it is an LL-HLS playlist: server control (blocking reload,
    /// PART-HOLD-BACK), the parts of the segments that end within three
    /// target durations of the live edge and of the open segment, and a
    /// preload hint for the part being written. `uri_query` (a signed URL's
    /// `token=…`) is appended to every URI it lists.
    pub fn playlist(&self, uri_query: Option<&str>) -> Option<String> {
        let q = uri_query.map_or(String::new(), |q| format!("?{q}"));
        use std::fmt::Write;
        let skip = self.done.len().saturating_sub(self.cfg.window);
        let listed: Vec<&Segment> = self.done.iter().skip(skip).collect();
        // The open segment, when its parts are listed (LL-HLS): a playlist
        // exists from its first part on.
        let open = self
            .open
            .as_ref()
            .filter(|o| self.cfg.part.is_some() && (!o.parts.is_empty() || !listed.is_empty()));
        let first_seq = listed.first().map(|s| s.seq).or(open.map(|o| o.seq))?;
        let target = self.cfg.target.max(self.longest);
        // EXT-X-TARGETDURATION: every EXTINF rounded to the nearest
        // integer is at most it.
        let target_s = (target.as_secs_f64() + 0.5).floor().max(1.0) as u64;
        let mut p = String::new();
        // 6: LL-HLS's tags; 7: fMP4's EXT-X-MAP in a playlist without
        // I-frames only (RFC 8216 §7).
        let version = match (self.cfg.format, self.cfg.part) {
            (SegmentFormat::Fmp4, _) => 7,
            (SegmentFormat::Ts, Some(_)) => 6,
            (SegmentFormat::Ts, None) => 3,
        };
        let _ = write!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target_s}\n"
        );
        if let Some(part) = self.part_target() {
            // PART-HOLD-BACK: three part targets, the LL-HLS specification's
            // recommendation (it requires at least two).
            let _ = write!(
                p,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n\
                 #EXT-X-PART-INF:PART-TARGET={:.3}\n",
                (part * 3).as_secs_f64(),
                part.as_secs_f64()
            );
        }
        let _ = writeln!(p, "#EXT-X-MEDIA-SEQUENCE:{first_seq}");
        if self.cfg.format == SegmentFormat::Fmp4 {
            let _ = writeln!(p, "#EXT-X-MAP:URI=\"{INIT_SEGMENT}{q}\"");
        }
        let ext = self.cfg.format.extension();
        // Parts are listed for the segments that end within three target
        // durations of the live edge.
        let mut from_edge = Duration::ZERO;
        let with_parts: Vec<bool> = listed
            .iter()
            .rev()
            .map(|s| {
                let listed = from_edge < target * 3;
                from_edge += s.duration;
                listed
            })
            .collect();
        for (s, parts) in listed.iter().zip(with_parts.into_iter().rev()) {
            let _ = writeln!(p, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(s.date));
            if parts {
                write_parts(&mut p, s.seq, &s.parts, ext, &q);
            }
            let _ = write!(
                p,
                "#EXTINF:{:.3},\nseg{}.{ext}{q}\n",
                s.duration.as_secs_f64(),
                s.seq
            );
        }
        if let Some(o) = open {
            if !o.parts.is_empty() {
                let _ = writeln!(p, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339_ms(o.date));
            }
            write_parts(&mut p, o.seq, &o.parts, ext, &q);
            let _ = writeln!(
                p,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg{}.{}.{ext}{q}\"",
                o.seq,
                o.parts.len()
            );
        }
        Some(p)
    }
}

/// The EXT-X-PART lines of segment `seq`'s `parts` (`ext`: their files'
/// extension, `q`: their URIs' query).
fn write_parts(p: &mut String, seq: u64, parts: &[Part], ext: &str, q: &str) {
    use std::fmt::Write;
    for (i, part) in parts.iter().enumerate() {
        let _ = writeln!(
            p,
            "#EXT-X-PART:DURATION={:.3},URI=\"seg{seq}.{i}.{ext}{q}\"{}",
            part.duration.as_secs_f64(),
            if part.independent {
                ",INDEPENDENT=YES"
            } else {
                ""
            }
        );
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

/// Glass's synthetic stream through a packager, for the tests of what
/// reads segments back (demuxers, ingest).
#[cfg(test)]
pub(super) mod synthetic {
    use std::time::{Duration, SystemTime};

    use netem::Time;

    use super::{Packager, PackagerConfig, SegmentFormat};
    use crate::media::encoder::{Encoder, EncoderConfig};
    use crate::media::source::{self, Source};
    use crate::media::tag;
    use crate::relay::Media;

    /// A video message as sent: FLV timestamp, key frame, Glass sequence
    /// number.
    pub type Sent = (u32, bool, Option<u64>);

    /// `secs` of the default stream (audio included) through a packager of
    /// `format` (1 s segments, `part`s), and the video messages sent.
    pub fn package(
        format: SegmentFormat,
        part: Option<Duration>,
        secs: u64,
    ) -> (Packager, Vec<Sent>) {
        let mut src = Source::Synthetic(Encoder::new(
            EncoderConfig::default(),
            netem::rng::SeedTree::new(7),
            Time::ZERO,
        ));
        let mut p = Packager::new(PackagerConfig {
            target: Duration::from_secs(1),
            window: 100,
            part,
            format,
        });
        let t0 = SystemTime::now();
        p.push(&Media::Video(source::sequence_header(), 0), t0);
        let mut sent = Vec::new();
        let mut now = Time::ZERO;
        while now < Time::from_millis(secs * 1000) {
            now = src.poll_timeout().max(now);
            while let Some(m) = src.poll_message(now) {
                if m.video {
                    let seq = source::unpack(&m.data, true).map(|h| h.seq);
                    sent.push((m.timestamp, tag::is_key_frame(&m.data), seq));
                }
                p.push(&Media::av(m.video, m.data, m.timestamp), t0);
            }
        }
        (p, sent)
    }

    /// `got` is the run of `sent` that starts at its first timestamp.
    pub fn assert_a_run_of(got: &[Sent], sent: &[Sent]) {
        assert!(!got.is_empty());
        let start = sent
            .iter()
            .position(|s| s.0 == got[0].0)
            .expect("a sent timestamp");
        assert_eq!(got, &sent[start..start + got.len()]);
    }
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
            part: None,
            format: Default::default(),
        });
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!p.push(&Media::Video(sequence_header(), 0), t0));
        // A P frame before any key frame is not packaged.
        p.push(&video(false, 0), t0);
        assert_eq!(p.playlist(None), None);
        // Key frames every second, 30 fps between them: segments of 2 s.
        let mut finished = 0;
        for ms in (1000..=15_000).step_by(100) {
            let key = ms % 1000 == 0;
            let at = t0 + Duration::from_millis(u64::from(ms));
            finished += usize::from(p.push(&video(key, ms), at));
        }
        // Segments start at 1, 3, 5, …, 13 s; 15 s opened the 8th.
        assert_eq!(finished, 7);
        let list = p.playlist(None).unwrap();
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

    #[test]
    fn ll_hls_parts_end_near_their_target_and_make_up_the_segment() {
        let mut p = Packager::new(PackagerConfig {
            target: Duration::from_secs(1),
            window: 6,
            part: Some(Duration::from_millis(200)),
            format: Default::default(),
        });
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        p.push(&Media::Video(sequence_header(), 0), t0);
        // 30 fps with millisecond timestamps (33 or 34 ms apart), a key
        // frame every second, for 4.5 s.
        for i in 0..135u32 {
            let ms = (f64::from(i) * 1000.0 / 30.0).round() as u32;
            p.push(
                &video(i % 30 == 0, ms),
                t0 + Duration::from_millis(ms.into()),
            );
        }
        for seq in 0..4 {
            let s = p.segment(seq).unwrap();
            let durations: Vec<u128> = s.parts.iter().map(|p| p.duration.as_millis()).collect();
            assert_eq!(durations, [200, 200, 200, 200, 200], "segment {seq}");
            let independent: Vec<bool> = s.parts.iter().map(|p| p.independent).collect();
            assert_eq!(independent, [true, false, false, false, false]);
            let whole: Vec<u8> = s.parts.iter().flat_map(|p| p.bytes.to_vec()).collect();
            assert_eq!(whole, s.bytes.to_vec());
            // Each part is whole packets, starts with PAT and decodes alone.
            for (i, part) in s.parts.iter().enumerate() {
                assert_eq!(&part.bytes[..3], &[0x47, 0x40, 0x00]);
                let frames = super::super::demux::frames(&part.bytes).unwrap();
                assert_eq!(frames.len(), 6, "segment {seq} part {i}");
            }
        }
        // 4.0 s to 4.467 s: segment 4 has two finished parts, the third is
        // being written.
        let pr = p.progress();
        assert_eq!(pr.segment, Some(3));
        assert_eq!(pr.part, Some((4, 1)));
        assert_eq!(pr.open_part, Some((4, 2)));
        assert_eq!(
            p.part(4, 1).map(|p| p.duration),
            Some(Duration::from_millis(200))
        );
        assert!(p.part(4, 2).is_none() && p.part(3, 4).is_some() && p.part(3, 5).is_none());
        let list = p.playlist(None).unwrap();
        for line in [
            "#EXT-X-VERSION:6\n",
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600\n",
            "#EXT-X-PART-INF:PART-TARGET=0.200\n",
            "#EXT-X-PART:DURATION=0.200,URI=\"seg4.0.ts\",INDEPENDENT=YES\n",
            "#EXT-X-PART:DURATION=0.200,URI=\"seg4.1.ts\"\n",
        ] {
            assert!(list.contains(line), "{line} in {list}");
        }
        assert!(
            list.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg4.2.ts\"\n"),
            "{list}"
        );
        // Parts are listed for the segments within 3 target durations of
        // the end (segments 1, 2, 3), not for segment 0.
        assert!(
            !list.contains("seg0.0.ts") && list.contains("seg1.4.ts"),
            "{list}"
        );
        // Without parts: none of it.
        let mut plain = Packager::new(PackagerConfig {
            part: None,
            ..*p.config()
        });
        for i in 0..70u32 {
            plain.push(&video(i % 30 == 0, i * 33), t0);
        }
        let list = plain.playlist(None).unwrap();
        assert!(
            !list.contains("PART") && !list.contains("PRELOAD") && !list.contains("SERVER-CONTROL")
        );
        assert!(plain.segment(0).unwrap().parts.is_empty());
        assert_eq!(plain.progress().part, None);
    }

    #[test]
    fn blocking_requests_wait_for_their_part_and_may_ask_only_so_far_ahead() {
        // Segment 4 finished with 5 parts; segment 5 has 2, the third is
        // being written.
        let p = Progress {
            segment: Some(4),
            part: Some((5, 1)),
            open_part: Some((5, 2)),
        };
        assert!(p.reached(4, None) && !p.reached(5, None));
        assert!(p.reached(5, Some(1)) && !p.reached(5, Some(2)));
        assert!(p.reached(4, Some(9)), "a later part satisfies it");
        assert!(!p.too_far_ahead(6, None) && p.too_far_ahead(7, None));
        assert!(!p.too_far_ahead(5, Some(4)) && p.too_far_ahead(5, Some(5)));
        assert!(!p.too_far_ahead(6, Some(2)) && p.too_far_ahead(6, Some(3)));
        assert!(!p.too_far_ahead(0, Some(1000)), "old parts are not ahead");
        // Before anything: segment 1 at most, parts 0–2 of it.
        let none = Progress::default();
        assert!(!none.too_far_ahead(1, None) && none.too_far_ahead(2, None));
        assert!(!none.too_far_ahead(0, Some(2)) && none.too_far_ahead(0, Some(3)));
    }

    /// The packager's playlists, plain and LL-HLS, as a parser Glass did
    /// not write reads them: valid RFC 8216 (bis), every part and the hint
    /// where they should be, and the same tags after a round trip.
    #[test]
    fn playlists_parse_and_validate_with_m3u8_parser() {
        use m3u8_parser::m3u8::playlist::Playlist;
        use m3u8_parser::m3u8::tags::Tag;
        let ll = Some(Duration::from_millis(200));
        for (part, format) in [
            (None, SegmentFormat::Ts),
            (ll, SegmentFormat::Ts),
            (None, SegmentFormat::Fmp4),
            (ll, SegmentFormat::Fmp4),
        ] {
            let mut p = Packager::new(PackagerConfig {
                target: Duration::from_secs(1),
                window: 4,
                part,
                format,
            });
            let ext = format.extension();
            let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
            p.push(&Media::Video(sequence_header(), 0), t0);
            for i in 0..200u32 {
                let ms = (f64::from(i) * 1000.0 / 30.0).round() as u32;
                p.push(
                    &video(i % 30 == 0, ms),
                    t0 + Duration::from_millis(ms.into()),
                );
            }
            let list = p.playlist(Some("token=1-ab")).unwrap();
            let parsed =
                Playlist::from_reader(list.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{list}"));
            parsed
                .validate()
                .unwrap_or_else(|e| panic!("{e:?}\n{list}"));
            let again: Playlist = parsed.to_string().parse().unwrap();
            assert_eq!(again, parsed);
            let segments = parsed.media_segments();
            assert_eq!(segments.len(), 4, "{list}");
            assert!(
                segments
                    .iter()
                    .all(|s| s.uri.ends_with(&format!(".{ext}?token=1-ab")))
            );
            // fMP4: the init segment (EXT-X-MAP), with the same token.
            let map = parsed.tags.iter().find_map(|t| match t {
                Tag::ExtXMap(m) => Some(m.uri.clone()),
                _ => None,
            });
            match format {
                SegmentFormat::Fmp4 => assert_eq!(map.as_deref(), Some("init.mp4?token=1-ab")),
                SegmentFormat::Ts => assert_eq!(map, None),
            }
            let parts: Vec<&Tag> = parsed
                .tags
                .iter()
                .filter(|t| matches!(t, Tag::ExtXPart { .. }))
                .collect();
            let hint = parsed.tags.iter().find_map(|t| match t {
                Tag::ExtXPreloadHint { type_, uri, .. } => Some((type_.clone(), uri.clone())),
                _ => None,
            });
            let control = parsed.tags.iter().find_map(|t| match t {
                Tag::ExtXServerControl {
                    can_block_reload,
                    part_hold_back,
                    ..
                } => Some((*can_block_reload, *part_hold_back)),
                _ => None,
            });
            if part.is_none() {
                assert!(
                    parts.is_empty() && hint.is_none() && control.is_none(),
                    "{list}"
                );
                continue;
            }
            // 6.667 s: segments 3–5 (ending within 3 s of the edge) with 5
            // parts each, and segment 6's 3 finished ones.
            assert_eq!(parts.len(), 18, "{list}");
            assert_eq!(
                hint,
                Some(("PART".to_string(), format!("seg6.3.{ext}?token=1-ab")))
            );
            assert_eq!(control, Some((Some(true), Some(0.6))));
        }
    }
}
