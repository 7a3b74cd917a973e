//! Glass's protocols, one folder each: its server side on the relay's hub,
//! its publisher and player clients, its settings and statistics. Only
//! these folders know a protocol crate (rml_rtmp, quinn, udpmedia).
//!
//! [`REGISTRY`] lists them. What is protocol-neutral loops over it: the
//! runner starts every protocol's server side on the run's hub, `glass
//! serve` starts them on this machine's ports and prints their URIs, and
//! the relay's statistics gather each protocol's section. A new protocol is
//! a folder and a line in [`REGISTRY`].

pub mod client;
pub mod http;
pub mod rtmp;
pub mod rtsp;
pub mod udp;
pub mod uri;

pub use client::{
    ClientStats, DialCx, Dialed, LocalFuture, PublishCx, Role, Session, TransportReport,
};

use std::any::Any;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::relay::Hub;
use crate::scenario::Protocol as Settings;

/// A port a protocol's server side listens on, on the relay's host.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Tcp(u16),
    Udp(u16),
}

impl Endpoint {
    pub fn port(self) -> u16 {
        match self {
            Endpoint::Tcp(p) | Endpoint::Udp(p) => p,
        }
    }

    /// The same kind of endpoint on `port`.
    pub fn with_port(self, port: u16) -> Endpoint {
        match self {
            Endpoint::Tcp(_) => Endpoint::Tcp(port),
            Endpoint::Udp(_) => Endpoint::Udp(port),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(p) => write!(f, "TCP {p}"),
            Endpoint::Udp(p) => write!(f, "UDP {p}"),
        }
    }
}

/// A socket bound for an endpoint (a blocking std socket; the protocol
/// makes it asynchronous on the runtime it serves on).
#[derive(Debug)]
pub enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// A URI scheme a protocol answers and the endpoint it arrives on.
#[derive(Copy, Clone, Debug)]
pub struct Scheme {
    pub name: &'static str,
    /// An index into the protocol's [`Protocol::endpoints`].
    pub endpoint: usize,
    /// What it carries, for `glass serve`'s listing.
    pub what: &'static str,
}

/// What a server side gets besides its sockets.
pub struct ServeCx {
    /// The relay's streams.
    pub hub: Hub,
    /// Changes when the run (or `glass serve`) ends.
    pub stop: watch::Receiver<bool>,
    /// The stream's nominal bitrate (bit/s): a protocol whose server sends
    /// with congestion control starts from it.
    pub media_bps: u64,
    /// The port a publisher reaches each of the sockets at, in order: the
    /// socket's own, or proxy mode's first-mile proxy in front of it. A
    /// protocol that names its ports to clients (RTSP's `server_port`)
    /// names these, so the client's datagrams take the impaired path.
    pub publisher_ports: Vec<u16>,
    /// The run's clock (Glass's frames carry capture instants on it), or
    /// None where there is no run (`glass serve`).
    pub clock: Option<netem::time::Clock>,
}

/// A protocol's statistics: its section of the relay's, or of one client
/// session's.
pub trait Stats: std::fmt::Debug + Send + Sync + 'static {
    /// Its fields (the relay's are merged into results.json's `relay`
    /// object).
    fn json(&self) -> serde_json::Map<String, serde_json::Value>;
    /// For the protocol's own typed readers (`RelayReport::server`).
    fn as_any(&self) -> &dyn Any;
    /// Packets or segments sent again (TCP's retransmitted segments, the
    /// packets QUIC declared lost, the UDP protocol's retransmissions): the
    /// run's `retrans` column sums them over the run's sections.
    fn retransmits(&self) -> u64 {
        0
    }
}

/// What a protocol's section of one run is built from: a player group's
/// view of the finished run.
pub struct RunCx<'a> {
    pub publisher: &'a crate::publisher::PublisherStats,
    /// The protocol-specific statistics of Glass's clients of this run:
    /// the publisher's, and this group's player's.
    pub clients: &'a [&'a dyn Stats],
    /// Each registered protocol's server statistics (the whole relay's).
    pub servers: &'a [(&'static str, std::sync::Arc<dyn Stats>)],
    /// What the network did, as this group sees it.
    pub net: &'a crate::topology::GroupNetworkStats,
}

/// A protocol's settings from its table in a `[[protocols]]` entry, parsed
/// and validated by the protocol (the scenario keeps them opaque; the
/// protocol's server and clients read them back typed).
pub trait Table: std::fmt::Debug + Send + Sync + 'static {
    fn as_any(&self) -> &dyn Any;
}

/// What a protocol's table is checked against: the entry it is in.
pub struct EntryCx<'a> {
    /// The entry's dotted field ("protocols[0]"): errors name
    /// `protocols[0].udp.red`, and the scenario adds file and line.
    pub field: &'a str,
    /// The player's playout buffer (the UDP protocol recovers within it).
    pub target_delay: std::time::Duration,
    /// The scheme Glass's player plays (`llhls`: HLS with parts on).
    pub player_scheme: &'a str,
}

/// What a protocol reads from a URI's query: the canonical scheme the URI
/// means and its normalized options.
pub type UriOptions = (&'static str, Vec<(String, String)>);

/// A protocol's table as written, as its serde struct (`None`: the
/// struct's defaults); errors name the table's field `at`.
pub fn parse_table<T: serde::de::DeserializeOwned + Default>(
    table: Option<&toml::Value>,
    at: &str,
) -> Result<T, netem::ConfigError> {
    match table {
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| netem::ConfigError::invalid(at, e.message().to_string())),
        None => Ok(T::default()),
    }
}

/// Several protocols' sections as one JSON object of all their fields
/// (the relay's `relay` object, a run's `result`).
pub fn merged_json<'a>(
    first: serde_json::Map<String, serde_json::Value>,
    sections: impl IntoIterator<Item = &'a dyn Stats>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = first;
    for s in sections {
        fields.extend(s.json());
    }
    fields
}

/// A serializable statistics struct's fields, for [`Stats::json`].
pub fn json_fields(stats: &impl serde::Serialize) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(stats) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// A running server side: it ends after its `stop` changes, with its
/// statistics.
pub type ServerTask = JoinHandle<Box<dyn Stats>>;

/// One protocol: its URIs, its ports, its server side on the hub and its
/// clients.
pub trait Protocol: Sync {
    /// Its name in `glass serve` and in errors ("rtmp", "udp").
    fn name(&self) -> &'static str;
    /// The ports its server side listens on, by default.
    fn endpoints(&self) -> &'static [Endpoint];
    /// The URI schemes it answers; the first is its default (`kind = NAME`
    /// with no `uri`).
    fn schemes(&self) -> &'static [Scheme];
    /// Reads a URI's query for one of its schemes: the canonical scheme the
    /// URI means and its options, normalized (defaults left out), or why
    /// not. By default a scheme takes no query.
    fn uri_options(
        &self,
        scheme: &'static str,
        query: &[(String, String)],
    ) -> Result<UriOptions, String> {
        match query.first() {
            Some((k, _)) => Err(format!(
                "unknown query parameter \"{k}\" ({scheme}:// takes none{})",
                match self.table_key() {
                    "" => String::new(),
                    t => format!("; its settings are the scenario's `{t}` table"),
                }
            )),
            None => Ok((scheme, Vec::new())),
        }
    }
    /// Whether its URIs may carry `user:password@` (RTSP's credentials).
    fn takes_credentials(&self) -> bool {
        false
    }
    /// The relay endpoints a client of `uri` reaches (`to`, the scheme's,
    /// first) and whether each carries control only (see
    /// [`crate::topology::ClientPath::control`]). By default just `to`.
    fn client_endpoints(&self, _uri: &uri::StreamUri, to: Endpoint) -> Vec<(Endpoint, bool)> {
        vec![(to, false)]
    }
    /// ffmpeg's output arguments to publish `uri` to the relay at `at`
    /// (`-f flv rtmp://…`) and the transport they use, as results name it
    /// ("tcp", "rtsp/udp"); None if ffmpeg cannot publish it.
    fn ffmpeg_output(
        &self,
        _uri: &uri::StreamUri,
        _at: std::net::SocketAddr,
    ) -> Option<(Vec<String>, &'static str)> {
        None
    }
    /// The key of its table in a `[[protocols]]` entry ("quic", "udp").
    fn table_key(&self) -> &'static str;
    /// Parses and validates its table (`None`: not written, the defaults).
    /// Every entry gets every protocol's table: a relay serves them all.
    fn configure(
        &self,
        table: Option<&toml::Value>,
        cx: &EntryCx,
    ) -> Result<Box<dyn Table>, netem::ConfigError>;
    /// A player's playout buffer when the scenario gives none.
    fn default_target_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(500)
    }
    /// The live-edge control its players of `uri` use unless the scenario
    /// says (None: by the late policy, `LatencyControl::default_for`).
    fn default_latency_control(
        &self,
        _uri: &uri::StreamUri,
    ) -> Option<crate::scenario::LatencyControlKind> {
        None
    }
    /// Why Glass's player cannot play it, if it is an ingest only (a
    /// scenario then plays its streams over RTMP through the gateway).
    fn no_player(&self) -> Option<&'static str> {
        None
    }
    /// Why Glass cannot publish over it, if it is an egress only (a
    /// scenario then publishes over another protocol and plays over it
    /// through the gateway).
    fn no_publisher(&self) -> Option<&'static str> {
        None
    }
    /// The URL ffmpeg plays `uri` from, reaching the relay at `at`; None if
    /// ffmpeg cannot play it (an ffmpeg player then plays RTMP over TCP).
    fn ffmpeg_input(
        &self,
        _uri: &uri::StreamUri,
        _at: std::net::SocketAddr,
        _settings: &Settings,
    ) -> Option<String> {
        None
    }
    /// Why its publishers take no sender-side `abr`, if they do not.
    fn refuses_abr(&self) -> Option<&'static str> {
        None
    }
    /// Starts its server side on the hub with the sockets bound for
    /// [`Protocol::endpoints`], in order (a socket for each). Call it on a
    /// tokio runtime.
    /// The task ends after `cx.stop` changes and yields the statistics.
    fn serve(
        &self,
        socks: Vec<Bound>,
        settings: &Settings,
        cx: ServeCx,
    ) -> anyhow::Result<ServerTask>;
    /// Connects a publisher or a player to the relay's endpoint `to` (the
    /// one the URI's scheme names) from the client's host.
    fn dial<'a>(&'a self, cx: DialCx<'a>, to: Endpoint) -> LocalFuture<'a, anyhow::Result<Dialed>>;
    /// Its section of a run's result: its fields join results.json's
    /// `result` object, its `retransmits` the run's. None: no section.
    fn run_section(&self, _cx: &RunCx) -> Option<Box<dyn Stats>> {
        None
    }
    /// Its table for `glass run`'s summary, from the runs' sections ("":
    /// none).
    fn summary(&self, _records: &[crate::output::records::RunRecord]) -> String {
        String::new()
    }
    /// Its figures for the HTML report, drawn from results.json.
    fn report_figures(&self) -> Option<&'static dyn reports::html::ReportFigures> {
        None
    }
}

/// Every protocol's report figures, for `reports::html::write_report`.
pub fn report_figures() -> Vec<&'static dyn reports::html::ReportFigures> {
    REGISTRY.iter().filter_map(|p| p.report_figures()).collect()
}

/// The registered protocol called `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Protocol> {
    REGISTRY.iter().copied().find(|p| p.name() == name)
}

/// The registered protocols' names, for errors ("rtmp, udp").
pub fn names() -> String {
    REGISTRY
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The protocol that answers `uri`'s scheme and the endpoint it arrives on.
pub fn route(uri: &uri::StreamUri) -> anyhow::Result<(&'static dyn Protocol, Endpoint)> {
    let scheme = uri.scheme;
    REGISTRY
        .iter()
        .find_map(|p| {
            let s = p.schemes().iter().find(|s| s.name == scheme)?;
            Some((*p, *p.endpoints().get(s.endpoint)?))
        })
        .ok_or_else(|| anyhow::anyhow!("no registered protocol answers {scheme}:// ({uri})"))
}

/// Every protocol Glass's relay speaks.
pub static REGISTRY: &[&dyn Protocol] = &[&rtmp::Rtmp, &udp::Udp, &rtsp::Rtsp, &http::Http];
