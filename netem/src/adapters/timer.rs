//! Precise waiting: the kernel sleeps until shortly before the deadline, a
//! spin covers the rest. tokio's timer has 1 ms granularity and a plain
//! sleep overshoots by 50–100 µs under load, both too coarse for a link that
//! must release packets within 100 µs of their instant.

use std::time::{Duration, Instant};

/// How long before a deadline to stop sleeping and start spinning.
pub const SPIN: Duration = Duration::from_micros(150);

/// Time left to sleep before spinning for `deadline`, or `None` if it is time
/// to spin (or past).
pub fn sleep_budget(now: Instant, deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(now);
    (left > SPIN).then(|| left - SPIN)
}

/// Spins until `deadline`, calling `poll` between checks (so work can be done
/// while waiting). Returns early if `poll` returns true.
pub fn spin_until(deadline: Instant, mut poll: impl FnMut() -> bool) {
    while Instant::now() < deadline {
        if poll() {
            return;
        }
        std::hint::spin_loop();
    }
}

/// Asks the kernel to wake this thread on time: a normal thread's timer
/// slack (50 µs) lets the kernel coalesce its wake-ups that much late, more
/// than the release precision a link needs. Thread-wide, so call it on the
/// thread that waits.
pub fn precise_wakeups() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer (nanoseconds; 1 is
    // the smallest, 0 would mean "the default").
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Sleeps then spins until `deadline`.
pub fn sleep_until(deadline: Instant) {
    if let Some(d) = sleep_budget(Instant::now(), deadline) {
        std::thread::sleep(d);
    }
    spin_until(deadline, || false);
}

/// For tokio adapters: waits until the earliest of `deadlines` (scenario
/// time), at once if it has passed, forever if there is none. An expired
/// deadline must not go to `sleep_until`, which would still wait for the
/// next 1 ms tick.
pub async fn until_earliest(
    clock: &crate::time::Clock,
    deadlines: impl IntoIterator<Item = Option<crate::time::Time>>,
) {
    let now = clock.time(Instant::now());
    match deadlines.into_iter().flatten().min() {
        Some(t) if t > now => tokio::time::sleep_until(clock.instant(t).into()).await,
        Some(_) => {}
        None => std::future::pending().await,
    }
}
