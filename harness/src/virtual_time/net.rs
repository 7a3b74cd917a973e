//! The network of a virtual run: the same star of hosts and links as link
//! mode (`Graph::star`: publisher, server, a host per player group, the
//! same 198.18.0.0/15 addresses), each link direction a netem `Pipeline`
//! seeded exactly as link mode seeds it, so the k-th packet of a direction
//! meets the same loss and delay decisions in both modes. Datagrams cross
//! each direction of their route in turn; nothing touches a socket.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use netem::Time;
use netem::adapters::graph::{Direction, Graph};
use netem::adapters::link::GraphStats;
use netem::flow::{FlowMeta, Protocol as FlowProtocol};
use netem::packet::Payload;
use netem::pipeline::Pipeline;
use netem::rng::SeedTree;

use crate::scenario::Network;

/// IPv4 and UDP headers: link mode's engine sees whole IP packets, so
/// rates and queues count them here too.
pub const IP_UDP_HEADERS: usize = 28;

/// A packet on the virtual network: a UDP datagram's payload, or a whole
/// IP packet (a userspace TCP's).
#[derive(Clone, Debug)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
    /// Header bytes the network counts beyond `bytes` (IP and UDP for a
    /// datagram; none for a whole IP packet).
    headers: usize,
    /// Directions of its route still to cross after the current one.
    hops_left: u8,
}

impl Payload for Datagram {
    fn len(&self) -> usize {
        self.bytes.len() + self.headers
    }

    /// Corruption flips a payload bit (a header bit is left alone: IP and
    /// UDP's, or a whole packet's first 40 bytes, IPv4 and TCP's).
    fn flip_bit(&mut self, bit: usize) {
        let protected = if self.headers > 0 { self.headers } else { 40 };
        if let Some(bit) = bit.checked_sub(8 * protected) {
            self.bytes.flip_bit(bit);
        }
    }
}

/// The hosts, links and pipelines of one virtual run.
pub struct VirtualNet {
    graph: Graph,
    labels: Vec<String>,
    pipes: Vec<Pipeline<Datagram>>,
    /// Datagrams that reached their host, in release order.
    arrived: VecDeque<(Time, Datagram)>,
    /// Datagrams for no host of the graph.
    pub unroutable: u64,
}

impl VirtualNet {
    /// `network`'s star; `seed` is what link mode's topology gets
    /// (`run_seeds(..).child("link")`).
    pub fn new(network: &Network, seed: u64) -> anyhow::Result<VirtualNet> {
        let groups = network.groups.iter().map(|g| g.last_mile()).collect();
        let graph = Graph::star(network.first_mile.clone(), groups)?;
        let seeds = SeedTree::new(seed);
        let labels: Vec<String> = graph.directions().map(|(_, l)| l).collect();
        let pipes = graph
            .directions()
            .map(|(d, label)| Pipeline::new(graph.profile(d), seeds.child(&label)))
            .collect();
        Ok(VirtualNet {
            graph,
            labels,
            pipes,
            arrived: VecDeque::new(),
            unroutable: 0,
        })
    }

    /// A host's address by name ("publisher", "server", a group's host).
    pub fn addr(&self, host: &str, port: u16) -> Option<SocketAddr> {
        let h = self.graph.host(host)?;
        Some(SocketAddr::new(
            IpAddr::V4(self.graph.hosts()[h].addr),
            port,
        ))
    }

    fn host_of(&self, a: SocketAddr) -> Option<usize> {
        match a.ip() {
            IpAddr::V4(v4) => self.graph.host_at(v4),
            IpAddr::V6(_) => None,
        }
    }

    /// Sends a UDP datagram's payload at `now`.
    pub fn send(&mut self, now: Time, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.send_packet(now, from, to, bytes, IP_UDP_HEADERS);
    }

    /// Sends a whole IP packet (headers included) at `now`.
    pub fn send_ip(&mut self, now: Time, from: SocketAddr, to: SocketAddr, packet: Vec<u8>) {
        self.send_packet(now, from, to, packet, 0);
    }

    fn send_packet(
        &mut self,
        now: Time,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
        headers: usize,
    ) {
        let (Some(a), Some(b)) = (self.host_of(from), self.host_of(to)) else {
            self.unroutable += 1;
            return;
        };
        let route = self.graph.route(a, b);
        let Some(first) = route.first() else {
            // Same host: no link to cross.
            self.arrived.push_back((
                now,
                Datagram {
                    from,
                    to,
                    bytes,
                    headers,
                    hops_left: 0,
                },
            ));
            return;
        };
        let d = Datagram {
            from,
            to,
            bytes,
            headers,
            hops_left: (route.len() - 1) as u8,
        };
        self.push(now, *first, d);
    }

    fn push(&mut self, now: Time, dir: Direction, d: Datagram) {
        let flow = FlowMeta {
            protocol: Some(if d.headers == 0 {
                FlowProtocol::Tcp
            } else {
                FlowProtocol::Udp
            }),
            src: Some(d.from.ip()),
            dst: Some(d.to.ip()),
            src_port: Some(d.from.port()),
            dst_port: Some(d.to.port()),
        };
        self.pipes[dir.index()].push(now, flow, d);
    }

    /// When a pipeline releases a packet or changes next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let pipes = self.pipes.iter().filter_map(Pipeline::poll_timeout);
        let arrived = self.arrived.front().map(|(t, _)| *t);
        pipes.chain(arrived).min()
    }

    /// Brings every pipeline to `now`: released packets go on to their next
    /// direction or arrive.
    pub fn handle_timeout(&mut self, now: Time) {
        for i in 0..self.pipes.len() {
            while let Some(out) = self.pipes[i].poll_transmit(now) {
                let mut d = out.payload;
                if d.hops_left == 0 {
                    self.arrived.push_back((out.released_at, d));
                    continue;
                }
                d.hops_left -= 1;
                let at = self.host_of(d.to).and_then(|to| {
                    self.graph
                        .next(self.graph.head(Direction::from_index(i)), to)
                });
                match at {
                    Some(next) => self.push(out.released_at, next, d),
                    None => self.unroutable += 1,
                }
            }
        }
    }

    /// The next datagram that arrived at its host by `now`.
    pub fn poll_arrival(&mut self, now: Time) -> Option<Datagram> {
        match self.arrived.front() {
            Some((t, _)) if *t <= now => self.arrived.pop_front().map(|(_, d)| d),
            _ => None,
        }
    }

    /// Every direction's counters by label, as link mode reports them.
    pub fn stats(&self) -> GraphStats {
        GraphStats {
            directions: GraphStats::counters_by_label(&self.labels, &self.pipes),
            unroutable: self.unroutable,
            ..GraphStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn network(first_mile: &str) -> Network {
        let s = Scenario::from_toml(
            "t",
            &format!(
                r#"
name = "t"
duration = "1s"
[[networks]]
name = "n"
first_mile = {{ uplink = "{first_mile}" }}
[[protocols]]
kind = "udp"
"#
            ),
            None,
        )
        .unwrap();
        s.networks[0].clone()
    }

    #[test]
    fn a_datagram_crosses_its_route_with_the_links_delay() {
        let mut net = VirtualNet::new(&network("delay 20ms"), 1).unwrap();
        let publisher = net.addr("publisher", 4000).unwrap();
        let server = net.addr("server", 5000).unwrap();
        let player = net.addr("player", 4001).unwrap();
        net.send(Time::ZERO, publisher, server, vec![1; 100]);
        net.send(Time::ZERO, publisher, player, vec![2; 100]);
        let mut got = Vec::new();
        while let Some(t) = net.poll_timeout() {
            net.handle_timeout(t);
            while let Some(d) = net.poll_arrival(t) {
                got.push((t, d.to, d.bytes[0]));
            }
        }
        let ms = |t: Time| (t.as_secs_f64() * 1e3).round();
        assert_eq!(got.len(), 2);
        assert_eq!((ms(got[0].0), got[0].1), (20.0, server));
        // Up the first mile, then down the player's last mile.
        assert_eq!((ms(got[1].0), got[1].1), (20.0, player));
        let stats = net.stats();
        assert_eq!(stats.counters("first_mile-uplink").delivered, 2);
        assert_eq!(stats.counters("last_mile-downlink").delivered, 1);
        assert_eq!(stats.counters("first_mile-uplink").bytes_pushed, 2 * 128);
        net.send(
            Time::ZERO,
            publisher,
            "203.0.113.1:1".parse().unwrap(),
            vec![],
        );
        assert_eq!(net.unroutable, 1);
    }
}
