//! HTTP egress speed (the HLS issue): frames per second into MPEG-TS
//! through the HLS packager, and out of its segments through Glass's HLS
//! player's demuxer. The stream: 30 fps at 2.5 Mbit/s with a key frame a
//! second (about 9 kB per frame, 40 kB per key frame) as real H.264 would
//! be carried (a slice NAL unit of those sizes), plus AAC every 21 ms.
//!
//!   cargo bench -p glass-harness --bench http_egress

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harness::media::source::sequence_header;
use harness::protocol::http::hls::demux;
use harness::protocol::http::hls::packager::{Packager, PackagerConfig};
use harness::relay::Media;

/// One second of the stream's messages (30 video frames, 47 audio).
fn second_of_messages(start_ms: u32) -> Vec<Media> {
    let mut out = Vec::new();
    for i in 0..30u32 {
        let (first, nal, size) = if i == 0 {
            (0x17, 0x65, 40_000)
        } else {
            (0x27, 0x41, 9_000)
        };
        let mut d = vec![first, 1, 0, 0, 0];
        d.extend_from_slice(&(size as u32 + 1).to_be_bytes());
        d.push(nal);
        d.extend((0..size).map(|b| (b % 251) as u8 | 1));
        out.push(Media::Video(Bytes::from(d), start_ms + i * 1000 / 30));
    }
    for i in 0..47u32 {
        let mut d = vec![0xaf, 1];
        d.extend((0..200).map(|b| b as u8));
        out.push(Media::Audio(Bytes::from(d), start_ms + i * 1000 / 47));
    }
    out.sort_by_key(|m| m.as_av().map(|(_, _, ts)| ts));
    out
}

fn packager(c: &mut Criterion) {
    let seconds: Vec<Vec<Media>> = (0..4).map(|s| second_of_messages(s * 1000)).collect();
    let frames = seconds
        .iter()
        .flatten()
        .filter(|m| matches!(m, Media::Video(..)))
        .count();
    let now = SystemTime::now();
    let mut g = c.benchmark_group("hls");
    g.throughput(Throughput::Elements(frames as u64));
    // The whole stream through a new packager (1 s segments; LL-HLS:
    // 200 ms parts as well).
    let package_with = |part: Option<Duration>| {
        let mut p = Packager::new(PackagerConfig {
            target: Duration::from_secs(1),
            window: 6,
            part,
        });
        p.push(&Media::Video(sequence_header(), 0), now);
        for m in seconds.iter().flatten() {
            p.push(m, now);
        }
        p
    };
    let package = || package_with(None);
    g.bench_function("package video frames into TS", |b| b.iter(package));
    g.bench_function("package video frames into TS with 200 ms parts", |b| {
        b.iter(|| package_with(Some(Duration::from_millis(200))))
    });
    // Three finished segments (the fourth second is still open).
    let p = package();
    let segments: Vec<Bytes> = (0..3)
        .filter_map(|s| p.segment(s).map(|s| s.bytes.clone()))
        .collect();
    assert_eq!(segments.len(), 3);
    g.throughput(Throughput::Elements(90));
    g.bench_function("demux video frames from TS", |b| {
        b.iter(|| {
            segments
                .iter()
                .map(|s| demux::frames(s).map_or(0, |f| f.len()))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, packager);
criterion_main!(benches);
