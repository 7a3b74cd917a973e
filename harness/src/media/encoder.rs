//! The camera and encoder model: video frames at a fixed rate in GOPs (an
//! I-frame several times larger than the P-frames that follow it), sizes drawn
//! from a seeded log-normal distribution around what the target bitrate
//! allows, an encode delay between capture and availability, and audio frames
//! every 20 ms. The target bitrate can change during a run (ABR); frames
//! captured after the change follow it.
//!
//! Sans-IO like the engine: `poll_timeout()` says when the next frame is ready,
//! `poll_frame(now)` hands out frames that are.

use std::time::Duration;

use netem::Time;
use netem::rng::{SeedTree, StageRng};
use netem::units::BitRate;

use super::frame::{Frame, FrameHeader, FrameKind};

/// Encoder settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderConfig {
    /// Target video bitrate.
    pub bitrate: BitRate,
    pub fps: f64,
    /// Frames per GOP (an I-frame every `gop` frames).
    pub gop: u32,
    /// Mean I-frame size over mean P-frame size.
    pub i_frame_ratio: f64,
    /// Coefficient of variation of frame sizes around their mean.
    pub size_cv: f64,
    /// From capture to the encoded frame being ready to send.
    pub encode_delay: Duration,
    pub audio: Option<AudioConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AudioConfig {
    pub bitrate: BitRate,
    /// Samples per frame, as a duration (20 ms). A frame is ready once its
    /// last sample is captured.
    pub frame: Duration,
}

impl Default for EncoderConfig {
    /// 2.5 Mbit/s 720p30, a 2 s GOP, I-frames 6× P-frames, 15 % size spread,
    /// 30 ms encode delay (a hardware encoder in low-latency mode), 128 kbit/s
    /// audio in 20 ms frames.
    fn default() -> Self {
        EncoderConfig {
            bitrate: BitRate::from_bits_per_sec(2_500_000),
            fps: 30.0,
            gop: 60,
            i_frame_ratio: 6.0,
            size_cv: 0.15,
            encode_delay: Duration::from_millis(30),
            audio: Some(AudioConfig {
                bitrate: BitRate::from_bits_per_sec(128_000),
                frame: Duration::from_millis(20),
            }),
        }
    }
}

impl EncoderConfig {
    /// Mean (I-frame, P-frame) sizes in bytes at `bps`: one GOP's bits are
    /// `bps·gop/fps = I + (gop−1)·P` with `I = ratio·P`.
    pub fn mean_sizes(&self, bps: f64) -> (f64, f64) {
        let gop = f64::from(self.gop);
        let p = bps * gop / self.fps / (self.i_frame_ratio + gop - 1.0) / 8.0;
        (self.i_frame_ratio * p, p)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 240.0) {
            return Err(format!("fps {} is not between 0 and 240", self.fps));
        }
        if self.gop == 0 {
            return Err("a GOP has at least one frame".into());
        }
        if !(self.i_frame_ratio >= 1.0 && self.i_frame_ratio.is_finite()) {
            return Err("an I-frame is at least as large as a P-frame (i_frame_ratio ≥ 1)".into());
        }
        if !(0.0..=2.0).contains(&self.size_cv) {
            return Err("the frame size spread (size_cv) is between 0 and 2".into());
        }
        if self.audio.as_ref().is_some_and(|a| a.frame.is_zero()) {
            return Err("an audio frame lasts longer than 0".into());
        }
        Ok(())
    }
}

/// The encoder.
pub struct Encoder {
    cfg: EncoderConfig,
    rng: StageRng,
    start: Time,
    target_bps: f64,
    next_video: u64,
    next_audio: u64,
}

impl Encoder {
    /// Starts capturing at `start`.
    pub fn new(cfg: EncoderConfig, seeds: SeedTree, start: Time) -> Encoder {
        let target_bps = cfg.bitrate.bits_per_sec() as f64;
        Encoder {
            cfg,
            rng: seeds.child("encoder").rng(),
            start,
            target_bps,
            next_video: 0,
            next_audio: 0,
        }
    }

    /// When the camera started capturing.
    pub fn start(&self) -> Time {
        self.start
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    pub fn target_bitrate(&self) -> f64 {
        self.target_bps
    }

    /// Changes the target bitrate (ABR) for frames not yet produced.
    pub fn set_target_bitrate(&mut self, bps: f64) {
        self.target_bps = bps.max(1.0);
    }

    fn video_capture(&self, seq: u64) -> Time {
        self.start + Duration::from_secs_f64(seq as f64 / self.cfg.fps)
    }

    fn audio_capture(&self, a: &AudioConfig, seq: u64) -> Time {
        self.start + a.frame * u32::try_from(seq).unwrap_or(u32::MAX)
    }

    fn next_video_ready(&self) -> Time {
        self.video_capture(self.next_video) + self.cfg.encode_delay
    }

    fn next_audio_ready(&self) -> Option<Time> {
        let a = self.cfg.audio.as_ref()?;
        Some(self.audio_capture(a, self.next_audio) + a.frame)
    }

    /// When the next frame is ready.
    pub fn poll_timeout(&self) -> Time {
        let v = self.next_video_ready();
        self.next_audio_ready().map_or(v, |a| a.min(v))
    }

    /// The next frame ready at `now`, if any (video first on a tie).
    pub fn poll_frame(&mut self, now: Time) -> Option<Frame> {
        let v = self.next_video_ready();
        let a = self.next_audio_ready();
        if v <= now && a.is_none_or(|a| v <= a) {
            return Some(self.video_frame());
        }
        if let Some(a) = a
            && a <= now
        {
            return Some(self.audio_frame());
        }
        None
    }

    fn video_frame(&mut self) -> Frame {
        let seq = self.next_video;
        self.next_video += 1;
        let gop = u64::from(self.cfg.gop);
        let kind = if seq.is_multiple_of(gop) {
            FrameKind::I
        } else {
            FrameKind::P
        };
        let (mean_i, mean_p) = self.cfg.mean_sizes(self.target_bps);
        let mean = if kind == FrameKind::I { mean_i } else { mean_p };
        // Log-normal with the asked mean and spread: σ² = ln(1 + cv²), μ = ln m − σ²/2.
        let s2 = (1.0 + self.cfg.size_cv.powi(2)).ln();
        let size = (mean.ln() - s2 / 2.0 + s2.sqrt() * self.rng.normal()).exp();
        Frame::new(FrameHeader {
            kind,
            seq,
            gop: u32::try_from(seq / gop).unwrap_or(u32::MAX),
            capture: self.video_capture(seq),
            size: size.round().clamp(1.0, 16e6) as u32,
        })
    }

    fn audio_frame(&mut self) -> Frame {
        let a = self
            .cfg
            .audio
            .clone()
            .expect("audio frames only when audio is on");
        let seq = self.next_audio;
        self.next_audio += 1;
        let size = a.bitrate.bits_per_sec() as f64 * a.frame.as_secs_f64() / 8.0;
        Frame::new(FrameHeader {
            kind: FrameKind::Audio,
            seq,
            gop: 0,
            capture: self.audio_capture(&a, seq),
            size: size.round() as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_until(enc: &mut Encoder, end: Time) -> Vec<(Time, Frame)> {
        let mut out = Vec::new();
        while enc.poll_timeout() <= end {
            let t = enc.poll_timeout();
            while let Some(f) = enc.poll_frame(t) {
                out.push((t, f));
            }
        }
        out
    }

    fn video_bps(frames: &[(Time, Frame)], from: f64, to: f64) -> f64 {
        let bytes: u64 = frames
            .iter()
            .filter(|(_, f)| f.header.kind.is_video())
            .filter(|(_, f)| (from..to).contains(&f.header.capture.as_secs_f64()))
            .map(|(_, f)| u64::from(f.header.size))
            .sum();
        bytes as f64 * 8.0 / (to - from)
    }

    #[test]
    fn hits_the_target_bitrate_with_large_i_frames() {
        let cfg = EncoderConfig::default();
        let mut enc = Encoder::new(cfg.clone(), SeedTree::new(1), Time::ZERO);
        let frames = frames_until(&mut enc, Time::from_millis(120_000));
        // 3600 frames with a 15 % spread: the mean is known to ~0.3 %; 2 % is > 5σ.
        let bps = video_bps(&frames, 0.0, 120.0);
        assert!((bps / 2.5e6 - 1.0).abs() < 0.02, "{bps}");
        let mean = |k: FrameKind| {
            let s: Vec<f64> = frames
                .iter()
                .filter(|(_, f)| f.header.kind == k)
                .map(|(_, f)| f64::from(f.header.size))
                .collect();
            s.iter().sum::<f64>() / s.len() as f64
        };
        let ratio = mean(FrameKind::I) / mean(FrameKind::P);
        // 60 I-frames: their mean is known to ~2 %; 10 % is 5σ.
        assert!((ratio / 6.0 - 1.0).abs() < 0.1, "I/P {ratio}");
        // Audio: 128 kbit/s in 20 ms frames of 320 bytes, 50 per second.
        let audio: Vec<_> = frames
            .iter()
            .filter(|(_, f)| f.header.kind == FrameKind::Audio)
            .collect();
        assert_eq!(audio.len(), 6000);
        assert!(audio.iter().all(|(_, f)| f.header.size == 320));
    }

    #[test]
    fn timing_gop_and_encode_delay() {
        let mut enc = Encoder::new(
            EncoderConfig::default(),
            SeedTree::new(2),
            Time::from_millis(500),
        );
        let frames = frames_until(&mut enc, Time::from_millis(4_500));
        let video: Vec<_> = frames
            .iter()
            .filter(|(_, f)| f.header.kind.is_video())
            .collect();
        for (ready, f) in &video {
            // Ready exactly one encode delay after capture.
            assert_eq!(*ready, f.header.capture + Duration::from_millis(30));
            let k = f.header.seq;
            assert_eq!(
                f.header.capture,
                Time::from_millis(500) + Duration::from_secs_f64(k as f64 / 30.0)
            );
            assert_eq!(f.header.kind == FrameKind::I, k % 60 == 0);
            assert_eq!(u64::from(f.header.gop), k / 60);
        }
        // Frames come out in ready order.
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn follows_a_bitrate_change_and_replays_by_seed() {
        let run = |seed| {
            let mut enc = Encoder::new(EncoderConfig::default(), SeedTree::new(seed), Time::ZERO);
            let mut frames = frames_until(&mut enc, Time::from_millis(60_000));
            enc.set_target_bitrate(1.0e6);
            frames.extend(frames_until(&mut enc, Time::from_millis(120_000)));
            frames
        };
        let frames = run(3);
        let after = video_bps(&frames, 62.0, 120.0);
        assert!((after / 1.0e6 - 1.0).abs() < 0.03, "{after}");
        let sizes = |f: &[(Time, Frame)]| f.iter().map(|(_, f)| f.header.size).collect::<Vec<_>>();
        assert_eq!(sizes(&frames), sizes(&run(3)));
        assert_ne!(sizes(&frames), sizes(&run(4)));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            EncoderConfig {
                fps: 0.0,
                ..EncoderConfig::default()
            },
            EncoderConfig {
                gop: 0,
                ..EncoderConfig::default()
            },
            EncoderConfig {
                i_frame_ratio: 0.5,
                ..EncoderConfig::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
        assert!(EncoderConfig::default().validate().is_ok());
    }
}
