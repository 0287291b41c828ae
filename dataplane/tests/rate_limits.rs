//! Per-tenant rate limits against a real PostgreSQL: the data plane reads each tenant's
//! `requests_per_second` from the catalog (through its follower), answers a noisy tenant
//! 429 with `Retry-After` and an `OperationOutcome` while a quiet tenant in the same run
//! gets none, and applies a changed limit without restart.
//!
//! Needs the stack: `e2e/stack up && source .stack/env`.

mod support;

use std::time::Duration;

use futures::future::join_all;
use phoenix_dataplane::Dataplane;
use support::{TestDb, eventually, http, start_dataplane};

const NOISY: &str = "noisy.example.test";
const QUIET: &str = "quiet.example.test";
const EVENTUALLY: Duration = Duration::from_secs(30);

/// One GET with `host`: status, `Retry-After`, body.
async fn call(
    client: &reqwest::Client,
    dataplane: &Dataplane,
    host: &str,
    path: &str,
) -> (u16, Option<String>, serde_json::Value) {
    let response = client
        .get(format!("http://{}{path}", dataplane.local_addr()))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .expect("request reaches the data plane");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, retry_after, body)
}

/// `n` concurrent GETs of `path` at `host`; their statuses, and one 429 answer if any.
async fn burst(
    client: &reqwest::Client,
    dataplane: &Dataplane,
    host: &str,
    path: &str,
    n: usize,
) -> (Vec<u16>, Option<(Option<String>, serde_json::Value)>) {
    let answers = join_all((0..n).map(|_| call(client, dataplane, host, path))).await;
    let throttled = answers
        .iter()
        .find(|(status, ..)| *status == 429)
        .map(|(_, retry, body)| (retry.clone(), body.clone()));
    (answers.into_iter().map(|(s, ..)| s).collect(), throttled)
}

async fn set_rate(db: &TestDb, host: &str, rate: i32) {
    // As the operator writes it; the catalog's trigger notifies the follower.
    db.execute(&format!(
        "UPDATE catalog.tenants SET requests_per_second = {rate} WHERE hostname = '{host}'"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_tenant_gets_429s_a_quiet_one_none_and_a_raised_limit_applies_live() {
    let db = TestDb::create().await;
    db.insert_tenant("noisy", NOISY).await;
    db.insert_tenant("quiet", QUIET).await;
    set_rate(&db, NOISY, 5).await;
    set_rate(&db, QUIET, 5).await;
    let dataplane = start_dataplane(&db).await;
    let client = http();
    for host in [NOISY, QUIET] {
        eventually(&format!("{host} is served"), EVENTUALLY, || async {
            match call(&client, &dataplane, host, "/fhir/metadata").await {
                (200, ..) => Ok(()),
                (status, _, body) => Err(format!("{status} {body}")),
            }
        })
        .await;
    }
    // Let both buckets fill again after the readiness probing above.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // The noisy tenant sends 40 requests at once, the quiet one 4 over the same second,
    // below its rate of 5.
    let noisy = burst(&client, &dataplane, NOISY, "/fhir/metadata", 40);
    let quiet = async {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(call(&client, &dataplane, QUIET, "/fhir/metadata").await.0);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        statuses
    };
    let ((noisy, throttled), quiet) = tokio::join!(noisy, quiet);
    let refused = noisy.iter().filter(|s| **s == 429).count();
    // A full bucket admits its burst of 5, plus one per 200 ms the burst lasts.
    assert!(
        (20..=35).contains(&refused),
        "a burst of 40 at 5 per second admits 5 and a few more: {noisy:?}"
    );
    assert!(noisy.iter().all(|s| *s == 200 || *s == 429), "{noisy:?}");
    assert_eq!(quiet, [200; 4], "the quiet tenant was throttled");

    let (retry_after, outcome) = throttled.expect("a 429 answer");
    assert_eq!(retry_after.as_deref(), Some("1"), "Retry-After");
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "throttled", "{outcome}");
    let text = outcome["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("tenant noisy") && text.contains("5 requests per second"),
        "{text}"
    );

    // Checked before authentication: an unauthenticated flood is refused the same way,
    // and the 401s it gets below the limit keep their challenge.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (statuses, _) = burst(&client, &dataplane, NOISY, "/fhir/Patient/1", 20).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&401), "{statuses:?}");
    let challenge = client
        .get(format!("http://{}/fhir/Patient/1", dataplane.local_addr()))
        .header(reqwest::header::HOST, QUIET)
        .send()
        .await
        .expect("request");
    assert_eq!(challenge.status(), 401);
    assert!(
        challenge
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("Bearer "))),
        "a FHIR 401 carries its WWW-Authenticate challenge: {:?}",
        challenge.headers()
    );

    // The metric names the tenant refused, and only it.
    let metrics = client
        .get(format!("http://{}/metrics", dataplane.admin_addr()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("dataplane_rate_limited_requests_total{")
                && l.contains("tenant=\"noisy\"")
        })
        .unwrap_or_else(|| panic!("no rate limit series for noisy:\n{metrics}"));
    let counted: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a value");
    assert!(counted >= refused as f64, "{line}");
    assert!(
        !metrics.lines().any(|l| {
            l.starts_with("dataplane_rate_limited_requests_total{")
                && l.contains("tenant=\"quiet\"")
        }),
        "{metrics}"
    );
    // The request counts carry the tenant too: the noisy one's 429s, the quiet one's 200s.
    for (tenant, status) in [("noisy", 429), ("quiet", 200)] {
        assert!(
            metrics.lines().any(|l| {
                l.starts_with("http_requests_total{")
                    && l.contains(&format!("status=\"{status}\",tenant=\"{tenant}\""))
            }),
            "no {status} counted for {tenant}:\n{metrics}"
        );
    }

    // Raised on the Tenant (here: its catalog row): applies without a restart.
    set_rate(&db, NOISY, 1000).await;
    eventually(
        "a burst of 40 admitted after the limit was raised",
        EVENTUALLY,
        || async {
            let (statuses, _) = burst(&client, &dataplane, NOISY, "/fhir/metadata", 40).await;
            if statuses.iter().all(|s| *s == 200) {
                Ok(())
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Err(format!("{statuses:?}"))
            }
        },
    )
    .await;
}
