//! FLV files as a media source: read the tags of a real recording (H.264 and
//! AAC, as ffmpeg or OBS write them) and replay them at their own timestamps.
//!
//! A replayed file carries no Glass frame header, so its frames are timed
//! like any foreign stream's (see [`super::wallclock`]): each tag goes out
//! with the wall clock of its scheduled instant as RTMP timestamp, and that
//! instant counts as its capture. The reader never panics: a file may be
//! anything.

use std::path::Path;
use std::time::Duration;

use netem::Time;

use super::tag;

/// Why a file is not a usable FLV recording.
#[derive(Debug, thiserror::Error)]
pub enum FlvError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not an FLV file (it does not start with \"FLV\")")]
    NotFlv,
    #[error("the FLV header is cut short")]
    ShortHeader,
    #[error("tag {index} at byte {offset} is cut short")]
    ShortTag { index: usize, offset: usize },
    #[error("no video frames (H.264 NALU tags) in the file")]
    NoVideo,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TagKind {
    Audio,
    Video,
    Script,
}

/// One FLV tag: its payload is exactly an RTMP audio/video message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlvTag {
    pub kind: TagKind,
    /// Milliseconds (24 bits plus the extension byte).
    pub ts_ms: u32,
    pub data: Vec<u8>,
}

impl FlvTag {
    /// An AVC or AAC sequence header (decoder configuration), not a frame.
    pub fn is_sequence_header(&self) -> bool {
        match self.kind {
            TagKind::Video => tag::is_sequence_header(&self.data, true),
            TagKind::Audio => tag::is_sequence_header(&self.data, false),
            TagKind::Script => false,
        }
    }

    /// A video frame (AVC NALU tag): key frame or not.
    pub fn video_frame(&self) -> Option<bool> {
        (self.kind == TagKind::Video && tag::is_frame(&self.data))
            .then(|| tag::is_key_frame(&self.data))
    }
}

/// Reads an FLV file's tags.
pub fn read_file(path: &Path) -> Result<Vec<FlvTag>, FlvError> {
    let bytes = std::fs::read(path).map_err(|source| FlvError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes)
}

/// Parses FLV bytes (header, then tags each followed by a 4-byte size).
pub fn parse(bytes: &[u8]) -> Result<Vec<FlvTag>, FlvError> {
    if !bytes.starts_with(b"FLV") {
        return Err(FlvError::NotFlv);
    }
    let mut reader = TagReader::default();
    reader.push(bytes);
    reader.end();
    let mut tags = Vec::new();
    while let Some(t) = reader.next_tag()? {
        tags.push(t);
    }
    if !reader.header_read() {
        return Err(FlvError::ShortHeader);
    }
    if reader.pending() > 0 {
        return Err(FlvError::ShortTag {
            index: reader.tags_read(),
            offset: reader.consumed(),
        });
    }
    if !tags.iter().any(|t| t.video_frame().is_some()) {
        return Err(FlvError::NoVideo);
    }
    Ok(tags)
}

/// The start of an FLV stream with audio and video: the 9-byte header
/// (version 1, flags audio + video, header size 9) and PreviousTagSize0.
pub const STREAM_HEADER: [u8; 13] = *b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";

/// A tag body too big for FLV's 24-bit size field.
#[derive(Debug, thiserror::Error)]
#[error("a {0}-byte tag does not fit FLV's 24-bit size")]
pub struct TagTooBig(pub usize);

impl TagKind {
    /// Its FLV tag type.
    pub fn code(self) -> u8 {
        match self {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        }
    }
}

/// Appends one tag (11-byte header, body, PreviousTagSize) to `out`: what
/// an HTTP-FLV response carries after [`STREAM_HEADER`].
pub fn write_tag(
    out: &mut Vec<u8>,
    kind: TagKind,
    ts_ms: u32,
    data: &[u8],
) -> Result<(), TagTooBig> {
    if data.len() > 0x00ff_ffff {
        return Err(TagTooBig(data.len()));
    }
    let size = data.len() as u32;
    out.reserve(11 + data.len() + 4);
    out.push(kind.code());
    out.extend_from_slice(&size.to_be_bytes()[1..]);
    out.extend_from_slice(&ts_ms.to_be_bytes()[1..]);
    out.push((ts_ms >> 24) as u8); // the timestamp's extension byte
    out.extend_from_slice(&[0, 0, 0]); // stream id
    out.extend_from_slice(data);
    out.extend_from_slice(&(11 + size).to_be_bytes());
    Ok(())
}

/// Reads FLV tags from bytes as they arrive (an HTTP-FLV response body):
/// push what came, then take the whole tags out. Never panics, whatever
/// the bytes; holds at most one partial tag (FLV bounds a tag at 16 MiB).
#[derive(Debug, Default)]
pub struct TagReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already read.
    at: usize,
    /// Bytes left to skip of the header (after its size was read).
    header: Option<usize>,
    tags: usize,
    consumed: usize,
    /// No more bytes will come: the last tag may lack its PreviousTagSize.
    ended: bool,
}

impl TagReader {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at > 0 && self.at * 2 >= self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// No more bytes will come (a file's end).
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Whether the stream's header has been read.
    pub fn header_read(&self) -> bool {
        self.header == Some(0)
    }

    /// Bytes received but not yet part of a whole tag.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.at
    }

    /// Tags read so far (unknown tag types included).
    pub fn tags_read(&self) -> usize {
        self.tags
    }

    /// Bytes read so far: the offset of the next tag.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    fn take(&mut self, n: usize) {
        self.at += n;
        self.consumed += n;
    }

    /// The next whole audio, video or script tag; `None` until more bytes
    /// come. Unknown tag types are skipped.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        loop {
            let rest = &self.buf[self.at..];
            match self.header {
                None => {
                    if rest.len() >= 3 && &rest[..3] != b"FLV" {
                        return Err(FlvError::NotFlv);
                    }
                    let Some(size) = rest.get(5..9) else {
                        return Ok(None);
                    };
                    let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
                    // The header, then PreviousTagSize0.
                    self.header = Some(size.max(9) + 4);
                }
                Some(0) => break,
                Some(left) => {
                    let n = left.min(rest.len());
                    if n == 0 {
                        return Ok(None);
                    }
                    self.take(n);
                    self.header = Some(left - n);
                }
            }
        }
        loop {
            let rest = &self.buf[self.at..];
            let Some(h) = rest.get(..11) else {
                return Ok(None);
            };
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let ts_ms = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            let code = h[0] & 0x1f;
            let trailer = if self.ended { 0 } else { 4 };
            if rest.len() < 11 + size + trailer {
                return Ok(None);
            }
            let data = &rest[11..11 + size];
            let kind = match code {
                8 => Some(TagKind::Audio),
                9 => Some(TagKind::Video),
                18 => Some(TagKind::Script),
                _ => None,
            };
            let tag = kind.map(|kind| FlvTag {
                kind,
                ts_ms,
                data: data.to_vec(),
            });
            let whole = (11 + size + 4).min(rest.len());
            self.take(whole);
            self.tags += 1;
            if tag.is_some() {
                return Ok(tag);
            }
        }
    }
}

/// Replays a recording's frames at their timestamps from `start`, looping
/// (timestamps continue) when the file is shorter than the run.
#[derive(Clone, Debug)]
pub struct FlvReplay {
    headers: Vec<FlvTag>,
    frames: Vec<FlvTag>,
    first_ts: u32,
    /// One loop's length: last frame − first frame + one frame interval.
    span: Duration,
    start: Time,
    next: usize,
    loops: u32,
}

impl FlvReplay {
    /// When the replay started (its first tag's instant).
    pub fn start(&self) -> Time {
        self.start
    }

    pub fn new(tags: &[FlvTag], start: Time) -> FlvReplay {
        let headers: Vec<_> = tags
            .iter()
            .filter(|t| t.is_sequence_header())
            .cloned()
            .collect();
        // Frames from the first key frame on, so every loop starts decodable.
        let first_key = tags
            .iter()
            .position(|t| t.video_frame() == Some(true))
            .unwrap_or(0);
        let frames: Vec<_> = tags[first_key..]
            .iter()
            .filter(|t| t.kind != TagKind::Script && !t.is_sequence_header())
            .filter(|t| t.kind == TagKind::Audio || t.video_frame().is_some())
            .cloned()
            .collect();
        let first_ts = frames.first().map_or(0, |t| t.ts_ms);
        let last_ts = frames.last().map_or(0, |t| t.ts_ms);
        let video: Vec<u32> = frames
            .iter()
            .filter(|t| t.kind == TagKind::Video)
            .map(|t| t.ts_ms)
            .collect();
        let interval = if video.len() >= 2 {
            (video[video.len() - 1].wrapping_sub(video[0])) / (video.len() as u32 - 1)
        } else {
            33
        };
        FlvReplay {
            headers,
            frames,
            first_ts,
            span: Duration::from_millis(
                u64::from(last_ts.wrapping_sub(first_ts)) + u64::from(interval.max(1)),
            ),
            start,
            next: 0,
            loops: 0,
        }
    }

    /// Decoder configuration to send before any frame.
    pub fn sequence_headers(&self) -> &[FlvTag] {
        &self.headers
    }

    /// When the next tag is due.
    pub fn poll_timeout(&self) -> Time {
        match self.frames.get(self.next) {
            Some(t) => {
                self.start
                    + self.span * self.loops
                    + Duration::from_millis(u64::from(t.ts_ms.wrapping_sub(self.first_ts)))
            }
            None => Time::MAX,
        }
    }

    /// The next tag if it is due at `now`, with its scheduled instant.
    pub fn poll_tag(&mut self, now: Time) -> Option<(Time, &FlvTag)> {
        let due = self.poll_timeout();
        if due > now || self.frames.is_empty() {
            return None;
        }
        let i = self.next;
        self.next += 1;
        if self.next == self.frames.len() {
            self.next = 0;
            self.loops += 1;
        }
        Some((due, &self.frames[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, ts: u32, data: &[u8]) -> Vec<u8> {
        let kind = match kind {
            8 => TagKind::Audio,
            9 => TagKind::Video,
            _ => TagKind::Script,
        };
        let mut v = Vec::new();
        write_tag(&mut v, kind, ts, data).unwrap();
        v
    }

    fn file(tags: &[Vec<u8>]) -> Vec<u8> {
        let mut v = STREAM_HEADER.to_vec();
        for t in tags {
            v.extend_from_slice(t);
        }
        v
    }

    fn sample() -> Vec<u8> {
        file(&[
            tag(18, 0, b"\x02\x00\x0aonMetaData"),
            tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2]),
            tag(8, 0, &[0xAF, 0, 0x12, 0x10]),
            tag(9, 0, &[0x17, 1, 0, 0, 0, 9]),
            tag(8, 10, &[0xAF, 1, 7]),
            tag(9, 40, &[0x27, 1, 0, 0, 0, 8]),
            tag(9, 80, &[0x27, 1, 0, 0, 0, 7]),
        ])
    }

    #[test]
    fn reads_tags_and_classifies_them() {
        let tags = parse(&sample()).unwrap();
        assert_eq!(tags.len(), 7);
        assert_eq!(tags[0].kind, TagKind::Script);
        assert!(tags[1].is_sequence_header() && tags[2].is_sequence_header());
        assert_eq!(tags[3].video_frame(), Some(true));
        assert_eq!(tags[5].video_frame(), Some(false));
        assert_eq!(tags[6].ts_ms, 80);
        // The extension byte is the timestamp's top byte.
        let big = parse(&file(&[tag(9, 0x0123_4567, &[0x17, 1, 0])])).unwrap();
        assert_eq!(big[0].ts_ms, 0x0123_4567);
    }

    #[test]
    fn replays_at_file_timestamps_and_loops() {
        let tags = parse(&sample()).unwrap();
        let start = Time::from_millis(1000);
        let mut r = FlvReplay::new(&tags, start);
        assert_eq!(r.sequence_headers().len(), 2);
        let mut due = Vec::new();
        for _ in 0..8 {
            let t = r.poll_timeout();
            assert!(r.poll_tag(t - Duration::from_micros(1)).is_none());
            let (at, tag) = r.poll_tag(t).unwrap();
            due.push((at.as_nanos() / 1_000_000, tag.kind));
        }
        // One loop: 0, 10, 40, 80; span = 80 + 40 (video interval) = 120 ms.
        let ms: Vec<u64> = due.iter().map(|d| d.0).collect();
        assert_eq!(ms, [1000, 1010, 1040, 1080, 1120, 1130, 1160, 1200]);
    }

    #[test]
    fn a_stream_read_in_pieces_gives_the_same_tags() {
        let bytes = sample();
        let whole = parse(&bytes).unwrap();
        for piece in [1, 2, 3, 7, 13, 64] {
            let mut r = TagReader::default();
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                r.push(chunk);
                while let Some(t) = r.next_tag().unwrap() {
                    got.push(t);
                }
            }
            assert_eq!(got, whole, "pieces of {piece} bytes");
            assert_eq!((r.pending(), r.tags_read()), (0, 7));
        }
        let mut r = TagReader::default();
        r.push(b"GET / HTTP/1.1");
        assert!(matches!(r.next_tag(), Err(FlvError::NotFlv)));
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        assert!(matches!(parse(b""), Err(FlvError::NotFlv)));
        assert!(matches!(parse(b"FLV\x01"), Err(FlvError::ShortHeader)));
        let mut cut = sample();
        cut.truncate(cut.len() - 6);
        assert!(matches!(parse(&cut), Err(FlvError::ShortTag { .. })));
        let audio_only = file(&[tag(8, 0, &[0xAF, 1, 7])]);
        assert!(matches!(parse(&audio_only), Err(FlvError::NoVideo)));
        // Arbitrary bytes after a valid header.
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let mut v = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(x as u8);
            }
            let _ = parse(&v);
        }
    }
}
