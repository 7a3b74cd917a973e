//! RTSP authentication (RFC 2326 §D via HTTP's RFC 2617): Basic, and
//! Digest without `qop` (what cameras and ffmpeg speak). The relay answers
//! a request without valid credentials with 401 and a challenge; the
//! client answers the challenge in an `Authorization` header. Sans-IO:
//! header values in, header values and verdicts out.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

/// The realm the relay names in its challenges.
pub const REALM: &str = "Glass";

/// How the relay asks for credentials.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// The password in the clear (base64): a test of a client's Basic path.
    Basic,
    /// A hash of the password with a nonce, as cameras do it.
    Digest,
}

/// `rtsp.auth = { scheme, user, password }`: the credentials the relay
/// requires of RTSP publishers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub scheme: AuthScheme,
    pub user: String,
    pub password: String,
}

impl Credentials {
    /// What is wrong with them, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        if self.user.is_empty() || self.password.is_empty() {
            Some("user and password must not be empty")
        } else if self.user.contains(':') {
            Some("a user name cannot contain ':'")
        } else if [&self.user, &self.password]
            .iter()
            .any(|s| s.contains(['"', '\r', '\n']))
        {
            Some("user and password cannot contain quotes or line breaks")
        } else {
            None
        }
    }

    /// The `WWW-Authenticate` value of the relay's 401.
    pub fn challenge(&self, nonce: &str) -> String {
        match self.scheme {
            AuthScheme::Basic => format!("Basic realm=\"{REALM}\""),
            AuthScheme::Digest => format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\""),
        }
    }

    /// Whether an `Authorization` value proves these credentials for a
    /// `method` request, given the session's `nonce`.
    pub fn verify(&self, authorization: Option<&str>, method: &str, nonce: &str) -> bool {
        let Some((scheme, rest)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
            return false;
        };
        match self.scheme {
            AuthScheme::Basic if scheme.eq_ignore_ascii_case("basic") => {
                base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .is_ok_and(|b| b == format!("{}:{}", self.user, self.password).as_bytes())
            }
            AuthScheme::Digest if scheme.eq_ignore_ascii_case("digest") => {
                let p = params(rest);
                let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                let (Some(user), Some(realm), Some(n), Some(uri), Some(response)) = (
                    get("username"),
                    get("realm"),
                    get("nonce"),
                    get("uri"),
                    get("response"),
                ) else {
                    return false;
                };
                user == self.user
                    && realm == REALM
                    && n == nonce
                    && response.eq_ignore_ascii_case(&digest_response(
                        &self.user,
                        &self.password,
                        REALM,
                        nonce,
                        method,
                        uri,
                    ))
            }
            _ => false,
        }
    }
}

/// A client's `Authorization` value answering the relay's `challenge`
/// (a `WWW-Authenticate` value) for a `method` request of `uri`; None if
/// the challenge is of neither scheme.
pub fn answer(
    user: &str,
    password: &str,
    challenge: &str,
    method: &str,
    uri: &str,
) -> Option<String> {
    let (scheme, rest) = challenge.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        return Some(format!("Basic {token}"));
    }
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let p = params(rest);
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (realm, nonce) = (get("realm")?, get("nonce")?);
    let response = digest_response(user, password, realm, nonce, method, uri);
    Some(format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\""
    ))
}

/// RFC 2617's response without qop: MD5(HA1:nonce:HA2).
fn digest_response(
    user: &str,
    password: &str,
    realm: &str,
    nonce: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `k="v", k2=v2` parameters (quotes removed; commas inside quotes kept).
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => match q.split_once('"') {
                Some((v, n)) => (v, n),
                None => (q, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key, value.to_string()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(scheme: AuthScheme) -> Credentials {
        Credentials {
            scheme,
            user: "cam".into(),
            password: "s3cret".into(),
        }
    }

    #[test]
    fn rfc_2617s_example_digest() {
        // RFC 2617 3.5's example, without qop: HA1 and HA2 as there.
        assert_eq!(
            md5_hex("Mufasa:testrealm@host.com:Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
        assert_eq!(
            md5_hex("GET:/dir/index.html"),
            "39aff3a2bab6126f332b942af96d3366"
        );
    }

    #[test]
    fn a_clients_answer_verifies_and_a_wrong_password_does_not() {
        for scheme in [AuthScheme::Basic, AuthScheme::Digest] {
            let c = creds(scheme);
            let challenge = c.challenge("abc123");
            let uri = "rtsp://127.0.0.1:554/live/k";
            let good = answer("cam", "s3cret", &challenge, "ANNOUNCE", uri);
            assert!(
                c.verify(good.as_deref(), "ANNOUNCE", "abc123"),
                "{challenge}"
            );
            let bad = answer("cam", "guess", &challenge, "ANNOUNCE", uri);
            assert!(!c.verify(bad.as_deref(), "ANNOUNCE", "abc123"));
            assert!(!c.verify(None, "ANNOUNCE", "abc123"));
            assert!(!c.verify(Some("Bearer x"), "ANNOUNCE", "abc123"));
        }
        // A digest for another method or nonce does not carry over.
        let c = creds(AuthScheme::Digest);
        let a = answer("cam", "s3cret", &c.challenge("n1"), "SETUP", "u");
        assert!(!c.verify(a.as_deref(), "RECORD", "n1"));
        assert!(!c.verify(a.as_deref(), "SETUP", "n2"));
    }

    #[test]
    fn ffmpegs_authorization_header_parses() {
        // ffmpeg 5.1's Digest answer (libavformat/httpauth.c) for the
        // challenge Digest realm="Glass", nonce="6c610001".
        let c = creds(AuthScheme::Digest);
        let response = digest_response(
            "cam",
            "s3cret",
            REALM,
            "6c610001",
            "ANNOUNCE",
            "rtsp://h/live/k",
        );
        let header = format!(
            "Digest username=\"cam\", realm=\"Glass\", nonce=\"6c610001\", uri=\"rtsp://h/live/k\", response=\"{response}\", algorithm=\"MD5\""
        );
        assert!(c.verify(Some(&header), "ANNOUNCE", "6c610001"));
    }

    proptest::proptest! {
        #[test]
        fn any_header_is_refused_or_accepted_without_panicking(h in ".{0,200}") {
            for scheme in [AuthScheme::Basic, AuthScheme::Digest] {
                let _ = creds(scheme).verify(Some(&h), "ANNOUNCE", "n");
                let _ = answer("u", "p", &h, "ANNOUNCE", "x");
            }
        }
    }
}
