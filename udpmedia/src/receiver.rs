//! The receiving half: datagrams in, frames out. Finds gaps, asks for them
//! (NACK) until their deadline, rebuilds with FEC and RED, reassembles
//! frames, and reports arrivals for congestion control.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use netem::Time;

use crate::config::Config;
use crate::fec::{FecDecoder, FecPacket};
use crate::nack::{Arrived, LossTracker};
use crate::seq::{Unwrapper, unwrap};
use crate::stats::{Percentiles, ReceiverStats};
use crate::wire::{self, Data, Fec, NackEntry, flags, write};

/// A frame delivered to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFrame {
    pub video: bool,
    pub key: bool,
    pub timestamp: u32,
    pub data: Vec<u8>,
    /// Some packet of it was rebuilt or sent again.
    pub repaired: bool,
}

/// How a packet came to be known.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum How {
    Original,
    Retransmit,
    Fec,
}

struct Assembly {
    frags: Vec<Option<Vec<u8>>>,
    have: usize,
    flags: u8,
    timestamp: u32,
    deadline: Time,
    repaired: bool,
}

/// With FEC in use, how much longer a gap waits for FEC before a NACK
/// (unless the FEC packet covering it comes first and cannot rebuild it).
const FEC_HOLD: Duration = Duration::from_millis(20);
/// A sequence number this far beyond the highest is not believed.
pub const MAX_JUMP: u64 = 1 << 14;
/// Sequence numbers remembered (for duplicates and late arrivals).
const SEEN_SLOTS: usize = 1 << 14;
/// Frames under reassembly at most.
const MAX_ASSEMBLIES: usize = 1024;
/// Recovery delays kept for percentiles.
const MAX_DELAYS: usize = 1 << 20;

pub struct Receiver {
    cfg: Config,
    session: u32,
    epoch: Time,
    highest: Option<u64>,
    seen: Vec<u64>,
    tracker: LossTracker,
    fec: FecDecoder,
    assemblies: BTreeMap<u64, Assembly>,
    delivered_frames: BTreeSet<u64>,
    frame_clock: Unwrapper,
    frames: VecDeque<InFrame>,
    /// Ordered delivery: complete frames waiting for earlier ones, with
    /// their deadlines; and the next frame id to release.
    waiting: BTreeMap<u64, (InFrame, Time)>,
    next_release: u64,
    send_clock: Unwrapper,
    /// min(arrival − send), µs: the fastest one-way delay plus clock offset.
    offset_us: Option<i64>,
    /// Original arrivals not yet reported: seq → arrival µs.
    feedback: BTreeMap<u64, u64>,
    next_feedback: Time,
    rtt: Option<Duration>,
    pending_nacks: Vec<NackEntry>,
    /// One past the last packet an FEC packet received so far covers.
    fec_through: Option<u64>,
    delays_fec: Vec<f32>,
    delays_nack: Vec<f32>,
    delays_event: Vec<f32>,
    stats: ReceiverStats,
}

impl Receiver {
    pub fn new(cfg: Config, session: u32, now: Time) -> Self {
        Receiver {
            next_feedback: now + cfg.feedback_interval,
            cfg,
            session,
            epoch: now,
            highest: None,
            seen: vec![u64::MAX; SEEN_SLOTS],
            tracker: LossTracker::default(),
            fec: FecDecoder::default(),
            assemblies: BTreeMap::new(),
            delivered_frames: BTreeSet::new(),
            frame_clock: Unwrapper::default(),
            frames: VecDeque::new(),
            waiting: BTreeMap::new(),
            next_release: 0,
            send_clock: Unwrapper::default(),
            offset_us: None,
            feedback: BTreeMap::new(),
            rtt: None,
            pending_nacks: Vec::new(),
            fec_through: None,
            delays_fec: Vec::new(),
            delays_nack: Vec::new(),
            delays_event: Vec::new(),
            stats: ReceiverStats::default(),
        }
    }

    pub(crate) fn set_session(&mut self, session: u32) {
        self.session = session;
    }

    pub(crate) fn set_latency(&mut self, latency: Duration) {
        self.cfg.latency = latency;
    }

    /// The sender's RTT estimate (from its keepalives).
    pub fn set_rtt(&mut self, rtt: Duration) {
        if !rtt.is_zero() {
            self.rtt = Some(rtt);
        }
    }

    fn local_us(&self, now: Time) -> u64 {
        now.saturating_since(self.epoch).as_micros() as u64
    }

    /// The sequence number after the highest known.
    fn expected(&self) -> u64 {
        self.highest.map_or(0, |h| h + 1)
    }

    fn seen(&self, seq: u64) -> bool {
        self.seen[(seq % SEEN_SLOTS as u64) as usize] == seq
    }

    /// Retry interval for NACKs: an RTT and a half, plus the sender's
    /// pacing slack.
    fn retry(&self) -> Duration {
        self.rtt.unwrap_or(Duration::from_millis(50)).mul_f64(1.5) + Duration::from_millis(5)
    }

    pub fn on_data(&mut self, now: Time, d: &Data<'_>) {
        self.stats.pkt_recv += 1;
        self.stats.byte_recv += (wire::PROTECTED_OFFSET + d.protected.len()) as u64;
        let seq = unwrap(self.expected(), d.seq);
        let send_us = self.send_clock.extend(d.send_us);
        let arrival_us = self.local_us(now);
        let how = if d.retransmit {
            self.stats.pkt_rcv_retrans += 1;
            How::Retransmit
        } else {
            let off = arrival_us as i64 - send_us as i64;
            self.offset_us = Some(self.offset_us.map_or(off, |o| o.min(off)));
            How::Original
        };
        // Deadline of packets this one reveals missing: sent before it.
        let deadline = self.deadline_of(send_us);
        if self.packet(now, seq, d.protected, how, deadline)
            && how == How::Original
            && self.feedback.len() < 4 * wire::MAX_FEEDBACK_PACKETS
        {
            self.feedback.insert(seq, arrival_us);
        }
        self.loss_events();
        self.ask(now);
    }

    /// The sender says it has sent everything below `next_seq`: packets
    /// after the highest received were lost (a lost tail shows no gap).
    pub fn on_sender_progress(&mut self, now: Time, next_seq: u32) {
        let expected = self.expected();
        let next = unwrap(expected, next_seq);
        if next > expected && next < expected + MAX_JUMP {
            self.stats.pkt_rcv_loss += next - expected;
            self.tracker.gap(
                now,
                expected,
                next,
                self.nack_delay(),
                now + self.cfg.latency,
            );
            self.highest = Some(next - 1);
            self.ask(now);
        }
    }

    /// Counts the loss events the tracker finished.
    fn loss_events(&mut self) {
        for (d, ok) in self.tracker.take_finished() {
            self.stats.loss_events += 1;
            if ok {
                if self.delays_event.len() < MAX_DELAYS {
                    self.delays_event.push(d.as_secs_f64() as f32 * 1e3);
                }
            } else {
                self.stats.loss_events_unrecovered += 1;
            }
        }
    }

    /// Local instant by which a packet sent at `send_us` is of use.
    fn deadline_of(&self, send_us: u64) -> Time {
        let local = send_us as i64 + self.offset_us.unwrap_or(0);
        self.epoch + Duration::from_micros(local.max(0) as u64) + self.cfg.latency
    }

    /// How long a gap waits before it is asked for: the reorder tolerance,
    /// and with FEC in use long enough for FEC to rebuild it first (sooner
    /// if its FEC packet comes and cannot).
    fn nack_delay(&self) -> Duration {
        match self.fec_through {
            Some(_) => self.cfg.reorder_time + FEC_HOLD,
            None => self.cfg.reorder_time,
        }
    }

    pub fn on_fec(&mut self, now: Time, f: &Fec<'_>) {
        self.stats.pkt_rcv_filter_extra += 1;
        let base = unwrap(self.expected(), f.base);
        let through = base + u64::from(f.count.max(1) - 1) * u64::from(f.stride) + 1;
        if through <= self.expected() + MAX_JUMP {
            self.fec_through = Some(self.fec_through.map_or(through, |t| t.max(through)));
        }
        let rebuilt = self.fec.on_fec(FecPacket {
            scheme: f.scheme,
            base,
            count: f.count,
            stride: f.stride,
            index: f.index,
            total: f.total,
            len_xor: f.len_xor,
            payload: f.payload.to_vec(),
        });
        self.rebuilt(now, rebuilt);
        // What this FEC packet covered and could not rebuild: ask now.
        self.tracker.eligible_through(now, through - 1);
        self.loss_events();
        self.ask(now);
    }

    fn rebuilt(&mut self, now: Time, rebuilt: Vec<(u64, Vec<u8>)>) {
        for (seq, p) in rebuilt {
            let deadline = now + self.cfg.latency;
            self.packet(now, seq, &p, How::Fec, deadline);
        }
    }

    /// A packet became known; `false` if it was a duplicate, too old or
    /// not believable.
    fn packet(&mut self, now: Time, seq: u64, protected: &[u8], how: How, deadline: Time) -> bool {
        // The sender numbers from 0: anything before the first arrival was lost.
        let expected = self.expected();
        if seq >= expected + MAX_JUMP {
            self.stats.pkt_rcv_invalid += 1;
            return false;
        }
        if self.seen(seq) {
            self.stats.pkt_rcv_duplicate += 1;
            return false;
        }
        if seq + (SEEN_SLOTS as u64) < expected {
            self.stats.pkt_rcv_belated += 1;
            return false;
        }
        let Ok(media) = wire::media(protected) else {
            self.stats.pkt_rcv_invalid += 1;
            return false;
        };
        let outcome = self.tracker.arrived(now, seq);
        if seq < expected {
            match outcome {
                Some(Arrived { delay, .. }) => {
                    let ms = delay.as_secs_f64() as f32 * 1e3;
                    match how {
                        How::Original => self.stats.pkt_rcv_reordered += 1,
                        How::Retransmit => {
                            self.stats.pkt_rcv_retrans_supply += 1;
                            if self.delays_nack.len() < MAX_DELAYS {
                                self.delays_nack.push(ms);
                            }
                        }
                        How::Fec => {
                            self.stats.pkt_rcv_filter_supply += 1;
                            if self.delays_fec.len() < MAX_DELAYS {
                                self.delays_fec.push(ms);
                            }
                        }
                    }
                }
                None => {
                    // Given up on already (or never tracked): too late.
                    self.stats.pkt_rcv_belated += 1;
                }
            }
        } else {
            if seq > expected {
                self.stats.pkt_rcv_loss += seq - expected;
                self.tracker
                    .gap(now, expected, seq, self.nack_delay(), deadline);
            }
            self.highest = Some(seq);
            // Enough later packets: ask at once, unless FEC may still
            // rebuild them (its packet for them has not come yet).
            let mut limit = seq.saturating_sub(u64::from(self.cfg.reorder_packets));
            if let Some(f) = self.fec_through {
                limit = limit.min(f.saturating_sub(1));
            }
            if seq >= u64::from(self.cfg.reorder_packets) {
                self.tracker.eligible_through(now, limit);
            }
            if how != How::Original {
                // Lost, and rebuilt before a later packet showed the gap.
                self.stats.pkt_rcv_loss += 1;
                match how {
                    How::Fec => {
                        self.stats.pkt_rcv_filter_supply += 1;
                        if self.delays_fec.len() < MAX_DELAYS {
                            self.delays_fec.push(0.0);
                        }
                    }
                    _ => self.stats.pkt_rcv_retrans_supply += 1,
                }
            }
        }
        self.seen[(seq % SEEN_SLOTS as u64) as usize] = seq;
        self.stats.pkt_recv_unique += 1;
        self.assemble(&media, how != How::Original, deadline);
        if how != How::Fec {
            let rebuilt = self.fec.on_data(seq, protected);
            self.rebuilt(now, rebuilt);
        }
        true
    }

    fn assemble(&mut self, m: &wire::Media<'_>, repaired: bool, deadline: Time) {
        let frame = self.frame_clock.extend(m.frame);
        if self.delivered_frames.contains(&frame) {
            return;
        }
        if m.frags == 1 {
            self.deliver(
                frame,
                m.flags,
                m.timestamp,
                m.payload.to_vec(),
                repaired,
                deadline,
            );
            return;
        }
        if !self.assemblies.contains_key(&frame) && self.assemblies.len() >= MAX_ASSEMBLIES {
            self.assemblies.pop_first();
            self.stats.frames_dropped += 1;
        }
        let a = self.assemblies.entry(frame).or_insert_with(|| Assembly {
            frags: vec![None; usize::from(m.frags)],
            have: 0,
            flags: m.flags,
            timestamp: m.timestamp,
            deadline,
            repaired: false,
        });
        let i = usize::from(m.frag);
        if a.frags.len() != usize::from(m.frags) || a.frags[i].is_some() {
            return;
        }
        a.frags[i] = Some(m.payload.to_vec());
        a.have += 1;
        a.repaired |= repaired;
        if a.have == a.frags.len()
            && let Some(a) = self.assemblies.remove(&frame)
        {
            let data: Vec<u8> = a.frags.into_iter().flatten().flatten().collect();
            self.deliver(frame, a.flags, a.timestamp, data, a.repaired, a.deadline);
        }
    }

    fn deliver(
        &mut self,
        frame: u64,
        fl: u8,
        timestamp: u32,
        data: Vec<u8>,
        repaired: bool,
        deadline: Time,
    ) {
        self.mark_delivered(frame);
        let video = fl & flags::VIDEO != 0;
        if !video && fl & flags::RED != 0 {
            let Ok((primary, blocks)) = wire::red(&data) else {
                self.stats.pkt_rcv_invalid += 1;
                return;
            };
            for b in blocks {
                let f = unwrap(frame, b.frame);
                if f < frame
                    && frame - f <= 8
                    && !self.delivered_frames.contains(&f)
                    && f > self.delivered_floor()
                {
                    self.mark_delivered(f);
                    self.assemblies.remove(&f);
                    self.stats.pkt_rcv_red_supply += 1;
                    let f_in = InFrame {
                        video: false,
                        key: false,
                        timestamp: b.timestamp,
                        data: b.data.to_vec(),
                        repaired: true,
                    };
                    self.ready(f, f_in, deadline);
                }
            }
            let f = InFrame {
                video,
                key: false,
                timestamp,
                data: primary.to_vec(),
                repaired,
            };
            self.ready(frame, f, deadline);
            return;
        }
        let f = InFrame {
            video,
            key: fl & flags::KEY != 0,
            timestamp,
            data,
            repaired,
        };
        self.ready(frame, f, deadline);
    }

    /// A complete frame: out at once, or (ordered) once the frames before
    /// it are out or its deadline came.
    fn ready(&mut self, frame: u64, f: InFrame, deadline: Time) {
        if !self.cfg.ordered {
            self.stats.frames_delivered += 1;
            self.frames.push_back(f);
            return;
        }
        if frame < self.next_release {
            // Its turn passed (skipped at a later frame's deadline): too late.
            self.stats.frames_dropped += 1;
            return;
        }
        if self.waiting.len() >= MAX_ASSEMBLIES {
            self.stats.frames_dropped += 1;
            return;
        }
        self.waiting.insert(frame, (f, deadline));
        self.release(None);
    }

    /// Releases waiting frames in order; at `now`, also those whose
    /// deadline passed (skipping the missing frames before them).
    fn release(&mut self, now: Option<Time>) {
        while let Some(entry) = self.waiting.first_entry() {
            let frame = *entry.key();
            let due = now.is_some_and(|t| entry.get().1 <= t);
            if frame != self.next_release && !due {
                break;
            }
            let (f, _) = entry.remove();
            self.next_release = frame + 1;
            self.stats.frames_delivered += 1;
            self.frames.push_back(f);
        }
    }

    /// Frames below this were delivered or given up (the set is bounded).
    fn delivered_floor(&self) -> u64 {
        self.delivered_frames.first().copied().unwrap_or(0)
    }

    fn mark_delivered(&mut self, frame: u64) {
        self.delivered_frames.insert(frame);
        while self.delivered_frames.len() > 4096 {
            self.delivered_frames.pop_first();
        }
    }

    pub fn has_frame(&self) -> bool {
        !self.frames.is_empty()
    }

    pub fn poll_frame(&mut self) -> Option<InFrame> {
        self.frames.pop_front()
    }

    /// NACKs for what is due (the caller sends them).
    fn ask(&mut self, now: Time) {
        if !self.cfg.nack {
            return;
        }
        let fec = &self.fec;
        let due = self
            .tracker
            .due(now, self.retry(), wire::MAX_NACK_ENTRIES * 17, |s| {
                fec.can_wait(s)
            });
        if due.is_empty() {
            return;
        }
        self.stats.pkt_nak_requested += due.len() as u64;
        let wire_seqs: Vec<u32> = due.iter().map(|&s| s as u32).collect();
        self.pending_nacks.extend(wire::nack_entries(&wire_seqs));
        // Unsent requests are superseded by newer ones; keep a bounded tail.
        if self.pending_nacks.len() > 4 * wire::MAX_NACK_ENTRIES {
            let excess = self.pending_nacks.len() - 4 * wire::MAX_NACK_ENTRIES;
            self.pending_nacks.drain(..excess);
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        for seq in self.tracker.expire(now) {
            self.stats.pkt_rcv_drop += 1;
            self.stats.pkt_rcv_filter_loss += u64::from(self.fec.covers(seq));
        }
        self.loss_events();
        let before = self.assemblies.len();
        self.assemblies
            .retain(|_, a| a.deadline + Duration::from_millis(1) > now);
        self.stats.frames_dropped += (before - self.assemblies.len()) as u64;
        self.release(Some(now));
        self.ask(now);
    }

    pub fn poll_timeout(&self) -> Time {
        let mut t = self.next_feedback;
        if self.cfg.nack
            && let Some(n) = self.tracker.poll_timeout(self.retry())
        {
            t = t.min(n);
        }
        if let Some(a) = self
            .assemblies
            .values()
            .map(|a| a.deadline + Duration::from_millis(1))
            .min()
        {
            t = t.min(a);
        }
        if let Some((_, (_, d))) = self.waiting.first_key_value() {
            t = t.min(*d);
        }
        t
    }

    /// The next control datagram (NACK, feedback) due at `now`.
    pub fn poll_transmit(&mut self, now: Time) -> Option<Vec<u8>> {
        if !self.pending_nacks.is_empty() {
            let n = self.pending_nacks.len().min(wire::MAX_NACK_ENTRIES);
            let entries: Vec<_> = self.pending_nacks.drain(..n).collect();
            let mut d = Vec::new();
            write::nack(&mut d, self.session, &entries);
            self.stats.pkt_sent_nak += 1;
            return Some(d);
        }
        if now >= self.next_feedback {
            self.next_feedback = now + self.cfg.feedback_interval;
            return self.feedback_report(now);
        }
        None
    }

    fn feedback_report(&mut self, now: Time) -> Option<Vec<u8>> {
        let (&base, _) = self.feedback.first_key_value()?;
        let (&last, _) = self.feedback.last_key_value()?;
        let end = last.min(base + wire::MAX_FEEDBACK_PACKETS as u64 - 1);
        let report_us = self.local_us(now);
        let arrivals: Vec<Option<u32>> = (base..=end)
            .map(|s| {
                self.feedback
                    .get(&s)
                    .map(|&a| report_us.saturating_sub(a).min(u64::from(u32::MAX)) as u32)
            })
            .collect();
        self.feedback = self.feedback.split_off(&(end + 1));
        let mut d = Vec::new();
        write::feedback(
            &mut d,
            self.session,
            base as u32,
            report_us as u32,
            &arrivals,
        );
        Some(d)
    }

    pub fn stats(&self) -> ReceiverStats {
        let mut s = self.stats.clone();
        s.ms_rtt = self.rtt.map_or(0.0, |r| r.as_secs_f64() * 1e3);
        // Gaps too large to track were never asked for: given up at once.
        s.pkt_rcv_drop += self.tracker.untracked;
        s.recovery_ms_fec = Percentiles::of(&self.delays_fec);
        s.recovery_ms_nack = Percentiles::of(&self.delays_nack);
        s.recovery_ms_event = Percentiles::of(&self.delays_event);
        s
    }
}
