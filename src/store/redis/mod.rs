//! The production stock store: Redis.
//!
//! Each goods lives under keys that share a hash tag, so a Redis Cluster
//! keeps them on one node and one script may touch them all:
//!
//! ```text
//! <prefix>{g<id>}:stock         integer: units left
//! <prefix>{g<id>}:buyers        hash: user id → the order numbers the user
//!                               holds, oldest first, space-separated
//!                               ("o1 o2"; mostly just one)
//! <prefix>{g<id>}:queue         stream of reserved orders (queued mode): the
//!                               consumer group "writers" moves them to the
//!                               order store, then acks and deletes them
//! <prefix>{g<id>}:epoch         integer bumped by every load: scripts carry
//!                               the epoch they were sent under and act only
//!                               on it
//! <prefix>{g<id>}:tokens        hash: purchase token → "user expires_ms",
//!                               then " order_no" once it reserved a unit
//! <prefix>{g<id>}:token_expiry  sorted set: token → when it may be forgotten
//!                               (expires_ms plus its lifetime again), so
//!                               that ISSUE can prune the tokens hash
//! ```
//!
//! Every decision is one Lua script, so it is atomic against every other
//! call. Lua numbers are doubles, exact only up to 2^53, and user ids, order
//! numbers and tokens use all 64 bits: they stay strings inside the scripts
//! and are only compared, never converted. Times in milliseconds (about
//! 2^41 today) are the only numbers the scripts compare as numbers.
//!
//! Tokens are not part of a load: the order store does not know them, so a
//! load (a reconciliation) leaves them as they are, and an order a token
//! bought that the load no longer holds makes the token `Used`.
//!
//! A missing stock key means Redis lost the goods (restarted without its
//! data) or never had it: the scripts then take nothing and answer nil,
//! which is [`StoreError::NotLoaded`], so the sale reloads the goods from the
//! order store instead of selling from a counter that is not there.

mod link;
mod queue;
mod scripts;
mod stock;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use ::redis::{Client, Connection, Script};
use log::warn;
use parking_lot::Mutex;
use seckill_proto::NO_TOKEN;

use super::memory::{forget_after, PRUNE_BATCH};
use super::outage::Outage;
use super::{GoodsId, StoreError, UserId};
use crate::config::AckMode;
pub use scripts::RESERVE;
use scripts::{ADD, ISSUE, RELEASE};

pub struct RedisStock {
    client: Client,
    prefix: String,
    mode: AckMode,
    pool: Mutex<Vec<Connection>>,
    outage: Outage,
    /// Goods already reported not loaded: logged once until loaded again.
    unloaded: Mutex<HashSet<GoodsId>>,
    /// The epoch of each goods' last load by this store.
    epochs: Mutex<HashMap<GoodsId, u64>>,
    reserve: Script,
    release: Script,
    issue: Script,
    add: Script,
}

/// The keys of one goods.
pub struct Keys {
    pub stock: String,
    pub buyers: String,
    pub queue: String,
    /// Bumped by every load; see the scripts.
    pub epoch: String,
    pub tokens: String,
    pub token_expiry: String,
}

impl RedisStock {
    /// Connects to `url` (checking that Redis answers) with keys under
    /// `prefix`, which must not hold `{` or `}`: the per-goods hash tag has to
    /// be the first one in each key.
    pub fn open(url: &str, prefix: &str, mode: AckMode) -> Result<Self, StoreError> {
        if prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(format!(
                "redis key prefix {prefix:?} must not contain braces"
            )));
        }
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis url: {e}")))?;
        let store = RedisStock {
            client,
            prefix: prefix.to_string(),
            mode,
            pool: Mutex::new(Vec::new()),
            outage: Outage::new("redis stock store"),
            unloaded: Mutex::new(HashSet::new()),
            epochs: Mutex::new(HashMap::new()),
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
            issue: Script::new(ISSUE),
            add: Script::new(ADD),
        };
        store.call("ping", |con| ::redis::cmd("PING").query::<()>(con))?;
        Ok(store)
    }

    pub fn mode(&self) -> AckMode {
        self.mode
    }

    pub fn keys(&self, goods: GoodsId) -> Keys {
        let base = format!("{}{{g{goods}}}", self.prefix);
        Keys {
            stock: format!("{base}:stock"),
            buyers: format!("{base}:buyers"),
            queue: format!("{base}:queue"),
            epoch: format!("{base}:epoch"),
            tokens: format!("{base}:tokens"),
            token_expiry: format!("{base}:token_expiry"),
        }
    }

    /// The epoch this store last loaded a goods under: what its scripts
    /// must find in Redis to act. `NotLoaded` if this process never loaded
    /// it (so it reloads it before selling).
    pub fn epoch(&self, goods: GoodsId) -> Result<u64, StoreError> {
        self.epochs
            .lock()
            .get(&goods)
            .copied()
            .ok_or(StoreError::NotLoaded(goods))
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

    /// Deletes every key of a goods, its queue and tokens included (for
    /// tests).
    pub fn forget(&self, goods: GoodsId) -> Result<(), StoreError> {
        let keys = self.keys(goods);
        let mut del = ::redis::cmd("DEL");
        del.arg(&keys.stock)
            .arg(&keys.buyers)
            .arg(&keys.queue)
            .arg(&keys.epoch)
            .arg(&keys.tokens)
            .arg(&keys.token_expiry);
        self.call("forget", |con| del.query::<()>(con))
    }

    /// [`StockStore::issue_token`] at a given time (the tests' clock).
    fn issue_token_at(
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
        let keys = self.keys(goods);
        let mut inv = self.issue.prepare_invoke();
        inv.key(&keys.tokens)
            .key(&keys.token_expiry)
            .arg(now_ms)
            .arg(token)
            .arg(user)
            .arg(expires_ms)
            .arg(forget_after(now_ms, expires_ms))
            .arg(PRUNE_BATCH);
        // `call`, not `call_effect`: if the link breaks, the token was not
        // handed to anyone either way, so "busy, nothing done" is true
        // enough, and an entry that was recorded after all is pruned later.
        self.call("issue token", |con| inv.invoke::<i64>(con))?;
        Ok(())
    }
}
