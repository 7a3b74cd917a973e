//! The hub: streams by key, who publishes each, who plays it, and what a
//! late player needs first.
//!
//! Every protocol's server side is a client of the hub: an ingest claims a
//! key and publishes messages into it, an egress subscribes and forwards
//! what comes out. So any ingest feeds any egress (an RTMP publisher feeds
//! UDP players, a UDP publisher feeds RTMP and QUIC players: the gateway),
//! and the hub knows no protocol.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

use super::media::{Media, StreamInfo};
use crate::media::source::unpack;
use crate::media::tag;

/// The relay's application name in stream URIs (rtmp://host/APP/key).
pub const APP: &str = "live";

/// Messages a player may have queued before the hub gives up on it.
pub const PLAYER_QUEUE: usize = 65_536;

const GOP_CACHE_BYTES: usize = 32 << 20;
const GOP_CACHE_MESSAGES: usize = 8192;

/// What the hub saw, for the report (the `relay` section of results.json,
/// next to the protocols' own server statistics).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HubStats {
    pub publishes_accepted: u64,
    pub publishes_refused: u64,
    pub players: u64,
    pub video_messages_in: u64,
    /// Media timestamps of the video frames published (not configuration).
    #[serde(skip)]
    pub published_video_timestamps: Vec<u32>,
    /// Media timestamps of video frames an ingest received but could not
    /// publish (an RTSP picture damaged by a lost packet, or undecodable
    /// after one): sent by the publisher, never on the hub. With the
    /// published ones they are what an outside publisher sent (ffmpeg's
    /// captures), so a frame lost on the first mile counts as lost.
    #[serde(skip)]
    pub withheld_video_timestamps: Vec<u32>,
    /// Players disconnected because they fell too far behind.
    pub slow_players_dropped: u64,
    /// Per video frame (by sequence number): when an ingest handed it to
    /// the hub, and when an egress first handed it to a player's transport
    /// (the per-hop breakdown).
    #[serde(skip)]
    pub hops: HashMap<u64, RelayHop>,
    /// Per stream key (`glass serve` prints them).
    #[serde(skip)]
    pub streams: BTreeMap<String, StreamCounters>,
}

/// What one stream saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    pub publishes_accepted: u64,
    pub publishes_refused: u64,
    pub players: u64,
    pub video_messages: u64,
    pub audio_messages: u64,
    pub bytes_in: u64,
}

/// When one video frame passed the relay.
#[derive(Copy, Clone, Debug, Default)]
pub struct RelayHop {
    pub received: Option<Instant>,
    pub sent: Option<Instant>,
}

#[derive(Default)]
struct Stream {
    publishing: bool,
    info: Option<StreamInfo>,
    video_config: Option<Media>,
    audio_config: Option<Media>,
    /// Audio and video since the latest key frame, so a player that joins
    /// mid-stream starts decoding at once (nginx-rtmp's and SRS's "GOP
    /// cache"). Bounded; a GOP too long to cache is not cached.
    gop: Vec<Media>,
    gop_bytes: usize,
    players: Vec<mpsc::Sender<Media>>,
}

impl Stream {
    fn cache(&mut self, m: &Media) {
        let Some((_, data, _)) = m.as_av() else {
            return;
        };
        if m.is_config() {
            return;
        }
        if m.is_key_frame() {
            self.gop.clear();
            self.gop_bytes = 0;
        } else if self.gop.is_empty() {
            return; // no key frame to start from
        }
        self.gop_bytes += data.len();
        if self.gop_bytes > GOP_CACHE_BYTES || self.gop.len() >= GOP_CACHE_MESSAGES {
            self.gop.clear();
            self.gop_bytes = 0;
            return;
        }
        self.gop.push(m.clone());
    }
}

/// A player's subscription: what it missed, then the stream as it comes.
pub struct Subscription {
    /// The stream's description, its decoder configuration and the GOP so
    /// far, to send before anything from `rx`.
    pub catch_up: Vec<Media>,
    pub rx: mpsc::Receiver<Media>,
}

/// The relay's streams, shared by every protocol's server side.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// The only key a publisher may claim.
    stream_key: String,
    streams: Mutex<HashMap<String, Stream>>,
    stats: Mutex<HubStats>,
    /// One past the highest video sequence number an egress has handed to
    /// a player's transport: each player is sent frames in order, so a
    /// frame below it was timed by an earlier player, and the other
    /// thousand players of a stream skip the stats lock.
    sent_through: AtomicU64,
}

/// The hub's state was poisoned by a panicking task.
#[derive(Debug, thiserror::Error)]
#[error("the relay's stream table is poisoned (a relay task panicked)")]
pub struct Poisoned;

impl Hub {
    /// A hub that accepts publishers of `stream_key` only.
    pub fn new(stream_key: impl Into<String>) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                stream_key: stream_key.into(),
                streams: Mutex::default(),
                stats: Mutex::default(),
                sent_through: AtomicU64::new(0),
            }),
        }
    }

    /// The key publishers must claim (a protocol that checks the key
    /// before its publish step, as RTSP's ANNOUNCE does, asks it).
    pub fn stream_key(&self) -> &str {
        &self.inner.stream_key
    }

    fn with_stats(&self, f: impl FnOnce(&mut HubStats)) {
        if let Ok(mut st) = self.inner.stats.lock() {
            f(&mut st);
        }
    }

    /// Claims `key` for a publisher: refused if it is not the relay's key
    /// or someone already publishes it. Counted either way.
    pub fn claim(&self, key: &str) -> Result<bool, Poisoned> {
        let accepted = {
            let mut s = self.inner.streams.lock().map_err(|_| Poisoned)?;
            let stream = s.entry(key.to_string()).or_default();
            let ok = key == self.inner.stream_key && !stream.publishing;
            stream.publishing |= ok;
            ok
        };
        self.with_stats(|st| {
            let s = st.streams.entry(key.to_string()).or_default();
            if accepted {
                st.publishes_accepted += 1;
                s.publishes_accepted += 1;
            } else {
                st.publishes_refused += 1;
                s.publishes_refused += 1;
            }
        });
        Ok(accepted)
    }

    /// The publisher of `key` left.
    pub fn release(&self, key: &str) {
        if let Ok(mut s) = self.inner.streams.lock()
            && let Some(stream) = s.get_mut(key)
        {
            stream.publishing = false;
        }
    }

    /// Registers a player of `key`: what it missed (description, decoder
    /// configuration, the GOP so far) and the channel of what comes next,
    /// taken under one lock so nothing falls between them.
    pub fn subscribe(&self, key: &str) -> Result<Subscription, Poisoned> {
        let sub = self.subscription(key)?;
        self.with_stats(|st| {
            st.players += 1;
            st.streams.entry(key.to_string()).or_default().players += 1;
        });
        Ok(sub)
    }

    /// Subscribes a consumer inside the relay (the HLS packager) to `key`:
    /// like [`Hub::subscribe`], but not counted as a player.
    pub fn tap(&self, key: &str) -> Result<Subscription, Poisoned> {
        self.subscription(key)
    }

    /// Registers a subscriber of `key` and takes what it missed, under one
    /// lock.
    fn subscription(&self, key: &str) -> Result<Subscription, Poisoned> {
        let (tx, rx) = mpsc::channel(PLAYER_QUEUE);
        let mut s = self.inner.streams.lock().map_err(|_| Poisoned)?;
        let stream = s.entry(key.to_string()).or_default();
        stream.players.push(tx);
        let mut catch_up = Vec::new();
        catch_up.extend(stream.info.clone().map(Media::Info));
        catch_up.extend(stream.video_config.clone());
        catch_up.extend(stream.audio_config.clone());
        catch_up.extend(stream.gop.iter().cloned());
        Ok(Subscription { catch_up, rx })
    }

    /// A video frame with media timestamp `ts` that an ingest received on
    /// `key` but could not publish (see `withheld_video_timestamps`).
    pub fn withhold(&self, _key: &str, ts: u32) {
        self.with_stats(|st| st.withheld_video_timestamps.push(ts));
    }

    /// A publisher's message on `key`: counted, cached when it is the
    /// stream's description or configuration, and fanned out to every
    /// player (dropping players that fell too far behind).
    pub fn publish(&self, key: &str, media: Media) -> Result<(), Poisoned> {
        self.publish_at(key, media, Instant::now())
    }

    /// [`Hub::publish`] at instant `now` (virtual time gives its own).
    pub fn publish_at(&self, key: &str, media: Media, now: Instant) -> Result<(), Poisoned> {
        if let Some((video, data, ts)) = media.as_av() {
            // Counted under one lock: the stream's messages and, for a video
            // frame, its media timestamp and (Glass's frames) when it arrived.
            let frame = video && tag::is_frame(data);
            let seq = if video {
                unpack(data, true).map(|h| h.seq)
            } else {
                None
            };
            self.with_stats(|st| {
                let s = st.streams.entry(key.to_string()).or_default();
                s.bytes_in += data.len() as u64;
                if video {
                    s.video_messages += 1;
                    st.video_messages_in += 1;
                } else {
                    s.audio_messages += 1;
                }
                if frame {
                    st.published_video_timestamps.push(ts);
                }
                if let Some(seq) = seq {
                    st.hops.entry(seq).or_default().received.get_or_insert(now);
                }
            });
        }
        let mut s = self.inner.streams.lock().map_err(|_| Poisoned)?;
        let stream = s.entry(key.to_string()).or_default();
        match &media {
            Media::Info(i) => stream.info = Some(i.clone()),
            Media::Video(..) if media.is_config() => stream.video_config = Some(media.clone()),
            Media::Audio(..) if media.is_config() => stream.audio_config = Some(media.clone()),
            _ => {}
        }
        stream.cache(&media);
        // A player whose queue is full fell behind and is dropped; one whose
        // session ended (its receiver is gone) just leaves.
        let mut dropped = 0u64;
        stream.players.retain(|p| match p.try_send(media.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped += 1;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        drop(s);
        if dropped > 0 {
            self.with_stats(|st| st.slow_players_dropped += dropped);
        }
        Ok(())
    }

    /// An egress handed `m` to a player's transport just now: the first
    /// time times the relay hop of a Glass video frame (frames without a
    /// Glass header, e.g. ffmpeg's, have no sequence number and are not
    /// timed).
    pub fn note_sent(&self, m: &Media) {
        self.note_sent_at(m, Instant::now());
    }

    /// [`Hub::note_sent`] at instant `now`.
    pub fn note_sent_at(&self, m: &Media, now: Instant) {
        let Media::Video(data, _) = m else { return };
        let Some(h) = unpack(data, true) else { return };
        if self
            .inner
            .sent_through
            .fetch_max(h.seq + 1, Ordering::Relaxed)
            > h.seq
        {
            return;
        }
        self.with_stats(|st| {
            st.hops.entry(h.seq).or_default().sent.get_or_insert(now);
        });
    }

    /// What the hub saw so far.
    pub fn stats(&self) -> HubStats {
        self.inner
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(key: bool, byte: u8) -> Media {
        let t = if key { 0x17 } else { 0x27 };
        Media::Video(Bytes::from(vec![t, 0x01, 0, 0, 0, byte]), u32::from(byte))
    }

    #[test]
    fn a_late_player_gets_the_configuration_and_the_gop_so_far() {
        let hub = Hub::new("k");
        assert!(hub.claim("k").unwrap());
        assert!(
            !hub.claim("k").unwrap(),
            "a second publisher of the same key"
        );
        assert!(
            !hub.claim("other").unwrap(),
            "a key the relay does not take"
        );
        let config = Media::Video(Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 1]), 0);
        let info = Media::Info(StreamInfo {
            video_codec_id: Some(7),
            ..StreamInfo::default()
        });
        for m in [
            info.clone(),
            config.clone(),
            video(false, 1),
            video(true, 2),
            video(false, 3),
        ] {
            hub.publish("k", m).unwrap();
        }
        let sub = hub.subscribe("k").unwrap();
        // The P frame before the first key frame is not cached.
        assert_eq!(
            sub.catch_up,
            vec![info, config, video(true, 2), video(false, 3)]
        );
        hub.publish("k", video(true, 4)).unwrap();
        let mut rx = sub.rx;
        assert_eq!(rx.try_recv().unwrap(), video(true, 4));
        // A new key frame starts the cache over.
        assert_eq!(hub.subscribe("k").unwrap().catch_up[2..], [video(true, 4)]);
        let st = hub.stats();
        assert_eq!(
            (st.publishes_accepted, st.publishes_refused, st.players),
            (1, 2, 2)
        );
        assert_eq!(st.published_video_timestamps, vec![1, 2, 3, 4]);
        let k = &st.streams["k"];
        assert_eq!(
            (
                k.publishes_accepted,
                k.players,
                k.video_messages,
                k.audio_messages
            ),
            (1, 2, 5, 0)
        );
        assert_eq!(st.streams["other"].publishes_refused, 1);
        hub.release("k");
        assert!(hub.claim("k").unwrap(), "the key is free again");
    }

    #[test]
    fn a_player_that_falls_behind_is_dropped_not_waited_for() {
        let hub = Hub::new("k");
        let _slow = hub.subscribe("k").unwrap();
        // A player that left is not counted as one that fell behind.
        drop(hub.subscribe("k").unwrap());
        for i in 0..=PLAYER_QUEUE {
            hub.publish("k", video(i == 0, (i % 200) as u8)).unwrap();
        }
        assert_eq!(hub.stats().slow_players_dropped, 1);
    }
}
