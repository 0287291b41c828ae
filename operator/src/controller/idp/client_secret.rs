//! The OIDC client secrets the data plane needs for its code exchange, mirrored per Region:
//! Secret `phoenix-dataplane-oidc-<region>` in the operator's namespace holds one key per
//! IdPConnection of a tenant placed in that Region (key = IdPConnection name, value = its
//! client secret), so that a chart can mount it as the data plane's
//! `OIDC_CLIENT_SECRETS_DIR` — the data plane never reads Secrets across namespaces and the
//! catalog never holds a secret.
//!
//! Each IdPConnection writes only its own key (read, merge, write when different). Two
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

/// The Secret's data once `idp`'s key holds `value` (`None`: removed, a public client);
/// `None` when `current` already is that.
pub fn merged(
    current: Option<&BTreeMap<String, String>>,
    idp: &str,
    value: Option<&str>,
) -> Option<BTreeMap<String, String>> {
    let mut data = current.cloned().unwrap_or_default();
    let changed = match value {
        Some(v) => data.insert(idp.to_owned(), v.to_owned()).as_deref() != Some(v),
        None => data.remove(idp).is_some(),
    };
    // A Secret that does not exist yet is created even when empty, for the chart to mount.
    (changed || current.is_none()).then_some(data)
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
    let ns = &world.settings.namespace;
    let name = secret_name(region);
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
    let current = secrets.read(ns, &name).await?;
    if let Some(data) = merged(current.as_ref(), &idp.name_any(), value.as_deref()) {
        secrets.put(ns, &name, labels(region), None, data).await?;
        tracing::info!(secret = %name, "mirrored the OIDC client secret for the data plane");
    }
    Ok(())
}

/// Removes `idp`'s key from the Secret of `region`, if there.
pub async fn remove(
    idp: &IdPConnection,
    world: &World<'_>,
    region: &str,
) -> Result<(), ApplyError> {
    let secrets = &world.providers.secrets;
    let ns = &world.settings.namespace;
    let name = secret_name(region);
    if let Some(current) = secrets.read(ns, &name).await?
        && let Some(data) = merged(Some(&current), &idp.name_any(), None)
    {
        secrets.put(ns, &name, labels(region), None, data).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_connections_own_key_changes_and_only_when_it_differs() {
        let current = BTreeMap::from([("other".to_owned(), "x".to_owned())]);
        let added = merged(Some(&current), "mercy", Some("s1")).expect("added");
        assert_eq!(added.len(), 2);
        assert_eq!(added["other"], "x");
        assert_eq!(merged(Some(&added), "mercy", Some("s1")), None, "unchanged");
        assert_eq!(
            merged(Some(&added), "mercy", Some("s2")).expect("rotated")["mercy"],
            "s2"
        );
        assert_eq!(
            merged(Some(&added), "mercy", None).expect("removed"),
            current,
            "a public client has no key"
        );
        assert_eq!(merged(Some(&current), "mercy", None), None);
        assert_eq!(
            merged(None, "mercy", None),
            Some(BTreeMap::new()),
            "the Secret exists for the chart to mount"
        );
    }

    #[test]
    fn one_secret_per_region() {
        assert_eq!(secret_name("us-east-1"), "phoenix-dataplane-oidc-us-east-1");
    }
}
