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
//!   retry ([`Reservation::Busy`]).

use std::collections::{BTreeMap, HashMap};

use ::redis::Value;
use log::warn;
use seckill_redis_scripts::{bucket_of, EpochState, Keys, Part, ReceiveCall, SendCall};

use super::link::{inconsistent, parse_u64, to_u32};
use super::scripts::stale_epoch;
use super::RedisStock;
use crate::config::AckMode;
use crate::store::{
    Buyer, Epoch, GoodsId, Holders, Levels, Loaded, OrderNo, Reservation, ReserveRules, Reserved,
    StockParts, StoreError, UserId,
};

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

/// One part as read in one atomic step.
struct PartState {
    part: Part,
    /// Its epoch key as it stands: `None` while a load freezes it (and its
    /// ledger may still be the epoch before's).
    epoch: Option<Epoch>,
    stock: u32,
    released: u64,
    /// The ledger: "sent:<dest>" and "got:<src>" counters.
    ledger: HashMap<String, u64>,
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

    /// The keys of one part; [`Part::Pool`] of a goods of one bucket is the
    /// whole goods. The pool's part holds the goods' epoch of record (what
    /// [`epoch`](crate::store::StockStore::epoch) reads) and its restocks.
    pub(super) fn part_keys(&self, goods: GoodsId, part: Part) -> Keys {
        match part {
            Part::Pool if self.buckets_of(goods) == 1 => self.keys(goods),
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
        match self.buckets_of(goods) {
            1 => self.keys(goods),
            k => self.part_keys(goods, Part::Bucket(bucket_of(user, k))),
        }
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

    /// Every part was just read empty, with nothing on its way.
    fn saw_empty(&self, goods: GoodsId) {
        if let Some(seen) = self.levels.lock().get_mut(&goods) {
            seen.empty = seen.parts.iter().all(|&n| n == 0);
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

    /// RESERVE of a goods of `k` buckets: one call per bucket the buyers
    /// fall in. A failure after some bucket decided does not undo what it
    /// decided: the failed bucket's buyers get [`Reservation::Busy`] or
    /// [`Reservation::InDoubt`].
    ///
    /// The calls may meet different epochs: a reconciliation (any server's)
    /// between two of them froze every bucket before it counted, so a unit
    /// reserved under the older epoch and not yet written was left out of
    /// its count, and its holder out of its load. In the durable mode such a
    /// reservation is void (its order would be fenced off at the commit):
    /// its buyer is told `busy`, and nothing is given back, as the load did
    /// that. In the queued mode it was queued with the deduction, and the
    /// count read the queue: it stands.
    pub(super) fn reserve_split(
        &self,
        goods: GoodsId,
        k: u16,
        rules: &ReserveRules,
        buyers: &[Buyer],
    ) -> Result<Reserved, StoreError> {
        let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, b) in buyers.iter().enumerate() {
            groups.entry(bucket_of(b.user, k)).or_default().push(i);
        }
        let mut decisions = vec![(Reservation::Busy, 0); buyers.len()];
        let mut failure = None;
        let mut decided = false;
        for (bucket, members) in groups {
            let group: Vec<Buyer> = members.iter().map(|&i| buyers[i]).collect();
            match self.reserve_in_bucket(goods, k, bucket, rules, &group) {
                Ok(got) => {
                    decided = true;
                    for (i, d) in members.into_iter().zip(got) {
                        decisions[i] = d;
                    }
                }
                Err(e) => {
                    if matches!(e, StoreError::Indeterminate(_)) {
                        for &i in &members {
                            decisions[i].0 = Reservation::InDoubt;
                        }
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        if let (false, Some(e)) = (decided, failure) {
            // Nothing was decided: the failure, as with one bucket.
            return Err(e);
        }
        let epoch = match decisions.iter().map(|&(_, e)| e).max() {
            Some(e) if e > 0 => e,
            _ => self.known_epoch(goods).unwrap_or(0),
        };
        let durable = self.mode == AckMode::Durable;
        let decisions: Vec<Reservation> = decisions
            .into_iter()
            .map(|(d, at)| match d {
                Reservation::Reserved if durable && at < epoch => Reservation::Busy,
                d => d,
            })
            .collect();
        let mut remaining = self.seen_remaining(goods);
        if remaining == 0 && decisions.contains(&Reservation::Busy) {
            // Not sold out: the catalog must not say so.
            remaining = 1;
        }
        Ok(Reserved {
            decisions,
            remaining,
            epoch,
        })
    }

    /// The buyers of one bucket: one RESERVE; those it finds the bucket dry
    /// for try once more after a refill, and are sold out only if no unit is
    /// left anywhere. Each decision with the epoch it was made under.
    fn reserve_in_bucket(
        &self,
        goods: GoodsId,
        k: u16,
        bucket: u16,
        rules: &ReserveRules,
        buyers: &[Buyer],
    ) -> Result<Vec<(Reservation, Epoch)>, StoreError> {
        let part = Part::Bucket(bucket);
        let keys = self.part_keys(goods, part);
        let first = self.reserve_part(goods, &keys, rules, buyers)?;
        self.saw(goods, part, first.remaining);
        let mut decisions: Vec<(Reservation, Epoch)> = first
            .decisions
            .into_iter()
            .map(|d| (d, first.epoch))
            .collect();
        let dry: Vec<usize> = (0..decisions.len())
            .filter(|&i| decisions[i].0 == Reservation::SoldOut)
            .collect();
        if dry.is_empty() {
            return Ok(decisions);
        }
        // Units already taken above stand whatever happens next: a failure
        // from here on is these buyers' alone.
        let refilled = match self.refill(goods, k, bucket) {
            Ok(n) => n,
            // A move that may have happened and may not be on the replicas
            // (`--redis-wait`): as for a reservation in doubt, the goods is
            // reconciled before it sells again.
            Err(e @ StoreError::Indeterminate(_)) => {
                warn!("refilling bucket {bucket} of goods {goods}: {e}");
                for &i in &dry {
                    decisions[i].0 = Reservation::InDoubt;
                }
                return Ok(decisions);
            }
            Err(e) => {
                warn!("refilling bucket {bucket} of goods {goods}: {e}");
                0
            }
        };
        if refilled > 0 {
            let again: Vec<Buyer> = dry.iter().map(|&i| buyers[i]).collect();
            match self.reserve_part(goods, &keys, rules, &again) {
                Ok(r) => {
                    self.saw(goods, part, r.remaining);
                    for (&i, d) in dry.iter().zip(r.decisions) {
                        decisions[i] = (d, r.epoch);
                    }
                }
                Err(e) => {
                    let d = match e {
                        StoreError::Indeterminate(_) => Reservation::InDoubt,
                        _ => Reservation::Busy,
                    };
                    for &i in &dry {
                        decisions[i].0 = d;
                    }
                }
            }
        }
        if decisions.iter().any(|(d, _)| *d == Reservation::SoldOut) {
            let verdict = match self.settle(goods) {
                Ok(true) => Reservation::SoldOut,
                Ok(false) => Reservation::Busy,
                Err(e) => {
                    warn!("checking goods {goods} for units left: {e}");
                    Reservation::Busy
                }
            };
            for (d, _) in decisions
                .iter_mut()
                .filter(|(d, _)| *d == Reservation::SoldOut)
            {
                *d = verdict;
            }
        }
        Ok(decisions)
    }

    /// Brings units to a dry bucket: a chunk of the pool (a share of what it
    /// holds, shrinking towards one unit as it drains, so that the last
    /// units follow demand), or, with the pool dry, half the units of the
    /// fullest other bucket by way of the pool. Returns the units it added.
    fn refill(&self, goods: GoodsId, k: u16, bucket: u16) -> Result<u32, StoreError> {
        let to = Part::Bucket(bucket);
        let pool_seen = self
            .levels
            .lock()
            .get(&goods)
            .and_then(|s| s.parts.first().copied())
            .unwrap_or(0);
        let chunk = (pool_seen / (2 * u32::from(k))).max(1);
        let added = self.move_units(goods, Part::Pool, to, chunk)?;
        if added > 0 {
            return Ok(added);
        }
        let mut fullest: Option<(u16, u32)> = None;
        for b in (0..k).filter(|&b| b != bucket) {
            let key = self.part_keys(goods, Part::Bucket(b)).stock;
            let left: Option<i64> = self.call("bucket stock", |con| {
                ::redis::cmd("GET").arg(&key).query(con)
            })?;
            let left = to_u32(&key, left.unwrap_or(0))?;
            self.saw(goods, Part::Bucket(b), left);
            if left > fullest.map_or(0, |(_, n)| n) {
                fullest = Some((b, left));
            }
        }
        let Some((from, left)) = fullest else {
            return Ok(0);
        };
        let half = left.div_ceil(2);
        self.move_units(goods, Part::Bucket(from), Part::Pool, half)?;
        self.move_units(goods, Part::Pool, to, half)
    }

    /// Moves up to `want` units from one part to another: SEND, then RECEIVE
    /// of all that `from` ever sent `to` under this epoch, which completes
    /// any earlier move between the two that was cut short. Returns the
    /// units `to` got.
    fn move_units(
        &self,
        goods: GoodsId,
        from: Part,
        to: Part,
        want: u32,
    ) -> Result<u32, StoreError> {
        let keys = self.part_keys(goods, from);
        let (sent, left, epoch) = self.fenced(
            goods,
            &keys,
            "send units",
            |epoch| {
                let call = SendCall {
                    epoch,
                    want,
                    dest: to,
                };
                self.scripts.send(&keys, &call)
            },
            |reply, epoch| {
                let [_moved, sent, left] = numbers(goods, "send", reply)?;
                Ok((sent, left, epoch))
            },
        )?;
        self.saw(goods, from, to_u32("send", left)?);
        if sent == 0 {
            return Ok(0);
        }
        self.receive(goods, from, to, sent, epoch)
    }

    /// RECEIVE into `to` of what `from` has sent it, `sent` in all.
    fn receive(
        &self,
        goods: GoodsId,
        from: Part,
        to: Part,
        sent: i64,
        epoch: Epoch,
    ) -> Result<u32, StoreError> {
        let keys = self.part_keys(goods, to);
        let call = ReceiveCall {
            epoch,
            src: from,
            sent: u64::try_from(sent).unwrap_or(0),
        };
        let inv = self.scripts.receive(&keys, &call);
        let reply: Value = self.call_effect("receive units", |con| inv.invoke(con))?;
        if stale_epoch(&reply).is_some() {
            // Reloaded since the units were sent: the load counted them.
            return Ok(0);
        }
        let [added, left] = numbers(goods, "receive", reply)?;
        self.saw(goods, to, to_u32("receive", left)?);
        to_u32("receive", added)
    }

    /// Every part of a goods, each read in one atomic step, the pool first;
    /// `None` if a part is missing (not loaded, or lost).
    fn read_parts(&self, goods: GoodsId) -> Result<Option<Vec<PartState>>, StoreError> {
        let mut states = Vec::new();
        for (part, keys) in self.parts_of(goods) {
            let mut pipe = ::redis::pipe();
            pipe.atomic()
                .cmd("GET")
                .arg(&keys.stock)
                .cmd("GET")
                .arg(&keys.released)
                .cmd("HGETALL")
                .arg(&keys.ledger)
                .cmd("GET")
                .arg(&keys.epoch);
            type Read = (
                Option<i64>,
                Option<u64>,
                HashMap<String, String>,
                Option<String>,
            );
            let (stock, released, ledger, epoch) =
                self.call("read parts", |con| pipe.query::<Read>(con))?;
            let Some(stock) = stock else {
                return Ok(None);
            };
            let epoch = epoch
                .map(|e| {
                    EpochState::parse(&e)
                        .ok_or_else(|| inconsistent(format!("bad {}: {e:?}", keys.epoch)))
                })
                .transpose()?;
            let ledger = ledger
                .into_iter()
                .map(|(field, n)| Ok((field, parse_u64(&keys.ledger, &n)?)))
                .collect::<Result<_, StoreError>>()?;
            states.push(PartState {
                part,
                epoch: epoch.filter(|e| !e.loading).map(|e| e.epoch),
                stock: to_u32(&keys.stock, stock)?,
                released: released.unwrap_or(0),
                ledger,
            });
        }
        Ok(Some(states))
    }

    /// Completes every move cut short (units sent and not received), and
    /// says whether the goods has no unit left anywhere: every part empty,
    /// nothing on its way. Errs on the side of "units left".
    pub(super) fn settle(&self, goods: GoodsId) -> Result<bool, StoreError> {
        let Some(states) = self.read_parts(goods)? else {
            return Err(StoreError::NotLoaded(goods));
        };
        if !same_epoch(&states) {
            // Being reloaded: its count will say.
            return Ok(false);
        }
        let mut empty = true;
        for m in moves(&states) {
            if m.in_flight > 0 {
                empty = false;
                self.receive(goods, m.from, m.to, m.sent, m.epoch)?;
            }
        }
        for s in &states {
            self.saw(goods, s.part, s.stock);
        }
        let empty = empty && states.iter().all(|s| s.stock == 0);
        if empty {
            self.saw_empty(goods);
        }
        Ok(empty)
    }

    /// Units left in every part, those on their way included, and units
    /// ever released: one atomic read per part.
    pub(super) fn levels_split(&self, goods: GoodsId) -> Result<Option<Levels>, StoreError> {
        let Some(states) = self.read_parts(goods)? else {
            return Ok(None);
        };
        let parts = summary(&states, 0);
        for s in &states {
            self.saw(goods, s.part, s.stock);
        }
        if parts.accounted() == 0 && parts.in_flight == 0 {
            self.saw_empty(goods);
        }
        let left = (parts.accounted()).max(0);
        Ok(Some(Levels {
            remaining: u32::try_from(left).unwrap_or(u32::MAX),
            released: states.iter().map(|s| s.released).sum(),
        }))
    }

    /// A reconciliation's look at a goods of several buckets, frozen for it:
    /// the units of every part and every move, and every bucket's holders.
    pub(super) fn snapshot_split(
        &self,
        goods: GoodsId,
    ) -> Result<Option<(u32, Holders)>, StoreError> {
        let Some(states) = self.read_parts(goods)? else {
            return Ok(None);
        };
        let mut holders = Holders::new();
        for (part, keys) in self.parts_of(goods) {
            if part == Part::Pool {
                continue;
            }
            match self.snapshot_part(goods, &keys)? {
                Some((_, mine)) => holders.extend(mine),
                None => return Ok(None),
            }
        }
        holders.sort_unstable();
        let left = summary(&states, 0).accounted().max(0);
        Ok(Some((u32::try_from(left).unwrap_or(u32::MAX), holders)))
    }

    /// [`StockStore::parts`](crate::store::StockStore::parts): every part
    /// read in turn, holders counted.
    pub(super) fn stock_parts(&self, goods: GoodsId) -> Result<Option<StockParts>, StoreError> {
        if self.buckets_of(goods) == 1 {
            return Ok(self
                .snapshot_part(goods, &self.keys(goods))?
                .map(|(left, holders)| StockParts {
                    pool: 0,
                    in_flight: 0,
                    buckets: vec![left],
                    holders: holders.len() as u64,
                }));
        }
        // Holders first, then the counters: a BUY or a release in between
        // is seen on one side only, so while the sale goes on the sum may be
        // off by the BUYs and releases of that moment (the parts' counters
        // alone are exact, see `moves`).
        let Some((_, holders)) = self.snapshot_split(goods)? else {
            return Ok(None);
        };
        let Some(states) = self.read_parts(goods)? else {
            return Ok(None);
        };
        Ok(Some(summary(&states, holders.len() as u64)))
    }
}

/// The parts' counters summed up.
fn summary(states: &[PartState], holders: u64) -> StockParts {
    StockParts {
        pool: states
            .iter()
            .find(|s| s.part == Part::Pool)
            .map_or(0, |s| s.stock),
        in_flight: moves(states).iter().map(|m| m.in_flight).sum(),
        buckets: states
            .iter()
            .filter(|s| s.part != Part::Pool)
            .map(|s| s.stock)
            .collect(),
        holders,
    }
}

/// Whether every part is loaded under one epoch: the ledgers are then all
/// of that epoch, and comparable. While a load goes on (some parts frozen,
/// or loaded before others), a ledger may still be the epoch before's.
fn same_epoch(states: &[PartState]) -> bool {
    let first = states.first().and_then(|s| s.epoch);
    first.is_some() && states.iter().all(|s| s.epoch == first)
}

/// Units sent from one part to another under one epoch.
struct Move {
    from: Part,
    to: Part,
    epoch: Epoch,
    /// All `from` sent `to`, ever, under the epoch.
    sent: i64,
    /// Sent minus got. Read one part at a time, a move between the two reads
    /// shows as negative here and as units in both parts, which sums up
    /// exactly.
    in_flight: i64,
}

/// Every pair of parts with units sent, among parts at one epoch: a ledger
/// is only ever compared with another of the same epoch (a load clears
/// each part's as it goes, so a pair across a load would count the epoch
/// before's moves again).
fn moves(states: &[PartState]) -> Vec<Move> {
    let mut out = Vec::new();
    for from in states {
        for to in states.iter().filter(|s| s.part != from.part) {
            let (Some(epoch), true) = (from.epoch, from.epoch == to.epoch) else {
                continue;
            };
            let sent = from
                .ledger
                .get(&Part::sent_field(to.part))
                .copied()
                .unwrap_or(0);
            let got = to
                .ledger
                .get(&Part::got_field(from.part))
                .copied()
                .unwrap_or(0);
            if sent > 0 || got > 0 {
                let sent = i64::try_from(sent).unwrap_or(i64::MAX);
                let got = i64::try_from(got).unwrap_or(i64::MAX);
                out.push(Move {
                    from: from.part,
                    to: to.part,
                    epoch,
                    sent,
                    in_flight: sent - got,
                });
            }
        }
    }
    out
}

/// A script's answer that is a list of `N` integers.
fn numbers<const N: usize>(
    goods: GoodsId,
    what: &str,
    reply: Value,
) -> Result<[i64; N], StoreError> {
    match reply {
        Value::Nil => Err(StoreError::NotLoaded(goods)),
        Value::Array(items) if items.len() == N => {
            let mut out = [0; N];
            for (slot, item) in out.iter_mut().zip(items) {
                match item {
                    Value::Int(n) => *slot = n,
                    other => {
                        return Err(inconsistent(format!(
                            "{what} of goods {goods}: bad number {other:?}"
                        )))
                    }
                }
            }
            Ok(out)
        }
        other => Err(inconsistent(format!(
            "{what} of goods {goods}: unexpected reply {other:?}"
        ))),
    }
}
