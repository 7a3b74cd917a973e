//! QUIC for RTMP (quinn 0.11 on rustls/ring): the relay's endpoint and the
//! clients', a self-signed certificate made at start (rcgen), ALPN naming
//! the mapping, a selectable congestion controller, and quinn's statistics.
//!
//! Two mappings of RTMP onto QUIC, told apart by ALPN so the server knows
//! which one a client speaks:
//! - `rtmp` (the faithful one): the whole RTMP byte stream (handshake,
//!   chunks) on one bidirectional stream. A lost packet holds up everything
//!   behind it, as on TCP, but QUIC's recovery and congestion control apply.
//! - `rtmp-frames`: handshake and commands on the bidirectional stream, and
//!   each audio/video message on its own unidirectional stream
//!   ([`write_message`]), so a lost packet only holds up its own frame.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// How RTMP rides on QUIC.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mapping {
    /// The RTMP byte stream on one bidirectional stream.
    #[default]
    Stream,
    /// Each audio/video message on its own unidirectional stream.
    Frames,
}

impl Mapping {
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Mapping::Stream => b"rtmp",
            Mapping::Frames => b"rtmp-frames",
        }
    }
    fn from_alpn(alpn: &[u8]) -> Option<Mapping> {
        [Mapping::Stream, Mapping::Frames]
            .into_iter()
            .find(|m| m.alpn() == alpn)
    }
}

/// quinn's congestion controllers.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    #[default]
    Cubic,
    NewReno,
    Bbr,
}

/// Transport settings both ends share.
#[derive(Clone, Debug)]
pub struct QuicSettings {
    pub congestion: Congestion,
    /// Bytes the sender may buffer beyond what is acknowledged: kept small,
    /// like a TCP send buffer, so a sender that outruns the path sees it
    /// (writes block) and ABR can react.
    pub send_window: u64,
}

impl Default for QuicSettings {
    fn default() -> Self {
        QuicSettings {
            congestion: Congestion::Cubic,
            send_window: 256 * 1024,
        }
    }
}

fn transport_config(s: &QuicSettings) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.send_window(s.send_window)
        // One stream per frame in the frames mapping: room for a few seconds.
        .max_concurrent_uni_streams(4096u32.into())
        .keep_alive_interval(Some(Duration::from_secs(1)))
        .max_idle_timeout(Some(
            Duration::from_secs(30)
                .try_into()
                .expect("30 s is a valid idle timeout"),
        ));
    match s.congestion {
        Congestion::Cubic => t.congestion_controller_factory(Arc::new(CubicConfig::default())),
        Congestion::NewReno => t.congestion_controller_factory(Arc::new(NewRenoConfig::default())),
        Congestion::Bbr => t.congestion_controller_factory(Arc::new(BbrConfig::default())),
    };
    Arc::new(t)
}

/// The relay's certificate; clients of this process trust it.
#[derive(Clone)]
pub struct Identity {
    cert: rustls::pki_types::CertificateDer<'static>,
    key: Arc<rustls::pki_types::PrivateKeyDer<'static>>,
}

/// The name in the certificate, and what clients ask for.
pub const SERVER_NAME: &str = "glass-relay";

impl Identity {
    /// The process's identity, made the first time it is asked for: the
    /// relay's QUIC side and Glass's QUIC clients of any run share it.
    pub fn shared() -> Result<&'static Identity> {
        static SHARED: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        if let Some(id) = SHARED.get() {
            return Ok(id);
        }
        let id = Identity::generate()?;
        Ok(SHARED.get_or_init(|| id))
    }

    /// An identity that is the same in every process: an Ed25519 key
    /// from a fixed seed (Ed25519 signs deterministically, so certificate
    /// and handshake are the same size every time). Virtual time uses it,
    /// so a seed gives the same packets; a test relay's key, not a secret.
    pub fn fixed() -> Result<Identity> {
        // PKCS#8 v1 for Ed25519: this prefix, then the 32-byte seed.
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(b"glass virtual-time relay key 001");
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8);
        let key = rcgen::KeyPair::try_from(&der).context("the fixed Ed25519 key")?;
        let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .context("the relay's certificate parameters")?;
        let cert = params
            .self_signed(&key)
            .context("signing the relay's certificate")?;
        Ok(Identity {
            cert: cert.der().clone(),
            key: Arc::new(rustls::pki_types::PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            )),
        })
    }

    fn generate() -> Result<Identity> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .context("generating the relay's self-signed certificate")?;
        Ok(Identity {
            cert: certified.cert.der().clone(),
            key: Arc::new(rustls::pki_types::PrivateKeyDer::Pkcs8(
                certified.signing_key.serialize_der().into(),
            )),
        })
    }
}

/// The relay's QUIC configuration: `id`'s certificate, both mappings.
pub fn server_config(id: &Identity, s: &QuicSettings) -> Result<quinn::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], id.key.clone_key())
        .context("the relay's TLS configuration")?;
    tls.alpn_protocols = vec![
        Mapping::Stream.alpn().to_vec(),
        Mapping::Frames.alpn().to_vec(),
    ];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| anyhow!("QUIC TLS: {e}"))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport_config(s));
    Ok(cfg)
}

/// A client's QUIC configuration: trusts `id`, speaks `mapping`.
pub fn client_config(
    id: &Identity,
    mapping: Mapping,
    s: &QuicSettings,
) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(id.cert.clone())?;
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![mapping.alpn().to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| anyhow!("QUIC TLS: {e}"))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport_config(s));
    Ok(cfg)
}

/// A server endpoint on `socket` accepting both mappings.
pub fn server(socket: UdpSocket, id: &Identity, s: &QuicSettings) -> Result<quinn::Endpoint> {
    let cfg = server_config(id, s)?;
    socket.set_nonblocking(true)?;
    let runtime = quinn::default_runtime().ok_or_else(|| anyhow!("no async runtime for quinn"))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(cfg),
        socket,
        runtime,
    )?)
}

/// A client endpoint on `socket` (bound in the client's namespace) that
/// trusts `id` and speaks `mapping`.
pub fn client(
    socket: UdpSocket,
    id: &Identity,
    mapping: Mapping,
    s: &QuicSettings,
) -> Result<quinn::Endpoint> {
    let cfg = client_config(id, mapping, s)?;
    socket.set_nonblocking(true)?;
    let runtime = quinn::default_runtime().ok_or_else(|| anyhow!("no async runtime for quinn"))?;
    let mut ep = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)?;
    ep.set_default_client_config(cfg);
    Ok(ep)
}

/// The mapping a connection's client asked for (from ALPN).
pub fn mapping_of(conn: &quinn::Connection) -> Result<Mapping> {
    mapping_of_handshake(conn.handshake_data())
}

/// The mapping named by a connection's handshake data (quinn's or
/// quinn-proto's: the same type), from its ALPN.
pub fn mapping_of_handshake(data: Option<Box<dyn std::any::Any>>) -> Result<Mapping> {
    let data = data.ok_or_else(|| anyhow!("no handshake data"))?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .map_err(|_| anyhow!("unexpected handshake data"))?;
    let alpn = data
        .protocol
        .ok_or_else(|| anyhow!("the client named no ALPN protocol"))?;
    Mapping::from_alpn(&alpn).ok_or_else(|| anyhow!("unknown ALPN {alpn:?}"))
}

/// quinn's view of a connection, for the recovery metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QuicStats {
    pub rtt_us: u64,
    pub min_rtt_us: u64,
    /// Congestion window, bytes.
    pub cwnd: u64,
    pub congestion_events: u64,
    /// Packets quinn declared lost (what it retransmits the data of).
    pub lost_packets: u64,
    pub lost_bytes: u64,
    pub sent_packets: u64,
    pub udp_datagrams_sent: u64,
    pub udp_bytes_sent: u64,
}

pub fn stats(conn: &quinn::Connection) -> QuicStats {
    stats_of(&conn.stats(), conn.rtt())
}

/// [`QuicStats`] from a connection's statistics and its RTT estimate
/// (quinn's or quinn-proto's).
pub fn stats_of(s: &quinn::ConnectionStats, rtt: Duration) -> QuicStats {
    QuicStats {
        rtt_us: s.path.rtt.as_micros() as u64,
        min_rtt_us: rtt.as_micros() as u64,
        cwnd: s.path.cwnd,
        congestion_events: s.path.congestion_events,
        lost_packets: s.path.lost_packets,
        lost_bytes: s.path.lost_bytes,
        sent_packets: s.path.sent_packets,
        udp_datagrams_sent: s.udp_tx.datagrams,
        udp_bytes_sent: s.udp_tx.bytes,
    }
}

/// Message types on a frames-mapping stream (RTMP's own type ids).
pub const MSG_AUDIO: u8 = 8;
pub const MSG_VIDEO: u8 = 9;

/// Largest message accepted off the wire.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Sends one RTMP message on its own unidirectional stream: type (1 byte),
/// timestamp (4, big-endian ms), then the body to the stream's end.
///
/// `order` is the message's position in the sender's sequence: older
/// messages go first (quinn otherwise shares the window round-robin between
/// streams, so a large I-frame would finish after the small frames behind it).
pub async fn write_message(
    conn: &quinn::Connection,
    kind: u8,
    timestamp: u32,
    body: &[u8],
    order: u64,
) -> Result<()> {
    let mut s = conn.open_uni().await?;
    s.set_priority(priority(order))?;
    s.write_all(&message_head(kind, timestamp)).await?;
    s.write_all(body).await?;
    s.finish()?;
    Ok(())
}

/// A frames-mapping stream's priority for the message at `order`: higher
/// is sent first, so older messages go first.
pub fn priority(order: u64) -> i32 {
    i32::MAX - (order % (i32::MAX as u64)) as i32
}

/// A frames-mapping message's head: type (1 byte), timestamp (4, ms).
pub fn message_head(kind: u8, timestamp: u32) -> [u8; 5] {
    let mut head = [0u8; 5];
    head[0] = kind;
    head[1..].copy_from_slice(&timestamp.to_be_bytes());
    head
}

/// Reads one message written by [`write_message`].
pub async fn read_message(mut s: quinn::RecvStream) -> Result<(u8, u32, bytes::Bytes)> {
    parse_message(s.read_to_end(MAX_MESSAGE).await?)
}

/// One frames-mapping stream's whole content as (type, timestamp, body).
pub fn parse_message(all: Vec<u8>) -> Result<(u8, u32, bytes::Bytes)> {
    if all.len() < 5 {
        bail!("a frames-mapping stream of {} bytes: too short", all.len());
    }
    let kind = all[0];
    if kind != MSG_AUDIO && kind != MSG_VIDEO {
        bail!("message type {kind} on a frames-mapping stream");
    }
    let ts = u32::from_be_bytes([all[1], all[2], all[3], all[4]]);
    Ok((kind, ts, bytes::Bytes::from(all).slice(5..)))
}

/// Connects `endpoint` to `server` within `timeout`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    server: SocketAddr,
    timeout: Duration,
) -> Result<quinn::Connection> {
    let connecting = endpoint.connect(server, SERVER_NAME)?;
    match tokio::time::timeout(timeout, connecting).await {
        Ok(c) => Ok(c?),
        Err(_) => bail!(
            "the QUIC handshake with {server} did not finish within {:.1} s",
            timeout.as_secs_f64()
        ),
    }
}

/// Reads every unidirectional stream a frames-mapping peer opens, each one
/// message, in its own task (a stream held up by loss holds up only
/// itself), and hands them over in the order they complete.
pub fn spawn_uni_reader(conn: quinn::Connection) -> mpsc::Receiver<(bool, bytes::Bytes, u32)> {
    let (tx, rx) = mpsc::channel(crate::relay::hub::PLAYER_QUEUE);
    tokio::spawn(async move {
        while let Ok(stream) = conn.accept_uni().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                match read_message(stream).await {
                    Ok((kind, ts, data)) => {
                        let _ = tx.send((kind == MSG_VIDEO, data, ts)).await;
                    }
                    Err(e) => tracing::debug!("frames-mapping stream: {e:#}"),
                }
            });
        }
    });
    rx
}
