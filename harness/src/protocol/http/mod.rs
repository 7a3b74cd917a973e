//! HTTP egress on the relay, play only (any ingest feeds it through the
//! hub): HTTP-FLV (`httpflv://HOST[:8080]/APP/KEY`, i.e. `GET
//! http://HOST:8080/APP/KEY.flv`), a chunked `video/x-flv` response that
//! starts with `onMetaData`, the decoder configuration and the GOP so far
//! and then carries each message live (what SRS, nginx-http-flv and most
//! CDNs serve to players that want RTMP's delay over HTTP); HLS
//! (`hls://…`: MPEG-TS segments and a live playlist at
//! `/APP/KEY/index.m3u8`) and Low-Latency HLS (`llhls://…`: the same with
//! parts, preload hints and blocking playlist reloads), with MPEG-TS or
//! fragmented-MP4 (`http.hls_format`) segments and a transcoded rendition
//! ladder (`http.hls_ladder`); signed play URLs; HLS ingest (MPEG-TS
//! segments pushed by HTTP PUT, `hls::ingest`).
//!
//! The server is `server` (hyper HTTP/1.1, keep-alive) with `query` (LL-HLS
//! directives, tokens) and `signed` (the tokens); the FLV response body
//! `flv_body`; HLS's packager, origin and player under `hls`; Glass's
//! HTTP-FLV player and the players' shared connection in `client`. Not
//! built yet (the HLS issue): a scenario publisher that pushes HLS (the
//! ingest is served; ffmpeg pushes to `glass serve`), LL-HLS rendition
//! switching.

pub mod client;
pub mod flv_body;
pub mod hls;
pub mod query;
pub mod server;
pub mod signed;

use std::sync::Arc;
use std::time::Duration;

use netem::ConfigError;
use netem::units::HumanDuration;
use serde::{Deserialize, Serialize};

use super::{
    Bound, DialCx, Dialed, Endpoint, EntryCx, LocalFuture, Protocol, Scheme, ServeCx, ServerTask,
    Stats, Table,
};
use crate::scenario::Protocol as Settings;
pub use server::HttpServerStats;

/// The relay's HTTP port.
pub const HTTP_PORT: u16 = 8080;
const ENDPOINTS: [Endpoint; 1] = [Endpoint::Tcp(HTTP_PORT)];

/// HTTP egress.
pub struct Http;

/// `http = { gop_cache, hls_segment, hls_window, hls_part, hls_format,
/// play_secret }`: the relay's HTTP egress settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpTable {
    /// An HTTP-FLV player starts with the GOP so far, so its first frame
    /// comes at once (SRS's `gop_cache on`, nginx-http-flv's default);
    /// false: it starts at the next key frame (lower delay to the live
    /// edge, a GOP's wait at startup).
    pub gop_cache: bool,
    /// HLS's target segment duration (EXT-X-TARGETDURATION): segments are
    /// cut at the first key frame after it, so a GOP longer than it makes
    /// segments of a GOP.
    pub hls_segment: HumanDuration,
    /// Segments the live HLS playlist lists.
    pub hls_window: usize,
    /// Low-Latency HLS: the part target duration (EXT-X-PART-INF); the
    /// playlist lists parts, a preload hint and server control (blocking
    /// reload, PART-HOLD-BACK of three parts). Off unless set, or 500 ms
    /// when Glass's player plays `llhls://`.
    pub hls_part: Option<HumanDuration>,
    /// The segments' container: `"ts"` (MPEG-TS, the default) or `"fmp4"`
    /// (fragmented MP4: an init segment, EXT-X-MAP, `.m4s` segments and
    /// parts, each part one `moof` + `mdat`).
    pub hls_format: hls::packager::SegmentFormat,
    /// The transcoder model's rendition ladder, highest first, e.g.
    /// `[{ bitrate = "2.5Mbit/s", resolution = "1280x720" }, { bitrate =
    /// "0.6Mbit/s", resolution = "640x360" }]`: each rendition is packaged
    /// on its own (`/APP/KEY/N/index.m3u8`) and `/APP/KEY/index.m3u8` is the
    /// multivariant playlist; Glass's HLS player picks and switches by
    /// throughput. Empty (the default): one media playlist of the ingest.
    pub hls_ladder: Vec<hls::ladder::Rendition>,
    /// How long the transcoder takes: each rendition's frames reach its
    /// packager this long after the ingest's.
    pub hls_transcode_delay: HumanDuration,
    /// Signed play URLs: every request needs `?token=` made with this
    /// secret (`signed`), else 403; Glass's and ffmpeg's players sign
    /// theirs. Off when unset. Never written to results.
    #[serde(skip_serializing)]
    pub play_secret: Option<String>,
}

/// `http.hls_transcode_delay`'s default: a hardware-assisted live
/// transcoder's few frames of lookahead and encode.
pub const DEFAULT_TRANSCODE_DELAY: Duration = Duration::from_millis(300);

/// The part target an `llhls://` player gets when `http.hls_part` is not set.
pub const DEFAULT_PART: Duration = Duration::from_millis(500);

impl Default for HttpTable {
    fn default() -> Self {
        HttpTable {
            gop_cache: true,
            hls_segment: HumanDuration(Duration::from_secs(2)),
            hls_window: 6,
            hls_part: None,
            hls_format: hls::packager::SegmentFormat::Ts,
            hls_ladder: Vec::new(),
            hls_transcode_delay: HumanDuration(DEFAULT_TRANSCODE_DELAY),
            play_secret: None,
        }
    }
}

impl Table for HttpTable {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Protocol for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        &ENDPOINTS
    }

    fn schemes(&self) -> &'static [Scheme] {
        &[
            Scheme {
                name: "httpflv",
                endpoint: 0,
                what: "HTTP-FLV playback (play only): GET http://HOST:PORT/APP/KEY.flv, e.g. \
                       ffplay http://HOST:PORT/live/KEY.flv",
            },
            Scheme {
                name: "hls",
                endpoint: 0,
                what: "HLS playback (MPEG-TS segments, or fMP4 with http.hls_format = \
                       \"fmp4\"): http://HOST:PORT/APP/KEY/index.m3u8; HLS ingest by PUT: \
                       ffmpeg -f hls -method PUT http://HOST:PORT/APP/KEY/index.m3u8",
            },
            Scheme {
                name: "llhls",
                endpoint: 0,
                what: "Low-Latency HLS playback (play only; parts of http.hls_part, \
                       500 ms by default; blocking playlist reload and preload hints): the \
                       same playlist, http://HOST:PORT/APP/KEY/index.m3u8",
            },
        ]
    }

    fn no_publisher(&self) -> Option<&'static str> {
        Some(
            "HTTP-FLV is play only: publish with kind = \"rtmp\" (or rtsp, udp) and play with \
             player_uri = \"httpflv://server/live/KEY\"",
        )
    }

    fn ffmpeg_input(
        &self,
        uri: &super::uri::StreamUri,
        at: std::net::SocketAddr,
        settings: &Settings,
    ) -> Option<String> {
        Some(format!("http://{at}{}", signed_path_of(uri, settings)))
    }

    fn table_key(&self) -> &'static str {
        "http"
    }

    /// HLS: none. hls.js does not play faster to catch up by default
    /// (`maxLiveSyncPlaybackRate` 1): it starts HOLD-BACK from the live
    /// edge and stays there. (Glass's catch-up measures the live edge by
    /// the freshest frame, which segments deliver seconds before their
    /// first: it would chase a latency a segmented player cannot keep.)
    fn default_latency_control(
        &self,
        uri: &super::uri::StreamUri,
    ) -> Option<crate::scenario::LatencyControlKind> {
        matches!(uri.scheme, "hls" | "llhls").then_some(crate::scenario::LatencyControlKind::None)
    }

    fn configure(
        &self,
        table: Option<&toml::Value>,
        cx: &EntryCx,
    ) -> Result<Box<dyn Table>, ConfigError> {
        let at = format!("{}.http", cx.field);
        let mut t: HttpTable = super::parse_table(table, &at)?;
        let seg = t.hls_segment.get();
        if seg < Duration::from_millis(500) || seg > Duration::from_secs(30) {
            return Err(ConfigError::invalid(
                format!("{at}.hls_segment"),
                "between 0.5 s and 30 s",
            ));
        }
        if !(3..=100).contains(&t.hls_window) {
            return Err(ConfigError::invalid(
                format!("{at}.hls_window"),
                "between 3 and 100 segments (a player starts 3 segments from the live edge)",
            ));
        }
        if t.play_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::invalid(
                format!("{at}.play_secret"),
                "at least 16 characters (it signs play URLs)",
            ));
        }
        if t.hls_ladder.len() > 8 {
            return Err(ConfigError::invalid(
                format!("{at}.hls_ladder"),
                "at most 8 renditions",
            ));
        }
        for (i, r) in t.hls_ladder.iter().enumerate() {
            // Up to 100 Mbit/s: the model's frames are the source's scaled
            // by the ratio, so a runaway rung would be runaway memory.
            if !(10_000..=100_000_000).contains(&r.bitrate.bits_per_sec()) {
                return Err(ConfigError::invalid(
                    format!("{at}.hls_ladder[{i}].bitrate"),
                    "between 10kbit/s and 100Mbit/s",
                ));
            }
            if r.size().is_none_or(|(w, h)| w == 0 || h == 0) {
                return Err(ConfigError::invalid(
                    format!("{at}.hls_ladder[{i}].resolution"),
                    "WIDTHxHEIGHT, e.g. \"1280x720\"",
                ));
            }
        }
        if t.hls_transcode_delay.get() > Duration::from_secs(10) {
            return Err(ConfigError::invalid(
                format!("{at}.hls_transcode_delay"),
                "at most 10 s",
            ));
        }
        if t.hls_part.is_none() && cx.player_scheme == "llhls" {
            t.hls_part = Some(HumanDuration(DEFAULT_PART));
        }
        if let Some(part) = t.hls_part.map(HumanDuration::get)
            && (part < Duration::from_millis(100) || part > seg / 2)
        {
            return Err(ConfigError::invalid(
                format!("{at}.hls_part"),
                format!(
                    "between 100 ms and half of hls_segment ({} ms): a segment is several parts",
                    seg.as_millis() / 2
                ),
            ));
        }
        Ok(Box::new(t))
    }

    fn serve(
        &self,
        socks: Vec<Bound>,
        settings: &Settings,
        cx: ServeCx,
    ) -> anyhow::Result<ServerTask> {
        let Some(Bound::Tcp(listener)) = socks.into_iter().next() else {
            anyhow::bail!("HTTP serves on a TCP socket");
        };
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let table = settings.table::<HttpTable>().cloned().unwrap_or_default();
        let packaging = hls::packager::PackagerConfig {
            target: table.hls_segment.get(),
            window: table.hls_window,
            part: table.hls_part.map(HumanDuration::get),
            format: table.hls_format,
        };
        let key = cx.hub.stream_key().to_string();
        let poisoned = |e: crate::relay::Poisoned| anyhow::anyhow!("{e}");
        let mut packagers = Vec::new();
        // Without a ladder, one origin of the ingest; with one, an origin
        // per rendition behind its transcoder.
        let hls = if table.hls_ladder.is_empty() {
            let (origin, task) =
                hls::origin::Origin::start(&cx.hub, &key, packaging, cx.stop.clone(), cx.clock)
                    .map_err(poisoned)?;
            packagers.push(task);
            Some(origin)
        } else {
            None
        };
        let mut ladder = Vec::new();
        for r in &table.hls_ladder {
            let transcoder = hls::ladder::Transcoder::new(
                r.bitrate,
                netem::units::BitRate::from_bits_per_sec(cx.media_bps),
                table.hls_transcode_delay.get(),
            );
            let (origin, task) = hls::origin::Origin::start_rendition(
                &cx.hub,
                &key,
                packaging,
                cx.stop.clone(),
                cx.clock,
                Some(transcoder),
            )
            .map_err(poisoned)?;
            packagers.push(task);
            ladder.push((r.clone(), origin));
        }
        let cfg = server::Config {
            hub: cx.hub,
            gop_cache: table.gop_cache,
            congestion: Some(settings.tcp_congestion.clone()),
            hls,
            ladder,
            play_secret: table.play_secret.clone(),
            ingest: Default::default(),
        };
        let counters = Arc::new(server::Counters::default());
        let task = server::serve(listener, cfg, cx.stop, counters.clone());
        Ok(tokio::spawn(async move {
            task.await;
            for p in packagers {
                let _ = p.await;
            }
            Box::new(counters.snapshot()) as Box<dyn Stats>
        }))
    }

    fn dial<'a>(&'a self, cx: DialCx<'a>, to: Endpoint) -> LocalFuture<'a, anyhow::Result<Dialed>> {
        Box::pin(client::dial(cx, to))
    }

    /// Its retransmissions (TCP's to the players; the publisher's are its
    /// own protocol's) and what Glass's HLS player did.
    fn run_section(&self, cx: &super::RunCx) -> Option<Box<dyn Stats>> {
        let relay = cx
            .servers
            .iter()
            .find_map(|(_, s)| s.as_any().downcast_ref::<HttpServerStats>())?;
        let hls = cx
            .clients
            .iter()
            .find_map(|s| s.as_any().downcast_ref::<hls::player::HlsPlayerStats>())
            .cloned();
        Some(Box::new(HttpSection {
            retransmits: relay.retransmits(),
            hls,
        }))
    }
}

/// [`path_of`], with a token good for an hour when the relay serves signed
/// URLs only (`http.play_secret`).
pub fn signed_path_of(uri: &super::uri::StreamUri, settings: &Settings) -> String {
    let path = path_of(uri);
    match settings
        .table::<HttpTable>()
        .and_then(|t| t.play_secret.as_deref())
    {
        Some(secret) => {
            let stream = format!("/{}/{}", uri.app, uri.key);
            let expires = signed::unix_now() + 3600;
            format!("{path}?token={}", signed::token(secret, &stream, expires))
        }
        None => path,
    }
}

/// The path a player requests for `uri`: the FLV stream or the HLS
/// playlist.
pub fn path_of(uri: &super::uri::StreamUri) -> String {
    match uri.scheme {
        "hls" | "llhls" => format!("/{}/{}/{}", uri.app, uri.key, server::PLAYLIST),
        _ => format!("/{}/{}.flv", uri.app, uri.key),
    }
}

/// HTTP's part of a run: its retransmissions, and Glass's HLS player's
/// requests (its fields join results.json's `result`).
#[derive(Debug)]
pub struct HttpSection {
    pub retransmits: u64,
    pub hls: Option<hls::player::HlsPlayerStats>,
}

impl Stats for HttpSection {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.hls
            .as_ref()
            .map(super::json_fields)
            .unwrap_or_default()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn retransmits(&self) -> u64 {
        self.retransmits
    }
}
