//! Helpers shared by the end-to-end tests that run scenarios in process.
#![allow(dead_code)] // each test binary uses some of them

use std::sync::{Mutex, MutexGuard};

use harness::runner::{RunResult, run_one};
use harness::scenario::Scenario;
use harness::topology::Mode;

/// Tests that measure latency run one at a time, not competing for the two
/// cores (within one test binary; cargo runs the binaries one after another).
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime the in-process runs use: `glass run`'s own.
pub fn runtime() -> tokio::runtime::Runtime {
    harness::runtime::runtime().unwrap()
}

/// Runs the scenario's first protocol over its first network once, in `mode`.
pub fn run_in(s: &Scenario, mode: Mode) -> RunResult {
    run_one(
        &runtime(),
        s,
        &s.networks[0],
        &s.protocols[0],
        0,
        mode,
        &|_| {},
    )
    .unwrap()
}

/// … in link mode.
pub fn run_link(s: &Scenario) -> RunResult {
    run_in(s, Mode::Link)
}

/// … in proxy mode (no privileges needed).
pub fn run_proxy(s: &Scenario) -> RunResult {
    run_in(s, Mode::Proxy)
}

/// The engine's counters of the first-mile uplink of a link-mode run.
pub fn first_mile_counters(r: &RunResult) -> netem::Counters {
    r.link
        .as_ref()
        .expect("a link-mode run")
        .counters(netem::adapters::link::LinkDir::FirstMileUp)
}

/// Packets the engine's loss model dropped on the first-mile uplink of a
/// link-mode run (the ground truth a transport's loss count is checked against).
pub fn first_mile_drops(r: &RunResult) -> u64 {
    r.link
        .as_ref()
        .expect("a link-mode run")
        .counters(netem::adapters::link::LinkDir::FirstMileUp)
        .dropped_loss
}

/// The UDP protocol's section of a run (its sessions and recovery).
pub fn udp_of(r: &RunResult) -> &harness::protocol::udp::section::UdpSection {
    r.section().expect("the UDP protocol's section")
}

/// Whether Python's `m3u8` package (a playlist parser Glass did not
/// write) can be imported; if not, the test is skipped with the reason (a
/// failure under CI).
pub fn have_python_m3u8() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import m3u8"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        netem::adapters::skip::skip("Python's m3u8 is not installed (.ci/run installs it)");
    }
    ok
}

/// Whether ffmpeg runs here; if not, the test is skipped with the reason
/// (a failure under CI).
pub fn have_ffmpeg() -> bool {
    let ok = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        netem::adapters::skip::skip("ffmpeg is not installed (.ci/run installs it)");
    }
    ok
}

/// Whether nginx with its RTMP module runs here; if not, the test is
/// skipped with the reason (a failure under CI).
pub fn have_nginx_rtmp() -> bool {
    match harness::interop::nginx::available() {
        Ok(()) => true,
        Err(e) => {
            netem::adapters::skip::skip(&format!("{e:#} (.ci/run installs it)"));
            false
        }
    }
}

/// `glass serve --key KEY --port-offset OFFSET` (for a minute at most),
/// read until its listing names `scheme`://: the child, its stdout for the
/// rest, and the listing.
pub fn spawn_serve(
    key: &str,
    offset: u16,
    scheme: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    spawn_serve_with(key, offset, scheme, &[])
}

/// [`spawn_serve`] with more arguments (e.g. `--scenario FILE`).
pub fn spawn_serve_with(
    key: &str,
    offset: u16,
    scheme: &str,
    more: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    String,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["serve", "--key", key, "--duration", "60s"])
        .args(["--port-offset", &offset.to_string()])
        .args(more)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut listing = String::new();
    while !listing.contains(&format!("{scheme}://")) {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "glass serve ended: {listing}"
        );
        listing.push_str(&line);
    }
    (child, out, listing)
}

/// Runs the scenario's first protocol over its first network `s.repeat`
/// times in virtual time and as many in link mode, takes `figures` (named
/// by `names`) of each run, and asserts that virtual time's mean of each
/// falls within link mode's 95 % interval and the other way round
/// (`reports::stats::differs` at 0.5 of the intervals), printing both.
pub fn assert_repeats_agree(
    s: &Scenario,
    names: &[&str],
    figures: impl Fn(&RunResult) -> Vec<f64>,
) {
    let rt = runtime();
    let (n, p) = (&s.networks[0], &s.protocols[0]);
    let mut by_mode: Vec<Vec<Vec<f64>>> = Vec::new();
    for mode in ["virtual", "link"] {
        let mut f: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for repeat in 0..s.repeat {
            let r = match mode {
                "virtual" => harness::virtual_time::run_groups(s, n, p, repeat, &|_| {})
                    .unwrap()
                    .remove(0),
                _ => run_one(&rt, s, n, p, repeat, Mode::Link, &|_| {}).unwrap(),
            };
            for (k, v) in figures(&r).into_iter().enumerate() {
                f[k].push(v);
            }
        }
        by_mode.push(f);
    }
    for (k, what) in names.iter().enumerate() {
        let v = reports::stats::summarize(&by_mode[0][k]);
        let l = reports::stats::summarize(&by_mode[1][k]);
        eprintln!(
            "{what}: virtual {:.3} ± {:.3}, link {:.3} ± {:.3} (values {:?} / {:?})",
            v.mean,
            v.ci95.unwrap_or(0.0),
            l.mean,
            l.ci95.unwrap_or(0.0),
            by_mode[0][k],
            by_mode[1][k]
        );
        assert!(
            !reports::stats::differs(&v, &l, 0.5),
            "{what}: virtual {v:?} vs link {l:?}"
        );
    }
}

/// The run's ffmpeg `role` ("publisher" or "player"): its report.
pub fn ffmpeg_of(
    r: &harness::runner::RunResult,
    role: &str,
) -> harness::interop::ffmpeg::FfmpegReport {
    r.ffmpeg
        .iter()
        .find(|f| f.role == role)
        .unwrap_or_else(|| panic!("no ffmpeg {role} in the run"))
        .clone()
}

/// The headless browser here (Debian's chromium), or None with the test
/// skipped (a failure under CI: `.ci/run` installs it).
pub fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        netem::adapters::skip::skip("no chromium (.ci/run installs it)");
    }
    found
}

/// The file of an npm package that `.ci/run` installs under
/// `target/npm` (hls.js, …), or None with the test skipped.
pub fn npm_file(package_file: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/npm/node_modules")
        .join(package_file);
    if !path.exists() {
        netem::adapters::skip::skip(&format!(
            "{} is missing (.ci/run installs it with npm)",
            path.display()
        ));
        return None;
    }
    Some(path)
}
