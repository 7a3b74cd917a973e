//! Network namespaces that Glass creates and owns, and the user namespace that
//! lets an unprivileged user create them.
//!
//! A namespace is made by a helper thread that calls `unshare(CLONE_NEWNET)`
//! and opens `/proc/thread-self/ns/net`; the open file keeps it alive. Work
//! that must happen inside (sockets, TUN devices, child processes) runs on a
//! thread that `setns()` into it; a socket created there stays there and can
//! be used from any thread afterwards. Nothing is bind-mounted or named, so
//! every namespace (and the TUN devices in it) vanishes when the last file and
//! process referring to it are gone: on a normal exit, an error, a panic, a
//! Ctrl-C or a `kill -9` alike.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A network namespace owned by this process.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    fd: OwnedFd,
}

fn check(ret: libc::c_int, what: &str) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

impl NetNs {
    /// Creates an empty namespace with its loopback interface up.
    pub fn new(name: &str) -> io::Result<NetNs> {
        let fd = std::thread::scope(|s| {
            s.spawn(|| -> io::Result<OwnedFd> {
                // SAFETY: unshare only changes this helper thread's namespace.
                check(
                    unsafe { libc::unshare(libc::CLONE_NEWNET) },
                    "unshare(CLONE_NEWNET)",
                )
                .map_err(explain_permission)?;
                set_link_up("lo")?;
                Ok(File::open("/proc/thread-self/ns/net")?.into())
            })
            .join()
            .map_err(|_| io::Error::other("namespace helper thread panicked"))?
        })?;
        Ok(NetNs {
            name: name.to_string(),
            fd,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file descriptor (`/proc/<pid>/fd/<fd>` names it for `ip`).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: setns with a valid namespace fd affects only this thread.
        check(
            unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) },
            "setns",
        )
    }

    /// Runs `f` on a thread inside this namespace and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                f()
            })
            .join()
            .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
        })
    }

    /// Makes `cmd` start inside this namespace, and die with a SIGKILL if
    /// Glass dies first (so a killed Glass leaves no child behind). Spawn it
    /// from a thread that outlives the child: the death signal follows the
    /// spawning thread.
    pub fn prepare_command(&self, cmd: &mut Command) -> io::Result<()> {
        let fd = self.fd.try_clone()?;
        let parent = std::process::id();
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        Ok(())
    }
}

fn explain_permission(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::PermissionDenied {
        io::Error::new(
            e.kind(),
            format!(
                "{e}. Link mode needs root, or a user namespace (Glass enters one by itself when \
                 it starts unprivileged; if that failed, user namespaces may be disabled: \
                 sysctl kernel.unprivileged_userns_clone)"
            ),
        )
    } else {
        e
    }
}

/// Brings an interface of the current thread's namespace up.
pub(crate) fn set_link_up(ifname: &str) -> io::Result<()> {
    // SAFETY: plain ioctls on a socket we own, with a zeroed, NUL-terminated ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req
            .ifr_name
            .iter_mut()
            .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
        {
            *dst = src as libc::c_char;
        }
        check(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req),
            "SIOCGIFFLAGS",
        )?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req),
            "SIOCSIFFLAGS",
        )
    }
}

/// How this process may create namespaces.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// Real root (or CAP_SYS_ADMIN): namespaces directly.
    Root,
    /// An unprivileged user who is now root in a user namespace of its own.
    UserNamespace,
}

/// Makes sure this process can create network namespaces: as root, nothing
/// to do; otherwise it enters a new user namespace in which it is root.
/// `unshare(CLONE_NEWUSER)` needs a single-threaded process, so call this
/// first thing in `main`, before any thread (tokio included) starts.
pub fn ensure_privilege() -> io::Result<Privilege> {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return Ok(Privilege::Root);
    }
    let threads = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    if threads != "1" {
        return Err(io::Error::other(format!(
            "cannot enter a user namespace: the process already has {threads} threads (call ensure_privilege first in main)"
        )));
    }
    // SAFETY: single-threaded (checked above), as unshare(CLONE_NEWUSER) requires.
    check(unsafe { libc::unshare(libc::CLONE_NEWUSER) }, "unshare(CLONE_NEWUSER)").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{e}: user namespaces seem disabled here; run Glass as root for link mode, or use proxy mode"),
        )
    })?;
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    Ok(Privilege::UserNamespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_separate_and_have_loopback() {
        if !crate::adapters::can_create_namespaces() {
            return;
        }
        let a = NetNs::new("a").unwrap();
        let b = NetNs::new("b").unwrap();
        // A listener in `a` on a loopback port is invisible from `b`.
        let listener = a
            .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let from_a = a.run(|| std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()));
        let from_b = b.run(|| std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()));
        assert!(from_a.is_ok(), "{from_a:?}");
        assert!(from_b.is_err());
    }
}
