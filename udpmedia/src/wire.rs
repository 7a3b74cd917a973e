//! The wire format: every packet starts with a magic byte, its type and the
//! session id; integers are big-endian. Parsing borrows from the datagram,
//! checks every length against what is there and never panics.
//!
//! ```text
//! common   magic 0xA7 | type u8 | session u32
//! hello    client_nonce [16] | proof_len u8 proof | role u8 | latency_ms u16 | key_len u8 key
//! challenge server_nonce [16] | client_nonce [16]        (auth.rs: the token never travels)
//! accept   latency_ms u16
//! reject   code u8 | reason_len u8 reason
//! data     seq u32 | send_us u32 | xflags u8 | PROTECTED
//!          PROTECTED = frame u32 | frag u16 | frags u16 | flags u8 | ts u32 | payload
//! fec      scheme u8 | base u32 | count u16 | stride u16 | index u16 | total u16 | len_xor u16 | payload
//! nack     n u8 | n × (pid u32 | blp u16)              (RFC 4585 generic NACK)
//! feedback base u32 | count u16 | report_us u32 | count × u16 arrival  (RFC 8888 style)
//! keepalive rtt_us u32 | next_seq u32   (sender: its RTT and the next sequence number, so tail losses show)
//! close
//! ```
//!
//! FEC protects PROTECTED (everything but the sequence number, which the FEC
//! packet's position gives, and the send time, which only congestion control
//! reads). Audio packets with RED carry, after their own payload, copies of
//! earlier audio frames: `primary_len u16 primary | n u8 | n × (frame u32 | ts u32 | len u16 data)`.

use crate::error::WireError;

pub const MAGIC: u8 = 0xA7;
pub const COMMON_LEN: usize = 6;
/// seq, send time, transmission flags.
pub const DATA_FIXED_LEN: usize = 9;
/// frame, fragment, fragment count, flags, timestamp.
pub const PROTECTED_HEADER_LEN: usize = 13;
pub const DATA_HEADER_LEN: usize = COMMON_LEN + DATA_FIXED_LEN + PROTECTED_HEADER_LEN;
/// Offset of the FEC-protected part in a data datagram.
pub const PROTECTED_OFFSET: usize = COMMON_LEN + DATA_FIXED_LEN;
pub const FEC_HEADER_LEN: usize = COMMON_LEN + 15;
/// A frame is split into at most this many packets.
pub const MAX_FRAGMENTS: u16 = 4096;
/// NACK entries per packet (each asks for up to 17 packets).
pub const MAX_NACK_ENTRIES: usize = 64;
/// Packets one feedback report covers.
pub const MAX_FEEDBACK_PACKETS: usize = 1024;
/// Feedback arrival offsets are in units of 250 µs (as TWCC's).
pub const FEEDBACK_TICK_US: u32 = 250;
/// "Not received" in a feedback report.
pub const NOT_RECEIVED: u16 = u16::MAX;

/// Media flags inside the protected header.
pub mod flags {
    pub const VIDEO: u8 = 1;
    pub const KEY: u8 = 2;
    /// The payload carries redundant earlier audio frames.
    pub const RED: u8 = 4;
}
/// Transmission flags (not protected).
pub const XFLAG_RETRANSMIT: u8 = 1;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    Hello = 1,
    Accept = 2,
    Reject = 3,
    Data = 4,
    Fec = 5,
    Nack = 6,
    Feedback = 7,
    Keepalive = 8,
    Close = 9,
    Challenge = 10,
}

/// What the client wants the session for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The client sends media (a publisher).
    Publish,
    /// The client receives media (a player).
    Play,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Fresh per connection: names the client's challenge.
    pub client_nonce: &'a [u8; 16],
    /// Empty on the first hello; the answer to the server's challenge after.
    pub proof: &'a [u8],
    pub role: Role,
    pub latency_ms: u16,
    pub key: &'a [u8],
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Data<'a> {
    pub seq: u32,
    pub send_us: u32,
    pub retransmit: bool,
    pub protected: &'a [u8],
}

/// The protected part of a data packet, parsed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Media<'a> {
    pub frame: u32,
    pub frag: u16,
    pub frags: u16,
    pub flags: u8,
    pub timestamp: u32,
    pub payload: &'a [u8],
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FecScheme {
    XorRow = 1,
    XorColumn = 2,
    ReedSolomon = 3,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fec<'a> {
    pub scheme: FecScheme,
    /// First protected sequence number.
    pub base: u32,
    /// Packets protected (XOR: in the group; RS: originals in the block).
    pub count: u16,
    /// XOR: distance between protected sequence numbers.
    pub stride: u16,
    /// RS: which recovery shard this is.
    pub index: u16,
    /// RS: recovery shards of the block.
    pub total: u16,
    /// XOR: the XOR of the protected lengths.
    pub len_xor: u16,
    pub payload: &'a [u8],
}

/// One generic NACK entry: `pid` and each set bit `i` of `blp` (pid + 1 + i).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NackEntry {
    pub pid: u32,
    pub blp: u16,
}

impl NackEntry {
    pub fn seqs(self) -> impl Iterator<Item = u32> {
        std::iter::once(self.pid).chain(
            (0..16u32)
                .filter(move |i| self.blp & (1 << i) != 0)
                .map(move |i| self.pid.wrapping_add(i + 1)),
        )
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Feedback<'a> {
    pub base: u32,
    pub report_us: u32,
    /// `count` big-endian u16s.
    arrivals: &'a [u8],
}

impl<'a> Feedback<'a> {
    pub fn count(&self) -> usize {
        self.arrivals.len() / 2
    }

    /// (sequence number, µs before the report it arrived, if it did).
    pub fn arrivals(&self) -> impl Iterator<Item = (u32, Option<u32>)> + 'a {
        let base = self.base;
        self.arrivals
            .chunks_exact(2)
            .enumerate()
            .map(move |(i, c)| {
                let v = u16::from_be_bytes([c[0], c[1]]);
                let seq = base.wrapping_add(i as u32);
                (
                    seq,
                    (v != NOT_RECEIVED).then(|| u32::from(v) * FEEDBACK_TICK_US),
                )
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Hello(Hello<'a>),
    Accept {
        latency_ms: u16,
    },
    Reject {
        code: u8,
        reason: &'a [u8],
    },
    Data(Data<'a>),
    Fec(Fec<'a>),
    Nack(Vec<NackEntry>),
    Feedback(Feedback<'a>),
    Keepalive {
        rtt_us: u32,
        next_seq: u32,
    },
    Close,
    Challenge {
        server_nonce: &'a [u8; 16],
        client_nonce: &'a [u8; 16],
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub session: u32,
    pub body: Body<'a>,
}

/// A role's byte in a hello.
pub fn role_byte(role: Role) -> u8 {
    match role {
        Role::Publish => 1,
        Role::Play => 2,
    }
}

/// Reject codes.
pub const REJECT_TOKEN: u8 = 1;
pub const REJECT_KEY: u8 = 2;
pub const REJECT_BUSY: u8 = 3;

/// A bounds-checked reader.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Malformed {
                what: self.what,
                detail: format!("needs {n} more bytes, has {}", self.buf.len()),
            });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn nonce(&mut self) -> Result<&'a [u8; 16], WireError> {
        Ok(self.take(16)?.try_into().expect("take gives 16 bytes"))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    fn bad(&self, detail: String) -> WireError {
        WireError::Malformed {
            what: self.what,
            detail,
        }
    }
}

/// Parses one datagram.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, WireError> {
    if buf.len() < COMMON_LEN {
        return Err(WireError::Truncated(buf.len()));
    }
    if buf[0] != MAGIC {
        return Err(WireError::BadMagic(buf[0]));
    }
    let ty = buf[1];
    let session = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
    let mut r = Reader {
        buf: &buf[COMMON_LEN..],
        what: "packet",
    };
    let body = match ty {
        1 => {
            r.what = "hello";
            let client_nonce = r.nonce()?;
            let n = r.u8()? as usize;
            let proof = r.take(n)?;
            let role = match r.u8()? {
                1 => Role::Publish,
                2 => Role::Play,
                x => return Err(r.bad(format!("unknown role {x}"))),
            };
            let latency_ms = r.u16()?;
            let n = r.u8()? as usize;
            let key = r.take(n)?;
            Body::Hello(Hello {
                client_nonce,
                proof,
                role,
                latency_ms,
                key,
            })
        }
        2 => {
            r.what = "accept";
            Body::Accept {
                latency_ms: r.u16()?,
            }
        }
        3 => {
            r.what = "reject";
            let code = r.u8()?;
            let n = r.u8()? as usize;
            Body::Reject {
                code,
                reason: r.take(n)?,
            }
        }
        4 => {
            r.what = "data";
            let seq = r.u32()?;
            let send_us = r.u32()?;
            let x = r.u8()?;
            let protected = r.rest();
            // The protected header must be there and sane.
            media(protected)?;
            Body::Data(Data {
                seq,
                send_us,
                retransmit: x & XFLAG_RETRANSMIT != 0,
                protected,
            })
        }
        5 => {
            r.what = "fec";
            let scheme = match r.u8()? {
                1 => FecScheme::XorRow,
                2 => FecScheme::XorColumn,
                3 => FecScheme::ReedSolomon,
                x => return Err(r.bad(format!("unknown scheme {x}"))),
            };
            let fec = Fec {
                scheme,
                base: r.u32()?,
                count: r.u16()?,
                stride: r.u16()?,
                index: r.u16()?,
                total: r.u16()?,
                len_xor: r.u16()?,
                payload: r.rest(),
            };
            if fec.count == 0 || fec.count > 256 || fec.stride == 0 || fec.stride > 256 {
                return Err(r.bad(format!(
                    "count {} / stride {} out of range",
                    fec.count, fec.stride
                )));
            }
            if scheme == FecScheme::ReedSolomon
                && (fec.total == 0
                    || fec.total > 256
                    || fec.index >= fec.total
                    || !fec.payload.len().is_multiple_of(2))
            {
                return Err(r.bad(format!(
                    "shard {} of {}, {} bytes",
                    fec.index,
                    fec.total,
                    fec.payload.len()
                )));
            }
            Body::Fec(fec)
        }
        6 => {
            r.what = "nack";
            let n = r.u8()? as usize;
            if n > MAX_NACK_ENTRIES {
                return Err(r.bad(format!("{n} entries; at most {MAX_NACK_ENTRIES}")));
            }
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(NackEntry {
                    pid: r.u32()?,
                    blp: r.u16()?,
                });
            }
            Body::Nack(v)
        }
        7 => {
            r.what = "feedback";
            let base = r.u32()?;
            let count = r.u16()? as usize;
            let report_us = r.u32()?;
            if count > MAX_FEEDBACK_PACKETS {
                return Err(r.bad(format!("{count} packets; at most {MAX_FEEDBACK_PACKETS}")));
            }
            let arrivals = r.take(count * 2)?;
            Body::Feedback(Feedback {
                base,
                report_us,
                arrivals,
            })
        }
        8 => {
            r.what = "keepalive";
            Body::Keepalive {
                rtt_us: r.u32()?,
                next_seq: r.u32()?,
            }
        }
        9 => Body::Close,
        10 => {
            r.what = "challenge";
            Body::Challenge {
                server_nonce: r.nonce()?,
                client_nonce: r.nonce()?,
            }
        }
        x => return Err(WireError::UnknownType(x)),
    };
    Ok(Packet { session, body })
}

/// Parses a data packet's protected part.
pub fn media(p: &[u8]) -> Result<Media<'_>, WireError> {
    let mut r = Reader {
        buf: p,
        what: "data",
    };
    let m = Media {
        frame: r.u32()?,
        frag: r.u16()?,
        frags: r.u16()?,
        flags: r.u8()?,
        timestamp: r.u32()?,
        payload: r.rest(),
    };
    if m.frags == 0 || m.frags > MAX_FRAGMENTS || m.frag >= m.frags {
        return Err(r.bad(format!("fragment {} of {}", m.frag, m.frags)));
    }
    Ok(m)
}

/// An earlier audio frame carried by a RED packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RedBlock<'a> {
    pub frame: u32,
    pub timestamp: u32,
    pub data: &'a [u8],
}

/// Splits a RED payload into the primary frame and the redundant ones.
pub fn red(payload: &[u8]) -> Result<(&[u8], Vec<RedBlock<'_>>), WireError> {
    let mut r = Reader {
        buf: payload,
        what: "red",
    };
    let n = r.u16()? as usize;
    let primary = r.take(n)?;
    let count = r.u8()? as usize;
    if count > 4 {
        return Err(r.bad(format!("{count} redundant blocks; at most 4")));
    }
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let frame = r.u32()?;
        let timestamp = r.u32()?;
        let n = r.u16()? as usize;
        blocks.push(RedBlock {
            frame,
            timestamp,
            data: r.take(n)?,
        });
    }
    Ok((primary, blocks))
}

/// Writers: each appends one packet to `out`.
pub mod write {
    use super::*;

    fn common(out: &mut Vec<u8>, ty: PacketType, session: u32) {
        out.push(MAGIC);
        out.push(ty as u8);
        out.extend_from_slice(&session.to_be_bytes());
    }

    pub fn hello(
        out: &mut Vec<u8>,
        client_nonce: &[u8; 16],
        proof: &[u8],
        role: Role,
        latency_ms: u16,
        key: &[u8],
    ) {
        common(out, PacketType::Hello, 0);
        let proof = &proof[..proof.len().min(255)];
        let key = &key[..key.len().min(255)];
        out.extend_from_slice(client_nonce);
        out.push(proof.len() as u8);
        out.extend_from_slice(proof);
        out.push(role_byte(role));
        out.extend_from_slice(&latency_ms.to_be_bytes());
        out.push(key.len() as u8);
        out.extend_from_slice(key);
    }

    pub fn challenge(out: &mut Vec<u8>, server_nonce: &[u8; 16], client_nonce: &[u8; 16]) {
        common(out, PacketType::Challenge, 0);
        out.extend_from_slice(server_nonce);
        out.extend_from_slice(client_nonce);
    }

    pub fn accept(out: &mut Vec<u8>, session: u32, latency_ms: u16) {
        common(out, PacketType::Accept, session);
        out.extend_from_slice(&latency_ms.to_be_bytes());
    }

    pub fn reject(out: &mut Vec<u8>, code: u8, reason: &str) {
        common(out, PacketType::Reject, 0);
        let r = &reason.as_bytes()[..reason.len().min(255)];
        out.push(code);
        out.push(r.len() as u8);
        out.extend_from_slice(r);
    }

    /// The protected part of a data packet.
    pub fn protected(
        out: &mut Vec<u8>,
        frame: u32,
        frag: u16,
        frags: u16,
        flags: u8,
        timestamp: u32,
        payload: &[u8],
    ) {
        out.extend_from_slice(&frame.to_be_bytes());
        out.extend_from_slice(&frag.to_be_bytes());
        out.extend_from_slice(&frags.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(payload);
    }

    pub fn data(
        out: &mut Vec<u8>,
        session: u32,
        seq: u32,
        send_us: u32,
        xflags: u8,
        protected: &[u8],
    ) {
        common(out, PacketType::Data, session);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&send_us.to_be_bytes());
        out.push(xflags);
        out.extend_from_slice(protected);
    }

    pub fn fec(out: &mut Vec<u8>, session: u32, f: &Fec<'_>) {
        common(out, PacketType::Fec, session);
        out.push(f.scheme as u8);
        out.extend_from_slice(&f.base.to_be_bytes());
        for v in [f.count, f.stride, f.index, f.total, f.len_xor] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(f.payload);
    }

    pub fn nack(out: &mut Vec<u8>, session: u32, entries: &[NackEntry]) {
        let entries = &entries[..entries.len().min(MAX_NACK_ENTRIES)];
        common(out, PacketType::Nack, session);
        out.push(entries.len() as u8);
        for e in entries {
            out.extend_from_slice(&e.pid.to_be_bytes());
            out.extend_from_slice(&e.blp.to_be_bytes());
        }
    }

    /// `arrivals[i]`: µs before `report_us` that `base + i` arrived, if it did.
    pub fn feedback(
        out: &mut Vec<u8>,
        session: u32,
        base: u32,
        report_us: u32,
        arrivals: &[Option<u32>],
    ) {
        let arrivals = &arrivals[..arrivals.len().min(MAX_FEEDBACK_PACKETS)];
        common(out, PacketType::Feedback, session);
        out.extend_from_slice(&base.to_be_bytes());
        out.extend_from_slice(&(arrivals.len() as u16).to_be_bytes());
        out.extend_from_slice(&report_us.to_be_bytes());
        for a in arrivals {
            let v = match a {
                Some(us) => (us / FEEDBACK_TICK_US).min(u32::from(NOT_RECEIVED) - 1) as u16,
                None => NOT_RECEIVED,
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub fn keepalive(out: &mut Vec<u8>, session: u32, rtt_us: u32, next_seq: u32) {
        common(out, PacketType::Keepalive, session);
        out.extend_from_slice(&rtt_us.to_be_bytes());
        out.extend_from_slice(&next_seq.to_be_bytes());
    }

    pub fn close(out: &mut Vec<u8>, session: u32) {
        common(out, PacketType::Close, session);
    }

    /// A RED payload: the primary frame and earlier ones.
    pub fn red(out: &mut Vec<u8>, primary: &[u8], blocks: &[RedBlock<'_>]) {
        out.extend_from_slice(&(primary.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(&primary[..primary.len().min(u16::MAX as usize)]);
        let blocks = &blocks[..blocks.len().min(4)];
        out.push(blocks.len() as u8);
        for b in blocks {
            out.extend_from_slice(&b.frame.to_be_bytes());
            out.extend_from_slice(&b.timestamp.to_be_bytes());
            let d = &b.data[..b.data.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(d.len() as u16).to_be_bytes());
            out.extend_from_slice(d);
        }
    }
}

/// Compresses sequence numbers into generic NACK entries (pid + 16-bit
/// bitmask of the following ones). `seqs` must be sorted.
pub fn nack_entries(seqs: &[u32]) -> Vec<NackEntry> {
    let mut out: Vec<NackEntry> = Vec::new();
    for &s in seqs {
        if let Some(e) = out.last_mut() {
            let d = s.wrapping_sub(e.pid);
            if (1..=16).contains(&d) {
                e.blp |= 1 << (d - 1);
                continue;
            }
        }
        out.push(NackEntry { pid: s, blp: 0 });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_packet_round_trips() {
        let mut b = Vec::new();
        write::hello(&mut b, &[7; 16], b"proof", Role::Play, 120, b"live/glass");
        assert_eq!(
            parse(&b).unwrap().body,
            Body::Hello(Hello {
                client_nonce: &[7; 16],
                proof: b"proof",
                role: Role::Play,
                latency_ms: 120,
                key: b"live/glass"
            })
        );
        b.clear();
        write::challenge(&mut b, &[1; 16], &[2; 16]);
        assert_eq!(
            parse(&b).unwrap().body,
            Body::Challenge {
                server_nonce: &[1; 16],
                client_nonce: &[2; 16]
            }
        );
        let mut p = Vec::new();
        write::protected(&mut p, 7, 1, 3, flags::VIDEO, 99, b"abc");
        b.clear();
        write::data(&mut b, 5, 42, 1000, XFLAG_RETRANSMIT, &p);
        let pk = parse(&b).unwrap();
        assert_eq!(pk.session, 5);
        let Body::Data(d) = pk.body else { panic!() };
        assert_eq!((d.seq, d.send_us, d.retransmit), (42, 1000, true));
        let m = media(d.protected).unwrap();
        assert_eq!(
            (m.frame, m.frag, m.frags, m.flags, m.timestamp, m.payload),
            (7, 1, 3, 1, 99, &b"abc"[..])
        );
        b.clear();
        write::nack(&mut b, 1, &nack_entries(&[10, 11, 13, 40]));
        let Body::Nack(e) = parse(&b).unwrap().body else {
            panic!()
        };
        let all: Vec<u32> = e.iter().flat_map(|e| e.seqs()).collect();
        assert_eq!(all, vec![10, 11, 13, 40]);
        b.clear();
        write::feedback(&mut b, 1, 100, 5000, &[Some(1000), None, Some(0)]);
        let Body::Feedback(f) = parse(&b).unwrap().body else {
            panic!()
        };
        assert_eq!(
            f.arrivals().collect::<Vec<_>>(),
            vec![(100, Some(1000)), (101, None), (102, Some(0))]
        );
        let mut r = Vec::new();
        write::red(
            &mut r,
            b"now",
            &[RedBlock {
                frame: 3,
                timestamp: 60,
                data: b"before",
            }],
        );
        let (primary, blocks) = red(&r).unwrap();
        assert_eq!(primary, b"now");
        assert_eq!(
            blocks,
            vec![RedBlock {
                frame: 3,
                timestamp: 60,
                data: b"before"
            }]
        );
    }

    #[test]
    fn bad_datagrams_are_errors() {
        assert_eq!(parse(&[MAGIC, 4]), Err(WireError::Truncated(2)));
        assert_eq!(parse(&[0, 4, 0, 0, 0, 0]), Err(WireError::BadMagic(0)));
        assert_eq!(
            parse(&[MAGIC, 99, 0, 0, 0, 0]),
            Err(WireError::UnknownType(99))
        );
        // A fragment index beyond the count.
        let mut p = Vec::new();
        write::protected(&mut p, 1, 3, 3, 0, 0, b"");
        let mut b = Vec::new();
        write::data(&mut b, 0, 1, 0, 0, &p);
        assert!(matches!(
            parse(&b),
            Err(WireError::Malformed { what: "data", .. })
        ));
        // A NACK claiming more entries than allowed.
        let mut b = vec![MAGIC, 6, 0, 0, 0, 0, 200];
        b.extend(std::iter::repeat_n(0u8, 200 * 6));
        assert!(parse(&b).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// Arbitrary bytes never panic the parsers.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500), ty in 1u8..=9) {
            let _ = parse(&bytes);
            let mut b = bytes.clone();
            if b.len() >= 2 { b[0] = MAGIC; b[1] = ty; }
            if let Ok(Packet { body: Body::Data(d), .. }) = parse(&b) {
                let m = media(d.protected).unwrap();
                let _ = red(m.payload);
            }
            if let Ok(Packet { body: Body::Feedback(f), .. }) = parse(&b) {
                prop_assert!(f.arrivals().count() <= MAX_FEEDBACK_PACKETS);
            }
            let _ = red(&bytes);
        }
    }
}
