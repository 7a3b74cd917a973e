//! The protocol-neutral message the hub carries between a publisher's and a
//! player's protocol.

use bytes::Bytes;

use crate::media::tag;

/// One message of a stream, as every protocol hands it to the hub and gets
/// it back.
///
/// Audio and video are FLV tag bodies (`media::tag`): the framing every
/// Glass protocol carries today (RTMP natively; the UDP protocol and QUIC's
/// frames mapping as their payload), and the one a new protocol converts
/// from and to at its edge. It carries the codec configuration flag, the key
/// frame flag and, for Glass's own frames, the capture instant in the Glass
/// frame header right after the tag header (`media::source::unpack`); the
/// timestamp is the media timestamp in ms.
#[derive(Clone, Debug, PartialEq)]
pub enum Media {
    Video(Bytes, u32),
    Audio(Bytes, u32),
    /// What the publisher says about its stream (RTMP's onMetaData).
    Info(StreamInfo),
}

impl Media {
    pub fn av(video: bool, data: Bytes, timestamp_ms: u32) -> Media {
        if video {
            Media::Video(data, timestamp_ms)
        } else {
            Media::Audio(data, timestamp_ms)
        }
    }

    /// (video, body, timestamp) of an audio or video message.
    pub fn as_av(&self) -> Option<(bool, &Bytes, u32)> {
        match self {
            Media::Video(d, t) => Some((true, d, *t)),
            Media::Audio(d, t) => Some((false, d, *t)),
            Media::Info(_) => None,
        }
    }

    /// Decoder configuration (an AVC or AAC sequence header).
    pub fn is_config(&self) -> bool {
        self.as_av()
            .is_some_and(|(video, d, _)| tag::is_sequence_header(d, video))
    }

    /// A video key frame: where a player can start decoding.
    pub fn is_key_frame(&self) -> bool {
        matches!(self, Media::Video(d, _) if tag::is_key_frame(d))
    }
}

/// A stream's description, whatever protocol announced it; the fields of
/// RTMP's onMetaData that Glass's publishers set or that ffmpeg sends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamInfo {
    pub video_width: Option<u32>,
    pub video_height: Option<u32>,
    pub video_codec_id: Option<u32>,
    pub video_frame_rate: Option<f32>,
    pub video_bitrate_kbps: Option<u32>,
    pub audio_codec_id: Option<u32>,
    pub audio_bitrate_kbps: Option<u32>,
    pub audio_sample_rate: Option<u32>,
    pub audio_channels: Option<u32>,
    pub audio_is_stereo: Option<bool>,
    pub encoder: Option<String>,
}
