//! A fleet of light viewers: many players of one stream in one process,
//! each keeping only what the many-viewers figures need (DESIGN.md, "Many
//! viewers"): when it joined and saw its first frame, capture → arrival of
//! each video frame inside a measurement window, freezes by the webrtc-stats
//! rule applied to arrivals, and frames that never came. No player model
//! and no per-frame files: per-viewer percentiles, and the distribution of
//! those across viewers, are the figures (a pooled histogram alone would
//! hide one starved viewer among a thousand).

use std::time::Duration;

use netem::units::HumanDuration;
use netem::{ConfigError, Time};
use serde::{Deserialize, Serialize};

use crate::media::freeze::FreezeRule;
use crate::media::source::unpack;
use crate::protocol::rtmp::client::Watched;

/// Light viewers: many players of the stream beside a group's full
/// player, each a real RTMP session over the group's last mile, keeping
/// only its own figures (join time, capture → arrival per frame, freezes).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ViewersFile {
    /// How many (1 to 10,000).
    pub count: u32,
    /// How they join: "at-once" (all at `from`), "poisson" (at `rate`
    /// per second from `from`) or "flash" (a flash crowd: all within
    /// `within` from `from`, uniformly).
    #[serde(default)]
    pub arrival: ArrivalKind,
    /// When the first may join, from the run's start (default 0).
    #[serde(default)]
    pub from: Option<HumanDuration>,
    /// Joins per second ("poisson").
    #[serde(default)]
    pub rate: Option<f64>,
    /// The span of a flash crowd ("flash").
    #[serde(default)]
    pub within: Option<HumanDuration>,
    /// Mean time a viewer stays (exponential); default: to the end.
    #[serde(default)]
    pub stay: Option<HumanDuration>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ArrivalKind {
    #[default]
    AtOnce,
    Poisson,
    Flash,
}

/// Light viewers, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Viewers {
    pub count: u32,
    pub arrival: Arrival,
    /// Mean stay (exponential); `None`: to the end.
    pub stay: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    AtOnce { at: Duration },
    Poisson { from: Duration, per_s: f64 },
    Flash { from: Duration, within: Duration },
}

/// Most light viewers per group.
pub const MAX_VIEWERS: u32 = 10_000;

impl ViewersFile {
    /// Checks the table against a run of `duration`: the joins must fit in
    /// it (a Poisson process's expected last join included).
    pub fn validate(&self, field: &str, duration: Duration) -> Result<Viewers, ConfigError> {
        let bad = |f: &str, why: String| Err(ConfigError::invalid(format!("{field}.{f}"), why));
        if !(1..=MAX_VIEWERS).contains(&self.count) {
            return bad("count", format!("1 to {MAX_VIEWERS}, not {}", self.count));
        }
        let from = self.from.map_or(Duration::ZERO, HumanDuration::get);
        if from >= duration {
            return bad(
                "from",
                format!(
                    "{} is not inside the {} run",
                    HumanDuration(from),
                    HumanDuration(duration)
                ),
            );
        }
        let name = match self.arrival {
            ArrivalKind::AtOnce => "at-once",
            ArrivalKind::Poisson => "poisson",
            ArrivalKind::Flash => "flash",
        };
        if self.rate.is_some() && self.arrival != ArrivalKind::Poisson {
            return bad(
                "rate",
                format!("only \"poisson\" arrivals take a rate, not {name}"),
            );
        }
        if self.within.is_some() && self.arrival != ArrivalKind::Flash {
            return bad(
                "within",
                format!("only \"flash\" arrivals take `within`, not {name}"),
            );
        }
        let arrival = match self.arrival {
            ArrivalKind::AtOnce => Arrival::AtOnce { at: from },
            ArrivalKind::Poisson => {
                let per_s = match self.rate {
                    Some(r) if r.is_finite() && r > 0.0 && r <= 100_000.0 => r,
                    Some(r) => {
                        return bad(
                            "rate",
                            format!("joins per second, above 0 and at most 100,000, not {r}"),
                        );
                    }
                    None => {
                        return bad(
                            "rate",
                            "\"poisson\" arrivals need a rate (joins per second)".into(),
                        );
                    }
                };
                let last = from + Duration::from_secs_f64(f64::from(self.count) / per_s);
                if last >= duration {
                    return bad(
                        "rate",
                        format!(
                            "{} viewers at {per_s}/s from {} need about {} and the run lasts {}",
                            self.count,
                            HumanDuration(from),
                            HumanDuration(last),
                            HumanDuration(duration)
                        ),
                    );
                }
                Arrival::Poisson { from, per_s }
            }
            ArrivalKind::Flash => {
                let within = match self.within {
                    Some(w) if !w.get().is_zero() => w.get(),
                    _ => {
                        return bad(
                            "within",
                            "a flash crowd needs its span (`within`, above 0)".into(),
                        );
                    }
                };
                if from + within >= duration {
                    return bad(
                        "within",
                        format!(
                            "the crowd would still be joining when the {} run ends",
                            HumanDuration(duration)
                        ),
                    );
                }
                Arrival::Flash { from, within }
            }
        };
        let stay = match self.stay {
            Some(s) if s.get() < Duration::from_millis(100) => {
                return bad("stay", "at least 100ms".into());
            }
            s => s.map(HumanDuration::get),
        };
        Ok(Viewers {
            count: self.count,
            arrival,
            stay,
        })
    }
}

impl Viewers {
    /// Each viewer's join and leave instants (from the run's start), drawn
    /// from `seeds`; a viewer leaves at `end` unless it left earlier.
    pub fn schedule(
        &self,
        seeds: netem::rng::SeedTree,
        end: Duration,
    ) -> Vec<(Duration, Duration)> {
        let mut joins = seeds.child("joins").rng();
        let mut stays = seeds.child("stays").rng();
        let mut t = Duration::ZERO;
        (0..self.count)
            .map(|_| {
                let join = match self.arrival {
                    Arrival::AtOnce { at } => at,
                    Arrival::Poisson { from, per_s } => {
                        // Exponential gaps: -ln(U) / rate.
                        t += Duration::from_secs_f64(-(1.0 - joins.unit()).ln() / per_s);
                        from + t
                    }
                    Arrival::Flash { from, within } => from + within.mul_f64(joins.unit()),
                };
                let leave = match self.stay {
                    Some(mean) => join + mean.mul_f64(-(1.0 - stays.unit()).ln()),
                    None => end,
                };
                (join.min(end), leave.min(end))
            })
            .collect()
    }

    /// "N viewers, flash crowd within 5s from 2s" and the like.
    pub fn describe(&self) -> String {
        let arrival = match self.arrival {
            Arrival::AtOnce { at } => format!("all at {}", HumanDuration(at)),
            Arrival::Poisson { from, per_s } => {
                format!("Poisson {per_s}/s from {}", HumanDuration(from))
            }
            Arrival::Flash { from, within } => format!(
                "flash crowd within {} from {}",
                HumanDuration(within),
                HumanDuration(from)
            ),
        };
        let stay = self.stay.map_or(String::new(), |s| {
            format!(", staying {} on average", HumanDuration(s))
        });
        format!("{} viewers, {arrival}{stay}", self.count)
    }
}

/// The frames that count: captured in `[from, to)` and after the viewer's
/// play request was accepted (a late joiner's catch-up GOP is old by
/// design, not slow).
#[derive(Copy, Clone, Debug)]
pub struct Window {
    pub from: Time,
    pub to: Time,
}

/// What one viewer saw.
#[derive(Clone, Debug, Default)]
pub struct ViewerLog {
    /// When it started to connect.
    pub dialled: Time,
    pub accepted: Option<Time>,
    /// Its first video frame (any: the catch-up GOP counts for joining).
    pub first_frame: Option<Time>,
    /// Capture → arrival of each counted video frame, µs.
    pub latency_us: Vec<u32>,
    pub freezes: FreezeRule,
    /// Video frames skipped in the sequence (never delivered) after its
    /// first.
    pub missing: u64,
    last_seq: Option<u64>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

impl ViewerLog {
    pub fn new(dialled: Time) -> ViewerLog {
        ViewerLog {
            dialled,
            ..ViewerLog::default()
        }
    }

    /// Notes what the viewer's session reported.
    pub fn on(&mut self, w: Watched<'_>, window: &Window) {
        let (at, body) = match w {
            Watched::Accepted(t) => {
                self.accepted = Some(t);
                return;
            }
            Watched::Media {
                at,
                video: true,
                body,
            } => (at, body),
            Watched::Media { video: false, .. } => return,
        };
        let Some(h) = unpack(body, true) else {
            return; // configuration, or not a Glass frame
        };
        self.first_frame.get_or_insert(at);
        if let Some(last) = self.last_seq
            && h.seq > last + 1
        {
            self.missing += h.seq - last - 1;
        }
        self.last_seq = Some(self.last_seq.map_or(h.seq, |l| l.max(h.seq)));
        let counted = self.accepted.is_some_and(|a| h.capture >= a)
            && h.capture >= window.from
            && h.capture < window.to;
        if counted {
            self.freezes.frame(at);
            let us = at.saturating_since(h.capture).as_micros();
            self.latency_us.push(us.min(u128::from(u32::MAX)) as u32);
        }
    }
}

/// Figures across a fleet's viewers (ms).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetSummary {
    pub viewers: usize,
    /// Viewers that failed to connect or were cut off.
    pub failed: usize,
    /// Video frames counted, all viewers.
    pub frames: usize,
    /// Every counted frame of every viewer together.
    pub pooled_p50_ms: f64,
    pub pooled_p99_ms: f64,
    /// Each viewer's p50 and p99, then their median and worst across
    /// viewers.
    pub viewer_p50_median_ms: f64,
    pub viewer_p99_median_ms: f64,
    pub viewer_p99_max_ms: f64,
    pub freezes: u64,
    pub viewers_with_freezes: usize,
    pub missing_frames: u64,
    /// Dial → first video frame, across viewers.
    pub join_p50_ms: f64,
    pub join_p99_ms: f64,
    /// The first error a viewer reported, if any.
    pub first_error: Option<String>,
}

/// The nearest-rank `q` quantile of sorted values (0 when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Summarises a fleet's logs.
pub fn summarize(logs: &[ViewerLog]) -> FleetSummary {
    let ms = |us: &u32| f64::from(*us) / 1e3;
    let pooled = sorted(
        logs.iter()
            .flat_map(|l| l.latency_us.iter().map(ms))
            .collect(),
    );
    let per_viewer: Vec<(f64, f64)> = logs
        .iter()
        .filter(|l| !l.latency_us.is_empty())
        .map(|l| {
            let v = sorted(l.latency_us.iter().map(ms).collect());
            (quantile(&v, 0.5), quantile(&v, 0.99))
        })
        .collect();
    let p50s = sorted(per_viewer.iter().map(|p| p.0).collect());
    let p99s = sorted(per_viewer.iter().map(|p| p.1).collect());
    let joins = sorted(
        logs.iter()
            .filter_map(|l| Some(l.first_frame?.saturating_since(l.dialled).as_secs_f64() * 1e3))
            .collect(),
    );
    FleetSummary {
        viewers: logs.len(),
        failed: logs.iter().filter(|l| l.error.is_some()).count(),
        frames: pooled.len(),
        pooled_p50_ms: quantile(&pooled, 0.5),
        pooled_p99_ms: quantile(&pooled, 0.99),
        viewer_p50_median_ms: quantile(&p50s, 0.5),
        viewer_p99_median_ms: quantile(&p99s, 0.5),
        viewer_p99_max_ms: p99s.last().copied().unwrap_or(0.0),
        freezes: logs.iter().map(|l| l.freezes.count).sum(),
        viewers_with_freezes: logs.iter().filter(|l| l.freezes.count > 0).count(),
        missing_frames: logs.iter().map(|l| l.missing).sum(),
        join_p50_ms: quantile(&joins, 0.5),
        join_p99_ms: quantile(&joins, 0.99),
        first_error: logs.iter().find_map(|l| l.error.clone()),
    }
}

/// One viewer's figures, for results.json (ms from the run's start, or
/// durations in ms).
#[derive(Clone, Debug, Serialize)]
pub struct ViewerFigures {
    pub joined_ms: f64,
    /// Dial → first video frame.
    pub join_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub frames: usize,
    pub freezes: u64,
    pub missing: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ViewerFigures {
    pub fn of(l: &ViewerLog) -> ViewerFigures {
        let v = sorted(l.latency_us.iter().map(|us| f64::from(*us) / 1e3).collect());
        let q = |p| (!v.is_empty()).then(|| quantile(&v, p));
        ViewerFigures {
            joined_ms: l.dialled.as_secs_f64() * 1e3,
            join_ms: l
                .first_frame
                .map(|f| f.saturating_since(l.dialled).as_secs_f64() * 1e3),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            frames: v.len(),
            freezes: l.freezes.count,
            missing: l.missing,
            error: l.error.clone(),
        }
    }
}

/// A group's light viewers in results.json: across viewers, then each.
#[derive(Clone, Debug, Serialize)]
pub struct ViewersReport {
    pub described: String,
    pub summary: FleetSummary,
    pub viewers: Vec<ViewerFigures>,
}

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
                Ok(Err(e)) => ViewerLog {
                    error: Some(format!("the viewer's task: {e}")),
                    ..ViewerLog::default()
                },
                Err(_) => {
                    abort.abort();
                    ViewerLog {
                        error: Some("did not end with the run".into()),
                        ..ViewerLog::default()
                    }
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
    use crate::media::frame::{Frame, FrameHeader, FrameKind};

    fn frame(seq: u64, capture_ms: u64) -> Vec<u8> {
        let h = FrameHeader {
            kind: if seq == 0 { FrameKind::I } else { FrameKind::P },
            seq,
            gop: 0,
            capture: Time::from_millis(capture_ms),
            size: 200,
        };
        crate::media::source::video_tag(&Frame::new(h)).to_vec()
    }

    #[test]
    fn counts_frames_in_the_window_after_acceptance_and_gaps() {
        let window = Window {
            from: Time::from_millis(1000),
            to: Time::from_millis(2000),
        };
        let mut log = ViewerLog::new(Time::from_millis(900));
        log.on(Watched::Accepted(Time::from_millis(950)), &window);
        // The catch-up (captured before acceptance) does not count.
        let old = frame(0, 100);
        log.on(
            Watched::Media {
                at: Time::from_millis(960),
                video: true,
                body: &old,
            },
            &window,
        );
        for seq in [30u64, 31, 33] {
            let f = frame(seq, 1000 + seq);
            log.on(
                Watched::Media {
                    at: Time::from_millis(1000 + seq + 40),
                    video: true,
                    body: &f,
                },
                &window,
            );
        }
        assert_eq!(log.latency_us, vec![40_000; 3]);
        assert_eq!(log.missing, 29 + 1, "1–29 before the window, and 32");
        assert_eq!(log.first_frame, Some(Time::from_millis(960)));
        let s = summarize(&[log, ViewerLog::new(Time::ZERO)]);
        assert_eq!((s.viewers, s.frames, s.failed), (2, 3, 0));
        assert_eq!(s.pooled_p99_ms, 40.0);
        assert_eq!(s.viewer_p99_max_ms, 40.0);
        assert_eq!(s.join_p50_ms, 60.0);
    }

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

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
