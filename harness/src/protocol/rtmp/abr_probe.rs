//! ABR's view of an RTMP publisher: samples the send backlog (frames due
//! but not yet written, plus what the transport holds unsent) and steers the
//! encoder's target bitrate.

use std::time::Duration;

use anyhow::Result;
use netem::Time;
use netem::time::Clock;

use crate::media::abr::Abr;
use crate::media::source::Source;
use crate::publisher::ABR_SAMPLE;

/// ABR's view of the publisher: the controller, the TCP socket to read the
/// unsent queue of, and the previous sample (for the drain rate).
pub(super) struct AbrProbe {
    pub(super) abr: Abr,
    pub(super) fd: Option<std::os::fd::RawFd>,
    pub(super) next: Time,
    /// (when, bytes delivered, unsent bytes in the transport).
    pub(super) last: Option<(Time, u64, u64)>,
    /// Smoothed drain rate, bit/s.
    pub(super) drain: Option<f64>,
}

impl AbrProbe {
    /// Backlog = frames due but not yet handed over + what the transport
    /// holds unsent; drain rate = what left the sender since the last sample.
    pub(super) fn sample(&mut self, now: Time, source: &mut Source, bytes_sent: u64) {
        self.next = now + ABR_SAMPLE;
        let unsent = self.fd.map_or(0, super::transport::unsent_fd);
        // TCP: what the peer acknowledged (the path's delivery); QUIC (whose
        // small send window bounds what it holds): what left the publisher.
        let acked = self.fd.and_then(|fd| {
            struct Fd(std::os::fd::RawFd);
            impl std::os::fd::AsRawFd for Fd {
                fn as_raw_fd(&self) -> std::os::fd::RawFd {
                    self.0
                }
            }
            netem::adapters::tcpinfo::tcp_info(&Fd(fd))
                .ok()
                .map(|i| i.bytes_acked)
        });
        let delivered = acked.unwrap_or(bytes_sent);
        let drain_bps = self.last.and_then(|(t, d, _)| {
            let dt = now.saturating_since(t).as_secs_f64();
            (dt > 0.05).then(|| delivered.saturating_sub(d) as f64 * 8.0 / dt)
        });
        self.last = Some((now, delivered, unsent));
        if let Some(d) = drain_bps {
            self.drain = Some(self.drain.map_or(d, |old| 0.7 * old + 0.3 * d));
        }
        // The unsent queue as time: how long it takes to leave at the rate
        // the path has been taking it (not at the new, lower target).
        let rate = self
            .drain
            .filter(|&d| d > 10_000.0)
            .unwrap_or_else(|| self.abr.target_bps().max(1.0));
        let behind = now.saturating_since(source.poll_timeout());
        let backlog = behind + Duration::from_secs_f64(unsent as f64 * 8.0 / rate);
        if let Some(new) = self.abr.on_backlog(now, backlog, self.drain)
            && let Some(e) = source.encoder_mut()
        {
            e.set_target_bitrate(new);
        }
    }
}

/// Awaits a write, sampling ABR meanwhile (a write blocks while the path
/// is congested, which is when ABR must act); `false` when the run ended.
pub(super) async fn write_sampling(
    write: impl std::future::Future<Output = Result<()>>,
    probe: &mut Option<AbrProbe>,
    source: &mut Source,
    bytes_sent: u64,
    clock: Clock,
    end: Time,
) -> Result<bool> {
    tokio::pin!(write);
    loop {
        let next = probe.as_ref().map_or(Time::MAX, |p| p.next);
        tokio::select! {
            r = &mut write => { r?; return Ok(true); }
            _ = tokio::time::sleep_until(clock.instant(end).into()) => return Ok(false),
            _ = tokio::time::sleep_until(clock.instant(next.min(end)).into()), if next < end => {
                if let Some(p) = probe {
                    p.sample(clock.time(std::time::Instant::now()), source, bytes_sent);
                }
            }
        }
    }
}
