//! From an RTSP publisher's RTP packets to the hub's media: per track the
//! sequence numbers are tracked (RTP packets lost), the depacketizer
//! rebuilds access units or AAC frames, and each becomes an FLV tag body
//! with a millisecond timestamp ([`Media`]), the decoder configuration
//! first (from the SDP's `sprop-parameter-sets` or `config`, or in-band
//! SPS/PPS).
//!
//! Timestamps: once an RTCP sender report has tied a track's RTP clock to
//! the wall clock (NTP), a frame's timestamp is its wall-clock time in ms
//! (the low 32 bits of Unix ms, as ffmpeg's RTMP output carries with
//! `-copyts`), so a player measures glass-to-glass from it
//! (`G2gSource::RtmpTimestamp`). A track whose first frame comes before any
//! report keeps media time from 0 for the whole session (timestamps never
//! jump). Frames completed before any report wait for one, up to
//! [`REPORT_WAIT_MS`] of media time: a publisher sends its first report
//! with its first packet (Glass's and ffmpeg's do), but over UDP the report
//! comes on another port and may be read after the first frame; without
//! the wait that track would stay on media time while the others went on
//! the wall clock (seen once as a 3.4 s "G2G" in a loaded test run).
//!
//! A damaged access unit (a packet lost, a fragment broken) is not passed
//! on, and neither is any picture after it until the next key frame: a
//! decoder could not decode them, so the relay sends none (counted as
//! `undecodable`).

use crate::media::tag;
use bytes::Bytes;
use serde::Serialize;

use super::aac;
use super::h264::{self, AccessUnit, NAL_PPS, NAL_SPS};
use super::rtp::{Arrival, RtpPacket, SequenceTracker};
use super::sdp::{Codec, Track};
use crate::relay::Media;

/// Seconds between the NTP epoch (1900) and the Unix epoch.
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// How much media time (ms) a track's first frames wait for a sender
/// report before the track settles on media time from 0. A publisher that
/// never sends one starts this much later; one that does loses nothing.
pub const REPORT_WAIT_MS: f64 = 100.0;

/// At most this many frames wait for a report (whatever their timestamps).
const REPORT_WAIT_FRAMES: usize = 64;

/// What one track of an ingest counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrackStats {
    pub control: String,
    /// "h264" or "aac".
    pub codec: &'static str,
    /// "tcp" (interleaved) or "udp"; "" if never set up.
    pub transport: &'static str,
    pub rtp_packets: u64,
    /// Cumulative RTP packets lost (RFC 3550: expected − received).
    pub rtp_lost: u64,
    pub rtcp_packets: u64,
    /// Packets that were not RTP, or of another payload type.
    pub rtp_invalid: u64,
    /// Frames (access units) published.
    pub frames: u64,
    /// Access units damaged by loss or malformed packets.
    pub damaged: u64,
    /// Pictures left out because a reference before them was damaged
    /// (until the next key frame), damaged ones included.
    pub undecodable: u64,
    /// Whether a sender report tied the timestamps to the wall clock.
    pub wall_clock: bool,
    /// UDP: packets the reorder buffer put back in order, and gaps it gave
    /// up on when its wait ran out.
    pub reorder_put_back: u64,
    pub reorder_gaps_given_up: u64,
}

enum Depacketizer {
    H264(h264::Depacketizer),
    Aac(aac::Depacketizer),
}

/// How a track's RTP timestamps become milliseconds.
#[derive(Copy, Clone, Debug)]
enum Clock {
    /// Not fixed yet (no frame so far).
    Unset,
    /// Wall clock, from the latest sender report.
    Wall,
    /// Media time from this track's first RTP timestamp.
    Relative { rtp: u32 },
}

/// One track's ingest.
pub struct TrackIngest {
    track: Track,
    depacketizer: Depacketizer,
    sequence: SequenceTracker,
    clock: Clock,
    /// The latest sender report: (RTP timestamp, Unix ms).
    report: Option<(u32, f64)>,
    /// The decoder configuration, once known, and whether it was sent.
    config: Option<Bytes>,
    config_sent: bool,
    /// A picture was lost: skip until the next key frame.
    broken: bool,
    /// Timestamps (ms) of the pictures left out since the last
    /// [`TrackIngest::take_withheld`].
    withheld: Vec<u32>,
    /// What came out while the clock was not fixed yet, by RTP timestamp:
    /// a tag body, or `None` for a picture left out.
    unstamped: Vec<(Option<Bytes>, u32)>,
    pub stats: TrackStats,
}

impl TrackIngest {
    pub fn new(track: Track) -> TrackIngest {
        let (depacketizer, config, codec) = match &track.codec {
            Codec::H264 { sps, pps } => (
                Depacketizer::H264(h264::Depacketizer::default()),
                tag::avc_config(sps, pps),
                "h264",
            ),
            Codec::Aac { config, params, .. } => (
                Depacketizer::Aac(aac::Depacketizer::new(*params)),
                (!config.is_empty()).then(|| tag::aac_body(0, config)),
                "aac",
            ),
        };
        TrackIngest {
            stats: TrackStats {
                control: track.control.clone(),
                codec,
                ..TrackStats::default()
            },
            track,
            depacketizer,
            sequence: SequenceTracker::default(),
            clock: Clock::Unset,
            report: None,
            config,
            config_sent: false,
            broken: false,
            withheld: Vec::new(),
            unstamped: Vec::new(),
        }
    }

    /// The RTP payload type the track was announced with.
    pub fn payload_type(&self) -> u8 {
        self.track.payload_type
    }

    /// An RTCP packet (compound); a sender report updates the clock, and
    /// frames that waited for it come out.
    pub fn rtcp(&mut self, packet: &[u8]) -> Vec<Media> {
        self.stats.rtcp_packets += 1;
        // SR: V=2, PT=200, at least 28 bytes.
        if packet.len() >= 28 && packet[0] >> 6 == 2 && packet[1] == 200 {
            let word = |i: usize| {
                u32::from_be_bytes([packet[i], packet[i + 1], packet[i + 2], packet[i + 3]])
            };
            let (secs, frac, rtp) = (u64::from(word(8)), word(12), word(16));
            if secs >= NTP_UNIX_OFFSET {
                let unix_ms =
                    (secs - NTP_UNIX_OFFSET) as f64 * 1e3 + f64::from(frac) * 1e3 / 4_294_967_296.0;
                self.report = Some((rtp, unix_ms));
            }
        }
        self.stamp()
    }

    /// An RTP packet; returns the media it completed, in order.
    pub fn rtp(&mut self, bytes: &[u8]) -> Vec<Media> {
        let Ok(p) = RtpPacket::parse(bytes) else {
            self.stats.rtp_invalid += 1;
            return Vec::new();
        };
        if p.payload_type != self.track.payload_type {
            self.stats.rtp_invalid += 1;
            return Vec::new();
        }
        self.stats.rtp_packets += 1;
        let arrival = self.sequence.push(p.sequence);
        self.stats.rtp_lost = self.sequence.lost();
        if arrival == Arrival::Late {
            // Reordered past its unit (the unit went out without it).
            return Vec::new();
        }
        let gap = matches!(arrival, Arrival::Gap(_));
        match &mut self.depacketizer {
            Depacketizer::H264(d) => {
                for au in d.push(&p, gap) {
                    self.picture(au);
                }
            }
            Depacketizer::Aac(d) => {
                for f in d.push(&p, gap) {
                    self.send_config(f.timestamp);
                    self.stats.frames += 1;
                    self.unstamped
                        .push((Some(tag::aac_body(1, &f.data)), f.timestamp));
                }
            }
        }
        self.stamp()
    }

    /// What waits for its timestamp, once the clock can be fixed: by the
    /// first sender report, or after [`REPORT_WAIT_MS`] without one.
    fn stamp(&mut self) -> Vec<Media> {
        let Some(&(_, first)) = self.unstamped.first() else {
            return Vec::new();
        };
        if let Clock::Unset = self.clock {
            let last = self.unstamped.last().map_or(first, |u| u.1);
            let waited = self.since(first, last);
            self.clock = if self.report.is_some() {
                Clock::Wall
            } else if waited >= REPORT_WAIT_MS || self.unstamped.len() >= REPORT_WAIT_FRAMES {
                Clock::Relative { rtp: first }
            } else {
                return Vec::new();
            };
            self.stats.wall_clock = matches!(self.clock, Clock::Wall);
        }
        let video = matches!(self.depacketizer, Depacketizer::H264(_));
        let mut out = Vec::new();
        for (body, rtp) in std::mem::take(&mut self.unstamped) {
            let ms = self.ms(rtp);
            match body {
                Some(b) => out.push(Media::av(video, b, ms)),
                None => self.withheld.push(ms),
            }
        }
        out
    }

    /// A rebuilt picture: configuration first, then the frame, unless it
    /// cannot be decoded.
    fn picture(&mut self, au: AccessUnit) {
        if au.damaged {
            self.stats.damaged += 1;
            self.stats.undecodable += 1;
            self.broken = true;
            self.unstamped.push((None, au.timestamp));
            return;
        }
        // A key frame: an IDR slice, or parameter sets ahead of the picture
        // (as encoders repeat them before key frames; Glass's publisher
        // marks its frames' key frames so).
        let key = au.is_key() || au.nals.iter().any(|n| h264::nal_type(n) == NAL_SPS);
        if self.broken && !key {
            self.stats.undecodable += 1;
            self.unstamped.push((None, au.timestamp));
            return;
        }
        self.broken = false;
        // In-band parameter sets replace the SDP's.
        let sps = au.nals.iter().find(|n| h264::nal_type(n) == NAL_SPS);
        let pps = au.nals.iter().find(|n| h264::nal_type(n) == NAL_PPS);
        if let (Some(sps), Some(pps)) = (sps, pps)
            && let Some(c) = tag::avc_config(sps, pps)
            && self.config.as_ref() != Some(&c)
        {
            self.config = Some(c);
            self.config_sent = false;
        }
        self.send_config(au.timestamp);
        self.stats.frames += 1;
        // The parameter sets travel in the configuration, not the frame.
        let picture = AccessUnit {
            nals: au
                .nals
                .into_iter()
                .filter(|n| !matches!(h264::nal_type(n), NAL_SPS | NAL_PPS))
                .collect(),
            ..au
        };
        let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.extend_from_slice(&picture.to_avcc());
        self.unstamped
            .push((Some(Bytes::from(body)), picture.timestamp));
    }

    /// The decoder configuration ahead of the frame at `rtp`, once.
    fn send_config(&mut self, rtp: u32) {
        if !self.config_sent
            && let Some(c) = &self.config
        {
            self.unstamped.push((Some(c.clone()), rtp));
            self.config_sent = true;
        }
    }

    /// The timestamps (ms, as published media would carry) of the pictures
    /// left out since the last call: damaged or undecodable.
    pub fn take_withheld(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.withheld)
    }

    /// Media time (ms) from RTP timestamp `base` to `rtp` (negative if
    /// `rtp` is earlier; wrap-safe).
    fn since(&self, base: u32, rtp: u32) -> f64 {
        let rate = f64::from(self.track.clock_rate.max(1));
        f64::from(rtp.wrapping_sub(base) as i32) / rate * 1e3
    }

    /// An RTP timestamp in ms, once the clock is fixed (see the module's
    /// doc).
    fn ms(&self, rtp: u32) -> u32 {
        match self.clock {
            Clock::Wall => {
                // The latest report: the clocks may drift over a long run.
                let (r, unix_ms) = self.report.unwrap_or((rtp, 0.0));
                (unix_ms + self.since(r, rtp))
                    .round()
                    .rem_euclid(4_294_967_296.0) as u32
            }
            Clock::Relative { rtp: base } => self.since(base, rtp).max(0.0).round() as u32,
            Clock::Unset => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tag;

    const SPS: [u8; 6] = [0x67, 0x64, 0, 0x0d, 0xac, 0xd9];
    const PPS: [u8; 3] = [0x68, 0xeb, 0xe3];

    fn video() -> TrackIngest {
        TrackIngest::new(Track {
            control: "streamid=0".into(),
            payload_type: 96,
            clock_rate: 90_000,
            codec: Codec::H264 {
                sps: SPS.to_vec(),
                pps: PPS.to_vec(),
            },
        })
    }

    /// The RTP packets of one picture at `ts`, numbered from `seq`.
    fn picture(nals: &[&[u8]], ts: u32, seq: &mut u16) -> Vec<Vec<u8>> {
        let payloads = h264::packetize(nals.iter().copied(), 100);
        let n = payloads.len();
        payloads
            .iter()
            .enumerate()
            .map(|(i, pl)| {
                let mut b = Vec::new();
                RtpPacket {
                    payload_type: 96,
                    marker: i + 1 == n,
                    sequence: *seq,
                    timestamp: ts,
                    ssrc: 1,
                    payload: pl,
                }
                .write(&mut b);
                *seq = seq.wrapping_add(1);
                b
            })
            .collect()
    }

    fn sender_report(rtp: u32, unix_ms: u64) -> Vec<u8> {
        let secs = unix_ms / 1000 + NTP_UNIX_OFFSET;
        let frac = ((unix_ms % 1000) << 32) / 1000;
        let mut b = vec![0x80, 200, 0, 6, 0, 0, 0, 1];
        b.extend_from_slice(&(secs as u32).to_be_bytes());
        b.extend_from_slice(&(frac as u32).to_be_bytes());
        b.extend_from_slice(&rtp.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b
    }

    #[test]
    fn pictures_become_flv_video_after_the_configuration_with_wall_clock_times() {
        let mut t = video();
        let mut seq = 65530;
        // 1 700 000 000 123 ms since 1970 at RTP timestamp 1000.
        t.rtcp(&sender_report(1000, 1_700_000_000_123));
        let idr: Vec<u8> = std::iter::once(0x65).chain(0..=255).collect();
        let mut out = Vec::new();
        for p in picture(&[&idr], 1000, &mut seq) {
            out.extend(t.rtp(&p));
        }
        for p in picture(&[&[0x41, 1, 2]], 1000 + 3000, &mut seq) {
            out.extend(t.rtp(&p));
        }
        assert_eq!(out.len(), 3);
        assert!(out[0].is_config() && out[1].is_key_frame());
        let (_, d, ms) = out[2].as_av().unwrap();
        assert!(tag::is_frame(d) && !tag::is_key_frame(d));
        let expect = (1_700_000_000_123u64 % (1 << 32)) as u32;
        assert_eq!(out[1].as_av().unwrap().2, expect);
        assert_eq!(ms, expect + 33, "3000 ticks at 90 kHz");
        assert!(t.stats.wall_clock);
        assert_eq!((t.stats.frames, t.stats.rtp_lost), (2, 0));
    }

    /// Over UDP the first report comes on another port and can be read
    /// after the first picture: the picture waits for it, so the track
    /// still goes on the wall clock. Without a report the pictures wait
    /// [`REPORT_WAIT_MS`] of media time, then go on media time from 0.
    #[test]
    fn first_pictures_wait_for_a_report_that_comes_just_after_them() {
        let mut t = video();
        let mut seq = 0;
        let idr = [0x65, 1];
        let mut out = Vec::new();
        for p in picture(&[&idr], 1000, &mut seq) {
            out.extend(t.rtp(&p));
        }
        for p in picture(&[&[0x41, 2]], 4000, &mut seq) {
            out.extend(t.rtp(&p));
        }
        assert!(out.is_empty(), "waiting for a report");
        out.extend(t.rtcp(&sender_report(1000, 1_700_000_000_123)));
        let wall = (1_700_000_000_123u64 % (1 << 32)) as u32;
        let times: Vec<u32> = out.iter().map(|m| m.as_av().unwrap().2).collect();
        assert_eq!(times, [wall, wall, wall + 33], "config, key, delta");
        assert!(t.stats.wall_clock);

        let mut t = video();
        let mut out = Vec::new();
        for (i, ts) in (0..4u32).map(|i| (i, 1000 + i * 3000)) {
            for p in picture(&[&[if i == 0 { 0x65 } else { 0x41 }, 3]], ts, &mut seq) {
                out.extend(t.rtp(&p));
            }
            // 100 ms of media time is reached at the fourth picture.
            assert_eq!(out.is_empty(), i < 3, "picture {i}");
        }
        let times: Vec<u32> = out.iter().map(|m| m.as_av().unwrap().2).collect();
        assert_eq!(times, [0, 0, 33, 67, 100]);
        assert!(!t.stats.wall_clock);
        // A late report does not move a track off media time.
        t.rtcp(&sender_report(1000, 1_700_000_000_123));
        for p in picture(&[&[0x41, 4]], 13_000, &mut seq) {
            assert_eq!(t.rtp(&p)[0].as_av().unwrap().2, 133);
        }
    }

    #[test]
    fn a_lost_packet_drops_pictures_until_the_next_key_frame() {
        let mut t = video();
        let mut seq = 0;
        let big: Vec<u8> = std::iter::once(0x41).chain(0..250).collect();
        let idr = [0x65, 1];
        let mut out = Vec::new();
        let mut feed = |t: &mut TrackIngest, packets: Vec<Vec<u8>>, skip: Option<usize>| {
            for (i, p) in packets.iter().enumerate() {
                if Some(i) != skip {
                    out.extend(t.rtp(p));
                }
            }
        };
        feed(&mut t, picture(&[&idr], 0, &mut seq), None);
        feed(&mut t, picture(&[&big], 3000, &mut seq), Some(1)); // damaged
        feed(&mut t, picture(&[&[0x41, 7]], 6000, &mut seq), None); // undecodable
        feed(&mut t, picture(&[&idr], 9000, &mut seq), None); // key: resumes
        let kinds: Vec<bool> = out
            .iter()
            .filter(|m| !m.is_config())
            .map(Media::is_key_frame)
            .collect();
        assert_eq!(kinds, [true, true]);
        assert_eq!(
            (t.stats.damaged, t.stats.undecodable, t.stats.rtp_lost),
            (1, 2, 1)
        );
        assert_eq!(t.take_withheld(), [33, 67], "their media times");
        // No report: media time from the first picture.
        assert!(!t.stats.wall_clock);
        assert_eq!(out.last().unwrap().as_av().unwrap().2, 100);
    }

    #[test]
    fn aac_frames_follow_their_configuration() {
        let mut t = TrackIngest::new(Track {
            control: "streamid=1".into(),
            payload_type: 97,
            clock_rate: 48_000,
            codec: Codec::Aac {
                config: vec![0x11, 0x90],
                params: aac::HbrParams::default(),
                channels: 2,
            },
        });
        let mut out = Vec::new();
        // Six frames: 107 ms of media time, past the wait for a report.
        for i in 0..6u32 {
            let ts = i * 1024;
            let payload = &aac::packetize(&[0x21, i as u8], 1400)[0];
            let mut b = Vec::new();
            RtpPacket {
                payload_type: 97,
                marker: true,
                sequence: i as u16,
                timestamp: ts,
                ssrc: 2,
                payload,
            }
            .write(&mut b);
            out.extend(t.rtp(&b));
        }
        assert_eq!(out.len(), 7);
        assert!(out[0].is_config());
        assert_eq!(out[2].as_av().unwrap().1.as_ref(), &[0xAF, 1, 0x21, 1]);
        assert_eq!(out[2].as_av().unwrap().2, 21, "1024 samples at 48 kHz");
        // Other payload types and garbage are counted, not passed on.
        assert!(t.rtp(&[1, 2, 3]).is_empty());
        assert_eq!(t.stats.rtp_invalid, 1);
    }
}
