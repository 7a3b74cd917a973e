//! The crate's errors.

use thiserror::Error;

/// A datagram that is not a well-formed packet of this protocol.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("datagram of {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("not a Glass UDP media packet (magic {0:#04x})")]
    BadMagic(u8),
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    #[error("{what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

/// A setting out of range.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{field}: {why}")]
pub struct ConfigError {
    pub field: &'static str,
    pub why: String,
}

/// Why an operation on a connection failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConnError {
    #[error("this side receives media; it cannot send frames")]
    NotSender,
    #[error("the connection is not established")]
    NotConnected,
    #[error("frame of {size} bytes needs {packets} packets; at most {max}")]
    FrameTooLarge {
        size: usize,
        packets: usize,
        max: usize,
    },
}
