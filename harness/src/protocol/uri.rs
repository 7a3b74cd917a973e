//! Stream URIs, `SCHEME://HOST[:PORT]/APP/KEY[?QUERY]`: the scheme names a
//! registered protocol's [`super::Scheme`], whose protocol reads the query
//! itself ([`super::Protocol::uri_options`]); the port defaults to that
//! scheme's endpoint. Glass's schemes:
//!
//! - `rtmp://HOST[:PORT]/APP/KEY`: RTMP over TCP (port 1935).
//! - `rtmpq://HOST[:PORT]/APP/KEY`: RTMP over QUIC (UDP 1935);
//!   `rtmp://…?transport=quic` means the same (for clients that only accept
//!   the rtmp scheme). `mapping=frames` puts each frame on its own QUIC
//!   stream instead of the RTMP byte stream on one (`mapping=stream`).
//! - `gudp://HOST[:PORT]/APP/KEY`: Glass's UDP media protocol (NACK, FEC,
//!   RED, congestion control; settings in the scenario's `udp` table), port
//!   5000.

use std::fmt;

use super::REGISTRY;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamUri {
    /// The canonical scheme, a registered [`super::Scheme`]'s name
    /// (`rtmp://…?transport=quic` is "rtmpq").
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
    pub app: String,
    pub key: String,
    /// The protocol's options from the query, as it normalized them
    /// (`mapping=frames`), in order.
    pub options: Vec<(String, String)>,
    /// `user:password@` before the host, for a protocol that takes
    /// credentials (RTSP); shown without the password.
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("\"{uri}\": a stream URI starts with one of {known}")]
    Scheme { uri: String, known: String },
    #[error("\"{0}\": no host")]
    NoHost(String),
    #[error("\"{uri}\": bad port \"{port}\"")]
    Port { uri: String, port: String },
    #[error("\"{0}\": the path must be /APP/KEY (an application and a stream key)")]
    Path(String),
    #[error("\"{uri}\": {why}")]
    Query { uri: String, why: String },
}

impl StreamUri {
    /// The URI as results and logs show it: the stream key as a
    /// fingerprint, secret query values hidden (`crate::redact`).
    pub fn redacted(&self) -> String {
        crate::redact::uris(&self.to_string())
    }

    pub fn parse(uri: &str) -> Result<StreamUri, UriError> {
        let u = uri.trim();
        let known = || {
            REGISTRY
                .iter()
                .flat_map(|p| p.schemes())
                .map(|s| format!("{}://", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let scheme_error = || UriError::Scheme {
            uri: uri.into(),
            known: known(),
        };
        let (written, rest) = u.split_once("://").ok_or_else(scheme_error)?;
        let (protocol, scheme) = REGISTRY
            .iter()
            .find_map(|p| Some((*p, p.schemes().iter().find(|s| s.name == written)?)))
            .ok_or_else(scheme_error)?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let (canonical, options) =
            protocol
                .uri_options(scheme.name, &pairs)
                .map_err(|why| UriError::Query {
                    uri: uri.into(),
                    why,
                })?;
        let default_port = protocol
            .schemes()
            .iter()
            .find(|s| s.name == canonical)
            .and_then(|s| protocol.endpoints().get(s.endpoint))
            .map_or(0, |e| e.port());
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, authority) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                if !protocol.takes_credentials() {
                    return Err(UriError::Query {
                        uri: uri.into(),
                        why: format!("{written}:// takes no user:password@"),
                    });
                }
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((user.to_string(), password.to_string())), host)
            }
            None => (None, authority),
        };
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
            None => (authority, default_port),
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
        Ok(StreamUri {
            scheme: canonical,
            host: host.into(),
            port,
            app: (*app).into(),
            key: (*key).into(),
            options,
            credentials,
        })
    }

    /// The value of option `name`, if the URI has it.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for StreamUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = match &self.credentials {
            Some((user, _)) => format!("{user}@"),
            None => String::new(),
        };
        write!(
            f,
            "{}://{user}{}:{}/{}/{}",
            self.scheme, self.host, self.port, self.app, self.key
        )?;
        for (i, (k, v)) in self.options.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> StreamUri {
        StreamUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// (canonical scheme, mapping option) of a URI.
    fn what(s: &str) -> (&'static str, Option<String>) {
        let u = ok(s);
        (u.scheme, u.option("mapping").map(String::from))
    }

    #[test]
    fn transports_from_scheme_and_query() {
        let t = ok("rtmp://server/live/abc");
        assert_eq!(
            (
                t.scheme,
                t.host.as_str(),
                t.port,
                t.app.as_str(),
                t.key.as_str()
            ),
            ("rtmp", "server", 1935, "live", "abc")
        );
        assert_eq!(what("rtmpq://server:4443/live/abc"), ("rtmpq", None));
        assert_eq!(ok("rtmpq://server:4443/live/abc").port, 4443);
        let g = ok("gudp://server/live/abc");
        assert_eq!((g.scheme, g.port), ("gudp", 5000));
        assert_eq!(
            what("rtmp://server/live/abc?transport=quic"),
            ("rtmpq", None)
        );
        let frames = Some("frames".to_string());
        assert_eq!(
            what("rtmp://server/live/abc?transport=quic&mapping=frames"),
            ("rtmpq", frames.clone())
        );
        assert_eq!(
            what("rtmpq://server/live/abc?mapping=frames"),
            ("rtmpq", frames)
        );
        assert_eq!(
            what("rtmpq://server/live/abc?mapping=stream"),
            ("rtmpq", None)
        );
        assert_eq!(what("rtmp://server/live/abc?transport=tcp"), ("rtmp", None));
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
            ("http://server/live/k", "rtmp://, rtmpq://, gudp://"),
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
