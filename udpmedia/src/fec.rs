//! Forward error correction: XOR parity in rows and columns (SMPTE 2022-1 /
//! RFC 5109 style) and Reed–Solomon (reed-solomon-simd) over blocks.
//!
//! Both protect a data packet's protected part (see `wire`). XOR pads the
//! packets of a group to the longest and carries the XOR of their lengths,
//! so a recovered packet gets its exact length back; Reed–Solomon shards are
//! `len u16 | bytes | zero padding` to an even common size.

use std::collections::BTreeMap;
use std::time::Duration;

use netem::Time;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::config::FecConfig;
use crate::wire::FecScheme;

/// One FEC packet, with 64-bit sequence numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FecPacket {
    pub scheme: FecScheme,
    pub base: u64,
    pub count: u16,
    pub stride: u16,
    pub index: u16,
    pub total: u16,
    pub len_xor: u16,
    pub payload: Vec<u8>,
}

/// XOR of packets, padded to the longest.
#[derive(Clone, Debug, Default)]
struct Parity {
    bytes: Vec<u8>,
    len_xor: u16,
    count: u16,
}

impl Parity {
    fn add(&mut self, p: &[u8]) {
        if self.bytes.len() < p.len() {
            self.bytes.resize(p.len(), 0);
        }
        xor_into(&mut self.bytes, p);
        self.len_xor ^= p.len() as u16;
        self.count += 1;
    }
}

/// `acc ^= p` over `p`'s length (`acc` at least as long).
fn xor_into(acc: &mut [u8], p: &[u8]) {
    // Word-wise: eight bytes at a time, the rest bytewise.
    let n = p.len().min(acc.len());
    let (a, p) = (&mut acc[..n], &p[..n]);
    let mut ac = a.chunks_exact_mut(8);
    let mut pc = p.chunks_exact(8);
    for (x, y) in (&mut ac).zip(&mut pc) {
        let v = u64::from_ne_bytes(x.try_into().expect("8 bytes"))
            ^ u64::from_ne_bytes(y.try_into().expect("8 bytes"));
        x.copy_from_slice(&v.to_ne_bytes());
    }
    for (x, y) in ac.into_remainder().iter_mut().zip(pc.remainder()) {
        *x ^= y;
    }
}

/// The sender's half.
pub enum FecEncoder {
    None,
    Xor(XorEncoder),
    Rs(RsEncoder),
}

impl FecEncoder {
    pub fn new(cfg: &FecConfig, flush: Duration) -> Self {
        match *cfg {
            FecConfig::None => FecEncoder::None,
            FecConfig::Xor { cols, rows } => FecEncoder::Xor(XorEncoder::new(cols, rows)),
            FecConfig::Rs { k, m, adaptive } => {
                FecEncoder::Rs(RsEncoder::new(k, m, adaptive, flush))
            }
        }
    }

    /// A new media packet `seq` (consecutive with the previous one).
    pub fn push(&mut self, now: Time, seq: u64, protected: &[u8], out: &mut Vec<FecPacket>) {
        match self {
            FecEncoder::None => {}
            FecEncoder::Xor(x) => x.push(seq, protected, out),
            FecEncoder::Rs(r) => r.push(now, seq, protected, out),
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        match self {
            FecEncoder::Rs(r) => r.poll_timeout(),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Time, out: &mut Vec<FecPacket>) {
        if let FecEncoder::Rs(r) = self
            && r.poll_timeout().is_some_and(|t| t <= now)
        {
            r.emit(out);
        }
    }

    /// The packet loss the receiver reports (adaptive Reed–Solomon sizes
    /// its recovery count on it).
    pub fn on_loss(&mut self, loss: f64) {
        if let FecEncoder::Rs(r) = self {
            r.on_loss(loss);
        }
    }

    /// Redundancy per media packet as configured now.
    pub fn overhead(&self) -> f64 {
        match self {
            FecEncoder::None => 0.0,
            FecEncoder::Xor(x) => FecConfig::Xor {
                cols: x.cols,
                rows: x.rows,
            }
            .overhead(),
            FecEncoder::Rs(r) => f64::from(r.m) / f64::from(r.k),
        }
    }
}

/// Row parity every `cols` packets; column parity over a `cols` × `rows`
/// matrix when `rows > 1`.
pub struct XorEncoder {
    cols: u16,
    rows: u16,
    base: Option<u64>,
    row: Parity,
    columns: Vec<Parity>,
}

impl XorEncoder {
    fn new(cols: u16, rows: u16) -> Self {
        XorEncoder {
            cols,
            rows,
            base: None,
            row: Parity::default(),
            columns: vec![Parity::default(); cols as usize],
        }
    }

    fn push(&mut self, seq: u64, p: &[u8], out: &mut Vec<FecPacket>) {
        let (l, d) = (u64::from(self.cols), u64::from(self.rows));
        let base = *self.base.get_or_insert(seq);
        let pos = seq.wrapping_sub(base);
        if seq < base || pos >= l * d || pos % l != u64::from(self.row.count) {
            // Not consecutive (cannot happen from the sender): start a new matrix here.
            *self = XorEncoder::new(self.cols, self.rows);
            return self.push(seq, p, out);
        }
        self.row.add(p);
        if d > 1 {
            self.columns[(pos % l) as usize].add(p);
        }
        if pos % l == l - 1 {
            let row = std::mem::take(&mut self.row);
            out.push(FecPacket {
                scheme: FecScheme::XorRow,
                base: seq + 1 - l,
                count: self.cols,
                stride: 1,
                index: 0,
                total: 0,
                len_xor: row.len_xor,
                payload: row.bytes,
            });
        }
        if pos == l * d - 1 {
            if d > 1 {
                for (c, col) in self.columns.iter_mut().enumerate() {
                    let col = std::mem::take(col);
                    out.push(FecPacket {
                        scheme: FecScheme::XorColumn,
                        base: base + c as u64,
                        count: self.rows,
                        stride: self.cols,
                        index: 0,
                        total: 0,
                        len_xor: col.len_xor,
                        payload: col.bytes,
                    });
                }
            }
            self.base = Some(seq + 1);
        }
    }
}

/// Blocks of up to `k` packets, `m` recovery shards each.
pub struct RsEncoder {
    k: u16,
    m_max: u16,
    m: u16,
    adaptive: bool,
    flush: Duration,
    block: Vec<Vec<u8>>,
    base: u64,
    started: Time,
    engine: Option<ReedSolomonEncoder>,
}

impl RsEncoder {
    fn new(k: u16, m: u16, adaptive: bool, flush: Duration) -> Self {
        RsEncoder {
            k,
            m_max: m,
            m: if adaptive { 1 } else { m },
            adaptive,
            flush,
            block: Vec::new(),
            base: 0,
            started: Time::ZERO,
            engine: None,
        }
    }

    fn push(&mut self, now: Time, seq: u64, p: &[u8], out: &mut Vec<FecPacket>) {
        if !self.block.is_empty() && seq != self.base + self.block.len() as u64 {
            self.emit(out);
        }
        if self.block.is_empty() {
            self.base = seq;
            self.started = now;
        }
        self.block.push(p.to_vec());
        if self.block.len() >= usize::from(self.k) {
            self.emit(out);
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        (!self.block.is_empty()).then(|| self.started + self.flush)
    }

    /// Recovery shards for enough redundancy at this loss: twice the
    /// expected losses of a block, plus one, within 1..=m.
    fn on_loss(&mut self, loss: f64) {
        if self.adaptive {
            let want = (2.0 * loss.clamp(0.0, 1.0) * f64::from(self.k)).ceil() as u16 + 1;
            self.m = want.clamp(1, self.m_max);
        }
    }

    fn emit(&mut self, out: &mut Vec<FecPacket>) {
        let block = std::mem::take(&mut self.block);
        if block.is_empty() {
            return;
        }
        let longest = block.iter().map(Vec::len).max().unwrap_or(0) + 2;
        let size = longest + longest % 2;
        let count = block.len();
        let m = usize::from(self.m);
        let engine = match &mut self.engine {
            Some(e) => e.reset(count, m, size).map(|_| e),
            None => ReedSolomonEncoder::new(count, m, size).map(|e| self.engine.insert(e)),
        };
        let Ok(engine) = engine else { return };
        let mut shard = vec![0u8; size];
        for p in &block {
            shard.fill(0);
            shard[..2].copy_from_slice(&(p.len() as u16).to_be_bytes());
            shard[2..2 + p.len()].copy_from_slice(p);
            if engine.add_original_shard(&shard).is_err() {
                return;
            }
        }
        let Ok(result) = engine.encode() else { return };
        for (i, r) in result.recovery_iter().enumerate() {
            out.push(FecPacket {
                scheme: FecScheme::ReedSolomon,
                base: self.base,
                count: count as u16,
                stride: 1,
                index: i as u16,
                total: m as u16,
                len_xor: 0,
                payload: r.to_vec(),
            });
        }
    }
}

/// Packets the decoder remembers for recovery, behind the highest seen.
pub const DECODER_WINDOW: u64 = 4096;
/// Groups (XOR) and blocks (RS) under recovery at most.
const MAX_GROUPS: usize = 1024;

struct XorGroup {
    base: u64,
    stride: u64,
    count: u64,
    len_xor: u16,
    parity: Vec<u8>,
}

impl XorGroup {
    fn members(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.count).map(|i| self.base + i * self.stride)
    }
    fn contains(&self, seq: u64) -> bool {
        seq >= self.base
            && (seq - self.base).is_multiple_of(self.stride)
            && (seq - self.base) / self.stride < self.count
    }
    fn last(&self) -> u64 {
        self.base + (self.count - 1) * self.stride
    }
}

struct RsBlock {
    count: u64,
    total: u16,
    size: usize,
    recovery: BTreeMap<u16, Vec<u8>>,
}

/// The receiver's half: remembers recent packets and FEC packets, and
/// rebuilds what is missing when it can.
#[derive(Default)]
pub struct FecDecoder {
    received: BTreeMap<u64, Vec<u8>>,
    highest: u64,
    xor: Vec<XorGroup>,
    rs: BTreeMap<u64, RsBlock>,
    rs_engine: Option<ReedSolomonDecoder>,
}

impl FecDecoder {
    /// A data packet arrived (or was recovered some other way).
    pub fn on_data(&mut self, seq: u64, protected: &[u8]) -> Vec<(u64, Vec<u8>)> {
        if seq + DECODER_WINDOW < self.highest {
            return Vec::new();
        }
        self.highest = self.highest.max(seq);
        self.received.insert(seq, protected.to_vec());
        self.expire();
        let mut out = Vec::new();
        self.cascade(vec![seq], &mut out);
        out
    }

    /// An FEC packet arrived; returns the packets it rebuilt.
    pub fn on_fec(&mut self, f: FecPacket) -> Vec<(u64, Vec<u8>)> {
        let span = u64::from(f.count) * u64::from(f.stride);
        if f.base + span + DECODER_WINDOW < self.highest || f.base > self.highest + DECODER_WINDOW {
            return Vec::new();
        }
        let mut out = Vec::new();
        match f.scheme {
            FecScheme::XorRow | FecScheme::XorColumn => {
                if self.xor.len() >= MAX_GROUPS {
                    self.xor.remove(0);
                }
                self.xor.push(XorGroup {
                    base: f.base,
                    stride: u64::from(f.stride),
                    count: u64::from(f.count),
                    len_xor: f.len_xor,
                    parity: f.payload,
                });
                let i = self.xor.len() - 1;
                if let Some(r) = self.try_xor(i) {
                    let s = r.0;
                    out.push(r);
                    self.cascade(vec![s], &mut out);
                }
            }
            FecScheme::ReedSolomon => {
                if self.rs.len() >= MAX_GROUPS
                    && let Some((&first, _)) = self.rs.iter().next()
                {
                    self.rs.remove(&first);
                }
                let b = self.rs.entry(f.base).or_insert_with(|| RsBlock {
                    count: u64::from(f.count),
                    total: f.total,
                    size: f.payload.len(),
                    recovery: BTreeMap::new(),
                });
                if b.count == u64::from(f.count) && b.total == f.total && b.size == f.payload.len()
                {
                    b.recovery.insert(f.index, f.payload);
                }
                let rebuilt = self.try_rs(f.base);
                let seqs: Vec<u64> = rebuilt.iter().map(|r| r.0).collect();
                out.extend(rebuilt);
                self.cascade(seqs, &mut out);
            }
        }
        out
    }

    /// Whether missing `seq` needs no retransmission: a group or block it
    /// belongs to has the FEC to rebuild it once the missing packets before
    /// it arrive (so a NACK asks only for the shortfall).
    pub fn can_wait(&self, seq: u64) -> bool {
        let missing = |members: &mut dyn Iterator<Item = u64>| -> Vec<u64> {
            members.filter(|s| !self.received.contains_key(s)).collect()
        };
        for g in self.xor.iter().filter(|g| g.contains(seq)) {
            if missing(&mut g.members()).last() == Some(&seq) {
                return true;
            }
        }
        if let Some((&base, b)) = self.rs.range(..=seq).next_back()
            && seq < base + b.count
            && !b.recovery.is_empty()
        {
            let m = missing(&mut (base..base + b.count));
            let spare = b.recovery.len().min(m.len());
            if m[m.len() - spare..].contains(&seq) {
                return true;
            }
        }
        false
    }

    /// Re-examines the groups that hold each newly known packet.
    fn cascade(&mut self, mut todo: Vec<u64>, out: &mut Vec<(u64, Vec<u8>)>) {
        let mut rounds = 0;
        while let Some(seq) = todo.pop() {
            rounds += 1;
            if rounds > 4 * DECODER_WINDOW {
                break;
            }
            let mut i = 0;
            while i < self.xor.len() {
                if self.xor[i].contains(seq)
                    && let Some(r) = self.try_xor(i)
                {
                    todo.push(r.0);
                    out.push(r);
                    continue; // `try_xor` removed group i
                }
                i += 1;
            }
            let bases: Vec<u64> = self
                .rs
                .range(seq.saturating_sub(256)..=seq)
                .map(|(&b, _)| b)
                .collect();
            for b in bases {
                if self.rs.get(&b).is_some_and(|blk| seq < b + blk.count) {
                    for r in self.try_rs(b) {
                        todo.push(r.0);
                        out.push(r);
                    }
                }
            }
        }
    }

    /// Rebuilds group `i`'s one missing packet; drops the group once it has
    /// nothing left to give.
    fn try_xor(&mut self, i: usize) -> Option<(u64, Vec<u8>)> {
        let missing: Vec<u64> = self.xor[i]
            .members()
            .filter(|s| !self.received.contains_key(s))
            .take(2)
            .collect();
        match missing[..] {
            [] => {
                self.xor.swap_remove(i);
                None
            }
            [_, _, ..] => None,
            [seq] => {
                let g = self.xor.swap_remove(i);
                let mut acc = g.parity;
                let mut len = g.len_xor;
                for s in (0..g.count)
                    .map(|k| g.base + k * g.stride)
                    .filter(|&s| s != seq)
                {
                    let p = &self.received[&s];
                    if p.len() > acc.len() {
                        // Inconsistent with the parity: not ours to rebuild.
                        return None;
                    }
                    xor_into(&mut acc, p);
                    len ^= p.len() as u16;
                }
                if usize::from(len) > acc.len() {
                    return None;
                }
                acc.truncate(usize::from(len));
                self.received.insert(seq, acc.clone());
                Some((seq, acc))
            }
        }
    }

    fn try_rs(&mut self, base: u64) -> Vec<(u64, Vec<u8>)> {
        let Some(b) = self.rs.get(&base) else {
            return Vec::new();
        };
        let present: Vec<u64> = (0..b.count)
            .filter(|i| self.received.contains_key(&(base + i)))
            .collect();
        if present.len() as u64 == b.count {
            self.rs.remove(&base);
            return Vec::new();
        }
        if (present.len() + b.recovery.len()) < b.count as usize {
            return Vec::new();
        }
        let Some(b) = self.rs.remove(&base) else {
            return Vec::new();
        };
        let (count, total, size) = (b.count as usize, usize::from(b.total), b.size);
        let engine = match &mut self.rs_engine {
            Some(e) => e.reset(count, total, size).map(|_| e),
            None => ReedSolomonDecoder::new(count, total, size).map(|e| self.rs_engine.insert(e)),
        };
        let Ok(engine) = engine else {
            return Vec::new();
        };
        let mut shard = vec![0u8; size];
        for &i in &present {
            let p = &self.received[&(base + i)];
            if p.len() + 2 > size {
                return Vec::new();
            }
            shard.fill(0);
            shard[..2].copy_from_slice(&(p.len() as u16).to_be_bytes());
            shard[2..2 + p.len()].copy_from_slice(p);
            if engine.add_original_shard(i as usize, &shard).is_err() {
                return Vec::new();
            }
        }
        for (&i, r) in &b.recovery {
            if engine.add_recovery_shard(usize::from(i), r).is_err() {
                return Vec::new();
            }
        }
        let Ok(result) = engine.decode() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, shard) in result.restored_original_iter() {
            let len = usize::from(u16::from_be_bytes([shard[0], shard[1]]));
            if len + 2 > shard.len() {
                continue;
            }
            let seq = base + i as u64;
            out.push((seq, shard[2..2 + len].to_vec()));
        }
        for (seq, p) in &out {
            self.received.insert(*seq, p.clone());
        }
        out
    }

    /// Forgets packets and groups that fell out of the window.
    fn expire(&mut self) {
        let floor = self.highest.saturating_sub(DECODER_WINDOW);
        while let Some((&s, _)) = self.received.iter().next() {
            if s >= floor {
                break;
            }
            self.received.remove(&s);
        }
        self.xor.retain(|g| g.last() >= floor);
        while let Some((&b, blk)) = self.rs.iter().next() {
            if b + blk.count >= floor {
                break;
            }
            self.rs.remove(&b);
        }
    }

    /// Whether an FEC group or block that arrived covers `seq` (a lost
    /// packet it covers and did not rebuild is FEC's loss).
    pub fn covers(&self, seq: u64) -> bool {
        self.xor.iter().any(|g| g.contains(seq))
            || self
                .rs
                .range(..=seq)
                .next_back()
                .is_some_and(|(&b, blk)| seq < b + blk.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u64) -> Vec<u8> {
        // Varying lengths, so length recovery is exercised.
        (0..(20 + (seq * 37) % 300))
            .map(|i| (i ^ seq.wrapping_mul(2_654_435_761)) as u8)
            .collect()
    }

    /// Sends `n` packets through `cfg`'s encoder, drops those `lose` says,
    /// and returns what the decoder rebuilt (checked byte for byte).
    fn run(cfg: FecConfig, n: u64, lose: impl Fn(u64) -> bool) -> (u64, u64) {
        let mut enc = FecEncoder::new(&cfg, Duration::from_millis(20));
        let mut dec = FecDecoder::default();
        let mut lost = 0;
        let mut rebuilt = 0;
        for seq in 0..n {
            let p = packet(seq);
            let mut fec = Vec::new();
            enc.push(Time::ZERO, seq, &p, &mut fec);
            if lose(seq) {
                lost += 1;
            } else {
                for (s, r) in dec.on_data(seq, &p) {
                    assert_eq!(r, packet(s), "seq {s} rebuilt wrong");
                    rebuilt += 1;
                }
            }
            for f in fec {
                for (s, r) in dec.on_fec(f) {
                    assert_eq!(r, packet(s), "seq {s} rebuilt wrong");
                    rebuilt += 1;
                }
            }
        }
        (lost, rebuilt)
    }

    #[test]
    fn xor_row_recovers_every_single_loss_in_a_row() {
        // One loss in each row of 10, at every position in turn.
        for pos in 0..10 {
            let (lost, rebuilt) = run(FecConfig::Xor { cols: 10, rows: 1 }, 200, |s| s % 10 == pos);
            assert_eq!((lost, rebuilt), (20, 20), "position {pos}");
        }
        // Two in a row cannot be rebuilt by a row alone.
        let (lost, rebuilt) = run(FecConfig::Xor { cols: 10, rows: 1 }, 200, |s| s % 10 < 2);
        assert_eq!((lost, rebuilt), (40, 0));
    }

    #[test]
    fn xor_2d_recovers_a_burst_as_long_as_a_row() {
        // A burst of 5 in a 5 × 5 matrix: each column has one loss.
        let (lost, rebuilt) = run(FecConfig::Xor { cols: 5, rows: 5 }, 100, |s| {
            (30..35).contains(&s)
        });
        assert_eq!((lost, rebuilt), (5, 5));
        // A 2 × 2 square of losses: rows and columns both see two; stuck.
        let (lost, rebuilt) = run(FecConfig::Xor { cols: 5, rows: 5 }, 25, |s| {
            [0, 1, 5, 6].contains(&s)
        });
        assert_eq!((lost, rebuilt), (4, 0));
        // An L shape: a column recovers one, then its row can do the other.
        let (lost, rebuilt) = run(FecConfig::Xor { cols: 5, rows: 5 }, 25, |s| {
            [0, 1, 6].contains(&s)
        });
        assert_eq!((lost, rebuilt), (3, 3));
    }

    #[test]
    fn reed_solomon_recovers_any_m_losses_of_a_block() {
        for first in 0..8 {
            let (lost, rebuilt) = run(
                FecConfig::Rs {
                    k: 10,
                    m: 3,
                    adaptive: false,
                },
                100,
                |s| {
                    let i = s % 10;
                    i == first || i == first + 1 || i == (first + 5) % 10
                },
            );
            assert_eq!((lost, rebuilt), (30, 30));
        }
        let (lost, rebuilt) = run(
            FecConfig::Rs {
                k: 10,
                m: 2,
                adaptive: false,
            },
            100,
            |s| s % 10 < 3,
        );
        assert_eq!((lost, rebuilt), (30, 0));
    }

    #[test]
    fn rs_flush_closes_a_short_block() {
        let mut enc = FecEncoder::new(
            &FecConfig::Rs {
                k: 10,
                m: 2,
                adaptive: false,
            },
            Duration::from_millis(20),
        );
        let mut out = Vec::new();
        enc.push(Time::ZERO, 0, &packet(0), &mut out);
        enc.push(Time::ZERO, 1, &packet(1), &mut out);
        assert!(out.is_empty());
        assert_eq!(enc.poll_timeout(), Some(Time::from_millis(20)));
        enc.handle_timeout(Time::from_millis(20), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].count, 2);
        let mut dec = FecDecoder::default();
        dec.on_data(1, &packet(1));
        let r = dec.on_fec(out.remove(0));
        assert_eq!(r, vec![(0, packet(0))]);
    }

    #[test]
    fn adaptive_rs_follows_loss() {
        let mut enc = FecEncoder::new(
            &FecConfig::Rs {
                k: 20,
                m: 8,
                adaptive: true,
            },
            Duration::from_millis(20),
        );
        assert!((enc.overhead() - 1.0 / 20.0).abs() < 1e-9);
        enc.on_loss(0.05);
        assert!((enc.overhead() - 3.0 / 20.0).abs() < 1e-9);
        enc.on_loss(0.5);
        assert!((enc.overhead() - 8.0 / 20.0).abs() < 1e-9);
    }

    #[test]
    fn memory_stays_bounded_for_absurd_sequence_numbers() {
        let mut dec = FecDecoder::default();
        dec.on_data(0, &packet(0));
        dec.on_data(u64::from(u32::MAX) * 1000, &packet(1));
        for i in 0..5000u64 {
            dec.on_fec(FecPacket {
                scheme: FecScheme::XorRow,
                base: i * 1_000_003,
                count: 200,
                stride: 200,
                index: 0,
                total: 0,
                len_xor: 0,
                payload: vec![0; 100],
            });
        }
        assert!(dec.received.len() <= 2);
        assert!(dec.xor.len() <= MAX_GROUPS);
    }
}
