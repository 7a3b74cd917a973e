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
use netem::adapters::tcpinfo::{TcpInfo, set_congestion};
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
use tokio::net::TcpListener;

use super::quic::{self, QuicStats};
use super::transport::Transport;
use tokio::sync::{mpsc, watch};

use crate::media::abr::{Abr, AbrConfig, AbrSample};
use crate::media::player::Player;
use crate::media::source::{Source, is_sequence_header, unpack};
use crate::media::wallclock::{ForeignFrames, WallClock};

pub const APP: &str = "live";

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

/// What the relay saw, for the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RelayStats {
    pub publishes_accepted: u64,
    pub publishes_refused: u64,
    pub players: u64,
    pub video_messages_in: u64,
    /// RTMP timestamps of the video frames published (not configuration).
    #[serde(skip)]
    pub published_video_timestamps: Vec<u32>,
    /// Players disconnected because they fell too far behind.
    pub slow_players_dropped: u64,
    /// TCP_INFO of the relay's socket towards each TCP player (sampled every second).
    pub to_players_tcp: Vec<TcpInfo>,
    /// quinn's statistics of the relay's connection to each QUIC player.
    pub to_players_quic: Vec<QuicStats>,
    /// The UDP media protocol's sessions: publishers in (`relay-ingest`)
    /// and players out (`relay-egress`).
    pub udp: Vec<super::udp::UdpReport>,
    /// Per video frame (by sequence number): when the relay's protocol
    /// stack handed it to the stream table, and when it was first handed to
    /// a player's transport (the per-hop breakdown).
    #[serde(skip)]
    pub hops: HashMap<u64, RelayHop>,
}

/// When one video frame passed the relay.
#[derive(Copy, Clone, Debug, Default)]
pub struct RelayHop {
    pub received: Option<std::time::Instant>,
    pub sent: Option<std::time::Instant>,
}

/// Notes that the relay received (`sent == false`) or sent a video message
/// just now, keyed by the Glass frame's sequence number (frames without a
/// Glass header, e.g. ffmpeg's, have none and are not timed).
pub(crate) fn note_hop(stats: &Mutex<RelayStats>, data: &[u8], sent: bool) {
    let Some(h) = unpack(data, true) else { return };
    let now = std::time::Instant::now();
    if let Ok(mut st) = stats.lock() {
        let hop = st.hops.entry(h.seq).or_default();
        let slot = if sent {
            &mut hop.sent
        } else {
            &mut hop.received
        };
        slot.get_or_insert(now);
    }
}

#[derive(Clone)]
pub(crate) enum Media {
    Video(Bytes, RtmpTimestamp),
    Audio(Bytes, RtmpTimestamp),
    Metadata(StreamMetadata),
}

#[derive(Default)]
pub(crate) struct Stream {
    publishing: bool,
    metadata: Option<StreamMetadata>,
    sequence_header: Option<(Bytes, RtmpTimestamp)>,
    audio_header: Option<(Bytes, RtmpTimestamp)>,
    /// Audio and video since the latest key frame, so a player that joins
    /// mid-stream starts decoding at once (nginx-rtmp's and SRS's "GOP
    /// cache"). Bounded; a GOP too long to cache is not cached.
    gop: Vec<Media>,
    gop_bytes: usize,
    players: Vec<mpsc::Sender<Media>>,
}

const GOP_CACHE_BYTES: usize = 32 << 20;
const GOP_CACHE_MESSAGES: usize = 8192;

impl Stream {
    fn cache(&mut self, m: &Media) {
        let (data, video) = match m {
            Media::Video(d, _) => (d, true),
            Media::Audio(d, _) => (d, false),
            Media::Metadata(_) => return,
        };
        if is_sequence_header(data, video) {
            return;
        }
        if video && data.len() >= 2 && data[0] >> 4 == 1 && data[1] == 1 {
            self.gop.clear();
            self.gop_bytes = 0;
        } else if self.gop.is_empty() {
            return; // no key frame to start from
        }
        self.gop_bytes += data.len();
        if self.gop_bytes > GOP_CACHE_BYTES || self.gop.len() >= GOP_CACHE_MESSAGES {
            self.gop.clear();
            self.gop_bytes = 0;
            return;
        }
        self.gop.push(m.clone());
    }
}

/// Messages a player may have queued before the relay gives up on it.
const PLAYER_QUEUE: usize = 65_536;

/// The relay server: accepts publishers (with the right stream key) and
/// players on `listener` until `stop` changes.
///
/// `congestion` sets each accepted socket's TCP congestion control (the
/// relay sends on the last mile).
///
/// With `quic`, the same relay also accepts RTMP over QUIC (both mappings)
/// on that endpoint, and streams are shared: a QUIC publisher feeds TCP
/// players and the other way round.
///
/// With `udp`, it also takes Glass's UDP media protocol on that socket
/// (`protocols::udp`): a gateway from UDP publishers to every player.
pub async fn relay(
    listener: TcpListener,
    quic: Option<quinn::Endpoint>,
    udp: Option<(tokio::net::UdpSocket, udpmedia::Config)>,
    stream_key: String,
    congestion: Option<String>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<RelayStats>>,
) {
    let streams: Arc<Mutex<HashMap<String, Stream>>> = Arc::default();
    let udp_task = udp.map(|(sock, cfg)| {
        tokio::spawn(super::udp::serve(
            sock,
            cfg,
            stream_key.clone(),
            streams.clone(),
            stats.clone(),
            stop.clone(),
        ))
    });
    if let Some(ep) = quic.clone() {
        tokio::spawn(accept_quic(
            ep,
            streams.clone(),
            stats.clone(),
            stream_key.clone(),
            stop.clone(),
        ));
    }
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if let Some(ep) = &quic {
                    ep.close(0u32.into(), b"relay stopped");
                }
                // The UDP side closes its sessions and records their statistics.
                if let Some(t) = udp_task {
                    let _ = t.await;
                }
                return;
            }
            r = listener.accept() => {
                let Ok((sock, _)) = r else { continue };
                let _ = sock.set_nodelay(true);
                if let Some(cc) = &congestion
                    && let Err(e) = set_congestion(&sock, cc)
                {
                    tracing::warn!("relay: {e}");
                }
                let (streams, stats, key, stop) = (streams.clone(), stats.clone(), stream_key.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = relay_connection(Transport::Tcp(sock), &key, &streams, &stats, stop).await {
                        tracing::debug!("relay connection ended: {e:#}");
                    }
                });
            }
        }
    }
}

/// The relay's QUIC side: each connection's client opens one bidirectional
/// stream for the RTMP session; ALPN says which mapping it speaks.
async fn accept_quic(
    ep: quinn::Endpoint,
    streams: Arc<Mutex<HashMap<String, Stream>>>,
    stats: Arc<Mutex<RelayStats>>,
    key: String,
    stop: watch::Receiver<bool>,
) {
    while let Some(incoming) = ep.accept().await {
        let (streams, stats, key, stop) =
            (streams.clone(), stats.clone(), key.clone(), stop.clone());
        tokio::spawn(async move {
            let accepted = async {
                let conn = incoming.await?;
                let mapping = quic::mapping_of(&conn)?;
                let (send, recv) = conn.accept_bi().await?;
                anyhow::Ok(Transport::Quic {
                    conn,
                    send,
                    recv,
                    mapping,
                })
            };
            match accepted.await {
                Ok(t) => {
                    if let Err(e) = relay_connection(t, &key, &streams, &stats, stop).await {
                        tracing::debug!("relay QUIC connection ended: {e:#}");
                    }
                }
                Err(e) => tracing::debug!("relay: QUIC connection failed: {e:#}"),
            }
        });
    }
}

async fn relay_connection(
    mut sock: Transport,
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
    let mut playing: Option<(u32, mpsc::Receiver<Media>, PlayerSlot)> = None;
    // Frames-mapping player: messages sent on their own streams, in order.
    let mut sent_on_streams: u64 = 0;
    // Frames-mapping publisher: messages read off its unidirectional streams.
    let mut uni_reader: Option<mpsc::Receiver<(bool, Bytes, RtmpTimestamp)>> = None;
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
                    let accepted = claim_publish(streams, stats, &key, stream_key)?;
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
                    if let Some(conn) = sock.frames_conn() {
                        uni_reader = Some(spawn_uni_reader(conn.clone()));
                    }
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
                    let (catch_up, rx) = subscribe(streams, &key)?;
                    let slot = {
                        let mut st = stats.lock().map_err(|_| anyhow!("poisoned"))?;
                        st.players += 1;
                        if sock.quic_stats().is_some() {
                            st.to_players_quic.push(QuicStats::default());
                            PlayerSlot::Quic(st.to_players_quic.len() - 1)
                        } else {
                            st.to_players_tcp.push(TcpInfo::default());
                            PlayerSlot::Tcp(st.to_players_tcp.len() - 1)
                        }
                    };
                    // A late player first gets what it missed: metadata, the
                    // sequence headers and the GOP so far.
                    for m in catch_up {
                        let p = match m {
                            Media::Video(d, ts) => session.send_video_data(stream_id, d, ts, false),
                            Media::Audio(d, ts) => session.send_audio_data(stream_id, d, ts, false),
                            Media::Metadata(md) => session.send_metadata(stream_id, &md),
                        }
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
                } => published(streams, stats, &key, true, data, timestamp)?,
                ServerSessionEvent::AudioDataReceived {
                    stream_key: key,
                    data,
                    timestamp,
                    ..
                } => published(streams, stats, &key, false, data, timestamp)?,
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
        let next_uni = async {
            match &mut uni_reader {
                Some(rx) => rx.recv().await,
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
            m = next_uni => {
                match m {
                    Some((video, data, ts)) => {
                        if let Some(key) = &publishing {
                            published(streams, stats, key, video, data, ts)?;
                        }
                    }
                    None => uni_reader = None,
                }
            }
            m = next_media => {
                let Some(m) = m else { break Ok(()) };
                let Some((stream_id, _, _)) = &playing else { continue };
                // Frames mapping: each frame on its own stream (configuration
                // and metadata stay on the ordered RTMP stream).
                if let Some(conn) = sock.frames_conn() {
                    match &m {
                        Media::Video(d, ts) if !is_sequence_header(d, true) => {
                            sent_on_streams += 1;
                            quic::write_message(conn, quic::MSG_VIDEO, ts.value, d, sent_on_streams).await?;
                            note_hop(stats, d, true);
                            continue;
                        }
                        Media::Audio(d, ts) if !is_sequence_header(d, false) => {
                            sent_on_streams += 1;
                            quic::write_message(conn, quic::MSG_AUDIO, ts.value, d, sent_on_streams).await?;
                            continue;
                        }
                        _ => {}
                    }
                }
                let video = match &m {
                    Media::Video(d, _) => Some(d.clone()),
                    _ => None,
                };
                let packet = match m {
                    Media::Video(d, ts) => session.send_video_data(*stream_id, d, ts, false),
                    Media::Audio(d, ts) => session.send_audio_data(*stream_id, d, ts, false),
                    Media::Metadata(md) => session.send_metadata(*stream_id, &md),
                }
                .map_err(|e| anyhow!("{e:?}"))?;
                sock.write_all(&packet.bytes).await?;
                if let Some(d) = video {
                    note_hop(stats, &d, true);
                }
            }
            _ = sample.tick() => {
                if let Some((_, _, slot)) = &playing {
                    record_player_link(stats, *slot, &sock);
                }
            }
        }
    };
    if let Some((_, _, slot)) = &playing {
        record_player_link(stats, *slot, &sock);
    }
    if let Some(key) = publishing {
        release_publish(streams, &key);
    }
    result
}

/// An audio or video message a client received: (video, body, timestamp).
fn media_of(e: ClientSessionEvent) -> Option<(bool, Bytes, u32)> {
    match e {
        ClientSessionEvent::VideoDataReceived {
            data, timestamp, ..
        } => Some((true, data, timestamp.value)),
        ClientSessionEvent::AudioDataReceived {
            data, timestamp, ..
        } => Some((false, data, timestamp.value)),
        _ => None,
    }
}

/// Which entry of the relay's stats holds a player's transport figures.
#[derive(Copy, Clone, Debug)]
enum PlayerSlot {
    Tcp(usize),
    Quic(usize),
}

fn record_player_link(stats: &Mutex<RelayStats>, slot: PlayerSlot, sock: &Transport) {
    let Ok(mut st) = stats.lock() else { return };
    match slot {
        PlayerSlot::Tcp(i) => {
            if let Some(info) = sock.tcp_info() {
                st.to_players_tcp[i] = info;
            }
        }
        PlayerSlot::Quic(i) => {
            if let Some(q) = sock.quic_stats() {
                st.to_players_quic[i] = q;
            }
        }
    }
}

/// Reads every unidirectional stream a frames-mapping peer opens, each one
/// message, in its own task (a stream held up by loss holds up only
/// itself), and hands them over in the order they complete.
fn spawn_uni_reader(conn: quinn::Connection) -> mpsc::Receiver<(bool, Bytes, RtmpTimestamp)> {
    let (tx, rx) = mpsc::channel(PLAYER_QUEUE);
    tokio::spawn(async move {
        while let Ok(stream) = conn.accept_uni().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                match quic::read_message(stream).await {
                    Ok((kind, ts, data)) => {
                        let _ = tx
                            .send((kind == quic::MSG_VIDEO, data, RtmpTimestamp::new(ts)))
                            .await;
                    }
                    Err(e) => tracing::debug!("frames-mapping stream: {e:#}"),
                }
            });
        }
    });
    rx
}

/// Registers a player of `key`: what it missed (metadata, sequence
/// headers, the GOP so far) and the channel of what comes next, taken under
/// one lock so nothing falls between them.
pub(crate) fn subscribe(
    streams: &Mutex<HashMap<String, Stream>>,
    key: &str,
) -> Result<(Vec<Media>, mpsc::Receiver<Media>)> {
    let (tx, rx) = mpsc::channel(PLAYER_QUEUE);
    let mut s = streams
        .lock()
        .map_err(|_| anyhow!("relay state poisoned"))?;
    let stream = s.entry(key.to_string()).or_default();
    stream.players.push(tx);
    let mut catch_up = Vec::new();
    catch_up.extend(stream.metadata.clone().map(Media::Metadata));
    catch_up.extend(
        stream
            .sequence_header
            .clone()
            .map(|(d, t)| Media::Video(d, t)),
    );
    catch_up.extend(stream.audio_header.clone().map(|(d, t)| Media::Audio(d, t)));
    catch_up.extend(stream.gop.iter().cloned());
    Ok((catch_up, rx))
}

/// Claims `key` for a publisher: refused if it is not the relay's key or
/// someone already publishes it. Counted either way.
pub(crate) fn claim_publish(
    streams: &Mutex<HashMap<String, Stream>>,
    stats: &Mutex<RelayStats>,
    key: &str,
    stream_key: &str,
) -> Result<bool> {
    let accepted = {
        let mut s = streams
            .lock()
            .map_err(|_| anyhow!("relay state poisoned"))?;
        let stream = s.entry(key.to_string()).or_default();
        let ok = key == stream_key && !stream.publishing;
        stream.publishing |= ok;
        ok
    };
    let mut st = stats.lock().map_err(|_| anyhow!("poisoned"))?;
    if accepted {
        st.publishes_accepted += 1;
    } else {
        st.publishes_refused += 1;
    }
    Ok(accepted)
}

/// The publisher of `key` left.
pub(crate) fn release_publish(streams: &Mutex<HashMap<String, Stream>>, key: &str) {
    if let Ok(mut s) = streams.lock()
        && let Some(stream) = s.get_mut(key)
    {
        stream.publishing = false;
    }
}

/// A publisher's audio or video message: counted, cached when it is
/// configuration, and fanned out.
pub(crate) fn published(
    streams: &Mutex<HashMap<String, Stream>>,
    stats: &Mutex<RelayStats>,
    key: &str,
    video: bool,
    data: Bytes,
    timestamp: RtmpTimestamp,
) -> Result<()> {
    if video {
        note_hop(stats, &data, false);
        let mut st = stats.lock().map_err(|_| anyhow!("poisoned"))?;
        st.video_messages_in += 1;
        if data.len() >= 2 && data[1] == 1 {
            st.published_video_timestamps.push(timestamp.value);
        }
    }
    let header = is_sequence_header(&data, video);
    let media = if video {
        Media::Video(data.clone(), timestamp)
    } else {
        Media::Audio(data.clone(), timestamp)
    };
    fan_out(streams, stats, key, media, |s| {
        if header {
            if video {
                s.sequence_header = Some((data, timestamp));
            } else {
                s.audio_header = Some((data, timestamp));
            }
        }
    })
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
    stream.cache(&media);
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
    sock: &mut Transport,
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

/// Sends `first` and waits for `until` to say an event is the one it waits
/// for (or fails on a rejection). Returns the events that came after it in
/// the same read: media may follow an acceptance at once.
async fn client_until(
    sock: &mut Transport,
    session: &mut ClientSession,
    buf: &mut [u8],
    first: ClientSessionResult,
    until: impl Fn(&ClientSessionEvent) -> bool,
) -> Result<Vec<ClientSessionEvent>> {
    let mut events = client_results(sock, vec![first]).await?;
    loop {
        let mut batch = std::mem::take(&mut events).into_iter();
        while let Some(e) = batch.next() {
            if until(&e) {
                return Ok(batch.collect());
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

/// The RTMP handshake and `connect`; `steps` gets each one's end.
async fn client_connect(
    sock: &mut Transport,
    buf: &mut [u8],
    steps: &mut ConnectSteps,
) -> Result<ClientSession> {
    let remaining = handshake(sock, PeerType::Client).await?;
    steps.done("rtmp_handshake");
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
    steps.done("rtmp_connect");
    // Nothing but control messages can follow before a publish or play request.
    Ok(session)
}

/// What the publisher did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublisherStats {
    pub video_frames_sent: u64,
    pub audio_frames_sent: u64,
    pub bytes_sent: u64,
    /// When the camera started (its first capture instant).
    pub started_at: Option<Time>,
    /// When the session could carry media (publish accepted, session up).
    pub ready_at: Option<Time>,
    /// The session's set-up: from dialling the relay until it could carry
    /// media (`ready_at`).
    pub connect_ms: Option<f64>,
    /// The set-up step by step, in order (transport handshake, protocol
    /// handshake, publish accepted…), each step's own duration.
    pub connect_steps: Vec<ConnectStep>,
    /// (sequence number, instant handed to the transport) of each video
    /// frame sent: the per-hop breakdown's first step.
    #[serde(skip)]
    pub sent: Vec<(u64, Time)>,
    /// TCP_INFO of the publisher's socket at the end (first-mile retransmits).
    pub tcp: TcpInfo,
    /// Bits sent per second of capture.
    pub per_second_bits: Vec<u64>,
    /// Capture instants of the video frames sent.
    #[serde(skip)]
    pub video_captures: Vec<Time>,
    /// "tcp", "quic/stream" or "quic/frames"; for a QUIC client that fell
    /// back, "tcp" (the fallback is in `RunResult::transports`).
    pub transport: String,
    /// quinn's statistics of the publisher's connection (QUIC).
    pub quic: Option<QuicStats>,
    /// What ABR did, when on.
    pub abr: Option<AbrReport>,
}

/// One step of a session's set-up.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectStep {
    pub step: &'static str,
    pub ms: f64,
}

/// Times a session's set-up from `begin`, one step at a time.
pub struct ConnectSteps {
    clock: Clock,
    begin: Time,
    last: Time,
    steps: Vec<ConnectStep>,
}

impl ConnectSteps {
    pub fn new(clock: Clock, begin: Time) -> ConnectSteps {
        ConnectSteps {
            clock,
            begin,
            last: begin,
            steps: Vec::new(),
        }
    }

    /// The step `step` has just finished.
    pub fn done(&mut self, step: &'static str) -> Time {
        let now = self.clock.time(std::time::Instant::now());
        self.steps.push(ConnectStep {
            step,
            ms: now.saturating_since(self.last).as_secs_f64() * 1e3,
        });
        self.last = now;
        now
    }

    /// Into the publisher's statistics: the steps, the whole set-up, and
    /// the instant it ended.
    pub fn record(self, stats: &mut PublisherStats) {
        stats.ready_at = Some(self.last);
        stats.connect_ms = Some(self.last.saturating_since(self.begin).as_secs_f64() * 1e3);
        stats.connect_steps = self.steps;
    }
}

/// ABR's decisions: backlog and target every sample, and the switch count.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AbrReport {
    pub switches: u32,
    pub samples: Vec<AbrSample>,
}

impl PublisherStats {
    /// A video frame was handed to the transport just now.
    pub(crate) fn note_sent(&mut self, seq: Option<u64>, clock: Clock) {
        if let Some(seq) = seq {
            self.sent.push((seq, clock.time(std::time::Instant::now())));
        }
    }

    pub(crate) fn count_bits(&mut self, since_start: Duration, bytes: u64) {
        self.bytes_sent += bytes;
        let second = since_start.as_secs() as usize;
        if self.per_second_bits.len() <= second {
            self.per_second_bits.resize(second + 1, 0);
        }
        self.per_second_bits[second] += bytes * 8;
    }
}

/// How often ABR looks at the backlog.
pub const ABR_SAMPLE: Duration = Duration::from_millis(200);

/// ABR's view of the publisher: the controller, the TCP socket to read the
/// unsent queue of, and the previous sample (for the drain rate).
struct AbrProbe {
    abr: Abr,
    fd: Option<std::os::fd::RawFd>,
    next: Time,
    /// (when, bytes delivered, unsent bytes in the transport).
    last: Option<(Time, u64, u64)>,
    /// Smoothed drain rate, bit/s.
    drain: Option<f64>,
}

impl AbrProbe {
    /// Backlog = frames due but not yet handed over + what the transport
    /// holds unsent; drain rate = what left the sender since the last sample.
    fn sample(&mut self, now: Time, source: &mut Source, bytes_sent: u64) {
        self.next = now + ABR_SAMPLE;
        let unsent = self.fd.map_or(0, super::transport::unsent_fd);
        // TCP: what the peer acknowledged (the path's delivery); QUIC (whose
        // small send window bounds what it holds): what left the publisher.
        let acked = self.fd.and_then(|fd| {
            struct Fd(std::os::fd::RawFd);
            impl std::os::fd::AsRawFd for Fd {
                fn as_raw_fd(&self) -> std::os::fd::RawFd {
                    self.0
                }
            }
            netem::adapters::tcpinfo::tcp_info(&Fd(fd))
                .ok()
                .map(|i| i.bytes_acked)
        });
        let delivered = acked.unwrap_or(bytes_sent);
        let drain_bps = self.last.and_then(|(t, d, _)| {
            let dt = now.saturating_since(t).as_secs_f64();
            (dt > 0.05).then(|| delivered.saturating_sub(d) as f64 * 8.0 / dt)
        });
        self.last = Some((now, delivered, unsent));
        if let Some(d) = drain_bps {
            self.drain = Some(self.drain.map_or(d, |old| 0.7 * old + 0.3 * d));
        }
        // The unsent queue as time: how long it takes to leave at the rate
        // the path has been taking it (not at the new, lower target).
        let rate = self
            .drain
            .filter(|&d| d > 10_000.0)
            .unwrap_or_else(|| self.abr.target_bps().max(1.0));
        let behind = now.saturating_since(source.poll_timeout());
        let backlog = behind + Duration::from_secs_f64(unsent as f64 * 8.0 / rate);
        if let Some(new) = self.abr.on_backlog(now, backlog, self.drain)
            && let Some(e) = source.encoder_mut()
        {
            e.set_target_bitrate(new);
        }
    }
}

/// Awaits a write, sampling ABR meanwhile (a write blocks while the path
/// is congested, which is when ABR must act); `false` when the run ended.
async fn write_sampling(
    write: impl std::future::Future<Output = Result<()>>,
    probe: &mut Option<AbrProbe>,
    source: &mut Source,
    bytes_sent: u64,
    clock: Clock,
    end: Time,
) -> Result<bool> {
    tokio::pin!(write);
    loop {
        let next = probe.as_ref().map_or(Time::MAX, |p| p.next);
        tokio::select! {
            r = &mut write => { r?; return Ok(true); }
            _ = tokio::time::sleep_until(clock.instant(end).into()) => return Ok(false),
            _ = tokio::time::sleep_until(clock.instant(next.min(end)).into()), if next < end => {
                if let Some(p) = probe {
                    p.sample(clock.time(std::time::Instant::now()), source, bytes_sent);
                }
            }
        }
    }
}

/// Sleeps until `deadline` within a few µs: tokio's timer wakes up to ~2 ms
/// late (1 ms ticks), which would add to every frame's latency; so sleep
/// until shortly before, then spin the rest (at most ~1.5 ms per frame).
pub(crate) async fn precise_sleep_until(deadline: std::time::Instant) {
    let early = deadline
        .checked_sub(Duration::from_micros(1500))
        .unwrap_or(deadline);
    if early > std::time::Instant::now() {
        tokio::time::sleep_until(early.into()).await;
    }
    netem::adapters::timer::spin_until(deadline, || false);
}

/// Publishes `source`'s media on `stream_key` until `end`; `source_for`
/// gets the instant publishing was accepted (the session can carry media)
/// and makes the source (whose camera starts then, or earlier when it
/// models a camera already running). `steps` times the set-up from the
/// dialling of the transport on.
///
/// With `abr`, the encoder's target bitrate follows the send backlog
/// (sampled every [`ABR_SAMPLE`] between frames): the frames due but not yet
/// written (the publisher is blocked on the transport), plus what the
/// transport holds unsent (TCP's SIOCOUTQNSD).
pub async fn publish(
    mut sock: Transport,
    stream_key: &str,
    source_for: impl FnOnce(Time) -> Source,
    abr: Option<AbrConfig>,
    mut steps: ConnectSteps,
    end: Time,
) -> Result<PublisherStats> {
    let clock = steps.clock;
    let frames = sock.frames_conn().cloned();
    let mut buf = vec![0u8; 64 * 1024];
    let mut session = client_connect(&mut sock, &mut buf, &mut steps).await?;
    let req = session
        .request_publishing(stream_key.to_string(), PublishRequestType::Live)
        .map_err(|e| anyhow!("{e:?}"))?;
    client_until(&mut sock, &mut session, &mut buf, req, |e| {
        matches!(e, ClientSessionEvent::PublishRequestAccepted)
    })
    .await?;
    let ready = steps.done("publish");
    let mut source = source_for(ready);
    let start = source.camera_start();
    let metadata = match source.encoder_mut() {
        Some(e) => {
            let cfg = e.config();
            StreamMetadata {
                video_frame_rate: Some(cfg.fps as f32),
                video_bitrate_kbps: Some((cfg.bitrate.bits_per_sec() / 1000) as u32),
                video_codec_id: Some(7),
                encoder: Some("glass synthetic encoder".into()),
                ..StreamMetadata::new()
            }
        }
        None => StreamMetadata {
            video_codec_id: Some(7),
            encoder: Some("glass FLV replay".into()),
            ..StreamMetadata::new()
        },
    };
    let mut stats = PublisherStats {
        started_at: Some(start),
        transport: sock.label().to_string(),
        ..PublisherStats::default()
    };
    steps.record(&mut stats);
    let mut probe = match (abr, source.encoder_mut()) {
        (Some(cfg), Some(e)) => Some(AbrProbe {
            abr: Abr::new(cfg, e.target_bitrate()),
            fd: sock.tcp_fd(),
            next: start,
            last: None,
            drain: None,
        }),
        _ => None,
    };
    let r = session
        .publish_metadata(&metadata)
        .map_err(|e| anyhow!("{e:?}"))?;
    client_results(&mut sock, vec![r]).await?;
    for m in source.sequence_headers() {
        let r = if m.video {
            session.publish_video_data(m.data, rtmp_ts(m.timestamp), false)
        } else {
            session.publish_audio_data(m.data, rtmp_ts(m.timestamp), false)
        }
        .map_err(|e| anyhow!("{e:?}"))?;
        client_results(&mut sock, vec![r]).await?;
    }
    loop {
        let due = source.poll_timeout();
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
        if now >= end {
            // Behind (TCP could not carry the media): the run is over anyway.
            break;
        }
        if let Some(p) = &mut probe
            && now >= p.next
        {
            p.sample(now, &mut source, stats.bytes_sent);
        }
        while let Some(m) = source.poll_message(now) {
            let bytes = m.data.len() as u64;
            let ts = rtmp_ts(m.timestamp);
            if let Some(conn) = &frames {
                // Frames mapping: each frame on its own stream.
                if m.video {
                    stats.video_frames_sent += 1;
                    stats.video_captures.push(m.capture);
                } else {
                    stats.audio_frames_sent += 1;
                }
                stats.count_bits(m.capture - start, bytes);
                let kind = if m.video {
                    quic::MSG_VIDEO
                } else {
                    quic::MSG_AUDIO
                };
                let order = stats.video_frames_sent + stats.audio_frames_sent;
                let write = quic::write_message(conn, kind, m.timestamp, &m.data, order);
                if !write_sampling(write, &mut probe, &mut source, stats.bytes_sent, clock, end)
                    .await?
                {
                    break;
                }
                stats.note_sent(m.seq, clock);
                continue;
            }
            let r = if m.video {
                stats.video_frames_sent += 1;
                stats.video_captures.push(m.capture);
                session.publish_video_data(m.data, ts, false)
            } else {
                stats.audio_frames_sent += 1;
                session.publish_audio_data(m.data, ts, false)
            }
            .map_err(|e| anyhow!("{e:?}"))?;
            stats.count_bits(m.capture - start, bytes);
            // Blocks while TCP is backed up: later frames wait here, as in an
            // encoder's output queue; the run ends at `end` whatever the backlog.
            let bytes_sent = stats.bytes_sent;
            let write = async { client_results(&mut sock, vec![r]).await.map(drop) };
            if !write_sampling(write, &mut probe, &mut source, bytes_sent, clock, end).await? {
                break;
            }
            stats.note_sent(m.seq, clock);
        }
        if clock.time(std::time::Instant::now()) >= end {
            break;
        }
    }
    stats.tcp = sock.tcp_info().unwrap_or_default();
    stats.quic = sock.quic_stats();
    if let Some(p) = probe {
        stats.abr = Some(AbrReport {
            switches: p.abr.switches(),
            samples: p.abr.samples().to_vec(),
        });
    }
    Ok(stats)
}

/// Plays `stream_key` into `player` until `end`.
pub async fn play(
    mut sock: Transport,
    stream_key: &str,
    player: &mut Player,
    clock: Clock,
    end: Time,
) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut steps = ConnectSteps::new(clock, clock.time(std::time::Instant::now()));
    let mut session = client_connect(&mut sock, &mut buf, &mut steps).await?;
    let req = session
        .request_playback(stream_key.to_string())
        .map_err(|e| anyhow!("{e:?}"))?;
    let mut early = client_until(&mut sock, &mut session, &mut buf, req, |e| {
        matches!(e, ClientSessionEvent::PlaybackRequestAccepted)
    })
    .await?;
    // Frames without a Glass header (ffmpeg, a replayed file) are timed by
    // their RTMP timestamps.
    let mut foreign = ForeignFrames::new(WallClock::new(clock));
    let mut frame = |video: bool, data: &[u8], ts: u32, player: &mut Player, now: Time| {
        if let Some(h) = unpack(data, video).or_else(|| foreign.header(data, video, ts, now)) {
            player.on_frame(now, h);
        }
    };
    // Frames mapping: frames also come on their own streams, in the order
    // they complete.
    let mut uni = sock.frames_conn().cloned().map(spawn_uni_reader);
    let now = clock.time(std::time::Instant::now());
    for (video, data, ts) in std::mem::take(&mut early).into_iter().filter_map(media_of) {
        frame(video, &data, ts, player, now);
    }
    loop {
        let now = clock.time(std::time::Instant::now());
        if now >= end {
            return Ok(());
        }
        let wake = player.poll_timeout().min(end);
        if wake <= now {
            // A refresh already due (handling the last input took longer than
            // a refresh): run it now. Waiting for input instead hung a run
            // whose stream had ended, with nothing left to wake the loop.
            player.handle_timeout(now);
            continue;
        }
        let next_uni = async {
            match &mut uni {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(clock.instant(wake).into()) => {
                player.handle_timeout(clock.time(std::time::Instant::now()));
            }
            m = next_uni => {
                let now = clock.time(std::time::Instant::now());
                match m {
                    Some((video, data, ts)) => frame(video, &data, ts.value, player, now),
                    None => uni = None,
                }
            }
            r = sock.read(&mut buf) => {
                let n = r?;
                let now = clock.time(std::time::Instant::now());
                if n == 0 {
                    bail!("the server closed the playback connection");
                }
                let events = client_results(&mut sock, session.handle_input(&buf[..n]).map_err(|e| anyhow!("{e:?}"))?).await?;
                for (video, data, ts) in events.into_iter().filter_map(media_of) {
                    frame(video, &data, ts, player, now);
                }
            }
        }
    }
}
