//! Glass's HLS player: real HTTP/1.1 requests (one keep-alive connection)
//! through the player's last mile, the way a live HLS client plays.
//!
//! Plain HLS (segments):
//! 1. GET the media playlist; until it lists a segment, ask again every
//!    half target duration.
//! 2. Start HOLD-BACK (3 target durations, RFC 8216 §6.3.3 and the LL-HLS
//!    specification's default) from the live edge: the first segment from
//!    which the listed segments last at least that long.
//! 3. GET each segment in order; when one has arrived, hand its frames to
//!    Glass's player model at that instant (a segment is one download: no
//!    frame of it is playable earlier).
//! 4. Reload the playlist after the last segment's duration (when it grew)
//!    or half the target duration (when it did not), and go on; a player
//!    that fell out of the window skips to its start.
//!
//! Low-Latency HLS (`llhls://`, a playlist with parts and CAN-BLOCK-RELOAD;
//! a playlist without them is played as plain HLS):
//! 1. Start PART-HOLD-BACK from the live edge, at the independent part (or
//!    whole segment) at or before that point, and GET every part from
//!    there to the edge.
//! 2. GET the preload hint (the part being written): the server answers
//!    when it is done, so the part arrives one one-way trip after it was
//!    finished.
//! 3. Reload the playlist blocking on the part just played
//!    (`_HLS_msn`/`_HLS_part`: answered at once, listing the next hint;
//!    when the hint failed, blocking on the part after the last one
//!    played), GET any listed part not played yet, and go back to 2.
//!
//! This is hls.js's low-latency loop at its best (it also preloads the
//! hint); each step is one request on the connection, so a round trip
//! longer than a part delays every part by the difference.
//!
//! A multivariant playlist (the relay's rendition ladder): start on the
//! lowest variant and, before each plain-HLS segment, take the variant the
//! throughput estimate picks (`abr`); a switch reloads the new variant's
//! media playlist at once and goes on at the next media sequence number.
//! An LL-HLS player stays on the lowest variant (switching needs rendition
//! reports, not built).
//!
//! Segments are MPEG-TS (`demux`) or, after EXT-X-MAP's init segment,
//! fragmented MP4 (`fmp4_demux`). Glass's frames carry their capture
//! instants; foreign (ffmpeg) frames are timed from their FLV timestamps,
//! which the TS and fMP4 timestamps give back exactly.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use netem::Time;
use netem::time::Clock;
use serde::Serialize;

use super::super::client::{Connection, get, handshake, serving};
use super::abr::{self, Abr, Variant};
use super::demux;
use super::fmp4_demux::{self, Fmp4Init};
use crate::media::player::Player;
use crate::media::wallclock::{ForeignFrames, WallClock};
use crate::protocol::Stats;

/// Segments of HOLD-BACK: where a player starts from the live edge.
pub const HOLD_BACK_SEGMENTS: u32 = 3;

/// What Glass's HLS player did (its part of results.json's `result`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HlsPlayerStats {
    /// It played parts (LL-HLS); false: whole segments.
    pub hls_low_latency: bool,
    pub hls_playlist_requests: u64,
    /// Playlist reloads that listed nothing new.
    pub hls_playlist_unchanged: u64,
    /// Blocking playlist reloads (`_HLS_msn`), included in the requests.
    pub hls_blocking_reloads: u64,
    pub hls_segment_requests: u64,
    /// LL-HLS part requests, preload hints included, and the hints that
    /// did not answer 200.
    pub hls_part_requests: u64,
    pub hls_preload_hints: u64,
    pub hls_preload_hint_misses: u64,
    /// Segments or parts that were gone (404) or that the player skipped
    /// because it fell out of the playlist's window.
    pub hls_segments_missed: u64,
    pub hls_bytes: u64,
    /// The media sequence number it started at, and how many segments
    /// (LL-HLS: parts and segments) behind the live edge that was.
    pub hls_start_seq: Option<u64>,
    pub hls_start_behind: Option<u64>,
    /// Time from the first request to the first segment's (or part's)
    /// arrival, ms.
    pub hls_first_segment_ms: Option<f64>,
    /// A multivariant playlist's variants (the relay's rendition ladder):
    /// how many, the one it started on and the one it ended on (indices as
    /// listed), its switches, the mean BANDWIDTH of the segments it
    /// fetched (bit/s) and its last throughput estimate (bit/s).
    pub hls_variants: Option<usize>,
    pub hls_variant_start: Option<usize>,
    pub hls_variant_end: Option<usize>,
    pub hls_variant_switches: u64,
    pub hls_variant_mean_bps: Option<f64>,
    pub hls_throughput_bps: Option<f64>,
}

impl Stats for HlsPlayerStats {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::protocol::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// One LL-HLS part as a playlist lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct PartEntry {
    /// The media sequence number of the segment it belongs to, and its
    /// index in that segment.
    pub seq: u64,
    pub index: usize,
    pub duration: Duration,
    pub uri: String,
    pub independent: bool,
}

/// A media playlist as the player reads it.
#[derive(Debug, Default, PartialEq)]
pub struct MediaPlaylist {
    pub target: Duration,
    /// (media sequence number, duration, URI) of each segment.
    pub segments: Vec<(u64, Duration, String)>,
    /// LL-HLS: every listed part, in order (those of the segment being
    /// written last), the part target, the server control and the preload
    /// hint (its URI and which part it is).
    pub parts: Vec<PartEntry>,
    pub part_target: Option<Duration>,
    pub part_hold_back: Option<Duration>,
    pub can_block_reload: bool,
    pub preload_hint: Option<(String, u64, usize)>,
    /// EXT-X-MAP's URI: the init segment of fMP4 segments.
    pub map: Option<String>,
}

/// The attributes of a tag (`A=1,B="x,y",C=YES`), as (name, value) with
/// quotes removed.
fn attributes(list: &str) -> Result<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| anyhow!("an attribute without a value in {list:?}"))?;
        let (value, after) = match after.strip_prefix('"') {
            Some(q) => {
                let (v, a) = q
                    .split_once('"')
                    .ok_or_else(|| anyhow!("an unclosed quote in {list:?}"))?;
                (v, a)
            }
            None => after.split_once(',').map_or((after, ""), |(v, a)| (v, a)),
        };
        out.push((name.trim(), value));
        rest = after.trim_start_matches(',').trim();
    }
    Ok(out)
}

/// Seconds as a duration (EXTINF, DURATION, PART-TARGET, …).
fn seconds(what: &str, v: &str) -> Result<Duration> {
    let secs: f64 = v.trim().parse().with_context(|| what.to_string())?;
    if !(0.0..=3600.0).contains(&secs) {
        bail!("{what} {secs} s");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Reads a live media playlist (the tags Glass's packager writes and the
/// ones any live playlist needs, LL-HLS's among them); unknown tags are
/// ignored.
pub fn parse_playlist(text: &str) -> Result<MediaPlaylist> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("#EXTM3U") {
        bail!("not a playlist (no #EXTM3U)");
    }
    let mut p = MediaPlaylist::default();
    let mut seq = 0u64;
    let mut duration = None;
    // Parts listed since the last segment's URI: they belong to `seq`.
    let mut index = 0usize;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target = Duration::from_secs(v.parse().context("EXT-X-TARGETDURATION")?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = v.parse().context("EXT-X-MEDIA-SEQUENCE")?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = Some(seconds("EXTINF", v.split(',').next().unwrap_or(""))?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            for (k, v) in attributes(v)? {
                if k == "PART-TARGET" {
                    p.part_target = Some(seconds("PART-TARGET", v)?);
                }
            }
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            for (k, v) in attributes(v)? {
                match k {
                    "CAN-BLOCK-RELOAD" => p.can_block_reload = v == "YES",
                    "PART-HOLD-BACK" => p.part_hold_back = Some(seconds("PART-HOLD-BACK", v)?),
                    _ => {}
                }
            }
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let mut part = PartEntry {
                seq,
                index,
                duration: Duration::ZERO,
                uri: String::new(),
                independent: false,
            };
            for (k, v) in attributes(v)? {
                match k {
                    "DURATION" => part.duration = seconds("EXT-X-PART DURATION", v)?,
                    "URI" => part.uri = v.to_string(),
                    "INDEPENDENT" => part.independent = v == "YES",
                    _ => {}
                }
            }
            if part.uri.is_empty() {
                bail!("EXT-X-PART without a URI");
            }
            p.parts.push(part);
            index += 1;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            let a = attributes(v)?;
            let uri = a.iter().find(|(k, _)| *k == "URI");
            p.map = Some(
                uri.ok_or_else(|| anyhow!("EXT-X-MAP without a URI"))?
                    .1
                    .to_string(),
            );
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            let a = attributes(v)?;
            let is_part = a.iter().any(|&(k, v)| k == "TYPE" && v == "PART");
            if let Some(&(_, uri)) = a.iter().find(|(k, _)| *k == "URI")
                && is_part
            {
                p.preload_hint = Some((uri.to_string(), seq, index));
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            let d = duration
                .take()
                .ok_or_else(|| anyhow!("a URI without EXTINF"))?;
            p.segments.push((seq, d, line.to_string()));
            seq += 1;
            index = 0;
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

/// Something an LL-HLS player fetches: a part, or a whole segment whose
/// parts the playlist no longer lists.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub seq: u64,
    /// The part's index, or None for the whole segment.
    pub part: Option<usize>,
    pub duration: Duration,
    pub uri: String,
    pub independent: bool,
}

/// Which segment (and part of it) an item is.
type Position = (u64, Option<usize>);

/// Whether `at` comes after `last` (the last item played): a later
/// segment, or a later part of the same segment.
fn comes_after(at: Position, last: Option<Position>) -> bool {
    match last {
        None => true,
        Some((s, p)) => at.0 > s || (at.0 == s && matches!((p, at.1), (Some(a), Some(b)) if b > a)),
    }
}

/// An LL-HLS playlist's timeline: each segment as its listed parts, or
/// whole if none are listed, then the open segment's parts.
pub fn items(p: &MediaPlaylist) -> Vec<Item> {
    let mut out = Vec::new();
    for (seq, d, uri) in &p.segments {
        let parts: Vec<&PartEntry> = p.parts.iter().filter(|x| x.seq == *seq).collect();
        if parts.is_empty() {
            out.push(Item {
                seq: *seq,
                part: None,
                duration: *d,
                uri: uri.clone(),
                independent: true,
            });
        }
        out.extend(parts.into_iter().map(Item::of));
    }
    let open = p.segments.last().map_or(0, |s| s.0 + 1);
    out.extend(p.parts.iter().filter(|x| x.seq >= open).map(Item::of));
    out
}

impl Item {
    fn of(x: &PartEntry) -> Item {
        Item {
            seq: x.seq,
            part: Some(x.index),
            duration: x.duration,
            uri: x.uri.clone(),
            independent: x.independent,
        }
    }
}

/// Where an LL-HLS player starts: the independent item at or before the
/// point `hold_back` from the live edge (the first item if none is).
pub fn ll_start_index(items: &[Item], hold_back: Duration) -> usize {
    let mut left = Duration::ZERO;
    let mut at = 0;
    for (i, it) in items.iter().enumerate().rev() {
        left += it.duration;
        if left >= hold_back {
            at = i;
            break;
        }
    }
    (0..=at).rev().find(|&i| items[i].independent).unwrap_or(0)
}

/// The player's HTTP side: its connection, where its playlist is, its
/// counters, and how it hands what it fetched to the player model.
struct Fetcher {
    sender: SendRequest<Empty<Bytes>>,
    host: HeaderValue,
    /// The playlist's path, and the directory relative URIs are under.
    playlist: String,
    dir: String,
    clock: Clock,
    end: Time,
    foreign: ForeignFrames,
    /// fMP4: the init segment read (its URI and tracks).
    init: Option<(String, Fmp4Init)>,
    /// A multivariant playlist's variants (URIs as paths), the one
    /// playing, the throughput estimate and the BANDWIDTH of the segments
    /// fetched so far (sum, count).
    variants: Vec<Variant>,
    variant: usize,
    abr: Abr,
    fetched_bandwidth: (f64, u64),
    started: Instant,
    stats: HlsPlayerStats,
}

impl Fetcher {
    /// GETs `path` while keeping the player's display going; None when the
    /// run ends first.
    async fn fetch(
        &mut self,
        player: &mut Player,
        path: &str,
    ) -> Result<Option<(StatusCode, Bytes)>> {
        let req = get(path, &self.host)?;
        let exchange = async {
            self.sender
                .ready()
                .await
                .context("the HTTP connection closed")?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .context("HTTP request")?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        match serving(player, self.clock, self.end, exchange).await {
            None => Ok(None),
            Some(r) => r.map(Some),
        }
    }

    /// The playlist (`query`: LL-HLS's directives), parsed; an empty one
    /// while the server has none (404).
    async fn playlist(
        &mut self,
        player: &mut Player,
        query: Option<String>,
    ) -> Result<Option<MediaPlaylist>> {
        let path = match &query {
            // After a signed URL's own query, if it has one.
            Some(q) if self.playlist.contains('?') => format!("{}&{q}", self.playlist),
            Some(q) => format!("{}?{q}", self.playlist),
            None => self.playlist.clone(),
        };
        self.stats.hls_playlist_requests += 1;
        self.stats.hls_blocking_reloads += u64::from(query.is_some());
        let Some((status, body)) = self.fetch(player, &path).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&body);
        if status == StatusCode::OK && abr::is_multivariant(&text) {
            // The ladder: start on its lowest variant, whose media playlist
            // is then what this player reloads.
            if !self.variants.is_empty() {
                bail!("{path}: a multivariant playlist where a media playlist was");
            }
            let variants =
                abr::parse_multivariant(&text).with_context(|| format!("the playlist {path}"))?;
            self.variants = variants
                .into_iter()
                .map(|v| Variant {
                    uri: self.path_of(&v.uri),
                    ..v
                })
                .collect();
            let start = abr::lowest(&self.variants);
            self.stats.hls_variants = Some(self.variants.len());
            self.stats.hls_variant_start = Some(start);
            self.switch_to(start);
            return Box::pin(self.playlist(player, query)).await;
        }
        Ok(Some(match status {
            StatusCode::OK => {
                let list = parse_playlist(&text).with_context(|| format!("the playlist {path}"))?;
                if let Some(map) = &list.map
                    && self
                        .init
                        .as_ref()
                        .is_none_or(|(at, _)| *at != self.path_of(map))
                    && !self.read_init(player, map).await?
                {
                    return Ok(None);
                }
                list
            }
            // Not yet (404), or a blocking reload that waited in vain (503).
            StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE => MediaPlaylist::default(),
            other => bail!("GET {path} answered {other}"),
        }))
    }

    /// GETs and reads the init segment at `uri`; false when the run ended
    /// first.
    async fn read_init(&mut self, player: &mut Player, uri: &str) -> Result<bool> {
        let path = self.path_of(uri);
        let Some((status, body)) = self.fetch(player, &path).await? else {
            return Ok(false);
        };
        if status != StatusCode::OK {
            bail!("GET {path} (the init segment) answered {status}");
        }
        self.stats.hls_bytes += body.len() as u64;
        let tracks = fmp4_demux::init(&body).with_context(|| format!("init segment {path}"))?;
        self.init = Some((path, tracks));
        Ok(true)
    }

    /// Plays variant `i` from now on: its media playlist is the one
    /// reloaded, and relative URIs are under its directory.
    fn switch_to(&mut self, i: usize) {
        self.variant = i;
        self.stats.hls_variant_end = Some(i);
        self.playlist = self.variants[i].uri.clone();
        let path = self.playlist.split('?').next().unwrap_or("");
        self.dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    }

    /// Before the next segment: the variant the throughput estimate picks;
    /// true when that is a switch (the new media playlist is to be
    /// loaded).
    fn adapt(&mut self) -> bool {
        if self.variants.is_empty() {
            return false;
        }
        self.stats.hls_throughput_bps = self.abr.estimate();
        let next = self.abr.choose(&self.variants, self.variant);
        if next == self.variant {
            return false;
        }
        self.stats.hls_variant_switches += 1;
        self.switch_to(next);
        true
    }

    fn path_of(&self, uri: &str) -> String {
        if uri.starts_with('/') {
            uri.to_string()
        } else {
            format!("{}/{uri}", self.dir)
        }
    }

    /// GETs a segment or part and hands its frames to `player` as it
    /// arrives: Some(whether it came), None when the run ended first.
    async fn media(&mut self, player: &mut Player, uri: &str) -> Result<Option<bool>> {
        let path = self.path_of(uri);
        let asked = Instant::now();
        let Some((status, body)) = self.fetch(player, &path).await? else {
            return Ok(None);
        };
        if status != StatusCode::OK {
            return Ok(Some(false));
        }
        // Throughput: whole segments only (a preload hint's answer waits
        // for the part to be made, which says nothing of the link).
        if !self.stats.hls_low_latency {
            self.abr.sample(body.len() as u64, asked.elapsed());
        }
        if let Some(v) = self.variants.get(self.variant) {
            self.fetched_bandwidth.0 += v.bandwidth as f64;
            self.fetched_bandwidth.1 += 1;
            self.stats.hls_variant_mean_bps =
                Some(self.fetched_bandwidth.0 / self.fetched_bandwidth.1 as f64);
        }
        self.stats.hls_bytes += body.len() as u64;
        let started = self.started;
        self.stats
            .hls_first_segment_ms
            .get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
        let now = self.clock.time(Instant::now());
        let frames = match &self.init {
            Some((_, init)) => fmp4_demux::frames(init, &body),
            None => demux::frames(&body),
        };
        for f in frames.with_context(|| format!("segment {path}"))? {
            let h = f.glass.or_else(|| {
                // A foreign frame: an FLV-like body for its timing.
                let mut tag = vec![if f.key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
                tag.resize(5 + f.size, 0);
                self.foreign.header(&tag, f.video, f.ts_ms, now)
            });
            if let Some(h) = h {
                player.on_frame(now, h);
            }
        }
        Ok(Some(true))
    }

    /// Waits until `at` while keeping the display going; false when the run
    /// ends first.
    async fn sleep_until(&self, player: &mut Player, at: Time) -> bool {
        let wake = tokio::time::sleep_until(self.clock.instant(at).into());
        serving(player, self.clock, self.end, wake).await.is_some()
    }
}

/// Plays the HLS stream of the connection's playlist into `player` until
/// `end` (`low_latency`: with LL-HLS's parts when the playlist has them).
pub(in crate::protocol::http) async fn play(
    c: Connection,
    player: &mut Player,
    end: Time,
    low_latency: bool,
) -> Result<HlsPlayerStats> {
    let clock = c.clock;
    let (sender, _conn) = handshake(c.stream).await?;
    let dir = c.path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    let mut f = Fetcher {
        sender,
        host: HeaderValue::from_str(&c.host)?,
        playlist: c.path,
        dir,
        clock,
        end,
        foreign: ForeignFrames::new(WallClock::new(clock)),
        init: None,
        variants: Vec::new(),
        variant: 0,
        abr: Abr::default(),
        fetched_bandwidth: (0.0, 0),
        started: Instant::now(),
        stats: HlsPlayerStats::default(),
    };
    let mut next: Option<u64> = None;
    loop {
        let loaded_at = clock.time(Instant::now());
        let Some(list) = f.playlist(player, None).await? else {
            return Ok(f.stats);
        };
        if low_latency && list.can_block_reload && !list.parts.is_empty() && next.is_none() {
            f.stats.hls_low_latency = true;
            play_parts(&mut f, player, list).await?;
            return Ok(f.stats);
        }
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
                f.stats.hls_start_seq = Some(seq);
                f.stats.hls_start_behind = Some((list.segments.len() - i) as u64);
                Some(seq)
            }
            (Some(n), Some(first)) => {
                if n < first.0 {
                    f.stats.hls_segments_missed += first.0 - n;
                }
                Some(n.max(first.0))
            }
        };
        let mut grew = false;
        let mut switched = false;
        let mut last_duration = target / 2;
        for (seq, d, uri) in &list.segments {
            if from.is_none_or(|from| *seq < from) {
                continue;
            }
            grew = true;
            last_duration = *d;
            f.stats.hls_segment_requests += 1;
            let Some(came) = f.media(player, uri).await? else {
                return Ok(f.stats);
            };
            next = Some(seq + 1);
            if !came {
                f.stats.hls_segments_missed += 1;
            }
            if f.adapt() {
                switched = true;
                break;
            }
        }
        if switched {
            continue; // the new variant's playlist, at once
        }
        if !grew && next.is_some() {
            f.stats.hls_playlist_unchanged += 1;
        }
        // The next reload: after the newest segment's duration when the
        // playlist grew, half the target duration when it did not (RFC 8216
        // §6.3.4), counted from this load.
        let wait = if grew { last_duration } else { target / 2 };
        if !f.sleep_until(player, loaded_at + wait).await {
            return Ok(f.stats);
        }
    }
}

/// LL-HLS: parts from PART-HOLD-BACK behind the live edge, then the
/// preload hint and a blocking reload in turn (the module's steps).
async fn play_parts(f: &mut Fetcher, player: &mut Player, first: MediaPlaylist) -> Result<()> {
    let part_target = first.part_target.unwrap_or(first.target / 4);
    let hold_back = first.part_hold_back.unwrap_or(part_target * 3);
    let timeline = items(&first);
    let start = ll_start_index(&timeline, hold_back);
    f.stats.hls_start_seq = timeline.get(start).map(|i| i.seq);
    f.stats.hls_start_behind = Some((timeline.len() - start) as u64);
    let mut last: Option<Position> = None;
    let mut list = first;
    let mut from = start;
    // Whether the last reload blocked on a part not played yet (one on the
    // hint just played is answered at once and lists nothing new).
    let mut expect_new = false;
    loop {
        // Everything listed after the last item played.
        let timeline = items(&list);
        let new: Vec<Item> = timeline
            .into_iter()
            .skip(from)
            .filter(|i| comes_after((i.seq, i.part), last))
            .collect();
        from = 0;
        if new.is_empty() && expect_new {
            f.stats.hls_playlist_unchanged += 1;
        }
        for it in new {
            match it.part {
                Some(_) => f.stats.hls_part_requests += 1,
                None => f.stats.hls_segment_requests += 1,
            }
            let Some(came) = f.media(player, &it.uri).await? else {
                return Ok(());
            };
            if !came {
                f.stats.hls_segments_missed += 1;
            }
            last = Some((it.seq, it.part));
        }
        // The preload hint, when it is the part after the last one played.
        let mut hinted = false;
        if let Some((uri, seq, index)) = list.preload_hint.clone()
            && comes_after((seq, Some(index)), last)
        {
            f.stats.hls_part_requests += 1;
            f.stats.hls_preload_hints += 1;
            let Some(came) = f.media(player, &uri).await? else {
                return Ok(());
            };
            if came {
                last = Some((seq, Some(index)));
                hinted = true;
            } else {
                f.stats.hls_preload_hint_misses += 1;
            }
        }
        // Block on the part just played when the hint came (answered at
        // once, with the next hint), else on the part after the last one.
        let (msn, part) = match last {
            None => (list.segments.last().map_or(0, |s| s.0 + 1), 0),
            Some((s, Some(p))) if hinted => (s, p),
            Some((s, Some(p))) => (s, p + 1),
            Some((s, None)) => (s + 1, 0),
        };
        expect_new = !hinted;
        let query = format!("_HLS_msn={msn}&_HLS_part={part}");
        let Some(next) = f.playlist(player, Some(query)).await? else {
            return Ok(());
        };
        if next.segments.is_empty() {
            // A reload that waited in vain (the stream paused): wait a part
            // before asking again.
            let now = f.clock.time(Instant::now());
            if !f.sleep_until(player, now + part_target).await {
                return Ok(());
            }
            continue;
        }
        if let (Some((s, _)), Some(first)) = (last, next.segments.first())
            && s < first.0
        {
            f.stats.hls_segments_missed += first.0 - s - 1;
        }
        list = next;
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

    #[test]
    fn reads_an_ll_hls_playlist_and_starts_part_hold_back_from_the_edge() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600\n\
            #EXT-X-PART-INF:PART-TARGET=0.200\n#EXT-X-MEDIA-SEQUENCE:3\n\
            #EXTINF:1.000,\nseg3.ts\n\
            #EXT-X-PART:DURATION=0.500,URI=\"seg4.0.ts\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.500,URI=\"seg4.1.ts\"\n#EXTINF:1.000,\nseg4.ts\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-12-04T13:05:10.123Z\n\
            #EXT-X-PART:DURATION=0.200,URI=\"seg5.0.ts\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.200,URI=\"seg5.1.ts\"\n\
            #EXT-X-PART:DURATION=0.200,URI=\"seg5.2.ts\"\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg5.3.ts\"\n";
        let p = parse_playlist(text).unwrap();
        assert!(p.can_block_reload);
        assert_eq!(p.part_target, Some(Duration::from_millis(200)));
        assert_eq!(p.part_hold_back, Some(Duration::from_millis(600)));
        assert_eq!(p.preload_hint, Some(("seg5.3.ts".into(), 5, 3)));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.parts.len(), 5);
        assert_eq!(
            p.parts[1],
            PartEntry {
                seq: 4,
                index: 1,
                duration: Duration::from_millis(500),
                uri: "seg4.1.ts".into(),
                independent: false
            }
        );
        let it = items(&p);
        let at: Vec<(u64, Option<usize>)> = it.iter().map(|i| (i.seq, i.part)).collect();
        assert_eq!(
            at,
            [
                (3, None),
                (4, Some(0)),
                (4, Some(1)),
                (5, Some(0)),
                (5, Some(1)),
                (5, Some(2))
            ]
        );
        // 0.6 s from the edge is in segment 5 (its three parts): start at
        // its independent first part.
        assert_eq!(ll_start_index(&it, Duration::from_millis(600)), 3);
        // 0.7 s reaches into seg4.1, not independent: back to seg4.0.
        assert_eq!(ll_start_index(&it, Duration::from_millis(700)), 1);
        assert_eq!(ll_start_index(&it, Duration::from_secs(60)), 0);
        assert!(comes_after((5, Some(3)), Some((5, Some(2)))));
        assert!(comes_after((6, Some(0)), Some((5, Some(2)))));
        assert!(!comes_after((5, Some(1)), Some((5, Some(2)))));
        assert!(!comes_after((5, Some(1)), Some((5, None))));
        assert!(comes_after((5, None), None));
        for bad in [
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART:DURATION=0.2\n",
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART:DURATION=0.2,URI=\"x\n",
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART:DURATION=x,URI=\"a\"\n",
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET\n",
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=-1\n",
        ] {
            assert!(parse_playlist(bad).is_err(), "{bad:?}");
        }
    }
}
