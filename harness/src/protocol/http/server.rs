//! The relay's HTTP server (hyper, HTTP/1.1 with keep-alive): routes a
//! request to what serves it and counts what it did: HTTP-FLV
//! (`GET /APP/KEY.flv`), and HLS's playlist, segments and LL-HLS parts
//! (`/APP/KEY/index.m3u8`, `segN.ts`, `segN.I.ts`; `.m4s` and `init.mp4`
//! in fMP4) with blocking playlist
//! reloads (`?_HLS_msn=N&_HLS_part=I`) and preload hints held until the
//! part is done, each for at most three target durations.

use std::convert::Infallible;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use netem::adapters::tcpinfo::{TcpInfo, set_congestion, tcp_info};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::flv_body::FlvBody;
use super::hls::origin::Blocked;
use super::hls::packager::INIT_SEGMENT;
use super::{query, signed};
use crate::relay::{APP, Hub};

/// Connections served at once; more are closed at once (a bound on what
/// idle or stuck clients can hold).
pub const MAX_CONNECTIONS: usize = 4096;
/// A client has this long to send a request's headers (slow clients that
/// never finish a request do not hold a connection for ever).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server did, counted as it goes.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub refused: AtomicU64,
    pub requests: AtomicU64,
    pub flv_sessions: AtomicU64,
    pub not_found: AtomicU64,
    pub bad_requests: AtomicU64,
    pub forbidden: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub tags_too_big: AtomicU64,
    pub hls_playlists: AtomicU64,
    pub hls_segments: AtomicU64,
    pub hls_parts: AtomicU64,
    pub hls_blocking: AtomicU64,
    pub hls_blocking_timeouts: AtomicU64,
    pub hls_ingest_segments: AtomicU64,
    pub hls_ingest_bytes: AtomicU64,
    /// Each connection's TCP as it ended.
    pub tcp: Mutex<Vec<TcpInfo>>,
}

/// The relay's HTTP statistics (its part of results.json's `relay`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpServerStats {
    pub http_connections: u64,
    /// Connections closed at once: [`MAX_CONNECTIONS`] were open.
    pub http_refused: u64,
    pub http_requests: u64,
    /// HTTP-FLV responses started.
    pub http_flv_sessions: u64,
    /// 404s: unknown paths and streams.
    pub http_not_found: u64,
    /// 400s and 405s.
    pub http_bad_requests: u64,
    /// 403s: signed URLs without a valid token.
    pub http_forbidden: u64,
    /// Response body bytes.
    pub http_bytes_sent: u64,
    /// Media too big for an FLV tag, left out of HTTP-FLV responses.
    pub http_flv_tags_too_big: u64,
    /// HLS playlist and segment requests.
    pub http_hls_playlists: u64,
    pub http_hls_segments: u64,
    /// LL-HLS part requests (preload hints included).
    pub http_hls_parts: u64,
    /// Blocking playlist reloads (`_HLS_msn`), and those that waited three
    /// target durations in vain (503).
    pub http_hls_blocking: u64,
    pub http_hls_blocking_timeouts: u64,
    /// HLS ingest: segments pushed (PUT) and published, and their bytes.
    pub http_hls_ingest_segments: u64,
    pub http_hls_ingest_bytes: u64,
    /// The kernel's view of each connection (to players), as it ended.
    pub http_to_players_tcp: Vec<TcpInfo>,
}

impl Counters {
    pub fn snapshot(&self) -> HttpServerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HttpServerStats {
            http_connections: get(&self.connections),
            http_refused: get(&self.refused),
            http_requests: get(&self.requests),
            http_flv_sessions: get(&self.flv_sessions),
            http_not_found: get(&self.not_found),
            http_bad_requests: get(&self.bad_requests),
            http_forbidden: get(&self.forbidden),
            http_bytes_sent: get(&self.bytes_sent),
            http_flv_tags_too_big: get(&self.tags_too_big),
            http_hls_playlists: get(&self.hls_playlists),
            http_hls_segments: get(&self.hls_segments),
            http_hls_parts: get(&self.hls_parts),
            http_hls_blocking: get(&self.hls_blocking),
            http_hls_blocking_timeouts: get(&self.hls_blocking_timeouts),
            http_hls_ingest_segments: get(&self.hls_ingest_segments),
            http_hls_ingest_bytes: get(&self.hls_ingest_bytes),
            http_to_players_tcp: self.tcp.lock().map(|t| t.clone()).unwrap_or_default(),
        }
    }
}

impl crate::protocol::Stats for HttpServerStats {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::protocol::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    /// TCP's retransmitted segments to the players.
    fn retransmits(&self) -> u64 {
        self.http_to_players_tcp
            .iter()
            .map(|t| u64::from(t.total_retrans))
            .sum()
    }
}

/// What the server needs to answer a request.
#[derive(Clone)]
pub struct Config {
    pub hub: Hub,
    /// HTTP-FLV players start with the GOP so far (true) or at the next
    /// key frame.
    pub gop_cache: bool,
    /// The congestion control of its connections (the scenario's
    /// `tcp_congestion`, as RTMP's).
    pub congestion: Option<String>,
    /// The stream's HLS origin, if HLS is served (without a ladder).
    pub hls: Option<Arc<super::hls::origin::Origin>>,
    /// The rendition ladder's origins (the transcoder model's renditions),
    /// listed by the multivariant playlist; empty without a ladder.
    pub ladder: Vec<(
        super::hls::ladder::Rendition,
        Arc<super::hls::origin::Origin>,
    )>,
    /// Signed URLs only: the secret tokens are checked with.
    pub play_secret: Option<String>,
    /// HLS ingest's state: whether it holds the stream, and its converter.
    pub ingest: Arc<Mutex<Ingest>>,
}

/// An HLS publisher's state on the relay.
#[derive(Debug, Default)]
pub struct Ingest {
    /// It holds the stream's key (claimed at its first segment).
    claimed: bool,
    ts: super::hls::ingest::TsIngest,
}

/// The largest segment or playlist an HLS publisher may push.
const MAX_PUSHED: usize = 64 << 20;

/// What a request's path asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/APP/KEY.flv`
    Flv { key: &'a str },
    /// `/APP/KEY/index.m3u8`: the media playlist, or with a ladder the
    /// multivariant one; `/APP/KEY/N/index.m3u8`: rendition N's (each
    /// route below has its `/APP/KEY/N/…` form too).
    Playlist {
        key: &'a str,
        rendition: Option<usize>,
    },
    /// `/APP/KEY/segN.ts` (`.m4s` in fMP4: `ext`)
    Segment {
        key: &'a str,
        rendition: Option<usize>,
        seq: u64,
        ext: &'a str,
    },
    /// `/APP/KEY/segN.I.ts`: part I of segment N (LL-HLS).
    Part {
        key: &'a str,
        rendition: Option<usize>,
        seq: u64,
        part: usize,
        ext: &'a str,
    },
    /// `/APP/KEY/init.mp4`: fMP4's init segment.
    Init {
        key: &'a str,
        rendition: Option<usize>,
    },
}

/// The name of HLS's media playlist under `/APP/KEY/`.
pub const PLAYLIST: &str = "index.m3u8";

/// The route of `path` (without its query), if it is one.
pub fn route(path: &str) -> Option<Route<'_>> {
    let rest = path
        .strip_prefix('/')?
        .strip_prefix(APP)?
        .strip_prefix('/')?;
    let word = |k: &str| !k.is_empty() && !k.contains('/');
    if let Some(key) = rest.strip_suffix(".flv") {
        return word(key).then_some(Route::Flv { key });
    }
    let (key, file) = rest.split_once('/')?;
    if !word(key) {
        return None;
    }
    // A rendition's files are under its index (one or two digits).
    let (rendition, file) = match file.split_once('/') {
        Some((n, file)) => {
            let ok = (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit());
            (Some(n.parse::<usize>().ok().filter(|_| ok)?), file)
        }
        None => (None, file),
    };
    if file == PLAYLIST {
        return Some(Route::Playlist { key, rendition });
    }
    if file == INIT_SEGMENT {
        return Some(Route::Init { key, rendition });
    }
    let (n, ext) = file.strip_prefix("seg")?.rsplit_once('.')?;
    if ext != "ts" && ext != "m4s" {
        return None;
    }
    // Digits only: u64's parser takes a leading '+'.
    let number = |n: &str| {
        (!n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<u64>().ok())
            .flatten()
    };
    Some(match n.split_once('.') {
        None => Route::Segment {
            key,
            rendition,
            seq: number(n)?,
            ext,
        },
        Some((seq, part)) => Route::Part {
            key,
            rendition,
            seq: number(seq)?,
            part: usize::try_from(number(part)?).ok()?,
            ext,
        },
    })
}

type ResponseBody = Either<Full<Bytes>, FlvBody>;

fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(format!("{text}\n")))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// How long a playlist request waits for a stream's first segment.
const FIRST_PLAYLIST_WAIT: Duration = Duration::from_secs(10);

/// The response to one request: HLS ingest's PUT and DELETE, or a read.
async fn answer(
    req: Request<Incoming>,
    cfg: &Config,
    counters: &Arc<Counters>,
) -> Response<ResponseBody> {
    if req.method() == Method::PUT || req.method() == Method::DELETE {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        return ingest(req, cfg, counters).await;
    }
    respond(&req, cfg, counters).await
}

/// HLS ingest (`ffmpeg -f hls -method PUT http://HOST:8080/APP/KEY/index.m3u8`):
/// a PUT of `/APP/KEY/NAME.ts` is a segment, published into the hub when
/// it has arrived whole; a PUT of `NAME.m3u8` (the publisher's playlist)
/// and a DELETE (of a segment that slid out) are accepted and not needed.
async fn ingest(
    req: Request<Incoming>,
    cfg: &Config,
    counters: &Counters,
) -> Response<ResponseBody> {
    use http_body_util::{BodyExt, Limited};
    let path = req.uri().path().to_string();
    let Some((key, file)) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(APP))
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.split_once('/'))
    else {
        return not_found(counters, &format!("HLS ingest is PUT /{APP}/KEY/NAME.ts"));
    };
    if key != cfg.hub.stream_key() {
        return not_found(counters, "no such stream");
    }
    let segment = file.ends_with(".ts");
    if !segment && !file.ends_with(".m3u8") || file.contains('/') {
        return bad_request(
            counters,
            "HLS ingest takes MPEG-TS segments (.ts) and playlists (.m3u8)",
        );
    }
    if req.method() == Method::DELETE {
        return plain(StatusCode::NO_CONTENT, "");
    }
    let body = match Limited::new(req.into_body(), MAX_PUSHED).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "a pushed file over 64 MiB");
        }
        Err(e) => return bad_request(counters, &format!("the pushed body: {e}")),
    };
    if !segment {
        return plain(StatusCode::CREATED, "");
    }
    // From here on nothing waits: a segment that has arrived is published
    // whole, even if the publisher has gone.
    let Ok(mut st) = cfg.ingest.lock() else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the ingest's state is poisoned",
        );
    };
    if !st.claimed {
        match cfg.hub.claim(key) {
            Ok(true) => st.claimed = true,
            _ => {
                return plain(StatusCode::CONFLICT, "another publisher holds this stream");
            }
        }
    }
    let messages = match st.ts.segment(&body) {
        Ok(m) => m,
        Err(e) => return bad_request(counters, &e.to_string()),
    };
    counters.hls_ingest_segments.fetch_add(1, Ordering::Relaxed);
    counters
        .hls_ingest_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    for m in messages {
        if cfg.hub.publish(key, m).is_err() {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "the relay's hub failed");
        }
    }
    plain(StatusCode::CREATED, "")
}

/// The response to one read (GET or HEAD).
async fn respond(
    req: &Request<Incoming>,
    cfg: &Config,
    counters: &Arc<Counters>,
) -> Response<ResponseBody> {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        counters.bad_requests.fetch_add(1, Ordering::Relaxed);
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET and HEAD (play), PUT and DELETE (HLS ingest)",
        );
    }
    let Some(route) = route(req.uri().path()) else {
        return not_found(
            counters,
            &format!(
                "no such resource; HTTP-FLV is GET /{APP}/KEY.flv, HLS GET /{APP}/KEY/{PLAYLIST}"
            ),
        );
    };
    let (Route::Flv { key }
    | Route::Playlist { key, .. }
    | Route::Segment { key, .. }
    | Route::Part { key, .. }
    | Route::Init { key, .. }) = route;
    if key != cfg.hub.stream_key() {
        return not_found(counters, "no such stream");
    }
    let q = match query::parse(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return bad_request(counters, &e.to_string()),
    };
    if let Some(secret) = &cfg.play_secret
        && let Err(e) = signed::check(
            secret,
            &format!("/{APP}/{key}"),
            q.token,
            signed::unix_now(),
        )
    {
        counters.forbidden.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::FORBIDDEN, &e.to_string());
    }
    // The token a playlist was fetched with goes on every URI it lists.
    let token = q.token.filter(|_| cfg.play_secret.is_some());
    let uri_query = token.map(|t| format!("token={t}"));
    let uri_query = uri_query.as_deref();
    let head = req.method() == Method::HEAD;
    match route {
        Route::Flv { key } => flv(cfg, counters, key, head),
        Route::Playlist { rendition, .. } => {
            counters.hls_playlists.fetch_add(1, Ordering::Relaxed);
            if rendition.is_none() && !cfg.ladder.is_empty() {
                let rungs = cfg.ladder.iter().map(|(r, _)| r);
                let p = super::hls::ladder::multivariant(rungs, uri_query);
                return file(
                    counters,
                    Some(Bytes::from(p)),
                    "application/vnd.apple.mpegurl",
                    head,
                    "",
                );
            }
            let Some(o) = origin_of(cfg, rendition) else {
                return not_found(counters, "no such HLS rendition here");
            };
            let p = match q.msn.filter(|_| o.low_latency()) {
                // A server without parts ignores the directives (it does
                // not advertise CAN-BLOCK-RELOAD).
                None => o.first_playlist(FIRST_PLAYLIST_WAIT, uri_query).await,
                Some(msn) => {
                    counters.hls_blocking.fetch_add(1, Ordering::Relaxed);
                    match o
                        .blocking_playlist(msn, q.part, FIRST_PLAYLIST_WAIT, uri_query)
                        .await
                    {
                        Ok(p) => Some(p),
                        Err(Blocked::TooFarAhead) => {
                            return bad_request(
                                counters,
                                "_HLS_msn/_HLS_part too far ahead of the live edge",
                            );
                        }
                        Err(Blocked::TimedOut) => {
                            counters
                                .hls_blocking_timeouts
                                .fetch_add(1, Ordering::Relaxed);
                            return plain(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "the requested part did not come within three target durations",
                            );
                        }
                    }
                }
            };
            file(
                counters,
                p.map(Bytes::from),
                "application/vnd.apple.mpegurl",
                head,
                "no playlist (no segment yet)",
            )
        }
        Route::Segment {
            seq,
            ext,
            rendition,
            ..
        } => {
            counters.hls_segments.fetch_add(1, Ordering::Relaxed);
            let Some(o) = hls_in(cfg, rendition, ext) else {
                return not_found(counters, "no HLS segments of that format here");
            };
            file(
                counters,
                o.segment(seq),
                o.format().content_type(),
                head,
                "no such segment (not yet, or gone)",
            )
        }
        Route::Part {
            seq,
            part,
            ext,
            rendition,
            ..
        } => {
            counters.hls_parts.fetch_add(1, Ordering::Relaxed);
            let Some(o) = hls_in(cfg, rendition, ext) else {
                return not_found(counters, "no HLS parts of that format here");
            };
            file(
                counters,
                o.part(seq, part).await,
                o.format().content_type(),
                head,
                "no such part (not the next one, or gone)",
            )
        }
        Route::Init { rendition, .. } => {
            counters.hls_segments.fetch_add(1, Ordering::Relaxed);
            let init = origin_of(cfg, rendition).and_then(|o| o.init());
            file(
                counters,
                init,
                "video/mp4",
                head,
                "no init segment (not fMP4, or no segment yet)",
            )
        }
    }
}

/// The stream's HLS origin (`rendition`: the ladder's), if there is one.
fn origin_of(cfg: &Config, rendition: Option<usize>) -> Option<&super::hls::origin::Origin> {
    match rendition {
        None => cfg.hls.as_deref(),
        Some(i) => cfg.ladder.get(i).map(|(_, o)| &**o),
    }
}

/// [`origin_of`], if it serves segments with extension `ext`.
fn hls_in<'c>(
    cfg: &'c Config,
    rendition: Option<usize>,
    ext: &str,
) -> Option<&'c super::hls::origin::Origin> {
    origin_of(cfg, rendition).filter(|o| o.format().extension() == ext)
}

fn bad_request(counters: &Counters, text: &str) -> Response<ResponseBody> {
    counters.bad_requests.fetch_add(1, Ordering::Relaxed);
    plain(StatusCode::BAD_REQUEST, text)
}

fn not_found(counters: &Counters, text: &str) -> Response<ResponseBody> {
    counters.not_found.fetch_add(1, Ordering::Relaxed);
    plain(StatusCode::NOT_FOUND, text)
}

/// A response of `kind` with no caching (live content changes), readable
/// by any page (browser players such as hls.js and mpegts.js fetch from
/// the page's origin, not the relay's).
fn live(body: ResponseBody, kind: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// A playlist or a segment: `bytes` if there are any (no body for HEAD),
/// else 404 with `missing`.
fn file(
    counters: &Counters,
    bytes: Option<Bytes>,
    kind: &'static str,
    head: bool,
    missing: &str,
) -> Response<ResponseBody> {
    let Some(bytes) = bytes else {
        return not_found(counters, missing);
    };
    let body = if head {
        Bytes::new()
    } else {
        counters
            .bytes_sent
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        bytes
    };
    live(Either::Left(Full::new(body)), kind)
}

/// An HTTP-FLV stream of `key` (headers only for HEAD).
fn flv(cfg: &Config, counters: &Arc<Counters>, key: &str, head: bool) -> Response<ResponseBody> {
    if head {
        return live(Either::Left(Full::new(Bytes::new())), "video/x-flv");
    }
    let Ok(sub) = cfg.hub.subscribe(key) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "the relay is stopping");
    };
    counters.flv_sessions.fetch_add(1, Ordering::Relaxed);
    let body = FlvBody::new(sub, cfg.hub.clone(), cfg.gop_cache, counters.clone());
    live(Either::Right(body), "video/x-flv")
}

/// Serves HTTP on `listener` until `stop` changes; open connections (live
/// FLV streams among them) end then.
pub async fn serve(
    listener: TcpListener,
    cfg: Config,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((sock, _peer)) = accepted else {
                    // Out of file descriptors (EMFILE): pause rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                while conns.try_join_next().is_some() {}
                if conns.len() >= MAX_CONNECTIONS {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let _ = sock.set_nodelay(true);
                if let Some(cc) = &cfg.congestion
                    && let Err(e) = set_congestion(&sock, cc)
                {
                    tracing::warn!("relay: {e}");
                }
                // A second descriptor of the socket, to read its TCP_INFO
                // after hyper is done with it.
                let fd = sock.as_fd().try_clone_to_owned().ok();
                let (cfg, counters, mut stop) = (cfg.clone(), counters.clone(), stop.clone());
                conns.spawn(async move {
                    let answering = counters.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let (cfg, answering) = (cfg.clone(), answering.clone());
                        async move { Ok::<_, Infallible>(answer(req, &cfg, &answering).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        // ffmpeg's HLS muxer shuts its side down once it
                        // has sent a PUT: the request still counts.
                        .half_close(true)
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(sock), service);
                    tokio::select! {
                        // A client that breaks the protocol or goes away
                        // ends its connection only.
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                    if let Some(info) = fd.as_ref().and_then(|fd| tcp_info(fd).ok())
                        && let Ok(mut t) = counters.tcp.lock()
                    {
                        t.push(info);
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    // Connections see the same stop and end with their TCP figures; any
    // still running after a second are aborted.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_flv_paths_and_nothing_else() {
        assert_eq!(route("/live/k.flv"), Some(Route::Flv { key: "k" }));
        assert_eq!(
            route("/live/k/index.m3u8"),
            Some(Route::Playlist {
                key: "k",
                rendition: None
            })
        );
        assert_eq!(
            route("/live/k/seg42.ts"),
            Some(Route::Segment {
                key: "k",
                rendition: None,
                seq: 42,
                ext: "ts"
            })
        );
        assert_eq!(
            route("/live/k/seg42.7.ts"),
            Some(Route::Part {
                key: "k",
                rendition: None,
                seq: 42,
                part: 7,
                ext: "ts"
            })
        );
        assert_eq!(
            route("/live/k/2/seg3.1.m4s"),
            Some(Route::Part {
                key: "k",
                rendition: Some(2),
                seq: 3,
                part: 1,
                ext: "m4s"
            })
        );
        assert_eq!(
            route("/live/k/init.mp4"),
            Some(Route::Init {
                key: "k",
                rendition: None
            })
        );
        assert_eq!(
            route("/live/k/12/index.m3u8"),
            Some(Route::Playlist {
                key: "k",
                rendition: Some(12)
            })
        );
        for bad in [
            "",
            "/",
            "/live/.flv",
            "/live/k",
            "/live/a/b.flv",
            "/other/k.flv",
            "live/k.flv",
            "/live/k.flv/x",
            "/livex/k.flv",
            "/live/k/seg.ts",
            "/live/k/seg+1.ts",
            "/live/k/seg99999999999999999999.ts",
            "/live/k/other.m3u8",
            "/live//index.m3u8",
            "/live/k/seg1..ts",
            "/live/k/seg1.2.3.ts",
            "/live/k/seg.1.ts",
            "/live/k/seg1.+2.ts",
            "/live/k/seg1.mp4",
            "/live/k/seg1",
            "/live/k/init.m4s",
            "/live/k/123/index.m3u8",
            "/live/k//index.m3u8",
            "/live/k/+1/index.m3u8",
            "/live/k/1/2/index.m3u8",
        ] {
            assert_eq!(route(bad), None, "{bad}");
        }
    }
}

/// Real requests against a real listener on loopback: what each answers.
#[cfg(test)]
mod wire_tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A server on loopback: HTTP-FLV only, or with an LL-HLS origin (500
    /// ms segments, 100 ms parts); signed URLs only when `secret` is given.
    async fn start_with(
        ll_hls: bool,
        secret: Option<&str>,
    ) -> (
        std::net::SocketAddr,
        Hub,
        watch::Sender<bool>,
        Arc<Counters>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let hub = Hub::new("k");
        let (stop_tx, stop) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let packaging = crate::protocol::http::hls::packager::PackagerConfig {
            target: Duration::from_millis(500),
            window: 6,
            part: Some(Duration::from_millis(100)),
            format: Default::default(),
        };
        let hls = ll_hls.then(|| {
            let origin = crate::protocol::http::hls::origin::Origin::start(
                &hub,
                "k",
                packaging,
                stop.clone(),
                None,
            );
            origin.unwrap().0
        });
        let cfg = Config {
            hub: hub.clone(),
            gop_cache: true,
            congestion: None,
            hls,
            ladder: Vec::new(),
            play_secret: secret.map(str::to_string),
            ingest: Default::default(),
        };
        tokio::spawn(serve(listener, cfg, stop, counters.clone()));
        (at, hub, stop_tx, counters)
    }

    /// Sends `request` and reads what comes back within `wait`.
    async fn exchange(at: std::net::SocketAddr, request: &[u8], wait: Duration) -> String {
        let mut s = TcpStream::connect(at).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(wait, async {
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn bad_requests_get_a_status_and_the_server_keeps_serving() {
        let (at, hub, stop, counters) = start_with(false, None).await;
        let short = Duration::from_millis(300);
        let cases: [(&[u8], &str); 6] = [
            (b"GET /live/other.flv HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
            (b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
            (
                b"POST /live/k.flv HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                "405",
            ),
            (b"GARBAGE\r\n\r\n", "400"),
            (
                b"GET /live/k.flv?%zz=&&== HTTP/1.1\r\nHost: x\r\n\r\n",
                "200",
            ),
            (b"HEAD /live/k.flv HTTP/1.1\r\nHost: x\r\n\r\n", "200"),
        ];
        for (req, status) in cases {
            let got = exchange(at, req, short).await;
            assert!(
                got.starts_with(&format!("HTTP/1.1 {status}")),
                "{} -> {got:?}",
                String::from_utf8_lossy(req)
            );
        }
        // Many held requests for a stream nobody publishes yet: each is an
        // open response, and the server still answers the next one.
        let mut held = Vec::new();
        for _ in 0..200 {
            let mut s = TcpStream::connect(at).await.unwrap();
            s.write_all(b"GET /live/k.flv HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            held.push(s);
        }
        let got = exchange(at, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", short).await;
        assert!(got.starts_with("HTTP/1.1 404"), "{got:?}");
        // They all get the stream once it starts.
        hub.publish(
            "k",
            crate::relay::Media::Video(bytes::Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]), 0),
        )
        .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), held[199].read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
        assert!(head.contains("video/x-flv"), "{head:?}");
        drop(held);
        stop.send(true).unwrap();
        let st = counters.snapshot();
        assert!(
            st.http_not_found >= 3 && st.http_bad_requests >= 1,
            "{st:?}"
        );
        assert!(st.http_flv_sessions >= 201, "{st:?}");
    }

    /// HLS ingest's bad input: a wrong stream, a file that is neither a
    /// segment nor a playlist, a damaged segment, a publisher that comes
    /// when another holds the stream: a status each, and the stream goes on.
    #[tokio::test]
    async fn hls_ingest_answers_bad_pushes_with_a_status() {
        let (at, hub, stop, counters) = start_with(false, None).await;
        let short = Duration::from_millis(300);
        let put = |path: &str, body: &[u8]| {
            let mut r = format!(
                "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        };
        let garbage: Vec<u8> = (0..188 * 4)
            .map(|i| if i % 188 == 0 { 0x47 } else { i as u8 })
            .collect();
        let cases: [(Vec<u8>, &str); 6] = [
            (put("/live/other/a.ts", &garbage), "404"),
            (put("/live/k/a.mp4", b"x"), "400"),
            (put("/live/k/index.m3u8", b"#EXTM3U\n"), "201"),
            (
                b"DELETE /live/k/a0.ts HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                "204",
            ),
            // Not MPEG-TS: refused, nothing published.
            (put("/live/k/a1.ts", &garbage), "400"),
            (put("/live/k/a2.ts", b"\x47\x00"), "400"),
        ];
        for (req, status) in cases {
            let got = exchange(at, &req, short).await;
            assert!(
                got.starts_with(&format!("HTTP/1.1 {status}")),
                "{} -> {got:?}",
                String::from_utf8_lossy(&req[..req.len().min(60)])
            );
        }
        assert_eq!(
            hub.stats().streams.get("k").map_or(0, |s| s.video_messages),
            0
        );
        // A real segment (Glass's packager's) is published.
        let mut p = crate::protocol::http::hls::packager::Packager::new(
            crate::protocol::http::hls::packager::PackagerConfig {
                target: Duration::from_millis(500),
                window: 6,
                part: None,
                format: Default::default(),
            },
        );
        let t0 = std::time::SystemTime::now();
        let frame = |key: bool, ts: u32| {
            let t = if key { 0x17 } else { 0x27 };
            crate::relay::Media::Video(
                bytes::Bytes::from(vec![t, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88]),
                ts,
            )
        };
        p.push(
            &crate::relay::Media::Video(crate::media::source::sequence_header(), 0),
            t0,
        );
        for i in 0..40u32 {
            p.push(&frame(i % 15 == 0, i * 40), t0);
        }
        let segment = p.segment(0).unwrap().bytes.clone();
        let got = exchange(at, &put("/live/k/a3.ts", &segment), short).await;
        assert!(got.starts_with("HTTP/1.1 201"), "{got:?}");
        let video = hub.stats().streams.get("k").map_or(0, |s| s.video_messages);
        assert!(video >= 12, "{video} video messages published");
        // The ingest holds the stream now: an RTMP publisher is refused.
        assert!(!hub.claim("k").unwrap());
        stop.send(true).unwrap();
        let st = counters.snapshot();
        assert_eq!(st.http_hls_ingest_segments, 1, "{st:?}");
    }

    /// Reads from `s` until `needle` has come (or `wait` passes).
    async fn read_until(s: &mut TcpStream, needle: &str, wait: Duration) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        let _ = tokio::time::timeout(wait, async {
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&got).contains(needle) {
                    break;
                }
            }
        })
        .await;
        String::from_utf8_lossy(&got).into_owned()
    }

    fn get_request(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
    }

    #[tokio::test]
    async fn ll_hls_holds_blocking_reloads_and_hints_and_refuses_what_is_too_far() {
        crate::runtime::raise_open_files_limit();
        let (at, hub, stop, counters) = start_with(true, None).await;
        let short = Duration::from_millis(300);
        // Malformed or far-ahead directives: 400 at once (before any media,
        // segment 2 is as far as a request may ask).
        for q in [
            "_HLS_part=1",
            "_HLS_msn=x",
            "_HLS_msn=1&_HLS_msn=2",
            "_HLS_msn=3",
            "_HLS_msn=0&_HLS_part=99",
        ] {
            let path = format!("/live/k/index.m3u8?{q}");
            let got = exchange(at, &get_request(&path), short).await;
            assert!(got.starts_with("HTTP/1.1 400"), "{q} -> {got:?}");
        }
        // 1,000 blocking reloads for the first part, held before the
        // stream starts; the server answers other requests meanwhile.
        let mut held = Vec::new();
        for _ in 0..1000 {
            let mut s = TcpStream::connect(at).await.unwrap();
            s.write_all(&get_request("/live/k/index.m3u8?_HLS_msn=0&_HLS_part=0"))
                .await
                .unwrap();
            held.push(s);
        }
        let got = exchange(at, &get_request("/nothing"), short).await;
        assert!(got.starts_with("HTTP/1.1 404"), "{got:?}");
        // 50 fps, a key frame every 500 ms, for 2 s in real time.
        let publisher = {
            let hub = hub.clone();
            tokio::spawn(async move {
                let _ = hub.publish(
                    "k",
                    crate::relay::Media::Video(crate::media::source::sequence_header(), 0),
                );
                for i in 0..100u32 {
                    let t = if i % 25 == 0 { 0x17 } else { 0x27 };
                    let body = vec![t, 0x01, 0, 0, 0, 0, 0, 0, 3, 12, 0, 0];
                    let _ = hub.publish("k", crate::relay::Media::Video(body.into(), i * 20));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        for (i, s) in held.iter_mut().enumerate() {
            let got = read_until(s, "seg0.0.ts", Duration::from_secs(2)).await;
            assert!(
                got.starts_with("HTTP/1.1 200") && got.contains("seg0.0.ts"),
                "held request {i}: {got:?}"
            );
        }
        drop(held);
        // The preload hint is held until its part is done, then served.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let list = exchange(at, &get_request("/live/k/index.m3u8"), short).await;
        let hint = list
            .split("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("a preload hint in {list}"))
            .to_string();
        let asked = std::time::Instant::now();
        let mut s = TcpStream::connect(at).await.unwrap();
        s.write_all(&get_request(&format!("/live/k/{hint}")))
            .await
            .unwrap();
        let got = read_until(&mut s, "video/mp2t", Duration::from_secs(2)).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{hint}: {got:?}");
        assert!(
            asked.elapsed() < Duration::from_millis(400),
            "{:?}",
            asked.elapsed()
        );
        // A part that is neither done nor the next one: 404 at once.
        let got = exchange(at, &get_request("/live/k/seg50.1.ts"), short).await;
        assert!(got.starts_with("HTTP/1.1 404"), "{got:?}");
        // Once the stream stops, a reload blocking on the next part waits
        // three target durations and gets 503.
        publisher.await.unwrap();
        let list = exchange(at, &get_request("/live/k/index.m3u8"), short).await;
        let (msn, part) = list
            .split("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg")
            .nth(1)
            .and_then(|r| r.split(".ts").next())
            .and_then(|r| r.split_once('.'))
            .unwrap_or_else(|| panic!("a preload hint in {list}"));
        let asked = std::time::Instant::now();
        let path = format!("/live/k/index.m3u8?_HLS_msn={msn}&_HLS_part={part}");
        let got = exchange(at, &get_request(&path), Duration::from_secs(3)).await;
        assert!(got.starts_with("HTTP/1.1 503"), "{got:?}");
        assert!(asked.elapsed() >= Duration::from_millis(1400));
        stop.send(true).unwrap();
        let st = counters.snapshot();
        assert!(st.http_hls_blocking >= 1001, "{st:?}");
        assert_eq!(st.http_hls_blocking_timeouts, 1, "{st:?}");
        assert!(
            st.http_bad_requests >= 5 && st.http_hls_parts >= 2,
            "{st:?}"
        );
    }

    #[tokio::test]
    async fn signed_urls_open_playlists_parts_segments_and_flv_and_nothing_else() {
        const SECRET: &str = "a secret of 16+ characters";
        let (at, hub, stop, counters) = start_with(true, Some(SECRET)).await;
        let now = signed::unix_now();
        let good = signed::token(SECRET, "/live/k", now + 60);
        let expired = signed::token(SECRET, "/live/k", now - 1);
        let other = signed::token("another secret, 16+ chars", "/live/k", now + 60);
        // 1 s of 50 fps: two segments and a few parts.
        let _ = hub.publish(
            "k",
            crate::relay::Media::Video(crate::media::source::sequence_header(), 0),
        );
        for i in 0..60u32 {
            let t = if i % 25 == 0 { 0x17 } else { 0x27 };
            let body = vec![t, 0x01, 0, 0, 0, 0, 0, 0, 3, 12, 0, 0];
            let _ = hub.publish("k", crate::relay::Media::Video(body.into(), i * 20));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let short = Duration::from_millis(300);
        for path in [
            "/live/k/index.m3u8",
            "/live/k/seg0.ts",
            "/live/k/seg0.1.ts",
            "/live/k.flv",
        ] {
            for (token, status) in [
                (None, "403"),
                (Some(expired.as_str()), "403"),
                (Some(other.as_str()), "403"),
                (Some("12-zz"), "403"),
                (Some(good.as_str()), "200"),
            ] {
                let target = match token {
                    Some(t) => format!("{path}?token={t}"),
                    None => path.to_string(),
                };
                let mut s = TcpStream::connect(at).await.unwrap();
                s.write_all(&get_request(&target)).await.unwrap();
                let got = read_until(&mut s, "\r\n\r\n", Duration::from_secs(2)).await;
                assert!(
                    got.starts_with(&format!("HTTP/1.1 {status}")),
                    "{target} -> {got:?}"
                );
            }
        }
        // The playlist's URIs carry the token it was fetched with.
        let got = exchange(
            at,
            &get_request(&format!("/live/k/index.m3u8?token={good}")),
            short,
        )
        .await;
        assert!(got.contains(&format!("seg0.ts?token={good}\n")), "{got}");
        assert!(got.contains("access-control-allow-origin: *"), "{got}");
        assert!(got.contains(&format!("seg1.0.ts?token={good}\"")), "{got}");
        assert!(got.contains("PRELOAD-HINT:TYPE=PART,URI=\"seg2."), "{got}");
        assert!(got.matches("?token=").count() >= 5, "{got}");
        stop.send(true).unwrap();
        assert_eq!(counters.snapshot().http_forbidden, 16);
    }
}
