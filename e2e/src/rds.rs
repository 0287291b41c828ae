//! RDS in the stack's moto, read through the real SDK: the instances of RDS regions; and
//! what the RDS Region tests set up around them (the CA and master password Secrets, the
//! endpoint map to the stack's server standing in for the instances, the master user RDS
//! would have made, and the cleanup afterwards).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{NAMESPACE, Process, kubectl_ok, pg, secret_yaml, stack_var, try_kubectl};
use aws_sdk_rds::Client;

/// A client for the stack's moto (`AWS_ENDPOINT_URL`).
pub async fn client(aws_region: &str) -> Client {
    let _ = stack_var("AWS_ENDPOINT_URL");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new(aws_region.to_owned()))
        .load()
        .await;
    Client::new(&config)
}

/// The host moto reports for instance `identifier` in `aws_region` (moto's fixed
/// pattern; a test that maps it fails visibly if moto changes it).
pub fn moto_host(identifier: &str, aws_region: &str) -> String {
    format!("{identifier}.aaaaaaaaaa.{aws_region}.rds.amazonaws.com")
}

/// Eight hex digits from the clock, for names unique per run (moto keeps instances for the
/// stack's life).
pub fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:08x}", nanos % 0xffff_ffff)
}

/// Applies Secret `<region>-ca` holding the stack's PostgreSQL CA (`PG_CA_FILE`).
pub fn apply_stack_ca(region: &str) {
    let ca = std::fs::read_to_string(stack_var("PG_CA_FILE")).expect("read PG_CA_FILE");
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret_yaml(&format!("{region}-ca"), "ca.crt", &ca)),
    );
}

/// The endpoint map sending `identifiers`' moto endpoints in `aws_region` to the stack's
/// server of that region (`PG_PORT_EU_WEST_1` for eu-west-1).
pub fn stack_endpoint_map<S: AsRef<str>>(identifiers: &[S], aws_region: &str) -> String {
    let port = stack_var(&format!(
        "PG_PORT_{}",
        aws_region.to_uppercase().replace('-', "_")
    ));
    identifiers
        .iter()
        .map(|id| format!("{}=127.0.0.1:{port}", moto_host(id.as_ref(), aws_region)))
        .collect::<Vec<_>>()
        .join(",")
}

/// An operator (`resync_seconds`) with the endpoint map `map` and `extra` environment.
pub async fn operator(resync_seconds: u64, map: &str, extra: &[(&str, &str)]) -> Process {
    let mut env = vec![("PHOENIX_RDS_ENDPOINT_MAP", map)];
    env.extend_from_slice(extra);
    Process::operator_with("e2e-operator", resync_seconds, &env).await
}

/// What RDS does for the master user, done on the stack's server of `aws_region`: a login
/// with CREATEROLE and CREATEDB, not a superuser, with `password`.
pub async fn create_master_user(aws_region: &str, master: &str, password: &str) {
    pg(aws_region)
        .await
        .batch_execute(&format!(
            "CREATE ROLE {master} LOGIN CREATEROLE CREATEDB NOSUPERUSER PASSWORD '{password}'"
        ))
        .await
        .expect("the master user");
}

/// The tags of the RDS resource `arn`, as (key, value).
pub async fn tags(client: &Client, arn: &str) -> Vec<(String, String)> {
    client
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .expect("tags")
        .tag_list()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The value of tag `key` among `tags`.
pub fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Deletes an RDS Region and its Secrets (while the operator still runs), then what the
/// stand-in server of `aws_region` holds for it: the region's and its Dedicated tenants'
/// (`hexes`) databases and roles, when dropped.
pub struct RegionCleanup {
    pub aws_region: &'static str,
    pub region: String,
    pub dbname: String,
    pub master: String,
    pub hexes: Vec<String>,
}

impl RegionCleanup {
    /// The cleanup of Region `region` (database `dbname`, master user `master`), with no
    /// Dedicated tenants yet.
    pub fn new(aws_region: &'static str, region: &str, dbname: &str, master: &str) -> Self {
        Self {
            aws_region,
            region: region.to_owned(),
            dbname: dbname.to_owned(),
            master: master.to_owned(),
            hexes: Vec::new(),
        }
    }
}

impl Drop for RegionCleanup {
    fn drop(&mut self) {
        let _ = try_kubectl(
            &[
                "delete",
                "region",
                &self.region,
                "--ignore-not-found",
                "--timeout=60s",
            ],
            None,
        );
        let mut secrets = vec![
            format!("{}-master", self.region),
            format!("{}-ca", self.region),
        ];
        secrets.extend(
            self.hexes
                .iter()
                .map(|h| format!("phoenix-tenant-{h}-master")),
        );
        let mut args = vec!["delete", "secret", "-n", NAMESPACE, "--ignore-not-found"];
        args.extend(secrets.iter().map(String::as_str));
        let _ = try_kubectl(&args, None);
        let (aws_region, dbname, master, region, hexes) = (
            self.aws_region,
            self.dbname.clone(),
            self.master.clone(),
            self.region.replace('-', "_"),
            self.hexes.clone(),
        );
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let db = pg(aws_region).await;
                let mut databases = vec![dbname];
                databases.extend(hexes.iter().map(|h| format!("tdb_{h}")));
                for d in databases {
                    let _ = db
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {d} WITH (FORCE)"))
                        .await;
                }
                let mut roles: Vec<String> = db
                    .query(
                        "SELECT rolname FROM pg_roles WHERE rolname = $1 OR rolname LIKE '%' || $2",
                        &[&master, &region],
                    )
                    .await
                    .ok()?
                    .into_iter()
                    .map(|r| r.get(0))
                    .collect();
                for h in &hexes {
                    roles.push(format!("phoenix_tenant_{h}"));
                    roles.push(format!("phoenix_master_{h}"));
                }
                for role in roles {
                    let _ = db
                        .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                        .await;
                }
                Some(())
            })
        })
        .join();
    }
}
