//! Where a tenant's clinical rows live: the shared `clinical` schema, or a schema of its
//! own (isolation `Schema`). The operator derives the names; both sides validate a name
//! read back before it reaches SQL, and quote it there.

use sha2::{Digest, Sha256};

/// The schema holding the shared clinical tables (isolation `Shared`).
pub const SHARED_SCHEMA: &str = "clinical";

/// Prefix of a tenant's own schema.
pub const SCHEMA_PREFIX: &str = "t_";

/// Prefix of a tenant's own database (isolation `Dedicated`).
pub const DATABASE_PREFIX: &str = "tdb_";

/// Prefix of the role owning a tenant's own schema.
pub const ROLE_PREFIX: &str = "phoenix_tenant_";

/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
const MAX_IDENTIFIER: usize = 63;

// 16 hex digits (64 bits) of the SHA-256 of the Tenant's UID: stable for the object's
// life, distinct for every Tenant ever created (a re-created Tenant gets a new UID, so it
// never inherits a retained schema), and short enough for any prefix.
fn digest(uid: &str) -> String {
    Sha256::digest(uid.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The schema of the tenant with Kubernetes UID `uid`: `t_` and 16 hex digits.
pub fn tenant_schema(uid: &str) -> String {
    format!("{SCHEMA_PREFIX}{}", digest(uid))
}

/// The role owning that schema: `phoenix_tenant_` and the same 16 hex digits.
pub fn tenant_role(uid: &str) -> String {
    format!("{ROLE_PREFIX}{}", digest(uid))
}

/// The database of the `Dedicated` tenant with Kubernetes UID `uid`: `tdb_` and the same
/// 16 hex digits as its role (22 bytes, far below the 63-byte limit).
pub fn tenant_database(uid: &str) -> String {
    format!("{DATABASE_PREFIX}{}", digest(uid))
}

/// Whether `name` may be a tenant's own database: a plain identifier with the prefix the
/// operator gives them (never the region's own database, `postgres` or a template).
pub fn valid_tenant_database(name: &str) -> bool {
    valid_identifier(name) && name.starts_with(DATABASE_PREFIX)
}

/// Whether `name` is a plain identifier (lower-case letters, digits, `_`, not starting
/// with a digit, at most 63 bytes): nothing in it needs quoting or could escape a quote.
pub fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Whether `name` may be a tenant's own schema: a plain identifier that is not one of the
/// schemas the platform uses itself.
pub fn valid_tenant_schema(name: &str) -> bool {
    valid_identifier(name)
        && !matches!(name, "clinical" | "catalog" | "public" | "phoenix_meta")
        && !name.starts_with("pg_")
        && !name.starts_with("information_schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_valid_and_distinct_per_uid() {
        let uid = "3f1c2a9e-6b7d-4e21-9c55-0a1b2c3d4e5f";
        assert_eq!(tenant_schema(uid), tenant_schema(uid));
        assert_eq!(tenant_schema(uid).len(), 2 + 16);
        assert!(valid_tenant_schema(&tenant_schema(uid)));
        assert!(valid_identifier(&tenant_role(uid)));
        assert_eq!(tenant_schema(uid)[2..], tenant_role(uid)[15..]);
        assert_ne!(tenant_schema(uid), tenant_schema("another-uid"));
        assert_eq!(tenant_database(uid), tenant_database(uid));
        assert_eq!(tenant_database(uid)[4..], tenant_role(uid)[15..]);
        assert!(valid_tenant_database(&tenant_database(uid)));
        assert_ne!(tenant_database(uid), tenant_database("another-uid"));
        for bad in ["postgres", "template1", "phoenix", "tdb_x\"; --", "Tdb_abc"] {
            assert!(!valid_tenant_database(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_that_need_quoting_or_are_the_platforms_own_are_refused() {
        for bad in [
            "",
            "T_abc",
            "t-abc",
            "1abc",
            "t_abc\"; DROP SCHEMA clinical; --",
            "clinical",
            "catalog",
            "pg_catalog",
            &"a".repeat(64),
        ] {
            assert!(!valid_tenant_schema(bad), "{bad:?}");
        }
        assert!(valid_tenant_schema("t_0123456789abcdef"));
    }
}
