//! Operations of the data plane around every request: metrics on the admin listener only
//! (by tenant, with the pools), request ids in and out and in the audit trail, the request
//! log line without the query, the body size limit, the request timeout, and graceful
//! shutdown finishing a request in flight.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use futures::StreamExt;
use http_body_util::BodyExt;
use phoenix_dataplane::app;
use phoenix_dataplane::metrics::Metrics;
use phoenix_dataplane::request::RequestSettings;
use serde_json::Value;
use support::fhir::*;
use support::{TestDb, eventually, http, start_dataplane_at};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

async fn scrape(s: &Setup) -> String {
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
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// A GET outside FHIR (its answer is no FHIR resource): status and headers.
async fn get_raw(
    app: &axum::Router,
    path: &str,
    host: &str,
    request_id: &str,
) -> (StatusCode, axum::http::HeaderMap) {
    let request = Request::get(path)
        .header(header::HOST, host)
        .header("x-request-id", request_id)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    (response.status(), response.headers().clone())
}

async fn create(app: &axum::Router, family: &str) -> String {
    let (status, _, body) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(patient(family, "1970-01-01", &format!("MRN-{family}")))
        .send(app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

async fn last_audit_request_id(s: &Setup) -> String {
    s._db
        .admin()
        .query_one(
            "SELECT request_id FROM clinical.audit_events WHERE tenant_id = $1 \
             ORDER BY seq DESC LIMIT 1",
            &[&s.ids.0],
        )
        .await
        .expect("the last audit entry")
        .get(0)
}

#[tokio::test]
async fn metrics_count_requests_by_tenant_and_show_the_pools_on_the_admin_router() {
    let s = setup().await;
    let id = create(&s.app, "Metric").await;
    let path = format!("/fhir/Patient/{id}");
    let (status, _, _) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Tenant B's token on A's host: refused, counted for A (the host's tenant), not B.
    let (status, _, _) = Call::new(Method::GET, &path, A, Some((B, "physicians")))
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The public router has no /metrics.
    let (status, _) = get_raw(&s.app, "/metrics", A, "m-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let text = scrape(&s).await;
    for series in [
        r#"http_requests_total{region="us-east-1",method="POST",route="/fhir/Patient",status="201",tenant="mercy"}"#,
        r#"http_requests_total{region="us-east-1",method="GET",route="/fhir/Patient/{id}",status="200",tenant="mercy"}"#,
        r#"http_requests_total{region="us-east-1",method="GET",route="/fhir/Patient/{id}",status="401",tenant="mercy"}"#,
        r#"http_requests_total{region="us-east-1",method="GET",route="unmatched",status="404",tenant="none"}"#,
    ] {
        assert_eq!(value(&text, series), 1.0, "{series}");
    }
    assert!(!text.contains("tenant=\"stjude\""), "{text}");
    // The create and the read each waited for a writer connection (the audit append
    // shares the request's transaction).
    let waits = value(
        &text,
        r#"dataplane_pool_wait_seconds_count{region="us-east-1",pool="writer"}"#,
    );
    assert!(waits >= 2.0, "{waits}");
    let connections = value(
        &text,
        r#"dataplane_pool_connections{region="us-east-1",pool="writer"}"#,
    );
    assert!((1.0..=2.0).contains(&connections), "{connections}");
    let idle = value(
        &text,
        r#"dataplane_pool_idle_connections{region="us-east-1",pool="writer"}"#,
    );
    assert_eq!(idle, connections, "nothing in use between requests");
    assert_eq!(
        value(
            &text,
            r#"dataplane_pool_waiters{region="us-east-1",pool="writer"}"#
        ),
        0.0
    );
}

#[tokio::test]
async fn the_request_id_is_echoed_and_is_the_audit_entrys() {
    let s = setup().await;
    let id = create(&s.app, "Traced").await;
    let path = format!("/fhir/Patient/{id}");

    // Given: kept as sent, on the response and in the audit entry of the read.
    let (status, headers, _) = Call::new(Method::GET, &path, A, PHYSICIAN)
        .header("x-request-id", "trace-0001.abc")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-request-id"], "trace-0001.abc");
    assert_eq!(last_audit_request_id(&s).await, "trace-0001.abc");

    // Not given (or unusable): a fresh one, the same on the response and in the audit.
    for sent in [None, Some("has space"), Some(&*"x".repeat(129))] {
        let mut call = Call::new(Method::GET, &path, A, PHYSICIAN);
        if let Some(sent) = sent {
            call = call.header("x-request-id", sent);
        }
        let (status, headers, _) = call.send(&s.app).await;
        assert_eq!(status, StatusCode::OK);
        let echoed = headers["x-request-id"].to_str().expect("ASCII").to_owned();
        assert_eq!(echoed.len(), 32, "{echoed}");
        assert!(echoed.bytes().all(|b| b.is_ascii_hexdigit()), "{echoed}");
        assert_eq!(last_audit_request_id(&s).await, echoed);
    }

    // Errors and unknown paths carry it too.
    let (status, headers) = get_raw(&s.app, "/no/such/path", A, "err-41").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-request-id"], "err-41");
    for (path, who, expected) in [
        (path.as_str(), None, StatusCode::UNAUTHORIZED),
        ("/fhir/Nothing", PHYSICIAN, StatusCode::NOT_FOUND),
    ] {
        let (status, headers, _) = Call::new(Method::GET, path, A, who)
            .header("x-request-id", "err-42")
            .send(&s.app)
            .await;
        assert_eq!(status, expected, "{path}");
        assert_eq!(headers["x-request-id"], "err-42", "{path}");
    }
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().expect("log buffer").clone()).expect("UTF-8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("log buffer").clone()).expect("UTF-8")
    }
}

#[tokio::test]
async fn one_log_line_per_request_names_the_route_template_never_the_query_or_path() {
    let s = setup().await;
    let id = create(&s.app, "Zebedee").await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    // Global: a callsite first hit on another test's thread must not stay disabled (the
    // other tests' lines land here too; they are told apart by request id).
    tracing::subscriber::set_global_default(subscriber).expect("the only test that sets one");

    let search = "/fhir/Patient?family=Zebedee&birthdate=1970-01-01";
    let (status, _, _) = Call::new(Method::GET, search, A, PHYSICIAN)
        .header("x-request-id", "log-search-1")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let read = format!("/fhir/Patient/{id}");
    let (status, _, _) = Call::new(Method::GET, &read, A, PHYSICIAN)
        .header("x-request-id", "log-read-1")
        .send(&s.app)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_raw(
        &s.app,
        "/nowhere/Zebedee",
        "nowhere.example.org",
        "log-unknown-1",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let lines = captured.lines();
    let request_line = |id: &str| {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|l| l["fields"]["message"] == "request" && l["span"]["request_id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "one line for {id}: {lines:#?}");
        found[0].clone()
    };
    let line = request_line("log-search-1");
    assert_eq!(line["level"], "INFO", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["method"], "GET", "{line}");
    assert_eq!(fields["route"], "/fhir/Patient", "{line}");
    assert_eq!(fields["status"], 200, "{line}");
    assert_eq!(fields["tenant"], "mercy", "{line}");
    assert!(
        fields["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{line}"
    );
    assert_eq!(line["span"]["name"], "request", "{line}");

    let line = request_line("log-read-1");
    assert_eq!(line["fields"]["route"], "/fhir/Patient/{id}", "{line}");
    let line = request_line("log-unknown-1");
    assert_eq!(line["fields"]["route"], "unmatched", "{line}");
    assert_eq!(line["fields"]["status"], 404, "{line}");
    assert_eq!(line["fields"]["tenant"], "none", "{line}");

    // Nothing of the query, the ids in paths, the names or the tokens, in any line.
    let text = captured.text();
    for secret in [
        "Zebedee",
        "family=",
        "birthdate",
        id.as_str(),
        "Bearer",
        "eyJ",
    ] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}

fn limited(s: &Setup, settings: RequestSettings) -> axum::Router {
    app(state_with(&s.catalog, &s.database, &Metrics::new(None)).with_request_settings(settings))
}

#[tokio::test]
async fn bodies_over_the_configured_limit_are_refused_with_413() {
    let s = setup().await;
    let app = limited(
        &s,
        RequestSettings {
            max_body_bytes: 1024,
            ..RequestSettings::default()
        },
    );
    let mut small = patient("Small", "1970-01-01", "MRN-S");
    small["text"] = serde_json::json!({"status": "generated", "div": "<div>ok</div>"});
    let (status, _, body) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(small)
        .send(&app)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let mut large = patient("Large", "1970-01-01", "MRN-L");
    large["text"] = serde_json::json!({"status": "generated",
        "div": format!("<div>{}</div>", "x".repeat(2048))});
    let (status, _, body) = Call::new(Method::POST, "/fhir/Patient", A, PHYSICIAN)
        .body(large)
        .send(&app)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], "too-long", "{body}");
}

#[tokio::test]
async fn a_body_that_never_completes_is_answered_at_the_timeout() {
    let s = setup().await;
    let app = limited(
        &s,
        RequestSettings {
            timeout: Duration::from_millis(300),
            ..RequestSettings::default()
        },
    );
    // The start of a Patient, then nothing: a client uploading forever.
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
        b"{\"resourceType\": \"Patient\", ",
    ))])
    .chain(futures::stream::pending());
    let request = Request::builder()
        .method(Method::POST)
        .uri("/fhir/Patient")
        .header(header::HOST, A)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token(A, "physicians")),
        )
        .header(header::CONTENT_TYPE, "application/fhir+json")
        .header("x-request-id", "slow-upload-1")
        .body(Body::from_stream(chunks))
        .expect("request");
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(10), app.oneshot(request))
        .await
        .expect("answered, not held forever")
        .expect("infallible");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-request-id"], "slow-upload-1");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], "timeout", "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("300 ms")),
        "{body}"
    );
}

/// A TCP proxy to PostgreSQL that, while stalled, holds what the client sends for a while
/// before passing it on.
async fn stalling_proxy(upstream: String, stall: Duration) -> (Arc<AtomicBool>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let flag = flag.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = async move {
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(stall).await;
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let down = tokio::io::copy(&mut server_read, &mut client_write);
                let _ = tokio::join!(up, down);
            });
        }
    });
    (stalled, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_finishes_the_request_in_flight_and_refuses_new_ones() {
    let db = TestDb::create().await;
    db.insert_tenant("mercy", A).await;
    let (stalled, proxy) = stalling_proxy(db.primary_addr(), Duration::from_millis(600)).await;
    let dataplane = start_dataplane_at(
        db.dataplane_url_through(proxy),
        db.ca_file(),
        Default::default(),
    )
    .await;
    let addr = dataplane.local_addr();
    let client = http();
    let ready = format!("http://{addr}/readyz");
    eventually(
        "the data plane is ready",
        Duration::from_secs(10),
        || async {
            match client.get(&ready).send().await {
                Ok(r) if r.status() == 200 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Readiness' SELECT 1 now takes 600 ms (under its 1 s limit): a request in flight.
    stalled.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let in_flight = tokio::spawn({
        let client = client.clone();
        let ready = ready.clone();
        async move { client.get(&ready).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!in_flight.is_finished(), "the request is still in flight");
    dataplane.stop().await.expect("a clean stop");
    let stopped_after = started.elapsed();
    let status = in_flight
        .await
        .expect("task")
        .expect("answered, not cut off");
    assert_eq!(status, StatusCode::OK, "the request in flight completed");
    assert!(
        stopped_after >= Duration::from_millis(550),
        "stop waited for the request in flight: {stopped_after:?}"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connection after the stop"
    );
}

/// Everything the server sends on `stream` until it closes it (EOF or reset), and when.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Instant) {
    let mut answered = Vec::new();
    let mut buf = [0_u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => answered.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection is still open after {within:?}"));
    (answered, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off_at_the_header_read_timeout() {
    let db = TestDb::create().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut config = phoenix_dataplane::Config::new(db.dataplane_url());
    config.database_ca_file = db.ca_file();
    config.listen = listener.local_addr().expect("bound address");
    config.header_read_timeout_ms = 500;
    let dataplane = phoenix_dataplane::Dataplane::start(&config, listener, Default::default())
        .await
        .expect("start the data plane");
    let addr = dataplane.local_addr();

    // Half a request line, then nothing: closed at the timeout, not before.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    slow.write_all(b"GET /healthz HT").await.expect("write");
    let (answered, closed) = until_closed(&mut slow, Duration::from_secs(5)).await;
    let after = closed - started;
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answered).contains("200 OK"),
        "{}",
        String::from_utf8_lossy(&answered)
    );

    // A client that connects and sends nothing at all: closed too.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let (answered, closed) = until_closed(&mut silent, Duration::from_secs(5)).await;
    let after = closed - started;
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    assert!(answered.is_empty());

    // On a keep-alive connection, the next request's headers are held to it as well: the
    // first request is answered, the half-sent second one closes the connection.
    let mut keep_alive = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /heal")
        .await
        .expect("write");
    let (answered, closed) = until_closed(&mut keep_alive, Duration::from_secs(5)).await;
    let after = closed - started;
    let answered = String::from_utf8_lossy(&answered);
    assert!(answered.starts_with("HTTP/1.1 200 OK"), "{answered}");
    assert_eq!(answered.matches("HTTP/1.1").count(), 1, "{answered}");
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );

    // Headers sent in two parts well within the timeout: answered.
    let mut prompt = TcpStream::connect(addr).await.expect("connect");
    prompt
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(150)).await;
    prompt
        .write_all(b"Host: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (answered, _) = until_closed(&mut prompt, Duration::from_secs(5)).await;
    let answered = String::from_utf8_lossy(&answered);
    assert!(answered.starts_with("HTTP/1.1 200 OK"), "{answered}");

    // And an ordinary client, as always.
    let response = http()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    dataplane.stop().await.expect("a clean stop");
}
