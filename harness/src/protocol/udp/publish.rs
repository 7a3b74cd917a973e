//! What a UDP protocol publisher does once its session is up, as a state
//! machine over `now`: hands each message of its source to the session as
//! it falls due, lets the encoder follow congestion control's target (never
//! above the scenario's bitrate), and samples that for the ABR figures.
//! The async client (`client.rs`) and virtual time drive the same one.

use netem::Time;
use udpmedia::{Connection, OutFrame};

use crate::media::abr::AbrSample;
use crate::media::source::Source;
use crate::media::tag;
use crate::publisher::{ABR_SAMPLE, AbrReport, PublisherStats};

/// A publisher's media flow into its session.
pub struct Publishing {
    pub source: Source,
    pub stats: PublisherStats,
    /// The scenario's bitrate: the encoder never goes above it.
    ceiling: Option<f64>,
    abr: Option<AbrReport>,
    next_sample: Time,
}

impl Publishing {
    /// Starts at `ready` (the session can carry media): the sequence
    /// headers go out at once. `stats` has the set-up recorded.
    pub fn start(
        mut source: Source,
        mut stats: PublisherStats,
        conn: &mut Connection,
        ready: Time,
    ) -> Result<Publishing, udpmedia::ConnError> {
        stats.started_at = Some(source.camera_start());
        stats.transport = "udp".into();
        let ceiling = source.encoder_mut().map(|e| e.target_bitrate());
        for m in source.sequence_headers() {
            let f = OutFrame {
                video: m.video,
                key: false,
                timestamp: m.timestamp,
                data: &m.data,
            };
            conn.send_frame(ready, f)?;
        }
        Ok(Publishing {
            source,
            stats,
            ceiling,
            abr: ceiling.map(|_| AbrReport::default()),
            next_sample: ready,
        })
    }

    /// When the next message is due.
    pub fn poll_timeout(&self) -> Time {
        self.source.poll_timeout()
    }

    /// Every message due at `now` into the session, then the encoder's
    /// bitrate after congestion control's target.
    pub fn handle_timeout(
        &mut self,
        now: Time,
        conn: &mut Connection,
    ) -> Result<(), udpmedia::ConnError> {
        let start = self.source.camera_start();
        while let Some(m) = self.source.poll_message(now) {
            self.stats.count(&m, start);
            let f = OutFrame {
                video: m.video,
                key: tag::is_key_tag(m.video, &m.data),
                timestamp: m.timestamp,
                data: &m.data,
            };
            conn.send_frame(now, f)?;
            self.stats.note_sent_at(m.seq, now);
        }
        let target = conn.sender_mut().and_then(|s| s.poll_target());
        if let (Some(t), Some(max), Some(e)) = (target, self.ceiling, self.source.encoder_mut()) {
            let new = (t as f64).min(max);
            if (new - e.target_bitrate()).abs() > 1.0
                && let Some(a) = &mut self.abr
            {
                a.switches += 1;
            }
            e.set_target_bitrate(new);
        }
        if now >= self.next_sample
            && let (Some(a), Some(e), Some(s)) =
                (&mut self.abr, self.source.encoder_mut(), conn.sender())
        {
            self.next_sample = now + ABR_SAMPLE;
            let target = e.target_bitrate();
            // The send queue as time at the current rate.
            let queued_bits = s.queued_bytes() as f64 * 8.0;
            a.samples.push(AbrSample {
                at_ms: now.as_secs_f64() * 1e3,
                backlog_ms: queued_bits / target.max(1.0) * 1e3,
                target_bps: target,
            });
        }
        Ok(())
    }

    /// The publisher's statistics; ABR's figures when congestion control
    /// set the encoder's target.
    pub fn finish(mut self, conn: &Connection) -> PublisherStats {
        self.stats.abr = self
            .abr
            .filter(|_| conn.sender().is_some_and(|s| s.media_target().is_some()));
        self.stats
    }
}
