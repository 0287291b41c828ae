use super::*;

/// A Region with DNS (`dns`), its zone and health check resolved, and a failover record.
fn region(name: &str, juris: &[&str], dns: bool, failover: serde_json::Value) -> Arc<Region> {
    let mut spec = serde_json::json!({
        "awsRegion": format!("aws-{name}"), "dataResidency": juris,
        "database": {"writer": {"connectionSecretRef": {"namespace": "n", "name": "s", "key": "k"}}}
    });
    if dns {
        spec["ingress"] = serde_json::json!({"hostname": format!("api.{name}.example.test")});
        spec["dns"] = serde_json::json!({"zoneName": "example.test"});
    }
    let mut r = Region::new(name, serde_json::from_value(spec).expect("spec"));
    r.status = Some(
        serde_json::from_value(serde_json::json!({
            "dns": {"hostedZoneId": "Z1", "zoneName": "example.test.", "healthCheckId": format!("hc-{name}")},
            "failover": failover,
        }))
        .expect("status"),
    );
    Arc::new(r)
}

fn failed_over(promoted_dns: bool) -> Vec<Arc<Region>> {
    vec![
        region(
            "old",
            &["US", "CA"],
            true,
            serde_json::json!({"supersededBy": "new"}),
        ),
        region(
            "new",
            &["US"],
            promoted_dns,
            serde_json::json!({"promotedFrom": "old", "promotedAt": "2026-11-24T10:00:00Z"}),
        ),
        region("other", &["EU"], true, serde_json::json!({})),
    ]
}

#[test]
fn a_superseded_regions_record_points_at_the_promoted_regions_ingress() {
    let targets = targets_of(&failed_over(true));
    let old = targets.iter().find(|t| t.name == "old").expect("old kept");
    assert_eq!(old.aws_region, "aws-old", "the latency region stays");
    assert_eq!(old.ingress, "api.new.example.test");
    assert_eq!(old.health_check_id.as_deref(), Some("hc-new"));
    assert_eq!(
        old.residency,
        ["US"],
        "only what the serving Region may hold"
    );
    let new = targets.iter().find(|t| t.name == "new").expect("new");
    assert_eq!(new.ingress, "api.new.example.test");
    let other = targets.iter().find(|t| t.name == "other").expect("other");
    assert_eq!(other.ingress, "api.other.example.test");
}

#[test]
fn without_dns_on_the_promoted_region_the_superseded_regions_records_go() {
    let names: Vec<String> = targets_of(&failed_over(false))
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["other"]);
}

#[test]
fn a_superseded_region_no_promotion_names_serves_nobody() {
    let regions = vec![region(
        "old",
        &["US"],
        true,
        serde_json::json!({"supersededBy": "gone"}),
    )];
    assert!(targets_of(&regions).is_empty());
}

#[test]
fn a_ca_tenant_gets_no_record_at_a_us_only_promoted_region() {
    let targets = targets_of(&failed_over(true));
    let ca = records::desired("t", "t.example.test", &["CA".to_owned()], "op", &targets);
    assert_eq!(ca, Err(NoRecords::NoDnsRegion));
    let us = records::desired("t", "t.example.test", &["US".to_owned()], "op", &targets)
        .expect("records");
    let latency: Vec<(Option<&str>, &str)> = us
        .records
        .iter()
        .filter(|r| r.rtype == "CNAME")
        .map(|r| (r.set_identifier.as_deref(), r.values[0].as_str()))
        .collect();
    assert_eq!(
        latency,
        [
            (Some("new"), "api.new.example.test."),
            (Some("old"), "api.new.example.test."),
        ]
    );
}
