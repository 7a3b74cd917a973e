//! End-to-end: `glass shell` runs a program behind the link; forwards reach a
//! server on this machine; nothing is left behind, even after `kill -9`.
//! Needs root (CI has it).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn glass() -> Command {
    Command::new(env!("CARGO_BIN_EXE_glass"))
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        netem::adapters::skip::skip("needs root");
    }
    root
}

/// `glass shell` behind 30 ms with `port` forwarded, running `script` in bash.
fn shell_echo_args(port: u16, script: &str) -> Vec<String> {
    [
        "shell",
        "--profile",
        "delay 30ms",
        "--forward",
        &format!("tcp:{port}"),
        "--",
        "bash",
        "-c",
        script,
    ]
    .map(String::from)
    .to_vec()
}

/// A one-line echo server on this machine's loopback; returns its port.
fn host_echo_server() -> u16 {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in server.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf) {
                let _ = s.write_all(&buf[..n]);
            }
        }
    });
    port
}

#[test]
fn forward_reaches_a_host_server_through_the_delay() {
    if !is_root() {
        return;
    }
    let port = host_echo_server();
    let script = format!(
        "exec 3<>/dev/tcp/198.18.0.1/{port}; echo through-glass >&3; read -r line <&3; echo \"got:$line\""
    );
    let t = Instant::now();
    let out = glass()
        .args(shell_echo_args(port, &script))
        .output()
        .unwrap();
    let elapsed = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("got:through-glass"), "{stdout}\n{stderr}");
    assert!(stderr.contains("forwarding tcp/"), "{stderr}");
    // Handshake (one RTT) plus the echo (one RTT), 60 ms each.
    assert!(elapsed >= Duration::from_millis(120), "{elapsed:?}");
}

/// The user-namespace path: an unprivileged user (nobody, via setpriv) runs
/// `glass shell`; Glass enters a user namespace of its own and, since it cannot
/// open /dev/net/tun there, uses the veth data path.
#[test]
fn an_unprivileged_user_gets_the_link() {
    if !is_root() {
        return;
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_glass"));
    // nobody must be able to reach the binary through every parent folder.
    let reachable = exe.ancestors().skip(1).all(|d| {
        std::fs::metadata(d)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o001 != 0)
            .unwrap_or(false)
    });
    assert!(
        reachable,
        "{} is not reachable for an unprivileged user",
        exe.display()
    );
    let port = host_echo_server();
    let script = format!(
        "exec 3<>/dev/tcp/198.18.0.1/{port}; echo as-nobody >&3; read -r line <&3; echo \"got:$line\"; cat /proc/self/uid_map"
    );
    let t = Instant::now();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe)
        .args(shell_echo_args(port, &script))
        .output()
        .expect("setpriv (util-linux)");
    let elapsed = t.elapsed();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("got:as-nobody"), "{stdout}\n{stderr}");
    // Inside, uid 0 maps to 65534 outside: a user namespace, not real root.
    assert!(
        stdout
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["0", "65534"]),
        "{stdout}"
    );
    assert!(stderr.contains("(Veth link)"), "{stderr}");
    assert!(elapsed >= Duration::from_millis(120), "{elapsed:?}");
}

#[test]
fn exit_code_and_bad_input() {
    if !is_root() {
        return;
    }
    let out = glass()
        .args(["shell", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let out = glass()
        .args(["shell", "--profile", "loss 1% 25%", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("correlation"));
    let out = glass()
        .args(["shell", "--forward", "tcp:0", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Every network namespace alive on the machine: those some task is in, and
/// those held open by a file descriptor (as Glass holds its own).
fn net_namespaces() -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let links = std::fs::read_dir(p.path().join("task"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|t| t.path().join("ns/net"))
            .chain(
                std::fs::read_dir(p.path().join("fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|f| f.path()),
            );
        for link in links {
            if let Ok(target) = std::fs::read_link(&link) {
                let target = target.to_string_lossy().into_owned();
                if target.starts_with("net:[") {
                    set.insert(target);
                }
            }
        }
    }
    set
}

fn pids_with_arg(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| {
            let pid: u32 = p.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(needle)
                .then_some(pid)
        })
        .collect()
}

#[test]
fn kill_9_leaves_no_child_and_no_namespace() {
    if !is_root() {
        return;
    }
    let marker = format!("1000.{}", std::process::id());
    let mut glass = glass()
        .args(["shell", "--", "sleep", &marker])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids_with_arg(&marker).iter().all(|&p| p == glass.id()) {
        assert!(Instant::now() < deadline, "the child never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Exactly the namespaces this Glass holds open (other tests make their own).
    let held: BTreeSet<String> = std::fs::read_dir(format!("/proc/{}/fd", glass.id()))
        .unwrap()
        .flatten()
        .filter_map(|f| std::fs::read_link(f.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("net:["))
        .collect();
    assert!(
        held.len() >= 3,
        "expected Glass's three namespaces, saw {held:?}"
    );
    assert!(held.is_subset(&net_namespaces()));
    glass.kill().unwrap(); // SIGKILL
    glass.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = pids_with_arg(&marker);
        let extra: Vec<_> = held.intersection(&net_namespaces()).cloned().collect();
        if left.is_empty() && extra.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {left:?}, namespaces {extra:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_stops_the_child_and_reports() {
    if !is_root() {
        return;
    }
    let marker = format!("1001.{}", std::process::id());
    let glass = glass()
        .args(["shell", "--profile", "delay 5ms", "--", "sleep", &marker])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids_with_arg(&marker).iter().any(|&p| p != glass.id()) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling the process we started.
    unsafe { libc::kill(glass.id() as i32, libc::SIGTERM) };
    let out = glass.wait_with_output().unwrap();
    // The child died of SIGTERM: 128 + 15.
    assert_eq!(out.status.code(), Some(143));
    assert!(pids_with_arg(&marker).is_empty());
}
