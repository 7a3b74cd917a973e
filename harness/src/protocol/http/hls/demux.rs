//! Glass's HLS player reads a segment: MPEG-TS to PES packets with the
//! `mpeg2ts` crate (a demuxer Glass did not write, so the relay's muxer is
//! checked by every segment played), then each access unit's frame: the
//! Glass frame in a filler-data NAL unit or an ADTS frame, or a foreign
//! (real H.264/AAC) frame with its FLV timestamp recovered.

use mpeg2ts::pes::{PesPacketReader, ReadPesPacket};
use mpeg2ts::ts::TsPacketReader;

use super::ts::{flv_ms_of, unescape};
use crate::media::frame::{Frame, FrameHeader};

/// One frame of a segment.
#[derive(Clone, Debug)]
pub struct SegmentFrame {
    pub video: bool,
    /// A video access unit with an IDR slice, or a Glass key frame.
    pub key: bool,
    /// The FLV timestamp the relay packaged it with, ms.
    pub ts_ms: u32,
    /// The Glass frame it carries, if it is one.
    pub glass: Option<FrameHeader>,
    /// Its elementary stream bytes (Annex B access unit or ADTS payload).
    pub size: usize,
}

/// Why a segment could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a readable segment: {0}")]
pub struct DemuxError(String);

impl DemuxError {
    pub fn new(what: String) -> DemuxError {
        DemuxError(what)
    }

    /// The `mpeg2ts` crate's error, its first line: the rest is a
    /// backtrace (its `trackable` history), not for a log or a response.
    pub fn mpeg2ts(e: &mpeg2ts::Error) -> DemuxError {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("");
        let what = first.split(" (at ").next().unwrap_or(first);
        DemuxError(format!("MPEG-TS: {what}"))
    }
}

/// A TS segment's elementary stream data, a PES packet at a time.
#[derive(Debug)]
pub(super) struct Pes {
    /// Video (H.264), or audio.
    pub video: bool,
    /// Its PTS and DTS (the PTS when it has no DTS), 90 kHz.
    pub pts: u64,
    pub dts: u64,
    pub data: Vec<u8>,
}

/// The video and audio PES packets of a TS segment that carry a PTS.
pub(super) fn pes_packets(segment: &[u8]) -> Result<Vec<Pes>, DemuxError> {
    let mut reader = PesPacketReader::new(TsPacketReader::new(segment));
    let mut out = Vec::new();
    loop {
        let pes = match reader.read_pes_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => return Err(DemuxError::mpeg2ts(&e)),
        };
        let id = pes.header.stream_id.as_u8();
        let video = (0xe0..=0xef).contains(&id);
        if !video && !(0xc0..=0xdf).contains(&id) {
            continue;
        }
        let Some(pts) = pes.header.pts.map(|t| t.as_u64()) else {
            continue;
        };
        out.push(Pes {
            video,
            pts,
            dts: pes.header.dts.map_or(pts, |t| t.as_u64()),
            data: pes.data,
        });
    }
    Ok(out)
}

/// The frames of a TS segment, in decode order per stream (video, then
/// audio as the PES packets came).
pub fn frames(segment: &[u8]) -> Result<Vec<SegmentFrame>, DemuxError> {
    let mut out = Vec::new();
    for pes in pes_packets(segment)? {
        if pes.video {
            out.push(video_frame(&pes.data, flv_ms_of(pes.dts)));
        } else {
            out.extend(audio_frames(&pes.data, flv_ms_of(pes.pts)));
        }
    }
    Ok(out)
}

/// The NAL units of an Annex B access unit.
pub(super) fn nal_units(es: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // The next start code (and a 4-byte start code's extra zero).
            let mut e = s - 3;
            while e > 0 && es[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(es.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter(|(s, e)| s < e)
        .map(move |(s, e)| &es[s..e])
}

fn video_frame(es: &[u8], ts_ms: u32) -> SegmentFrame {
    video_frame_of(nal_units(es), true, ts_ms, es.len())
}

/// A video frame of `size` bytes from its NAL units: a key frame if one is
/// an IDR slice or carries a Glass I frame (in a filler-data unit, its
/// payload emulation-escaped when `escaped`: Annex B; raw in AVCC).
pub(super) fn video_frame_of<'a>(
    nals: impl IntoIterator<Item = &'a [u8]>,
    escaped: bool,
    ts_ms: u32,
    size: usize,
) -> SegmentFrame {
    let mut key = false;
    let mut glass = None;
    for nal in nals {
        match nal.first().map(|h| h & 0x1f) {
            Some(5) => key = true,
            Some(12) if glass.is_none() => {
                glass = if escaped {
                    Frame::parse(&unescape(&nal[1..]))
                } else {
                    Frame::parse(&nal[1..])
                }
                .ok();
            }
            _ => {}
        }
    }
    SegmentFrame {
        video: true,
        key: key || glass.is_some_and(|h| h.kind == crate::media::frame::FrameKind::I),
        ts_ms,
        glass,
        size,
    }
}

/// The NAL units of an AVCC sample or FLV AVC body (`length_size`-byte
/// big-endian lengths), each `Err` from a length that runs past the end on.
pub(super) fn avcc_nal_units(
    data: &[u8],
    length_size: usize,
) -> impl Iterator<Item = Result<&[u8], ()>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + length_size > data.len() {
            return None;
        }
        let len = data[at..at + length_size]
            .iter()
            .fold(0usize, |l, &b| (l << 8) | usize::from(b));
        at += length_size;
        let nal = at.checked_add(len).and_then(|end| data.get(at..end));
        // After a bad length nothing more can be read.
        at = if nal.is_some() { at + len } else { data.len() };
        Some(nal.ok_or(()))
    })
}

/// The ADTS frames of an audio PES packet (the first at its timestamp, the
/// rest 1024 samples apart are not split out: Glass's muxer writes one
/// frame per packet).
fn audio_frames(es: &[u8], ts_ms: u32) -> Vec<SegmentFrame> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 7 <= es.len() {
        let h = &es[at..at + 7];
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            break;
        }
        let header = if h[1] & 1 == 0 { 9 } else { 7 }; // with a CRC: 9
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let Some(payload) = es.get(at + header..at + len) else {
            break;
        };
        out.push(SegmentFrame {
            video: false,
            key: false,
            ts_ms,
            glass: Frame::parse(payload).ok(),
            size: payload.len(),
        });
        at += len.max(header);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::packager::{SegmentFormat, synthetic};
    use super::*;

    /// Glass's synthetic stream through the packager and back: every frame
    /// of every finished segment comes back with its header.
    #[test]
    fn glass_frames_survive_the_packager_and_the_demuxer() {
        let (p, sent) = synthetic::package(SegmentFormat::Ts, None, 9);
        let mut got = Vec::new();
        let mut seq = 0;
        while let Some(s) = p.segment(seq) {
            for f in frames(&s.bytes).unwrap() {
                if f.video {
                    got.push((f.ts_ms, f.key, f.glass.map(|h| h.seq)));
                }
            }
            seq += 1;
        }
        assert!(seq >= 3, "{seq} segments");
        assert!(got.len() > 100);
        // What came back is what went in, from the first key frame on.
        synthetic::assert_a_run_of(&got, &sent);
        assert!(got.iter().all(|g| g.2.is_some()));
    }

    #[test]
    fn garbage_is_an_error_or_nothing_never_a_panic() {
        let mut x = 0x9e37_79b9u32;
        for len in [0usize, 1, 187, 188, 189, 376, 1000, 5000] {
            let mut v = Vec::with_capacity(len);
            for i in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Sync bytes where packets start, so the reader goes deeper.
                v.push(if i % 188 == 0 { 0x47 } else { x as u8 });
            }
            let _ = frames(&v);
        }
    }
}
