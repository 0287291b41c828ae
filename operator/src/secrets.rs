//! Secrets behind a small trait, so that an external store (Vault, OpenBao) can be added
//! without touching the reconcilers. The one implementation reads Kubernetes Secrets.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use phoenix_crds::SecretKeyRef;

/// Errors reading or writing secrets. Messages name the secret, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Secret does not exist.
    #[error("secret {namespace}/{name} not found; create it or fix the reference")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The Secret lacks the key.
    #[error("secret {namespace}/{name} has no key {key}; add it or fix the reference")]
    MissingKey {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
    /// The value is not UTF-8.
    #[error("secret {namespace}/{name} key {key} is not valid UTF-8")]
    NotUtf8 {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
    /// A write was asked of a read-only store (`plan`).
    #[error("writing secret {namespace}/{name} refused: this store is read-only")]
    ReadOnly {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The API server failed.
    #[error("{action} secret {namespace}/{name}: {source}")]
    Api {
        /// What was asked: `reading`, `creating`, `writing` or `deleting`.
        action: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// Where secrets live.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The value of one key.
    async fn get(&self, reference: &SecretKeyRef) -> Result<String, SecretError>;

    /// The data of the secret `namespace/name`, or `None` when it does not exist.
    async fn read(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, SecretError>;

    /// Creates the secret `namespace/name` with `data`; when another writer created it
    /// first, returns theirs. The bool says whether this call created it.
    async fn create(
        &self,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        data: BTreeMap<String, String>,
    ) -> Result<(BTreeMap<String, String>, bool), SecretError>;

    /// Creates or replaces the secret `namespace/name` with `data`, owned by `owner` (its
    /// garbage collection follows the owner's).
    async fn put(
        &self,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
        data: BTreeMap<String, String>,
    ) -> Result<(), SecretError>;

    /// Deletes the secret `namespace/name`; a missing one is not an error.
    async fn delete(&self, namespace: &str, name: &str) -> Result<(), SecretError>;
}

/// Secrets in Kubernetes.
#[derive(Clone)]
pub struct KubeSecrets {
    client: Client,
}

impl KubeSecrets {
    /// Secrets read with `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// An `Opaque` Secret holding `data`.
fn opaque(
    namespace: &str,
    name: &str,
    labels: BTreeMap<String, String>,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    data: &BTreeMap<String, String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

fn decode(secret: &Secret) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        if let Ok(s) = String::from_utf8(v.0.clone()) {
            out.insert(k.clone(), s);
        }
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

#[async_trait]
impl SecretStore for KubeSecrets {
    async fn get(&self, r: &SecretKeyRef) -> Result<String, SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &r.namespace);
        let secret = api
            .get_opt(&r.name)
            .await
            .map_err(|source| SecretError::Api {
                action: "reading",
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                source,
            })?
            .ok_or_else(|| SecretError::NotFound {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            })?;
        let raw = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .ok_or_else(|| SecretError::MissingKey {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
            })?;
        String::from_utf8(raw.0.clone())
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|_| SecretError::NotUtf8 {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
            })
    }

    async fn read(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await.map_err(|source| SecretError::Api {
            action: "reading",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })?;
        Ok(secret.as_ref().map(decode))
    }

    async fn create(
        &self,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        data: BTreeMap<String, String>,
    ) -> Result<(BTreeMap<String, String>, bool), SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let err = |source| SecretError::Api {
            action: "creating",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        };
        let secret = opaque(namespace, name, labels, None, &data);
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok((data, true)),
            // Another replica created it first: use theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api.get(name).await.map_err(err)?;
                Ok((decode(&existing), false))
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn put(
        &self,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
        data: BTreeMap<String, String>,
    ) -> Result<(), SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = opaque(namespace, name, labels, owner, &data);
        api.patch(
            name,
            &kube::api::PatchParams::apply("phoenix-operator").force(),
            &kube::api::Patch::Apply(&secret),
        )
        .await
        .map(|_| ())
        .map_err(|source| SecretError::Api {
            action: "writing",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<(), SecretError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.delete(name, &kube::api::DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(SecretError::Api {
                action: "deleting",
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            }),
        }
    }
}

fn refused(namespace: &str, name: &str) -> SecretError {
    SecretError::ReadOnly {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// A store that reads through another and refuses every write: what `plan` uses.
pub struct ReadOnlySecrets<S>(pub S);

#[async_trait]
impl<S: SecretStore> SecretStore for ReadOnlySecrets<S> {
    async fn get(&self, reference: &SecretKeyRef) -> Result<String, SecretError> {
        self.0.get(reference).await
    }

    async fn read(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, SecretError> {
        self.0.read(namespace, name).await
    }

    async fn create(
        &self,
        namespace: &str,
        name: &str,
        _labels: BTreeMap<String, String>,
        _data: BTreeMap<String, String>,
    ) -> Result<(BTreeMap<String, String>, bool), SecretError> {
        Err(refused(namespace, name))
    }

    async fn put(
        &self,
        namespace: &str,
        name: &str,
        _labels: BTreeMap<String, String>,
        _owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
        _data: BTreeMap<String, String>,
    ) -> Result<(), SecretError> {
        Err(refused(namespace, name))
    }

    async fn delete(&self, namespace: &str, name: &str) -> Result<(), SecretError> {
        Err(refused(namespace, name))
    }
}

/// A random alphanumeric password.
pub fn generate_password(len: usize) -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
