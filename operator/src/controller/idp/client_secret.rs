//! The OIDC client secrets the data plane needs for its code exchange, mirrored per Region:
//! Secret `phoenix-dataplane-oidc-<region>` in the operator's namespace holds one key per
//! IdPConnection of a tenant placed in that Region (key = IdPConnection name, value = its
//! client secret), so that a chart can mount it as the data plane's
//! `OIDC_CLIENT_SECRETS_DIR` — the data plane never reads Secrets across namespaces and the
//! catalog never holds a secret.
//!
//! The Secret exists while it holds a key (the chart mounts it as optional). Each
//! IdPConnection writes only its own key (read, merge, write when different). Two
//! connections of one Region reconciled at the same instant could overwrite each other's
//! key; the next resync writes it again (level-triggered).

use std::collections::BTreeMap;

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
/// `value` (`None`: no key, a public client).
pub fn change(
    current: Option<&BTreeMap<String, String>>,
    idp: &str,
    value: Option<&str>,
) -> Change {
    let mut data = current.cloned().unwrap_or_default();
    let changed = match value {
        Some(v) => data.insert(idp.to_owned(), v.to_owned()).as_deref() != Some(v),
        None => data.remove(idp).is_some(),
    };
    match (changed, data.is_empty()) {
        (false, _) => Change::None,
        (true, true) => Change::Delete,
        (true, false) => Change::Put(data),
    }
}

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
    let current = secrets
        .read(&world.settings.namespace, &secret_name(region))
        .await?;
    let change = change(current.as_ref(), &idp.name_any(), value.as_deref());
    apply(world, region, change).await
}

/// Removes `idp`'s key from the Secret of `region`, if there.
pub async fn remove(
    idp: &IdPConnection,
    world: &World<'_>,
    region: &str,
) -> Result<(), ApplyError> {
    let current = world
        .providers
        .secrets
        .read(&world.settings.namespace, &secret_name(region))
        .await?;
    let change = change(current.as_ref(), &idp.name_any(), None);
    apply(world, region, change).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_connections_own_key_changes_and_only_when_it_differs() {
        let current = BTreeMap::from([("other".to_owned(), "x".to_owned())]);
        let Change::Put(added) = change(Some(&current), "mercy", Some("s1")) else {
            panic!("added");
        };
        assert_eq!(added.len(), 2);
        assert_eq!(added["other"], "x");
        assert_eq!(change(Some(&added), "mercy", Some("s1")), Change::None);
        assert_eq!(
            change(Some(&added), "mercy", Some("s2")),
            Change::Put(BTreeMap::from([
                ("mercy".to_owned(), "s2".to_owned()),
                ("other".to_owned(), "x".to_owned())
            ])),
            "rotated"
        );
        assert_eq!(
            change(Some(&added), "mercy", None),
            Change::Put(current.clone()),
            "a public client has no key"
        );
        assert_eq!(change(Some(&current), "mercy", None), Change::None);
    }

    #[test]
    fn the_secret_exists_only_while_it_holds_a_key() {
        assert_eq!(change(None, "mercy", None), Change::None);
        let one = BTreeMap::from([("mercy".to_owned(), "s".to_owned())]);
        assert_eq!(change(None, "mercy", Some("s")), Change::Put(one.clone()));
        assert_eq!(change(Some(&one), "mercy", None), Change::Delete);
    }

    #[test]
    fn one_secret_per_region() {
        assert_eq!(secret_name("us-east-1"), "phoenix-dataplane-oidc-us-east-1");
    }
}
