//! The audit trail as the suites read it: a tenant's entries, read as the superuser.

use phoenix_dataplane::audit::cli::Verdict;
use tokio_postgres::Client;

/// The catalog id of tenant `name`.
pub async fn tenant_id(admin: &Client, name: &str) -> i64 {
    admin
        .query_one("SELECT id FROM catalog.tenants WHERE name = $1", &[&name])
        .await
        .expect("tenant row")
        .get(0)
}

/// `(seq, action, resource_type, resource_id, result_ids, status, actor)` of a tenant's
/// entries, read as the superuser.
pub type Row = (
    i64,
    String,
    String,
    Option<String>,
    Option<Vec<String>>,
    i16,
    String,
);

pub async fn entries(admin: &Client, tenant: i64) -> Vec<Row> {
    admin
        .query(
            "SELECT seq, action, resource_type, resource_id, result_ids, status, actor \
             FROM clinical.audit_events WHERE tenant_id = $1 ORDER BY seq",
            &[&tenant],
        )
        .await
        .expect("audit rows")
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect()
}

/// `verdict` found the chain intact, with `entries` entries.
pub fn intact(verdict: &Verdict, entries: u64) {
    assert_eq!(verdict.broken, None, "{verdict}");
    assert_eq!(verdict.checked, entries, "{verdict}");
}

/// `(action, resource_type, resource_id, result_ids, status)` of a tenant's entries after
/// `after_seq`.
pub async fn interactions(
    admin: &Client,
    tenant: i64,
    after_seq: i64,
) -> Vec<(String, String, Option<String>, Option<Vec<String>>, i16)> {
    entries(admin, tenant)
        .await
        .into_iter()
        .filter(|r| r.0 > after_seq)
        .map(|(_, action, resource_type, id, results, status, _)| {
            (action, resource_type, id, results, status)
        })
        .collect()
}
