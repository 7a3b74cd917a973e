//! HLS ingest (sans-IO): MPEG-TS segments a publisher pushes over HTTP
//! (`ffmpeg -f hls -method PUT http://HOST:8080/APP/KEY/index.m3u8`, the
//! third push protocol beside RTMP and RTSP) into the FLV tag bodies the hub
//! carries: H.264 Annex B access units become length-prefixed NAL units
//! (SPS and PPS become the AVC sequence header, sent again when they
//! change; access unit delimiters are dropped; a filler-data unit's payload
//! is unescaped, so Glass's frames come back as they went into Glass's
//! packager), ADTS frames become raw AAC
//! frames after an AAC sequence header made from the first ADTS header.
//! Timestamps are the DTS (audio: PTS) in ms; a video frame's composition
//! time is PTS − DTS.
//!
//! A segment is published when its PUT has arrived whole, so an HLS
//! publisher's frames reach the relay a segment's duration after capture:
//! the latency HLS ingest costs.

use super::demux::{DemuxError, nal_units, pes_packets};
use super::ts::unescape;
use crate::media::frame::{Frame, FrameKind};
use crate::media::tag;
use crate::relay::{Media, StreamInfo};
use bytes::Bytes;

/// AAC frames' samples (ADTS carries 1024-sample frames).
const AAC_SAMPLES: u64 = 1024;
const ADTS_RATES: [u64; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// One publisher's ingest: the decoder configuration sent so far.
#[derive(Debug, Default)]
pub struct TsIngest {
    /// The SPS and PPS of the last AVC sequence header sent.
    avc: Option<(Vec<u8>, Vec<u8>)>,
    /// The AudioSpecificConfig sent.
    asc: Option<[u8; 2]>,
    /// The stream's description (what RTMP's onMetaData says) was sent.
    described: bool,
}

impl TsIngest {
    /// The messages of one pushed segment, in its order.
    pub fn segment(&mut self, bytes: &[u8]) -> Result<Vec<Media>, DemuxError> {
        let mut out = Vec::new();
        for pes in pes_packets(bytes)? {
            if pes.video {
                self.video(&pes.data, pes.pts, pes.dts, &mut out);
            } else {
                self.audio(&pes.data, pes.pts, &mut out);
            }
        }
        // The description first, once the first segment has shown the
        // configuration (players such as ffmpeg's FLV reader size their
        // streams from it).
        if !self.described
            && let Some((sps, _)) = &self.avc
        {
            let size = super::sps::dimensions(sps);
            let audio = self.asc.map(|a| {
                let freq = usize::from(((a[0] & 0x07) << 1) | (a[1] >> 7));
                (
                    ADTS_RATES.get(freq).copied().unwrap_or(0),
                    u32::from((a[1] >> 3) & 0x0f),
                )
            });
            out.insert(
                0,
                Media::Info(StreamInfo {
                    video_width: size.map(|s| u32::from(s.0)),
                    video_height: size.map(|s| u32::from(s.1)),
                    video_codec_id: Some(7),
                    audio_codec_id: audio.map(|_| 10),
                    audio_sample_rate: audio.map(|a| a.0 as u32),
                    audio_channels: audio.map(|a| a.1),
                    audio_is_stereo: audio.map(|a| a.1 == 2),
                    encoder: Some("Glass HLS ingest".into()),
                    ..StreamInfo::default()
                }),
            );
            self.described = true;
        }
        Ok(out)
    }

    fn video(&mut self, es: &[u8], pts: u64, dts: u64, out: &mut Vec<Media>) {
        let ts = ms(dts);
        let (mut sps, mut pps, mut key) = (None, None, false);
        let mut body = vec![0x27, 1, 0, 0, 0];
        for nal in nal_units(es) {
            match nal[0] & 0x1f {
                7 => sps = Some(nal.to_vec()),
                8 => pps = Some(nal.to_vec()),
                9 => continue, // access unit delimiter
                // Filler data: Glass's frames ride there with their bytes
                // raw in FLV, escaped in Annex B (the TS muxer's
                // convention); a real encoder's filler (0xff bytes) is
                // unchanged by unescaping.
                12 => {
                    let raw = unescape(&nal[1..]);
                    key |= Frame::parse(&raw).is_ok_and(|h| h.kind == FrameKind::I);
                    body.extend_from_slice(&(raw.len() as u32 + 1).to_be_bytes());
                    body.push(nal[0]);
                    body.extend_from_slice(&raw);
                }
                kind => {
                    key |= kind == 5;
                    body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    body.extend_from_slice(nal);
                }
            }
        }
        if let (Some(sps), Some(pps)) = (sps, pps)
            && self.avc.as_ref() != Some(&(sps.clone(), pps.clone()))
            && let Some(config) = tag::avc_config(&sps, &pps)
        {
            out.push(Media::Video(config, ts));
            self.avc = Some((sps, pps));
        }
        if self.avc.is_none() || body.len() == 5 {
            return; // nothing decodable yet, or an empty access unit
        }
        if key {
            body[0] = 0x17;
        }
        // Composition time: PTS − DTS in ms, a signed 24-bit field.
        let cts = ((pts.wrapping_sub(dts) & ((1 << 33) - 1)) as i64 / 90).clamp(0, 0x7f_ffff);
        body[2..5].copy_from_slice(&(cts as u32).to_be_bytes()[1..]);
        out.push(Media::Video(Bytes::from(body), ts));
    }

    fn audio(&mut self, es: &[u8], pts: u64, out: &mut Vec<Media>) {
        let mut at = 0;
        let mut n = 0u64;
        while at + 7 <= es.len() {
            let h = &es[at..at + 7];
            if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
                return;
            }
            let header = if h[1] & 1 == 0 { 9 } else { 7 };
            let len =
                (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
            let Some(raw) = es.get(at + header..at + len) else {
                return;
            };
            // AudioSpecificConfig: object type (profile + 1), frequency
            // index, channels.
            let (profile, freq, channels) = (
                h[2] >> 6,
                (h[2] >> 2) & 0x0f,
                ((h[2] & 1) << 2) | (h[3] >> 6),
            );
            let Some(&rate) = ADTS_RATES.get(usize::from(freq)) else {
                return;
            };
            let asc = [
                ((profile + 1) << 3) | (freq >> 1),
                ((freq & 1) << 7) | (channels << 3),
            ];
            let ts = ms(pts).wrapping_add((n * AAC_SAMPLES * 1000 / rate) as u32);
            if self.asc != Some(asc) {
                out.push(Media::Audio(tag::aac_body(0, &asc), ts));
                self.asc = Some(asc);
            }
            out.push(Media::Audio(tag::aac_body(1, raw), ts));
            at += len.max(header);
            n += 1;
        }
    }
}

/// A 90 kHz timestamp in ms (wrapping as RTMP's 32-bit ms do).
fn ms(t: u64) -> u32 {
    (t / 90) as u32
}

#[cfg(test)]
mod tests {
    use super::super::packager::{SegmentFormat, synthetic};
    use super::*;
    use crate::media::source;

    /// Glass's synthetic stream through the TS packager (as a publisher's
    /// HLS muxer would write it) and back through the ingest: the same
    /// frames, timestamps and sequence header come out.
    #[test]
    fn a_packaged_stream_comes_back_as_the_tags_that_went_in() {
        let (p, sent) = synthetic::package(SegmentFormat::Ts, None, 5);
        let mut ingest = TsIngest::default();
        let mut got = Vec::new();
        let mut configs = 0;
        let mut audio = 0;
        let mut seq = 0;
        while let Some(s) = p.segment(seq) {
            for m in ingest.segment(&s.bytes).unwrap() {
                let Some((video, body, ts)) = m.as_av() else {
                    assert_eq!(seq, 0, "the description comes once, first");
                    continue;
                };
                if m.is_config() {
                    configs += 1;
                } else if video {
                    let key = tag::is_key_frame(body);
                    got.push((ts, key, source::unpack(body, true).map(|h| h.seq)));
                } else {
                    audio += usize::from(source::unpack(body, false).is_some());
                }
            }
            seq += 1;
        }
        // One AVC and one AAC sequence header, not one per segment.
        assert_eq!(configs, 2);
        assert!(
            got.len() > 60 && audio > 100,
            "{} video, {audio} audio",
            got.len()
        );
        synthetic::assert_a_run_of(&got, &sent);
    }

    #[test]
    fn garbage_is_an_error_or_nothing_never_a_panic() {
        let mut ingest = TsIngest::default();
        let mut x = 0x2545_f491u32;
        for len in [0usize, 1, 188, 376, 1880, 5000] {
            let v: Vec<u8> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if i % 188 == 0 { 0x47 } else { x as u8 }
                })
                .collect();
            let _ = ingest.segment(&v);
        }
    }
}
