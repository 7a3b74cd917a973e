//! The sending half: frames in, datagrams out. Splits frames into packets,
//! adds FEC and RED, keeps packets for retransmission, answers NACKs, and
//! runs congestion control on the receiver's feedback.

use std::collections::VecDeque;
use std::time::Duration;

use netem::Time;

use crate::cc::{CcSample, Gcc, Pacer, PacketResult};
use crate::config::{CcMode, Config};
use crate::error::ConnError;
use crate::fec::{FecEncoder, FecPacket};
use crate::nack::RetransmitBuffer;
use crate::seq::{Unwrapper, unwrap};
use crate::stats::SenderStats;
use crate::wire::{self, Fec, Feedback, NackEntry, RedBlock, XFLAG_RETRANSMIT, flags, write};

/// One frame to send.
#[derive(Clone, Copy, Debug)]
pub struct OutFrame<'a> {
    pub video: bool,
    pub key: bool,
    /// Media timestamp, ms (RTMP's).
    pub timestamp: u32,
    pub data: &'a [u8],
}

enum Queued {
    Media {
        seq: u64,
        protected: Vec<u8>,
        enqueued: Time,
    },
    Fec(FecPacket, Time),
}

impl Queued {
    fn enqueued(&self) -> Time {
        match self {
            Queued::Media { enqueued, .. } | Queued::Fec(_, enqueued) => *enqueued,
        }
    }

    fn len(&self) -> usize {
        match self {
            Queued::Media { protected, .. } => wire::PROTECTED_OFFSET + protected.len(),
            Queued::Fec(f, _) => wire::FEC_HEADER_LEN + f.payload.len(),
        }
    }
}

/// Packets waiting for the pacer, oldest first (pushed at non-decreasing
/// instants), with their total size kept as they come and go.
#[derive(Default)]
struct SendQueue {
    items: VecDeque<Queued>,
    bytes: usize,
}

impl SendQueue {
    fn push(&mut self, q: Queued) {
        self.bytes += q.len();
        self.items.push_back(q);
    }

    fn pop(&mut self) -> Option<Queued> {
        let q = self.items.pop_front()?;
        self.bytes -= q.len();
        Some(q)
    }

    fn front(&self) -> Option<&Queued> {
        self.items.front()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The pacer drains its queue within this share of the latency whatever
/// the target (libwebrtc's queue time limit): a queue that outgrows the
/// pacing rate (audio is not under congestion control; a deep cut) would
/// otherwise age past the latency and be dropped whole.
const QUEUE_DRAIN_SHARE: f64 = 0.5;

/// Pacing rate as a multiple of the target (libwebrtc's pacing factor).
const PACING_FACTOR: f64 = 2.5;
/// Target changes smaller than this are not reported.
const TARGET_STEP: f64 = 0.02;

pub struct Sender {
    cfg: Config,
    session: u32,
    epoch: Time,
    next_seq: u64,
    sent_through: u64,
    next_frame: u32,
    queue: SendQueue,
    retransmits: VecDeque<Vec<u8>>,
    buffer: RetransmitBuffer,
    /// (seq, sent, size) of first transmissions, for feedback.
    history: VecDeque<(u64, Time, usize)>,
    fec: FecEncoder,
    red: VecDeque<(u32, u32, Vec<u8>)>,
    gcc: Option<Gcc>,
    pacer: Option<Pacer>,
    srtt: Option<Duration>,
    report_clock: Unwrapper,
    loss_ewma: f64,
    last_target: f64,
    /// The encoder bitrate congestion control asked for, not yet taken.
    new_target: Option<u64>,
    stats: SenderStats,
}

impl Sender {
    pub fn new(cfg: Config, session: u32, now: Time) -> Self {
        let (gcc, pacer) = match cfg.cc {
            CcMode::Off => (None, None),
            CcMode::Gcc => {
                let start = cfg.start_bitrate as f64;
                (
                    Some(Gcc::new(
                        start,
                        cfg.min_bitrate as f64,
                        cfg.max_bitrate as f64,
                    )),
                    Some(Pacer::new(start * PACING_FACTOR)),
                )
            }
        };
        Sender {
            fec: FecEncoder::new(&cfg.fec, cfg.fec_flush),
            buffer: RetransmitBuffer::new(cfg.send_buffer),
            last_target: cfg.start_bitrate as f64,
            cfg,
            session,
            epoch: now,
            next_seq: 0,
            sent_through: 0,
            next_frame: 0,
            queue: SendQueue::default(),
            retransmits: VecDeque::new(),
            history: VecDeque::new(),
            red: VecDeque::new(),
            gcc,
            pacer,
            srtt: None,
            report_clock: Unwrapper::default(),
            loss_ewma: 0.0,
            new_target: None,
            stats: SenderStats::default(),
        }
    }

    pub(crate) fn set_session(&mut self, session: u32) {
        self.session = session;
    }

    pub(crate) fn set_latency(&mut self, latency: Duration) {
        self.cfg.latency = latency;
    }

    /// The sequence number the next new packet gets.
    /// One past the highest sequence number transmitted (packets numbered
    /// but still queued behind the pacer are not announced as sent).
    pub fn sent_through(&self) -> u64 {
        self.sent_through
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Queues a frame: split into packets, FEC computed, RED copies added
    /// to audio.
    pub fn send_frame(&mut self, now: Time, f: OutFrame<'_>) -> Result<(), ConnError> {
        let per = self.cfg.payload_per_packet();
        let mut fl = 0;
        if f.video {
            fl |= flags::VIDEO;
        }
        if f.key {
            fl |= flags::KEY;
        }
        let frame = self.next_frame;
        self.next_frame = self.next_frame.wrapping_add(1);
        let mut red_payload = Vec::new();
        let payload: &[u8] = if !f.video && self.cfg.red > 0 && f.data.len() + 3 <= per {
            let mut blocks = Vec::new();
            let mut size = f.data.len() + 3;
            for (fr, ts, d) in self.red.iter().rev() {
                if blocks.len() >= usize::from(self.cfg.red) || size + 10 + d.len() > per {
                    break;
                }
                size += 10 + d.len();
                blocks.push(RedBlock {
                    frame: *fr,
                    timestamp: *ts,
                    data: d,
                });
            }
            self.stats.red_copies += blocks.len() as u64;
            write::red(&mut red_payload, f.data, &blocks);
            fl |= flags::RED;
            if self.red.len() >= 4 {
                self.red.pop_front();
            }
            self.red.push_back((frame, f.timestamp, f.data.to_vec()));
            &red_payload
        } else {
            f.data
        };
        let frags = payload.len().div_ceil(per).max(1);
        if frags > usize::from(wire::MAX_FRAGMENTS) {
            return Err(ConnError::FrameTooLarge {
                size: f.data.len(),
                packets: frags,
                max: usize::from(wire::MAX_FRAGMENTS),
            });
        }
        self.stats.frames_sent += 1;
        self.stats.byte_media += f.data.len() as u64;
        let mut fec = Vec::new();
        for i in 0..frags {
            let chunk = &payload[(i * per).min(payload.len())..((i + 1) * per).min(payload.len())];
            let mut protected = Vec::with_capacity(wire::PROTECTED_HEADER_LEN + chunk.len());
            write::protected(
                &mut protected,
                frame,
                i as u16,
                frags as u16,
                fl,
                f.timestamp,
                chunk,
            );
            let seq = self.next_seq;
            self.next_seq += 1;
            self.fec.push(now, seq, &protected, &mut fec);
            self.queue.push(Queued::Media {
                seq,
                protected,
                enqueued: now,
            });
        }
        for f in fec {
            self.queue.push(Queued::Fec(f, now));
        }
        Ok(())
    }

    /// The next datagram to send now, if any (retransmissions first; media
    /// and FEC paced when congestion control is on).
    pub fn poll_transmit(&mut self, now: Time) -> Option<Vec<u8>> {
        self.expire(now);
        if let Some(d) = self.retransmits.pop_front() {
            self.stats.pkt_sent += 1;
            self.stats.pkt_retrans += 1;
            self.stats.byte_sent += d.len() as u64;
            self.stats.byte_retrans += d.len() as u64;
            if let Some(p) = &mut self.pacer {
                p.on_sent(now, d.len());
            }
            return Some(d);
        }
        let mut fec_out = Vec::new();
        self.fec.handle_timeout(now, &mut fec_out);
        for f in fec_out {
            self.queue.push(Queued::Fec(f, now));
        }
        if self.queue.is_empty() {
            return None;
        }
        if let Some(p) = &mut self.pacer {
            let target = self
                .gcc
                .as_ref()
                .map_or(self.cfg.start_bitrate as f64, |g| g.target_bps());
            // Everything queued out before the oldest has waited its share.
            let queued = self.queue.bytes;
            let waited = self
                .queue
                .front()
                .map_or(Duration::ZERO, |q| now.saturating_since(q.enqueued()));
            let left = self
                .cfg
                .latency
                .mul_f64(QUEUE_DRAIN_SHARE)
                .saturating_sub(waited)
                .max(Duration::from_millis(5));
            let drain = queued as f64 * 8.0 / left.as_secs_f64();
            p.set_rate((target * PACING_FACTOR).max(drain));
            if p.next_send(now) > now {
                return None;
            }
        }
        let mut d = Vec::with_capacity(self.cfg.mtu);
        match self.queue.pop()? {
            Queued::Media { seq, protected, .. } => {
                write::data(
                    &mut d,
                    self.session,
                    seq as u32,
                    self.send_us(now),
                    0,
                    &protected,
                );
                self.sent_through = self.sent_through.max(seq + 1);
                self.stats.pkt_sent += 1;
                self.stats.pkt_sent_unique += 1;
                self.stats.byte_sent += d.len() as u64;
                self.stats.byte_sent_unique += d.len() as u64;
                if self.history.len() >= self.cfg.send_buffer {
                    self.history.pop_front();
                }
                self.history.push_back((seq, now, d.len()));
                if self.cfg.nack {
                    self.buffer.store(now, seq, d.clone());
                }
            }
            Queued::Fec(f, _) => {
                write::fec(
                    &mut d,
                    self.session,
                    &Fec {
                        scheme: f.scheme,
                        base: f.base as u32,
                        count: f.count,
                        stride: f.stride,
                        index: f.index,
                        total: f.total,
                        len_xor: f.len_xor,
                        payload: &f.payload,
                    },
                );
                self.stats.pkt_snd_filter_extra += 1;
                self.stats.byte_snd_filter_extra += d.len() as u64;
                self.stats.byte_sent += d.len() as u64;
            }
        }
        if let Some(p) = &mut self.pacer {
            p.on_sent(now, d.len());
        }
        Some(d)
    }

    /// Drops media that waited longer than the latency (too late to be of
    /// use: SRT's sender-side drop) and forgets stale retransmission copies.
    fn expire(&mut self, now: Time) {
        let latency = self.cfg.latency;
        // Media that waited past the latency is of no use; nor is FEC that
        // did (what it protects went, or is as late).
        while self
            .queue
            .front()
            .is_some_and(|q| now.saturating_since(q.enqueued()) > latency)
        {
            if let Some(Queued::Media { .. }) = self.queue.pop() {
                self.stats.pkt_snd_drop += 1;
            }
        }
        self.buffer
            .expire(now, latency + self.srtt.unwrap_or_default());
    }

    /// When `poll_transmit` has something again.
    pub fn poll_timeout(&self, now: Time) -> Option<Time> {
        let paced = if !self.retransmits.is_empty() {
            Some(now)
        } else if self.queue.is_empty() {
            None
        } else {
            Some(self.pacer.as_ref().map_or(now, |p| p.next_send(now)))
        };
        [paced, self.fec.poll_timeout()].into_iter().flatten().min()
    }

    fn send_us(&self, now: Time) -> u32 {
        (now.saturating_since(self.epoch).as_micros() as u64) as u32
    }

    pub fn on_nack(&mut self, now: Time, entries: &[NackEntry]) {
        self.stats.pkt_recv_nak += 1;
        let reference = self.next_seq;
        let seqs: Vec<u64> = entries
            .iter()
            .flat_map(|e| e.seqs())
            .map(|s| unwrap(reference, s))
            .collect();
        let min_interval = self
            .srtt
            .map_or(Duration::from_millis(5), |r| r.mul_f64(0.75))
            .max(Duration::from_millis(2));
        let max_age = self.cfg.latency + self.srtt.unwrap_or_default();
        let answered = self
            .buffer
            .answer(now, seqs.iter().copied(), min_interval, max_age);
        self.stats.pkt_nak_ignored += (seqs.len() - answered.len()) as u64;
        for (_, mut d) in answered {
            d[wire::COMMON_LEN + 8] |= XFLAG_RETRANSMIT;
            self.retransmits.push_back(d);
        }
    }

    /// A feedback report: RTT, loss and arrival times for congestion control.
    pub fn on_feedback(&mut self, now: Time, fb: &Feedback<'_>) {
        let report_us = self.report_clock.extend(fb.report_us);
        let Some(&(first, _, _)) = self.history.front() else {
            return;
        };
        let reference = self.next_seq;
        let mut results = Vec::with_capacity(fb.count());
        let mut rtt_sample: Option<Duration> = None;
        let mut lost = 0usize;
        for (s, before) in fb.arrivals() {
            let seq = unwrap(reference, s);
            let Some(i) = seq.checked_sub(first).and_then(|i| usize::try_from(i).ok()) else {
                continue;
            };
            let Some(&(hseq, sent, size)) = self.history.get(i) else {
                continue;
            };
            if hseq != seq {
                continue;
            }
            if before.is_none() {
                lost += 1;
            }
            if let Some(b) = before {
                let since = now.saturating_since(sent);
                let held = Duration::from_micros(u64::from(b));
                if since > held {
                    let r = since - held;
                    rtt_sample = Some(rtt_sample.map_or(r, |x| x.min(r)));
                }
            }
            results.push(PacketResult {
                sent,
                size,
                arrival_us: before.map(|b| report_us.saturating_sub(u64::from(b))),
            });
        }
        if let Some(r) = rtt_sample {
            self.srtt = Some(match self.srtt {
                None => r,
                Some(s) => s.mul_f64(0.875) + r.mul_f64(0.125),
            });
        }
        if !results.is_empty() {
            let loss = lost as f64 / results.len() as f64;
            self.loss_ewma = 0.9 * self.loss_ewma + 0.1 * loss;
            self.fec.on_loss(self.loss_ewma);
        }
        let rtt = self.srtt.unwrap_or(Duration::from_millis(100));
        if let Some(g) = &mut self.gcc {
            g.on_feedback(now, report_us, &results, rtt);
            let target = g.target_bps();
            if let Some(p) = &mut self.pacer {
                p.set_rate(target * PACING_FACTOR);
            }
            if (target - self.last_target).abs() > TARGET_STEP * self.last_target {
                self.last_target = target;
                self.new_target = Some(self.media_bitrate(target));
            }
        }
    }

    /// Media bitrate for a transport target: what is left after FEC.
    fn media_bitrate(&self, target: f64) -> u64 {
        (target / (1.0 + self.fec.overhead())) as u64
    }

    /// A new media bitrate for the encoder, when congestion control moved.
    pub fn poll_target(&mut self) -> Option<u64> {
        self.new_target.take()
    }

    /// The encoder bitrate congestion control allows now.
    pub fn media_target(&self) -> Option<u64> {
        self.gcc
            .as_ref()
            .map(|g| self.media_bitrate(g.target_bps()))
    }

    pub fn cc_samples(&self) -> &[CcSample] {
        self.gcc.as_ref().map_or(&[], |g| g.samples())
    }

    /// Bytes waiting for the pacer (media and FEC).
    pub fn queued_bytes(&self) -> usize {
        self.queue.bytes
    }

    pub fn stats(&self) -> SenderStats {
        let mut s = self.stats.clone();
        s.ms_rtt = self.srtt.map_or(0.0, |r| r.as_secs_f64() * 1e3);
        s.loss_reported = self.loss_ewma;
        s.fec_overhead = self.fec.overhead();
        if let Some(g) = &self.gcc {
            s.mbps_bandwidth = g.receive_bps().unwrap_or(0.0) / 1e6;
            s.mbps_send_rate = g.target_bps() / 1e6;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_drains_a_queue_the_target_cannot_carry() {
        // Congestion control at its floor (150 kbit/s, paced at 375) while
        // 100 kB wait: paced at the target they would take 2 s and age past
        // the 200 ms latency; the queue limit drains them within half of it.
        let cfg = Config {
            start_bitrate: 150_000,
            min_bitrate: 150_000,
            latency: Duration::from_millis(200),
            ..Config::default()
        };
        let mut s = Sender::new(cfg, 1, Time::ZERO);
        for i in 0..10 {
            s.send_frame(
                Time::ZERO,
                OutFrame {
                    video: true,
                    key: false,
                    timestamp: i,
                    data: &[0; 10_000],
                },
            )
            .unwrap();
        }
        let mut t = Time::ZERO;
        let mut sent = 0;
        while let Some(next) = s.poll_timeout(t) {
            if next > Time::from_millis(150) {
                break;
            }
            t = next.max(t);
            while s.poll_transmit(t).is_some() {
                sent += 1;
            }
            if s.queued_bytes() == 0 {
                break;
            }
            t = t + Duration::from_micros(100);
        }
        assert_eq!((s.queued_bytes(), s.stats().pkt_snd_drop), (0, 0), "at {t}");
        assert!(
            sent >= 90 && t <= Time::from_millis(120),
            "{sent} packets by {t}"
        );
    }
}
