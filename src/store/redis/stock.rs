//! [`StockStore`] on Redis: a load in one MULTI, every other change in one
//! script, each built from its typed call in `seckill-redis-scripts`.

use std::collections::HashMap;

use ::redis::Value;
use seckill_proto::{RequestId, NO_TOKEN};
use seckill_redis_scripts::{
    self as scripts, holders, AddCall, ControlCall, ForgetCall, IssueCall, Keys, Load, Mode, Part,
    ReleaseCall, ReserveBuyer, ReserveCall,
};

use super::buckets::by_bucket;
use super::link::{inconsistent, to_u32};
use super::queue::create_group;
use super::scripts::{reserved, script_count, stale_epoch};
use super::RedisStock;
use crate::clock::now_ms;
use crate::config::AckMode;
use crate::store::memory::{forget_after, PRUNE_BATCH};
use crate::store::{
    Buyer, Epoch, GoodsId, Holders, Levels, Loaded, OrderNo, ReserveRules, Reserved, SaleState,
    StockParts, StockStore, StoreError, Unmade, UserId, REQUEST_ID_TTL_MS,
};

impl RedisStock {
    /// [`StockStore::issue_token`] at a given time (the tests' clock).
    pub(in crate::store) fn issue_token_at(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if token == NO_TOKEN {
            // Never a token: RESERVE refuses it whatever is recorded.
            return Ok(());
        }
        let call = IssueCall {
            now_ms,
            token,
            user,
            expires_ms,
            forget_after_ms: forget_after(now_ms, expires_ms),
            prune_batch: PRUNE_BATCH,
        };
        let inv = self.scripts.issue(&self.user_keys(goods, user), &call);
        // `call`, not `call_effect`: if the link breaks, the token was not
        // handed to anyone either way, so "busy, nothing done" is true
        // enough, and an entry that was recorded after all is pruned later.
        self.call("issue token", |con| inv.invoke::<i64>(con))?;
        Ok(())
    }
}

impl StockStore for RedisStock {
    /// Stages the buyers under a key of this load's own, then puts them
    /// and the stock in place in one script, unless a load of a later
    /// epoch came first. The queue is kept: it may hold orders already
    /// acknowledged and not yet written. So in queued mode `remaining` and
    /// `holders` must count the orders still in the queue
    /// ([`OrderQueue::queued`]), or they would be sold a second time. The
    /// tokens are kept too.
    ///
    /// [`OrderQueue::queued`]: crate::store::OrderQueue::queued
    fn load(
        &self,
        goods: GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
        epoch: Epoch,
        total: u32,
    ) -> Result<Loaded, StoreError> {
        match self.buckets_of(goods) {
            1 => self.load_part(goods, &self.keys(goods), remaining, holders, epoch, total),
            k => self.load_split(goods, k, remaining, holders, epoch, total),
        }
    }

    /// Every bucket first, the pool last: the pool's epoch is the goods'
    /// epoch of record, so once it has moved every part is frozen, and a
    /// freeze cut short leaves the goods' epoch behind the order store's,
    /// which the catalog's refresh notices and repairs.
    fn begin_load(&self, goods: GoodsId, epoch: Epoch) -> Result<Loaded, StoreError> {
        for (_, keys) in self.parts_of(goods).into_iter().rev() {
            if let Loaded::Superseded(later) = self.freeze_part(goods, &keys, epoch)? {
                return Ok(Loaded::Superseded(later));
            }
        }
        Ok(Loaded::Now)
    }

    fn split(&self, goods: GoodsId, buckets: u16) {
        self.set_buckets(goods, buckets);
    }

    fn epoch(&self, goods: GoodsId) -> Result<Option<Epoch>, StoreError> {
        Ok(self.epoch_state(goods)?.map(|s| s.epoch))
    }

    /// Not fenced by the epoch: the version orders the writes, whoever
    /// makes them, and the controls outlive loads. Every bucket of a goods
    /// enforces them. With `--redis-wait`, on the replicas before it is
    /// answered: a pause a failover lost would let the shard sell on until
    /// the servers' next pass of the controls from the order store.
    fn control(&self, goods: GoodsId, sale: &SaleState) -> Result<(), StoreError> {
        let call = ControlCall {
            version: sale.version,
            paused: sale.paused,
            start_ms: sale.start_ms,
            end_ms: sale.end_ms,
        };
        for (_, keys) in self.parts_of(goods) {
            let inv = self.scripts.control(&keys, &call);
            self.call_replicated("control", goods, &keys.stock, |con| inv.invoke(con))?;
        }
        Ok(())
    }

    fn reserve(
        &self,
        goods: GoodsId,
        rules: &ReserveRules,
        buyers: &[Buyer],
    ) -> Result<Reserved, StoreError> {
        match self.buckets_of(goods) {
            1 => self.reserve_part(goods, &self.keys(goods), rules, buyers),
            k => self.reserve_split(goods, k, rules, buyers),
        }
    }

    fn release(&self, goods: GoodsId, buyers: &[(UserId, OrderNo)]) -> Result<u32, StoreError> {
        let k = self.buckets_of(goods);
        if k == 1 {
            return self.release_part(goods, &self.keys(goods), buyers);
        }
        for (bucket, pairs) in by_bucket(buyers, k, |&(user, _)| user) {
            let keys = self.part_keys(goods, Part::Bucket(bucket));
            let left = self.release_part(goods, &keys, &pairs)?;
            self.saw(goods, Part::Bucket(bucket), left);
        }
        Ok(self.seen_remaining(goods))
    }

    fn forget_unmade(&self, goods: GoodsId, unmade: &[Unmade]) -> Result<(), StoreError> {
        let k = self.buckets_of(goods);
        for (bucket, unmade) in by_bucket(unmade, k, |u| u.user) {
            let keys = self.part_keys(goods, Part::Bucket(bucket));
            self.forget_part(&keys, &unmade)?;
        }
        Ok(())
    }

    /// Works whether or not the goods is loaded: tokens are not fenced by
    /// the epoch, since issuing one changes no stock.
    fn issue_token(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        self.issue_token_at(goods, user, token, expires_ms, now_ms())
    }

    /// Into the pool of a goods with buckets, which hands the units out.
    fn add(&self, goods: GoodsId, amount: u32, total: u32) -> Result<u32, StoreError> {
        let keys = self.part_keys(goods, Part::Pool);
        let left = self.fenced(
            goods,
            &keys,
            "add",
            |epoch| {
                let call = AddCall {
                    amount,
                    epoch,
                    total,
                };
                self.scripts.add(&keys, &call)
            },
            |reply, _| script_count(goods, "add", reply),
        )?;
        if self.buckets_of(goods) == 1 {
            return Ok(left);
        }
        self.saw(goods, Part::Pool, left);
        Ok(self.seen_remaining(goods))
    }

    fn clock_ms(&self) -> Result<Option<u64>, StoreError> {
        let (s, us): (u64, u64) = self.call("time", |con| ::redis::cmd("TIME").query(con))?;
        Ok(Some(s.saturating_mul(1000).saturating_add(us / 1000)))
    }

    fn levels(&self, goods: GoodsId) -> Result<Option<Levels>, StoreError> {
        match self.buckets_of(goods) {
            1 => self.levels_part(goods),
            _ => self.levels_split(goods),
        }
    }

    fn remaining(&self, goods: GoodsId) -> Result<Option<u32>, StoreError> {
        if self.buckets_of(goods) > 1 {
            return Ok(self.levels(goods)?.map(|l| l.remaining));
        }
        let key = self.keys(goods).stock;
        let left: Option<i64> =
            self.call("remaining", |con| ::redis::cmd("GET").arg(&key).query(con))?;
        left.map(|n| to_u32(&format!("stock of goods {goods}"), n))
            .transpose()
    }

    fn held(&self, goods: GoodsId, user: UserId) -> Result<Vec<OrderNo>, StoreError> {
        let key = self.user_keys(goods, user).buyers;
        let field = user.to_string();
        // Told to the user as theirs: with `--redis-wait`, once the
        // replicas have them (`held.lua` says why it writes).
        let held: Option<String> = match self.replication {
            Some(_) => {
                let inv = self.scripts.held(&key, user);
                let reply = self.call_replicated("held", goods, &key, |con| inv.invoke(con))?;
                ::redis::from_redis_value(reply).map_err(|e| inconsistent(format!("held: {e}")))?
            }
            None => self.call("held", |con| {
                ::redis::cmd("HGET").arg(&key).arg(&field).query(con)
            })?,
        };
        let Some(held) = held else {
            return Ok(Vec::new());
        };
        let held = holders([(field.as_str(), held.as_str())])
            .map_err(|e| inconsistent(format!("orders user {user} holds of goods {goods}: {e}")))?;
        Ok(held.into_iter().map(|(_, order_no)| order_no).collect())
    }

    fn lost_writes(&self, goods: &[GoodsId]) -> Result<Vec<GoodsId>, StoreError> {
        self.primaries_changed(goods)
    }

    fn snapshot(&self, goods: GoodsId) -> Result<Option<(u32, Holders)>, StoreError> {
        match self.buckets_of(goods) {
            1 => self.snapshot_part(goods, &self.keys(goods)),
            _ => self.snapshot_split(goods),
        }
    }

    fn parts(&self, goods: GoodsId) -> Result<Option<StockParts>, StoreError> {
        self.stock_parts(goods)
    }
}

/// The parts of one goods' stock on Redis, each a hash slot of its own:
/// what the trait's calls do to each.
impl RedisStock {
    pub(super) fn load_part(
        &self,
        goods: GoodsId,
        keys: &Keys,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
        epoch: Epoch,
        total: u32,
    ) -> Result<Loaded, StoreError> {
        if self.mode == AckMode::Queued {
            self.call("create queue", |con| create_group(con, &keys.queue))?;
        }
        let load = Load {
            remaining,
            holders,
            epoch,
            total,
        }
        .commands(keys);
        let mut staging = ::redis::pipe();
        for write in &load.staging {
            staging.cmd(write.name).arg(&write.args).ignore();
        }
        // The staged hash is this load's alone: writing it changes nothing
        // anyone reads, so a failure here is "nothing done".
        self.call("stage load", |con| staging.query::<()>(con))?;
        let inv = self.scripts.load(&load);
        // With `--redis-wait`, on the replicas too: a load a failover lost
        // would leave the goods at an older load, or frozen.
        let reply = self.call_replicated("load", goods, &keys.stock, |con| inv.invoke(con))?;
        if let Some(later) = stale_epoch(&reply).transpose()? {
            self.learn_epoch(goods, later.epoch);
            return Ok(Loaded::Superseded(later.epoch));
        }
        if reply != Value::Int(1) {
            return Err(inconsistent(format!(
                "load of goods {goods}: unexpected reply {reply:?}"
            )));
        }
        self.learn_epoch(goods, epoch);
        self.unloaded.lock().remove(&goods);
        Ok(Loaded::Now)
    }

    /// FREEZE of one part.
    pub(super) fn freeze_part(
        &self,
        goods: GoodsId,
        keys: &Keys,
        epoch: Epoch,
    ) -> Result<Loaded, StoreError> {
        let inv = self.scripts.freeze(keys, epoch);
        // With `--redis-wait`, on the replicas before anything is counted:
        // a primary promoted without the freeze would go on selling, and
        // queuing acknowledged orders, under the older epoch.
        let reply = self.call_replicated("freeze", goods, &keys.stock, |con| inv.invoke(con))?;
        match stale_epoch(&reply).transpose()? {
            Some(later) => Ok(Loaded::Superseded(later.epoch)),
            None if reply == Value::Int(1) => Ok(Loaded::Now),
            None => Err(inconsistent(format!(
                "freeze of goods {goods}: unexpected reply {reply:?}"
            ))),
        }
    }

    pub(super) fn reserve_part(
        &self,
        goods: GoodsId,
        keys: &Keys,
        rules: &ReserveRules,
        buyers: &[Buyer],
    ) -> Result<Reserved, StoreError> {
        let bids: Vec<ReserveBuyer> = buyers
            .iter()
            .map(|b| ReserveBuyer {
                user: b.user,
                order_no: b.order_no,
                token: b.token,
                request_id: b.request_id.map(RequestId::get),
            })
            .collect();
        let mode = match self.mode {
            AckMode::Durable => Mode::Durable,
            AckMode::Queued => Mode::Queued,
        };
        self.fenced(
            goods,
            keys,
            "reserve",
            |epoch| {
                let call = ReserveCall {
                    mode,
                    goods,
                    now_ms: rules.now_ms,
                    epoch,
                    per_user_limit: rules.per_user_limit,
                    token_required: rules.token_required,
                    pay_by_ms: rules.pay_by_ms,
                    request_id_ttl_ms: REQUEST_ID_TTL_MS,
                    buyers: &bids,
                };
                self.scripts.reserve(keys, &call)
            },
            |reply, epoch| reserved(goods, buyers.len(), reply, epoch),
        )
    }

    fn release_part(
        &self,
        goods: GoodsId,
        keys: &Keys,
        buyers: &[(UserId, OrderNo)],
    ) -> Result<u32, StoreError> {
        let call = ReleaseCall { orders: buyers };
        let inv = self.scripts.release(keys, &call);
        let reply = self.call_effect("release", |con| inv.invoke::<Value>(con));
        let result = reply.and_then(|v| match stale_epoch(&v) {
            // Frozen by a reconciliation: released by the one after it.
            Some(_) => Err(StoreError::Unavailable(format!(
                "goods {goods} is being reconciled; its units come back with the next reconciliation"
            ))),
            None => script_count(goods, "release", v),
        });
        self.not_loaded(goods, result)
    }

    fn forget_part(&self, keys: &Keys, unmade: &[Unmade]) -> Result<(), StoreError> {
        if unmade.is_empty() {
            return Ok(());
        }
        let unmade: Vec<scripts::Unmade> = unmade
            .iter()
            .map(|u| scripts::Unmade {
                request_id: u.request_id.map_or(0, RequestId::get),
                user: u.user,
                order_no: u.order_no,
                token: u.token,
            })
            .collect();
        let call = ForgetCall { unmade: &unmade };
        let inv = self.scripts.forget(keys, &call);
        self.call_effect("forget unmade orders", |con| inv.invoke::<i64>(con))?;
        Ok(())
    }

    /// One MGET: the keys share the goods' hash tag, so one node has both.
    fn levels_part(&self, goods: GoodsId) -> Result<Option<Levels>, StoreError> {
        let keys = self.keys(goods);
        let (stock, released): (Option<i64>, Option<u64>) = self.call("levels", |con| {
            ::redis::cmd("MGET")
                .arg(&keys.stock)
                .arg(&keys.released)
                .query(con)
        })?;
        let Some(stock) = stock else {
            return Ok(None);
        };
        Ok(Some(Levels {
            remaining: to_u32(&format!("stock of goods {goods}"), stock)?,
            released: released.unwrap_or(0),
        }))
    }

    /// A part's units left and holders (one pair per held order, sorted),
    /// read atomically; `None` if it is not loaded.
    pub(super) fn snapshot_part(
        &self,
        goods: GoodsId,
        keys: &Keys,
    ) -> Result<Option<(u32, Holders)>, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(&keys.stock)
            .cmd("HGETALL")
            .arg(&keys.buyers);
        let (stock, buyers) = self.call("snapshot", |con| {
            pipe.query::<(Option<i64>, HashMap<String, String>)>(con)
        })?;
        let Some(stock) = stock else {
            return Ok(None);
        };
        let what = format!("snapshot of goods {goods}");
        let fields = buyers.iter().map(|(u, o)| (u.as_str(), o.as_str()));
        let holders = holders(fields).map_err(|e| inconsistent(format!("{what}: {e}")))?;
        Ok(Some((to_u32(&what, stock)?, holders)))
    }
}
