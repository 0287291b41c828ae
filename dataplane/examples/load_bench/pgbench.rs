//! pgbench against the bench database, with scripts built from the data plane's own SQL.

use std::path::PathBuf;

use tokio::process::Command;

use super::{LARGE, LARGE_PATIENTS, SMALL_PATIENTS};

/// pgbench against the bench database; tenant ids drawn from `tmin..=tmax`, the first
/// [`LARGE`] of them large.
pub struct Pgbench {
    pub dir: PathBuf,
    pub seconds: usize,
    pub tmin: i64,
    pub tmax: i64,
}

impl Pgbench {
    /// Transactions per second and mean latency (ms) of `script` as `url`'s role.
    pub async fn run(&self, label: &str, script: &str, url: &str) -> (f64, f64) {
        let path = self.dir.join("script.sql");
        std::fs::write(&path, script).expect("write the pgbench script");
        let out = Command::new("pgbench")
            .args(["-n", "-M", "prepared", "-c", "16", "-j", "2"])
            .args(["-T", &self.seconds.to_string()])
            .args(["-D", &format!("tmin={}", self.tmin)])
            .args(["-D", &format!("tmax={}", self.tmax)])
            .args(["-D", &format!("large={LARGE}")])
            .args(["-D", &format!("lp={LARGE_PATIENTS}")])
            .args(["-D", &format!("sp={SMALL_PATIENTS}")])
            .arg("-f")
            .arg(&path)
            .arg(url)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running pgbench: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pgbench ({label}) failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let number = |prefix: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("pgbench ({label}) printed no {prefix:?}: {stdout}"))
        };
        (number("tps = "), number("latency average = "))
    }
}

/// pgbench lines drawing a random tenant `t` (half of the draws among the large ones) and
/// one of its patients `n`.
const DRAW: &str = r"\set r random(1, 2)
\if :r = 1
\set t random(:tmin, :tmin + :large - 1)
\set n random(1, :lp)
\else
\set t random(:tmin + :large, :tmax)
\set n random(1, :sp)
\endif
";

/// `sql` with its parameters `$1..` replaced by pgbench expressions.
fn pgbench_sql(sql: &str, values: &[&str]) -> String {
    let mut out = sql.to_owned();
    // From the highest number down, so `$1` never eats the start of `$10`.
    for (i, value) in values.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), value);
    }
    out
}

/// The pgbench scripts of a Patient read, built from the data plane's own statements
/// (`store::read_sql`, `AuditedRead::statement`, `APPEND_SQL`): `(as sent, as it was sent
/// before the one-round-trip read, the read query alone)`.
pub fn read_scripts() -> (String, String, String) {
    use phoenix_dataplane::audit::store::APPEND_SQL;
    use phoenix_dataplane::db::audited_read::AuditedRead;
    use phoenix_dataplane::fhir::{patient, store};

    let id = "('00000000-0000-4000-8000-' || lpad(:n::text, 12, '0'))";
    let read = store::read_sql(&patient::KIND);
    let read_values = [":t", id, "'Patient'"];
    // The audit entry's values: tenant, actor, action, type, id, query, result ids, status,
    // request id, source.
    let audit_values = [
        ":t",
        "'alice'",
        "'read'",
        "'Patient'",
        id,
        "NULL",
        "NULL",
        "200",
        "'pgbench'",
        "'127.0.0.1'",
    ];
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&0_i64, &"", &""];
    let combined = AuditedRead {
        sql: &read,
        params: &params,
        found: store::READ_FOUND,
    }
    .statement();
    let all: Vec<&str> = read_values.iter().chain(&audit_values).copied().collect();
    // The tenant setting exactly as the data plane sends it (tenant id and search path).
    let begin = format!(
        "\\startpipeline\nBEGIN;\n{};\n",
        pgbench_sql(phoenix_catalog::rls::SET_TENANT_SQL, &[":t::text"])
    );
    let as_sent = format!(
        "{DRAW}{begin}{};\nCOMMIT;\n\\endpipeline\n",
        pgbench_sql(&combined, &all)
    );
    let before = format!(
        "{DRAW}{begin}{};\n\\endpipeline\n\\startpipeline\n{};\nCOMMIT;\n\\endpipeline\n",
        pgbench_sql(&read, &read_values),
        pgbench_sql(APPEND_SQL, &audit_values)
    );
    let query = format!(
        "{DRAW}{begin}{};\nCOMMIT;\n\\endpipeline\n",
        pgbench_sql(&read, &read_values)
    );
    (as_sent, before, query)
}
