//! An HTTP-FLV response body: a player's hub subscription written as one
//! FLV stream. It starts with the FLV header, `onMetaData` and the decoder
//! configuration, then the GOP so far (so a player starts decoding at once,
//! like an RTMP player of the same relay), then each message as the hub
//! hands it over.
//!
//! The body pulls from the subscription only when hyper asks for more, so a
//! player that reads slowly leaves its messages in its hub queue, and the
//! hub drops it when that queue is full (the same rule as for RTMP
//! players); the response then ends.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use rml_amf0::Amf0Value;
use tokio::sync::mpsc;

use super::server::Counters;
use crate::media::flv::{STREAM_HEADER, TagKind, write_tag};
use crate::relay::{Hub, Media, StreamInfo, Subscription};

/// Bytes gathered into one body frame (one HTTP chunk) at most, from what
/// is already queued: a player that fell behind catches up in large writes.
const BATCH: usize = 64 * 1024;

/// A live FLV stream from the hub.
pub struct FlvBody {
    /// The FLV header is still to be written (with the first message, so
    /// that it can say what the stream holds).
    head: bool,
    /// What the subscription's catch-up still holds.
    queue: VecDeque<Media>,
    rx: mpsc::Receiver<Media>,
    hub: Hub,
    /// Without the GOP cache: audio and video wait for the next key frame.
    waiting_for_key: bool,
    counters: Arc<Counters>,
}

impl FlvBody {
    /// The stream of `sub`; `gop_cache` false skips the cached GOP and
    /// starts at the next key frame.
    pub fn new(sub: Subscription, hub: Hub, gop_cache: bool, counters: Arc<Counters>) -> FlvBody {
        let queue = sub
            .catch_up
            .into_iter()
            .filter(|m| gop_cache || m.as_av().is_none() || m.is_config())
            .collect();
        FlvBody {
            head: true,
            queue,
            rx: sub.rx,
            hub,
            waiting_for_key: !gop_cache,
            counters,
        }
    }

    fn append(&mut self, m: &Media, out: &mut Vec<u8>) {
        let (kind, ts, data) = match m {
            Media::Info(info) => (TagKind::Script, 0, Bytes::from(on_metadata(info))),
            Media::Video(d, ts) => (TagKind::Video, *ts, d.clone()),
            Media::Audio(d, ts) => (TagKind::Audio, *ts, d.clone()),
        };
        if self.waiting_for_key && m.as_av().is_some() && !m.is_config() {
            if !m.is_key_frame() {
                return;
            }
            self.waiting_for_key = false;
        }
        if write_tag(out, kind, ts, &data).is_err() {
            // Over 16 MiB: no FLV player could take it either.
            self.counters.tags_too_big.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if kind == TagKind::Video {
            self.hub.note_sent(m);
        }
    }
}

impl Body for FlvBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let mut out = Vec::new();
        if this.head {
            // The header says which of audio and video the stream has, as
            // the stream's onMetaData does when it comes first (ffmpeg's
            // RTMP client does the same): a player that is told "audio"
            // waits for audio before it plays (ffmpeg probes for seconds).
            let first = match this.queue.pop_front() {
                Some(m) => m,
                None => match this.rx.poll_recv(cx) {
                    Poll::Ready(Some(m)) => m,
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                },
            };
            this.head = false;
            out.extend_from_slice(&header_for(&first));
            this.append(&first, &mut out);
        }
        while out.len() < BATCH
            && let Some(m) = this.queue.pop_front()
        {
            this.append(&m, &mut out);
        }
        let mut ended = false;
        while out.len() < BATCH {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(m)) => this.append(&m, &mut out),
                Poll::Ready(None) => {
                    // The hub dropped this player (it fell behind) or the
                    // relay is stopping: the response ends.
                    ended = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if out.is_empty() {
            return if ended {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        }
        this.counters
            .bytes_sent
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(out.into()))))
    }
}

/// The FLV header of a stream whose first message is `first`: audio and
/// video flags from its onMetaData's codec ids, both without one.
fn header_for(first: &Media) -> [u8; 13] {
    let mut h = STREAM_HEADER;
    if let Media::Info(i) = first
        && (i.video_codec_id.is_some() || i.audio_codec_id.is_some())
    {
        h[4] = u8::from(i.audio_codec_id.is_some()) << 2 | u8::from(i.video_codec_id.is_some());
    }
    h
}

/// The `onMetaData` script tag body for `info`: what RTMP's `@setDataFrame`
/// carries, under the names FLV players read.
pub fn on_metadata(info: &StreamInfo) -> Vec<u8> {
    let mut fields = std::collections::HashMap::new();
    let mut number = |name: &str, v: Option<f64>| {
        if let Some(v) = v {
            fields.insert(name.to_string(), Amf0Value::Number(v));
        }
    };
    number("width", info.video_width.map(f64::from));
    number("height", info.video_height.map(f64::from));
    number("videocodecid", info.video_codec_id.map(f64::from));
    number("framerate", info.video_frame_rate.map(f64::from));
    number("videodatarate", info.video_bitrate_kbps.map(f64::from));
    number("audiocodecid", info.audio_codec_id.map(f64::from));
    number("audiodatarate", info.audio_bitrate_kbps.map(f64::from));
    number("audiosamplerate", info.audio_sample_rate.map(f64::from));
    number("audiochannels", info.audio_channels.map(f64::from));
    if let Some(stereo) = info.audio_is_stereo {
        fields.insert("stereo".into(), Amf0Value::Boolean(stereo));
    }
    if let Some(e) = &info.encoder {
        fields.insert("encoder".into(), Amf0Value::Utf8String(e.clone()));
    }
    let values = vec![
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(fields),
    ];
    // Numbers, booleans and strings under 64 KiB always serialize.
    rml_amf0::serialize(&values).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::BodyExt;

    use super::*;
    use crate::media::flv::TagReader;

    fn video(key: bool, ts: u32) -> Media {
        let t = if key { 0x17 } else { 0x27 };
        Media::Video(Bytes::from(vec![t, 0x01, 0, 0, 0, ts as u8]), ts)
    }

    /// The FLV a player reads from a body, as (kind, timestamp) per tag.
    async fn read(
        body: FlvBody,
        frames: usize,
        head: impl Fn(&[u8]),
    ) -> Vec<(TagKind, u32, Vec<u8>)> {
        let mut body = body;
        let mut r = TagReader::default();
        let mut tags = Vec::new();
        for i in 0..frames {
            let Some(Ok(f)) = body.frame().await else {
                break;
            };
            if i == 0 {
                head(f.data_ref().unwrap());
            }
            r.push(f.data_ref().unwrap());
            while let Some(t) = r.next_tag().unwrap() {
                tags.push((t.kind, t.ts_ms, t.data));
            }
        }
        tags
    }

    #[tokio::test]
    async fn a_player_gets_metadata_configuration_the_gop_then_live_tags() {
        let hub = Hub::new("k");
        assert!(hub.claim("k").unwrap());
        let info = StreamInfo {
            video_width: Some(640),
            video_codec_id: Some(7),
            encoder: Some("glass".into()),
            ..StreamInfo::default()
        };
        let config = Media::Video(Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 1]), 0);
        for m in [
            Media::Info(info.clone()),
            config,
            video(true, 40),
            video(false, 80),
        ] {
            hub.publish("k", m).unwrap();
        }
        for gop_cache in [true, false] {
            let counters = Arc::new(Counters::default());
            let body = FlvBody::new(
                hub.subscribe("k").unwrap(),
                hub.clone(),
                gop_cache,
                counters.clone(),
            );
            hub.publish("k", video(false, 120)).unwrap();
            hub.publish("k", video(true, 160)).unwrap();
            let tags = read(body, 1, |head| {
                assert_eq!(head[4], 0x01, "video only: onMetaData has no audio codec")
            })
            .await;
            let kinds: Vec<(TagKind, u32)> = tags.iter().map(|t| (t.0, t.1)).collect();
            let mut want = vec![(TagKind::Script, 0), (TagKind::Video, 0)];
            if gop_cache {
                want.extend([40, 80, 120, 160].map(|ts| (TagKind::Video, ts)));
            } else {
                // Without the cache the P frame at 120 has nothing to
                // decode from: the stream starts at the key frame at 160.
                want.push((TagKind::Video, 160));
            }
            assert_eq!(kinds, want, "gop_cache = {gop_cache}");
            // onMetaData: an AMF0 string then an object with the fields.
            let meta = rml_amf0::deserialize(&mut std::io::Cursor::new(&tags[0].2)).unwrap();
            assert_eq!(meta[0], Amf0Value::Utf8String("onMetaData".into()));
            let Amf0Value::Object(fields) = &meta[1] else {
                panic!("{meta:?}")
            };
            assert_eq!(fields["width"], Amf0Value::Number(640.0));
            assert_eq!(fields["encoder"], Amf0Value::Utf8String("glass".into()));
            assert!(counters.bytes_sent.load(Ordering::Relaxed) > 13);
        }
    }

    #[tokio::test]
    async fn the_response_ends_when_the_hub_drops_the_player() {
        let hub = Hub::new("k");
        let sub = hub.subscribe("k").unwrap();
        let body = FlvBody::new(sub, hub.clone(), true, Arc::default());
        // Fill the player's queue until the hub gives up on it.
        for i in 0..=crate::relay::hub::PLAYER_QUEUE {
            hub.publish("k", video(i == 0, i as u32)).unwrap();
        }
        assert_eq!(hub.stats().slow_players_dropped, 1);
        let mut body = body;
        let mut frames = 0;
        while let Some(f) = body.frame().await {
            f.unwrap();
            frames += 1;
            assert!(frames < 10_000, "the body never ends");
        }
        assert!(frames > 1);
    }
}
