//! The [`Dns`] provider: changes from every reconcile are queued per zone, and one worker
//! per zone sends them in rounds. A round gathers while changes keep arriving, up to a
//! maximum delay, and is sent at once when it fills a request ([`super::round`]); what
//! arrives while a round is being sent waits for the next. So many tenants converging at
//! once share a handful of ChangeResourceRecordSets requests instead of one each. Each
//! caller gets back only the rejections of its own changes.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::round::{self, RoundPolicy};
use super::{Inner, Route53Settings};
use crate::controller::providers::Dns;
use crate::dns::batch::{self, Limits};
use crate::dns::{
    Applied, Change, DnsError, HealthCheckOutcome, HealthCheckSpec, RecordSet, Rejected, Zone,
    ZoneRef,
};
use crate::metrics::Metrics;

/// Changes of one caller waiting for a round.
struct Pending {
    changes: Vec<Change>,
    reply: oneshot::Sender<Result<Applied, DnsError>>,
}

/// Route53 through the AWS SDK, with changes coalesced across callers.
pub struct Route53 {
    inner: Arc<Inner>,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Pending>>>,
}

impl Route53 {
    /// A provider from the environment's AWS settings (credentials, `AWS_ENDPOINT_URL`).
    pub async fn from_env(metrics: Arc<Metrics>, settings: Route53Settings) -> Self {
        Self {
            inner: Arc::new(Inner::from_env(metrics, settings).await),
            queues: Mutex::new(HashMap::new()),
        }
    }

    async fn queue(&self, zone_id: &str) -> mpsc::UnboundedSender<Pending> {
        let mut queues = self.queues.lock().await;
        if let Some(tx) = queues.get(zone_id).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(work(self.inner.clone(), zone_id.to_owned(), rx));
        queues.insert(zone_id.to_owned(), tx.clone());
        tx
    }
}

/// What each caller of a round gets: the round's request count and its own rejections.
fn split(round: &[Vec<Change>], applied: &Applied) -> Vec<Applied> {
    round
        .iter()
        .map(|changes| Applied {
            requests: applied.requests,
            rejected: applied
                .rejected
                .iter()
                .filter(|r| changes.contains(&r.change))
                .cloned()
                .collect::<Vec<Rejected>>(),
        })
        .collect()
}

/// The round's changes, each once: two callers asking for the same change (a reconcile
/// retried while its first attempt is still in the round) must not make Route53 refuse
/// the batch as holding a duplicate. Both get its outcome.
fn distinct(round: &[Vec<Change>]) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for c in round.iter().flatten() {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// What a caller's changes cost of one request: `ResourceRecord` elements, characters.
fn cost(pending: &Pending) -> (usize, usize) {
    pending
        .changes
        .iter()
        .map(batch::cost)
        .fold((0, 0), |(e, c), (e2, c2)| (e + e2, c + c2))
}

/// The worker of one zone: sends rounds until every sender is gone.
async fn work(inner: Arc<Inner>, zone_id: String, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let policy = RoundPolicy {
        quiet: inner.settings.batch_window,
        max_delay: inner.settings.batch_max_delay,
        limits: Limits::default(),
    };
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let gathered = round::gather(&mut rx, first, &policy, cost).await;
        carried = gathered.carried;
        let (changes, replies): (Vec<Vec<Change>>, Vec<_>) = gathered
            .items
            .into_iter()
            .map(|p| (p.changes, p.reply))
            .unzip();
        let queued: usize = changes.iter().map(Vec::len).sum();
        let all = distinct(&changes);
        // Queued counts what waits for a round; these are being sent now.
        inner.metrics.route53_queued(-(queued as i64));
        tracing::debug!(zone = %zone_id, callers = changes.len(), changes = all.len(), closed = ?gathered.closed, "Route53 round");
        let result = inner.apply(&zone_id, all).await;
        match result {
            Ok(applied) => {
                for (reply, mine) in replies.into_iter().zip(split(&changes, &applied)) {
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[async_trait]
impl Dns for Route53 {
    async fn zone(&self, zone: &ZoneRef) -> Result<Zone, DnsError> {
        self.inner.zone(zone).await
    }

    async fn records(&self, zone_id: &str) -> Result<Arc<Vec<RecordSet>>, DnsError> {
        self.inner.records(zone_id).await
    }

    async fn change(&self, zone_id: &str, changes: Vec<Change>) -> Result<Applied, DnsError> {
        if changes.is_empty() {
            return Ok(Applied::default());
        }
        let (reply, answer) = oneshot::channel();
        let lost = || DnsError::Api {
            operation: "ChangeResourceRecordSets",
            message: "the zone's change queue stopped".into(),
        };
        let count = changes.len() as i64;
        self.queue(zone_id)
            .await
            .send(Pending { changes, reply })
            .map_err(|_| lost())?;
        self.inner.metrics.route53_queued(count);
        answer.await.map_err(|_| lost())?
    }

    async fn ensure_health_check(
        &self,
        spec: &HealthCheckSpec,
    ) -> Result<HealthCheckOutcome, DnsError> {
        self.inner.ensure_health_check(spec).await
    }

    async fn delete_health_check(
        &self,
        caller_reference: &str,
    ) -> Result<Option<String>, DnsError> {
        self.inner.delete_health_check(caller_reference).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Action;

    fn change(name: &str) -> Change {
        Change {
            action: Action::Upsert,
            record: RecordSet {
                name: name.into(),
                rtype: "CNAME".into(),
                set_identifier: None,
                region: None,
                ttl: Some(60),
                values: vec!["x.".into()],
                health_check_id: None,
            },
            for_object: name.into(),
        }
    }

    #[test]
    fn a_change_asked_twice_in_a_round_is_sent_once() {
        let round = vec![vec![change("a."), change("b.")], vec![change("a.")]];
        assert_eq!(distinct(&round), vec![change("a."), change("b.")]);
    }

    #[test]
    fn each_caller_of_a_round_gets_only_its_own_rejections() {
        let round = vec![vec![change("a."), change("b.")], vec![change("c.")]];
        let applied = Applied {
            requests: 3,
            rejected: vec![Rejected {
                change: change("c."),
                message: "outside the zone".into(),
            }],
        };
        let out = split(&round, &applied);
        assert!(out[0].rejected.is_empty());
        assert_eq!(out[1].rejected.len(), 1);
        assert_eq!(out[1].rejected[0].message, "outside the zone");
        assert!(out.iter().all(|a| a.requests == 3));
    }
}
