//! Glass's HLS player reads an fMP4 stream: the init segment's tracks and
//! each fragment's samples, with the `mp4-atom` crate (boxes Glass did not
//! parse itself, so the relay's muxer is checked by every fragment played),
//! into the frames [`super::demux`] gives for MPEG-TS.

use std::collections::HashMap;

use mp4_atom::{Any, Buf, Codec, DecodeMaybe, Moof, Moov};

use super::demux::{DemuxError, SegmentFrame, avcc_nal_units, video_frame_of};
use crate::media::frame::Frame;

/// What the init segment says of a track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Track {
    video: bool,
    timescale: u32,
    /// `trex`'s defaults: sample duration, size, flags.
    defaults: (u32, u32, u32),
}

/// The tracks of an init segment, and the video's NAL length size.
#[derive(Clone, Debug, Default)]
pub struct Fmp4Init {
    tracks: HashMap<u32, Track>,
    length_size: usize,
}

fn err(what: impl std::fmt::Display) -> DemuxError {
    DemuxError::new(format!("fMP4: {what}"))
}

/// The top-level boxes of `bytes`, each with its offset.
fn boxes(bytes: &[u8]) -> Result<Vec<(usize, Any)>, DemuxError> {
    let mut buf = bytes;
    let mut out = Vec::new();
    while buf.has_remaining() {
        let at = bytes.len() - buf.remaining();
        match Any::decode_maybe(&mut buf).map_err(err)? {
            Some(b) => out.push((at, b)),
            None => return Err(err(format!("a box cut short at byte {at}"))),
        }
    }
    Ok(out)
}

/// Reads an init segment (`ftyp` + `moov`).
pub fn init(bytes: &[u8]) -> Result<Fmp4Init, DemuxError> {
    let moov: Moov = boxes(bytes)?
        .into_iter()
        .find_map(|(_, b)| match b {
            Any::Moov(m) => Some(m),
            _ => None,
        })
        .ok_or_else(|| err("no moov in the init segment"))?;
    let mut out = Fmp4Init::default();
    let trex = moov.mvex.map(|m| m.trex).unwrap_or_default();
    for trak in &moov.trak {
        let id = trak.tkhd.track_id;
        let d = trex.iter().find(|t| t.track_id == id);
        let mut video = false;
        for codec in &trak.mdia.minf.stbl.stsd.codecs {
            if let Codec::Avc1(a) = codec {
                video = true;
                out.length_size = usize::from(a.avcc.length_size);
            }
        }
        out.tracks.insert(
            id,
            Track {
                video,
                timescale: trak.mdia.mdhd.timescale.max(1),
                defaults: d.map_or((0, 0, 0), |t| {
                    (
                        t.default_sample_duration,
                        t.default_sample_size,
                        t.default_sample_flags,
                    )
                }),
            },
        );
    }
    if !out.tracks.values().any(|t| t.video) || !matches!(out.length_size, 1 | 2 | 4) {
        return Err(err("no H.264 track with 1-, 2- or 4-byte NAL lengths"));
    }
    Ok(out)
}

/// The frames of a segment or part (`moof` + `mdat` pairs), in each
/// track's decode order.
pub fn frames(init: &Fmp4Init, bytes: &[u8]) -> Result<Vec<SegmentFrame>, DemuxError> {
    let mut out = Vec::new();
    for (at, b) in boxes(bytes)? {
        if let Any::Moof(moof) = b {
            fragment(init, &moof, at, bytes, &mut out)?;
        }
    }
    Ok(out)
}

/// The samples of one `moof` (at byte `moof_at` of `bytes`).
fn fragment(
    init: &Fmp4Init,
    moof: &Moof,
    moof_at: usize,
    bytes: &[u8],
    out: &mut Vec<SegmentFrame>,
) -> Result<(), DemuxError> {
    for traf in &moof.traf {
        let id = traf.tfhd.track_id;
        let track = init
            .tracks
            .get(&id)
            .ok_or_else(|| err(format!("track {id} is not in the init segment")))?;
        // Where data offsets count from: the moof (default-base-is-moof, or
        // no base given: the first traf's data follows its moof).
        let base = match traf.tfhd.base_data_offset {
            Some(b) => usize::try_from(b).map_err(err)?,
            None => moof_at,
        };
        let mut t = traf.tfdt.as_ref().map_or(0, |d| d.base_media_decode_time);
        let duration = traf
            .tfhd
            .default_sample_duration
            .unwrap_or(track.defaults.0);
        let size = traf.tfhd.default_sample_size.unwrap_or(track.defaults.1);
        for run in &traf.trun {
            let mut at = base
                .checked_add_signed(run.data_offset.unwrap_or(0) as isize)
                .ok_or_else(|| err("a data offset before the file"))?;
            for s in run.samples.iter() {
                let len = s.size.unwrap_or(size) as usize;
                let data = bytes
                    .get(at..at + len)
                    .ok_or_else(|| err("a sample past the fragment's end"))?;
                at += len;
                // The FLV timestamp: decode time in ms.
                let ts_ms = (u128::from(t) * 1000 / u128::from(track.timescale)) as u32;
                t = t.wrapping_add(u64::from(s.duration.unwrap_or(duration)));
                out.push(if track.video {
                    video_sample(data, init.length_size, ts_ms)
                } else {
                    SegmentFrame {
                        video: false,
                        key: false,
                        ts_ms,
                        glass: Frame::parse(data).ok(),
                        size: data.len(),
                    }
                });
            }
        }
    }
    Ok(())
}

/// A video sample: length-prefixed NAL units (those before a length past
/// its end); a Glass frame rides in a filler-data unit, raw.
fn video_sample(data: &[u8], length_size: usize, ts_ms: u32) -> SegmentFrame {
    let nals = avcc_nal_units(data, length_size).map_while(Result::ok);
    video_frame_of(nals, false, ts_ms, data.len())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use mp4_atom::{Any, Moof};

    use super::super::packager::{Packager, SegmentFormat, synthetic};
    use super::*;

    /// 9 s of Glass's synthetic stream (audio included) through an fMP4
    /// packager (`part`: LL-HLS parts), and the video messages sent.
    fn package(part: Option<Duration>) -> (Packager, Vec<synthetic::Sent>) {
        synthetic::package(SegmentFormat::Fmp4, part, 9)
    }

    #[test]
    fn glass_frames_survive_the_fmp4_packager_and_mp4_atom() {
        for part in [None, Some(Duration::from_millis(200))] {
            let (p, sent) = package(part);
            let init = init(p.init().expect("an init segment")).unwrap();
            assert_eq!(init.tracks.len(), 2, "video and audio");
            assert_eq!(init.length_size, 4);
            let mut got = Vec::new();
            let mut audio = 0;
            let mut seq = 0;
            while let Some(s) = p.segment(seq) {
                // A segment is its parts end to end, each one fragment.
                if part.is_some() {
                    let mut joined = Vec::new();
                    for part in &s.parts {
                        joined.extend(frames(&init, &part.bytes).unwrap());
                    }
                    let whole = frames(&init, &s.bytes).unwrap();
                    assert_eq!(joined.len(), whole.len());
                }
                for f in frames(&init, &s.bytes).unwrap() {
                    if f.video {
                        got.push((f.ts_ms, f.key, f.glass.map(|h| h.seq)));
                    } else {
                        audio += usize::from(f.glass.is_some());
                    }
                }
                seq += 1;
            }
            assert!(seq >= 3, "{seq} segments");
            assert!(
                got.len() > 100 && audio > 100,
                "{} video, {audio} audio",
                got.len()
            );
            synthetic::assert_a_run_of(&got, &sent);
            assert!(got.iter().all(|g| g.2.is_some()), "parts {part:?}");
        }
    }

    /// Each fragment's `tfdt` is where the previous fragment of its track
    /// ended (its base plus its samples' durations), and the first sample
    /// of a segment is a sync sample.
    #[test]
    fn fragments_are_continuous_and_segments_start_on_sync_samples() {
        let (p, _) = package(Some(Duration::from_millis(200)));
        let mut end: HashMap<u32, u64> = HashMap::new();
        let mut seq = 0;
        let mut fragments = 0;
        while let Some(s) = p.segment(seq) {
            for (i, part) in s.parts.iter().enumerate() {
                let moofs: Vec<Moof> = boxes(&part.bytes)
                    .unwrap()
                    .into_iter()
                    .filter_map(|(_, b)| match b {
                        Any::Moof(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                assert_eq!(moofs.len(), 1, "one fragment per part");
                for traf in &moofs[0].traf {
                    let id = traf.tfhd.track_id;
                    let base = traf.tfdt.as_ref().unwrap().base_media_decode_time;
                    if let Some(&e) = end.get(&id)
                        && id == super::super::fmp4::VIDEO_TRACK
                    {
                        assert_eq!(base, e, "video tfdt of segment {seq} part {i}");
                    }
                    let run = &traf.trun[0];
                    let total: u64 = run
                        .samples
                        .iter()
                        .map(|e| u64::from(e.duration.unwrap()))
                        .sum();
                    end.insert(id, base + total);
                    if i == 0 && id == super::super::fmp4::VIDEO_TRACK {
                        let first = run.samples.get(0).unwrap().flags.unwrap();
                        assert_eq!(first & 0x0001_0000, 0, "a segment starts on a sync sample");
                    }
                }
                fragments += 1;
            }
            seq += 1;
        }
        assert!(fragments > 20, "{fragments}");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let (p, _) = package(None);
        let good = init(p.init().unwrap()).unwrap();
        let seg = p.segment(1).unwrap().bytes.clone();
        let mut x = 0x9e37_79b9u32;
        for len in [0usize, 1, 7, 8, 9, 100, 1000, seg.len()] {
            // Truncated and bit-flipped fragments, and random bytes.
            let mut damaged = seg[..len.min(seg.len())].to_vec();
            for b in damaged.iter_mut().skip(8).step_by(97) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b ^= x as u8;
            }
            let _ = frames(&good, &damaged);
            let _ = init(&damaged);
            let _ = frames(&good, &seg[..len.min(seg.len())]);
        }
        assert!(init(b"").is_err());
        assert!(frames(&good, &Bytes::from_static(b"\0\0\0\x10moof")).is_err());
    }
}
