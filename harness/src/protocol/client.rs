//! The client half of a protocol: a publisher or a player dials the relay
//! from its host ([`super::Protocol::dial`]) and gets a [`Session`], which
//! then publishes a source or plays into Glass's player. The runner only
//! sees these types, so a new protocol's clients need no runner code.

use std::future::Future;
use std::pin::Pin;

use netem::Time;
use netem::time::Clock;
use serde::Serialize;

use super::Stats;
use super::uri::StreamUri;
use crate::media::player::Player;
use crate::media::source::Source;
use crate::publisher::{ConnectSteps, PublisherStats};
use crate::scenario::Protocol as Settings;
use crate::topology::{Place, Topology};

/// A future run on the runner's thread (`block_on`): sessions borrow the
/// player and the scenario, so they need not be `Send`.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Which end of the stream a client is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Player,
}

impl Role {
    /// "publisher" or "player", as results name them.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Player => "player",
        }
    }
}

/// What a client needs to dial the relay.
pub struct DialCx<'a> {
    pub topo: &'a Topology,
    pub role: Role,
    /// The host it dials from (the publisher's, or a player group's).
    pub place: Place,
    pub uri: &'a StreamUri,
    /// The scenario's `[[protocols]]` entry.
    pub settings: &'a Settings,
    /// The stream's nominal bitrate (bit/s).
    pub media_bps: u64,
    pub clock: Clock,
}

/// How one client reached the relay.
#[derive(Clone, Debug, Serialize)]
pub struct TransportReport {
    /// "publisher" or "player".
    pub role: &'static str,
    pub uri: String,
    /// What the URI asked for: "tcp", "quic/stream", "quic/frames", "udp".
    pub requested: String,
    /// What carried the session.
    pub used: String,
    /// Why the requested transport was not used, when it fell back.
    pub fallback: Option<String>,
    /// Transport or protocol handshake time, ms.
    pub handshake_ms: Option<f64>,
}

/// A client connected to the relay, ready to publish or play.
pub struct Dialed {
    pub session: Box<dyn Session>,
    pub report: TransportReport,
    /// The name of the set-up step the dial was (`connect_steps`), e.g.
    /// "tcp_connect", "quic_handshake", "udp_hello".
    pub step: &'static str,
}

/// What a publishing session needs besides its connection.
pub struct PublishCx<'a> {
    /// Makes the media source, given the instant the session can carry
    /// media (the camera starts then, or earlier for one already running).
    pub source_for: Box<dyn FnOnce(Time) -> Source + 'a>,
    /// The set-up timed so far (the dial).
    pub steps: ConnectSteps,
    pub end: Time,
}

/// A protocol's own statistics of one client session, if it has any.
pub type ClientStats = Option<Box<dyn Stats>>;

/// One client's connected session with the relay.
pub trait Session {
    /// Whether frames reach the player in decode order (a byte stream), or
    /// in the order they complete (a stream or a packet per frame).
    fn ordered(&self) -> bool;

    /// Plays the URI's stream into `player` until `end`.
    fn play<'a>(
        self: Box<Self>,
        player: &'a mut Player,
        end: Time,
    ) -> LocalFuture<'a, anyhow::Result<ClientStats>>;

    /// Publishes to the URI's stream until `cx.end`.
    fn publish<'a>(
        self: Box<Self>,
        cx: PublishCx<'a>,
    ) -> LocalFuture<'a, anyhow::Result<(PublisherStats, ClientStats)>>;
}
