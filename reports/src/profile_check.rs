//! The report of `glass profile check`: requested against realised figures.

use std::fmt::Write;

use netem::check::CheckReport;
use serde::Serialize;

/// All directions checked for one profile; `--json` prints this object.
#[derive(Debug, Serialize)]
pub struct ProfileCheck {
    pub profile: String,
    pub description: Option<String>,
    pub directions: Vec<CheckReport>,
}

fn pct(x: f64) -> String {
    format!("{:.3} %", x * 100.0)
}

fn mbit(bps: f64) -> String {
    format!("{:.2} Mbit/s", bps / 1e6)
}

/// The one-line verdict the issue asked for:
/// `asked 2.00 % loss, mean burst 3.0; got 1.98 %, 3.04`.
pub fn loss_summary(r: &CheckReport) -> Option<String> {
    let rate = r.requested.loss_rate?;
    let burst = r.requested.mean_burst.unwrap_or(f64::NAN);
    let g = &r.realised;
    // Within the interval, or not: the verdict a user wants at a glance.
    let inside = (g.loss_rate - rate).abs() <= g.loss_rate_ci95
        && (burst.is_nan() || (g.mean_burst - burst).abs() <= g.mean_burst_ci95);
    Some(format!(
        "asked {:.2} % loss, mean burst {:.2}; got {:.2} %, {:.2} ({})",
        rate * 100.0,
        burst,
        g.loss_rate * 100.0,
        g.mean_burst,
        if inside {
            "within the 95 % interval"
        } else {
            "outside the 95 % interval"
        }
    ))
}

/// Human-readable report.
pub fn render_text(check: &ProfileCheck) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "profile {}", check.profile);
    if let Some(d) = &check.description {
        let _ = writeln!(s, "  {d}");
    }
    for r in &check.directions {
        let q = &r.requested;
        let g = &r.realised;
        let c = &g.counters;
        let _ = writeln!(
            s,
            "\n{}: {} packets of {} B at {} (seed {}, {:.1} s of virtual time)",
            r.direction,
            r.packets,
            r.packet_size,
            mbit(r.offered_bps),
            r.seed,
            r.duration_s
        );
        let _ = writeln!(s, "  {:<20} {:<36} got", "", "asked");
        let row = |s: &mut String, k: &str, a: String, b: String| {
            let _ = writeln!(s, "  {k:<20} {a:<36} {b}");
        };
        match (&q.loss_model, q.loss_rate) {
            (Some(_), Some(rate)) => row(
                &mut s,
                "loss",
                format!(
                    "{}, mean burst {:.2}",
                    pct(rate),
                    q.mean_burst.unwrap_or(f64::NAN)
                ),
                format!(
                    "{} ±{:.3}, mean burst {:.2} ±{:.2} (95 % CI)",
                    pct(g.loss_rate),
                    g.loss_rate_ci95 * 100.0,
                    g.mean_burst,
                    g.mean_burst_ci95
                ),
            ),
            (Some(m), None) => row(
                &mut s,
                "loss",
                m.clone(),
                format!("{} packets lost", c.dropped_loss),
            ),
            (None, _) => row(
                &mut s,
                "loss",
                "none".into(),
                format!("{} packets lost", c.dropped_loss),
            ),
        }
        if let Some(m) = &q.loss_model {
            let _ = writeln!(s, "  {:<20} {m}", "  model");
        }
        let shape = match (&q.distribution, &q.order) {
            (Some(d), Some(o)) => format!(" ({d}, {o})"),
            _ => String::new(),
        };
        row(
            &mut s,
            "delay mean ± std",
            format!("{:.2} ± {:.2} ms{shape}", q.delay_mean_ms, q.delay_std_ms),
            format!("{:.2} ± {:.2} ms", g.delay_mean_ms, g.delay_std_ms),
        );
        row(
            &mut s,
            "delay p50/p90/p99",
            String::new(),
            format!(
                "{:.2} / {:.2} / {:.2} ms (max {:.2})",
                g.delay_p50_ms, g.delay_p90_ms, g.delay_p99_ms, g.delay_max_ms
            ),
        );
        row(
            &mut s,
            "throughput",
            q.capacity_bps
                .map_or("no rate limit".into(), |b| format!("capacity {}", mbit(b))),
            mbit(g.throughput_bps),
        );
        row(
            &mut s,
            "queue drops",
            q.queue
                .clone()
                .map_or("no queue limit".into(), |l| format!("limit {l}")),
            format!(
                "{} full, {} AQM, {} outage",
                c.dropped_queue, c.dropped_aqm, c.dropped_outage
            ),
        );
        row(
            &mut s,
            "dup/corrupt/reorder",
            format!(
                "{} / {} / {}",
                pct(q.duplicate),
                pct(q.corrupt),
                pct(q.reorder)
            ),
            format!(
                "{} / {} / {} packets, {} out of order",
                c.duplicated, c.corrupted, c.reordered, c.delivered_out_of_order
            ),
        );
        row(
            &mut s,
            "packets",
            format!("{} pushed", c.pushed),
            format!("{} delivered, {} dropped", c.delivered, c.dropped()),
        );
        if let Some(line) = loss_summary(r) {
            let _ = writeln!(s, "  {line}");
        }
        for n in &r.notes {
            let _ = writeln!(s, "  note: {n}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use netem::check::{CheckOptions, run};

    #[test]
    fn text_report_shows_asked_and_got() {
        let (up, _) = netem::resolve("loss gemodel 2% 30% delay 40ms")
            .unwrap()
            .validate()
            .unwrap();
        let r = run(
            "x",
            "both",
            &up,
            &CheckOptions {
                packets: 20_000,
                ..Default::default()
            },
        );
        let check = ProfileCheck {
            profile: "x".into(),
            description: None,
            directions: vec![r],
        };
        let text = render_text(&check);
        assert!(
            text.contains("asked 6.25 % loss, mean burst 3.33; got "),
            "{text}"
        );
        assert!(text.contains("delay mean ± std"));
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(json["directions"][0]["requested"]["delay_mean_ms"], 40.0);
    }
}
