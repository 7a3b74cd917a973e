//! The HTML report of a results directory: one self-contained page (plots
//! inline as SVG, no network fetches) with the scenario, the realised-
//! against-requested impairment, the comparison table and the plots; the
//! plots also go to `plots/` as SVG and PNG. `glass report` and the end of
//! `glass run` write it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::decision::{self, NumericAxis, Outcome};
use crate::plots::{self, Cell, Chart, Fill, Heatmap, Line, PlotError};
use crate::results::{self, Results, ResultsError, Run};
use crate::stats::summarize;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("reading {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("formatting the page: {0}")]
    Format(#[from] std::fmt::Error),
}

type Result<T> = std::result::Result<T, ReportError>;

/// Appends the SVG file `svg` inline as a figure captioned `title`.
pub(crate) fn figure(h: &mut String, svg: &Path, title: &str) -> Result<()> {
    let text = std::fs::read_to_string(svg).map_err(|source| ReportError::Read {
        path: svg.to_path_buf(),
        source,
    })?;
    let body = text.find("<svg").map_or(text.as_str(), |i| &text[i..]);
    let _ = write!(
        h,
        "<figure>{body}<figcaption>{}</figcaption></figure>",
        esc(title)
    );
    Ok(())
}

/// The pages' style sheet (the report's and the soak's).
pub(crate) const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;font-size:13px}\
    td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}\
    .fail{color:#b00}figure{margin:1.5em 0}svg{max-width:100%;height:auto}code{font-size:12px}\
    .grid{display:grid;grid-template-columns:1fr 1fr;gap:0 1em}.grid figure{margin:.5em 0}.verdict li{margin:.2em 0}";

/// Charts per kind are capped, so a large sweep still gives a readable page.
const MAX_TIME_CHARTS: usize = 12;

#[derive(Debug)]
struct FrameRow {
    point: String,
    network: String,
    protocol: String,
    repeat: u32,
    display_ms: f64,
    g2g_ms: f64,
}

#[derive(Debug)]
struct SecondRow {
    point: String,
    network: String,
    protocol: String,
    repeat: u32,
    second: f64,
    sent_kbps: f64,
    stalled_ms: f64,
}

fn read_csv<T>(path: &Path, row: impl Fn(&csv::StringRecord) -> Option<T>) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r = csv::Reader::from_path(path).map_err(|source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(r.records()
        .filter_map(|rec| rec.ok())
        .filter_map(|rec| row(&rec))
        .collect())
}

fn f(rec: &csv::StringRecord, i: usize) -> Option<f64> {
    rec.get(i)?.parse().ok()
}

/// `s` as HTML text.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

type Key = (String, String);

fn case_title(point: &str, network: &str) -> String {
    if point.is_empty() {
        network.to_string()
    } else {
        format!("[{point}] {network}")
    }
}

/// A protocol's own figures in the report, drawn from the runs: each a
/// file stem (unique to the protocol, e.g. "udp-residual-loss") and a chart.
pub trait ReportFigures: Sync {
    fn figures(&self, runs: &[Run]) -> Vec<(String, Chart)>;
}

/// Writes plots/ and report.html into `dir` (with `extra`, the protocols'
/// own figures, after the common ones); returns the page's path.
pub fn write_report(dir: &Path, extra: &[&dyn ReportFigures]) -> Result<PathBuf> {
    let results = results::read(&dir.join("results.json"))?;
    let runs = &results.runs;
    let frames = read_csv(&dir.join("frames.csv"), |r| {
        Some(FrameRow {
            point: r.get(0)?.to_string(),
            network: r.get(1)?.to_string(),
            protocol: r.get(2)?.to_string(),
            repeat: r.get(3)?.parse().ok()?,
            display_ms: f(r, 7)?,
            g2g_ms: f(r, 8)?,
        })
    })?;
    let seconds = read_csv(&dir.join("seconds.csv"), |r| {
        Some(SecondRow {
            point: r.get(0)?.to_string(),
            network: r.get(1)?.to_string(),
            protocol: r.get(2)?.to_string(),
            repeat: r.get(3)?.parse().ok()?,
            second: f(r, 4)?,
            sent_kbps: f(r, 5)?,
            stalled_ms: f(r, 8).unwrap_or(0.0),
        })
    })?;
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|source| ReportError::Write {
        path: plots_dir.clone(),
        source,
    })?;
    let mut figures = Figures {
        dir: plots_dir,
        saved: Vec::new(),
    };

    // Cases, networks and protocols in the order they ran.
    let cases: Vec<Key> = distinct(runs.iter().map(|r| (r.point.clone(), r.network.clone())));
    let networks: Vec<String> = distinct(cases.iter().map(|c| c.1.clone()));
    let protocols: Vec<String> = distinct(runs.iter().map(|r| r.protocol.clone()));

    let data = Data {
        runs,
        frames: &frames,
        seconds: &seconds,
        cases: &cases,
        networks: &networks,
        protocols: &protocols,
    };
    let budget = decision::stall_budget(&results.scenario.budgets);
    decision_figures(&data, budget, &mut figures)?;
    cdf_figures(&data, &mut figures)?;
    sweep_figures(&data, &mut figures)?;
    time_figures(&data, &mut figures)?;
    recovery_figures(&data, &mut figures)?;
    viewer_figures(&data, &mut figures)?;
    for e in extra {
        for (name, chart) in e.figures(runs) {
            figures.add(&name, chart)?;
        }
    }

    let verdicts = verdicts(&data, budget);
    let html = page(&results, &verdicts, &figures.saved)?;
    let out = dir.join("report.html");
    std::fs::write(&out, html).map_err(|source| ReportError::Write {
        path: out.clone(),
        source,
    })?;
    Ok(out)
}

/// The items of `it` without repeats, in first-seen order.
fn distinct<T: PartialEq>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = Vec::new();
    for x in it {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// What the report's figures are drawn from.
#[derive(Clone, Copy)]
struct Data<'a> {
    runs: &'a [Run],
    frames: &'a [FrameRow],
    seconds: &'a [SecondRow],
    /// (point, network) in the order they ran.
    cases: &'a [Key],
    /// The cases' networks, in the order they ran.
    networks: &'a [String],
    /// Protocols in the order they ran.
    protocols: &'a [String],
}

/// The figures saved so far (title, SVG path, whether it is one of many
/// small multiples) and where they go.
struct Figures {
    dir: PathBuf,
    saved: Vec<(String, PathBuf, bool)>,
}

impl Figures {
    /// Saves `chart` as plots/NAME.svg and .png, full width.
    fn add(&mut self, name: &str, chart: Chart) -> Result<()> {
        let (svg, _png) = plots::save(&chart, &self.dir.join(name))?;
        self.saved.push((chart.title.clone(), svg, false));
        Ok(())
    }

    /// Saves a per-run chart, shown side by side with the others.
    fn add_small(&mut self, name: &str, chart: Chart) -> Result<()> {
        let (svg, _png) = plots::save(&chart, &self.dir.join(name))?;
        self.saved.push((chart.title.clone(), svg, true));
        Ok(())
    }

    /// Saves heat-map panels as plots/NAME.svg and .png, full width.
    fn add_panels(&mut self, name: &str, title: &str, panels: &[Heatmap]) -> Result<()> {
        let (svg, _png) = plots::save_panels(title, panels, 3, &self.dir.join(name))?;
        self.saved.push((title.to_string(), svg, false));
        Ok(())
    }
}

/// G2G CDF per case, one line per protocol (repeats pooled).
fn cdf_figures(data: &Data, figures: &mut Figures) -> Result<()> {
    let Data {
        frames,
        cases,
        protocols,
        ..
    } = *data;
    for (i, (point, network)) in cases.iter().enumerate() {
        let lines: Vec<Line> = protocols
            .iter()
            .filter_map(|p| {
                let v: Vec<f64> = frames
                    .iter()
                    .filter(|x| &x.point == point && &x.network == network && &x.protocol == p)
                    .map(|x| x.g2g_ms)
                    .collect();
                (!v.is_empty()).then(|| Line {
                    label: p.clone(),
                    points: plots::cdf(&v),
                    ..Line::default()
                })
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        figures.add(
            &format!("cdf-{i}"),
            Chart {
                title: format!("G2G latency CDF — {}", case_title(point, network)),
                x_label: "glass-to-glass latency (ms)".into(),
                y_label: "fraction of frames shown".into(),
                lines,
                y_range: Some((0.0, 1.02)),
                legend_lower_right: true,
                ..Chart::default()
            },
        )?;
    }
    Ok(())
}

/// G2G and bitrate over time (first repeat), stalls shaded, events marked.
fn time_figures(data: &Data, figures: &mut Figures) -> Result<()> {
    let Data {
        runs,
        frames,
        seconds,
        cases,
        protocols,
        ..
    } = *data;
    let mut n_time = 0;
    for (i, (point, network)) in cases.iter().enumerate() {
        for (j, p) in protocols.iter().enumerate() {
            if n_time >= MAX_TIME_CHARTS {
                break;
            }
            let pts: Vec<(f64, f64)> = frames
                .iter()
                .filter(|x| {
                    &x.point == point && &x.network == network && &x.protocol == p && x.repeat == 0
                })
                .map(|x| (x.display_ms / 1e3, x.g2g_ms))
                .collect();
            if pts.is_empty() {
                continue;
            }
            n_time += 1;
            let secs: Vec<&SecondRow> = seconds
                .iter()
                .filter(|x| {
                    &x.point == point && &x.network == network && &x.protocol == p && x.repeat == 0
                })
                .collect();
            let run = runs.iter().find(|r| {
                &r.point == point && &r.network == network && &r.protocol == p && r.repeat == 0
            });
            let result = run.and_then(|r| r.result.as_ref());
            // The stalls' exact spans; per-second totals for older results.
            let shaded: Vec<(f64, f64)> = match result.and_then(|r| r.stall_spans_ms.as_ref()) {
                Some(spans) => spans.iter().map(|(a, b)| (a / 1e3, b / 1e3)).collect(),
                None => secs
                    .iter()
                    .filter(|s| s.stalled_ms > 0.0)
                    .map(|s| (s.second, s.second + s.stalled_ms / 1e3))
                    .collect(),
            };
            let markers: Vec<(f64, String)> = run
                .iter()
                .flat_map(|r| &r.events)
                .map(|e| (e.at_ms / 1e3, e.what.clone()))
                .collect();
            figures.add_small(
                &format!("time-{i}-{j}"),
                Chart {
                    title: format!("G2G over time — {p}, {}", case_title(point, network)),
                    x_label: "time since the start (s)".into(),
                    y_label: "glass-to-glass latency (ms)".into(),
                    lines: vec![Line {
                        label: p.clone(),
                        points: pts,
                        ..Line::default()
                    }],
                    shaded,
                    shaded_label: "stalled".into(),
                    markers: markers.clone(),
                    ..Chart::default()
                },
            )?;
            // Bitrate: sent, ABR's target, and the first mile's capacity.
            let mut lines = vec![Line {
                label: "sent".into(),
                points: secs.iter().map(|s| (s.second, s.sent_kbps)).collect(),
                ..Line::default()
            }];
            if let Some(abr) = result.and_then(|r| r.publisher.abr.as_ref()) {
                lines.push(Line {
                    label: "ABR target".into(),
                    points: abr
                        .samples
                        .iter()
                        .map(|s| (s.at_ms / 1e3, s.target_bps / 1e3))
                        .collect(),
                    ..Line::default()
                });
            }
            if let Some(r) = run {
                let pts: Vec<(f64, f64)> = r
                    .capacity_steps
                    .iter()
                    .filter_map(|&(t, c)| Some((t / 1e3, c? / 1e3)))
                    .collect();
                if !pts.is_empty() {
                    lines.push(Line {
                        label: "first-mile capacity".into(),
                        points: pts,
                        step: true,
                        dashed: true,
                        ..Line::default()
                    });
                }
            }
            figures.add_small(
                &format!("bitrate-{i}-{j}"),
                Chart {
                    title: format!("Bitrate — {p}, {}", case_title(point, network)),
                    x_label: "time since the start (s)".into(),
                    y_label: "kbit/s".into(),
                    lines,
                    markers,
                    ..Chart::default()
                },
            )?;
        }
    }
    Ok(())
}

/// Sweep: G2G p99 and stall ratio per point, mean ± 95 % interval.
fn sweep_figures(data: &Data, figures: &mut Figures) -> Result<()> {
    let Data {
        runs,
        cases,
        networks,
        protocols,
        ..
    } = *data;
    let points: Vec<String> = distinct(cases.iter().map(|c| c.0.clone()));
    if points.len() > 1 {
        // A sweep of one numeric axis is drawn on a numeric x axis (its
        // values' spacing kept); others by point, in the order they ran.
        let axis = decision::numeric_axes(runs).filter(|a| a.len() == 1);
        let xs: Vec<f64> = match &axis {
            Some(a) => points
                .iter()
                .map(|p| {
                    runs.iter()
                        .find(|r| &r.point == p)
                        .and_then(|r| r.sweep.get(&a[0].key))
                        .and_then(|v| decision::number_of(v))
                        .map_or(f64::NAN, |(x, _)| x)
                })
                .collect(),
            None => (0..points.len()).map(|i| i as f64).collect(),
        };
        let (x_label, x_ticks) = match &axis {
            Some(a) => (a[0].label(), Vec::new()),
            None => ("sweep point".to_string(), points.clone()),
        };
        for (k, network) in networks.iter().enumerate() {
            for (metric, unit, scale) in [
                ("g2g_p99_ms", "G2G p99 (ms)", 1.0),
                ("stall_ratio", "stall ratio (%)", 100.0),
            ] {
                let lines = protocols
                    .iter()
                    .map(|proto| {
                        let mut line = Line {
                            label: proto.clone(),
                            ..Line::default()
                        };
                        for (i, point) in points.iter().enumerate() {
                            let x = xs[i];
                            let v: Vec<f64> = runs
                                .iter()
                                .filter(|r| {
                                    &r.point == point
                                        && &r.network == network
                                        && &r.protocol == proto
                                })
                                .filter_map(|r| r.player()?.metric(metric))
                                .map(|v| v * scale)
                                .collect();
                            if v.is_empty() {
                                continue;
                            }
                            let s = summarize(&v);
                            line.points.push((x, s.mean));
                            let ci = s.ci95.unwrap_or(0.0);
                            line.band.push((x, s.mean - ci, s.mean + ci));
                        }
                        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
                        line.band.sort_by(|a, b| a.0.total_cmp(&b.0));
                        line
                    })
                    .collect();
                figures.add(
                    &format!("sweep-{k}-{metric}"),
                    Chart {
                        title: format!("{unit} across the sweep — {network} (mean, 95 % interval)"),
                        x_label: x_label.clone(),
                        y_label: unit.into(),
                        lines,
                        x_ticks: x_ticks.clone(),
                        ..Chart::default()
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// The opening verdict: a line per case (point × network), or per network
/// a count of the cells each protocol wins when a sweep has many points.
fn verdicts(data: &Data, budget: f64) -> Vec<String> {
    let Data {
        runs,
        cases,
        networks,
        protocols,
        ..
    } = *data;
    let outcome = |point: &str, network: &str| {
        let cands = decision::candidates(
            runs.iter()
                .filter(move |r| r.point == point && r.network == network),
            protocols,
        );
        (decision::decide(&cands, budget), cands)
    };
    const MAX_LINES: usize = 12;
    if cases.len() <= MAX_LINES {
        return cases
            .iter()
            .filter_map(|(point, network)| {
                let (o, cands) = outcome(point, network);
                if cands.is_empty() {
                    return None;
                }
                let p99 = |p: &str| {
                    cands
                        .iter()
                        .find(|c| c.protocol == p)
                        .map_or(f64::NAN, |c| c.g2g_p99_ms.mean)
                };
                // Repeats behind the comparison that decided (best and
                // runner-up, or the tied ones).
                let n_of = |names: &[&String]| {
                    cands
                        .iter()
                        .filter(|c| names.contains(&&c.protocol))
                        .map(|c| c.g2g_p99_ms.n)
                        .min()
                        .unwrap_or(0)
                };
                let line = match &o {
                    Outcome::Best {
                        protocol,
                        runner_up: Some((other, by)),
                    } => format!(
                        "<b>{}</b> — G2G p99 {:.0} ms, {by:.0} ms lower than {} ({})",
                        esc(protocol),
                        p99(protocol),
                        esc(other),
                        if n_of(&[protocol, other]) >= 2 {
                            "the 95 % intervals tell them apart"
                        } else {
                            "one repeat: no interval, more than the 1 % noise threshold"
                        }
                    ),
                    Outcome::Best { protocol, .. } => format!(
                        "<b>{}</b> — G2G p99 {:.0} ms, {}",
                        esc(protocol),
                        p99(protocol),
                        if cands.len() == 1 {
                            "the only protocol run"
                        } else {
                            "the only protocol within the stall budget"
                        }
                    ),
                    Outcome::Tie(ps) => format!(
                        "<b>tie</b>: {} — G2G p99 {} ms; {}",
                        esc(&ps.join(" ≈ ")),
                        ps.iter()
                            .map(|p| format!("{:.0}", p99(p)))
                            .collect::<Vec<_>>()
                            .join(" / "),
                        if n_of(&ps.iter().collect::<Vec<_>>()) >= 2 {
                            "the 95 % intervals cannot tell them apart"
                        } else {
                            "one repeat: within the 1 % noise threshold"
                        }
                    ),
                    Outcome::NoneWithinBudget => {
                        let least = cands
                            .iter()
                            .filter(|c| c.never_played == 0)
                            .min_by(|a, b| a.stall_ratio.mean.total_cmp(&b.stall_ratio.mean));
                        format!(
                            "<b>none</b> within the budget: stalls over it, or a repeat whose player never showed a frame{}",
                            least.map_or(String::new(), |c| format!(
                                " (fewest: {} at {:.1} %)",
                                esc(&c.protocol),
                                c.stall_ratio.mean * 100.0
                            ))
                        )
                    }
                };
                Some(format!("{}: {line}", esc(&case_title(point, network))))
            })
            .collect();
    }
    networks
        .iter()
        .map(|network| {
            let mut wins: BTreeMap<String, usize> = BTreeMap::new();
            let mut cells = 0;
            for (point, _) in cases.iter().filter(|(_, n)| n == network) {
                cells += 1;
                let key = match outcome(point, network).0 {
                    Outcome::Best { protocol, .. } => protocol,
                    Outcome::Tie(_) => "a tie".into(),
                    Outcome::NoneWithinBudget => "none within budget".into(),
                };
                *wins.entry(key).or_default() += 1;
            }
            let mut by: Vec<(String, usize)> = wins.into_iter().collect();
            by.sort_by_key(|w| std::cmp::Reverse(w.1));
            format!(
                "{}, {cells} sweep points: {} (the decision map below shows where)",
                esc(network),
                by.iter()
                    .map(|(p, k)| format!("<b>{}</b> best in {k}", esc(p)))
                    .collect::<Vec<_>>()
                    .join(", ")
                    .replace("<b>a tie</b> best in", "a tie in")
                    .replace("<b>none within budget</b> best in", "none within budget in")
            )
        })
        .collect()
}

/// A two-axis numeric sweep: per network, the decision map (which protocol
/// wins each cell, `decision`'s rule) and heat maps of G2G p99 and stall
/// ratio, a panel per protocol on one colour scale.
fn decision_figures(data: &Data, budget: f64, figures: &mut Figures) -> Result<()> {
    let Data {
        runs,
        networks,
        protocols,
        ..
    } = *data;
    let Some(axes) = decision::numeric_axes(runs) else {
        return Ok(());
    };
    let [ya, xa]: [NumericAxis; 2] = match axes.try_into() {
        Ok(a) => a,
        Err(_) => return Ok(()),
    };
    let ticks = |a: &NumericAxis| -> Vec<String> { a.values.iter().map(|v| v.0.clone()).collect() };
    for (k, network) in networks.iter().enumerate() {
        // Each cell's runs, by its coordinates.
        let (xa, ya) = (&xa, &ya);
        let cell_runs = move |x: usize, y: usize| {
            let (xv, yv) = (&xa.values[x].0, &ya.values[y].0);
            runs.iter().filter(move |r| {
                &r.network == network
                    && r.sweep.get(&xa.key) == Some(xv)
                    && r.sweep.get(&ya.key) == Some(yv)
            })
        };
        let grid: Vec<(usize, usize)> = (0..xa.values.len())
            .flat_map(|x| (0..ya.values.len()).map(move |y| (x, y)))
            .collect();
        let mut map = Heatmap {
            title: "lowest G2G p99 within the stall budget (hatched grey: a tie)".into(),
            x_label: xa.label(),
            y_label: ya.label(),
            x_ticks: ticks(xa),
            y_ticks: ticks(ya),
            cells: Vec::new(),
        };
        for &(x, y) in &grid {
            let cands = decision::candidates(cell_runs(x, y), protocols);
            if cands.is_empty() {
                continue;
            }
            let o = decision::decide(&cands, budget);
            let fill = match &o {
                Outcome::Best { protocol, .. } => {
                    Fill::Series(protocols.iter().position(|p| p == protocol).unwrap_or(0))
                }
                Outcome::Tie(_) => Fill::Tie,
                Outcome::NoneWithinBudget => Fill::Empty,
            };
            map.cells.push(Cell {
                x,
                y,
                fill,
                text: o.short(),
            });
        }
        figures.add_panels(
            &format!("decision-{k}"),
            &format!(
                "Decision map — {network} (stalls ≤ {:.1} %)",
                budget * 100.0
            ),
            &[map],
        )?;
        for (metric, title, scale, unit) in [
            ("g2g_p99_ms", "G2G p99", 1.0, "ms"),
            ("stall_ratio", "stall ratio", 100.0, "%"),
        ] {
            // (protocol, x, y) → the mean over repeats.
            let mut means: BTreeMap<(usize, usize, usize), f64> = BTreeMap::new();
            let mut silent: Vec<(usize, usize, usize)> = Vec::new();
            for (i, p) in protocols.iter().enumerate() {
                for &(x, y) in &grid {
                    // Players that never showed a frame have no G2G and no
                    // stalls to average: such a cell says so instead.
                    let players: Vec<_> = cell_runs(x, y)
                        .filter(|r| &r.protocol == p)
                        .filter_map(|r| r.player())
                        .collect();
                    let v: Vec<f64> = players
                        .iter()
                        .filter(|pl| pl.frames_displayed > 0)
                        .filter_map(|pl| pl.metric(metric))
                        .map(|v| v * scale)
                        .collect();
                    if !v.is_empty() {
                        means.insert((i, x, y), v.iter().sum::<f64>() / v.len() as f64);
                    } else if !players.is_empty() {
                        silent.push((i, x, y));
                    }
                }
            }
            // One scale over every panel (log for latency spanning 10×).
            let (lo, hi) = means
                .values()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let log = lo > 0.0 && hi / lo >= 10.0;
            let t = |v: f64| {
                if hi <= lo {
                    0.0
                } else if log {
                    (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
                } else {
                    (v - lo) / (hi - lo)
                }
            };
            let panels: Vec<Heatmap> = protocols
                .iter()
                .enumerate()
                .map(|(i, p)| Heatmap {
                    title: p.clone(),
                    x_label: xa.label(),
                    y_label: ya.label(),
                    x_ticks: ticks(xa),
                    y_ticks: ticks(ya),
                    cells: means
                        .range((i, 0, 0)..(i + 1, 0, 0))
                        .map(|(&(_, x, y), &v)| Cell {
                            x,
                            y,
                            fill: Fill::Scale(t(v)),
                            text: if unit == "%" {
                                format!("{v:.1} %")
                            } else {
                                format!("{v:.0}")
                            },
                        })
                        .chain(silent.iter().filter(|c| c.0 == i).map(|&(_, x, y)| Cell {
                            x,
                            y,
                            fill: Fill::Empty,
                            text: "never played".into(),
                        }))
                        .collect(),
                })
                .collect();
            figures.add_panels(
                &format!("map-{k}-{metric}"),
                &format!(
                    "{title} ({unit}) — {network}, mean over repeats (darker is lower{})",
                    if log { "; log colour scale" } else { "" }
                ),
                &panels,
            )?;
        }
    }
    Ok(())
}

/// Recovery: frames lost against the first mile's realised loss.
fn recovery_figures(data: &Data, figures: &mut Figures) -> Result<()> {
    let Data { runs, .. } = *data;
    let mut recovery: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in runs {
        let (Some(check), Some(res)) = (r.impairment_check.get("first_mile_up"), &r.result) else {
            continue;
        };
        let (loss, expected, shown) = (
            check.loss_rate,
            res.frames_expected as f64,
            res.player.frames_displayed as f64,
        );
        if expected > 0.0 {
            recovery
                .entry(r.protocol.clone())
                .or_default()
                .push((loss * 100.0, (expected - shown).max(0.0) / expected * 100.0));
        }
    }
    if recovery.values().any(|v| v.iter().any(|p| p.0 > 0.0)) {
        let lines = lines_by_x(recovery);
        figures.add(
            "recovery",
            Chart {
                title: "Recovery: residual frame loss against link loss".into(),
                x_label: "first-mile uplink loss, realised (%)".into(),
                y_label: "frames due and never shown (%)".into(),
                lines,
                ..Chart::default()
            },
        )?;
    }
    Ok(())
}

/// A run's light viewers as results.json holds them (harness's
/// `fleet::ViewersReport`): each viewer's own percentiles.
#[derive(serde::Deserialize)]
struct ViewersPart {
    viewers: Vec<ViewerPart>,
}

#[derive(serde::Deserialize)]
struct ViewerPart {
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    join_ms: Option<f64>,
}

/// Per case with light viewers: the distribution across viewers of each
/// viewer's p50 and p99 capture → arrival (solid, dashed), one colour per
/// protocol, repeats pooled; and of their join times.
fn viewer_figures(data: &Data, figures: &mut Figures) -> Result<()> {
    let Data {
        runs,
        cases,
        protocols,
        ..
    } = *data;
    for (i, (point, network)) in cases.iter().enumerate() {
        let mut latency = Vec::new();
        let mut joins = Vec::new();
        for p in protocols {
            let viewers: Vec<ViewerPart> = runs
                .iter()
                .filter(|r| &r.point == point && &r.network == network && &r.protocol == p)
                .filter_map(|r| r.result.as_ref()?.section::<ViewersPart>("viewers"))
                .flat_map(|v| v.viewers)
                .collect();
            if viewers.is_empty() {
                continue;
            }
            let of = |f: fn(&ViewerPart) -> Option<f64>| -> Vec<f64> {
                viewers.iter().filter_map(f).collect()
            };
            for (what, values, dashed) in [
                ("p50", of(|v| v.p50_ms), false),
                ("p99", of(|v| v.p99_ms), true),
            ] {
                if !values.is_empty() {
                    latency.push(Line {
                        label: format!("{p} {what}"),
                        points: plots::cdf(&values),
                        dashed,
                        ..Line::default()
                    });
                }
            }
            let j = of(|v| v.join_ms);
            if !j.is_empty() {
                joins.push(Line {
                    label: p.clone(),
                    points: plots::cdf(&j),
                    ..Line::default()
                });
            }
        }
        if latency.is_empty() {
            continue;
        }
        let title = case_title(point, network);
        figures.add(
            &format!("viewers-{i}"),
            Chart {
                title: format!(
                    "Light viewers: capture → arrival, each viewer's p50 and p99 — {title}"
                ),
                x_label: "capture → arrival (ms)".into(),
                y_label: "fraction of viewers".into(),
                lines: latency,
                y_range: Some((0.0, 1.02)),
                legend_lower_right: true,
                ..Chart::default()
            },
        )?;
        if !joins.is_empty() {
            figures.add(
                &format!("viewers-join-{i}"),
                Chart {
                    title: format!("Light viewers: join time (dial → first frame) — {title}"),
                    x_label: "join time (ms)".into(),
                    y_label: "fraction of viewers".into(),
                    lines: joins,
                    y_range: Some((0.0, 1.02)),
                    legend_lower_right: true,
                    ..Chart::default()
                },
            )?;
        }
    }
    Ok(())
}

/// One line per label, its points in order of x (a loss-rate axis).
pub fn lines_by_x(series: BTreeMap<String, Vec<(f64, f64)>>) -> Vec<Line> {
    series
        .into_iter()
        .map(|(label, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Line {
                label,
                points,
                ..Line::default()
            }
        })
        .collect()
}

/// Where G2G goes, hop by hop (p50 / p99 of each segment, Glass's frames).
fn hops_table(h: &mut String, runs: &[Run]) {
    let with_hops: Vec<(&Run, &results::Hops)> = runs
        .iter()
        .filter_map(|r| Some((r, r.result.as_ref()?.hops.as_ref()?)))
        .collect();
    if with_hops.is_empty() {
        return;
    }
    h.push_str("<h2>G2G by hop</h2><p>Each frame's capture, publisher send, relay receive, relay send, player receive and display instants on the one clock: p50 / p99 of each segment (ms).</p><table><tr><th>point / network</th><th>protocol</th><th>repeat</th>");
    for (title, _) in results::Hops::default().segments() {
        let _ = write!(h, "<th>{title}</th>");
    }
    h.push_str("</tr>");
    for (r, hops) in with_hops {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(&case_title(&r.point, &r.network)),
            esc(&r.protocol),
            r.repeat + 1
        );
        for (_, seg) in hops.segments() {
            match seg {
                Some(s) => {
                    let _ = write!(h, "<td>{:.1} / {:.1}</td>", s.p50_ms, s.p99_ms);
                }
                None => h.push_str("<td>–</td>"),
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

/// Every link of each run's topology (results v2, link mode): what each
/// direction was asked, and what the engine did (packets in, delivered,
/// dropped, mean delay).
fn links_table(h: &mut String, runs: &[Run]) {
    let with_links: Vec<(&Run, &results::TopologyPart)> = runs
        .iter()
        .filter_map(|r| Some((r, r.topology.as_ref()?)))
        .filter(|(_, t)| {
            t.links
                .iter()
                .any(|l| l.uplink.counters.is_some() || l.downlink.counters.is_some())
        })
        .collect();
    if with_links.is_empty() {
        return;
    }
    h.push_str("<h2>Links</h2><p>Each link direction of the topology (uplink runs towards the server): as asked, and the engine's counters — packets in, delivered, dropped (loss model / queue, AQM and outages), mean one-way delay.</p>\
        <table><tr><th>point / network</th><th>protocol</th><th>repeat</th><th>link</th><th>direction</th><th>asked</th><th>packets</th><th>delivered</th><th>dropped: loss / other</th><th>mean delay (ms)</th></tr>");
    for (r, t) in with_links {
        for l in &t.links {
            for (way, d) in [
                (format!("{} → {}", l.a, l.b), &l.uplink),
                (format!("{} → {}", l.b, l.a), &l.downlink),
            ] {
                let Some(c) = &d.counters else { continue };
                let other = c.dropped_queue + c.dropped_aqm + c.dropped_outage;
                let mean = c.delay_sum_ns as f64 / c.delivered.max(1) as f64 / 1e6;
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {other}</td><td>{mean:.1}</td></tr>",
                    esc(&case_title(&r.point, &r.network)),
                    esc(&r.protocol),
                    r.repeat + 1,
                    esc(&l.name),
                    esc(&way),
                    esc(&d.asked),
                    c.pushed,
                    c.delivered,
                    c.dropped_loss,
                );
            }
        }
    }
    h.push_str("</table>");
}

fn page(
    results: &Results,
    verdicts: &[String],
    figures: &[(String, PathBuf, bool)],
) -> Result<String> {
    let s = &results.scenario;
    let runs = &results.runs;
    let mut h = String::new();
    let title = format!("Glass report — {}", s.name);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = write!(h, "<h1>{}</h1>", esc(&title));
    if let Some(d) = &s.description {
        let _ = write!(h, "<p>{}</p>", esc(d));
    }
    let m = &s.media;
    let _ = write!(
        h,
        "<p>Duration {} s, seed {}, {} repeat(s); media {} kbit/s, {} fps, GOP {}, {}, encode delay {} ms. Glass {}, results schema <code>{}</code>.</p>",
        s.duration_s,
        s.seed,
        s.repeat,
        m.bitrate_bps as f64 / 1e3,
        m.fps,
        m.gop,
        esc(&m.resolution),
        m.encode_delay_ms,
        esc(&results.glass_version),
        esc(&results.schema)
    );
    if !verdicts.is_empty() {
        let _ = write!(
            h,
            "<h2>Verdict</h2><p>Per network: the protocol with the lowest G2G p99 among those whose stall ratio is within the budget ({:.1} %), by how much, and whether the 95 % intervals over repeats tell the best two apart.</p><ul class=\"verdict\">",
            decision::stall_budget(&s.budgets) * 100.0
        );
        for v in verdicts {
            let _ = write!(h, "<li>{v}</li>");
        }
        h.push_str("</ul>");
    }
    h.push_str("<h2>Comparison</h2><p>Steady state: frames captured after the warm-up (start-up is the connect and startup columns). \
        Smooth at ≤ 1 %: the run's arrivals replayed through the player at the smallest playout buffer that keeps stalls ≤ 1 % — compare protocols on this, not only at one fixed buffer. \
        Stale: share of display refreshes showing an overdue picture.</p>\
        <table><tr><th>point / network</th><th>protocol</th><th>repeat</th><th>mode</th><th>connect (ms)</th><th>startup (ms)</th><th>G2G p50 (ms)</th><th>G2G p99 (ms)</th>\
        <th>steady p50 (ms)</th><th>steady p99 (ms)</th><th>smooth at ≤ 1 %: buffer / G2G p50 (ms)</th><th>stall ratio</th><th>stale</th><th>catch-up (ms)</th><th>skipped</th><th>lost</th><th>status</th></tr>");
    let num = |v: Option<f64>, digits: usize| match v {
        Some(x) => format!("{x:.digits$}"),
        None => "–".into(),
    };
    for r in runs {
        let case = case_title(&r.point, &r.network);
        let res = r.result.as_ref();
        let p = res.map(|x| &x.player);
        let lost = res.map_or(0.0, |x| {
            x.frames_expected as f64 - x.player.frames_displayed as f64
        });
        let smooth = res.and_then(|x| x.equal_smoothness.as_ref());
        let steady = p.and_then(|p| p.steady.as_ref());
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{:.2} %</td><td>{:.1} %</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&case),
            esc(&r.protocol),
            r.repeat + 1,
            esc(res.map_or("", |x| x.mode.as_str())),
            num(res.and_then(|x| x.publisher.connect_ms), 0),
            num(p.and_then(|p| p.startup_delay_ms), 0),
            num(p.map(|p| p.g2g_p50_ms), 1),
            num(p.map(|p| p.g2g_p99_ms), 1),
            num(steady.map(|s| s.p50_ms), 1),
            num(steady.map(|s| s.p99_ms), 1),
            num(smooth.map(|s| s.target_delay_ms), 0),
            num(smooth.map(|s| s.g2g_p50_ms), 1),
            p.map_or(f64::NAN, |p| p.stall_ratio) * 100.0,
            p.and_then(|p| p.stale_refresh_ratio).unwrap_or(0.0) * 100.0,
            num(p.and_then(|p| p.catch_up_ms), 0),
            num(p.and_then(|p| p.frames_skipped).map(|n| n as f64), 0),
            lost.max(0.0),
            if r.ok() { "" } else { "fail" },
            if r.ok() {
                "ok".to_string()
            } else {
                esc(r.error.as_deref().unwrap_or("failed"))
            }
        );
    }
    h.push_str("</table>");
    if runs.iter().any(|r| !r.warnings.is_empty()) {
        h.push_str("<h2>Warnings</h2><p>Runs whose figures are suspect: read them with this in mind.</p><ul>");
        for r in runs {
            for w in &r.warnings {
                let _ = write!(
                    h,
                    "<li class=\"fail\">{} / {} (repeat {}): {}</li>",
                    esc(&case_title(&r.point, &r.network)),
                    esc(&r.protocol),
                    r.repeat + 1,
                    esc(w)
                );
            }
        }
        h.push_str("</ul>");
    }
    hops_table(&mut h, runs);
    links_table(&mut h, runs);
    h.push_str("<h2>Impairment: asked and realised</h2><ul>");
    for r in runs {
        for (dir, c) in &r.impairment_check {
            let asked = c.requested.loss_rate.is_some() || c.requested.delay_mean_ms > 0.0;
            if !asked {
                continue;
            }
            let _ = write!(
                h,
                "<li>{} / {} (repeat {}), {dir}: {}</li>",
                esc(&case_title(&r.point, &r.network)),
                esc(&r.protocol),
                r.repeat + 1,
                esc(&c.verdict)
            );
        }
    }
    h.push_str("</ul><h2>Plots</h2>");
    // Per-run charts side by side (small multiples), the others full width.
    let mut in_grid = false;
    for (title, svg, small) in figures {
        if *small != in_grid {
            h.push_str(if *small {
                "<div class=\"grid\">"
            } else {
                "</div>"
            });
            in_grid = *small;
        }
        figure(&mut h, svg, title)?;
    }
    if in_grid {
        h.push_str("</div>");
    }
    h.push_str("</body></html>\n");
    Ok(h)
}
