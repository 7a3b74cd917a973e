//! This process's resident memory, open file descriptors and threads, read
//! from /proc/self (Linux), and the heap the allocator has handed out (glibc).
//! What a soak samples, and what the fuzzer's memory bound is checked with.

use reports::soak::Sample;

/// A reading now (zeros where /proc is not there), with `t_s` and the run
/// counts left for the caller.
pub fn sample() -> Sample {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    Sample {
        rss_kib: status_field(&status, "VmRSS:"),
        heap_kib: heap_in_use_kib(),
        threads: status_field(&status, "Threads:"),
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        ..Sample::default()
    }
}

/// A number from /proc/self/status ("VmRSS:   43120 kB" → 43120); 0 when
/// the field is not there.
fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What glibc's allocator has handed out and not had back, KiB: in-use
/// chunks of every arena (`uordblks`) plus chunks it mmapped (`hblkhd`).
/// `mallinfo2` walks every arena under its lock: microseconds, fine every
/// few seconds.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct; glibc
    // has had it since 2.33 (Debian 12 ships 2.36).
    let m = unsafe { libc::mallinfo2() };
    ((m.uordblks + m.hblkhd) / 1024) as u64
}

/// Not known without glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_in_use_kib() -> u64 {
    0
}

/// This process's resident set in KiB (0 where /proc is not there). Only
/// the status file: the hostile-client monitor calls this every 100 ms while
/// thousands of descriptors are open, and the fuzzer every 4,096 inputs.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status_field(&status, "VmRSS:")
}

/// Another process's resident set in KiB (0 once it is gone).
pub fn rss_kib_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&status, "VmRSS:")
}

/// A process's or a thread's CPU time, to time a relay's core: user +
/// system time from its `stat` file in /proc.
#[derive(Clone, Debug)]
pub struct CpuClock {
    stat: String,
}

impl CpuClock {
    /// Another process (nginx).
    pub fn process(pid: u32) -> CpuClock {
        CpuClock {
            stat: format!("/proc/{pid}/stat"),
        }
    }

    /// The calling thread of this process (call it on the thread to time).
    pub fn this_thread() -> CpuClock {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        CpuClock {
            stat: format!("/proc/self/task/{tid}/stat"),
        }
    }

    /// This whole process.
    pub fn this_process() -> CpuClock {
        CpuClock {
            stat: "/proc/self/stat".into(),
        }
    }

    /// CPU seconds so far (clock-tick resolution, 10 ms on Linux); `None`
    /// once the process or thread is gone.
    pub fn seconds(&self) -> Option<f64> {
        let s = std::fs::read_to_string(&self.stat).ok()?;
        cpu_seconds_of_stat(&s)
    }
}

/// utime + stime of a `stat` line, in seconds. The fields are counted after
/// the command name's closing parenthesis (the name may hold spaces).
fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After ")": state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / hz)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_read_after_the_name() {
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0";
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(super::cpu_seconds_of_stat(line), Some(200.0 / hz));
        // This thread's clock moves while it spins (bounded: 5 s of wall time).
        let spin = super::CpuClock::this_thread();
        let start = spin.seconds().unwrap();
        let t0 = std::time::Instant::now();
        while spin.seconds().unwrap() == start && t0.elapsed().as_secs() < 5 {
            std::hint::spin_loop();
        }
        assert!(spin.seconds().unwrap() > start);
    }

    #[test]
    fn reads_this_process() {
        let before = super::sample();
        assert!(before.rss_kib > 0 && before.threads >= 1 && before.fds >= 3);
        assert!(super::rss_kib() > 0);
        // 64 MiB held show up in the heap (glibc).
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let held = vec![1u8; 64 << 20];
            let with = super::heap_in_use_kib();
            assert!(with >= 60 * 1024, "{with} KiB with 64 MiB held");
            drop(std::hint::black_box(held));
        }
        // 200 files held open show up (other tests running beside this one
        // open and close a few sockets: compare with a margin).
        let files: Vec<_> = (0..200)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let held = super::sample();
        drop(files);
        assert!(held.fds >= before.fds + 150, "{before:?} → {held:?}");
        let t = std::thread::spawn(|| super::sample().threads)
            .join()
            .unwrap();
        assert!(t >= 2);
    }
}
