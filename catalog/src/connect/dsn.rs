//! Takes the TLS parameters tokio-postgres does not know (`verify-ca`, `verify-full`,
//! `sslrootcert`) out of a libpq connection string and leaves the rest untouched, so
//! tokio-postgres still parses everything else exactly as it always did.

use std::ops::Range;

/// A connection string split into what this crate handles and what tokio-postgres does.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Split {
    /// The connection string without the parameters below.
    pub rest: String,
    /// `sslmode`, decoded, if given.
    pub sslmode: Option<String>,
    /// `sslrootcert`, decoded, if given.
    pub sslrootcert: Option<String>,
    /// The first client-certificate or CRL parameter, which is refused (not supported).
    pub unsupported: Option<String>,
}

/// libpq TLS parameters that are not supported (client certificates, CRLs).
const UNSUPPORTED: [&str; 6] = [
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslcertmode",
];

/// Splits a URL (`postgres://` / `postgresql://`) or a key=value connection string.
pub(super) fn split(dsn: &str) -> Split {
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        split_url(dsn)
    } else {
        split_key_values(dsn)
    }
}

fn empty(rest: String) -> Split {
    Split {
        rest,
        sslmode: None,
        sslrootcert: None,
        unsupported: None,
    }
}

fn take(split: &mut Split, key: &str, value: String) -> bool {
    match key {
        "sslmode" => split.sslmode = Some(value),
        "sslrootcert" => split.sslrootcert = Some(value),
        _ if UNSUPPORTED.contains(&key) => {
            split.unsupported.get_or_insert_with(|| key.to_owned());
        }
        _ => return false,
    }
    true
}

fn split_url(dsn: &str) -> Split {
    // Like tokio-postgres: the credentials end at the first '@', so a '?' inside a
    // password is not the start of the query.
    let from = dsn.find('@').map_or(0, |at| at + 1);
    let Some(q) = dsn[from..].find('?').map(|i| from + i) else {
        return empty(dsn.to_owned());
    };
    let mut split = empty(String::new());
    let mut kept = Vec::new();
    for pair in dsn[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !take(&mut split, &percent_decode(key), percent_decode(value)) {
            kept.push(pair);
        }
    }
    split.rest = dsn[..q].to_owned();
    if !kept.is_empty() {
        split.rest.push('?');
        split.rest.push_str(&kept.join("&"));
    }
    split
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn split_key_values(dsn: &str) -> Split {
    let mut split = empty(String::new());
    let mut removed: Vec<Range<usize>> = Vec::new();
    for (key, value, span) in KeyValues::new(dsn) {
        if take(&mut split, key, value) {
            removed.push(span);
        }
    }
    let mut rest = String::with_capacity(dsn.len());
    let mut at = 0;
    for span in removed {
        rest.push_str(&dsn[at..span.start]);
        at = span.end;
    }
    rest.push_str(&dsn[at..]);
    split.rest = rest;
    split
}

/// The `key = value` pairs of a libpq key/value string with the byte span of each, by
/// the rules tokio-postgres applies (single quotes, backslash escapes). Stops at the
/// first malformed pair: tokio-postgres reports that one when it parses the rest.
struct KeyValues<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> KeyValues<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn value(&mut self) -> Option<String> {
        let quoted = self.peek() == Some('\'');
        if quoted {
            self.pos += 1;
        }
        let mut value = String::new();
        while let Some(c) = self.peek() {
            if quoted && c == '\'' {
                self.pos += 1;
                return Some(value);
            }
            if !quoted && c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
            if c == '\\' {
                let escaped = self.peek()?;
                self.pos += escaped.len_utf8();
                value.push(escaped);
            } else {
                value.push(c);
            }
        }
        (!quoted).then_some(value)
    }
}

impl<'a> Iterator for KeyValues<'a> {
    type Item = (&'a str, String, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        self.skip_ws();
        let start = self.pos;
        let key_len = self.s[start..].find(|c: char| c.is_whitespace() || c == '=')?;
        if key_len == 0 {
            return None;
        }
        let key = &self.s[start..start + key_len];
        self.pos = start + key_len;
        self.skip_ws();
        if self.peek() != Some('=') {
            return None;
        }
        self.pos += 1;
        self.skip_ws();
        let value = self.value()?;
        Some((key, value, start..self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_loses_only_the_taken_parameters() {
        let s = split(
            "postgres://u:p%3Fw@db:5432/phoenix?sslmode=verify-full&application_name=dp&sslrootcert=%2Fetc%2Fca.crt",
        );
        assert_eq!(
            s.rest,
            "postgres://u:p%3Fw@db:5432/phoenix?application_name=dp"
        );
        assert_eq!(s.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(s.sslrootcert.as_deref(), Some("/etc/ca.crt"));
        assert_eq!(s.unsupported, None);
    }

    #[test]
    fn a_url_without_other_parameters_loses_its_question_mark() {
        let s = split("postgresql://db/phoenix?sslmode=require");
        assert_eq!(s.rest, "postgresql://db/phoenix");
        assert_eq!(s.sslmode.as_deref(), Some("require"));
    }

    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        let s = split("postgres://u:a?sslmode=disable@db/phoenix?sslmode=verify-ca");
        assert_eq!(s.rest, "postgres://u:a?sslmode=disable@db/phoenix");
        assert_eq!(s.sslmode.as_deref(), Some("verify-ca"));
    }

    #[test]
    fn key_values_keep_quoting_of_what_stays() {
        let s = split(
            "host=db password='a b' sslmode = verify-full sslrootcert='/my dir/ca.crt' dbname=x",
        );
        assert_eq!(s.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(s.sslrootcert.as_deref(), Some("/my dir/ca.crt"));
        assert_eq!(s.rest, "host=db password='a b'   dbname=x");
    }

    #[test]
    fn escaped_quotes_and_backslashes_are_decoded() {
        let s = split(r"host=db sslrootcert='/a\'b\\c.crt'");
        assert_eq!(s.sslrootcert.as_deref(), Some(r"/a'b\c.crt"));
        assert_eq!(s.rest, "host=db ");
    }

    #[test]
    fn client_certificates_are_flagged() {
        assert_eq!(
            split("host=db sslcert=/c.crt").unsupported.as_deref(),
            Some("sslcert")
        );
        assert_eq!(
            split("postgres://db/x?sslkey=%2Fk").unsupported.as_deref(),
            Some("sslkey")
        );
    }
}
