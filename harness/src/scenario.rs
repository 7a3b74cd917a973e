//! Scenario files: what to run, over which network, judged by which budgets.
//!
//! TOML read with serde; unknown fields are refused; every error names the
//! file, the line and the field (`quickstart.toml, line 12:
//! protocols[0].player.target_delay: …`). Every field is documented in
//! `scenarios/README.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use netem::adapters::link::LinkDir;
use netem::config::{LinkProfiles, ProfileConfig};
use netem::locate;
use netem::units::{BitRate, HumanDuration, Probability};
use netem::{ConfigError, Profile};
use serde::{Deserialize, Serialize};

use crate::interop::ffmpeg::parse_resolution;
use crate::media::abr::AbrConfig;
use crate::media::encoder::EncoderConfig;
use crate::media::flv::{self, FlvTag};
use crate::media::player::{LatePolicy, LatencyControl, PlayerConfig};
use crate::protocol::rtmp::quic::Congestion;
use crate::protocol::uri::{StreamUri, UriTransport};

/// The scenario `glass run` runs with no argument: RTMP over TCP, clean and
/// with 2 % loss and 40 ms delay on the first mile.
pub const QUICKSTART: &str = include_str!("../../scenarios/quickstart.toml");

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

#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolKind {
    /// RTMP over TCP or QUIC, through Glass's relay.
    Rtmp,
    /// Glass's UDP media protocol (NACK, FEC, RED, congestion control)
    /// into the relay, which is also its gateway to RTMP players.
    Udp,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolFile {
    /// Name in reports (default: the kind).
    #[serde(default)]
    pub name: Option<String>,
    pub kind: ProtocolKind,
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
    /// QUIC settings (for rtmpq URIs).
    #[serde(default)]
    pub quic: QuicFile,
    /// Sender-side ABR (`abr = {}` for the defaults).
    #[serde(default)]
    pub abr: Option<AbrConfig>,
    /// The UDP media protocol's settings (for gudp:// URIs).
    #[serde(default)]
    pub udp: Option<UdpFile>,
    /// When the publisher's camera starts: `on_connect` (default, when the
    /// session can carry media, as OBS and ffmpeg start writing after their
    /// handshake) or `at_start` (at the run's start: a camera already
    /// running, whose frames queue behind the session's set-up).
    #[serde(default)]
    pub capture_starts: CaptureStarts,
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

/// The UDP media protocol's settings, as a scenario writes them.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpFile {
    /// Ask for lost packets again (NACK/ARQ).
    pub nack: bool,
    /// `{ kind = "none" }`, `{ kind = "xor", cols = 10, rows = 1 }` (2-D
    /// when rows > 1) or `{ kind = "rs", k = 10, m = 2, adaptive = false }`.
    pub fec: crate::protocol::udp::FecConfig,
    /// Redundant copies of earlier audio frames per audio packet (0–4).
    pub red: u8,
    /// `gcc` (delay gradient + loss, drives the encoder) or `off`.
    pub cc: crate::protocol::udp::CcMode,
    /// How long a packet is worth recovering after it was sent (default:
    /// the player's target delay).
    pub latency: Option<HumanDuration>,
    /// Largest datagram, bytes.
    pub mtu: usize,
    /// The shared secret the relay checks.
    pub token: String,
}

impl Default for UdpFile {
    fn default() -> Self {
        let d = crate::protocol::udp::UdpConfig::default();
        UdpFile {
            nack: d.nack,
            fec: d.fec,
            red: d.red,
            cc: d.cc,
            latency: None,
            mtu: d.mtu,
            token: "glass".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicFile {
    /// QUIC's congestion controller: cubic (default), newreno, bbr.
    pub congestion: Congestion,
    /// Give up on QUIC and fall back to TCP after this long.
    pub handshake_timeout: HumanDuration,
}

impl Default for QuicFile {
    fn default() -> Self {
        QuicFile {
            congestion: Congestion::Cubic,
            handshake_timeout: HumanDuration(Duration::from_secs(2)),
        }
    }
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

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    pub duration: Duration,
    /// Frames captured this long after the camera's start are steady state.
    pub warmup: Duration,
    pub seed: u64,
    pub repeat: u32,
    pub encoder: EncoderConfig,
    pub resolution: String,
    pub networks: Vec<Network>,
    pub protocols: Vec<Protocol>,
    pub budgets: Budgets,
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// An FLV recording to replay instead of the synthetic encoder.
    pub replay: Option<Replay>,
}

/// A recording read and checked at validation, so a bad file fails early.
#[derive(Clone, Debug)]
pub struct Replay {
    pub path: PathBuf,
    pub tags: std::sync::Arc<Vec<FlvTag>>,
}

#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    /// (uplink, downlink).
    pub first_mile: (Profile, Profile),
    pub last_mile: (Profile, Profile),
    /// What each direction was asked as (for reports).
    pub described: [String; 4],
}

impl Network {
    /// The profile of one direction.
    pub fn profile(&self, dir: LinkDir) -> &Profile {
        match dir {
            LinkDir::FirstMileUp => &self.first_mile.0,
            LinkDir::FirstMileDown => &self.first_mile.1,
            LinkDir::LastMileUp => &self.last_mile.0,
            LinkDir::LastMileDown => &self.last_mile.1,
        }
    }

    /// What one direction was asked as, in the scenario's words.
    pub fn described(&self, dir: LinkDir) -> &str {
        match dir {
            LinkDir::FirstMileUp => &self.described[0],
            LinkDir::FirstMileDown => &self.described[1],
            LinkDir::LastMileUp => &self.described[2],
            LinkDir::LastMileDown => &self.described[3],
        }
    }

    /// Directions whose profile changes something.
    pub fn impaired(&self) -> impl Iterator<Item = LinkDir> + '_ {
        LinkDir::ALL
            .into_iter()
            .filter(|&d| *self.profile(d) != Profile::transparent())
    }
}

#[derive(Clone, Debug)]
pub struct Protocol {
    pub name: String,
    pub kind: ProtocolKind,
    pub stream_key: String,
    pub player: PlayerConfig,
    pub publisher: PublisherKind,
    pub ffmpeg_player: bool,
    pub tcp_congestion: String,
    pub publisher_uri: StreamUri,
    pub player_uri: StreamUri,
    pub quic: QuicFile,
    pub abr: Option<AbrConfig>,
    /// The UDP media protocol's settings (used by gudp:// URIs).
    pub udp: crate::protocol::udp::UdpConfig,
    pub capture_starts: CaptureStarts,
}

impl Protocol {
    /// Whether either side speaks the UDP media protocol.
    pub fn uses_udp(&self) -> bool {
        self.publisher_uri.transport == UriTransport::Udp
            || self.player_uri.transport == UriTransport::Udp
    }
}

type Result<T> = std::result::Result<T, ConfigError>;

/// The player's live-edge control from its table: the kind's default for
/// the late policy, and `max_rate`/`skip_threshold` only where they apply.
fn latency_control(p: &PlayerFile, late: LatePolicy, field: &str) -> Result<LatencyControl> {
    let kind = p.latency_control.unwrap_or(match late {
        LatePolicy::Wait => LatencyControlKind::CatchUp,
        LatePolicy::Skip => LatencyControlKind::SkipToLive,
    });
    if p.max_rate.is_some() && kind != LatencyControlKind::CatchUp {
        return bad(
            format!("{field}.player.max_rate"),
            "applies to latency_control = \"catch_up\"",
        );
    }
    if p.skip_threshold.is_some() && kind != LatencyControlKind::SkipToLive {
        return bad(
            format!("{field}.player.skip_threshold"),
            "applies to latency_control = \"skip_to_live\"",
        );
    }
    Ok(match kind {
        LatencyControlKind::None => LatencyControl::None,
        LatencyControlKind::CatchUp => {
            let max_rate = p.max_rate.unwrap_or(LatencyControl::DEFAULT_MAX_RATE);
            if !(max_rate > 1.0 && max_rate <= 4.0) {
                return bad(
                    format!("{field}.player.max_rate"),
                    format!("{max_rate}: a playback rate above 1 and at most 4"),
                );
            }
            LatencyControl::CatchUp { max_rate }
        }
        LatencyControlKind::SkipToLive => {
            let threshold = p
                .skip_threshold
                .map_or(LatencyControl::DEFAULT_SKIP_THRESHOLD, HumanDuration::get);
            if threshold < Duration::from_millis(1) || threshold > Duration::from_secs(60) {
                return bad(
                    format!("{field}.player.skip_threshold"),
                    "between 1 ms and 60 s",
                );
            }
            LatencyControl::SkipToLive { threshold }
        }
    })
}

fn bad<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(field, reason))
}

impl Scenario {
    pub fn from_file(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut s = Self::from_toml(&path.display().to_string(), &text, path.parent())?;
        s.source = Some(path.to_path_buf());
        Ok(s)
    }

    /// Parses and validates; `origin` names the text in errors.
    pub fn from_toml(origin: &str, text: &str, base_dir: Option<&Path>) -> Result<Scenario> {
        let located = |e: ConfigError| locate(origin, text, e);
        let file: ScenarioFile =
            toml::from_str(text).map_err(|e| located(ConfigError::Toml(e.to_string())))?;
        file.validate(base_dir).map_err(located)
    }
}

/// One point of a sweep: its coordinates (field path → value, as written)
/// and the scenario with those values set.
#[derive(Clone, Debug)]
pub struct SweepPoint {
    pub coords: std::collections::BTreeMap<String, String>,
    pub scenario: Scenario,
}

impl SweepPoint {
    /// "loss=2%, rate=1Mbit/s" from the paths' last segments; "" without a sweep.
    pub fn label(&self) -> String {
        self.coords
            .iter()
            .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const SWEEP_MAX_POINTS: usize = 10_000;

/// Sets the field at a dotted `path` (`media.bitrate`,
/// `networks.lossy.first_mile.uplink`: an array of tables is entered by an
/// element's `name`, or by its index).
fn set_path(
    root: &mut toml::Value,
    path: &str,
    value: toml::Value,
) -> std::result::Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    let mut cur = root;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        cur = match cur {
            toml::Value::Table(t) => {
                if last {
                    t.insert((*seg).to_string(), value);
                    return Ok(());
                }
                t.entry((*seg).to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(a) => {
                let idx = a
                    .iter()
                    .position(|e| e.get("name").and_then(|n| n.as_str()) == Some(seg))
                    .or_else(|| seg.parse::<usize>().ok().filter(|&i| i < a.len()))
                    .ok_or_else(|| format!("{path}: no element named or numbered \"{seg}\""))?;
                if last {
                    a[idx] = value;
                    return Ok(());
                }
                &mut a[idx]
            }
            _ => {
                return Err(format!(
                    "{path}: \"{seg}\" is inside a value that is not a table"
                ));
            }
        };
    }
    Err(format!("{path}: empty path"))
}

fn display_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Scenario {
    /// A scenario file's sweep points (one point, with no coordinates, when
    /// it has no `[sweep]` table). `[sweep]` maps field paths to lists of
    /// values; the points are their product, in the order written.
    pub fn sweep_from_file(path: &Path) -> Result<Vec<SweepPoint>> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut points = Self::sweep_from_toml(&path.display().to_string(), &text, path.parent())?;
        for p in &mut points {
            p.scenario.source = Some(path.to_path_buf());
        }
        Ok(points)
    }

    pub fn sweep_from_toml(
        origin: &str,
        text: &str,
        base_dir: Option<&Path>,
    ) -> Result<Vec<SweepPoint>> {
        let located = |e: ConfigError| locate(origin, text, e);
        let mut root: toml::Table =
            toml::from_str(text).map_err(|e| located(ConfigError::Toml(e.to_string())))?;
        let Some(sweep) = root.remove("sweep") else {
            return Ok(vec![SweepPoint {
                coords: Default::default(),
                scenario: Self::from_toml(origin, text, base_dir)?,
            }]);
        };
        let toml::Value::Table(sweep) = sweep else {
            return Err(located(ConfigError::invalid(
                "sweep",
                "a table of field = [values]",
            )));
        };
        let mut axes: Vec<(String, Vec<toml::Value>)> = Vec::new();
        for (k, v) in sweep {
            match v {
                toml::Value::Array(vals) if !vals.is_empty() => axes.push((k, vals)),
                _ => {
                    return Err(located(ConfigError::invalid(
                        format!("sweep.{k}"),
                        "a non-empty list of values",
                    )));
                }
            }
        }
        let total: usize = axes.iter().map(|(_, v)| v.len()).product();
        if total > SWEEP_MAX_POINTS {
            return Err(located(ConfigError::invalid(
                "sweep",
                format!("{total} points; at most {SWEEP_MAX_POINTS}"),
            )));
        }
        let mut points = Vec::with_capacity(total);
        for n in 0..total {
            let mut value = toml::Value::Table(root.clone());
            let mut coords = std::collections::BTreeMap::new();
            let mut rest = n;
            // The last axis varies fastest.
            let mut chosen = vec![0; axes.len()];
            for (i, (_, vals)) in axes.iter().enumerate().rev() {
                chosen[i] = rest % vals.len();
                rest /= vals.len();
            }
            for ((path, vals), &c) in axes.iter().zip(&chosen) {
                set_path(&mut value, path, vals[c].clone())
                    .map_err(|e| located(ConfigError::invalid(format!("sweep.{path}"), e)))?;
                coords.insert(path.clone(), display_value(&vals[c]));
            }
            let file: ScenarioFile = value.try_into().map_err(|e: toml::de::Error| {
                ConfigError::invalid("sweep", format!("{origin}, point {coords:?}: {e}"))
            })?;
            let scenario = file.validate(base_dir).map_err(|e| {
                ConfigError::invalid("sweep", format!("{origin}, point {coords:?}: {e}"))
            })?;
            points.push(SweepPoint { coords, scenario });
        }
        Ok(points)
    }
}

impl ScenarioFile {
    pub fn validate(&self, base_dir: Option<&Path>) -> Result<Scenario> {
        if self.name.trim().is_empty() {
            return bad("name", "give the scenario a name");
        }
        let duration = self.duration.get();
        if duration < Duration::from_secs(1) || duration > Duration::from_secs(24 * 3600) {
            return bad("duration", "between 1 s and 24 h");
        }
        if self.repeat == 0 || self.repeat > 1000 {
            return bad("repeat", "between 1 and 1000");
        }
        let m = &self.media;
        let encoder = EncoderConfig {
            bitrate: m.bitrate,
            fps: m.fps,
            gop: m.gop,
            encode_delay: m.encode_delay.get(),
            audio: m.audio.then(|| EncoderConfig::default().audio).flatten(),
            ..EncoderConfig::default()
        };
        encoder
            .validate()
            .map_err(|e| ConfigError::invalid("media", e))?;
        let warmup = match self.warmup {
            Some(w) => w.get(),
            // 5 s, or the start of the second GOP when GOPs are longer; at
            // most half of a short run.
            None => Duration::from_secs(5)
                .max(Duration::from_secs_f64(m.gop as f64 / m.fps))
                .min(duration / 2),
        };
        if warmup >= duration {
            return bad(
                "warmup",
                format!(
                    "{} leaves no steady state in a {} run: shorten it or lengthen `duration`",
                    HumanDuration(warmup),
                    HumanDuration(duration)
                ),
            );
        }
        let replay = match &m.flv {
            None => None,
            Some(name) => {
                let path = base_dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
                let tags = flv::read_file(&path)
                    .map_err(|e| ConfigError::invalid("media.flv", e.to_string()))?;
                Some(Replay {
                    path,
                    tags: std::sync::Arc::new(tags),
                })
            }
        };
        let networks = if self.networks.is_empty() {
            vec![NetworkFile {
                name: "clean".into(),
                first_mile: LinkFile::default(),
                last_mile: LinkFile::default(),
            }]
        } else {
            self.networks.clone()
        };
        let mut names = std::collections::HashSet::new();
        let mut out_networks = Vec::new();
        for (i, n) in networks.iter().enumerate() {
            let field = format!("networks[{i}]");
            if !names.insert(n.name.clone()) {
                return bad(
                    format!("{field}.name"),
                    format!("\"{}\" is used twice", n.name),
                );
            }
            let (fu, fd, dfu, dfd) = n
                .first_mile
                .resolve(base_dir)
                .map_err(|e| e.within(&format!("{field}.first_mile")))?;
            let (lu, ld, dlu, dld) = n
                .last_mile
                .resolve(base_dir)
                .map_err(|e| e.within(&format!("{field}.last_mile")))?;
            out_networks.push(Network {
                name: n.name.clone(),
                first_mile: (fu, fd),
                last_mile: (lu, ld),
                described: [dfu, dfd, dlu, dld],
            });
        }
        if self.protocols.is_empty() {
            return bad("protocols", "list at least one protocol to run");
        }
        let mut protocols = Vec::new();
        let mut pnames = std::collections::HashSet::new();
        for (i, p) in self.protocols.iter().enumerate() {
            let field = format!("protocols[{i}]");
            let name = p.name.clone().unwrap_or_else(|| match p.kind {
                ProtocolKind::Rtmp => "rtmp".into(),
                ProtocolKind::Udp => "udp".into(),
            });
            if !pnames.insert(name.clone()) {
                return bad(
                    format!("{field}.name"),
                    format!("\"{name}\" is used twice; name the variants"),
                );
            }
            let cc = p.tcp_congestion.clone().unwrap_or_else(|| "cubic".into());
            if cc.is_empty()
                || cc.len() > 15
                || !cc.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return bad(
                    format!("{field}.tcp_congestion"),
                    "a congestion control name such as \"cubic\", \"reno\" or \"bbr\"",
                );
            }
            let key = p.stream_key.clone().unwrap_or_else(|| "glass".into());
            if key.is_empty() || key.contains(['/', '?', ' ']) {
                return bad(
                    format!("{field}.stream_key"),
                    "a stream key is a non-empty word without / ? or spaces",
                );
            }
            let uri =
                |f: &str, s: &Option<String>, fallback: Option<&StreamUri>| -> Result<StreamUri> {
                    let u = match (s, fallback) {
                        (Some(s), _) => StreamUri::parse(s).map_err(|e| {
                            ConfigError::invalid(format!("{field}.{f}"), e.to_string())
                        })?,
                        (None, Some(u)) => return Ok(u.clone()),
                        (None, None) => {
                            let scheme = if p.kind == ProtocolKind::Udp {
                                "gudp"
                            } else {
                                "rtmp"
                            };
                            StreamUri::parse(&format!("{scheme}://server/live/{key}")).map_err(
                                |e| ConfigError::invalid(format!("{field}.{f}"), e.to_string()),
                            )?
                        }
                    };
                    if u.host != "server" {
                        return bad(
                            format!("{field}.{f}"),
                            format!(
                                "the host is Glass's relay: write rtmp://server/... (not \"{}\")",
                                u.host
                            ),
                        );
                    }
                    let port = if u.transport == UriTransport::Udp {
                        crate::protocol::udp::UDP_MEDIA_PORT
                    } else {
                        crate::protocol::uri::DEFAULT_PORT
                    };
                    if u.port != port {
                        return bad(
                            format!("{field}.{f}"),
                            format!("the relay listens on port {port} for this scheme"),
                        );
                    }
                    Ok(u)
                };
            let publisher_uri = uri("uri", &p.uri, None)?;
            let player_uri = uri("player_uri", &p.player_uri, Some(&publisher_uri))?;
            if p.uri.is_some() && p.stream_key.is_some() {
                return bad(
                    format!("{field}.stream_key"),
                    "give the stream key in `uri`, not both",
                );
            }
            if player_uri.key != publisher_uri.key || player_uri.app != publisher_uri.app {
                return bad(
                    format!("{field}.player_uri"),
                    "the player must play what the publisher publishes: same app and key as `uri`",
                );
            }
            let key = publisher_uri.key.clone();
            let tcp_only = |u: &StreamUri| u.transport == UriTransport::Tcp;
            if p.publisher == PublisherKind::Ffmpeg && !tcp_only(&publisher_uri) {
                return bad(
                    format!("{field}.uri"),
                    "ffmpeg publishes RTMP over TCP only: use an rtmp:// URI",
                );
            }
            let udp_publisher = publisher_uri.transport == UriTransport::Udp;
            match (p.kind, udp_publisher) {
                (ProtocolKind::Rtmp, true) => {
                    return bad(
                        format!("{field}.uri"),
                        "a gudp:// publisher is kind = \"udp\"",
                    );
                }
                (ProtocolKind::Udp, false) => {
                    return bad(
                        format!("{field}.uri"),
                        "kind = \"udp\" publishes over gudp://server/live/KEY (the player may use rtmp:// through the gateway)",
                    );
                }
                _ => {}
            }
            if let Some(a) = &p.abr {
                if udp_publisher {
                    return bad(
                        format!("{field}.abr"),
                        "the UDP protocol's congestion control (udp.cc = \"gcc\") drives its encoder; abr is for RTMP publishers",
                    );
                }
                a.validate()
                    .map_err(|e| ConfigError::invalid(format!("{field}.abr"), e))?;
            }
            let uses_udp = udp_publisher || player_uri.transport == UriTransport::Udp;
            if p.udp.is_some() && !uses_udp {
                return bad(
                    format!("{field}.udp"),
                    "applies to gudp:// URIs; neither `uri` nor `player_uri` is one",
                );
            }
            if p.quic.handshake_timeout.get() < Duration::from_millis(10)
                || p.quic.handshake_timeout.get() > Duration::from_secs(60)
            {
                return bad(
                    format!("{field}.quic.handshake_timeout"),
                    "between 10 ms and 60 s",
                );
            }
            let refresh = p
                .player
                .refresh
                .map_or(Duration::from_secs_f64(1.0 / 60.0), HumanDuration::get);
            if refresh < Duration::from_millis(1) || refresh > Duration::from_secs(1) {
                return bad(format!("{field}.player.refresh"), "between 1 ms and 1 s");
            }
            // Low-delay player for the UDP protocol, buffered for RTMP (DESIGN).
            let default_target = if player_uri.transport == UriTransport::Udp {
                200
            } else {
                500
            };
            let target = p
                .player
                .target_delay
                .map_or(Duration::from_millis(default_target), HumanDuration::get);
            if target > Duration::from_secs(60) {
                return bad(format!("{field}.player.target_delay"), "at most 60 s");
            }
            let late = p.player.late.unwrap_or(LatePolicy::Wait);
            let latency_control = latency_control(&p.player, late, &field)?;
            let u = p.udp.clone().unwrap_or_default();
            let udp = crate::protocol::udp::UdpConfig {
                nack: u.nack,
                fec: u.fec,
                red: u.red,
                cc: u.cc,
                latency: u.latency.map_or(target, HumanDuration::get),
                mtu: u.mtu,
                token: u.token.clone(),
                ..crate::protocol::udp::UdpConfig::default()
            };
            udp.validate()
                .map_err(|e| ConfigError::invalid(format!("{field}.udp.{}", e.field), e.why))?;
            protocols.push(Protocol {
                name,
                kind: p.kind,
                stream_key: key,
                player: PlayerConfig {
                    target_delay: target,
                    refresh,
                    late,
                    ordered: true,
                    latency_control,
                },
                capture_starts: p.capture_starts,
                publisher: p.publisher,
                ffmpeg_player: p.ffmpeg_player,
                tcp_congestion: cc,
                publisher_uri,
                player_uri,
                quic: p.quic.clone(),
                abr: p.abr.clone(),
                udp,
            });
            if p.ffmpeg_player && p.publisher == PublisherKind::Glass && m.flv.is_none() {
                return bad(
                    format!("{field}.ffmpeg_player"),
                    "ffmpeg plays real H.264 only: use publisher = \"ffmpeg\" or replay a file (media.flv); Glass's synthetic frames have no pictures",
                );
            }
            if p.publisher == PublisherKind::Ffmpeg {
                if m.flv.is_some() {
                    return bad(
                        format!("{field}.publisher"),
                        "ffmpeg publishes its own test pattern; media.flv is replayed by Glass's publisher (publisher = \"glass\")",
                    );
                }
                if parse_resolution(&m.resolution).is_none() {
                    return bad(
                        "media.resolution",
                        format!(
                            "ffmpeg encodes at this resolution: give WIDTHxHEIGHT with even numbers (\"1280x720\"), not \"{}\"",
                            m.resolution
                        ),
                    );
                }
            }
        }
        Ok(Scenario {
            name: self.name.clone(),
            description: self.description.clone(),
            duration,
            warmup,
            seed: self.seed,
            repeat: self.repeat,
            encoder,
            resolution: m.resolution.clone(),
            networks: out_networks,
            protocols,
            budgets: self.budgets.clone(),
            source: None,
            replay,
        })
    }
}

impl LinkFile {
    /// (uplink, downlink) profiles and how each was written.
    fn resolve(&self, base_dir: Option<&Path>) -> Result<(Profile, Profile, String, String)> {
        if let Some(name) = &self.profile {
            if self.uplink.is_some() || self.downlink.is_some() {
                return bad(
                    "profile",
                    "give either profile (both directions) or uplink/downlink, not both",
                );
            }
            let resolved = resolve_named(name, base_dir).map_err(|e| e.within("profile"))?;
            let (up, down) = resolved.validate()?;
            return Ok((up, down, name.clone(), name.clone()));
        }
        let side =
            |d: &Option<DirectionFile>, uplink: bool, field: &str| -> Result<(Profile, String)> {
                match d {
                    None => Ok((Profile::transparent(), "none".into())),
                    Some(DirectionFile::Named(name)) => {
                        let p = resolve_named(name, base_dir).map_err(|e| e.within(field))?;
                        let (up, down) = p.validate().map_err(|e| e.within(field))?;
                        Ok((if uplink { up } else { down }, name.clone()))
                    }
                    Some(DirectionFile::Table(t)) => Ok((
                        t.validate(base_dir).map_err(|e| e.within(field))?,
                        "table".into(),
                    )),
                }
            };
        let (up, du) = side(&self.uplink, true, "uplink")?;
        let (down, dd) = side(&self.downlink, false, "downlink")?;
        Ok((up, down, du, dd))
    }
}

/// A preset, a file relative to the scenario, or a netem line.
fn resolve_named(name: &str, base_dir: Option<&Path>) -> Result<LinkProfiles> {
    if let Some(dir) = base_dir {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return LinkProfiles::from_file(&candidate);
        }
    }
    // A field error on the reference itself: `within` adds the field path.
    netem::resolve(name).map_err(|e| ConfigError::invalid("", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
duration = "10s"
[media]
bitrate = "2Mbit/s"
fps = 30
gop = 60
resolution = "1280x720"
audio = true
encode_delay = "20ms"
[[networks]]
name = "lossy"
first_mile = { uplink = "delay 20ms loss 2%", downlink = "delay 20ms" }
last_mile = { profile = "lte" }
[[protocols]]
kind = "rtmp"
player = { target_delay = "300ms" }
[budgets]
g2g_p99 = "2s"
"#;

    #[test]
    fn every_shipped_scenario_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                Scenario::sweep_from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 6, "{n} scenarios in {}", dir.display());
    }

    #[test]
    fn udp_protocols_default_their_uris_and_refuse_mismatches() {
        let base = "name = \"u\"\nduration = \"1s\"\n";
        let s = Scenario::from_toml(
            "u.toml",
            &format!("{base}[[protocols]]\nkind = \"udp\"\n"),
            None,
        )
        .unwrap();
        let p = &s.protocols[0];
        assert_eq!(p.publisher_uri.to_string(), "gudp://server:5000/live/glass");
        assert_eq!(p.player.target_delay, Duration::from_millis(200));
        assert_eq!(p.udp.latency, Duration::from_millis(200));
        assert!(p.uses_udp());
        for (body, needle) in [
            (
                "kind = \"rtmp\"\nuri = \"gudp://server/live/glass\"",
                "kind = \"udp\"",
            ),
            (
                "kind = \"udp\"\nuri = \"rtmp://server/live/glass\"",
                "gudp://",
            ),
            ("kind = \"udp\"\nabr = {}", "congestion control"),
            (
                "kind = \"rtmp\"\nudp = { nack = true }",
                "applies to gudp://",
            ),
            ("kind = \"udp\"\nudp = { red = 7 }", "udp.red"),
            (
                "kind = \"udp\"\nudp = { fec = { kind = \"rs\", k = 0, m = 1 } }",
                "udp.fec",
            ),
            (
                "kind = \"udp\"\nudp = { fec = { kind = \"lt\" } }",
                "unknown variant",
            ),
            (
                "kind = \"udp\"\nuri = \"gudp://server:1935/live/glass\"",
                "port 5000",
            ),
        ] {
            let e = Scenario::from_toml("u.toml", &format!("{base}[[protocols]]\n{body}\n"), None)
                .expect_err(body)
                .to_string();
            assert!(e.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn parses_a_full_scenario() {
        let s = Scenario::from_toml("t.toml", GOOD, None).unwrap();
        assert_eq!(
            s.networks[0].first_mile.0.loss.as_ref().unwrap().spec,
            netem::loss::LossModel::Bernoulli { p: 0.02 }
        );
        assert!(s.networks[0].last_mile.1.bottleneck.is_some());
        assert_eq!(
            s.protocols[0].player.target_delay,
            Duration::from_millis(300)
        );
        assert_eq!(s.budgets.g2g_p99.unwrap().get(), Duration::from_secs(2));
        assert!(Scenario::from_toml("q", QUICKSTART, None).is_ok());
    }

    fn err(text: &str) -> String {
        Scenario::from_toml("s.toml", text, None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn live_edge_control_and_warm_up_default_by_player_kind_and_run_length() {
        let s = Scenario::from_toml(
            "d.toml",
            "name = \"d\"\nduration = \"6s\"\n[[protocols]]\nname = \"a\"\nkind = \"rtmp\"\n\
             [[protocols]]\nname = \"b\"\nkind = \"rtmp\"\nplayer = { late = \"skip\" }\n\
             [[protocols]]\nname = \"c\"\nkind = \"rtmp\"\ncapture_starts = \"at_start\"\n\
             player = { latency_control = \"catch_up\", max_rate = 1.5 }\n",
            None,
        )
        .unwrap();
        let control: Vec<_> = s
            .protocols
            .iter()
            .map(|p| p.player.latency_control)
            .collect();
        assert_eq!(
            control,
            [
                LatencyControl::CatchUp { max_rate: 1.2 },
                LatencyControl::SkipToLive {
                    threshold: Duration::from_millis(100)
                },
                LatencyControl::CatchUp { max_rate: 1.5 },
            ]
        );
        assert_eq!(s.protocols[0].capture_starts, CaptureStarts::OnConnect);
        assert_eq!(s.protocols[2].capture_starts, CaptureStarts::AtStart);
        // 5 s, but at most half of a 6 s run.
        assert_eq!(s.warmup, Duration::from_secs(3));
    }

    #[test]
    fn each_kind_of_bad_input_names_file_line_and_field() {
        let base = "name = \"t\"\nduration = \"10s\"\n[[protocols]]\nkind = \"rtmp\"\n";
        for (text, needles) in [
            // Unknown field.
            (
                format!("{base}colour = \"red\"\n"),
                vec!["s.toml", "line 5", "colour"],
            ),
            // A warm-up as long as the run.
            (
                "name = \"t\"\nduration = \"10s\"\nwarmup = \"10s\"\n[[protocols]]\nkind = \"rtmp\"\n"
                    .to_string(),
                vec!["warmup", "no steady state"],
            ),
            // A catch-up rate that does not catch up, and a setting of
            // another latency control.
            (
                format!("{base}player = {{ max_rate = 1.0 }}\n"),
                vec!["protocols[0].player.max_rate", "above 1"],
            ),
            (
                format!("{base}player = {{ latency_control = \"none\", skip_threshold = \"50ms\" }}\n"),
                vec!["protocols[0].player.skip_threshold", "skip_to_live"],
            ),
            (
                format!("{base}capture_starts = \"whenever\"\n"),
                vec!["line 5", "capture_starts"],
            ),
            // Bad unit.
            (
                "name = \"t\"\nduration = \"10 fortnights\"\n[[protocols]]\nkind = \"rtmp\"\n"
                    .to_string(),
                vec!["line 2", "unknown time unit"],
            ),
            // Negative rate in a network table.
            (
                format!(
                    "{base}[[networks]]\nname = \"n\"\nfirst_mile = {{ uplink = {{ bottleneck = {{ rate = \"-1Mbit/s\" }} }} }}\n"
                ),
                vec!["line 7", "greater than zero"],
            ),
            // A profile that is neither preset, file nor netem line.
            (
                format!(
                    "{base}[[networks]]\nname = \"n\"\nlast_mile = {{ profile = \"5g-magic\" }}\n"
                ),
                vec!["line 7", "networks[0].last_mile.profile", "not a preset"],
            ),
            // Missing file.
            (
                format!(
                    "{base}[[networks]]\nname = \"n\"\nlast_mile = {{ profile = \"nope/missing.toml\" }}\n"
                ),
                vec!["networks[0].last_mile.profile", "missing.toml"],
            ),
            // Unknown protocol kind.
            (
                "name = \"t\"\nduration = \"10s\"\n[[protocols]]\nkind = \"carrier-pigeon\"\n"
                    .to_string(),
                vec!["line 4", "unknown variant", "rtmp"],
            ),
            // Out of range.
            (
                "name = \"t\"\nduration = \"10s\"\nrepeat = 0\n[[protocols]]\nkind = \"rtmp\"\n"
                    .to_string(),
                vec!["line 3", "repeat"],
            ),
            (
                "name = \"t\"\nduration = \"10s\"\n".to_string(),
                vec!["protocols"],
            ),
            // ffmpeg cannot play Glass's synthetic frames.
            (
                format!("{base}ffmpeg_player = true\n"),
                vec!["line 5", "protocols[0].ffmpeg_player", "real H.264"],
            ),
            // An ffmpeg publisher needs a resolution it can encode.
            (
                "name = \"t\"\nduration = \"10s\"\n[media]\nbitrate = \"1Mbit/s\"\nfps = 30\ngop = 60\nresolution = \"720p\"\naudio = false\nencode_delay = \"0ms\"\n[[protocols]]\nkind = \"rtmp\"\npublisher = \"ffmpeg\"\n"
                    .to_string(),
                vec!["line 7", "media.resolution", "WIDTHxHEIGHT"],
            ),
            // A recording that is not there.
            (
                "name = \"t\"\nduration = \"10s\"\n[media]\nbitrate = \"1Mbit/s\"\nfps = 30\ngop = 60\nresolution = \"640x360\"\naudio = false\nencode_delay = \"0ms\"\nflv = \"no/such.flv\"\n[[protocols]]\nkind = \"rtmp\"\n"
                    .to_string(),
                vec!["line 10", "media.flv", "no/such.flv"],
            ),
            // A malformed stream URI.
            (
                format!("{base}uri = \"rtmpq://server/live\"\n"),
                vec!["line 5", "protocols[0].uri", "/APP/KEY"],
            ),
            // A URI whose host is not Glass's relay.
            (
                format!("{base}uri = \"rtmp://example.com/live/k\"\n"),
                vec!["line 5", "protocols[0].uri", "Glass's relay"],
            ),
            // A player that would play another stream.
            (
                format!("{base}uri = \"rtmp://server/live/a\"\nplayer_uri = \"rtmpq://server/live/b\"\n"),
                vec!["protocols[0].player_uri", "same app and key"],
            ),
            // An unknown QUIC congestion controller.
            (
                format!("{base}quic = {{ congestion = \"vegas\" }}\n"),
                vec!["line 5", "vegas"],
            ),
            // ABR settings that cannot work.
            (
                format!("{base}abr = {{ up = 0.5 }}\n"),
                vec!["protocols[0].abr", "up"],
            ),
            // A congestion control name that cannot be one.
            (
                format!("{base}tcp_congestion = \"cubic; rm -rf\"\n"),
                vec!["line 5", "protocols[0].tcp_congestion"],
            ),
        ] {
            let e = err(&text);
            for n in needles {
                assert!(e.contains(n), "{text}\n  gave: {e}\n  missing: {n}");
            }
        }
    }

    #[test]
    fn a_sweep_is_the_product_of_its_axes() {
        let text = r#"
name = "sweep"
duration = "5s"
[[networks]]
name = "lossy"
first_mile = { uplink = "delay 20ms" }
[[protocols]]
kind = "rtmp"
[sweep]
"networks.lossy.first_mile.uplink" = ["delay 20ms loss 0%", "delay 20ms loss 2%", "delay 20ms loss 5%"]
"media.bitrate" = ["1Mbit/s", "2Mbit/s"]
"#;
        let points = Scenario::sweep_from_toml("s.toml", text, None).unwrap();
        assert_eq!(points.len(), 6);
        let last = &points[5];
        assert_eq!(last.coords["media.bitrate"], "2Mbit/s");
        assert_eq!(
            last.coords["networks.lossy.first_mile.uplink"],
            "delay 20ms loss 5%"
        );
        assert_eq!(last.scenario.encoder.bitrate.bits_per_sec(), 2_000_000);
        assert!(last.scenario.networks[0].first_mile.0.loss.is_some());
        assert!(points[0].scenario.networks[0].first_mile.0.loss.is_some());
        assert_eq!(last.label(), "bitrate=2Mbit/s, uplink=delay 20ms loss 5%");
        // No sweep: one point, no coordinates.
        let one = Scenario::sweep_from_toml("q", QUICKSTART, None).unwrap();
        assert_eq!((one.len(), one[0].coords.len()), (1, 0));
        // A path that does not exist, and a bad value at one point.
        let e = Scenario::sweep_from_toml(
            "s.toml",
            &text.replace("networks.lossy", "networks.nope"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no element named or numbered \"nope\""), "{e}");
        let e = Scenario::sweep_from_toml(
            "s.toml",
            &text.replace("\"2Mbit/s\"]", "\"2 parsecs\"]"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("2 parsecs") || e.contains("parsecs"), "{e}");
    }
}
