//! RTMP's server side on the hub: accepts RTMP sessions over TCP and over
//! QUIC (both mappings) and turns them into hub publishes and
//! subscriptions. Streams are the hub's, so a QUIC publisher feeds TCP
//! players, UDP players, and the other way round.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use netem::adapters::tcpinfo::{TcpInfo, set_congestion};
use rml_rtmp::handshake::PeerType;
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::quic::{self, QuicStats};
use super::shared_chunks::{SharedChunks, full_chunks};
use super::transport::Transport;
use super::{feed, handshake, info_from_rtmp, info_to_rtmp, rtmp_ts, write_packets};
use crate::relay::{Hub, Media};

/// What RTMP's server side measured of its players' transports (the
/// `relay` section of results.json, next to the hub's counters).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RtmpServerStats {
    /// TCP_INFO of the relay's socket towards each TCP player (sampled every second).
    pub to_players_tcp: Vec<TcpInfo>,
    /// The statistics of the relay's connection to each QUIC player.
    pub to_players_quic: Vec<QuicStats>,
}

/// RTMP's server: accepts publishers (which the hub admits by stream key)
/// and players on `listener` until `stop` changes.
///
/// `congestion` sets each accepted socket's TCP congestion control (the
/// relay sends on the last mile).
///
/// With `quic`, the same relay also accepts RTMP over QUIC (both mappings)
/// on that endpoint, and streams are shared: a QUIC publisher feeds TCP
/// players and the other way round.
pub async fn serve(
    listener: TcpListener,
    quic: Option<quinn::Endpoint>,
    hub: Hub,
    congestion: Option<String>,
    mut stop: watch::Receiver<bool>,
    stats: std::sync::Arc<Mutex<RtmpServerStats>>,
) {
    // Every connection is this task's: aborting it (the relay killed)
    // ends them all, as a crashed server process would.
    let mut conns = tokio::task::JoinSet::new();
    let chunks = std::sync::Arc::new(SharedChunks::default());
    if let Some(ep) = quic.clone() {
        conns.spawn(accept_quic(
            ep,
            hub.clone(),
            stats.clone(),
            chunks.clone(),
            stop.clone(),
        ));
    }
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if let Some(ep) = &quic {
                    ep.close(0u32.into(), b"relay stopped");
                }
                // Sessions see the stop too and end with their statistics.
                drain(&mut conns).await;
                return;
            }
            r = listener.accept() => {
                while conns.try_join_next().is_some() {}
                let Ok((sock, _)) = r else {
                    // Out of file descriptors (EMFILE) fails every accept
                    // at once: pause rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let _ = sock.set_nodelay(true);
                if let Some(cc) = &congestion
                    && let Err(e) = set_congestion(&sock, cc)
                {
                    tracing::warn!("relay: {e}");
                }
                let (hub, stats, chunks, stop) = (hub.clone(), stats.clone(), chunks.clone(), stop.clone());
                conns.spawn(async move {
                    if let Err(e) = relay_connection(Transport::Tcp(sock), &hub, &stats, &chunks, stop).await {
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
    hub: Hub,
    stats: std::sync::Arc<Mutex<RtmpServerStats>>,
    chunks: std::sync::Arc<SharedChunks>,
    stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    while let Some(incoming) = ep.accept().await {
        while conns.try_join_next().is_some() {}
        let (hub, stats, chunks, stop) = (hub.clone(), stats.clone(), chunks.clone(), stop.clone());
        conns.spawn(async move {
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
                    if let Err(e) = relay_connection(t, &hub, &stats, &chunks, stop).await {
                        tracing::debug!("relay QUIC connection ended: {e:#}");
                    }
                }
                Err(e) => tracing::debug!("relay: QUIC connection failed: {e:#}"),
            }
        });
    }
    drain(&mut conns).await;
}

/// Waits (at most 1 s) for a stopped server's sessions to end; the rest
/// are aborted when the set is dropped.
async fn drain(conns: &mut tokio::task::JoinSet<()>) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// How long a connection may take to publish or play, from its first byte:
/// one that stops inside the handshake (half-open) or never asks for a
/// stream would otherwise hold its task and buffers for ever.
pub const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One RTMP session with a publisher or a player, until either side ends
/// it or `stop` changes; a player's audio and video are the `chunks` every
/// player of the server shares. (Public for the fuzzer, which drives it
/// over [`Transport::Memory`].)
pub async fn relay_connection(
    mut sock: Transport,
    hub: &Hub,
    stats: &Mutex<RtmpServerStats>,
    chunks: &SharedChunks,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let setup_deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    let remaining = tokio::time::timeout(SETUP_TIMEOUT, handshake(&mut sock, PeerType::Server))
        .await
        .map_err(|_| anyhow!("no RTMP handshake within {SETUP_TIMEOUT:?}"))??;
    let (mut session, results) =
        ServerSession::new(ServerSessionConfig::new()).map_err(|e| anyhow!("{e:?}"))?;
    let mut pending = write_packets(&mut sock, results).await?;
    pending.extend(write_packets(&mut sock, feed(|| session.handle_input(&remaining))?).await?);
    let mut publishing: Option<String> = None;
    let mut playing: Option<(u32, mpsc::Receiver<Media>, PlayerSlot)> = None;
    // Frames-mapping player: messages sent on their own streams, in order.
    let mut sent_on_streams: u64 = 0;
    // Frames-mapping publisher: messages read off its unidirectional streams.
    let mut uni_reader: Option<mpsc::Receiver<(bool, Bytes, u32)>> = None;
    // A player sends little (acknowledgements): a small read buffer, grown
    // for a publisher, keeps a thousand players' sessions small.
    let mut buf = vec![0u8; 4 * 1024];
    let mut out = Vec::new();
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    // Registered once: a player's session wakes for every message, and a
    // fresh `changed()` per wake-up would join and leave the stop
    // channel's waiter list each time.
    let stopped = stop.changed();
    tokio::pin!(stopped);
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
                    let accepted = hub.claim(&key)?;
                    if !accepted {
                        let r = session
                            .reject_request(
                                request_id,
                                "NetStream.Publish.BadName",
                                "wrong stream key, or already publishing",
                            )
                            .map_err(|e| anyhow!("{e:?}"))?;
                        write_packets(&mut sock, r).await?;
                        bail!("refused a publish on \"{}\"", crate::redact::key(&key));
                    }
                    publishing = Some(key);
                    buf.resize(64 * 1024, 0);
                    if let Some(conn) = sock.frames_conn() {
                        uni_reader = Some(quic::spawn_uni_reader(conn.clone()));
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
                    let sub = hub.subscribe(&key)?;
                    let slot = PlayerSlot::new(stats, &sock)?;
                    // A late player first gets what it missed: metadata, the
                    // sequence headers and the GOP so far.
                    // Audio and video with full headers, as the live
                    // messages that follow (see `shared_chunks`).
                    for m in &sub.catch_up {
                        let bytes = match m.as_av() {
                            Some((video, d, ts)) => {
                                full_chunks(chunks.chunk_size(), stream_id, video, d.clone(), ts)?
                            }
                            None => rtmp_message(&mut session, stream_id, m)?.bytes.into(),
                        };
                        sock.write_all(&bytes).await?;
                    }
                    playing = Some((stream_id, sub.rx, slot));
                }
                ServerSessionEvent::StreamMetadataChanged {
                    stream_key: key,
                    metadata,
                    ..
                } => {
                    hub.publish(&key, Media::Info(info_from_rtmp(&metadata)))?;
                }
                ServerSessionEvent::VideoDataReceived {
                    stream_key: key,
                    data,
                    timestamp,
                    ..
                } => hub.publish(&key, Media::Video(data, timestamp.value))?,
                ServerSessionEvent::AudioDataReceived {
                    stream_key: key,
                    data,
                    timestamp,
                    ..
                } => hub.publish(&key, Media::Audio(data, timestamp.value))?,
                // releaseStream, FCPublish, _checkbw (ffmpeg), finishes: nothing to do.
                _ => {}
            }
        }
        let set_up = publishing.is_some() || playing.is_some();
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
            _ = &mut stopped => break Ok(()),
            _ = tokio::time::sleep_until(setup_deadline), if !set_up => {
                bail!("neither published nor played within {SETUP_TIMEOUT:?} of connecting");
            }
            r = sock.read(&mut buf) => {
                let n = r?;
                if n == 0 {
                    break Ok(());
                }
                let results = feed(|| session.handle_input(&buf[..n]))?;
                pending = write_packets(&mut sock, results).await?;
            }
            m = next_uni => {
                match m {
                    Some((video, data, ts)) => {
                        if let Some(key) = &publishing {
                            hub.publish(key, Media::av(video, data, ts))?;
                        }
                    }
                    None => uni_reader = None,
                }
            }
            m = next_media => {
                let Some(m) = m else { break Ok(()) };
                let Some((stream_id, rx, _)) = &mut playing else { continue };
                // What queued meanwhile goes in the same write: a relay
                // that falls behind then pays one system call for several
                // messages instead of one each.
                let mut batch = vec![m];
                while batch.len() < MAX_BATCH
                    && let Ok(m) = rx.try_recv()
                {
                    batch.push(m);
                }
                let to = Player { session: &mut session, stream_id: *stream_id, chunks };
                send_to_player(&mut sock, to, &batch, &mut out, &mut sent_on_streams).await?;
                for m in &batch {
                    hub.note_sent(m);
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
        hub.release(&key);
    }
    result
}

/// RTMP's message for `m` on a player's stream.
fn rtmp_message(
    session: &mut ServerSession,
    stream_id: u32,
    m: &Media,
) -> Result<rml_rtmp::chunk_io::Packet> {
    match m {
        Media::Video(d, ts) => session.send_video_data(stream_id, d.clone(), rtmp_ts(*ts), false),
        Media::Audio(d, ts) => session.send_audio_data(stream_id, d.clone(), rtmp_ts(*ts), false),
        Media::Info(i) => session.send_metadata(stream_id, &info_to_rtmp(i)),
    }
    .map_err(|e| anyhow!("{e:?}"))
}

/// Messages a player's session writes at once, at most.
const MAX_BATCH: usize = 64;

/// Where a player's messages are made: its session (metadata) and the
/// server's shared chunks (audio and video).
struct Player<'a> {
    session: &'a mut ServerSession,
    stream_id: u32,
    chunks: &'a SharedChunks,
}

/// Sends `batch` to a player: on the RTMP stream, in one write, or, with
/// QUIC's frames mapping, audio and video frames each on their own QUIC
/// stream (configuration and metadata stay on the ordered RTMP stream).
async fn send_to_player(
    sock: &mut Transport,
    to: Player<'_>,
    batch: &[Media],
    out: &mut Vec<u8>,
    sent_on_streams: &mut u64,
) -> Result<()> {
    out.clear();
    for m in batch {
        if sock.frames_conn().is_some()
            && let Some((video, d, ts)) = m.as_av()
            && !m.is_config()
        {
            // What the RTMP stream holds so far goes first, in order.
            if !out.is_empty() {
                sock.write_all(out).await?;
                out.clear();
            }
            let conn = sock.frames_conn().expect("checked above");
            *sent_on_streams += 1;
            let kind = if video {
                quic::MSG_VIDEO
            } else {
                quic::MSG_AUDIO
            };
            quic::write_message(conn, kind, ts, d, *sent_on_streams).await?;
            continue;
        }
        match to.chunks.chunks(to.stream_id, m)? {
            // One message alone is written from the shared chunks, uncopied.
            Some(c) if batch.len() == 1 => {
                sock.write_all(&c).await?;
                return Ok(());
            }
            Some(c) => out.extend_from_slice(&c),
            None => out.extend_from_slice(&rtmp_message(to.session, to.stream_id, m)?.bytes),
        }
    }
    if !out.is_empty() {
        sock.write_all(out).await?;
    }
    Ok(())
}

/// Which entry of the relay's stats holds a player's transport figures.
#[derive(Copy, Clone, Debug)]
enum PlayerSlot {
    Tcp(usize),
    Quic(usize),
}

impl PlayerSlot {
    /// A new entry for a player on `sock` (QUIC or TCP).
    fn new(stats: &Mutex<RtmpServerStats>, sock: &Transport) -> Result<PlayerSlot> {
        let mut st = stats.lock().map_err(|_| anyhow!("poisoned"))?;
        Ok(if sock.quic_stats().is_some() {
            st.to_players_quic.push(QuicStats::default());
            PlayerSlot::Quic(st.to_players_quic.len() - 1)
        } else {
            st.to_players_tcp.push(TcpInfo::default());
            PlayerSlot::Tcp(st.to_players_tcp.len() - 1)
        })
    }
}

fn record_player_link(stats: &Mutex<RtmpServerStats>, slot: PlayerSlot, sock: &Transport) {
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
