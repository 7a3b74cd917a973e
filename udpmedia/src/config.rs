//! The protocol's settings: plain serde structs, validated in one place
//! ([`Config::validate`]).
//!
//! The sender decides what it adds (FEC, RED) and the receiver what it asks
//! for (NACK); the latency budget is the larger of the two sides' (as SRT
//! negotiates its latency).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Forward error correction the sender adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FecConfig {
    None,
    /// XOR parity over a `cols` × `rows` matrix of packets (SMPTE 2022-1,
    /// RFC 5109 style): one row packet per `cols` packets and, when
    /// `rows > 1`, one column packet per column of the matrix. Recovers any
    /// single loss in a row or a column, and more by alternating the two.
    Xor {
        cols: u16,
        rows: u16,
    },
    /// Reed–Solomon over blocks of up to `k` packets with `m` recovery
    /// packets: recovers any `m` losses of the `k + m`. With `adaptive`, `m`
    /// follows the loss the receiver reports (at least one, at most `m`).
    Rs {
        k: u16,
        m: u16,
        #[serde(default)]
        adaptive: bool,
    },
}

impl FecConfig {
    /// Redundancy added per media packet at the configured maximum.
    pub fn overhead(&self) -> f64 {
        match *self {
            FecConfig::None => 0.0,
            FecConfig::Xor { cols, rows } => {
                1.0 / f64::from(cols) + if rows > 1 { 1.0 / f64::from(rows) } else { 0.0 }
            }
            FecConfig::Rs { k, m, .. } => f64::from(m) / f64::from(k),
        }
    }
}

/// Congestion control on the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CcMode {
    /// Send at the media's own rate, unpaced (a fixed-rate baseline).
    Off,
    /// GCC-like: delay gradient and loss from the receiver's per-packet
    /// arrival reports set the target bitrate; packets are paced.
    Gcc,
}

/// Settings of one endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Largest datagram the protocol sends, bytes.
    pub mtu: usize,
    /// How long after it was sent a packet is still useful: the receiver
    /// stops asking for a packet past it, the sender drops what it could
    /// not send within it.
    #[serde(with = "duration_ms")]
    pub latency: Duration,
    /// Ask for lost packets (receiver) and answer such requests (sender).
    pub nack: bool,
    pub fec: FecConfig,
    /// Redundant copies of earlier audio frames carried by each audio
    /// packet (RFC 2198 style); 0 turns RED off.
    pub red: u8,
    pub cc: CcMode,
    /// Bounds and start of the congestion controller's target, bit/s.
    pub start_bitrate: u64,
    pub min_bitrate: u64,
    pub max_bitrate: u64,
    /// How often the receiver reports per-packet arrivals.
    #[serde(with = "duration_ms")]
    pub feedback_interval: Duration,
    /// A gap is asked for once this many later packets arrived, or after
    /// `reorder_time`, whichever comes first (reordering tolerance).
    pub reorder_packets: u32,
    #[serde(with = "duration_ms")]
    pub reorder_time: Duration,
    /// The shared secret a client presents; the server refuses another.
    pub token: String,
    #[serde(with = "duration_ms")]
    pub keepalive: Duration,
    /// The connection closes after this long without a datagram.
    #[serde(with = "duration_ms")]
    pub idle_timeout: Duration,
    /// A client gives up connecting after this long.
    #[serde(with = "duration_ms")]
    pub handshake_timeout: Duration,
    /// Packets the sender keeps for retransmission.
    pub send_buffer: usize,
    /// Receiver: deliver frames in order, each as soon as every earlier one
    /// was delivered or at its deadline at the latest (what a gateway to
    /// RTMP needs, like SRT's TSBPD); otherwise each frame as soon as it is
    /// complete (lowest latency; the player orders).
    pub ordered: bool,
    /// A Reed–Solomon block with fewer than `k` packets is closed after
    /// this long (so a slow stream is still protected promptly).
    #[serde(with = "duration_ms")]
    pub fec_flush: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mtu: 1200,
            latency: Duration::from_millis(120),
            nack: true,
            fec: FecConfig::None,
            red: 0,
            cc: CcMode::Gcc,
            start_bitrate: 2_500_000,
            min_bitrate: 150_000,
            max_bitrate: 50_000_000,
            feedback_interval: Duration::from_millis(50),
            reorder_packets: 3,
            reorder_time: Duration::from_millis(10),
            token: String::new(),
            keepalive: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(3),
            send_buffer: 8192,
            ordered: false,
            fec_flush: Duration::from_millis(20),
        }
    }
}

/// Smallest MTU: the data header plus a useful payload.
pub const MIN_MTU: usize = 256;
/// Largest UDP payload over IPv4.
pub const MAX_MTU: usize = 65_507;

impl Config {
    /// Every constraint on the settings, checked once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, why: String| Err(ConfigError { field, why });
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return bad(
                "mtu",
                format!("{} is outside {MIN_MTU}..={MAX_MTU}", self.mtu),
            );
        }
        if self.latency < Duration::from_millis(1) || self.latency > Duration::from_secs(30) {
            return bad(
                "latency",
                format!("{:?} is outside 1 ms..30 s", self.latency),
            );
        }
        match self.fec {
            FecConfig::None => {}
            FecConfig::Xor { cols, rows } => {
                if !(1..=64).contains(&cols) || !(1..=64).contains(&rows) {
                    return bad(
                        "fec",
                        format!("xor cols and rows must be 1..=64, got {cols} × {rows}"),
                    );
                }
                if cols == 1 && rows == 1 {
                    return bad(
                        "fec",
                        "xor with cols = rows = 1 duplicates every packet; use cols ≥ 2".into(),
                    );
                }
            }
            FecConfig::Rs { k, m, .. } => {
                if !(1..=255).contains(&k) || !(1..=255).contains(&m) {
                    return bad(
                        "fec",
                        format!("rs k and m must be 1..=255, got k = {k}, m = {m}"),
                    );
                }
            }
        }
        if self.red > 4 {
            return bad("red", format!("{} copies; at most 4", self.red));
        }
        if self.min_bitrate == 0 || self.min_bitrate > self.max_bitrate {
            return bad(
                "min_bitrate",
                format!(
                    "{} must be > 0 and ≤ max_bitrate ({})",
                    self.min_bitrate, self.max_bitrate
                ),
            );
        }
        if !(self.min_bitrate..=self.max_bitrate).contains(&self.start_bitrate) {
            return bad(
                "start_bitrate",
                format!("{} is outside min..max bitrate", self.start_bitrate),
            );
        }
        let ms = |d: Duration| d.as_millis();
        if !(5..=1000).contains(&ms(self.feedback_interval)) {
            return bad(
                "feedback_interval",
                format!("{:?} is outside 5 ms..1 s", self.feedback_interval),
            );
        }
        if self.reorder_packets == 0 {
            return bad("reorder_packets", "must be ≥ 1".into());
        }
        if self.token.len() > 64 {
            return bad("token", "longer than 64 bytes".into());
        }
        if self.keepalive.is_zero() || self.idle_timeout <= self.keepalive {
            return bad(
                "idle_timeout",
                "must be longer than the keepalive interval".into(),
            );
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout", "must be > 0".into());
        }
        if !(64..=1 << 20).contains(&self.send_buffer) {
            return bad(
                "send_buffer",
                format!("{} is outside 64..=1048576 packets", self.send_buffer),
            );
        }
        Ok(())
    }

    /// Media payload bytes that fit one data packet.
    pub fn payload_per_packet(&self) -> usize {
        self.mtu - crate::wire::DATA_HEADER_LEN
    }
}

/// Durations as milliseconds (floats allowed) in serialised settings.
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1e3)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        if !ms.is_finite() || !(0.0..=1e9).contains(&ms) {
            return Err(serde::de::Error::custom(format!(
                "{ms} ms is not a duration"
            )));
        }
        Ok(Duration::from_secs_f64(ms / 1e3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_say_which_field() {
        Config::default().validate().unwrap();
        let e = Config {
            mtu: 10,
            ..Config::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "mtu");
        let e = Config {
            fec: FecConfig::Rs {
                k: 0,
                m: 2,
                adaptive: false,
            },
            ..Config::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "fec");
        let e = Config {
            red: 9,
            ..Config::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("red"), "{e}");
    }

    #[test]
    fn overhead_of_each_scheme() {
        assert_eq!(FecConfig::None.overhead(), 0.0);
        assert!((FecConfig::Xor { cols: 10, rows: 1 }.overhead() - 0.1).abs() < 1e-12);
        assert!((FecConfig::Xor { cols: 5, rows: 5 }.overhead() - 0.4).abs() < 1e-12);
        assert!(
            (FecConfig::Rs {
                k: 10,
                m: 2,
                adaptive: false
            }
            .overhead()
                - 0.2)
                .abs()
                < 1e-12
        );
    }
}
