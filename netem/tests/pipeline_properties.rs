//! Properties of the whole pipeline, in virtual time (nothing sleeps).

use std::time::Duration;

use netem::config::LinkProfiles;
use netem::flow::{FlowMeta, Protocol};
use netem::{EventKind, Pipeline, Profile, SeedTree, Synthetic, Time};

fn profile(toml: &str) -> Profile {
    LinkProfiles::from_toml("test", toml, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .validate()
        .unwrap()
        .0
}

fn netem(line: &str) -> Profile {
    netem::resolve(line).unwrap().validate().unwrap().0
}

/// (id, original, release ns) of each delivery, and the pipeline afterwards.
struct Run {
    deliveries: Vec<(u64, u64, u64)>,
    pipe: Pipeline<Synthetic>,
}

/// Pushes `n` packets of `size` bytes every `gap`, draining as it goes; with
/// `poll_every`, also polls on that grid in between.
fn drive(
    p: &Profile,
    seed: u64,
    n: u64,
    gap: Duration,
    size: u32,
    poll_every: Option<Duration>,
) -> Run {
    let mut pipe = Pipeline::new(p, SeedTree::new(seed));
    let mut deliveries = Vec::new();
    let mut record = |pipe: &mut Pipeline<Synthetic>, now: Time| {
        while let Some(d) = pipe.poll_transmit(now) {
            assert!(d.released_at <= now, "released in the future");
            deliveries.push((d.id.0, d.original.0, d.released_at.as_nanos()));
        }
    };
    let mut grid = Time::ZERO;
    for i in 0..n {
        let t = Time::ZERO + gap * i as u32;
        if let Some(step) = poll_every {
            while grid < t {
                record(&mut pipe, grid);
                grid = grid + step;
            }
        }
        while let Some(due) = pipe.poll_timeout().filter(|d| *d < t) {
            record(&mut pipe, due);
        }
        pipe.push(t, FlowMeta::default(), Synthetic(size));
        record(&mut pipe, t);
    }
    let mut guard = 0;
    while let Some(due) = pipe.poll_timeout() {
        record(&mut pipe, due);
        guard += 1;
        assert!(guard < 10_000_000, "poll_timeout never settles");
    }
    Run { deliveries, pipe }
}

const EVERYTHING: &str = r#"
[loss]
model = "gilbert-elliott"
p = "1%"
r = "25%"
[delay]
base = "20ms"
jitter = "5ms"
distribution = "paretonormal"
correlation = "25%"
order = "reorder"
[reorder]
rate = "5%"
gap = 3
[duplicate]
rate = "1%"
[corrupt]
rate = "1%"
[bottleneck]
rate = "8Mbit/s"
queue = "40 packets"
aqm = "codel"
[[timeline]]
at = "2s"
rate = "2Mbit/s"
[[timeline]]
at = "3s"
outage = "500ms"
outage_mode = "hold"
[[timeline]]
at = "4s"
outage = "200ms"
"#;

#[test]
fn every_packet_is_accounted_for() {
    let p = profile(EVERYTHING);
    let run = drive(&p, 7, 60_000, Duration::from_micros(100), 1000, None);
    let c = run.pipe.counters();
    assert_eq!(run.pipe.in_flight(), 0);
    assert_eq!(c.delivered as usize, run.deliveries.len());
    assert_eq!(c.delivered + c.dropped(), c.pushed + c.duplicated, "{c:?}");
    // Every mechanism actually fired in this profile.
    for (name, v) in [
        ("loss", c.dropped_loss),
        ("queue", c.dropped_queue),
        ("aqm", c.dropped_aqm),
        ("outage", c.dropped_outage),
        ("dup", c.duplicated),
        ("corrupt", c.corrupted),
        ("reorder", c.reordered),
        ("out of order", c.delivered_out_of_order),
    ] {
        assert!(v > 0, "{name} never happened: {c:?}");
    }
}

#[test]
fn same_seed_same_decisions_other_seed_other_decisions() {
    let p = profile(EVERYTHING);
    let a = drive(&p, 11, 20_000, Duration::from_micros(150), 1000, None);
    let b = drive(&p, 11, 20_000, Duration::from_micros(150), 1000, None);
    let c = drive(&p, 12, 20_000, Duration::from_micros(150), 1000, None);
    assert_eq!(a.deliveries, b.deliveries);
    assert_eq!(a.pipe.counters(), b.pipe.counters());
    assert_ne!(a.deliveries, c.deliveries);
}

#[test]
fn results_do_not_depend_on_how_often_the_caller_polls() {
    let p = profile(EVERYTHING);
    let rare = drive(&p, 3, 20_000, Duration::from_micros(150), 1000, None);
    let often = drive(
        &p,
        3,
        20_000,
        Duration::from_micros(150),
        1000,
        Some(Duration::from_micros(37)),
    );
    assert_eq!(rare.deliveries, often.deliveries);
}

#[test]
fn stages_draw_from_independent_streams() {
    // Adding jitter must not change which packets the loss model drops.
    let lost = |p: &Profile| {
        let mut pipe: Pipeline<Synthetic> = Pipeline::new(p, SeedTree::new(5));
        pipe.record_events(1 << 20);
        for i in 0..50_000u64 {
            pipe.push(
                Time::from_micros(i * 100),
                FlowMeta::default(),
                Synthetic(100),
            );
        }
        let mut ids = Vec::new();
        while let Some(e) = pipe.poll_event() {
            if e.kind == EventKind::Lost {
                ids.push(e.packet.0);
            }
        }
        ids
    };
    let a = lost(&netem("loss gemodel 2% 20%"));
    let b = lost(&netem(
        "loss gemodel 2% 20% delay 30ms 10ms distribution normal",
    ));
    assert!(a.len() > 500);
    assert_eq!(a, b);
}

#[test]
fn rate_limit_is_never_exceeded_over_any_window() {
    // Offer twice the capacity; releases (no delay) are the link's departures.
    let p = netem("rate 4mbit limit 100");
    let run = drive(&p, 1, 40_000, Duration::from_micros(1200), 1200, None);
    let releases: Vec<u64> = run.deliveries.iter().map(|d| d.2).collect();
    let rate_bps = 4e6;
    // Windows of several transmission times (one 1200-byte packet takes 2.4 ms).
    for window in [
        Duration::from_millis(10),
        Duration::from_millis(100),
        Duration::from_secs(1),
    ] {
        let w = window.as_nanos() as u64;
        let mut j = 0;
        let mut worst = 0.0f64;
        for i in 0..releases.len() {
            while releases[i] - releases[j] > w {
                j += 1;
            }
            let bits = (i - j + 1) as f64 * 1200.0 * 8.0;
            // One packet of slack: a window can start at a departure instant.
            let allowed = rate_bps * window.as_secs_f64() + 1200.0 * 8.0;
            worst = worst.max(bits / allowed);
            assert!(
                bits <= allowed + 1e-6,
                "{window:?}: {bits} bits > {allowed}"
            );
        }
        assert!(
            worst > 0.9,
            "the link was not saturated in {window:?} windows ({worst})"
        );
    }
}

#[test]
fn timeline_rate_step_changes_throughput() {
    let p = profile(
        "[bottleneck]\nrate = \"5Mbit/s\"\nqueue = \"50 packets\"\n[[timeline]]\nat = \"10s\"\nrate = \"1Mbit/s\"\n",
    );
    // 6 Mbit/s offered for 20 s.
    let run = drive(&p, 1, 12_500, Duration::from_micros(1600), 1200, None);
    let bits_between = |a: f64, b: f64| {
        run.deliveries
            .iter()
            .filter(|d| (a * 1e9..b * 1e9).contains(&(d.2 as f64)))
            .count() as f64
            * 1200.0
            * 8.0
            / (b - a)
    };
    let before = bits_between(2.0, 9.5);
    let after = bits_between(11.0, 19.5);
    assert!((before - 5e6).abs() < 0.02 * 5e6, "before {before}");
    assert!((after - 1e6).abs() < 0.02 * 1e6, "after {after}");
}

#[test]
fn outages_drop_or_hold() {
    let drop = profile("[[timeline]]\nat = \"1s\"\noutage = \"500ms\"\n");
    let run = drive(&drop, 1, 2000, Duration::from_millis(1), 100, None);
    let c = run.pipe.counters();
    assert_eq!(c.dropped_outage, 500);
    assert!(
        run.deliveries
            .iter()
            .all(|d| !(1_000_000_000..1_500_000_000).contains(&d.2))
    );

    let hold = profile(
        "[bottleneck]\nqueue = \"1000 packets\"\n[[timeline]]\nat = \"1s\"\noutage = \"500ms\"\noutage_mode = \"hold\"\n",
    );
    let run = drive(&hold, 1, 2000, Duration::from_millis(1), 100, None);
    let c = run.pipe.counters();
    assert_eq!(c.delivered, 2000);
    assert!(
        run.deliveries
            .iter()
            .all(|d| !(1_000_000_000..1_500_000_000).contains(&d.2))
    );
    // The held packets all leave the moment the link returns.
    let at_return = run
        .deliveries
        .iter()
        .filter(|d| d.2 == 1_500_000_000)
        .count();
    assert_eq!(at_return, 501);
}

#[test]
fn flow_filter_loses_nacks_but_not_media() {
    let p = profile(
        "[loss]\nmodel = \"bernoulli\"\nrate = \"100%\"\nflows = { protocol = \"udp\", dst_port = 9001 }\n",
    );
    let mut pipe: Pipeline<Synthetic> = Pipeline::new(&p, SeedTree::new(1));
    let flow = |port| FlowMeta {
        protocol: Some(Protocol::Udp),
        dst_port: Some(port),
        ..FlowMeta::default()
    };
    let mut delivered = [0u32; 2];
    for i in 0..1000u64 {
        let port = if i % 2 == 0 { 9000 } else { 9001 };
        pipe.push(Time::from_millis(i), flow(port), Synthetic(100));
        while let Some(d) = pipe.poll_transmit(Time::from_millis(i)) {
            delivered[usize::from(d.flow.dst_port == Some(9001))] += 1;
        }
    }
    assert_eq!(delivered, [500, 0]);
}

#[test]
fn events_mirror_the_counters() {
    let p = profile(EVERYTHING);
    let mut pipe: Pipeline<Synthetic> = Pipeline::new(&p, SeedTree::new(9));
    pipe.record_events(1 << 22);
    for i in 0..20_000u64 {
        pipe.push(
            Time::from_micros(i * 200),
            FlowMeta::default(),
            Synthetic(1000),
        );
        while pipe.poll_transmit(Time::from_micros(i * 200)).is_some() {}
    }
    while let Some(due) = pipe.poll_timeout() {
        while pipe.poll_transmit(due).is_some() {}
    }
    let mut counts = std::collections::HashMap::<&str, u64>::new();
    while let Some(e) = pipe.poll_event() {
        let k = match e.kind {
            EventKind::Pushed { .. } => "pushed",
            EventKind::Lost => "lost",
            EventKind::Duplicated { .. } => "dup",
            EventKind::Corrupted { .. } => "corrupt",
            EventKind::DroppedQueue => "queue",
            EventKind::DroppedAqm => "aqm",
            EventKind::DroppedOutage => "outage",
            EventKind::SentEarly => "early",
            EventKind::Delivered { .. } => "delivered",
        };
        *counts.entry(k).or_default() += 1;
    }
    let c = pipe.counters();
    assert_eq!(pipe.events_overflowed(), 0);
    assert_eq!(counts["pushed"], c.pushed);
    assert_eq!(counts["lost"], c.dropped_loss);
    assert_eq!(counts["dup"], c.duplicated);
    assert_eq!(counts["corrupt"], c.corrupted);
    assert_eq!(counts["queue"], c.dropped_queue);
    assert_eq!(counts.get("aqm").copied().unwrap_or(0), c.dropped_aqm);
    assert_eq!(counts["outage"], c.dropped_outage);
    assert_eq!(counts["early"], c.reordered);
    assert_eq!(counts["delivered"], c.delivered);
}

#[test]
fn corruption_flips_exactly_one_bit() {
    let p = netem("corrupt 100%");
    let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(&p, SeedTree::new(1));
    for i in 0..200u64 {
        let payload = vec![0u8; 64];
        pipe.push(Time::from_millis(i), FlowMeta::default(), payload);
        let d = pipe.poll_transmit(Time::from_millis(i)).unwrap();
        let ones: u32 = d.payload.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 1);
    }
}

#[test]
fn trace_bottleneck_delivers_the_trace_rate() {
    let dir = std::env::temp_dir().join(format!("glass-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 2 opportunities every ms for 100 ms, then nothing for 100 ms: 12 Mbit/s mean.
    let mut text = String::new();
    for ms in 1..=100 {
        text.push_str(&format!("{ms}\n{ms}\n"));
    }
    text.push_str("200\n");
    std::fs::write(dir.join("t.trace"), text).unwrap();
    let toml = "[bottleneck]\ntrace = \"t.trace\"\nqueue = \"10000 packets\"\n";
    let (p, _) = LinkProfiles::from_toml("test", toml, Some(&dir))
        .unwrap()
        .validate()
        .unwrap();
    // Offer 30 Mbit/s for 2 s: always backlogged.
    let run = drive(&p, 1, 5000, Duration::from_micros(400), 1500, None);
    let in_2s = run
        .deliveries
        .iter()
        .filter(|d| d.2 < 2_000_000_000)
        .count() as f64
        * 1500.0
        * 8.0
        / 2.0;
    let want = (201.0 * 10.0) * 1500.0 * 8.0 / 2.0; // 201 opportunities per 200 ms period
    assert!((in_2s - want).abs() < 0.01 * want, "{in_2s} vs {want}");
    let missing =
        LinkProfiles::from_toml("test", "[bottleneck]\ntrace = \"nope.trace\"\n", Some(&dir))
            .unwrap_err();
    assert!(missing.to_string().contains("nope.trace"), "{missing}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn time_going_backwards_is_harmless() {
    let p = netem("delay 10ms");
    let mut pipe: Pipeline<Synthetic> = Pipeline::new(&p, SeedTree::new(1));
    pipe.push(Time::from_millis(100), FlowMeta::default(), Synthetic(10));
    pipe.push(Time::from_millis(50), FlowMeta::default(), Synthetic(10));
    assert!(pipe.poll_transmit(Time::from_millis(105)).is_none());
    assert_eq!(pipe.poll_timeout(), Some(Time::from_millis(110)));
    assert_eq!(
        pipe.poll_transmit(Time::from_millis(110))
            .unwrap()
            .released_at,
        Time::from_millis(110)
    );
    assert_eq!(
        pipe.poll_transmit(Time::from_millis(110))
            .unwrap()
            .released_at,
        Time::from_millis(110)
    );
}
