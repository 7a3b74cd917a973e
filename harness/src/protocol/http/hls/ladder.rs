//! The relay's transcoder model and rendition ladder: the ingest becomes
//! several renditions of lower bitrate (each packaged as its own media
//! playlist), listed by a multivariant playlist, so Glass's HLS player (and
//! hls.js, ffmpeg) can pick and switch by throughput.
//!
//! The model (sans-IO, [`Transcoder`]): a Glass video frame comes out of a
//! rendition after the transcoding delay with its header (sequence number,
//! GOP, capture instant: G2G stays measurable) and its size scaled by the
//! rendition's bitrate over the source's; audio passes unchanged, as
//! ladders usually share the source's audio. Frames Glass did not make (an
//! ffmpeg publisher's H.264) cannot be re-encoded by a model: they pass
//! through at their own size, after the same delay.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use netem::units::BitRate;
use serde::{Deserialize, Serialize};

use crate::media::frame::{Frame, FrameHeader};
use crate::media::source::{audio_tag, unpack, video_tag};
use crate::relay::Media;

/// One rung of the ladder, as a scenario writes it:
/// `{ bitrate = "1.2Mbit/s", resolution = "960x540" }`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rendition {
    pub bitrate: BitRate,
    /// Its picture size (EXT-X-STREAM-INF's RESOLUTION), `WxH`.
    pub resolution: String,
}

impl Rendition {
    /// `resolution` as (width, height), if it is `WxH`.
    pub fn size(&self) -> Option<(u32, u32)> {
        let (w, h) = self.resolution.split_once('x')?;
        Some((w.parse().ok()?, h.parse().ok()?))
    }
}

/// One rendition's transcoder: messages in at their arrival, out after the
/// delay, Glass frames resized to the rendition's bitrate.
#[derive(Debug)]
pub struct Transcoder {
    /// Rendition bitrate / source bitrate.
    ratio: f64,
    delay: Duration,
    queue: VecDeque<(Instant, Media)>,
}

impl Transcoder {
    pub fn new(rendition: BitRate, source: BitRate, delay: Duration) -> Transcoder {
        let source = source.bits_per_sec().max(1) as f64;
        Transcoder {
            ratio: rendition.bits_per_sec() as f64 / source,
            delay,
            queue: VecDeque::new(),
        }
    }

    /// Takes a message that arrived at `now`.
    pub fn push(&mut self, m: Media, now: Instant) {
        let out = match m.as_av() {
            Some((video, body, ts)) => match unpack(body, video) {
                Some(h) if video => Media::Video(video_tag(&self.resized(h)), ts),
                Some(h) => Media::Audio(audio_tag(&Frame::new(h)), ts),
                None => m,
            },
            None => m,
        };
        self.queue.push_back((now + self.delay, out));
    }

    /// A Glass video frame of the rendition's size.
    fn resized(&self, mut h: FrameHeader) -> Frame {
        h.size = (f64::from(h.size) * self.ratio).round() as u32;
        Frame::new(h)
    }

    /// When the next message is due, if any is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    /// The next message due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Media> {
        if self.queue.front()?.0 > now {
            return None;
        }
        self.queue.pop_front().map(|(_, m)| m)
    }
}

/// The multivariant playlist of `ladder`: one EXT-X-STREAM-INF per
/// rendition (BANDWIDTH: its bitrate plus 10 % for audio and container;
/// RESOLUTION; no CODECS: players read them from the segments), its media
/// playlist at `N/index.m3u8` (`q`: a query every URI carries, a signed
/// URL's token).
pub fn multivariant<'a>(
    ladder: impl IntoIterator<Item = &'a Rendition>,
    q: Option<&str>,
) -> String {
    use std::fmt::Write;
    let q = q.map_or(String::new(), |q| format!("?{q}"));
    let mut p = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i, r) in ladder.into_iter().enumerate() {
        let bandwidth = r.bitrate.bits_per_sec() * 11 / 10;
        let _ = write!(p, "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth}");
        if let Some((w, h)) = r.size() {
            let _ = write!(p, ",RESOLUTION={w}x{h}");
        }
        let _ = write!(p, "\n{i}/{}{q}\n", super::super::server::PLAYLIST);
    }
    p
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use netem::Time;

    use super::*;
    use crate::media::frame::FrameKind;

    /// Bytes of a tag's Glass frame.
    fn frame_size(m: &Media) -> Option<u32> {
        let (video, body, _) = m.as_av()?;
        Some(unpack(body, video)?.size)
    }

    fn glass(kind: FrameKind, size: u32, ts: u32) -> Media {
        let h = FrameHeader {
            kind,
            seq: u64::from(ts),
            gop: 0,
            capture: Time::from_millis(u64::from(ts)),
            size,
        };
        match kind {
            FrameKind::Audio => Media::Audio(audio_tag(&Frame::new(h)), ts),
            _ => Media::Video(video_tag(&Frame::new(h)), ts),
        }
    }

    #[test]
    fn renditions_keep_glass_headers_scale_video_and_wait_the_delay() {
        let t0 = Instant::now();
        let mut t = Transcoder::new(
            BitRate::from_bits_per_sec(600_000),
            BitRate::from_bits_per_sec(2_400_000),
            Duration::from_millis(300),
        );
        t.push(glass(FrameKind::I, 40_000, 0), t0);
        t.push(
            glass(FrameKind::Audio, 300, 5),
            t0 + Duration::from_millis(5),
        );
        t.push(
            Media::Video(Bytes::from_static(&[0x27, 1, 0, 0, 0]), 33),
            t0,
        );
        assert_eq!(t.poll(t0 + Duration::from_millis(299)), None);
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_millis(300)));
        let at = t0 + Duration::from_millis(400);
        let video = t.poll(at).unwrap();
        assert_eq!(frame_size(&video), Some(10_000), "a quarter of the bits");
        let (_, body, ts) = video.as_av().unwrap();
        let h = unpack(body, true).unwrap();
        assert_eq!((h.seq, h.capture, ts), (0, Time::ZERO, 0));
        assert_eq!(frame_size(&t.poll(at).unwrap()), Some(300), "audio as is");
        // A foreign frame passes through unchanged.
        assert_eq!(
            t.poll(at).unwrap(),
            Media::Video(Bytes::from_static(&[0x27, 1, 0, 0, 0]), 33)
        );
        assert_eq!(t.poll(at), None);
    }

    #[test]
    fn the_multivariant_playlist_lists_each_rendition() {
        let ladder = [
            Rendition {
                bitrate: BitRate::from_bits_per_sec(2_500_000),
                resolution: "1280x720".into(),
            },
            Rendition {
                bitrate: BitRate::from_bits_per_sec(600_000),
                resolution: "640x360".into(),
            },
        ];
        let p = multivariant(&ladder, Some("token=1-ab"));
        assert_eq!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2750000,RESOLUTION=1280x720\n\
             0/index.m3u8?token=1-ab\n\
             #EXT-X-STREAM-INF:BANDWIDTH=660000,RESOLUTION=640x360\n\
             1/index.m3u8?token=1-ab\n"
        );
        // m3u8-parser reads it as a valid multivariant playlist.
        let parsed = m3u8_parser::m3u8::playlist::Playlist::from_reader(p.as_bytes()).unwrap();
        parsed.validate().unwrap();
    }
}
