//! Flows: which packet belongs to which conversation, and filters that let a
//! stage apply to some flows only (lose the NACKs on port 9001, not the media).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::UnitError;

/// Transport protocol of a packet, as far as the engine cares.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Other,
}

/// What an adapter knows about a packet's flow. Unknown fields are `None`; a
/// filter that asks about an unknown field does not match.
///
/// Aligned to 8 bytes: it travels inside every packet, and an odd size made
/// the packet copies slow (misaligned moves that defeat store forwarding).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[repr(align(8))]
pub struct FlowMeta {
    pub protocol: Option<Protocol>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

impl FlowMeta {
    /// Reads addresses, protocol and ports from a raw IPv4 or IPv6 packet (as a
    /// TUN device delivers it). Never panics: truncated or odd packets give
    /// whatever could be read, and `FlowMeta::default()` for garbage.
    pub fn from_ip_packet(pkt: &[u8]) -> FlowMeta {
        let Some(&first) = pkt.first() else {
            return FlowMeta::default();
        };
        let (proto_num, src, dst, l4) = match first >> 4 {
            4 if pkt.len() >= 20 => {
                let ihl = usize::from(first & 0x0f) * 4;
                let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
                let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
                // Only the first fragment carries the transport header.
                let frag_offset = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff;
                let l4 = if frag_offset == 0 && ihl >= 20 {
                    pkt.get(ihl..)
                } else {
                    None
                };
                (pkt[9], IpAddr::V4(src), IpAddr::V4(dst), l4)
            }
            6 if pkt.len() >= 40 => {
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&pkt[8..24]);
                d.copy_from_slice(&pkt[24..40]);
                // Extension headers are not walked: their flows count as `Other`.
                (
                    pkt[6],
                    IpAddr::V6(Ipv6Addr::from(s)),
                    IpAddr::V6(Ipv6Addr::from(d)),
                    pkt.get(40..),
                )
            }
            _ => return FlowMeta::default(),
        };
        let protocol = match proto_num {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 | 58 => Protocol::Icmp,
            _ => Protocol::Other,
        };
        let ports = match (protocol, l4) {
            (Protocol::Tcp | Protocol::Udp, Some(h)) if h.len() >= 4 => Some((
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
            )),
            _ => None,
        };
        FlowMeta {
            protocol: Some(protocol),
            src: Some(src),
            dst: Some(dst),
            src_port: ports.map(|p| p.0),
            dst_port: ports.map(|p| p.1),
        }
    }
}

/// An inclusive port range; a single port is `n-n`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| UnitError::new(s, "a port is a number from 0 to 65535"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let p = parse(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(UnitError::new(
                s,
                "the range's first port is above its last",
            ));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// An address prefix, `198.18.0.0/15` or a single address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpPrefix {
    fn contains(self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpPrefix {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| UnitError::new(s, "not an IP address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| UnitError::new(s, "prefix length out of range"))?,
            None => max,
        };
        Ok(IpPrefix { addr, len })
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

macro_rules! serde_via_str_or_int {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw { S(String), N(i64) }
                let text = match Raw::deserialize(d)? { Raw::S(s) => s, Raw::N(n) => n.to_string() };
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_str_or_int!(PortRange, IpPrefix);

/// Which packets a stage applies to. Every field given must match; a filter
/// with no field matches everything. `port` matches either source or
/// destination port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpPrefix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpPrefix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRange>,
}

impl FlowFilter {
    pub fn matches(&self, m: &FlowMeta) -> bool {
        fn check<T: Copy, V: Copy>(
            want: Option<T>,
            have: Option<V>,
            f: impl Fn(T, V) -> bool,
        ) -> bool {
            match want {
                None => true,
                Some(w) => have.is_some_and(|h| f(w, h)),
            }
        }
        check(self.protocol, m.protocol, |a, b| a == b)
            && check(self.src, m.src, IpPrefix::contains)
            && check(self.dst, m.dst, IpPrefix::contains)
            && check(self.src_port, m.src_port, PortRange::contains)
            && check(self.dst_port, m.dst_port, PortRange::contains)
            && match self.port {
                None => true,
                Some(r) => {
                    m.src_port.is_some_and(|p| r.contains(p))
                        || m.dst_port.is_some_and(|p| r.contains(p))
                }
            }
    }
}

/// `true` when the optional filter lets this packet into the stage.
#[inline]
pub(crate) fn applies(filter: &Option<FlowFilter>, meta: &FlowMeta) -> bool {
    filter.as_ref().is_none_or(|f| f.matches(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(src_port: u16, dst_port: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&[198, 18, 0, 1]);
        p[16..20].copy_from_slice(&[198, 18, 1, 1]);
        p[20..22].copy_from_slice(&src_port.to_be_bytes());
        p[22..24].copy_from_slice(&dst_port.to_be_bytes());
        p
    }

    #[test]
    fn parses_ipv4_udp() {
        let m = FlowMeta::from_ip_packet(&udp4(5000, 9001));
        assert_eq!(m.protocol, Some(Protocol::Udp));
        assert_eq!(m.src_port, Some(5000));
        assert_eq!(m.dst_port, Some(9001));
        assert_eq!(m.dst, Some("198.18.1.1".parse().unwrap()));
    }

    #[test]
    fn never_panics_on_garbage() {
        for len in 0..64 {
            for fill in [0u8, 0x45, 0x60, 0xff] {
                let mut p = vec![fill; len];
                if let Some(b) = p.first_mut() {
                    *b = fill;
                }
                let _ = FlowMeta::from_ip_packet(&p);
            }
        }
        // An IHL pointing past the end gives no ports, not a panic.
        let mut p = udp4(1, 2);
        p[0] = 0x4f;
        assert_eq!(FlowMeta::from_ip_packet(&p).src_port, None);
    }

    #[test]
    fn filter_matches_fields() {
        let m = FlowMeta::from_ip_packet(&udp4(5000, 9001));
        let f: FlowFilter = toml::from_str("protocol = \"udp\"\ndst_port = \"9000-9010\"").unwrap();
        assert!(f.matches(&m));
        let f: FlowFilter = toml::from_str("protocol = \"tcp\"").unwrap();
        assert!(!f.matches(&m));
        let f: FlowFilter = toml::from_str("port = 5000\nsrc = \"198.18.0.0/15\"").unwrap();
        assert!(f.matches(&m));
        let f: FlowFilter = toml::from_str("dst = \"10.0.0.0/8\"").unwrap();
        assert!(!f.matches(&m));
        // A filter asking about ports does not match a packet whose ports are unknown.
        let f: FlowFilter = toml::from_str("dst_port = 9001").unwrap();
        assert!(!f.matches(&FlowMeta::default()));
        assert!(FlowFilter::default().matches(&FlowMeta::default()));
    }

    #[test]
    fn filter_refuses_unknown_fields_and_bad_ports() {
        assert!(toml::from_str::<FlowFilter>("prot = \"udp\"").is_err());
        assert!(toml::from_str::<FlowFilter>("dst_port = 70000").is_err());
        assert!(toml::from_str::<FlowFilter>("dst_port = \"9-2\"").is_err());
    }
}
