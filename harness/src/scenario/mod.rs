//! Scenario files: what to run, over which network, judged by which budgets.
//!
//! TOML read with serde; unknown fields are refused; every error names the
//! file, the line and the field (`quickstart.toml, line 12:
//! protocols[0].player.target_delay: …`). Every field is documented in
//! `scenarios/README.md`.

mod file;
mod sweep;
#[cfg(test)]
mod tests;
mod validate;

pub use file::*;
pub use sweep::SweepPoint;

use std::path::{Path, PathBuf};
use std::time::Duration;

use netem::adapters::link::LinkDir;
use netem::locate;
use netem::{ConfigError, Profile};

use crate::media::abr::AbrConfig;
use crate::media::encoder::EncoderConfig;
use crate::media::flv::FlvTag;
use crate::media::player::PlayerConfig;
use crate::protocol::uri::StreamUri;

/// The scenario `glass run` runs with no argument: RTMP over TCP, clean and
/// with 2 % loss and 40 ms delay on the first mile.
pub const QUICKSTART: &str = include_str!("../../../scenarios/quickstart.toml");

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
    /// Real or virtual time (`crate::virtual_time`).
    pub clock: ClockKind,
}

impl Scenario {
    /// Runs in virtual time from now on: refused, naming every part that
    /// needs real time, if any does.
    pub fn set_virtual(&mut self) -> std::result::Result<(), String> {
        let refused = crate::virtual_time::refusals(self);
        if !refused.is_empty() {
            return Err(format!(
                "\"{}\" cannot run in virtual time:\n  {}",
                self.name,
                refused.join("\n  ")
            ));
        }
        self.clock = ClockKind::Virtual;
        Ok(())
    }
}

/// A recording read and checked at validation, so a bad file fails early.
#[derive(Clone, Debug)]
pub struct Replay {
    pub path: PathBuf,
    pub tags: std::sync::Arc<Vec<FlvTag>>,
}

/// The group of a network without `players`: its host is "player".
pub const DEFAULT_GROUP: &str = "player";

#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    /// (uplink, downlink).
    pub first_mile: (Profile, Profile),
    pub last_mile: (Profile, Profile),
    /// What each direction was asked as (for reports).
    pub described: [String; 4],
    /// Competing flows on the miles (link mode).
    pub cross: Vec<crate::cross::CrossFlow>,
    /// Hostile clients against the relay.
    pub hostile: Vec<crate::hostile::Attack>,
    /// Faults injected into the run (link mode).
    pub faults: Vec<crate::faults::Fault>,
    /// The player groups, each on its own last mile (at least one; without
    /// `players` in the file, one called "player" on `last_mile`).
    pub groups: Vec<PlayerGroup>,
}

/// A player group of a network: its host and its last mile.
#[derive(Clone, Debug)]
pub struct PlayerGroup {
    /// As the scenario names it ("player" for the default group).
    pub name: String,
    /// Its host's name in the topology.
    pub host: String,
    /// Its last mile's link name (seed labels `LINK-uplink`, `LINK-downlink`).
    pub link: String,
    /// (uplink, downlink).
    pub last_mile: (Profile, Profile),
    /// What each direction was asked as.
    pub described: [String; 2],
    /// Light viewers beside the group's player.
    pub viewers: Option<crate::fleet::Viewers>,
}

impl PlayerGroup {
    /// The group's last mile as the star topology takes it.
    pub fn last_mile(&self) -> netem::adapters::graph::LastMile {
        netem::adapters::graph::LastMile {
            host: self.host.clone(),
            link: self.link.clone(),
            profiles: self.last_mile.clone(),
        }
    }
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

    /// Whether the scenario declared player groups (`players`), so each
    /// group's runs are labelled "NETWORK · GROUP".
    pub fn has_groups(&self) -> bool {
        self.groups.len() > 1 || self.groups.first().is_some_and(|g| g.name != DEFAULT_GROUP)
    }

    /// The network as group `i`'s players see it: named "NETWORK · GROUP"
    /// when the scenario declared groups, with the group's last mile (the
    /// per-run records, tables and budgets take this view).
    pub fn for_group(&self, i: usize) -> Network {
        let mut n = self.clone();
        if let Some(g) = self.groups.get(i) {
            if self.has_groups() {
                n.name = format!("{} · {}", self.name, g.name);
            }
            n.last_mile = g.last_mile.clone();
            n.described[2] = g.described[0].clone();
            n.described[3] = g.described[1].clone();
            n.groups = vec![g.clone()];
        }
        n
    }

    /// The name of every group's view (`for_group`).
    pub fn group_names(&self) -> Vec<String> {
        (0..self.groups.len())
            .map(|i| self.for_group(i).name)
            .collect()
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
    /// The registered protocol it names (`kind`).
    pub kind: &'static str,
    pub stream_key: String,
    pub player: PlayerConfig,
    /// When Glass's players connect, from the run's start (`player.join`).
    pub join: Duration,
    pub publisher: PublisherKind,
    pub ffmpeg_player: bool,
    pub tcp_congestion: String,
    pub publisher_uri: StreamUri,
    pub player_uri: StreamUri,
    pub abr: Option<AbrConfig>,
    pub capture_starts: CaptureStarts,
    /// Every registered protocol's settings from its table (`quic`, `udp`),
    /// by table key: the relay serves every protocol, so each gets its own.
    pub tables: Vec<(&'static str, std::sync::Arc<dyn crate::protocol::Table>)>,
}

impl Protocol {
    /// A protocol's settings, typed (`QuicTable`, `UdpConfig`).
    pub fn table<T: 'static>(&self) -> Option<&T> {
        self.tables
            .iter()
            .find_map(|(_, t)| t.as_any().downcast_ref::<T>())
    }

    /// A `[[protocols]]` entry with every default (`glass serve`'s settings).
    pub fn defaults() -> Protocol {
        const ENTRY: &str =
            "name = \"defaults\"\nduration = \"10s\"\n[[protocols]]\nkind = \"rtmp\"\n";
        match Scenario::from_toml("defaults", ENTRY, None) {
            Ok(mut s) => s.protocols.remove(0),
            Err(e) => unreachable!("the default protocol entry is valid: {e}"),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, ConfigError>;

/// A field error.
pub(crate) fn bad<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T> {
    Err(ConfigError::invalid(field, reason))
}

impl Scenario {
    pub fn from_file(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
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
