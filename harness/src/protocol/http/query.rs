//! A request's query string as the relay's HTTP server reads it: LL-HLS's
//! delivery directives on a playlist request (`_HLS_msn`, `_HLS_part`;
//! `_HLS_skip` is accepted and ignored, as a server that does not advertise
//! CAN-SKIP-UNTIL may) and a signed URL's `token`. Other parameters are
//! ignored, as HTTP servers do; a directive that is malformed or repeated
//! is a 400.

/// What a query asks of the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query<'a> {
    /// Block until the playlist holds this media sequence number ...
    pub msn: Option<u64>,
    /// ... and this part of it (or anything later).
    pub part: Option<u64>,
    /// A signed URL's token, as written.
    pub token: Option<&'a str>,
}

/// Why a query is refused (the server answers 400 with it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("{0} is not a number: {1:?}")]
    NotANumber(&'static str, String),
    #[error("{0} is given twice")]
    Repeated(&'static str),
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
}

/// A decimal number of at most 19 digits (u64's parser takes a leading
/// '+', and no sequence number is longer).
fn number(name: &'static str, v: &str) -> Result<u64, QueryError> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        let shown: String = v.chars().take(24).collect();
        return Err(QueryError::NotANumber(name, shown));
    }
    v.parse()
        .map_err(|_| QueryError::NotANumber(name, v.to_string()))
}

/// Sets `slot` to `v` unless a value came before (`name` repeated).
fn once<T>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), QueryError> {
    match slot.replace(v) {
        Some(_) => Err(QueryError::Repeated(name)),
        None => Ok(()),
    }
}

/// Reads `query` (the part of the target after `?`, if any).
pub fn parse(query: Option<&str>) -> Result<Query<'_>, QueryError> {
    let mut q = Query::default();
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => once(&mut q.msn, number("_HLS_msn", v)?, "_HLS_msn")?,
            "_HLS_part" => once(&mut q.part, number("_HLS_part", v)?, "_HLS_part")?,
            "token" => once(&mut q.token, v, "token")?,
            _ => {}
        }
    }
    if q.part.is_some() && q.msn.is_none() {
        return Err(QueryError::PartWithoutMsn);
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_directives_and_refuses_malformed_ones() {
        assert_eq!(parse(None), Ok(Query::default()));
        assert_eq!(parse(Some("")), Ok(Query::default()));
        assert_eq!(
            parse(Some("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES&x=%zz&&=")),
            Ok(Query {
                msn: Some(12),
                part: Some(3),
                token: None
            })
        );
        assert_eq!(
            parse(Some("token=1700000000-abc&_HLS_msn=0")),
            Ok(Query {
                msn: Some(0),
                part: None,
                token: Some("1700000000-abc")
            })
        );
        for (bad, why) in [
            ("_HLS_msn=", QueryError::NotANumber("_HLS_msn", "".into())),
            (
                "_HLS_msn=+1",
                QueryError::NotANumber("_HLS_msn", "+1".into()),
            ),
            (
                "_HLS_msn=-1",
                QueryError::NotANumber("_HLS_msn", "-1".into()),
            ),
            (
                "_HLS_msn=99999999999999999999",
                QueryError::NotANumber("_HLS_msn", "99999999999999999999".into()),
            ),
            (
                "_HLS_msn=1&_HLS_part=x",
                QueryError::NotANumber("_HLS_part", "x".into()),
            ),
            ("_HLS_msn=1&_HLS_msn=2", QueryError::Repeated("_HLS_msn")),
            ("token=a&token=b", QueryError::Repeated("token")),
            ("_HLS_part=1", QueryError::PartWithoutMsn),
        ] {
            assert_eq!(parse(Some(bad)), Err(why), "{bad}");
        }
    }
}
