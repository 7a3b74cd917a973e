//! Human units in configuration: `"40ms"`, `"5Mbit/s"`, `"1%"`, `"64KB"`.
//!
//! Each type parses from a string and prints back to the same form, so a
//! configuration survives a round trip through TOML or JSON. Bare numbers are
//! refused where they would be ambiguous (is `1` one percent or 100 %?).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::UnitError;

fn split_number(s: &str) -> Result<(f64, &str), UnitError> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0) || c == 'e')
        })
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    // `e` is only an exponent when followed by a digit; "5e" is not a number.
    let (num, unit) = s.split_at(end);
    let value: f64 = num
        .parse()
        .map_err(|_| UnitError::new(s, "expected a number followed by a unit"))?;
    if !value.is_finite() {
        return Err(UnitError::new(s, "the number is not finite"));
    }
    Ok((value, unit.trim()))
}

/// A probability, written as a percentage: `"1%"`, `"0.25%"`, `"100%"`.
#[derive(Copy, Clone, Debug, Default, PartialEq, PartialOrd)]
pub struct Probability(f64);

impl Probability {
    pub const ZERO: Probability = Probability(0.0);
    pub const ONE: Probability = Probability(1.0);

    /// A probability from a fraction in `[0, 1]`.
    pub fn from_fraction(p: f64) -> Result<Self, UnitError> {
        if !(0.0..=1.0).contains(&p) || p.is_nan() {
            return Err(UnitError::new(
                &format!("{}%", p * 100.0),
                "a probability must lie between 0% and 100%",
            ));
        }
        Ok(Probability(p))
    }
    pub fn fraction(self) -> f64 {
        self.0
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }
}

impl FromStr for Probability {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(s)?;
        if unit != "%" {
            return Err(UnitError::new(
                s,
                "write a percentage with a % sign, e.g. \"1%\" or \"0.5%\"",
            ));
        }
        if !(0.0..=100.0).contains(&value) {
            return Err(UnitError::new(
                s,
                "a percentage must lie between 0% and 100%",
            ));
        }
        Ok(Probability(value / 100.0))
    }
}

impl fmt::Display for Probability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", trim_float(self.0 * 100.0))
    }
}

/// A data rate in bits per second: `"5Mbit/s"`, `"500kbit/s"`, `"2MB/s"` (bytes).
///
/// `"Mbps"` is refused on purpose: `tc` reads it as megabytes per second while
/// most people mean megabits, an eightfold difference.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BitRate(u64);

impl BitRate {
    pub fn from_bits_per_sec(bps: u64) -> Self {
        BitRate(bps)
    }
    pub fn bits_per_sec(self) -> u64 {
        self.0
    }
    /// Time to serialise `bytes` at this rate (zero for a zero-byte packet).
    pub fn transmit_time(self, bytes: u64) -> Duration {
        if self.0 == 0 {
            return Duration::MAX;
        }
        // u64 arithmetic (a hot path) while bytes × 8e9 fits, u128 beyond.
        let ns = match bytes.checked_mul(8_000_000_000) {
            Some(bits_ns) => bits_ns.div_ceil(self.0),
            None => u64::try_from((u128::from(bytes) * 8_000_000_000).div_ceil(u128::from(self.0)))
                .unwrap_or(u64::MAX),
        };
        Duration::from_nanos(ns)
    }
    /// Parses `tc`'s rate syntax, used by netem lines: `bit`, `kbit`, `mbit`,
    /// `gbit`, `tbit`, the binary `kibit`.., and `bps`/`kbps`/`mbps`/`gbps`
    /// which in `tc` mean **bytes** per second. A bare number is bit/s.
    pub fn parse_tc(s: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(s)?;
        let lower = unit.to_ascii_lowercase();
        let mult: f64 = match lower.as_str() {
            "" | "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            "tbit" => 1e12,
            "kibit" => 1024.0,
            "mibit" => 1024.0 * 1024.0,
            "gibit" => 1024.0 * 1024.0 * 1024.0,
            "bps" => 8.0,
            "kbps" => 8e3,
            "mbps" => 8e6,
            "gbps" => 8e9,
            _ => {
                return Err(UnitError::new(
                    s,
                    "unknown tc rate unit (bit, kbit, mbit, gbit, or bps/kbps/mbps for bytes/s)",
                ));
            }
        };
        Self::checked(s, value * mult)
    }

    fn checked(s: &str, bps: f64) -> Result<Self, UnitError> {
        if bps <= 0.0 {
            return Err(UnitError::new(s, "a rate must be greater than zero"));
        }
        if bps > 1e13 {
            return Err(UnitError::new(
                s,
                "a rate above 10 Tbit/s is not meaningful here",
            ));
        }
        Ok(BitRate(bps.round() as u64))
    }
}

impl FromStr for BitRate {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(s)?;
        let mult: f64 = match unit {
            "bit/s" => 1.0,
            "kbit/s" | "Kbit/s" => 1e3,
            "Mbit/s" | "mbit/s" => 1e6,
            "Gbit/s" | "gbit/s" => 1e9,
            "B/s" => 8.0,
            "kB/s" | "KB/s" => 8e3,
            "MB/s" => 8e6,
            "GB/s" => 8e9,
            u if u.to_ascii_lowercase().ends_with("bps") => {
                return Err(UnitError::new(
                    s,
                    "ambiguous unit: tc reads \"mbps\" as megabytes/s, people usually mean megabits/s; write \"Mbit/s\" or \"MB/s\"",
                ));
            }
            "" => return Err(UnitError::new(s, "a rate needs a unit, e.g. \"5Mbit/s\"")),
            _ => {
                return Err(UnitError::new(
                    s,
                    "unknown rate unit (bit/s, kbit/s, Mbit/s, Gbit/s, B/s, kB/s, MB/s)",
                ));
            }
        };
        Self::checked(s, value * mult)
    }
}

impl fmt::Display for BitRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0 as f64;
        if v >= 1e9 {
            write!(f, "{}Gbit/s", trim_float(v / 1e9))
        } else if v >= 1e6 {
            write!(f, "{}Mbit/s", trim_float(v / 1e6))
        } else if v >= 1e3 {
            write!(f, "{}kbit/s", trim_float(v / 1e3))
        } else {
            write!(f, "{}bit/s", self.0)
        }
    }
}

/// A size in bytes: `"1500B"`, `"64KB"` (1000s), `"64KiB"` (1024s), `"1MB"`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    pub fn from_bytes(b: u64) -> Self {
        ByteSize(b)
    }
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(s)?;
        let mult: f64 = match unit {
            "B" | "bytes" => 1.0,
            "KB" | "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            _ => {
                return Err(UnitError::new(
                    s,
                    "unknown size unit (B, KB, MB, KiB, MiB; a bit count is not a size)",
                ));
            }
        };
        let bytes = value * mult;
        if bytes < 0.0 {
            return Err(UnitError::new(s, "a size cannot be negative"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B", self.0)
    }
}

/// A duration: `"40ms"`, `"1.5s"`, `"250us"`, `"2min"`, or `"0"`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }

    /// Parses `tc`'s time syntax for netem lines: like Glass's, but a bare
    /// number is in microseconds (as in `tc`).
    pub fn parse_tc(s: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(s)?;
        if unit.is_empty() {
            return Self::from_secs_checked(s, value / 1e6);
        }
        s.parse()
    }

    fn from_secs_checked(s: &str, secs: f64) -> Result<Self, UnitError> {
        if secs < 0.0 {
            return Err(UnitError::new(s, "a duration cannot be negative"));
        }
        if secs > 1e9 {
            return Err(UnitError::new(s, "duration too large"));
        }
        Ok(HumanDuration(Duration::from_secs_f64(secs)))
    }
}

impl FromStr for HumanDuration {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(s)?;
        let secs = match unit {
            "ns" => value / 1e9,
            "us" | "µs" | "usec" => value / 1e6,
            "ms" | "msec" => value / 1e3,
            "s" | "sec" => value,
            "min" => value * 60.0,
            "h" => value * 3600.0,
            "" if value == 0.0 => 0.0,
            "" => {
                return Err(UnitError::new(
                    s,
                    "a duration needs a unit, e.g. \"40ms\" or \"1.5s\"",
                ));
            }
            _ => {
                return Err(UnitError::new(
                    s,
                    "unknown time unit (ns, us, ms, s, min, h)",
                ));
            }
        };
        Self::from_secs_checked(s, secs)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            write!(f, "0")
        } else if ns.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", ns / 1_000_000_000)
        } else if ns.is_multiple_of(1_000_000) {
            write!(f, "{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            write!(f, "{}us", ns / 1_000)
        } else {
            write!(f, "{ns}ns")
        }
    }
}

/// How much a bottleneck queue holds before it drops: packets, bytes or time.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum QueueLimit {
    Packets(u32),
    Bytes(ByteSize),
    /// The queue holds at most this much time of transmission at the current rate.
    Time(HumanDuration),
}

impl Default for QueueLimit {
    /// netem's default limit: 1000 packets.
    fn default() -> Self {
        QueueLimit::Packets(1000)
    }
}

impl FromStr for QueueLimit {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (value, unit) = split_number(s)?;
        match unit {
            "packets" | "packet" | "pkts" | "p" => {
                if value < 1.0 || value.fract() != 0.0 || value > u32::MAX as f64 {
                    return Err(UnitError::new(s, "a packet limit is a whole number >= 1"));
                }
                Ok(QueueLimit::Packets(value as u32))
            }
            _ => {
                if let Ok(b) = s.parse::<ByteSize>() {
                    if b.bytes() == 0 {
                        return Err(UnitError::new(s, "a queue must hold at least one byte"));
                    }
                    return Ok(QueueLimit::Bytes(b));
                }
                if let Ok(d) = s.parse::<HumanDuration>()
                    && !d.0.is_zero()
                {
                    return Ok(QueueLimit::Time(d));
                }
                Err(UnitError::new(
                    s,
                    "a queue limit is packets (\"100 packets\"), bytes (\"64KB\") or time (\"50ms\")",
                ))
            }
        }
    }
}

impl fmt::Display for QueueLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueLimit::Packets(n) => write!(f, "{n} packets"),
            QueueLimit::Bytes(b) => write!(f, "{b}"),
            QueueLimit::Time(d) => write!(f, "{d}"),
        }
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Serde through `FromStr`/`Display`, so every unit type reads and writes strings.
macro_rules! serde_via_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = StrOrNumber::deserialize(d)?;
                s.0.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_str!(Probability, BitRate, ByteSize, HumanDuration, QueueLimit);

/// Accepts a string, or a number that is then parsed as its decimal text (so
/// `limit = 0` gives the "needs a unit" message instead of a type error).
struct StrOrNumber(String);

impl<'de> Deserialize<'de> for StrOrNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StrOrNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string with a unit, such as \"40ms\", \"5Mbit/s\" or \"1%\"")
            }
            fn visit_str<E>(self, v: &str) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<StrOrNumber, E> {
                Ok(StrOrNumber(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percentages_and_refuses_bare_numbers() {
        assert_eq!("1%".parse::<Probability>().unwrap().fraction(), 0.01);
        assert_eq!("0.5 %".parse::<Probability>().unwrap().fraction(), 0.005);
        let e = "1".parse::<Probability>().unwrap_err().to_string();
        assert!(e.contains("% sign"), "{e}");
        assert!("101%".parse::<Probability>().is_err());
        assert!("-1%".parse::<Probability>().is_err());
    }

    #[test]
    fn parses_rates_and_refuses_ambiguous_mbps() {
        assert_eq!(
            "5Mbit/s".parse::<BitRate>().unwrap().bits_per_sec(),
            5_000_000
        );
        assert_eq!(
            "500kbit/s".parse::<BitRate>().unwrap().bits_per_sec(),
            500_000
        );
        assert_eq!(
            "1MB/s".parse::<BitRate>().unwrap().bits_per_sec(),
            8_000_000
        );
        let e = "5Mbps".parse::<BitRate>().unwrap_err().to_string();
        assert!(e.contains("ambiguous"), "{e}");
        assert!("-5Mbit/s".parse::<BitRate>().is_err());
        assert!("0Mbit/s".parse::<BitRate>().is_err());
        // tc semantics for netem lines: mbps is megabytes.
        assert_eq!(
            BitRate::parse_tc("5mbit").unwrap().bits_per_sec(),
            5_000_000
        );
        assert_eq!(
            BitRate::parse_tc("1mbps").unwrap().bits_per_sec(),
            8_000_000
        );
    }

    #[test]
    fn parses_durations() {
        assert_eq!(
            "40ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(40)
        );
        assert_eq!(
            "1.5s".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!(
            "250us".parse::<HumanDuration>().unwrap().0,
            Duration::from_micros(250)
        );
        assert_eq!("0".parse::<HumanDuration>().unwrap().0, Duration::ZERO);
        assert!("40".parse::<HumanDuration>().is_err());
        assert!("-4ms".parse::<HumanDuration>().is_err());
        assert_eq!(
            HumanDuration::parse_tc("100").unwrap().0,
            Duration::from_micros(100)
        );
    }

    #[test]
    fn parses_queue_limits() {
        assert_eq!(
            "100 packets".parse::<QueueLimit>().unwrap(),
            QueueLimit::Packets(100)
        );
        assert_eq!(
            "64KiB".parse::<QueueLimit>().unwrap(),
            QueueLimit::Bytes(ByteSize(65536))
        );
        assert_eq!(
            "50ms".parse::<QueueLimit>().unwrap(),
            QueueLimit::Time(HumanDuration(Duration::from_millis(50)))
        );
        assert!("0 packets".parse::<QueueLimit>().is_err());
        assert!("lots".parse::<QueueLimit>().is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["1%", "0.25%", "5Mbit/s", "40ms", "1500B", "100 packets"] {
            let again = match s {
                _ if s.ends_with('%') => s.parse::<Probability>().unwrap().to_string(),
                _ if s.ends_with("bit/s") => s.parse::<BitRate>().unwrap().to_string(),
                _ if s.ends_with("ms") => s.parse::<HumanDuration>().unwrap().to_string(),
                _ => s.parse::<QueueLimit>().unwrap().to_string(),
            };
            assert_eq!(again, s);
        }
    }

    #[test]
    fn transmit_time_rounds_up() {
        let r = BitRate::from_bits_per_sec(1_000_000);
        assert_eq!(r.transmit_time(125), Duration::from_millis(1));
        assert_eq!(r.transmit_time(1), Duration::from_micros(8));
    }
}
