//! The one tokio runtime Glass's commands (and the tests' in-process runs)
//! build: two workers, like the 2-core machines Glass's figures come from,
//! so a run's scheduling does not depend on where it runs.

/// A multi-threaded runtime with two workers, I/O and timers enabled.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
