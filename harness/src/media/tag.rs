//! The bits of an FLV audio or video tag body that Glass reads, in one place.
//!
//! Every protocol carries media as FLV tag bodies (exactly RTMP's audio and
//! video message bodies): byte 0 holds the frame type (high nibble: 1 = key
//! frame) and codec (low nibble: 7 = AVC) for video, or the sound format
//! (high nibble: 10 = AAC) for audio; byte 1 is the AVC or AAC packet type
//! (0 = sequence header, i.e. decoder configuration; 1 = a frame, AVC NALUs
//! or a raw AAC frame; 2 = end of sequence).

use bytes::Bytes;

/// AVC or AAC packet type of a sequence header (decoder configuration).
const PACKET_CONFIG: u8 = 0;
/// AVC or AAC packet type of a frame.
const PACKET_FRAME: u8 = 1;
const FRAME_TYPE_KEY: u8 = 1;
const CODEC_AVC: u8 = 7;
const SOUND_AAC: u8 = 10;

/// An AVC (video) or AAC (audio) sequence header: decoder configuration.
pub fn is_sequence_header(data: &[u8], video: bool) -> bool {
    data.len() >= 2
        && data[1] == PACKET_CONFIG
        && if video {
            data[0] & 0x0f == CODEC_AVC
        } else {
            data[0] >> 4 == SOUND_AAC
        }
}

/// A frame (AVC NALUs or a raw AAC frame), not configuration or end of
/// sequence.
pub fn is_frame(data: &[u8]) -> bool {
    data.len() >= 2 && data[1] == PACKET_FRAME
}

/// A video tag whose frame type says key frame, configuration included
/// (a sequence header is sent as a key-frame tag).
pub fn is_key_tag(video: bool, data: &[u8]) -> bool {
    video && data.first().is_some_and(|b| b >> 4 == FRAME_TYPE_KEY)
}

/// A key frame: a video frame tag of frame type 1 (where a decoder can
/// start, and where the relay's GOP cache starts over).
pub fn is_key_frame(data: &[u8]) -> bool {
    is_frame(data) && is_key_tag(true, data)
}

/// The header of an AVC video tag body: whether it is a key frame, its
/// AVC packet type (0 configuration, 1 NAL units), its composition time
/// (PTS − DTS, ms, a signed 24-bit field).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AvcHeader {
    pub key: bool,
    pub packet_type: u8,
    pub cts_ms: i32,
}

/// `body`'s AVC header and what follows it; None when it is not AVC or
/// too short.
pub fn avc_header(body: &[u8]) -> Option<(AvcHeader, &[u8])> {
    let (&first, &packet_type, cts) = (body.first()?, body.get(1)?, body.get(2..5)?);
    if first & 0x0f != CODEC_AVC {
        return None;
    }
    let header = AvcHeader {
        key: first >> 4 == FRAME_TYPE_KEY,
        packet_type,
        cts_ms: i32::from_be_bytes([cts[0], cts[1], cts[2], 0]) >> 8,
    };
    Some((header, &body[5..]))
}

/// An AVC sequence header (FLV video tag body) from SPS and PPS.
pub fn avc_config(sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    if sps.len() < 4 || pps.is_empty() || sps.len() > 0xffff || pps.len() > 0xffff {
        return None;
    }
    let mut b = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    b.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    b.extend_from_slice(sps);
    b.push(1);
    b.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    b.extend_from_slice(pps);
    Some(Bytes::from(b))
}

/// An AAC FLV tag body: packet type 0 (config) or 1 (a raw frame).
pub fn aac_body(packet_type: u8, data: &[u8]) -> Bytes {
    let mut b = vec![0xAF, packet_type];
    b.extend_from_slice(data);
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bits_of_each_kind_of_tag() {
        let avc_config = [0x17, 0x00, 0, 0, 0, 0x01];
        let key = [0x17, 0x01, 0, 0, 0];
        let inter = [0x27, 0x01, 0, 0, 0];
        let end = [0x17, 0x02, 0, 0, 0];
        let aac_config = [0xAF, 0x00, 0x12, 0x10];
        let aac = [0xAF, 0x01, 0x21];
        assert!(is_sequence_header(&avc_config, true) && !is_frame(&avc_config));
        assert!(is_key_tag(true, &avc_config) && !is_key_frame(&avc_config));
        assert!(is_frame(&key) && is_key_frame(&key) && !is_sequence_header(&key, true));
        assert!(is_frame(&inter) && !is_key_frame(&inter) && !is_key_tag(true, &inter));
        assert!(!is_frame(&end) && !is_sequence_header(&end, true));
        assert!(is_sequence_header(&aac_config, false) && !is_key_tag(false, &aac_config));
        assert!(is_frame(&aac) && !is_sequence_header(&aac, false));
        // Too short to say: nothing.
        for short in [&[][..], &[0x17][..]] {
            assert!(!is_frame(short) && !is_key_frame(short));
            assert!(!is_sequence_header(short, true) && !is_sequence_header(short, false));
        }
    }
}
