//! The HTML report in a real browser: headless Chromium loads it with no
//! errors and renders the plots (a screenshot is taken). Proxy mode: no
//! privileges. Needs chromium (`.ci/run` installs it): outside CI a missing
//! browser skips the test with a message; in CI it fails it.

use std::process::Command;

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        netem::adapters::skip::skip("no chromium (.ci/run installs it)");
    }
    found
}

#[test]
fn the_report_loads_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let dir = std::env::temp_dir().join(format!("glass-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        "name = \"report\"\nduration = \"3s\"\n[[networks]]\nname = \"clean\"\n[[networks]]\nname = \"delay\"\nfirst_mile = { uplink = \"delay 40ms\" }\n[[protocols]]\nkind = \"rtmp\"\n",
    )
    .unwrap();
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_glass"))
        .args(["run", file.to_str().unwrap(), "--mode", "proxy", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report = out.join("report.html");
    assert!(report.exists());
    let url = format!("file://{}", report.display());
    let headless = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
    ];
    // The DOM after loading: the page parsed, with its inline plots.
    let dom = Command::new(browser)
        .args(headless)
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        text.contains("Glass report — report") && text.matches("<svg").count() >= 3,
        "{}",
        &text[..text.len().min(2000)]
    );
    // A screenshot: it renders.
    let shot = dir.join("shot.png");
    let s = Command::new(browser)
        .args(headless)
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1200,2400", &url])
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        &png[1..4] == b"PNG" && png.len() > 20_000,
        "screenshot of {} bytes",
        png.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}
