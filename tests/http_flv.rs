//! HTTP-FLV egress end to end: Glass's RTMP publisher → relay → Glass's
//! HTTP-FLV player over a real HTTP connection through the link's last
//! mile, next to an RTMP player on the same scenario; and ffmpeg (a player
//! Glass did not write) playing the relay's HTTP-FLV through the link.
//! Link mode needs namespaces (root); the tests skip without them.

mod common;

use harness::protocol::http::HttpServerStats;
use harness::runner::RunResult;
use harness::scenario::Scenario;
use netem::adapters::can_create_namespaces;
use netem::adapters::link::LinkDir;

fn scenario(networks: &str, protocols: &str, media: &str) -> Scenario {
    Scenario::from_toml(
        "t",
        &format!(
            "name = \"httpflv\"\nduration = \"6s\"\nseed = 1\n[media]\n{media}\n{networks}\n{protocols}"
        ),
        None,
    )
    .unwrap()
}

fn http_of(r: &RunResult) -> &HttpServerStats {
    r.relay.server().expect("the HTTP server's statistics")
}

const GLASS_MEDIA: &str = "bitrate = \"2Mbit/s\"\nfps = 30\ngop = 60";

#[test]
fn glass_plays_http_flv_through_the_last_mile_as_rtmp_does() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let networks = "[[networks]]\nname = \"clean\"\nlast_mile = { downlink = \"delay 20ms\", uplink = \"delay 20ms\" }";
    let play = |player_uri: &str| {
        format!(
            "[[protocols]]\nkind = \"rtmp\"\nplayer_uri = \"{player_uri}\"\nplayer = {{ target_delay = \"500ms\" }}"
        )
    };
    let flv = common::run_link(&scenario(
        networks,
        &play("httpflv://server/live/glass"),
        GLASS_MEDIA,
    ));
    let rtmp = common::run_link(&scenario(
        networks,
        &play("rtmp://server/live/glass"),
        GLASS_MEDIA,
    ));
    let (f, r) = (&flv.player, &rtmp.player);
    eprintln!(
        "HTTP-FLV: {} of {} frames shown, G2G p50 {:.1} p99 {:.1} ms, startup {:?} ms; RTMP: {} shown, G2G p50 {:.1} p99 {:.1} ms; {:?}",
        f.frames_displayed,
        flv.frames_expected,
        f.g2g_p50_ms,
        f.g2g_p99_ms,
        f.startup_delay_ms,
        r.frames_displayed,
        r.g2g_p50_ms,
        r.g2g_p99_ms,
        http_of(&flv)
    );
    assert!(flv.frames_expected > 100);
    assert!(flv.frames_lost() <= 2, "{f:?}");
    // The same path and buffer: the same glass-to-glass, within a few ms
    // (both are TCP from the same relay; HTTP-FLV's framing adds 15 bytes
    // a frame and its chunked encoding a few more).
    assert!(
        (f.g2g_p50_ms - r.g2g_p50_ms).abs() < 5.0,
        "HTTP-FLV {} vs RTMP {}",
        f.g2g_p50_ms,
        r.g2g_p50_ms
    );
    assert!(f.g2g_p50_ms > 520.0 && f.g2g_p50_ms < 620.0, "{f:?}");
    let h = http_of(&flv);
    assert_eq!((h.http_flv_sessions, h.http_not_found), (1, 0), "{h:?}");
    let player = flv.transports.iter().find(|t| t.role == "player").unwrap();
    assert_eq!(player.used, "http-flv/tcp", "{:?}", flv.transports);
}

#[test]
fn http_flv_retransmits_what_the_last_mile_dropped() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let r = common::run_link(&scenario(
        "[[networks]]\nname = \"2% loss\"\nlast_mile = { downlink = \"delay 20ms loss 2%\", uplink = \"delay 20ms\" }",
        "[[protocols]]\nkind = \"rtmp\"\nplayer_uri = \"httpflv://server/live/glass\"\nplayer = { target_delay = \"1s\" }",
        "bitrate = \"1Mbit/s\"\nfps = 30\ngop = 60",
    ));
    let down = r
        .link
        .as_ref()
        .expect("a link-mode run")
        .counters(LinkDir::LastMileDown);
    let h = http_of(&r);
    let retrans: u64 = h
        .http_to_players_tcp
        .iter()
        .map(|t| u64::from(t.total_retrans))
        .sum();
    eprintln!(
        "last mile: {} pushed, {} dropped; relay's TCP to the player: {retrans} retransmits; run's retrans {}",
        down.pushed,
        down.dropped_loss,
        r.retransmits()
    );
    assert_eq!(h.http_to_players_tcp.len(), 1, "{h:?}");
    assert!(down.dropped_loss > 10, "{down:?}");
    // Every drop is retransmitted (a few at the very end may not be yet);
    // spurious retransmissions add a few.
    let drops = down.dropped_loss as f64;
    assert!(
        retrans as f64 >= drops * 0.9 - 3.0 && retrans as f64 <= drops * 1.25 + 3.0,
        "{retrans} retransmits vs {drops} drops"
    );
    // The run's retransmissions are the publisher's (none: a clean first
    // mile) plus these.
    assert_eq!(r.retransmits(), retrans);
}

#[test]
fn ffmpeg_plays_the_relays_http_flv_through_the_link() {
    let _serial = common::serial();
    if !can_create_namespaces() || !common::have_ffmpeg() {
        return;
    }
    // 10 s: a stock ffmpeg probes a video-only FLV over HTTP for its whole
    // analyzeduration (5 s) before it outputs a frame (its FLV demuxer only
    // ends the probe early once it has seen two audio/video streams).
    let s = Scenario::from_toml(
        "t",
        r#"
name = "httpflv-ffmpeg"
duration = "10s"
[media]
bitrate = "1Mbit/s"
fps = 30
gop = 60
resolution = "640x360"
audio = false
encode_delay = "0ms"
[[networks]]
name = "lossy"
last_mile = { downlink = "delay 20ms loss 1%", uplink = "delay 20ms" }
[[protocols]]
kind = "rtmp"
player_uri = "httpflv://server/live/glass"
publisher = "ffmpeg"
ffmpeg_player = true
player = { target_delay = "500ms", refresh = "1ms" }
"#,
        None,
    )
    .unwrap();
    let r = common::run_link(&s);
    let p = &r.player;
    let ff = |role: &str| common::ffmpeg_of(&r, role);
    let (publisher, player) = (ff("publisher"), ff("player"));
    eprintln!(
        "ffmpeg sent {} frames; Glass's HTTP-FLV player received {}, showed {}, G2G p50 {:.1} p99 {:.1} ms; ffmpeg's HTTP-FLV player decoded {} ({:?}): {}",
        publisher.frames,
        p.frames_received,
        p.frames_displayed,
        p.g2g_p50_ms,
        p.g2g_p99_ms,
        player.frames,
        player.errors,
        player.command
    );
    assert!(player.command.contains("-i http://"), "{}", player.command);
    assert!(p.frames_received >= 150, "{p:?}");
    // ffmpeg decoded what Glass's player received, with no decoder errors.
    assert!(
        player.frames + 5 >= p.frames_received && player.errors.is_empty(),
        "ffmpeg decoded {} of {}: {:?}",
        player.frames,
        p.frames_received,
        player.errors
    );
    assert_eq!(http_of(&r).http_flv_sessions, 2);
}
