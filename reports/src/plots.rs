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
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
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
    /// Log-scale x: forced on or off, or (`None`) when the x values span
    /// 4× or more.
    pub log_x: Option<bool>,
    /// The legend in the lower right (a CDF's empty corner) instead of the
    /// upper left.
    pub legend_lower_right: bool,
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

/// Line colours: the Okabe–Ito palette, which stays distinguishable with
/// the common colour-vision deficiencies (its yellow is left out: it
/// vanishes on white).
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
];

/// The colour of series `i`.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `lo..hi` widened when it is (nearly) a point, so that a chart of
/// identical values (every frame at 533.3 ms) gets a readable range rather
/// than ticks that differ in the 12th digit.
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let span = hi - lo;
    let scale = lo.abs().max(hi.abs());
    if span > 1e-3 * scale && span > 1e-9 {
        return (lo, hi);
    }
    let c = (lo + hi) / 2.0;
    let pad = (0.02 * scale).max(1.0);
    (c - pad, c + pad)
}

/// A tick's text with as many decimals as the tick spacing needs (none for
/// a range of hundreds, one for a range of a few units).
fn tick_text(x: f64, span: f64) -> String {
    let step = span / 10.0;
    let decimals = if step > 0.0 && step.is_finite() {
        (-step.log10().floor()).clamp(0.0, 4.0) as usize
    } else {
        0
    };
    format!("{x:.decimals$}")
}

impl Chart {
    fn x_extent(&self) -> (f64, f64) {
        let xs = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .chain(self.shaded.iter().flat_map(|s| [s.0, s.1]))
            .chain(self.markers.iter().map(|m| m.0));
        xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        })
    }

    fn x_range(&self) -> (f64, f64) {
        if !self.x_ticks.is_empty() {
            return (-0.3, self.x_ticks.len() as f64 - 0.7);
        }
        let (lo, hi) = self.x_extent();
        if !(lo.is_finite() && hi >= lo) {
            return (0.0, 1.0);
        }
        let (lo, hi) = padded(lo, hi);
        // A margin, so that a line at the smallest x is not drawn on the
        // axis itself (a range from 0 keeps its 0).
        if self.log_x() {
            (lo / 1.08, hi * 1.04)
        } else if lo > 0.0 {
            let m = 0.03 * (hi - lo);
            ((lo - m).max(0.0), hi + m)
        } else {
            (lo, hi)
        }
    }

    /// Whether x is drawn on a log scale: asked for, or (`log_x` unset)
    /// when every x is positive and they span 4× or more, so that a
    /// protocol at 0.6 s and one running to 8 s are both readable.
    fn log_x(&self) -> bool {
        if !self.x_ticks.is_empty() {
            return false;
        }
        let (lo, hi) = self.x_extent();
        self.log_x
            .unwrap_or(lo.is_finite() && lo > 0.0 && hi / lo >= 4.0)
            && lo > 0.0
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

fn builder<'a, 'b, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72);
    b
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Chart) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (x0, x1) = c.x_range();
    let (y0, y1) = c.y_range();
    if c.log_x() {
        let chart = builder(&root, &c.title)
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(|x| e(&x))?;
        body(chart, c, (x0, x1, y0, y1))?;
    } else {
        let chart = builder(&root, &c.title)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(&x))?;
        body(chart, c, (x0, x1, y0, y1))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Draws series `i`'s markers (shape by `i`: circle, triangle, square,
/// cross) at `pts`.
fn draw_markers<'a, DB, X>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>,
    i: usize,
    pts: Vec<(f64, f64)>,
    color: RGBAColor,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
{
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let pts = pts.into_iter();
    match i % 4 {
        0 => chart
            .draw_series(pts.map(|p| Circle::new(p, 4, color.filled())))
            .map(|_| ()),
        1 => chart
            .draw_series(pts.map(|p| TriangleMarker::new(p, 5, color.filled())))
            .map(|_| ()),
        2 => {
            chart
                .draw_series(pts.map(|p| {
                    EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], color.filled())
                }))
                .map(|_| ())
        }
        _ => chart
            .draw_series(pts.map(|p| Cross::new(p, 4, color.stroke_width(2))))
            .map(|_| ()),
    }
    .map_err(|x| e(&x))
}

/// Where series `i`'s markers go along `n` points: about ten, offset per
/// series so that lines on top of each other still show each marker.
fn marker_points(i: usize, n: usize) -> impl Iterator<Item = usize> {
    let step = (n / 10).max(1);
    let offset = (i * step / 4) % step;
    (offset..n).step_by(step)
}

fn body<'a, DB, X>(
    mut chart: ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>,
    c: &Chart,
    (x0, x1, y0, y1): (f64, f64, f64, f64),
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let ticks = c.x_ticks.clone();
    let (x_span, y_span) = (x1 - x0, y1 - y0);
    let log = c.log_x();
    let fmt_x = move |x: &f64| {
        if !ticks.is_empty() {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < ticks.len() {
                ticks[i as usize].clone()
            } else {
                String::new()
            }
        } else if log {
            // Log ticks: 1, 2 and 5 × 10ⁿ only (3, 4, 6… crowd each other
            // near each decade), each with the decimals its size needs.
            let m = x / 10f64.powf(x.log10().floor());
            if [1.0, 2.0, 5.0, 10.0].iter().any(|k| (m - k).abs() < 1e-6) {
                tick_text(*x, *x)
            } else {
                String::new()
            }
        } else {
            tick_text(*x, x_span)
        }
    };
    let fmt_y = move |y: &f64| tick_text(*y, y_span);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(if log {
        format!("{} (log scale)", c.x_label)
    } else {
        c.x_label.clone()
    })
    .y_desc(&c.y_label)
    .label_style(("sans-serif", 14))
    .axis_desc_style(("sans-serif", 16))
    .x_label_formatter(&fmt_x)
    .y_label_formatter(&fmt_y);
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
    let several = c.lines.len() > 1;
    for (i, l) in c.lines.iter().enumerate() {
        let color = color(i).to_rgba();
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
        // Every other series dashed, so lines on top of each other show.
        let dashed = l.dashed || (several && i % 2 == 1);
        let style = color.stroke_width(2);
        let s = if dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 8, 5, style))
                .map_err(|x| e(&x))?
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(|x| e(&x))?
        };
        if !l.label.is_empty() {
            // The legend shows the line and its marker's colour.
            s.label(&l.label).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (22, 0)], color.stroke_width(2))
                    + Circle::new((11, 0), 3, color.filled())
            });
        }
        if !l.step {
            let n = l.points.len();
            let at: Vec<usize> = if n <= 40 {
                (0..n).collect()
            } else {
                marker_points(i, n).collect()
            };
            draw_markers(
                &mut chart,
                i,
                at.into_iter().map(|k| l.points[k]).collect(),
                color,
            )?;
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
            .position(if c.legend_lower_right {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperLeft
            })
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|x| e(&x))?;
    }
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

/// How a heat-map cell is filled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fill {
    /// A value on the sequential scale, 0 (dark) to 1 (light).
    Scale(f64),
    /// Series `i`'s palette colour (a protocol that wins the cell).
    Series(usize),
    /// Hatched grey: a tie.
    Tie,
    /// White: nothing to show (no run, or none within the budget).
    Empty,
}

#[derive(Clone, Debug)]
pub struct Cell {
    pub x: usize,
    pub y: usize,
    pub fill: Fill,
    /// Printed in the cell (its value, or the winner's name).
    pub text: String,
}

/// One panel of cells on two categorical axes (sweep values).
#[derive(Clone, Debug, Default)]
pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_ticks: Vec<String>,
    pub y_ticks: Vec<String>,
    pub cells: Vec<Cell>,
}

/// Viridis at `t` in [0, 1] (dark purple to yellow: ordered in lightness,
/// readable in grey and with colour-vision deficiencies).
pub fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (0x44, 0x01, 0x54),
        (0x3b, 0x52, 0x8b),
        (0x21, 0x91, 0x8c),
        (0x5e, 0xc9, 0x62),
        (0xfd, 0xe7, 0x25),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    h: &Heatmap,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let (nx, ny) = (h.x_ticks.len().max(1), h.y_ticks.len().max(1));
    let mut chart = ChartBuilder::on(area)
        .caption(&h.title, ("sans-serif", 17))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..nx as f64, 0f64..ny as f64)
        .map_err(|x| e(&x))?;
    let (xt, yt) = (h.x_ticks.clone(), h.y_ticks.clone());
    let label = |ticks: &[String], v: f64| {
        let i = (v - 0.5).round();
        if (v - 0.5 - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < ticks.len() {
            ticks[i as usize].clone()
        } else {
            String::new()
        }
    };
    let fx = move |v: &f64| label(&xt, *v);
    let fy = move |v: &f64| label(&yt, *v);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(&h.x_label)
        .y_desc(&h.y_label)
        .x_labels(nx * 2 + 1)
        .y_labels(ny * 2 + 1)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    for c in &h.cells {
        let (x, y) = (c.x as f64, c.y as f64);
        let (fill, dark) = match c.fill {
            Fill::Scale(t) => (viridis(t), t < 0.55),
            Fill::Series(i) => (color(i), true),
            Fill::Tie => (RGBColor(0xd9, 0xd9, 0xd9), false),
            Fill::Empty => (WHITE, false),
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.02, y + 0.02), (x + 0.98, y + 0.98)],
                fill.filled(),
            )))
            .map_err(|x| e(&x))?;
        if c.fill == Fill::Tie {
            // Hatching, so a tie reads as one in grey print too.
            let lines = (1..6).map(|k| {
                let d = f64::from(k) / 6.0;
                PathElement::new(
                    vec![(x + 0.02, y + d), (x + d, y + 0.02)],
                    BLACK.mix(0.25).stroke_width(1),
                )
            });
            chart.draw_series(lines).map_err(|x| e(&x))?;
        }
        let text_color = if dark { WHITE } else { BLACK };
        let style = ("sans-serif", 13).into_font().color(&text_color).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        // Long texts (ties of three) over two lines.
        let lines: Vec<String> = if c.text.chars().count() > 18 && c.text.contains(" ≈ ") {
            let parts: Vec<&str> = c.text.split(" ≈ ").collect();
            let half = parts.len().div_ceil(2);
            vec![parts[..half].join(" ≈ ") + " ≈", parts[half..].join(" ≈ ")]
        } else {
            vec![c.text.clone()]
        };
        let n = lines.len() as f64;
        for (k, t) in lines.into_iter().enumerate() {
            let dy = (n - 1.0) * 0.09 - k as f64 * 0.18;
            chart
                .draw_series(std::iter::once(Text::new(
                    t,
                    (x + 0.5, y + 0.5 + dy),
                    style.clone(),
                )))
                .map_err(|x| e(&x))?;
        }
    }
    Ok(())
}

/// Draws heat-map panels as small multiples (`cols` per row) under one
/// title, to `stem`.svg and .png.
pub fn save_panels(
    title: &str,
    panels: &[Heatmap],
    cols: usize,
    stem: &Path,
) -> Result<(PathBuf, PathBuf), PlotError> {
    register_font()?;
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (960, (40 + rows * 340) as u32);
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let fail = |p: &Path, m: String| PlotError::Draw {
        path: p.display().to_string(),
        message: m,
    };
    fn all<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        title: &str,
        panels: &[Heatmap],
        (rows, cols): (usize, usize),
    ) -> Result<(), String> {
        root.fill(&WHITE).map_err(|x| x.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|x| x.to_string())?;
        let areas = root.split_evenly((rows, cols));
        for (area, h) in areas.iter().zip(panels) {
            draw_heatmap(area, h)?;
        }
        root.present().map_err(|x| x.to_string())
    }
    all(
        SVGBackend::new(&svg, size).into_drawing_area(),
        title,
        panels,
        (rows, cols),
    )
    .map_err(|m| fail(&svg, m))?;
    all(
        BitMapBackend::new(&png, size).into_drawing_area(),
        title,
        panels,
        (rows, cols),
    )
    .map_err(|m| fail(&png, m))?;
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
