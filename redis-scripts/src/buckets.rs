//! A goods split over buckets: which bucket a user belongs to, and the two
//! scripts that move units between a goods' pool and its buckets.
//!
//! A goods added with `buckets` K > 1 keeps its stock in K + 1 parts, each
//! under a hash tag of its own (so a Redis Cluster spreads a hot goods over
//! its shards): the pool ([`Prefix::pool_keys`]), which holds the goods'
//! epoch of record and its restocks, and bucket b ([`Prefix::bucket_keys`]).
//! The goods' own keys ([`Prefix::keys`]) stay empty. A user only ever buys from bucket
//! [`bucket_of`], so "one order per user" and the purchase limit stay exact
//! inside one slot; units, not users, move between parts, in two steps
//! ([`SendCall`], then [`ReceiveCall`]) whose ledger makes every move safe
//! to repeat. With K = 1 the goods has today's single part and no pool.
//!
//! [`Prefix::keys`]: crate::Prefix::keys
//! [`Prefix::pool_keys`]: crate::Prefix::pool_keys
//! [`Prefix::bucket_keys`]: crate::Prefix::bucket_keys

use crate::{Argv, Call, Key};

/// The first step of a move; its contract is at the top of `lua/send.lua`.
pub const SEND: &str = include_str!("../lua/send.lua");
/// The second step of a move; its contract is at the top of
/// `lua/receive.lua`.
pub const RECEIVE: &str = include_str!("../lua/receive.lua");

/// The most buckets a goods may have.
pub const MAX_BUCKETS: u16 = 64;

/// The bucket of `user` in a goods of `buckets` buckets: FNV-1a (64 bits)
/// of the user id's eight bytes, little-endian, modulo `buckets`. Part of
/// the store's contract, like the key layout: every server must put a user
/// in the same bucket, or the user could buy once in each.
pub fn bucket_of(user: u64, buckets: u16) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = user
        .to_le_bytes()
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    // < buckets ≤ u16::MAX: the cast cannot truncate.
    (hash % u64::from(buckets.max(1))) as u16
}

/// One part of a bucketed goods, as the ledger names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Pool,
    Bucket(u16),
}

impl Part {
    fn write(self, argv: &mut Argv<'_>) {
        match self {
            Part::Pool => argv.text("p"),
            Part::Bucket(b) => argv.num(b),
        }
    }

    /// The ledger field that counts the units this part sent to `dest`.
    pub fn sent_field(dest: Part) -> String {
        format!("sent:{}", dest.name())
    }

    /// The ledger field that counts the units this part got from `src`.
    pub fn got_field(src: Part) -> String {
        format!("got:{}", src.name())
    }

    fn name(self) -> String {
        match self {
            Part::Pool => "p".to_string(),
            Part::Bucket(b) => b.to_string(),
        }
    }
}

/// One SEND: up to `want` units out of the part whose keys it is given,
/// toward `dest`; answers `{moved, sent, left}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendCall {
    pub epoch: u64,
    pub want: u32,
    pub dest: Part,
}

impl Call for SendCall {
    const SCRIPT: &'static str = SEND;
    const KEYS: &'static [Key] = &[Key::Stock, Key::Epoch, Key::Ledger];

    fn write_args(&self, arg: &mut dyn FnMut(&[u8])) {
        let mut argv = Argv(arg);
        argv.num(self.epoch);
        argv.num(self.want);
        self.dest.write(&mut argv);
    }
}

/// One RECEIVE: what `src` has `sent` to the part whose keys it is given,
/// less what that part got already; answers `{added, left}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveCall {
    pub epoch: u64,
    pub src: Part,
    pub sent: u64,
}

impl Call for ReceiveCall {
    const SCRIPT: &'static str = RECEIVE;
    const KEYS: &'static [Key] = &[Key::Stock, Key::Epoch, Key::Ledger];

    fn write_args(&self, arg: &mut dyn FnMut(&[u8])) {
        let mut argv = Argv(arg);
        argv.num(self.epoch);
        self.src.write(&mut argv);
        argv.num(self.sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv;

    #[test]
    fn a_user_has_one_bucket_and_users_spread_over_all() {
        assert_eq!(bucket_of(42, 1), 0);
        assert_eq!(bucket_of(42, 0), 0);
        // Pinned (checked against an independent FNV-1a): servers of every
        // version must agree.
        assert_eq!(
            [0u64, 1, 2, 3, 1 << 40, u64::MAX].map(|u| bucket_of(u, 4)),
            [1, 0, 3, 2, 2, 1]
        );
        let mut seen = [0u32; 4];
        for user in 0..4000 {
            seen[usize::from(bucket_of(user, 4))] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn moves_name_their_parts() {
        let send = SendCall {
            epoch: 7,
            want: 10,
            dest: Part::Bucket(3),
        };
        assert_eq!(argv(&send), ["7", "10", "3"]);
        let receive = ReceiveCall {
            epoch: 7,
            src: Part::Pool,
            sent: 25,
        };
        assert_eq!(argv(&receive), ["7", "p", "25"]);
        assert_eq!(Part::sent_field(Part::Pool), "sent:p");
        assert_eq!(Part::got_field(Part::Bucket(2)), "got:2");
    }
}
