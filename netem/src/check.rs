//! `glass profile check`: run a profile on synthetic traffic in virtual time and
//! compare what it did with what it was asked.
//!
//! The traffic is constant-bit-rate packets of one size. With a bottleneck the
//! offered load defaults to 80 % of its capacity, so the queue stays short and
//! the delay figures show the delay model; ask for more (`load` > 1) to see
//! the rate limit and queue drops.

use std::time::Duration;

use serde::Serialize;

use crate::delay::Order;
use crate::event::Counters;
use crate::flow::FlowMeta;
use crate::loss::LossModel;
use crate::packet::Synthetic;
use crate::pipeline::Pipeline;
use crate::rng::SeedTree;
use crate::spec::Profile;
use crate::time::Time;

/// How to drive the check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub packets: u64,
    pub seed: u64,
    /// Bytes per synthetic packet.
    pub packet_size: u32,
    /// Offered load as a multiple of the bottleneck's mean capacity.
    pub load: f64,
    /// Offered rate when the profile has no bottleneck, in bit/s.
    pub unlimited_rate_bps: f64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            packets: 100_000,
            seed: 1,
            packet_size: 1200,
            load: 0.8,
            unlimited_rate_bps: 10e6,
        }
    }
}

/// What the profile asks for (at the start of the run).
#[derive(Clone, Debug, Serialize)]
pub struct Requested {
    pub loss_model: Option<String>,
    pub loss_rate: Option<f64>,
    pub mean_burst: Option<f64>,
    /// Base delay + the jitter distribution's mean + serialisation time.
    pub delay_mean_ms: f64,
    pub delay_std_ms: f64,
    pub distribution: Option<String>,
    pub order: Option<String>,
    pub capacity_bps: Option<f64>,
    pub queue: Option<String>,
    pub duplicate: f64,
    pub corrupt: f64,
    pub reorder: f64,
    pub timeline_changes: usize,
}

/// What the run did.
#[derive(Clone, Debug, Serialize)]
pub struct Realised {
    /// Packets dropped by the loss model / packets that met it.
    pub loss_rate: f64,
    /// Half-width of the loss rate's 95 % confidence interval.
    pub loss_rate_ci95: f64,
    pub mean_burst: f64,
    /// Half-width of the mean burst length's 95 % confidence interval.
    pub mean_burst_ci95: f64,
    pub delay_mean_ms: f64,
    pub delay_std_ms: f64,
    pub delay_p50_ms: f64,
    pub delay_p90_ms: f64,
    pub delay_p99_ms: f64,
    pub delay_max_ms: f64,
    /// Delivered bits / (last release − first push).
    pub throughput_bps: f64,
    pub counters: Counters,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub profile: String,
    pub direction: String,
    pub seed: u64,
    pub packets: u64,
    pub packet_size: u32,
    pub offered_bps: f64,
    /// Virtual time the run covered, in seconds.
    pub duration_s: f64,
    pub requested: Requested,
    pub realised: Realised,
    /// Why realised figures may differ from requested ones in this run.
    pub notes: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn model_name(m: &LossModel) -> String {
    match m {
        LossModel::Bernoulli { p } => format!("bernoulli {:.3}%", p * 100.0),
        LossModel::GilbertElliott {
            p,
            r,
            loss_bad,
            loss_good,
        } => format!(
            "gilbert-elliott p={:.3}% r={:.3}% 1-h={:.3}% 1-k={:.3}%",
            p * 100.0,
            r * 100.0,
            loss_bad * 100.0,
            loss_good * 100.0
        ),
        LossModel::FourState {
            p13,
            p31,
            p32,
            p23,
            p14,
        } => format!(
            "four-state p13={:.3}% p31={:.3}% p32={:.3}% p23={:.3}% p14={:.3}%",
            p13 * 100.0,
            p31 * 100.0,
            p32 * 100.0,
            p23 * 100.0,
            p14 * 100.0
        ),
        LossModel::Scripted { packets, ranges } => {
            format!(
                "scripted ({} packets, {} ranges)",
                packets.len(),
                ranges.len()
            )
        }
    }
}

fn requested(profile: &Profile, packet_size: u32) -> Requested {
    let capacity_bps = profile
        .bottleneck
        .as_ref()
        .and_then(|b| b.spec.capacity.mean_bps());
    let overhead = profile.bottleneck.as_ref().map_or(0, |b| b.spec.overhead);
    let serialisation =
        capacity_bps.map_or(0.0, |bps| f64::from(packet_size + overhead) * 8.0 / bps);
    let (mean, std) = profile
        .delay
        .as_ref()
        .map_or((Duration::ZERO, Duration::ZERO), |d| d.spec.moments());
    let expectation = profile.loss.as_ref().and_then(|l| l.spec.expected());
    Requested {
        loss_model: profile.loss.as_ref().map(|l| model_name(&l.spec)),
        loss_rate: expectation.map(|e| e.rate),
        mean_burst: expectation.map(|e| e.mean_burst),
        delay_mean_ms: ms(mean) + serialisation * 1e3,
        delay_std_ms: ms(std),
        distribution: profile
            .delay
            .as_ref()
            .filter(|d| !d.spec.jitter.is_zero())
            .map(|d| d.spec.distribution.name().to_string()),
        order: profile
            .delay
            .as_ref()
            .filter(|d| !d.spec.jitter.is_zero())
            .map(|d| {
                match d.spec.order {
                    Order::Fifo => "fifo",
                    Order::Reorder => "reorder",
                }
                .to_string()
            }),
        capacity_bps,
        queue: profile
            .bottleneck
            .as_ref()
            .map(|b| b.spec.limit.to_string()),
        duplicate: profile.duplicate.as_ref().map_or(0.0, |d| d.spec),
        corrupt: profile.corrupt.as_ref().map_or(0.0, |d| d.spec),
        reorder: profile.reorder.as_ref().map_or(0.0, |d| d.spec.p),
        timeline_changes: profile.timeline.len(),
    }
}

/// Runs `profile` on synthetic traffic and reports requested against realised.
pub fn run(name: &str, direction: &str, profile: &Profile, opts: &CheckOptions) -> CheckReport {
    run_with_progress(name, direction, profile, opts, &mut |_| {})
}

/// [`run`], calling `progress(packets pushed so far)` every 65 536 packets.
pub fn run_with_progress(
    name: &str,
    direction: &str,
    profile: &Profile,
    opts: &CheckOptions,
    progress: &mut dyn FnMut(u64),
) -> CheckReport {
    let requested = requested(profile, opts.packet_size);
    let offered_bps = requested
        .capacity_bps
        .map_or(opts.unlimited_rate_bps, |c| c * opts.load);
    let interval = Duration::from_secs_f64(f64::from(opts.packet_size) * 8.0 / offered_bps);
    let seeds = SeedTree::new(opts.seed).child("check").child(direction);
    let mut pipe: Pipeline<Synthetic> = Pipeline::new(profile, seeds);

    let mut delays: Vec<u64> = Vec::with_capacity(opts.packets as usize);
    let mut last_release = Time::ZERO;
    let mut drain = |pipe: &mut Pipeline<Synthetic>, now: Time| {
        while let Some(d) = pipe.poll_transmit(now) {
            delays.push(d.delay().as_nanos() as u64);
            last_release = last_release.max(d.released_at);
        }
    };
    // Loss counters at the end of each of BATCHES equal slices of the run.
    let batch_len = (opts.packets / BATCHES as u64).max(1);
    let mut batches: Vec<(u64, u64)> = Vec::with_capacity(BATCHES + 1);
    let mut t = Time::ZERO;
    for i in 0..opts.packets {
        if i % batch_len == 0 {
            let c = pipe.counters();
            batches.push((c.dropped_loss, c.loss_bursts));
        }
        t = Time::from_nanos((interval.as_nanos() as u64).saturating_mul(i));
        while let Some(due) = pipe.poll_timeout().filter(|due| *due < t) {
            drain(&mut pipe, due);
        }
        pipe.push(t, FlowMeta::default(), Synthetic(opts.packet_size));
        drain(&mut pipe, t);
        if i % 65_536 == 65_535 {
            progress(i + 1);
        }
    }
    progress(opts.packets);
    // Let everything in flight come out (bounded: the timeline and the queue are finite).
    while let Some(due) = pipe.poll_timeout() {
        drain(&mut pipe, due);
    }
    let counters = pipe.counters().clone();
    batches.push((counters.dropped_loss, counters.loss_bursts));
    let (loss_rate_ci95, mean_burst_ci95) = loss_confidence(&batches, batch_len);

    delays.sort_unstable();
    let n = delays.len().max(1) as f64;
    let mean = delays.iter().map(|&d| d as f64).sum::<f64>() / n;
    let var = delays
        .iter()
        .map(|&d| (d as f64 - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    let pct = |q: f64| -> f64 {
        if delays.is_empty() {
            return 0.0;
        }
        let i = ((q * delays.len() as f64).ceil() as usize).clamp(1, delays.len()) - 1;
        delays[i] as f64 / 1e6
    };
    let span = last_release.saturating_since(Time::ZERO).as_secs_f64();
    let met_loss = if profile.loss.as_ref().is_some_and(|l| l.flows.is_some()) {
        0
    } else {
        counters.pushed
    };
    let realised = Realised {
        loss_rate: if met_loss > 0 {
            counters.dropped_loss as f64 / met_loss as f64
        } else {
            0.0
        },
        loss_rate_ci95,
        mean_burst_ci95,
        mean_burst: if counters.loss_bursts > 0 {
            counters.dropped_loss as f64 / counters.loss_bursts as f64
        } else {
            0.0
        },
        delay_mean_ms: mean / 1e6,
        delay_std_ms: var.sqrt() / 1e6,
        delay_p50_ms: pct(0.5),
        delay_p90_ms: pct(0.9),
        delay_p99_ms: pct(0.99),
        delay_max_ms: delays.last().map_or(0.0, |&d| d as f64 / 1e6),
        throughput_bps: if span > 0.0 {
            counters.bytes_delivered as f64 * 8.0 / span
        } else {
            0.0
        },
        counters,
    };
    let notes = notes(profile, &requested, &realised, offered_bps);
    CheckReport {
        profile: name.to_string(),
        direction: direction.to_string(),
        seed: opts.seed,
        packets: opts.packets,
        packet_size: opts.packet_size,
        offered_bps,
        duration_s: t.as_secs_f64(),
        requested,
        realised,
        notes,
    }
}

/// Batches for the confidence intervals: enough for a t-quantile near the
/// normal one, few enough that each batch spans many loss bursts.
const BATCHES: usize = 20;

/// 95 % half-widths of the loss rate and the mean burst by batch means: the
/// run is cut into equal slices, each slice's figure is one observation, and
/// the spread of the slices gives the standard error. This holds for the
/// correlated Markov models too, as long as a slice is much longer than a
/// burst. Student's t with 19 degrees of freedom: 2.093.
fn loss_confidence(cumulative: &[(u64, u64)], batch_len: u64) -> (f64, f64) {
    let (mut rates, mut bursts) = (Vec::new(), Vec::new());
    for w in cumulative.windows(2) {
        let lost = (w[1].0 - w[0].0) as f64;
        let runs = (w[1].1 - w[0].1) as f64;
        rates.push(lost / batch_len as f64);
        if runs > 0.0 {
            bursts.push(lost / runs);
        }
    }
    let half_width = |v: &[f64]| {
        if v.len() < 2 {
            return f64::NAN;
        }
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        2.093 * (var / n).sqrt()
    };
    (half_width(&rates), half_width(&bursts))
}

fn notes(profile: &Profile, req: &Requested, got: &Realised, offered_bps: f64) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(c) = req.capacity_bps
        && offered_bps > c
    {
        notes.push(format!(
            "offered {:.2} Mbit/s is above the capacity {:.2} Mbit/s: the queue fills, so delay includes queueing and packets are dropped at the queue",
            offered_bps / 1e6,
            c / 1e6
        ));
    }
    if req.order.as_deref() == Some("fifo")
        && got.delay_mean_ms > req.delay_mean_ms + 0.05 * req.delay_std_ms.max(0.001)
    {
        notes.push(
            "FIFO order holds a packet behind a slower one, which raises the mean and narrows the spread at high packet rates".into(),
        );
    }
    if let Some(d) = &profile.delay
        && !d.spec.jitter.is_zero()
        && d.spec.base < d.spec.jitter * 3
        && matches!(
            d.spec.distribution,
            crate::jitter::Distribution::Normal
                | crate::jitter::Distribution::Uniform
                | crate::jitter::Distribution::ParetoNormal
        )
    {
        notes.push(
            "the jitter reaches below zero delay, where it is clamped: the mean rises".into(),
        );
    }
    if profile.loss.as_ref().is_some_and(|l| l.flows.is_some()) {
        notes.push("loss applies to some flows only; synthetic traffic belongs to no flow, so it met no loss".into());
    }
    if !profile.timeline.is_empty() {
        notes.push(format!(
            "{} timeline change(s): requested figures are the start's, realised ones cover the whole run",
            profile.timeline.len()
        ));
    }
    notes
}

/// Requested against realised for one direction of a live run (`glass run`),
/// from the engine's counters alone: no per-packet record is kept there.
#[derive(Clone, Debug, Serialize)]
pub struct LiveCheck {
    pub requested: Requested,
    /// Packets the loss model decided on.
    pub packets: u64,
    pub loss_rate: f64,
    /// 95 % interval of the loss rate: Wilson's score interval, counting a
    /// loss burst as one event (the sample size divided by the realised mean
    /// burst), which keeps it honest for correlated loss. Approximate.
    pub loss_rate_ci95: [f64; 2],
    pub mean_burst: f64,
    /// Mean and maximum push → release of delivered packets (queueing at the
    /// bottleneck included).
    pub delay_mean_ms: f64,
    pub delay_max_ms: f64,
    /// Drops by the queue, CoDel and outages (not the loss model).
    pub dropped_other: u64,
    /// One line for people: what was asked, what happened, and whether the
    /// asked loss rate is inside the realised interval.
    pub verdict: String,
}

/// Wilson score interval for `k` events in `n` trials, 95 %.
fn wilson(k: f64, n: f64) -> [f64; 2] {
    if n <= 0.0 {
        return [0.0, 1.0];
    }
    let z = 1.959_964_f64;
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    // At k = 0 (or n) the bound is 0 (or 1) exactly; rounding would leave
    // it a hair above, and "0 % asked, 0 % got" would read as outside.
    let lo = if k <= 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if k >= n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    [lo, hi]
}

/// What a live run's direction did against what `profile` asked.
pub fn live(profile: &Profile, c: &Counters) -> LiveCheck {
    let mean_size = c
        .bytes_pushed
        .checked_div(c.pushed)
        .map_or(1200, |b| u32::try_from(b).unwrap_or(u32::MAX));
    let requested = requested(profile, mean_size);
    let n = c.loss_met;
    let loss_rate = if n > 0 {
        c.dropped_loss as f64 / n as f64
    } else {
        0.0
    };
    let mean_burst = if c.loss_bursts > 0 {
        c.dropped_loss as f64 / c.loss_bursts as f64
    } else {
        1.0
    };
    // Bursts are the independent events: `bursts` of `n / mean_burst`
    // burst-sized trials, whose proportion is the loss rate itself (so the
    // interval is not scaled by the burst length again).
    let loss_rate_ci95 = wilson(c.loss_bursts as f64, n as f64 / mean_burst);
    let delay_mean_ms = if c.delivered > 0 {
        c.delay_sum_ns as f64 / c.delivered as f64 / 1e6
    } else {
        0.0
    };
    let delay_max_ms = c.delay_max_ns as f64 / 1e6;
    let dropped_other = c.dropped_queue + c.dropped_aqm + c.dropped_outage;
    let mut verdict = match requested.loss_rate {
        Some(want) => format!(
            "asked {:.2} % loss; got {:.2} % (95 % CI {:.2}–{:.2} %) over {} packets, {}",
            want * 100.0,
            loss_rate * 100.0,
            loss_rate_ci95[0] * 100.0,
            loss_rate_ci95[1] * 100.0,
            n,
            if (loss_rate_ci95[0]..=loss_rate_ci95[1]).contains(&want) {
                "within"
            } else {
                "OUTSIDE the interval"
            }
        ),
        None => format!("no loss asked; {} packets", c.pushed),
    };
    verdict.push_str(&format!(
        "; delay asked {:.1} ms mean, got {:.1} ms (max {:.1})",
        requested.delay_mean_ms, delay_mean_ms, delay_max_ms
    ));
    if dropped_other > 0 {
        verdict.push_str(&format!("; {dropped_other} dropped by the queue/outages"));
    }
    if !profile.timeline.is_empty() {
        verdict.push_str("; asked figures are the start's (the profile has a timeline)");
    }
    LiveCheck {
        requested,
        packets: n,
        loss_rate,
        loss_rate_ci95,
        mean_burst: if c.loss_bursts > 0 { mean_burst } else { 0.0 },
        delay_mean_ms,
        delay_max_ms,
        dropped_other,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(arg: &str, opts: &CheckOptions) -> CheckReport {
        let (up, _) = crate::resolve(arg).unwrap().validate().unwrap();
        run(arg, "uplink", &up, opts)
    }

    #[test]
    fn loss_and_burst_come_out_as_asked() {
        let opts = CheckOptions {
            packets: 400_000,
            ..Default::default()
        };
        let r = check("loss gemodel 1% 30%", &opts);
        let want = r.requested.loss_rate.unwrap();
        let g = &r.realised;
        assert!((g.loss_rate - want).abs() < 0.1 * want, "{r:?}");
        assert!((g.mean_burst - r.requested.mean_burst.unwrap()).abs() < 0.1 * 3.33);
        // The intervals are informative (narrow) and cover the truth here.
        assert!(
            g.loss_rate_ci95 > 0.0 && g.loss_rate_ci95 < 0.2 * want,
            "{g:?}"
        );
        assert!((g.loss_rate - want).abs() < 1.5 * g.loss_rate_ci95, "{g:?}");
        assert!(g.mean_burst_ci95 > 0.0 && g.mean_burst_ci95 < 0.5, "{g:?}");
    }

    #[test]
    fn delay_moments_and_throughput() {
        let r = check(
            "delay 40ms 5ms distribution normal",
            &CheckOptions::default(),
        );
        assert!((r.realised.delay_mean_ms - 40.0).abs() < 0.1, "{r:?}");
        assert!((r.realised.delay_std_ms - 5.0).abs() < 0.1, "{r:?}");
        // Over capacity: throughput pinned at the rate, queue drops counted.
        let opts = CheckOptions {
            load: 1.5,
            packets: 50_000,
            ..Default::default()
        };
        let r = check("rate 5mbit limit 20", &opts);
        assert!(
            (r.realised.throughput_bps - 5e6).abs() < 0.01 * 5e6,
            "{r:?}"
        );
        assert!(r.realised.counters.dropped_queue > 0);
        assert!(r.notes.iter().any(|n| n.contains("above the capacity")));
    }

    #[test]
    fn live_check_reads_counters_against_the_profile() {
        let (up, _) = crate::resolve("delay 40ms loss 2%")
            .unwrap()
            .validate()
            .unwrap();
        let r = run("x", "uplink", &up, &CheckOptions::default());
        let live = live(&up, &r.realised.counters);
        assert_eq!(live.packets, 100_000);
        assert!((live.loss_rate - r.realised.loss_rate).abs() < 1e-12);
        assert!(
            live.loss_rate_ci95[0] < 0.02 && 0.02 < live.loss_rate_ci95[1],
            "{live:?}"
        );
        // Half-width near 1.96·sqrt(p(1-p)/n) = 0.087 %.
        let half = (live.loss_rate_ci95[1] - live.loss_rate_ci95[0]) / 2.0;
        assert!((half - 0.000_868).abs() < 0.000_05, "{half}");
        assert!((live.delay_mean_ms - 40.0).abs() < 1e-6, "{live:?}");
        assert!((live.delay_max_ms - 40.0).abs() < 1e-6);
        assert!(
            live.verdict.contains("asked 2.00 % loss"),
            "{}",
            live.verdict
        );
        assert!(live.verdict.contains("within"), "{}", live.verdict);
        // A clean direction: nothing asked, nothing lost.
        let clean = live_clean();
        assert!(
            clean.verdict.starts_with("no loss asked"),
            "{}",
            clean.verdict
        );
    }

    #[test]
    fn live_check_of_bursty_loss_contains_the_realised_rate() {
        // Gilbert–Elliott, 5 % loss in bursts of 4 (found in a run: the
        // interval came out 12.7–20.5 % around a realised 4.4 %).
        let (up, _) = crate::resolve("loss gemodel 1.316% 25%")
            .unwrap()
            .validate()
            .unwrap();
        let r = run("x", "uplink", &up, &CheckOptions::default());
        let live = live(&up, &r.realised.counters);
        let [lo, hi] = live.loss_rate_ci95;
        assert!(lo < live.loss_rate && live.loss_rate < hi, "{live:?}");
        assert!(lo < 0.05 && 0.05 < hi, "{live:?}");
        // Wider than Bernoulli's at the same rate: fewer independent events.
        let half = (hi - lo) / 2.0;
        let bernoulli = 1.96 * (0.05f64 * 0.95 / live.packets as f64).sqrt();
        assert!(half > 1.5 * bernoulli, "{half} vs {bernoulli}");
    }

    fn live_clean() -> LiveCheck {
        let c = Counters {
            pushed: 10,
            bytes_pushed: 12_000,
            delivered: 10,
            ..Counters::default()
        };
        live(&Profile::transparent(), &c)
    }

    #[test]
    fn wilson_interval_matches_a_worked_value() {
        // 10 events in 100 trials: [0.0552, 0.1744] (Wilson 1927; any stats text).
        let [lo, hi] = wilson(10.0, 100.0);
        assert!(
            (lo - 0.0552).abs() < 5e-4 && (hi - 0.1744).abs() < 5e-4,
            "{lo} {hi}"
        );
        // No events: the interval starts at 0 exactly (0 % asked is inside).
        assert_eq!(wilson(0.0, 2254.0)[0], 0.0);
        assert_eq!(wilson(50.0, 50.0)[1], 1.0);
    }
}
