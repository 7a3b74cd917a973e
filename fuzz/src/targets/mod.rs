//! The targets, one per parser (and the code right behind it).

mod flv;
mod http;
mod netem;
mod pcap;
mod rtmp;
mod rtsp;
mod scenario;
mod udp;

use crate::Target;

pub const ALL: &[Target] = &[
    Target {
        name: "udp",
        about: "Glass's UDP protocol: datagrams into a connection (handshake, data, FEC, RED, NACK, feedback, keepalive)",
        run: udp::run,
    },
    Target {
        name: "rtmp",
        about: "RTMP chunks through rml_rtmp into the relay's sessions and the hub (publish, metadata, GOP cache, play)",
        run: rtmp::run,
    },
    Target {
        name: "rtsp",
        about: "RTSP requests, Digest/Basic authorization and interleaved frames into the relay's RTSP session",
        run: rtsp::session,
    },
    Target {
        name: "sdp",
        about: "ANNOUNCE's session description into Glass's track extraction and the AAC-hbr parameters",
        run: rtsp::sdp,
    },
    Target {
        name: "rtp",
        about: "RTP packets through the reorder buffer, the loss counter and the H.264 and AAC depacketizers",
        run: rtsp::rtp,
    },
    Target {
        name: "flv",
        about: "FLV files (replay) into the reader, the tag classifiers and the looping replay",
        run: flv::run,
    },
    Target {
        name: "http",
        about: "HTTP egress: request paths, publishers' tags into the HLS packager and back through the TS demuxer and playlist parser, damaged segments and playlists, HTTP-FLV bodies in pieces",
        run: http::run,
    },
    Target {
        name: "scenario",
        about: "scenario TOML (the shipped scenarios, mutated) into parsing, validation and sweep expansion",
        run: scenario::run,
    },
    Target {
        name: "netem-line",
        about: "netem lines into the parser, validation and a pipeline carrying packets",
        run: netem::netem_line,
    },
    Target {
        name: "mahimahi",
        about: "mahimahi traces into the parser and a trace-driven link carrying packets",
        run: netem::mahimahi,
    },
    Target {
        name: "ip-packet",
        about: "raw IPv4/IPv6 packets from the TUN device into the flow classifier",
        run: netem::ip_packet,
    },
    Target {
        name: "pcap",
        about: "captures written by Glass's pcap/pcapng writers and read back byte for byte (a round trip)",
        run: pcap::run,
    },
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}
