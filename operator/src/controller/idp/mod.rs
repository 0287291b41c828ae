//! The IdPConnection controller: dereference (the Tenant, the provider's discovery document
//! and JWKS) -> plan (pure validation: issuer, algorithms, usable keys) -> status (pure).
//! Validation repeats every resync, so key rotation at the provider is followed. Publishing
//! SSO settings to the catalog and the SCIM token come next (issue 7).

pub mod deref;
pub mod plan;
pub mod status;

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use phoenix_crds::IdPConnection;

use super::context::Context;
use super::error::{Error, PlanError};
use super::skeleton::Reconciled;
use super::world::World;
use crate::conditions;

/// Finalizer guarding what the connection builds outside Kubernetes.
pub const FINALIZER: &str = "phoenixguardian.io/idp-cleanup";

async fn converge(idp: &IdPConnection, ctx: &Context) -> Result<Action, Error> {
    let world = World::of(ctx);
    let now = conditions::now();
    let outcome = async {
        let refs = deref::dereference(idp, &world).await?;
        let v = plan::validate(&refs.issuer_url, &refs.discovery, &refs.jwks)
            .map_err(PlanError::from)?;
        Ok::<_, Error>(status::validated(idp, &v, refs.tenant_exists, &now))
    }
    .await;
    match outcome {
        Ok((status, events)) => {
            ctx.publish(idp, &status, &events)
                .await
                .map_err(Error::Status)?;
            Ok(Action::requeue(ctx.settings.resync))
        }
        Err(e) => {
            let (status, events) = status::failed(idp, &e, &now);
            if let Err(w) = ctx.publish(idp, &status, &events).await {
                tracing::warn!(error = %w, "could not write status");
            }
            Err(e)
        }
    }
}

impl Reconciled for IdPConnection {
    const CONTROLLER: &'static str = "idp";
    const FINALIZER: &'static str = FINALIZER;

    fn span(&self) -> tracing::Span {
        tracing::info_span!("reconcile", kind = "IdPConnection", name = %self.name_any(), tenant = %self.spec.tenant_ref)
    }

    async fn apply(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        converge(&obj, &ctx).await
    }

    async fn cleanup(_obj: Arc<Self>, _ctx: Arc<Context>) -> Result<Action, Error> {
        // Nothing is built outside Kubernetes yet (catalog rows and the SCIM Secret come
        // with the SSO publication).
        Ok(Action::await_change())
    }
}
