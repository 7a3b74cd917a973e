//! RTSP push ingest (issue #14), in progress: the sans-IO media path
//! (RTP packets and sequence tracking, H.264 and AAC depacketizers and
//! packetizers). The RTSP session, SDP, the server on the hub and the
//! publisher are still to come; until then this protocol is not in
//! [`super::REGISTRY`] and nothing runs it.

pub mod aac;
pub mod h264;
pub mod rtp;
pub mod sdp;
