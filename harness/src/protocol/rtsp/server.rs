//! RTSP's server side on the relay's hub: the tokio edge around the sans-IO
//! [`ServerSession`] and [`TrackIngest`]. It accepts publishers on its TCP
//! port; a session that RECORDs claims its stream key on the hub and
//! publishes what its tracks carry; the key is released when the session
//! ends (TEARDOWN, silence, an error, the connection closed, or the relay
//! stopping).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use netem::time::Clock;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::ingest::{TrackIngest, TrackStats};
use super::session::{Event, Limits, ServerSession};
use crate::relay::Hub;

/// What RTSP's server side saw (results.json's `relay.rtsp`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RtspServerStats {
    pub rtsp: Vec<SessionStats>,
}

/// One publisher's session.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SessionStats {
    pub peer: String,
    /// Whether it recorded onto the hub.
    pub recorded: bool,
    pub tracks: Vec<TrackStats>,
    /// Interleaved frames outside a recording track.
    pub stray_frames: u64,
    /// Why it ended.
    pub ended: String,
}

impl crate::protocol::Stats for RtspServerStats {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::protocol::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Accepts publishers until `stop` changes; each session's statistics go
/// to `stats` as it ends.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<RtspServerStats>>,
) {
    let mut sessions = tokio::task::JoinSet::new();
    let mut next_id: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((sock, peer)) = accepted else { continue };
                let _ = sock.set_nodelay(true);
                next_id += 1;
                let id = format!("{:08x}", 0x6c61_0000 + next_id);
                let (hub, stop, stats) = (hub.clone(), stop.clone(), stats.clone());
                sessions.spawn(async move {
                    let s = session(sock, id, hub, limits, stop).await;
                    if let Ok(mut st) = stats.lock() {
                        st.rtsp.push(SessionStats { peer: peer.to_string(), ..s });
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    // Sessions see the same stop and end with their statistics.
    while sessions.join_next().await.is_some() {}
}

/// One connection, until it ends.
async fn session(
    mut sock: TcpStream,
    id: String,
    hub: Hub,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> SessionStats {
    let clock = Clock::new(Instant::now());
    let mut s = ServerSession::new(id, hub.stream_key(), limits, clock.time(Instant::now()));
    let mut tracks: Vec<TrackIngest> = Vec::new();
    let mut claimed: Option<String> = None;
    let mut out = SessionStats::default();
    let mut buf = vec![0u8; 64 * 1024];
    let ended = 'run: loop {
        // Replies first, then what happened.
        while let Some(bytes) = s.poll_transmit() {
            if let Err(e) = sock.write_all(&bytes).await {
                break 'run format!("writing: {e}");
            }
        }
        while let Some(event) = s.poll_event() {
            match event {
                Event::Announced { key, tracks: t, .. } => {
                    tracks = t.into_iter().map(TrackIngest::new).collect();
                    claimed = Some(key);
                }
                Event::Recording => {
                    let key = claimed.clone().unwrap_or_default();
                    match hub.claim(&key) {
                        Ok(true) => out.recorded = true,
                        _ => {
                            claimed = None;
                            break 'run format!("stream \"{key}\" is already published");
                        }
                    }
                }
                Event::Rtp { track, packet } => {
                    if let (Some(t), Some(key)) = (tracks.get_mut(track), &claimed) {
                        for m in t.rtp(&packet) {
                            let _ = hub.publish(key, m);
                        }
                    }
                }
                Event::Rtcp { track, packet } => {
                    if let Some(t) = tracks.get_mut(track) {
                        t.rtcp(&packet);
                    }
                }
                Event::Closed { reason } => break 'run reason,
            }
        }
        let deadline = s
            .poll_timeout()
            .map(|t| clock.instant(t))
            .unwrap_or_else(|| Instant::now() + limits.timeout);
        tokio::select! {
            read = sock.read(&mut buf) => match read {
                Ok(0) => break 'run "the publisher closed the connection".into(),
                Ok(n) => s.input(&buf[..n], clock.time(Instant::now())),
                Err(e) => break 'run format!("reading: {e}"),
            },
            _ = tokio::time::sleep_until(deadline.into()) => s.handle_timeout(clock.time(Instant::now())),
            _ = stop.changed() => break 'run "the relay stopped".into(),
        }
    };
    if out.recorded
        && let Some(key) = &claimed
    {
        hub.release(key);
    }
    tracing::info!("RTSP session ended: {ended}");
    out.tracks = tracks.into_iter().map(|t| t.stats).collect();
    out.stray_frames = s.stray_frames;
    out.ended = ended;
    out
}
