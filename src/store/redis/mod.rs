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

mod link;
mod queue;
mod scripts;
mod stock;
#[cfg(test)]
pub(super) mod tests;

use std::collections::{HashMap, HashSet};

use ::redis::{Client, Connection};
use log::warn;
use parking_lot::Mutex;
use seckill_redis_scripts::Prefix;
pub use seckill_redis_scripts::{Keys, RESERVE};

use super::outage::Outage;
use super::{GoodsId, StoreError};
use crate::config::AckMode;
use scripts::Scripts;

pub struct RedisStock {
    client: Client,
    prefix: Prefix,
    mode: AckMode,
    pool: Mutex<Vec<Connection>>,
    outage: Outage,
    /// Goods already reported not loaded: logged once until loaded again.
    unloaded: Mutex<HashSet<GoodsId>>,
    /// The epoch of each goods' last load by this store.
    epochs: Mutex<HashMap<GoodsId, u64>>,
    scripts: Scripts,
}

impl RedisStock {
    /// Connects to `url` (checking that Redis answers) with keys under
    /// `prefix`, which must not hold `{` or `}`: the per-goods hash tag has to
    /// be the first one in each key.
    pub fn open(url: &str, prefix: &str, mode: AckMode) -> Result<Self, StoreError> {
        let store = Self::new(url, prefix, mode)?;
        store.call("ping", |con| ::redis::cmd("PING").query::<()>(con))?;
        Ok(store)
    }

    /// [`open`](Self::open) without connecting: fails only on a URL or a
    /// prefix that can never work. Connections are made when calls need
    /// them, so a Redis that is down now is used once it is up.
    pub fn new(url: &str, prefix: &str, mode: AckMode) -> Result<Self, StoreError> {
        let prefix = Prefix::new(prefix).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let client = Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("bad redis url: {e}")))?;
        Ok(RedisStock {
            client,
            prefix,
            mode,
            pool: Mutex::new(Vec::new()),
            outage: Outage::new("redis stock store"),
            unloaded: Mutex::new(HashSet::new()),
            epochs: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
        })
    }

    pub fn mode(&self) -> AckMode {
        self.mode
    }

    pub fn keys(&self, goods: GoodsId) -> Keys {
        self.prefix.keys(goods)
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
        del.arg(&keys.all()[..]);
        self.call("forget", |con| del.query::<()>(con))
    }
}
