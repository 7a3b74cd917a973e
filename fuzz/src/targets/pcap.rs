//! Captures: packets written by Glass's pcap and pcapng writers read back
//! by an independent reader (pcap-file's) must come back byte for byte,
//! with their instants and drop reasons. A mismatch panics: the fuzzer
//! reports it like a crash.

use std::time::{Duration, SystemTime};

use arbitrary::{Result, Unstructured};
use netem::Time;
use netem::adapters::capture::{self, Capture, DropCapture};

use crate::mutate::small_bytes;

pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let start =
        SystemTime::UNIX_EPOCH + Duration::from_micros(u.int_in_range(0..=4_000_000_000_000_000)?);
    let mut packets = Vec::new();
    let mut at: u64 = 0;
    for _ in 0..u.int_in_range(0..=32u8)? {
        // Mostly milliseconds apart, sometimes hours (a soak's capture).
        at += if u.ratio(7, 8)? {
            u.int_in_range(0..=5_000_000_000u64)?
        } else {
            u.int_in_range(0..=36_000_000_000_000u64)?
        };
        // Packets of every size up to a jumbo frame, without using up the input.
        let mut data = small_bytes(u, 64)?.to_vec();
        let fill = u.int_in_range(0..=9000usize)?;
        data.resize(data.len() + fill, 0x45);
        let reason = *u.choose(&["loss", "queue full", "aqm", "outage", "ünïcode ✓", ""])?;
        packets.push((Time::from_nanos(at), data, reason));
    }
    let mut cap = Capture::new(Vec::new(), start).expect("a pcap header writes to memory");
    let mut drops = DropCapture::new(Vec::new(), start).expect("a pcapng header writes to memory");
    for (t, d, r) in &packets {
        cap.write(*t, d).expect("a packet writes to memory");
        drops.write(*t, d, r).expect("a packet writes to memory");
    }
    let pcap = cap.into_inner().expect("flush");
    let pcapng = drops.into_inner().expect("flush");

    let back = capture::read_from(&pcap[..]).expect("Glass's pcap reads back");
    assert_eq!(back.len(), packets.len(), "pcap packet count");
    let epoch = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    for ((ts, data), (t, d, _)) in back.iter().zip(&packets) {
        assert_eq!(data, d, "pcap packet bytes");
        // pcap keeps microseconds (or nanoseconds with that magic): the
        // instant comes back to within one microsecond.
        let want = epoch + t.since_start();
        let diff = ts.abs_diff(want);
        assert!(
            diff < Duration::from_micros(1),
            "pcap timestamp {ts:?} vs {want:?}"
        );
    }
    let back = capture::read_drops_from(&pcapng[..]).expect("Glass's pcapng reads back");
    assert_eq!(back.len(), packets.len(), "pcapng packet count");
    for ((data, comment), (_, d, r)) in back.iter().zip(&packets) {
        assert_eq!(data, d, "pcapng packet bytes");
        assert_eq!(comment, &format!("dropped: {r}"), "pcapng comment");
    }
    Ok(())
}
