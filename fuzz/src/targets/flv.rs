//! FLV files (`replay = "file.flv"` in a scenario): the reader, the tag
//! classifiers and the replay scheduler that loops the recording.

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use harness::media::flv::{self, FlvReplay};
use harness::media::tag;
use netem::Time;

use crate::mutate::{corrupt, small_bytes};

pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut f = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    let mut ts: u32 = u.arbitrary::<u8>()?.into();
    for _ in 0..u.int_in_range(0..=24u8)? {
        let kind = *u.choose(&[9u8, 9, 9, 8, 8, 18, 0x29, 3])?;
        let data = match kind {
            9 => {
                let frame_type = *u.choose(&[1u8, 2, 2, 2, 5, 0])?;
                let mut d = vec![(frame_type << 4) | 7, u.int_in_range(0..=2)?];
                d.extend_from_slice(&u.arbitrary::<[u8; 3]>()?);
                d.extend_from_slice(small_bytes(u, 300)?);
                d
            }
            8 => {
                let mut d = vec![0xaf, u.int_in_range(0..=1)?];
                d.extend_from_slice(small_bytes(u, 100)?);
                d
            }
            _ => small_bytes(u, 64)?.to_vec(),
        };
        ts = ts.wrapping_add(u.int_in_range(0..=100)?);
        if u.ratio(1, 16)? {
            ts = u.arbitrary()?;
        }
        f.push(kind);
        f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(&ts.to_be_bytes()[1..]);
        f.push((ts >> 24) as u8);
        f.extend_from_slice(&[0, 0, 0]);
        f.extend_from_slice(&data);
        f.extend_from_slice(&(data.len() as u32 + 11).to_be_bytes());
    }
    corrupt(&mut f, u)?;
    let Ok(tags) = flv::parse(&f) else {
        return Ok(());
    };
    for t in &tags {
        let video = t.kind == flv::TagKind::Video;
        let _ = (t.is_sequence_header(), t.video_frame());
        let _ = (tag::is_key_tag(video, &t.data), tag::is_frame(&t.data));
    }
    let start = Time::ZERO + Duration::from_millis(u.int_in_range(0..=1000)?);
    let mut replay = FlvReplay::new(&tags, start);
    let _ = replay.sequence_headers();
    // Two passes through the recording: the loop's timestamps continue.
    let mut now = start;
    for _ in 0..2 * tags.len() + 2 {
        let due = replay.poll_timeout();
        if due == Time::MAX {
            break;
        }
        now = now.max(due);
        if replay.poll_tag(now).is_none() {
            break;
        }
    }
    Ok(())
}
