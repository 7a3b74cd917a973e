//! Glass's UDP media protocol (the `udpmedia` crate's sans-IO sessions) on
//! real UDP sockets: the relay's gateway on the hub (`server`: UDP
//! publishers in, UDP players out, sharing the hub's streams with every
//! other protocol) and the publisher and player clients (`client`). The
//! state machines take `now` and return datagrams and wake-up instants;
//! these tasks only move datagrams and sleep.

pub mod client;
pub mod publish;
pub mod recovery;
pub mod relay;
pub mod section;
pub mod server;
pub mod settings;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use netem::Time;
use netem::time::Clock;
use serde::Serialize;
use tokio::net::UdpSocket;
use udpmedia::cc::CcSample;
use udpmedia::{ConnStats, Connection};

use super::{
    Bound, DialCx, Dialed, Endpoint, EntryCx, LocalFuture, Protocol, Scheme, ServeCx, ServerTask,
    Stats, Table,
};
use crate::scenario::Protocol as Settings;

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
    /// The session's number: a relay's egress and the player it served
    /// report the same one.
    pub session: u32,
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
            session: conn.session(),
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

/// Glass's UDP media protocol, in the protocol registry.
pub struct Udp;

/// The UDP protocol's section of the relay's statistics: its sessions,
/// publishers in (`relay-ingest`) and players out (`relay-egress`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct UdpServerStats {
    pub udp: Vec<UdpReport>,
    /// Datagrams from no session that were not a hello (junk, or a closed
    /// session's stragglers): dropped unanswered.
    pub udp_stray: u64,
    /// Hellos answered with the token's challenge.
    pub udp_challenges: u64,
    /// Hellos refused (a wrong proof or key, a stream already published,
    /// 64 sessions running).
    pub udp_refused: u64,
}

impl Stats for UdpServerStats {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        super::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Protocol for Udp {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        &[Endpoint::Udp(UDP_MEDIA_PORT)]
    }

    fn schemes(&self) -> &'static [Scheme] {
        &[Scheme {
            name: "gudp",
            endpoint: 0,
            what: "Glass's UDP protocol (NACK, FEC, RED, congestion control): publish and play; an optional token, checked by a challenge",
        }]
    }

    fn table_key(&self) -> &'static str {
        "udp"
    }

    fn configure(
        &self,
        table: Option<&toml::Value>,
        cx: &EntryCx,
    ) -> Result<Box<dyn Table>, netem::ConfigError> {
        Ok(Box::new(settings::configure(table, cx)?))
    }

    /// Low delay: the protocol recovers within the buffer (DESIGN).
    fn default_target_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(200)
    }

    fn refuses_abr(&self) -> Option<&'static str> {
        Some(
            "the UDP protocol's congestion control (udp.cc = \"gcc\") drives its encoder; abr is for RTMP publishers",
        )
    }

    /// Serves its sessions on its UDP socket.
    fn serve(
        &self,
        socks: Vec<Bound>,
        settings: &Settings,
        cx: ServeCx,
    ) -> anyhow::Result<ServerTask> {
        let Some(Bound::Udp(sock)) = socks.into_iter().next() else {
            anyhow::bail!("the UDP protocol serves on one UDP socket");
        };
        sock.set_nonblocking(true)?;
        let sock = UdpSocket::from_std(sock)?;
        // The relay orders frames for the RTMP players it may feed (the gateway).
        let cfg = UdpConfig {
            ordered: true,
            ..client_config(&udp_table(settings), cx.media_bps)
        };
        let reports: Arc<Mutex<UdpServerStats>> = Arc::default();
        let task = serve(sock, cfg, cx.hub, cx.stop, reports.clone());
        Ok(tokio::spawn(async move {
            task.await;
            let stats = reports.lock().map(|r| r.clone()).unwrap_or_default();
            Box::new(stats) as Box<dyn Stats>
        }))
    }

    fn dial<'a>(&'a self, cx: DialCx<'a>, to: Endpoint) -> LocalFuture<'a, anyhow::Result<Dialed>> {
        Box::pin(client::dial(cx, to))
    }

    /// Always present (results v1 had `udp` and `recovery` in every run).
    fn run_section(&self, cx: &super::RunCx) -> Option<Box<dyn Stats>> {
        Some(Box::new(section::section(cx)))
    }

    fn summary(&self, records: &[crate::output::records::RunRecord]) -> String {
        section::recovery_table(records)
    }

    fn report_figures(&self) -> Option<&'static dyn reports::html::ReportFigures> {
        Some(&section::ResidualLoss)
    }
}

/// One client session's report is its statistics section.
impl Stats for UdpReport {
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        super::json_fields(self)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The entry's `udp` table (its defaults for an entry built by hand).
pub(crate) fn udp_table(settings: &Settings) -> UdpConfig {
    settings.table::<UdpConfig>().cloned().unwrap_or_default()
}

/// A session's settings for a stream of `media_bps`: congestion control
/// starts at the media's bitrate plus FEC, and may go up to twice that.
pub fn client_config(settings: &UdpConfig, media_bps: u64) -> UdpConfig {
    let media = media_bps as f64 * (1.0 + settings.fec.overhead());
    let min = settings.min_bitrate as f64;
    UdpConfig {
        start_bitrate: media.max(min) as u64,
        max_bitrate: (2.0 * media).max(min) as u64,
        ..settings.clone()
    }
}
