//! `glass serve`: the relay on its own on loopback. Glass's RTMP publisher
//! publishes over TCP and Glass's UDP player plays the same stream through
//! the gateway, both as separate clients of the `glass` process; Ctrl-C
//! stops it and it prints the stream's statistics. No privileges needed.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::media::encoder::{Encoder, EncoderConfig};
use harness::media::player::Player;
use harness::media::source::Source;
use harness::protocol::rtmp;
use harness::protocol::rtmp::transport::Transport;
use harness::protocol::udp::{Role, UdpClient};
use harness::publisher::ConnectSteps;
use netem::Time;
use netem::rng::SeedTree;
use netem::time::Clock;

#[test]
fn glass_serve_relays_rtmp_to_the_udp_protocol_and_reports_on_ctrl_c() {
    let offset = 20_000 + (std::process::id() % 20_000) as u16;
    let (mut child, mut out, listing) = common::spawn_serve("k", offset, "httpflv");
    for uri in [
        format!("rtmp://127.0.0.1:{}/live/k", 1935 + offset),
        format!("rtmpq://127.0.0.1:{}/live/k", 1935 + offset),
        format!("gudp://127.0.0.1:{}/live/k", 5000 + offset),
        format!("httpflv://127.0.0.1:{}/live/k", 8080 + offset),
    ] {
        assert!(listing.contains(&uri), "{uri} missing from:\n{listing}");
    }

    let rt = common::runtime();
    let end = Time::from_millis(3000);
    let shown = rt.block_on(async {
        let clock = Clock::new(Instant::now());
        // The settings `glass serve` uses: a scenario's defaults (no token).
        let defaults = harness::scenario::Protocol::defaults();
        let mut player = Player::new(defaults.player.clone(), Time::ZERO);
        player.set_ordered(false);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], 5000 + offset));
        let play = async {
            let c = UdpClient::connect(
                udp,
                to,
                defaults
                    .table::<harness::protocol::udp::UdpConfig>()
                    .unwrap()
                    .clone(),
                Role::Play,
                "live/k",
                clock,
            )
            .await
            .expect("the UDP player connects");
            c.play(&mut player, end)
                .await
                .expect("the UDP player plays");
        };
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", 1935 + offset))
            .await
            .expect("RTMP port open");
        let encoder = |start| {
            Source::Synthetic(Encoder::new(
                EncoderConfig::default(),
                SeedTree::new(1),
                start,
            ))
        };
        let publish = rtmp::publish(
            Transport::Tcp(tcp),
            "k",
            encoder,
            None,
            ConnectSteps::new(clock, Time::ZERO),
            end,
        );
        let (_, published) = tokio::join!(play, publish);
        let sent = published
            .expect("the RTMP publisher publishes")
            .video_frames_sent;
        let report = player.finish(end);
        (sent, report.frames_displayed)
    });
    let (sent, displayed) = shown;
    // A few frames are still in the player's buffer at the end.
    assert!(
        sent > 60 && displayed + 30 >= sent,
        "sent {sent}, shown {displayed}"
    );

    // SIGINT (Ctrl-C): it stops and prints what the stream saw.
    // SAFETY: kill with a child's pid and a valid signal.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "glass serve did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}\n{rest}");
    assert!(
        rest.contains(&format!(
            "stream live/{}: 1 publish(es) accepted, 0 refused; 1 player(s)",
            harness::redact::key("k")
        )),
        "the stream, its key redacted: {rest}"
    );
    assert!(!rest.contains("live/k:"), "the stream key in clear: {rest}");
    assert!(
        rest.contains("\"relay-egress\""),
        "the UDP side's sessions: {rest}"
    );
}
