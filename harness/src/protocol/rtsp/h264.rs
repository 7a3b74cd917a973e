//! H.264 over RTP (RFC 6184, packetization-mode 1): the depacketizer an
//! RTSP ingest needs (single NAL unit packets, STAP-A aggregates and FU-A
//! fragments back into access units) and the packetizer Glass's own RTSP
//! publisher needs (a NAL unit per packet when it fits, FU-A fragments
//! when not). Sans-IO and panic-free: packets come off the wire.
//!
//! An access unit is complete at the marker bit or when the timestamp
//! moves on. A sequence gap, a fragment without its start, an aggregate
//! whose lengths run past its end or an unsupported packet type marks the
//! access unit damaged (a player treats it as not decodable until the next
//! key frame) instead of passing on a broken picture as whole.

use super::rtp::RtpPacket;

/// NAL unit types this module looks at.
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Bounds on what one access unit may hold, so a hostile stream cannot
/// grow memory without limit.
pub const MAX_AU_BYTES: usize = 8 << 20;
pub const MAX_AU_NALS: usize = 1024;

/// The NAL unit type of a NAL unit's first byte.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// One picture's NAL units, as the depacketizer rebuilt them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessUnit {
    /// Its RTP timestamp (90 kHz).
    pub timestamp: u32,
    pub nals: Vec<Vec<u8>>,
    /// Part of it was lost or malformed.
    pub damaged: bool,
}

impl AccessUnit {
    /// It holds an IDR slice: decodable on its own.
    pub fn is_key(&self) -> bool {
        self.nals.iter().any(|n| nal_type(n) == NAL_IDR)
    }

    /// Its NAL units with 4-byte big-endian lengths (AVCC, as an FLV or
    /// MP4 video sample carries them).
    pub fn to_avcc(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes() + 4 * self.nals.len());
        for n in &self.nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        out
    }

    fn bytes(&self) -> usize {
        self.nals.iter().map(Vec::len).sum()
    }
}

/// Rebuilds access units from one track's RTP packets, in arrival order.
#[derive(Debug, Default)]
pub struct Depacketizer {
    au: Option<AccessUnit>,
    /// The FU-A fragment being rebuilt (its reconstructed NAL header first).
    fragment: Option<Vec<u8>>,
    /// Packets of types this module does not take (STAP-B, MTAP, FU-B).
    pub unsupported: u64,
}

impl Depacketizer {
    /// Takes a packet; `gap` says packets before it were lost (from the
    /// sequence numbers). Returns the access units it completed.
    pub fn push(&mut self, p: &RtpPacket, gap: bool) -> Vec<AccessUnit> {
        let mut done = Vec::new();
        if self
            .au
            .as_ref()
            .is_some_and(|au| au.timestamp != p.timestamp)
        {
            // The timestamp moved on: the last unit's marker was lost.
            done.extend(self.finish());
        }
        let au = self.au.get_or_insert_with(|| AccessUnit {
            timestamp: p.timestamp,
            ..AccessUnit::default()
        });
        if gap {
            au.damaged = true;
            self.fragment = None;
        }
        let b = p.payload;
        match nal_type(b) {
            0 | 30 | 31 => au.damaged = true,
            1..=23 => add(au, b.to_vec()),
            STAP_A => {
                let mut rest = &b[1..];
                while !rest.is_empty() {
                    let Some(len) = rest
                        .get(..2)
                        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                    else {
                        au.damaged = true;
                        break;
                    };
                    match rest.get(2..2 + len) {
                        Some(nal) if len > 0 => add(au, nal.to_vec()),
                        _ => {
                            au.damaged = true;
                            break;
                        }
                    }
                    rest = &rest[2 + len..];
                }
            }
            FU_A => match b.get(1) {
                None => au.damaged = true,
                Some(&fu) => {
                    let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                    let data = &b[2..];
                    if start {
                        if self.fragment.is_some() {
                            // The last fragment's end was lost.
                            au.damaged = true;
                        }
                        let mut nal = vec![(b[0] & 0xe0) | (fu & 0x1f)];
                        nal.extend_from_slice(data);
                        self.fragment = Some(nal);
                    } else {
                        match &mut self.fragment {
                            Some(nal) if nal.len() + data.len() <= MAX_AU_BYTES => {
                                nal.extend_from_slice(data)
                            }
                            _ => {
                                au.damaged = true;
                                self.fragment = None;
                            }
                        }
                    }
                    if end && let Some(nal) = self.fragment.take() {
                        add(au, nal);
                    }
                }
            },
            _ => {
                self.unsupported += 1;
                au.damaged = true;
            }
        }
        if p.marker {
            done.extend(self.finish());
        }
        done
    }

    /// The access unit in progress, ended (at a marker, a new timestamp,
    /// or the end of the stream).
    pub fn finish(&mut self) -> Option<AccessUnit> {
        let mut au = self.au.take()?;
        if self.fragment.take().is_some() {
            au.damaged = true;
        }
        (!au.nals.is_empty() || au.damaged).then_some(au)
    }
}

/// Adds a NAL unit within the bounds (past them the unit is damaged).
fn add(au: &mut AccessUnit, nal: Vec<u8>) {
    if au.nals.len() >= MAX_AU_NALS || au.bytes() + nal.len() > MAX_AU_BYTES {
        au.damaged = true;
    } else {
        au.nals.push(nal);
    }
}

/// The RTP payloads of one access unit's NAL units for payloads of at most
/// `mtu` bytes (≥ 3): a NAL unit per payload when it fits, else FU-A
/// fragments. The last payload is the one to send with the marker bit.
pub fn packetize<'a>(nals: impl IntoIterator<Item = &'a [u8]>, mtu: usize) -> Vec<Vec<u8>> {
    let mtu = mtu.max(3);
    let mut out = Vec::new();
    for nal in nals {
        let Some((&header, body)) = nal.split_first() else {
            continue;
        };
        if nal.len() <= mtu {
            out.push(nal.to_vec());
            continue;
        }
        let indicator = (header & 0xe0) | FU_A;
        let chunks: Vec<&[u8]> = body.chunks(mtu - 2).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut fu = header & 0x1f;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == chunks.len() {
                fu |= 0x40;
            }
            let mut p = Vec::with_capacity(chunk.len() + 2);
            p.extend_from_slice(&[indicator, fu]);
            p.extend_from_slice(chunk);
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(payload: &[u8], ts: u32, marker: bool) -> RtpPacket<'_> {
        RtpPacket {
            payload_type: 96,
            marker,
            sequence: 0,
            timestamp: ts,
            ssrc: 1,
            payload,
        }
    }

    /// Feeds `payloads` of one access unit, the last with the marker.
    fn depacketize(payloads: &[Vec<u8>], ts: u32) -> Vec<AccessUnit> {
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            out.extend(d.push(&packet(p, ts, i + 1 == payloads.len()), false));
        }
        out
    }

    #[test]
    fn fragments_and_single_units_come_back_whole() {
        let sps = vec![0x67, 1, 2, 3];
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..3000).map(|i| i as u8))
            .collect();
        let payloads = packetize([sps.as_slice(), idr.as_slice()], 1200);
        assert_eq!(payloads.len(), 1 + 3);
        assert_eq!(payloads[1][0] & 0x1f, FU_A);
        let aus = depacketize(&payloads, 9000);
        assert_eq!(aus.len(), 1);
        assert_eq!(aus[0].nals, vec![sps, idr]);
        assert!(aus[0].is_key() && !aus[0].damaged);
        assert_eq!(&aus[0].to_avcc()[..8], &[0, 0, 0, 4, 0x67, 1, 2, 3]);
    }

    #[test]
    fn an_aggregate_packet_splits_into_its_units() {
        let stap = [STAP_A | 0x60, 0, 2, 0x67, 9, 0, 3, 0x68, 8, 8];
        let aus = depacketize(&[stap.to_vec()], 0);
        assert_eq!(aus[0].nals, vec![vec![0x67, 9], vec![0x68, 8, 8]]);
        // A length past the end: the unit is damaged, what parsed is kept.
        let bad = [STAP_A, 0, 2, 0x67, 9, 0, 30, 0x68];
        let aus = depacketize(&[bad.to_vec()], 0);
        assert!(aus[0].damaged);
        assert_eq!(aus[0].nals, vec![vec![0x67, 9]]);
    }

    #[test]
    fn a_lost_fragment_or_marker_damages_only_its_unit() {
        let big: Vec<u8> = std::iter::once(0x41).chain(0..250).collect();
        let frags = packetize([big.as_slice()], 100);
        let mut d = Depacketizer::default();
        // The middle fragment is lost.
        assert!(d.push(&packet(&frags[0], 1, false), false).is_empty());
        let aus = d.push(&packet(&frags[2], 1, true), true);
        assert!(aus[0].damaged && aus[0].nals.is_empty());
        // The next unit's marker is lost: it ends when the timestamp moves.
        assert!(d.push(&packet(&[0x41, 1], 2, false), false).is_empty());
        let aus = d.push(&packet(&[0x41, 2], 3, true), false);
        assert_eq!(aus.len(), 2);
        assert!(!aus[0].damaged && aus[0].timestamp == 2 && aus[1].timestamp == 3);
        // A fragment that never started.
        let aus = d.push(&packet(&frags[1], 4, true), false);
        assert!(aus[0].damaged);
    }

    proptest! {
        #[test]
        fn packetize_then_depacketize_is_the_identity(
            nals in proptest::collection::vec(
                (1u8..24, proptest::collection::vec(any::<u8>(), 0..3000)), 1..6),
            mtu in 3usize..1500,
        ) {
            let nals: Vec<Vec<u8>> = nals
                .into_iter()
                .map(|(t, body)| std::iter::once(0x60 | t).chain(body).collect())
                .collect();
            let payloads = packetize(nals.iter().map(Vec::as_slice), mtu);
            prop_assert!(payloads.iter().all(|p| p.len() <= mtu));
            let aus = depacketize(&payloads, 5);
            prop_assert_eq!(aus.len(), 1);
            prop_assert!(!aus[0].damaged);
            prop_assert_eq!(&aus[0].nals, &nals);
        }

        #[test]
        fn any_payloads_never_panic(payloads in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..200), any::<bool>(), any::<bool>(), 0u32..3), 0..40)) {
            let mut d = Depacketizer::default();
            for (p, marker, gap, ts) in &payloads {
                for au in d.push(&packet(p, *ts, *marker), *gap) {
                    prop_assert!(au.nals.len() <= MAX_AU_NALS);
                }
            }
            d.finish();
        }
    }
}
