//! A test and development facility: `PHOENIX_RDS_ENDPOINT_MAP` maps the endpoint RDS
//! reports for an instance to where the operator really connects. moto answers the RDS
//! API but its endpoints cannot be connected (docs/adr/0012), so the local stack and the
//! tests map them to a real local PostgreSQL. TLS is still verified (`verify-full`)
//! against the mapped host name, so a local server's certificate must name it.
//!
//! Format: comma-separated `<rds host>[:<port>]=<host>:<port>` entries, e.g.
//! `db1.abc.eu-west-1.rds.amazonaws.com=127.0.0.1:5433`. An entry without a port matches
//! any port of that host. Unset or empty in production: endpoints are used as reported.

use std::collections::BTreeMap;

/// Environment variable holding the map.
pub const ENV: &str = "PHOENIX_RDS_ENDPOINT_MAP";

/// Where reported endpoints are really reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointMap {
    // (host, port or None for any) -> (host, port)
    entries: BTreeMap<(String, Option<u16>), (String, u16)>,
}

/// Why the map does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ENV} entry {entry:?} is not `<rds host>[:<port>]=<host>:<port>`: {reason}")]
pub struct InvalidMap {
    /// The entry.
    pub entry: String,
    /// What is wrong.
    pub reason: &'static str,
}

fn host_port(s: &str) -> Option<(String, Option<u16>)> {
    match s.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), Some(port.parse().ok()?))),
        None => Some((s.to_owned(), None)),
    }
}

impl EndpointMap {
    /// Parses `text` (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, InvalidMap> {
        let mut entries = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = |reason| InvalidMap {
                entry: entry.to_owned(),
                reason,
            };
            let (from, to) = entry.split_once('=').ok_or(invalid("no '='"))?;
            let (from_host, from_port) = host_port(from.trim()).ok_or(invalid("bad RDS port"))?;
            let (to_host, to_port) = host_port(to.trim()).ok_or(invalid("bad target port"))?;
            let to_port = to_port.ok_or(invalid("the target needs a port"))?;
            if from_host.is_empty() || to_host.is_empty() {
                return Err(invalid("empty host"));
            }
            entries.insert(
                (from_host.to_ascii_lowercase(), from_port),
                (to_host, to_port),
            );
        }
        Ok(Self { entries })
    }

    /// The map in the environment (empty when unset).
    pub fn from_env() -> Result<Self, InvalidMap> {
        Self::parse(&std::env::var(ENV).unwrap_or_default())
    }

    /// Where `host:port` is really reached: the exact entry, else the host's any-port
    /// entry, else itself.
    pub fn resolve(&self, host: &str, port: u16) -> (String, u16) {
        let host_key = host.to_ascii_lowercase();
        self.entries
            .get(&(host_key.clone(), Some(port)))
            .or_else(|| self.entries.get(&(host_key, None)))
            .cloned()
            .unwrap_or_else(|| (host.to_owned(), port))
    }

    /// Whether `host:port` has an entry: the server reached there stands in for an RDS
    /// instance (a failover promotes it as RDS would, `controller::region::failover`).
    pub fn maps(&self, host: &str, port: u16) -> bool {
        let host_key = host.to_ascii_lowercase();
        self.entries.contains_key(&(host_key.clone(), Some(port)))
            || self.entries.contains_key(&(host_key, None))
    }

    /// Whether it maps nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_map_exact_ports_first_then_any_port() {
        let map = EndpointMap::parse(
            " db1.x.eu-west-1.rds.amazonaws.com:5432=127.0.0.1:5433 , DB2.x.rds.amazonaws.com=localhost:6000",
        )
        .expect("valid");
        assert_eq!(
            map.resolve("db1.x.eu-west-1.rds.amazonaws.com", 5432),
            ("127.0.0.1".to_owned(), 5433)
        );
        assert_eq!(
            map.resolve("db1.x.eu-west-1.rds.amazonaws.com", 5439),
            ("db1.x.eu-west-1.rds.amazonaws.com".to_owned(), 5439),
            "another port is not mapped"
        );
        assert_eq!(
            map.resolve("db2.x.rds.amazonaws.com", 1234),
            ("localhost".to_owned(), 6000)
        );
        assert!(map.maps("DB1.x.eu-west-1.rds.amazonaws.com", 5432));
        assert!(!map.maps("db1.x.eu-west-1.rds.amazonaws.com", 5439));
        assert!(map.maps("db2.x.rds.amazonaws.com", 1));
        assert!(!map.maps("db3.x.rds.amazonaws.com", 5432));
        assert!(EndpointMap::parse("").expect("empty").is_empty());
    }

    #[test]
    fn malformed_entries_are_refused_with_the_entry() {
        for bad in ["a", "a=b", "a=b:x", "a:x=b:1", "=b:1"] {
            let e = EndpointMap::parse(bad).expect_err(bad);
            assert_eq!(e.entry, bad);
        }
    }
}
