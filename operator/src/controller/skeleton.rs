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
                Finalizer::Cleanup(o) => K::cleanup(o, ctx.clone()).await,
            }
        })
        .await
        .map_err(Error::from);
        timer.finish(result.as_ref().err().map(|e| e.reason().as_str()));
        if result.is_ok() {
            ctx.backoff.succeeded(&obj.uid().unwrap_or_default());
        }
        result
    }
    .instrument(span)
    .await
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
