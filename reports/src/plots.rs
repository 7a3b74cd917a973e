//! Plots with plotters, as SVG and PNG, from a small declarative chart
//! description: lines (optionally with a confidence band, or as steps),
//! shaded spans (stalls), vertical markers (impairment events) and
//! categorical x ticks (sweep points).
//!
//! PNG text needs a font: DejaVu Sans is bundled (`reports/fonts/`, its
//! licence next to it), so a fresh machine draws PNGs with no package.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
    #[error("the bundled font could not be registered")]
    Font,
}

/// One line of a chart.
#[derive(Clone, Debug, Default)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// (x, low, high): a confidence band drawn under the line.
    pub band: Vec<(f64, f64, f64)>,
    /// Draw as steps (a value holds until the next point): capacities.
    pub step: bool,
    pub dashed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    /// Shaded x spans (stalls), with a legend label for the first.
    pub shaded: Vec<(f64, f64)>,
    pub shaded_label: String,
    /// Vertical markers: (x, text) (impairment events).
    pub markers: Vec<(f64, String)>,
    /// Labels of x = 0, 1, 2, … (sweep points); numeric ticks if empty.
    pub x_ticks: Vec<String>,
    /// Forced y range; from the data if `None` (starting at 0).
    pub y_range: Option<(f64, f64)>,
}

static FONT: Once = Once::new();
static mut FONT_OK: bool = false;

fn register_font() -> Result<(), PlotError> {
    FONT.call_once(|| {
        let ok = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../fonts/DejaVuSans.ttf"),
        )
        .is_ok();
        // SAFETY: written once inside call_once, read after it.
        unsafe { FONT_OK = ok };
    });
    // SAFETY: call_once has completed.
    if unsafe { FONT_OK } {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

impl Chart {
    fn x_range(&self) -> (f64, f64) {
        if !self.x_ticks.is_empty() {
            return (-0.3, self.x_ticks.len() as f64 - 0.7);
        }
        let xs = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .chain(self.shaded.iter().flat_map(|s| [s.0, s.1]))
            .chain(self.markers.iter().map(|m| m.0));
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (0.0, 1.0)
        }
    }

    fn y_range(&self) -> (f64, f64) {
        if let Some(r) = self.y_range {
            return r;
        }
        let hi = self
            .lines
            .iter()
            .flat_map(|l| {
                l.points
                    .iter()
                    .map(|p| p.1)
                    .chain(l.band.iter().map(|b| b.2))
            })
            .fold(0.0f64, f64::max);
        (0.0, if hi > 0.0 { hi * 1.08 } else { 1.0 })
    }
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Chart) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (x0, x1) = c.x_range();
    let (y0, y1) = c.y_range();
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|x| e(&x))?;
    let ticks = c.x_ticks.clone();
    let fmt_x = move |x: &f64| {
        if ticks.is_empty() {
            format!("{x}")
        } else {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < ticks.len() {
                ticks[i as usize].clone()
            } else {
                String::new()
            }
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .x_label_formatter(&fmt_x);
    if !c.x_ticks.is_empty() {
        mesh.x_labels(c.x_ticks.len() * 2 + 1);
    }
    mesh.draw().map_err(|x| e(&x))?;
    // Stalls under everything.
    let shade = RED.mix(0.18);
    for (i, &(a, b)) in c.shaded.iter().enumerate() {
        let s = chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y0), (b, y1)],
                shade.filled(),
            )))
            .map_err(|x| e(&x))?;
        if i == 0 && !c.shaded_label.is_empty() {
            s.label(&c.shaded_label).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], shade.filled())
            });
        }
    }
    for (i, l) in c.lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if !l.band.is_empty() {
            let mut poly: Vec<(f64, f64)> = l.band.iter().map(|b| (b.0, b.2)).collect();
            poly.extend(l.band.iter().rev().map(|b| (b.0, b.1)));
            chart
                .draw_series(std::iter::once(Polygon::new(poly, color.mix(0.2).filled())))
                .map_err(|x| e(&x))?;
        }
        let pts: Vec<(f64, f64)> = if l.step {
            let mut v = Vec::new();
            for w in l.points.windows(2) {
                v.push(w[0]);
                v.push((w[1].0, w[0].1));
            }
            if let Some(last) = l.points.last() {
                v.push(*last);
                v.push((x1, last.1));
            }
            v
        } else {
            l.points.clone()
        };
        let style = color.stroke_width(2);
        let s = if l.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(|x| e(&x))?
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(|x| e(&x))?
        };
        if !l.label.is_empty() {
            s.label(&l.label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        }
        if l.points.len() <= 40 && !l.step {
            chart
                .draw_series(l.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|x| e(&x))?;
        }
    }
    for (x, text) in &c.markers {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*x, y0), (*x, y1)],
                BLACK.mix(0.6).stroke_width(1),
            )))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(std::iter::once(Text::new(
                text.clone(),
                (*x, y1 - (y1 - y0) * 0.04),
                ("sans-serif", 13).into_font().color(&BLACK),
            )))
            .map_err(|x| e(&x))?;
    }
    if c.lines.iter().any(|l| !l.label.is_empty()) || !c.shaded_label.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Draws `chart` to `stem`.svg and `stem`.png; returns both paths.
pub fn save(chart: &Chart, stem: &Path) -> Result<(PathBuf, PathBuf), PlotError> {
    register_font()?;
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let size = (960, 540);
    let fail = |p: &Path, m: String| PlotError::Draw {
        path: p.display().to_string(),
        message: m,
    };
    draw(SVGBackend::new(&svg, size).into_drawing_area(), chart).map_err(|m| fail(&svg, m))?;
    draw(BitMapBackend::new(&png, size).into_drawing_area(), chart).map_err(|m| fail(&png, m))?;
    Ok((svg, png))
}

/// An empirical CDF's points from values (sorted inside).
pub fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, &x)| (x, (i + 1) as f64 / n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_svg_and_png_with_text() {
        let dir = std::env::temp_dir().join(format!("glass-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chart = Chart {
            title: "G2G latency".into(),
            x_label: "time (s)".into(),
            y_label: "G2G (ms)".into(),
            lines: vec![
                Line {
                    label: "rtmp-tcp".into(),
                    points: vec![(0.0, 530.0), (1.0, 540.0), (2.0, 900.0)],
                    band: vec![
                        (0.0, 520.0, 540.0),
                        (1.0, 530.0, 550.0),
                        (2.0, 850.0, 950.0),
                    ],
                    ..Line::default()
                },
                Line {
                    label: "capacity".into(),
                    points: vec![(0.0, 400.0), (1.5, 100.0)],
                    step: true,
                    dashed: true,
                    ..Line::default()
                },
            ],
            shaded: vec![(1.2, 1.4)],
            shaded_label: "stall".into(),
            markers: vec![(1.5, "rate 1 Mbit/s".into())],
            ..Chart::default()
        };
        let (svg, png) = save(&chart, &dir.join("t")).unwrap();
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(s.contains("rtmp-tcp") && s.contains("G2G (ms)") && s.contains("rate 1 Mbit/s"));
        let p = std::fs::read(&png).unwrap();
        assert_eq!(&p[1..4], b"PNG");
        assert!(
            p.len() > 10_000,
            "a PNG with text and lines: {} bytes",
            p.len()
        );
        assert_eq!(
            cdf(&[3.0, 1.0, 2.0]),
            vec![(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0), (3.0, 1.0)]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
