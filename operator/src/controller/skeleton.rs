//! The one reconcile and error policy every controller runs: a span, metrics, the
//! finalizer (apply or cleanup), and backoff with jitter on failure.

use std::future::Future;
use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::context::Context;
use super::error::Error;

/// A kind the operator reconciles.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Metric label of the controller (`region`, `tenant`).
    const CONTROLLER: &'static str;
    /// Finalizer guarding what the object built outside Kubernetes.
    const FINALIZER: &'static str;

    /// The span of one reconcile, with the object's log fields.
    fn span(&self) -> tracing::Span;

    /// Converges the world towards the object: deref -> plan -> apply -> status.
    fn apply(
        obj: Arc<Self>,
        ctx: Arc<Context>,
    ) -> impl Future<Output = Result<Action, Error>> + Send;

    /// Tears down what the object built; called once it is being deleted.
    fn cleanup(
        obj: Arc<Self>,
        ctx: Arc<Context>,
    ) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// Reconciles one object of kind `K`.
pub async fn reconcile<K: Reconciled>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = obj.span();
    async move {
        let timer = ctx.metrics.start(K::CONTROLLER);
        let api: Api<K> = Api::all(ctx.client.clone());
        let result = finalizer(&api, K::FINALIZER, obj.clone(), |event| async {
            match event {
                Finalizer::Apply(o) => K::apply(o, ctx.clone()).await,
                Finalizer::Cleanup(o) => cleanup_once(o, ctx.clone()).await,
            }
        })
        .await;
        let result = match result {
            // Removing the finalizer is how a deletion ends: an object already gone is done.
            Err(e) if object_gone(&e) => {
                tracing::debug!("the object is gone; nothing left to do");
                Ok(Action::await_change())
            }
            other => other.map_err(Error::from),
        };
        timer.finish(result.as_ref().err().map(|e| e.reason().as_str()));
        if result.is_ok() {
            ctx.backoff.succeeded(&obj.uid().unwrap_or_default());
        }
        result
    }
    .instrument(span)
    .await
}

/// Cleans `obj` up unless this process already did for its UID and generation (a stale
/// copy reconciled after its finalizer was removed, see [`super::released`]); a cleanup
/// that succeeded is remembered. `Ok` always means the cleanup is complete: the finalizer
/// is removed next.
async fn cleanup_once<K: Reconciled>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let uid = obj.uid().unwrap_or_default();
    let generation = obj.meta().generation;
    if ctx.released.contains(&uid, generation) {
        tracing::debug!("cleanup already succeeded; only the finalizer is left to remove");
        return Ok(Action::await_change());
    }
    let result = K::cleanup(obj, ctx.clone()).await;
    if result.is_ok() {
        ctx.released.insert(&uid, generation);
    }
    result
}

/// Whether `e` is the finalizer removal finding the object already deleted (a stale copy
/// whose finalizer an earlier reconcile removed).
pub fn object_gone(e: &kube::runtime::finalizer::Error<Error>) -> bool {
    matches!(
        e,
        kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(status))
            if status.is_not_found()
    )
}

/// Backs off a failed object with jitter, saying why in the log.
pub fn error_policy<K: Reconciled>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&obj.uid().unwrap_or_default());
    obj.span().in_scope(|| {
        tracing::warn!(
            kind = %K::kind(&()),
            name = %obj.name_any(),
            reason = %error.reason(),
            error = %error,
            retry_in = ?delay,
            "reconcile failed"
        );
    });
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::runtime::finalizer::Error as F;

    #[test]
    fn a_finalizer_removal_finding_the_object_gone_is_done() {
        let gone = F::<Error>::RemoveFinalizer(kube::Error::Api(
            Status::failure("tenants \"t\" not found", "NotFound")
                .with_code(404)
                .boxed(),
        ));
        assert!(object_gone(&gone));
    }

    #[test]
    fn other_finalizer_failures_are_errors() {
        let conflict = F::<Error>::RemoveFinalizer(kube::Error::Api(
            Status::failure("the object has been modified", "Conflict")
                .with_code(409)
                .boxed(),
        ));
        assert!(!object_gone(&conflict));
        // Adding a finalizer to an object that is gone is not the end of a deletion.
        let adding = F::<Error>::AddFinalizer(kube::Error::Api(
            Status::failure("not found", "NotFound")
                .with_code(404)
                .boxed(),
        ));
        assert!(!object_gone(&adding));
        let cleanup = F::CleanupFailed(Error::Finalizer("cleanup failed".into()));
        assert!(!object_gone(&cleanup));
    }
}
