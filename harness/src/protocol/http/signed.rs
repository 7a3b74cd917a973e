//! Signed play URLs (the seed's authentication on play): with a scenario
//! secret set (`http.play_secret`), every request of a stream carries
//! `?token=EXPIRY-MAC`, where EXPIRY is a Unix time in seconds and MAC the
//! hex HMAC-SHA256 of `STREAM_PATH:EXPIRY` under the secret. The MAC
//! covers the stream's path (`/APP/KEY`) rather than each file's, as CDN
//! tokens for HLS do: a player requests segments and parts by the URIs a
//! playlist gives it and cannot sign them itself, so the relay writes the
//! token the playlist was fetched with into every URI it lists. A missing,
//! malformed, wrong or expired token is a 403.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a request's token is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no token (this relay serves signed URLs only: ?token=EXPIRY-MAC)")]
    Missing,
    #[error("a malformed token (EXPIRY-MAC: Unix seconds, a dash, 64 hex digits)")]
    Malformed,
    #[error("the token expired")]
    Expired,
    #[error("the token is not this stream's")]
    Wrong,
}

fn mac(secret: &str, stream_path: &str, expires: u64) -> HmacSha256 {
    // HMAC takes a key of any length; the error cannot happen.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(stream_path.as_bytes());
    m.update(b":");
    m.update(expires.to_string().as_bytes());
    m
}

/// The token that lets its holder play `stream_path` (`/APP/KEY`) until
/// `expires` (Unix seconds).
pub fn token(secret: &str, stream_path: &str, expires: u64) -> String {
    let tag = mac(secret, stream_path, expires).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{expires}-{hex}")
}

/// Checks a request's `token` for `stream_path` at `now` (Unix seconds).
pub fn check(
    secret: &str,
    stream_path: &str,
    token: Option<&str>,
    now: u64,
) -> Result<(), TokenError> {
    let token = token.ok_or(TokenError::Missing)?;
    let (expires, hex) = token.split_once('-').ok_or(TokenError::Malformed)?;
    if expires.is_empty() || expires.len() > 19 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed);
    }
    let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if hex.len() != 64 {
        return Err(TokenError::Malformed);
    }
    let mut tag = [0u8; 32];
    for (i, b) in tag.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or(TokenError::Malformed)?, 16)
            .map_err(|_| TokenError::Malformed)?;
    }
    // The MAC first (in constant time), so a forged token learns nothing
    // from whether it had expired.
    mac(secret, stream_path, expires)
        .verify_slice(&tag)
        .map_err(|_| TokenError::Wrong)?;
    if expires < now {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_their_stream_until_they_expire() {
        let t = token("s3cret", "/live/k", 2_000);
        assert_eq!(t.len(), "2000-".len() + 64);
        assert_eq!(check("s3cret", "/live/k", Some(&t), 1_999), Ok(()));
        assert_eq!(check("s3cret", "/live/k", Some(&t), 2_000), Ok(()));
        assert_eq!(
            check("s3cret", "/live/k", Some(&t), 2_001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check("other", "/live/k", Some(&t), 0),
            Err(TokenError::Wrong)
        );
        assert_eq!(
            check("s3cret", "/live/k2", Some(&t), 0),
            Err(TokenError::Wrong)
        );
        // A later expiry with the old MAC is a forgery.
        let forged = t.replacen("2000", "9000", 1);
        assert_eq!(
            check("s3cret", "/live/k", Some(&forged), 0),
            Err(TokenError::Wrong)
        );
        assert_eq!(
            check("s3cret", "/live/k", None, 0),
            Err(TokenError::Missing)
        );
        for bad in [
            "",
            "2000",
            "-abc",
            "x-00",
            "2000-zz",
            "+1-00",
            &format!("2000-{}", "g".repeat(64)),
            &format!("2000-{}é", "0".repeat(62)),
            &format!("99999999999999999999-{}", "0".repeat(64)),
        ] {
            assert_eq!(
                check("s3cret", "/live/k", Some(bad), 0),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }
}
