//! RTMP's two ends as state machines over a byte stream: bytes in
//! (`handle_input`), bytes out (`pending` / `consume`), events and media
//! out, no I/O and no clock of their own. Virtual time drives them over
//! quinn-proto's streams; whatever carries the bytes (a QUIC stream, a
//! userspace TCP) only moves them.
//!
//! The client runs the whole set-up by itself (handshake, `connect`, then
//! `publish` or `play`) and says which step finished when, so the driver
//! can time them as the async clients do. The server end is the relay's
//! glue between an rml_rtmp server session and the hub: it admits a
//! publisher by stream key, publishes what arrives, and feeds a player
//! its subscription (the catch-up first) as fast as the transport takes
//! it.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, ServerSession, ServerSessionConfig, ServerSessionEvent,
    ServerSessionResult, StreamMetadata,
};

use super::{feed, info_from_rtmp, info_to_rtmp, rtmp_ts};
use crate::media::source::Message;
use crate::relay::{APP, Hub, Media, Subscription};

/// What a client is for.
#[derive(Clone, Debug)]
pub enum Goal {
    Publish(String),
    Play(String),
}

/// One media message a player received: (video, body, RTMP timestamp).
pub type AvMessage = (bool, Bytes, u32);

/// The output side both ends share: bytes waiting for the transport
/// (taken from the front as the transport accepts them, without moving
/// the rest).
#[derive(Default)]
struct Outbox {
    bytes: bytes::BytesMut,
}

impl Outbox {
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }
    fn consume(&mut self, n: usize) {
        let n = n.min(self.bytes.len());
        bytes::Buf::advance(&mut self.bytes, n);
    }
}

/// Runs the handshake's next bytes; the session's first input once done.
fn handshake_step(hs: &mut Handshake, input: &[u8], out: &mut Outbox) -> Result<Option<Vec<u8>>> {
    match hs
        .process_bytes(input)
        .map_err(|e| anyhow!("RTMP handshake: {e:?}"))?
    {
        HandshakeProcessResult::InProgress { response_bytes } => {
            out.push(&response_bytes);
            Ok(None)
        }
        HandshakeProcessResult::Completed {
            response_bytes,
            remaining_bytes,
        } => {
            out.push(&response_bytes);
            Ok(Some(remaining_bytes))
        }
    }
}

/// An RTMP client (publisher or player) over a byte stream.
pub struct ClientMachine {
    goal: Goal,
    handshake: Option<Handshake>,
    session: Option<ClientSession>,
    out: Outbox,
    ready: bool,
    /// Set-up steps finished since the driver last asked.
    steps: VecDeque<&'static str>,
    media: VecDeque<AvMessage>,
}

impl ClientMachine {
    /// A client whose first bytes (C0 and C1) are already waiting.
    pub fn new(goal: Goal) -> Result<ClientMachine> {
        let mut hs = Handshake::new(PeerType::Client);
        let mut out = Outbox::default();
        out.push(
            &hs.generate_outbound_p0_and_p1()
                .map_err(|e| anyhow!("RTMP handshake: {e:?}"))?,
        );
        Ok(ClientMachine {
            goal,
            handshake: Some(hs),
            session: None,
            out,
            ready: false,
            steps: VecDeque::new(),
            media: VecDeque::new(),
        })
    }

    /// Bytes from the server.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<()> {
        if let Some(hs) = &mut self.handshake {
            let Some(rest) = handshake_step(hs, input, &mut self.out)? else {
                return Ok(());
            };
            self.handshake = None;
            self.steps.push_back("rtmp_handshake");
            let (session, results) =
                ClientSession::new(ClientSessionConfig::new()).map_err(|e| anyhow!("{e:?}"))?;
            self.session = Some(session);
            self.results(results)?;
            self.feed(&rest)?;
            let req = self
                .session_mut()?
                .request_connection(APP.to_string())
                .map_err(|e| anyhow!("{e:?}"))?;
            return self.results(vec![req]);
        }
        self.feed(input)
    }

    fn feed(&mut self, input: &[u8]) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let session = self.session_mut()?;
        let r = feed(|| session.handle_input(input))?;
        self.results(r)
    }

    fn session_mut(&mut self) -> Result<&mut ClientSession> {
        self.session
            .as_mut()
            .ok_or_else(|| anyhow!("RTMP: no session before the handshake"))
    }

    fn results(&mut self, results: Vec<ClientSessionResult>) -> Result<()> {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.out.push(&p.bytes),
                ClientSessionResult::RaisedEvent(e) => self.event(e)?,
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn event(&mut self, e: ClientSessionEvent) -> Result<()> {
        match e {
            ClientSessionEvent::ConnectionRequestAccepted => {
                self.steps.push_back("rtmp_connect");
                let goal = self.goal.clone();
                let session = self.session_mut()?;
                let req = match goal {
                    Goal::Publish(key) => session.request_publishing(key, PublishRequestType::Live),
                    Goal::Play(key) => session.request_playback(key),
                }
                .map_err(|e| anyhow!("{e:?}"))?;
                self.results(vec![req])?;
            }
            ClientSessionEvent::PublishRequestAccepted => {
                self.ready = true;
                self.steps.push_back("publish");
            }
            ClientSessionEvent::PlaybackRequestAccepted => {
                self.ready = true;
                self.steps.push_back("play");
            }
            ClientSessionEvent::ConnectionRequestRejected { description } => {
                bail!("the server refused the connection: {description}")
            }
            ClientSessionEvent::UnhandleableOnStatusCode { code } if code.contains("BadName") => {
                bail!("the server refused the stream ({code})")
            }
            ClientSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => self.media.push_back((true, data, timestamp.value)),
            ClientSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => self.media.push_back((false, data, timestamp.value)),
            _ => {}
        }
        Ok(())
    }

    /// Publishing or playing was accepted.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The next set-up step that finished (for the connect figures).
    pub fn poll_step(&mut self) -> Option<&'static str> {
        self.steps.pop_front()
    }

    /// The next media message a player received.
    pub fn poll_media(&mut self) -> Option<AvMessage> {
        self.media.pop_front()
    }

    /// A publisher's onMetaData.
    pub fn publish_metadata(&mut self, m: &StreamMetadata) -> Result<()> {
        let r = self
            .session_mut()?
            .publish_metadata(m)
            .map_err(|e| anyhow!("{e:?}"))?;
        self.results(vec![r])
    }

    /// A publisher's audio or video message on the RTMP stream.
    pub fn publish(&mut self, m: &Message) -> Result<()> {
        let session = self.session_mut()?;
        let ts = rtmp_ts(m.timestamp);
        let r = if m.video {
            session.publish_video_data(m.data.clone(), ts, false)
        } else {
            session.publish_audio_data(m.data.clone(), ts, false)
        }
        .map_err(|e| anyhow!("{e:?}"))?;
        self.results(vec![r])
    }

    /// Bytes waiting for the transport.
    pub fn pending(&self) -> &[u8] {
        &self.out.bytes
    }

    /// The transport took the first `n` pending bytes.
    pub fn consume(&mut self, n: usize) {
        self.out.consume(n);
    }
}

/// What a server end carries once set up.
enum Role {
    Setup,
    Publishing(String),
    Playing { stream_id: u32, sub: Subscription },
}

/// The relay's end of one RTMP session, on the hub.
pub struct ServerMachine {
    hub: Hub,
    handshake: Option<Handshake>,
    session: Option<ServerSession>,
    out: Outbox,
    role: Role,
    /// QUIC's frames mapping: a player's audio and video frames go on
    /// their own streams (`poll_frame`), configuration stays on this one.
    frames: bool,
    frames_out: VecDeque<Media>,
}

impl ServerMachine {
    pub fn new(hub: Hub, frames: bool) -> ServerMachine {
        ServerMachine {
            hub,
            handshake: Some(Handshake::new(PeerType::Server)),
            session: None,
            out: Outbox::default(),
            role: Role::Setup,
            frames,
            frames_out: VecDeque::new(),
        }
    }

    /// Bytes from the client at `now`.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> Result<()> {
        if let Some(hs) = &mut self.handshake {
            let Some(rest) = handshake_step(hs, input, &mut self.out)? else {
                return Ok(());
            };
            self.handshake = None;
            let (session, results) =
                ServerSession::new(ServerSessionConfig::new()).map_err(|e| anyhow!("{e:?}"))?;
            self.session = Some(session);
            self.results(now, results)?;
            return self.feed(now, &rest);
        }
        self.feed(now, input)
    }

    fn feed(&mut self, now: Instant, input: &[u8]) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let session = self.session_mut()?;
        let r = feed(|| session.handle_input(input))?;
        self.results(now, r)
    }

    fn session_mut(&mut self) -> Result<&mut ServerSession> {
        self.session
            .as_mut()
            .ok_or_else(|| anyhow!("RTMP: no session before the handshake"))
    }

    fn results(&mut self, now: Instant, results: Vec<ServerSessionResult>) -> Result<()> {
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => self.out.push(&p.bytes),
                ServerSessionResult::RaisedEvent(e) => self.event(now, e)?,
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    fn accept(&mut self, now: Instant, request_id: u32) -> Result<()> {
        let r = self
            .session_mut()?
            .accept_request(request_id)
            .map_err(|e| anyhow!("{e:?}"))?;
        self.results(now, r)
    }

    fn event(&mut self, now: Instant, e: ServerSessionEvent) -> Result<()> {
        match e {
            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                self.accept(now, request_id)?
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key: key,
                ..
            } => {
                if !self.hub.claim(&key)? {
                    let r = self
                        .session_mut()?
                        .reject_request(
                            request_id,
                            "NetStream.Publish.BadName",
                            "wrong stream key, or already publishing",
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    self.results(now, r)?;
                    bail!("refused a publish on \"{}\"", crate::redact::key(&key));
                }
                self.role = Role::Publishing(key);
                self.accept(now, request_id)?;
            }
            ServerSessionEvent::PlayStreamRequested {
                request_id,
                stream_key: key,
                stream_id,
                ..
            } => {
                self.accept(now, request_id)?;
                let sub = self.hub.subscribe(&key)?;
                // A late player first gets what it missed: metadata, the
                // sequence headers and the GOP so far.
                for m in &sub.catch_up {
                    self.send(now, stream_id, m)?;
                }
                self.role = Role::Playing { stream_id, sub };
            }
            ServerSessionEvent::StreamMetadataChanged {
                stream_key: key,
                metadata,
                ..
            } => self
                .hub
                .publish_at(&key, Media::Info(info_from_rtmp(&metadata)), now)?,
            ServerSessionEvent::VideoDataReceived {
                stream_key: key,
                data,
                timestamp,
                ..
            } => self
                .hub
                .publish_at(&key, Media::Video(data, timestamp.value), now)?,
            ServerSessionEvent::AudioDataReceived {
                stream_key: key,
                data,
                timestamp,
                ..
            } => self
                .hub
                .publish_at(&key, Media::Audio(data, timestamp.value), now)?,
            _ => {}
        }
        Ok(())
    }

    /// A frames-mapping publisher's message, off its own stream.
    pub fn handle_frame(&mut self, now: Instant, video: bool, data: Bytes, ts: u32) -> Result<()> {
        if let Role::Publishing(key) = &self.role {
            self.hub.publish_at(key, Media::av(video, data, ts), now)?;
        }
        Ok(())
    }

    /// `m` towards the player: on this stream, or (frames mapping, audio
    /// and video frames) queued for a stream of its own.
    fn send(&mut self, now: Instant, stream_id: u32, m: &Media) -> Result<()> {
        if self.frames && m.as_av().is_some() && !m.is_config() {
            self.frames_out.push_back(m.clone());
            return Ok(());
        }
        let session = self.session_mut()?;
        let p = match m {
            Media::Video(d, ts) => {
                session.send_video_data(stream_id, d.clone(), rtmp_ts(*ts), false)
            }
            Media::Audio(d, ts) => {
                session.send_audio_data(stream_id, d.clone(), rtmp_ts(*ts), false)
            }
            Media::Info(i) => session.send_metadata(stream_id, &info_to_rtmp(i)),
        }
        .map_err(|e| anyhow!("{e:?}"))?;
        self.out.push(&p.bytes);
        self.hub.note_sent_at(m, now);
        Ok(())
    }

    /// A player's next messages from the hub, while the transport has
    /// taken everything before them: a backed-up transport leaves them in
    /// the subscription, as a blocked write does in the async relay.
    /// Whether it took any.
    pub fn pump(&mut self, now: Instant) -> Result<bool> {
        let mut took = false;
        loop {
            if !self.out.bytes.is_empty() || !self.frames_out.is_empty() {
                return Ok(took);
            }
            let Role::Playing { stream_id, sub } = &mut self.role else {
                return Ok(took);
            };
            let stream_id = *stream_id;
            let Ok(m) = sub.rx.try_recv() else {
                return Ok(took);
            };
            took = true;
            self.send(now, stream_id, &m)?;
        }
    }

    /// The next frame for a stream of its own (frames mapping); the driver
    /// notes it sent ([`Self::note_sent`]) once written.
    pub fn poll_frame(&mut self) -> Option<Media> {
        self.frames_out.pop_front()
    }

    /// Puts back a frame [`Self::poll_frame`] gave that could not go yet
    /// (no stream could be opened).
    pub fn requeue_frame(&mut self, m: Media) {
        self.frames_out.push_front(m);
    }

    /// The hub learns that `m` (from [`Self::poll_frame`]) left at `now`.
    pub fn note_sent(&self, m: &Media, now: Instant) {
        self.hub.note_sent_at(m, now);
    }

    pub fn is_player(&self) -> bool {
        matches!(self.role, Role::Playing { .. })
    }

    pub fn pending(&self) -> &[u8] {
        &self.out.bytes
    }

    pub fn consume(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// The session ended: a publisher's stream key is free again.
    pub fn close(&mut self) {
        if let Role::Publishing(key) = std::mem::replace(&mut self.role, Role::Setup) {
            self.hub.release(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moves bytes both ways until neither end has anything to say.
    fn try_exchange(c: &mut ClientMachine, s: &mut ServerMachine, now: Instant) -> Result<()> {
        for _ in 0..20 {
            let up = c.pending().to_vec();
            c.consume(up.len());
            if !up.is_empty() {
                s.handle_input(now, &up)?;
            }
            s.pump(now)?;
            let down = s.pending().to_vec();
            s.consume(down.len());
            if !down.is_empty() {
                c.handle_input(&down)?;
            }
            if up.is_empty() && down.is_empty() {
                return Ok(());
            }
        }
        bail!("the two ends kept talking")
    }

    fn exchange(c: &mut ClientMachine, s: &mut ServerMachine, now: Instant) {
        try_exchange(c, s, now).unwrap()
    }

    /// A publisher and a player meet through the hub: the set-up steps come
    /// in order, a wrong key is refused, and a frame arrives intact.
    #[test]
    fn a_publisher_reaches_a_player_through_the_hub() {
        let hub = Hub::new("key");
        let now = Instant::now();
        let mut player = ClientMachine::new(Goal::Play("key".into())).unwrap();
        let mut relay_p = ServerMachine::new(hub.clone(), false);
        exchange(&mut player, &mut relay_p, now);
        assert!(player.is_ready());
        let steps: Vec<_> = std::iter::from_fn(|| player.poll_step()).collect();
        assert_eq!(steps, ["rtmp_handshake", "rtmp_connect", "play"]);

        let mut thief = ClientMachine::new(Goal::Publish("other".into())).unwrap();
        let mut relay_t = ServerMachine::new(hub.clone(), false);
        let e = try_exchange(&mut thief, &mut relay_t, now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused a publish"), "{e}");

        let mut publisher = ClientMachine::new(Goal::Publish("key".into())).unwrap();
        let mut relay = ServerMachine::new(hub.clone(), false);
        exchange(&mut publisher, &mut relay, now);
        assert!(publisher.is_ready());
        // An AVC key frame tag (FLV: key + AVC, NALU packet, no offset).
        let data = Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x65]);
        publisher
            .publish(&Message {
                video: true,
                data: data.clone(),
                timestamp: 40,
                capture: netem::Time::ZERO,
                seq: None,
            })
            .unwrap();
        exchange(&mut publisher, &mut relay, now);
        exchange(&mut player, &mut relay_p, now);
        let (video, got, ts) = player.poll_media().expect("the player got the frame");
        assert!(video);
        assert_eq!((got, ts), (data, 40));
        relay.close();
        assert!(hub.claim("key").unwrap(), "closing frees the key");
    }
}
