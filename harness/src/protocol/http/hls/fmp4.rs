//! A fragmented-MP4 muxer for HLS (ISO/IEC 14496-12 fragments, as RFC
//! 8216 §3.3 and LL-HLS use them): the hub's FLV tag bodies in; an init
//! segment (`ftyp` + `moov`: an H.264 track and, when the stream has audio,
//! an AAC track) and fragments (`moof` + `mdat`, one per part or segment)
//! out.
//!
//! FLV's AVC and AAC bodies are already what MP4 stores: the sequence
//! header is the `avcC` record, a frame's NAL units are length-prefixed as
//! that record says, an AAC frame is raw with its AudioSpecificConfig in
//! the sequence header. So samples are the tag bodies past their headers,
//! unchanged (Glass's frames in filler NAL units need no escaping here,
//! unlike in MPEG-TS). Both tracks count time in 90 kHz units, FLV
//! milliseconds × 90, so Glass's HLS player recovers each frame's FLV
//! timestamp exactly.
//!
//! A fragment's samples are held until it ends: `trun` lists every
//! sample's size and duration before `mdat` carries them. A video sample
//! lasts until the next one (the last one until the frame that ends the
//! fragment); an audio sample until the next one (the last one as long as
//! the one before it); each fragment's `tfdt` restates where each track is.

use bytes::Bytes;

use super::sps;
use super::ts::{Muxed, parse_avc_config};

/// Track IDs of the video and audio tracks.
pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;
/// Both tracks' timescale: 90 kHz, as MPEG-TS.
pub const TIMESCALE: u32 = 90_000;
/// AudioSpecificConfig when the stream declares none (Glass's synthetic
/// audio): AAC LC, 48 kHz, stereo, as the TS muxer's ADTS headers say.
const DEFAULT_ASC: [u8; 2] = [0x11, 0x90];
/// Sample flags: a sync sample (depends on no other), and a non-sync one.
const SYNC: u32 = 0x0200_0000;
const NON_SYNC: u32 = 0x0101_0000;
/// An audio sample's duration before two have been seen: 1024 samples at
/// 48 kHz, in 90 kHz units.
const AAC_FRAME: u32 = 1920;

/// One sample waiting for its fragment.
#[derive(Debug)]
struct Sample {
    ts_ms: u32,
    /// Composition offset (FLV's composition time), ms.
    cts_ms: i32,
    key: bool,
    data: Bytes,
}

/// fMP4 for one stream: its decoder configuration and the fragment being
/// gathered.
#[derive(Debug, Default)]
pub struct Fmp4Muxer {
    /// The `avcC` record, as the sequence header carried it.
    avcc: Option<Bytes>,
    /// The AudioSpecificConfig, if the stream sent one.
    asc: Option<Bytes>,
    audio_seen: bool,
    /// The init segment, once written (with or without an audio track).
    init: Option<Bytes>,
    has_audio: bool,
    /// `mfhd`'s sequence number of the next fragment.
    next_fragment: u32,
    video: Vec<Sample>,
    audio: Vec<Sample>,
    audio_duration: u32,
}

impl Fmp4Muxer {
    /// Takes one FLV tag body (`video` or audio) with FLV timestamp `ts_ms`
    /// into the fragment being gathered.
    pub fn push(&mut self, body: &Bytes, video: bool, ts_ms: u32) -> Muxed {
        if video {
            self.video(body, ts_ms)
        } else {
            self.audio(body, ts_ms)
        }
    }

    fn video(&mut self, body: &Bytes, ts_ms: u32) -> Muxed {
        let Some((avc, _)) = crate::media::tag::avc_header(body) else {
            return Muxed::Skipped; // not AVC
        };
        let data = body.slice(5..);
        match avc.packet_type {
            0 => {
                if parse_avc_config(&data).is_none() || self.init.is_some() {
                    // Unreadable, or a change the init segment cannot follow.
                    return Muxed::Skipped;
                }
                self.avcc = Some(data);
                return Muxed::Config;
            }
            1 => {}
            _ => return Muxed::Skipped,
        }
        if self.avcc.is_none() {
            return Muxed::Skipped;
        }
        self.video.push(Sample {
            ts_ms,
            cts_ms: avc.cts_ms,
            key: avc.key,
            data,
        });
        Muxed::Video { key: avc.key }
    }

    fn audio(&mut self, body: &Bytes, ts_ms: u32) -> Muxed {
        let (Some(&first), Some(&packet_type)) = (body.first(), body.get(1)) else {
            return Muxed::Skipped;
        };
        if first >> 4 != 10 {
            return Muxed::Skipped; // not AAC
        }
        let data = body.slice(2..);
        if packet_type == 0 {
            if data.len() < 2 || self.init.is_some() {
                return Muxed::Skipped;
            }
            self.asc = Some(data);
            return Muxed::Config;
        }
        self.audio_seen = true;
        if self.init.is_some() && !self.has_audio {
            return Muxed::Skipped; // no track for it
        }
        self.audio.push(Sample {
            ts_ms,
            cts_ms: 0,
            key: true,
            data,
        });
        Muxed::Audio
    }

    /// The init segment, once the first fragment has been written.
    pub fn init(&self) -> Option<&Bytes> {
        self.init.as_ref()
    }

    /// Ends the fragment being gathered at `end_ms` (the next video frame's
    /// timestamp) and appends it (`moof` + `mdat`) to `out`; nothing when
    /// it has no samples. The first fragment also writes the init segment,
    /// with an audio track if audio came before it.
    pub fn fragment(&mut self, out: &mut Vec<u8>, end_ms: u32) {
        if self.video.is_empty() && self.audio.is_empty() {
            return;
        }
        if self.init.is_none() {
            let Some(init) = self.init_segment() else {
                // No video configuration: nothing decodable yet.
                self.video.clear();
                self.audio.clear();
                return;
            };
            self.init = Some(init);
        }
        let video = std::mem::take(&mut self.video);
        let audio = std::mem::take(&mut self.audio);
        let video_runs = runs(&video, |_| end_ms);
        if let [.., a, b] = audio.as_slice() {
            self.audio_duration = ticks(a.ts_ms, b.ts_ms);
        }
        let last_audio = if self.audio_duration == 0 {
            AAC_FRAME
        } else {
            self.audio_duration
        };
        let audio_runs = runs(&audio, |s| s.ts_ms.wrapping_add(last_audio / 90));
        let start = out.len();
        let mut offsets = Vec::new();
        boxed(out, b"moof", |o| {
            full(o, b"mfhd", 0, 0, |o| put32(o, self.next_fragment));
            for (track, samples, entries) in [
                (VIDEO_TRACK, &video, &video_runs),
                (AUDIO_TRACK, &audio, &audio_runs),
            ] {
                let Some(first) = samples.first() else {
                    continue;
                };
                boxed(o, b"traf", |o| {
                    // default-base-is-moof: data offsets count from moof.
                    full(o, b"tfhd", 0, 0x02_0000, |o| put32(o, track));
                    full(o, b"tfdt", 1, 0, |o| {
                        o.extend_from_slice(&(u64::from(first.ts_ms) * 90).to_be_bytes())
                    });
                    // data offset, duration, size, flags, composition offset.
                    full(o, b"trun", 1, 0x0f01, |o| {
                        put32(o, samples.len() as u32);
                        offsets.push(o.len());
                        put32(o, 0); // data offset, set below
                        for e in entries.iter() {
                            for v in e {
                                put32(o, *v);
                            }
                        }
                    });
                });
            }
        });
        let moof_len = out.len() - start;
        // mdat: video samples, then audio; each trun points at its own.
        let mut data_at = moof_len + 8;
        // (`offsets` are positions in `out`, which may hold earlier bytes.)
        for (&o, samples) in offsets.iter().zip(
            [&video, &audio]
                .into_iter()
                .filter(|samples| !samples.is_empty()),
        ) {
            out[o..o + 4].copy_from_slice(&(data_at as u32).to_be_bytes());
            data_at += samples.iter().map(|s| s.data.len()).sum::<usize>();
        }
        boxed(out, b"mdat", |o| {
            for s in video.iter().chain(&audio) {
                o.extend_from_slice(&s.data);
            }
        });
        self.next_fragment = self.next_fragment.wrapping_add(1);
    }

    /// `ftyp` + `moov`, or None without the video configuration.
    fn init_segment(&mut self) -> Option<Bytes> {
        let avcc = self.avcc.clone()?;
        let cfg = parse_avc_config(&avcc)?;
        let (width, height) = cfg
            .parameter_sets
            .iter()
            .find_map(|ps| sps::dimensions(ps))
            .unwrap_or((0, 0));
        self.has_audio = self.audio_seen || self.asc.is_some();
        let asc = self.asc.clone().unwrap_or(Bytes::from_static(&DEFAULT_ASC));
        let mut out = Vec::with_capacity(1024);
        boxed(&mut out, b"ftyp", |o| {
            o.extend_from_slice(b"iso6");
            put32(o, 0);
            o.extend_from_slice(b"iso6mp41");
        });
        boxed(&mut out, b"moov", |o| {
            full(o, b"mvhd", 0, 0, |o| {
                put32s(o, &[0, 0, 1000, 0, 0x0001_0000]); // times, timescale, duration, rate
                o.extend_from_slice(&[0x01, 0x00, 0, 0]); // volume, reserved
                o.extend_from_slice(&[0; 8]);
                matrix(o);
                o.extend_from_slice(&[0; 24]);
                put32(o, 3); // next track ID
            });
            video_trak(o, width, height, &avcc);
            if self.has_audio {
                audio_trak(o, &asc);
            }
            boxed(o, b"mvex", |o| {
                let tracks: &[u32] = if self.has_audio {
                    &[VIDEO_TRACK, AUDIO_TRACK]
                } else {
                    &[VIDEO_TRACK]
                };
                for &t in tracks {
                    full(o, b"trex", 0, 0, |o| put32s(o, &[t, 1, 0, 0, 0]));
                }
            });
        });
        if !self.has_audio {
            self.audio.clear();
        }
        Some(out.into())
    }
}

/// Each sample's `trun` entry: duration (to the next sample, the last one
/// to `end(last)`), size, flags, composition offset (90 kHz).
fn runs(samples: &[Sample], end: impl Fn(&Sample) -> u32) -> Vec<[u32; 4]> {
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let next = samples.get(i + 1).map_or_else(|| end(s), |n| n.ts_ms);
            // A frame at or after the end (irregular timing): one tick.
            let duration = ticks(s.ts_ms, next);
            [
                duration.max(1),
                s.data.len() as u32,
                if s.key { SYNC } else { NON_SYNC },
                (s.cts_ms * 90) as u32,
            ]
        })
        .collect()
}

/// 90 kHz ticks from FLV time `from` to `to` (ms, wrapping; zero when `to`
/// is not after `from`).
fn ticks(from: u32, to: u32) -> u32 {
    ((to.wrapping_sub(from) as i32).max(0) as u32).saturating_mul(90)
}

fn video_trak(o: &mut Vec<u8>, width: u16, height: u16, avcc: &[u8]) {
    boxed(o, b"trak", |o| {
        tkhd(o, VIDEO_TRACK, 0, width, height);
        boxed(o, b"mdia", |o| {
            mdhd_hdlr(o, b"vide", "Glass video");
            boxed(o, b"minf", |o| {
                full(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                dinf(o);
                stbl(o, |o| {
                    boxed(o, b"avc1", |o| {
                        o.extend_from_slice(&[0; 6]);
                        put16(o, 1); // data reference index
                        o.extend_from_slice(&[0; 16]);
                        put16(o, width);
                        put16(o, height);
                        put32s(o, &[0x0048_0000, 0x0048_0000, 0]); // 72 dpi
                        put16(o, 1); // frame count
                        o.extend_from_slice(&[0; 32]); // compressor name
                        put16(o, 0x0018); // depth
                        put16(o, 0xffff);
                        boxed(o, b"avcC", |o| o.extend_from_slice(avcc));
                    });
                });
            });
        });
    });
}

fn audio_trak(o: &mut Vec<u8>, asc: &[u8]) {
    // AudioSpecificConfig: 5 bits object type, 4 bits frequency index, 4
    // bits channels.
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let freq = usize::from(((asc[0] & 0x07) << 1) | (asc[1] >> 7));
    let rate = RATES.get(freq).copied().unwrap_or(48000);
    let channels = u16::from((asc[1] >> 3) & 0x0f).max(1);
    boxed(o, b"trak", |o| {
        tkhd(o, AUDIO_TRACK, 0x0100, 0, 0);
        boxed(o, b"mdia", |o| {
            mdhd_hdlr(o, b"soun", "Glass audio");
            boxed(o, b"minf", |o| {
                full(o, b"smhd", 0, 0, |o| put32(o, 0));
                dinf(o);
                stbl(o, |o| {
                    boxed(o, b"mp4a", |o| {
                        o.extend_from_slice(&[0; 6]);
                        put16(o, 1); // data reference index
                        o.extend_from_slice(&[0; 8]);
                        put16(o, channels);
                        put16(o, 16); // sample size
                        put32(o, 0);
                        // 16.16 sample rate (rates above 65535 Hz do not fit).
                        put32(o, (rate.min(0xffff)) << 16);
                        full(o, b"esds", 0, 0, |o| esds(o, asc));
                    });
                });
            });
        });
    });
}

/// The ES descriptor: MPEG-4 audio (0x40), the AudioSpecificConfig, the
/// SL configuration MP4 files use (predefined 2).
fn esds(o: &mut Vec<u8>, asc: &[u8]) {
    let asc = &asc[..asc.len().min(100)];
    let dsi = asc.len();
    let dcd = 13 + 2 + dsi;
    let es = 3 + 2 + dcd + 3;
    o.extend_from_slice(&[0x03, es as u8, 0, 0, 0]);
    o.extend_from_slice(&[0x04, dcd as u8, 0x40, 0x15, 0, 0, 0]);
    put32s(o, &[0, 0]); // max and average bit rate: unknown
    o.extend_from_slice(&[0x05, dsi as u8]);
    o.extend_from_slice(asc);
    o.extend_from_slice(&[0x06, 1, 0x02]);
}

fn tkhd(o: &mut Vec<u8>, track: u32, volume: u16, width: u16, height: u16) {
    // Enabled, in movie.
    full(o, b"tkhd", 0, 3, |o| {
        put32s(o, &[0, 0, track, 0, 0]); // times, ID, reserved, duration
        o.extend_from_slice(&[0; 8]);
        put16(o, 0); // layer
        put16(o, 0); // alternate group
        put16(o, volume);
        put16(o, 0);
        matrix(o);
        put32(o, u32::from(width) << 16);
        put32(o, u32::from(height) << 16);
    });
}

fn mdhd_hdlr(o: &mut Vec<u8>, handler: &[u8; 4], name: &str) {
    full(o, b"mdhd", 0, 0, |o| {
        put32s(o, &[0, 0, TIMESCALE, 0]);
        put16(o, 0x55c4); // "und"
        put16(o, 0);
    });
    full(o, b"hdlr", 0, 0, |o| {
        put32(o, 0);
        o.extend_from_slice(handler);
        o.extend_from_slice(&[0; 12]);
        o.extend_from_slice(name.as_bytes());
        o.push(0);
    });
}

fn dinf(o: &mut Vec<u8>) {
    boxed(o, b"dinf", |o| {
        full(o, b"dref", 0, 0, |o| {
            put32(o, 1);
            // The media is in this file.
            full(o, b"url ", 0, 1, |_| {});
        });
    });
}

/// `stbl` with one sample entry and no samples (they are in fragments).
fn stbl(o: &mut Vec<u8>, entry: impl FnOnce(&mut Vec<u8>)) {
    boxed(o, b"stbl", |o| {
        full(o, b"stsd", 0, 0, |o| {
            put32(o, 1);
            entry(o);
        });
        full(o, b"stts", 0, 0, |o| put32(o, 0));
        full(o, b"stsc", 0, 0, |o| put32(o, 0));
        full(o, b"stsz", 0, 0, |o| put32s(o, &[0, 0]));
        full(o, b"stco", 0, 0, |o| put32(o, 0));
    });
}

/// The identity transformation matrix.
fn matrix(o: &mut Vec<u8>) {
    put32s(
        o,
        &[0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000],
    );
}

/// A box: its size (set once `body` has written it), type, body.
fn boxed(o: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let at = o.len();
    o.extend_from_slice(&[0; 4]);
    o.extend_from_slice(kind);
    body(o);
    let size = (o.len() - at) as u32;
    o[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// A full box: a box whose body starts with a version and 24 bits of flags.
fn full(o: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    boxed(o, kind, |o| {
        put32(o, (u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(o);
    });
}

fn put16(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn put32(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn put32s(o: &mut Vec<u8>, vs: &[u32]) {
    for &v in vs {
        put32(o, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::source::sequence_header;

    /// Timestamps from a publisher may jump or go back: durations clamp
    /// (zero back, saturated ahead) and nothing overflows.
    #[test]
    fn jumps_and_steps_back_in_time_clamp() {
        assert_eq!(ticks(1000, 1033), 33 * 90);
        assert_eq!(ticks(1000, 900), 0);
        assert_eq!(ticks(0, i32::MAX as u32), u32::MAX);
        let mut m = Fmp4Muxer::default();
        assert_eq!(m.push(&sequence_header(), true, 0), Muxed::Config);
        let frame = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88]);
        let aac = Bytes::from_static(&[0xaf, 1, 0x21, 0x10]);
        let mut out = Vec::new();
        for ts in [0u32, 4_000_000_000, 10, u32::MAX, 5] {
            m.push(&frame, true, ts);
            m.push(&aac, false, ts);
            m.push(&aac, false, ts.wrapping_sub(7));
            m.fragment(&mut out, ts.wrapping_add(33));
        }
        assert!(m.init().is_some() && out.len() > 100);
        // Fragments appended to one buffer read back (data offsets count
        // from each fragment's moof).
        let init = super::super::fmp4_demux::init(m.init().unwrap()).unwrap();
        let frames = super::super::fmp4_demux::frames(&init, &out).unwrap();
        assert_eq!(frames.iter().filter(|f| f.video).count(), 5);
        assert_eq!(frames.iter().filter(|f| !f.video).count(), 10);
    }
}
