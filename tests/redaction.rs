//! Secrets stay out of results and logs: a run whose stream key, UDP token
//! and RTSP password are distinctive strings, with Glass's publishers and
//! ffmpeg's (whose command line is in the results), debug logging on;
//! nothing Glass writes contains any of them. Proxy mode: no privileges.

use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = "sk-SECRET-7f3a";
const TOKEN: &str = "tok-SECRET-91b2";
const PASSWORD: &str = "pw-SECRET-55";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn has_ffmpeg() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn stream_keys_tokens_and_passwords_never_reach_results_or_logs() {
    let dir = Dir(std::env::temp_dir().join(format!("glass-redaction-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut scenario = format!(
        r#"
name = "redaction"
duration = "2s"
seed = 1
[[networks]]
name = "clean"
[[protocols]]
name = "rtmp"
kind = "rtmp"
stream_key = "{KEY}"
[[protocols]]
name = "udp"
kind = "udp"
stream_key = "{KEY}"
udp = {{ token = "{TOKEN}" }}
[[protocols]]
name = "rtsp"
kind = "rtsp"
uri = "rtsp://cam:{PASSWORD}@server/live/{KEY}"
rtsp = {{ auth = {{ scheme = "digest", user = "cam", password = "{PASSWORD}" }} }}
"#
    );
    if has_ffmpeg() {
        scenario.push_str(&format!(
            "[[protocols]]\nname = \"ffmpeg\"\nkind = \"rtmp\"\nstream_key = \"{KEY}\"\npublisher = \"ffmpeg\"\nffmpeg_player = true\n"
        ));
    } else {
        eprintln!("ffmpeg not installed: its command line is not checked");
    }
    let file = dir.0.join("redaction.toml");
    std::fs::write(&file, scenario).unwrap();
    let out = dir.0.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", file.to_str().unwrap(), "--mode", "proxy", "--output"])
        .arg(&out)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "{logs}");
    let results = std::fs::read_to_string(out.join("results.json")).unwrap();
    // The runs happened and their transports are reported (redacted).
    assert!(results.matches("\"uri\"").count() >= 6, "{results}");
    assert!(results.contains("/live/***#"), "{results}");
    for secret in [KEY, TOKEN, PASSWORD] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        for f in files(&out) {
            let bytes = std::fs::read(&f).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(secret), "{secret} in {}", f.display());
        }
    }
}
