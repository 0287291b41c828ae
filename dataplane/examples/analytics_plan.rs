//! The query plan and latency of the encounter analytics on a large tenant among many.
//!
//! ```text
//! source .stack/env
//! cargo run -p phoenix-dataplane --example analytics_plan -- [tenants] [big] [others]
//! ```
//!
//! Provisions a throwaway database with the operator's code (the tests' support, dropped at
//! exit), writes `tenants` tenants (default 100): one large one with `big` encounters
//! (default 20,000) and 2,000 patients, the others `others` encounters each (default 1,000)
//! and 200 patients, all over 2025 and inserted in time order (so every heap page mixes
//! tenants, as a live database does); 90 % finished with an end, 8 departments, 40
//! providers; a note for 70 % of the encounters (5 % of them superseded). Everything is
//! generated in SQL (`generate_series`), then vacuumed and analyzed as autovacuum would.
//! Then, as the data plane role in a tenant
//! transaction under RLS (exactly what a request does), `EXPLAIN (ANALYZE, BUFFERS)` of the
//! data plane's own statement (`analytics::query::statement`) for the large tenant over the
//! whole year for each grouping and over one week, and the median latency of 20 runs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use phoenix_dataplane::analytics::GroupBy;
use phoenix_dataplane::analytics::query::statement;
use support::TestDb;
use tokio_postgres::NoTls;

fn arg(args: &[String], i: usize, default: i64) -> i64 {
    args.get(i).map_or(default, |n| {
        n.parse()
            .unwrap_or_else(|_| panic!("argument {i} must be a number, not {n}"))
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (tenants, big, others) = (
        arg(&args, 0, 100),
        arg(&args, 1, 20_000),
        arg(&args, 2, 1_000),
    );

    let db = TestDb::create().await;
    let mut ids = Vec::new();
    for i in 0..tenants {
        ids.push(
            db.insert_tenant(&format!("t{i:03}"), &format!("t{i:03}.example.org"))
                .await,
        );
    }
    let large = ids[ids.len() / 2];
    let started = Instant::now();
    // The stack runs with synchronous_commit = off, and VACUUM cannot mark a page all-visible
    // while its inserter's commit record may be unflushed: commit these synchronously.
    let generate = format!(
        "SET synchronous_commit = on;
         INSERT INTO clinical.patients (tenant_id, family_name, resource)
         SELECT t, 'Synthetic', '{{\"resourceType\": \"Patient\"}}'::jsonb
         FROM unnest(ARRAY{ids:?}::bigint[]) t,
              generate_series(1, CASE WHEN t = {large} THEN 2000 ELSE 200 END);
         WITH p AS (SELECT tenant_id, array_agg(id) AS ids FROM clinical.patients GROUP BY tenant_id),
         e AS (SELECT p.tenant_id, p.ids[1 + floor(random() * array_length(p.ids, 1))::int] AS patient_id,
                      timestamptz '2025-01-01' + random() * interval '365 days' AS start,
                      random() AS r, floor(random() * 8)::int AS dep, floor(random() * 40)::int AS prov
               FROM p, generate_series(1, CASE WHEN p.tenant_id = {large} THEN {big} ELSE {others} END))
         INSERT INTO clinical.encounters
             (tenant_id, patient_id, status, department, provider, period_start, period_end, resource)
         SELECT tenant_id, patient_id,
                CASE WHEN r < 0.9 THEN 'finished' WHEN r < 0.97 THEN 'in-progress' ELSE 'cancelled' END,
                'dept-' || dep, 'Practitioner/dr-' || prov, start,
                CASE WHEN r < 0.9 THEN start + (10 + random() * 50) * interval '1 minute' END,
                jsonb_build_object('resourceType', 'Encounter', 'status', 'finished',
                    'class', jsonb_build_object('code', 'AMB'),
                    'subject', jsonb_build_object('reference', 'Patient/' || patient_id),
                    'period', jsonb_build_object('start', start))
         FROM e ORDER BY start;
         INSERT INTO clinical.document_references
             (tenant_id, patient_id, encounter_id, status, document_date, resource)
         SELECT tenant_id, patient_id, id,
                CASE WHEN random() < 0.95 THEN 'current' ELSE 'superseded' END,
                period_start + interval '1 hour', '{{\"resourceType\": \"DocumentReference\"}}'::jsonb
         FROM clinical.encounters WHERE random() < 0.7 ORDER BY period_start;"
    );
    db.execute(&generate).await;
    // What autovacuum does to a live database: statistics, and the visibility map that lets
    // index-only scans skip the heap. One statement per call (VACUUM runs outside a block).
    for table in ["patients", "encounters", "document_references"] {
        db.execute(&format!("VACUUM ANALYZE clinical.{table}"))
            .await;
    }
    let admin = db.admin();
    let count = |sql: &'static str| async move {
        let row = admin.query_one(sql, &[]).await.expect(sql);
        row.get::<_, i64>(0)
    };
    println!(
        "generated in {:.1} s: {} tenants, {} encounters ({} of tenant {large}), {} notes",
        started.elapsed().as_secs_f64(),
        tenants,
        count("SELECT count(*) FROM clinical.encounters").await,
        big,
        count("SELECT count(*) FROM clinical.document_references").await,
    );

    let (client, connection) = tokio_postgres::connect(&db.dataplane_url(), NoTls)
        .await
        .expect("connect as the data plane role");
    tokio::spawn(connection);
    let tenant = large.to_string();
    let cases = [
        (GroupBy::Day, "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        (
            GroupBy::Department,
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
        ),
        (
            GroupBy::Provider,
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
        ),
        (GroupBy::Day, "2025-06-02T00:00:00Z", "2025-06-09T00:00:00Z"),
    ];
    for (group_by, from, to) in cases {
        let sql = statement(group_by);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&large, &from, &to];
        client.batch_execute("BEGIN").await.expect("begin");
        client
            .query_one("SELECT set_config('app.tenant_id', $1, true)", &[&tenant])
            .await
            .expect("set the tenant");
        let plan = client
            .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), &params)
            .await
            .expect("explain");
        let mut times = Vec::new();
        let mut groups = 0;
        for _ in 0..20 {
            let t = Instant::now();
            groups = client.query(&sql, &params).await.expect("query").len();
            times.push(t.elapsed());
        }
        client.batch_execute("COMMIT").await.expect("commit");
        times.sort();
        println!(
            "\n### groupBy={} from={from} to={to}: {groups} groups, median {:.2} ms, max {:.2} ms (20 runs)\n",
            group_by.as_str(),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
        );
        for row in plan {
            println!("{}", row.get::<_, String>(0));
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
