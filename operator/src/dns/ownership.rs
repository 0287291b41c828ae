//! What may change in a zone (pure): the operator changes or deletes a tenant's records
//! only under its own ownership record, and creates them only where nobody else has a
//! record. Everything else in the zone is left alone.

use super::records::{owner_record_name, owner_value};
use super::{Action, Change, RecordSet};

/// Why the operator will not touch a host name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Records exist at the name with no ownership record.
    #[error(
        "{name} already has records ({records}) without an ownership record {owner_name}; the operator leaves them alone: remove them or choose another spec.dns.hostname"
    )]
    NotOwned {
        /// The host name.
        name: String,
        /// The records found.
        records: String,
        /// Where the ownership record would be.
        owner_name: String,
    },
    /// The ownership record names someone else.
    #[error(
        "{name} is owned by someone else ({owner_name} says {value}); the operator leaves it alone"
    )]
    OwnedByOther {
        /// The host name.
        name: String,
        /// The ownership record's name.
        owner_name: String,
        /// Its value.
        value: String,
    },
}

/// The ownership record of `host` in the zone: `Some(Ok)` ours, `Some(Err(record))`
/// someone else's, `None` none.
fn ownership<'a>(
    seen: &'a [RecordSet],
    host: &str,
    owner: &str,
    tenant: &str,
) -> Option<Result<(), &'a RecordSet>> {
    let name = owner_record_name(host);
    let txt = seen.iter().find(|r| r.name == name && r.rtype == "TXT")?;
    let ours = owner_value(owner, tenant);
    Some(if txt.values.contains(&ours) {
        Ok(())
    } else {
        Err(txt)
    })
}

/// Our latency records at `host`: CNAMEs with a set identifier.
fn latency_at<'a>(seen: &'a [RecordSet], host: &'a str) -> impl Iterator<Item = &'a RecordSet> {
    seen.iter()
        .filter(move |r| r.name == host && r.rtype == "CNAME" && r.set_identifier.is_some())
}

/// The changes that take the zone (`seen`) to `desired` for tenant `tenant` at `host`
/// (fully qualified): UPSERT what differs, DELETE our latency records no longer wanted.
/// Nothing at all when the zone is converged.
pub fn converge(
    desired: &[RecordSet],
    seen: &[RecordSet],
    host: &str,
    owner: &str,
    tenant: &str,
) -> Result<Vec<Change>, Refusal> {
    let change = |action, record: &RecordSet| Change {
        action,
        record: record.clone(),
        for_object: tenant.to_owned(),
    };
    match ownership(seen, host, owner, tenant) {
        Some(Err(txt)) => {
            return Err(Refusal::OwnedByOther {
                name: host.to_owned(),
                owner_name: txt.name.clone(),
                value: txt.values.join(" "),
            });
        }
        None => {
            let there: Vec<String> = seen
                .iter()
                .filter(|r| r.name == host)
                .map(RecordSet::label)
                .collect();
            if !there.is_empty() {
                return Err(Refusal::NotOwned {
                    name: host.to_owned(),
                    records: there.join(", "),
                    owner_name: owner_record_name(host),
                });
            }
        }
        Some(Ok(())) => {}
    }
    let mut changes: Vec<Change> = latency_at(seen, host)
        .filter(|r| !desired.iter().any(|d| d.key() == r.key()))
        .map(|r| change(Action::Delete, r))
        .collect();
    for d in desired {
        if !seen.iter().any(|s| s == d) {
            changes.push(change(Action::Upsert, d));
        }
    }
    Ok(changes)
}

/// The changes removing tenant `tenant`'s records at `host`: its latency records and
/// then its ownership record, only if that record is ours. Records of others: none.
pub fn remove(seen: &[RecordSet], host: &str, owner: &str, tenant: &str) -> Vec<Change> {
    if !matches!(ownership(seen, host, owner, tenant), Some(Ok(()))) {
        return Vec::new();
    }
    let owner_name = owner_record_name(host);
    latency_at(seen, host)
        .chain(
            seen.iter()
                .filter(|r| r.name == owner_name && r.rtype == "TXT"),
        )
        .map(|r| Change {
            action: Action::Delete,
            record: r.clone(),
            for_object: tenant.to_owned(),
        })
        .collect()
}

/// The latency records of Region `region` under ownership records of `owner` (any
/// tenant), to delete before the Region's health check goes.
pub fn region_records(seen: &[RecordSet], owner: &str, region: &str) -> Vec<Change> {
    let marker = format!(",owner={owner},tenant=");
    seen.iter()
        .filter(|r| r.rtype == "CNAME" && r.set_identifier.as_deref() == Some(region))
        .filter(|r| {
            let owner_name = owner_record_name(&r.name);
            seen.iter().any(|t| {
                t.name == owner_name
                    && t.rtype == "TXT"
                    && t.values.iter().any(|v| v.contains(&marker))
            })
        })
        .map(|r| Change {
            action: Action::Delete,
            record: r.clone(),
            for_object: region.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "m.phoenixguardian.test.";

    fn cname(id: &str, check: &str) -> RecordSet {
        RecordSet {
            name: HOST.into(),
            rtype: "CNAME".into(),
            set_identifier: Some(id.into()),
            region: Some(id.into()),
            ttl: Some(60),
            values: vec![format!("api.{id}.")],
            health_check_id: Some(check.into()),
        }
    }

    fn txt(owner: &str, tenant: &str) -> RecordSet {
        RecordSet {
            name: owner_record_name(HOST),
            rtype: "TXT".into(),
            set_identifier: None,
            region: None,
            ttl: Some(60),
            values: vec![owner_value(owner, tenant)],
            health_check_id: None,
        }
    }

    fn actions(changes: &[Change]) -> Vec<(Action, String)> {
        changes
            .iter()
            .map(|c| (c.action, c.record.label()))
            .collect()
    }

    #[test]
    fn a_fresh_name_gets_everything_and_a_converged_one_nothing() {
        let desired = vec![cname("us-east-1", "h1"), txt("op", "m")];
        let changes = converge(&desired, &[], HOST, "op", "m").expect("owned");
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.action == Action::Upsert));
        let changes = converge(&desired, &desired, HOST, "op", "m").expect("owned");
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn an_owned_name_is_updated_and_stale_latency_records_deleted() {
        let desired = vec![cname("us-east-1", "h2"), txt("op", "m")];
        let seen = vec![
            cname("us-east-1", "h1"),
            cname("gone", "h9"),
            txt("op", "m"),
        ];
        let changes = converge(&desired, &seen, HOST, "op", "m").expect("owned");
        assert_eq!(
            actions(&changes),
            [
                (Action::Delete, format!("{HOST} CNAME [gone]")),
                (Action::Upsert, format!("{HOST} CNAME [us-east-1]")),
            ]
        );
    }

    #[test]
    fn records_without_our_ownership_record_are_never_touched() {
        let desired = vec![cname("us-east-1", "h1"), txt("op", "m")];
        let foreign = RecordSet {
            set_identifier: None,
            region: None,
            health_check_id: None,
            ..cname("x", "h")
        };
        let err = converge(&desired, std::slice::from_ref(&foreign), HOST, "op", "m")
            .expect_err("not ours");
        assert!(matches!(err, Refusal::NotOwned { .. }), "{err}");
        assert!(remove(&[foreign], HOST, "op", "m").is_empty());
        let other = vec![cname("us-east-1", "h1"), txt("someone-else", "m")];
        let err = converge(&desired, &other, HOST, "op", "m").expect_err("theirs");
        assert!(matches!(err, Refusal::OwnedByOther { .. }), "{err}");
        assert!(remove(&other, HOST, "op", "m").is_empty());
        let other_tenant = vec![cname("us-east-1", "h1"), txt("op", "n")];
        assert!(converge(&desired, &other_tenant, HOST, "op", "m").is_err());
    }

    #[test]
    fn removal_deletes_latency_records_before_the_ownership_record() {
        let seen = vec![txt("op", "m"), cname("a", "h1"), cname("b", "h2")];
        let changes = remove(&seen, HOST, "op", "m");
        assert_eq!(
            changes
                .iter()
                .map(|c| c.record.rtype.as_str())
                .collect::<Vec<_>>(),
            ["CNAME", "CNAME", "TXT"]
        );
        assert!(changes.iter().all(|c| c.action == Action::Delete));
    }

    #[test]
    fn a_region_takes_only_its_owned_latency_records() {
        let mut foreign = cname("a", "h3");
        foreign.name = "other.phoenixguardian.test.".into();
        let seen = vec![txt("op", "m"), cname("a", "h1"), cname("b", "h2"), foreign];
        let changes = region_records(&seen, "op", "a");
        assert_eq!(
            actions(&changes),
            [(Action::Delete, format!("{HOST} CNAME [a]"))]
        );
        assert!(region_records(&seen, "other-op", "a").is_empty());
    }
}
