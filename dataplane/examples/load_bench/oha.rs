//! oha runs over URL files, and their results as table rows.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use super::host;

/// One oha run over a URL file, every host connected to the data plane.
pub struct Oha {
    pub bin: PathBuf,
    pub tenants: usize,
    pub port: u16,
    pub seconds: usize,
}

pub struct OhaResult(Value);

impl Oha {
    /// At `rate` requests per second (or closed loop), for the step's duration (or for
    /// `requests` requests when not 0).
    pub async fn run(
        &self,
        urls: &Path,
        token: &str,
        rate: Option<u32>,
        requests: usize,
        extra: &[&str],
    ) -> OhaResult {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--no-tui",
            "--output-format",
            "json",
            "-c",
            "50",
            "-t",
            "10s",
        ])
        .arg("--urls-from-file")
        .arg(urls)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-A", "application/fhir+json"]);
        if requests > 0 {
            cmd.args(["-n", &requests.to_string()]);
        } else {
            cmd.args(["-z", &format!("{}s", self.seconds), "-w"]);
        }
        if let Some(rate) = rate {
            cmd.args(["-q", &rate.to_string(), "--latency-correction"]);
        }
        for t in 0..self.tenants {
            cmd.arg("--connect-to").arg(format!(
                "{}:{port}:127.0.0.1:{port}",
                host(t),
                port = self.port
            ));
        }
        cmd.args(extra);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        assert!(
            out.status.success(),
            "oha failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OhaResult(serde_json::from_slice(&out.stdout).expect("oha's JSON"))
    }
}

impl OhaResult {
    /// Responses received, whatever their status.
    pub fn requests(&self) -> u64 {
        self.0["statusCodeDistribution"]
            .as_object()
            .map_or(0, |codes| codes.values().filter_map(Value::as_u64).sum())
    }

    /// Responses with a 2xx status.
    pub fn ok(&self) -> u64 {
        self.requests() - self.not_2xx()
    }

    fn not_2xx(&self) -> u64 {
        self.0["statusCodeDistribution"]
            .as_object()
            .map_or(0, |codes| {
                codes
                    .iter()
                    .filter(|(code, _)| !code.starts_with('2'))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
    }

    fn ms(&self, percentile: &str) -> f64 {
        self.0["latencyPercentiles"][percentile]
            .as_f64()
            .unwrap_or(f64::NAN)
            * 1000.0
    }

    pub fn row(&self, label: &str, rate: Option<u32>, rss_mib: f64) -> String {
        let codes = self.0["statusCodeDistribution"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let not_2xx = self.not_2xx();
        let errors: u64 = self.0["errorDistribution"]
            .as_object()
            .map(|e| e.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        format!(
            "| {label} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {not_2xx}{} | {errors} | {rss_mib:.1} |",
            rate.map_or("max".to_owned(), |r| r.to_string()),
            self.0["summary"]["requestsPerSec"]
                .as_f64()
                .unwrap_or(f64::NAN),
            self.ms("p50"),
            self.ms("p95"),
            self.ms("p99"),
            self.0["summary"]["slowest"].as_f64().unwrap_or(f64::NAN) * 1000.0,
            if not_2xx > 0 {
                format!(" {codes:?}")
            } else {
                String::new()
            },
        )
    }
}
