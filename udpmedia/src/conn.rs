//! A session: the handshake (a challenge on the token, `auth`), keepalives, idle timeout and
//! teardown around one sending or receiving half.
//!
//! Sans-IO in quinn-proto's manner: the caller feeds datagrams and time in
//! (`handle_datagram`, `handle_timeout`) and takes datagrams, frames and
//! events out (`poll_transmit`, `poll_frame`, `poll_event`), sleeping until
//! `poll_timeout`. Nothing here reads a clock or touches a socket.

use std::collections::VecDeque;
use std::time::Duration;

use netem::Time;
use serde::Serialize;

use crate::auth::{self, Admitted, NONCE_LEN};
use crate::config::Config;
use crate::error::{ConfigError, ConnError};
use crate::receiver::{InFrame, Receiver};
use crate::sender::{OutFrame, Sender};
use crate::stats::{ReceiverStats, SenderStats};
use crate::wire::{self, Body, Hello, Role, write};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake finished; `latency` is the negotiated one.
    Connected { latency: Duration },
    /// The server refused the session.
    Rejected { reason: String },
    /// The session ended (the peer closed, fell silent, or never answered).
    Closed { reason: String },
}

/// Why a server refuses a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u8,
    pub reason: String,
}

impl Refusal {
    /// The datagram that tells the client.
    pub fn datagram(&self) -> Vec<u8> {
        let mut d = Vec::new();
        write::reject(&mut d, self.code, &self.reason);
        d
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Connecting { started: Time, next_hello: Time },
    Connected,
    Closed,
}

enum Half {
    Send(Box<Sender>),
    Recv(Box<Receiver>),
}

/// Statistics of one end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConnStats {
    pub sender: Option<SenderStats>,
    pub receiver: Option<ReceiverStats>,
    /// Datagrams that were not valid packets of this session.
    pub invalid_datagrams: u64,
    pub handshake_ms: Option<f64>,
}

/// How often a client repeats its hello.
const HELLO_INTERVAL: Duration = Duration::from_millis(200);

pub struct Connection {
    cfg: Config,
    /// The server's end (it answers hellos).
    server: bool,
    role: Role,
    state: State,
    session: u32,
    key: String,
    half: Half,
    out: VecDeque<Vec<u8>>,
    last_heard: Time,
    next_keepalive: Time,
    events: VecDeque<Event>,
    invalid: u64,
    handshake: Option<Duration>,
    /// A client's nonce for this connection (its challenge's name).
    client_nonce: [u8; NONCE_LEN],
    /// A client's answer to the server's last challenge (empty before one).
    proof: Vec<u8>,
}

impl Connection {
    /// Both ends: a client with `role`, or the server taking a client with
    /// `role` (the publishing side sends, the other receives).
    fn new(
        cfg: Config,
        server: bool,
        role: Role,
        key: String,
        session: u32,
        state: State,
        now: Time,
    ) -> Self {
        let sends = (role == Role::Publish) != server;
        let half = if sends {
            Half::Send(Box::new(Sender::new(cfg.clone(), session, now)))
        } else {
            Half::Recv(Box::new(Receiver::new(cfg.clone(), session, now)))
        };
        Connection {
            server,
            role,
            state,
            session,
            key,
            half,
            out: VecDeque::new(),
            last_heard: now,
            next_keepalive: now + cfg.keepalive,
            events: VecDeque::new(),
            invalid: 0,
            handshake: server.then_some(Duration::ZERO),
            client_nonce: [0; NONCE_LEN],
            proof: Vec::new(),
            cfg,
        }
    }

    /// A client that wants to publish (`Role::Publish`) or play `key`.
    /// `nonce` must be fresh for each connection (draw it from the OS):
    /// the server's challenge is tied to it.
    pub fn connect(
        cfg: Config,
        role: Role,
        key: &str,
        nonce: [u8; NONCE_LEN],
        now: Time,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let state = State::Connecting {
            started: now,
            next_hello: now,
        };
        let mut c = Connection::new(cfg, false, role, key.to_string(), 0, state, now);
        c.client_nonce = nonce;
        Ok(c)
    }

    /// The server's side of a client's `hello`, once the [`Gate`](crate::auth::Gate)
    /// admitted it (the token check). Which stream keys exist is the
    /// caller's business.
    pub fn accept(
        cfg: Config,
        hello: &Hello<'_>,
        _admitted: Admitted,
        session: u32,
        now: Time,
    ) -> Result<Self, Refusal> {
        cfg.validate().map_err(|e| Refusal {
            code: wire::REJECT_BUSY,
            reason: e.to_string(),
        })?;
        let mut cfg = cfg;
        cfg.latency = cfg
            .latency
            .max(Duration::from_millis(u64::from(hello.latency_ms)));
        let key = String::from_utf8_lossy(hello.key).into_owned();
        let mut c = Connection::new(cfg, true, hello.role, key, session, State::Connected, now);
        c.queue_accept();
        c.events.push_back(Event::Connected {
            latency: c.cfg.latency,
        });
        Ok(c)
    }

    fn queue_accept(&mut self) {
        let mut d = Vec::new();
        write::accept(&mut d, self.session, self.latency_ms());
        self.out.push_back(d);
    }

    /// A sender's keepalives also tell the receiver how far it got (so a
    /// lost tail is found): often, at the feedback interval; a receiver's
    /// only keep the session alive.
    fn keepalive_interval(&self) -> Duration {
        match self.half {
            Half::Send(_) => self.cfg.keepalive.min(self.cfg.feedback_interval),
            Half::Recv(_) => self.cfg.keepalive,
        }
    }

    fn latency_ms(&self) -> u16 {
        self.cfg.latency.as_millis().min(u128::from(u16::MAX)) as u16
    }

    /// The stream key the client asked for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What the client does: publish or play.
    pub fn role(&self) -> Role {
        self.role
    }

    pub fn latency(&self) -> Duration {
        self.cfg.latency
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn closed(&mut self, reason: String) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.events.push_back(Event::Closed { reason });
        }
    }

    pub fn handle_datagram(&mut self, now: Time, buf: &[u8]) {
        let Ok(p) = wire::parse(buf) else {
            self.invalid += 1;
            return;
        };
        if self.state == State::Closed {
            return;
        }
        let handshake_packet = matches!(
            p.body,
            Body::Hello(_) | Body::Accept { .. } | Body::Reject { .. } | Body::Challenge { .. }
        );
        if !handshake_packet
            && (p.session != self.session || matches!(self.state, State::Connecting { .. }))
        {
            self.invalid += 1;
            return;
        }
        self.last_heard = now;
        match (p.body, &mut self.half) {
            (Body::Hello(_), _) => {
                // Our accept was lost: say it again.
                if self.state == State::Connected && self.server {
                    self.queue_accept();
                }
            }
            (Body::Accept { latency_ms }, half) => {
                if let State::Connecting { started, .. } = self.state {
                    self.session = p.session;
                    self.cfg.latency = self
                        .cfg
                        .latency
                        .max(Duration::from_millis(u64::from(latency_ms)));
                    match half {
                        Half::Send(s) => {
                            s.set_session(p.session);
                            s.set_latency(self.cfg.latency);
                        }
                        Half::Recv(r) => {
                            r.set_session(p.session);
                            r.set_latency(self.cfg.latency);
                        }
                    }
                    self.state = State::Connected;
                    self.handshake = Some(now.saturating_since(started));
                    self.events.push_back(Event::Connected {
                        latency: self.cfg.latency,
                    });
                }
            }
            (
                Body::Challenge {
                    server_nonce,
                    client_nonce,
                },
                _,
            ) => {
                if let State::Connecting { started, .. } = self.state
                    && !self.server
                    && *client_nonce == self.client_nonce
                {
                    self.proof = auth::proof(
                        &self.cfg.token,
                        server_nonce,
                        client_nonce,
                        self.role,
                        self.key.as_bytes(),
                    )
                    .to_vec();
                    // Answer at once.
                    self.state = State::Connecting {
                        started,
                        next_hello: now,
                    };
                    self.send_hello(now);
                } else {
                    self.invalid += 1;
                }
            }
            (Body::Reject { reason, .. }, _) => {
                if matches!(self.state, State::Connecting { .. }) {
                    let reason = String::from_utf8_lossy(reason).into_owned();
                    self.events.push_back(Event::Rejected {
                        reason: reason.clone(),
                    });
                    self.state = State::Closed;
                    self.events.push_back(Event::Closed {
                        reason: format!("refused: {reason}"),
                    });
                }
            }
            (Body::Data(d), Half::Recv(r)) => r.on_data(now, &d),
            (Body::Fec(f), Half::Recv(r)) => r.on_fec(now, &f),
            (Body::Keepalive { rtt_us, next_seq }, Half::Recv(r)) => {
                r.set_rtt(Duration::from_micros(u64::from(rtt_us)));
                r.on_sender_progress(now, next_seq);
            }
            (Body::Keepalive { .. }, Half::Send(_)) => {}
            (Body::Nack(entries), Half::Send(s)) => s.on_nack(now, &entries),
            (Body::Feedback(f), Half::Send(s)) => s.on_feedback(now, &f),
            (Body::Close, _) => self.closed("the peer closed the session".into()),
            // Media to a sender, requests to a receiver: not for us.
            _ => self.invalid += 1,
        }
    }

    /// A client's hello (with its proof once challenged); the next one
    /// after [`HELLO_INTERVAL`] unless the server answers.
    fn send_hello(&mut self, now: Time) {
        let State::Connecting { started, .. } = self.state else {
            return;
        };
        let mut d = Vec::new();
        write::hello(
            &mut d,
            &self.client_nonce,
            &self.proof,
            self.role,
            self.latency_ms(),
            self.key.as_bytes(),
        );
        self.out.push_back(d);
        self.state = State::Connecting {
            started,
            next_hello: now + HELLO_INTERVAL,
        };
    }

    pub fn handle_timeout(&mut self, now: Time) {
        match self.state {
            State::Closed => {}
            State::Connecting {
                started,
                next_hello,
            } => {
                if now.saturating_since(started) >= self.cfg.handshake_timeout {
                    self.closed(format!(
                        "no answer from the server within {:?}",
                        self.cfg.handshake_timeout
                    ));
                } else if now >= next_hello {
                    self.send_hello(now);
                }
            }
            State::Connected => {
                if now.saturating_since(self.last_heard) >= self.cfg.idle_timeout {
                    self.closed(format!(
                        "the peer was silent for {:?}",
                        self.cfg.idle_timeout
                    ));
                    return;
                }
                if now >= self.next_keepalive {
                    self.next_keepalive = now + self.keepalive_interval();
                    let (rtt_us, next_seq) = match &self.half {
                        Half::Send(s) => (
                            s.srtt()
                                .map_or(0, |r| r.as_micros().min(u128::from(u32::MAX)) as u32),
                            s.sent_through() as u32,
                        ),
                        Half::Recv(_) => (0, 0),
                    };
                    let mut d = Vec::new();
                    write::keepalive(&mut d, self.session, rtt_us, next_seq);
                    self.out.push_back(d);
                }
                if let Half::Recv(r) = &mut self.half {
                    r.handle_timeout(now);
                }
            }
        }
    }

    /// The next instant `handle_timeout` (or `poll_transmit`) has work.
    pub fn poll_timeout(&self, now: Time) -> Option<Time> {
        if !self.out.is_empty() {
            return Some(now);
        }
        match self.state {
            State::Closed => None,
            State::Connecting {
                started,
                next_hello,
            } => Some(next_hello.min(started + self.cfg.handshake_timeout)),
            State::Connected => {
                let mut t = self
                    .next_keepalive
                    .min(self.last_heard + self.cfg.idle_timeout);
                match &self.half {
                    Half::Send(s) => {
                        if let Some(x) = s.poll_timeout(now) {
                            t = t.min(x);
                        }
                    }
                    Half::Recv(r) => t = t.min(r.poll_timeout()),
                }
                Some(t)
            }
        }
    }

    pub fn poll_transmit(&mut self, now: Time) -> Option<Vec<u8>> {
        if let Some(d) = self.out.pop_front() {
            return Some(d);
        }
        if self.state != State::Connected {
            return None;
        }
        match &mut self.half {
            Half::Send(s) => s.poll_transmit(now),
            Half::Recv(r) => r.poll_transmit(now),
        }
    }

    pub fn send_frame(&mut self, now: Time, f: OutFrame<'_>) -> Result<(), ConnError> {
        if self.state != State::Connected {
            return Err(ConnError::NotConnected);
        }
        match &mut self.half {
            Half::Send(s) => s.send_frame(now, f),
            Half::Recv(_) => Err(ConnError::NotSender),
        }
    }

    /// Whether `poll_frame` has a frame.
    pub fn has_frame(&self) -> bool {
        matches!(&self.half, Half::Recv(r) if r.has_frame())
    }

    pub fn poll_frame(&mut self) -> Option<InFrame> {
        match &mut self.half {
            Half::Recv(r) => r.poll_frame(),
            Half::Send(_) => None,
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The sending half, when this end sends.
    pub fn sender(&self) -> Option<&Sender> {
        match &self.half {
            Half::Send(s) => Some(s),
            Half::Recv(_) => None,
        }
    }

    pub fn sender_mut(&mut self) -> Option<&mut Sender> {
        match &mut self.half {
            Half::Send(s) => Some(s),
            Half::Recv(_) => None,
        }
    }

    /// The session's number (the server's choice, the client's once
    /// accepted): a relay's session and its client's report the same one.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Ends the session: a close packet (three times, as it may be lost).
    pub fn close(&mut self, _now: Time) {
        if self.state == State::Connected {
            for _ in 0..3 {
                let mut d = Vec::new();
                write::close(&mut d, self.session);
                self.out.push_back(d);
            }
        }
        self.closed("closed by this side".into());
    }

    pub fn stats(&self) -> ConnStats {
        let (sender, receiver) = match &self.half {
            Half::Send(s) => (Some(s.stats()), None),
            Half::Recv(r) => (None, Some(r.stats())),
        };
        ConnStats {
            sender,
            receiver,
            invalid_datagrams: self.invalid,
            handshake_ms: self.handshake.map(|d| d.as_secs_f64() * 1e3),
        }
    }
}
