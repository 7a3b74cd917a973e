//! Throughput of the impairment pipeline in packets per second, in virtual
//! time, against str0m-netem on the closest equivalent pipeline.
//!
//! Both engines get the same traffic: 1200-byte packets offered at 90 Mbit/s
//! into a 100 Mbit/s bottleneck with a 1000-packet (1.2 MB) queue, Gilbert–
//! Elliott loss (p = 1 %, r = 30 %), and 20 ms ± 5 ms of jitter in FIFO order
//! (str0m-netem releases in arrival order). Payloads carry no bytes in either
//! engine, so neither pays for allocation.
//!
//! Run: `cargo bench -p glass-netem --bench pipeline`. The figure is
//! criterion's "thrpt" in elements (packets) per second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netem::config::LinkProfiles;
use netem::{FlowMeta, Pipeline, Profile, SeedTree, Synthetic, Time};

const PACKETS: u64 = 100_000;
const SIZE: u32 = 1200;
/// 1200 B at 90 Mbit/s.
const GAP_NS: u64 = 106_667;

fn glass_profile(toml: &str) -> Profile {
    LinkProfiles::from_toml("bench", toml, None)
        .expect("valid")
        .validate()
        .expect("valid")
        .0
}

const FULL: &str = r#"
[loss]
model = "gilbert-elliott"
p = "1%"
r = "30%"
[delay]
base = "20ms"
jitter = "5ms"
distribution = "uniform"
order = "fifo"
[bottleneck]
rate = "100Mbit/s"
queue = "1000 packets"
"#;

fn run_glass(profile: &Profile) -> u64 {
    let mut pipe: Pipeline<Synthetic> = Pipeline::new(profile, SeedTree::new(1));
    let mut delivered = 0;
    for i in 0..PACKETS {
        let t = Time::from_nanos(i * GAP_NS);
        pipe.push(t, FlowMeta::default(), Synthetic(SIZE));
        while let Some(d) = pipe.poll_transmit(t) {
            black_box(&d);
            delivered += 1;
        }
    }
    while let Some(due) = pipe.poll_timeout() {
        while pipe.poll_transmit(due).is_some() {
            delivered += 1;
        }
    }
    delivered
}

/// A payload with a length and no allocation, for str0m-netem's `WithLen`.
#[derive(Clone)]
struct Sized(usize);
static BYTES: [u8; 1500] = [0; 1500];
impl AsRef<[u8]> for Sized {
    fn as_ref(&self) -> &[u8] {
        &BYTES[..self.0]
    }
}

fn run_str0m(start: Instant) -> u64 {
    run_str0m_with(start, Duration::from_millis(5))
}

fn run_str0m_with(start: Instant, jitter: Duration) -> u64 {
    use str0m_netem::{
        Bitrate, DataSize, GilbertElliot, Input, Netem, NetemConfig, Output, Probability,
    };
    let config = NetemConfig::new()
        .latency(Duration::from_millis(20))
        .jitter(jitter)
        .loss(
            GilbertElliot::new()
                .good_duration(100.0) // p = 1 %
                .bad_duration(1.0 / 0.3) // r = 30 %
                .loss_in_bad(Probability::new(1.0))
                .loss_in_good(Probability::new(0.0)),
        )
        .link(Bitrate::mbps(100), DataSize::bytes(1000 * i64::from(SIZE)))
        .seed(1);
    let mut netem: Netem<Sized> = Netem::new(config);
    let mut delivered = 0;
    for i in 0..PACKETS {
        let now = start + Duration::from_nanos(i * GAP_NS);
        netem.handle_input(Input::Packet(now, Sized(SIZE as usize)));
        while let Some(out) = netem.poll_output() {
            if let Output::Packet(p) = out {
                black_box(&p);
                delivered += 1;
            }
        }
    }
    netem.handle_input(Input::Timeout(start + Duration::from_secs(3600)));
    while let Some(out) = netem.poll_output() {
        if let Output::Packet(_) = out {
            delivered += 1;
        }
    }
    delivered
}

fn bench(c: &mut Criterion) {
    let full = glass_profile(FULL);
    let loss_only = glass_profile("[loss]\nmodel = \"gilbert-elliott\"\np = \"1%\"\nr = \"30%\"\n");
    let rate_only = glass_profile("[bottleneck]\nrate = \"100Mbit/s\"\nqueue = \"1000 packets\"\n");
    let jitter_reorder = glass_profile(
        "[delay]\nbase = \"20ms\"\njitter = \"5ms\"\ndistribution = \"normal\"\norder = \"reorder\"\n",
    );
    let start = Instant::now();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(PACKETS));
    g.sample_size(30);
    g.bench_function("glass/full (jitter+GE loss+rate+queue)", |b| {
        b.iter(|| run_glass(&full))
    });
    g.bench_function("str0m-netem/full (jitter+GE loss+rate+queue)", |b| {
        b.iter(|| run_str0m(start))
    });
    // Like for like without jitter: Glass's time-continuous FIFO jitter
    // (a grid process and a normal CDF per packet) has no counterpart in
    // str0m-netem, whose jitter is one uniform f32 per packet.
    let no_jitter = glass_profile(
        "[loss]\nmodel = \"gilbert-elliott\"\np = \"1%\"\nr = \"30%\"\n[delay]\nbase = \"20ms\"\n\
         [bottleneck]\nrate = \"100Mbit/s\"\nqueue = \"1000 packets\"\n",
    );
    g.bench_function("glass/no jitter (GE loss+rate+queue+delay)", |b| {
        b.iter(|| run_glass(&no_jitter))
    });
    g.bench_function("str0m-netem/no jitter (GE loss+rate+queue+delay)", |b| {
        b.iter(|| run_str0m_with(start, Duration::ZERO))
    });
    // Per-packet uniform jitter, as str0m-netem's (Glass's draws through a
    // normal and its CDF; packets may overtake, so its queue is a heap as
    // str0m-netem's is).
    let per_packet = glass_profile(&FULL.replace("order = \"fifo\"", "order = \"reorder\""));
    g.bench_function("glass/per-packet uniform jitter (reorder)", |b| {
        b.iter(|| run_glass(&per_packet))
    });
    g.bench_function("glass/loss only", |b| b.iter(|| run_glass(&loss_only)));
    g.bench_function("glass/rate+queue only", |b| {
        b.iter(|| run_glass(&rate_only))
    });
    g.bench_function("glass/normal jitter, reordering", |b| {
        b.iter(|| run_glass(&jitter_reorder))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
