//! Secrets out of logs and results files: a stream key is what lets anyone
//! publish to (or play) a stream, so results, reports and logs show a short
//! fingerprint instead (`***#3f2a`, the first hex digits of its SHA-256:
//! two streams stay distinguishable), and passwords and tokens in URIs or
//! command lines become `***`. The token of Glass's UDP protocol never
//! travels (udpmedia::auth) and is never written.

use sha2::{Digest, Sha256};

/// A stream key as logs and results show it.
pub fn key(key: &str) -> String {
    let h = Sha256::digest(key.as_bytes());
    format!("***#{:02x}{:02x}", h[0], h[1])
}

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "pass",
    "pwd",
    "auth",
    "sign",
    "signature",
    "streamkey",
];

/// `text` (a URI, a command line, a log line) with every URI's stream key
/// (the path segment after the application), password and secret query
/// values replaced.
pub fn uris(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URI starts at its scheme (letters, digits, + - .) …
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |i| i + 1);
        // … and ends at whitespace or a quote.
        let end = rest[at + 3..]
            .find(|c: char| c.is_whitespace() || "\"'<>".contains(c))
            .map_or(rest.len(), |i| at + 3 + i);
        out.push_str(&rest[..start]);
        out.push_str(&uri(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A stream path `app/KEY[/more]` with its key replaced.
pub fn app_key(path: &str) -> String {
    path.split('/')
        .enumerate()
        .map(|(i, seg)| {
            if i == 1 && !seg.is_empty() {
                key(seg)
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One URI: `scheme://[user[:password]@]host/app/KEY[/more][?query]`.
fn uri(u: &str) -> String {
    let Some((scheme, after)) = u.split_once("://") else {
        return u.to_string();
    };
    let (before_query, query) = match after.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (after, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let mut s = format!("{scheme}://{authority}");
    if let Some(path) = path {
        s.push('/');
        s.push_str(&app_key(path));
    }
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        s.push('?');
        s.push_str(&pairs.join("&"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_passwords_and_tokens_are_replaced() {
        let k = key("sk-live-123");
        assert!(k.starts_with("***#") && k.len() == 8, "{k}");
        assert_ne!(key("a"), key("b"), "two streams stay distinguishable");
        assert_eq!(
            uris("rtmp://server:1935/live/sk-live-123"),
            format!("rtmp://server:1935/live/{k}")
        );
        assert_eq!(
            uris("rtsp://cam:pw@198.18.0.1/live/sk-live-123/streamid=0"),
            format!("rtsp://cam:***@198.18.0.1/live/{k}/streamid=0")
        );
        assert_eq!(
            uris("rtmpq://h/live/sk-live-123?mapping=frames&token=abc"),
            format!("rtmpq://h/live/{k}?mapping=frames&token=***")
        );
        let cmd = "ffmpeg -re -i x -f flv rtmp://127.0.0.1:4000/live/sk-live-123 -y";
        assert_eq!(
            uris(cmd),
            format!("ffmpeg -re -i x -f flv rtmp://127.0.0.1:4000/live/{k} -y")
        );
        let quoted = "refused \"rtmp://h/live/sk-live-123\": busy";
        assert!(!uris(quoted).contains("sk-live-123"));
        // Text without URIs, and a URI without a key, stay as they are.
        assert_eq!(uris("no uri here"), "no uri here");
        assert_eq!(uris("http://h:8080/"), "http://h:8080/");
    }
}
