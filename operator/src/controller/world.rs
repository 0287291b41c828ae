//! What a reconcile (or a `plan`) reads besides its own object: the providers, settings,
//! and the Regions and Tenants as the operator sees them. The controllers build it from
//! their caches; `plan` builds it from the live cluster with the manifests laid over it.

use std::sync::Arc;

use kube::ResourceExt;
use phoenix_crds::{IdPConnection, Region, Tenant};

use super::context::{Context, Settings};
use super::providers::Providers;

/// The world a dereference looks things up in.
pub struct World<'a> {
    /// Databases and secrets.
    pub providers: &'a Providers,
    /// Operator settings.
    pub settings: &'a Settings,
    /// Every Region.
    pub regions: Vec<Arc<Region>>,
    /// Every Tenant.
    pub tenants: Vec<Arc<Tenant>>,
    /// Every IdPConnection.
    pub idps: Vec<Arc<IdPConnection>>,
}

impl<'a> World<'a> {
    /// The world of a running operator, from its caches.
    pub fn of(ctx: &'a Context) -> Self {
        Self {
            providers: &ctx.providers,
            settings: &ctx.settings,
            regions: ctx.regions.state(),
            tenants: ctx.tenants.state(),
            idps: ctx.idps.state(),
        }
    }

    /// The Region named `name`.
    pub fn region(&self, name: &str) -> Option<Arc<Region>> {
        self.regions.iter().find(|r| r.name_any() == name).cloned()
    }
}
