//! Exponential backoff with jitter for failed reconciles, per object.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Failure counts per object, reset on success.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Backoff starting at `base`, capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let n = {
            let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(key.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let jitter: f64 = rand::random_range(0.8..1.2);
        delay(self.base, self.max, n, jitter)
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// `base * 2^(attempt-1)`, capped at `max`, scaled by `jitter`.
pub fn delay(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    raw.mul_f64(jitter.clamp(0.5, 1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_is_capped() {
        let b = Duration::from_secs(2);
        let m = Duration::from_secs(300);
        assert_eq!(delay(b, m, 1, 1.0), Duration::from_secs(2));
        assert_eq!(delay(b, m, 2, 1.0), Duration::from_secs(4));
        assert_eq!(delay(b, m, 5, 1.0), Duration::from_secs(32));
        assert_eq!(delay(b, m, 40, 1.0), m);
    }

    #[test]
    fn failures_grow_until_success_resets_them() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let first = backoff.failed("t");
        let _ = backoff.failed("t");
        let third = backoff.failed("t");
        assert!(third > first, "{third:?} should exceed {first:?}");
        backoff.succeeded("t");
        assert!(backoff.failed("t") <= Duration::from_millis(1200));
    }
}
