//! RTMP's table in a `[[protocols]]` entry: `quic = { … }`, the settings of
//! RTMP over QUIC (rtmpq:// URIs, and the relay's QUIC side).

use std::time::Duration;

use netem::ConfigError;
use netem::units::HumanDuration;
use serde::{Deserialize, Serialize};

use super::quic::Congestion;
use crate::protocol::{EntryCx, Table};

/// `quic = { congestion, handshake_timeout }`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicTable {
    /// QUIC's congestion controller: cubic (default), newreno, bbr.
    pub congestion: Congestion,
    /// Give up on QUIC and fall back to TCP after this long.
    pub handshake_timeout: HumanDuration,
}

impl Default for QuicTable {
    fn default() -> Self {
        QuicTable {
            congestion: Congestion::Cubic,
            handshake_timeout: HumanDuration(Duration::from_secs(2)),
        }
    }
}

impl Table for QuicTable {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The table as written (`None`: the defaults), checked.
pub fn configure(table: Option<&toml::Value>, cx: &EntryCx) -> Result<QuicTable, ConfigError> {
    let at = format!("{}.quic", cx.field);
    let q: QuicTable = crate::protocol::parse_table(table, &at)?;
    let t = q.handshake_timeout.get();
    if t < Duration::from_millis(10) || t > Duration::from_secs(60) {
        return Err(ConfigError::invalid(
            format!("{at}.handshake_timeout"),
            "between 10 ms and 60 s",
        ));
    }
    Ok(q)
}
