//! The session description a publisher ANNOUNCEs (parsed with
//! `sdp-types`): its tracks, each with the control URL a SETUP names, its
//! RTP payload type and clock, and what its depacketizer needs: H.264's
//! parameter sets from `sprop-parameter-sets` (often the only place a
//! publisher sends them) or AAC's `config` and AU-header sizes.

use base64::Engine as _;
use sdp_types::{Fmtp, RtpMap};

use super::aac::HbrParams;

/// At most this many tracks per session (a camera has one or two).
pub const MAX_TRACKS: usize = 8;

/// What a track carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Codec {
    /// H.264, packetization-mode 0 or 1, with the SPS and PPS it declared.
    H264 { sps: Vec<u8>, pps: Vec<u8> },
    /// AAC in AAC-hbr, with its AudioSpecificConfig.
    Aac {
        config: Vec<u8>,
        params: HbrParams,
        channels: u32,
    },
}

/// One track of an ANNOUNCE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    /// The `a=control` value ("streamid=0", "trackID=1", or a full URL).
    pub control: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub codec: Codec,
}

/// Why a description cannot be ingested.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("not a session description: {0}")]
    Parse(String),
    #[error("no H.264 or AAC (MPEG4-GENERIC, AAC-hbr) track; Glass ingests those")]
    NoTrack,
    #[error("more than {MAX_TRACKS} tracks")]
    TooManyTracks,
    #[error("track {0}: {1}")]
    Track(usize, String),
}

/// The tracks Glass can ingest, in the order described. Media of other
/// kinds are left out; an H.264 or AAC track described wrongly is an error.
pub fn tracks(body: &[u8]) -> Result<Vec<Track>, SdpError> {
    let session = sdp_types::Session::parse(body).map_err(|e| SdpError::Parse(e.to_string()))?;
    if session.medias.len() > MAX_TRACKS {
        return Err(SdpError::TooManyTracks);
    }
    let mut out = Vec::new();
    for (i, m) in session.medias.iter().enumerate() {
        let bad = |why: String| SdpError::Track(i, why);
        let Some(Ok(map)) = m.get_first_attribute_typed::<RtpMap>() else {
            continue;
        };
        let fmtp: Vec<(String, String)> = m
            .attributes_typed::<Fmtp>()
            .filter_map(Result::ok)
            .filter(|f| f.fmt == map.payload_type)
            .flat_map(|f| f.format_specific_params)
            .map(|p| {
                (
                    p.param.trim().to_ascii_lowercase(),
                    p.val.unwrap_or_default(),
                )
            })
            .collect();
        let param = |k: &str| fmtp.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        let codec = match map.encoding_name.to_ascii_uppercase().as_str() {
            "H264" => {
                let sets = param("sprop-parameter-sets").unwrap_or_default();
                let mut decoded = sets
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()));
                let mut next = || {
                    decoded
                        .next()
                        .transpose()
                        .map_err(|e| bad(format!("sprop-parameter-sets: {e}")))
                };
                let sps = next()?.unwrap_or_default();
                let pps = next()?.unwrap_or_default();
                if param("packetization-mode").is_some_and(|m| m.trim() == "2") {
                    return Err(bad(
                        "packetization-mode 2 (interleaved) is not supported".into()
                    ));
                }
                Codec::H264 { sps, pps }
            }
            "MPEG4-GENERIC" => {
                let mode = param("mode").unwrap_or_default();
                if !mode.eq_ignore_ascii_case("AAC-hbr") {
                    return Err(bad(format!(
                        "MPEG4-GENERIC mode \"{mode}\"; Glass takes AAC-hbr"
                    )));
                }
                let number = |k: &str, default: u32| -> Result<u32, SdpError> {
                    match param(k) {
                        None => Ok(default),
                        Some(v) => v
                            .trim()
                            .parse()
                            .ok()
                            .filter(|&n| n <= 16)
                            .ok_or_else(|| bad(format!("{k}={v}"))),
                    }
                };
                let params = HbrParams {
                    size_length: number("sizelength", 13)?,
                    index_length: number("indexlength", 3)?,
                    index_delta_length: number("indexdeltalength", 3)?,
                };
                let config = hex(param("config").unwrap_or_default())
                    .ok_or_else(|| bad("config is not hex".into()))?;
                let channels = map
                    .encoding_params
                    .as_deref()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Codec::Aac {
                    config,
                    params,
                    channels,
                }
            }
            _ => continue,
        };
        if map.clock_rate == 0 {
            return Err(bad("a clock rate of 0".into()));
        }
        let control = match m.get_first_attribute_value("control") {
            Some(Some(c)) => c.to_string(),
            _ => return Err(bad("no a=control: a SETUP could not name it".into())),
        };
        out.push(Track {
            control,
            payload_type: map.payload_type,
            clock_rate: map.clock_rate,
            codec,
        });
    }
    if out.is_empty() {
        return Err(SdpError::NoTrack);
    }
    Ok(out)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ffmpeg 5.1's RTSP muxer ANNOUNCEs (shared/RESEARCH-NEXT.md).
    const FFMPEG: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 198.18.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADazZQUH7ARAAAAMAEAAAAwPA8UKZYA==,aOvjyyLA; profile-level-id=64000D\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1190\r\na=control:streamid=1\r\n";

    #[test]
    fn ffmpegs_announce_gives_an_h264_and_an_aac_track() {
        let t = tracks(FFMPEG.as_bytes()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].control, "streamid=0");
        assert_eq!((t[0].payload_type, t[0].clock_rate), (96, 90000));
        let Codec::H264 { sps, pps } = &t[0].codec else {
            panic!("{t:?}")
        };
        assert_eq!(sps[0] & 0x1f, 7);
        assert_eq!(pps[0] & 0x1f, 8);
        assert_eq!(
            t[1].codec,
            Codec::Aac {
                config: vec![0x11, 0x90],
                params: HbrParams::default(),
                channels: 2
            }
        );
        assert_eq!(t[1].clock_rate, 48000);
    }

    #[test]
    fn bad_descriptions_say_why() {
        let video_only = |fmtp: &str, control: &str| {
            format!(
                "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n{fmtp}{control}"
            )
        };
        for (text, needle) in [
            ("garbage".to_string(), "not a session description"),
            (
                "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
                    .to_string(),
                "no H.264 or AAC",
            ),
            (video_only("", ""), "no a=control"),
            (
                video_only("a=fmtp:96 sprop-parameter-sets=!!!\r\n", "a=control:x\r\n"),
                "sprop-parameter-sets",
            ),
            (
                video_only("a=fmtp:96 packetization-mode=2\r\n", "a=control:x\r\n"),
                "packetization-mode 2",
            ),
        ] {
            let e = tracks(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} (wanted {needle})");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = tracks(&b);
        }
    }
}
