//! `glass soak` end to end, at a small scale: a 2-second RTMP and UDP
//! scenario in proxy mode (no privileges needed) repeated until Ctrl-C. The
//! soak writes its samples as it goes, ends after the current run on
//! SIGINT, and its figures hold what a leak check needs: after every run
//! the process is back to the same open files and no async task is left.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

#[test]
fn a_soak_samples_the_process_keeps_its_files_flat_and_ends_on_ctrl_c() {
    let dir = Dir(std::env::temp_dir().join(format!("glass-soak-e2e-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let scenario = dir.0.join("s.toml");
    std::fs::write(
        &scenario,
        r#"
name = "soak-e2e"
duration = "2s"
seed = 3
[media]
bitrate = "1Mbit/s"
[[networks]]
name = "delay"
first_mile = { uplink = "delay 10ms" }
[[protocols]]
name = "rtmp"
kind = "rtmp"
[[protocols]]
name = "udp"
kind = "udp"
uri = "gudp://server/live/soak"
"#,
    )
    .unwrap();
    let out = dir.0.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_glass"))
        .arg("soak")
        .arg(&scenario)
        .args(["--hours", "1", "--sample-every", "500ms", "--mode", "proxy"])
        .arg("--output")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Six runs (three of each protocol), then Ctrl-C.
    let runs_csv = out.join("soak-runs.csv");
    let deadline = Instant::now() + Duration::from_secs(90);
    let rows = || {
        std::fs::read_to_string(&runs_csv)
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0)
    };
    while rows() < 6 {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut e = String::new();
            child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            panic!("six runs did not finish in 90 s:\n{e}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let interrupted = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            interrupted.elapsed() < Duration::from_secs(30),
            "the soak did not end within a run of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("interrupted: ending after the current run"),
        "{stderr}"
    );
    assert!(stdout.contains("ended by interrupted"), "{stdout}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("soak.json")).unwrap()).unwrap();
    assert_eq!(summary["schema"], "glass.soak.v1");
    assert_eq!(summary["ended"], "interrupted");
    let runs = summary["runs"].as_u64().unwrap();
    assert!((6..=8).contains(&runs), "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["trends"].as_array().unwrap().len(), 5);
    assert!(summary["passed"].as_bool().unwrap(), "{summary}");
    // One sample every 500 ms: the soak lasted ≥ 6 × 2 s.
    let samples = std::fs::read_to_string(out.join("soak.csv")).unwrap();
    let n = samples.lines().count() - 1;
    assert!(n >= 20, "{n} samples:\n{samples}");
    // After each run (from the second: the first loads the runtime's
    // pieces), the same number of open files: nothing of a run stays open.
    let rows = std::fs::read_to_string(&runs_csv).unwrap();
    let header: Vec<&str> = rows.lines().next().unwrap().split(',').collect();
    let column = |name: &str| -> Vec<u64> {
        let i = header.iter().position(|h| *h == name).unwrap();
        rows.lines()
            .skip(2)
            .map(|l| l.split(',').nth(i).unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(rows.lines().count() - 1, runs as usize);
    let fds = column("fds");
    assert!(
        fds.iter().all(|&f| f == fds[0]),
        "open files after each run: {fds:?}\n{rows}"
    );
    // And no task of a run is left in the runtime.
    let tasks = column("tasks");
    assert!(
        tasks.iter().all(|&t| t == 0),
        "tasks after each run: {tasks:?}\n{rows}"
    );
    // The heap in use is read (glibc) and is a few MiB, not zero.
    let heap = column("heap_kib");
    assert!(
        heap.iter().all(|&h| h > 1024),
        "heap after each run: {heap:?}"
    );
    let page = std::fs::read_to_string(out.join("soak.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("open file descriptors"));
    assert!(page.contains("heap in use"));
}
