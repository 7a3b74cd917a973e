//! The HTML report in a real browser: headless Chromium loads it with no
//! errors and renders the plots (a screenshot is taken). Proxy mode: no
//! privileges. Needs chromium (`.ci/run` installs it): outside CI a missing
//! browser skips the test with a message; in CI it fails it.

mod common;

use std::process::Command;

#[test]
fn the_report_loads_in_headless_chromium() {
    let Some(browser) = common::chromium() else {
        return;
    };
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

/// A results directory made by hand: three protocols over one network,
/// two of them with every frame at 533.3331533 ms (lines on top of each
/// other, and the float noise that once made unreadable ticks), one
/// running to 8 s.
fn overlapping_results(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |p: &str, p50: f64, p99: f64| {
        format!(
            r#"{{"network":"n","protocol":"{p}","repeat":0,"status":"ok","result":{{"player":{{"g2g_p50_ms":{p50},"g2g_p99_ms":{p99},"stall_ratio":0.0,"startup_delay_ms":null,"frames_displayed":300}}}}}}"#
        )
    };
    std::fs::write(
        dir.join("results.json"),
        format!(
            r#"{{"schema":"glass.results.v2","scenario":{{"name":"look"}},"runs":[{},{},{}]}}"#,
            run("alpha", 533.3, 533.3),
            run("beta", 533.3, 533.3),
            run("gamma", 2000.0, 7900.0)
        ),
    )
    .unwrap();
    let mut frames = String::from(harness::output::series::FRAMES_HEADER);
    frames.push('\n');
    for p in ["alpha", "beta", "gamma"] {
        for i in 0..300 {
            let g2g = if p == "gamma" {
                600.0 + 7400.0 * (i as f64 / 299.0).powi(2)
            } else {
                533.333_153_3
            };
            frames.push_str(&format!(
                "\"\",\"n\",\"{p}\",0,{i},{c},{a},{d},{g2g},,,\n",
                c = i as f64 * 33.3,
                a = i as f64 * 33.3 + g2g - 10.0,
                d = i as f64 * 33.3 + g2g
            ));
        }
    }
    std::fs::write(dir.join("frames.csv"), frames).unwrap();
}

/// Pixels of `png` within a small distance of `rgb` (anti-aliasing).
fn pixels_of(png: &[u8], rgb: (u8, u8, u8)) -> usize {
    let mut decoder = png::Decoder::new(png);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(step)
        .filter(|px| {
            let d = |a: u8, b: u8| (i32::from(a) - i32::from(b)).abs();
            d(px[0], rgb.0) + d(px[1], rgb.1) + d(px[2], rgb.2) <= 30
        })
        .count()
}

#[test]
fn every_protocol_line_is_visible_in_the_browser_even_on_top_of_another() {
    let Some(browser) = common::chromium() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("glass-report-look-{}", std::process::id()));
    overlapping_results(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_glass"))
        .arg("report")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(dir.join("plots/cdf-0.svg")).unwrap();
    // Every protocol in the legend; a log axis (600 ms to 8 s); ticks that
    // read as numbers, not float noise.
    for p in ["alpha", "beta", "gamma"] {
        assert!(svg.contains(p), "legend entry {p}");
    }
    assert!(svg.contains("(log scale)"));
    assert!(!svg.contains("533.333"), "tick labels with float noise");
    // The report opens with its answer.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let verdict = html.find("<h2>Verdict</h2>").expect("a verdict");
    assert!(verdict < html.find("<h2>Comparison</h2>").unwrap());
    assert!(
        html[verdict..].contains("<b>tie</b>: alpha ≈ beta"),
        "{}",
        &html[verdict..verdict + 600]
    );
    // In the browser: each line's colour shows, the one drawn under the
    // other included.
    let shot = dir.join("cdf.png");
    let s = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=960,540")
        .arg(format!("file://{}", dir.join("plots/cdf-0.svg").display()))
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let png = std::fs::read(&shot).unwrap();
    for (i, p) in ["alpha", "beta", "gamma"].iter().enumerate() {
        let c = reports::plots::color(i);
        let n = pixels_of(&png, (c.0, c.1, c.2));
        assert!(n >= 150, "{p}'s colour {c:?}: {n} pixels");
    }
    std::fs::remove_dir_all(&dir).ok();
}
