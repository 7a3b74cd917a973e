//! A live message's RTMP chunks, made once for all its players.
//!
//! Every player of a stream is sent the same audio and video messages, and
//! rml_rtmp's per-session serializer would chunk each one again for each
//! player (copying it, with a header compressed against that session's
//! last message). Here a message is chunked once with full (type 0)
//! headers, which mean the same in any session, and the chunks are shared
//! (nginx-rtmp shares its chunk buffers across subscribers likewise). Audio
//! and video travel on chunk streams 5 and 4, which a session's own
//! serializer then never uses: its control and metadata messages (chunk
//! streams 2 and 3) keep their compression, and no header refers to state
//! the other writer left.

use std::collections::VecDeque;
use std::sync::Mutex;

use anyhow::{Result, anyhow};
use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::sessions::ServerSessionConfig;
use rml_rtmp::time::RtmpTimestamp;

use crate::relay::Media;

/// Messages remembered: a player more than this far behind the others
/// chunks its messages itself (its bytes are the same).
const RECENT: usize = 64;

/// The chunks of the stream's recent messages.
pub struct SharedChunks {
    chunk_size: u32,
    recent: Mutex<VecDeque<Entry>>,
}

struct Entry {
    /// The message's body (kept, so its address identifies it while here).
    body: Bytes,
    timestamp: u32,
    video: bool,
    stream_id: u32,
    chunks: Bytes,
}

impl Default for SharedChunks {
    fn default() -> Self {
        SharedChunks {
            chunk_size: ServerSessionConfig::new().chunk_size,
            recent: Mutex::default(),
        }
    }
}

impl SharedChunks {
    /// The chunk size every session of the server announces.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// `m`'s chunks on a player's `stream_id`, or `None` if it is not
    /// audio or video (metadata goes through the player's session).
    pub fn chunks(&self, stream_id: u32, m: &Media) -> Result<Option<Bytes>> {
        let Some((video, body, timestamp)) = m.as_av() else {
            return Ok(None);
        };
        let same = |e: &Entry| {
            e.body.as_ptr() == body.as_ptr()
                && e.body.len() == body.len()
                && (e.timestamp, e.video, e.stream_id) == (timestamp, video, stream_id)
        };
        if let Ok(recent) = self.recent.lock()
            && let Some(e) = recent.iter().rev().find(|e| same(e))
        {
            return Ok(Some(e.chunks.clone()));
        }
        let chunks = full_chunks(self.chunk_size, stream_id, video, body.clone(), timestamp)?;
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(Entry {
                body: body.clone(),
                timestamp,
                video,
                stream_id,
                chunks: chunks.clone(),
            });
        }
        Ok(Some(chunks))
    }
}

/// An audio or video message as chunks with full headers.
pub fn full_chunks(
    chunk_size: u32,
    stream_id: u32,
    video: bool,
    data: Bytes,
    timestamp: u32,
) -> Result<Bytes> {
    let mut s = ChunkSerializer::new();
    s.set_max_chunk_size(chunk_size, RtmpTimestamp::new(0))
        .map_err(|e| anyhow!("{e:?}"))?;
    let message = if video {
        RtmpMessage::VideoData { data }
    } else {
        RtmpMessage::AudioData { data }
    };
    let payload = message
        .into_message_payload(RtmpTimestamp::new(timestamp), stream_id)
        .map_err(|e| anyhow!("{e:?}"))?;
    let packet = s
        .serialize(&payload, true, false)
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok(Bytes::from(packet.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    #[test]
    fn shared_chunks_read_back_as_the_message_and_are_made_once() {
        let shared = SharedChunks::default();
        let body = Bytes::from(vec![0x27u8; 10_000]);
        let m = Media::Video(body.clone(), 1234);
        let a = shared.chunks(1, &m).unwrap().unwrap();
        let b = shared.chunks(1, &m.clone()).unwrap().unwrap();
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the second player gets the same chunks"
        );
        // Another stream id is another message.
        let c = shared.chunks(2, &m).unwrap().unwrap();
        assert_ne!(a.as_ptr(), c.as_ptr());
        let mut d = ChunkDeserializer::new();
        d.set_max_chunk_size(4096).unwrap();
        let p = d.get_next_message(&a).unwrap().expect("a whole message");
        assert_eq!((p.type_id, p.message_stream_id), (9, 1));
        assert_eq!(p.timestamp, RtmpTimestamp::new(1234));
        assert_eq!(p.data, body);
        assert!(
            shared
                .chunks(1, &Media::Info(Default::default()))
                .unwrap()
                .is_none()
        );
    }
}
