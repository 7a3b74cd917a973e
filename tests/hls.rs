//! HLS egress end to end: the relay packages the stream into MPEG-TS
//! segments and a live playlist; Glass's HLS player plays it over real
//! HTTP through the link's last mile; ffmpeg (a player Glass did not
//! write) plays the same playlist through the link; ffprobe reads the
//! segments of an ffmpeg-published stream with continuous timestamps.
//! Link mode needs namespaces (root); ffmpeg tests need ffmpeg.

mod common;

use std::process::Command;
use std::time::Duration;

use harness::protocol::http::hls::player::HlsPlayerStats;
use harness::protocol::http::{HttpSection, HttpServerStats};
use harness::runner::RunResult;
use harness::scenario::Scenario;
use netem::adapters::can_create_namespaces;

fn http_of(r: &RunResult) -> &HttpServerStats {
    r.relay.server().expect("the HTTP server's statistics")
}

fn hls_of(r: &RunResult) -> &HlsPlayerStats {
    r.section::<HttpSection>()
        .and_then(|s| s.hls.as_ref())
        .expect("the HLS player's statistics")
}

#[test]
fn glass_plays_hls_segments_through_the_last_mile() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let s = Scenario::from_toml(
        "t",
        r#"
name = "hls"
duration = "10s"
seed = 1
[media]
bitrate = "2Mbit/s"
fps = 30
gop = 30
[[networks]]
name = "clean"
last_mile = { downlink = "delay 20ms", uplink = "delay 20ms" }
[[protocols]]
kind = "rtmp"
player_uri = "hls://server/live/glass"
http = { hls_segment = "1s" }
player = { target_delay = "500ms" }
"#,
        None,
    )
    .unwrap();
    let r = common::run_link(&s);
    let p = &r.player;
    let h = hls_of(&r);
    eprintln!(
        "HLS 1 s segments: {} of {} frames shown, G2G p50 {:.1} p99 {:.1} ms, startup {:?} ms, stalls {:.2} %; {h:?}; {:?}",
        p.frames_displayed,
        r.frames_expected,
        p.g2g_p50_ms,
        p.g2g_p99_ms,
        p.startup_delay_ms,
        p.stall_ratio * 100.0,
        http_of(&r)
    );
    assert!(r.frames_expected > 150);
    assert!(r.frames_lost() <= 2, "{p:?}");
    // One segment (1 s) is packaged before the first can be fetched; then
    // the playlist poll (≤ half a target duration), the download and the
    // 500 ms buffer. Far above HTTP-FLV's ~0.55 s, far below 3 segments
    // plus the buffer.
    assert!(
        p.g2g_p50_ms > 1500.0 && p.g2g_p50_ms < 3000.0,
        "G2G p50 {}",
        p.g2g_p50_ms
    );
    // At most one stall: the first playlist is answered the moment the
    // first segment exists (it waits for it), so the first frames arrive
    // fresher than later segments', which the player finds by polling
    // (reloads every segment duration, or half a target duration when the
    // playlist had not grown, RFC 8216 §6.3.4); the 500 ms buffer takes
    // most of that phase, not always all of it.
    assert!(p.stall_count <= 1, "{p:?}");
    // About a segment a second and a playlist reload per segment or two.
    let secs = 10.0;
    assert!(h.hls_segment_requests as f64 >= secs - 3.0, "{h:?}");
    assert!(h.hls_playlist_requests as f64 <= secs * 3.0, "{h:?}");
    assert_eq!(h.hls_segments_missed, 0, "{h:?}");
    assert_eq!(http_of(&r).http_hls_segments, h.hls_segment_requests);
}

/// The transcoder's ladder (2.5 / 1.2 / 0.6 Mbit/s renditions of a
/// 2.5 Mbit/s ingest) behind a 3 Mbit/s last mile: Glass's HLS player reads
/// the multivariant playlist, starts on the lowest rendition, climbs as its
/// throughput estimate allows and settles on what the link carries (the
/// middle rendition: its 1.32 Mbit/s BANDWIDTH fits 0.7 of an estimate
/// above 1.9 Mbit/s; the top's 2.75 would need 3.9), with no stall and no
/// frame lost; G2G stays measurable (renditions keep capture instants) and
/// includes the transcoding delay. It joins at 6 s, so HOLD-BACK's three
/// segments are there to start from.
#[test]
fn glass_climbs_the_rendition_ladder_to_what_the_last_mile_carries() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let s = Scenario::from_toml(
        "t",
        r#"
name = "hls-ladder"
duration = "24s"
seed = 1
[media]
bitrate = "2.5Mbit/s"
fps = 30
gop = 30
[[networks]]
name = "3 Mbit/s"
last_mile = { downlink = { delay = { base = "20ms" }, bottleneck = { rate = "3Mbit/s", queue = "500ms" } }, uplink = "delay 20ms" }
[[protocols]]
kind = "rtmp"
player_uri = "hls://server/live/glass"
http = { hls_segment = "1s", hls_transcode_delay = "300ms", hls_ladder = [{ bitrate = "2.5Mbit/s", resolution = "1280x720" }, { bitrate = "1.2Mbit/s", resolution = "960x540" }, { bitrate = "0.6Mbit/s", resolution = "640x360" }] }
player = { target_delay = "500ms", join = "6s" }
"#,
        None,
    )
    .unwrap();
    let r = common::run_link(&s);
    let (p, h) = (&r.player, hls_of(&r));
    eprintln!(
        "HLS ladder behind 3 Mbit/s: {} of {} frames shown, G2G p50 {:.1} p99 {:.1} ms, startup {:?} ms, {} stalls; {h:?}",
        p.frames_displayed,
        r.frames_expected,
        p.g2g_p50_ms,
        p.g2g_p99_ms,
        p.startup_delay_ms,
        p.stall_count,
    );
    assert_eq!(h.hls_variants, Some(3), "{h:?}");
    assert_eq!(h.hls_variant_start, Some(2), "the lowest first: {h:?}");
    assert_eq!(h.hls_variant_end, Some(1), "the middle at the end: {h:?}");
    assert!(
        (1..=4).contains(&h.hls_variant_switches),
        "climbs, no flapping: {h:?}"
    );
    // Below the link's rate (request round trips count), above what the
    // middle rendition needs.
    let est = h.hls_throughput_bps.unwrap();
    assert!(est > 1.9e6 && est < 3.0e6, "estimate {est}");
    assert!(r.frames_lost() <= 2, "{p:?}");
    assert!(p.stall_count <= 1, "{p:?}");
    // Three 1 s segments of HOLD-BACK, the 300 ms transcoding delay, the
    // download and the 500 ms buffer.
    assert!(
        p.g2g_p50_ms > 3300.0 && p.g2g_p50_ms < 5500.0,
        "G2G p50 {}",
        p.g2g_p50_ms
    );
}

#[test]
fn a_player_joining_a_running_stream_starts_hold_back_from_the_live_edge() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let s = Scenario::from_toml(
        "t",
        r#"
name = "hls-join"
duration = "14s"
seed = 1
[media]
bitrate = "2Mbit/s"
fps = 30
gop = 30
[[networks]]
name = "clean"
last_mile = { downlink = "delay 20ms", uplink = "delay 20ms" }
[[protocols]]
kind = "rtmp"
player_uri = "hls://server/live/glass"
http = { hls_segment = "1s" }
player = { target_delay = "500ms", join = "7s" }
"#,
        None,
    )
    .unwrap();
    let r = common::run_link(&s);
    let (p, h) = (&r.player, hls_of(&r));
    eprintln!(
        "HLS 1 s segments, joined at 7 s: {} of {} frames shown, G2G p50 {:.1} p99 {:.1} ms, startup {:?} ms, {} stalls; {h:?}",
        p.frames_displayed,
        r.frames_expected,
        p.g2g_p50_ms,
        p.g2g_p99_ms,
        p.startup_delay_ms,
        p.stall_count
    );
    // The playlist had ~6 segments: the player started 3 back (HOLD-BACK =
    // 3 s), so G2G is about 3 segments plus the buffer and the download,
    // and the first frame shows within a second of joining (three
    // segments are there to fetch at once).
    assert_eq!(h.hls_start_behind, Some(3), "{h:?}");
    assert!(
        p.g2g_p50_ms > 3000.0 && p.g2g_p50_ms < 4500.0,
        "G2G p50 {}",
        p.g2g_p50_ms
    );
    assert!(p.startup_delay_ms.is_some_and(|s| s < 1000.0), "{p:?}");
    assert_eq!(p.stall_count, 0, "{p:?}");
    // Frames from the first one shown on, none lost.
    assert!(r.frames_expected > 150 && r.frames_lost() <= 2, "{p:?}");
}

/// ffmpeg, playing the same HLS, decoded the segments without errors: all
/// but its start (it joins at the playlist's first segment, as Glass's
/// player does).
fn assert_ffmpeg_decoded_what_glass_received(r: &RunResult) {
    let (player, received) = (common::ffmpeg_of(r, "player"), r.player.frames_received);
    assert!(player.errors.is_empty(), "{:?}", player.errors);
    assert!(
        player.frames + 45 >= received,
        "ffmpeg decoded {} of {received}",
        player.frames
    );
}

/// A 12 s run of an ffmpeg publisher (640x360, 1 Mbit/s, a key frame a
/// second, no audio) through a last mile whose downlink is `downlink`,
/// played by Glass's player on `player_uri` and by ffmpeg, with the relay's
/// `http` table.
fn ffmpeg_hls_scenario(downlink: &str, player_uri: &str, http: &str) -> Scenario {
    let text = format!(
        r#"
name = "hls-ffmpeg"
duration = "12s"
[media]
bitrate = "1Mbit/s"
fps = 30
gop = 30
resolution = "640x360"
audio = false
encode_delay = "0ms"
[[networks]]
name = "last mile"
last_mile = {{ downlink = "{downlink}", uplink = "delay 20ms" }}
[[protocols]]
kind = "rtmp"
player_uri = "{player_uri}"
http = {http}
publisher = "ffmpeg"
ffmpeg_player = true
player = {{ target_delay = "500ms", refresh = "1ms" }}
"#
    );
    Scenario::from_toml("t", &text, None).unwrap()
}

#[test]
fn ffmpeg_plays_the_relays_hls_through_the_link() {
    let _serial = common::serial();
    if !can_create_namespaces() || !common::have_ffmpeg() {
        return;
    }
    let s = ffmpeg_hls_scenario(
        "delay 20ms loss 1%",
        "hls://server/live/glass",
        r#"{ hls_segment = "1s" }"#,
    );
    let r = common::run_link(&s);
    let p = &r.player;
    let ff = |role: &str| common::ffmpeg_of(&r, role);
    let (publisher, player) = (ff("publisher"), ff("player"));
    eprintln!(
        "ffmpeg sent {} frames; Glass's HLS player received {}, showed {}, G2G p50 {:.1} p99 {:.1} ms; ffmpeg's HLS player decoded {} ({:?}): {}; {:?}",
        publisher.frames,
        p.frames_received,
        p.frames_displayed,
        p.g2g_p50_ms,
        p.g2g_p99_ms,
        player.frames,
        player.errors,
        player.command,
        hls_of(&r)
    );
    assert!(player.command.contains("/live/"), "{}", player.command);
    assert!(player.command.contains("index.m3u8"), "{}", player.command);
    // Glass's player times ffmpeg's frames from the FLV timestamps the TS
    // timestamps carry (wall clock): G2G is the segments' delay, not days.
    assert!(p.frames_received >= 200, "{p:?}");
    assert!(
        p.g2g_p50_ms > 1000.0 && p.g2g_p50_ms < 4000.0,
        "G2G p50 {}",
        p.g2g_p50_ms
    );
    assert_ffmpeg_decoded_what_glass_received(&r);
}

/// Low-Latency HLS through the link: Glass's `llhls://` player plays 200 ms
/// parts (preload hints and blocking reloads) and ffmpeg, which ignores
/// parts, plays the same playlist's segments; both by signed URLs (the
/// relay serves nothing without a token).
#[test]
fn glass_plays_ll_hls_parts_and_ffmpeg_plays_the_same_playlists_segments() {
    let Some(r) = ll_hls_through_the_link(
        r#"{ hls_segment = "1s", hls_part = "200ms", play_secret = "sixteen+ characters" }"#,
        "ts",
    ) else {
        return;
    };
    let (h, http) = (hls_of(&r), http_of(&r));
    // Nearly every part fetched as a preload hint, each after a blocking
    // reload.
    assert!(h.hls_preload_hints >= 35, "{h:?}");
    assert!(
        h.hls_blocking_reloads >= 35 && http.http_hls_blocking >= 35,
        "{h:?}"
    );
    assert_eq!(http.http_hls_blocking_timeouts, 0, "{http:?}");
    assert_eq!(http.http_forbidden, 0, "{http:?}");
    let player = common::ffmpeg_of(&r, "player");
    assert!(player.command.contains("token=***"), "{}", player.command);
}

/// LL-HLS in fMP4 through the link: Glass's player reads the init segment
/// and each 200 ms part's `moof` + `mdat` (with `mp4-atom`), ffmpeg plays
/// the same playlist's `.m4s` segments after its EXT-X-MAP.
#[test]
fn glass_and_ffmpeg_play_fmp4_ll_hls_through_the_link() {
    ll_hls_through_the_link(
        r#"{ hls_segment = "1s", hls_part = "200ms", hls_format = "fmp4" }"#,
        "fmp4",
    );
}

/// A 12 s LL-HLS run (1 s segments, 200 ms parts; the relay's `http`
/// table) through a clean 40 ms-RTT last mile, played by Glass's
/// `llhls://` player and by ffmpeg, with the checks every container
/// shares; None when it cannot run here.
fn ll_hls_through_the_link(http: &str, container: &str) -> Option<RunResult> {
    let _serial = common::serial();
    if !can_create_namespaces() || !common::have_ffmpeg() {
        return None;
    }
    let s = ffmpeg_hls_scenario("delay 20ms", "llhls://server/live/glass", http);
    let r = common::run_link(&s);
    let (p, h) = (&r.player, hls_of(&r));
    let player = common::ffmpeg_of(&r, "player");
    eprintln!(
        "LL-HLS {container} 200 ms parts: Glass received {} frames, showed {}, G2G p50 {:.1} p99 {:.1} ms, startup {:?} ms; {h:?}; relay {:?}; ffmpeg decoded {} ({:?})",
        p.frames_received,
        p.frames_displayed,
        p.g2g_p50_ms,
        p.g2g_p99_ms,
        p.startup_delay_ms,
        http_of(&r),
        player.frames,
        player.errors,
    );
    let used = format!("llhls/{container}/tcp");
    assert!(
        r.transports
            .iter()
            .any(|t| t.role == "player" && t.used == used),
        "{:?}",
        r.transports
    );
    assert!(h.hls_low_latency, "{h:?}");
    // About 50 parts in 10 s.
    assert!(h.hls_part_requests >= 40, "{h:?}");
    assert!(h.hls_preload_hint_misses <= 2, "{h:?}");
    assert!(p.frames_received >= 200, "{p:?}");
    // PART-HOLD-BACK (600 ms) back to the segment's independent part, the
    // 500 ms buffer: well under plain HLS's 1 s segments (about 2.3 s).
    assert!(
        p.g2g_p50_ms > 500.0 && p.g2g_p50_ms < 1800.0,
        "G2G p50 {}",
        p.g2g_p50_ms
    );
    // ffmpeg (which ignores parts) played the segments without an error;
    // when it starts varies with its probing (238 to 267 of 312 frames
    // seen), so only that it played 5 s of them.
    assert!(player.errors.is_empty(), "{:?}", player.errors);
    assert!(player.frames >= 150, "ffmpeg decoded {}", player.frames);
    Some(r)
}

/// ffprobe reads an ffmpeg-published stream's HLS from `glass serve` on
/// loopback: every packet's timestamps continue across segment boundaries.
#[test]
fn ffprobe_reads_continuous_timestamps_across_ts_segments() {
    ffprobe_reads_continuous_timestamps(None);
}

/// The rendition ladder's multivariant playlist: ffprobe opens every
/// variant (each a program with its video and audio) and reads each
/// rendition's segments with continuous timestamps (ffmpeg's frames pass
/// the transcoder model at their own size, 300 ms later).
#[test]
fn ffprobe_reads_every_rendition_of_the_multivariant_playlist() {
    let streams = ffprobe_reads_continuous_timestamps(Some(
        r#"{ hls_ladder = [{ bitrate = "1Mbit/s", resolution = "320x180" }, { bitrate = "0.5Mbit/s", resolution = "320x180" }, { bitrate = "0.2Mbit/s", resolution = "320x180" }] }"#,
    ));
    assert!(streams.is_none_or(|n| n == 6), "{streams:?} streams");
}

/// The same of fMP4 segments (init segment, `moof` + `mdat` per segment,
/// the publisher's H.264 and AAC configuration in `avcC` and `esds`).
#[test]
fn ffprobe_reads_continuous_timestamps_across_fmp4_segments() {
    ffprobe_reads_continuous_timestamps(Some(r#"{ hls_format = "fmp4" }"#));
}

/// `http`: the relay's `http` table (its defaults when None). The number
/// of streams ffprobe found (None: skipped here).
fn ffprobe_reads_continuous_timestamps(http: Option<&str>) -> Option<usize> {
    if !common::have_ffmpeg() {
        return None;
    }
    // Tests of one binary run at once: a port range each.
    let offset = 21_000
        + (std::process::id() % 20_000) as u16
        + http.map_or(0, |h| 7 * (1 + h.len() as u16 % 5));
    let scenario = std::env::temp_dir().join(format!(
        "glass-hls-serve-{}-{offset}.toml",
        std::process::id()
    ));
    let args: Vec<String> = match http {
        None => Vec::new(),
        Some(table) => {
            let text = format!(
                "name = \"serve\"\nduration = \"10s\"\n[[protocols]]\nname = \"hls\"\n\
                 kind = \"rtmp\"\nplayer_uri = \"hls://server/live/glass\"\n\
                 http = {table}\n"
            );
            std::fs::write(&scenario, text).unwrap();
            vec!["--scenario".into(), scenario.display().to_string()]
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut serve, _out, _) = common::spawn_serve_with("k", offset, "hls", &args);
    let rtmp = format!("rtmp://127.0.0.1:{}/live/k", 1935 + offset);
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x180:rate=30", "-f", "lavfi"])
        .args(["-i", "sine=frequency=440:sample_rate=48000", "-t", "12"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", "30", "-c:a", "aac", "-b:a", "64k", "-f", "flv", &rtmp])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    let playlist = format!("http://127.0.0.1:{}/live/k/index.m3u8", 8080 + offset);
    // 4 s of each rendition (ffmpeg opens every variant).
    let renditions = http.map_or(1, |h| h.matches("bitrate").count().max(1));
    let out = ffprobe_packets(&playlist, 320 * renditions);
    let _ = publisher.kill();
    let _ = publisher.wait();
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = std::fs::remove_file(&scenario);
    let counts = continuous_packets(&out);
    eprintln!("ffprobe read packets, per stream: {counts:?} ({http:?})");
    Some(counts.len())
}

/// ffprobe's first `packets` packets (stream, DTS) of `url` (about 4 s
/// of video and audio per 320).
fn ffprobe_packets(url: &str, packets: usize) -> std::process::Output {
    Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,dts_time",
        ])
        .args(["-of", "csv=p=0", "-read_intervals"])
        .arg(format!("%+#{packets}"))
        .arg(url)
        .output()
        .unwrap()
}

/// [`ffprobe_packets`]' packets per stream, checked: no error, each
/// stream's timestamps rising by less than 0.1 s, at least 90 in each.
fn continuous_packets(out: &std::process::Output) -> std::collections::BTreeMap<usize, usize> {
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(errors.trim().is_empty(), "ffprobe: {errors}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut times = std::collections::BTreeMap::<usize, Vec<f64>>::new();
    for line in text.lines() {
        let mut f = line.split(',');
        let (Some(Ok(i)), Some(Ok(t))) = (
            f.next().map(str::parse::<usize>),
            f.next().map(str::parse::<f64>),
        ) else {
            continue;
        };
        times.entry(i).or_default().push(t);
    }
    // A handful of packets at one instant: RTMP's script messages, which
    // ffmpeg reads as data streams; the media streams are the rest.
    times.retain(|_, t| t.len() >= 10);
    for (i, t) in &times {
        for w in t.windows(2) {
            // Video every 33 ms, audio every 21 ms: no jump back, no hole
            // at a segment boundary.
            assert!(
                w[1] > w[0] && w[1] - w[0] < 0.1,
                "stream {i}: {} then {}\n{text}",
                w[0],
                w[1]
            );
        }
    }
    let counts: std::collections::BTreeMap<usize, usize> =
        times.iter().map(|(i, t)| (*i, t.len())).collect();
    // Video 30 and audio 47 packets a second, in every stream.
    assert!(
        counts.len() >= 2 && counts.values().all(|&n| n >= 90),
        "{counts:?}\n{text}"
    );
    counts
}

/// HLS ingest: ffmpeg pushes 1 s H.264 + AAC segments to `glass serve` by
/// HTTP PUT (`-f hls -method PUT`), the relay publishes each into its hub,
/// and ffprobe, playing the relay's RTMP, reads continuous timestamps.
#[test]
fn ffmpeg_pushes_hls_by_put_and_ffprobe_plays_it_over_rtmp() {
    if !common::have_ffmpeg() {
        return;
    }
    let offset = 22_000 + (std::process::id() % 20_000) as u16;
    let (mut serve, _out, _) = common::spawn_serve("k", offset, "hls");
    let put = format!("http://127.0.0.1:{}/live/k/index.m3u8", 8080 + offset);
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x180:rate=30", "-f", "lavfi"])
        .args(["-i", "sine=frequency=440:sample_rate=48000", "-t", "14"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune"])
        .args(["zerolatency", "-g", "30", "-c:a", "aac", "-b:a", "64k"])
        .args(["-f", "hls", "-hls_time", "1", "-hls_list_size", "4"])
        .args(["-method", "PUT", &put])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let rtmp = format!("rtmp://127.0.0.1:{}/live/k", 1935 + offset);
    // 8 s: enough segments that a lost one would show as a hole.
    let out = ffprobe_packets(&rtmp, 640);
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = publisher.kill();
    let published = publisher.wait_with_output().unwrap();
    let counts = continuous_packets(&out);
    eprintln!(
        "HLS ingest: ffprobe read from RTMP, per stream: {counts:?}; ffmpeg's HLS muxer said: {}",
        String::from_utf8_lossy(&published.stderr).trim()
    );
    assert_eq!(counts.len(), 2, "video and audio");
}

/// Python's `m3u8` 6.0 (a parser Glass did not write) reads every kind of
/// playlist the packager writes (plain HLS; LL-HLS with parts, preload hint
/// and server control; signed URIs) and finds what Glass's own player
/// parser finds: the same segments, parts, hint and hold-back.
#[test]
fn python_m3u8_reads_every_playlist_kind() {
    use std::time::SystemTime;

    use bytes::Bytes;
    use harness::media::source::sequence_header;
    use harness::protocol::http::hls::packager::{Packager, PackagerConfig, SegmentFormat};
    use harness::protocol::http::hls::player::parse_playlist;
    use harness::relay::Media;

    if !common::have_python_m3u8() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("glass-m3u8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kinds: [(&str, Option<Duration>, Option<&str>, SegmentFormat); 4] = [
        ("hls", None, None, SegmentFormat::Ts),
        (
            "llhls",
            Some(Duration::from_millis(200)),
            None,
            SegmentFormat::Ts,
        ),
        (
            "llhls-signed",
            Some(Duration::from_millis(500)),
            Some("token=1796400000-ab"),
            SegmentFormat::Ts,
        ),
        (
            "llhls-fmp4",
            Some(Duration::from_millis(200)),
            Some("token=1796400000-ab"),
            SegmentFormat::Fmp4,
        ),
    ];
    const SCRIPT: &str = r#"
import json, sys, m3u8
p = m3u8.loads(open(sys.argv[1]).read())
print(json.dumps({
    "target": p.target_duration,
    "sequence": p.media_sequence,
    "segments": [s.uri for s in p.segments if s.uri],
    "dated": sum(1 for s in p.segments if s.program_date_time),
    "parts": [[x.uri, x.duration, x.independent == "YES"] for s in p.segments for x in s.parts],
    "hint": [p.preload_hint.hint_type, p.preload_hint.uri] if p.preload_hint else None,
    "block": p.server_control.can_block_reload if p.server_control else None,
    "hold_back": p.server_control.part_hold_back if p.server_control else None,
    "part_target": p.part_inf.part_target if p.part_inf else None,
    "map": [m.uri for m in p.segment_map],
}))
"#;
    for (name, part, query, format) in kinds {
        let mut p = Packager::new(PackagerConfig {
            target: Duration::from_secs(2),
            window: 5,
            part,
            format,
        });
        let t0 = SystemTime::now();
        p.push(&Media::Video(sequence_header(), 0), t0);
        for i in 0..400u32 {
            let ms = (f64::from(i) * 1000.0 / 30.0).round() as u32;
            let t = if i % 60 == 0 { 0x17 } else { 0x27 };
            let body = Bytes::from(vec![t, 0x01, 0, 0, 0, 0, 0, 0, 3, 12, 0, 0]);
            p.push(
                &Media::Video(body, ms),
                t0 + Duration::from_millis(ms.into()),
            );
        }
        let text = p.playlist(query).unwrap();
        let file = dir.join(format!("{name}.m3u8"));
        std::fs::write(&file, &text).unwrap();
        let out = Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ours = parse_playlist(&text).unwrap();
        eprintln!("{name}: Python m3u8 read {py}");
        assert_eq!(py["target"], 2, "{name}");
        assert_eq!(py["sequence"], ours.segments[0].0, "{name}");
        let uris: Vec<&str> = ours.segments.iter().map(|s| s.2.as_str()).collect();
        assert_eq!(py["segments"], serde_json::json!(uris), "{name}");
        // Every segment has its EXT-X-PROGRAM-DATE-TIME.
        assert!(py["dated"].as_u64() >= Some(uris.len() as u64), "{name}");
        let parts: Vec<serde_json::Value> = ours
            .parts
            .iter()
            .map(|x| serde_json::json!([x.uri, x.duration.as_secs_f64(), x.independent]))
            .collect();
        assert_eq!(py["parts"], serde_json::json!(parts), "{name}");
        if let Some(q) = query {
            assert!(
                uris.iter()
                    .all(|u| u.ends_with(&format!(".{}?{q}", format.extension()))),
                "{text}"
            );
        }
        match part {
            None => {
                assert!(
                    py["hint"].is_null() && py["block"].is_null() && py["part_target"].is_null()
                );
                assert!(ours.parts.is_empty());
            }
            Some(part) => {
                assert!(!ours.parts.is_empty(), "{text}");
                let hint = ours.preload_hint.as_ref().map(|h| h.0.as_str());
                assert_eq!(py["hint"], serde_json::json!(["PART", hint]), "{name}");
                assert_eq!(py["block"], "YES");
                assert_eq!(py["part_target"].as_f64(), Some(part.as_secs_f64()));
                assert_eq!(
                    py["hold_back"].as_f64(),
                    ours.part_hold_back.map(|d| d.as_secs_f64())
                );
            }
        }
        // fMP4: EXT-X-MAP names the init segment, as Glass's parser reads it.
        let map: Vec<&str> = ours.map.iter().map(String::as_str).collect();
        assert_eq!(py["map"], serde_json::json!(map), "{name}");
        assert_eq!(
            map.len(),
            usize::from(format == SegmentFormat::Fmp4),
            "{text}"
        );
    }
    // The rendition ladder's multivariant playlist: the same variants.
    use harness::protocol::http::hls::{abr, ladder};
    let rungs: Vec<ladder::Rendition> = [("2.5Mbit/s", "1280x720"), ("0.6Mbit/s", "640x360")]
        .iter()
        .map(|(b, r)| ladder::Rendition {
            bitrate: b.parse().unwrap(),
            resolution: r.to_string(),
        })
        .collect();
    let text = ladder::multivariant(&rungs, Some("token=1796400000-ab"));
    let file = dir.join("multivariant.m3u8");
    std::fs::write(&file, &text).unwrap();
    const VARIANTS: &str = r#"
import json, sys, m3u8
p = m3u8.loads(open(sys.argv[1]).read())
print(json.dumps({"variant": p.is_variant, "streams": [
    [s.uri, s.stream_info.bandwidth, list(s.stream_info.resolution)] for s in p.playlists]}))
"#;
    let out = Command::new("python3")
        .args(["-c", VARIANTS])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("multivariant: Python m3u8 read {py}");
    let ours: Vec<serde_json::Value> = abr::parse_multivariant(&text)
        .unwrap()
        .iter()
        .zip([[1280, 720], [640, 360]])
        .map(|(v, r)| serde_json::json!([v.uri, v.bandwidth, r]))
        .collect();
    assert_eq!(py["variant"], true);
    assert_eq!(py["streams"], serde_json::json!(ours), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
