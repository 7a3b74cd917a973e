//! RTMP into the relay: a client's chunk stream (after a real handshake)
//! through rml_rtmp's server session into Glass's relay code, which admits
//! publishers, feeds the hub (metadata, sequence headers, the GOP cache)
//! and serves players their catch-up. Messages are built with rml_rtmp's
//! serializer (so chunk headers are right) from commands and media whose
//! fields the input picks, then damaged.
//!
//! Each input is up to three connections on one hub, one after another: a
//! publisher's media is in the hub when a player connects.

use std::sync::Mutex;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use harness::protocol::rtmp::server::{RtmpServerStats, relay_connection};
use harness::protocol::rtmp::shared_chunks::SharedChunks;
use harness::protocol::rtmp::transport::Transport;
use harness::relay::Hub;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::mutate::{corrupt, small_bytes};

const KEY: &str = "glass";

thread_local! {
    /// One runtime per fuzzing thread, its clock paused: timers fire as
    /// soon as everything waits, so a stuck session shows at once.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
}

pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut conns = Vec::new();
    for _ in 0..u.int_in_range(1..=3u8)? {
        conns.push(client_bytes(u)?);
    }
    let clients = conns.into_iter().map(Client::new).collect();
    let _ = relay(clients);
    Ok(())
}

/// One client connection of a run against the relay.
struct Client {
    /// Its messages, sent 1 ms apart after the handshake.
    messages: Vec<Vec<u8>>,
    /// Whether it reads what the relay sends (a player that stops reading
    /// pushes back on the relay).
    reads: bool,
    /// How long it stays connected after its last message.
    hold: Duration,
}

impl Client {
    fn new(messages: Vec<Vec<u8>>) -> Client {
        Client {
            messages,
            reads: true,
            hold: Duration::from_millis(100),
        }
    }
}

/// Runs the clients against one relay and returns what its hub saw and
/// the bytes each client read. Client `i` connects 10 ms after `i - 1`
/// (virtual time): a player that connects second finds the first one's
/// stream live, as in a real run.
fn relay(clients: Vec<Client>) -> (harness::relay::HubStats, Vec<u64>) {
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let hub = Hub::new(KEY);
            let stats = Mutex::new(RtmpServerStats::default());
            let chunks = SharedChunks::default();
            let (_stop_tx, stop) = tokio::sync::watch::channel(false);
            let sessions = clients.into_iter().enumerate().map(|(i, client)| {
                let (hub, stats, chunks, stop) = (&hub, &stats, &chunks, stop.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
                    let (sock, server) = tokio::io::duplex(64 * 1024);
                    let relay = async {
                        let _ =
                            relay_connection(Transport::Memory(server), hub, stats, chunks, stop)
                                .await;
                    };
                    tokio::join!(relay, play_client(sock, client)).1
                }
            });
            let all = futures_util::future::join_all(sessions);
            let finished = tokio::time::timeout(Duration::from_secs(60), all).await;
            let Ok(read) = finished else {
                panic!("the relay's RTMP sessions did not end after their clients closed")
            };
            (hub.stats(), read)
        })
    })
}

/// The client's side: a real handshake, then its messages 1 ms apart
/// (rml_rtmp's server drops a request that arrives before the one it
/// depends on was accepted, so real clients wait for each answer), then
/// the end of the connection. Reads all the relay sends (unless the
/// client does not read) and returns how many bytes that was.
async fn play_client(mut sock: DuplexStream, client: Client) -> u64 {
    if handshake(&mut sock).await.is_none() {
        return 0;
    }
    let (mut rd, mut wr) = tokio::io::split(sock);
    let reads = client.reads;
    let drain = async move {
        let mut total = 0;
        let mut buf = vec![0u8; 16 * 1024];
        while reads && let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    };
    let write = async move {
        for m in client.messages {
            if wr.write_all(&m).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(client.hold).await;
        let _ = wr.shutdown().await;
    };
    tokio::join!(drain, write).0
}

/// RTMP's handshake as a client (None if the relay ends it).
async fn handshake(sock: &mut DuplexStream) -> Option<()> {
    let mut hs = Handshake::new(PeerType::Client);
    sock.write_all(&hs.generate_outbound_p0_and_p1().ok()?)
        .await
        .ok()?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = sock.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        match hs.process_bytes(&buf[..n]).ok()? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                sock.write_all(&response_bytes).await.ok()?
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                sock.write_all(&response_bytes).await.ok()?;
                return Some(());
            }
        }
    }
}

/// A client session's messages as chunks: connect, createStream, then
/// publish (metadata, sequence headers, frames) or play, and the odd
/// control message, with fields the input chooses.
fn client_bytes(u: &mut Unstructured<'_>) -> Result<Vec<Vec<u8>>> {
    let mut ser = ChunkSerializer::new();
    let mut out = Vec::new();
    let mut ts: u32 = 0;
    let publisher = u.ratio(2, 3)?;
    let mut msgs = vec![
        (command("connect", 1.0, connect_object(u)?, vec![]), 0),
        (command("createStream", 2.0, Amf0Value::Null, vec![]), 0),
    ];
    let key = if u.ratio(7, 8)? {
        KEY.to_string()
    } else {
        String::from_utf8_lossy(small_bytes(u, 12)?).into_owned()
    };
    if publisher {
        msgs.push((
            command(
                "publish",
                3.0,
                Amf0Value::Null,
                vec![
                    Amf0Value::Utf8String(key),
                    Amf0Value::Utf8String("live".into()),
                ],
            ),
            1,
        ));
    } else {
        msgs.push((
            command(
                "play",
                3.0,
                Amf0Value::Null,
                vec![Amf0Value::Utf8String(key)],
            ),
            1,
        ));
    }
    for _ in 0..u.int_in_range(0..=24u8)? {
        let m = match u.int_in_range(0..=9u8)? {
            0 => RtmpMessage::Amf0Data {
                values: vec![
                    Amf0Value::Utf8String("@setDataFrame".into()),
                    Amf0Value::Utf8String("onMetaData".into()),
                    metadata(u)?,
                ],
            },
            1..=5 => RtmpMessage::VideoData {
                data: Bytes::from(video_tag(u)?),
            },
            6 | 7 => {
                let mut d = vec![0xaf, u.int_in_range(0..=1)?];
                d.extend_from_slice(small_bytes(u, 64)?);
                RtmpMessage::AudioData {
                    data: Bytes::from(d),
                }
            }
            8 => match u.int_in_range(0..=3u8)? {
                0 => RtmpMessage::SetChunkSize {
                    size: *u.choose(&[1u32, 128, 4096, 65_536, 0x7fff_ffff, 0x8000_0000])?,
                },
                1 => RtmpMessage::WindowAcknowledgement {
                    size: u.arbitrary()?,
                },
                2 => RtmpMessage::Acknowledgement {
                    sequence_number: u.arbitrary()?,
                },
                _ => RtmpMessage::Abort {
                    stream_id: u.int_in_range(0..=8)?,
                },
            },
            _ => command(
                u.choose(&[
                    "FCUnpublish",
                    "deleteStream",
                    "closeStream",
                    "releaseStream",
                    "FCPublish",
                    "_checkbw",
                    "play",
                    "publish",
                ])?,
                u.int_in_range(0..=9u8)?.into(),
                Amf0Value::Null,
                vec![Amf0Value::Number(u.int_in_range(0..=3u8)?.into())],
            ),
        };
        msgs.push((m, 1));
    }
    for (m, stream) in msgs {
        ts = ts.wrapping_add(u.int_in_range(0..=100)?);
        let Ok(payload) = m.into_message_payload(RtmpTimestamp::new(ts), stream) else {
            continue;
        };
        if let Ok(p) = ser.serialize(&payload, u.ratio(1, 8)?, false) {
            let mut b = p.bytes;
            if u.ratio(1, 4)? {
                corrupt(&mut b, u)?;
            }
            out.push(b);
        }
    }
    Ok(out)
}

fn command(name: &str, id: f64, object: Amf0Value, args: Vec<Amf0Value>) -> RtmpMessage {
    RtmpMessage::Amf0Command {
        command_name: name.into(),
        transaction_id: id,
        command_object: object,
        additional_arguments: args,
    }
}

fn connect_object(u: &mut Unstructured<'_>) -> Result<Amf0Value> {
    let mut props = std::collections::HashMap::new();
    let app = if u.ratio(7, 8)? { "live" } else { "other" };
    props.insert("app".to_string(), Amf0Value::Utf8String(app.into()));
    if u.arbitrary()? {
        props.insert(
            "tcUrl".to_string(),
            Amf0Value::Utf8String(format!("rtmp://198.18.0.1/{app}")),
        );
    }
    if u.ratio(1, 8)? {
        props.insert(
            "objectEncoding".to_string(),
            Amf0Value::Number(u.arbitrary()?),
        );
    }
    Ok(Amf0Value::Object(props))
}

fn metadata(u: &mut Unstructured<'_>) -> Result<Amf0Value> {
    let mut props = std::collections::HashMap::new();
    for name in [
        "width",
        "height",
        "framerate",
        "videodatarate",
        "audiodatarate",
        "videocodecid",
        "audiosamplerate",
    ] {
        if u.ratio(3, 4)? {
            let v = match u.int_in_range(0..=4u8)? {
                0 => f64::NAN,
                1 => -1.0,
                2 => 1e300,
                _ => f64::from(u.int_in_range(0..=4000u32)?),
            };
            props.insert(name.to_string(), Amf0Value::Number(v));
        }
    }
    if u.ratio(1, 8)? {
        props.insert(
            "encoder".to_string(),
            Amf0Value::Utf8String(String::from_utf8_lossy(small_bytes(u, 20)?).into_owned()),
        );
    }
    Ok(if u.ratio(7, 8)? {
        Amf0Value::Object(props)
    } else {
        Amf0Value::Number(1.0)
    })
}

/// An AVC video tag body: frame type and codec, packet type (sequence
/// header, NALUs, end), composition time, payload.
fn video_tag(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let frame_type = *u.choose(&[1u8, 1, 2, 2, 2, 5])?;
    let mut d = vec![
        (frame_type << 4) | *u.choose(&[7u8, 7, 7, 12, 2])?,
        u.int_in_range(0..=2)?,
    ];
    d.extend_from_slice(&u.arbitrary::<[u8; 3]>()?);
    d.extend_from_slice(small_bytes(u, 600)?);
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each message as its chunks (one serializer: the chunk headers of
    /// a session).
    fn chunks(msgs: impl IntoIterator<Item = (RtmpMessage, u32)>) -> Vec<Vec<u8>> {
        let mut ser = ChunkSerializer::new();
        msgs.into_iter()
            .map(|(m, stream)| {
                let payload = m
                    .into_message_payload(RtmpTimestamp::new(0), stream)
                    .unwrap();
                ser.serialize(&payload, false, false).unwrap().bytes
            })
            .collect()
    }

    /// connect and createStream, then `command` on stream 1 with `args`.
    fn session(command_name: &str, args: &[&str]) -> Vec<(RtmpMessage, u32)> {
        let mut props = std::collections::HashMap::new();
        props.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        let args = args
            .iter()
            .map(|a| Amf0Value::Utf8String(a.to_string()))
            .collect();
        vec![
            (command("connect", 1.0, Amf0Value::Object(props), vec![]), 0),
            (command("createStream", 2.0, Amf0Value::Null, vec![]), 0),
            (command(command_name, 3.0, Amf0Value::Null, args), 1),
        ]
    }

    /// A publisher's chunks: the session, a sequence header and a key
    /// frame, then `frames` more frames of 1 KB.
    fn publisher_of(frames: usize) -> Vec<Vec<u8>> {
        let video = |d: Vec<u8>| {
            (
                RtmpMessage::VideoData {
                    data: Bytes::from(d),
                },
                1,
            )
        };
        let mut frame = vec![0x27, 1, 0, 0, 0];
        frame.resize(1024, 7);
        let msgs = session("publish", &[KEY, "live"])
            .into_iter()
            .chain([
                video(vec![0x17, 0, 0, 0, 0, 1, 2]),
                video(vec![0x17, 1, 0, 0, 0, 9, 9, 9]),
            ])
            .chain((0..frames).map(|_| video(frame.clone())));
        chunks(msgs)
    }

    fn publisher() -> Vec<Vec<u8>> {
        publisher_of(0)
    }

    fn player() -> Vec<Vec<u8>> {
        chunks(session("play", &[KEY]))
    }

    /// The target's set-up reaches the hub: a publisher is admitted and
    /// its frames are there when the player joins.
    #[test]
    fn a_publisher_then_a_player_reach_the_hub() {
        let (st, _) = relay(vec![Client::new(publisher()), Client::new(player())]);
        assert_eq!(st.publishes_accepted, 1, "{st:?}");
        assert_eq!(st.video_messages_in, 2, "{st:?}");
        assert_eq!(st.players, 1, "{st:?}");
    }

    /// Back-pressure: a player that stops reading fills its connection and
    /// then its queue on the hub, and neither the publisher nor the player
    /// beside it notices. 400 frames of 1 KB (six times the pipe's 64 KiB).
    #[test]
    fn a_player_that_stops_reading_stalls_neither_the_publisher_nor_other_players() {
        let hold = Duration::from_millis(600);
        let stuck = Client {
            messages: player(),
            reads: false,
            hold,
        };
        let reader = Client {
            hold,
            ..Client::new(player())
        };
        let (st, read) = relay(vec![Client::new(publisher_of(400)), stuck, reader]);
        assert_eq!(st.publishes_accepted, 1, "{st:?}");
        assert_eq!(st.players, 2, "{st:?}");
        // Every frame reached the hub: the publisher was never held up.
        assert_eq!(st.video_messages_in, 402, "{st:?}");
        // The reading player got every frame (400 KB and their headers);
        // the stuck one read nothing after its handshake.
        assert!(
            read[2] > 400 * 1024,
            "the reading player got {} bytes",
            read[2]
        );
        assert_eq!(read[1], 0);
    }
}
