//! The production stock store: Redis.
//!
//! What lives where in Redis, and the Lua scripts that decide on it, are the
//! contract of the `seckill-redis-scripts` crate, which the bench's
//! redis-direct baseline shares: its docs draw the key layout, and each
//! script's file opens with its KEYS, ARGV and answer. This module runs them:
//!
//! ```text
//! mod.rs      RedisStock: open, the keys and epoch of a goods
//! link.rs     the connection pool, call/call_effect, what an error means
//! scripts.rs  the scripts hashed once, a typed call to an invocation, the
//!             answers decoded
//! stock.rs    StockStore: load, reserve, release, tokens, restock, reads
//! queue.rs    OrderQueue: the stream of queued orders and its group
//! topology.rs on a cluster, which goods a failover moved
//! durability.rs what the queued mode's orders rest on: Redis's persistence
//!             and replicas, asked at start
//! ```
//!
//! Tokens are not part of a load: the order store does not know them, so a
//! load (a reconciliation) leaves them as they are, and an order a token
//! bought that the load no longer holds makes the token `Used`.
//!
//! A missing stock key means Redis lost the goods (restarted without its
//! data) or never had it: the scripts then take nothing and answer nil,
//! which is [`StoreError::NotLoaded`], so the sale reloads the goods from the
//! order store instead of selling from a counter that is not there.

mod buckets;
mod durability;
mod link;
mod queue;
mod scripts;
mod stock;
#[cfg(test)]
pub(super) mod tests;
mod topology;

use std::collections::{HashMap, HashSet};

use log::warn;
use parking_lot::Mutex;
pub use seckill_redis_scripts::Keys;
use seckill_redis_scripts::Prefix;

use super::outage::Outage;
use super::{Epoch, GoodsId, StoreError};
use crate::config::AckMode;
use ::redis::Value;
use link::{inconsistent, Link, Target};
use scripts::stale_epoch;
use seckill_redis_scripts::EpochState;
use std::time::{Duration, Instant};

/// How long a goods may stay frozen by another server's reconciliation
/// before this one takes it over: a reconciliation counts and loads within
/// moments unless its server died in between.
const LOADING_GRACE: Duration = Duration::from_secs(5);
use scripts::Scripts;

pub struct RedisStock {
    target: Target,
    prefix: Prefix,
    mode: AckMode,
    pool: Mutex<Vec<Link>>,
    outage: Outage,
    /// Goods already reported not loaded: logged once until loaded again.
    unloaded: Mutex<HashSet<GoodsId>>,
    /// The epoch of each goods' last load by this store.
    epochs: Mutex<HashMap<GoodsId, u64>>,
    /// Since when each part of a goods (by its epoch key) has been found
    /// frozen by another server's reconciliation (see
    /// [`RedisStock::loading`]).
    loading_since: Mutex<HashMap<String, (Epoch, Instant)>>,
    scripts: Scripts,
    /// Which primary served each goods, to notice a failover.
    watch: Mutex<topology::Watch>,
    /// Replicas every stock change must reach before it is acted on, if any
    /// (`--redis-wait`).
    replication: Option<Replication>,
    /// The goods split over several buckets, and how many; every other
    /// goods has one (see `buckets.rs`).
    splits: Mutex<HashMap<GoodsId, u16>>,
    /// What this store last saw of each bucketed goods' parts.
    levels: Mutex<HashMap<GoodsId, buckets::Seen>>,
}

/// `--redis-wait`: after each fenced script (a reservation, a restock),
/// WAIT until this many replicas of the goods' primary have it, for at most
/// `timeout`; short of them, the change is in doubt
/// ([`StoreError::Indeterminate`]): nobody is told "ok" on it.
#[derive(Debug, Clone, Copy)]
pub struct Replication {
    pub replicas: u32,
    pub timeout: Duration,
}

impl RedisStock {
    /// Connects to `url` (checking that Redis answers) with keys under
    /// `prefix`, which must not hold `{` or `}`: the per-goods hash tag has to
    /// be the first one in each key.
    /// (The server itself starts with `new` and prepares in the background:
    /// see `startup.rs`.)
    #[cfg(test)]
    pub fn open(url: &str, prefix: &str, mode: AckMode) -> Result<Self, StoreError> {
        let store = Self::new(url, prefix, mode)?;
        store.call("ping", |con| ::redis::cmd("PING").query::<()>(con))?;
        Ok(store)
    }

    /// [`open`](Self::open) without connecting: fails only on a URL or a
    /// prefix that can never work. Connections are made when calls need
    /// them, so a Redis that is down now is used once it is up.
    pub fn new(url: &str, prefix: &str, mode: AckMode) -> Result<Self, StoreError> {
        Self::on(Target::one(url)?, prefix, mode)
    }

    /// [`new`](Self::new) on a Redis Cluster found through any of `seeds`
    /// (`HOST:PORT` or URLs).
    pub fn new_cluster(seeds: &[String], prefix: &str, mode: AckMode) -> Result<Self, StoreError> {
        Self::on(Target::cluster(seeds)?, prefix, mode)
    }

    /// [`open`](Self::open) on a Redis Cluster.
    #[cfg(test)]
    pub fn open_cluster(seeds: &[String], prefix: &str, mode: AckMode) -> Result<Self, StoreError> {
        let store = Self::new_cluster(seeds, prefix, mode)?;
        store.call("ping", |con| ::redis::cmd("PING").query::<()>(con))?;
        Ok(store)
    }

    fn on(target: Target, prefix: &str, mode: AckMode) -> Result<Self, StoreError> {
        let prefix = Prefix::new(prefix).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(RedisStock {
            target,
            prefix,
            mode,
            pool: Mutex::new(Vec::new()),
            outage: Outage::new("redis stock store"),
            unloaded: Mutex::new(HashSet::new()),
            epochs: Mutex::new(HashMap::new()),
            loading_since: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
            watch: Mutex::new(topology::Watch::default()),
            replication: None,
            splits: Mutex::new(HashMap::new()),
            levels: Mutex::new(HashMap::new()),
        })
    }

    /// Every reservation and restock waits for `replication` (see
    /// [`Replication`]).
    pub fn with_replication(mut self, replication: Replication) -> Self {
        self.replication = Some(replication);
        self
    }

    pub fn keys(&self, goods: GoodsId) -> Keys {
        self.prefix.keys(goods)
    }

    /// The epoch this store's scripts carry for a goods: the last it loaded
    /// or found there. Read from Redis the first time (`NotLoaded` if Redis
    /// has none: the goods is reconciled before it sells).
    fn known_epoch(&self, goods: GoodsId) -> Result<Epoch, StoreError> {
        if let Some(&epoch) = self.epochs.lock().get(&goods) {
            return Ok(epoch);
        }
        let state = self
            .epoch_state(goods)?
            .ok_or(StoreError::NotLoaded(goods))?;
        if state.loading {
            let pool = self.part_keys(goods, seckill_redis_scripts::Part::Pool);
            return Err(self.loading(goods, &pool.epoch, state.epoch));
        }
        self.learn_epoch(goods, state.epoch);
        Ok(state.epoch)
    }

    /// From now on this store's scripts carry `epoch` for the goods. Never
    /// goes back: epochs only rise.
    pub(in crate::store) fn learn_epoch(&self, goods: GoodsId, epoch: Epoch) {
        let mut epochs = self.epochs.lock();
        let known = epochs.entry(goods).or_insert(epoch);
        *known = (*known).max(epoch);
    }

    fn epoch_state(&self, goods: GoodsId) -> Result<Option<EpochState>, StoreError> {
        let key = self
            .part_keys(goods, seckill_redis_scripts::Part::Pool)
            .epoch;
        let value: Option<String> =
            self.call("epoch", |con| ::redis::cmd("GET").arg(&key).query(con))?;
        value
            .map(|v| EpochState::parse(&v).ok_or_else(|| inconsistent(format!("bad {key}: {v:?}"))))
            .transpose()
    }

    /// The error for a part of a goods (named by its epoch key, `part`)
    /// another reconciliation has frozen: `busy` while it counts, but if it
    /// stays frozen past [`LOADING_GRACE`] (the reconciling server died
    /// between its freeze and its load), not loaded, so that this server
    /// reconciles it. Timed per part: a goods split over buckets is frozen
    /// and loaded part by part, and calls that go on succeeding on the
    /// parts a dead reconciler left alone say nothing of one it froze.
    fn loading(&self, goods: GoodsId, part: &str, epoch: Epoch) -> StoreError {
        let mut since = self.loading_since.lock();
        // Timed per freeze: a later reconciliation's freeze gets its own
        // grace, not what is left of an earlier one's.
        let (frozen, first) = *since
            .entry(part.to_owned())
            .or_insert((epoch, Instant::now()));
        if frozen != epoch {
            since.insert(part.to_owned(), (epoch, Instant::now()));
            return StoreError::Unavailable(format!("goods {goods} is being reconciled"));
        }
        if first.elapsed() < LOADING_GRACE {
            return StoreError::Unavailable(format!("goods {goods} is being reconciled"));
        }
        since.remove(part);
        warn!("goods {goods} stayed frozen for a reconciliation that never loaded it");
        StoreError::NotLoaded(goods)
    }

    /// Runs `script` as [`call_effect`](Self::call_effect) does, then, with
    /// `--redis-wait`, waits on the same link (WAIT counts the writes this
    /// client sent) for the replicas of `key`'s primary. A change that did
    /// not reach them is in doubt: acted on, one a failover can lose could
    /// sell a unit twice or lose an acknowledged queued order; whether it
    /// stays is for a reconciliation to say.
    fn call_replicated(
        &self,
        what: &str,
        goods: GoodsId,
        key: &str,
        script: impl FnOnce(&mut Link) -> ::redis::RedisResult<Value>,
    ) -> Result<Value, StoreError> {
        let (reply, replicated) = self.call_effect(what, |con| {
            let reply = script(con)?;
            let replicated = match &self.replication {
                Some(r) => Some(con.wait_replicas(key, r)?),
                None => None,
            };
            Ok((reply, replicated))
        })?;
        if let (Some(r), Some(got)) = (&self.replication, replicated) {
            if got < i64::from(r.replicas) {
                return Err(StoreError::Indeterminate(format!(
                    "redis {what} of goods {goods} reached {got} of {} replicas within {:?}",
                    r.replicas, r.timeout
                )));
            }
        }
        Ok(reply)
    }

    /// Runs a fenced script, built by `invoke` for the epoch it is to carry.
    /// A goods loaded under another epoch since this store learnt one (by
    /// another server's reconciliation) answers with that epoch: learnt, and
    /// the script sent once more under it. A goods being reconciled is
    /// `busy` (see [`loading`](Self::loading)).
    fn fenced<'s, T>(
        &'s self,
        goods: GoodsId,
        keys: &Keys,
        what: &str,
        invoke: impl Fn(Epoch) -> scripts::Invocation<'s>,
        decode: impl Fn(Value, Epoch) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut epoch = self.not_loaded(goods, self.known_epoch(goods))?;
        for _ in 0..2 {
            let inv = invoke(epoch);
            let reply = self.call_replicated(what, goods, &keys.stock, |con| inv.invoke(con));
            let reply = self.not_loaded(goods, reply)?;
            match stale_epoch(&reply).transpose()? {
                Some(state) if state.loading => {
                    let frozen = self.loading(goods, &keys.epoch, state.epoch);
                    return self.not_loaded(goods, Err(frozen));
                }
                // Older than a load this store knows of: the stock store
                // lost that load (a failover to a replica that lacked it),
                // and holds units the load's count gave to others. Never
                // sold from: reloaded from the order store.
                Some(state) if state.epoch < epoch => {
                    warn!(
                        "goods {goods}: redis is back at epoch {} after a load at {epoch}: \
                         it lost writes",
                        state.epoch
                    );
                    return self.not_loaded(goods, Err(StoreError::NotLoaded(goods)));
                }
                Some(state) => {
                    self.learn_epoch(goods, state.epoch);
                    epoch = state.epoch;
                }
                None => {
                    self.loading_since.lock().remove(&keys.epoch);
                    return self.not_loaded(goods, decode(reply, epoch));
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "goods {goods} is being reloaded, retry later"
        )))
    }

    /// Logs a goods found not loaded, once until it is loaded again.
    fn not_loaded<T>(
        &self,
        goods: GoodsId,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Err(StoreError::NotLoaded(_)) = result {
            if self.unloaded.lock().insert(goods) {
                warn!("redis has no stock for goods {goods}: not loaded or lost");
            }
        }
        result
    }

    /// Deletes every key of a goods, its queue and tokens included, in
    /// every bucket it has.
    #[cfg(test)]
    pub fn forget(&self, goods: GoodsId) -> Result<(), StoreError> {
        for keys in self.parts_of(goods).into_iter().map(|(_, keys)| keys) {
            let mut del = ::redis::cmd("DEL");
            del.arg(&keys.all()[..]);
            self.call("forget", |con| del.query::<()>(con))?;
        }
        Ok(())
    }
}
