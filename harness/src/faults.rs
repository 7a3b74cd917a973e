//! Faults injected into a run to show that Glass notices them: a network's
//! `faults = [ … ]`.
//!
//! - `engine_stall`: the link's engine thread sleeps `duration` at `at` (as
//!   a busy machine would stall it), so packets leave late; the run then
//!   carries a warning and the report marks it
//!   (`output::records::warnings`). Link mode only.
//! - `relay_killed`: at `at` every server task of the relay is aborted with
//!   its sessions, as a crashed server process would leave them: sockets
//!   closed by the kernel, nothing said on UDP. The run ends with an error
//!   that says so (or, if the clients kept going, a warning), and the
//!   runs before and after it are unaffected.

use std::time::Duration;

use netem::ConfigError;
use netem::units::HumanDuration;
use serde::{Deserialize, Serialize};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    EngineStall,
    RelayKilled,
}

/// A fault as a scenario writes it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    pub kind: FaultKind,
    /// When, from the run's start.
    pub at: HumanDuration,
    /// How long (engine_stall; default 200ms).
    #[serde(default)]
    pub duration: Option<HumanDuration>,
}

/// A checked fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub at: Duration,
    pub duration: Duration,
}

impl FaultFile {
    pub fn validate(&self, field: &str, run: Duration) -> Result<Fault, ConfigError> {
        let at = self.at.get();
        if at >= run {
            return Err(ConfigError::invalid(
                format!("{field}.at"),
                "within the run's duration",
            ));
        }
        if self.kind == FaultKind::RelayKilled && self.duration.is_some() {
            return Err(ConfigError::invalid(
                format!("{field}.duration"),
                "relay_killed takes no duration (the relay stays dead)",
            ));
        }
        let duration = self
            .duration
            .map_or(Duration::from_millis(200), HumanDuration::get);
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&duration) {
            return Err(ConfigError::invalid(
                format!("{field}.duration"),
                "between 1ms and 10s",
            ));
        }
        Ok(Fault {
            kind: self.kind,
            at,
            duration,
        })
    }
}

/// When the relay is killed, if a network's faults say so.
pub fn relay_killed(faults: &[Fault]) -> Option<Duration> {
    faults
        .iter()
        .find(|f| f.kind == FaultKind::RelayKilled)
        .map(|f| f.at)
}

/// The engine stall of a network's faults, for the link's options.
pub fn engine_stall(faults: &[Fault]) -> Option<(Duration, Duration)> {
    faults
        .iter()
        .find(|f| f.kind == FaultKind::EngineStall)
        .map(|f| (f.at, f.duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(toml: &str) -> Result<Fault, ConfigError> {
        let f: FaultFile = toml::from_str(toml).map_err(|e| ConfigError::Toml(e.to_string()))?;
        f.validate("faults[0]", Duration::from_secs(10))
    }

    #[test]
    fn faults_are_checked() {
        let f = fault("kind = \"engine_stall\"\nat = \"3s\"").unwrap();
        assert_eq!(
            (f.at, f.duration),
            (Duration::from_secs(3), Duration::from_millis(200))
        );
        assert_eq!(
            engine_stall(&[f]),
            Some((Duration::from_secs(3), Duration::from_millis(200)))
        );
        let e = fault("kind = \"engine_stall\"\nat = \"10s\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("faults[0].at"), "{e}");
        let e = fault("kind = \"engine_stall\"\nat = \"1s\"\nduration = \"20s\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 1ms and 10s"), "{e}");
        let f = fault("kind = \"relay_killed\"\nat = \"2s\"").unwrap();
        assert_eq!(relay_killed(&[f]), Some(Duration::from_secs(2)));
        let e = fault("kind = \"relay_killed\"\nat = \"2s\"\nduration = \"1s\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes no duration"), "{e}");
        let e = fault("kind = \"relay_on_fire\"\nat = \"1s\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("engine_stall"), "{e}");
    }
}
