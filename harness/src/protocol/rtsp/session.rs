//! One publisher's RTSP connection to the relay, as a sans-IO state
//! machine in the style of quinn-proto: bytes and `now` in
//! ([`ServerSession::input`]), replies out ([`ServerSession::poll_transmit`]),
//! what happened out ([`ServerSession::poll_event`]: the tracks announced,
//! recording started, each interleaved RTP or RTCP packet, the end), and a
//! deadline ([`ServerSession::poll_timeout`]) after which a silent session
//! ends. Messages are parsed with `rtsp-types`; the SDP with
//! [`super::sdp`].
//!
//! RECORD flow (RFC 2326 appendix A): OPTIONS, ANNOUNCE with the SDP (the
//! stream key in the URL path, checked), a SETUP per track, RECORD, then
//! media until TEARDOWN. A track's transport is TCP-interleaved (`$`-framed
//! RTP and RTCP on this connection, passed on as events) or UDP
//! (`client_port=`; the reply names the relay's `server_port`, and the
//! datagrams arrive at the I/O edge's UDP sockets, not here).
//! GET_PARAMETER and SET_PARAMETER keep the session alive. Every reply
//! echoes the request's CSeq. Wrong session: 454; wrong state: 455;
//! a transport the relay does not take (multicast, UDP when it has no UDP
//! ports): 461.
//! Anything that is not RTSP, or a message past the limits, ends the
//! session with the reason.

use std::collections::VecDeque;
use std::time::Duration;

use netem::Time;
use rtsp_types::headers::{self, Transports};
use rtsp_types::{Message, Method, ParseError, Request, Response, StatusCode, Version};

use super::auth::Credentials;
use super::sdp::{self, Track};

/// Bounds a client cannot push past.
#[derive(Copy, Clone, Debug)]
pub struct Limits {
    /// Buffered bytes of one incomplete message (headers and body, or an
    /// interleaved frame: at most 4 + 65535).
    pub max_message: usize,
    /// How long a session may stay silent (RFC 2326's default: 60 s).
    pub timeout: Duration,
    /// How long one message may take from its first byte to its last: a
    /// client that trickles a request a byte at a time (slowloris) is never
    /// silent, and would hold one of the relay's sessions for ever.
    pub message_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 4 + 65535 + 1024,
            timeout: Duration::from_secs(60),
            message_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the session is (RFC 2326 A.2's server states for RECORD).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Connected; nothing announced yet.
    Init,
    /// The tracks are known; SETUPs come next.
    Announced,
    /// At least one track is set up.
    Ready,
    Recording,
    Closed,
}

/// What the session reports to its I/O edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// ANNOUNCE accepted: the stream `key` of application `app` will carry
    /// these tracks.
    Announced {
        app: String,
        key: String,
        tracks: Vec<Track>,
    },
    /// RECORD accepted: media follows, over each track's transport (None:
    /// a track not set up, whose media is not expected).
    Recording { transports: Vec<Option<Transport>> },
    /// An interleaved RTP packet of track `track` (index into the tracks).
    Rtp { track: usize, packet: Vec<u8> },
    /// An interleaved RTCP packet of track `track`.
    Rtcp { track: usize, packet: Vec<u8> },
    /// The session ended (TEARDOWN, silence, or a fatal error) and why.
    Closed { reason: String },
}

/// How a track's RTP and RTCP travel.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `$`-framed on the RTSP connection, on these channels.
    Interleaved { rtp: u8, rtcp: u8 },
    /// Datagrams from these ports of the client's host to the relay's
    /// UDP ports.
    Udp { client_rtp: u16, client_rtcp: u16 },
}

/// A track and, once set up, its transport.
#[derive(Clone, Debug)]
struct SetUp {
    track: Track,
    transport: Option<Transport>,
}

/// One RTSP publisher's session.
#[derive(Debug)]
pub struct ServerSession {
    id: String,
    /// The only stream key the relay accepts.
    stream_key: String,
    limits: Limits,
    state: State,
    inbuf: Vec<u8>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    tracks: Vec<SetUp>,
    /// The relay's RTP and RTCP ports as the client reaches them (None:
    /// UDP transport refused).
    server_ports: Option<(u16, u16)>,
    /// The credentials every request but OPTIONS must prove, if any.
    auth: Option<Credentials>,
    last_heard: Time,
    /// When the incomplete message in `inbuf` began.
    partial_since: Option<Time>,
    /// Interleaved frames before RECORD or on no track's channel.
    pub stray_frames: u64,
}

impl ServerSession {
    /// A session with identifier `id` (the `Session` header) that admits
    /// only `stream_key`; UDP transport is offered when the relay has
    /// `server_ports` (RTP, RTCP) for it.
    pub fn new(
        id: impl Into<String>,
        stream_key: impl Into<String>,
        limits: Limits,
        server_ports: Option<(u16, u16)>,
        now: Time,
    ) -> Self {
        ServerSession {
            id: id.into(),
            stream_key: stream_key.into(),
            limits,
            state: State::Init,
            inbuf: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            tracks: Vec::new(),
            server_ports,
            auth: None,
            last_heard: now,
            partial_since: None,
            stray_frames: 0,
        }
    }

    /// Requires `credentials` of every request but OPTIONS (401 with a
    /// challenge otherwise; the session's identifier is the Digest nonce).
    pub fn with_auth(mut self, credentials: Option<Credentials>) -> Self {
        self.auth = credentials;
        self
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes received from the client.
    pub fn input(&mut self, bytes: &[u8], now: Time) {
        if self.state == State::Closed {
            return;
        }
        self.last_heard = now;
        self.inbuf.extend_from_slice(bytes);
        loop {
            let parsed = Message::<Vec<u8>>::parse(&self.inbuf);
            match parsed {
                Ok((message, used)) => {
                    self.inbuf.drain(..used);
                    // What is left began with these bytes.
                    self.partial_since = None;
                    self.handle(message);
                    if self.state == State::Closed {
                        return;
                    }
                }
                Err(ParseError::Incomplete(_)) => {
                    if self.inbuf.len() > self.limits.max_message {
                        self.close(format!("a message over {} bytes", self.limits.max_message));
                    } else if !self.inbuf.is_empty() {
                        self.partial_since.get_or_insert(now);
                    }
                    return;
                }
                Err(ParseError::Error) => {
                    let head: String =
                        String::from_utf8_lossy(&self.inbuf[..self.inbuf.len().min(40)])
                            .chars()
                            .map(|c| if c.is_control() { '.' } else { c })
                            .collect();
                    self.close(format!("not RTSP: \"{head}\""));
                    return;
                }
            }
        }
    }

    /// Media arrived outside the connection (UDP): the client is alive.
    pub fn keep_alive(&mut self, now: Time) {
        self.last_heard = self.last_heard.max(now);
    }

    /// The next bytes to send to the client.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the session ends if the client stays silent.
    /// (Or, mid-message, when the message's time is up.)
    pub fn poll_timeout(&self) -> Option<Time> {
        let silent = self.last_heard + self.limits.timeout;
        let partial = self.partial_since.map(|t| t + self.limits.message_timeout);
        (self.state != State::Closed).then(|| partial.map_or(silent, |p| p.min(silent)))
    }

    /// Ends the session if its deadline has passed.
    pub fn handle_timeout(&mut self, now: Time) {
        if self
            .partial_since
            .is_some_and(|t| now >= t + self.limits.message_timeout)
            && self.state != State::Closed
        {
            self.close(format!(
                "a message still incomplete after {} s",
                self.limits.message_timeout.as_secs_f64()
            ));
        } else if self.poll_timeout().is_some_and(|t| now >= t) {
            self.close(format!(
                "silent for {} s",
                self.limits.timeout.as_secs_f64()
            ));
        }
    }

    fn close(&mut self, reason: String) {
        self.state = State::Closed;
        self.inbuf.clear();
        self.events.push_back(Event::Closed { reason });
    }

    fn handle(&mut self, message: Message<Vec<u8>>) {
        match message {
            Message::Request(r) => self.request(r),
            // A client's answer to nothing the server asked: ignored.
            Message::Response(_) => {}
            Message::Data(d) => {
                let channel = d.channel_id();
                let found = self.tracks.iter().enumerate().find_map(|(i, t)| {
                    let Some(Transport::Interleaved { rtp, rtcp }) = t.transport else {
                        return None;
                    };
                    (channel == rtp)
                        .then_some((i, true))
                        .or((channel == rtcp).then_some((i, false)))
                });
                match (self.state, found) {
                    (State::Recording, Some((track, true))) => self.events.push_back(Event::Rtp {
                        track,
                        packet: d.into_body(),
                    }),
                    (State::Recording, Some((track, false))) => {
                        self.events.push_back(Event::Rtcp {
                            track,
                            packet: d.into_body(),
                        })
                    }
                    _ => self.stray_frames += 1,
                }
            }
        }
    }

    fn request(&mut self, r: Request<Vec<u8>>) {
        let Some(cseq) = r.header(&headers::CSEQ).map(|v| v.as_str().to_string()) else {
            return self.reply(None, StatusCode::BadRequest, &[]);
        };
        let cseq = Some(cseq.as_str());
        // A request in a session names it.
        if let Some(s) = r.header(&headers::SESSION)
            && s.as_str().split(';').next().map(str::trim) != Some(self.id.as_str())
        {
            return self.reply(cseq, StatusCode::SessionNotFound, &[]);
        }
        if *r.method() != Method::Options
            && let Some(auth) = &self.auth
            && !auth.verify(
                r.header(&headers::AUTHORIZATION).map(|v| v.as_str()),
                r.method().into(),
                &self.id,
            )
        {
            let challenge = auth.challenge(&self.id);
            return self.reply(
                cseq,
                StatusCode::Unauthorized,
                &[(headers::WWW_AUTHENTICATE, challenge)],
            );
        }
        match r.method() {
            Method::Options => self.reply(
                cseq,
                StatusCode::Ok,
                &[(
                    headers::PUBLIC,
                    "OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
                        .into(),
                )],
            ),
            Method::Announce => self.announce(cseq, &r),
            Method::Setup => self.setup(cseq, &r),
            Method::Record => match self.state {
                State::Ready => {
                    self.state = State::Recording;
                    let transports = self.tracks.iter().map(|t| t.transport).collect();
                    self.events.push_back(Event::Recording { transports });
                    self.reply(cseq, StatusCode::Ok, &[self.session_header()])
                }
                _ => self.reply(cseq, StatusCode::MethodNotValidInThisState, &[]),
            },
            Method::Teardown => {
                self.reply(cseq, StatusCode::Ok, &[]);
                self.close("TEARDOWN".into());
            }
            Method::GetParameter | Method::SetParameter => {
                self.reply(cseq, StatusCode::Ok, &[self.session_header()])
            }
            _ => self.reply(
                cseq,
                StatusCode::MethodNotAllowed,
                &[(
                    headers::ALLOW,
                    "OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
                        .into(),
                )],
            ),
        }
    }

    fn announce(&mut self, cseq: Option<&str>, r: &Request<Vec<u8>>) {
        if self.state != State::Init {
            return self.reply(cseq, StatusCode::MethodNotValidInThisState, &[]);
        }
        // rtsp://HOST[:PORT]/APP/KEY
        let path = r
            .request_uri()
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        let mut parts = path.trim_matches('/').splitn(2, '/');
        let (app, key) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        if key != self.stream_key {
            return self.reply(cseq, StatusCode::Forbidden, &[]);
        }
        let tracks = match sdp::tracks(r.body()) {
            Ok(t) => t,
            Err(e) => {
                tracing::info!("RTSP ANNOUNCE refused: {e}");
                return self.reply(cseq, StatusCode::UnsupportedMediaType, &[]);
            }
        };
        self.tracks = tracks
            .iter()
            .cloned()
            .map(|track| SetUp {
                track,
                transport: None,
            })
            .collect();
        self.state = State::Announced;
        self.events.push_back(Event::Announced { app, key, tracks });
        self.reply(cseq, StatusCode::Ok, &[])
    }

    fn setup(&mut self, cseq: Option<&str>, r: &Request<Vec<u8>>) {
        if !matches!(self.state, State::Announced | State::Ready) {
            return self.reply(cseq, StatusCode::MethodNotValidInThisState, &[]);
        }
        // The track whose control the URL ends with.
        let url = r
            .request_uri()
            .map(|u| u.as_str().to_string())
            .unwrap_or_default();
        let Some(i) = self.tracks.iter().position(|t| {
            let c = t.track.control.as_str();
            url == c || url.ends_with(&format!("/{c}"))
        }) else {
            return self.reply(cseq, StatusCode::NotFound, &[]);
        };
        let offered = match r.typed_header::<Transports>() {
            Ok(Some(ts)) => ts,
            _ => return self.reply(cseq, StatusCode::UnsupportedTransport, &[]),
        };
        // The first transport offered that the relay takes.
        let Some(transport) = offered.iter().find_map(|t| self.acceptable(t)) else {
            return self.reply(cseq, StatusCode::UnsupportedTransport, &[]);
        };
        if let Transport::Interleaved { rtp, rtcp } = transport {
            let taken = self.tracks.iter().enumerate().any(|(j, t)| {
                j != i
                    && matches!(t.transport, Some(Transport::Interleaved { rtp: a, rtcp: b })
                        if [a, b].contains(&rtp) || [a, b].contains(&rtcp))
            });
            if taken || rtp == rtcp {
                return self.reply(cseq, StatusCode::UnsupportedTransport, &[]);
            }
        }
        self.tracks[i].transport = Some(transport);
        self.state = State::Ready;
        let answer = match transport {
            Transport::Interleaved { rtp, rtcp } => {
                format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp};mode=record")
            }
            Transport::Udp {
                client_rtp,
                client_rtcp,
            } => {
                let (srtp, srtcp) = self.server_ports.unwrap_or_default();
                format!(
                    "RTP/AVP/UDP;unicast;client_port={client_rtp}-{client_rtcp};\
                     server_port={srtp}-{srtcp};mode=record"
                )
            }
        };
        self.reply(
            cseq,
            StatusCode::Ok,
            &[(headers::TRANSPORT, answer), self.session_header()],
        )
    }

    /// `t` as a transport the relay takes: RTP over TCP-interleaved, or
    /// unicast RTP over UDP with the client's ports (when the relay has UDP
    /// ports). Multicast and other profiles are not taken.
    fn acceptable(&self, t: &rtsp_types::headers::transport::Transport) -> Option<Transport> {
        use rtsp_types::headers::transport::{RtpLowerTransport, Transport as T};
        let T::Rtp(rtp) = t else { return None };
        let p = &rtp.params;
        if p.multicast {
            return None;
        }
        match rtp.lower_transport {
            Some(RtpLowerTransport::Tcp) => {
                let (a, b) = p.interleaved?;
                Some(Transport::Interleaved {
                    rtp: a,
                    rtcp: b.unwrap_or(a.wrapping_add(1)),
                })
            }
            None | Some(RtpLowerTransport::Udp) => {
                self.server_ports?;
                let (a, b) = p.client_port?;
                Some(Transport::Udp {
                    client_rtp: a,
                    client_rtcp: b.unwrap_or(a.wrapping_add(1)),
                })
            }
            Some(_) => None,
        }
    }

    fn session_header(&self) -> (headers::HeaderName, String) {
        (
            headers::SESSION,
            format!("{};timeout={}", self.id, self.limits.timeout.as_secs()),
        )
    }

    fn reply(
        &mut self,
        cseq: Option<&str>,
        status: StatusCode,
        extra: &[(headers::HeaderName, String)],
    ) {
        let mut b = Response::builder(Version::V1_0, status).header(headers::SERVER, "Glass");
        if let Some(c) = cseq {
            b = b.header(headers::CSEQ, c);
        }
        for (name, value) in extra {
            b = b.header(name.clone(), value.as_str());
        }
        let mut bytes = Vec::new();
        if b.empty().write(&mut bytes).is_ok() {
            self.out.push_back(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADazZQUH7ARAAAAMAEAAAAwPA8UKZYA==,aOvjyyLA\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\r\na=control:streamid=1\r\n";

    fn session() -> ServerSession {
        ServerSession::new(
            "7e57",
            "glass",
            Limits::default(),
            Some((6970, 6971)),
            Time::ZERO,
        )
    }

    fn request(method: &str, url: &str, cseq: u32, headers: &[&str], body: &str) -> Vec<u8> {
        let mut s = format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        if !body.is_empty() {
            s.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        s.push_str("\r\n");
        s.push_str(body);
        s.into_bytes()
    }

    /// The reply to one request: its status code and text.
    fn exchange(s: &mut ServerSession, bytes: &[u8]) -> (u16, String) {
        s.input(bytes, Time::ZERO);
        let out = s.poll_transmit().expect("a reply");
        let text = String::from_utf8(out).unwrap();
        let code = text[9..12].parse().unwrap();
        (code, text)
    }

    const URL: &str = "rtsp://198.18.0.1:554/live/glass";

    /// What ffmpeg's RTSP muxer does, up to RECORD.
    fn record(s: &mut ServerSession) {
        assert_eq!(exchange(s, &request("OPTIONS", URL, 1, &[], "")).0, 200);
        assert_eq!(exchange(s, &request("ANNOUNCE", URL, 2, &[], SDP)).0, 200);
        for (i, cseq) in [(0, 3), (1, 4)] {
            let (code, text) = exchange(
                s,
                &request(
                    "SETUP",
                    &format!("{URL}/streamid={i}"),
                    cseq,
                    &[&format!(
                        "Transport: RTP/AVP/TCP;unicast;interleaved={}-{};mode=record",
                        2 * i,
                        2 * i + 1
                    )],
                    "",
                ),
            );
            assert_eq!(code, 200, "{text}");
            assert!(
                text.contains(&format!("interleaved={}-{}", 2 * i, 2 * i + 1)),
                "{text}"
            );
            assert!(text.contains("Session: 7e57;timeout=60"), "{text}");
        }
        let (code, text) = exchange(s, &request("RECORD", URL, 5, &["Session: 7e57"], ""));
        assert_eq!(code, 200, "{text}");
        assert!(text.contains("CSeq: 5"), "{text}");
    }

    #[test]
    fn an_ffmpeg_style_record_flow_announces_tracks_and_passes_interleaved_packets() {
        let mut s = session();
        record(&mut s);
        let Some(Event::Announced { app, key, tracks }) = s.poll_event() else {
            panic!("no announce")
        };
        assert_eq!(
            (app.as_str(), key.as_str(), tracks.len()),
            ("live", "glass", 2)
        );
        let interleaved = |rtp, rtcp| Some(Transport::Interleaved { rtp, rtcp });
        assert_eq!(
            s.poll_event(),
            Some(Event::Recording {
                transports: vec![interleaved(0, 1), interleaved(2, 3)]
            })
        );
        // RTP on channel 0 (video), RTCP on 3 (audio), and a frame split
        // over two reads.
        let mut frames = vec![b'$', 0, 0, 3, 1, 2, 3, b'$', 3, 0, 1, 9];
        frames.extend_from_slice(&[b'$', 2, 0, 2, 7]);
        s.input(&frames, Time::ZERO);
        s.input(&[8], Time::ZERO);
        assert_eq!(
            s.poll_event(),
            Some(Event::Rtp {
                track: 0,
                packet: vec![1, 2, 3]
            })
        );
        assert_eq!(
            s.poll_event(),
            Some(Event::Rtcp {
                track: 1,
                packet: vec![9]
            })
        );
        assert_eq!(
            s.poll_event(),
            Some(Event::Rtp {
                track: 1,
                packet: vec![7, 8]
            })
        );
        let (code, _) = exchange(&mut s, &request("TEARDOWN", URL, 6, &["Session: 7e57"], ""));
        assert_eq!(code, 200);
        assert!(matches!(s.poll_event(), Some(Event::Closed { .. })));
        assert_eq!(s.state(), State::Closed);
    }

    #[test]
    fn wrong_keys_states_sessions_and_transports_get_their_status_codes() {
        let mut s = session();
        let wrong_key = request("ANNOUNCE", "rtsp://h/live/other", 1, &[], SDP);
        assert_eq!(exchange(&mut s, &wrong_key).0, 403);
        assert_eq!(exchange(&mut s, &request("RECORD", URL, 2, &[], "")).0, 455);
        assert_eq!(
            exchange(&mut s, &request("ANNOUNCE", URL, 3, &[], "v=0\r\n")).0,
            415
        );
        assert_eq!(
            exchange(&mut s, &request("ANNOUNCE", URL, 4, &[], SDP)).0,
            200
        );
        let multicast = "Transport: RTP/AVP/UDP;multicast;port=5000-5001;mode=record";
        assert_eq!(
            exchange(
                &mut s,
                &request("SETUP", &format!("{URL}/streamid=0"), 5, &[multicast], "")
            )
            .0,
            461
        );
        let tcp = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record";
        assert_eq!(
            exchange(
                &mut s,
                &request("SETUP", &format!("{URL}/nosuch"), 6, &[tcp], "")
            )
            .0,
            404
        );
        assert_eq!(
            exchange(&mut s, &request("RECORD", URL, 7, &["Session: other"], "")).0,
            454
        );
        assert_eq!(exchange(&mut s, &request("PLAY", URL, 8, &[], "")).0, 405);
        assert_eq!(exchange(&mut s, &b"OPTIONS * RTSP/1.0\r\n\r\n"[..]).0, 400);
        // Packets before RECORD are counted, not passed on.
        s.input(&[b'$', 0, 0, 1, 5], Time::ZERO);
        assert_eq!(s.stray_frames, 1);
        while let Some(e) = s.poll_event() {
            assert!(!matches!(e, Event::Rtp { .. }));
        }
    }

    #[test]
    fn udp_setups_answer_the_relays_ports_and_media_keeps_the_session_alive() {
        let mut s = session();
        exchange(&mut s, &request("ANNOUNCE", URL, 1, &[], SDP));
        // ffmpeg's offer: RTP/AVP/UDP with a client port pair.
        let udp = "Transport: RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record";
        let (code, text) = exchange(
            &mut s,
            &request("SETUP", &format!("{URL}/streamid=0"), 2, &[udp], ""),
        );
        assert_eq!(code, 200, "{text}");
        assert!(
            text.contains("client_port=5000-5001;server_port=6970-6971"),
            "{text}"
        );
        let (code, _) = exchange(&mut s, &request("RECORD", URL, 3, &["Session: 7e57"], ""));
        assert_eq!(code, 200);
        let _ = s.poll_event();
        assert_eq!(
            s.poll_event(),
            Some(Event::Recording {
                transports: vec![
                    Some(Transport::Udp {
                        client_rtp: 5000,
                        client_rtcp: 5001
                    }),
                    None
                ]
            })
        );
        // The connection is silent while datagrams flow: they keep it on.
        s.keep_alive(Time::from_secs_f64(50.0));
        s.handle_timeout(Time::from_secs_f64(70.0));
        assert_eq!(s.state(), State::Recording);
        // A relay without UDP ports refuses UDP.
        let mut s = ServerSession::new("7e57", "glass", Limits::default(), None, Time::ZERO);
        exchange(&mut s, &request("ANNOUNCE", URL, 1, &[], SDP));
        let (code, _) = exchange(
            &mut s,
            &request("SETUP", &format!("{URL}/streamid=0"), 2, &[udp], ""),
        );
        assert_eq!(code, 461);
    }

    #[test]
    fn credentials_are_asked_for_and_checked() {
        use super::super::auth::{AuthScheme, answer};
        let creds = Credentials {
            scheme: AuthScheme::Digest,
            user: "cam".into(),
            password: "pw".into(),
        };
        let mut s = session().with_auth(Some(creds));
        assert_eq!(
            exchange(&mut s, &request("OPTIONS", URL, 1, &[], "")).0,
            200
        );
        let (code, text) = exchange(&mut s, &request("ANNOUNCE", URL, 2, &[], SDP));
        assert_eq!(code, 401);
        let challenge = text
            .lines()
            .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
            .expect("a challenge");
        let wrong = answer("cam", "guess", challenge, "ANNOUNCE", URL).unwrap();
        let header = format!("Authorization: {wrong}");
        assert_eq!(
            exchange(&mut s, &request("ANNOUNCE", URL, 3, &[&header], SDP)).0,
            401
        );
        let right = answer("cam", "pw", challenge, "ANNOUNCE", URL).unwrap();
        let header = format!("Authorization: {right}");
        assert_eq!(
            exchange(&mut s, &request("ANNOUNCE", URL, 4, &[&header], SDP)).0,
            200
        );
        assert_eq!(s.state(), State::Announced);
    }

    #[test]
    fn garbage_oversized_messages_and_silence_end_the_session() {
        let mut s = session();
        s.input(b"\x16\x03\x01 hello TLS", Time::ZERO);
        let Some(Event::Closed { reason }) = s.poll_event() else {
            panic!()
        };
        assert!(reason.contains("not RTSP"), "{reason}");

        let mut s = session();
        let mut big = b"OPTIONS * RTSP/1.0\r\nX: ".to_vec();
        big.resize(80_000, b'a');
        s.input(&big, Time::ZERO);
        let Some(Event::Closed { reason }) = s.poll_event() else {
            panic!()
        };
        assert!(reason.contains("over"), "{reason}");

        let mut s = session();
        s.handle_timeout(Time::from_secs_f64(59.0));
        assert_eq!(s.state(), State::Init);
        s.handle_timeout(Time::from_secs_f64(60.0));
        assert_eq!(s.state(), State::Closed);

        // Slowloris: a request trickled a byte a second is never silent,
        // but its time runs out 10 s after its first byte.
        let mut s = session();
        let request = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for (i, b) in request.iter().enumerate().take(10) {
            s.input(&[*b], Time::from_secs_f64(5.0 + i as f64));
            s.handle_timeout(Time::from_secs_f64(5.0 + i as f64));
        }
        assert_eq!(s.poll_timeout(), Some(Time::from_secs_f64(15.0)));
        assert!(s.poll_event().is_none());
        s.input(&request[10..11], Time::from_secs_f64(15.0));
        s.handle_timeout(Time::from_secs_f64(15.0));
        let Some(Event::Closed { reason }) = s.poll_event() else {
            panic!("not closed at 15 s")
        };
        assert!(reason.contains("incomplete after 10 s"), "{reason}");
        // Requests that complete reset the clock: a client sending one
        // request every 9 s in two halves stays.
        let mut s = session();
        for i in 0..5 {
            let t = 9.0 * i as f64;
            s.input(b"OPTIONS * RTSP/1.0\r\n", Time::from_secs_f64(t));
            s.handle_timeout(Time::from_secs_f64(t + 8.0));
            s.input(
                format!("CSeq: {i}\r\n\r\n").as_bytes(),
                Time::from_secs_f64(t + 8.0),
            );
        }
        assert_ne!(s.state(), State::Closed);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..8)) {
            let mut s = session();
            for c in &chunks {
                s.input(c, Time::ZERO);
            }
            while s.poll_transmit().is_some() {}
            while s.poll_event().is_some() {}
        }

        #[test]
        fn a_valid_flow_survives_any_read_boundaries(cuts in proptest::collection::vec(1usize..64, 1..40)) {
            // The whole flow as one byte stream, delivered in arbitrary reads.
            let mut stream = request("ANNOUNCE", URL, 1, &[], SDP);
            stream.extend(request("SETUP", &format!("{URL}/streamid=0"), 2, &["Transport: RTP/AVP/TCP;unicast;interleaved=0-1"], ""));
            stream.extend(request("RECORD", URL, 3, &[], ""));
            stream.extend_from_slice(&[b'$', 0, 0, 2, 4, 2]);
            let mut s = session();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= stream.len() { break; }
                let end = (at + c).min(stream.len());
                s.input(&stream[at..end], Time::ZERO);
                at = end;
            }
            let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
            proptest::prop_assert_eq!(events.len(), 3);
            proptest::prop_assert_eq!(&events[2], &Event::Rtp { track: 0, packet: vec![4, 2] });
        }
    }
}
