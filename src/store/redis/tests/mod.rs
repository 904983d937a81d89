//! The Redis store's own tests, against the real Redis
//! (`SECKILL_TEST_REDIS`, default redis://127.0.0.1:6379): each test under
//! a key prefix of its own, deleted when the test ends, failing or not.

mod buckets;
mod cluster;
mod link;
mod loads;
mod queue;
mod stock;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::Value;
use seckill_proto::{OrderState, DEFAULT_PAY_WINDOW_MS, NO_TOKEN};

use super::RedisStock;
use crate::clock::now_ms;
use crate::config::AckMode;
use crate::store::conformance::stock::Subject;
use crate::store::fixtures::{buy, buyers, rules_at, tokened, LoadNext};
use crate::store::{
    GoodsId, OrderNo, OrderQueue, OrderRecord, Reservation, ReserveRules, StockStore, StoreError,
    TokenRefusal, UserId,
};

/// A store under a key prefix of its own, whose keys go when it drops.
pub(in crate::store) struct TestStock {
    stock: RedisStock,
    prefix: String,
}

impl std::ops::Deref for TestStock {
    type Target = RedisStock;
    fn deref(&self) -> &RedisStock {
        &self.stock
    }
}

impl Drop for TestStock {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        let cleaned = if self.stock.is_cluster() {
            cluster::delete_matching(&pattern).map_err(|e| e.to_string())
        } else {
            self.stock
                .call("cleanup", |con| delete_matching(con, &pattern))
                .map_err(|e| e.to_string())
        };
        if let Err(e) = cleaned {
            eprintln!("cleaning up keys {pattern}: {e}");
        }
    }
}

/// Deletes the keys matching `pattern` on one Redis (one key a DEL, which
/// a cluster node needs: the keys are in many slots).
fn delete_matching(
    con: &mut dyn ::redis::ConnectionLike,
    pattern: &str,
) -> ::redis::RedisResult<()> {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(con)?;
        if !keys.is_empty() {
            let mut pipe = ::redis::pipe();
            for key in &keys {
                pipe.cmd("DEL").arg(key).ignore();
            }
            pipe.query::<()>(con)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

impl TestStock {
    /// How many of a goods' keys exist.
    fn keys_of(&self, goods: GoodsId) -> u64 {
        let keys = self.keys(goods);
        let mut exists = ::redis::cmd("EXISTS");
        exists
            .arg(&keys.stock)
            .arg(&keys.buyers)
            .arg(&keys.queue)
            .arg(&keys.tokens)
            .arg(&keys.token_expiry);
        self.call("exists", |con| exists.query(con)).unwrap()
    }
}

/// A prefix no other test uses.
fn test_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "seckill-test:{}:{}:{nanos}:",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(in crate::store) fn open(mode: AckMode) -> TestStock {
    let url = std::env::var("SECKILL_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let prefix = test_prefix();
    let stock = RedisStock::open(&url, &prefix, mode).unwrap_or_else(|e| {
        panic!("the Redis stock tests need a Redis at {url} (set SECKILL_TEST_REDIS): {e}")
    });
    TestStock { stock, prefix }
}

/// [`open`] on the local Redis Cluster of `scripts/cluster/redis.sh`,
/// formed first if it is not up.
pub(in crate::store) fn open_cluster(mode: AckMode) -> TestStock {
    open_cluster_with(mode, None)
}

/// [`open_cluster`], each stock change waiting for `replication`.
fn open_cluster_with(mode: AckMode, replication: Option<super::Replication>) -> TestStock {
    let seeds = cluster::up();
    let prefix = test_prefix();
    let mut stock = RedisStock::open_cluster(&seeds, &prefix, mode)
        .unwrap_or_else(|e| panic!("the local Redis Cluster at {seeds:?}: {e}"));
    if let Some(r) = replication {
        stock = stock.with_replication(r);
    }
    TestStock { stock, prefix }
}

/// Rules of limit `per_user_limit` on the real clock, no token.
fn rules(per_user_limit: u8) -> ReserveRules {
    rules_at(per_user_limit, now_ms())
}

const INVALID: Reservation = Reservation::Token(TokenRefusal::Invalid);

impl Subject for RedisStock {
    fn issue_token_at(
        &self,
        goods: GoodsId,
        user: UserId,
        token: u64,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        RedisStock::issue_token_at(self, goods, user, token, expires_ms, now_ms)
    }

    fn tokens_kept(&self, goods: GoodsId) -> (usize, usize) {
        let keys = self.keys(goods);
        let mut pipe = ::redis::pipe();
        pipe.cmd("HLEN")
            .arg(&keys.tokens)
            .cmd("ZCARD")
            .arg(&keys.token_expiry);
        self.call("count tokens", |con| pipe.query(con)).unwrap()
    }
}
