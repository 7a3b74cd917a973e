//! The UDP protocol's relay side as a state machine, quinn-proto style: it
//! takes datagrams and `now`, and gives datagrams to send and when to wake.
//! The async server (`server.rs`, real sockets) and virtual time
//! (`crate::virtual_time`, engine pipelines) both drive it, so the relay a
//! virtual run measures is the one a link run measures.
//!
//! It accepts publishers (which the hub admits by stream key) and players
//! on one port. A publisher's frames go into the hub exactly as an RTMP
//! publisher's do (so RTMP and QUIC players get them: the gateway); players
//! are fed from it by whoever drives the relay (their hub subscription is
//! handed back at the hello).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use netem::Time;
use netem::time::Clock;
use udpmedia::wire::{self, Body, Role};
use udpmedia::{Admission, Connection, Gate, OutFrame};

use super::{UdpReport, UdpServerStats};
use crate::media::tag;
use crate::relay::{APP, Hub, Media, Subscription};

/// Sessions the relay serves at most; hellos beyond are refused.
pub const MAX_SESSIONS: usize = 64;

/// One session the relay serves.
struct Peer {
    conn: Connection,
    /// The stream it publishes (ingest) or plays (egress).
    key: String,
    publishing: bool,
    /// Its entry in the server's reports.
    slot: usize,
}

/// The relay's UDP protocol sessions.
pub struct UdpRelay {
    cfg: udpmedia::Config,
    hub: Hub,
    /// Maps scenario time to the instants the hub records hops at.
    clock: Clock,
    /// The token's challenge–response (udpmedia::auth): the token never
    /// crosses the link.
    gate: Gate,
    /// By address: ordered, so every pass over them is the same in two runs.
    peers: BTreeMap<SocketAddr, Peer>,
    next_session: u32,
    /// Answers to hellos that made no session (challenges, refusals).
    replies: VecDeque<(SocketAddr, Vec<u8>)>,
    reports: Arc<Mutex<UdpServerStats>>,
}

impl UdpRelay {
    /// A relay on `hub` whose challenges come from `seed`; `reports` gets
    /// every session's statistics (`relay-ingest` for publishers,
    /// `relay-egress` for players) at [`UdpRelay::record`] and when a
    /// session ends.
    pub fn new(
        cfg: udpmedia::Config,
        hub: Hub,
        clock: Clock,
        seed: [u8; 32],
        reports: Arc<Mutex<UdpServerStats>>,
    ) -> UdpRelay {
        UdpRelay {
            gate: Gate::new(&cfg.token, seed),
            cfg,
            hub,
            clock,
            peers: BTreeMap::new(),
            next_session: 1,
            replies: VecDeque::new(),
            reports,
        }
    }

    fn count(&self, f: fn(&mut UdpServerStats) -> &mut u64) {
        if let Ok(mut st) = self.reports.lock() {
            *f(&mut st) += 1;
        }
    }

    fn refuse(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.count(|s| &mut s.udp_refused);
        self.replies.push_back((to, datagram));
    }

    /// A datagram from `from`: into its session, or a hello (a new session,
    /// a challenge or a refusal). A new player's hub subscription comes
    /// back: the driver passes what comes on it to [`UdpRelay::send_media`]
    /// (the catch-up is sent already).
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddr,
        d: &[u8],
    ) -> Option<Subscription> {
        if let Some(p) = self.peers.get_mut(&from) {
            p.conn.handle_datagram(now, d);
            return None;
        }
        let Ok(wire::Packet {
            body: Body::Hello(h),
            ..
        }) = wire::parse(d)
        else {
            self.count(|s| &mut s.udp_stray);
            return None;
        };
        if self.peers.len() >= MAX_SESSIONS {
            self.count(|s| &mut s.udp_refused);
            return None;
        }
        let key = String::from_utf8_lossy(h.key).into_owned();
        let refusal = |reason: &str| {
            udpmedia::Refusal {
                code: wire::REJECT_KEY,
                reason: reason.into(),
            }
            .datagram()
        };
        let Some(stream) = key.strip_prefix(&format!("{APP}/")).map(str::to_string) else {
            let why = format!(
                "unknown application in \"{}\"",
                crate::redact::app_key(&key)
            );
            self.refuse(from, refusal(&why));
            return None;
        };
        let publishing = h.role == Role::Publish;
        let admitted = match self.gate.check(&h, now) {
            Admission::Admit(a) => a,
            Admission::Challenge(d) => {
                self.count(|s| &mut s.udp_challenges);
                self.replies.push_back((from, d));
                return None;
            }
            Admission::Refuse(r) => {
                self.refuse(from, r.datagram());
                return None;
            }
        };
        let conn = match Connection::accept(self.cfg.clone(), &h, admitted, self.next_session, now)
        {
            Ok(c) => c,
            Err(r) => {
                self.refuse(from, r.datagram());
                return None;
            }
        };
        if publishing && !self.hub.claim(&stream).unwrap_or(false) {
            self.refuse(from, refusal("wrong stream key, or already publishing"));
            return None;
        }
        self.next_session = self.next_session.wrapping_add(1).max(1);
        let slot = {
            let mut st = self.reports.lock().ok()?;
            st.udp.push(UdpReport::default());
            st.udp.len() - 1
        };
        let peer = Peer {
            conn,
            key: stream,
            publishing,
            slot,
        };
        let key = peer.key.clone();
        self.peers.insert(from, peer);
        if publishing {
            return None;
        }
        // A player: what it missed, then the stream as it comes.
        let mut sub = self.hub.subscribe(&key).ok()?;
        for m in std::mem::take(&mut sub.catch_up) {
            self.send_media(now, from, &m);
        }
        Some(sub)
    }

    /// `m` from the hub to the player at `to` (gone: nothing).
    pub fn send_media(&mut self, now: Time, to: SocketAddr, m: &Media) {
        let Some(p) = self.peers.get_mut(&to) else {
            return;
        };
        let Some((video, data, timestamp)) = m.as_av() else {
            return;
        };
        let f = OutFrame {
            video,
            key: tag::is_key_tag(video, data),
            timestamp,
            data,
        };
        if let Err(e) = p.conn.send_frame(now, f) {
            tracing::debug!("udp media: to a player: {e}");
        }
        self.hub.note_sent_at(m, self.clock.instant(now));
    }

    /// Publishers' complete frames into the hub; sessions that closed are
    /// recorded and dropped (a publisher's stream is released).
    pub fn pump(&mut self, now: Time) {
        let at = self.clock.instant(now);
        for p in self.peers.values_mut() {
            while let Some(f) = p.conn.poll_frame() {
                let m = Media::av(f.video, Bytes::from(f.data), f.timestamp);
                if let Err(e) = self.hub.publish_at(&p.key, m, at) {
                    tracing::warn!("udp media: {e:#}");
                }
            }
        }
        if self.peers.values().any(|p| p.conn.is_closed()) {
            self.record();
            let hub = &self.hub;
            self.peers.retain(|_, p| {
                let open = !p.conn.is_closed();
                if !open && p.publishing {
                    hub.release(&p.key);
                }
                open
            });
        }
    }

    /// The next datagram to send and where.
    pub fn poll_transmit(&mut self, now: Time) -> Option<(SocketAddr, Vec<u8>)> {
        if let Some(r) = self.replies.pop_front() {
            return Some(r);
        }
        self.peers
            .iter_mut()
            .find_map(|(a, p)| Some((*a, p.conn.poll_transmit(now)?)))
    }

    /// When a session's timer runs out next.
    pub fn poll_timeout(&self, now: Time) -> Option<Time> {
        self.peers
            .values()
            .filter_map(|p| p.conn.poll_timeout(now))
            .min()
    }

    pub fn handle_timeout(&mut self, now: Time) {
        for p in self.peers.values_mut() {
            p.conn.handle_timeout(now);
        }
    }

    /// Closes every session (their closes are then to send) and records.
    pub fn close(&mut self, now: Time) {
        for p in self.peers.values_mut() {
            p.conn.close(now);
        }
        self.record();
    }

    /// Every session's statistics into the reports.
    pub fn record(&self) {
        if let Ok(mut st) = self.reports.lock() {
            for p in self.peers.values() {
                let role = if p.publishing {
                    "relay-ingest"
                } else {
                    "relay-egress"
                };
                st.udp[p.slot] = UdpReport::of(role, &p.conn);
            }
        }
    }
}
