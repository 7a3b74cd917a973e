//! Glass's HTTP players' connection to the relay (a TCP connection through
//! the player's last mile, hyper's HTTP/1.1 client on it, requests that
//! keep the player's display clock going), and the HTTP-FLV player: one
//! `GET /APP/KEY.flv`, the response body read as FLV tags as it arrives,
//! each frame handed to Glass's player model at its arrival instant,
//! exactly as the RTMP player does.

use std::future::Future;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use netem::Time;
use netem::adapters::tcpinfo::set_congestion;
use netem::time::Clock;

use crate::media::flv::{TagKind, TagReader};
use crate::media::player::Player;
use crate::media::source::unpack;
use crate::media::wallclock::{ForeignFrames, WallClock};
use crate::protocol::{
    ClientStats, DialCx, Dialed, Endpoint, LocalFuture, PublishCx, Role, Session, TransportReport,
};
use crate::publisher::PublisherStats;

/// A player's connection to the relay's HTTP port: a TCP connection
/// through its last mile, the path it plays and the Host its requests name.
pub(super) struct Connection {
    pub stream: tokio::net::TcpStream,
    pub path: String,
    pub host: String,
    pub clock: Clock,
}

/// Connects a player to the relay's HTTP port `to` from its host (`what`:
/// "HTTP-FLV", "HLS", for the error a publisher gets).
pub(super) fn connect(cx: &DialCx<'_>, to: Endpoint, what: &str) -> Result<Connection> {
    if cx.role == Role::Publisher {
        bail!("{what} is play only: publish over rtmp://, rtmpq://, gudp:// or rtsp://");
    }
    let s = cx.topo.connect(cx.place, to)?;
    set_congestion(&s, &cx.settings.tcp_congestion).context("player: TCP congestion control")?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    Ok(Connection {
        stream: tokio::net::TcpStream::from_std(s)?,
        path: super::signed_path_of(cx.uri, cx.settings),
        host: cx.topo.addr_from(cx.place, to)?.to_string(),
        clock: cx.clock,
    })
}

/// What a player's dial reports (`requested` and `used` as results name
/// them).
pub(super) fn report(cx: &DialCx<'_>, requested: &str, used: &str) -> TransportReport {
    TransportReport {
        role: cx.role.as_str(),
        uri: cx.uri.redacted(),
        requested: requested.into(),
        used: used.into(),
        fallback: None,
        handshake_ms: None,
    }
}

/// Aborts the HTTP connection's task when the player is done with it.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// HTTP/1.1 on the connection: the request sender, and the connection's
/// task (it ends when the guard is dropped).
pub(super) async fn handshake(
    stream: tokio::net::TcpStream,
) -> Result<(SendRequest<Empty<Bytes>>, AbortOnDrop)> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, AbortOnDrop(task)))
}

/// A GET of `path` naming `host`.
pub(super) fn get(path: &str, host: &HeaderValue) -> Result<Request<Empty<Bytes>>> {
    let mut req = Request::get(path).body(Empty::<Bytes>::new())?;
    req.headers_mut().insert(HOST, host.clone());
    Ok(req)
}

/// Runs `fut` while keeping the player's display clock going; `None` if the
/// run ends first.
pub(super) async fn serving<F: Future>(
    player: &mut Player,
    clock: Clock,
    end: Time,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let now = clock.time(Instant::now());
        if now >= end {
            return None;
        }
        let wake = player.poll_timeout().min(end);
        if wake <= now {
            // A refresh already due (handling the last input took longer
            // than a refresh): run it now.
            player.handle_timeout(now);
            continue;
        }
        tokio::select! {
            r = &mut fut => return Some(r),
            _ = tokio::time::sleep_until(clock.instant(wake).into()) => {
                player.handle_timeout(clock.time(Instant::now()));
            }
        }
    }
}

/// What a player plays over its connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Playback {
    Flv,
    /// `low_latency`: with LL-HLS's parts.
    Hls {
        low_latency: bool,
    },
}

/// A connected HTTP-FLV or HLS player.
struct HttpSession(Connection, Playback);

impl Session for HttpSession {
    fn ordered(&self) -> bool {
        true
    }

    fn play<'a>(
        self: Box<Self>,
        player: &'a mut Player,
        end: Time,
    ) -> LocalFuture<'a, Result<ClientStats>> {
        Box::pin(async move {
            Ok(match self.1 {
                Playback::Flv => {
                    play(self.0, player, end).await?;
                    None
                }
                Playback::Hls { low_latency } => {
                    let stats = super::hls::player::play(self.0, player, end, low_latency).await?;
                    Some(Box::new(stats) as Box<dyn crate::protocol::Stats>)
                }
            })
        })
    }

    fn publish<'a>(
        self: Box<Self>,
        _cx: PublishCx<'a>,
    ) -> LocalFuture<'a, Result<(PublisherStats, ClientStats)>> {
        Box::pin(async { bail!("HTTP-FLV and HLS are play only") })
    }
}

/// Connects a player of `cx.uri` (httpflv:// or hls://) to the relay's
/// HTTP port `to` from the player's host.
pub(super) async fn dial(cx: DialCx<'_>, to: Endpoint) -> Result<Dialed> {
    // HLS's segments: MPEG-TS or fMP4, as the relay's `http` table says.
    let format = cx
        .settings
        .table::<super::HttpTable>()
        .map(|t| t.hls_format)
        .unwrap_or_default();
    let container = format.name();
    let (playback, what, requested, used) = match cx.uri.scheme {
        "hls" => (
            Playback::Hls { low_latency: false },
            "HLS",
            "hls",
            format!("hls/{container}/tcp"),
        ),
        "llhls" => (
            Playback::Hls { low_latency: true },
            "LL-HLS",
            "llhls",
            format!("llhls/{container}/tcp"),
        ),
        _ => (
            Playback::Flv,
            "HTTP-FLV",
            "http-flv",
            "http-flv/tcp".to_string(),
        ),
    };
    Ok(Dialed {
        session: Box::new(HttpSession(connect(&cx, to, what)?, playback)),
        report: report(&cx, requested, &used),
        step: "tcp_connect",
    })
}

/// Requests the stream and plays it into `player` until `end`.
async fn play(c: Connection, player: &mut Player, end: Time) -> Result<()> {
    let clock = c.clock;
    let (mut sender, _conn) = handshake(c.stream).await?;
    let req = get(&c.path, &HeaderValue::from_str(&c.host)?)?;
    let Some(resp) = serving(player, clock, end, sender.send_request(req)).await else {
        return Ok(());
    };
    let resp = resp.context("HTTP-FLV request")?;
    if resp.status() != StatusCode::OK {
        bail!("GET {} answered {}", c.path, resp.status());
    }
    let mut body = resp.into_body();
    // Frames without a Glass header (ffmpeg's, a replayed file's) are timed
    // by their FLV timestamps, as over RTMP.
    let mut foreign = ForeignFrames::new(WallClock::new(clock));
    let mut flv = TagReader::default();
    loop {
        let Some(f) = serving(player, clock, end, body.frame()).await else {
            return Ok(());
        };
        let now = clock.time(Instant::now());
        let f = f.ok_or_else(|| anyhow!("the server ended the HTTP-FLV response"))??;
        let Some(data) = f.data_ref() else { continue };
        flv.push(data);
        while let Some(tag) = flv.next_tag()? {
            let video = match tag.kind {
                TagKind::Video => true,
                TagKind::Audio => false,
                TagKind::Script => continue,
            };
            let h = unpack(&tag.data, video)
                .or_else(|| foreign.header(&tag.data, video, tag.ts_ms, now));
            if let Some(h) = h {
                player.on_frame(now, h);
            }
        }
    }
}
