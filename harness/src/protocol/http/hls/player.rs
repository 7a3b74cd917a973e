//! Glass's HLS player: real HTTP/1.1 requests (one keep-alive connection)
//! through the player's last mile, the way a live HLS client plays:
//!
//! 1. GET the media playlist; until it lists a segment, ask again every
//!    half target duration.
//! 2. Start HOLD-BACK (3 target durations, RFC 8216 §6.3.3 and the LL-HLS
//!    draft's default) from the live edge: the first segment from which
//!    the listed segments last at least that long.
//! 3. GET each segment in order; when one has arrived, hand its frames to
//!    Glass's player model at that instant (a segment is one download: no
//!    frame of it is playable earlier).
//! 4. Reload the playlist after the last segment's duration (when it grew)
//!    or half the target duration (when it did not), and go on; a player
//!    that fell out of the window skips to its start.
//!
//! Glass's frames carry their capture instants; foreign (ffmpeg) frames are
//! timed from their FLV timestamps, which the TS timestamps give back
//! exactly.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use netem::Time;
use serde::Serialize;

use super::super::client::{Connection, get, handshake, serving};
use super::demux;
use crate::media::player::Player;
use crate::media::wallclock::{ForeignFrames, WallClock};
use crate::protocol::Stats;

/// Segments of HOLD-BACK: where a player starts from the live edge.
pub const HOLD_BACK_SEGMENTS: u32 = 3;

/// What Glass's HLS player did (its part of results.json's `result`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HlsPlayerStats {
    pub hls_playlist_requests: u64,
    /// Playlist reloads that listed no new segment.
    pub hls_playlist_unchanged: u64,
    pub hls_segment_requests: u64,
    /// Segments that were gone (404) or that the player skipped because it
    /// fell out of the playlist's window.
    pub hls_segments_missed: u64,
    pub hls_bytes: u64,
    /// The media sequence number it started at, and how many segments
    /// behind the live edge that was.
    pub hls_start_seq: Option<u64>,
    pub hls_start_behind: Option<u64>,
    /// Time from the first request to the first segment's arrival, ms.
    pub hls_first_segment_ms: Option<f64>,
}

impl Stats for HlsPlayerStats {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::protocol::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A media playlist as the player reads it.
#[derive(Debug, Default, PartialEq)]
pub struct MediaPlaylist {
    pub target: Duration,
    /// (media sequence number, duration, URI) of each segment.
    pub segments: Vec<(u64, Duration, String)>,
}

/// Reads a live media playlist (the tags Glass's packager writes and the
/// ones any live playlist needs); unknown tags are ignored.
pub fn parse_playlist(text: &str) -> Result<MediaPlaylist> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("#EXTM3U") {
        bail!("not a playlist (no #EXTM3U)");
    }
    let mut p = MediaPlaylist::default();
    let mut seq = 0u64;
    let mut duration = None;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target = Duration::from_secs(v.parse().context("EXT-X-TARGETDURATION")?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = v.parse().context("EXT-X-MEDIA-SEQUENCE")?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let secs: f64 = v
                .split(',')
                .next()
                .unwrap_or("")
                .parse()
                .context("EXTINF")?;
            if !(0.0..=3600.0).contains(&secs) {
                bail!("EXTINF {secs} s");
            }
            duration = Some(Duration::from_secs_f64(secs));
        } else if !line.is_empty() && !line.starts_with('#') {
            let d = duration
                .take()
                .ok_or_else(|| anyhow!("a URI without EXTINF"))?;
            p.segments.push((seq, d, line.to_string()));
            seq += 1;
        }
    }
    if p.target.is_zero() {
        bail!("no EXT-X-TARGETDURATION");
    }
    Ok(p)
}

/// Where a player starts: the first segment from which the listed ones
/// last at least `hold_back` (the first listed if they all last less).
pub fn start_index(p: &MediaPlaylist, hold_back: Duration) -> usize {
    let mut left = Duration::ZERO;
    for (i, (_, d, _)) in p.segments.iter().enumerate().rev() {
        left += *d;
        if left >= hold_back {
            return i;
        }
    }
    0
}

/// Plays the HLS stream of the connection's playlist into `player` until
/// `end`.
pub(in crate::protocol::http) async fn play(
    c: Connection,
    player: &mut Player,
    end: Time,
) -> Result<HlsPlayerStats> {
    let clock = c.clock;
    let (mut sender, _conn) = handshake(c.stream).await?;
    let host = HeaderValue::from_str(&c.host)?;
    let dir = c.path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    let mut stats = HlsPlayerStats::default();
    let mut fetch = async |path: &str| -> Result<(StatusCode, Bytes)> {
        let req = get(path, &host)?;
        sender.ready().await.context("the HTTP connection closed")?;
        let resp = sender.send_request(req).await.context("HTTP request")?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    };
    let mut foreign = ForeignFrames::new(WallClock::new(clock));
    let started = Instant::now();
    let mut next: Option<u64> = None;
    loop {
        let loaded_at = clock.time(Instant::now());
        let Some(r) = serving(player, clock, end, fetch(&c.path)).await else {
            return Ok(stats);
        };
        stats.hls_playlist_requests += 1;
        let (status, body) = r?;
        let list = match status {
            StatusCode::OK => parse_playlist(&String::from_utf8_lossy(&body))
                .with_context(|| format!("the playlist {}", c.path))?,
            StatusCode::NOT_FOUND => MediaPlaylist::default(),
            other => bail!("GET {} answered {other}", c.path),
        };
        let target = if list.target.is_zero() {
            Duration::from_secs(1)
        } else {
            list.target
        };
        let from = match (next, list.segments.first()) {
            (_, None) => None,
            (None, Some(_)) => {
                let i = start_index(&list, target * HOLD_BACK_SEGMENTS);
                let seq = list.segments[i].0;
                stats.hls_start_seq = Some(seq);
                stats.hls_start_behind = Some((list.segments.len() - i) as u64);
                Some(seq)
            }
            (Some(n), Some(first)) => {
                if n < first.0 {
                    stats.hls_segments_missed += first.0 - n;
                }
                Some(n.max(first.0))
            }
        };
        let mut grew = false;
        let mut last_duration = target / 2;
        for (seq, d, uri) in &list.segments {
            if from.is_none_or(|f| *seq < f) {
                continue;
            }
            grew = true;
            last_duration = *d;
            let path = if uri.starts_with('/') {
                uri.clone()
            } else {
                format!("{dir}/{uri}")
            };
            let Some(r) = serving(player, clock, end, fetch(&path)).await else {
                return Ok(stats);
            };
            stats.hls_segment_requests += 1;
            let (status, body) = r?;
            next = Some(seq + 1);
            if status != StatusCode::OK {
                stats.hls_segments_missed += 1;
                continue;
            }
            stats.hls_bytes += body.len() as u64;
            stats
                .hls_first_segment_ms
                .get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
            let now = clock.time(Instant::now());
            for f in demux::frames(&body).with_context(|| format!("segment {path}"))? {
                let h = f.glass.or_else(|| {
                    // A foreign frame: an FLV-like body for its timing.
                    let mut tag = vec![if f.key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
                    tag.resize(5 + f.size, 0);
                    foreign.header(&tag, f.video, f.ts_ms, now)
                });
                if let Some(h) = h {
                    player.on_frame(now, h);
                }
            }
        }
        if !grew && next.is_some() {
            stats.hls_playlist_unchanged += 1;
        }
        // The next reload: after the newest segment's duration when the
        // playlist grew, half the target duration when it did not (RFC 8216
        // §6.3.4), counted from this load.
        let wait = if grew { last_duration } else { target / 2 };
        let at = loaded_at + wait;
        if serving(
            player,
            clock,
            end,
            tokio::time::sleep_until(clock.instant(at).into()),
        )
        .await
        .is_none()
        {
            return Ok(stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_live_playlist_and_starts_hold_back_from_the_edge() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
                    #EXT-X-PROGRAM-DATE-TIME:2026-12-04T13:05:10.123Z\n#EXTINF:2.000,\nseg7.ts\n\
                    #EXTINF:2.000,\nseg8.ts\n#EXTINF:2.000,\nseg9.ts\n#EXTINF:2.000,\nseg10.ts\n";
        let p = parse_playlist(text).unwrap();
        assert_eq!(p.target, Duration::from_secs(2));
        assert_eq!(p.segments.len(), 4);
        assert_eq!(
            p.segments[3],
            (10, Duration::from_secs(2), "seg10.ts".into())
        );
        // HOLD-BACK 6 s: the last three segments.
        assert_eq!(start_index(&p, Duration::from_secs(6)), 1);
        assert_eq!(start_index(&p, Duration::from_secs(60)), 0);
        for bad in [
            "",
            "#EXT-X-TARGETDURATION:2\n",
            "#EXTM3U\nseg1.ts\n",
            "#EXTM3U\n#EXT-X-TARGETDURATION:x\n",
            "#EXTM3U\n#EXTINF:-1,\nseg.ts\n#EXT-X-TARGETDURATION:2\n",
            "#EXTM3U\n#EXTINF:2,\n",
        ] {
            assert!(parse_playlist(bad).is_err(), "{bad:?}");
        }
    }
}
