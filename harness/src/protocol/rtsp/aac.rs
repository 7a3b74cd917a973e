//! AAC over RTP as RFC 3640's `MPEG4-GENERIC` in `AAC-hbr` mode (what
//! ffmpeg's RTSP muxer sends: `sizelength=13; indexlength=3;
//! indexdeltalength=3`): a 16-bit AU-headers-length in bits, then per access
//! unit a header of its size and index, then the access units back to
//! back. A unit larger than one packet is fragmented over packets that
//! carry its one header each, the last with the marker bit. Sans-IO and
//! panic-free.

use super::rtp::RtpPacket;

/// AAC samples per access unit (frame), the RTP timestamp step.
pub const SAMPLES_PER_FRAME: u32 = 1024;
/// The largest access unit kept (AAC frames are a few hundred bytes).
pub const MAX_FRAME: usize = 1 << 16;

/// The `fmtp` parameters that shape the AU headers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HbrParams {
    pub size_length: u32,
    pub index_length: u32,
    pub index_delta_length: u32,
}

impl Default for HbrParams {
    /// AAC-hbr's values.
    fn default() -> Self {
        HbrParams {
            size_length: 13,
            index_length: 3,
            index_delta_length: 3,
        }
    }
}

/// One AAC frame and its RTP timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacFrame {
    pub timestamp: u32,
    pub data: Vec<u8>,
}

/// Reads bits from the front of a slice, most significant first.
struct Bits<'a> {
    b: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.b.get(self.at / 8)?;
            let bit = (byte >> (7 - self.at % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.at += 1;
        }
        Some(v)
    }
}

/// Rebuilds AAC frames from one track's packets.
#[derive(Debug, Default)]
pub struct Depacketizer {
    params: HbrParams,
    /// A fragmented frame: its size, timestamp and the bytes so far.
    fragment: Option<(usize, u32, Vec<u8>)>,
    /// Packets that could not be read (bad headers, sizes past the end).
    pub malformed: u64,
}

impl Depacketizer {
    pub fn new(params: HbrParams) -> Depacketizer {
        Depacketizer {
            params,
            ..Depacketizer::default()
        }
    }

    /// Takes a packet; `gap` says packets before it were lost (a fragment
    /// in progress is then dropped). Returns the frames it completed.
    pub fn push(&mut self, p: &RtpPacket, gap: bool) -> Vec<AacFrame> {
        if gap {
            self.fragment = None;
        }
        match self.read(p) {
            Some(frames) => frames,
            None => {
                self.malformed += 1;
                self.fragment = None;
                Vec::new()
            }
        }
    }

    fn read(&mut self, p: &RtpPacket) -> Option<Vec<AacFrame>> {
        let b = p.payload;
        let headers_bits = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
        let headers_bytes = headers_bits.div_ceil(8);
        let headers = b.get(2..2 + headers_bytes)?;
        let mut data = b.get(2 + headers_bytes..)?;
        let HbrParams {
            size_length,
            index_length,
            index_delta_length,
        } = self.params;
        let mut bits = Bits { b: headers, at: 0 };
        let mut sizes = Vec::new();
        while bits.at < headers_bits {
            let size = bits.read(size_length)? as usize;
            let index_bits = if sizes.is_empty() {
                index_length
            } else {
                index_delta_length
            };
            bits.read(index_bits)?;
            sizes.push(size);
            if sizes.len() > 64 {
                return None;
            }
        }
        // One header whose unit is longer than the packet: a fragment.
        if let [size] = sizes[..]
            && (size > data.len() || self.fragment.is_some())
        {
            if size > MAX_FRAME {
                return None;
            }
            let (want, ts, mut bytes) = match self.fragment.take() {
                Some(f) if f.0 == size && f.1 == p.timestamp => f,
                _ => (size, p.timestamp, Vec::new()),
            };
            bytes.extend_from_slice(data);
            if bytes.len() > want {
                return None;
            }
            if bytes.len() == want && p.marker {
                return Some(vec![AacFrame {
                    timestamp: ts,
                    data: bytes,
                }]);
            }
            self.fragment = Some((want, ts, bytes));
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(sizes.len());
        for (i, size) in sizes.into_iter().enumerate() {
            let frame = data.get(..size)?;
            out.push(AacFrame {
                timestamp: p
                    .timestamp
                    .wrapping_add(SAMPLES_PER_FRAME.wrapping_mul(i as u32)),
                data: frame.to_vec(),
            });
            data = &data[size..];
        }
        Some(out)
    }
}

/// The largest frame an AAC-hbr header can size (13 bits).
pub const MAX_HBR_FRAME: usize = (1 << 13) - 1;

/// The RTP payloads of one AAC frame in AAC-hbr: one payload with its AU
/// header when it fits in `mtu` bytes, else fragments each with the whole
/// frame's header (the last is the one to send with the marker bit). None
/// for an empty frame or one over [`MAX_HBR_FRAME`].
pub fn packetize(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    if frame.is_empty() || frame.len() > MAX_HBR_FRAME {
        return Vec::new();
    }
    let header = |size: usize| {
        // AU-headers-length 16 bits, one header: 13 bits size, 3 bits index 0.
        let h = ((size as u16) & 0x1fff) << 3;
        [0, 16, (h >> 8) as u8, h as u8]
    };
    let room = mtu.max(5) - 4;
    frame
        .chunks(room)
        .map(|chunk| {
            let mut p = header(frame.len()).to_vec();
            p.extend_from_slice(chunk);
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(payload: &[u8], ts: u32, marker: bool) -> RtpPacket<'_> {
        RtpPacket {
            payload_type: 97,
            marker,
            sequence: 0,
            timestamp: ts,
            ssrc: 2,
            payload,
        }
    }

    #[test]
    fn several_units_in_one_packet_get_their_own_timestamps() {
        // Two headers: sizes 3 and 2 (index 0, delta 0).
        let p = [0, 32, 0, 3 << 3, 0, 2 << 3, 1, 2, 3, 4, 5];
        let mut d = Depacketizer::default();
        let f = d.push(&packet(&p, 100, true), false);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].timestamp, f[0].data.as_slice()),
            (100, &[1, 2, 3][..])
        );
        assert_eq!((f[1].timestamp, f[1].data.as_slice()), (1124, &[4, 5][..]));
    }

    #[test]
    fn a_fragmented_unit_comes_back_whole_and_a_lost_part_drops_it() {
        let frame: Vec<u8> = (0..700).map(|i| i as u8).collect();
        let parts = packetize(&frame, 300);
        assert_eq!(parts.len(), 3);
        let mut d = Depacketizer::default();
        assert!(d.push(&packet(&parts[0], 7, false), false).is_empty());
        assert!(d.push(&packet(&parts[1], 7, false), false).is_empty());
        let f = d.push(&packet(&parts[2], 7, true), false);
        assert_eq!(
            f,
            vec![AacFrame {
                timestamp: 7,
                data: frame.clone()
            }]
        );
        // The middle part lost: nothing, and the next frame is fine.
        assert!(d.push(&packet(&parts[0], 8, false), false).is_empty());
        assert!(d.push(&packet(&parts[2], 8, true), true).is_empty());
        let small = packetize(&[9, 9], 300);
        assert_eq!(d.push(&packet(&small[0], 9, true), false)[0].data, [9, 9]);
    }

    #[test]
    fn sizes_past_the_end_are_malformed_not_a_panic() {
        let mut d = Depacketizer::default();
        assert!(d.push(&packet(&[0, 16, 0xff], 0, true), false).is_empty());
        assert!(
            d.push(&packet(&[0, 16, 0, 5 << 3, 1, 2], 0, true), false)
                .is_empty()
        );
        assert_eq!(d.malformed, 1);
    }

    proptest! {
        #[test]
        fn any_frame_survives_packetizing(frame in proptest::collection::vec(any::<u8>(), 1..3000), mtu in 5usize..1500) {
            let parts = packetize(&frame, mtu);
            let mut d = Depacketizer::default();
            let mut out = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                out.extend(d.push(&packet(p, 42, i + 1 == parts.len()), false));
            }
            prop_assert_eq!(out, vec![AacFrame { timestamp: 42, data: frame }]);
        }

        #[test]
        fn any_payload_never_panics(ps in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..100), any::<bool>()), 0..20)) {
            let mut d = Depacketizer::default();
            for (p, m) in &ps {
                d.push(&packet(p, 0, *m), false);
            }
        }
    }
}
