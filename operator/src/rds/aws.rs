//! The real [`Rds`] provider: aws-sdk-rds, one client per AWS region, against
//! `AWS_ENDPOINT_URL` when set (moto in the local stack). The SDK retries throttling
//! itself (standard retry mode); a request that still fails becomes an [`RdsError`]
//! with RDS's code and message, never the request (it may hold the master password).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::types::{DbInstance, Tag};

use super::{DbSnapshot, Instance, InstanceSpec, RdsError, ReplicaSpec};
use crate::controller::providers::Rds;

/// The engine of every instance the operator creates.
const ENGINE: &str = "postgres";

/// How long an `available` instance's description is reused: every tenant reconcile of
/// an RDS region looks its writer up, and RDS's API is rate limited per account.
const DESCRIBE_CACHE: Duration = Duration::from_secs(15);

/// RDS through aws-sdk-rds.
pub struct AwsRds {
    shared: aws_config::SdkConfig,
    clients: Mutex<HashMap<String, aws_sdk_rds::Client>>,
    // (AWS region, identifier) -> an available instance and when it was read. Only
    // available instances are kept, so a creation is seen as soon as RDS reports it;
    // the operator's own changes drop the entry.
    described: Mutex<HashMap<(String, String), (Instant, Instance)>>,
}

impl AwsRds {
    /// A provider from the environment's AWS settings (credentials, `AWS_ENDPOINT_URL`).
    pub async fn from_env() -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .operation_attempt_timeout(std::time::Duration::from_secs(60))
                    .build(),
            )
            .load()
            .await;
        Self {
            shared,
            clients: Mutex::new(HashMap::new()),
            described: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, aws_region: &str, id: &str) -> Option<Instance> {
        let cache = self.described.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&(aws_region.to_owned(), id.to_owned()))
            .filter(|(at, _)| at.elapsed() < DESCRIBE_CACHE)
            .map(|(_, i)| i.clone())
    }

    fn remember(&self, aws_region: &str, instance: Option<&Instance>, id: &str) {
        let mut cache = self.described.lock().unwrap_or_else(|p| p.into_inner());
        let key = (aws_region.to_owned(), id.to_owned());
        match instance.filter(|i| i.available()) {
            Some(i) => {
                cache.insert(key, (Instant::now(), i.clone()));
            }
            None => {
                cache.remove(&key);
            }
        }
    }

    /// The client for instances in `aws_region` (built once per region).
    pub fn client(&self, aws_region: &str) -> aws_sdk_rds::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(aws_region.to_owned())
            .or_insert_with(|| {
                let conf = aws_sdk_rds::config::Builder::from(&self.shared)
                    .region(aws_sdk_rds::config::Region::new(aws_region.to_owned()))
                    .build();
                aws_sdk_rds::Client::from_conf(conf)
            })
            .clone()
    }
}

/// RDS's code and message, else the transport's error with its causes.
fn reason<E>(e: &aws_sdk_rds::error::SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_rds::error::DisplayErrorContext(e).to_string(),
    }
}

fn failed<E>(
    operation: &'static str,
    identifier: &str,
    e: &aws_sdk_rds::error::SdkError<E>,
) -> RdsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    RdsError::Request {
        operation,
        identifier: identifier.to_owned(),
        reason: reason(e),
    }
}

fn tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_map(list: &[Tag]) -> BTreeMap<String, String> {
    list.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn instance(db: &DbInstance) -> Instance {
    Instance {
        identifier: db.db_instance_identifier().unwrap_or_default().to_owned(),
        arn: db.db_instance_arn().map(str::to_owned),
        status: db.db_instance_status().unwrap_or_default().to_owned(),
        endpoint: db
            .endpoint()
            .and_then(|e| Some((e.address()?.to_owned(), u16::try_from(e.port()?).ok()?))),
        tags: tag_map(db.tag_list()),
        replica_source: db
            .read_replica_source_db_instance_identifier()
            .map(str::to_owned),
        master_username: db.master_username().map(str::to_owned),
    }
}

fn is(code: Option<&str>, want: &str) -> bool {
    // RDS answers `DBInstanceNotFound`; some clients see the `...Fault` shape name.
    code.is_some_and(|c| c == want || c.strip_suffix("Fault") == Some(want))
}

impl AwsRds {
    /// DescribeDBInstances and ListTagsForResource, uncached.
    async fn describe_now(&self, aws_region: &str, id: &str) -> Result<Option<Instance>, RdsError> {
        let client = self.client(aws_region);
        let out = match client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is(e.code(), "DBInstanceNotFound") => return Ok(None),
            Err(e) => return Err(failed("DescribeDBInstances", id, &e)),
        };
        let Some(found) = out
            .db_instances()
            .iter()
            .find(|d| d.db_instance_identifier() == Some(id))
        else {
            return Ok(None);
        };
        let mut found = instance(found);
        // DescribeDBInstances may leave tags out; ListTagsForResource is authoritative.
        if let Some(arn) = &found.arn {
            let listed = client
                .list_tags_for_resource()
                .resource_name(arn)
                .send()
                .await
                .map_err(|e| failed("ListTagsForResource", id, &e))?;
            found.tags = tag_map(listed.tag_list());
        }
        Ok(Some(found))
    }
}

#[async_trait]
impl Rds for AwsRds {
    async fn describe(&self, aws_region: &str, id: &str) -> Result<Option<Instance>, RdsError> {
        if let Some(found) = self.cached(aws_region, id) {
            return Ok(Some(found));
        }
        let found = self.describe_now(aws_region, id).await?;
        self.remember(aws_region, found.as_ref(), id);
        Ok(found)
    }

    async fn create(
        &self,
        aws_region: &str,
        spec: &InstanceSpec,
        master_password: &str,
    ) -> Result<Instance, RdsError> {
        let out = self
            .client(aws_region)
            .create_db_instance()
            .db_instance_identifier(&spec.identifier)
            .db_instance_class(&spec.instance_class)
            .engine(ENGINE)
            .engine_version(&spec.engine_version)
            .allocated_storage(spec.allocated_storage_gib)
            .multi_az(spec.multi_az)
            .master_username(&spec.master_username)
            .master_user_password(master_password)
            .storage_encrypted(true)
            .publicly_accessible(false)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(tags(&spec.tags)))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.db_instance().map(instance).unwrap_or_else(|| Instance {
                identifier: spec.identifier.clone(),
                status: "creating".to_owned(),
                tags: spec.tags.clone(),
                ..Instance::default()
            })),
            Err(e) if is(e.code(), "DBInstanceAlreadyExists") => {
                Err(RdsError::AlreadyExists(spec.identifier.clone()))
            }
            Err(e) => Err(failed("CreateDBInstance", &spec.identifier, &e)),
        }
    }

    async fn create_read_replica(
        &self,
        aws_region: &str,
        spec: &ReplicaSpec,
    ) -> Result<Instance, RdsError> {
        let out = self
            .client(aws_region)
            .create_db_instance_read_replica()
            .db_instance_identifier(&spec.identifier)
            .source_db_instance_identifier(&spec.source)
            .db_instance_class(&spec.instance_class)
            .publicly_accessible(false)
            .set_tags(Some(tags(&spec.tags)))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.db_instance().map(instance).unwrap_or_else(|| Instance {
                identifier: spec.identifier.clone(),
                status: "creating".to_owned(),
                tags: spec.tags.clone(),
                replica_source: Some(spec.source.clone()),
                ..Instance::default()
            })),
            Err(e) if is(e.code(), "DBInstanceAlreadyExists") => {
                Err(RdsError::AlreadyExists(spec.identifier.clone()))
            }
            Err(e) => Err(failed("CreateDBInstanceReadReplica", &spec.identifier, &e)),
        }
    }

    async fn promote(&self, aws_region: &str, id: &str) -> Result<Instance, RdsError> {
        self.remember(aws_region, None, id);
        let out = self
            .client(aws_region)
            .promote_read_replica()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| failed("PromoteReadReplica", id, &e))?;
        Ok(out.db_instance().map(instance).unwrap_or_else(|| Instance {
            identifier: id.to_owned(),
            status: "modifying".to_owned(),
            ..Instance::default()
        }))
    }

    async fn delete(&self, aws_region: &str, id: &str, snapshot: &str) -> Result<(), RdsError> {
        self.remember(aws_region, None, id);
        self.client(aws_region)
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(false)
            .final_db_snapshot_identifier(snapshot)
            .send()
            .await
            .map_err(|e| failed("DeleteDBInstance", id, &e))?;
        Ok(())
    }

    async fn delete_without_snapshot(&self, aws_region: &str, id: &str) -> Result<(), RdsError> {
        self.remember(aws_region, None, id);
        self.client(aws_region)
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| failed("DeleteDBInstance", id, &e))?;
        Ok(())
    }

    async fn snapshots(&self, aws_region: &str, id: &str) -> Result<Vec<DbSnapshot>, RdsError> {
        let mut pages = self
            .client(aws_region)
            .describe_db_snapshots()
            .db_instance_identifier(id)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("DescribeDBSnapshots", id, &e))?;
            found.extend(page.db_snapshots().iter().map(|s| DbSnapshot {
                identifier: s.db_snapshot_identifier().unwrap_or_default().to_owned(),
                instance: s.db_instance_identifier().unwrap_or_default().to_owned(),
                status: s.status().unwrap_or_default().to_owned(),
            }));
        }
        Ok(found)
    }
}
