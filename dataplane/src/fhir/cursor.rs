//! The paging cursor of a search: the sort key of the last row served (the resource id;
//! results are ordered by it, so the next page is `id > cursor`, a keyset that needs no
//! server state and survives restarts) and a digest of the search it belongs to.
//!
//! It is opaque to clients (base64url) but not secret: it grants nothing, since every
//! page is read under the tenant's row-level security. The digest stops a cursor from
//! being replayed on another search, and any edit that breaks its shape or digest is
//! refused with 400 rather than silently paging from somewhere else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::error::FhirError;

const VERSION: &str = "1";

/// Digest of a search's applied parameters (`Search::applied_query`), binding a cursor to it.
fn digest(search: &str) -> String {
    hex::encode(&Sha256::digest(search.as_bytes())[..8])
}

/// The cursor after the row whose id is `last_id`, in the search `search`.
pub fn encode(last_id: &str, search: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{VERSION}.{last_id}.{}", digest(search)))
}

/// The id after which the next page starts, if `cursor` was issued for `search`.
pub fn decode(cursor: &str, search: &str) -> Result<String, FhirError> {
    decode_key(cursor, search, is_uuid)
}

/// The cursor after a row whose sort key is the pair `(a, b)` (searches ordered by two
/// numbers, such as the `AuditEvent` export's time and sequence).
pub fn encode_pair(a: i64, b: i64, search: &str) -> String {
    encode(&format!("{a}_{b}"), search)
}

/// The pair after which the next page starts, if `cursor` was issued for `search` by
/// [`encode_pair`].
pub fn decode_pair(cursor: &str, search: &str) -> Result<(i64, i64), FhirError> {
    let number = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    let valid = |key: &str| {
        key.split_once('_')
            .is_some_and(|(a, b)| number(a) && number(b))
    };
    let key = decode_key(cursor, search, valid)?;
    let (a, b) = key.split_once('_').ok_or(FhirError::BadCursor)?;
    Ok((
        a.parse().map_err(|_| FhirError::BadCursor)?,
        b.parse().map_err(|_| FhirError::BadCursor)?,
    ))
}

fn decode_key(
    cursor: &str,
    search: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<String, FhirError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| FhirError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| FhirError::BadCursor)?;
    let mut parts = text.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(VERSION), Some(key), Some(sum), None) if valid(key) && sum == digest(search) => {
            Ok(key.to_owned())
        }
        _ => Err(FhirError::BadCursor),
    }
}

/// Whether `text` is a UUID in its canonical hyphenated form (as resource ids here are).
pub fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b8f2d55-7c4e-4a63-9a0e-2f1c3d4e5f60";

    #[test]
    fn a_cursor_round_trips_for_its_own_search() {
        let cursor = encode(ID, "family=smith&_count=2");
        assert_eq!(decode(&cursor, "family=smith&_count=2").expect("valid"), ID);
    }

    #[test]
    fn a_pair_cursor_round_trips_and_is_not_an_id_cursor() {
        let cursor = encode_pair(1_764_000_000_123_456, 42, "date=ge2026");
        assert_eq!(
            decode_pair(&cursor, "date=ge2026").expect("valid"),
            (1_764_000_000_123_456, 42)
        );
        assert!(matches!(
            decode(&cursor, "date=ge2026"),
            Err(FhirError::BadCursor)
        ));
        let id_cursor = encode(ID, "date=ge2026");
        assert!(matches!(
            decode_pair(&id_cursor, "date=ge2026"),
            Err(FhirError::BadCursor)
        ));
        let other = encode_pair(1, 2, "date=ge2025");
        assert!(matches!(
            decode_pair(&other, "date=ge2026"),
            Err(FhirError::BadCursor)
        ));
    }

    #[test]
    fn a_cursor_of_another_search_is_refused() {
        let cursor = encode(ID, "family=smith");
        assert!(matches!(
            decode(&cursor, "family=jones"),
            Err(FhirError::BadCursor)
        ));
    }

    #[test]
    fn tampered_or_garbage_cursors_are_refused() {
        let cursor = encode(ID, "");
        let mut tampered = cursor.clone().into_bytes();
        tampered[6] = if tampered[6] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        for bad in [
            tampered.as_str(),
            "",
            "!!!",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode(format!("1.x' OR 1=1 --.{}", digest(""))),
            &URL_SAFE_NO_PAD.encode(format!("2.{ID}.{}", digest(""))),
        ] {
            assert!(
                matches!(decode(bad, ""), Err(FhirError::BadCursor)),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn uuids_are_recognised() {
        assert!(is_uuid(ID));
        assert!(!is_uuid("0b8f2d55-7c4e-4a63-9a0e-2f1c3d4e5f6"));
        assert!(!is_uuid("0b8f2d55x7c4e-4a63-9a0e-2f1c3d4e5f60"));
        assert!(!is_uuid("not-a-uuid"));
    }
}
