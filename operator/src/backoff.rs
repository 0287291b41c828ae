//! Exponential backoff with jitter for failed reconciles, per object. The delays come from
//! `backon` (the maintained implementation kube-runtime uses too); this keeps one sequence
//! per object and resets it on success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Failure sequences per object, reset on success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    max: Duration,
    sequences: Mutex<HashMap<String, ExponentialBackoff>>,
}

impl Backoff {
    /// Backoff starting at `base` and doubling up to `max`; each delay is stretched by a
    /// random jitter of up to 100 %, so that many failing objects do not retry in lockstep.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            builder: ExponentialBuilder::default()
                .with_min_delay(base)
                .with_max_delay(max)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
            max,
            sequences: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut map = self.sequences.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_owned())
            .or_insert_with(|| self.builder.build())
            .next()
            .unwrap_or(self.max)
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        self.sequences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_their_jitter_and_are_capped() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.failed("t")).collect();
        for (i, d) in delays.iter().take(4).enumerate() {
            let base = Duration::from_secs(2 << i);
            assert!(*d >= base && *d < base * 2, "attempt {i}: {d:?}");
        }
        // Jitter never makes a retry sooner than the previous one while doubling.
        assert!(delays.windows(2).take(3).all(|w| w[1] > w[0]), "{delays:?}");
        assert!(delays[7] >= Duration::from_secs(30) && delays[7] < Duration::from_secs(60));
    }

    #[test]
    fn success_resets_and_objects_are_independent() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..4 {
            backoff.failed("a");
        }
        assert!(
            backoff.failed("b") < Duration::from_secs(2),
            "b inherited a's failures"
        );
        backoff.succeeded("a");
        assert!(backoff.failed("a") < Duration::from_secs(2));
    }
}
