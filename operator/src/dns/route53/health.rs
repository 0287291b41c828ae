//! Route53 health checks of Region ingresses: found by their deterministic caller
//! reference before anything is created (moto, unlike Route53, happily creates a second
//! check for a repeated reference), tagged with owner and region, updated in place when
//! the ingress moves. A health check the Region's status already names is verified with
//! one GetHealthCheck, so a converged Region costs one read per pass.

use aws_sdk_route53::types::{
    HealthCheck, HealthCheckConfig, HealthCheckType, Tag, TagResourceType,
};

use super::{Inner, flatten};
use crate::dns::batch::SendError;
use crate::dns::{DnsError, HealthCheckOutcome, HealthCheckSpec};

/// Tag naming the operator instance that owns a health check.
pub const OWNER_TAG: &str = "phoenixguardian.io/owner";
/// Tag naming the Region a health check probes.
pub const REGION_TAG: &str = "phoenixguardian.io/region";

async fn find(r53: &Inner, caller_reference: &str) -> Result<Option<HealthCheck>, DnsError> {
    let mut marker: Option<String> = None;
    loop {
        let page = r53
            .call("ListHealthChecks", || {
                r53.client
                    .list_health_checks()
                    .set_marker(marker.clone())
                    .send()
            })
            .await
            .map_err(flatten)?;
        if let Some(hc) = page
            .health_checks()
            .iter()
            .find(|h| h.caller_reference() == caller_reference)
        {
            return Ok(Some(hc.clone()));
        }
        match (page.is_truncated(), page.next_marker()) {
            (true, Some(next)) => marker = Some(next.to_owned()),
            _ => return Ok(None),
        }
    }
}

/// The health check `id`, if it exists and carries `caller_reference` (else the status
/// that named it is stale).
async fn get(
    r53: &Inner,
    id: &str,
    caller_reference: &str,
) -> Result<Option<HealthCheck>, DnsError> {
    let out = r53
        .call("GetHealthCheck", || {
            r53.client.get_health_check().health_check_id(id).send()
        })
        .await;
    match out {
        Ok(out) => Ok(out
            .health_check()
            .filter(|h| h.caller_reference() == caller_reference)
            .cloned()),
        Err(SendError::Failed(DnsError::Api { message, .. }))
            if message.starts_with("NoSuchHealthCheck") =>
        {
            Ok(None)
        }
        Err(e) => Err(flatten(e)),
    }
}

fn config(spec: &HealthCheckSpec) -> Result<HealthCheckConfig, DnsError> {
    HealthCheckConfig::builder()
        .r#type(HealthCheckType::Https)
        .fully_qualified_domain_name(&spec.fqdn)
        .port(443)
        .resource_path(&spec.path)
        .request_interval(30)
        .failure_threshold(3)
        .enable_sni(true)
        .build()
        .map_err(|e| DnsError::Api {
            operation: "CreateHealthCheck",
            message: e.to_string(),
        })
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

async fn ensure_tags(r53: &Inner, id: &str, spec: &HealthCheckSpec) -> Result<(), DnsError> {
    let wanted = [(OWNER_TAG, &spec.owner), (REGION_TAG, &spec.region)];
    let out = r53
        .call("ListTagsForResource", || {
            r53.client
                .list_tags_for_resource()
                .resource_type(TagResourceType::Healthcheck)
                .resource_id(id)
                .send()
        })
        .await
        .map_err(flatten)?;
    let have = out.resource_tag_set().map(|s| s.tags()).unwrap_or_default();
    let missing = wanted.iter().any(|(k, v)| {
        !have
            .iter()
            .any(|t| t.key() == Some(*k) && t.value() == Some(v.as_str()))
    });
    if missing {
        r53.call("ChangeTagsForResource", || {
            r53.client
                .change_tags_for_resource()
                .resource_type(TagResourceType::Healthcheck)
                .resource_id(id)
                .set_add_tags(Some(wanted.iter().map(|(k, v)| tag(k, v)).collect()))
                .send()
        })
        .await
        .map_err(flatten)?;
    }
    Ok(())
}

/// Makes the health check of `spec` exist as specified.
pub async fn ensure(r53: &Inner, spec: &HealthCheckSpec) -> Result<HealthCheckOutcome, DnsError> {
    // The id in status, verified with one read; else (none, gone, or not ours) the list.
    let known = match &spec.known_id {
        Some(id) => get(r53, id, &spec.caller_reference).await?,
        None => None,
    };
    let tagged = known.is_some();
    let found = match known {
        Some(hc) => Some(hc),
        None => find(r53, &spec.caller_reference).await?,
    };
    let outcome = match found {
        Some(hc) => {
            let current = hc.health_check_config();
            let same = current.is_some_and(|c| {
                c.fully_qualified_domain_name() == Some(spec.fqdn.as_str())
                    && c.resource_path() == Some(spec.path.as_str())
            });
            if same {
                HealthCheckOutcome::Unchanged(hc.id().to_owned())
            } else {
                r53.call("UpdateHealthCheck", || {
                    r53.client
                        .update_health_check()
                        .health_check_id(hc.id())
                        .fully_qualified_domain_name(&spec.fqdn)
                        .resource_path(&spec.path)
                        .send()
                })
                .await
                .map_err(flatten)?;
                HealthCheckOutcome::Updated(hc.id().to_owned())
            }
        }
        None => {
            let config = config(spec)?;
            let out = r53
                .call("CreateHealthCheck", || {
                    r53.client
                        .create_health_check()
                        .caller_reference(&spec.caller_reference)
                        .health_check_config(config.clone())
                        .send()
                })
                .await
                .map_err(flatten)?;
            let id = out
                .health_check()
                .map(|h| h.id().to_owned())
                .ok_or_else(|| DnsError::Api {
                    operation: "CreateHealthCheck",
                    message: "the answer holds no health check".into(),
                })?;
            HealthCheckOutcome::Created(id)
        }
    };
    // Tags were checked before the id went into status; a check found otherwise (new,
    // or recorded by a run that crashed before its status write) gets them checked.
    if !tagged {
        ensure_tags(r53, outcome.id(), spec).await?;
    }
    Ok(outcome)
}

/// Deletes the health check with `caller_reference`; its id, if there was one.
pub async fn delete(r53: &Inner, caller_reference: &str) -> Result<Option<String>, DnsError> {
    let Some(hc) = find(r53, caller_reference).await? else {
        return Ok(None);
    };
    r53.call("DeleteHealthCheck", || {
        r53.client
            .delete_health_check()
            .health_check_id(hc.id())
            .send()
    })
    .await
    .map_err(flatten)?;
    Ok(Some(hc.id().to_owned()))
}
