//! The one tokio runtime Glass's commands (and the tests' in-process runs)
//! build: two workers, like the 2-core machines Glass's figures come from,
//! so a run's scheduling does not depend on where it runs; and the process
//! limit a run needs.

/// A multi-threaded runtime with two workers, I/O and timers enabled.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Raises the soft limit on open files to the hard one (at most 65,536): a
/// run holds sockets for every client, the relay's side of each, proxies
/// and TUN devices, and hostile clients add thousands; many systems start
/// processes at 1,024.
pub fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            let want = l.rlim_max.min(65_536);
            if l.rlim_cur < want {
                l.rlim_cur = want;
                libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            }
        }
    }
}
