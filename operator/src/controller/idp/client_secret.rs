//! The OIDC client secrets the data plane needs for its code exchange, mirrored per Region:
//! Secret `phoenix-dataplane-oidc-<region>` in the operator's namespace holds one key per
//! IdPConnection of a tenant placed in that Region (key = IdPConnection name, value = its
//! client secret), so that a chart can mount it as the data plane's
//! `OIDC_CLIENT_SECRETS_DIR` — the data plane never reads Secrets across namespaces and the
//! catalog never holds a secret.
//!
//! The Secret exists while it holds a key (the chart mounts it as optional). Each
//! IdPConnection writes its own key (read, merge, write when different) and drops the keys
//! of connections that no longer exist or are being deleted, so a key whose cleanup never
//! ran (a finalizer removed by hand) goes at the next write. The read-modify-write runs
//! under one lock in the process, so concurrent reconciles of two connections of one
//! Region (only the leader reconciles) cannot undo each other's change.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use phoenix_crds::IdPConnection;

use crate::controller::error::ApplyError;
use crate::controller::world::World;

/// The mirrored Secret of `region`.
pub fn secret_name(region: &str) -> String {
    format!("phoenix-dataplane-oidc-{region}")
}

/// What happens to a Region's Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// It is as it must be.
    None,
    /// It must hold this data.
    Put(BTreeMap<String, String>),
    /// Its last key went: it is deleted (nothing of a deleted connection lingers).
    Delete,
}

/// The change to the Secret `current` (`None`: it does not exist) once `idp`'s key holds
/// `value` (`None`: no key, a public client) and only connections in `live` keep theirs.
pub fn change(
    current: Option<&BTreeMap<String, String>>,
    idp: &str,
    value: Option<&str>,
    live: &BTreeSet<String>,
) -> Change {
    let before = current.cloned().unwrap_or_default();
    let mut data: BTreeMap<String, String> = before
        .iter()
        .filter(|(k, _)| live.contains(*k) && k.as_str() != idp)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(v) = value {
        data.insert(idp.to_owned(), v.to_owned());
    }
    match (data == before, data.is_empty()) {
        (true, _) => Change::None,
        (false, true) => Change::Delete,
        (false, false) => Change::Put(data),
    }
}

// The names of the connections that exist and are not being deleted.
fn live(world: &World<'_>) -> BTreeSet<String> {
    world
        .idps
        .iter()
        .filter(|i| i.metadata.deletion_timestamp.is_none())
        .map(|i| i.name_any())
        .collect()
}

// Serialises the read-modify-write of the mirrored Secrets within the process.
static WRITING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn apply(world: &World<'_>, region: &str, change: Change) -> Result<(), ApplyError> {
    let secrets = &world.providers.secrets;
    let ns = &world.settings.namespace;
    let name = secret_name(region);
    match change {
        Change::None => {}
        Change::Put(data) => {
            secrets.put(ns, &name, labels(region), None, data).await?;
            tracing::info!(secret = %name, "mirrored the OIDC client secret for the data plane");
        }
        Change::Delete => secrets.delete(ns, &name).await?,
    }
    Ok(())
}

fn labels(region: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "phoenix-operator".to_owned(),
        ),
        ("phoenixguardian.io/region".to_owned(), region.to_owned()),
    ])
}

/// Puts `idp`'s client secret (from `spec.oidc.clientSecretRef`) into `region`'s Secret.
/// An unreadable client secret is logged and leaves the key as it is: bearer tokens need
/// no secret, and the data plane's login then fails with a message saying so.
pub async fn mirror(
    idp: &IdPConnection,
    world: &World<'_>,
    region: &str,
) -> Result<(), ApplyError> {
    let secrets = &world.providers.secrets;
    let value = match idp
        .spec
        .oidc
        .as_ref()
        .and_then(|o| o.client_secret_ref.as_ref())
    {
        Some(reference) => match secrets.get(reference).await {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(%error, "the client secret cannot be read; the data plane's login uses the last mirrored one, if any");
                return Ok(());
            }
        },
        None => None,
    };
    let _writing = WRITING.lock().await;
    let current = secrets
        .read(&world.settings.namespace, &secret_name(region))
        .await?;
    let change = change(
        current.as_ref(),
        &idp.name_any(),
        value.as_deref(),
        &live(world),
    );
    apply(world, region, change).await
}

/// Removes `idp`'s key from the Secret of `region`, if there.
pub async fn remove(
    idp: &IdPConnection,
    world: &World<'_>,
    region: &str,
) -> Result<(), ApplyError> {
    let _writing = WRITING.lock().await;
    let current = world
        .providers
        .secrets
        .read(&world.settings.namespace, &secret_name(region))
        .await?;
    let change = change(current.as_ref(), &idp.name_any(), None, &live(world));
    apply(world, region, change).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_connections_own_key_changes_only_when_it_differs() {
        let all = live(&["mercy", "other"]);
        let current = map(&[("other", "x")]);
        let added = map(&[("mercy", "s1"), ("other", "x")]);
        assert_eq!(
            change(Some(&current), "mercy", Some("s1"), &all),
            Change::Put(added.clone())
        );
        assert_eq!(
            change(Some(&added), "mercy", Some("s1"), &all),
            Change::None
        );
        assert_eq!(
            change(Some(&added), "mercy", Some("s2"), &all),
            Change::Put(map(&[("mercy", "s2"), ("other", "x")])),
            "rotated"
        );
        assert_eq!(
            change(Some(&added), "mercy", None, &all),
            Change::Put(current.clone()),
            "a public client has no key"
        );
        assert_eq!(change(Some(&current), "mercy", None, &all), Change::None);
    }

    #[test]
    fn keys_of_connections_gone_are_dropped_and_an_empty_secret_deleted() {
        let current = map(&[("gone", "x"), ("mercy", "s")]);
        assert_eq!(
            change(Some(&current), "mercy", Some("s"), &live(&["mercy"])),
            Change::Put(map(&[("mercy", "s")]))
        );
        // Being deleted: not live; its own key goes too.
        assert_eq!(
            change(Some(&map(&[("mercy", "s")])), "mercy", None, &live(&[])),
            Change::Delete
        );
        assert_eq!(change(None, "mercy", None, &live(&["mercy"])), Change::None);
        assert_eq!(
            change(None, "mercy", Some("s"), &live(&["mercy"])),
            Change::Put(map(&[("mercy", "s")]))
        );
    }

    #[test]
    fn one_secret_per_region() {
        assert_eq!(secret_name("us-east-1"), "phoenix-dataplane-oidc-us-east-1");
    }
}
