//! Browser players Glass did not write, in headless Chromium, on the
//! relay's HTTP egress: hls.js 1.7.4 plays its Low-Latency HLS (1 s
//! segments of 200 ms parts) and mpegts.js 1.8.2 its HTTP-FLV. `glass
//! serve` takes the relay's settings from a scenario entry, ffmpeg
//! publishes real H.264 (wall-clock timestamps) over RTMP, and the page
//! logs, every second, what the player reports (hls.js: latency to the live
//! edge, target, now − `playingDate`, parts and segments loaded), frames
//! shown and dropped, `waiting` events and errors, to Chromium's stderr,
//! read here. Loopback, no impairment: whether a real client plays the
//! parts, preload hints and blocking reloads (and the FLV stream), and at
//! what latency. Needs chromium, ffmpeg, and hls.js and mpegts.js under
//! target/npm (`.ci/run` installs them).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What every page does: `report()` (the player's figures as an object) is
/// logged as a line `GLASS {json}` a second.
const REPORTER: &str = r#"
const src = new URLSearchParams(location.search).get('src');
const v = document.getElementById('v');
let waiting = 0, errors = [];
v.addEventListener('waiting', () => waiting++);
setInterval(() => {
  const q = v.getVideoPlaybackQuality();
  const buffered = v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0;
  console.log('GLASS ' + JSON.stringify(Object.assign(
    { waiting, errors, shown: q.totalVideoFrames, dropped: q.droppedVideoFrames, buffered_s: buffered },
    report())));
}, 1000);
"#;

/// hls.js with `lowLatencyMode`: parts and segments loaded, its latency to
/// the live edge, its target, and now − `playingDate` (PDT).
const HLS_JS: &str = r#"
const hls = new Hls({ lowLatencyMode: true });
let parts = 0, frags = 0;
hls.on(Hls.Events.FRAG_LOADED, (e, d) => { if (d.part) parts++; else frags++; });
hls.on(Hls.Events.ERROR, (e, d) => errors.push(d.details + (d.fatal ? ' (fatal)' : '')));
hls.loadSource(src);
hls.attachMedia(v);
v.play().catch(e => errors.push('play: ' + e));
function report() {
  const pd = hls.playingDate;
  return { latency_s: hls.latency, target_s: hls.targetLatency,
           pdt_delay_ms: pd ? Date.now() - pd.getTime() : null, parts, frags };
}
"#;

/// mpegts.js on HTTP-FLV, live, with its latency chasing (as Glass's
/// HTTP-FLV player catches up at 1.2×).
const MPEGTS_JS: &str = r#"
const player = mpegts.createPlayer({ type: 'flv', isLive: true, url: src },
  { liveBufferLatencyChasing: true, enableStashBuffer: false });
player.on(mpegts.Events.ERROR, (t, d) => errors.push(t + ': ' + d));
player.attachMediaElement(v);
player.load();
v.play().catch(e => errors.push('play: ' + e));
function report() {
  const s = player.statisticsInfo || {};
  return { decoded: s.decodedFrames, speed_kbps: s.speed };
}
"#;

/// Ports apart from every other test's and from a `glass serve` the user
/// may be running.
const PORT_OFFSET: u16 = 21_000;

/// `glass serve` with the `http` settings of an entry played on
/// `player_uri`, an ffmpeg publisher, and Chromium
/// playing `path` on the relay's HTTP port with `player_js` (the npm file
/// `library`, the page's `script`) for 20 s: the page's reports. None when
/// the test cannot run here (skipped).
fn play_in_chromium(
    player_uri: &str,
    http_table: &str,
    library: &str,
    script: &str,
    path: &str,
) -> Option<Vec<serde_json::Value>> {
    let browser = common::chromium()?;
    if !common::have_ffmpeg() {
        return None;
    }
    let library = common::npm_file(library)?;
    let dir = std::env::temp_dir().join(format!("glass-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&library, dir.join("player.js")).unwrap();
    let page = format!(
        "<!doctype html><html><body><video id=\"v\" muted autoplay playsinline></video>\n\
         <script src=\"player.js\"></script>\n<script>{REPORTER}{script}</script></body></html>"
    );
    std::fs::write(dir.join("page.html"), page).unwrap();
    let scenario = dir.join("relay.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"relay\"\nduration = \"10s\"\n[[protocols]]\nkind = \"rtmp\"\n\
             player_uri = \"{player_uri}\"\nhttp = {http_table}\n"
        ),
    )
    .unwrap();
    let rtmp = 1935 + PORT_OFFSET;
    let http = 8080 + PORT_OFFSET;
    let mut relay = Killed(
        Command::new(env!("CARGO_BIN_EXE_glass"))
            .args(["serve", "--duration", "60s", "--port-offset"])
            .arg(PORT_OFFSET.to_string())
            .arg("--scenario")
            .arg(&scenario)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(Some(status)) = relay.0.try_wait() {
        let mut why = String::new();
        let _ = std::io::Read::read_to_string(relay.0.stderr.as_mut().unwrap(), &mut why);
        panic!("glass serve ended at once ({status}): {why}");
    }
    // Real H.264 (MSE decodes it), a key frame a second, wall-clock
    // timestamps (the relay dates segments by arrival: ffmpeg's frames
    // carry no Glass capture instant).
    // Glass's own ffmpeg publisher arguments (as `publisher = "ffmpeg"`
    // runs it): real H.264 (MSE decodes it), a key frame a second,
    // wall-clock timestamps.
    let args = harness::interop::ffmpeg::publisher_args(&harness::interop::ffmpeg::PublisherArgs {
        output: harness::interop::ffmpeg::rtmp_output(&format!(
            "rtmp://127.0.0.1:{rtmp}/live/glass"
        )),
        width: 640,
        height: 360,
        fps: 30.0,
        gop: 30,
        bitrate_bps: 1_000_000,
        frames: 60 * 30,
    });
    let _publisher = Killed(
        Command::new("ffmpeg")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!(
        "file://{}?src=http://127.0.0.1:{http}{path}",
        dir.join("page.html").display()
    );
    let mut chromium = Killed(
        Command::new(browser)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // 20 s of the page's reports (the stream starts a second or two in).
    let stderr = chromium.0.stderr.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(22);
    let mut reports = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if let Some(json) = line.split("GLASS ").nth(1) {
            // Chromium quotes the message: `… "GLASS {…}", source: …`.
            let json = json.rsplit_once("\", source").map_or(json, |(j, _)| j);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
                reports.push(v);
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    drop(chromium);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!reports.is_empty(), "the page reported nothing");
    Some(reports)
}

/// Frames shown over the last 5 reports, and whether any error was fatal.
fn playing(reports: &[serde_json::Value]) -> (f64, bool) {
    let last = &reports[reports.len() - 1];
    let earlier = &reports[reports.len().saturating_sub(6)];
    let shown = last["shown"].as_f64().unwrap_or(0.0) - earlier["shown"].as_f64().unwrap_or(0.0);
    let fatal = last["errors"]
        .as_array()
        .is_some_and(|e| e.iter().any(|e| e.as_str().unwrap_or("").contains("fatal")));
    (shown, fatal)
}

#[test]
fn hls_js_plays_the_relays_ll_hls_parts_in_chromium() {
    hls_js_plays_ll_hls("ts");
}

/// The same in fMP4: hls.js reads the init segment and remuxes nothing
/// (MSE takes the fragments as they are).
#[test]
fn hls_js_plays_the_relays_ll_hls_fmp4_parts_in_chromium() {
    hls_js_plays_ll_hls("fmp4");
}

/// hls.js plays the relay's LL-HLS (1 s segments, 200 ms parts) in
/// `format` (`http.hls_format`).
fn hls_js_plays_ll_hls(format: &str) {
    let _serial = common::serial();
    let Some(reports) = play_in_chromium(
        "llhls://server/live/glass",
        &format!(r#"{{ hls_segment = "1s", hls_part = "200ms", hls_format = "{format}" }}"#),
        "hls.js/dist/hls.min.js",
        HLS_JS,
        "/live/glass/index.m3u8",
    ) else {
        return;
    };
    let last = &reports[reports.len() - 1];
    eprintln!(
        "hls.js 1.7.4 on Glass's LL-HLS ({format}; 1 s segments, 200 ms parts, loopback): {} reports, last {last}",
        reports.len()
    );
    let n = |k: &str| last[k].as_f64().unwrap_or(f64::NAN);
    // It played parts, not whole segments, about 30 frames a second.
    assert!(n("parts") >= 40.0 && n("frags") == 0.0, "{last}");
    let (shown, fatal) = playing(&reports);
    assert!(!fatal && shown >= 100.0, "{shown} frames in 5 s: {last}");
    // Its latency: PART-HOLD-BACK (600 ms) back to a segment's independent
    // part, plus the part in flight; far from plain HLS's 3 segments.
    let latency = n("latency_s");
    assert!(latency > 0.3 && latency < 2.5, "{last}");
}

#[test]
fn mpegts_js_plays_the_relays_http_flv_in_chromium() {
    let _serial = common::serial();
    let Some(reports) = play_in_chromium(
        "httpflv://server/live/glass",
        "{ gop_cache = true }",
        "mpegts.js/dist/mpegts.js",
        MPEGTS_JS,
        "/live/glass.flv",
    ) else {
        return;
    };
    let last = &reports[reports.len() - 1];
    eprintln!(
        "mpegts.js 1.8.2 on Glass's HTTP-FLV (loopback): {} reports, last {last}",
        reports.len()
    );
    let (shown, fatal) = playing(&reports);
    let errors = last["errors"].as_array().map_or(0, Vec::len);
    assert!(!fatal && errors == 0, "{last}");
    assert!(shown >= 100.0, "{shown} frames in 5 s: {last}");
    // Live: latency chasing keeps at most `liveBufferLatencyMaxLatency`
    // (1.5 s by default) buffered; it started with the relay's GOP cache.
    let buffered = last["buffered_s"].as_f64().unwrap_or(f64::NAN);
    assert!(buffered < 2.0, "{last}");
}
