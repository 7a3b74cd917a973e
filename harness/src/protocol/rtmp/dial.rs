//! RTMP's clients in the registry: dial the relay over the transport the
//! URI asks for (QUIC, falling back to TCP when its handshake does not
//! finish in time; or TCP), then publish or play as a [`Session`].

use std::time::Instant;

use anyhow::{Context, Result};
use netem::Time;
use netem::adapters::tcpinfo::set_congestion;
use netem::time::Clock;

use super::quic;
use super::transport::Transport;
use crate::media::abr::AbrConfig;
use crate::media::player::Player;
use crate::protocol::{
    ClientStats, DialCx, Dialed, Endpoint, LocalFuture, PublishCx, Session, TransportReport,
};
use crate::publisher::PublisherStats;

/// An RTMP client's session: its transport and the stream it is for.
struct RtmpSession {
    transport: Transport,
    key: String,
    abr: Option<AbrConfig>,
    clock: Clock,
}

impl Session for RtmpSession {
    fn ordered(&self) -> bool {
        // The frames mapping delivers frames in the order they complete.
        self.transport.frames_conn().is_none()
    }

    fn play<'a>(
        self: Box<Self>,
        player: &'a mut Player,
        end: Time,
    ) -> LocalFuture<'a, Result<ClientStats>> {
        Box::pin(async move {
            super::play(self.transport, &self.key, player, self.clock, end).await?;
            Ok(None)
        })
    }

    fn publish<'a>(
        self: Box<Self>,
        cx: PublishCx<'a>,
    ) -> LocalFuture<'a, Result<(PublisherStats, ClientStats)>> {
        Box::pin(async move {
            let s = self;
            let stats =
                super::publish(s.transport, &s.key, cx.source_for, s.abr, cx.steps, cx.end).await?;
            Ok((stats, None))
        })
    }
}

/// Dials `to` (the relay's TCP port for rtmp://, its UDP port for rtmpq://)
/// from the client's host.
pub(super) async fn dial(cx: DialCx<'_>, to: Endpoint) -> Result<Dialed> {
    let role = cx.role.as_str();
    let host = cx.place;
    let mapping = match cx.uri.option("mapping") {
        Some("frames") => quic::Mapping::Frames,
        _ => quic::Mapping::Stream,
    };
    let mut report = TransportReport {
        role,
        uri: cx.uri.redacted(),
        requested: match (cx.uri.scheme, mapping) {
            ("rtmpq", quic::Mapping::Frames) => "quic/frames".into(),
            ("rtmpq", quic::Mapping::Stream) => "quic/stream".into(),
            _ => "tcp".into(),
        },
        used: String::new(),
        fallback: None,
        handshake_ms: None,
    };
    let session = |transport| {
        Box::new(RtmpSession {
            transport,
            key: cx.uri.key.clone(),
            abr: cx.settings.abr.clone(),
            clock: cx.clock,
        })
    };
    if let Endpoint::Udp(_) = to {
        let q = super::quic_table(cx.settings);
        let settings = quic::QuicSettings {
            congestion: q.congestion,
            ..quic::QuicSettings::default()
        };
        let attempt = async {
            let addr = cx.topo.addr_from(host, to)?;
            let ep = quic::client(
                cx.topo.udp_socket(host)?,
                quic::Identity::shared()?,
                mapping,
                &settings,
            )?;
            let t0 = Instant::now();
            match quic::connect(&ep, addr, q.handshake_timeout.get()).await {
                Ok(conn) => Ok(Ok((conn, t0.elapsed()))),
                Err(e) => {
                    ep.close(0u32.into(), b"falling back to TCP");
                    Ok::<_, anyhow::Error>(Err(e))
                }
            }
        };
        match attempt.await? {
            Ok((conn, took)) => {
                report.handshake_ms = Some(took.as_secs_f64() * 1e3);
                let (send, recv) = conn.open_bi().await?;
                let t = Transport::Quic {
                    conn,
                    send,
                    recv,
                    mapping,
                };
                report.used = t.label().into();
                return Ok(Dialed {
                    session: session(t),
                    report,
                    step: "quic_handshake",
                });
            }
            Err(e) => report.fallback = Some(format!("{e:#}; fell back to TCP")),
        }
    }
    let tcp = Endpoint::Tcp(to.port());
    let s = cx.topo.connect(host, tcp)?;
    set_congestion(&s, &cx.settings.tcp_congestion)
        .with_context(|| format!("{role}: TCP congestion control"))?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    let t = Transport::Tcp(tokio::net::TcpStream::from_std(s)?);
    report.used = "tcp".into();
    let step = if report.fallback.is_some() {
        "quic_then_tcp_connect"
    } else {
        "tcp_connect"
    };
    Ok(Dialed {
        session: session(t),
        report,
        step,
    })
}
