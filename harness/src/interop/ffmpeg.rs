//! ffmpeg as a real-world peer of Glass's relay: a publisher (test pattern
//! encoded with libx264, pushed over RTMP) and a player (pulls the stream
//! and decodes it). The player needs real H.264 (ffmpeg's own stream or a
//! replayed FLV file): Glass's synthetic frames have no pictures, so ffmpeg
//! cannot even find their dimensions.
//!
//! The publisher stamps every frame with the wall clock at which its source
//! released it (`realtime` paces the test pattern, then
//! `setpts=RTCTIME/1000` in a 1/1000 time base, kept through the encoder by
//! `-enc_time_base 1:1000` and to the wire by `-copyts`), so Glass's player
//! measures glass-to-glass latency, encoding included, from the RTMP
//! timestamps ([`crate::media::wallclock`]). Measured alternatives, and why
//! not: `-use_wallclock_as_timestamps 1` stamps at demux time in the
//! stream's 1/fps time base (the capture instant rounded to a 33 ms grid);
//! `-re` compares timestamps with time since start, so it never releases a
//! wall-clock-stamped frame. `-fflags nobuffer` keeps the input probe from
//! holding the first ~40 frames (1.35 s) back.
//!
//! Each ffmpeg runs in its host's namespace, dies with Glass (PDEATHSIG),
//! and is stopped with SIGINT (so it flushes and reports) then SIGKILL.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// What the publisher encodes.
#[derive(Clone, Debug)]
pub struct PublisherArgs {
    /// The output: its format options and URL (`-f flv rtmp://…`, from
    /// the protocol's [`crate::protocol::Protocol::ffmpeg_output`]).
    pub output: Vec<String>,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub gop: u32,
    pub bitrate_bps: u64,
    pub frames: u64,
}

/// Every ffmpeg Glass runs: quiet except errors, no stdin, progress as
/// key=value lines on stdout (frames, bytes) for the report.
const COMMON: [&str; 7] = [
    "-hide_banner",
    "-nostdin",
    "-loglevel",
    "error",
    "-nostats",
    "-progress",
    "pipe:1",
];

/// `rtmp://HOST:PORT/APP/KEY`.
pub fn rtmp_url(addr: SocketAddr, app: &str, key: &str) -> String {
    format!("rtmp://{addr}/{app}/{key}")
}

/// ffmpeg's output arguments for RTMP over TCP to `url`.
pub fn rtmp_output(url: &str) -> Vec<String> {
    [
        // FLV's millisecond clock.
        "-enc_time_base:v",
        "1:1000",
        // Like Glass's publisher (and OBS): no Nagle. ffmpeg's default
        // (Nagle on) holds a frame's last segment for an ACK: +25 ms median
        // at 100 ms RTT, measured.
        "-tcp_nodelay",
        "1",
        "-f",
        "flv",
        url,
    ]
    .map(str::to_string)
    .to_vec()
}

/// ffmpeg's output arguments for RTSP (ANNOUNCE/RECORD) to `url` over
/// `transport` ("tcp": interleaved, "udp": RTP/RTCP datagrams).
///
/// `-start_time_realtime 1` pins the RTP muxer's NTP origin at the Unix
/// epoch: its sender reports then map RTP time to wall-clock time the way
/// its packets carry it (their timestamps are the capture instants in
/// wall-clock ms, `-copyts`), so the relay reads each frame's capture
/// instant exactly. Left to itself the muxer ties media time 0 to the
/// moment its header was written, after the RTSP set-up: +65 to +150 ms
/// of set-up time read as latency, measured.
///
/// `-fps_mode passthrough`: RTSP is a constant-frame-rate muxer to ffmpeg,
/// which then fills a millisecond time base with duplicated frames (1 ms
/// of RTP time a frame, measured); and the encoder's default time base
/// (1/fps) rounds each capture instant to the frame grid (up to a frame
/// of error, measured +8 to +24 ms).
pub fn rtsp_output(url: &str, transport: &str) -> Vec<String> {
    [
        "-fps_mode",
        "passthrough",
        "-enc_time_base:v",
        "1:1000",
        "-start_time_realtime",
        "1",
        "-f",
        "rtsp",
        "-rtsp_transport",
        transport,
        url,
    ]
    .map(str::to_string)
    .to_vec()
}

/// Arguments for ffmpeg publishing a paced, wall-clock-stamped test pattern
/// (video only) with low-latency x264 settings (no B-frames, no lookahead).
pub fn publisher_args(a: &PublisherArgs) -> Vec<String> {
    let kbps = (a.bitrate_bps / 1000).max(1);
    COMMON
        .iter()
        .copied()
        .chain([
            "-fflags",
            "nobuffer",
            "-f",
            "lavfi",
            "-i",
            &format!(
                "testsrc2=size={}x{}:rate={},realtime,settb=1/1000,setpts=RTCTIME/1000",
                a.width, a.height, a.fps
            ),
            "-frames:v",
            &a.frames.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-g",
            &a.gop.to_string(),
            "-b:v",
            &format!("{kbps}k"),
            "-maxrate",
            &format!("{kbps}k"),
            "-bufsize",
            &format!("{}k", kbps.div_ceil(2).max(1)),
            "-copyts",
        ])
        .map(str::to_string)
        .chain(a.output.iter().cloned())
        .collect()
}

/// Arguments for ffmpeg playing `url`: decoding (real H.264) or copying
/// (Glass's synthetic frames are not H.264) into the null muxer.
pub fn player_args(url: &str, decode: bool) -> Vec<String> {
    let mut v: Vec<String> = COMMON
        .iter()
        .copied()
        .chain([
            // Not `-fflags nobuffer`: it discards the packets read while probing,
            // and the decoder then waits for the next key frame (a GOP lost).
            "-i", url, "-map", "0:v",
        ])
        .map(str::to_string)
        .collect();
    if !decode {
        v.extend(["-c".into(), "copy".into()]);
    }
    // Count what was decoded, not a constant-rate resampling of it.
    v.extend(["-fps_mode".into(), "passthrough".into()]);
    v.extend(["-f".into(), "null".into(), "-".into()]);
    v
}

/// Checks that ffmpeg can be run, with a message that says how to get it.
pub fn check_installed() -> Result<()> {
    match Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "ffmpeg is not installed (or not on PATH); install it with \
             `apt-get install --no-install-recommends ffmpeg`"
        ),
    }
}

/// What one ffmpeg did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FfmpegReport {
    /// "publisher" or "player".
    pub role: String,
    /// The command line, for reproducing by hand.
    pub command: String,
    /// Frames ffmpeg encoded (publisher) or decoded/copied (player).
    pub frames: u64,
    /// Bytes it wrote (publisher: to the RTMP connection).
    pub bytes: u64,
    /// Exit code; `None` when it ended by a signal.
    pub exit_code: Option<i32>,
    /// Whether it was still running at the end of the run and Glass stopped
    /// it (SIGINT; ffmpeg then exits with 255).
    pub stopped_by_glass: bool,
    /// The TCP congestion control its sockets got: its namespace's default.
    pub tcp_congestion: Option<String>,
    /// The last lines it wrote to stderr (errors only: `-loglevel error`).
    pub errors: Vec<String>,
}

#[derive(Default)]
struct Shared {
    frames: u64,
    bytes: u64,
    errors: VecDeque<String>,
}

/// A running ffmpeg; dropping it kills it.
pub struct Ffmpeg {
    role: &'static str,
    command: String,
    child: Option<Child>,
    shared: Arc<Mutex<Shared>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    interrupted: bool,
}

const KEEP_ERRORS: usize = 10;

impl Ffmpeg {
    /// Starts `cmd` (from [`crate::topology::Topology::command`], so it runs
    /// in the right namespace) with `args`.
    pub fn spawn(role: &'static str, mut cmd: Command, args: Vec<String>) -> Result<Ffmpeg> {
        let command = crate::redact::uris(&format!("ffmpeg {}", args.join(" ")));
        let mut child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ffmpeg")?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let shared = shared.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let Some((k, v)) = line.split_once('=') else {
                        continue;
                    };
                    let Ok(mut s) = shared.lock() else { return };
                    match k {
                        "frame" => s.frames = v.trim().parse().unwrap_or(s.frames),
                        "total_size" => s.bytes = v.trim().parse().unwrap_or(s.bytes),
                        _ => {}
                    }
                }
            }));
        }
        if let Some(err) = child.stderr.take() {
            let shared = shared.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let Ok(mut s) = shared.lock() else { return };
                    if s.errors.len() == KEEP_ERRORS {
                        s.errors.pop_front();
                    }
                    s.errors.push_back(crate::redact::uris(&line));
                }
            }));
        }
        Ok(Ffmpeg {
            role,
            command,
            child: Some(child),
            shared,
            readers,
            interrupted: false,
        })
    }

    /// Whether it has exited already.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Asks it to finish (SIGINT: ffmpeg flushes and reports), if running.
    pub fn interrupt(&mut self) {
        if self.exited() {
            return;
        }
        self.interrupted = true;
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGINT);
            }
        }
    }

    /// Waits (async) up to `grace` for it to exit.
    pub async fn wait_exit(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while !self.exited() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it (SIGINT, then SIGKILL after `grace`) and reports.
    pub fn stop(mut self, grace: Duration) -> FfmpegReport {
        let mut exit_code = None;
        self.interrupt();
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + grace;
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        break child.wait().ok();
                    }
                }
            };
            exit_code = status.and_then(|s| s.code());
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let s = self.shared.lock().map(|s| {
            (
                s.frames,
                s.bytes,
                s.errors.iter().cloned().collect::<Vec<_>>(),
            )
        });
        let (frames, bytes, mut errors) = s.unwrap_or_default();
        if self.interrupted {
            errors.retain(|line| !is_exit_notice(line));
        }
        FfmpegReport {
            role: self.role.into(),
            command: self.command.clone(),
            frames,
            bytes,
            exit_code,
            stopped_by_glass: self.interrupted,
            tcp_congestion: None,
            errors,
        }
    }
}

/// ffmpeg's own words on the SIGINT Glass stops it with ("Exiting normally,
/// received signal 2.", "… Immediate exit requested", which it prints when
/// the signal lands during I/O, e.g. while closing its progress pipe): not
/// errors of what it was doing.
fn is_exit_notice(line: &str) -> bool {
    line.contains("Immediate exit requested") || line.contains("received signal")
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `WIDTHxHEIGHT` from a resolution label.
pub fn parse_resolution(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (16..=7680).contains(&w).then_some(())?;
    (16..=4320).contains(&h).then_some(())?;
    // x264 with yuv420p needs even dimensions.
    (w % 2 == 0 && h % 2 == 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_notices_of_a_stopped_ffmpeg_are_not_errors() {
        for notice in [
            "Exiting normally, received signal 2.",
            "Error closing progress log, loss of information possible: Immediate exit requested",
        ] {
            assert!(is_exit_notice(notice), "{notice}");
        }
        assert!(!is_exit_notice("[h264 @ 0x55] error while decoding MB 3 7"));
    }

    #[test]
    fn resolutions() {
        assert_eq!(parse_resolution("1280x720"), Some((1280, 720)));
        assert_eq!(parse_resolution(" 640 X 360 "), Some((640, 360)));
        assert_eq!(parse_resolution("720p"), None);
        assert_eq!(parse_resolution("641x360"), None);
        assert_eq!(parse_resolution("0x0"), None);
    }

    #[test]
    fn publisher_command_stamps_wall_clock_and_keeps_it() {
        let a = publisher_args(&PublisherArgs {
            output: rtmp_output("rtmp://198.18.0.1:1935/live/k"),
            width: 640,
            height: 360,
            fps: 30.0,
            gop: 60,
            bitrate_bps: 1_500_000,
            frames: 300,
        });
        let line = a.join(" ");
        for needed in [
            "-copyts",
            "-enc_time_base:v 1:1000",
            "testsrc2=size=640x360:rate=30,realtime,settb=1/1000,setpts=RTCTIME/1000",
            "-frames:v 300",
            "-g 60",
            "-b:v 1500k",
            "-pix_fmt yuv420p",
            "-tcp_nodelay 1 -f flv rtmp://198.18.0.1:1935/live/k",
        ] {
            assert!(line.contains(needed), "{needed} missing from {line}");
        }
        assert!(
            player_args("rtmp://x/live/k", false)
                .join(" ")
                .contains("-c copy")
        );
        assert!(
            !player_args("rtmp://x/live/k", true)
                .join(" ")
                .contains("-c copy")
        );
    }
}
