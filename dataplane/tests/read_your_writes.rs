//! The read/write split against the stack's real streaming replica: reads on the reader
//! pool, writes on the writer, and read-your-writes through `X-Consistency-Token` — a
//! token at or past the write's commit record, a read carrying it served by the replica
//! once it replayed it, and by the writer while replay is paused
//! (`pg_wal_replay_pause()`), the reader under the same RLS as the writer.
//!
//! The replica is shared by every test of the run. The tests here that need it to be
//! current take [`REPLICA`], so the one that pauses replay never runs beside them; the
//! pause lasts a few requests and is resumed by a drop guard even when the test fails.
//! Other test binaries run before or after this one, never beside it.
//!
//! Needs the stack: `e2e/stack up && source .stack/env`.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use phoenix_dataplane::db::tenant_tx::{Access, TxError};
use serde_json::Value;
use support::fhir::*;
use support::{ReplayPaused, eventually};
use tower::ServiceExt;

/// Held by every test that needs the replica to replay.
static REPLICA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Long enough that a replica on loopback always replays in time, even on a busy machine.
const PATIENT_WAIT: Duration = Duration::from_secs(10);
/// The default wait: what the paused replica is given before the writer serves.
const SHORT_WAIT: Duration = Duration::from_millis(200);

/// Tenants A and B, reads on the replica; returns once the replica has the database.
async fn split(wait: Duration) -> Setup {
    let setup = setup_with(|db| db.split_database(2, wait)).await;
    setup._db.replica_caught_up().await;
    setup
}

fn token(headers: &HeaderMap) -> String {
    headers
        .get("x-consistency-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a write answers X-Consistency-Token: {headers:?}"))
        .to_owned()
}

fn pool(headers: &HeaderMap) -> &str {
    headers
        .get("x-read-pool")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Creates a patient as A's physician; its id and the write's token.
async fn create_with_token(s: &Setup, family: &str) -> (String, String) {
    let (status, headers, created) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(patient(family, "1970-01-01", family))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    (id, token(&headers))
}

async fn read(s: &Setup, id: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let path = format!("/fhir/Patient/{id}");
    let mut call = Call::new(Method::GET, &path, A, PHYSICIAN);
    if let Some(token) = token {
        call = call.header("x-consistency-token", token);
    }
    call.send(&s.app).await
}

/// The value of a series in the admin listener's `/metrics` (0 when it was never counted).
async fn metric(s: &Setup, series: &str) -> f64 {
    let response = s
        .admin
        .clone()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_write_answers_a_token_at_or_past_its_commit_record() {
    // The stack's primary runs with synchronous_commit = off: the commit may not be flushed
    // when COMMIT returns, so a token read from the flush position could fall short.
    let s = setup().await;
    let admin = s._db.admin();
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .expect("pg_walinspect (contrib of the server package)");
    let before: String = admin
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("position")
        .get(0);

    let (id, created) = create_with_token(&s, "Commit").await;
    let xid: String = admin
        .query_one(
            "SELECT xmin::text FROM clinical.patients WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .expect("the row")
        .get(0);
    // Flush everything so far (a commit of our own that wrote WAL, with synchronous_commit
    // on), then find the create's commit record in the WAL.
    // (One statement per call: a multi-statement string is one transaction, committed
    // after the RESET.)
    for sql in [
        "CREATE TABLE IF NOT EXISTS public.flush_marker (x int)",
        "SET synchronous_commit = on",
        "INSERT INTO public.flush_marker VALUES (1)",
        "RESET synchronous_commit",
    ] {
        admin.batch_execute(sql).await.expect("flush");
    }
    let row = admin
        .query_one(
            "SELECT end_lsn::text, $3::text::pg_lsn >= end_lsn \
             FROM pg_get_wal_records_info($1::text::pg_lsn, pg_current_wal_flush_lsn()) \
             WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' \
               AND xid::text = $2",
            &[&before, &xid, &created],
        )
        .await
        .expect("the create's commit record");
    let (end, covered): (String, bool) = (row.get(0), row.get(1));
    assert!(
        covered,
        "token {created} is before the commit record's end {end}"
    );

    // Updates and deletes answer one too, each later than the one before; reads and
    // refused writes none.
    let path = format!("/fhir/Patient/{id}");
    let (status, headers, current) = read(&s, &id, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("x-consistency-token").is_none());
    assert_eq!(pool(&headers), "writer", "no reader configured");
    let (status, headers, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(current.clone())
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let updated = token(&headers);
    let lsn = |t: &str| {
        t.parse::<phoenix_dataplane::db::consistency::Lsn>()
            .expect("a WAL position")
    };
    assert!(lsn(&updated) > lsn(&created), "{updated} after {created}");
    let (status, headers, _) = Call::new(Method::PUT, &path, A, PHYSICIAN)
        .body(current)
        .header("if-match", "W/\"1\"")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert!(headers.get("x-consistency-token").is_none());
    let (status, headers, _) = Call::new(Method::DELETE, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(lsn(&token(&headers)) > lsn(&updated));
}

#[tokio::test]
async fn a_malformed_token_is_a_400_operation_outcome() {
    let s = setup().await;
    let (id, _) = create_with_token(&s, "Malformed").await;
    let read_path = format!("/fhir/Patient/{id}");
    for bad in [
        "yesterday",
        "16",
        "1/",
        "/1",
        "G/0",
        "123456789/0",
        "0/0/0",
        "-1/0",
    ] {
        for (method, path) in [
            (Method::GET, read_path.as_str()),
            (Method::GET, "/fhir/Patient?family=Malformed"),
            (Method::DELETE, read_path.as_str()),
        ] {
            let (status, _, outcome) = Call::new(method.clone(), path, A, PHYSICIAN)
                .header("x-consistency-token", bad)
                .send(&s.app)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path} {bad}");
            assert_eq!(outcome["resourceType"], "OperationOutcome");
            assert_eq!(outcome["issue"][0]["code"], "value");
            let text = outcome["issue"][0]["diagnostics"].as_str().unwrap_or("");
            assert!(text.contains("X-Consistency-Token"), "{outcome}");
        }
    }
    // The 400 came before the handler: the patient is still there.
    let (status, _, _) = read(&s, &id, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_read_with_the_token_of_a_write_sees_it_on_the_replica() {
    let _replica = REPLICA.lock().await;
    let s = split(PATIENT_WAIT).await;
    let (id, token) = create_with_token(&s, "Replayed").await;

    let (status, headers, read_back) = read(&s, &id, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{read_back}");
    assert_eq!(pool(&headers), "reader");
    assert_eq!(read_back["name"][0]["family"], "Replayed");

    let (status, headers, bundle) =
        Call::new(Method::GET, "/fhir/Patient?family=Replayed", A, PHYSICIAN)
            .header("x-consistency-token", &token)
            .send(&s.app)
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pool(&headers), "reader");
    assert_eq!(bundle["total"], 1, "{bundle}");

    let waited = metric(
        &s,
        r#"dataplane_consistency_reads_total{region="us-east-1",outcome="replayed"}"#,
    )
    .await
        + metric(
            &s,
            r#"dataplane_consistency_reads_total{region="us-east-1",outcome="waited"}"#,
        )
        .await;
    assert_eq!(waited, 2.0);
    assert_eq!(
        metric(
            &s,
            r#"dataplane_db_reads_total{region="us-east-1",pool="reader"}"#
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn a_read_without_a_token_is_served_by_the_replica() {
    let _replica = REPLICA.lock().await;
    let s = split(SHORT_WAIT).await;
    let (id, _) = create_with_token(&s, "Plain").await;
    s._db.replica_caught_up().await;

    let (status, headers, body) = read(&s, &id, None).await;
    assert_eq!(
        (status, pool(&headers)),
        (StatusCode::OK, "reader"),
        "{body}"
    );
    let response = s
        .app
        .clone()
        .oneshot(
            Request::head(format!("/fhir/Patient/{id}"))
                .header(header::HOST, A)
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", support::fhir::token(A, "physicians")),
                )
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(pool(response.headers()), "reader");
    assert_eq!(
        metric(
            &s,
            r#"dataplane_db_read_fallbacks_total{region="us-east-1",reason="lagging"}"#
        )
        .await,
        0.0
    );
}

#[tokio::test]
async fn a_paused_replica_sends_reads_with_a_token_to_the_writer_until_it_replays_again() {
    let _replica = REPLICA.lock().await;
    let s = split(SHORT_WAIT).await;
    let lagging = r#"dataplane_db_read_fallbacks_total{region="us-east-1",reason="lagging"}"#;

    let paused = ReplayPaused::pause().await;
    let (id, token) = create_with_token(&s, "Paused").await;

    // Without the token the replica answers, and it does not have the patient yet.
    let (status, headers, _) = read(&s, &id, None).await;
    assert_eq!((status, pool(&headers)), (StatusCode::NOT_FOUND, "reader"));
    // With it, the read waits, gives up on the replica and the writer answers.
    let (status, headers, body) = read(&s, &id, Some(&token)).await;
    assert_eq!(
        (status, pool(&headers)),
        (StatusCode::OK, "writer"),
        "{body}"
    );
    assert_eq!(body["name"][0]["family"], "Paused");
    assert_eq!(metric(&s, lagging).await, 1.0);
    // The lag shows in /metrics while replay stands still.
    let lag = s
        .database
        .sample_lag()
        .await
        .expect("lag sample")
        .expect("a reader is configured");
    assert!(lag.bytes > 0, "{lag:?}");
    let bytes = metric(&s, r#"dataplane_replica_lag_bytes{region="us-east-1"}"#).await;
    assert!(bytes > 0.0, "lag in /metrics: {bytes}");
    paused.resume().await;

    // Replay resumed: the same token is soon served by the replica again.
    let s = &s;
    let token = token.as_str();
    let id = id.as_str();
    eventually(
        "the replica serves the token again",
        PATIENT_WAIT,
        || async move {
            match read(s, id, Some(token)).await {
                (StatusCode::OK, headers, body) if pool(&headers) == "reader" => {
                    assert_eq!(body["name"][0]["family"], "Paused");
                    Ok(())
                }
                (status, headers, _) => Err(format!("{status} from {}", pool(&headers))),
            }
        },
    )
    .await;
    assert!(
        metric(
            s,
            r#"dataplane_consistency_reads_total{region="us-east-1",outcome="fell_back"}"#
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn the_reader_runs_in_the_tenant_transaction_under_rls() {
    let _replica = REPLICA.lock().await;
    let s = split(PATIENT_WAIT).await;
    let (a, b) = s.ids;
    let (id, token) = create_with_token(&s, "Isolated").await;

    // Tenant B, on the replica, after it replayed A's write: A's id is unknown.
    let path = format!("/fhir/Patient/{id}");
    let (status, headers, _) = Call::new(Method::GET, &path, B, Some((B, "physicians")))
        .header("x-consistency-token", &token)
        .send(&s.app)
        .await;
    assert_eq!((status, pool(&headers)), (StatusCode::NOT_FOUND, "reader"));
    let (status, headers, bundle) =
        Call::new(Method::GET, "/fhir/Patient", B, Some((B, "physicians")))
            .header("x-consistency-token", &token)
            .send(&s.app)
            .await;
    assert_eq!((status, pool(&headers)), (StatusCode::OK, "reader"));
    assert!(bundle.get("entry").is_none(), "{bundle}");
    let (status, headers, _) = read(&s, &id, Some(&token)).await;
    assert_eq!((status, pool(&headers)), (StatusCode::OK, "reader"));

    // The same, at the transaction: the reader is the standby, the tenant set locally,
    // RLS showing each tenant its own rows only.
    for (tenant, expected) in [(a, 1_i64), (b, 0)] {
        let (seen, standby, setting) = s
            .database
            .tenant_tx(Access::Read, tenant, |tx| {
                Box::pin(async move {
                    let row = tx
                        .query_one(
                            "SELECT (SELECT count(*) FROM clinical.patients), \
                                    pg_is_in_recovery(), current_setting('app.tenant_id', true)",
                            &[],
                        )
                        .await?;
                    Ok::<_, TxError>((
                        row.get::<_, i64>(0),
                        row.get::<_, bool>(1),
                        row.get::<_, Option<String>>(2),
                    ))
                })
            })
            .await
            .expect("read transaction");
        assert!(standby, "the read ran on the replica");
        assert_eq!(seen, expected, "tenant {tenant}");
        assert_eq!(setting, Some(tenant.to_string()));
    }
    // And a reader connection outside any tenant transaction sees nothing.
    let reader = s.database.reader().expect("a reader");
    let client = reader.get().await.expect("reader connection");
    let unscoped: i64 = client
        .query_one("SELECT count(*) FROM clinical.patients", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(unscoped, 0);
}

#[tokio::test]
async fn the_lag_is_sampled_periodically_and_a_reader_that_is_down_degrades_reads_to_the_writer() {
    let _replica = REPLICA.lock().await;
    let failures = r#"dataplane_replica_lag_sample_failures_total{region="us-east-1"}"#;
    let s = split(SHORT_WAIT).await;
    s.database
        .sample_lag_until(
            Duration::from_millis(50),
            tokio::time::sleep(Duration::from_millis(300)),
        )
        .await;
    assert_eq!(metric(&s, failures).await, 0.0);

    // A reader nobody listens on: every sample fails and is counted, and reads go to
    // the writer (reason `unavailable`) instead of failing.
    let down = setup_with(|db| {
        let mut config = phoenix_dataplane::Config::new(db.dataplane_url());
        config.reader_url = Some("postgres://nobody@127.0.0.1:1/nothing".to_owned());
        config.pool_size = 2;
        phoenix_dataplane::db::Database::new(&config).expect("pools")
    })
    .await;
    down.database
        .sample_lag_until(
            Duration::from_millis(50),
            tokio::time::sleep(Duration::from_millis(300)),
        )
        .await;
    assert!(metric(&down, failures).await >= 3.0);
    let (id, token) = create_with_token(&down, "Degraded").await;
    for token in [None, Some(token.as_str())] {
        let (status, headers, _) = read(&down, &id, token).await;
        assert_eq!((status, pool(&headers)), (StatusCode::OK, "writer"));
    }
    let unavailable =
        r#"dataplane_db_read_fallbacks_total{region="us-east-1",reason="unavailable"}"#;
    assert_eq!(metric(&down, unavailable).await, 2.0);
}

#[tokio::test]
async fn the_running_data_plane_samples_the_lag_of_its_configured_reader() {
    // The binary's wiring: DATABASE_READER_URL starts the sampler, whose first sample is
    // at once; a reader nobody listens on makes it fail, which /metrics counts.
    let db = support::TestDb::create().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    let mut config = phoenix_dataplane::Config::new(db.dataplane_url());
    config.reader_url = Some("postgres://nobody@127.0.0.1:1/nothing".to_owned());
    config.listen = listener.local_addr().expect("bound address");
    config.region = Some("us-east-1".to_owned());
    let dataplane = phoenix_dataplane::Dataplane::start(&config, listener, Default::default())
        .await
        .expect("start the data plane");
    let client = support::http();
    let client = &client;
    let url = format!("http://{}/metrics", dataplane.admin_addr());
    let url = url.as_str();
    eventually(
        "a failed lag sample is counted",
        Duration::from_secs(10),
        || async move {
            let text = client
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            text.lines()
                .any(|line| {
                    line.starts_with(
                        r#"dataplane_replica_lag_sample_failures_total{region="us-east-1"} "#,
                    ) && !line.ends_with(" 0")
                })
                .then_some(())
                .ok_or(text)
        },
    )
    .await;
    dataplane.stop().await.expect("clean stop");
}
