//! Stream URIs: the client reads the transport from them, as live platforms'
//! RTMP-over-QUIC clients do.
//!
//! - `rtmp://HOST[:PORT]/APP/KEY`: RTMP over TCP.
//! - `rtmpq://HOST[:PORT]/APP/KEY`: RTMP over QUIC.
//! - `rtmp://HOST[:PORT]/APP/KEY?transport=quic`: RTMP over QUIC too (for
//!   clients that only accept the rtmp scheme).
//! - `&mapping=frames` (or `?mapping=frames` with rtmpq): each frame on its
//!   own QUIC stream instead of the RTMP byte stream on one (`mapping=stream`,
//!   the default).
//!
//! - `gudp://HOST[:PORT]/APP/KEY`: Glass's UDP media protocol (NACK, FEC,
//!   RED, congestion control; settings in the scenario's `udp` table), port
//!   5000 by default.
//!
//! The port defaults to 1935 for RTMP: the relay listens on TCP and UDP 1935.

use std::fmt;

use super::rtmp::quic::Mapping;

pub const DEFAULT_PORT: u16 = 1935;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UriTransport {
    Tcp,
    Quic(Mapping),
    /// Glass's UDP media protocol.
    Udp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamUri {
    pub transport: UriTransport,
    pub host: String,
    pub port: u16,
    pub app: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("\"{0}\": a stream URI starts with rtmp://, rtmpq:// or gudp://")]
    Scheme(String),
    #[error("\"{0}\": no host")]
    NoHost(String),
    #[error("\"{uri}\": bad port \"{port}\"")]
    Port { uri: String, port: String },
    #[error("\"{0}\": the path must be /APP/KEY (an application and a stream key)")]
    Path(String),
    #[error(
        "\"{uri}\": unknown query parameter \"{param}\" (rtmp/rtmpq know transport and mapping; gudp takes none: its settings are the scenario's `udp` table)"
    )]
    Param { uri: String, param: String },
    #[error("\"{uri}\": {what} must be one of {allowed}, not \"{value}\"")]
    Value {
        uri: String,
        what: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("\"{0}\": mapping applies to QUIC only (use rtmpq:// or transport=quic)")]
    MappingWithoutQuic(String),
}

impl StreamUri {
    pub fn parse(uri: &str) -> Result<StreamUri, UriError> {
        let u = uri.trim();
        let udp = u.starts_with("gudp://");
        let (quic_scheme, rest) = if let Some(r) = u.strip_prefix("rtmpq://") {
            (true, r)
        } else if let Some(r) = u.strip_prefix("rtmp://") {
            (false, r)
        } else if let Some(r) = u.strip_prefix("gudp://") {
            (false, r)
        } else {
            return Err(UriError::Scheme(uri.into()));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| UriError::Port {
                        uri: uri.into(),
                        port: p.into(),
                    })?,
            ),
            None => (
                authority,
                if udp {
                    crate::protocol::udp::UDP_MEDIA_PORT
                } else {
                    DEFAULT_PORT
                },
            ),
        };
        if host.is_empty() {
            return Err(UriError::NoHost(uri.into()));
        }
        let parts: Vec<&str> = path.split('/').collect();
        let [app, key] = parts.as_slice() else {
            return Err(UriError::Path(uri.into()));
        };
        if app.is_empty() || key.is_empty() {
            return Err(UriError::Path(uri.into()));
        }
        if udp {
            if let Some(q) = query.filter(|q| !q.is_empty()) {
                return Err(UriError::Param {
                    uri: uri.into(),
                    param: q.split('=').next().unwrap_or(q).into(),
                });
            }
            return Ok(StreamUri {
                transport: UriTransport::Udp,
                host: host.into(),
                port,
                app: (*app).into(),
                key: (*key).into(),
            });
        }
        let mut quic = quic_scheme;
        let mut mapping = None;
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "transport" => match v {
                    "quic" => quic = true,
                    "tcp" if !quic_scheme => quic = false,
                    _ => {
                        return Err(UriError::Value {
                            uri: uri.into(),
                            what: "transport",
                            value: v.into(),
                            allowed: if quic_scheme {
                                "quic (rtmpq:// is QUIC)"
                            } else {
                                "tcp, quic"
                            },
                        });
                    }
                },
                "mapping" => {
                    mapping = Some(match v {
                        "stream" => Mapping::Stream,
                        "frames" => Mapping::Frames,
                        _ => {
                            return Err(UriError::Value {
                                uri: uri.into(),
                                what: "mapping",
                                value: v.into(),
                                allowed: "stream, frames",
                            });
                        }
                    })
                }
                _ => {
                    return Err(UriError::Param {
                        uri: uri.into(),
                        param: k.into(),
                    });
                }
            }
        }
        let transport = match (quic, mapping) {
            (true, m) => UriTransport::Quic(m.unwrap_or_default()),
            (false, None) => UriTransport::Tcp,
            (false, Some(_)) => return Err(UriError::MappingWithoutQuic(uri.into())),
        };
        Ok(StreamUri {
            transport,
            host: host.into(),
            port,
            app: (*app).into(),
            key: (*key).into(),
        })
    }
}

impl StreamUri {
    /// Its canonical scheme: the name a protocol's [`super::Scheme`]
    /// answers (`rtmp://…?transport=quic` is "rtmpq").
    pub fn scheme(&self) -> &'static str {
        match self.transport {
            UriTransport::Tcp => "rtmp",
            UriTransport::Quic(_) => "rtmpq",
            UriTransport::Udp => "gudp",
        }
    }
}

impl fmt::Display for StreamUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme();
        let q = match self.transport {
            UriTransport::Quic(Mapping::Frames) => "?mapping=frames",
            _ => "",
        };
        write!(
            f,
            "{scheme}://{}:{}/{}/{}{q}",
            self.host, self.port, self.app, self.key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> StreamUri {
        StreamUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn transports_from_scheme_and_query() {
        let t = ok("rtmp://server/live/abc");
        assert_eq!(
            (
                t.transport,
                t.host.as_str(),
                t.port,
                t.app.as_str(),
                t.key.as_str()
            ),
            (UriTransport::Tcp, "server", 1935, "live", "abc")
        );
        assert_eq!(
            ok("rtmpq://server:4443/live/abc").transport,
            UriTransport::Quic(Mapping::Stream)
        );
        assert_eq!(ok("rtmpq://server:4443/live/abc").port, 4443);
        let g = ok("gudp://server/live/abc");
        assert_eq!((g.transport, g.port), (UriTransport::Udp, 5000));
        assert_eq!(
            ok("rtmp://server/live/abc?transport=quic").transport,
            UriTransport::Quic(Mapping::Stream)
        );
        assert_eq!(
            ok("rtmp://server/live/abc?transport=quic&mapping=frames").transport,
            UriTransport::Quic(Mapping::Frames)
        );
        assert_eq!(
            ok("rtmpq://server/live/abc?mapping=frames").transport,
            UriTransport::Quic(Mapping::Frames)
        );
        assert_eq!(
            ok("rtmp://server/live/abc?transport=tcp").transport,
            UriTransport::Tcp
        );
        // Display round-trips.
        for s in [
            "rtmp://h:1935/live/k",
            "rtmpq://h:1935/live/k",
            "rtmpq://h:1935/live/k?mapping=frames",
            "gudp://h:5000/live/k",
        ] {
            assert_eq!(ok(s).to_string(), s);
        }
    }

    #[test]
    fn malformed_uris_say_what_is_wrong() {
        for (s, needle) in [
            ("http://server/live/k", "rtmp://, rtmpq:// or gudp://"),
            ("gudp://server/live/k?fec=xor", "unknown query parameter"),
            ("rtmp:///live/k", "no host"),
            ("rtmp://server:http/live/k", "bad port"),
            ("rtmp://server:0/live/k", "bad port"),
            ("rtmp://server/live", "/APP/KEY"),
            ("rtmp://server/live/k/extra", "/APP/KEY"),
            ("rtmp://server//k", "/APP/KEY"),
            ("rtmp://server/live/k?transport=udp", "tcp, quic"),
            ("rtmpq://server/live/k?transport=tcp", "rtmpq:// is QUIC"),
            ("rtmp://server/live/k?mapping=frames", "QUIC only"),
            ("rtmpq://server/live/k?mapping=datagrams", "stream, frames"),
            (
                "rtmpq://server/live/k?colour=red",
                "unknown query parameter",
            ),
        ] {
            let e = StreamUri::parse(s).expect_err(s).to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }
}
