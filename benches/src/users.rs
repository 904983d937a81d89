//! Who makes each attempt of a flash crowd, and a small seeded PRNG.
//!
//! Attempts are numbered 0, 1, 2, … across every connection. They are cut
//! into rounds of `users` attempts; each round visits every user exactly
//! once, in an order of its own. So with N ≥ U attempts every user is tried
//! at least once, and the attempts past the first round are retries by users
//! who have already tried, which is how `already_bought` shows up.

/// Maps attempt numbers to user ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPicker {
    users: u64,
    first: u64,
    seed: u64,
}

impl UserPicker {
    /// `users` distinct users, with ids `first`, `first + 1`, …
    pub fn new(users: u64, first: u64, seed: u64) -> UserPicker {
        UserPicker {
            users: users.max(1),
            first,
            seed,
        }
    }

    pub fn users(&self) -> u64 {
        self.users
    }

    /// The user who makes attempt `attempt`.
    pub fn user(&self, attempt: u64) -> u64 {
        let round = attempt / self.users;
        let pos = attempt % self.users;
        self.first + permute(pos, self.users, splitmix(self.seed ^ splitmix(round)))
    }
}

/// A bijection of `0..n`, chosen by `key`: `x ↦ (a·x + b) mod n` with `a`
/// coprime to `n`. Not a strong shuffle, but it spreads neighbours apart and
/// costs no memory, whatever the number of users.
fn permute(x: u64, n: u64, key: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let mut a = (key % n) | 1;
    while gcd(a, n) != 1 {
        a = (a + 2) % n;
        if a == 0 {
            a = 1;
        }
    }
    let b = splitmix(key) % n;
    ((u128::from(a) * u128::from(x) + u128::from(b)) % u128::from(n)) as u64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One step of SplitMix64: a good 64-bit mix of its input.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seeded SplitMix64 generator: plenty for picking requests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0), with a negligible bias.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn each_round_visits_every_user_once() {
        for users in [1, 2, 7, 10, 64, 1000, 9973] {
            let picker = UserPicker::new(users, 1, 42);
            for round in 0..3 {
                let seen: HashSet<u64> = (round * users..(round + 1) * users)
                    .map(|a| picker.user(a))
                    .collect();
                assert_eq!(seen.len() as u64, users, "{users} users, round {round}");
                assert!(seen.iter().all(|&u| (1..=users).contains(&u)));
            }
        }
    }

    #[test]
    fn more_attempts_than_users_retry_every_user() {
        let picker = UserPicker::new(100, 1000, 7);
        let mut tries: HashMap<u64, u32> = HashMap::new();
        for attempt in 0..250 {
            *tries.entry(picker.user(attempt)).or_default() += 1;
        }
        assert_eq!(tries.len(), 100);
        assert!(tries.values().all(|&n| n == 2 || n == 3));
        assert_eq!(tries.values().filter(|&&n| n == 3).count(), 50);
    }

    #[test]
    fn fewer_attempts_than_users_never_retry() {
        let picker = UserPicker::new(1000, 1, 3);
        let seen: HashSet<u64> = (0..400).map(|a| picker.user(a)).collect();
        assert_eq!(seen.len(), 400);
    }

    #[test]
    fn rounds_are_shuffled_and_seeded() {
        let a = UserPicker::new(1000, 1, 1);
        let b = UserPicker::new(1000, 1, 2);
        let first: Vec<u64> = (0..1000).map(|x| a.user(x)).collect();
        let second: Vec<u64> = (1000..2000).map(|x| a.user(x)).collect();
        let other: Vec<u64> = (0..1000).map(|x| b.user(x)).collect();
        assert_ne!(first, second);
        assert_ne!(first, other);
        assert_ne!(first, (1..=1000).collect::<Vec<_>>());
        assert_eq!(first, (0..1000).map(|x| a.user(x)).collect::<Vec<_>>());
    }

    #[test]
    fn rng_stays_in_range() {
        let mut rng = Rng::new(9);
        for _ in 0..10_000 {
            assert!(rng.below(7) < 7);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
