//! Where snapshot objects live: a small trait the reconciler and the `snapshot` command
//! own, with S3 (aws-sdk-s3) as its implementation. The endpoint and credentials come from
//! the environment like Route53's (`AWS_ENDPOINT_URL` points it at moto locally); with an
//! endpoint override, path-style addressing is used (moto serves buckets under its path).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

/// One object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectLocation {
    /// AWS region of the bucket.
    pub aws_region: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

impl std::fmt::Display for ObjectLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// An object found by a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Last modified (RFC 3339), if S3 said.
    pub last_modified: Option<String>,
}

/// Why the store failed. Messages name bucket and key, never credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The bucket does not exist.
    #[error(
        "S3 bucket {bucket} does not exist in {aws_region}; create it, or set spec.database.snapshots.bucket of the Region to an existing bucket"
    )]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// Its region as configured.
        aws_region: String,
    },
    /// The object does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// Any other failed request.
    #[error("S3 {operation} of {at} failed: {reason}")]
    Request {
        /// `PutObject`, ...
        operation: &'static str,
        /// `s3://bucket/key`.
        at: String,
        /// What S3 (or the network) said.
        reason: String,
    },
    /// A write was asked of a read-only store (`plan`).
    #[error("{0} refused: this provider is read-only")]
    ReadOnly(&'static str),
}

/// Snapshot objects.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Writes `body` at `at` (replacing an object of that key).
    async fn put(&self, at: &ObjectLocation, body: Vec<u8>) -> Result<(), StoreError>;
    /// The object's size, or `None` when it does not exist.
    async fn size(&self, at: &ObjectLocation) -> Result<Option<u64>, StoreError>;
    /// The object's bytes.
    async fn get(&self, at: &ObjectLocation) -> Result<Vec<u8>, StoreError>;
    /// Objects under `prefix` in `bucket`, by key.
    async fn list(
        &self,
        aws_region: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<Listed>, StoreError>;
}

/// A [`SnapshotStore`] that reads and never writes, for `plan`.
pub struct ReadOnlyStore(pub std::sync::Arc<dyn SnapshotStore>);

#[async_trait]
impl SnapshotStore for ReadOnlyStore {
    async fn put(&self, _: &ObjectLocation, _: Vec<u8>) -> Result<(), StoreError> {
        Err(StoreError::ReadOnly("PutObject"))
    }
    async fn size(&self, at: &ObjectLocation) -> Result<Option<u64>, StoreError> {
        self.0.size(at).await
    }
    async fn get(&self, at: &ObjectLocation) -> Result<Vec<u8>, StoreError> {
        self.0.get(at).await
    }
    async fn list(&self, r: &str, b: &str, p: &str) -> Result<Vec<Listed>, StoreError> {
        self.0.list(r, b, p).await
    }
}

/// S3 through aws-sdk-s3, one client per AWS region.
pub struct S3Store {
    shared: aws_config::SdkConfig,
    path_style: bool,
    clients: Mutex<HashMap<String, aws_sdk_s3::Client>>,
}

impl S3Store {
    /// A store from the environment's AWS settings (credentials, `AWS_ENDPOINT_URL`).
    pub async fn from_env() -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            // A hung S3 must not hold a tenant's cleanup forever: the attempt fails and
            // the cleanup is retried with backoff, its data kept.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .operation_attempt_timeout(std::time::Duration::from_secs(300))
                    .build(),
            )
            .load()
            .await;
        // A custom endpoint (moto, MinIO) serves buckets under its path, not as subdomains.
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Self {
            shared,
            path_style,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The S3 client for buckets in `aws_region` (built once per region).
    pub fn client(&self, aws_region: &str) -> aws_sdk_s3::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(aws_region.to_owned())
            .or_insert_with(|| {
                let conf = aws_sdk_s3::config::Builder::from(&self.shared)
                    .region(aws_sdk_s3::config::Region::new(aws_region.to_owned()))
                    .force_path_style(self.path_style)
                    .build();
                aws_sdk_s3::Client::from_conf(conf)
            })
            .clone()
    }
}

/// The error as a [`StoreError`]: a missing bucket by its code, else S3's code and
/// message (or the transport's error).
fn failed<E>(
    operation: &'static str,
    at: &ObjectLocation,
    e: &aws_sdk_s3::error::SdkError<E>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if e.code() == Some("NoSuchBucket") {
        return StoreError::NoSuchBucket {
            bucket: at.bucket.clone(),
            aws_region: at.aws_region.clone(),
        };
    }
    let reason = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    };
    StoreError::Request {
        operation,
        at: at.to_string(),
        reason,
    }
}

#[async_trait]
impl SnapshotStore for S3Store {
    async fn put(&self, at: &ObjectLocation, body: Vec<u8>) -> Result<(), StoreError> {
        self.client(&at.aws_region)
            .put_object()
            .bucket(&at.bucket)
            .key(&at.key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| failed("PutObject", at, &e))?;
        Ok(())
    }

    async fn size(&self, at: &ObjectLocation) -> Result<Option<u64>, StoreError> {
        match self
            .client(&at.aws_region)
            .head_object()
            .bucket(&at.bucket)
            .key(&at.key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(failed("HeadObject", at, &e)),
        }
    }

    async fn get(&self, at: &ObjectLocation) -> Result<Vec<u8>, StoreError> {
        let out = match self
            .client(&at.aws_region)
            .get_object()
            .bucket(&at.bucket)
            .key(&at.key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(StoreError::NotFound(at.to_string()));
            }
            Err(e) => return Err(failed("GetObject", at, &e)),
        };
        let body = out.body.collect().await.map_err(|e| StoreError::Request {
            operation: "GetObject",
            at: at.to_string(),
            reason: e.to_string(),
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn list(
        &self,
        aws_region: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<Listed>, StoreError> {
        let at = ObjectLocation {
            aws_region: aws_region.to_owned(),
            bucket: bucket.to_owned(),
            key: prefix.to_owned(),
        };
        let mut pages = self
            .client(aws_region)
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("ListObjectsV2", &at, &e))?;
            for o in page.contents() {
                found.push(Listed {
                    key: o.key().unwrap_or_default().to_owned(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    last_modified: o.last_modified().map(|t| t.to_string()),
                });
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}
