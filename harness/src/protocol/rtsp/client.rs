//! Glass's RTSP publisher: RECORD, as a camera or ffmpeg's RTSP muxer does
//! it. It ANNOUNCEs an H.264 track and an AAC one whose
//! `sprop-parameter-sets` come from the source's AVC configuration, sets
//! each up (TCP: interleaved channels 0-1 and 2-3; UDP: a pair of ports of
//! the publisher's host per track, sending to the `server_port` the relay
//! answers), RECORDs, then sends each frame as RTP: a video frame's NAL units
//! (with the parameter sets before a key frame, as encoders repeat them, so
//! the ingest knows the key frames) in single-NAL or FU-A packets, an audio
//! frame as one AAC-hbr unit. Glass's frames keep their Glass header inside
//! their NAL unit, so G2G is measured exactly as over RTMP.
//!
//! RTP timestamps are the frames' media timestamps (ms) on the 90 kHz and
//! 48 kHz clocks. An RTCP sender report per track, at its first frame and
//! every 5 s, ties that clock to the wall clock at the frames' capture, as
//! a camera's does: the relay then stamps what it publishes with wall-clock
//! time, which is how a replayed recording's G2G is read (Glass's synthetic
//! frames carry their capture instants inside).

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use netem::Time;
use netem::adapters::tcpinfo::{set_congestion, tcp_info};
use netem::time::Clock;
use rtsp_types::{Message, ParseError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::rtp::RtpPacket;
use super::{aac, auth, h264};
use crate::media::player::Player;
use crate::media::source::{Message as MediaMessage, Source};
use crate::protocol::{
    ClientStats, DialCx, Dialed, Endpoint, LocalFuture, PublishCx, Role, Session, TransportReport,
};
use crate::publisher::PublisherStats;

/// RTP payloads at most this long (a 1500-byte MTU less IP, TCP, the
/// interleaved frame and RTP headers, with room to spare).
const MTU: usize = 1400;
const VIDEO_PT: u8 = 96;
const AUDIO_PT: u8 = 97;
const AUDIO_RATE: u32 = 48_000;

/// Connects to the relay's RTSP port from the publisher's host.
pub async fn dial(cx: DialCx<'_>, to: Endpoint) -> Result<Dialed> {
    if cx.role == Role::Player {
        bail!("RTSP is an ingest: Glass plays its streams over another protocol's URI");
    }
    let s = cx.topo.connect(cx.place, to)?;
    set_congestion(&s, &cx.settings.tcp_congestion)
        .context("RTSP publisher: TCP congestion control")?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    let sock = TcpStream::from_std(s)?;
    let url = format!("rtsp://server:{}/{}/{}", to.port(), cx.uri.app, cx.uri.key);
    // UDP: an RTP and an RTCP port per track on the publisher's host.
    let udp = if super::over_udp(cx.uri) {
        let mut socks = Vec::new();
        for _ in 0..4 {
            let s = cx.topo.udp_socket(cx.place)?;
            s.set_nonblocking(true)?;
            socks.push(UdpSocket::from_std(s)?);
        }
        Some(socks)
    } else {
        None
    };
    let transport = if udp.is_some() { "udp" } else { "tcp" };
    Ok(Dialed {
        session: Box::new(RtspPublisher {
            sock,
            udp,
            url,
            clock: cx.clock,
            cseq: 0,
            inbuf: Vec::new(),
            credentials: cx.uri.credentials.clone(),
            challenge: None,
        }),
        report: TransportReport {
            role: cx.role.as_str(),
            uri: cx.uri.redacted(),
            requested: transport.into(),
            used: format!("rtsp/{transport}"),
            fallback: None,
            handshake_ms: None,
        },
        step: "tcp_connect",
    })
}

struct RtspPublisher {
    sock: TcpStream,
    /// UDP transport: per track its RTP and RTCP sockets, in order
    /// (video RTP, video RTCP, audio RTP, audio RTCP).
    udp: Option<Vec<UdpSocket>>,
    url: String,
    clock: Clock,
    cseq: u32,
    inbuf: Vec<u8>,
    /// The URI's `user:password@`, and the relay's latest challenge.
    credentials: Option<(String, String)>,
    challenge: Option<String>,
}

/// What a reply said that the publisher uses.
#[derive(Default)]
struct Reply {
    /// The `Session` header's identifier.
    session: String,
    /// The `server_port` of a SETUP's `Transport` (RTP, RTCP).
    server_port: Option<(u16, Option<u16>)>,
}

/// How the publisher's packets reach the relay.
enum MediaPath<'a> {
    Interleaved,
    /// By channel (2 × track for RTP, + 1 for RTCP): the socket and the
    /// relay's address it sends to.
    Udp(Vec<(&'a UdpSocket, std::net::SocketAddr)>),
}

impl Session for RtspPublisher {
    fn ordered(&self) -> bool {
        true
    }

    fn play<'a>(
        self: Box<Self>,
        _: &'a mut Player,
        _: Time,
    ) -> LocalFuture<'a, Result<ClientStats>> {
        Box::pin(async { Err(anyhow!("RTSP is an ingest: no RTSP player")) })
    }

    fn publish<'a>(
        self: Box<Self>,
        cx: PublishCx<'a>,
    ) -> LocalFuture<'a, Result<(PublisherStats, ClientStats)>> {
        Box::pin(async move { Ok((self.run(cx).await?, None)) })
    }
}

impl RtspPublisher {
    /// Sends one request and waits for its reply; a status other than 200
    /// is an error saying why. A 401 is answered once with the URI's
    /// credentials.
    async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[String],
        body: &str,
    ) -> Result<Reply> {
        let mut answered = false;
        loop {
            let authorization = match (&self.credentials, &self.challenge) {
                (Some((user, password)), Some(c)) => auth::answer(user, password, c, method, url),
                _ => None,
            };
            let mut all = headers.to_vec();
            all.extend(authorization.map(|a| format!("Authorization: {a}")));
            let (status, challenge, reply) = self.exchange(method, url, &all, body).await?;
            match status {
                200 => return Ok(reply),
                401 if !answered && self.credentials.is_some() && challenge.is_some() => {
                    self.challenge = challenge;
                    answered = true;
                }
                401 if self.credentials.is_none() => bail!(
                    "RTSP {method}: the relay asks for credentials (401): give them in the \
                     URI, rtsp://USER:PASSWORD@server/…"
                ),
                401 => bail!("RTSP {method}: the relay refused the credentials (401)"),
                403 => bail!(
                    "RTSP {method}: the relay refused the stream (403): it accepts one stream \
                     key, and not this one"
                ),
                code => bail!("RTSP {method}: the relay answered {code}"),
            }
        }
    }

    /// One request and its reply: the status, a 401's challenge, and what
    /// a 200 said.
    async fn exchange(
        &mut self,
        method: &str,
        url: &str,
        headers: &[String],
        body: &str,
    ) -> Result<(u16, Option<String>, Reply)> {
        self.cseq += 1;
        let mut text = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: Glass\r\n",
            self.cseq
        );
        for h in headers {
            text.push_str(h);
            text.push_str("\r\n");
        }
        if !body.is_empty() {
            text.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        text.push_str("\r\n");
        text.push_str(body);
        self.sock.write_all(text.as_bytes()).await?;
        let mut buf = [0u8; 4096];
        loop {
            match Message::<Vec<u8>>::parse(&self.inbuf) {
                Ok((Message::Response(r), used)) => {
                    self.inbuf.drain(..used);
                    let challenge = r
                        .header(&rtsp_types::headers::WWW_AUTHENTICATE)
                        .map(|v| v.as_str().to_string());
                    let session = r
                        .header(&rtsp_types::headers::SESSION)
                        .map(|v| v.as_str().split(';').next().unwrap_or_default().to_string());
                    let server_port = match r.typed_header::<rtsp_types::headers::Transports>() {
                        Ok(Some(ts)) => ts.iter().find_map(|t| match t {
                            rtsp_types::headers::transport::Transport::Rtp(rtp) => {
                                rtp.params.server_port
                            }
                            _ => None,
                        }),
                        _ => None,
                    };
                    let reply = Reply {
                        session: session.unwrap_or_default(),
                        server_port,
                    };
                    return Ok((u16::from(r.status()), challenge, reply));
                }
                Ok((_, used)) => {
                    self.inbuf.drain(..used);
                }
                Err(ParseError::Incomplete(_)) if self.inbuf.len() < 65_536 => {
                    let n = self.sock.read(&mut buf).await?;
                    if n == 0 {
                        bail!("RTSP {method}: the relay closed the connection");
                    }
                    self.inbuf.extend_from_slice(&buf[..n]);
                }
                Err(_) => bail!("RTSP {method}: the relay's reply is not RTSP"),
            }
        }
    }

    async fn run(mut self, cx: PublishCx<'_>) -> Result<PublisherStats> {
        let PublishCx {
            source_for,
            mut steps,
            end,
        } = cx;
        // The source starts when the session can carry media (after
        // RECORD), so the ANNOUNCE describes Glass's synthetic stream's
        // configuration; a recording's own parameter sets go in-band before
        // each key frame, and the ingest takes those over.
        let url = self.url.clone();
        self.request("OPTIONS", &url, &[], "").await?;
        let description = sdp(&url, &source_for_config())?;
        self.request("ANNOUNCE", &url, &[], &description).await?;
        steps.done("rtsp_announce");
        // A SETUP per track: interleaved channels 2i-(2i+1), or the track's
        // pair of UDP ports.
        let mut session = String::new();
        // Per track: the relay's RTP and RTCP addresses.
        let mut relay_ports = Vec::new();
        for track in 0..2usize {
            let transport = match &self.udp {
                None => format!(
                    "Transport: RTP/AVP/TCP;unicast;interleaved={}-{};mode=record",
                    2 * track,
                    2 * track + 1
                ),
                Some(socks) => format!(
                    "Transport: RTP/AVP;unicast;client_port={}-{};mode=record",
                    socks[2 * track].local_addr()?.port(),
                    socks[2 * track + 1].local_addr()?.port()
                ),
            };
            let mut headers = vec![transport];
            if !session.is_empty() {
                headers.push(format!("Session: {session}"));
            }
            let reply = self
                .request("SETUP", &format!("{url}/streamid={track}"), &headers, "")
                .await?;
            session = reply.session;
            if self.udp.is_some() {
                // The relay's address as this connection reaches it, and
                // the port it named: in proxy mode a proxy's, so the
                // datagrams take the impaired path.
                let (port, rtcp) = reply
                    .server_port
                    .ok_or_else(|| anyhow!("RTSP SETUP: the relay's reply names no server_port"))?;
                let ip = self.sock.peer_addr()?.ip();
                relay_ports.push((
                    std::net::SocketAddr::new(ip, port),
                    std::net::SocketAddr::new(ip, rtcp.unwrap_or(port.wrapping_add(1))),
                ));
            }
        }
        steps.done("rtsp_setup");
        self.request("RECORD", &url, &[format!("Session: {session}")], "")
            .await?;
        let ready = steps.done("rtsp_record");
        let clock = self.clock;
        let mut source = source_for(ready);
        let start = source.camera_start();
        let mut stats = PublisherStats {
            started_at: Some(start),
            transport: "rtsp/tcp".into(),
            ..PublisherStats::default()
        };
        steps.record(&mut stats);
        let mut rtp = RtpWriter::default();
        let path = match &self.udp {
            None => MediaPath::Interleaved,
            Some(socks) => MediaPath::Udp(
                relay_ports
                    .iter()
                    .enumerate()
                    .flat_map(|(track, &(rtp, rtcp))| {
                        [(&socks[2 * track], rtp), (&socks[2 * track + 1], rtcp)]
                    })
                    .collect(),
            ),
        };
        stats.transport = match path {
            MediaPath::Interleaved => "rtsp/tcp",
            MediaPath::Udp(_) => "rtsp/udp",
        }
        .into();
        let mut packets = Vec::new();
        // Set when a write was abandoned mid-frame at the run's end.
        let mut cut = false;
        let headers = source.sequence_headers();
        let config = headers
            .iter()
            .find(|m| m.video)
            .map(|m| avc_parameter_sets(&m.data));
        loop {
            let due = source.poll_timeout();
            if due >= end {
                break;
            }
            tokio::time::sleep_until(clock.instant(due).into()).await;
            let now = clock.time(Instant::now());
            if now >= end {
                break;
            }
            packets.clear();
            while let Some(m) = source.poll_message(now) {
                stats.count(&m, start);
                // The wall-clock instant of the frame's capture.
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
                    - (now - m.capture).as_secs_f64() * 1e3;
                rtp.sender_report(&m, now, unix_ms, &mut packets);
                rtp.frame(&m, config.as_ref(), &mut packets);
                stats.note_sent(m.seq, clock);
            }
            match &path {
                MediaPath::Interleaved => {
                    let out = interleave(&packets);
                    // Blocks while TCP is backed up (later frames wait, as
                    // in an encoder's output queue), but not past the run's
                    // end: a connection that stopped draining would hold
                    // the run until its deadline.
                    tokio::select! {
                        r = self.sock.write_all(&out) => {
                            r?;
                            stats.bytes_sent += out.len() as u64;
                        }
                        _ = tokio::time::sleep_until(clock.instant(end).into()) => {
                            cut = true;
                            break;
                        }
                    }
                }
                MediaPath::Udp(to) => {
                    for (channel, packet) in &packets {
                        let (sock, at) = to[*channel];
                        // A datagram the host cannot send is lost, as on
                        // the wire: RTP has no retransmission.
                        if sock.send_to(packet, at).await.is_ok() {
                            stats.bytes_sent += packet.len() as u64;
                        }
                    }
                }
            }
        }
        drop(path);
        if let Ok(info) = tcp_info(&self.sock) {
            stats.tcp = info;
        }
        // TEARDOWN, best effort: the relay ends the session either way (and
        // after a write cut mid-frame the relay could not read it).
        if cut {
            return Ok(stats);
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.request("TEARDOWN", &url, &[format!("Session: {session}")], ""),
        )
        .await;
        Ok(stats)
    }
}

/// A source for reading the stream's configuration before the session
/// starts: the synthetic stream's is fixed (Glass's AVC configuration).
fn source_for_config() -> Source {
    Source::Synthetic(crate::media::encoder::Encoder::new(
        crate::media::encoder::EncoderConfig::default(),
        netem::rng::SeedTree::new(0),
        Time::ZERO,
    ))
}

/// The ANNOUNCE's SDP for `source`: a video track and an audio track.
fn sdp(url: &str, source: &Source) -> Result<String> {
    let headers = source.sequence_headers();
    let video = headers
        .iter()
        .find(|m| m.video)
        .ok_or_else(|| anyhow!("the source has no AVC configuration"))?;
    let (sps, pps) = avc_parameter_sets(&video.data);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut s = format!(
        "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=Glass\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:{url}\r\n\
         m=video 0 RTP/AVP {VIDEO_PT}\r\na=rtpmap:{VIDEO_PT} H264/90000\r\n\
         a=fmtp:{VIDEO_PT} packetization-mode=1; sprop-parameter-sets={},{}\r\na=control:streamid=0\r\n",
        b64(&sps),
        b64(&pps)
    );
    // Always an audio track: Glass's synthetic audio has no configuration
    // message (AAC-LC, 48 kHz, stereo then), a recording's has its own.
    let config: Vec<u8> = headers
        .iter()
        .find(|m| !m.video)
        .and_then(|a| a.data.get(2..))
        .map_or_else(|| vec![0x11, 0x90], <[u8]>::to_vec);
    {
        let config: String = config.iter().map(|b| format!("{b:02X}")).collect();
        s.push_str(&format!(
            "m=audio 0 RTP/AVP {AUDIO_PT}\r\na=rtpmap:{AUDIO_PT} MPEG4-GENERIC/{AUDIO_RATE}/2\r\n\
             a=fmtp:{AUDIO_PT} profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={config}\r\n\
             a=control:streamid=1\r\n"
        ));
    }
    Ok(s)
}

/// The first SPS and PPS of an AVC sequence header (FLV video tag body:
/// 5 bytes, then the AVCDecoderConfigurationRecord: 5 bytes, the SPS
/// count, each SPS with a 2-byte length, the PPS count, each PPS).
fn avc_parameter_sets(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let record = body.get(5..).unwrap_or_default();
    let set_at = |at: usize| -> (Vec<u8>, usize) {
        let len = record
            .get(at..at + 2)
            .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
        let v = record
            .get(at + 2..at + 2 + len)
            .unwrap_or_default()
            .to_vec();
        (v, at + 2 + len)
    };
    let (sps, next) = set_at(6);
    // Skip the PPS count.
    let (pps, _) = set_at(next + 1);
    (sps, pps)
}

/// The NAL units of an AVC NALU tag body (4-byte lengths after 5 bytes).
fn nal_units(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body.get(5..).unwrap_or_default();
    while let Some(len) = rest
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
    {
        let Some(nal) = rest.get(4..4 + len) else {
            break;
        };
        out.push(nal);
        rest = &rest[4 + len..];
    }
    out
}

/// `packets` framed for TCP interleaving: `$`, the channel (2 × track for
/// RTP, + 1 for RTCP), the length, the packet.
fn interleave(packets: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packets.iter().map(|(_, p)| p.len() + 4).sum());
    for (channel, packet) in packets {
        out.push(b'$');
        out.push(*channel as u8);
        out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
        out.extend_from_slice(packet);
    }
    out
}

/// How often each track's sender report goes out.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Numbers RTP packets per track, counts them for the sender reports.
#[derive(Default)]
struct RtpWriter {
    sequence: [u16; 2],
    packets: [u32; 2],
    octets: [u32; 2],
    last_report: [Option<Time>; 2],
}

/// A message's track and RTP timestamp.
fn track_and_time(m: &MediaMessage) -> (usize, u32) {
    if m.video {
        (0, m.timestamp.wrapping_mul(90))
    } else {
        (1, m.timestamp.wrapping_mul(AUDIO_RATE / 1000))
    }
}

impl RtpWriter {
    /// An RTCP sender report on `m`'s track (channel 2 × track + 1), at its
    /// first frame and every [`REPORT_EVERY`]: `m`'s RTP time is
    /// `unix_ms`, its capture's wall-clock instant.
    fn sender_report(
        &mut self,
        m: &MediaMessage,
        now: Time,
        unix_ms: f64,
        out: &mut Vec<(usize, Vec<u8>)>,
    ) {
        let (track, rtp) = track_and_time(m);
        if self.last_report[track].is_some_and(|t| now < t + REPORT_EVERY) {
            return;
        }
        self.last_report[track] = Some(now);
        let ntp = unix_ms / 1e3 + super::ingest::NTP_UNIX_OFFSET as f64;
        let secs = ntp.floor();
        let frac = ((ntp - secs) * 4_294_967_296.0) as u32;
        let mut b = vec![0x80, 200, 0, 6];
        b.extend_from_slice(&(0x6c61_0000 + track as u32).to_be_bytes());
        b.extend_from_slice(&(secs as u32).to_be_bytes());
        b.extend_from_slice(&frac.to_be_bytes());
        b.extend_from_slice(&rtp.to_be_bytes());
        b.extend_from_slice(&self.packets[track].to_be_bytes());
        b.extend_from_slice(&self.octets[track].to_be_bytes());
        out.push((2 * track + 1, b));
    }

    /// `m` as RTP packets of its track (channel 2 × track), appended to
    /// `out`.
    fn frame(
        &mut self,
        m: &MediaMessage,
        config: Option<&(Vec<u8>, Vec<u8>)>,
        out: &mut Vec<(usize, Vec<u8>)>,
    ) {
        if crate::media::tag::is_sequence_header(&m.data, m.video)
            || !crate::media::tag::is_frame(&m.data)
        {
            return; // the SDP carries the configuration
        }
        let (track, timestamp) = track_and_time(m);
        let (pt, payloads) = if m.video {
            let mut nals = nal_units(&m.data);
            if crate::media::tag::is_key_frame(&m.data)
                && let Some((sps, pps)) = config
            {
                nals.splice(0..0, [sps.as_slice(), pps.as_slice()]);
            }
            (VIDEO_PT, h264::packetize(nals, MTU))
        } else {
            let frame = m.data.get(2..).unwrap_or_default();
            (AUDIO_PT, aac::packetize(frame, MTU))
        };
        let n = payloads.len();
        for (i, payload) in payloads.iter().enumerate() {
            let mut packet = Vec::with_capacity(payload.len() + 12);
            RtpPacket {
                payload_type: pt,
                marker: i + 1 == n,
                sequence: self.sequence[track],
                timestamp,
                ssrc: 0x6c61_0000 + track as u32,
                payload,
            }
            .write(&mut packet);
            self.sequence[track] = self.sequence[track].wrapping_add(1);
            self.packets[track] = self.packets[track].wrapping_add(1);
            self.octets[track] = self.octets[track].wrapping_add(payload.len() as u32);
            out.push((2 * track, packet));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glass_frames_survive_packetizing_and_the_ingest() {
        use super::super::ingest::TrackIngest;
        use super::super::sdp;
        let source = source_for_config();
        let text = super::sdp("rtsp://server:554/live/glass", &source).unwrap();
        let tracks = sdp::tracks(text.as_bytes()).unwrap();
        assert_eq!(tracks.len(), 2);
        let mut ingest: Vec<TrackIngest> = tracks.into_iter().map(TrackIngest::new).collect();
        let mut source = source_for_config();
        let config = source
            .sequence_headers()
            .iter()
            .find(|m| m.video)
            .map(|m| avc_parameter_sets(&m.data));
        let mut w = RtpWriter::default();
        let mut sent = Vec::new();
        let mut got = Vec::new();
        let mut now = Time::ZERO;
        while got
            .iter()
            .filter(|m: &&crate::relay::Media| m.as_av().is_some_and(|a| a.0 && !m.is_config()))
            .count()
            < 70
        {
            now = source.poll_timeout().max(now);
            while let Some(m) = source.poll_message(now) {
                let mut packets = Vec::new();
                w.sender_report(&m, now, 1.7e12 + now.as_secs_f64() * 1e3, &mut packets);
                w.frame(&m, config.as_ref(), &mut packets);
                if m.video {
                    sent.push(m.data.clone());
                }
                // Split the interleaved stream back into packets.
                let bytes = interleave(&packets);
                let mut rest = &bytes[..];
                while rest.len() >= 4 {
                    let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
                    let t = usize::from(rest[1] / 2);
                    if rest[1].is_multiple_of(2) {
                        got.extend(ingest[t].rtp(&rest[4..4 + len]));
                    } else {
                        got.extend(ingest[t].rtcp(&rest[4..4 + len]));
                    }
                    rest = &rest[4 + len..];
                }
            }
        }
        let video: Vec<&crate::relay::Media> = got
            .iter()
            .filter(|m| m.as_av().is_some_and(|a| a.0) && !m.is_config())
            .collect();
        // Every video frame comes out as it went in: Glass header and all,
        // key frames still key frames.
        for (m, s) in video.iter().zip(&sent) {
            let (_, d, _) = m.as_av().unwrap();
            assert_eq!(d.as_ref(), s.as_ref());
            assert_eq!(m.is_key_frame(), crate::media::tag::is_key_frame(s));
        }
        assert!(video.iter().any(|m| m.is_key_frame()));
        assert!(crate::media::source::unpack(video[1].as_av().unwrap().1, true).is_some());
        // The sender reports put the frames on the wall clock given.
        assert!(
            ingest
                .iter()
                .all(|t| t.stats.wall_clock && t.stats.rtcp_packets >= 1)
        );
        let wall = (1.7e12 as u64 % (1 << 32)) as u32;
        let first = video[0].as_av().unwrap().2;
        assert!(first.wrapping_sub(wall) < 10_000, "{first} vs {wall}");
    }
}
