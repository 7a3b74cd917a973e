//! Glass's HLS player's rendition choice (sans-IO): the multivariant
//! playlist's variants, a throughput estimate from the segments it fetched,
//! and the rule that picks a variant from it.
//!
//! The rule (documented in the README, in the spirit of hls.js's default
//! EWMA controller, simplified):
//! - every segment or part of at least [`MIN_SAMPLE_BYTES`] gives a sample:
//!   its bytes × 8 over the time from its request to its last byte;
//! - the estimate is the lower of two exponentially weighted averages of
//!   the samples, a fast one (half-life 2 samples) and a slow one
//!   (half-life 5): it falls at once when the link does and rises slowly;
//! - before each segment the player takes the highest variant whose
//!   BANDWIDTH is at most [`UP_FACTOR`] of the estimate when that is above
//!   the current one, and when the current one's BANDWIDTH is above
//!   [`DOWN_FACTOR`] of the estimate, the highest that fits that; else it
//!   stays. It starts on the lowest variant.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

/// A variant of a multivariant playlist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// EXT-X-STREAM-INF's BANDWIDTH, bit/s.
    pub bandwidth: u64,
    pub uri: String,
}

/// Whether `text` is a multivariant playlist (it lists variants, not
/// segments).
pub fn is_multivariant(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("#EXT-X-STREAM-INF:"))
}

/// The variants of a multivariant playlist, as listed.
pub fn parse_multivariant(text: &str) -> Result<Vec<Variant>> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("#EXTM3U") {
        bail!("not a playlist (no #EXTM3U)");
    }
    let mut out = Vec::new();
    let mut bandwidth = None;
    for line in lines {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let bw = attrs
                .split(',')
                .find_map(|a| a.strip_prefix("BANDWIDTH="))
                .ok_or_else(|| anyhow!("EXT-X-STREAM-INF without BANDWIDTH"))?;
            bandwidth = Some(
                bw.parse::<u64>()
                    .map_err(|_| anyhow!("BANDWIDTH={bw}: not a number"))?,
            );
        } else if !line.is_empty() && !line.starts_with('#') {
            let bandwidth = bandwidth
                .take()
                .ok_or_else(|| anyhow!("a URI without EXT-X-STREAM-INF"))?;
            out.push(Variant {
                bandwidth,
                uri: line.to_string(),
            });
        }
    }
    if out.is_empty() {
        bail!("a multivariant playlist without variants");
    }
    Ok(out)
}

/// Samples smaller than this say more about the round trip than about the
/// link's rate, and are not taken.
pub const MIN_SAMPLE_BYTES: u64 = 16 * 1024;
/// Up-switch: the new variant's BANDWIDTH within this share of the
/// estimate (hls.js's `abrBandWidthUpFactor` is 0.7).
pub const UP_FACTOR: f64 = 0.7;
/// Down-switch: when the current variant's BANDWIDTH is above this share
/// of the estimate (hls.js's `abrBandWidthFactor` is 0.95).
pub const DOWN_FACTOR: f64 = 0.95;

/// An exponentially weighted average with a half-life in samples.
#[derive(Clone, Copy, Debug)]
struct Ewma {
    alpha: f64,
    value: f64,
    weight: f64,
}

impl Ewma {
    fn new(half_life: f64) -> Ewma {
        Ewma {
            alpha: 0.5f64.powf(1.0 / half_life),
            value: 0.0,
            weight: 0.0,
        }
    }

    fn sample(&mut self, x: f64) {
        self.value = self.alpha * self.value + (1.0 - self.alpha) * x;
        self.weight = self.alpha * self.weight + (1.0 - self.alpha);
    }

    /// The average, corrected for its start at zero.
    fn get(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.value / self.weight)
    }
}

/// The throughput estimate and the variant choice.
#[derive(Clone, Debug)]
pub struct Abr {
    fast: Ewma,
    slow: Ewma,
}

impl Default for Abr {
    fn default() -> Self {
        Abr {
            fast: Ewma::new(2.0),
            slow: Ewma::new(5.0),
        }
    }
}

impl Abr {
    /// A download of `bytes` that took `took`.
    pub fn sample(&mut self, bytes: u64, took: Duration) {
        if bytes < MIN_SAMPLE_BYTES || took.is_zero() {
            return;
        }
        let bps = bytes as f64 * 8.0 / took.as_secs_f64();
        self.fast.sample(bps);
        self.slow.sample(bps);
    }

    /// The throughput estimate, bit/s, once there is a sample.
    pub fn estimate(&self) -> Option<f64> {
        Some(self.fast.get()?.min(self.slow.get()?))
    }

    /// The variant to play next, given the one playing (`current`).
    pub fn choose(&self, variants: &[Variant], current: usize) -> usize {
        let Some(est) = self.estimate() else {
            return current;
        };
        let best_within = |share: f64| {
            variants
                .iter()
                .enumerate()
                .filter(|(_, v)| v.bandwidth as f64 <= share * est)
                .max_by_key(|(_, v)| v.bandwidth)
                .map(|(i, _)| i)
        };
        let now = variants.get(current).map_or(0, |v| v.bandwidth);
        if let Some(up) = best_within(UP_FACTOR)
            && variants[up].bandwidth > now
        {
            return up;
        }
        if now as f64 > DOWN_FACTOR * est {
            return best_within(DOWN_FACTOR).unwrap_or_else(|| lowest(variants));
        }
        current
    }
}

/// The variant of the lowest BANDWIDTH (where a player starts).
pub fn lowest(variants: &[Variant]) -> usize {
    variants
        .iter()
        .enumerate()
        .min_by_key(|(_, v)| v.bandwidth)
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Vec<Variant> {
        [2_750_000, 1_320_000, 660_000]
            .iter()
            .enumerate()
            .map(|(i, &bandwidth)| Variant {
                bandwidth,
                uri: format!("{i}/index.m3u8"),
            })
            .collect()
    }

    #[test]
    fn reads_the_variants_of_the_relays_multivariant_playlist() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n\
            #EXT-X-STREAM-INF:BANDWIDTH=2750000,RESOLUTION=1280x720\n0/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=660000,RESOLUTION=640x360\n1/index.m3u8?token=1-ab\n";
        assert!(is_multivariant(text));
        let v = parse_multivariant(text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].bandwidth, 660_000);
        assert_eq!(v[1].uri, "1/index.m3u8?token=1-ab");
        assert_eq!(lowest(&v), 1);
        for bad in [
            "",
            "#EXTM3U\n",
            "#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\na\n",
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\na\n",
            "#EXTM3U\na.m3u8\n",
        ] {
            assert!(parse_multivariant(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn climbs_with_room_drops_at_once_and_holds_in_between() {
        let v = ladder();
        let mut abr = Abr::default();
        let start = lowest(&v);
        assert_eq!(abr.choose(&v, start), start, "no sample yet");
        // 5 Mbit/s: 0.7 × 5 = 3.5 Mbit/s fits the top.
        for _ in 0..5 {
            abr.sample(625_000, Duration::from_secs(1));
        }
        assert_eq!(abr.choose(&v, start), 0);
        // 1.5 Mbit/s: the top (2.75) no longer fits 0.95 × 1.5; the middle
        // (1.32 ≤ 1.425) does, once the (fast) average has come down.
        for _ in 0..5 {
            abr.sample(187_500, Duration::from_secs(1));
        }
        assert_eq!(abr.choose(&v, 0), 1, "{:?}", abr.estimate());
        // Between the factors: the middle stays (1.32 ≤ 0.95 × est, but
        // the top needs 0.7 × est ≥ 2.75).
        assert_eq!(abr.choose(&v, 1), 1);
        // Below every variant: the lowest.
        for _ in 0..10 {
            abr.sample(50_000, Duration::from_secs(1));
        }
        assert_eq!(abr.choose(&v, 1), 2);
        // Tiny downloads say nothing.
        let before = abr.estimate();
        abr.sample(1_000, Duration::from_millis(1));
        assert_eq!(abr.estimate(), before);
    }
}
