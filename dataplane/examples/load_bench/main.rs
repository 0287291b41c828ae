//! The data plane under constant-rate load, beside the same SQL through `pgbench`.
//!
//! Run by `bench/clinical-load` (which brings up a stack, the Keycloak realm `bench`, oha
//! and a release build of the data plane); see docs/benchmarks.md, "Clinical API under
//! load". By hand, against a running stack:
//!
//! ```text
//! source .stack/env
//! OHA=~/.cache/phoenix-guardian/tools/bin/oha DATAPLANE_BIN=target/release/phoenix-dataplane \
//!   cargo run --release -p phoenix-dataplane --example load_bench -- [TENANTS] [SECONDS]
//! ```
//!
//! 1. A throwaway database provisioned by the operator's code (the tests' support; dropped
//!    at exit) with `TENANTS` tenants (default 500): the first 10 large (2,000 patients,
//!    20,000 encounters), the others small (100 patients, 500 encounters); SOAP notes for
//!    70 % of the finished encounters (`seed.sql`). Every tenant trusts the Keycloak realm
//!    `bench`, so one token of its physician alice is valid at every tenant: it is checked
//!    in full (signature, issuer, audience, expiry) once per tenant, then found among the
//!    verified tokens (ADR 0015) until it expires or a minute has passed.
//! 2. The release data plane as its own process, as the data plane role (NOBYPASSRLS),
//!    with its defaults (pool of 16, request log on, per-tenant limits raised out of the
//!    way so they do not shape the load).
//! 3. `oha` at constant rates (`-q`, with `--latency-correction`, so a stalled response
//!    delays no later request's clock: no coordinated omission), each request to a random
//!    tenant (half to the 10 large ones) and patient, for `SECONDS` (default 20) per step:
//!    Patient read, Encounter search, DocumentReference create, and the analytics over a
//!    year of a large tenant; then reads closed-loop, to find the most the 2 cores serve.
//!    The data plane's resident memory is sampled every 100 ms throughout.
//! 4. `pgbench` on the same database, with scripts built from the data plane's own SQL
//!    (`store::read_sql`, `AuditedRead::statement`): a Patient read as the data plane sends
//!    it (one pipeline: BEGIN, the tenant setting, the read with its audit entry, COMMIT;
//!    the ceiling), as it was sent before (the entry and COMMIT in a second round trip), and
//!    the read query with and without row-level security (the data plane role, then the
//!    superuser).
//! 5. Where a closed-loop read's CPU goes (`split.rs`, counted by `cpu.rs`), per read, in
//!    PostgreSQL (and of that, in its background processes), the data plane and the load
//!    generator, for three paths: HTTP through the data plane, the data plane's database
//!    code alone in this process (no HTTP, token or JSON), and the ceiling's pgbench
//!    script; in rounds of the three, first with every process on every core, then with the
//!    PostgreSQL server pinned to core 0 and everything else to the other cores, so the
//!    database has the same CPU in every run (as when the data plane runs on machines of
//!    its own).
//!
//! Environment: `ONLY=<text>` runs only the steps whose label contains it;
//! `CPU_ROUNDS=<n>` sets the rounds of step 5 (default 3);
//! `DATAPLANE_WORKERS=<n>` gives the data plane `n` tokio workers (as a CPU limit of `n`
//! would), this process keeping its own; the data plane's other settings can be given as
//! its environment variables (e.g. `DATABASE_POOL_SIZE`), which it inherits.

#[path = "../../tests/support/mod.rs"]
mod support;

mod cpu;
mod oha;
mod pgbench;
mod process;
mod split;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use oha::Oha;
use pgbench::{Pgbench, read_scripts};
use phoenix_catalog::sso::RoleGrant;
use phoenix_dataplane::catalog::SsoRow;
use process::{Dataplane, RssSampler};
use rand::Rng;
use serde_json::Value;
use support::TestDb;

/// Large tenants among the first ids.
const LARGE: usize = 10;
const LARGE_PATIENTS: u32 = 2_000;
const LARGE_ENCOUNTERS: u32 = 20_000;
const SMALL_PATIENTS: u32 = 100;
const SMALL_ENCOUNTERS: u32 = 500;
/// Lines of each URL file oha picks from.
const URLS: usize = 20_000;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run bench/clinical-load, or see this file's header")
    })
}

fn host(i: usize) -> String {
    format!("h{i:03}.bench.test")
}

fn patient(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i).map_or(default, |a| {
            a.parse()
                .unwrap_or_else(|_| panic!("argument {} must be a number, not {a}", i + 1))
        })
    };
    let (tenants, seconds) = (number(0, 500), number(1, 20));
    assert!(tenants > LARGE, "at least {} tenants", LARGE + 1);
    let oha = PathBuf::from(env("OHA"));
    let dataplane_bin = PathBuf::from(env("DATAPLANE_BIN"));
    let keycloak = env("KEYCLOAK_URL");
    let work = tempdir();

    let db = TestDb::create().await;
    let started = std::time::Instant::now();
    let mut ids = Vec::with_capacity(tenants);
    for i in 0..tenants {
        ids.push(db.insert_tenant(&format!("h{i:03}"), &host(i)).await);
    }
    // Limits are the data plane's to enforce, not this benchmark's to meet.
    db.execute("UPDATE catalog.tenants SET requests_per_second = 1000000")
        .await;
    let issuer = format!("{keycloak}/realms/bench");
    for (i, id) in ids.iter().enumerate() {
        db.upsert_sso(*id, &sso(i, &issuer)).await;
    }
    let seed = include_str!("seed.sql")
        .replace(
            "__TENANTS__",
            &ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
        )
        .replace("__LARGE__", &LARGE.to_string())
        .replace("__LARGE_PATIENTS__", &LARGE_PATIENTS.to_string())
        .replace("__LARGE_ENCOUNTERS__", &LARGE_ENCOUNTERS.to_string())
        .replace("__SMALL_PATIENTS__", &SMALL_PATIENTS.to_string())
        .replace("__SMALL_ENCOUNTERS__", &SMALL_ENCOUNTERS.to_string());
    db.execute(&seed).await;
    for table in [
        "patients",
        "encounters",
        "document_references",
        "audit_events",
    ] {
        db.execute(&format!("VACUUM ANALYZE clinical.{table}"))
            .await;
    }
    let count = |table: &'static str| {
        let db = &db;
        async move {
            db.admin()
                .query_one(&format!("SELECT count(*) FROM clinical.{table}"), &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    println!(
        "## Data\n\n{tenants} tenants ({LARGE} large), {} patients, {} encounters, {} notes, \
         generated in {:.0} s; database {}\n",
        count("patients").await,
        count("encounters").await,
        count("document_references").await,
        started.elapsed().as_secs_f64(),
        size(&db).await,
    );

    let dataplane = Dataplane::start(&dataplane_bin, &db, &work).await;
    let rss = RssSampler::start(dataplane.pid);
    let token = Token::new(&keycloak);

    // URL files: each line a random tenant (half of them large) and patient.
    let mut rng = rand::rng();
    let pick = |rng: &mut rand::rngs::ThreadRng| {
        if rng.random_bool(0.5) {
            (rng.random_range(0..LARGE), LARGE_PATIENTS)
        } else {
            (rng.random_range(LARGE..tenants), SMALL_PATIENTS)
        }
    };
    let base = |t: usize| format!("http://{}:{}", host(t), dataplane.port);
    let mut reads = String::new();
    let mut searches = String::new();
    let mut creates = String::new();
    let mut analytics = String::new();
    let mut me = String::new();
    let mut healthz = String::new();
    for _ in 0..URLS {
        let (t, patients) = pick(&mut rng);
        let p = patient(rng.random_range(1..=patients));
        writeln!(reads, "{}/fhir/Patient/{p}", base(t)).expect("writing to a String");
        writeln!(
            searches,
            "{}/fhir/Encounter?patient={p}&_sort=-date&_count=10",
            base(t)
        )
        .expect("writing to a String");
        writeln!(creates, "{}/fhir/DocumentReference", base(t)).expect("writing to a String");
        writeln!(me, "{}/me", base(t)).expect("writing to a String");
        writeln!(healthz, "{}/healthz", base(t)).expect("writing to a String");
        writeln!(
            analytics,
            "{}/analytics/encounters?from=2025-01-01&to=2026-01-01&groupBy=department",
            base(rng.random_range(0..LARGE))
        )
        .expect("writing to a String");
    }
    let files = [
        ("reads", reads),
        ("searches", searches),
        ("creates", creates),
        ("analytics", analytics),
        ("me", me),
        ("healthz", healthz),
    ]
    .map(|(name, body)| {
        let path = work.join(format!("{name}.urls"));
        std::fs::write(&path, body).expect("write a URL file");
        (name, path)
    });
    let url_file = |name: &str| {
        files
            .iter()
            .find(|f| f.0 == name)
            .expect("a URL file")
            .1
            .clone()
    };
    let note = work.join("note.json");
    std::fs::write(&note, note_body()).expect("write the note");
    let oha = Oha {
        bin: oha,
        tenants,
        port: dataplane.port,
        seconds,
    };

    // Warm the caches (JWKS, prepared statements, pool) before the clock runs.
    oha.run(&url_file("reads"), &token.get().await, None, 2000, &[])
        .await;

    println!(
        "## Data plane (oha, constant rate, latency corrected)\n\n\
         | scenario | target rps | achieved rps | p50 ms | p95 ms | p99 ms | max ms | not 2xx | errors | RSS max MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    let json_post: &[&str] = &["-m", "POST", "-T", "application/fhir+json"];
    let steps: [(&str, &str, &[u32], &[&str]); 4] = [
        ("Patient read", "reads", &[250, 500, 1000], &[]),
        ("Encounter search", "searches", &[250, 500], &[]),
        (
            "DocumentReference create",
            "creates",
            &[100, 250],
            json_post,
        ),
        (
            "analytics (year, by department)",
            "analytics",
            &[10, 25],
            &[],
        ),
    ];
    // `ONLY=<text>` runs only the steps whose label contains it (for profiling).
    let only = std::env::var("ONLY").unwrap_or_default();
    for (label, file, rates, extra) in steps {
        if !label.contains(&only) {
            continue;
        }
        for rate in rates {
            let mut extra = extra.to_vec();
            let body = note.to_string_lossy().into_owned();
            if file == "creates" {
                extra.extend(["-D", &body]);
            }
            rss.reset();
            let result = oha
                .run(&url_file(file), &token.get().await, Some(*rate), 0, &extra)
                .await;
            println!("{}", result.row(label, Some(*rate), rss.max_mib()));
        }
    }
    // Closed loop: the most the machine serves, and where the time goes (the probe needs
    // no tenant; `/me` resolves the tenant and checks the token but reads no database).
    for (label, file) in [
        ("Patient read, closed loop (-c 50)", "reads"),
        ("`/me` (tenant + token, no database), closed loop", "me"),
        ("`/healthz` (HTTP only), closed loop", "healthz"),
    ] {
        if !label.contains(&only) {
            continue;
        }
        rss.reset();
        let max = oha
            .run(&url_file(file), &token.get().await, None, 0, &[])
            .await;
        println!("{}", max.row(label, None, rss.max_mib()));
    }
    if "CPU per read".contains(&only) {
        let pgbench = Pgbench {
            dir: work.clone(),
            seconds,
            tmin: ids[0],
            tmax: *ids.last().expect("tenants"),
        };
        let ids = ids.clone();
        let pick = move || {
            let mut rng = rand::rng();
            let (t, patients) = if rng.random_bool(0.5) {
                (rng.random_range(0..LARGE), LARGE_PATIENTS)
            } else {
                (rng.random_range(LARGE..ids.len()), SMALL_PATIENTS)
            };
            (ids[t], patient(rng.random_range(1..=patients)))
        };
        // `CPU_ROUNDS=<n>`: rounds of the three paths in each placement (default 3).
        let rounds = std::env::var("CPU_ROUNDS")
            .map_or(3, |n| n.parse().expect("CPU_ROUNDS is a number of rounds"));
        split::cpu_split(&split::Paths {
            db: &db,
            dataplane: &dataplane,
            oha: &oha,
            reads: &url_file("reads"),
            token: &token,
            pgbench: &pgbench,
            pick: Arc::new(pick),
            seconds,
            rounds: rounds.max(1),
        })
        .await;
    }
    println!(
        "\nData plane resident memory: peak {:.1} MiB over the whole run (VmHWM).\n",
        dataplane.hwm_mib()
    );

    if !"pgbench".contains(&only) {
        return;
    }
    println!(
        "## The same SQL through pgbench ({seconds} s each, 16 clients, 2 threads, prepared)\n"
    );
    let pgbench = Pgbench {
        dir: work.clone(),
        seconds,
        tmin: ids[0],
        tmax: *ids.last().expect("tenants"),
    };
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "tenant ids are consecutive, so pgbench can draw one at random"
    );
    // As the data plane's pooled connections: the session search path is `clinical`, so
    // that statements prepared before the tenant setting resolve (see `db.rs`).
    let search_path = "&options=-c%20search_path%3Dclinical";
    let dataplane_url = format!("{}{search_path}", db.dataplane_url());
    let admin_url = format!("{}{search_path}", db.admin_url());
    println!("| script | role | tps | mean latency ms |\n|---|---|---|---|");
    let (as_sent, before, query) = read_scripts();
    std::fs::write(work.join("read_as_sent.sql"), &as_sent).expect("keep the script");
    for (label, script) in [
        (
            "Patient read as the data plane sends it: one pipeline, read and audit entry in one statement (the ceiling)",
            &as_sent,
        ),
        (
            "Patient read, read then audit entry + COMMIT (two round trips, as before 2026-11-24)",
            &before,
        ),
    ] {
        let r = pgbench.run(label, script, &dataplane_url).await;
        println!("| {label} | data plane (RLS) | {:.0} | {:.2} |", r.0, r.1);
    }
    // RLS overhead: the same transaction, with the policy (data plane role) and without
    // (the superuser bypasses row-level security); alternated, three times each.
    let mut with = Vec::new();
    let mut without = Vec::new();
    // A first run warms the caches of both roles' connections; its figures are dropped.
    pgbench.run("warm-up", &query, &dataplane_url).await;
    pgbench.run("warm-up", &query, &admin_url).await;
    for _ in 0..3 {
        with.push(pgbench.run("rls", &query, &dataplane_url).await);
        without.push(pgbench.run("no rls", &query, &admin_url).await);
    }
    for (label, runs) in [
        ("read query only: with RLS", &with),
        ("read query only: without RLS", &without),
    ] {
        for r in runs.iter() {
            println!("| {label} | | {:.0} | {:.3} |", r.0, r.1);
        }
    }
    // The median run of each: one disturbed run (a checkpoint, autovacuum) moves a mean.
    let median = |v: &[(f64, f64)]| {
        let mut tps: Vec<f64> = v.iter().map(|r| r.0).collect();
        tps.sort_by(f64::total_cmp);
        tps[tps.len() / 2]
    };
    println!(
        "\nRLS overhead on the read query: {:.1} % fewer transactions per second with the policy \
         (median of three runs each).",
        100.0 * (1.0 - median(&with) / median(&without))
    );
    drop(dataplane);
}

/// The bench tenant `i`'s SSO settings: the realm `bench`, groups mapped to roles.
fn sso(i: usize, issuer: &str) -> SsoRow {
    let grant = |group: &str, role: &str| RoleGrant {
        group: group.into(),
        role: role.into(),
    };
    SsoRow {
        idp_uid: format!("uid-bench-idp-{i:03}"),
        idp_name: format!("bench-idp-{i:03}"),
        protocol: phoenix_catalog::sso::Protocol::Oidc,
        issuer: issuer.into(),
        jwks_uri: format!("{issuer}/protocol/openid-connect/certs"),
        client_id: "phoenix-dataplane".into(),
        audiences: vec!["phoenix-dataplane".into()],
        claim_subject: "sub".into(),
        claim_email: "email".into(),
        claim_groups: "groups".into(),
        claim_name: "name".into(),
        role_mapping: vec![grant("physicians", "physician"), grant("nurses", "nurse")],
        allowed_email_domains: vec![],
        scim_enabled: false,
        generation: 1,
        authorization_endpoint: None,
        token_endpoint: None,
        end_session_endpoint: None,
    }
}

/// The note every create posts: patient 1 exists in every tenant.
fn note_body() -> String {
    let section = |title: &str| {
        let text = format!("{title}: synthetic findings, nothing real. ").repeat(8);
        serde_json::json!({"attachment": {"contentType": "text/plain", "title": title,
            "data": base64(text.as_bytes()), "size": text.len()}})
    };
    let content = ["Subjective", "Objective", "Assessment", "Plan"].map(section);
    serde_json::json!({
        "resourceType": "DocumentReference", "status": "current", "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "subject": {"reference": format!("Patient/{}", patient(1))},
        "date": "2025-06-01T10:00:00Z",
        "content": content,
    })
    .to_string()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("load-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the work directory");
    dir
}

async fn size(db: &TestDb) -> String {
    db.admin()
        .query_one(
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
            &[],
        )
        .await
        .expect("database size")
        .get(0)
}

/// Access tokens of alice (physicians) in the realm `bench`, fetched per step (Keycloak's
/// tokens live 5 minutes).
struct Token {
    url: String,
}

impl Token {
    fn new(keycloak: &str) -> Self {
        Self {
            url: format!("{keycloak}/realms/bench/protocol/openid-connect/token"),
        }
    }

    async fn get(&self) -> String {
        let form = [
            ("grant_type", "password".to_owned()),
            ("client_id", env("KEYCLOAK_CLIENT_ID")),
            ("client_secret", env("KEYCLOAK_CLIENT_SECRET")),
            ("username", "alice".to_owned()),
            ("password", env("KEYCLOAK_USER_PASSWORD")),
            ("scope", "openid".to_owned()),
        ];
        let answer: Value = support::http()
            .post(&self.url)
            .form(&form)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| {
                panic!("token of alice in realm bench: {e} (run bench/clinical-load, which creates the realm)")
            })
            .json()
            .await
            .expect("token answer");
        answer["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}
