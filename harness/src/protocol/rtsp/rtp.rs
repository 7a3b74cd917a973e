//! RTP packets (RFC 3550): the fixed header, CSRCs, the extension and
//! padding skipped, the payload borrowed; and the sequence-number
//! bookkeeping a receiver keeps (extended highest sequence number,
//! packets expected and lost). Parsing never panics: packets come off the
//! wire and may be anything.

/// A parsed RTP packet, borrowing its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Why bytes are not an RTP packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("{0} bytes: shorter than an RTP header (12)")]
    Short(usize),
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("the header (CSRCs, extension) runs past the packet's {0} bytes")]
    Truncated(usize),
    #[error("padding of {pad} bytes in a payload of {len}")]
    Padding { pad: usize, len: usize },
}

impl<'a> RtpPacket<'a> {
    pub fn parse(b: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if b.len() < 12 {
            return Err(RtpError::Short(b.len()));
        }
        let version = b[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padding = b[0] & 0x20 != 0;
        let extension = b[0] & 0x10 != 0;
        let csrcs = usize::from(b[0] & 0x0f);
        let mut at = 12 + 4 * csrcs;
        if extension {
            let words = b
                .get(at + 2..at + 4)
                .map(|w| usize::from(u16::from_be_bytes([w[0], w[1]])))
                .ok_or(RtpError::Truncated(b.len()))?;
            at += 4 + 4 * words;
        }
        if at > b.len() {
            return Err(RtpError::Truncated(b.len()));
        }
        let mut end = b.len();
        if padding {
            let pad = usize::from(b[end - 1]);
            if pad == 0 || pad > end - at {
                return Err(RtpError::Padding { pad, len: end - at });
            }
            end -= pad;
        }
        Ok(RtpPacket {
            payload_type: b[1] & 0x7f,
            marker: b[1] & 0x80 != 0,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: &b[at..end],
        })
    }

    /// The packet's bytes: a 12-byte header (no CSRC, extension or
    /// padding) and the payload.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push(self.payload_type & 0x7f | if self.marker { 0x80 } else { 0 });
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// A receiver's view of one source's sequence numbers (RFC 3550 A.1, A.3):
/// the extended highest sequence number, and packets expected against
/// received, so lost = expected − received (duplicates can make it
/// negative, as the RFC says).
#[derive(Clone, Debug, Default)]
pub struct SequenceTracker {
    base: Option<u64>,
    /// Extended highest sequence number seen.
    highest: u64,
    received: u64,
}

/// What a packet's sequence number says, relative to those before it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The first packet, or the next one in order.
    InOrder,
    /// After a gap of this many packets (they may still come, reordered).
    Gap(u64),
    /// Older than the highest seen: reordered or duplicated.
    Late,
}

/// A jump forward of this many or more restarts the count (RFC 3550 A.1's
/// MAX_DROPOUT: a source that restarted); up to this many behind is a
/// reordered packet.
const MAX_DROPOUT: u64 = 3000;

impl SequenceTracker {
    /// Takes one packet's sequence number.
    pub fn push(&mut self, seq: u16) -> Arrival {
        self.received += 1;
        let Some(_) = self.base else {
            self.base = Some(u64::from(seq));
            self.highest = u64::from(seq);
            return Arrival::InOrder;
        };
        // RFC 3550 A.1: the distance forward from the highest seen, mod 2^16.
        let max = (self.highest & 0xffff) as u16;
        let ahead = u64::from(seq.wrapping_sub(max));
        if ahead == 0 || ahead > 0x1_0000 - MAX_DROPOUT {
            // A duplicate, or up to MAX_DROPOUT behind: reordered.
            return Arrival::Late;
        }
        let ext = self.highest + ahead;
        if ahead >= MAX_DROPOUT {
            // A jump: the source restarted its numbering; count from here.
            self.base = Some(ext);
            self.received = 1;
            self.highest = ext;
            return Arrival::InOrder;
        }
        self.highest = ext;
        match ahead - 1 {
            0 => Arrival::InOrder,
            gap => Arrival::Gap(gap),
        }
    }

    /// Packets expected: highest − first + 1.
    pub fn expected(&self) -> u64 {
        self.base.map_or(0, |b| self.highest - b + 1)
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Cumulative packets lost (expected − received, 0 when duplicates
    /// outnumber losses).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_written_packet_parses_back() {
        let p = RtpPacket {
            payload_type: 96,
            marker: true,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 7,
            payload: b"nal",
        };
        let mut b = Vec::new();
        p.write(&mut b);
        assert_eq!(RtpPacket::parse(&b).unwrap(), p);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut b = vec![0x80 | 0x20 | 0x10 | 1, 96, 0, 1, 0, 0, 0, 9, 0, 0, 0, 3];
        b.extend_from_slice(&[1, 2, 3, 4]); // a CSRC
        b.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // one extension word
        b.extend_from_slice(b"payload");
        b.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.payload, b"payload");
        assert_eq!(p.timestamp, 9);
    }

    #[test]
    fn bad_packets_say_why() {
        assert_eq!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::Short(5)));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        // Fifteen CSRCs announced in a bare header.
        let mut b = vec![0x8f, 96];
        b.resize(12, 0);
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::Truncated(12)));
        let mut b = vec![0xa0, 96];
        b.resize(13, 0);
        b[12] = 9;
        assert!(matches!(
            RtpPacket::parse(&b),
            Err(RtpError::Padding { .. })
        ));
    }

    #[test]
    fn losses_gaps_and_wraparound_are_counted() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.push(65533), Arrival::InOrder);
        assert_eq!(t.push(65534), Arrival::InOrder);
        // 65535 and 0 lost across the wrap.
        assert_eq!(t.push(1), Arrival::Gap(2));
        assert_eq!(t.push(0), Arrival::Late);
        assert_eq!(t.push(2), Arrival::InOrder);
        assert_eq!((t.expected(), t.received(), t.lost()), (6, 5, 1));
        // A 2^15 jump restarts the count rather than counting 32768 lost.
        assert_eq!(t.push(2 + 32768), Arrival::InOrder);
        assert_eq!(t.lost(), 0);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = RtpPacket::parse(&b) {
                prop_assert!(p.payload.len() <= b.len() - 12);
            }
        }

        #[test]
        fn lost_equals_the_packets_left_out(start in any::<u16>(), drop in proptest::collection::vec(any::<bool>(), 1..500)) {
            let mut t = SequenceTracker::default();
            // The first and the last are always received.
            let n = drop.len() as u64;
            let mut left_out = 0;
            for (i, &d) in drop.iter().enumerate() {
                let first_or_last = i == 0 || i + 1 == drop.len();
                if d && !first_or_last {
                    left_out += 1;
                    continue;
                }
                t.push(start.wrapping_add(i as u16));
            }
            prop_assert_eq!(t.expected(), n);
            prop_assert_eq!(t.lost(), left_out);
        }
    }
}
