//! Between the SDK's types and the operator's [`RecordSet`].

use aws_sdk_route53::types::{
    ChangeAction, HostedZone, ResourceRecord, ResourceRecordSet, ResourceRecordSetRegion, RrType,
};

use crate::dns::{Action, Change, RecordSet, Zone, fqdn};

/// A hosted zone, its id without the `/hostedzone/` prefix.
pub fn zone(z: &HostedZone) -> Zone {
    Zone {
        id: z.id().trim_start_matches("/hostedzone/").to_owned(),
        name: fqdn(z.name()),
    }
}

/// A record set as listed.
pub fn from_sdk(r: &ResourceRecordSet) -> RecordSet {
    RecordSet {
        name: fqdn(r.name()),
        rtype: r.r#type().as_str().to_owned(),
        set_identifier: r.set_identifier().map(str::to_owned),
        region: r.region().map(|g| g.as_str().to_owned()),
        ttl: r.ttl(),
        values: r
            .resource_records()
            .iter()
            .map(|v| v.value().to_owned())
            .collect(),
        health_check_id: r.health_check_id().map(str::to_owned),
    }
}

/// A change to send; an error names what could not be built.
pub fn to_sdk(c: &Change) -> Result<aws_sdk_route53::types::Change, String> {
    let r = &c.record;
    let records = r
        .values
        .iter()
        .map(|v| ResourceRecord::builder().value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", r.label()))?;
    let set = ResourceRecordSet::builder()
        .name(&r.name)
        .r#type(RrType::from(r.rtype.as_str()))
        .set_set_identifier(r.set_identifier.clone())
        .set_region(r.region.as_deref().map(ResourceRecordSetRegion::from))
        .set_ttl(r.ttl)
        .set_resource_records(Some(records))
        .set_health_check_id(r.health_check_id.clone())
        .build()
        .map_err(|e| format!("{}: {e}", r.label()))?;
    let action = match c.action {
        Action::Delete => ChangeAction::Delete,
        Action::Upsert => ChangeAction::Upsert,
    };
    aws_sdk_route53::types::Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(|e| format!("{}: {e}", r.label()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_set_survives_the_round_trip() {
        let record = RecordSet {
            name: "m.phoenixguardian.test.".into(),
            rtype: "CNAME".into(),
            set_identifier: Some("eu-west-1".into()),
            region: Some("eu-west-1".into()),
            ttl: Some(60),
            values: vec!["api.eu-west-1.phoenixguardian.test.".into()],
            health_check_id: Some("hc".into()),
        };
        let change = Change {
            action: Action::Upsert,
            record: record.clone(),
            for_object: "m".into(),
        };
        let sdk = to_sdk(&change).expect("builds");
        let back = from_sdk(sdk.resource_record_set().expect("set"));
        assert_eq!(back, record);
    }
}
