//! TLS to the real PostgreSQL of the local stack: its eu-west-1 primary accepts TLS
//! only (pg_hba `hostssl`), with a certificate for 127.0.0.1/localhost signed by the
//! stack's CA ($PG_CA_FILE).

use phoenix_catalog::connect::{ConnectError, PgTarget, parse};

/// A CA that signed nothing the tests connect to.
const UNRELATED_CA: &[u8] = include_bytes!("fixtures/unrelated-ca.crt");

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run `e2e/stack up && source .stack/env` from the repository root \
             (or `e2e/test`), so these tests reach the stack's TLS-only PostgreSQL (eu-west-1)"
        )
    })
}

/// The stack's verify-full DSN of the TLS-only eu-west-1 primary.
fn tls_dsn() -> String {
    let dsn = env("PG_ADMIN_DSN_EU_WEST_1");
    assert!(
        dsn.contains("sslmode=verify-full"),
        "PG_ADMIN_DSN_EU_WEST_1 has no sslmode=verify-full: the stack predates TLS; run `e2e/stack up` again"
    );
    dsn
}

/// The DSN without its query (no sslmode, no sslrootcert).
fn bare_dsn() -> String {
    let dsn = tls_dsn();
    dsn.split_once('?')
        .map_or(dsn.clone(), |(base, _)| base.to_owned())
}

/// The same server reached at 127.0.0.1 but named `db.phoenix.invalid`, a name its
/// certificate does not carry.
fn misnamed(mode: &str) -> String {
    named("db.phoenix.invalid", mode)
}

/// The server reached at 127.0.0.1 under the name `host` (what TLS verifies).
fn named(host: &str, mode: &str) -> String {
    let target = parse(&bare_dsn()).expect("the stack DSN parses");
    let config = &target.config;
    let password = String::from_utf8(config.get_password().unwrap_or_default().to_vec())
        .expect("the stack password is hex");
    format!(
        "host={host} hostaddr=127.0.0.1 port={} user={} password={password} dbname={} sslmode={mode} sslrootcert={}",
        config.get_ports()[0],
        config.get_user().unwrap_or("postgres"),
        config.get_dbname().unwrap_or("phoenix"),
        env("PG_CA_FILE"),
    )
}

async fn uses_tls(target: &PgTarget) -> Result<bool, ConnectError> {
    let client = target.connect().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    Ok(row.get(0))
}

fn assert_certificate_error(result: Result<bool, ConnectError>, what: &str) {
    let error = result.expect_err(what);
    let text = error.to_string();
    assert!(
        matches!(error, ConnectError::Connect(_)) && text.contains("certificate"),
        "{what}: expected a certificate error, got: {text}"
    );
    let target = parse(&bare_dsn()).expect("the stack DSN parses");
    let password = String::from_utf8_lossy(target.config.get_password().unwrap_or_default());
    assert!(
        !text.contains(password.as_ref()),
        "the error shows the password"
    );
}

#[tokio::test]
async fn verify_full_with_the_stack_ca_connects_over_tls() {
    let target = parse(&tls_dsn()).expect("the stack DSN parses");
    assert!(uses_tls(&target).await.expect("verify-full connects"));
}

#[tokio::test]
async fn a_ca_supplied_as_pem_bytes_verifies_the_server() {
    let pem = std::fs::read(env("PG_CA_FILE")).expect("read PG_CA_FILE");
    let target = parse(&format!("{}?sslmode=verify-full", bare_dsn()))
        .expect("parses")
        .with_ca_pem(&pem, "PG_CA_FILE")
        .expect("a CA");
    assert!(uses_tls(&target).await.expect("verify-full connects"));
}

#[tokio::test]
async fn verify_full_with_an_unrelated_ca_fails_on_the_certificate() {
    let target = parse(&tls_dsn())
        .expect("parses")
        .with_ca_pem(UNRELATED_CA, "fixture")
        .expect("a CA");
    assert_certificate_error(uses_tls(&target).await, "an unrelated CA");
}

#[tokio::test]
async fn a_host_name_the_certificate_lacks_fails_under_verify_full() {
    let target = parse(&misnamed("verify-full")).expect("parses");
    assert_certificate_error(uses_tls(&target).await, "a wrong host name");
}

#[tokio::test]
async fn a_dns_name_the_certificate_carries_verifies_under_verify_full() {
    // The DSN of the stack names 127.0.0.1 (an IP SAN); this is the DNS SAN `localhost`.
    let target = parse(&named("localhost", "verify-full")).expect("parses");
    assert!(
        uses_tls(&target)
            .await
            .expect("localhost is in the certificate")
    );
}

#[tokio::test]
async fn a_host_name_the_certificate_lacks_connects_under_verify_ca() {
    let target = parse(&misnamed("verify-ca")).expect("parses");
    assert!(uses_tls(&target).await.expect("verify-ca ignores the name"));
}

#[tokio::test]
async fn require_without_a_ca_connects_encrypted() {
    let target = parse(&format!("{}?sslmode=require", bare_dsn())).expect("parses");
    assert!(!target.tls.has_ca());
    assert!(uses_tls(&target).await.expect("require connects"));
}

#[tokio::test]
async fn require_with_an_unrelated_ca_verifies_the_chain_like_libpq() {
    let target = parse(&format!("{}?sslmode=require", bare_dsn()))
        .expect("parses")
        .with_ca_pem(UNRELATED_CA, "fixture")
        .expect("a CA");
    assert_certificate_error(uses_tls(&target).await, "require with a CA");
}

#[tokio::test]
async fn a_plain_connection_is_refused_by_the_tls_only_server() {
    let target = parse(&format!("{}?sslmode=disable", bare_dsn())).expect("parses");
    let error = target.connect().await.expect_err("hostssl only");
    let ConnectError::Connect(pg) = &error else {
        panic!("expected a connection error, got {error}");
    };
    let db = pg
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a server refusal, got {error}"));
    assert!(
        db.message().contains("no encryption"),
        "expected pg_hba to refuse the plain connection, got: {}",
        db.message()
    );
}
