//! HTTP egress speed (the HLS issue): frames per second into MPEG-TS and
//! fMP4 through the HLS packager, and out of its segments through Glass's
//! HLS player's demuxers; requests per second the relay's HTTP server answers
//! on loopback for the LL-HLS playlist, a part and a segment (4 keep-alive
//! connections, each request after the previous answer, as players ask). The stream: 30 fps at 2.5 Mbit/s with a key frame a
//! second (about 9 kB per frame, 40 kB per key frame) as real H.264 would
//! be carried (a slice NAL unit of those sizes), plus AAC every 21 ms.
//!
//!   cargo bench -p glass-harness --bench http_egress

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harness::media::source::sequence_header;
use harness::protocol::http::hls::packager::{Packager, PackagerConfig, SegmentFormat};
use harness::protocol::http::hls::{demux, fmp4_demux};
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
    let package_with = |part: Option<Duration>, format: SegmentFormat| {
        let mut p = Packager::new(PackagerConfig {
            target: Duration::from_secs(1),
            window: 6,
            part,
            format,
        });
        p.push(&Media::Video(sequence_header(), 0), now);
        for m in seconds.iter().flatten() {
            p.push(m, now);
        }
        p
    };
    let parts = Some(Duration::from_millis(200));
    for format in [SegmentFormat::Ts, SegmentFormat::Fmp4] {
        let name = format.name();
        g.bench_function(format!("package video frames into {name}"), |b| {
            b.iter(|| package_with(None, format))
        });
        g.bench_function(
            format!("package video frames into {name} with 200 ms parts"),
            |b| b.iter(|| package_with(parts, format)),
        );
    }
    // Three finished segments (the fourth second is still open).
    let segments_of = |p: &Packager| -> Vec<Bytes> {
        let s: Vec<Bytes> = (0..3)
            .filter_map(|s| p.segment(s).map(|s| s.bytes.clone()))
            .collect();
        assert_eq!(s.len(), 3);
        s
    };
    let ts = segments_of(&package_with(None, SegmentFormat::Ts));
    let fmp4 = package_with(None, SegmentFormat::Fmp4);
    let init = fmp4_demux::init(fmp4.init().unwrap()).unwrap();
    let fmp4 = segments_of(&fmp4);
    // Video and audio frames: 90 + 141 per 3 s.
    g.throughput(Throughput::Elements(231));
    g.bench_function("demux frames from ts", |b| {
        b.iter(|| {
            ts.iter()
                .map(|s| demux::frames(s).map_or(0, |f| f.len()))
                .sum::<usize>()
        })
    });
    g.bench_function("demux frames from fmp4", |b| {
        b.iter(|| {
            fmp4.iter()
                .map(|s| fmp4_demux::frames(&init, s).map_or(0, |f| f.len()))
                .sum::<usize>()
        })
    });
    g.finish();
}

/// The relay's HTTP server on loopback with an LL-HLS origin (1 s segments,
/// 200 ms parts) that has packaged 4 s of the stream.
fn server(
    rt: &tokio::runtime::Runtime,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    use harness::protocol::http::hls::origin::Origin;
    use harness::protocol::http::server::{Config, Counters, serve};
    use harness::relay::Hub;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let hub = Hub::new("k");
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let cfg = PackagerConfig {
            target: Duration::from_secs(1),
            window: 6,
            part: Some(Duration::from_millis(200)),
            format: Default::default(),
        };
        let (origin, _task) = Origin::start(&hub, "k", cfg, stop.clone(), None).unwrap();
        hub.publish("k", Media::Video(sequence_header(), 0))
            .unwrap();
        for m in (0..4).flat_map(|s| second_of_messages(s * 1000)) {
            hub.publish("k", m).unwrap();
        }
        while origin.segment(2).is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cfg = Config {
            hub,
            gop_cache: true,
            congestion: None,
            hls: Some(origin),
            ladder: Vec::new(),
            play_secret: None,
            ingest: Default::default(),
        };
        tokio::spawn(serve(
            listener,
            cfg,
            stop,
            std::sync::Arc::new(Counters::default()),
        ));
        (at, stop_tx)
    })
}

/// `n` GETs of `path` spread over `connections` keep-alive connections;
/// the time from the first request to the last answer.
async fn gets(at: std::net::SocketAddr, path: &'static str, n: u64, connections: u64) -> Duration {
    use http_body_util::{BodyExt, Empty};
    let mut senders = Vec::new();
    for _ in 0..connections {
        let s = tokio::net::TcpStream::connect(at).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        senders.push(sender);
    }
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut sender) in senders.into_iter().enumerate() {
        let each = n / connections + u64::from((i as u64) < n % connections);
        tasks.spawn(async move {
            for _ in 0..each {
                let req = hyper::Request::get(path)
                    .header(hyper::header::HOST, "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200, "{path}");
                resp.into_body().collect().await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed()
}

fn http_requests(c: &mut Criterion) {
    let rt = harness::runtime::runtime().unwrap();
    let (at, _stop) = server(&rt);
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(1));
    for (what, path) in [
        ("the LL-HLS playlist", "/live/k/index.m3u8"),
        ("a 200 ms part", "/live/k/seg1.1.ts"),
        ("a 1 s segment", "/live/k/seg1.ts"),
        (
            "a blocking reload already satisfied",
            "/live/k/index.m3u8?_HLS_msn=1&_HLS_part=2",
        ),
    ] {
        g.bench_function(format!("GET {what} (loopback, 4 connections)"), |b| {
            b.iter_custom(|n| rt.block_on(gets(at, path, n, 4)))
        });
    }
    g.finish();
}

criterion_group!(benches, packager, http_requests);
criterion_main!(benches);
