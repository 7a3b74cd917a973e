//! RTSP ingest: a publisher's byte stream into the relay's RTSP session
//! (requests, Digest/Basic authorization, the SDP of ANNOUNCE, SETUP's
//! Transport, interleaved `$` frames), and RTP packets into the H.264 and
//! AAC depacketizers behind the reorder buffer.

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use harness::protocol::rtsp::auth::{self, AuthScheme, Credentials};
use harness::protocol::rtsp::reorder::Reorder;
use harness::protocol::rtsp::rtp::{RtpPacket, SequenceTracker};
use harness::protocol::rtsp::sdp::{self, Codec};
use harness::protocol::rtsp::session::{Limits, ServerSession};
use harness::protocol::rtsp::{aac, h264};
use netem::Time;

use crate::mutate::{corrupt, small_bytes};

const URL: &str = "rtsp://198.18.0.1:554/live/glass";
const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADazZQUH7ARAAAAMAEAAAAwPA8UKZYA==,aOvjyyLA\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\r\na=control:streamid=1\r\n";

/// A publisher's session: a request sequence that mostly follows
/// ffmpeg's RECORD flow, damaged and cut at random places.
pub fn session(u: &mut Unstructured<'_>) -> Result<()> {
    let creds = match u.int_in_range(0..=2u8)? {
        0 => None,
        n => Some(Credentials {
            scheme: if n == 1 {
                AuthScheme::Basic
            } else {
                AuthScheme::Digest
            },
            user: "cam".into(),
            password: "pw".into(),
        }),
    };
    let limits = Limits {
        max_message: u.int_in_range(64..=70_000)?,
        ..Limits::default()
    };
    let ports = u.ratio(1, 2)?.then_some((6970, 6971));
    let mut s = ServerSession::new("7e57", "glass", limits, ports, Time::ZERO).with_auth(creds);
    let mut now = Time::ZERO;
    let mut cseq = 0;
    let mut challenge: Option<String> = None;
    // Where a well-behaved publisher is in the RECORD flow.
    let mut step = 0;
    for _ in 0..u.int_in_range(1..=12u8)? {
        cseq += 1;
        // Mostly the flow's next request; otherwise any.
        let pick = if u.ratio(3, 4)? {
            step
        } else {
            u.int_in_range(0..=9u8)?
        };
        step = (pick + 1).min(5);
        let (method, url) = match pick {
            0 => ("OPTIONS", URL.to_string()),
            1 => ("ANNOUNCE", URL.to_string()),
            2 | 3 => (
                "SETUP",
                format!("{URL}/streamid={}", u.int_in_range(0..=2u8)?),
            ),
            4 => ("RECORD", URL.to_string()),
            7 => (
                *u.choose(&[
                    "GET_PARAMETER",
                    "SET_PARAMETER",
                    "TEARDOWN",
                    "PLAY",
                    "DESCRIBE",
                    "PAUSE",
                ])?,
                URL.to_string(),
            ),
            _ => ("", String::new()),
        };
        // Answer the relay's challenge as a client would (right or wrong).
        let mut headers = Vec::new();
        if let Some(c) = &challenge
            && !method.is_empty()
            && u.ratio(7, 8)?
        {
            let password = if u.ratio(7, 8)? { "pw" } else { "guess" };
            if let Some(a) = auth::answer("cam", password, c, method, &url) {
                headers.push(format!("Authorization: {a}"));
            }
        }
        let mut bytes = match pick {
            0 | 4 | 7 => {
                headers.push("Session: 7e57".into());
                request(u, method, &url, cseq, &headers, "")?
            }
            1 => {
                let body = if u.ratio(3, 4)? {
                    SDP.to_string()
                } else {
                    sdp_text(u)?
                };
                request(u, method, &url, cseq, &headers, &body)?
            }
            2 | 3 => {
                let i = u.int_in_range(0..=2u8)?;
                let transport = match u.int_in_range(0..=3u8)? {
                    0 | 1 => format!(
                        "RTP/AVP/TCP;unicast;interleaved={}-{};mode=record",
                        2 * i,
                        2 * i + 1
                    ),
                    2 => format!(
                        "RTP/AVP;unicast;client_port={}-{};mode=record",
                        u.arbitrary::<u16>()?,
                        u.arbitrary::<u16>()?
                    ),
                    _ => String::from_utf8_lossy(small_bytes(u, 40)?).into_owned(),
                };
                headers.push(format!("Transport: {transport}"));
                request(u, method, &url, cseq, &headers, "")?
            }
            5 | 6 => interleaved(u)?,
            _ => small_bytes(u, 200)?.to_vec(),
        };
        if u.ratio(1, 2)? {
            corrupt(&mut bytes, u)?;
        }
        // Split the bytes as TCP might.
        let cut = u.int_in_range(0..=bytes.len())?;
        s.input(&bytes[..cut], now);
        s.input(&bytes[cut..], now);
        while let Some(out) = s.poll_transmit() {
            let text = String::from_utf8_lossy(&out);
            if let Some(c) = text
                .lines()
                .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
            {
                challenge = Some(c.to_string());
            }
        }
        while s.poll_event().is_some() {}
        now = now + Duration::from_millis(u.int_in_range(0..=30_000)?);
        s.handle_timeout(now);
    }
    let _ = (s.state(), s.stray_frames);
    Ok(())
}

fn request(
    u: &mut Unstructured<'_>,
    method: &str,
    url: &str,
    cseq: u32,
    headers: &[String],
    body: &str,
) -> Result<Vec<u8>> {
    let mut s = format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    if !body.is_empty() {
        let len = if u.ratio(7, 8)? {
            body.len()
        } else {
            u.int_in_range(0..=body.len() * 2)?
        };
        s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {len}\r\n"
        ));
    }
    s.push_str("\r\n");
    s.push_str(body);
    Ok(s.into_bytes())
}

/// A `$`-framed RTP or RTCP packet on one of the channels.
fn interleaved(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let pt = *u.choose(&[96u8, 97])?;
    let packet = rtp_packet(u, pt)?;
    let mut v = vec![b'$', u.int_in_range(0..=4)?];
    v.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    v.extend_from_slice(&packet);
    Ok(v)
}

/// A session description: Glass's tracks with fields the input picks.
fn sdp_text(u: &mut Unstructured<'_>) -> Result<String> {
    let mut s = String::from("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n");
    for i in 0..u.int_in_range(0..=3u8)? {
        if u.arbitrary()? {
            let pt = u.int_in_range(90..=100u8)?;
            s.push_str(&format!(
                "m=video 0 RTP/AVP {pt}\r\na=rtpmap:{pt} {}/{}\r\na=fmtp:{pt} packetization-mode={}; sprop-parameter-sets={}\r\n",
                u.choose(&["H264", "h264", "H265", "VP8"])?,
                u.choose(&["90000", "0", "x", "4294967296"])?,
                u.int_in_range(0..=3u8)?,
                u.choose(&["Z2QADazZQUH7ARAAAAMAEAAAAwPA8UKZYA==,aOvjyyLA", "", ",", "!!", "Z2Q=,aOs="])?,
            ));
        } else {
            let pt = u.int_in_range(90..=100u8)?;
            s.push_str(&format!(
                "m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} MPEG4-GENERIC/{}/{}\r\na=fmtp:{pt} mode=AAC-hbr;sizelength={};indexlength={};indexdeltalength={}; config={}\r\n",
                u.choose(&["48000", "44100", "0"])?,
                u.choose(&["2", "1", "0", "99"])?,
                u.int_in_range(0..=40u8)?,
                u.int_in_range(0..=40u8)?,
                u.int_in_range(0..=40u8)?,
                u.choose(&["1190", "", "zz", "11900000000000"])?,
            ));
        }
        s.push_str(&format!("a=control:streamid={i}\r\n"));
    }
    let mut b = s.into_bytes();
    corrupt(&mut b, u)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// The SDP parser on its own: Glass's track extraction.
pub fn sdp(u: &mut Unstructured<'_>) -> Result<()> {
    let text = sdp_text(u)?;
    if let Ok(tracks) = sdp::tracks(text.as_bytes()) {
        for t in &tracks {
            if let Codec::Aac { params, .. } = &t.codec {
                // The described AAC-hbr parameters drive the depacketizer.
                let mut d = aac::Depacketizer::new(*params);
                let p = rtp_packet(u, t.payload_type)?;
                if let Ok(p) = RtpPacket::parse(&p) {
                    let _ = d.push(&p, false);
                }
            }
        }
    }
    Ok(())
}

/// One RTP packet: a version-2 header (CSRCs, extension, padding when
/// the input says) and an H.264 (single NAL, STAP-A, FU-A) or AAC-hbr
/// payload.
fn rtp_packet(u: &mut Unstructured<'_>, pt: u8) -> Result<Vec<u8>> {
    let cc = if u.ratio(1, 8)? {
        u.int_in_range(0..=15u8)?
    } else {
        0
    };
    let ext = u.ratio(1, 8)?;
    let pad = u.ratio(1, 8)?;
    let marker = u.arbitrary::<bool>()?;
    let mut p = vec![
        0x80 | (u8::from(pad) << 5) | (u8::from(ext) << 4) | cc,
        (u8::from(marker) << 7) | pt,
    ];
    p.extend_from_slice(&u.arbitrary::<u16>()?.to_be_bytes());
    p.extend_from_slice(&u.arbitrary::<u32>()?.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    for _ in 0..cc {
        p.extend_from_slice(&u.arbitrary::<u32>()?.to_be_bytes());
    }
    if ext {
        let words = u.int_in_range(0..=3u16)?;
        p.extend_from_slice(&[0xbe, 0xde]);
        p.extend_from_slice(&words.to_be_bytes());
        p.extend(std::iter::repeat_n(0u8, usize::from(words) * 4));
    }
    payload(u, pt, &mut p)?;
    if pad {
        let n = u.int_in_range(1..=8u8)?;
        p.extend(std::iter::repeat_n(0u8, usize::from(n - 1)));
        p.push(n);
    }
    Ok(p)
}

fn payload(u: &mut Unstructured<'_>, pt: u8, p: &mut Vec<u8>) -> Result<()> {
    if pt == 97 {
        // AU-headers-length (bits), then 16-bit AU headers (13-bit size,
        // 3-bit index), then the frames.
        let n = u.int_in_range(0..=4u16)?;
        p.extend_from_slice(&(n * 16).to_be_bytes());
        let mut frames = Vec::new();
        for _ in 0..n {
            let f = small_bytes(u, 300)?;
            let size = if u.ratio(7, 8)? {
                f.len() as u16
            } else {
                u.arbitrary()?
            };
            p.extend_from_slice(&((size << 3) | u.int_in_range(0..=7u16)?).to_be_bytes());
            frames.extend_from_slice(f);
        }
        p.extend_from_slice(&frames);
        return Ok(());
    }
    match u.int_in_range(0..=2u8)? {
        0 => {
            p.push(*u.choose(&[0x65u8, 0x41, 0x67, 0x68, 0x06, 0x09])?);
            p.extend_from_slice(small_bytes(u, 400)?);
        }
        1 => {
            p.push(24); // STAP-A
            for _ in 0..u.int_in_range(0..=4u8)? {
                let nal = small_bytes(u, 100)?;
                let len = if u.ratio(7, 8)? {
                    nal.len() as u16
                } else {
                    u.arbitrary()?
                };
                p.extend_from_slice(&len.to_be_bytes());
                p.extend_from_slice(nal);
            }
        }
        _ => {
            p.push(0x60 | 28); // FU-A
            let (start, end) = (u.arbitrary::<bool>()?, u.arbitrary::<bool>()?);
            p.push((u8::from(start) << 7) | (u8::from(end) << 6) | *u.choose(&[5u8, 1, 7])?);
            p.extend_from_slice(small_bytes(u, 400)?);
            // Fragments are MTU-sized: grow them without using up the input.
            let fill = u.int_in_range(0..=1200usize)?;
            p.resize(p.len() + fill, 0xab);
        }
    }
    Ok(())
}

/// RTP packets (from UDP or interleaved frames) through the reorder
/// buffer, the loss counter and both depacketizers, as the ingest does.
pub fn rtp(u: &mut Unstructured<'_>) -> Result<()> {
    let mut reorder = Reorder::new(Duration::from_millis(u.int_in_range(0..=100)?));
    let mut tracker = SequenceTracker::default();
    let mut video = h264::Depacketizer::default();
    let params = aac::HbrParams {
        size_length: u.int_in_range(0..=16)?,
        index_length: u.int_in_range(0..=8)?,
        index_delta_length: u.int_in_range(0..=8)?,
    };
    let mut audio = aac::Depacketizer::new(if u.ratio(3, 4)? {
        aac::HbrParams::default()
    } else {
        params
    });
    let mut seq: u16 = u.arbitrary()?;
    let mut now = Time::ZERO;
    let mut ready = Vec::new();
    for _ in 0..u.int_in_range(0..=48u8)? {
        let pt = *u.choose(&[96u8, 97])?;
        let mut p = rtp_packet(u, pt)?;
        // Mostly in order; sometimes a gap or a step back.
        seq = if u.ratio(7, 8)? {
            seq.wrapping_add(1)
        } else {
            seq.wrapping_add(u.int_in_range(0..=3)?)
                .wrapping_sub(u.int_in_range(0..=1)?)
        };
        if p.len() >= 4 {
            p[2..4].copy_from_slice(&seq.to_be_bytes());
        }
        corrupt(&mut p, u)?;
        now = now + Duration::from_millis(u.int_in_range(0..=50)?);
        reorder.handle_timeout(now, &mut ready);
        reorder.push(seq, p, now, &mut ready);
        for p in ready.drain(..) {
            let Ok(rtp) = RtpPacket::parse(&p) else {
                continue;
            };
            let gap = !matches!(
                tracker.push(rtp.sequence),
                harness::protocol::rtsp::rtp::Arrival::InOrder
            );
            if rtp.payload_type == 97 {
                let _ = audio.push(&rtp, gap);
            } else {
                for au in video.push(&rtp, gap) {
                    let _ = (au.is_key(), au.to_avcc());
                }
            }
        }
    }
    let _ = video.finish();
    let _ = (tracker.expected(), tracker.received(), tracker.lost());
    Ok(())
}
