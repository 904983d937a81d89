//! The per-user BUY rate limit: a token bucket per user id, shared by every
//! reactor (a bot that spreads its BUYs over many connections is still one
//! user). The acceptor keeps one more, keyed by client address, for
//! `--accept-rate-per-ip`, and HELLO one of wrong admin tokens per address.
//!
//! Buckets live in a fixed number of locked shards, so reactors rarely
//! contend. Memory is bounded: a shard that grows past its share of
//! `MAX_USERS` first forgets the buckets that have refilled (a full bucket
//! is the same as none), then, under a flood of distinct user ids, all of
//! them. Forgetting a bucket only ever lets a user through early; it never
//! refuses one wrongly.

use std::time::Instant;

use parking_lot::Mutex;

use crate::store::{UserId, UserMap};

const SHARDS: usize = 64;
/// Users tracked at most, over all shards.
const MAX_USERS: usize = 1 << 20;

pub struct RateLimiter {
    /// Tokens per millisecond; 0 disables the limit.
    per_ms: f64,
    burst: f64,
    start: Instant,
    /// Mixed into a user id before its shard is picked, at random per
    /// process: without it, a client could choose ids that all land in one
    /// shard (its lock then taken by every reactor, its share of
    /// `MAX_USERS` filled 64 times sooner).
    shard_key: u64,
    shards: Box<[Mutex<UserMap<Bucket>>]>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// Milliseconds since `start` when `tokens` was computed.
    at_ms: u64,
}

impl RateLimiter {
    /// `rate` requests per second on average, `burst` at once.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            per_ms: rate / 1000.0,
            burst: f64::from(burst.max(1)),
            start: Instant::now(),
            // Without the system's randomness the key is fixed: the shards
            // are then only predictable, as they were before it.
            shard_key: getrandom::u64().unwrap_or(0x243F_6A88_85A3_08D3),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(UserMap::default()))
                .collect(),
        }
    }

    /// Takes a token for `user` if one is left.
    pub fn allow(&self, user: UserId) -> bool {
        self.allow_at(user, self.start.elapsed().as_millis() as u64)
    }

    /// Returns a token [`allow`](Self::allow) took for `user`, when what it
    /// was taken for turned out not to count (a right admin token: only
    /// wrong ones are limited). Taking first and giving back, rather than
    /// looking first and taking after, leaves no moment in which requests
    /// on several reactors all see the last token.
    pub fn give_back(&self, user: UserId) {
        if self.per_ms <= 0.0 {
            return;
        }
        if let Some(bucket) = self.shard(user).lock().get_mut(&user) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    fn shard(&self, user: UserId) -> &Mutex<UserMap<Bucket>> {
        // User ids may be sequential: mix them, keyed, before picking a
        // shard.
        let shard =
            ((user ^ self.shard_key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS;
        &self.shards[shard]
    }

    fn allow_at(&self, user: UserId, now_ms: u64) -> bool {
        if self.per_ms <= 0.0 {
            return true;
        }
        let mut buckets = self.shard(user).lock();
        if buckets.len() >= MAX_USERS / SHARDS && !buckets.contains_key(&user) {
            self.forget(&mut buckets, now_ms);
        }
        let bucket = buckets.entry(user).or_insert(Bucket {
            tokens: self.burst,
            at_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.at_ms) as f64;
        bucket.tokens = (bucket.tokens + elapsed * self.per_ms).min(self.burst);
        bucket.at_ms = now_ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn forget(&self, buckets: &mut UserMap<Bucket>, now_ms: u64) {
        let (per_ms, burst) = (self.per_ms, self.burst);
        buckets.retain(|_, b| b.tokens + now_ms.saturating_sub(b.at_ms) as f64 * per_ms < burst);
        if buckets.len() >= MAX_USERS / SHARDS / 2 {
            buckets.clear();
        }
    }
}

/// An address as a rate limiter's key: IPv4 as it is; IPv6 by its /64
/// prefix, the block one subscriber gets (keyed per address, one host
/// could take a fresh allowance from each of its 2^64 addresses); above
/// every IPv4 key.
pub fn address_key(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u64::from(u32::from(v4)),
            None => {
                let octets = v6.octets();
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&octets[..8]);
                // A prefix as small as an IPv4 key (::/32, reserved) is
                // moved above them all.
                match u64::from_be_bytes(prefix) {
                    small if small <= u64::from(u32::MAX) => small | 1 << 63,
                    prefix => prefix,
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::new(10.0, 3); // one token per 100 ms
        assert!((0..3).all(|_| limiter.allow_at(7, 0)));
        assert!(!limiter.allow_at(7, 0));
        assert!(!limiter.allow_at(7, 99));
        assert!(limiter.allow_at(7, 100));
        assert!(!limiter.allow_at(7, 150));
        // Other users have their own buckets.
        assert!(limiter.allow_at(8, 150));
        // A long pause refills to the burst, not beyond.
        assert!((0..3).all(|_| limiter.allow_at(7, 10_000)));
        assert!(!limiter.allow_at(7, 10_000));
    }

    #[test]
    fn a_token_given_back_can_be_taken_again_up_to_the_burst() {
        let limiter = RateLimiter::new(0.001, 2);
        assert!(limiter.allow(7) && limiter.allow(7));
        assert!(!limiter.allow(7));
        limiter.give_back(7);
        assert!(limiter.allow(7));
        assert!(!limiter.allow(7));
        // Never past the burst, and nothing for a user never seen.
        for _ in 0..5 {
            limiter.give_back(7);
        }
        limiter.give_back(8);
        assert!(limiter.allow(7) && limiter.allow(7));
        assert!(!limiter.allow(7));
    }

    #[test]
    fn an_ipv6_address_is_keyed_by_its_64_bit_prefix() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert!(key("::1") > u64::from(u32::MAX));
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let limiter = RateLimiter::new(0.0, 1);
        assert!((0..1000).all(|_| limiter.allow_at(1, 0)));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_users() {
        let limiter = RateLimiter::new(1.0, 5);
        for user in 0..(MAX_USERS as u64 * 2) {
            limiter.allow_at(user, 0);
        }
        let tracked: usize = limiter.shards.iter().map(|s| s.lock().len()).sum();
        assert!(tracked <= MAX_USERS, "{tracked} buckets");
    }
}
