//! When a round of changes closes: it keeps gathering while changes keep arriving (each
//! one gives the others another quiet period to join), closes once none came for the quiet
//! period or its oldest change has waited the maximum delay, and closes at once when it
//! fills one ChangeResourceRecordSets request. A caller whose changes would overflow the
//! request is carried to the next round, so rounds are whole requests.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::dns::batch::Limits;

/// How long a round gathers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundPolicy {
    /// The round closes once no change arrived for this long.
    pub quiet: Duration,
    /// ... or once its first change has waited this long.
    pub max_delay: Duration,
    /// ... or as soon as it fills one request of these limits.
    pub limits: Limits,
}

/// What ended a round (for tests and the debug log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Nothing arrived for the quiet period.
    Quiet,
    /// The first change waited the maximum delay.
    MaxDelay,
    /// The round fills a request (what came next, if anything, waits for the next round).
    Full,
    /// Every sender is gone.
    Hangup,
}

/// One gathered round.
#[derive(Debug)]
pub struct Round<T> {
    /// The callers' changes, in arrival order.
    pub items: Vec<T>,
    /// What arrived but did not fit; it opens the next round.
    pub carried: Option<T>,
    /// Why the round closed.
    pub closed: Closed,
}

/// Gathers a round starting with `first`, taking more from `rx` as `policy` allows;
/// `cost` is what an item costs of a request (`ResourceRecord` elements, characters).
pub async fn gather<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    first: T,
    policy: &RoundPolicy,
    cost: impl Fn(&T) -> (usize, usize),
) -> Round<T> {
    let deadline = Instant::now() + policy.max_delay;
    let (mut elements, mut chars) = cost(&first);
    let mut items = vec![first];
    let full = |e: usize, c: usize| e >= policy.limits.elements || c >= policy.limits.chars;
    loop {
        if full(elements, chars) {
            return Round {
                items,
                carried: None,
                closed: Closed::Full,
            };
        }
        let quiet_end = Instant::now() + policy.quiet;
        let (until, on_timeout) = if quiet_end < deadline {
            (quiet_end, Closed::Quiet)
        } else {
            (deadline, Closed::MaxDelay)
        };
        let next = match tokio::time::timeout_at(until, rx.recv()).await {
            Err(_) => {
                return Round {
                    items,
                    carried: None,
                    closed: on_timeout,
                };
            }
            Ok(None) => {
                return Round {
                    items,
                    carried: None,
                    closed: Closed::Hangup,
                };
            }
            Ok(Some(next)) => next,
        };
        let (e, c) = cost(&next);
        if elements + e > policy.limits.elements || chars + c > policy.limits.chars {
            return Round {
                items,
                carried: Some(next),
                closed: Closed::Full,
            };
        }
        elements += e;
        chars += c;
        items.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RoundPolicy = RoundPolicy {
        quiet: Duration::from_millis(500),
        max_delay: Duration::from_secs(5),
        limits: Limits {
            elements: 10,
            chars: 1000,
        },
    };

    /// Items cost their value in elements and nothing in characters.
    fn elements(n: &usize) -> (usize, usize) {
        (*n, 0)
    }

    /// Sends `items` one after another, `gap` apart, from a task (time is paused: the
    /// sleeps are virtual and exact).
    fn arriving(items: Vec<usize>, gap: Duration) -> mpsc::UnboundedReceiver<usize> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for i in items {
                tokio::time::sleep(gap).await;
                if tx.send(i).is_err() {
                    return;
                }
            }
            // Keep the channel open: a round must close by time, not by hang-up.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_keeps_gathering_while_changes_keep_arriving() {
        // Ten changes 400 ms apart: each arrives within the quiet period of the last.
        // Costs of 0 keep the round from filling.
        let mut rx = arriving(vec![0; 10], Duration::from_millis(400));
        let round = gather(&mut rx, 0, &POLICY, elements).await;
        // 1 + 10 = 11 items over 4 s, within the 5 s maximum delay; then 500 ms quiet.
        assert_eq!(round.items.len(), 11);
        assert_eq!(round.closed, Closed::Quiet);
        assert!(round.carried.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_closes_after_the_quiet_period() {
        let mut rx = arriving(vec![0, 0, 0], Duration::from_millis(600));
        let round = gather(&mut rx, 0, &POLICY, elements).await;
        // The first one arrives 600 ms later: after the 500 ms quiet period.
        assert_eq!(round.items.len(), 1);
        assert_eq!(round.closed, Closed::Quiet);
        // The next round picks the late ones up.
        let first = rx.recv().await.expect("next");
        let round = gather(&mut rx, first, &POLICY, elements).await;
        assert_eq!(round.items.len(), 1, "600 ms apart: each its own round");
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_that_keeps_receiving_closes_at_the_maximum_delay() {
        let mut rx = arriving(vec![0; 100], Duration::from_millis(100));
        let started = Instant::now();
        let round = gather(&mut rx, 0, &POLICY, elements).await;
        assert_eq!(round.closed, Closed::MaxDelay);
        assert_eq!(started.elapsed(), POLICY.max_delay);
        // 100 ms apart for 5 s: the first plus 50 (the one due at 5 s may fall either
        // side of the deadline).
        assert!(
            (50..=51).contains(&round.items.len()),
            "{}",
            round.items.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_round_is_sent_at_once() {
        let mut rx = arriving(vec![4, 4, 4], Duration::from_millis(10));
        let started = Instant::now();
        let round = gather(&mut rx, 2, &POLICY, elements).await;
        // 2 + 4 + 4 = 10 elements fill the request: no quiet period is waited.
        assert_eq!(round.items, vec![2, 4, 4]);
        assert_eq!(round.closed, Closed::Full);
        assert!(round.carried.is_none());
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_would_overflow_the_request_opens_the_next_round() {
        let mut rx = arriving(vec![4, 4, 4], Duration::from_millis(10));
        let round = gather(&mut rx, 3, &POLICY, elements).await;
        // 3 + 4 = 7; another 4 would make 11 > 10: it waits for the next round.
        assert_eq!(round.items, vec![3, 4]);
        assert_eq!(round.carried, Some(4));
        assert_eq!(round.closed, Closed::Full);
        let next = gather(&mut rx, round.carried.expect("carried"), &POLICY, elements).await;
        assert_eq!(next.items, vec![4, 4]);
        assert_eq!(next.closed, Closed::Quiet);
    }

    #[tokio::test(start_paused = true)]
    async fn characters_fill_a_round_too() {
        let mut rx = arriving(vec![1, 1], Duration::from_millis(10));
        let round = gather(&mut rx, 1, &POLICY, |_| (1, 600)).await;
        // 600 + 600 > 1,000 characters.
        assert_eq!(round.items.len(), 1);
        assert_eq!(round.carried, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
        tx.send(1).expect("send");
        drop(tx);
        let round = gather(&mut rx, 0, &POLICY, elements).await;
        assert_eq!(round.items, vec![0, 1]);
        assert_eq!(round.closed, Closed::Hangup);
    }
}
