//! RTSP ingest. Against a publisher Glass did not write: ffmpeg pushes
//! H.264 and AAC over RTSP (ANNOUNCE/RECORD, TCP-interleaved) into
//! `glass serve`, and ffprobe, another outside peer, reads the stream back
//! over RTMP: the codec parameters survive the gateway and the video's
//! timestamps advance a frame at a time (no privileges; needs ffmpeg).
//! With Glass's own RTSP publisher through the link (needs root): G2G is
//! the path, as for RTMP.

mod common;

use harness::scenario::Scenario;
use netem::adapters::can_create_namespaces;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn ffmpeg_publishes_rtsp_and_ffprobe_reads_it_back_over_rtmp() {
    let _serial = common::serial();
    if !common::have_ffmpeg() {
        return;
    }
    let offset = 20_000 + ((std::process::id() + 7_000) % 20_000) as u16;
    let (mut serve, mut out, listing) = common::spawn_serve("cam", offset, "rtsp");
    let rtsp = format!("rtsp://127.0.0.1:{}/live/cam", 554 + offset);
    let rtmp = format!("rtmp://127.0.0.1:{}/live/cam", 1935 + offset);
    assert!(listing.contains(&rtsp), "{listing}");

    // 6 s of a 320×240 test pattern at 30 fps (a key frame a second) and
    // a 48 kHz tone, in real time.
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g",
            "30",
            "-c:a",
            "aac",
            "-f",
            "rtsp",
            "-rtsp_transport",
            "tcp",
            &rtsp,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // ffprobe plays 150 packets of it over RTMP (about 2 s; by count, as
    // the relay's first data messages are at time 0 and the media at
    // wall-clock times).
    let probe = Command::new("ffprobe")
        .args(["-hide_banner", "-v", "error", "-read_intervals", "%+#150"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,sample_rate:packet=stream_index,pts_time",
        ])
        .args(["-of", "compact", &rtmp])
        .output()
        .unwrap();
    let probed = String::from_utf8_lossy(&probe.stdout).to_string();
    let published = publisher.wait().unwrap();
    let mut errors = String::new();
    publisher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    assert!(published.success(), "ffmpeg: {errors}");
    assert!(
        probed.contains("codec_name=h264|width=320|height=240"),
        "{probed}"
    );
    assert!(
        probed.contains("codec_name=aac|sample_rate=48000"),
        "{probed}"
    );
    // The video's index: the stream line naming h264, in order of the
    // streams listed.
    let streams: Vec<&str> = probed
        .lines()
        .filter(|l| l.starts_with("stream|"))
        .collect();
    let video = streams.iter().position(|l| l.contains("h264")).unwrap();
    let pts: Vec<f64> = probed
        .lines()
        .filter(|l| l.starts_with("packet|") && l.contains(&format!("stream_index={video}|")))
        .filter_map(|l| l.rsplit("pts_time=").next()?.parse().ok())
        .collect();
    assert!(pts.len() > 30, "{} video packets: {probed}", pts.len());
    for w in pts.windows(2) {
        let step = w[1] - w[0];
        assert!(
            (0.025..0.045).contains(&step),
            "a video step of {step} s in {pts:?}"
        );
    }

    // Ctrl-C: the RTSP session's statistics.
    // SAFETY: kill with a child's pid and a valid signal.
    unsafe { libc::kill(serve.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while serve.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "glass serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let at = rest.find("protocols: ").expect("the protocols' statistics") + "protocols: ".len();
    let stats: serde_json::Value =
        serde_json::from_str(rest[at..].lines().next().unwrap()).unwrap();
    let session = &stats["rtsp"][0];
    eprintln!("{session}");
    assert_eq!(session["recorded"], true);
    assert_eq!(session["ended"], "TEARDOWN");
    let video = &session["tracks"][0];
    assert_eq!(video["codec"], "h264");
    // 6 s at 30 fps; loopback loses nothing.
    let frames = video["frames"].as_u64().unwrap();
    assert!((170..=181).contains(&frames), "{frames} pictures");
    assert_eq!(video["rtp_lost"], 0);
    assert_eq!(video["wall_clock"], true);
    assert!(session["tracks"][1]["frames"].as_u64().unwrap() > 250);
}

#[test]
fn glass_publishes_rtsp_through_the_link_and_g2g_is_the_path() {
    let _serial = common::serial();
    if !can_create_namespaces() {
        return;
    }
    let s = Scenario::from_toml(
        "rtsp.toml",
        r#"
name = "rtsp"
duration = "6s"
warmup = "3s"
[media]
bitrate = "2Mbit/s"
[[networks]]
name = "first mile +20ms"
first_mile = { profile = "delay 20ms" }
[[protocols]]
kind = "rtsp"
player = { target_delay = "300ms", refresh = "1ms" }
"#,
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = common::run_link(&s);
    let rtsp = r
        .relay
        .server::<harness::protocol::rtsp::RtspServerStats>()
        .expect("RTSP's statistics");
    let steady = r.player.steady.as_ref().expect("a steady state").p50_ms;
    eprintln!(
        "Glass over RTSP: sent {} frames, shown {} of {} due; steady G2G p50 {steady:.1} ms, connect {:?} ms {:?}; ingest {:?}",
        r.publisher.video_frames_sent,
        r.player.frames_displayed,
        r.frames_expected,
        r.publisher.connect_ms,
        r.publisher.connect_steps,
        rtsp.rtsp
    );
    assert_eq!(r.transport(), "rtsp/tcp");
    assert!(
        r.frames_lost() <= 1 && r.player.frames_displayed > 100,
        "{:?}",
        r.player
    );
    // Encode 30 ms + the 300 ms buffer + the 20 ms first mile (+ < 1 ms
    // of the 1 ms refresh).
    assert!((steady - 350.5).abs() < 3.0, "steady G2G p50 {steady}");
    let video = &rtsp.rtsp[0].tracks[0];
    assert_eq!(video.rtp_lost, 0);
    assert!(
        video.frames + 2 >= r.publisher.video_frames_sent,
        "{video:?}"
    );
}
