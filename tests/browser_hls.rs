//! hls.js 1.7.4 (a player Glass did not write) in headless Chromium plays
//! the relay's Low-Latency HLS: `glass serve` with 1 s segments of 200 ms
//! parts, an ffmpeg publisher (real H.264, wall-clock timestamps) over
//! RTMP, and a page running hls.js with `lowLatencyMode` that logs, every
//! second, its latency to the live edge, its target latency, the PDT-based
//! delay (now − `playingDate`), the parts and whole segments it loaded,
//! `waiting` events and errors (to Chromium's stderr, read here). Loopback,
//! no impairment: whether a real LL-HLS client plays the parts, preload
//! hints and blocking reloads, and at what latency. Needs chromium, ffmpeg
//! and hls.js under target/npm (`.ci/run` installs them).

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

/// The page: hls.js on `?src=`, a line `GLASS {json}` a second.
const PAGE: &str = r#"<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="hls.min.js"></script>
<script>
const src = new URLSearchParams(location.search).get('src');
const v = document.getElementById('v');
const hls = new Hls({ lowLatencyMode: true });
let waiting = 0, parts = 0, frags = 0, errors = [];
v.addEventListener('waiting', () => waiting++);
hls.on(Hls.Events.FRAG_LOADED, (e, d) => { if (d.part) parts++; else frags++; });
hls.on(Hls.Events.ERROR, (e, d) => errors.push(d.details + (d.fatal ? ' (fatal)' : '')));
hls.loadSource(src);
hls.attachMedia(v);
v.play().catch(e => errors.push('play: ' + e));
setInterval(() => {
  const pd = hls.playingDate;
  const q = v.getVideoPlaybackQuality();
  console.log('GLASS ' + JSON.stringify({
    latency_s: hls.latency, target_s: hls.targetLatency,
    pdt_delay_ms: pd ? Date.now() - pd.getTime() : null,
    waiting, parts, frags, errors, shown: q.totalVideoFrames, dropped: q.droppedVideoFrames }));
}, 1000);
</script></body></html>"#;

/// Ports apart from every other test's and from a `glass serve` the user
/// may be running.
const PORT_OFFSET: u16 = 21_000;

#[test]
fn hls_js_plays_the_relays_ll_hls_parts_in_chromium() {
    let _serial = common::serial();
    let Some(browser) = common::chromium() else {
        return;
    };
    if !common::have_ffmpeg() {
        return;
    }
    let Some(hls_js) = common::npm_file("hls.js/dist/hls.min.js") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("glass-hlsjs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&hls_js, dir.join("hls.min.js")).unwrap();
    std::fs::write(dir.join("page.html"), PAGE).unwrap();
    let scenario = dir.join("relay.toml");
    std::fs::write(
        &scenario,
        "name = \"relay\"\nduration = \"10s\"\n[[protocols]]\nkind = \"rtmp\"\n\
         player_uri = \"llhls://server/live/glass\"\n\
         http = { hls_segment = \"1s\", hls_part = \"200ms\" }\n",
    )
    .unwrap();
    let rtmp = 1935 + PORT_OFFSET;
    let http = 8080 + PORT_OFFSET;
    let _relay = Killed(
        Command::new(env!("CARGO_BIN_EXE_glass"))
            .args(["serve", "--duration", "60s", "--port-offset"])
            .arg(PORT_OFFSET.to_string())
            .arg("--scenario")
            .arg(&scenario)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    // Real H.264 (MSE decodes it), a key frame a second, wall-clock
    // timestamps (the relay dates segments by arrival: ffmpeg's frames
    // carry no Glass capture instant).
    let _publisher = Killed(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=30,realtime,settb=1/1000,setpts=RTCTIME/1000",
                "-enc_time_base:v",
                "1:1000",
                "-copyts",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-g",
                "30",
                "-pix_fmt",
                "yuv420p",
                "-b:v",
                "1M",
                // No -t: with -copyts it counts from timestamp 0 and the
                // wall-clock timestamps are past it (the guard stops it).
                "-f",
                "flv",
            ])
            .arg(format!("rtmp://127.0.0.1:{rtmp}/live/glass"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!(
        "file://{}?src=http://127.0.0.1:{http}/live/glass/index.m3u8",
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
    let last = reports.last().expect("the page's reports");
    eprintln!(
        "hls.js 1.7.4 on Glass's LL-HLS (1 s segments, 200 ms parts, loopback): {} reports, last {last}",
        reports.len()
    );
    let n = |k: &str| last[k].as_f64().unwrap_or(f64::NAN);
    // It played parts, not whole segments, without a fatal error.
    assert!(n("parts") >= 40.0 && n("frags") == 0.0, "{last}");
    let errors = last["errors"].as_array().unwrap();
    assert!(
        !errors
            .iter()
            .any(|e| e.as_str().unwrap_or("").contains("fatal")),
        "{last}"
    );
    // Playing: about 30 frames a second over the last 5 reports.
    let earlier = &reports[reports.len().saturating_sub(6)];
    let shown = n("shown") - earlier["shown"].as_f64().unwrap_or(0.0);
    assert!(shown >= 100.0, "{shown} frames in 5 s: {last}");
    // Its latency: PART-HOLD-BACK (600 ms) back to a segment's independent
    // part, plus the part in flight; far from plain HLS's 3 segments.
    let latency = n("latency_s");
    assert!(latency > 0.3 && latency < 2.5, "{last}");
}
