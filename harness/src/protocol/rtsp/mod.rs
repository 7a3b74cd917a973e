//! RTSP push ingest: publishers (ffmpeg, OBS, an IP camera) ANNOUNCE and
//! RECORD H.264 and AAC as RTP, interleaved on the RTSP connection
//! (`rtsp://…`) or over UDP (`rtsp://…?transport=udp`), into the relay,
//! which plays it out over every other protocol (RTMP, RTMP over QUIC,
//! Glass's UDP protocol).
//!
//! The sans-IO parts: the session state machine (`session`), the
//! ANNOUNCE's tracks (`sdp`), RTP and its sequence tracking (`rtp`), the
//! H.264 and AAC depacketizers and packetizers (`h264`, `aac`), the UDP
//! datagrams' routing to sessions (`udp`), the UDP path's reorder buffer
//! (`reorder`), and the ingest that turns a track's packets into the hub's
//! media with wall-clock timestamps from RTCP sender reports (`ingest`);
//! the tokio edge is `server`; Glass's own publisher is `client`; Basic
//! and Digest credentials are `auth`. Not built: RTCP receiver reports
//! (nothing here would act on them: an RTSP publisher has no
//! retransmission).

pub mod aac;
pub mod auth;
pub mod client;
pub mod h264;
pub mod ingest;
pub mod reorder;
pub mod rtp;
pub mod sdp;
pub mod section;
pub mod server;
pub mod session;
pub mod udp;

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
/// The relay's RTP and RTCP ports for the UDP transport (Darwin Streaming
/// Server's range starts here): every session's datagrams arrive on them.
pub const RTP_PORT: u16 = 6970;
pub const RTCP_PORT: u16 = 6971;
const ENDPOINTS: [Endpoint; 3] = [
    Endpoint::Tcp(RTSP_PORT),
    Endpoint::Udp(RTP_PORT),
    Endpoint::Udp(RTCP_PORT),
];

/// RTSP push ingest.
pub struct Rtsp;

/// `rtsp = { timeout, jitter_buffer, auth }`: the relay's RTSP settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtspTable {
    /// A session silent this long ends (RFC 2326: 60 s); media over UDP
    /// counts as a sign of life.
    pub timeout: HumanDuration,
    /// The UDP path's reorder buffer: after a missing RTP packet, how long
    /// the packets behind it wait for it before it is given up (0 s: no
    /// reordering; packets out of order are then lost to the depacketizer).
    pub jitter_buffer: HumanDuration,
    /// Credentials every publisher must give (Basic or Digest); none by
    /// default (the stream key in the path is checked either way).
    pub auth: Option<auth::Credentials>,
}

impl Default for RtspTable {
    fn default() -> Self {
        RtspTable {
            timeout: HumanDuration(Duration::from_secs(60)),
            jitter_buffer: HumanDuration(Duration::from_millis(50)),
            auth: None,
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
        &ENDPOINTS
    }

    fn schemes(&self) -> &'static [Scheme] {
        &[Scheme {
            name: "rtsp",
            endpoint: 0,
            what: "RTSP push (ANNOUNCE/RECORD; H.264, AAC), RTP interleaved or over UDP (?transport=udp): \
                   publish only, e.g. ffmpeg -f rtsp -rtsp_transport tcp|udp",
        }]
    }

    /// `rtsp://user:password@server/…`: the publisher's credentials when
    /// the relay asks (`rtsp.auth`).
    fn takes_credentials(&self) -> bool {
        true
    }

    /// `transport=tcp|udp`; kept: `transport=udp`.
    fn uri_options(
        &self,
        scheme: &'static str,
        query: &[(String, String)],
    ) -> Result<super::UriOptions, String> {
        let mut udp = false;
        for (k, v) in query {
            match (k.as_str(), v.as_str()) {
                ("transport", "tcp") => udp = false,
                ("transport", "udp") => udp = true,
                ("transport", v) => {
                    return Err(format!("transport must be one of tcp, udp, not \"{v}\""));
                }
                (k, _) => {
                    return Err(format!(
                        "unknown query parameter \"{k}\" (rtsp:// knows transport; its settings \
                         are the scenario's `rtsp` table)"
                    ));
                }
            }
        }
        let options = if udp {
            vec![("transport".to_string(), "udp".to_string())]
        } else {
            Vec::new()
        };
        Ok((scheme, options))
    }

    /// Over UDP: the RTSP connection carries control only, and the RTP and
    /// RTCP ports carry the media.
    fn client_endpoints(&self, uri: &super::uri::StreamUri, to: Endpoint) -> Vec<(Endpoint, bool)> {
        if over_udp(uri) {
            vec![(to, true), (ENDPOINTS[1], false), (ENDPOINTS[2], false)]
        } else {
            vec![(to, false)]
        }
    }

    fn ffmpeg_output(
        &self,
        uri: &super::uri::StreamUri,
        at: std::net::SocketAddr,
    ) -> Option<(Vec<String>, &'static str)> {
        let user = match &uri.credentials {
            Some((user, password)) => format!("{user}:{password}@"),
            None => String::new(),
        };
        let url = format!("rtsp://{user}{at}/{}/{}", uri.app, uri.key);
        let (transport, used) = if over_udp(uri) {
            ("udp", "rtsp/udp")
        } else {
            ("tcp", "rtsp/tcp")
        };
        Some((crate::interop::ffmpeg::rtsp_output(&url, transport), used))
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
        if let Some(why) = t.auth.as_ref().and_then(auth::Credentials::problem) {
            return Err(ConfigError::invalid(format!("{at}.auth"), why));
        }
        if t.jitter_buffer.get() > Duration::from_secs(2) {
            return Err(ConfigError::invalid(
                format!("{at}.jitter_buffer"),
                "between 0 s and 2 s",
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
        let mut socks = socks.into_iter();
        let (Some(Bound::Tcp(listener)), Some(Bound::Udp(rtp)), Some(Bound::Udp(rtcp))) =
            (socks.next(), socks.next(), socks.next())
        else {
            anyhow::bail!("RTSP serves on a TCP socket and two UDP sockets (RTP, RTCP)");
        };
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let udp = |s: std::net::UdpSocket| {
            s.set_nonblocking(true)?;
            tokio::net::UdpSocket::from_std(s)
        };
        let ports = match cx.publisher_ports.as_slice() {
            [_, rtp, rtcp, ..] => (*rtp, *rtcp),
            _ => (rtp.local_addr()?.port(), rtcp.local_addr()?.port()),
        };
        let udp = server::UdpSide {
            rtp: udp(rtp)?,
            rtcp: udp(rtcp)?,
            ports,
        };
        let table = settings.table::<RtspTable>().cloned().unwrap_or_default();
        let config = server::Config {
            limits: session::Limits {
                timeout: table.timeout.get(),
                ..session::Limits::default()
            },
            jitter_buffer: table.jitter_buffer.get(),
            auth: table.auth.clone(),
        };
        let stats = Arc::new(Mutex::new(RtspServerStats::default()));
        let task = server::serve(listener, Some(udp), cx.hub, config, cx.stop, stats.clone());
        Ok(tokio::spawn(async move {
            task.await;
            Box::new(stats.lock().map(|s| s.clone()).unwrap_or_default()) as Box<dyn Stats>
        }))
    }

    fn dial<'a>(&'a self, cx: DialCx<'a>, to: Endpoint) -> LocalFuture<'a, anyhow::Result<Dialed>> {
        Box::pin(client::dial(cx, to))
    }

    fn run_section(&self, cx: &super::RunCx) -> Option<Box<dyn Stats>> {
        Some(Box::new(section::section(cx)))
    }

    fn summary(&self, records: &[crate::output::records::RunRecord]) -> String {
        section::ingest_table(records)
    }
}

/// Whether `uri` asks for RTP over UDP (`?transport=udp`).
pub fn over_udp(uri: &super::uri::StreamUri) -> bool {
    uri.options
        .iter()
        .any(|(k, v)| k == "transport" && v == "udp")
}
