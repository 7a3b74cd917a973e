//! The scenario file as written: plain serde structs, unknown fields
//! refused. `validate` turns them into a [`super::Scenario`].

use netem::config::ProfileConfig;
use netem::units::{BitRate, HumanDuration, Probability};
use serde::{Deserialize, Serialize};

use crate::media::abr::AbrConfig;
use crate::media::encoder::EncoderConfig;
use crate::media::player::LatePolicy;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub duration: HumanDuration,
    /// Start-up vs steady state: frames captured within this long of the
    /// camera's start are start-up; the rest are the steady state (default:
    /// 5 s or the start of the second GOP, whichever is later).
    #[serde(default)]
    pub warmup: Option<HumanDuration>,
    #[serde(default = "one")]
    pub seed: u64,
    #[serde(default = "one_u32")]
    pub repeat: u32,
    #[serde(default)]
    pub media: MediaFile,
    /// Network variants: each protocol runs once over each.
    #[serde(default)]
    pub networks: Vec<NetworkFile>,
    pub protocols: Vec<ProtocolFile>,
    #[serde(default)]
    pub budgets: Budgets,
    /// "real" (the default: real sockets on the link or proxies) or
    /// "virtual" (one thread, engine pipelines, no sockets: faster than
    /// real time and the same bytes for a seed; Glass's UDP protocol only
    /// so far).
    #[serde(default)]
    pub clock: ClockKind,
}

/// How a scenario's runs keep time.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClockKind {
    /// Real time: real sockets through the link or the proxies.
    #[default]
    Real,
    /// Virtual time: every endpoint a state machine, every link an engine
    /// pipeline, the clock jumping from one event to the next.
    Virtual,
}

fn one() -> u64 {
    1
}
fn one_u32() -> u32 {
    1
}

/// Every field has a default (`EncoderConfig::default()`), so a sweep or a
/// scenario can set just the ones it varies.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaFile {
    pub bitrate: BitRate,
    pub fps: f64,
    /// Frames per GOP.
    pub gop: u32,
    /// A label for reports ("1280x720"); sizes follow the bitrate.
    pub resolution: String,
    pub audio: bool,
    pub encode_delay: HumanDuration,
    /// Replay this FLV recording (path relative to the scenario file)
    /// instead of the synthetic encoder; bitrate, fps and GOP then come
    /// from the file.
    pub flv: Option<String>,
}

impl Default for MediaFile {
    fn default() -> Self {
        let e = EncoderConfig::default();
        MediaFile {
            bitrate: e.bitrate,
            fps: e.fps,
            gop: e.gop,
            resolution: "1280x720".into(),
            audio: true,
            encode_delay: HumanDuration(e.encode_delay),
            flv: None,
        }
    }
}

/// One network: the first and last mile.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    pub name: String,
    #[serde(default)]
    pub first_mile: LinkFile,
    #[serde(default)]
    pub last_mile: LinkFile,
    /// Competing flows that share a mile with the media (link mode).
    #[serde(default)]
    pub cross: Vec<crate::cross::CrossFile>,
    /// Hostile clients against the relay during the run.
    #[serde(default)]
    pub hostile: Vec<crate::hostile::AttackFile>,
    /// Faults injected into the run (link mode).
    #[serde(default)]
    pub faults: Vec<crate::faults::FaultFile>,
    /// Player groups, each on its own last mile (instead of `last_mile`):
    /// one publisher feeds them all, each group's figures are reported
    /// apart.
    #[serde(default)]
    pub players: Vec<PlayerGroupFile>,
    /// Light viewers beside the player, on `last_mile` (a network without
    /// `players`; groups declare their own).
    #[serde(default)]
    pub viewers: Option<crate::fleet::ViewersFile>,
}

/// A player group: a host of its own joined to the server by its last mile.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlayerGroupFile {
    /// Its host's name (a word of at most 12 letters, digits, - and _).
    pub name: String,
    #[serde(default)]
    pub last_mile: LinkFile,
    /// Light viewers beside the group's player, on its last mile.
    #[serde(default)]
    pub viewers: Option<crate::fleet::ViewersFile>,
}

/// A link: one two-way `profile`, or `uplink` and `downlink` each a preset,
/// a netem line or a table. Unset directions are unimpaired.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFile {
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub uplink: Option<DirectionFile>,
    #[serde(default)]
    pub downlink: Option<DirectionFile>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum DirectionFile {
    /// A preset name (its uplink or downlink) or a netem line.
    Named(String),
    Table(Box<ProfileConfig>),
}

/// By hand rather than `untagged`, which would hide why a table is wrong
/// behind "did not match any variant".
impl<'de> Deserialize<'de> for DirectionFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(DirectionFile::Named(s)),
            v @ toml::Value::Table(_) => ProfileConfig::deserialize(v)
                .map(|p| DirectionFile::Table(Box::new(p)))
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected a preset name, a netem line or a table, found a {}",
                other.type_str()
            ))),
        }
    }
}

/// The keys of [`ProtocolFile`]'s own fields (for the error on a key that
/// is neither one of them nor a protocol's table): keep in step with it.
pub const PROTOCOL_COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "stream_key",
    "player",
    "publisher",
    "ffmpeg_player",
    "tcp_congestion",
    "uri",
    "player_uri",
    "abr",
    "capture_starts",
];

/// A `[[protocols]]` entry: the fields every protocol shares, and each
/// registered protocol's own table (`quic = {…}`, `udp = {…}`), which the
/// protocol parses itself. Keys that are neither are refused at validation.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ProtocolFile {
    /// Name in reports (default: the kind).
    #[serde(default)]
    pub name: Option<String>,
    /// A registered protocol's name: "rtmp" (over TCP or QUIC) or "udp"
    /// (Glass's UDP protocol into the relay, also its gateway to RTMP).
    pub kind: String,
    /// The stream key the publisher uses (default "glass"); the relay accepts only it.
    #[serde(default)]
    pub stream_key: Option<String>,
    #[serde(default)]
    pub player: PlayerFile,
    /// Who publishes: `glass` (the media source of `[media]`, default) or
    /// `ffmpeg` (a libx264 test pattern, timed by its RTMP timestamps).
    #[serde(default)]
    pub publisher: PublisherKind,
    /// Also play the stream with ffmpeg (next to Glass's player, over the
    /// same last mile) and report what it decoded.
    #[serde(default)]
    pub ffmpeg_player: bool,
    /// TCP congestion control of Glass's sockets (default "cubic", Linux's
    /// default), so results do not depend on the machine's setting.
    #[serde(default)]
    pub tcp_congestion: Option<String>,
    /// The stream URI the publisher (and, unless `player_uri` says
    /// otherwise, the player) uses; its scheme and query choose TCP or QUIC
    /// (see `protocol::uri`). The host is `server`, Glass's relay. Default
    /// `rtmp://server/live/KEY`.
    #[serde(default)]
    pub uri: Option<String>,
    /// The player's URI, when it differs (a QUIC publisher with a TCP player).
    #[serde(default)]
    pub player_uri: Option<String>,
    /// Sender-side ABR (`abr = {}` for the defaults).
    #[serde(default)]
    pub abr: Option<AbrConfig>,
    /// When the publisher's camera starts: `on_connect` (default, when the
    /// session can carry media, as OBS and ffmpeg start writing after their
    /// handshake) or `at_start` (at the run's start: a camera already
    /// running, whose frames queue behind the session's set-up).
    #[serde(default)]
    pub capture_starts: CaptureStarts,
    /// Everything else: the protocols' tables, by key.
    #[serde(flatten)]
    pub tables: std::collections::BTreeMap<String, toml::Value>,
}

/// When a publisher's camera starts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureStarts {
    /// When the session can carry media (publish accepted, session up).
    #[default]
    OnConnect,
    /// At the run's start, whatever the set-up takes.
    AtStart,
}

/// A player's live-edge control, as a scenario names it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyControlKind {
    None,
    CatchUp,
    SkipToLive,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublisherKind {
    #[default]
    Glass,
    Ffmpeg,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlayerFile {
    /// Playout buffer (default per protocol: RTMP 500 ms).
    #[serde(default)]
    pub target_delay: Option<HumanDuration>,
    /// Display refresh (default 1/60 s).
    #[serde(default)]
    pub refresh: Option<HumanDuration>,
    /// `wait` (buffered, default for RTMP) or `skip` (low delay).
    #[serde(default)]
    pub late: Option<LatePolicy>,
    /// `none`, `catch_up` or `skip_to_live` (default: `catch_up` for a
    /// `wait` player, `skip_to_live` for a `skip` one).
    #[serde(default)]
    pub latency_control: Option<LatencyControlKind>,
    /// Fastest playback rate while catching up (default 1.2).
    #[serde(default)]
    pub max_rate: Option<f64>,
    /// How late a `skip_to_live` player may fall before it jumps (default 100 ms).
    #[serde(default)]
    pub skip_threshold: Option<HumanDuration>,
    /// When Glass's players connect, from the run's start (default 0 s:
    /// before the publisher, so they see the stream from its first frame).
    /// Later, they join a running stream, as most viewers do: an RTMP or
    /// HTTP-FLV player starts from the relay's GOP cache, an HLS player
    /// HOLD-BACK from the live edge.
    #[serde(default)]
    pub join: Option<HumanDuration>,
}

/// Limits a run is judged by (reported now; `glass check` will gate on them).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub g2g_p50: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub g2g_p99: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_ratio: Option<Probability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_delay: Option<HumanDuration>,
    /// G2G percentiles over the steady state (frames after the warm-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_g2g_p50: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_g2g_p99: Option<HumanDuration>,
}
