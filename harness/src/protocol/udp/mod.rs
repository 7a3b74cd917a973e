//! Glass's UDP media protocol (the `udpmedia` crate's sans-IO sessions) on
//! real UDP sockets: the relay's gateway on the hub (`server`: UDP
//! publishers in, UDP players out, sharing the hub's streams with every
//! other protocol) and the publisher and player clients (`client`). The
//! state machines take `now` and return datagrams and wake-up instants;
//! these tasks only move datagrams and sleep.

pub mod client;
pub mod recovery;
pub mod server;

use std::net::SocketAddr;
use std::time::Instant;

use netem::Time;
use netem::time::Clock;
use serde::Serialize;
use tokio::net::UdpSocket;
use udpmedia::cc::CcSample;
use udpmedia::{ConnStats, Connection};

pub use client::UdpClient;
pub use server::serve;
/// The protocol's settings (the scenario's `udp` table) and a session's role.
pub use udpmedia::{CcMode, Config as UdpConfig, FecConfig, Role};

/// The relay's UDP port for this protocol (RTMP over QUIC has UDP 1935).
pub const UDP_MEDIA_PORT: u16 = 5000;

/// What one end of a session measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UdpReport {
    /// "publisher", "relay-ingest", "relay-egress" or "player".
    pub role: String,
    #[serde(flatten)]
    pub stats: ConnStats,
    /// Congestion control's decisions (a sender with `cc = "gcc"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<CcSample>,
}

impl UdpReport {
    pub(crate) fn of(role: &str, conn: &Connection) -> UdpReport {
        UdpReport {
            role: role.into(),
            stats: conn.stats(),
            cc: conn
                .sender()
                .map(|s| s.cc_samples().to_vec())
                .unwrap_or_default(),
        }
    }
}

/// Sends what `conn` has to send. UDP send errors are not fatal (the
/// datagram is lost, as on any network); they are logged.
pub(crate) async fn flush(sock: &UdpSocket, conn: &mut Connection, to: SocketAddr, clock: Clock) {
    while let Some(d) = conn.poll_transmit(clock.time(Instant::now())) {
        if let Err(e) = sock.send_to(&d, to).await {
            tracing::debug!("udp media: send to {to}: {e}");
        }
    }
}

/// Sleeps until `t` (not at all if it passed).
pub(crate) async fn sleep_until(clock: Clock, t: Time) {
    let at = clock.instant(t);
    if at > Instant::now() {
        tokio::time::sleep_until(at.into()).await;
    }
}
