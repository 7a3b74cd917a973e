//! RTMP's publisher and player clients over a transport (TCP or QUIC):
//! rml_rtmp's sans-IO client session, its bytes moved by these tasks.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use netem::Time;
use netem::time::Clock;
use rml_rtmp::handshake::PeerType;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::abr_probe::{AbrProbe, write_sampling};
use super::quic;
use super::transport::Transport;
use super::{feed, handshake, rtmp_ts};
use crate::media::abr::{Abr, AbrConfig};
use crate::media::player::Player;
use crate::media::source::{Source, unpack};
use crate::media::wallclock::{ForeignFrames, WallClock};
use crate::publisher::{AbrReport, ConnectSteps, PublisherStats, precise_sleep_until};
use crate::relay::APP;

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
        let n = tokio::time::timeout(SERVER_ANSWER, sock.read(buf))
            .await
            .context("waiting for the RTMP server")??;
        if n == 0 {
            bail!("the server closed the connection (wrong stream key?)");
        }
        events = client_results(sock, feed(|| session.handle_input(&buf[..n]))?).await?;
    }
}

/// How long a client waits for each answer of the server while it sets a
/// session up (the handshake, `connect`, publish or play): as long as the
/// relay gives a connection to start publishing or playing
/// ([`super::server::SETUP_TIMEOUT`]).
const SERVER_ANSWER: Duration = super::server::SETUP_TIMEOUT;

/// The RTMP handshake and `connect`; `steps` gets each one's end.
async fn client_connect(
    sock: &mut Transport,
    buf: &mut [u8],
    steps: &mut ConnectSteps,
) -> Result<ClientSession> {
    // Bounded like every other wait of the set-up: a server that accepts
    // the connection and never answers (the wrong port, a stalled path)
    // fails here with its stage named instead of holding the run until its
    // deadline.
    let remaining = tokio::time::timeout(SERVER_ANSWER, handshake(sock, PeerType::Client))
        .await
        .map_err(|_| anyhow!("no RTMP handshake from the server within {SERVER_ANSWER:?}"))??;
    steps.done("rtmp_handshake");
    let (mut session, results) =
        ClientSession::new(ClientSessionConfig::new()).map_err(|e| anyhow!("{e:?}"))?;
    client_results(sock, results).await?;
    client_results(sock, feed(|| session.handle_input(&remaining))?).await?;
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
    let clock = steps.clock();
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
    let metadata = metadata_of(&mut source);
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
                    client_results(&mut sock, feed(|| session.handle_input(&buf[..n]))?).await?;
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
            let ts = rtmp_ts(m.timestamp);
            if let Some(conn) = &frames {
                // Frames mapping: each frame on its own stream.
                stats.count(&m, start);
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
            stats.count(&m, start);
            let r = if m.video {
                session.publish_video_data(m.data, ts, false)
            } else {
                session.publish_audio_data(m.data, ts, false)
            }
            .map_err(|e| anyhow!("{e:?}"))?;
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

/// The onMetaData a publisher of `source` sends.
pub(crate) fn metadata_of(source: &mut Source) -> StreamMetadata {
    match source.encoder_mut() {
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
    }
}

/// Connects and asks to play `stream_key`; returns the session and what
/// arrived with the acceptance.
async fn start_playback(
    sock: &mut Transport,
    stream_key: &str,
    clock: Clock,
    buf: &mut [u8],
) -> Result<(ClientSession, Vec<ClientSessionEvent>)> {
    let mut steps = ConnectSteps::new(clock, clock.time(std::time::Instant::now()));
    let mut session = client_connect(sock, buf, &mut steps).await?;
    let req = session
        .request_playback(stream_key.to_string())
        .map_err(|e| anyhow!("{e:?}"))?;
    let early = client_until(sock, &mut session, buf, req, |e| {
        matches!(e, ClientSessionEvent::PlaybackRequestAccepted)
    })
    .await?;
    Ok((session, early))
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
    let (mut session, mut early) = start_playback(&mut sock, stream_key, clock, &mut buf).await?;
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
    let mut uni = sock.frames_conn().cloned().map(quic::spawn_uni_reader);
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
                    Some((video, data, ts)) => frame(video, &data, ts, player, now),
                    None => uni = None,
                }
            }
            r = sock.read(&mut buf) => {
                let n = r?;
                let now = clock.time(std::time::Instant::now());
                if n == 0 {
                    bail!("the server closed the playback connection");
                }
                let events = client_results(&mut sock, feed(|| session.handle_input(&buf[..n]))?).await?;
                for (video, data, ts) in events.into_iter().filter_map(media_of) {
                    frame(video, &data, ts, player, now);
                }
            }
        }
    }
}

/// What a light viewer ([`watch`]) sees: its play request accepted, then
/// audio and video messages, each at its arrival instant.
#[derive(Debug)]
pub enum Watched<'a> {
    Accepted(Time),
    Media {
        at: Time,
        video: bool,
        body: &'a [u8],
    },
}

/// A light RTMP viewer: connects, plays `stream_key` until `end` and hands
/// each message to `on` as it arrives, with no player model and no records
/// of its own (the viewer fleet keeps what it needs, for thousands of
/// viewers in one process). TCP only.
pub async fn watch(
    mut sock: Transport,
    stream_key: &str,
    clock: Clock,
    end: Time,
    mut on: impl FnMut(Watched<'_>),
) -> Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let (mut session, early) = start_playback(&mut sock, stream_key, clock, &mut buf).await?;
    let now = clock.time(std::time::Instant::now());
    on(Watched::Accepted(now));
    let mut deliver = |events: Vec<ClientSessionEvent>, at: Time| {
        for (video, body, _) in events.into_iter().filter_map(media_of) {
            on(Watched::Media {
                at,
                video,
                body: &body,
            });
        }
    };
    deliver(early, now);
    let until = tokio::time::sleep_until(clock.instant(end).into());
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => return Ok(()),
            r = sock.read(&mut buf) => {
                let n = r?;
                if n == 0 {
                    bail!("the server closed the playback connection");
                }
                let at = clock.time(std::time::Instant::now());
                let events = feed(|| session.handle_input(&buf[..n]))?;
                // Acknowledgements go back at once; a server waiting for
                // them would otherwise stop sending.
                let events = tokio::select! {
                    r = client_results(&mut sock, events) => r?,
                    _ = &mut until => return Ok(()),
                };
                deliver(events, at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::media::player::{LatePolicy, LatencyControl, PlayerConfig};
    use crate::protocol::rtmp::server::serve;
    use crate::relay::Hub;

    /// The `tests/check.rs` hang (#22): a player whose display refresh was
    /// already due when it looked at its timer, and to which no more input
    /// came (the stream had ended), waited for input for ever: the old loop
    /// only slept `if wake > now`. With `refresh = "1ms"` (that test's
    /// scenario) a refresh is due whenever the task ran 1 ms late, and at the
    /// end of a stream nothing else wakes the loop. Here the refresh is due
    /// from the start (the player's first tick is at 0, the clock began
    /// earlier) and nobody publishes: play must still return at its end.
    #[test]
    fn a_player_with_a_refresh_due_and_no_input_returns_at_its_end() {
        let rt = crate::runtime::runtime().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            let stats = Arc::new(Mutex::new(Default::default()));
            let server = tokio::spawn(serve(listener, None, Hub::new("k"), None, stop, stats));
            let clock = Clock::new(std::time::Instant::now());
            tokio::time::sleep(Duration::from_millis(20)).await;
            let cfg = PlayerConfig {
                target_delay: Duration::from_millis(300),
                refresh: Duration::from_millis(1),
                late: LatePolicy::Wait,
                ordered: true,
                latency_control: LatencyControl::None,
            };
            let mut player = Player::new(cfg, Time::ZERO);
            let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
            let end = clock.time(std::time::Instant::now()) + Duration::from_millis(300);
            let played = tokio::time::timeout(
                Duration::from_secs(5),
                play(Transport::Tcp(sock), "k", &mut player, clock, end),
            )
            .await;
            let _ = stop_tx.send(true);
            let _ = server.await;
            assert!(
                matches!(played, Ok(Ok(()))),
                "play did not return at its end: {played:?}"
            );
        });
    }
}
