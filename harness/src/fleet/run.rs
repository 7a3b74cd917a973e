//! A run's light viewers: started on the run's runtime, each joining at
//! its instant, and gathered at the end.

use std::time::Duration;

use netem::Time;

use super::config::Viewers;
use super::log::{ViewerFigures, ViewerLog, ViewersReport, Window, summarize};

/// Refuses what the open-files limit cannot hold: `sockets` descriptors
/// plus room for the rest of the process; `otherwise` says the way out
/// besides raising the limit. (`glass` raises its soft limit to the hard
/// one, at most 65,536, when it starts.)
pub fn check_open_files(sockets: u64, otherwise: &str) -> anyhow::Result<()> {
    let need = sockets + 256;
    // SAFETY: getrlimit on a local struct.
    let limit = unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return Ok(());
        }
        l.rlim_cur
    };
    if need > limit {
        anyhow::bail!(
            "this needs about {need} open files and the limit is {limit}: raise it (`ulimit -n {need}`, as root `ulimit -Hn` too) or {otherwise}"
        );
    }
    Ok(())
}

/// A group's light viewers, running: each a task that joins at its
/// instant, watches until it leaves or the run ends, and returns its log.
pub struct Running {
    described: String,
    tasks: Vec<tokio::task::JoinHandle<ViewerLog>>,
    end: Time,
    clock: netem::time::Clock,
}

/// What the viewers of a group need to play: unconnected sockets on the
/// group's host (made in its namespace in link mode), the relay's address
/// from there, the stream key, and the run's clock.
pub struct Dial {
    pub sockets: Vec<tokio::net::TcpSocket>,
    pub relay: std::net::SocketAddr,
    pub key: String,
    pub clock: netem::time::Clock,
}

/// Starts `viewers` on the current runtime: viewer `k` joins and leaves at
/// `schedule[k]`; frames count from `window`.
pub fn start(
    viewers: &Viewers,
    dial: Dial,
    schedule: &[(Duration, Duration)],
    window: Window,
) -> Running {
    let Dial {
        sockets,
        relay,
        key,
        clock,
    } = dial;
    let key: std::sync::Arc<str> = key.into();
    let tasks = sockets
        .into_iter()
        .zip(schedule)
        .map(|(sock, &(join, leave))| {
            let key = key.clone();
            tokio::spawn(async move {
                let (join, leave) = (Time::from_duration(join), Time::from_duration(leave));
                tokio::time::sleep_until(clock.instant(join).into()).await;
                let mut log = ViewerLog::new(clock.time(std::time::Instant::now()));
                let watched = async {
                    let s = sock.connect(relay).await?;
                    s.set_nodelay(true)?;
                    let t = crate::protocol::rtmp::transport::Transport::Tcp(s);
                    crate::protocol::rtmp::client::watch(t, &key, clock, leave, |w| {
                        log.on(w, &window)
                    })
                    .await
                };
                // Bounded: a connection that never completes ends with the run.
                let limit = clock.instant(leave + Duration::from_secs(1));
                match tokio::time::timeout_at(limit.into(), watched).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => log.error = Some(format!("{e:#}")),
                    Err(_) => log.error = Some("still connecting when it should have left".into()),
                }
                log
            })
        })
        .collect();
    Running {
        described: viewers.describe(),
        tasks,
        end: window.to,
        clock,
    }
}

impl Running {
    /// Waits for the viewers (they end with the run) and sums them up; one
    /// still running 5 s after the end is aborted and counted as failed.
    pub async fn finish(self) -> ViewersReport {
        let limit = self.clock.instant(self.end + Duration::from_secs(5));
        let mut logs = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            let abort = t.abort_handle();
            let log = match tokio::time::timeout_at(limit.into(), t).await {
                Ok(Ok(log)) => log,
                Ok(Err(e)) => ViewerLog::failed(format!("the viewer's task: {e}")),
                Err(_) => {
                    abort.abort();
                    ViewerLog::failed("did not end with the run".into())
                }
            };
            logs.push(log);
        }
        ViewersReport {
            described: self.described,
            summary: summarize(&logs),
            viewers: logs.iter().map(ViewerFigures::of).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_viewers_than_the_open_files_limit_are_refused_with_the_way_out() {
        let e = check_open_files(1 << 40, "declare fewer viewers")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ulimit -n") && e.contains("declare fewer viewers"),
            "{e}"
        );
        assert!(check_open_files(10, "x").is_ok());
    }
}
