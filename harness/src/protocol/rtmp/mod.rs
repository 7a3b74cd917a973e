//! RTMP over TCP and over QUIC with rml_rtmp: the relay's server side on
//! the hub (`server`), the publisher and player clients (`client`), the QUIC
//! transport and its two mappings (`quic`, `transport`). rml_rtmp's
//! sessions are sans-IO (bytes in, packets out); these tokio tasks move
//! their bytes over real sockets (which live in Glass's namespaces, so
//! kernel TCP and quinn's QUIC cross the impaired link).
//!
//! Glass frames travel as FLV-style tags: video as AVC NALU tags (key or
//! inter), audio as AAC raw tags; the Glass frame header inside carries the
//! capture instant.

mod abr_probe;
pub mod client;
mod dial;
pub mod machine;
pub mod quic;
pub mod server;
pub mod settings;
pub mod shared_chunks;
pub mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSessionEvent, ServerSessionResult, StreamMetadata};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use client::{play, publish};
pub use server::{RtmpServerStats, serve};
use transport::Transport;

use super::{
    Bound, DialCx, Dialed, Endpoint, EntryCx, LocalFuture, Protocol, Scheme, ServeCx, ServerTask,
    Stats, Table,
};
use crate::relay::StreamInfo;
use crate::scenario::Protocol as Settings;
use settings::QuicTable;

/// The relay's RTMP port, TCP and UDP (QUIC).
pub const RTMP_PORT: u16 = 1935;

/// RTMP over TCP and over QUIC, in the protocol registry.
pub struct Rtmp;

impl Protocol for Rtmp {
    fn name(&self) -> &'static str {
        "rtmp"
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        &[Endpoint::Tcp(RTMP_PORT), Endpoint::Udp(RTMP_PORT)]
    }

    fn schemes(&self) -> &'static [Scheme] {
        &[
            Scheme {
                name: "rtmp",
                endpoint: 0,
                what: "RTMP over TCP: publish and play",
            },
            Scheme {
                name: "rtmpq",
                endpoint: 1,
                what: "RTMP over QUIC, one stream (add ?mapping=frames for a stream per frame)",
            },
        ]
    }

    /// RTMP over TCP (rtmp://); ffmpeg has no RTMP over QUIC.
    fn ffmpeg_output(
        &self,
        uri: &super::uri::StreamUri,
        at: std::net::SocketAddr,
    ) -> Option<(Vec<String>, &'static str)> {
        (uri.scheme == "rtmp").then(|| {
            let url = crate::interop::ffmpeg::rtmp_url(at, &uri.app, &uri.key);
            (crate::interop::ffmpeg::rtmp_output(&url), "tcp")
        })
    }

    /// RTMP over TCP (rtmp://).
    fn ffmpeg_input(
        &self,
        uri: &super::uri::StreamUri,
        at: std::net::SocketAddr,
        _settings: &Settings,
    ) -> Option<String> {
        (uri.scheme == "rtmp").then(|| crate::interop::ffmpeg::rtmp_url(at, &uri.app, &uri.key))
    }

    /// `transport=quic` (rtmp:// only; rtmpq:// is QUIC) and
    /// `mapping=stream|frames` (QUIC only); kept: `mapping=frames`.
    fn uri_options(
        &self,
        scheme: &'static str,
        query: &[(String, String)],
    ) -> Result<super::UriOptions, String> {
        let mut quic = scheme == "rtmpq";
        let mut frames = None;
        for (k, v) in query {
            match (k.as_str(), v.as_str()) {
                ("transport", "quic") => quic = true,
                ("transport", "tcp") if scheme == "rtmp" => quic = false,
                ("transport", v) => {
                    let allowed = if scheme == "rtmpq" {
                        "quic (rtmpq:// is QUIC)"
                    } else {
                        "tcp, quic"
                    };
                    return Err(format!("transport must be one of {allowed}, not \"{v}\""));
                }
                ("mapping", "stream") => frames = Some(false),
                ("mapping", "frames") => frames = Some(true),
                ("mapping", v) => {
                    return Err(format!(
                        "mapping must be one of stream, frames, not \"{v}\""
                    ));
                }
                (k, _) => {
                    return Err(format!(
                        "unknown query parameter \"{k}\" (rtmp/rtmpq know transport and mapping)"
                    ));
                }
            }
        }
        match (quic, frames) {
            (true, Some(true)) => Ok(("rtmpq", vec![("mapping".into(), "frames".into())])),
            (true, _) => Ok(("rtmpq", Vec::new())),
            (false, None) => Ok(("rtmp", Vec::new())),
            (false, Some(_)) => {
                Err("mapping applies to QUIC only (use rtmpq:// or transport=quic)".into())
            }
        }
    }

    fn table_key(&self) -> &'static str {
        "quic"
    }

    fn configure(
        &self,
        table: Option<&toml::Value>,
        cx: &EntryCx,
    ) -> Result<Box<dyn Table>, netem::ConfigError> {
        Ok(Box::new(settings::configure(table, cx)?))
    }

    /// RTMP over TCP on the first socket, over QUIC on the second.
    fn serve(&self, socks: Vec<Bound>, settings: &Settings, cx: ServeCx) -> Result<ServerTask> {
        let mut socks = socks.into_iter();
        let (Some(Bound::Tcp(listener)), Some(Bound::Udp(quic_sock))) =
            (socks.next(), socks.next())
        else {
            bail!("RTMP serves on a TCP and a UDP socket, in that order");
        };
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let quic = quic::server(
            quic_sock,
            quic::Identity::shared()?,
            &quic::QuicSettings {
                congestion: quic_table(settings).congestion,
                ..quic::QuicSettings::default()
            },
        )?;
        let stats = Arc::new(Mutex::new(RtmpServerStats::default()));
        let task = serve(
            listener,
            Some(quic),
            cx.hub,
            Some(settings.tcp_congestion.clone()),
            cx.stop,
            stats.clone(),
        );
        Ok(tokio::spawn(async move {
            task.await;
            // Each session records its last TCP_INFO as it ends.
            tokio::time::sleep(Duration::from_millis(50)).await;
            Box::new(stats.lock().map(|s| s.clone()).unwrap_or_default()) as Box<dyn Stats>
        }))
    }

    fn dial<'a>(&'a self, cx: DialCx<'a>, to: Endpoint) -> LocalFuture<'a, Result<Dialed>> {
        Box::pin(dial::dial(cx, to))
    }

    /// No fields of its own in the result (the publisher's and the relay's
    /// sections hold RTMP's figures); it counts the run's retransmissions.
    fn run_section(&self, cx: &super::RunCx) -> Option<Box<dyn Stats>> {
        let relay = cx
            .servers
            .iter()
            .find_map(|(_, s)| s.as_any().downcast_ref::<RtmpServerStats>());
        Some(Box::new(RtmpSection {
            retransmits: rtmp_retransmits(cx.publisher, relay),
        }))
    }
}

/// RTMP's part of a run: its retransmissions.
#[derive(Debug)]
struct RtmpSection {
    retransmits: u64,
}

impl Stats for RtmpSection {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn retransmits(&self) -> u64 {
        self.retransmits
    }
}

/// Retransmissions as RTMP's transports count them: TCP's retransmitted
/// segments (the publisher's socket, the relay's sockets to its players)
/// and the packets QUIC declared lost (whose data it sends again). An
/// ffmpeg publisher's socket is not Glass's to read: its first mile is not
/// counted. The relay's part is the whole relay's: with several player
/// groups, every group's players together.
fn rtmp_retransmits(
    publisher: &crate::publisher::PublisherStats,
    relay: Option<&RtmpServerStats>,
) -> u64 {
    let relay_tcp: u64 = relay.map_or(0, |r| {
        r.to_players_tcp
            .iter()
            .map(|t| u64::from(t.total_retrans))
            .sum()
    });
    let relay_quic: u64 = relay.map_or(0, |r| {
        r.to_players_quic.iter().map(|q| q.lost_packets).sum()
    });
    u64::from(publisher.tcp.total_retrans)
        + publisher.quic.as_ref().map_or(0, |q| q.lost_packets)
        + relay_tcp
        + relay_quic
}

impl Stats for RtmpServerStats {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        super::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The entry's `quic` table (its defaults for an entry built by hand).
pub(crate) fn quic_table(settings: &Settings) -> QuicTable {
    settings.table::<QuicTable>().cloned().unwrap_or_default()
}

fn rtmp_ts(ms: u32) -> RtmpTimestamp {
    RtmpTimestamp::new(ms)
}

async fn write_packets(
    sock: &mut (impl AsyncWriteExt + Unpin),
    results: Vec<ServerSessionResult>,
) -> Result<Vec<ServerSessionEvent>> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ServerSessionResult::OutboundResponse(p) => sock.write_all(&p.bytes).await?,
            ServerSessionResult::RaisedEvent(e) => events.push(e),
            ServerSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    Ok(events)
}

/// Bytes from the network into an rml_rtmp session. rml_rtmp 0.8's chunk
/// deserializer and AMF0 command reader panic on some malformed input (a
/// subtraction that overflows when a chunk claims more than its message, a
/// slice past the end of a short command; found by `glass-fuzz run rtmp`,
/// upstream's fix in rust-media-libs PR #50 is not released). A panic
/// there ends this connection with an error instead of unwinding through
/// the relay's task or the player.
pub(crate) fn feed<R, E: std::fmt::Debug>(input: impl FnOnce() -> Result<R, E>) -> Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(input)) {
        Ok(r) => r.map_err(|e| anyhow!("{e:?}")),
        Err(p) => {
            let why = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow!(
                "malformed RTMP from the peer (rml_rtmp failed: {why})"
            ))
        }
    }
}

/// Runs the handshake on `sock`; returns the bytes that followed it.
async fn handshake(sock: &mut Transport, peer: PeerType) -> Result<Vec<u8>> {
    let client = peer == PeerType::Client;
    let mut hs = Handshake::new(peer);
    if client {
        let p0p1 = hs
            .generate_outbound_p0_and_p1()
            .map_err(|e| anyhow!("RTMP handshake: {e:?}"))?;
        sock.write_all(&p0p1).await?;
    }
    let mut buf = vec![0u8; 8192];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            bail!("the peer closed the connection during the RTMP handshake");
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| anyhow!("RTMP handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await?
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                sock.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}

/// The hub's stream description from RTMP's onMetaData.
fn info_from_rtmp(m: &StreamMetadata) -> StreamInfo {
    StreamInfo {
        video_width: m.video_width,
        video_height: m.video_height,
        video_codec_id: m.video_codec_id,
        video_frame_rate: m.video_frame_rate,
        video_bitrate_kbps: m.video_bitrate_kbps,
        audio_codec_id: m.audio_codec_id,
        audio_bitrate_kbps: m.audio_bitrate_kbps,
        audio_sample_rate: m.audio_sample_rate,
        audio_channels: m.audio_channels,
        audio_is_stereo: m.audio_is_stereo,
        encoder: m.encoder.clone(),
    }
}

/// RTMP's onMetaData from the hub's stream description.
fn info_to_rtmp(i: &StreamInfo) -> StreamMetadata {
    StreamMetadata {
        video_width: i.video_width,
        video_height: i.video_height,
        video_codec_id: i.video_codec_id,
        video_frame_rate: i.video_frame_rate,
        video_bitrate_kbps: i.video_bitrate_kbps,
        audio_codec_id: i.audio_codec_id,
        audio_bitrate_kbps: i.audio_bitrate_kbps,
        audio_sample_rate: i.audio_sample_rate,
        audio_channels: i.audio_channels,
        audio_is_stereo: i.audio_is_stereo,
        encoder: i.encoder.clone(),
    }
}
