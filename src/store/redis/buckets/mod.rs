//! A hot goods split over buckets (`goods add --buckets K`): K buckets and a
//! pool, each in a hash slot of its own, so that a Redis Cluster spreads the
//! goods' BUYs over its shards. The layout and the two scripts that move
//! units between parts are in `seckill_redis_scripts::buckets`.
//!
//! - A user only ever buys from bucket `bucket_of(user, K)`, where the user's
//!   orders, purchase tokens and request ids live: one order per user and
//!   the purchase limit stay exact inside one slot.
//! - A load (reconciliation) gives each bucket a share of the units left and
//!   the pool the rest. A bucket that runs dry under a BUY is refilled from
//!   the pool, then the buyers it turned away try again; when the pool is
//!   dry as well, half the units of the fullest other bucket go back to the
//!   pool and on to the dry one. Units, not users, move.
//! - A move is SEND (out of one part, counted as sent in its ledger), then
//!   RECEIVE (into the other, up to what was sent): the counters only grow,
//!   so a move cut short by a crash is completed by the next move between
//!   the same two parts, or by [`RedisStock::settle`], and never applied
//!   twice; a load under a new epoch counts afresh and clears the ledgers.
//! - `sold_out` only when every bucket, the pool and every move are empty;
//!   a buyer whose bucket is dry while units are left elsewhere is told to
//!   retry ([`Reservation::Busy`](crate::store::Reservation::Busy)).

mod ledger;
mod reserve;

use std::collections::BTreeMap;

use seckill_redis_scripts::{bucket_of, Keys, Part};

use super::RedisStock;
use crate::store::{Epoch, GoodsId, Loaded, OrderNo, StoreError, UserId};

/// What this store last saw of a bucketed goods: the units left in each
/// part (pool first), from the answers of its own calls. Only an estimate
/// of the goods' remaining between two reads of every part, as a catalog's
/// count is between two refreshes.
#[derive(Debug, Clone, Default)]
pub(super) struct Seen {
    parts: Vec<u32>,
    /// Every part was read empty, nothing on its way, since a part was last
    /// seen holding units: until then the estimate is never 0, so that a
    /// part this store has not seen yet cannot make the catalog say "sold
    /// out" while it holds units.
    empty: bool,
}

/// Items grouped by their user's bucket of a goods of `k` buckets (all in
/// bucket 0 when `k` is 1), each group in the order given.
pub(super) fn by_bucket<T: Copy>(
    items: &[T],
    k: u16,
    user: impl Fn(&T) -> UserId,
) -> BTreeMap<u16, Vec<T>> {
    let mut groups: BTreeMap<u16, Vec<T>> = BTreeMap::new();
    for item in items {
        groups
            .entry(bucket_of(user(item), k))
            .or_default()
            .push(*item);
    }
    groups
}

fn index(part: Part) -> usize {
    match part {
        Part::Pool => 0,
        Part::Bucket(b) => 1 + usize::from(b),
    }
}

/// Where a goods' parts are, what this store saw of them, and a load of
/// them all.
impl RedisStock {
    /// The buckets of a goods: 1 unless [`set_buckets`](Self::set_buckets)
    /// said otherwise.
    pub(super) fn buckets_of(&self, goods: GoodsId) -> u16 {
        self.splits.lock().get(&goods).copied().unwrap_or(1)
    }

    pub(super) fn set_buckets(&self, goods: GoodsId, buckets: u16) {
        if buckets > 1 {
            self.splits.lock().insert(goods, buckets);
        }
    }

    /// The keys of one part. A goods of one bucket has one part, its own
    /// keys, whichever part is asked for (its pool is its bucket 0). The
    /// pool's part holds the goods' epoch of record (what
    /// [`epoch`](crate::store::StockStore::epoch) reads) and its restocks.
    pub(in crate::store::redis) fn part_keys(&self, goods: GoodsId, part: Part) -> Keys {
        if self.buckets_of(goods) == 1 {
            return self.keys(goods);
        }
        match part {
            Part::Pool => self.prefix.pool_keys(goods),
            Part::Bucket(b) => self.prefix.bucket_keys(goods, b),
        }
    }

    /// Every part of a goods with its keys, the pool (or the one part of a
    /// goods of one bucket) first.
    pub(super) fn parts_of(&self, goods: GoodsId) -> Vec<(Part, Keys)> {
        let k = self.buckets_of(goods);
        let mut parts = vec![(Part::Pool, self.part_keys(goods, Part::Pool))];
        if k > 1 {
            parts.extend((0..k).map(|b| (Part::Bucket(b), self.prefix.bucket_keys(goods, b))));
        }
        parts
    }

    /// Where a user's BUYs, tokens and request ids of a goods live.
    pub(super) fn user_keys(&self, goods: GoodsId, user: UserId) -> Keys {
        let k = self.buckets_of(goods);
        self.part_keys(goods, Part::Bucket(bucket_of(user, k)))
    }

    pub(super) fn saw(&self, goods: GoodsId, part: Part, left: u32) {
        let k = usize::from(self.buckets_of(goods));
        let mut levels = self.levels.lock();
        let seen = levels.entry(goods).or_default();
        seen.parts.resize(k + 1, 0);
        if let Some(slot) = seen.parts.get_mut(index(part)) {
            *slot = left;
        }
        if left > 0 {
            seen.empty = false;
        }
    }

    pub(super) fn seen_remaining(&self, goods: GoodsId) -> u32 {
        let levels = self.levels.lock();
        let Some(seen) = levels.get(&goods) else {
            return 1;
        };
        let total: u64 = seen.parts.iter().map(|&n| u64::from(n)).sum();
        match u32::try_from(total).unwrap_or(u32::MAX) {
            0 if !seen.empty => 1,
            n => n,
        }
    }

    /// A load of a goods of `k` buckets: each bucket gets its holders and
    /// `remaining / 2k` units, the pool the rest. The pool last: until it is
    /// loaded, no unit moves.
    pub(super) fn load_split(
        &self,
        goods: GoodsId,
        k: u16,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
        epoch: Epoch,
        total: u32,
    ) -> Result<Loaded, StoreError> {
        let mut by = by_bucket(holders, k, |&(user, _)| user);
        let share = remaining / (2 * u32::from(k));
        for b in 0..k {
            let keys = self.part_keys(goods, Part::Bucket(b));
            let mine = by.remove(&b).unwrap_or_default();
            if let Loaded::Superseded(later) =
                self.load_part(goods, &keys, share, &mine, epoch, total)?
            {
                return Ok(Loaded::Superseded(later));
            }
            self.saw(goods, Part::Bucket(b), share);
        }
        let pool = remaining - share * u32::from(k);
        let keys = self.part_keys(goods, Part::Pool);
        let loaded = self.load_part(goods, &keys, pool, &[], epoch, total)?;
        self.saw(goods, Part::Pool, pool);
        Ok(loaded)
    }
}
