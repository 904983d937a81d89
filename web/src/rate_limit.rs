//! A token bucket per buyer: a session that clicks faster than a person
//! could is answered 429 here, before it costs the seckill server a
//! request. The console's wrong admin logins are counted the same way, per
//! address and all together, and the demo logins per address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Extension;

use crate::error::ApiError;

/// Buckets idle this long are forgotten (they would be full anyway).
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// How many buckets are kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

/// The least time between two sweeps: a sweep walks the whole map, and a
/// crowd of active buyers keeps it over [`SWEEP_AT`] with nothing to sweep.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Buckets kept at most: a flood of distinct keys (addresses of a routed
/// IPv6 prefix, buyers made up by the demo login) would otherwise grow the
/// map by all it brings in a minute ([`FORGET_AFTER`]).
const MAX_BUCKETS: usize = 1 << 20;

/// Requests per second and burst, per key: a buyer's user id, or an
/// address ([`address_key`]).
#[derive(Debug)]
pub struct RateLimiter<K = u64> {
    per_second: f64,
    burst: f64,
    /// Buckets kept at most ([`MAX_BUCKETS`]).
    cap: usize,
    buckets: Mutex<Buckets<K>>,
}

#[derive(Debug)]
struct Buckets<K> {
    by_user: HashMap<K, Bucket>,
    swept: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_second` requests a second on average, `burst` at once. A rate
    /// of 0 turns the limit off.
    pub fn new(per_second: f64, burst: u32) -> RateLimiter<K> {
        Self::with_cap(per_second, burst, MAX_BUCKETS)
    }

    fn with_cap(per_second: f64, burst: u32, cap: usize) -> RateLimiter<K> {
        RateLimiter {
            per_second,
            burst: f64::from(burst.max(1)),
            cap: cap.max(1),
            buckets: Mutex::new(Buckets {
                by_user: HashMap::new(),
                swept: None,
            }),
        }
    }

    /// Takes one request of `user_id`'s, or says how long to wait.
    pub fn check(&self, user_id: K) -> Result<(), ApiError> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.lock();
        let due = buckets
            .swept
            .is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY);
        if buckets.by_user.len() >= SWEEP_AT && due {
            buckets
                .by_user
                .retain(|_, b| now.duration_since(b.at) < FORGET_AFTER);
            buckets.swept = Some(now);
        }
        if buckets.by_user.len() >= self.cap && !buckets.by_user.contains_key(&user_id) {
            // At the cap, a new key first forgets the buckets that have
            // refilled (a full bucket is the same as none), then, if that
            // leaves the map more than three quarters full (a flood of
            // distinct keys), all of them. Forgetting only ever lets a key
            // through early; it never refuses one wrongly.
            let (rate, burst) = (self.per_second, self.burst);
            buckets
                .by_user
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.by_user.len() >= self.cap / 4 * 3 {
                buckets.by_user.clear();
            }
        }
        let bucket = buckets.by_user.entry(user_id).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(ApiError::RateLimited {
                retry_after_s: wait.ceil().max(1.0) as u64,
            })
        }
    }

    /// Returns a request [`check`](Self::check) took for `user_id`, when
    /// what it was taken for turned out not to count (a right admin token:
    /// only wrong ones are limited). Taking first and giving back, rather
    /// than looking first and taking after, leaves no moment in which
    /// requests on several runtime threads all see the last one.
    pub fn give_back(&self, user_id: K) {
        if self.per_second <= 0.0 {
            return;
        }
        if let Some(bucket) = self.lock().by_user.get_mut(&user_id) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets<K>> {
        // A poisoned lock only means another request panicked mid-update
        // of a counter: the map is still usable.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The key an address is counted under: an IPv4 address (also one mapped
/// into IPv6) by itself, an IPv6 address by its /64, which one host
/// usually has whole.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// The key a request is counted under by where it came from
/// ([`address_key`] of its peer, which `serve` hands every request). A
/// request served otherwise (a test's, through the router alone) has no
/// peer: counted as one address, the unspecified one.
pub fn peer_key(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> IpAddr {
    peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| {
        address_key(p.0 .0.ip())
    })
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
        // A request given back can be taken again, never past the burst;
        // another buyer's bucket is their own.
        limiter.give_back(1);
        limiter.check(1).unwrap();
        assert!(limiter.check(1).is_err());
        for _ in 0..5 {
            limiter.give_back(2);
        }
        for _ in 0..3 {
            limiter.check(2).unwrap();
        }
        assert!(limiter.check(2).is_err());
        // Off.
        let off = RateLimiter::new(0.0, 1);
        for _ in 0..100 {
            off.check(1).unwrap();
        }
    }

    /// A flood of distinct keys keeps the map within its cap: the refilled
    /// buckets go first, then, if too many are left, all of them; a key
    /// whose bucket is kept is still limited.
    #[test]
    fn the_buckets_are_capped() {
        let limiter = RateLimiter::with_cap(0.001, 1, 8);
        for key in 0..1000u64 {
            limiter.check(key).unwrap();
            assert!(limiter.lock().by_user.len() <= 8, "key {key}");
        }
        // The last key's bucket is kept (forgotten only for a new key).
        assert!(limiter.check(999).is_err());
        // Refilled buckets are forgotten first: one a second, and a key
        // kept empty by a request since survives a new key's arrival.
        let quick = RateLimiter::with_cap(1.0, 1, 4);
        for key in 0..4u64 {
            quick.check(key).unwrap();
        }
        std::thread::sleep(Duration::from_millis(1100));
        quick.check(3).unwrap();
        quick.check(4).unwrap();
        let kept: Vec<u64> = {
            let mut keys: Vec<u64> = quick.lock().by_user.keys().copied().collect();
            keys.sort_unstable();
            keys
        };
        assert_eq!(kept, [3, 4], "the refilled ones forgotten");
    }

    #[test]
    fn an_address_counts_as_itself_or_its_ipv6_64() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), key("::ffff:192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_eq!(
            key("2001:db8:1:2::1"),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
