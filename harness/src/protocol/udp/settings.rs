//! The UDP protocol's table in a `[[protocols]]` entry: `udp = { … }` (for
//! gudp:// URIs, and the relay's UDP side).

use netem::ConfigError;
use netem::units::HumanDuration;
use serde::{Deserialize, Serialize};

use super::{CcMode, FecConfig, UdpConfig};
use crate::protocol::{EntryCx, Table};

/// The UDP media protocol's settings, as a scenario writes them.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpTable {
    /// Ask for lost packets again (NACK/ARQ).
    pub nack: bool,
    /// `{ kind = "none" }`, `{ kind = "xor", cols = 10, rows = 1 }` (2-D
    /// when rows > 1) or `{ kind = "rs", k = 10, m = 2, adaptive = false }`.
    pub fec: FecConfig,
    /// Redundant copies of earlier audio frames per audio packet (0–4).
    pub red: u8,
    /// `gcc` (delay gradient + loss, drives the encoder) or `off`.
    pub cc: CcMode,
    /// How long a packet is worth recovering after it was sent (default:
    /// the player's target delay).
    pub latency: Option<HumanDuration>,
    /// Largest datagram, bytes.
    pub mtu: usize,
    /// The shared secret the relay checks by a challenge–response (empty,
    /// the default: the relay admits every hello, in one round trip).
    pub token: String,
}

impl Default for UdpTable {
    fn default() -> Self {
        let d = UdpConfig::default();
        UdpTable {
            nack: d.nack,
            fec: d.fec,
            red: d.red,
            cc: d.cc,
            latency: None,
            mtu: d.mtu,
            token: String::new(),
        }
    }
}

impl Table for UdpConfig {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The table as written (`None`: the defaults), checked, as the sessions'
/// configuration.
pub fn configure(table: Option<&toml::Value>, cx: &EntryCx) -> Result<UdpConfig, ConfigError> {
    let at = format!("{}.udp", cx.field);
    let u: UdpTable = crate::protocol::parse_table(table, &at)?;
    let cfg = UdpConfig {
        nack: u.nack,
        fec: u.fec,
        red: u.red,
        cc: u.cc,
        latency: u.latency.map_or(cx.target_delay, HumanDuration::get),
        mtu: u.mtu,
        token: u.token,
        ..UdpConfig::default()
    };
    cfg.validate()
        .map_err(|e| ConfigError::invalid(format!("{at}.{}", e.field), e.why))?;
    Ok(cfg)
}
