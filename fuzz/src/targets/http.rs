//! The relay's HTTP egress and Glass's HTTP players: request paths into the
//! router, query strings into the directive and token readers; publishers'
//! FLV tag bodies (valid-looking AVC/AAC, then damaged) into the HLS
//! packager, with and without LL-HLS parts, its segments back through
//! Glass's TS and fMP4 demuxers (and TS through HLS ingest) and its playlist
//! through the player's parser;
//! damaged segments and playlists as a player would receive them; an
//! HTTP-FLV body cut into arbitrary pieces into the streaming FLV reader.

use std::time::{Duration, SystemTime};

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use harness::media::flv::{STREAM_HEADER, TagKind, TagReader, write_tag};
use harness::media::source::sequence_header;
use harness::protocol::http::hls::packager::{Packager, PackagerConfig, SegmentFormat};
use harness::protocol::http::hls::player::parse_playlist;
use harness::protocol::http::hls::{demux, fmp4_demux};
use harness::protocol::http::server::route;
use harness::protocol::http::{query, signed};
use harness::relay::Media;

use crate::mutate::{corrupt, small_bytes};

/// One publisher message: AVC (configuration, key or inter frame with
/// AVCC NAL units) or AAC, fields from the input.
fn message(u: &mut Unstructured<'_>, ts: u32) -> Result<Media> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => Media::Video(sequence_header(), ts),
        1..=4 => {
            let key = u.ratio(1, 4)?;
            let mut d = vec![if key { 0x17 } else { 0x27 }, 1];
            d.extend_from_slice(&u.arbitrary::<[u8; 3]>()?);
            for _ in 0..u.int_in_range(0..=3u8)? {
                let nal = small_bytes(u, 200)?;
                let len = if u.ratio(1, 8)? {
                    u.arbitrary::<u32>()?
                } else {
                    nal.len() as u32 + 1
                };
                d.extend_from_slice(&len.to_be_bytes());
                d.push(*u.choose(&[12u8, 5, 1, 7, 8, 9, 6])?);
                d.extend_from_slice(nal);
            }
            corrupt(&mut d, u)?;
            Media::Video(Bytes::from(d), ts)
        }
        5 => {
            let mut d = vec![0xaf, 0, u.arbitrary()?, u.arbitrary()?];
            corrupt(&mut d, u)?;
            Media::Audio(Bytes::from(d), ts)
        }
        _ => {
            let mut d = vec![0xaf, 1];
            d.extend_from_slice(small_bytes(u, 300)?);
            Media::Audio(Bytes::from(d), ts)
        }
    })
}

pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
    // Paths.
    let path = String::from_utf8_lossy(small_bytes(u, 64)?).into_owned();
    let _ = route(&path);
    let _ = route(&format!("/live/{path}"));
    // Query strings: LL-HLS directives and signed URLs' tokens.
    let q = String::from_utf8_lossy(small_bytes(u, 80)?).into_owned();
    let _ = query::parse(Some(&q));
    let _ = query::parse(Some(&format!("_HLS_msn={q}&_HLS_part={q}")));
    let _ = signed::check(
        "a secret of 16+ characters",
        "/live/k",
        Some(&q),
        u.arbitrary()?,
    );
    // The packager, then its output read back.
    let mut p = Packager::new(PackagerConfig {
        target: Duration::from_millis(u.int_in_range(500..=3000)?),
        window: u.int_in_range(3..=8)?,
        part: if u.arbitrary()? {
            Some(Duration::from_millis(u.int_in_range(100..=1000)?))
        } else {
            None
        },
        format: if u.arbitrary()? {
            SegmentFormat::Fmp4
        } else {
            SegmentFormat::Ts
        },
    });
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(u.arbitrary::<u32>()?.into());
    let mut ts: u32 = u.arbitrary()?;
    for _ in 0..u.int_in_range(0..=40u8)? {
        ts = ts.wrapping_add(u.int_in_range(0..=700)?);
        let m = message(u, ts)?;
        p.push(&m, t0 + Duration::from_millis(u64::from(ts)));
    }
    let progress = p.progress();
    let (msn, part) = (u.arbitrary()?, u.arbitrary()?);
    let _ = (
        progress.reached(msn, part),
        progress.too_far_ahead(msn, part),
    );
    if let Some(list) = p.playlist(Some("token=1-00")) {
        let parsed = parse_playlist(&list).expect("the packager's playlist parses");
        for x in &parsed.parts {
            assert!(p.part(x.seq, x.index).is_some(), "a listed part is kept");
        }
        let _ = harness::protocol::http::hls::player::items(&parsed);
        // fMP4: the init segment, read back (and damaged).
        // (A damaged publisher's `avcC` goes into it as sent: it may not.)
        let init = p.init().and_then(|i| fmp4_demux::init(i).ok());
        if let Some(i) = p.init() {
            let mut damaged = i.to_vec();
            corrupt(&mut damaged, u)?;
            let _ = fmp4_demux::init(&damaged);
        }
        let fmp4 = p.init().is_some();
        let read = |bytes: &[u8]| match &init {
            Some(init) => fmp4_demux::frames(init, bytes).map(|f| f.len()),
            None => demux::frames(bytes).map(|f| f.len()),
        };
        let mut ingest = harness::protocol::http::hls::ingest::TsIngest::default();
        for (seq, _, _) in &parsed.segments {
            let s = p.segment(*seq).expect("a listed segment is kept");
            if !fmp4 {
                assert_eq!(s.bytes.len() % 188, 0, "whole TS packets");
            }
            let _ = read(&s.bytes);
            let mut damaged = s.bytes.to_vec();
            corrupt(&mut damaged, u)?;
            let _ = read(&damaged);
            // HLS ingest takes what a publisher pushes, damaged or not.
            if !fmp4 {
                let _ = ingest.segment(&s.bytes);
                let _ = ingest.segment(&damaged);
            }
        }
        let mut text = list.into_bytes();
        corrupt(&mut text, u)?;
        let _ = parse_playlist(&String::from_utf8_lossy(&text));
    }
    // An HTTP-FLV body in pieces.
    let mut body = STREAM_HEADER.to_vec();
    for _ in 0..u.int_in_range(0..=8u8)? {
        let kind = *u.choose(&[TagKind::Video, TagKind::Audio, TagKind::Script])?;
        let _ = write_tag(&mut body, kind, u.arbitrary()?, small_bytes(u, 100)?);
    }
    corrupt(&mut body, u)?;
    let mut r = TagReader::default();
    let mut at = 0;
    while at < body.len() {
        let n = u.int_in_range(1..=64usize)?.min(body.len() - at);
        r.push(&body[at..at + n]);
        at += n;
        while let Ok(Some(_)) = r.next_tag() {}
    }
    Ok(())
}
