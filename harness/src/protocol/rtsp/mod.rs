//! RTSP push ingest (issue #14, in progress): publishers (ffmpeg, OBS, an
//! IP camera) ANNOUNCE and RECORD H.264 and AAC over TCP-interleaved RTP
//! into the relay, which plays it out over every other protocol (RTMP,
//! RTMP over QUIC, Glass's UDP protocol).
//!
//! The sans-IO parts: the session state machine (`session`), the
//! ANNOUNCE's tracks (`sdp`), RTP and its sequence tracking (`rtp`), the
//! H.264 and AAC depacketizers and packetizers (`h264`, `aac`), and the
//! ingest that turns a track's packets into the hub's media with
//! wall-clock timestamps from RTCP sender reports (`ingest`); the tokio
//! edge is `server`; Glass's own publisher is `client`. Not built yet:
//! UDP transport, RTCP receiver reports, authentication beyond the key,
//! ffmpeg as an RTSP publisher in scenarios (its RTCP ties media time to
//! the wall clock only as well as its set-up time allows).

pub mod aac;
pub mod client;
pub mod h264;
pub mod ingest;
pub mod rtp;
pub mod sdp;
pub mod server;
pub mod session;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use netem::ConfigError;
use netem::units::HumanDuration;
use serde::{Deserialize, Serialize};

use super::{
    Bound, DialCx, Dialed, Endpoint, EntryCx, LocalFuture, Protocol, Scheme, ServeCx, ServerTask,
    Stats, Table,
};
use crate::scenario::Protocol as Settings;
pub use server::RtspServerStats;

/// RTSP's well-known port.
pub const RTSP_PORT: u16 = 554;

/// RTSP push ingest.
pub struct Rtsp;

/// `rtsp = { timeout }`: the relay's RTSP settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtspTable {
    /// A session silent this long ends (RFC 2326: 60 s).
    pub timeout: HumanDuration,
}

impl Default for RtspTable {
    fn default() -> Self {
        RtspTable {
            timeout: HumanDuration(Duration::from_secs(60)),
        }
    }
}

impl Table for RtspTable {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Protocol for Rtsp {
    fn name(&self) -> &'static str {
        "rtsp"
    }

    fn endpoints(&self) -> &'static [Endpoint] {
        &[Endpoint::Tcp(RTSP_PORT)]
    }

    fn schemes(&self) -> &'static [Scheme] {
        &[Scheme {
            name: "rtsp",
            endpoint: 0,
            what: "RTSP push (ANNOUNCE/RECORD, TCP-interleaved; H.264, AAC): publish only, e.g. ffmpeg -f rtsp -rtsp_transport tcp",
        }]
    }

    fn table_key(&self) -> &'static str {
        "rtsp"
    }

    fn configure(
        &self,
        table: Option<&toml::Value>,
        cx: &EntryCx,
    ) -> Result<Box<dyn Table>, ConfigError> {
        let at = format!("{}.rtsp", cx.field);
        let t: RtspTable = super::parse_table(table, &at)?;
        let timeout = t.timeout.get();
        if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                format!("{at}.timeout"),
                "between 1 s and 1 h",
            ));
        }
        Ok(Box::new(t))
    }

    fn no_player(&self) -> Option<&'static str> {
        Some(
            "RTSP is an ingest (ANNOUNCE/RECORD): play its streams over rtmp://, rtmpq:// \
             or gudp://",
        )
    }

    fn serve(
        &self,
        socks: Vec<Bound>,
        settings: &Settings,
        cx: ServeCx,
    ) -> anyhow::Result<ServerTask> {
        let Some(Bound::Tcp(listener)) = socks.into_iter().next() else {
            anyhow::bail!("RTSP serves on one TCP socket");
        };
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let table = settings.table::<RtspTable>().cloned().unwrap_or_default();
        let limits = session::Limits {
            timeout: table.timeout.get(),
            ..session::Limits::default()
        };
        let stats = Arc::new(Mutex::new(RtspServerStats::default()));
        let task = server::serve(listener, cx.hub, limits, cx.stop, stats.clone());
        Ok(tokio::spawn(async move {
            task.await;
            Box::new(stats.lock().map(|s| s.clone()).unwrap_or_default()) as Box<dyn Stats>
        }))
    }

    fn dial<'a>(&'a self, cx: DialCx<'a>, to: Endpoint) -> LocalFuture<'a, anyhow::Result<Dialed>> {
        Box::pin(client::dial(cx, to))
    }
}
