//! RTMP over TCP with rml_rtmp: a publisher client, a relay server, a player
//! client. rml_rtmp's sessions are sans-IO (bytes in, packets out); these
//! tokio tasks move their bytes over real TCP sockets (which live in Glass's
//! namespaces, so kernel TCP crosses the impaired link).
//!
//! Glass frames travel as FLV-style tags: video as AVC NALU tags (key or
//! inter), audio as AAC raw tags; the Glass frame header inside carries the
//! capture instant. The relay checks the stream key, caches the metadata and
//! the AVC sequence header for late players, and fans frames out to every
//! player with its own stream id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use netem::Time;
use netem::adapters::tcpinfo::{TcpInfo, tcp_info};
use netem::time::Clock;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, ServerSession, ServerSessionConfig, ServerSessionEvent,
    ServerSessionResult, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::media::encoder::Encoder;
use crate::media::frame::{Frame, FrameHeader, FrameKind};
use crate::media::player::Player;

pub const APP: &str = "live";

/// FLV video tag header: frame type (1 key, 2 inter) and codec 7 (AVC), then
/// AVCPacketType 1 (NALU) and a zero composition time.
fn video_tag(frame: &Frame) -> Bytes {
    let first = if frame.header.kind == FrameKind::I {
        0x17
    } else {
        0x27
    };
    let mut v = Vec::with_capacity(frame.bytes.len() + 5);
    v.extend_from_slice(&[first, 0x01, 0, 0, 0]);
    v.extend_from_slice(&frame.bytes);
    v.into()
}

/// FLV audio tag header: AAC (0xAF), raw frame (1).
fn audio_tag(frame: &Frame) -> Bytes {
    let mut v = Vec::with_capacity(frame.bytes.len() + 2);
    v.extend_from_slice(&[0xAF, 0x01]);
    v.extend_from_slice(&frame.bytes);
    v.into()
}

/// A minimal AVC sequence header (AVCPacketType 0), for the relay's cache.
fn sequence_header() -> Bytes {
    Bytes::from_static(&[
        0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe0, 0x00,
    ])
}

fn is_sequence_header(data: &[u8]) -> bool {
    data.len() >= 2 && data[0] & 0x0f == 7 && data[1] == 0
}

/// The Glass frame inside a video or audio tag, if it is one.
fn unpack(data: &[u8], video: bool) -> Option<FrameHeader> {
    let skip = if video { 5 } else { 2 };
    if video && (data.len() < 2 || data[1] != 1) {
        return None; // a sequence header or end-of-sequence
    }
    Frame::parse(data.get(skip..)?).ok()
}

fn rtmp_ts(t: Time) -> RtmpTimestamp {
    // RTMP timestamps are u32 milliseconds and wrap (after 49.7 days).
    RtmpTimestamp::new((t.as_nanos() / 1_000_000) as u32)
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

/// Runs the handshake on `sock`; returns the bytes that followed it.
async fn handshake(sock: &mut TcpStream, peer: PeerType) -> Result<Vec<u8>> {
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

/// What the relay saw, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RelayStats {
    pub publishes_accepted: u64,
    pub publishes_refused: u64,
    pub players: u64,
    pub video_messages_in: u64,
    /// Players disconnected because they fell too far behind.
    pub slow_players_dropped: u64,
    /// TCP_INFO of the relay's socket towards each player (sampled every second).
    pub to_players_tcp: Vec<TcpInfo>,
}

#[derive(Clone)]
enum Media {
    Video(Bytes, RtmpTimestamp),
    Audio(Bytes, RtmpTimestamp),
    Metadata(StreamMetadata),
}

#[derive(Default)]
struct Stream {
    publishing: bool,
    metadata: Option<StreamMetadata>,
    sequence_header: Option<(Bytes, RtmpTimestamp)>,
    players: Vec<mpsc::Sender<Media>>,
}

/// Messages a player may have queued before the relay gives up on it.
const PLAYER_QUEUE: usize = 65_536;

/// The relay server: accepts publishers (with the right stream key) and
/// players on `listener` until `stop` changes.
pub async fn relay(
    listener: TcpListener,
    stream_key: String,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<RelayStats>>,
) {
    let streams: Arc<Mutex<HashMap<String, Stream>>> = Arc::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => {
                let Ok((sock, _)) = r else { continue };
                let _ = sock.set_nodelay(true);
                let (streams, stats, key, stop) = (streams.clone(), stats.clone(), stream_key.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = relay_connection(sock, &key, &streams, &stats, stop).await {
                        tracing::debug!("relay connection ended: {e:#}");
                    }
                });
            }
        }
    }
}

async fn relay_connection(
    mut sock: TcpStream,
    stream_key: &str,
    streams: &Mutex<HashMap<String, Stream>>,
    stats: &Mutex<RelayStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let remaining = handshake(&mut sock, PeerType::Server).await?;
    let (mut session, results) =
        ServerSession::new(ServerSessionConfig::new()).map_err(|e| anyhow!("{e:?}"))?;
    let mut pending = write_packets(&mut sock, results).await?;
    pending.extend(
        write_packets(
            &mut sock,
            session
                .handle_input(&remaining)
                .map_err(|e| anyhow!("{e:?}"))?,
        )
        .await?,
    );
    let mut publishing: Option<String> = None;
    let mut playing: Option<(u32, mpsc::Receiver<Media>, usize)> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        for event in std::mem::take(&mut pending) {
            match event {
                ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                    let r = session
                        .accept_request(request_id)
                        .map_err(|e| anyhow!("{e:?}"))?;
                    pending.extend(write_packets(&mut sock, r).await?);
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    stream_key: key,
                    ..
                } => {
                    let accepted = {
                        let mut s = streams
                            .lock()
                            .map_err(|_| anyhow!("relay state poisoned"))?;
                        let stream = s.entry(key.clone()).or_default();
                        let ok = key == stream_key && !stream.publishing;
                        stream.publishing |= ok;
                        ok
                    };
                    {
                        let mut st = stats.lock().map_err(|_| anyhow!("poisoned"))?;
                        if accepted {
                            st.publishes_accepted += 1;
                        } else {
                            st.publishes_refused += 1;
                        }
                    }
                    if !accepted {
                        let r = session
                            .reject_request(
                                request_id,
                                "NetStream.Publish.BadName",
                                "wrong stream key, or already publishing",
                            )
                            .map_err(|e| anyhow!("{e:?}"))?;
                        write_packets(&mut sock, r).await?;
                        bail!("refused a publish on \"{key}\"");
                    }
                    publishing = Some(key);
                    let r = session
                        .accept_request(request_id)
                        .map_err(|e| anyhow!("{e:?}"))?;
                    pending.extend(write_packets(&mut sock, r).await?);
                }
                ServerSessionEvent::PlayStreamRequested {
                    request_id,
                    stream_key: key,
                    stream_id,
                    ..
                } => {
                    let r = session
                        .accept_request(request_id)
                        .map_err(|e| anyhow!("{e:?}"))?;
                    pending.extend(write_packets(&mut sock, r).await?);
                    let (tx, rx) = mpsc::channel(PLAYER_QUEUE);
                    let (metadata, header) = {
                        let mut s = streams.lock().map_err(|_| anyhow!("poisoned"))?;
                        let stream = s.entry(key).or_default();
                        stream.players.push(tx);
                        (stream.metadata.clone(), stream.sequence_header.clone())
                    };
                    let slot = {
                        let mut st = stats.lock().map_err(|_| anyhow!("poisoned"))?;
                        st.players += 1;
                        st.to_players_tcp.push(TcpInfo::default());
                        st.to_players_tcp.len() - 1
                    };
                    // A late player first gets what it missed: metadata and the sequence header.
                    if let Some(m) = metadata {
                        let p = session
                            .send_metadata(stream_id, &m)
                            .map_err(|e| anyhow!("{e:?}"))?;
                        sock.write_all(&p.bytes).await?;
                    }
                    if let Some((data, ts)) = header {
                        let p = session
                            .send_video_data(stream_id, data, ts, false)
                            .map_err(|e| anyhow!("{e:?}"))?;
                        sock.write_all(&p.bytes).await?;
                    }
                    playing = Some((stream_id, rx, slot));
                }
                ServerSessionEvent::StreamMetadataChanged {
                    stream_key: key,
                    metadata,
                    ..
                } => {
                    fan_out(
                        streams,
                        stats,
                        &key,
                        Media::Metadata(metadata.clone()),
                        |s| s.metadata = Some(metadata),
                    )?;
                }
                ServerSessionEvent::VideoDataReceived {
                    stream_key: key,
                    data,
                    timestamp,
                    ..
                } => {
                    stats
                        .lock()
                        .map_err(|_| anyhow!("poisoned"))?
                        .video_messages_in += 1;
                    if is_sequence_header(&data) {
                        let cached = (data.clone(), timestamp);
                        fan_out(streams, stats, &key, Media::Video(data, timestamp), |s| {
                            s.sequence_header = Some(cached)
                        })?;
                    } else {
                        fan_out(streams, stats, &key, Media::Video(data, timestamp), |_| {})?;
                    }
                }
                ServerSessionEvent::AudioDataReceived {
                    stream_key: key,
                    data,
                    timestamp,
                    ..
                } => {
                    fan_out(streams, stats, &key, Media::Audio(data, timestamp), |_| {})?;
                }
                // releaseStream, FCPublish, _checkbw (ffmpeg), finishes: nothing to do.
                _ => {}
            }
        }
        let next_media = async {
            match &mut playing {
                Some((_, rx, _)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break Ok(()),
            r = sock.read(&mut buf) => {
                let n = r?;
                if n == 0 {
                    break Ok(());
                }
                let results = session.handle_input(&buf[..n]).map_err(|e| anyhow!("{e:?}"))?;
                pending = write_packets(&mut sock, results).await?;
            }
            m = next_media => {
                let Some(m) = m else { break Ok(()) };
                let Some((stream_id, _, _)) = &playing else { continue };
                let packet = match m {
                    Media::Video(d, ts) => session.send_video_data(*stream_id, d, ts, false),
                    Media::Audio(d, ts) => session.send_audio_data(*stream_id, d, ts, false),
                    Media::Metadata(md) => session.send_metadata(*stream_id, &md),
                }
                .map_err(|e| anyhow!("{e:?}"))?;
                sock.write_all(&packet.bytes).await?;
            }
            _ = sample.tick() => {
                if let Some((_, _, slot)) = &playing
                    && let Ok(info) = tcp_info(&sock)
                    && let Ok(mut st) = stats.lock()
                {
                    st.to_players_tcp[*slot] = info;
                }
            }
        }
    };
    if let Some((_, _, slot)) = &playing
        && let Ok(info) = tcp_info(&sock)
        && let Ok(mut st) = stats.lock()
    {
        st.to_players_tcp[*slot] = info;
    }
    if let Some(key) = publishing
        && let Ok(mut s) = streams.lock()
        && let Some(stream) = s.get_mut(&key)
    {
        stream.publishing = false;
    }
    result
}

/// Sends `media` to every player of `key` (dropping players that fell too far
/// behind) after `update` touched the stream's cache.
fn fan_out(
    streams: &Mutex<HashMap<String, Stream>>,
    stats: &Mutex<RelayStats>,
    key: &str,
    media: Media,
    update: impl FnOnce(&mut Stream),
) -> Result<()> {
    let mut s = streams
        .lock()
        .map_err(|_| anyhow!("relay state poisoned"))?;
    let stream = s.entry(key.to_string()).or_default();
    update(stream);
    let before = stream.players.len();
    stream.players.retain(|p| p.try_send(media.clone()).is_ok());
    let dropped = before - stream.players.len();
    drop(s);
    if dropped > 0 {
        stats
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .slow_players_dropped += dropped as u64;
    }
    Ok(())
}

async fn client_results(
    sock: &mut TcpStream,
    results: Vec<ClientSessionResult>,
) -> Result<Vec<ClientSessionEvent>> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => sock.write_all(&p.bytes).await?,
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    Ok(events)
}

/// Connects the client session and waits for `until` to say an event is the
/// one it waits for (or fails on a rejection).
async fn client_until(
    sock: &mut TcpStream,
    session: &mut ClientSession,
    buf: &mut [u8],
    first: ClientSessionResult,
    until: impl Fn(&ClientSessionEvent) -> bool,
) -> Result<()> {
    let mut events = client_results(sock, vec![first]).await?;
    loop {
        for e in events.drain(..) {
            if until(&e) {
                return Ok(());
            }
            if let ClientSessionEvent::ConnectionRequestRejected { description } = e {
                bail!("the server refused the connection: {description}");
            }
            if let ClientSessionEvent::UnhandleableOnStatusCode { code } = &e
                && code.contains("BadName")
            {
                bail!("the server refused the stream ({code})");
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(buf))
            .await
            .context("waiting for the RTMP server")??;
        if n == 0 {
            bail!("the server closed the connection (wrong stream key?)");
        }
        events = client_results(
            sock,
            session
                .handle_input(&buf[..n])
                .map_err(|e| anyhow!("{e:?}"))?,
        )
        .await?;
    }
}

async fn client_connect(sock: &mut TcpStream, buf: &mut [u8]) -> Result<ClientSession> {
    let remaining = handshake(sock, PeerType::Client).await?;
    let (mut session, results) =
        ClientSession::new(ClientSessionConfig::new()).map_err(|e| anyhow!("{e:?}"))?;
    client_results(sock, results).await?;
    client_results(
        sock,
        session
            .handle_input(&remaining)
            .map_err(|e| anyhow!("{e:?}"))?,
    )
    .await?;
    let req = session
        .request_connection(APP.to_string())
        .map_err(|e| anyhow!("{e:?}"))?;
    client_until(sock, &mut session, buf, req, |e| {
        matches!(e, ClientSessionEvent::ConnectionRequestAccepted)
    })
    .await?;
    Ok(session)
}

/// What the publisher did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublisherStats {
    pub video_frames_sent: u64,
    pub audio_frames_sent: u64,
    pub bytes_sent: u64,
    /// When publishing was accepted and the camera started.
    pub started_at: Option<Time>,
    /// TCP_INFO of the publisher's socket at the end (first-mile retransmits).
    pub tcp: TcpInfo,
    /// Bits sent per second of capture.
    pub per_second_bits: Vec<u64>,
    /// Capture instants of the video frames sent.
    #[serde(skip)]
    pub video_captures: Vec<Time>,
}

/// Sleeps until `deadline` within a few µs: tokio's timer wakes up to ~2 ms
/// late (1 ms ticks), which would add to every frame's latency; so sleep
/// until shortly before, then spin the rest (at most ~1.5 ms per frame).
async fn precise_sleep_until(deadline: std::time::Instant) {
    let early = deadline
        .checked_sub(Duration::from_micros(1500))
        .unwrap_or(deadline);
    if early > std::time::Instant::now() {
        tokio::time::sleep_until(early.into()).await;
    }
    netem::adapters::timer::spin_until(deadline, || false);
}

/// Publishes the encoder's frames on `stream_key` until `end`.
pub async fn publish(
    mut sock: TcpStream,
    stream_key: &str,
    mut encoder_for: impl FnMut(Time) -> Encoder,
    clock: Clock,
    end: Time,
) -> Result<PublisherStats> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut session = client_connect(&mut sock, &mut buf).await?;
    let req = session
        .request_publishing(stream_key.to_string(), PublishRequestType::Live)
        .map_err(|e| anyhow!("{e:?}"))?;
    client_until(&mut sock, &mut session, &mut buf, req, |e| {
        matches!(e, ClientSessionEvent::PublishRequestAccepted)
    })
    .await?;
    let start = clock.time(std::time::Instant::now());
    let mut encoder = encoder_for(start);
    let cfg = encoder.config().clone();
    let metadata = StreamMetadata {
        video_frame_rate: Some(cfg.fps as f32),
        video_bitrate_kbps: Some((cfg.bitrate.bits_per_sec() / 1000) as u32),
        video_codec_id: Some(7),
        encoder: Some("glass synthetic encoder".into()),
        ..StreamMetadata::new()
    };
    let mut stats = PublisherStats {
        started_at: Some(start),
        ..PublisherStats::default()
    };
    let r = session
        .publish_metadata(&metadata)
        .map_err(|e| anyhow!("{e:?}"))?;
    client_results(&mut sock, vec![r]).await?;
    let r = session
        .publish_video_data(sequence_header(), rtmp_ts(Time::ZERO), false)
        .map_err(|e| anyhow!("{e:?}"))?;
    client_results(&mut sock, vec![r]).await?;
    loop {
        let due = encoder.poll_timeout();
        if due >= end {
            break;
        }
        let now = clock.time(std::time::Instant::now());
        if due > now {
            tokio::select! {
                _ = precise_sleep_until(clock.instant(due)) => {}
                r = sock.read(&mut buf) => {
                    // Acknowledgements and pings from the server.
                    let n = r?;
                    if n == 0 {
                        bail!("the server closed the publishing connection");
                    }
                    client_results(&mut sock, session.handle_input(&buf[..n]).map_err(|e| anyhow!("{e:?}"))?).await?;
                    continue;
                }
            }
        }
        let now = clock.time(std::time::Instant::now());
        while let Some(frame) = encoder.poll_frame(now) {
            let ts = rtmp_ts(frame.header.capture);
            let r = if frame.header.kind.is_video() {
                stats.video_frames_sent += 1;
                stats.video_captures.push(frame.header.capture);
                session.publish_video_data(video_tag(&frame), ts, false)
            } else {
                stats.audio_frames_sent += 1;
                session.publish_audio_data(audio_tag(&frame), ts, false)
            }
            .map_err(|e| anyhow!("{e:?}"))?;
            let bytes = frame.bytes.len() as u64;
            stats.bytes_sent += bytes;
            let second = (frame.header.capture - start).as_secs() as usize;
            if stats.per_second_bits.len() <= second {
                stats.per_second_bits.resize(second + 1, 0);
            }
            stats.per_second_bits[second] += bytes * 8;
            // Blocks while TCP is backed up: later frames wait here, as in an encoder's output queue.
            client_results(&mut sock, vec![r]).await?;
        }
    }
    stats.tcp = tcp_info(&sock).unwrap_or_default();
    Ok(stats)
}

/// Plays `stream_key` into `player` until `end`.
pub async fn play(
    mut sock: TcpStream,
    stream_key: &str,
    player: &mut Player,
    clock: Clock,
    end: Time,
) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut session = client_connect(&mut sock, &mut buf).await?;
    let req = session
        .request_playback(stream_key.to_string())
        .map_err(|e| anyhow!("{e:?}"))?;
    client_until(&mut sock, &mut session, &mut buf, req, |e| {
        matches!(e, ClientSessionEvent::PlaybackRequestAccepted)
    })
    .await?;
    loop {
        let now = clock.time(std::time::Instant::now());
        if now >= end {
            return Ok(());
        }
        let wake = player.poll_timeout().min(end);
        tokio::select! {
            _ = tokio::time::sleep_until(clock.instant(wake).into()), if wake > now => {
                player.handle_timeout(clock.time(std::time::Instant::now()));
            }
            r = sock.read(&mut buf) => {
                let n = r?;
                let now = clock.time(std::time::Instant::now());
                if n == 0 {
                    bail!("the server closed the playback connection");
                }
                let events = client_results(&mut sock, session.handle_input(&buf[..n]).map_err(|e| anyhow!("{e:?}"))?).await?;
                for e in events {
                    let header = match e {
                        ClientSessionEvent::VideoDataReceived { data, .. } => unpack(&data, true),
                        ClientSessionEvent::AudioDataReceived { data, .. } => unpack(&data, false),
                        _ => None,
                    };
                    if let Some(h) = header {
                        player.on_frame(now, h);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let f = Frame::new(FrameHeader {
            kind: FrameKind::I,
            seq: 3,
            gop: 0,
            capture: Time::from_millis(5),
            size: 500,
        });
        assert_eq!(unpack(&video_tag(&f), true), Some(f.header));
        let a = Frame::new(FrameHeader {
            kind: FrameKind::Audio,
            seq: 1,
            gop: 0,
            capture: Time::from_millis(5),
            size: 320,
        });
        assert_eq!(unpack(&audio_tag(&a), false), Some(a.header));
        assert!(is_sequence_header(&sequence_header()));
        assert_eq!(unpack(&sequence_header(), true), None);
        assert_eq!(unpack(&[0x17], true), None);
        assert_eq!(unpack(b"garbage!", false), None);
    }
}
