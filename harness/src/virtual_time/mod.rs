//! Virtual time: a whole run in one thread with no sockets and no sleeping.
//! Every link is an engine pipeline ([`net::VirtualNet`], seeded as link
//! mode seeds its own), every endpoint a sans-IO state machine (the UDP
//! protocol's sessions, its relay, the encoder, the player), and the clock
//! jumps from one event to the next ([`run::UdpRun`]). Nothing reads the
//! wall clock and every random choice comes from the run's seed tree, so a
//! seed gives the same `frames.csv` byte for byte, and a 60 s run takes a
//! fraction of a second.
//!
//! What runs in virtual time so far: Glass's UDP protocol (`gudp://`
//! publisher and players, the relay between them), with the synthetic
//! encoder or a replayed FLV file. Everything else is refused at
//! validation with the reason ([`refusals`]): kernel TCP (RTMP, RTSP),
//! QUIC (quinn's endpoint runs on tokio's clock), ffmpeg and Chromium (real
//! processes), cross traffic, hostile clients and faults (real sockets and
//! tasks).

pub mod net;
pub mod run;

use crate::scenario::{PublisherKind, Scenario};

pub use run::run_groups;

/// Scenario time zero on the wall clock, fixed so that timestamps carrying
/// the wall clock (a replayed file's) are the same in every run:
/// 2023-11-14T22:13:20Z, in ms since 1970.
pub const WALL_ORIGIN_MS: f64 = 1.7e12;

/// Why `scenario` cannot run in virtual time: one line per part, empty
/// when it can.
pub fn refusals(scenario: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in scenario.protocols.iter().enumerate() {
        let at = format!("protocols[{i}] (\"{}\")", p.name);
        if p.publisher == PublisherKind::Ffmpeg {
            out.push(format!(
                "{at}: publisher = \"ffmpeg\" is a real process on real time"
            ));
        }
        if p.ffmpeg_player {
            out.push(format!(
                "{at}: ffmpeg_player is a real process on real time"
            ));
        }
        for (what, uri) in [("uri", &p.publisher_uri), ("player_uri", &p.player_uri)] {
            if uri.scheme != "gudp" {
                out.push(format!(
                    "{at}: {what} {}:// — only Glass's UDP protocol (gudp://) runs in virtual time \
                     so far (RTMP over TCP needs the kernel's TCP; RTMP over QUIC, RTSP and \
                     RTMP over a userspace TCP are not built for it yet)",
                    uri.scheme
                ));
            }
        }
    }
    for (i, n) in scenario.networks.iter().enumerate() {
        let at = format!("networks[{i}] (\"{}\")", n.name);
        for (what, present) in [
            ("cross traffic uses real sockets", !n.cross.is_empty()),
            ("hostile clients use real sockets", !n.hostile.is_empty()),
            ("faults act on real tasks and links", !n.faults.is_empty()),
        ] {
            if present {
                out.push(format!("{at}: {what}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_that_needs_real_time_is_named() {
        let s = Scenario::from_toml(
            "t",
            r#"
name = "t"
duration = "2s"
[[networks]]
name = "busy"
first_mile = { profile = "delay 10ms" }
cross = [ { mile = "first", kind = "tcp", cc = "cubic" } ]
[[protocols]]
kind = "rtmp"
[[protocols]]
kind = "udp"
"#,
            None,
        )
        .unwrap();
        let r = refusals(&s);
        assert_eq!(r.len(), 3, "{r:#?}");
        assert!(
            r[0].starts_with("protocols[0] (\"rtmp\"): uri rtmp://"),
            "{}",
            r[0]
        );
        assert!(r[1].contains("player_uri rtmp://"));
        assert!(r[2].starts_with("networks[0] (\"busy\"): cross traffic"));
    }
}
