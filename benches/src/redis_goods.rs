//! The redis-direct baseline's goods in Redis: loaded, read back and
//! deleted the way the server's stock store does it, through the contract
//! both share (`seckill-redis-scripts`), so the baseline measures the very
//! script and keys the server runs.

use std::collections::HashMap;
use std::time::Duration;

use seckill_redis_scripts::{holders, Call, Keys, Load, Prefix, ReserveCall, FREEZE, LOAD};

use crate::engine::wire::RedisScript;
use crate::error::Error;

/// How long setting up, verifying and deleting the goods may wait for
/// Redis: as long as the setup requests to the server may.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A goods loaded into Redis for one run; its keys are deleted when it is
/// dropped, however the run ends.
pub struct RedisGoods {
    client: redis::Client,
    id: u64,
    keys: Keys,
    /// The epoch of the load: the reserve script acts only under it.
    epoch: u64,
}

/// Units left and the holders (user, order number), sorted.
pub type Snapshot = (u32, Vec<(u64, u64)>);

impl RedisGoods {
    /// Loads goods `id` of `stock` units and no holders under `prefix`, in
    /// one MULTI as the server's store loads a goods.
    pub fn load(client: &redis::Client, prefix: &str, id: u64, stock: u32) -> Result<Self, Error> {
        let prefix = Prefix::new(prefix).map_err(|e| Error::Setup(e.to_string()))?;
        let keys = prefix.keys(id);
        let mut con = connect(client)?;
        // Under an epoch above the goods' (keys left by an earlier run may
        // hold one), as the server's reconciliation takes one.
        let current: Option<u64> = redis::cmd("GET").arg(&keys.epoch).query(&mut con)?;
        let epoch = current.unwrap_or(0) + 1;
        let load = Load {
            remaining: stock,
            holders: &[],
            epoch,
            total: stock,
        }
        .commands(&keys);
        let mut staging = redis::pipe();
        for write in &load.staging {
            staging.cmd(write.name).arg(&write.args).ignore();
        }
        staging.query::<()>(&mut con)?;
        // Frozen first, as the server's reconciliation does: LOAD puts the
        // count in place only for the epoch the goods is frozen for.
        let frozen: redis::Value = redis::Script::new(FREEZE)
            .key(&keys.epoch)
            .arg(epoch)
            .invoke(&mut con)?;
        if frozen != redis::Value::Int(1) {
            return Err(Error::Setup(format!("freezing goods {id}: {frozen:?}")));
        }
        let script = redis::Script::new(LOAD);
        let mut script = script.prepare_invoke();
        for key in &load.keys {
            script.key(key);
        }
        for arg in &load.args {
            script.arg(arg);
        }
        let loaded: redis::Value = script.invoke(&mut con)?;
        if loaded != redis::Value::Int(1) {
            return Err(Error::Setup(format!("loading goods {id}: {loaded:?}")));
        }
        Ok(RedisGoods {
            client: client.clone(),
            id,
            keys,
            epoch,
        })
    }

    /// The reserve script loaded into Redis, with this goods' keys and
    /// epoch: what the engine's redis codec calls. `greeting` is what a new
    /// connection sends first.
    pub fn reserve_script(&self, greeting: Vec<Vec<u8>>) -> Result<RedisScript, Error> {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(ReserveCall::SCRIPT)
            .query(&mut connect(&self.client)?)?;
        Ok(RedisScript {
            sha,
            keys: ReserveCall::KEYS
                .iter()
                .map(|&key| self.keys.get(key).to_string())
                .collect(),
            goods: self.id,
            epoch: self.epoch,
            greeting,
        })
    }

    /// The units left and holders, read atomically; `None` if the stock is
    /// gone.
    pub fn snapshot(&self) -> Result<Option<Snapshot>, Error> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(&self.keys.stock)
            .cmd("HGETALL")
            .arg(&self.keys.buyers);
        let (stock, buyers): (Option<i64>, HashMap<String, String>) =
            pipe.query(&mut connect(&self.client)?)?;
        let Some(stock) = stock else {
            return Ok(None);
        };
        let bad = |what: &str, e: &dyn std::fmt::Display| Error::Store(format!("{what}: {e}"));
        let stock = u32::try_from(stock).map_err(|e| bad(&self.keys.stock, &e))?;
        let fields = buyers.iter().map(|(u, o)| (u.as_str(), o.as_str()));
        let holders = holders(fields).map_err(|e| bad(&self.keys.buyers, &e))?;
        Ok(Some((stock, holders)))
    }
}

impl Drop for RedisGoods {
    fn drop(&mut self) {
        let mut del = redis::cmd("DEL");
        del.arg(&self.keys.all()[..]);
        let deleted = connect(&self.client).and_then(|mut con| del.query::<()>(&mut con));
        if let Err(e) = deleted {
            eprintln!(
                "seckill-bench: deleting the redis-direct keys of goods {}: {e}",
                self.id
            );
        }
    }
}

/// A connection whose every wait is bounded by [`TIMEOUT`].
fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let con = client.get_connection_with_timeout(TIMEOUT)?;
    con.set_read_timeout(Some(TIMEOUT))?;
    con.set_write_timeout(Some(TIMEOUT))?;
    Ok(con)
}
