//! results.json as one typed schema, `glass.results.v2`: written here
//! ([`write`]) for `glass run`, read here ([`read`]) by `glass check`,
//! `glass compare` and the HTML report. Files of the previous schema,
//! `glass.results.v1`, read into the same types (what v2 added is then
//! absent), so old results directories still compare and check.
//!
//! The fields every reader uses are typed; the rest of a run's result
//! (transports, each protocol's statistics, the link's counters, …) is
//! kept as JSON in `rest` fields, written back as read, so the schema
//! grows with the protocols without a reader having to know them.
//!
//! v2 against v1: a run names its player group (`group`, for a network
//! with several), and carries the network's `topology`: every host, and
//! every link with each direction's asked profile and, in link mode, the
//! engine's counters (`first_mile-uplink`, `last_mile-mobile-downlink`, …).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The schema `glass run` writes.
pub const SCHEMA: &str = "glass.results.v2";
/// The schema before player groups and topology sections; still read.
pub const SCHEMA_V1: &str = "glass.results.v1";

/// Why results.json could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not Glass results: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has schema \"{schema}\"; this Glass reads {SCHEMA} and {SCHEMA_V1}")]
    Schema { path: PathBuf, schema: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a run could not be represented: {0}")]
    Run(serde_json::Error),
}

/// A results file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    #[serde(default)]
    pub glass_version: String,
    pub scenario: ScenarioPart,
    pub runs: Vec<Run>,
}

/// What was run: the scenario's name, media and budgets.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScenarioPart {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub repeat: u32,
    #[serde(default)]
    pub media: MediaPart,
    /// Budget name → limit as written ("1s", "2%").
    #[serde(default)]
    pub budgets: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MediaPart {
    #[serde(default)]
    pub bitrate_bps: u64,
    #[serde(default)]
    pub fps: f64,
    #[serde(default)]
    pub gop: u32,
    #[serde(default)]
    pub resolution: String,
    #[serde(default)]
    pub audio: bool,
    #[serde(default)]
    pub encode_delay_ms: f64,
}

/// One run: a protocol over a network (a player group's view of it), one
/// repeat, at one sweep point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// Sweep coordinates (field path → value); empty without a sweep.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, String>,
    /// The coordinates as one label ("" without a sweep).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub point: String,
    /// The network's name, "NETWORK · GROUP" for a player group's run.
    pub network: String,
    /// The player group (v2; none for a network without groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub protocol: String,
    pub repeat: u32,
    /// Requested impairment per direction (first mile up, down, last mile
    /// up, down), as written in the scenario.
    #[serde(default)]
    pub impairment: Vec<String>,
    /// The first-mile uplink's capacity over time: [at_ms, bit/s or null].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_steps: Vec<(f64, Option<f64>)>,
    /// The network's timeline changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventPart>,
    /// "ok" or "failed".
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    /// Requested against realised per direction (`first_mile_up`, …).
    #[serde(default)]
    pub impairment_check: BTreeMap<String, CheckPart>,
    /// The network's hosts and links (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologyPart>,
    pub result: Option<RunPart>,
    #[serde(default)]
    pub budgets: Vec<BudgetCheck>,
    /// What makes this run's figures suspect (the link's engine fell
    /// behind, …): the report marks the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }

    /// The run's player figures, if it finished.
    pub fn player(&self) -> Option<&Player> {
        self.result.as_ref().map(|r| &r.player)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventPart {
    pub at_ms: f64,
    #[serde(default)]
    pub direction: String,
    pub what: String,
}

/// One direction's requested against realised impairment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CheckPart {
    #[serde(default)]
    pub requested: Requested,
    #[serde(default)]
    pub loss_rate: f64,
    #[serde(default)]
    pub verdict: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Requested {
    #[serde(default)]
    pub loss_rate: Option<f64>,
    #[serde(default)]
    pub mean_burst: Option<f64>,
    #[serde(default)]
    pub delay_mean_ms: f64,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BudgetCheck {
    pub budget: String,
    pub limit: f64,
    pub value: f64,
    #[serde(default = "yes")]
    pub within: bool,
}

fn yes() -> bool {
    true
}

/// The network a run crossed: hosts, and links with what each direction
/// was asked and did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopologyPart {
    pub hosts: Vec<HostPart>,
    pub links: Vec<LinkPart>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostPart {
    pub name: String,
    /// Its address in link mode (198.18.0.0/15).
    pub addr: String,
}

/// A link between hosts `a` and `b`; uplink is a → b.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkPart {
    pub name: String,
    pub a: String,
    pub b: String,
    pub uplink: DirectionPart,
    pub downlink: DirectionPart,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirectionPart {
    /// As the scenario asked it.
    pub asked: String,
    /// The engine's counters (link mode; none in proxy mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<netem::Counters>,
}

/// What a finished run measured. The fields readers use are typed; the
/// rest (transports, protocols' statistics, link counters, ffmpeg, cross
/// traffic) is kept as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunPart {
    #[serde(default)]
    pub mode: String,
    pub player: Player,
    #[serde(default)]
    pub frames_expected: u64,
    #[serde(default)]
    pub publisher: PublisherPart,
    #[serde(default)]
    pub equal_smoothness: Option<EqualSmoothness>,
    #[serde(default)]
    pub hops: Option<Hops>,
    /// The stalls as [start, end] in ms (absent in early v1 files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_spans_ms: Option<Vec<(f64, f64)>>,
    /// Everything else, each protocol's section included (read by the
    /// protocol: [`RunPart::section`]).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl RunPart {
    /// A field of the result the schema does not type (a protocol's
    /// section, e.g. the UDP protocol's `recovery`), read as `T`; none if
    /// absent or of another shape.
    pub fn section<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_value(self.rest.get(key)?.clone()).ok()
    }
}

/// The player's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Player {
    pub g2g_p50_ms: f64,
    pub g2g_p99_ms: f64,
    pub stall_ratio: f64,
    pub startup_delay_ms: Option<f64>,
    /// G2G over the steady state (absent in results written before it was).
    #[serde(default)]
    pub steady: Option<Steady>,
    #[serde(default)]
    pub frames_displayed: u64,
    #[serde(default)]
    pub stale_refresh_ratio: Option<f64>,
    #[serde(default)]
    pub catch_up_ms: Option<f64>,
    #[serde(default)]
    pub frames_skipped: Option<u64>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl Player {
    /// A figure by its results.json name (the gate's metrics).
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "g2g_p50_ms" => Some(self.g2g_p50_ms),
            "g2g_p99_ms" => Some(self.g2g_p99_ms),
            "stall_ratio" => Some(self.stall_ratio),
            "startup_delay_ms" => self.startup_delay_ms,
            "steady_g2g_p50_ms" => self.steady.as_ref().map(|s| s.p50_ms),
            "steady_g2g_p99_ms" => self.steady.as_ref().map(|s| s.p99_ms),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Steady {
    pub p50_ms: f64,
    pub p99_ms: f64,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PublisherPart {
    #[serde(default)]
    pub connect_ms: Option<f64>,
    #[serde(default)]
    pub abr: Option<AbrPart>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AbrPart {
    #[serde(default)]
    pub samples: Vec<AbrSample>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbrSample {
    pub at_ms: f64,
    pub target_bps: f64,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EqualSmoothness {
    pub target_delay_ms: f64,
    pub g2g_p50_ms: f64,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// G2G by hop: each segment's p50 and p99.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Hops {
    #[serde(default)]
    pub encode: Option<Segment>,
    #[serde(default)]
    pub first_mile: Option<Segment>,
    #[serde(default)]
    pub relay: Option<Segment>,
    #[serde(default)]
    pub last_mile: Option<Segment>,
    #[serde(default)]
    pub playout: Option<Segment>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl Hops {
    /// The segments in path order, with their titles.
    pub fn segments(&self) -> [(&'static str, Option<&Segment>); 5] {
        [
            ("encode", self.encode.as_ref()),
            ("first mile", self.first_mile.as_ref()),
            ("relay", self.relay.as_ref()),
            ("last mile", self.last_mile.as_ref()),
            ("playout", self.playout.as_ref()),
        ]
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Segment {
    pub p50_ms: f64,
    pub p99_ms: f64,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A run as its writer serialised it, in the schema's types (the writer
/// hands any `Serialize` record; what the schema does not type is kept).
pub fn run_from<T: Serialize>(record: &T) -> Result<Run, ResultsError> {
    serde_json::to_value(record)
        .and_then(serde_json::from_value)
        .map_err(ResultsError::Run)
}

/// Reads `path` (a results.json of schema v2 or v1).
pub fn read(path: &Path) -> Result<Results, ResultsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_str(path, &text)
}

/// Parses a results file's text (`path` names it in errors).
pub fn from_str(path: &Path, text: &str) -> Result<Results, ResultsError> {
    let json = |source| ResultsError::Json {
        path: path.to_path_buf(),
        source,
    };
    // The schema first, so a file of another schema says so rather than
    // failing on a field.
    #[derive(Deserialize)]
    struct Head {
        schema: String,
    }
    let head: Head = serde_json::from_str(text).map_err(json)?;
    if head.schema != SCHEMA && head.schema != SCHEMA_V1 {
        return Err(ResultsError::Schema {
            path: path.to_path_buf(),
            schema: head.schema,
        });
    }
    serde_json::from_str(text).map_err(json)
}

/// Writes `results` to DIR/results.json (write, then rename: a reader
/// never sees half a file, and a run that fails keeps what finished).
pub fn write(dir: &Path, results: &Results) -> Result<PathBuf, ResultsError> {
    let path = dir.join("results.json");
    let tmp = dir.join("results.json.tmp");
    let write_err = |source| ResultsError::Write {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_string_pretty(results).map_err(ResultsError::Run)?;
    std::fs::write(&tmp, text).map_err(write_err)?;
    std::fs::rename(&tmp, &path).map_err(write_err)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/results-v1/results.json")
    }

    #[test]
    fn a_v1_file_reads_into_the_v2_types_and_writes_back_what_it_had() {
        let r = read(&fixture()).unwrap();
        assert_eq!(r.schema, SCHEMA_V1);
        assert!(!r.runs.is_empty());
        let run = &r.runs[0];
        assert!(run.group.is_none() && run.topology.is_none());
        let p = run.player().unwrap();
        assert!(p.g2g_p50_ms > 0.0);
        // Untyped fields survive a round trip.
        let before: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap();
        let after = serde_json::to_value(&r).unwrap();
        assert_eq!(
            before["runs"][0]["result"]["transports"],
            after["runs"][0]["result"]["transports"]
        );
        assert_eq!(
            before["runs"][0]["result"]["relay"],
            after["runs"][0]["result"]["relay"]
        );
    }

    #[test]
    fn another_schema_or_broken_json_is_refused_with_the_reason() {
        let p = Path::new("x/results.json");
        let e = from_str(p, r#"{"schema": "glass.results.v9", "runs": []}"#).unwrap_err();
        assert!(e.to_string().contains("glass.results.v9"), "{e}");
        let e = from_str(p, "{").unwrap_err();
        assert!(e.to_string().contains("x/results.json"), "{e}");
    }
}
