//! An MPEG-TS muxer for HLS segments (ISO/IEC 13818-1): the hub's FLV tag
//! bodies in, 188-byte packets out. H.264 goes out as Annex B access units
//! (an access unit delimiter first; SPS and PPS before each IDR) on
//! [`VIDEO_PID`] with the PCR; AAC as ADTS frames on [`AUDIO_PID`]; PAT and
//! PMT start each segment. Timestamps are the FLV milliseconds × 90 (mod
//! 2^33), as nginx-rtmp writes them, so a player can recover the FLV
//! timestamp exactly ([`flv_ms_of`]).
//!
//! Glass's own frames ride in filler-data NAL units (`media::source`);
//! their bytes are raw, so the muxer adds emulation prevention to those
//! units (Annex B has no lengths: a start code inside would cut the unit)
//! and Glass's HLS player removes it ([`unescape`]).

/// The program map table's PID, and the video and audio PIDs.
pub const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x100;
pub const AUDIO_PID: u16 = 0x101;
const PACKET: usize = 188;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_AAC: u8 = 0x0f;
const FILLER_NAL: u8 = 12;
const MOD33: u64 = 1 << 33;

/// The decoder configuration the muxer needs from the sequence headers.
#[derive(Clone, Debug, Default)]
pub(super) struct AvcConfig {
    /// SPS and PPS NAL units, in the record's order.
    pub parameter_sets: Vec<Vec<u8>>,
    /// Bytes of each NAL unit's length in the FLV body (1, 2 or 4).
    pub length_size: usize,
}

/// What an FLV tag body gave the muxer.
#[derive(Debug, PartialEq, Eq)]
pub enum Muxed {
    /// A video frame written (`key`: an IDR, where a segment may start).
    Video {
        key: bool,
    },
    Audio,
    /// Decoder configuration kept (written with the frames that need it).
    Config,
    /// Not muxable: no configuration yet, an unknown codec, a damaged tag.
    Skipped,
}

/// MPEG-TS for one stream: its continuity counters and decoder
/// configuration carry over from segment to segment.
#[derive(Debug, Default)]
pub struct TsMuxer {
    avc: Option<AvcConfig>,
    /// AAC: profile (object type − 1), sampling frequency index, channels.
    aac: Option<(u8, u8, u8)>,
    /// Continuity counters of PAT, PMT, video, audio.
    cc: [u8; 4],
}

impl TsMuxer {
    /// PAT and PMT: what a segment starts with, so each one decodes alone.
    pub fn tables(&mut self, out: &mut Vec<u8>) {
        // PAT: program 1 → PMT_PID.
        let pat = [0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01];
        let mut body = pat.to_vec();
        body.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
        self.section(out, 0, 0x00, &body);
        // PMT: PCR on the video PID; H.264 and AAC.
        let mut body = vec![0x00, 0x01, 0xc1, 0x00, 0x00];
        body.extend_from_slice(&(0xe000 | VIDEO_PID).to_be_bytes());
        body.extend_from_slice(&[0xf0, 0x00]); // no program info
        for (kind, pid) in [(STREAM_TYPE_H264, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)] {
            body.push(kind);
            body.extend_from_slice(&(0xe000 | pid).to_be_bytes());
            body.extend_from_slice(&[0xf0, 0x00]);
        }
        self.section(out, 1, 0x02, &body);
    }

    /// A PSI section (table id, length, `body`, CRC) in one packet.
    fn section(&mut self, out: &mut Vec<u8>, which: usize, table_id: u8, body: &[u8]) {
        let pid = if which == 0 { 0 } else { PMT_PID };
        let len = body.len() + 4; // + CRC
        let mut sec = vec![table_id, 0xb0 | (len >> 8) as u8, len as u8];
        sec.extend_from_slice(body);
        let crc = crc32_mpeg(&sec);
        sec.extend_from_slice(&crc.to_be_bytes());
        let mut p = Vec::with_capacity(PACKET);
        p.extend_from_slice(&[0x47, 0x40 | (pid >> 8) as u8, pid as u8]);
        p.push(0x10 | self.next_cc(which));
        p.push(0); // pointer field
        p.extend_from_slice(&sec);
        p.resize(PACKET, 0xff);
        out.extend_from_slice(&p);
    }

    fn next_cc(&mut self, which: usize) -> u8 {
        let c = self.cc[which];
        self.cc[which] = (c + 1) & 0x0f;
        c
    }

    /// Muxes one FLV tag body (`video` or audio) with FLV timestamp `ts_ms`.
    pub fn push(&mut self, out: &mut Vec<u8>, video: bool, body: &[u8], ts_ms: u32) -> Muxed {
        if video {
            self.video(out, body, ts_ms)
        } else {
            self.audio(out, body, ts_ms)
        }
    }

    fn video(&mut self, out: &mut Vec<u8>, body: &[u8], ts_ms: u32) -> Muxed {
        let Some((avc, data)) = crate::media::tag::avc_header(body) else {
            return Muxed::Skipped; // not AVC
        };
        match avc.packet_type {
            0 => {
                return match parse_avc_config(data) {
                    Some(c) => {
                        self.avc = Some(c);
                        Muxed::Config
                    }
                    None => Muxed::Skipped,
                };
            }
            1 => {}
            _ => return Muxed::Skipped,
        }
        let Some(cfg) = &self.avc else {
            return Muxed::Skipped;
        };
        let key = avc.key;
        let cts = i64::from(avc.cts_ms);
        let mut es = Vec::with_capacity(data.len() + 64);
        es.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]); // access unit delimiter
        if key {
            for ps in &cfg.parameter_sets {
                es.extend_from_slice(&[0, 0, 0, 1]);
                es.extend_from_slice(ps);
            }
        }
        for nal in super::demux::avcc_nal_units(data, cfg.length_size) {
            let Ok(nal) = nal else {
                return Muxed::Skipped; // a length past the tag's end
            };
            let Some(&header) = nal.first() else { continue };
            // SPS, PPS and AUD come from the configuration and above.
            if matches!(header & 0x1f, 7..=9) {
                continue;
            }
            es.extend_from_slice(&[0, 0, 1]);
            if header & 0x1f == FILLER_NAL {
                es.push(header);
                escape_into(&nal[1..], &mut es);
            } else {
                es.extend_from_slice(nal);
            }
        }
        let dts = u64::from(ts_ms) * 90 % MOD33;
        let pts = (i64::from(ts_ms) + cts).max(0) as u64 * 90 % MOD33;
        self.pes(out, 2, 0xe0, pts, Some(dts), &es, true);
        Muxed::Video { key }
    }

    fn audio(&mut self, out: &mut Vec<u8>, body: &[u8], ts_ms: u32) -> Muxed {
        let (Some(&first), Some(&packet_type)) = (body.first(), body.get(1)) else {
            return Muxed::Skipped;
        };
        if first >> 4 != 10 {
            return Muxed::Skipped; // not AAC
        }
        let data = &body[2..];
        if packet_type == 0 {
            // AudioSpecificConfig: 5 bits object type, 4 bits frequency
            // index, 4 bits channels.
            let [a, b, ..] = *data else {
                return Muxed::Skipped;
            };
            let object = a >> 3;
            let freq = ((a & 0x07) << 1) | (b >> 7);
            let channels = (b >> 3) & 0x0f;
            if object == 0 || object > 4 || freq > 12 {
                return Muxed::Skipped; // ADTS carries AAC Main/LC/SSR/LTP only
            }
            self.aac = Some((object - 1, freq, channels));
            return Muxed::Config;
        }
        // Without a configuration (Glass's synthetic audio has none): AAC LC,
        // 48 kHz, stereo in the ADTS headers.
        let (profile, freq, channels) = self.aac.unwrap_or((1, 3, 2));
        let len = data.len() + 7;
        if len >= 1 << 13 {
            return Muxed::Skipped;
        }
        let mut es = Vec::with_capacity(len);
        es.extend_from_slice(&[
            0xff,
            0xf1, // MPEG-4, layer 0, no CRC
            (profile << 6) | (freq << 2) | (channels >> 2),
            ((channels & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | 0x1f,
            0xfc,
        ]);
        es.extend_from_slice(data);
        let pts = u64::from(ts_ms) * 90 % MOD33;
        self.pes(out, 3, 0xc0, pts, None, &es, false);
        Muxed::Audio
    }

    /// One PES packet split into TS packets on `which`'s PID; the first
    /// carries the PCR (video) and the last is padded with adaptation
    /// field stuffing.
    #[allow(clippy::too_many_arguments)]
    fn pes(
        &mut self,
        out: &mut Vec<u8>,
        which: usize,
        stream_id: u8,
        pts: u64,
        dts: Option<u64>,
        es: &[u8],
        pcr: bool,
    ) {
        let pid = if which == 2 { VIDEO_PID } else { AUDIO_PID };
        let mut pes = Vec::with_capacity(es.len() + 19);
        pes.extend_from_slice(&[0, 0, 1, stream_id]);
        let header_len: usize = if dts.is_some() { 10 } else { 5 };
        let pes_len = 3 + header_len + es.len();
        // Video: 0 (unbounded); audio: its length when it fits.
        let len_field = if stream_id == 0xe0 || pes_len > 0xffff {
            0
        } else {
            pes_len as u16
        };
        pes.extend_from_slice(&len_field.to_be_bytes());
        pes.push(0x84); // data alignment
        pes.push(if dts.is_some() { 0xc0 } else { 0x80 });
        pes.push(header_len as u8);
        write_timestamp(&mut pes, if dts.is_some() { 3 } else { 2 }, pts);
        if let Some(d) = dts {
            write_timestamp(&mut pes, 1, d);
        }
        pes.extend_from_slice(es);
        let mut rest = &pes[..];
        let mut first = true;
        while !rest.is_empty() {
            // The adaptation field's flags and fields: the PCR (= the DTS:
            // the segment starts decodable) on the first packet of video.
            let mut fields = Vec::new();
            if first && pcr {
                let base = dts.unwrap_or(pts);
                fields.push(0x10);
                fields.extend_from_slice(&[
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    ((base & 1) << 7) as u8 | 0x7e,
                    0,
                ]);
            }
            let room = PACKET
                - 4
                - if fields.is_empty() {
                    0
                } else {
                    1 + fields.len()
                };
            let (adaptation, n) = if rest.len() >= room {
                ((!fields.is_empty()).then_some(fields), room)
            } else {
                // The last packet: stuffing fills it (an adaptation field of
                // length L takes L + 1 bytes).
                let len = PACKET - 4 - rest.len() - 1;
                if len > 0 && fields.is_empty() {
                    fields.push(0x00);
                }
                fields.resize(len, 0xff);
                (Some(fields), rest.len())
            };
            self.packet(out, pid, which, first, adaptation.as_deref(), &rest[..n]);
            rest = &rest[n..];
            first = false;
        }
    }

    /// One TS packet: header, adaptation field (its length byte, then
    /// `adaptation`), payload.
    fn packet(
        &mut self,
        out: &mut Vec<u8>,
        pid: u16,
        which: usize,
        start: bool,
        adaptation: Option<&[u8]>,
        payload: &[u8],
    ) {
        let at = out.len();
        out.push(0x47);
        out.push(if start { 0x40 } else { 0 } | (pid >> 8) as u8);
        out.push(pid as u8);
        let control = if adaptation.is_some() { 0x30 } else { 0x10 };
        out.push(control | self.next_cc(which));
        if let Some(a) = adaptation {
            out.push(a.len() as u8);
            out.extend_from_slice(a);
        }
        out.extend_from_slice(payload);
        debug_assert_eq!(out.len() - at, PACKET);
    }
}

/// A 33-bit PTS or DTS with its 4-bit prefix and marker bits.
fn write_timestamp(out: &mut Vec<u8>, prefix: u8, t: u64) {
    out.push((prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1);
    out.push((t >> 22) as u8);
    out.push((((t >> 15) as u8) << 1) | 1);
    out.push((t >> 7) as u8);
    out.push(((t as u8) << 1) | 1);
}

/// The AVCDecoderConfigurationRecord's parameter sets and NAL length size.
pub(super) fn parse_avc_config(r: &[u8]) -> Option<AvcConfig> {
    let length_size = usize::from(r.get(4)? & 0x03) + 1;
    if length_size == 3 {
        return None;
    }
    let mut sets = Vec::new();
    let mut at = 5;
    for mask in [0x1f, 0xff] {
        let count = r.get(at)? & mask;
        at += 1;
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([*r.get(at)?, *r.get(at + 1)?]));
            sets.push(r.get(at + 2..at + 2 + len)?.to_vec());
            at += 2 + len;
        }
    }
    Some(AvcConfig {
        parameter_sets: sets,
        length_size,
    })
}

/// Appends `raw` with H.264 emulation prevention: an 0x03 after any two
/// zero bytes that a byte ≤ 3 follows.
fn escape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in raw {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// A NAL unit's payload without its emulation prevention bytes.
pub fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// The FLV timestamp (ms, as a u32 like RTMP's) a TS timestamp was made
/// from: `ts` = ms × 90 mod 2^33, so ms ≡ (ts / 2) × 45⁻¹ (mod 2^32).
pub fn flv_ms_of(ts: u64) -> u32 {
    ((ts / 2) as u32).wrapping_mul(INV45)
}

/// 45⁻¹ mod 2^32 (45 is odd, so it has one).
const INV45: u32 = {
    // Newton's iteration doubles the correct low bits each step.
    let mut x: u32 = 45;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u32.wrapping_sub(45u32.wrapping_mul(x)));
        i += 1;
    }
    x
};

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, no reflection), of PSI sections.
fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flv_timestamp_comes_back_from_the_ts_timestamp() {
        assert_eq!(45u32.wrapping_mul(INV45), 1);
        for ms in [
            0u32,
            1,
            33,
            1_000,
            95_443_717,
            95_443_718,
            u32::MAX / 2,
            u32::MAX,
        ] {
            let ts = u64::from(ms) * 90 % MOD33;
            assert_eq!(flv_ms_of(ts), ms, "{ms}");
        }
    }

    #[test]
    fn escaping_round_trips_and_leaves_no_start_code() {
        let raw = [0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 7, 0, 0];
        let mut esc = Vec::new();
        escape_into(&raw, &mut esc);
        assert!(!esc.windows(3).any(|w| w == [0, 0, 1] || w == [0, 0, 0]));
        assert_eq!(unescape(&esc), raw);
    }

    #[test]
    fn crc_of_a_known_pat() {
        // ffmpeg's PAT for program 1 → PMT 0x1000 (its CRC is 2A B1 04 B2).
        let sec = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(crc32_mpeg(&sec), 0x2ab1_04b2);
    }
}
