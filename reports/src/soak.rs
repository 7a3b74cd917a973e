//! A soak's figures: the process's memory, open files and threads sampled
//! over hours of repeated runs, a least-squares trend over the window after
//! the warm-up, a verdict per series, plots and a page (`soak.html`).
//!
//! Method. The first quarter of the soak is warm-up (allocator arenas,
//! caches and the runtime's thread pool fill up there) and is left out; over
//! the rest an ordinary least-squares line is fitted to each series and its
//! slope gets a 95 % interval (Student's t on the slope's standard error).
//! A series *grows* when the interval lies above zero **and** the fitted
//! change over the window exceeds a practical floor (RSS and heap in use:
//! 2 % of the mean or 2 MiB; open files: 2; threads: 1; async tasks: 2): samples taken during a run see its
//! sockets and threads, so a statistically "significant" slope of a
//! fraction of a descriptor is noise in practice, and a leak of one socket
//! per run is far above it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plots::{self, Chart, Line};
use crate::stats::t975;

pub const SOAK_SCHEMA: &str = "glass.soak.v1";
/// Share of the soak at its start that the trends leave out.
pub const WARMUP_SHARE: f64 = 0.25;
/// Fewest samples in the window for a verdict.
pub const MIN_SAMPLES: usize = 8;

/// One reading of the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the soak started.
    pub t_s: f64,
    pub rss_kib: u64,
    /// Bytes the allocator has handed out and not had back (glibc's
    /// `mallinfo2`: in-use chunks of every arena plus mmapped ones), KiB; 0
    /// where that is not known. Resident memory that grows while this stays
    /// flat is the allocator keeping freed pages, not Glass keeping data.
    #[serde(default)]
    pub heap_kib: u64,
    pub fds: u64,
    pub threads: u64,
    /// Tasks alive in Glass's async runtime.
    #[serde(default)]
    pub tasks: u64,
    /// Runs finished (and failed) by then.
    pub runs: u64,
    pub failed: u64,
}

/// Which of a sample's readings a trend is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Series {
    RssKib,
    HeapKib,
    Fds,
    Threads,
    Tasks,
}

impl Series {
    pub const ALL: [Series; 5] = [
        Series::RssKib,
        Series::HeapKib,
        Series::Fds,
        Series::Threads,
        Series::Tasks,
    ];

    pub fn of(self, s: &Sample) -> f64 {
        match self {
            Series::RssKib => s.rss_kib as f64,
            Series::HeapKib => s.heap_kib as f64,
            Series::Fds => s.fds as f64,
            Series::Threads => s.threads as f64,
            Series::Tasks => s.tasks as f64,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Series::RssKib => "resident memory (KiB)",
            Series::HeapKib => "heap in use (KiB)",
            Series::Fds => "open file descriptors",
            Series::Threads => "threads",
            Series::Tasks => "async tasks",
        }
    }

    /// Read in KiB, shown in MiB.
    pub fn is_memory(self) -> bool {
        matches!(self, Series::RssKib | Series::HeapKib)
    }

    /// The smallest change over the window that counts as growth.
    fn floor(self, mean: f64) -> f64 {
        match self {
            Series::RssKib | Series::HeapKib => (0.02 * mean).max(2048.0),
            Series::Fds => 2.0,
            Series::Threads => 1.0,
            Series::Tasks => 2.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No growth beyond noise and the practical floor.
    Flat,
    Growing,
    /// Fewer than [`MIN_SAMPLES`] samples after the warm-up.
    TooShort,
}

/// A series' least-squares trend over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub series: Series,
    pub window_from_s: f64,
    pub window_to_s: f64,
    pub samples: usize,
    pub first: f64,
    pub last: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub slope_per_hour: f64,
    /// Half-width of the slope's 95 % interval (per hour).
    pub slope_ci95_per_hour: f64,
    /// Fitted change across the window (slope × its length).
    pub change_over_window: f64,
    /// The floor `change_over_window` is held against.
    pub growth_floor: f64,
    pub verdict: Verdict,
}

impl Trend {
    /// The fitted line over the window, for a plot.
    pub fn line(&self) -> [(f64, f64); 2] {
        let mid = (self.window_from_s + self.window_to_s) / 2.0;
        let at = |t: f64| self.mean + self.slope_per_hour * (t - mid) / 3600.0;
        // OLS passes through (mean t, mean y); the samples are evenly spaced,
        // so mean t is the window's middle to within one interval.
        [
            (self.window_from_s, at(self.window_from_s)),
            (self.window_to_s, at(self.window_to_s)),
        ]
    }
}

/// The trend of `series` over the samples after the warm-up.
pub fn trend(samples: &[Sample], series: Series) -> Trend {
    let end = samples.last().map_or(0.0, |s| s.t_s);
    let from = end * WARMUP_SHARE;
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_s >= from)
        .map(|s| (s.t_s / 3600.0, series.of(s)))
        .collect();
    let n = pts.len();
    let nf = n.max(1) as f64;
    let mt = pts.iter().map(|p| p.0).sum::<f64>() / nf;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / nf;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let ci = if n > 2 && sxx > 0.0 {
        let sse: f64 = pts
            .iter()
            .map(|p| (p.1 - my - slope * (p.0 - mt)).powi(2))
            .sum();
        t975(n - 2) * (sse / (n - 2) as f64 / sxx).sqrt()
    } else {
        f64::INFINITY
    };
    let window_from_s = pts.first().map_or(from, |p| p.0 * 3600.0);
    let window_to_s = end;
    let change = slope * (window_to_s - window_from_s) / 3600.0;
    let floor = series.floor(my);
    let verdict = if n < MIN_SAMPLES {
        Verdict::TooShort
    } else if slope - ci > 0.0 && change > floor {
        Verdict::Growing
    } else {
        Verdict::Flat
    };
    let ys = || pts.iter().map(|p| p.1);
    Trend {
        series,
        window_from_s,
        window_to_s,
        samples: n,
        first: pts.first().map_or(f64::NAN, |p| p.1),
        last: pts.last().map_or(f64::NAN, |p| p.1),
        mean: my,
        min: ys().fold(f64::INFINITY, f64::min),
        max: ys().fold(f64::NEG_INFINITY, f64::max),
        slope_per_hour: slope,
        slope_ci95_per_hour: ci,
        change_over_window: change,
        growth_floor: floor,
        verdict,
    }
}

/// One run of the soak, as `soak-runs.csv` lists it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakRun {
    pub index: u64,
    pub started_s: f64,
    pub network: String,
    pub protocol: String,
    pub status: String,
    pub g2g_p50_ms: Option<f64>,
    pub g2g_p99_ms: Option<f64>,
    pub stall_ratio: Option<f64>,
    /// The process right after the run ended (its sockets closed).
    pub after: Sample,
    pub error: Option<String>,
}

/// `soak.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SoakSummary {
    pub schema: String,
    pub scenario: String,
    pub glass_version: String,
    pub mode: String,
    pub hours_asked: f64,
    pub elapsed_s: f64,
    pub sample_every_s: f64,
    /// Why it ended: "time", "interrupted", or an error.
    pub ended: String,
    pub runs: u64,
    pub failed: u64,
    /// Trends over the periodic samples (the figure).
    pub trends: Vec<Trend>,
    /// The same over the readings taken right after each run, when nothing
    /// of a run should be left open.
    pub trends_between_runs: Vec<Trend>,
    pub passed: bool,
}

impl SoakSummary {
    pub fn new(
        scenario: &str,
        mode: &str,
        (hours_asked, sample_every_s): (f64, f64),
        ended: String,
        samples: &[Sample],
        runs: &[SoakRun],
    ) -> SoakSummary {
        let trends: Vec<Trend> = Series::ALL.iter().map(|&s| trend(samples, s)).collect();
        let between: Vec<Sample> = runs.iter().map(|r| r.after).collect();
        let trends_between_runs: Vec<Trend> =
            Series::ALL.iter().map(|&s| trend(&between, s)).collect();
        let passed = trends
            .iter()
            .chain(&trends_between_runs)
            .all(|t| t.verdict != Verdict::Growing);
        SoakSummary {
            schema: SOAK_SCHEMA.into(),
            scenario: scenario.into(),
            glass_version: env!("CARGO_PKG_VERSION").into(),
            mode: mode.into(),
            hours_asked,
            elapsed_s: samples.last().map_or(0.0, |s| s.t_s),
            sample_every_s,
            ended,
            runs: runs.len() as u64,
            failed: runs.iter().filter(|r| r.status != "ok").count() as u64,
            trends,
            trends_between_runs,
            passed,
        }
    }

    /// The verdict lines a terminal shows.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "soak of {}: {:.1} min, {} runs ({} failed), ended by {}",
            self.scenario,
            self.elapsed_s / 60.0,
            self.runs,
            self.failed,
            self.ended
        );
        for (what, trends) in [
            ("sampled", &self.trends),
            ("after each run", &self.trends_between_runs),
        ] {
            for tr in trends {
                let _ = writeln!(t, "  {what:>14}  {}", describe(tr));
            }
        }
        let _ = writeln!(
            t,
            "{}",
            if self.passed {
                "no growth"
            } else {
                "GROWTH: see soak.html"
            }
        );
        t
    }
}

/// One trend in words.
pub fn describe(t: &Trend) -> String {
    let (scale, unit) = if t.series.is_memory() {
        (1.0 / 1024.0, "MiB")
    } else {
        (1.0, "")
    };
    let v = |x: f64| {
        format!(
            "{:.1}{}{unit}",
            x * scale,
            if unit.is_empty() { "" } else { " " }
        )
    };
    format!(
        "{:<22} {:>3} samples from {:>5.1} min: mean {}, range {}–{}, slope {}{}/h ± {}/h, change over the window {} (floor {}): {}",
        t.series.label(),
        t.samples,
        t.window_from_s / 60.0,
        v(t.mean),
        v(t.min),
        v(t.max),
        if t.slope_per_hour >= 0.0 { "+" } else { "" },
        v(t.slope_per_hour),
        v(t.slope_ci95_per_hour),
        v(t.change_over_window),
        v(t.growth_floor),
        match t.verdict {
            Verdict::Flat => "flat",
            Verdict::Growing => "GROWING",
            Verdict::TooShort => "too short to tell",
        }
    )
}

/// Plots of each series with its trend line, and `soak.html`; returns the
/// page's path.
pub fn write_report(
    dir: &Path,
    summary: &SoakSummary,
    samples: &[Sample],
    runs: &[SoakRun],
) -> Result<PathBuf, crate::html::ReportError> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|source| crate::html::ReportError::Write {
        path: plots_dir.clone(),
        source,
    })?;
    let mut svgs = Vec::new();
    for (i, t) in summary.trends.iter().enumerate() {
        let s = t.series;
        let scale = if s.is_memory() { 1.0 / 1024.0 } else { 1.0 };
        let pick = |x: &Sample| (x.t_s / 60.0, s.of(x) * scale);
        let chart = Chart {
            title: format!("{} over the soak", s.label().replace("(KiB)", "(MiB)")),
            x_label: "minutes".into(),
            y_label: if s.is_memory() {
                "MiB".into()
            } else {
                "count".into()
            },
            lines: vec![
                Line {
                    label: format!("every {} s", summary.sample_every_s),
                    points: samples.iter().map(pick).collect(),
                    ..Line::default()
                },
                Line {
                    label: "after each run".into(),
                    points: runs.iter().map(|r| pick(&r.after)).collect(),
                    dashed: true,
                    ..Line::default()
                },
                Line {
                    label: format!("trend after the warm-up: {:?}", t.verdict).to_lowercase(),
                    points: t
                        .line()
                        .iter()
                        .map(|&(x, y)| (x / 60.0, y * scale))
                        .collect(),
                    ..Line::default()
                },
            ],
            markers: vec![(t.window_from_s / 60.0, "warm-up ends".into())],
            log_x: Some(false),
            ..Chart::default()
        };
        let (svg, _) = plots::save(
            &chart,
            &plots_dir.join(format!("soak-{i}-{s:?}").to_lowercase()),
        )?;
        svgs.push((chart.title, svg));
    }
    let g2g = Chart {
        title: "G2G p99 of each run over the soak".into(),
        x_label: "minutes".into(),
        y_label: "ms".into(),
        lines: {
            let mut by: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
            for r in runs {
                let key = format!("{} / {}", r.network, r.protocol);
                let Some(v) = r.g2g_p99_ms else { continue };
                match by.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, pts)) => pts.push((r.started_s / 60.0, v)),
                    None => by.push((key, vec![(r.started_s / 60.0, v)])),
                }
            }
            by.into_iter()
                .map(|(label, points)| Line {
                    label,
                    points,
                    ..Line::default()
                })
                .collect()
        },
        log_x: Some(false),
        ..Chart::default()
    };
    let (svg, _) = plots::save(&g2g, &plots_dir.join("soak-g2g"))?;
    svgs.push((g2g.title, svg));

    let mut h = String::new();
    let title = format!("Glass soak — {}", summary.scenario);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body><h1>{}</h1>",
        crate::html::esc(&title),
        crate::html::STYLE,
        crate::html::esc(&title)
    );
    let _ = write!(
        h,
        "<p>{:.1} min of repeated runs ({} asked), {} runs, {} failed, mode {}, ended by {}; samples every {} s. Glass {}, schema <code>{}</code>.</p>\
         <p>Method: the first {:.0} % is warm-up; over the rest a least-squares line per series, its slope with a 95 % interval. \
         A series grows when the interval is above zero and the fitted change over the window exceeds the floor (RSS 2 % or 2 MiB, files 2, threads 1, tasks 2). \
         Verdict: <b class=\"{}\">{}</b>.</p>",
        summary.elapsed_s / 60.0,
        crate::html::esc(&format!("{} h", summary.hours_asked)),
        summary.runs,
        summary.failed,
        crate::html::esc(&summary.mode),
        crate::html::esc(&summary.ended),
        summary.sample_every_s,
        crate::html::esc(&summary.glass_version),
        SOAK_SCHEMA,
        WARMUP_SHARE * 100.0,
        if summary.passed { "" } else { "fail" },
        if summary.passed {
            "no growth"
        } else {
            "growth"
        }
    );
    h.push_str("<table><tr><th>series</th><th>readings</th><th>samples</th><th>mean</th><th>min</th><th>max</th><th>slope per hour (± 95 %)</th><th>change over the window</th><th>floor</th><th>verdict</th></tr>");
    for (what, trends) in [
        ("every sample", &summary.trends),
        ("after each run", &summary.trends_between_runs),
    ] {
        for t in trends {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{what}</td><td>{}</td><td>{:.1}</td><td>{:.0}</td><td>{:.0}</td><td>{:+.2} ± {:.2}</td><td>{:+.2}</td><td>{:.1}</td><td class=\"{}\">{:?}</td></tr>",
                t.series.label(),
                t.samples,
                t.mean,
                t.min,
                t.max,
                t.slope_per_hour,
                t.slope_ci95_per_hour,
                t.change_over_window,
                t.growth_floor,
                if t.verdict == Verdict::Growing {
                    "fail"
                } else {
                    ""
                },
                t.verdict
            );
        }
    }
    h.push_str("</table><h2>Plots</h2>");
    for (title, svg) in &svgs {
        crate::html::figure(&mut h, svg, title)?;
    }
    let failed: Vec<&SoakRun> = runs.iter().filter(|r| r.status != "ok").collect();
    if !failed.is_empty() {
        h.push_str("<h2>Failed runs</h2><ul>");
        for r in failed {
            let _ = write!(
                h,
                "<li>run {} at {:.1} min, {} / {}: {}</li>",
                r.index,
                r.started_s / 60.0,
                crate::html::esc(&r.network),
                crate::html::esc(&r.protocol),
                crate::html::esc(r.error.as_deref().unwrap_or("failed"))
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    let out = dir.join("soak.html");
    std::fs::write(&out, h).map_err(|source| crate::html::ReportError::Write {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(f: impl Fn(f64) -> u64) -> Vec<Sample> {
        (0..=360)
            .map(|i| {
                let t_s = i as f64 * 10.0;
                Sample {
                    t_s,
                    rss_kib: f(t_s),
                    heap_kib: f(t_s) / 2,
                    fds: 20 + (i % 3),
                    threads: 9 + (i % 2),
                    tasks: 30 + (i % 5),
                    runs: i / 6,
                    failed: 0,
                }
            })
            .collect()
    }

    #[test]
    fn flat_noisy_series_are_flat_and_a_leak_is_growth() {
        // An hour of samples, 50 MiB with ±1 MiB of saw-tooth noise, after
        // a warm-up ramp in the first ten minutes: flat.
        let flat = samples(|t| {
            let ramp = (t.min(600.0) / 600.0 * 10_000.0) as u64;
            40_000 + ramp + ((t as u64 / 10) % 7) * 300
        });
        for s in Series::ALL {
            let tr = trend(&flat, s);
            assert_eq!(tr.verdict, Verdict::Flat, "{}", describe(&tr));
            assert_eq!(tr.samples, 271);
            assert!((tr.window_from_s - 900.0).abs() < 1e-9);
        }
        // 100 KiB a minute (one run's buffers kept each run): 4.4 MiB over
        // 45 minutes, above the 2 MiB floor, and its slope is right.
        let leak = samples(|t| 50_000 + (t / 60.0 * 100.0) as u64 + ((t as u64 / 10) % 7) * 300);
        let tr = trend(&leak, Series::RssKib);
        assert_eq!(tr.verdict, Verdict::Growing, "{}", describe(&tr));
        assert!(
            (tr.slope_per_hour - 6000.0).abs() < 300.0,
            "{}",
            tr.slope_per_hour
        );
        // A slope that is real but tiny (20 KiB over the window) is flat.
        let tiny = samples(|t| 50_000 + (t / 3600.0 * 27.0) as u64);
        assert_eq!(trend(&tiny, Series::RssKib).verdict, Verdict::Flat);
        // Too few samples: no verdict.
        assert_eq!(trend(&leak[..10], Series::Fds).verdict, Verdict::TooShort);
    }

    #[test]
    fn the_summary_fails_on_any_growth_and_the_report_is_written() {
        let leak = samples(|t| 50_000 + (t / 60.0 * 100.0) as u64);
        let runs: Vec<SoakRun> = leak
            .iter()
            .step_by(6)
            .enumerate()
            .map(|(i, s)| SoakRun {
                index: i as u64,
                started_s: s.t_s,
                network: "clean".into(),
                protocol: "rtmp".into(),
                status: "ok".into(),
                g2g_p99_ms: Some(331.0),
                after: *s,
                ..SoakRun::default()
            })
            .collect();
        let s = SoakSummary::new("q", "link", (1.0, 10.0), "time".into(), &leak, &runs);
        assert!(!s.passed);
        assert!(s.text().contains("GROWING"), "{}", s.text());
        let dir = std::env::temp_dir().join(format!("glass-soak-test-{}", std::process::id()));
        let page = write_report(&dir, &s, &leak, &runs).unwrap();
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("<svg") && html.contains("Growing"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
