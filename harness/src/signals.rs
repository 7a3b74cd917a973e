//! Ctrl-C and SIGTERM for commands that own a child process: Glass catches
//! them (a caught signal, unlike an ignored one, is reset to the default in
//! the child at exec), records them, and the command decides: pass them to
//! the child, then clean up. A child also dies with Glass (PDEATHSIG), so
//! even `kill -9` leaves nothing behind.

use std::sync::atomic::{AtomicI32, Ordering};

static LAST: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(sig: libc::c_int) {
    LAST.store(sig, Ordering::SeqCst);
}

/// Installs the recording handler for SIGINT and SIGTERM.
pub fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = record as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// The signal received since the last call, if any.
pub fn take() -> Option<libc::c_int> {
    match LAST.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
