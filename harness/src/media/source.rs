//! What a publisher sends: the synthetic camera + encoder, or a replayed FLV
//! recording, as FLV-style tag bodies (which are exactly RTMP audio/video
//! message bodies) with their RTMP timestamps and capture instants.
//!
//! Glass frames travel as AVC NALU tags (key or inter) and AAC raw tags with
//! the Glass frame header right after the tag header, so the player reads
//! the capture instant from the bytes. A replayed file's frames carry their
//! capture instant in the timestamp instead ([`super::wallclock`]).

use bytes::Bytes;
use netem::Time;

use super::encoder::Encoder;
use super::flv::{FlvReplay, TagKind};
use super::frame::{Frame, FrameHeader, FrameKind};
use super::wallclock::WallClock;

/// Bytes before a Glass frame in a video tag: the FLV video tag header
/// (frame type 1 key / 2 inter, codec 7 AVC; AVCPacketType 1 NALU; zero
/// composition time), then one AVCC NAL unit: a 4-byte length and the NAL
/// header of a filler-data unit (type 12). So the tag is well-formed AVC
/// that parsers walk and decoders skip, and the Glass frame rides inside the
/// filler. (It has no pictures: a real player connects and plays nothing.)
const VIDEO_PREFIX: usize = 5 + 4 + 1;
const FILLER_NAL: u8 = 12;

pub fn video_tag(frame: &Frame) -> Bytes {
    let first = if frame.header.kind == FrameKind::I {
        0x17
    } else {
        0x27
    };
    let nal_len = u32::try_from(frame.bytes.len() + 1).unwrap_or(u32::MAX);
    let mut v = Vec::with_capacity(frame.bytes.len() + VIDEO_PREFIX);
    v.extend_from_slice(&[first, 0x01, 0, 0, 0]);
    v.extend_from_slice(&nal_len.to_be_bytes());
    v.push(FILLER_NAL);
    v.extend_from_slice(&frame.bytes);
    v.into()
}

/// FLV audio tag header: AAC (0xAF), raw frame (1).
pub fn audio_tag(frame: &Frame) -> Bytes {
    let mut v = Vec::with_capacity(frame.bytes.len() + 2);
    v.extend_from_slice(&[0xAF, 0x01]);
    v.extend_from_slice(&frame.bytes);
    v.into()
}

/// The AVC sequence header (AVCPacketType 0) Glass's synthetic stream
/// declares: a real AVCDecoderConfigurationRecord (one SPS and one PPS for
/// 640x360 Constrained Baseline, as x264 wrote them), so parsers accept the
/// stream's configuration.
pub fn sequence_header() -> Bytes {
    Bytes::from_static(&[
        0x17, 0x00, 0x00, 0x00, 0x00, // key frame, AVC, sequence header, cts 0
        0x01, 0x42, 0xc0, 0x1e, 0xff,
        0xe1, // version 1, profile 66, level 3.0, 4-byte lengths, 1 SPS
        0x00, 0x19, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf2, 0x3c, 0x58, 0xba, 0x80, // SPS
        0x01, 0x00, 0x04, 0x68, 0xce, 0x0f, 0xc8, // 1 PPS
    ])
}

/// The Glass frame inside a video or audio tag, if it is one.
pub fn unpack(data: &[u8], video: bool) -> Option<FrameHeader> {
    let skip = if video { VIDEO_PREFIX } else { 2 };
    if !super::tag::is_frame(data) {
        return None; // a sequence header or end-of-sequence
    }
    if video
        && data
            .get(VIDEO_PREFIX - 1)
            .is_none_or(|&b| b & 0x1f != FILLER_NAL)
    {
        return None; // real H.264: not a Glass frame
    }
    Frame::parse(data.get(skip..)?).ok()
}

/// RTMP timestamps of Glass frames: u32 ms since the scenario start (they
/// wrap after 49.7 days).
pub fn scenario_timestamp(t: Time) -> u32 {
    (t.as_nanos() / 1_000_000) as u32
}

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Message {
    pub video: bool,
    pub data: Bytes,
    /// RTMP timestamp, ms.
    pub timestamp: u32,
    pub capture: Time,
    /// The Glass frame's sequence number (synthetic media only): per-hop
    /// timestamps are keyed by it.
    pub seq: Option<u64>,
}

/// Where a publisher's media comes from.
pub enum Source {
    Synthetic(Encoder),
    Replay { replay: FlvReplay, wall: WallClock },
}

impl Source {
    /// Decoder configuration to publish before the first frame.
    pub fn sequence_headers(&self) -> Vec<Message> {
        match self {
            Source::Synthetic(_) => vec![Message {
                video: true,
                data: sequence_header(),
                timestamp: 0,
                capture: Time::ZERO,
                seq: None,
            }],
            Source::Replay { replay, wall } => replay
                .sequence_headers()
                .iter()
                .map(|t| Message {
                    video: t.kind == TagKind::Video,
                    data: Bytes::from(t.data.clone()),
                    timestamp: wall.timestamp(Time::ZERO),
                    capture: Time::ZERO,
                    seq: None,
                })
                .collect(),
        }
    }

    /// When the next message is due.
    pub fn poll_timeout(&self) -> Time {
        match self {
            Source::Synthetic(e) => e.poll_timeout(),
            Source::Replay { replay, .. } => replay.poll_timeout(),
        }
    }

    /// The next message due at `now`.
    pub fn poll_message(&mut self, now: Time) -> Option<Message> {
        match self {
            Source::Synthetic(e) => {
                let frame = e.poll_frame(now)?;
                let video = frame.header.kind.is_video();
                Some(Message {
                    video,
                    data: if video {
                        video_tag(&frame)
                    } else {
                        audio_tag(&frame)
                    },
                    timestamp: scenario_timestamp(frame.header.capture),
                    capture: frame.header.capture,
                    seq: video.then_some(frame.header.seq),
                })
            }
            Source::Replay { replay, wall } => {
                let (at, tag) = replay.poll_tag(now)?;
                Some(Message {
                    video: tag.kind == TagKind::Video,
                    data: Bytes::from(tag.data.clone()),
                    timestamp: wall.timestamp(at),
                    capture: at,
                    seq: None,
                })
            }
        }
    }

    /// When the camera started (its first capture instant).
    pub fn camera_start(&self) -> Time {
        match self {
            Source::Synthetic(e) => e.start(),
            Source::Replay { replay, .. } => replay.start(),
        }
    }

    /// The synthetic encoder, for ABR (a replayed file has a fixed bitrate).
    pub fn encoder_mut(&mut self) -> Option<&mut Encoder> {
        match self {
            Source::Synthetic(e) => Some(e),
            Source::Replay { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tag::is_sequence_header;

    #[test]
    fn tags_round_trip() {
        let f = Frame::new(FrameHeader {
            kind: FrameKind::I,
            seq: 3,
            gop: 0,
            capture: Time::from_millis(5),
            size: 500,
        });
        assert_eq!(unpack(&video_tag(&f), true), Some(f.header));
        let a = Frame::new(FrameHeader {
            kind: FrameKind::Audio,
            seq: 1,
            gop: 0,
            capture: Time::from_millis(5),
            size: 320,
        });
        assert_eq!(unpack(&audio_tag(&a), false), Some(a.header));
        assert!(is_sequence_header(&sequence_header(), true));
        assert!(is_sequence_header(&[0xAF, 0x00, 0x12, 0x10], false));
        assert!(!is_sequence_header(&audio_tag(&a), false));
        assert_eq!(unpack(&sequence_header(), true), None);
        assert_eq!(unpack(&[0x17], true), None);
        assert_eq!(unpack(b"garbage!", false), None);
    }
}
