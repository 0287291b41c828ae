//! The hash chain of a tenant's audit entries, recomputed outside the database: the
//! canonical encoding (the same as `clinical.audit_canonical` of migration 0010), each
//! entry's hash, and the walk that finds the first broken link. Pure.

use sha2::{Digest, Sha256};

/// The `prev_hash` of a tenant's first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// A stored entry, every field its hash covers plus the two hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The tenant's catalog id.
    pub tenant_id: i64,
    /// Position in the tenant's chain, from 1.
    pub seq: i64,
    /// When it was recorded, microseconds since the Unix epoch.
    pub recorded_at_us: i64,
    /// The authenticated subject.
    pub actor: String,
    /// The action's stored form.
    pub action: String,
    /// The FHIR resource type.
    pub resource_type: String,
    /// The resource id, if one.
    pub resource_id: Option<String>,
    /// Search parameter names, if a search.
    pub query: Option<String>,
    /// Ids returned, if a search or export.
    pub result_ids: Option<Vec<Option<String>>>,
    /// The HTTP status answered.
    pub status: i16,
    /// The request id.
    pub request_id: String,
    /// The peer address.
    pub source: Option<String>,
    /// The hash of the previous entry (or [`GENESIS`]).
    pub prev_hash: Vec<u8>,
    /// This entry's hash as stored.
    pub hash: Vec<u8>,
}

fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(b'-'),
        Some(v) => {
            out.extend_from_slice(v.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
        }
    }
}

/// The bytes `clinical.audit_canonical` yields for `link` (UTF-8).
pub fn canonical(link: &Link) -> Vec<u8> {
    let mut out = b"phoenix-audit-v1".to_vec();
    field(&mut out, Some(&link.tenant_id.to_string()));
    field(&mut out, Some(&link.seq.to_string()));
    field(&mut out, Some(&link.recorded_at_us.to_string()));
    field(&mut out, Some(&link.actor));
    field(&mut out, Some(&link.action));
    field(&mut out, Some(&link.resource_type));
    field(&mut out, link.resource_id.as_deref());
    field(&mut out, link.query.as_deref());
    match &link.result_ids {
        None => out.push(b'-'),
        Some(ids) => {
            out.extend_from_slice(ids.len().to_string().as_bytes());
            out.push(b'#');
            for id in ids {
                field(&mut out, id.as_deref());
            }
        }
    }
    field(&mut out, Some(&link.status.to_string()));
    field(&mut out, Some(&link.request_id));
    field(&mut out, link.source.as_deref());
    out
}

/// The hash `link` must carry: SHA-256 of its canonical encoding and its `prev_hash`.
pub fn expected_hash(link: &Link) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(canonical(link));
    hasher.update(&link.prev_hash);
    hasher.finalize().into()
}

/// How a link is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Break {
    /// Entries are missing before this one (deleted), or it is out of place.
    Gap {
        /// The seq the chain needed next.
        expected: i64,
    },
    /// Its `prev_hash` is not the previous entry's hash (an entry before it was replaced,
    /// or it was inserted out of the chain).
    PrevHash {
        /// The previous entry's hash (hex).
        expected: String,
        /// Its `prev_hash` (hex).
        found: String,
    },
    /// Its hash does not match its fields: the entry was changed after it was written.
    Hash {
        /// The hash its fields give (hex).
        expected: String,
        /// The stored hash (hex).
        found: String,
    },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gap { expected } => write!(
                f,
                "entries are missing: the chain needed seq {expected} here"
            ),
            Self::PrevHash { expected, found } => write!(
                f,
                "prev_hash {found} is not the previous entry's hash {expected}"
            ),
            Self::Hash { expected, found } => write!(
                f,
                "stored hash {found} does not match its fields (they hash to {expected}): the entry was changed"
            ),
        }
    }
}

/// Walks a chain in seq order, one batch of links at a time, and stops at the first
/// broken link.
#[derive(Debug)]
pub struct Walk {
    next_seq: i64,
    prev: Vec<u8>,
    checked: u64,
}

impl Default for Walk {
    fn default() -> Self {
        Self {
            next_seq: 1,
            prev: GENESIS.to_vec(),
            checked: 0,
        }
    }
}

impl Walk {
    /// Checks the next `link`; on a break, the seq at fault and why.
    pub fn check(&mut self, link: &Link) -> Result<(), (i64, Break)> {
        if link.seq != self.next_seq {
            return Err((
                link.seq,
                Break::Gap {
                    expected: self.next_seq,
                },
            ));
        }
        if link.prev_hash != self.prev {
            return Err((
                link.seq,
                Break::PrevHash {
                    expected: hex::encode(&self.prev),
                    found: hex::encode(&link.prev_hash),
                },
            ));
        }
        let expected = expected_hash(link);
        if link.hash != expected {
            return Err((
                link.seq,
                Break::Hash {
                    expected: hex::encode(expected),
                    found: hex::encode(&link.hash),
                },
            ));
        }
        self.next_seq = link.seq.saturating_add(1);
        self.prev.clone_from(&link.hash);
        self.checked += 1;
        Ok(())
    }

    /// How many links passed.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last link that passed (the chain's head), hex.
    pub fn head(&self) -> String {
        hex::encode(&self.prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Link> {
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|seq| {
                let mut link = Link {
                    tenant_id: 7,
                    seq,
                    recorded_at_us: 1_700_000_000_000_000 + seq,
                    actor: "dr-a".into(),
                    action: "search".into(),
                    resource_type: "Patient".into(),
                    resource_id: None,
                    query: Some("family".into()),
                    result_ids: Some(vec![Some("a".into()), None]),
                    status: 200,
                    request_id: format!("r{seq}"),
                    source: None,
                    prev_hash: prev.clone(),
                    hash: Vec::new(),
                };
                link.hash = expected_hash(&link).to_vec();
                prev.clone_from(&link.hash);
                link
            })
            .collect()
    }

    fn walk(links: &[Link]) -> Result<u64, (i64, Break)> {
        let mut walk = Walk::default();
        for link in links {
            walk.check(link)?;
        }
        Ok(walk.checked())
    }

    #[test]
    fn the_encoding_is_length_prefixed_and_marks_nulls() {
        let link = &chain(1)[0];
        let text = String::from_utf8(canonical(link)).expect("utf-8");
        assert_eq!(
            text,
            "phoenix-audit-v11:71:116:17000000000000014:dr-a6:search7:Patient-6:family2#1:a-3:2002:r1-"
        );
    }

    #[test]
    fn an_intact_chain_passes() {
        assert_eq!(walk(&chain(5)), Ok(5));
    }

    #[test]
    fn a_changed_field_breaks_exactly_that_link() {
        let mut links = chain(5);
        links[2].actor = "someone-else".into();
        assert!(matches!(walk(&links), Err((3, Break::Hash { .. }))));
    }

    #[test]
    fn a_rehashed_change_breaks_the_next_link() {
        let mut links = chain(5);
        links[2].status = 404;
        links[2].hash = expected_hash(&links[2]).to_vec();
        assert!(matches!(walk(&links), Err((4, Break::PrevHash { .. }))));
    }

    #[test]
    fn a_deleted_entry_is_a_gap() {
        let mut links = chain(5);
        links.remove(1);
        assert_eq!(walk(&links), Err((3, Break::Gap { expected: 2 })));
    }

    #[test]
    fn moving_an_id_between_fields_changes_the_hash() {
        let mut a = chain(1).remove(0);
        a.result_ids = None;
        a.resource_id = Some("x".into());
        let mut b = a.clone();
        b.resource_id = None;
        b.query = Some("x".into());
        assert_ne!(expected_hash(&a), expected_hash(&b));
    }
}
