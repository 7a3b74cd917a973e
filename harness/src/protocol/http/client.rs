//! Glass's HTTP-FLV player: one `GET /APP/KEY.flv` over a TCP connection
//! through the player's last mile (hyper's HTTP/1.1 client), the response
//! body read as FLV tags as it arrives, each frame handed to Glass's player
//! model at its arrival instant, exactly as the RTMP player does.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
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

/// A connected HTTP-FLV player.
struct FlvSession {
    stream: tokio::net::TcpStream,
    path: String,
    host: String,
    clock: Clock,
}

impl Session for FlvSession {
    fn ordered(&self) -> bool {
        true
    }

    fn play<'a>(
        self: Box<Self>,
        player: &'a mut Player,
        end: Time,
    ) -> LocalFuture<'a, Result<ClientStats>> {
        Box::pin(async move {
            play(*self, player, end).await?;
            Ok(None)
        })
    }

    fn publish<'a>(
        self: Box<Self>,
        _cx: PublishCx<'a>,
    ) -> LocalFuture<'a, Result<(PublisherStats, ClientStats)>> {
        Box::pin(async { bail!("HTTP-FLV is play only") })
    }
}

/// Connects to the relay's HTTP port `to` from the player's host.
pub(super) async fn dial(cx: DialCx<'_>, to: Endpoint) -> Result<Dialed> {
    if cx.role == Role::Publisher {
        bail!("HTTP-FLV is play only: publish over rtmp://, rtmpq://, gudp:// or rtsp://");
    }
    let s = cx.topo.connect(cx.place, to)?;
    set_congestion(&s, &cx.settings.tcp_congestion).context("player: TCP congestion control")?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    let host = cx.topo.addr_from(cx.place, to)?.to_string();
    Ok(Dialed {
        session: Box::new(FlvSession {
            stream: tokio::net::TcpStream::from_std(s)?,
            path: super::path_of(cx.uri),
            host,
            clock: cx.clock,
        }),
        report: TransportReport {
            role: cx.role.as_str(),
            uri: cx.uri.redacted(),
            requested: "http-flv".into(),
            used: "http-flv/tcp".into(),
            fallback: None,
            handshake_ms: None,
        },
        step: "tcp_connect",
    })
}

/// Requests the stream and plays it into `player` until `end`.
async fn play(s: FlvSession, player: &mut Player, end: Time) -> Result<()> {
    let clock = s.clock;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s.stream))
        .await
        .context("HTTP handshake")?;
    let mut conn = std::pin::pin!(conn);
    let mut req = Request::get(s.path.as_str()).body(Empty::<Bytes>::new())?;
    req.headers_mut()
        .insert(HOST, HeaderValue::from_str(&s.host)?);
    let resp = tokio::select! {
        r = sender.send_request(req) => r.context("HTTP-FLV request")?,
        r = &mut conn => bail!("the HTTP connection ended before a response: {r:?}"),
    };
    if resp.status() != StatusCode::OK {
        bail!("GET {} answered {}", s.path, resp.status());
    }
    let mut body = resp.into_body();
    // Frames without a Glass header (ffmpeg's, a replayed file's) are timed
    // by their FLV timestamps, as over RTMP.
    let mut foreign = ForeignFrames::new(WallClock::new(clock));
    let mut flv = TagReader::default();
    loop {
        let now = clock.time(Instant::now());
        if now >= end {
            return Ok(());
        }
        let wake = player.poll_timeout().min(end);
        if wake <= now {
            player.handle_timeout(now);
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(clock.instant(wake).into()) => {
                player.handle_timeout(clock.time(Instant::now()));
            }
            r = &mut conn => bail!("the HTTP connection ended: {r:?}"),
            f = body.frame() => {
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
    }
}
