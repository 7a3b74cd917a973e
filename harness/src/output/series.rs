//! frames.csv (one row per displayed frame: capture, arrival, display and
//! the per-hop instants) and seconds.csv (one row per second: bitrate
//! sent, frames shown, mean G2G, stalled time).

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::runner::RunResult;

/// The header of frames.csv.
pub const FRAMES_HEADER: &str = "point,network,protocol,repeat,seq,capture_ms,arrival_ms,display_ms,g2g_ms,publisher_send_ms,relay_receive_ms,relay_send_ms";
/// The header of seconds.csv.
pub const SECONDS_HEADER: &str =
    "point,network,protocol,repeat,second,sent_kbps,frames_displayed,g2g_mean_ms,stalled_ms";

/// Opens a CSV file for writing (a new one with `header`, or appending to
/// an existing one for `--resume`).
pub fn csv_file(
    path: &Path,
    header: &str,
    append: bool,
) -> Result<std::io::BufWriter<std::fs::File>> {
    let exists = path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut f = std::io::BufWriter::new(file);
    if !(append && exists) {
        writeln!(f, "{header}")?;
    }
    Ok(f)
}

/// A CSV field, quoted (quotes inside doubled).
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[allow(clippy::too_many_arguments)]
/// Appends one run's frames and seconds.
pub fn write_series(
    frames: &mut impl std::io::Write,
    seconds: &mut impl std::io::Write,
    point: &str,
    network: &str,
    protocol: &str,
    repeat: u32,
    r: &RunResult,
    duration: Duration,
) -> Result<()> {
    let (pt, n, p) = (quote(point), quote(network), quote(protocol));
    let ms = |t: netem::Time| t.as_secs_f64() * 1e3;
    let opt = |t: Option<netem::Time>| t.map_or(String::new(), |t| format!("{:.3}", ms(t)));
    for d in &r.displayed {
        let h = r.frame_hops.get(&d.seq).copied().unwrap_or_default();
        writeln!(
            frames,
            "{pt},{n},{p},{repeat},{},{:.3},{:.3},{:.3},{:.3},{},{},{}",
            d.seq,
            ms(d.capture),
            ms(d.arrival),
            ms(d.display),
            d.g2g().as_secs_f64() * 1e3,
            opt(h.publisher_send),
            opt(h.relay_receive),
            opt(h.relay_send),
        )?;
    }
    for second in 0..duration.as_secs() {
        let (from, to) = (
            netem::Time::from_millis(second * 1000),
            netem::Time::from_millis((second + 1) * 1000),
        );
        let shown: Vec<_> = r
            .displayed
            .iter()
            .filter(|d| d.display >= from && d.display < to)
            .collect();
        let g2g = if shown.is_empty() {
            String::new()
        } else {
            format!(
                "{:.3}",
                shown
                    .iter()
                    .map(|d| d.g2g().as_secs_f64() * 1e3)
                    .sum::<f64>()
                    / shown.len() as f64
            )
        };
        let stalled: f64 = r
            .stalls
            .iter()
            .map(|&(a, b)| (b.min(to).as_secs_f64() - a.max(from).as_secs_f64()).max(0.0) * 1e3)
            .sum::<f64>()
            + 0.0; // an empty float sum is −0.0
        let kbps = r
            .publisher
            .per_second_bits
            .get(second as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1e3;
        writeln!(
            seconds,
            "{pt},{n},{p},{repeat},{second},{kbps:.1},{},{g2g},{stalled:.1}",
            shown.len()
        )?;
    }
    frames.flush()?;
    seconds.flush()?;
    Ok(())
}
