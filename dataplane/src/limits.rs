//! Per-tenant request rate limits, from the catalog's `requests_per_second`.
//!
//! Each tenant has its own token bucket (GCRA, [`governor`]) allowing its rate sustained
//! and a burst of one second's worth, so one noisy tenant exhausts only its own bucket.
//! The bucket is looked up by the tenant's catalog id and rebuilt when the catalog
//! follower brings a changed rate: a limit changed on the Tenant applies without restart.
//!
//! The check runs in the tenant middleware, before authentication: a flood of
//! unauthenticated requests at a tenant's host counts against that tenant only, and never
//! reaches the database.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::catalog::TenantRecord;

/// Buckets kept before idle ones are dropped.
const PRUNE_ABOVE: usize = 64;

/// How long after its last request a bucket is full again (its burst is one second's
/// worth), and so the same as a new one: dropping it then changes nothing.
const REFILLED_AFTER: Duration = Duration::from_secs(1);

/// One tenant's bucket, the rate it was built for and when it was last used.
#[derive(Debug)]
struct Bucket {
    per_second: NonZeroU32,
    limiter: Arc<DefaultDirectRateLimiter>,
    last_used: Instant,
}

impl Bucket {
    fn new(per_second: NonZeroU32, now: Instant) -> Self {
        Self {
            per_second,
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(per_second))),
            last_used: now,
        }
    }
}

/// The buckets of every tenant seen; clones share them.
#[derive(Clone, Debug, Default)]
pub struct RateLimits {
    buckets: Arc<Mutex<HashMap<i64, Bucket>>>,
}

/// A request over its tenant's rate: when the next one would be admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// The tenant's sustained rate.
    pub per_second: u32,
    /// How long until a request would be admitted.
    pub retry_after: Duration,
}

impl Throttled {
    /// `Retry-After` in whole seconds, rounded up and never 0 (RFC 9110 10.2.3).
    pub fn retry_after_seconds(&self) -> u64 {
        let seconds = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        seconds.max(1)
    }
}

/// The rate a catalog row asks for; the CRD's minimum is 1, and a row below it (written
/// by hand) is held to 1 rather than left unlimited.
fn rate_of(tenant: &TenantRecord) -> NonZeroU32 {
    u32::try_from(tenant.requests_per_second)
        .ok()
        .and_then(NonZeroU32::new)
        .unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    /// Counts one request of `tenant`: `Ok` if its bucket admits it.
    pub fn check(&self, tenant: &TenantRecord) -> Result<(), Throttled> {
        let per_second = rate_of(tenant);
        let now = Instant::now();
        let limiter = {
            // A poisoned lock only means another request panicked mid-insert; the map is
            // still a valid map of buckets.
            let mut buckets = self
                .buckets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !buckets.contains_key(&tenant.id) && buckets.len() >= PRUNE_ABOVE {
                // Buckets idle long enough to be full again are new buckets in all but
                // memory: tenants deleted or quiet cost nothing.
                buckets.retain(|_, b| now.duration_since(b.last_used) < REFILLED_AFTER);
            }
            let bucket = buckets
                .entry(tenant.id)
                .or_insert_with(|| Bucket::new(per_second, now));
            if bucket.per_second != per_second {
                *bucket = Bucket::new(per_second, now);
            }
            bucket.last_used = now;
            Arc::clone(&bucket.limiter)
        };
        limiter.check().map_err(|not_until| Throttled {
            per_second: per_second.get(),
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// How many tenants have a bucket.
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether no tenant has a bucket yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Isolation, TenantRow, TenantState};

    fn tenant(id: i64, requests_per_second: i32) -> TenantRecord {
        TenantRecord {
            id,
            row: TenantRow {
                uid: format!("uid-{id}"),
                name: format!("tenant-{id}"),
                display_name: format!("Tenant {id}"),
                hostname: format!("t{id}.example.test"),
                home_region: "us-east-1".into(),
                data_residency: vec!["US".into()],
                isolation: Isolation::Shared,
                state: TenantState::Active,
                requests_per_second,
                max_users: 10,
                generation: 1,
                schema: None,
                database: None,
                database_server: None,
            },
        }
    }

    fn admitted(limits: &RateLimits, t: &TenantRecord, n: usize) -> usize {
        (0..n).filter(|_| limits.check(t).is_ok()).count()
    }

    #[test]
    fn a_tenant_gets_one_seconds_burst_then_429_with_when_to_retry() {
        let limits = RateLimits::default();
        let t = tenant(1, 5);
        assert_eq!(admitted(&limits, &t, 20), 5);
        let throttled = limits.check(&t).expect_err("over the rate");
        assert_eq!(throttled.per_second, 5);
        assert!(
            throttled.retry_after <= Duration::from_millis(200),
            "{throttled:?}"
        );
        assert_eq!(throttled.retry_after_seconds(), 1);
    }

    #[test]
    fn a_noisy_tenant_does_not_use_a_quiet_ones_bucket() {
        let limits = RateLimits::default();
        let (noisy, quiet) = (tenant(1, 3), tenant(2, 3));
        assert_eq!(admitted(&limits, &noisy, 100), 3);
        assert_eq!(admitted(&limits, &quiet, 3), 3);
    }

    #[test]
    fn a_changed_rate_takes_effect_at_once() {
        let limits = RateLimits::default();
        assert_eq!(admitted(&limits, &tenant(1, 2), 10), 2);
        // The follower brings the new row: a fresh bucket at the new rate.
        assert_eq!(admitted(&limits, &tenant(1, 50), 100), 50);
        assert_eq!(limits.len(), 1);
    }

    #[test]
    fn a_rate_below_one_is_held_to_one_not_unlimited() {
        let limits = RateLimits::default();
        assert_eq!(admitted(&limits, &tenant(1, 0), 10), 1);
        assert_eq!(admitted(&limits, &tenant(2, -7), 10), 1);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let throttled = |ms| Throttled {
            per_second: 1,
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(throttled(0).retry_after_seconds(), 1);
        assert_eq!(throttled(1000).retry_after_seconds(), 1);
        assert_eq!(throttled(1001).retry_after_seconds(), 2);
    }

    #[test]
    fn idle_buckets_are_dropped_busy_ones_kept() {
        let limits = RateLimits::default();
        let busy = tenant(0, 1);
        limits.check(&busy).expect("admitted");
        for id in 1..PRUNE_ABOVE as i64 {
            limits.check(&tenant(id, 5)).expect("admitted");
        }
        assert_eq!(limits.len(), PRUNE_ABOVE);
        // Age every bucket but the busy one's past the refill time.
        {
            let mut buckets = limits.buckets.lock().expect("lock");
            for (id, b) in buckets.iter_mut() {
                if *id != 0 {
                    b.last_used -= REFILLED_AFTER;
                }
            }
        }
        limits.check(&tenant(1000, 5)).expect("admitted");
        assert_eq!(limits.len(), 2, "the busy tenant and the new one");
        // The busy tenant kept its (empty) bucket: still throttled.
        assert!(limits.check(&busy).is_err());
    }
}
