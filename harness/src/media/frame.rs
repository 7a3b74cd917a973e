//! Frames, the common currency between protocol adapters, and their wire
//! header.
//!
//! Every frame's payload starts with a small header carrying its stream,
//! sequence number, kind, GOP position and capture instant, so a player
//! measures glass-to-glass latency from the bytes it receives, with no side
//! channel; the rest of the payload is filler up to the frame's encoded size.
//! Parsing never panics: bytes off the wire may be anything.

use std::fmt;

use netem::Time;
use serde::Serialize;

/// `GLF1`: Glass frame, version 1.
pub const MAGIC: [u8; 4] = *b"GLF1";
/// Bytes of the header; a frame is never shorter.
pub const HEADER_LEN: usize = 32;

/// What a frame holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    /// A key frame: decodable on its own.
    I,
    /// Depends on the frame before it.
    P,
    Audio,
}

impl FrameKind {
    fn code(self) -> u8 {
        match self {
            FrameKind::I => 1,
            FrameKind::P => 2,
            FrameKind::Audio => 3,
        }
    }
    fn from_code(c: u8) -> Option<FrameKind> {
        match c {
            1 => Some(FrameKind::I),
            2 => Some(FrameKind::P),
            3 => Some(FrameKind::Audio),
            _ => None,
        }
    }
    pub fn is_video(self) -> bool {
        self != FrameKind::Audio
    }
}

/// A frame's identity and timing, as carried in its header.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FrameHeader {
    pub kind: FrameKind,
    /// Position in its stream (video and audio count separately), from 0.
    pub seq: u64,
    /// Index of the GOP this frame belongs to (video), from 0.
    pub gop: u32,
    /// When the camera (or microphone) captured it.
    pub capture: Time,
    /// The frame's encoded size in bytes, header included.
    pub size: u32,
}

/// A frame: header plus payload bytes (the header encoded at their start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    pub bytes: Vec<u8>,
}

/// Why bytes are not a Glass frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("{0} bytes: shorter than a frame header ({HEADER_LEN})")]
    TooShort(usize),
    #[error("not a Glass frame (magic {0:02x?})")]
    BadMagic([u8; 4]),
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    #[error("header says {declared} bytes, {actual} received")]
    SizeMismatch { declared: u32, actual: usize },
}

impl FrameHeader {
    /// Encodes the header into the first [`HEADER_LEN`] bytes of `out`.
    fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = self.kind.code();
        out[5..8].fill(0);
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..20].copy_from_slice(&self.gop.to_be_bytes());
        out[20..28].copy_from_slice(&self.capture.as_nanos().to_be_bytes());
        out[28..32].copy_from_slice(&self.size.to_be_bytes());
    }

    /// Reads a header from the start of `bytes` (which may be the whole frame
    /// or only its beginning).
    pub fn parse(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
        let h = bytes
            .get(..HEADER_LEN)
            .ok_or(FrameError::TooShort(bytes.len()))?;
        let magic: [u8; 4] = h[0..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let kind = FrameKind::from_code(h[4]).ok_or(FrameError::BadKind(h[4]))?;
        let u64_at = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        Ok(FrameHeader {
            kind,
            seq: u64_at(8),
            gop: u32_at(16),
            capture: Time::from_nanos(u64_at(20)),
            size: u32_at(28),
        })
    }
}

impl Frame {
    /// A frame of `header.size` bytes (at least the header): the header, then
    /// filler that varies with the sequence number (so compression or
    /// deduplication along the path cannot shrink it).
    pub fn new(mut header: FrameHeader) -> Frame {
        header.size = header.size.max(HEADER_LEN as u32);
        let mut bytes = vec![0u8; header.size as usize];
        header.write(&mut bytes);
        let mut x = header.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for chunk in bytes[HEADER_LEN..].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        Frame { header, bytes }
    }

    /// Parses a whole received frame, checking its length.
    pub fn parse(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
        let h = FrameHeader::parse(bytes)?;
        if h.size as usize != bytes.len() {
            return Err(FrameError::SizeMismatch {
                declared: h.size,
                actual: bytes.len(),
            });
        }
        Ok(h)
    }
}

impl fmt::Display for FrameHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}#{} (gop {}, {} B, captured {})",
            self.kind, self.seq, self.gop, self.size, self.capture
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            kind: FrameKind::P,
            seq: 41,
            gop: 3,
            capture: Time::from_micros(1_234_567),
            size: 1500,
        }
    }

    #[test]
    fn round_trips() {
        let f = Frame::new(header());
        assert_eq!(f.bytes.len(), 1500);
        assert_eq!(Frame::parse(&f.bytes).unwrap(), header());
        // A tiny frame still carries its header.
        let tiny = Frame::new(FrameHeader {
            size: 3,
            ..header()
        });
        assert_eq!(tiny.bytes.len(), HEADER_LEN);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let f = Frame::new(header());
        assert_eq!(Frame::parse(&f.bytes[..10]), Err(FrameError::TooShort(10)));
        assert!(matches!(
            Frame::parse(&f.bytes[..100]),
            Err(FrameError::SizeMismatch { .. })
        ));
        let mut bad = f.bytes.clone();
        bad[0] = b'X';
        assert!(matches!(Frame::parse(&bad), Err(FrameError::BadMagic(_))));
        bad = f.bytes.clone();
        bad[4] = 9;
        assert_eq!(Frame::parse(&bad), Err(FrameError::BadKind(9)));
        // Arbitrary bytes of every length up to two headers: errors, never panics.
        let mut x: u64 = 7;
        for len in 0..(2 * HEADER_LEN) {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            let _ = Frame::parse(&bytes);
            let mut with_magic = bytes.clone();
            if with_magic.len() >= 5 {
                with_magic[..4].copy_from_slice(&MAGIC);
                with_magic[4] = 2;
                let _ = Frame::parse(&with_magic);
            }
        }
    }

    #[test]
    fn filler_differs_between_frames() {
        let a = Frame::new(header());
        let b = Frame::new(FrameHeader {
            seq: 42,
            ..header()
        });
        assert_ne!(a.bytes[HEADER_LEN..], b.bytes[HEADER_LEN..]);
    }
}
