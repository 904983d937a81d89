//! A token bucket per buyer: a session that clicks faster than a person
//! could is answered 429 here, before it costs the seckill server a
//! request. One more bucket holds the console's wrong admin logins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// Buckets idle this long are forgotten (they would be full anyway).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// How many buckets are kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

/// The least time between two sweeps: a sweep walks the whole map, and a
/// crowd of active buyers keeps it over [`SWEEP_AT`] with nothing to sweep.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Requests per second and burst, per buyer.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    by_user: HashMap<u64, Bucket>,
    swept: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` requests a second on average, `burst` at once. A rate
    /// of 0 turns the limit off.
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Takes one request of `user_id`'s, or says how long to wait.
    pub fn check(&self, user_id: u64) -> Result<(), ApiError> {
        self.take(user_id, true)
    }

    /// Whether `user_id` has a request left (else how long to wait),
    /// without taking it.
    pub fn peek(&self, user_id: u64) -> Result<(), ApiError> {
        self.take(user_id, false)
    }

    fn take(&self, user_id: u64, take: bool) -> Result<(), ApiError> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update
        // of a counter: the map is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let due = buckets
            .swept
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY);
        if buckets.by_user.len() >= SWEEP_AT && due {
            buckets
                .by_user
                .retain(|_, b| now.duration_since(b.at) < FORGET_AFTER);
            buckets.swept = Some(now);
        }
        let bucket = buckets.by_user.entry(user_id).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(ApiError::RateLimited {
                retry_after_s: wait.ceil().max(1.0) as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_and_the_next_request_waits() {
        let limiter = RateLimiter::new(1.0, 3);
        for _ in 0..3 {
            limiter.check(1).unwrap();
        }
        assert!(matches!(
            limiter.check(1),
            Err(ApiError::RateLimited { retry_after_s: 1 })
        ));
        // Another buyer has a bucket of their own, which a look leaves as
        // it is.
        for _ in 0..5 {
            limiter.peek(2).unwrap();
        }
        limiter.check(2).unwrap();
        // Off.
        let off = RateLimiter::new(0.0, 1);
        for _ in 0..100 {
            off.check(1).unwrap();
        }
    }
}
