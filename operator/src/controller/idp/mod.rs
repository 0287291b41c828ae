//! The IdPConnection controller: dereference (the Tenant, the provider's discovery document
//! and JWKS) -> plan (pure validation: issuer, algorithms, usable keys) -> status (pure).
//! Validation repeats every resync, so key rotation at the provider is followed.
//! Its SSO settings are published to the tenant's Region catalog (`catalog.sso`), its SCIM
//! token generated into a Secret with only its hash in the catalog ([`scim`]); both are
//! removed on deletion. Its OIDC client secret is mirrored into its Region's
//! `phoenix-dataplane-oidc-<region>` Secret for the data plane's login ([`client_secret`]).

pub mod client_secret;
pub mod deref;
pub mod plan;
pub mod scim;
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
        let (db, refs) = deref::dereference(idp, &world).await?;
        let v = plan::validate(&refs.issuer_url, &refs.discovery, &refs.jwks)
            .map_err(PlanError::from)?;
        let publish = plan::publish(idp, &v, &refs);
        if let (
            Some(db),
            plan::Publish::Row {
                tenant_id,
                row,
                changes,
                ..
            },
        ) = (&db, &publish)
            && changes.as_ref().is_none_or(|c| !c.is_empty())
        {
            db.upsert_sso(*tenant_id, row)
                .await
                .map_err(super::error::ApplyError::from)?;
        }
        let (mut status, mut events) =
            status::validated(idp, &v, refs.tenant_exists, &publish, &now);
        if let (Some(_), plan::Publish::Row { region, .. }) = (&db, &publish) {
            client_secret::mirror(idp, &world, region).await?;
        }
        if let (Some(db), plan::Publish::Row { tenant_id, .. }) = (&db, &publish) {
            let existing = refs.scim_token.as_ref().map(|t| t.0.as_str());
            let scim_plan = scim::plan(idp, existing.is_some());
            events.extend(scim::apply(idp, &world, db, *tenant_id, scim_plan, existing).await?);
            (status.scim_token_secret, status.scim_token_rotation) =
                scim::status_fields(idp, scim_plan, &ctx.settings.namespace);
        }
        Ok::<_, Error>((status, events))
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

/// Removes the connection's SSO row from every Primary Region's catalog: the tenant may be
/// gone, so every Region is asked, and one that cannot be reached blocks deletion (and says
/// so) rather than leave a login path behind.
async fn remove(idp: &IdPConnection, ctx: &Context) -> Result<Action, Error> {
    let world = World::of(ctx);
    let uid = idp.uid().unwrap_or_default();
    let mut removed = Vec::new();
    // Needs no database: every Region, whatever its state.
    for region in &world.regions {
        client_secret::remove(idp, &world, &region.name_any()).await?;
    }
    for region in &world.regions {
        if region.spec.role != phoenix_crds::RegionRole::Primary {
            continue;
        }
        let db = super::region::deref::writer(&world, region).await?;
        // A database not created or not migrated yet holds no SSO row.
        let deref_err = super::error::DerefError::from;
        if db.probe().await.map_err(deref_err)? != Some(false)
            || db.schema_version().await.map_err(deref_err)? < 3
        {
            continue;
        }
        let n = db
            .delete_sso(&uid)
            .await
            .map_err(super::error::ApplyError::from)?;
        db.delete_scim(&uid)
            .await
            .map_err(super::error::ApplyError::from)?;
        if n > 0 {
            removed.push(region.name_any());
        }
    }
    ctx.providers
        .secrets
        .delete(&ctx.settings.namespace, &scim::secret_name(idp))
        .await
        .map_err(super::error::ApplyError::from)?;
    if !removed.is_empty() {
        let note = format!(
            "SSO settings of tenant {} removed from region(s) {}",
            idp.spec.tenant_ref,
            removed.join(", ")
        );
        ctx.publish_events(
            idp,
            &[super::context::EventSpec::normal(
                crate::reason::Reason::SSORemoved,
                "Delete",
                note,
            )],
        )
        .await;
    }
    Ok(Action::await_change())
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

    async fn cleanup(obj: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        remove(&obj, &ctx).await
    }
}
