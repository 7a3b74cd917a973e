//! A topology of named hosts and the links between them: what the
//! packet-level link builds (a namespace per host, an engine pipeline per
//! link direction) and how a packet is routed across it (hop by hop along
//! the links, so a route's delay is the sum of its links'). Plain data and
//! a routing table, no I/O: checked and unit-tested without privileges.
//!
//! Glass's default is three hosts and two links, publisher — server —
//! player ([`Graph::three_hosts`]); an origin with edges, or viewer groups
//! on different last miles, are more hosts and links.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use crate::Profile;

/// A host: its name (namespace, reports) and its address in the
/// benchmarking range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    pub name: String,
    pub addr: Ipv4Addr,
}

/// A link between hosts `a` and `b` (indices into [`Graph::hosts`]): two
/// directions, each an engine pipeline with its own profile and seed label.
#[derive(Clone, Debug)]
pub struct LinkSpec {
    pub name: String,
    pub a: usize,
    pub b: usize,
    /// a → b ("uplink": from the edge towards the core).
    pub up: Profile,
    /// b → a ("downlink").
    pub down: Profile,
}

impl LinkSpec {
    /// The seed and file label of one direction: `NAME-uplink` (a → b) or
    /// `NAME-downlink`.
    pub fn label(&self, up: bool) -> String {
        format!("{}-{}", self.name, if up { "uplink" } else { "downlink" })
    }
}

/// Why a graph cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("host \"{0}\" is declared twice")]
    DuplicateHost(String),
    #[error("hosts \"{0}\" and \"{1}\" have the same address")]
    DuplicateAddr(String, String),
    #[error("link \"{0}\" is declared twice")]
    DuplicateLink(String),
    #[error("link \"{link}\" joins host {host}, which does not exist")]
    NoSuchHost { link: String, host: usize },
    #[error("link \"{0}\" joins a host to itself")]
    Loop(String),
    #[error("hosts \"{0}\" and \"{1}\" are joined by two links; a route must be unique")]
    Parallel(String, String),
    #[error("host \"{0}\" is not connected to \"{1}\": no route between them")]
    Disconnected(String, String),
    #[error("the links form a cycle through \"{0}\": routes must be unique (a tree)")]
    Cycle(String),
    #[error("a star has 1 to {MAX_GROUPS} player groups, not {0}")]
    Groups(usize),
    #[error(
        "a host name is a non-empty word of letters, digits, - and _ (at most 12), not \"{0}\""
    )]
    BadName(String),
}

/// The most player groups [`Graph::star`] takes (their addresses are
/// 198.18.2.1 to 198.18.17.1).
pub const MAX_GROUPS: usize = 16;

/// A player group's host and its own last mile to the server.
#[derive(Clone, Debug)]
pub struct LastMile {
    /// The host's name (its namespace; reports).
    pub host: String,
    /// The link's name (its seed labels `LINK-uplink`, `LINK-downlink`).
    pub link: String,
    /// (uplink towards the server, downlink).
    pub profiles: (Profile, Profile),
}

/// Whether `name` can name a host (its namespace, its reports): a word of
/// at most 12 letters, digits, `-` and `_`.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 12
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A checked topology and its routing table.
#[derive(Clone, Debug)]
pub struct Graph {
    hosts: Vec<HostSpec>,
    links: Vec<LinkSpec>,
    /// `next[from][to]`: the direction a packet at `from` for `to` takes.
    next: Vec<Vec<Option<usize>>>,
}

/// One direction of a link: index `2 * link` is a → b, `2 * link + 1` is b → a.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Direction {
    pub link: usize,
    pub up: bool,
}

impl Direction {
    pub fn index(self) -> usize {
        2 * self.link + usize::from(!self.up)
    }

    pub fn from_index(i: usize) -> Direction {
        Direction {
            link: i / 2,
            up: i.is_multiple_of(2),
        }
    }
}

impl Graph {
    /// Checks `hosts` and `links` (unique names and addresses, links
    /// between existing distinct hosts, connected, a tree so every route is
    /// unique) and computes the routes.
    pub fn new(hosts: Vec<HostSpec>, links: Vec<LinkSpec>) -> Result<Graph, GraphError> {
        for (i, h) in hosts.iter().enumerate() {
            if !is_host_name(&h.name) {
                return Err(GraphError::BadName(h.name.clone()));
            }
            if let Some(o) = hosts[..i].iter().find(|o| o.name == h.name) {
                return Err(GraphError::DuplicateHost(o.name.clone()));
            }
            if let Some(o) = hosts[..i].iter().find(|o| o.addr == h.addr) {
                return Err(GraphError::DuplicateAddr(o.name.clone(), h.name.clone()));
            }
        }
        for (i, l) in links.iter().enumerate() {
            if links[..i].iter().any(|o| o.name == l.name) {
                return Err(GraphError::DuplicateLink(l.name.clone()));
            }
            for host in [l.a, l.b] {
                if host >= hosts.len() {
                    return Err(GraphError::NoSuchHost {
                        link: l.name.clone(),
                        host,
                    });
                }
            }
            if l.a == l.b {
                return Err(GraphError::Loop(l.name.clone()));
            }
            let same = |o: &LinkSpec| (o.a, o.b) == (l.a, l.b) || (o.a, o.b) == (l.b, l.a);
            if links[..i].iter().any(same) {
                return Err(GraphError::Parallel(
                    hosts[l.a].name.clone(),
                    hosts[l.b].name.clone(),
                ));
            }
        }
        let n = hosts.len();
        if n > 0 && links.len() >= n {
            // Connected with as many links as hosts: there is a cycle.
            return Err(GraphError::Cycle(hosts[links[n - 1].a].name.clone()));
        }
        // Breadth-first from every host: the first direction of the route.
        let mut next = vec![vec![None; n]; n];
        for from in 0..n {
            let mut seen = vec![false; n];
            seen[from] = true;
            let mut queue = VecDeque::new();
            for (li, l) in links.iter().enumerate() {
                let (to, up) = match (l.a == from, l.b == from) {
                    (true, _) => (l.b, true),
                    (_, true) => (l.a, false),
                    _ => continue,
                };
                seen[to] = true;
                next[from][to] = Some(Direction { link: li, up }.index());
                queue.push_back(to);
            }
            while let Some(at) = queue.pop_front() {
                let first = next[from][at];
                for l in &links {
                    let to = match (l.a == at, l.b == at) {
                        (true, _) => l.b,
                        (_, true) => l.a,
                        _ => continue,
                    };
                    if !seen[to] {
                        seen[to] = true;
                        next[from][to] = first;
                        queue.push_back(to);
                    }
                }
            }
            if let Some(to) = (0..n).find(|&t| !seen[t]) {
                return Err(GraphError::Disconnected(
                    hosts[from].name.clone(),
                    hosts[to].name.clone(),
                ));
            }
        }
        Ok(Graph { hosts, links, next })
    }

    /// Glass's default: publisher — server — player, the first mile
    /// (publisher ↔ server) and the last mile (player ↔ server), each given
    /// as (uplink, downlink) with uplink towards the server. Hosts 0, 1, 2
    /// are publisher, server, player; directions 0–3 are first mile up and
    /// down, last mile up and down.
    pub fn three_hosts(first_mile: (Profile, Profile), last_mile: (Profile, Profile)) -> Graph {
        let player = LastMile {
            host: "player".into(),
            link: "last_mile".into(),
            profiles: last_mile,
        };
        match Graph::star(first_mile, vec![player]) {
            Ok(g) => g,
            Err(e) => unreachable!("the three-host layout is a valid graph: {e}"),
        }
    }

    /// The publisher and the server joined by the first mile, and a host per
    /// player group joined to the server by its own last mile: hosts 0 and
    /// 1 are publisher (198.18.1.1) and server (198.18.0.1), host `2 + i`
    /// is group `i` at 198.18.`2 + i`.1 (at most [`MAX_GROUPS`]); link 0 is
    /// the first mile, link `1 + i` group `i`'s last mile. With one group
    /// called "player" on a link "last_mile" it is [`Graph::three_hosts`].
    pub fn star(
        first_mile: (Profile, Profile),
        groups: Vec<LastMile>,
    ) -> Result<Graph, GraphError> {
        if groups.is_empty() || groups.len() > MAX_GROUPS {
            return Err(GraphError::Groups(groups.len()));
        }
        let host = |name: &str, addr| HostSpec {
            name: name.into(),
            addr,
        };
        let mut hosts = vec![
            host("publisher", Ipv4Addr::new(198, 18, 1, 1)),
            host("server", Ipv4Addr::new(198, 18, 0, 1)),
        ];
        let mut links = vec![LinkSpec {
            name: "first_mile".into(),
            a: 0,
            b: 1,
            up: first_mile.0,
            down: first_mile.1,
        }];
        for (i, g) in groups.into_iter().enumerate() {
            links.push(LinkSpec {
                name: g.link,
                a: hosts.len(),
                b: 1,
                up: g.profiles.0,
                down: g.profiles.1,
            });
            hosts.push(host(&g.host, Ipv4Addr::new(198, 18, 2 + i as u8, 1)));
        }
        Graph::new(hosts, links)
    }

    /// The same graph with `leaves` added: each a host joined to an
    /// existing host by a clean link named after it (its traffic then
    /// shares that host's links, queues included).
    pub fn with_leaves(self, leaves: Vec<(HostSpec, usize)>) -> Result<Graph, GraphError> {
        let (mut hosts, mut links) = (self.hosts, self.links);
        for (h, attach) in leaves {
            links.push(LinkSpec {
                name: h.name.clone(),
                a: hosts.len(),
                b: attach,
                up: Profile::transparent(),
                down: Profile::transparent(),
            });
            hosts.push(h);
        }
        Graph::new(hosts, links)
    }

    pub fn hosts(&self) -> &[HostSpec] {
        &self.hosts
    }

    pub fn links(&self) -> &[LinkSpec] {
        &self.links
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// The host with address `addr`.
    pub fn host_at(&self, addr: Ipv4Addr) -> Option<usize> {
        self.hosts.iter().position(|h| h.addr == addr)
    }

    /// Every direction, by index: its link, its way, and its label.
    pub fn directions(&self) -> impl Iterator<Item = (Direction, String)> + '_ {
        (0..2 * self.links.len()).map(|i| {
            let d = Direction::from_index(i);
            (d, self.links[d.link].label(d.up))
        })
    }

    /// A direction's profile.
    pub fn profile(&self, d: Direction) -> &Profile {
        let l = &self.links[d.link];
        if d.up { &l.up } else { &l.down }
    }

    /// The host a direction delivers to.
    pub fn head(&self, d: Direction) -> usize {
        let l = &self.links[d.link];
        if d.up { l.b } else { l.a }
    }

    /// The direction a packet at `at` for `to` takes next (`None` when it
    /// has arrived, or for an unknown host).
    pub fn next(&self, at: usize, to: usize) -> Option<Direction> {
        self.next
            .get(at)?
            .get(to)
            .copied()
            .flatten()
            .map(Direction::from_index)
    }

    /// The directions a packet from `from` to `to` crosses, in order.
    pub fn route(&self, from: usize, to: usize) -> Vec<Direction> {
        let mut out = Vec::new();
        let mut at = from;
        while let Some(d) = self.next(at, to) {
            out.push(d);
            at = self.head(d);
            if out.len() > self.links.len() {
                break; // cannot happen in a tree; never loop
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, last: u8) -> HostSpec {
        HostSpec {
            name: name.into(),
            addr: Ipv4Addr::new(198, 18, last, 1),
        }
    }

    fn l(name: &str, a: usize, b: usize) -> LinkSpec {
        LinkSpec {
            name: name.into(),
            a,
            b,
            up: Profile::transparent(),
            down: Profile::transparent(),
        }
    }

    #[test]
    fn the_three_host_layout_routes_through_the_server() {
        let g = Graph::three_hosts(
            (Profile::transparent(), Profile::transparent()),
            (Profile::transparent(), Profile::transparent()),
        );
        let labels: Vec<String> = g.directions().map(|(_, l)| l).collect();
        assert_eq!(
            labels,
            [
                "first_mile-uplink",
                "first_mile-downlink",
                "last_mile-uplink",
                "last_mile-downlink"
            ]
        );
        let (p, s, v) = (0, 1, 2);
        let idx = |r: Vec<Direction>| r.into_iter().map(Direction::index).collect::<Vec<_>>();
        assert_eq!(idx(g.route(p, s)), [0]);
        assert_eq!(idx(g.route(s, p)), [1]);
        assert_eq!(idx(g.route(v, s)), [2]);
        assert_eq!(idx(g.route(s, v)), [3]);
        assert_eq!(idx(g.route(p, v)), [0, 3]);
        assert_eq!(idx(g.route(v, p)), [2, 1]);
        assert!(g.route(s, s).is_empty());
        assert_eq!(g.host_at(Ipv4Addr::new(198, 18, 0, 1)), Some(s));
    }

    #[test]
    fn a_star_gives_each_player_group_its_own_last_mile() {
        let t = || (Profile::transparent(), Profile::transparent());
        let group = |name: &str| LastMile {
            host: name.into(),
            link: format!("{name}_mile"),
            profiles: t(),
        };
        let g = Graph::star(t(), vec![group("home"), group("mobile")]).unwrap();
        assert_eq!(g.host("mobile"), Some(3));
        assert_eq!(g.hosts()[3].addr, Ipv4Addr::new(198, 18, 3, 1));
        let names = |r: Vec<Direction>| {
            r.into_iter()
                .map(|d| g.links()[d.link].label(d.up))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(g.route(0, 3)),
            ["first_mile-uplink", "mobile_mile-downlink"]
        );
        assert_eq!(
            names(g.route(2, 3)),
            ["home_mile-uplink", "mobile_mile-downlink"]
        );
        let many = (0..=MAX_GROUPS).map(|i| group(&format!("g{i}"))).collect();
        assert!(
            Graph::star(t(), many)
                .unwrap_err()
                .to_string()
                .contains("1 to 16")
        );
        assert!(Graph::star(t(), vec![]).is_err());
    }

    #[test]
    fn an_origin_with_two_edges_routes_along_the_tree() {
        // publisher — origin — edge1 — viewers1, origin — edge2 — viewers2
        let hosts = vec![
            h("publisher", 1),
            h("origin", 0),
            h("edge1", 10),
            h("edge2", 11),
            h("viewers1", 20),
            h("viewers2", 21),
        ];
        let links = vec![
            l("first", 0, 1),
            l("e1", 2, 1),
            l("e2", 3, 1),
            l("v1", 4, 2),
            l("v2", 5, 3),
        ];
        let g = Graph::new(hosts, links).unwrap();
        let names = |r: Vec<Direction>| {
            r.into_iter()
                .map(|d| g.links()[d.link].label(d.up))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(g.route(0, 5)),
            ["first-uplink", "e2-downlink", "v2-downlink"]
        );
        assert_eq!(
            names(g.route(4, 5)),
            ["v1-uplink", "e1-uplink", "e2-downlink", "v2-downlink"]
        );
        // Every route's reverse crosses the same links the other way.
        for a in 0..6 {
            for b in 0..6 {
                let there: Vec<usize> = g.route(a, b).iter().map(|d| d.link).collect();
                let mut back: Vec<usize> = g.route(b, a).iter().map(|d| d.link).collect();
                back.reverse();
                assert_eq!(there, back, "{a} → {b}");
            }
        }
    }

    #[test]
    fn bad_graphs_are_refused_with_the_reason() {
        let two = || vec![h("a", 1), h("b", 2)];
        let cases: Vec<(Vec<HostSpec>, Vec<LinkSpec>, &str)> = vec![
            (vec![h("a", 1), h("a", 2)], vec![l("x", 0, 1)], "twice"),
            (
                vec![h("a", 1), h("b", 1)],
                vec![l("x", 0, 1)],
                "same address",
            ),
            (two(), vec![l("x", 0, 2)], "does not exist"),
            (two(), vec![l("x", 0, 0)], "to itself"),
            (two(), vec![l("x", 0, 1), l("y", 1, 0)], "two links"),
            (
                vec![h("a", 1), h("b", 2), h("c", 3)],
                vec![l("x", 0, 1)],
                "no route",
            ),
            (
                vec![h("a", 1), h("b", 2), h("c", 3)],
                vec![l("x", 0, 1), l("y", 1, 2), l("z", 2, 0)],
                "cycle",
            ),
            (
                vec![h("a b", 1), h("b", 2)],
                vec![l("x", 0, 1)],
                "host name",
            ),
        ];
        for (hosts, links, needle) in cases {
            let e = Graph::new(hosts, links).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} (wanted {needle})");
        }
    }
}
