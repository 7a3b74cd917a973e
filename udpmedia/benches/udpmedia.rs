//! Throughput of the UDP media protocol's parts: FEC encode and decode
//! (bytes of media per second) and the sender + receiver state machines
//! (packets per second through a virtual link, in virtual time).
//!
//! `cargo bench -p glass-udpmedia --bench udpmedia -- --noplot`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use netem::Time;
use udpmedia::fec::{FecDecoder, FecEncoder};
use udpmedia::sim::Sim;
use udpmedia::{CcMode, Config, FecConfig, OutFrame, Role};

const PACKET: usize = 1172;
const PACKETS: u64 = 1000;

fn packets() -> Vec<Vec<u8>> {
    (0..PACKETS)
        .map(|s| (0..PACKET).map(|i| (i as u64 ^ s) as u8).collect())
        .collect()
}

fn schemes() -> [(&'static str, FecConfig); 4] {
    [
        ("xor-10x1", FecConfig::Xor { cols: 10, rows: 1 }),
        ("xor-5x5", FecConfig::Xor { cols: 5, rows: 5 }),
        (
            "rs-10+3",
            FecConfig::Rs {
                k: 10,
                m: 3,
                adaptive: false,
            },
        ),
        (
            "rs-20+4",
            FecConfig::Rs {
                k: 20,
                m: 4,
                adaptive: false,
            },
        ),
    ]
}

fn fec(c: &mut Criterion) {
    let data = packets();
    let mut g = c.benchmark_group("fec");
    g.throughput(Throughput::Bytes(PACKETS * PACKET as u64));
    for (name, cfg) in schemes() {
        g.bench_with_input(BenchmarkId::new("encode", name), &cfg, |b, cfg| {
            b.iter(|| {
                let mut enc = FecEncoder::new(cfg, Duration::from_millis(20));
                let mut out = Vec::new();
                for (s, p) in data.iter().enumerate() {
                    enc.push(Time::ZERO, s as u64, p, &mut out);
                }
                black_box(out.len())
            })
        });
        // Decoding: one packet in ten lost, each rebuilt.
        let mut enc = FecEncoder::new(&cfg, Duration::from_millis(20));
        let mut fec = Vec::new();
        for (s, p) in data.iter().enumerate() {
            enc.push(Time::ZERO, s as u64, p, &mut fec);
        }
        g.bench_with_input(BenchmarkId::new("decode-10%-loss", name), &cfg, |b, _| {
            b.iter(|| {
                let mut dec = FecDecoder::default();
                let mut rebuilt = 0;
                let mut next_fec = fec.iter().peekable();
                for (s, p) in data.iter().enumerate() {
                    if s % 10 != 3 {
                        rebuilt += dec.on_data(s as u64, p).len();
                    }
                    // Each FEC packet once the packets it covers were sent.
                    while let Some(f) = next_fec.peek() {
                        let last = f.base + u64::from(f.count - 1) * u64::from(f.stride);
                        if last > s as u64 {
                            break;
                        }
                        rebuilt += dec.on_fec((*f).clone()).len();
                        next_fec.next();
                    }
                }
                black_box(rebuilt)
            })
        });
    }
    g.finish();
}

/// Publishes `frames` frames of 10 kB (9 packets each) through a sender and
/// a receiver over a virtual link; returns the data packets sent.
fn session(cfg: &Config, loss: &str, frames: u32) -> u64 {
    let mut sim = Sim::new(
        cfg.clone(),
        cfg.clone(),
        Role::Publish,
        loss,
        "delay 10ms",
        1,
    );
    sim.run_until(Time::from_millis(100));
    let data = vec![7u8; 10_000];
    for i in 0..frames {
        let now = Time::from_millis(100 + u64::from(i) * 10);
        sim.run_until(now);
        sim.client
            .send_frame(
                now,
                OutFrame {
                    video: true,
                    key: false,
                    timestamp: i,
                    data: &data,
                },
            )
            .expect("connected");
    }
    let end = sim.now + Duration::from_millis(500);
    sim.run_until(end);
    let got = sim.server_frames().len();
    assert!(got as u32 >= frames * 9 / 10, "{got} of {frames}");
    sim.client.stats().sender.map_or(0, |s| s.pkt_sent)
}

fn state_machines(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    let frames = 2000;
    for (name, cfg, link) in [
        (
            "plain",
            Config {
                cc: CcMode::Off,
                nack: false,
                ..Config::default()
            },
            "delay 10ms",
        ),
        (
            "nack-2%",
            Config {
                cc: CcMode::Off,
                ..Config::default()
            },
            "delay 10ms loss 2%",
        ),
        (
            "nack+rs+gcc-2%",
            Config {
                fec: FecConfig::Rs {
                    k: 10,
                    m: 2,
                    adaptive: false,
                },
                start_bitrate: 20_000_000,
                ..Config::default()
            },
            "delay 10ms loss 2%",
        ),
    ] {
        let sent = session(&cfg, link, frames);
        g.throughput(Throughput::Elements(sent));
        g.bench_function(name, |b| b.iter(|| black_box(session(&cfg, link, frames))));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4));
    targets = fec, state_machines
}
criterion_main!(benches);
