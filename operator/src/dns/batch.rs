//! ChangeResourceRecordSets batches (pure, and the bisection driver): changes ordered so
//! that nothing is ever left unowned, cut into requests within Route53's limits, and a
//! batch Route53 rejects (`InvalidChangeBatch`) split until only the bad change fails.

use std::future::Future;

use super::records::OWNER_PREFIX;
use super::{Action, Change, Rejected};

/// Route53's limits of one ChangeResourceRecordSets request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `ResourceRecord` elements (an UPSERT counts twice).
    pub elements: usize,
    /// Characters of record values (an UPSERT counts twice).
    pub chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            elements: 1000,
            chars: 32_000,
        }
    }
}

/// Elements and value characters one change costs.
pub fn cost(change: &Change) -> (usize, usize) {
    let weight = match change.action {
        Action::Upsert => 2,
        Action::Delete => 1,
    };
    let elements = change.record.values.len().max(1);
    let chars: usize = change.record.values.iter().map(String::len).sum();
    (elements * weight, chars * weight)
}

fn is_ownership(change: &Change) -> bool {
    change.record.rtype == "TXT" && change.record.name.starts_with(&format!("{OWNER_PREFIX}."))
}

/// The phase of a change: deletions of records first (they free names), then ownership
/// records written, then records written, then ownership records deleted. So, cut into
/// several requests, no record ever exists without its ownership record.
fn phase(change: &Change) -> u8 {
    match (change.action, is_ownership(change)) {
        (Action::Delete, false) => 0,
        (Action::Upsert, true) => 1,
        (Action::Upsert, false) => 2,
        (Action::Delete, true) => 3,
    }
}

/// Orders `changes` by phase, keeping the given order within a phase.
pub fn order(mut changes: Vec<Change>) -> Vec<Change> {
    changes.sort_by_key(phase);
    changes
}

/// Cuts ordered changes into requests within `limits`. A change larger than a request
/// alone gets a request of its own (Route53 will say why it refuses it).
pub fn batches(changes: Vec<Change>, limits: Limits) -> Vec<Vec<Change>> {
    let mut out: Vec<Vec<Change>> = Vec::new();
    let (mut elements, mut chars) = (0, 0);
    for change in order(changes) {
        let (e, c) = cost(&change);
        let fits = elements + e <= limits.elements && chars + c <= limits.chars;
        match out.last_mut() {
            Some(current) if fits && !current.is_empty() => current.push(change),
            _ => {
                out.push(vec![change]);
                (elements, chars) = (0, 0);
            }
        }
        elements += e;
        chars += c;
    }
    out
}

/// How sending one request ended.
#[derive(Debug)]
pub enum SendError<E> {
    /// Route53 refused the batch as a whole (`InvalidChangeBatch`, `InvalidInput`): some
    /// change in it is bad, and nothing of it was applied.
    Rejected(String),
    /// Anything else (after retries): stops the whole send.
    Failed(E),
}

/// Sends `batch` with `send`; when it is rejected, sends each half on its own, down to
/// single changes, so that one bad change fails alone. Halves keep their order, and a
/// half is sent only after the one before it. The number of requests made and the
/// rejected changes are returned.
pub async fn send_bisecting<E, F, Fut>(
    batch: Vec<Change>,
    mut send: F,
) -> Result<(usize, Vec<Rejected>), E>
where
    F: FnMut(Vec<Change>) -> Fut,
    Fut: Future<Output = Result<(), SendError<E>>>,
{
    let mut requests = 0;
    let mut rejected = Vec::new();
    // A stack of batches still to send, the next on top.
    let mut todo = vec![batch];
    while let Some(next) = todo.pop() {
        if next.is_empty() {
            continue;
        }
        requests += 1;
        match send(next.clone()).await {
            Ok(()) => {}
            Err(SendError::Failed(e)) => return Err(e),
            Err(SendError::Rejected(message)) if next.len() == 1 => {
                let change = next.into_iter().next().expect("one change");
                rejected.push(Rejected { change, message });
            }
            Err(SendError::Rejected(_)) => {
                let mut first = next;
                let second = first.split_off(first.len() / 2);
                todo.push(second);
                todo.push(first);
            }
        }
    }
    Ok((requests, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::RecordSet;
    use crate::dns::records::owner_record_name;

    fn change(action: Action, name: &str, rtype: &str, value_len: usize) -> Change {
        Change {
            action,
            record: RecordSet {
                name: name.into(),
                rtype: rtype.into(),
                set_identifier: None,
                region: None,
                ttl: Some(60),
                values: vec!["v".repeat(value_len)],
                health_check_id: None,
            },
            for_object: name.into(),
        }
    }

    #[test]
    fn an_upsert_counts_twice() {
        assert_eq!(cost(&change(Action::Upsert, "a.", "CNAME", 10)), (2, 20));
        assert_eq!(cost(&change(Action::Delete, "a.", "CNAME", 10)), (1, 10));
    }

    #[test]
    fn five_hundred_upserts_fill_a_request() {
        let changes: Vec<_> = (0..1001)
            .map(|i| change(Action::Upsert, &format!("t{i}."), "CNAME", 5))
            .collect();
        let out = batches(changes, Limits::default());
        assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), [500, 500, 1]);
    }

    #[test]
    fn value_characters_cut_requests_too() {
        // 100 UPSERTs of 200 characters: 400 chars each, 80 per 32,000.
        let changes: Vec<_> = (0..100)
            .map(|i| change(Action::Upsert, &format!("t{i}."), "TXT", 200))
            .collect();
        let out = batches(changes, Limits::default());
        assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), [80, 20]);
        let too_big = change(Action::Upsert, "big.", "TXT", 20_000);
        assert_eq!(batches(vec![too_big], Limits::default()).len(), 1);
    }

    #[test]
    fn deletions_come_first_and_ownership_wraps_the_records() {
        let owner = owner_record_name("m.test.");
        let changes = vec![
            change(Action::Delete, &owner, "TXT", 5),
            change(Action::Upsert, "m.test.", "CNAME", 5),
            change(Action::Upsert, &owner, "TXT", 5),
            change(Action::Delete, "old.test.", "CNAME", 5),
        ];
        let kinds: Vec<_> = order(changes)
            .iter()
            .map(|c| (c.action, c.record.rtype.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (Action::Delete, "CNAME".to_owned()),
                (Action::Upsert, "TXT".to_owned()),
                (Action::Upsert, "CNAME".to_owned()),
                (Action::Delete, "TXT".to_owned()),
            ]
        );
    }

    #[test]
    fn cut_into_several_requests_the_order_still_holds() {
        let owner = owner_record_name("m.test.");
        let changes = vec![
            change(Action::Upsert, "m.test.", "CNAME", 5),
            change(Action::Upsert, &owner, "TXT", 5),
        ];
        let tight = Limits {
            elements: 2,
            chars: 1000,
        };
        let out = batches(changes, tight);
        let types: Vec<_> = out.iter().map(|b| b[0].record.rtype.as_str()).collect();
        assert_eq!(types, ["TXT", "CNAME"], "ownership is written first");
    }

    #[tokio::test]
    async fn one_bad_change_fails_alone_and_the_rest_is_applied() {
        let changes: Vec<_> = (0..8)
            .map(|i| change(Action::Upsert, &format!("t{i}."), "CNAME", 5))
            .collect();
        let mut applied = Vec::new();
        let (requests, rejected) = send_bisecting::<(), _, _>(changes, |batch| {
            let bad = batch.iter().any(|c| c.record.name == "t5.");
            if !bad {
                applied.extend(batch.iter().map(|c| c.record.name.clone()));
            }
            async move {
                if bad {
                    Err(SendError::Rejected("outside the zone".into()))
                } else {
                    Ok(())
                }
            }
        })
        .await
        .expect("no failure");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].change.record.name, "t5.");
        assert_eq!(rejected[0].message, "outside the zone");
        assert_eq!(applied, ["t0.", "t1.", "t2.", "t3.", "t4.", "t6.", "t7."]);
        // 8 -> 4 + 4 -> (4 bad) 2 + 2 -> (2 bad) 1 + 1: 1 + 2 + 2 + 2 requests.
        assert_eq!(requests, 7);
    }

    #[tokio::test]
    async fn a_failure_that_is_not_a_rejection_stops_the_send() {
        let changes = vec![change(Action::Upsert, "a.", "CNAME", 1)];
        let out = send_bisecting(changes, |_| async { Err(SendError::Failed("down")) }).await;
        assert_eq!(out, Err("down"));
    }
}
