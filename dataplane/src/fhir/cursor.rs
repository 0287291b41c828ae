//! The paging cursor of a search: the sort key of the last row served and a digest of the
//! search it belongs to. Results are ordered by id, or by a sort column then id; the next
//! page is the rows after that key (`id > cursor`, `(date, id) > cursor`), a keyset that
//! needs no server state and survives restarts.
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
const SORTED: &str = "2";
const PAIR: &str = "3";

/// Where the next page starts: after this row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The sort column's value of the row, in microseconds since the Unix epoch, when the
    /// search is sorted by a column.
    pub sort: Option<i64>,
    /// The row's id.
    pub id: String,
}

/// Digest of a search's applied parameters (`Search::applied_query`), binding a cursor to it.
fn digest(search: &str) -> String {
    hex::encode(&Sha256::digest(search.as_bytes())[..8])
}

/// The cursor after the row whose id is `last_id`, in the search `search`.
pub fn encode(last_id: &str, search: &str) -> String {
    encode_key(
        &Key {
            sort: None,
            id: last_id.to_owned(),
        },
        search,
    )
}

/// The cursor after the row `key`, in the search `search`.
pub fn encode_key(key: &Key, search: &str) -> String {
    let text = match key.sort {
        None => format!("{VERSION}.{}.{}", key.id, digest(search)),
        Some(sort) => format!("{SORTED}.{sort}.{}.{}", key.id, digest(search)),
    };
    URL_SAFE_NO_PAD.encode(text)
}

/// The id after which the next page starts, if `cursor` was issued for `search`.
pub fn decode(cursor: &str, search: &str) -> Result<String, FhirError> {
    match decode_key(cursor, search, false)? {
        Key { sort: None, id } => Ok(id),
        Key { sort: Some(_), .. } => Err(FhirError::BadCursor),
    }
}

/// The row after which the next page starts, if `cursor` was issued for `search`, which
/// is sorted by a column (then the cursor must carry its value) or not.
pub fn decode_key(cursor: &str, search: &str, sorted: bool) -> Result<Key, FhirError> {
    let text = text(cursor)?;
    let parts: Vec<&str> = text.split('.').collect();
    let (sort, id, sum) = match (parts.as_slice(), sorted) {
        ([VERSION, id, sum], false) => (None, *id, *sum),
        ([SORTED, sort, id, sum], true) => (
            Some(sort.parse::<i64>().map_err(|_| FhirError::BadCursor)?),
            *id,
            *sum,
        ),
        _ => return Err(FhirError::BadCursor),
    };
    if !is_uuid(id) || sum != digest(search) {
        return Err(FhirError::BadCursor);
    }
    Ok(Key {
        sort,
        id: id.to_owned(),
    })
}

/// The cursor after a row whose sort key is the pair `(a, b)` of non-negative numbers
/// (searches ordered by two numbers, such as the `AuditEvent` export's time and sequence).
pub fn encode_pair(a: i64, b: i64, search: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PAIR}.{a}.{b}.{}", digest(search)))
}

/// The pair after which the next page starts, if `cursor` was issued for `search` by
/// [`encode_pair`].
pub fn decode_pair(cursor: &str, search: &str) -> Result<(i64, i64), FhirError> {
    let text = text(cursor)?;
    let number = |n: &str| {
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse::<i64>().ok())
            .flatten()
    };
    match text.split('.').collect::<Vec<_>>().as_slice() {
        [PAIR, a, b, sum] if *sum == digest(search) => match (number(a), number(b)) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(FhirError::BadCursor),
        },
        _ => Err(FhirError::BadCursor),
    }
}

// The text of a cursor.
fn text(cursor: &str) -> Result<String, FhirError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| FhirError::BadCursor)?;
    String::from_utf8(bytes).map_err(|_| FhirError::BadCursor)
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
    fn a_sorted_cursor_carries_its_key_and_is_refused_on_an_unsorted_search() {
        let key = Key {
            sort: Some(-1_700_000_000_123_456),
            id: ID.into(),
        };
        let cursor = encode_key(&key, "_sort=-date");
        assert_eq!(
            decode_key(&cursor, "_sort=-date", true).expect("valid"),
            key
        );
        assert!(matches!(
            decode_key(&cursor, "_sort=-date", false),
            Err(FhirError::BadCursor)
        ));
        let unsorted = encode(ID, "_sort=-date");
        assert!(matches!(
            decode_key(&unsorted, "_sort=-date", true),
            Err(FhirError::BadCursor)
        ));
        let garbage = URL_SAFE_NO_PAD.encode(format!("2.soon.{ID}.{}", digest("_sort=-date")));
        assert!(matches!(
            decode_key(&garbage, "_sort=-date", true),
            Err(FhirError::BadCursor)
        ));
    }

    #[test]
    fn uuids_are_recognised() {
        assert!(is_uuid(ID));
        assert!(!is_uuid("0b8f2d55-7c4e-4a63-9a0e-2f1c3d4e5f6"));
        assert!(!is_uuid("0b8f2d55x7c4e-4a63-9a0e-2f1c3d4e5f60"));
        assert!(!is_uuid("not-a-uuid"));
    }
}
