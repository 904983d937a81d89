//! RESERVE of a bucketed goods, bucket by bucket, and bringing units to a
//! bucket that ran dry.

use std::collections::BTreeMap;

use ::redis::Value;
use log::warn;
use seckill_proto::NO_TOKEN;
use seckill_redis_scripts::{bucket_of, Part, ReceiveCall, SendCall};

use super::super::link::{inconsistent, to_u32};
use super::super::scripts::stale_epoch;
use super::super::RedisStock;
use crate::config::AckMode;
use crate::store::{
    Buyer, Epoch, GoodsId, Reservation, ReserveRules, Reserved, StockStore, StoreError, Unmade,
};

impl RedisStock {
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
    pub(in crate::store::redis) fn reserve_split(
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
                    for &i in &members {
                        decisions[i].0 = failed(&e);
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
        let void =
            |&(d, at): &(Reservation, Epoch)| durable && d == Reservation::Reserved && at < epoch;
        let voided: Vec<&Buyer> = buyers
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| void(d))
            .map(|(b, _)| b)
            .collect();
        self.forget_void(goods, &voided);
        let decisions: Vec<Reservation> = decisions
            .iter()
            .map(|d| if void(d) { Reservation::Busy } else { d.0 })
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

    /// Forgets what names the orders of these buyers, whose reservations
    /// are void (made under an older epoch, they are told `busy`): their
    /// orders can never be written, so a retry must be decided afresh, not
    /// told for a minute that its order is being written, and its token
    /// must buy again. Only what still names those orders goes. Should this
    /// fail, such a retry waits as for any order never written
    /// (`Sale::forget_if_abandoned`).
    pub(in crate::store::redis) fn forget_void(&self, goods: GoodsId, voided: &[&Buyer]) {
        let unmade: Vec<Unmade> = voided
            .iter()
            .filter(|b| b.request_id.is_some() || b.token != NO_TOKEN)
            .map(|b| Unmade {
                user: b.user,
                order_no: b.order_no,
                request_id: b.request_id,
                token: b.token,
            })
            .collect();
        if unmade.is_empty() {
            return;
        }
        if let Err(e) = StockStore::forget_unmade(self, goods, &unmade) {
            warn!("goods {goods}: forgetting the request ids and tokens of void reservations: {e}");
        }
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
            // (`--redis-wait`), or a part Redis lost: as for a reservation
            // in doubt, the goods is reconciled before it sells again (a
            // lost pool would otherwise have these buyers told `busy`
            // until a reconciliation came for another reason).
            Err(e @ (StoreError::Indeterminate(_) | StoreError::NotLoaded(_))) => {
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
                    for &i in &dry {
                        decisions[i].0 = failed(&e);
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
    /// any earlier move between the two that was cut short (with `want` 0,
    /// that alone). Returns the units `to` got.
    pub(in crate::store::redis) fn move_units(
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
    pub(super) fn receive(
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
}

/// What a buyer is told whose bucket's call failed after others decided:
/// in doubt if the call may have run or the bucket is lost, else nothing
/// was done.
fn failed(e: &StoreError) -> Reservation {
    match e {
        // A bucket Redis lost is in doubt too: the sale then reconciles the
        // goods, which loads it again. As `busy` it would stay lost (the
        // call as a whole succeeded, so nothing else asks for a reload)
        // until a reconciliation came for another reason.
        StoreError::Indeterminate(_) | StoreError::NotLoaded(_) => Reservation::InDoubt,
        _ => Reservation::Busy,
    }
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
