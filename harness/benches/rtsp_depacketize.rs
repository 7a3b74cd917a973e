//! RTSP ingest speed (issue #14): RTP packets per second through the
//! H.264 depacketizer alone, through a track's whole ingest (sequence
//! tracking, depacketizing, FLV bodies for the hub), and through the UDP
//! path before it (routing the datagram to its session, the reorder
//! buffer putting every 50th pair back in order). The stream: 30 fps at
//! 2.5 Mbit/s with a key frame a second (about 10 kB per picture, 40 kB
//! per key frame), in 1400-byte payloads.
//!
//!   cargo bench -p glass-harness --bench rtsp_depacketize

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use harness::protocol::rtsp::h264::{self, Depacketizer};
use harness::protocol::rtsp::ingest::TrackIngest;
use harness::protocol::rtsp::reorder::Reorder;
use harness::protocol::rtsp::rtp::RtpPacket;
use harness::protocol::rtsp::sdp::{Codec, Track};
use harness::protocol::rtsp::udp::{Expect, Port, UdpRoutes};

/// One second of RTP packets (30 pictures).
fn second_of_packets() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut seq: u16 = 0;
    for i in 0..30u32 {
        let (header, size) = if i == 0 {
            (0x65, 40_000)
        } else {
            (0x41, 9_000)
        };
        let nal: Vec<u8> = std::iter::once(header)
            .chain((0..size).map(|b| (b % 251) as u8))
            .collect();
        let payloads = h264::packetize([nal.as_slice()], 1400);
        let n = payloads.len();
        for (j, payload) in payloads.iter().enumerate() {
            let mut b = Vec::with_capacity(payload.len() + 12);
            RtpPacket {
                payload_type: 96,
                marker: j + 1 == n,
                sequence: seq,
                timestamp: i * 3000,
                ssrc: 1,
                payload,
            }
            .write(&mut b);
            seq = seq.wrapping_add(1);
            out.push(b);
        }
    }
    out
}

/// A fresh ingest of an H.264 track (payload type 96).
fn video_track() -> TrackIngest {
    TrackIngest::new(Track {
        control: "streamid=0".into(),
        payload_type: 96,
        clock_rate: 90_000,
        codec: Codec::H264 {
            sps: vec![0x67, 0x42, 0xc0, 0x1e],
            pps: vec![0x68, 0xce],
        },
    })
}

fn bench(c: &mut Criterion) {
    let packets = second_of_packets();
    let mut g = c.benchmark_group("rtsp");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("h264_depacketize", |b| {
        b.iter(|| {
            let mut d = Depacketizer::default();
            let mut units = 0;
            for p in &packets {
                if let Ok(p) = RtpPacket::parse(p) {
                    units += d.push(&p, false).len();
                }
            }
            units
        })
    });
    g.bench_function("track_ingest", |b| {
        b.iter(|| {
            let mut t = video_track();
            packets.iter().map(|p| t.rtp(p).len()).sum::<usize>()
        })
    });
    let mut swapped = packets.clone();
    for i in (0..swapped.len() - 1).step_by(50) {
        swapped.swap(i, i + 1);
    }
    g.bench_function("udp_path", |b| {
        let from = std::net::SocketAddr::from(([198, 18, 1, 1], 40_000));
        b.iter(|| {
            let mut routes = UdpRoutes::default();
            let expect = Expect {
                session: 1,
                track: 0,
                client_ip: from.ip(),
                client_ports: (40_000, 40_001),
                payload_type: 96,
            };
            routes.add(expect, ()).expect("a route");
            let mut reorder = Reorder::new(std::time::Duration::from_millis(50));
            let mut t = video_track();
            let mut units = 0;
            let mut ready = Vec::new();
            for p in &swapped {
                for d in routes.route(Port::Rtp, from, p) {
                    let packet = d.datagram.packet;
                    let seq = u16::from_be_bytes([packet[2], packet[3]]);
                    reorder.push(seq, packet, netem::Time::ZERO, &mut ready);
                }
                for p in ready.drain(..) {
                    units += t.rtp(&p).len();
                }
            }
            units
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
