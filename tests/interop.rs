//! End-to-end with real-world peers and sources: ffmpeg publishing to and
//! playing from Glass's relay through the link, Glass replaying an H.264
//! recording, and proxy mode (no namespaces) refusing TCP loss.
//!
//! ffmpeg tests need ffmpeg (`.ci/run` installs it): outside CI a missing
//! ffmpeg skips them with a message; in CI it fails them.

mod common;

use std::path::Path;
use std::process::Command;

use harness::runner::{G2gSource, RunResult};
use harness::scenario::Scenario;
use netem::adapters::can_create_namespaces;

fn run(s: &Scenario) -> RunResult {
    common::run_link(s)
}

fn scenarios_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"))
}

#[test]
fn ffmpeg_publishes_through_the_link_and_glass_and_ffmpeg_play() {
    let _serial = common::serial();
    if !can_create_namespaces() || !common::have_ffmpeg() {
        return;
    }
    let s = Scenario::from_toml(
        "t",
        r#"
name = "ffmpeg"
duration = "6s"
[media]
bitrate = "1Mbit/s"
fps = 30
gop = 60
resolution = "640x360"
audio = false
encode_delay = "0ms"
[[protocols]]
kind = "rtmp"
publisher = "ffmpeg"
ffmpeg_player = true
player = { target_delay = "500ms", refresh = "1ms" }
"#,
        None,
    )
    .unwrap();
    let r = run(&s);
    let p = &r.player;
    let ff = |role: &str| common::ffmpeg_of(&r, role);
    let (publisher, player) = (ff("publisher"), ff("player"));
    eprintln!(
        "ffmpeg sent {} frames; Glass received {}, showed {} (expected {}), G2G p50 {} p99 {} ms, startup {:?} ms; ffmpeg player decoded {} ({:?})",
        publisher.frames,
        p.frames_received,
        p.frames_displayed,
        r.frames_expected,
        p.g2g_p50_ms,
        p.g2g_p99_ms,
        p.startup_delay_ms,
        player.frames,
        player.errors
    );
    assert_eq!(r.g2g_source, G2gSource::RtmpTimestamp);
    assert!(publisher.frames > 60, "{publisher:?}");
    assert!(p.frames_received >= 60 && r.frames_lost() <= 2, "{p:?}");
    // Wall-clock timestamps: encoding (a few ms at 640x360) + the 500 ms
    // buffer + at most a 1 ms refresh. A wrong clock mapping would be off by
    // seconds, a lost timestamp bit by days.
    assert!(p.g2g_p50_ms > 500.0 && p.g2g_p50_ms < 520.0, "{p:?}");
    // ffmpeg decoded what Glass's player received (it joined at the start,
    // or got the GOP from the relay's cache).
    assert!(
        player.frames + 5 >= p.frames_received,
        "ffmpeg player decoded {} of {}: {:?}",
        player.frames,
        p.frames_received,
        player.errors
    );
    assert!(r.relay.hub.publishes_accepted == 1 && r.relay.hub.players == 2);
}

#[test]
fn glass_replays_an_flv_recording_and_ffmpeg_decodes_it() {
    let _serial = common::serial();
    if !can_create_namespaces() || !common::have_ffmpeg() {
        return;
    }
    let text = r#"
name = "replay"
duration = "8s"
[media]
bitrate = "800kbit/s"
fps = 30
gop = 60
resolution = "640x360"
audio = true
encode_delay = "0ms"
flv = "media/testsrc-640x360.flv"
[[networks]]
name = "first mile +50ms"
first_mile = { uplink = "delay 50ms" }
[[protocols]]
kind = "rtmp"
ffmpeg_player = true
player = { target_delay = "500ms", refresh = "1ms" }
"#;
    let s = Scenario::from_toml("t", text, Some(scenarios_dir())).unwrap();
    let r = run(&s);
    let p = &r.player;
    let player = r.ffmpeg[0].clone();
    eprintln!(
        "replayed {} video / {} audio; Glass received {} video / {} audio, showed {} of {}, undecodable {}; G2G p50 {} p99 {} ms; ffmpeg decoded {}",
        r.publisher.video_frames_sent,
        r.publisher.audio_frames_sent,
        p.frames_received,
        p.audio_frames_received,
        p.frames_displayed,
        r.frames_expected,
        p.dropped_undecodable,
        p.g2g_p50_ms,
        p.g2g_p99_ms,
        player.frames
    );
    // The 6 s file loops: more frames than it holds (180) went out.
    assert!(r.publisher.video_frames_sent > 200, "{:?}", r.publisher);
    assert!(p.audio_frames_received > 200);
    assert_eq!(p.dropped_undecodable, 0, "the first key frame arrived");
    assert!(r.frames_lost() <= 1, "{p:?}");
    // The recording's frames are due at their file timestamps: the 50 ms
    // first mile + the 500 ms buffer + at most a 1 ms refresh and ~1 ms of
    // timestamp rounding and TCP.
    assert!(p.g2g_p50_ms > 550.0 && p.g2g_p50_ms < 554.0, "{p:?}");
    assert!(player.frames + 5 >= p.frames_received, "{player:?}");
}

#[test]
fn proxy_mode_runs_unprivileged_and_refuses_loss_for_tcp() {
    let _serial = common::serial();
    let dir = std::env::temp_dir().join(format!("glass-proxy-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        r#"
name = "proxy"
duration = "4s"
[[networks]]
name = "clean"
[[networks]]
name = "delay"
first_mile = { uplink = "delay 50ms" }
[[networks]]
name = "lossy"
first_mile = { uplink = "delay 20ms loss 2%" }
[[protocols]]
kind = "rtmp"
player = { refresh = "1ms" }
"#,
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", file.to_str().unwrap(), "--mode", "proxy", "--output"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success());
    assert!(stderr.contains("loss cannot be represented on a TCP stream"));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap())
            .unwrap();
    let runs = results["runs"].as_array().unwrap();
    let p50 = |i: usize| runs[i]["result"]["player"]["g2g_p50_ms"].as_f64().unwrap();
    assert_eq!(runs[0]["result"]["mode"], "proxy");
    assert!(runs[0]["result"]["link"].is_null());
    assert!(
        runs[0]["result"]["proxy"]["first_mile"]["bytes_up"]
            .as_u64()
            .unwrap()
            > 100_000
    );
    // The proxy delays the stream by exactly its 50 ms.
    let rise = p50(1) - p50(0);
    assert!((rise - 50.0).abs() <= 2.0, "rise {rise}");
    assert_eq!(runs[2]["status"], "failed");
    assert!(
        runs[2]["error"]
            .as_str()
            .unwrap()
            .contains("proxy mode, first mile uplink")
    );
    std::fs::remove_dir_all(&dir).ok();
}
