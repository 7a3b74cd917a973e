//! Tests that need what a machine may lack (root, network namespaces,
//! ffmpeg, chromium) skip through [`skip`]: in CI (`CI` set) a skip is a
//! failure, so a CI that lost a privilege or a package cannot pass without
//! running them; elsewhere the test says `skipped: <reason>` and returns.
//!
//! libtest captures what a passing test prints and counts a test that
//! returned early as passed, so a skip would be silent. So the line goes to
//! the process's stderr directly (past the capture), and when the test
//! binary exits it prints how many of its tests were skipped and why, under
//! libtest's own `test result:` line.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, Once};

/// Skips per reason in this process.
static SKIPPED: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
static AT_EXIT: Once = Once::new();

/// The calling test cannot run here because of `reason` ("ffmpeg is not
/// installed"): panics under `CI`, else prints `skipped: TEST: REASON` and
/// counts it for the summary. The caller then returns.
pub fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI must run every test, and this one cannot run: {reason}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // Straight to the file descriptor: libtest's capture only sees print!.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {reason}");
    if let Ok(mut s) = SKIPPED.lock() {
        *s.entry(reason.to_string()).or_default() += 1;
    }
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function with no captured state.
        unsafe {
            libc::atexit(summary);
        }
    });
}

/// Prints the binary's skips when it exits (after libtest's summary line).
extern "C" fn summary() {
    let Ok(s) = SKIPPED.lock() else { return };
    let n: usize = s.values().sum();
    if n == 0 {
        return;
    }
    let why: Vec<String> = s.iter().map(|(r, k)| format!("{k} × {r}")).collect();
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {n} test{} of this binary did not run (counted as passed above): {}. \
         With CI=true a skip fails instead.",
        if n == 1 { "" } else { "s" },
        why.join("; ")
    );
}
