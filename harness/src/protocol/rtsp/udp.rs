//! RTSP's UDP transport at the relay: one RTP and one RTCP socket serve
//! every session (their ports are the `server_port` a SETUP answers), so
//! each datagram is routed to its session's track by where it came from.
//!
//! A track set up with `client_port=A-B` expects RTP from the client's
//! address at port A and RTCP from port B. A client behind a NAT, or
//! behind proxy mode's datagram proxy (which sends from a socket of its
//! own per client), arrives from other ports: the route then *latches*, as
//! NAT-traversing servers do, onto the first RTP datagram from the
//! client's IP with the track's payload type, and onto the first RTCP
//! datagram from that IP whose sender SSRC is the track's RTP SSRC. An
//! RTCP packet that comes before its track's first RTP packet (ffmpeg
//! sends a sender report ahead of its first packet) waits, a few at most,
//! until its SSRC is known.
//!
//! Sans-IO: datagrams in, deliveries out; the sockets are the server's.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// At most this many tracks routed at once (sessions × tracks).
pub const MAX_ROUTES: usize = 256;
/// RTCP packets waiting for their SSRC to be known.
const MAX_PENDING: usize = 16;

/// Which of the relay's UDP ports a datagram arrived on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Port {
    Rtp,
    Rtcp,
}

/// What a track set up over UDP expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// The session (the server's number for it).
    pub session: u64,
    pub track: usize,
    /// The RTSP connection's peer address: the client's host.
    pub client_ip: IpAddr,
    /// Its `client_port` (RTP, RTCP).
    pub client_ports: (u16, u16),
    pub payload_type: u8,
}

/// A datagram for one track of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub track: usize,
    pub port: Port,
    pub packet: Vec<u8>,
}

/// A datagram and the session it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery<R> {
    pub to: R,
    pub datagram: Datagram,
}

struct Route<R> {
    expect: Expect,
    to: R,
    rtp_from: Option<SocketAddr>,
    rtcp_from: Option<SocketAddr>,
    /// The RTP SSRC, once the first RTP packet came.
    ssrc: Option<u32>,
}

/// Why a route was not added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the relay routes at most {MAX_ROUTES} UDP tracks at once")]
pub struct Full;

/// Every UDP track's route.
pub struct UdpRoutes<R> {
    routes: Vec<Route<R>>,
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Datagrams no route took.
    pub stray: u64,
}

impl<R> Default for UdpRoutes<R> {
    fn default() -> Self {
        UdpRoutes {
            routes: Vec::new(),
            pending: VecDeque::new(),
            stray: 0,
        }
    }
}

/// The sender SSRC of an RTCP packet (SR, RR, SDES... all have it at 4..8).
fn rtcp_ssrc(b: &[u8]) -> Option<u32> {
    (b.len() >= 8 && b[0] >> 6 == 2).then(|| u32::from_be_bytes([b[4], b[5], b[6], b[7]]))
}

impl<R: Clone> UdpRoutes<R> {
    /// Routes `expect`'s datagrams to `to`.
    pub fn add(&mut self, expect: Expect, to: R) -> Result<(), Full> {
        if self.routes.len() >= MAX_ROUTES {
            return Err(Full);
        }
        self.routes.push(Route {
            expect,
            to,
            rtp_from: None,
            rtcp_from: None,
            ssrc: None,
        });
        Ok(())
    }

    /// Ends a session's routes.
    pub fn remove_session(&mut self, session: u64) {
        self.routes.retain(|r| r.expect.session != session);
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// A datagram from `from` on `port`: where it goes (with any RTCP that
    /// waited for this track's SSRC), or nowhere (counted in `stray`).
    pub fn route(&mut self, port: Port, from: SocketAddr, packet: &[u8]) -> Vec<Delivery<R>> {
        let found = match port {
            Port::Rtp => self.route_rtp(from, packet),
            Port::Rtcp => self.route_rtcp(from, packet),
        };
        let Some((i, latched)) = found else {
            match port {
                Port::Rtcp if rtcp_ssrc(packet).is_some() => {
                    if self.pending.len() == MAX_PENDING && self.pending.pop_front().is_some() {
                        self.stray += 1;
                    }
                    self.pending.push_back((from, packet.to_vec()));
                }
                _ => self.stray += 1,
            }
            return Vec::new();
        };
        let mut out = vec![self.routes[i].deliver(port, packet.to_vec())];
        if latched && port == Port::Rtp {
            // RTCP that waited for this SSRC.
            let mut waiting = std::mem::take(&mut self.pending);
            waiting.retain(|(src, p)| {
                let r = &mut self.routes[i];
                let mine = src.ip() == r.expect.client_ip
                    && rtcp_ssrc(p) == r.ssrc
                    && r.rtcp_from.is_none_or(|f| f == *src);
                if mine {
                    r.rtcp_from = Some(*src);
                    out.push(r.deliver(Port::Rtcp, p.clone()));
                }
                !mine
            });
            self.pending = waiting;
        }
        out
    }

    /// The route of an RTP datagram and whether it latched just now: the
    /// port the client declared, else the first open track of its payload
    /// type (the oldest session first).
    fn route_rtp(&mut self, from: SocketAddr, packet: &[u8]) -> Option<(usize, bool)> {
        let p = super::rtp::RtpPacket::parse(packet).ok();
        let found = self.find(
            from,
            |r| r.rtp_from,
            |r| r.expect.client_ports.0,
            |r| {
                p.as_ref()
                    .is_some_and(|p| r.expect.payload_type == p.payload_type)
            },
        )?;
        if found.1 && p.is_none() {
            return None; // only RTP latches a route
        }
        if let (i, true) = found {
            let r = &mut self.routes[i];
            r.rtp_from = Some(from);
            r.ssrc = p.map(|p| p.ssrc);
        }
        Some(found)
    }

    /// The route of an RTCP datagram and whether it latched just now: the
    /// port the client declared, else the track whose RTP SSRC sent it.
    fn route_rtcp(&mut self, from: SocketAddr, packet: &[u8]) -> Option<(usize, bool)> {
        let ssrc = rtcp_ssrc(packet);
        let found = self.find(
            from,
            |r| r.rtcp_from,
            |r| r.expect.client_ports.1,
            |r| ssrc.is_some() && r.ssrc == ssrc,
        )?;
        if found.1 && ssrc.is_none() {
            return None; // only RTCP latches a route
        }
        if let (i, true) = found {
            self.routes[i].rtcp_from = Some(from);
        }
        Some(found)
    }

    /// The route a datagram from `from` belongs to: the one latched onto
    /// it (`latched`), else an open one from the client's IP whose declared
    /// port (`declared`) it came from, else an open one that `fits` it;
    /// with whether it is new.
    fn find(
        &self,
        from: SocketAddr,
        latched: impl Fn(&Route<R>) -> Option<SocketAddr>,
        declared: impl Fn(&Route<R>) -> u16,
        fits: impl Fn(&Route<R>) -> bool,
    ) -> Option<(usize, bool)> {
        if let Some(i) = self.routes.iter().position(|r| latched(r) == Some(from)) {
            return Some((i, false));
        }
        let open = |r: &Route<R>| latched(r).is_none() && r.expect.client_ip == from.ip();
        self.routes
            .iter()
            .position(|r| open(r) && declared(r) == from.port())
            .or_else(|| self.routes.iter().position(|r| open(r) && fits(r)))
            .map(|i| (i, true))
    }
}

impl<R: Clone> Route<R> {
    fn deliver(&self, port: Port, packet: Vec<u8>) -> Delivery<R> {
        Delivery {
            to: self.to.clone(),
            datagram: Datagram {
                track: self.expect.track,
                port,
                packet,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rtsp::rtp::RtpPacket;

    fn rtp(pt: u8, ssrc: u32) -> Vec<u8> {
        let mut b = Vec::new();
        RtpPacket {
            payload_type: pt,
            marker: true,
            sequence: 1,
            timestamp: 0,
            ssrc,
            payload: &[1],
        }
        .write(&mut b);
        b
    }

    fn sr(ssrc: u32) -> Vec<u8> {
        let mut b = vec![0x80, 200, 0, 6];
        b.extend_from_slice(&ssrc.to_be_bytes());
        b.resize(28, 0);
        b
    }

    fn at(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    fn expect(session: u64, track: usize, ports: (u16, u16), pt: u8) -> Expect {
        Expect {
            session,
            track,
            client_ip: IpAddr::from([198, 18, 1, 1]),
            client_ports: ports,
            payload_type: pt,
        }
    }

    #[test]
    fn declared_ports_route_directly() {
        let mut r = UdpRoutes::default();
        r.add(expect(1, 0, (5000, 5001), 96), "video").unwrap();
        r.add(expect(1, 1, (5002, 5003), 97), "audio").unwrap();
        let d = r.route(Port::Rtp, at([198, 18, 1, 1], 5002), &rtp(97, 9));
        assert_eq!((d[0].to, d[0].datagram.track), ("audio", 1));
        let d = r.route(Port::Rtcp, at([198, 18, 1, 1], 5001), &sr(8));
        assert_eq!((d[0].to, d[0].datagram.port), ("video", Port::Rtcp));
        // Another host's datagrams go nowhere.
        assert!(
            r.route(Port::Rtp, at([198, 18, 9, 9], 5000), &rtp(96, 8))
                .is_empty()
        );
        assert_eq!(r.stray, 1);
    }

    #[test]
    fn proxied_ports_latch_by_payload_type_and_ssrc_and_early_reports_wait() {
        let mut r = UdpRoutes::default();
        r.add(expect(1, 0, (5000, 5001), 96), "video").unwrap();
        r.add(expect(1, 1, (5002, 5003), 97), "audio").unwrap();
        let (v_rtp, v_rtcp, a_rtp) = (
            at([198, 18, 1, 1], 41000),
            at([198, 18, 1, 1], 41001),
            at([198, 18, 1, 1], 42000),
        );
        // ffmpeg's first sender report comes before the track's RTP.
        assert!(r.route(Port::Rtcp, v_rtcp, &sr(0xaa)).is_empty());
        let d = r.route(Port::Rtp, v_rtp, &rtp(96, 0xaa));
        assert_eq!(d.len(), 2, "the RTP packet and the report that waited");
        assert_eq!((d[1].to, d[1].datagram.port), ("video", Port::Rtcp));
        assert_eq!(r.route(Port::Rtp, a_rtp, &rtp(97, 0xbb))[0].to, "audio");
        // Latched: the same sources keep their tracks.
        assert_eq!(r.route(Port::Rtp, v_rtp, &rtp(96, 0xaa))[0].to, "video");
        assert_eq!(r.route(Port::Rtcp, v_rtcp, &sr(0xaa))[0].to, "video");
        // A report for no known SSRC waits; a session's end drops its routes.
        assert!(
            r.route(Port::Rtcp, at([198, 18, 1, 1], 1), &sr(0xcc))
                .is_empty()
        );
        r.remove_session(1);
        assert!(r.is_empty());
        assert!(r.route(Port::Rtp, v_rtp, &rtp(96, 0xaa)).is_empty());
    }

    #[test]
    fn routes_are_bounded() {
        let mut r = UdpRoutes::default();
        for i in 0..MAX_ROUTES {
            r.add(expect(i as u64, 0, (1, 2), 96), ()).unwrap();
        }
        assert_eq!(r.add(expect(0, 0, (1, 2), 96), ()), Err(Full));
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_routes_or_not_without_panicking(
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            port in 0u16..4,
        ) {
            let mut r = UdpRoutes::default();
            r.add(expect(1, 0, (0, 1), 96), ()).unwrap();
            for p in [Port::Rtp, Port::Rtcp] {
                let _ = r.route(p, at([198, 18, 1, 1], port), &b);
            }
            proptest::prop_assert!(r.pending.len() <= MAX_PENDING);
        }
    }
}
