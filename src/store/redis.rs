//! The production stock store: Redis.
//!
//! Each goods lives under three keys that share a hash tag, so a Redis
//! Cluster keeps them on one node and one script may touch them all:
//!
//! ```text
//! <prefix>{g<id>}:stock    integer: units left
//! <prefix>{g<id>}:buyers   hash: user id → order number
//! <prefix>{g<id>}:queue    stream of reserved orders (queued mode): the
//!                          consumer group "writers" moves them to the
//!                          order store, then acks and deletes them
//! <prefix>{g<id>}:epoch    integer bumped by every load: scripts carry the
//!                          epoch they were sent under and act only on it
//! ```
//!
//! Every decision is one Lua script, so it is atomic against every other
//! call. Lua numbers are doubles, exact only up to 2^53, and order numbers
//! use all 64 bits: user ids and order numbers stay strings inside the
//! scripts and are only compared, never converted.
//!
//! A missing stock key means Redis lost the goods (restarted without its
//! data) or never had it: the scripts then take nothing and answer nil,
//! which is [`StoreError::NotLoaded`], so the sale reloads the goods from the
//! order store instead of selling from a counter that is not there.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use ::redis::{
    Client, Connection, ConnectionLike, ErrorKind, RedisError, RedisResult, Script, Value,
};
use log::{error, warn};
use parking_lot::Mutex;
use seckill_proto::OrderState;

use super::outage::Outage;
use super::{
    GoodsId, Holders, OrderNo, OrderQueue, OrderRecord, QueuedOrder, Reservation, Reserved,
    StockStore, StoreError, UserId,
};
use crate::clock::now_ms;
use crate::config::AckMode;

/// How long to wait for a connection, and for any reply but a blocking
/// read's: a dead Redis costs a worker this long, never more.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept for reuse; more are closed when handed back.
const MAX_IDLE: usize = 32;
/// Holders per HSET when loading a goods.
const HSET_CHUNK: usize = 1000;
/// Entries per XRANGE page when listing a queue.
const RANGE_PAGE: usize = 1000;
/// The consumer group of the order writers on every queue.
const GROUP: &str = "writers";

// Every script that changes a goods is fenced by the goods' epoch, which
// each load bumps: a script sent before a load and run after it (Redis
// stalled, the caller timed out, the goods was reconciled meanwhile) finds
// another epoch and does nothing, instead of changing the reloaded stock.
// A script that finds no stock or another epoch returns nil: "not loaded".

// KEYS: stock, buyers, queue, epoch. ARGV: mode, goods, created_ms, epoch,
// then user and order number pairs. Returns nil if not loaded, else
// {remaining, one result per buyer}: 1 reserved, 0 sold out, or the held
// order number (a string).
pub const RESERVE: &str = r"
local stock = redis.call('GET', KEYS[1])
if not stock or redis.call('GET', KEYS[4]) ~= ARGV[4] then return false end
local left = tonumber(stock)
local queued = ARGV[1] == 'queued'
local out = {0}
for i = 5, #ARGV, 2 do
  local user, order_no = ARGV[i], ARGV[i + 1]
  local held = redis.call('HGET', KEYS[2], user)
  if held then
    out[#out + 1] = held
  elseif left > 0 then
    left = redis.call('DECR', KEYS[1])
    redis.call('HSET', KEYS[2], user, order_no)
    if queued then
      redis.call('XADD', KEYS[3], '*', 'order_no', order_no, 'user', user,
        'goods', ARGV[2], 'created_ms', ARGV[3])
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
out[1] = left
return out
";

// KEYS: stock, buyers, epoch. ARGV: epoch, then user and order number
// pairs. Returns nil if not loaded, else the units left.
const RELEASE: &str = r"
local stock = redis.call('GET', KEYS[1])
if not stock or redis.call('GET', KEYS[3]) ~= ARGV[1] then return false end
local left = tonumber(stock)
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[2], ARGV[i])
    left = redis.call('INCR', KEYS[1])
  end
end
return left
";

// KEYS: stock, epoch. ARGV: amount, epoch. Saturates at u32::MAX like
// MemoryStock. Returns nil if not loaded, else the units left.
const ADD: &str = r"
local stock = redis.call('GET', KEYS[1])
if not stock or redis.call('GET', KEYS[2]) ~= ARGV[2] then return false end
local left = tonumber(stock) + tonumber(ARGV[1])
if left > 4294967295 then left = 4294967295 end
redis.call('SET', KEYS[1], string.format('%d', left))
return left
";

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
    add: Script,
}

/// The keys of one goods.
pub struct Keys {
    pub stock: String,
    pub buyers: String,
    pub queue: String,
    /// Bumped by every load; see the scripts.
    pub epoch: String,
}

fn inconsistent(what: String) -> StoreError {
    StoreError::Inconsistent(format!("redis: {what}"))
}

/// Whether a failed connection can still be used: only if Redis answered
/// (with an error) and the reply was read whole.
fn reusable(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// What a Redis error means to the sale: a broken value is `Inconsistent`;
/// everything else (I/O, timeouts, LOADING, OOM, READONLY, ...) may pass.
fn store_error(what: &str, e: &RedisError) -> StoreError {
    let broken = match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => true,
        ErrorKind::Extension => e.code() == Some("WRONGTYPE"),
        // A script that failed at run time (e.g. a stock that is no integer).
        ErrorKind::Server(::redis::ServerErrorKind::ResponseError) => {
            e.detail().is_some_and(|d| d.contains("script"))
        }
        _ => false,
    };
    if broken {
        inconsistent(format!("{what}: {e}"))
    } else {
        StoreError::Unavailable(format!("redis {what}: {e}"))
    }
}

fn to_u32(what: &str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| inconsistent(format!("{what}: stock {n} out of range")))
}

fn parse_u64(what: &str, s: &str) -> Result<u64, StoreError> {
    s.parse()
        .map_err(|_| inconsistent(format!("{what}: {s:?} is no u64")))
}

/// The stock count a script returned, or `NotLoaded` for its nil.
fn script_count(goods: GoodsId, what: &str, v: Value) -> Result<u32, StoreError> {
    match v {
        Value::Nil => Err(StoreError::NotLoaded(goods)),
        Value::Int(n) => to_u32(what, n),
        other => Err(inconsistent(format!("{what}: unexpected reply {other:?}"))),
    }
}

/// The order in a queue entry written by the reserve script.
fn queued_order(goods: GoodsId, entry: &StreamId) -> Result<QueuedOrder, StoreError> {
    let field = |name: &str| {
        let text = entry.get::<String>(name).unwrap_or_default();
        let what = format!("field {name} of queue entry {} of goods {goods}", entry.id);
        parse_u64(&what, &text)
    };
    let order = OrderRecord {
        order_no: field("order_no")?,
        user_id: field("user")?,
        goods_id: field("goods")?,
        state: OrderState::Created,
        created_ms: field("created_ms")?,
    };
    if order.goods_id != goods {
        return Err(inconsistent(format!(
            "queue entry {} of goods {goods} is for goods {}",
            entry.id, order.goods_id
        )));
    }
    Ok(QueuedOrder {
        id: entry.id.clone(),
        order,
    })
}

/// The orders in entries read for writing. An entry that is no order (which
/// only a bug or a hand edit can make) is logged and skipped rather than
/// failing the batch: it would fail every read that meets it again, and
/// stop the orders behind it. It stays pending, for an operator to look at.
fn readable(goods: GoodsId, entries: &[StreamId]) -> Vec<QueuedOrder> {
    entries
        .iter()
        .filter_map(|e| {
            queued_order(goods, e)
                .map_err(|err| error!("skipping a queued order: {err}"))
                .ok()
        })
        .collect()
}

/// XGROUP CREATE from the start of the stream (so entries added before the
/// group existed are read too), creating the stream; an existing group is
/// left as it is, pending entries and all.
fn create_group(con: &mut Connection, queue: &str) -> RedisResult<()> {
    let created = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(queue)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(con);
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
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

    /// A pooled connection, or a new one with timeouts set.
    fn connection(&self) -> RedisResult<Connection> {
        let pooled = self.pool.lock().pop();
        if let Some(con) = pooled {
            return Ok(con);
        }
        let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// Runs `f` on a connection, hands the connection back if it is still
    /// good, and reports the result to the outage tracker.
    fn call<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.run(what, false, f)
    }

    /// [`call`](Self::call) for a command that changes the stock (a script,
    /// a load): once it has been sent, a broken link or a timeout does not
    /// mean it did not run (a Redis that stalls runs it when it wakes up),
    /// so such a failure is [`StoreError::Indeterminate`], never
    /// `Unavailable` ("nothing was done").
    fn call_effect<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.run(what, true, f)
    }

    fn run<T>(
        &self,
        what: &str,
        effect: bool,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut sent = false;
        let result = self.connection().and_then(|mut con| {
            sent = true;
            let result = f(&mut con);
            match &result {
                Err(e) if !reusable(e) => {
                    // The link broke or timed out: the idle connections
                    // are most likely as dead (Redis restarted), so they go
                    // too rather than each failing one more request.
                    let idle = std::mem::take(&mut *self.pool.lock());
                    drop(idle);
                }
                _ if con.is_open() => {
                    let mut pool = self.pool.lock();
                    if pool.len() < MAX_IDLE {
                        pool.push(con);
                    }
                }
                _ => {}
            }
            result
        });
        let result = result.map_err(|e| match store_error(what, &e) {
            StoreError::Unavailable(m) if effect && sent && !reusable(&e) => {
                StoreError::Indeterminate(m)
            }
            other => other,
        });
        match &result {
            Err(e @ (StoreError::Unavailable(_) | StoreError::Indeterminate(_))) => {
                self.outage.failed(e)
            }
            _ => self.outage.ok(),
        }
        result
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

    /// Deletes every key of a goods, its queue included (for tests).
    pub fn forget(&self, goods: GoodsId) -> Result<(), StoreError> {
        let keys = self.keys(goods);
        let mut del = ::redis::cmd("DEL");
        del.arg(&keys.stock)
            .arg(&keys.buyers)
            .arg(&keys.queue)
            .arg(&keys.epoch);
        self.call("forget", |con| del.query::<()>(con))
    }
}

/// The user and order number pairs of a script call, as arguments.
fn pair_args(inv: &mut ::redis::ScriptInvocation<'_>, pairs: &[(UserId, OrderNo)]) {
    for &(user, order_no) in pairs {
        inv.arg(user).arg(order_no);
    }
}

impl StockStore for RedisStock {
    /// Replaces the stock and the buyers in one MULTI (atomic against the
    /// scripts). The queue is kept: it may hold orders already acknowledged
    /// and not yet written. So in queued mode `remaining` and `holders` must
    /// count the orders still in the queue ([`RedisStock::queued`]), or they
    /// would be sold a second time.
    fn load(
        &self,
        goods: GoodsId,
        remaining: u32,
        holders: &[(UserId, OrderNo)],
    ) -> Result<(), StoreError> {
        let keys = self.keys(goods);
        if self.mode == AckMode::Queued {
            self.call("create queue", |con| create_group(con, &keys.queue))?;
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic().cmd("DEL").arg(&keys.buyers).ignore();
        for chunk in holders.chunks(HSET_CHUNK) {
            let mut hset = ::redis::cmd("HSET");
            hset.arg(&keys.buyers);
            for &(user, order_no) in chunk {
                hset.arg(user).arg(order_no);
            }
            pipe.add_command(hset).ignore();
        }
        pipe.cmd("SET").arg(&keys.stock).arg(remaining).ignore();
        pipe.cmd("INCR").arg(&keys.epoch);
        let (epoch,): (u64,) = self.call_effect("load", |con| pipe.query(con))?;
        self.epochs.lock().insert(goods, epoch);
        self.unloaded.lock().remove(&goods);
        Ok(())
    }

    fn reserve(
        &self,
        goods: GoodsId,
        buyers: &[(UserId, OrderNo)],
    ) -> Result<Reserved, StoreError> {
        let keys = self.keys(goods);
        let mode = match self.mode {
            AckMode::Durable => "durable",
            AckMode::Queued => "queued",
        };
        let epoch = self.not_loaded(goods, self.epoch(goods))?;
        let mut inv = self.reserve.prepare_invoke();
        inv.key(&keys.stock)
            .key(&keys.buyers)
            .key(&keys.queue)
            .key(&keys.epoch)
            .arg(mode)
            .arg(goods)
            .arg(now_ms())
            .arg(epoch);
        pair_args(&mut inv, buyers);
        let reply = self.call_effect("reserve", |con| inv.invoke::<Value>(con));
        let what = format!("reserve of goods {goods}");
        let items = match self.not_loaded(goods, reply)? {
            Value::Nil => return self.not_loaded(goods, Err(StoreError::NotLoaded(goods))),
            Value::Array(items) if items.len() == buyers.len() + 1 => items,
            other => return Err(inconsistent(format!("{what}: unexpected reply {other:?}"))),
        };
        let mut items = items.into_iter();
        let remaining = match items.next() {
            Some(Value::Int(n)) => to_u32(&what, n)?,
            other => return Err(inconsistent(format!("{what}: bad remaining {other:?}"))),
        };
        let decisions = items
            .map(|item| match item {
                Value::Int(1) => Ok(Reservation::Reserved),
                Value::Int(0) => Ok(Reservation::SoldOut),
                Value::BulkString(held) => {
                    let held = String::from_utf8_lossy(&held);
                    parse_u64(&what, &held).map(Reservation::Held)
                }
                other => Err(inconsistent(format!("{what}: bad decision {other:?}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Reserved {
            decisions,
            remaining,
        })
    }

    fn release(&self, goods: GoodsId, buyers: &[(UserId, OrderNo)]) -> Result<u32, StoreError> {
        let keys = self.keys(goods);
        let epoch = self.not_loaded(goods, self.epoch(goods))?;
        let mut inv = self.release.prepare_invoke();
        inv.key(&keys.stock)
            .key(&keys.buyers)
            .key(&keys.epoch)
            .arg(epoch);
        pair_args(&mut inv, buyers);
        let reply = self.call_effect("release", |con| inv.invoke::<Value>(con));
        let result = reply.and_then(|v| script_count(goods, "release", v));
        self.not_loaded(goods, result)
    }

    fn add(&self, goods: GoodsId, amount: u32) -> Result<u32, StoreError> {
        let keys = self.keys(goods);
        let epoch = self.not_loaded(goods, self.epoch(goods))?;
        let mut inv = self.add.prepare_invoke();
        inv.key(&keys.stock).key(&keys.epoch).arg(amount).arg(epoch);
        let reply = self.call_effect("add", |con| inv.invoke::<Value>(con));
        let result = reply.and_then(|v| script_count(goods, "add", v));
        self.not_loaded(goods, result)
    }

    /// A goods' units left and holders (sorted by user), read atomically;
    /// `None` if it is not loaded.
    fn snapshot(&self, goods: GoodsId) -> Result<Option<(u32, Holders)>, StoreError> {
        let keys = self.keys(goods);
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
        let mut holders = buyers
            .iter()
            .map(|(user, order_no)| Ok((parse_u64(&what, user)?, parse_u64(&what, order_no)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        holders.sort_unstable();
        Ok(Some((to_u32(&what, stock)?, holders)))
    }
}

impl OrderQueue for RedisStock {
    /// Reads up to `count` new orders from the queues of `goods` as
    /// `consumer` of the writers' group, waiting up to `block` for one (zero:
    /// no wait). A queue without the group (Redis lost it) gets the group.
    /// The orders stay pending for this consumer until [`OrderQueue::ack`]ed.
    ///
    /// All the queues are read in one command, so under Redis Cluster the
    /// goods must share a slot; call once per goods there.
    fn read(
        &self,
        goods: &[GoodsId],
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<QueuedOrder>, StoreError> {
        if goods.is_empty() || count == 0 {
            return Ok(Vec::new());
        }
        let queues: HashMap<String, GoodsId> =
            goods.iter().map(|&g| (self.keys(g).queue, g)).collect();
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        // BLOCK 0 would wait forever.
        let block_ms = block.as_millis().max(u128::from(!block.is_zero()));
        if block_ms > 0 {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block_ms).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS");
        for queue in queues.keys() {
            cmd.arg(queue);
        }
        for _ in 0..queues.len() {
            cmd.arg(">");
        }
        let read = |con: &mut Connection| {
            let reply = cmd.query::<Option<StreamReadReply>>(con);
            match reply {
                Err(e) if e.code() == Some("NOGROUP") => {
                    for queue in queues.keys() {
                        create_group(con, queue)?;
                    }
                    cmd.query(con)
                }
                other => other,
            }
        };
        let reply = self.call("read queue", |con| {
            // The reply may take `block`: wait that long, then back to the
            // usual timeout before the connection returns to the pool.
            con.set_read_timeout(Some(block.saturating_add(IO_TIMEOUT)))?;
            let reply = read(con);
            con.set_read_timeout(Some(IO_TIMEOUT))?;
            reply
        })?;
        let mut orders = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(&goods) = queues.get(&stream.key) else {
                return Err(inconsistent(format!(
                    "read an unasked stream {}",
                    stream.key
                )));
            };
            orders.extend(readable(goods, &stream.ids));
        }
        Ok(orders)
    }

    /// Takes over, for `consumer`, up to `count` orders of a goods that
    /// another consumer read and has not acked for `min_idle` (a writer that
    /// crashed or hung), and returns them.
    fn claim_stale(
        &self,
        goods: GoodsId,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<QueuedOrder>, StoreError> {
        let queue = self.keys(goods).queue;
        let min_idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let claimed = self.call("claim stale", |con| {
            let mut claimed = Vec::new();
            let mut start = "0-0".to_string();
            while claimed.len() < count {
                let reply = ::redis::cmd("XAUTOCLAIM")
                    .arg(&queue)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(min_idle_ms)
                    .arg(&start)
                    .arg("COUNT")
                    .arg(count - claimed.len())
                    .query::<StreamAutoClaimReply>(con);
                let reply = match reply {
                    // No group, so nothing pending.
                    Err(e) if e.code() == Some("NOGROUP") => break,
                    other => other?,
                };
                claimed.extend(reply.claimed);
                if reply.next_stream_id == "0-0" {
                    break;
                }
                start = reply.next_stream_id;
            }
            Ok(claimed)
        })?;
        Ok(readable(goods, &claimed))
    }

    /// Marks orders of a goods as written and removes them from its queue,
    /// in one round trip.
    fn ack(&self, goods: GoodsId, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let queue = self.keys(goods).queue;
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("XACK")
            .arg(&queue)
            .arg(GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(&queue)
            .arg(ids)
            .ignore();
        self.call("ack", |con| pipe.query::<()>(con))
    }

    /// Every order still in a goods' queue, read or not, oldest first.
    fn queued(&self, goods: GoodsId) -> Result<Vec<OrderRecord>, StoreError> {
        let queue = self.keys(goods).queue;
        let entries = self.call("list queue", |con| {
            let mut entries: Vec<StreamId> = Vec::new();
            loop {
                let start = entries
                    .last()
                    .map_or_else(|| "-".to_string(), |e| format!("({}", e.id));
                let page = ::redis::cmd("XRANGE")
                    .arg(&queue)
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(RANGE_PAGE)
                    .query::<StreamRangeReply>(con)?;
                let full = page.ids.len() == RANGE_PAGE;
                entries.extend(page.ids);
                if !full {
                    return Ok(entries);
                }
            }
        })?;
        entries
            .iter()
            .map(|e| queued_order(goods, e).map(|q| q.order))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! Against the real Redis (`SECKILL_TEST_REDIS`, default
    //! redis://127.0.0.1:6379): each test under a key prefix of its own,
    //! deleted when the test ends, failing or not.

    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;
    use std::time::Instant;

    use super::*;
    use crate::store::MemoryStock;

    struct TestStock {
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
            let cleaned = self.stock.call("cleanup", |con| {
                let mut cursor = 0u64;
                loop {
                    let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query(con)?;
                    if !keys.is_empty() {
                        ::redis::cmd("DEL").arg(&keys).query::<()>(con)?;
                    }
                    if next == 0 {
                        return Ok(());
                    }
                    cursor = next;
                }
            });
            if let Err(e) = cleaned {
                eprintln!("cleaning up keys {pattern}: {e}");
            }
        }
    }

    impl TestStock {
        /// How many of a goods' keys exist.
        fn keys_of(&self, goods: GoodsId) -> u64 {
            let keys = self.keys(goods);
            let mut exists = ::redis::cmd("EXISTS");
            exists.arg(&keys.stock).arg(&keys.buyers).arg(&keys.queue);
            self.call("exists", |con| exists.query(con)).unwrap()
        }
    }

    fn open(mode: AckMode) -> TestStock {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let url = std::env::var("SECKILL_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let prefix = format!(
            "seckill-test:{}:{}:{nanos}:",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let stock = RedisStock::open(&url, &prefix, mode).unwrap_or_else(|e| {
            panic!("the Redis stock tests need a Redis at {url} (set SECKILL_TEST_REDIS): {e}")
        });
        TestStock { stock, prefix }
    }

    #[test]
    fn reserve_release_add_match_memory_stock() {
        let redis = open(AckMode::Durable);
        let memory = MemoryStock::new();
        for store in [&*redis as &dyn StockStore, &memory] {
            store.load(1, 2, &[(9, 900)]).unwrap();
        }
        type Call = Box<dyn Fn(&dyn StockStore) -> String>;
        let calls: Vec<Call> = vec![
            Box::new(|s| format!("{:?}", s.reserve(1, &[(1, 100), (9, 901), (1, 102)]))),
            Box::new(|s| format!("{:?}", s.reserve(1, &[(2, 200), (3, 300), (3, 301)]))),
            Box::new(|s| format!("{:?}", s.reserve(1, &[]))),
            Box::new(|s| format!("{:?}", s.release(1, &[(1, 999), (2, 200), (9, 900)]))),
            Box::new(|s| format!("{:?}", s.reserve(1, &[(4, 400), (2, 201), (5, 500)]))),
            Box::new(|s| format!("{:?}", s.add(1, 1))),
            Box::new(|s| format!("{:?}", s.reserve(1, &[(5, 501), (6, 600), (1, 103)]))),
        ];
        for (i, call) in calls.iter().enumerate() {
            assert_eq!(call(&*redis), call(&memory), "call {i}");
        }
        // The first batch, spelled out.
        let redis2 = open(AckMode::Durable);
        redis2.load(1, 2, &[(9, 900)]).unwrap();
        let got = redis2.reserve(1, &[(1, 100), (9, 901), (1, 102), (2, 200), (3, 300)]);
        assert_eq!(
            got.unwrap(),
            Reserved {
                decisions: vec![
                    Reservation::Reserved,
                    Reservation::Held(900),
                    Reservation::Held(100),
                    Reservation::Reserved,
                    Reservation::SoldOut,
                ],
                remaining: 0,
            }
        );
        assert_eq!(
            redis2.snapshot(1).unwrap(),
            Some((0, vec![(1, 100), (2, 200), (9, 900)]))
        );
    }

    #[test]
    fn sixteen_threads_sell_the_stock_exactly_once() {
        const STOCK: u32 = 1000;
        const USERS: u64 = 2500;
        let stock = open(AckMode::Durable);
        stock.load(7, STOCK, &[]).unwrap();
        let results: Vec<Vec<(UserId, OrderNo, Reservation)>> = thread::scope(|s| {
            let workers: Vec<_> = (0..16u64)
                .map(|t| {
                    let stock = &stock;
                    s.spawn(move || {
                        // Every thread tries every user, each in its own
                        // order, so the same user races in many threads.
                        let buyers: Vec<(UserId, OrderNo)> = (0..USERS)
                            .map(|i| ((i * 7 + t * 131) % USERS, (t << 32) | i))
                            .collect();
                        let mut got = Vec::new();
                        for batch in buyers.chunks(50) {
                            let r = stock.reserve(7, batch).unwrap();
                            for (&(u, o), d) in batch.iter().zip(r.decisions) {
                                got.push((u, o, d));
                            }
                        }
                        got
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let reserved: Vec<(UserId, OrderNo)> = results
            .iter()
            .flatten()
            .filter(|(_, _, d)| *d == Reservation::Reserved)
            .map(|&(u, o, _)| (u, o))
            .collect();
        assert_eq!(reserved.len(), STOCK as usize);
        let users: BTreeSet<UserId> = reserved.iter().map(|&(u, _)| u).collect();
        assert_eq!(users.len(), STOCK as usize, "a user reserved twice");
        let mut expected = reserved.clone();
        expected.sort_unstable();
        assert_eq!(stock.snapshot(7).unwrap(), Some((0, expected)));
        // Everyone else saw the holder's own order number or sold out.
        let holder: HashMap<UserId, OrderNo> = reserved.into_iter().collect();
        for &(u, _, d) in results.iter().flatten() {
            match d {
                Reservation::Reserved => {}
                Reservation::Held(o) => assert_eq!(holder.get(&u), Some(&o)),
                Reservation::SoldOut => assert!(!holder.contains_key(&u)),
            }
        }
    }

    #[test]
    fn order_numbers_keep_all_64_bits() {
        let stock = open(AckMode::Queued);
        let two53 = 1u64 << 53;
        let buyers = [
            (u64::MAX, u64::MAX),
            (two53 + 1, two53 + 1),
            (two53, u64::MAX - 1),
        ];
        stock.load(3, 10, &[]).unwrap();
        let r = stock.reserve(3, &buyers).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved; 3]);
        // Asking again with other numbers gives back the exact ones held.
        let again = [(u64::MAX, 1), (two53 + 1, 2), (two53, 3)];
        let r = stock.reserve(3, &again).unwrap();
        assert_eq!(
            r.decisions,
            buyers
                .iter()
                .map(|&(_, o)| Reservation::Held(o))
                .collect::<Vec<_>>()
        );
        let mut sorted = buyers.to_vec();
        sorted.sort_unstable();
        assert_eq!(stock.snapshot(3).unwrap(), Some((7, sorted)));
        // 2^53 and 2^53 + 1 are the same double: only the exact pair goes.
        assert_eq!(stock.release(3, &[(two53 + 1, two53)]).unwrap(), 7);
        assert_eq!(stock.release(3, &[(u64::MAX, u64::MAX - 1)]).unwrap(), 7);
        let queued = stock.queued(3).unwrap();
        let got: Vec<_> = queued.iter().map(|o| (o.user_id, o.order_no)).collect();
        assert_eq!(got, buyers.to_vec());
        assert_eq!(stock.release(3, &[(two53 + 1, two53 + 1)]).unwrap(), 8);
        // A holder loaded with big numbers comes back exact too.
        stock.load(3, 0, &[(u64::MAX - 5, u64::MAX - 6)]).unwrap();
        let r = stock.reserve(3, &[(u64::MAX - 5, 0)]).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Held(u64::MAX - 6)]);
    }

    #[test]
    fn release_is_exact_and_repeatable() {
        let stock = open(AckMode::Durable);
        stock.load(1, 1, &[]).unwrap();
        stock.reserve(1, &[(1, 100)]).unwrap();
        assert_eq!(stock.release(1, &[(1, 999), (2, 100)]).unwrap(), 0);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert_eq!(stock.release(1, &[]).unwrap(), 1);
        assert_eq!(stock.snapshot(1).unwrap(), Some((1, vec![])));
        let r = stock.reserve(1, &[(2, 200)]).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved]);
    }

    #[test]
    fn add_restocks_and_saturates() {
        let stock = open(AckMode::Durable);
        stock.load(1, 0, &[]).unwrap();
        let r = stock.reserve(1, &[(1, 100)]).unwrap();
        assert_eq!(r.decisions, vec![Reservation::SoldOut]);
        assert_eq!(stock.add(1, 2).unwrap(), 2);
        let r = stock.reserve(1, &[(1, 100)]).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved]);
        assert_eq!(r.remaining, 1);
        assert_eq!(stock.add(1, u32::MAX).unwrap(), u32::MAX);
        assert_eq!(stock.snapshot(1).unwrap(), Some((u32::MAX, vec![(1, 100)])));
    }

    /// A script that reaches Redis after the goods was loaded again (it was
    /// sent before the load and Redis ran it late) does nothing.
    #[test]
    fn a_script_from_before_a_load_does_nothing() {
        let stock = open(AckMode::Queued);
        stock.load(1, 5, &[]).unwrap();
        let stale = stock.epoch(1).unwrap();
        stock.load(1, 3, &[(9, 900)]).unwrap();
        assert_eq!(stock.epoch(1).unwrap(), stale + 1);
        let keys = stock.keys(1);
        let late = |script: &str, keys: &[&str], args: &[String]| -> Value {
            let mut cmd = ::redis::cmd("EVAL");
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            stock.call("late script", |con| cmd.query(con)).unwrap()
        };
        let reserve = late(
            RESERVE,
            &[&keys.stock, &keys.buyers, &keys.queue, &keys.epoch],
            &["queued", "1", "1", &stale.to_string(), "7", "700"].map(String::from),
        );
        let release = late(
            RELEASE,
            &[&keys.stock, &keys.buyers, &keys.epoch],
            &[&stale.to_string(), "9", "900"].map(String::from),
        );
        let add = late(
            ADD,
            &[&keys.stock, &keys.epoch],
            &["10", &stale.to_string()].map(String::from),
        );
        assert_eq!(
            (reserve, release, add),
            (Value::Nil, Value::Nil, Value::Nil)
        );
        // The reloaded goods is as the load left it, queue included.
        assert_eq!(stock.snapshot(1).unwrap(), Some((3, vec![(9, 900)])));
        assert!(stock.queued(1).unwrap().is_empty());
        // The store's own calls carry the current epoch and act.
        assert_eq!(
            stock.reserve(1, &[(7, 700)]).unwrap().decisions,
            [Reservation::Reserved]
        );
        // A store that never loaded the goods does not act on it either:
        // it reloads it first.
        let url = std::env::var("SECKILL_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        let other = RedisStock::open(&url, &stock.prefix, AckMode::Queued).unwrap();
        assert!(matches!(
            other.reserve(1, &[(8, 800)]),
            Err(StoreError::NotLoaded(1))
        ));
    }

    #[test]
    fn a_lost_goods_is_not_loaded_and_nothing_is_taken() {
        let stock = open(AckMode::Queued);
        stock.load(5, 3, &[(1, 100)]).unwrap();
        stock.forget(5).unwrap();
        assert_eq!(stock.keys_of(5), 0);
        let not_loaded = |e: StoreError| matches!(e, StoreError::NotLoaded(5));
        assert!(not_loaded(stock.reserve(5, &[(2, 200)]).unwrap_err()));
        assert!(not_loaded(stock.release(5, &[(1, 100)]).unwrap_err()));
        assert!(not_loaded(stock.add(5, 10).unwrap_err()));
        assert_eq!(stock.snapshot(5).unwrap(), None);
        assert_eq!(stock.keys_of(5), 0, "a call on a lost goods wrote");

        // Only the counter lost: the buyers stay as they were.
        stock.load(5, 3, &[(1, 100)]).unwrap();
        let keys = stock.keys(5);
        let mut del = ::redis::cmd("DEL");
        del.arg(&keys.stock);
        stock.call("del", |con| del.query::<()>(con)).unwrap();
        assert!(not_loaded(stock.reserve(5, &[(2, 200)]).unwrap_err()));
        assert!(not_loaded(stock.release(5, &[(1, 100)]).unwrap_err()));
        let mut hgetall = ::redis::cmd("HGETALL");
        hgetall.arg(&keys.buyers);
        let buyers: HashMap<String, String> =
            stock.call("hgetall", |con| hgetall.query(con)).unwrap();
        assert_eq!(
            buyers,
            HashMap::from([("1".to_string(), "100".to_string())])
        );
        assert!(stock.queued(5).unwrap().is_empty());
        // Loading it again sells again.
        stock.load(5, 1, &[(1, 100)]).unwrap();
        let r = stock.reserve(5, &[(2, 200)]).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved]);
    }

    #[test]
    fn queued_orders_are_read_then_acked_away() {
        let stock = open(AckMode::Queued);
        stock.load(1, 2, &[]).unwrap();
        stock.load(2, 1, &[]).unwrap();
        let before = now_ms();
        let r = stock
            .reserve(1, &[(10, 110), (11, 111), (12, 112)])
            .unwrap();
        assert_eq!(r.decisions[2], Reservation::SoldOut);
        stock.reserve(2, &[(20, 220)]).unwrap();
        let after = now_ms();

        let mut read = stock
            .read(&[1, 2], "a", 10, Duration::from_millis(100))
            .unwrap();
        read.sort_by_key(|q| q.order.order_no);
        let orders: Vec<_> = read.iter().map(|q| q.order.clone()).collect();
        let order =
            |order_no, user_id, goods_id| (order_no, user_id, goods_id, OrderState::Created);
        assert_eq!(
            orders
                .iter()
                .map(|o| (o.order_no, o.user_id, o.goods_id, o.state))
                .collect::<Vec<_>>(),
            vec![order(110, 10, 1), order(111, 11, 1), order(220, 20, 2)]
        );
        assert!(orders
            .iter()
            .all(|o| (before..=after).contains(&o.created_ms)));
        // Read but not acked: still queued, and not read again.
        assert_eq!(stock.queued(1).unwrap(), orders[..2].to_vec());
        let start = Instant::now();
        let none = stock.read(&[1, 2], "a", 10, Duration::from_millis(200));
        assert_eq!(none.unwrap(), vec![]);
        assert!(start.elapsed() >= Duration::from_millis(150));

        let ids = |goods| -> Vec<String> {
            read.iter()
                .filter(|q| q.order.goods_id == goods)
                .map(|q| q.id.clone())
                .collect()
        };
        stock.ack(1, &ids(1)).unwrap();
        stock.ack(2, &ids(2)).unwrap();
        stock.ack(2, &[]).unwrap();
        assert_eq!(stock.queued(1).unwrap(), vec![]);
        assert_eq!(stock.queued(2).unwrap(), vec![]);
        assert_eq!(
            stock.claim_stale(1, "b", Duration::ZERO, 10).unwrap(),
            vec![]
        );
        // The buyers stay: a written order is still held.
        let r = stock.reserve(1, &[(10, 999)]).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Held(110)]);
    }

    #[test]
    fn a_stale_order_is_claimed_by_another_consumer() {
        let stock = open(AckMode::Queued);
        stock.load(1, 5, &[]).unwrap();
        stock.reserve(1, &[(1, 101), (2, 102)]).unwrap();
        let read = stock.read(&[1], "a", 1, Duration::ZERO).unwrap();
        assert_eq!(read.len(), 1);
        // "a" dies holding it. Too fresh for a long idle limit:
        let claimed = stock.claim_stale(1, "b", Duration::from_secs(3600), 10);
        assert_eq!(claimed.unwrap(), vec![]);
        let claimed = stock.claim_stale(1, "b", Duration::ZERO, 10).unwrap();
        assert_eq!(claimed, read);
        // The other one was never read: it is new, not stale.
        let rest = stock.read(&[1], "b", 10, Duration::ZERO).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].order.order_no, 102);
        // A load keeps the queue and the group, pending entries and all.
        stock.load(1, 3, &[(1, 101), (2, 102)]).unwrap();
        assert_eq!(stock.queued(1).unwrap().len(), 2);
        let claimed = stock.claim_stale(1, "c", Duration::ZERO, 1).unwrap();
        assert_eq!(claimed.len(), 1);
        let ids: Vec<String> = read.iter().chain(&rest).map(|q| q.id.clone()).collect();
        stock.ack(1, &ids).unwrap();
        assert_eq!(stock.queued(1).unwrap(), vec![]);
        assert_eq!(
            stock.claim_stale(1, "c", Duration::ZERO, 10).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_queue_that_lost_its_group_gets_it_back() {
        let stock = open(AckMode::Queued);
        stock.load(1, 5, &[]).unwrap();
        stock.forget(1).unwrap();
        assert_eq!(stock.read(&[1], "a", 10, Duration::ZERO).unwrap(), vec![]);
        assert_eq!(
            stock.claim_stale(9, "a", Duration::ZERO, 10).unwrap(),
            vec![]
        );
        stock.load(1, 5, &[]).unwrap();
        stock.reserve(1, &[(1, 101)]).unwrap();
        let read = stock.read(&[1], "a", 10, Duration::ZERO).unwrap();
        assert_eq!(read.len(), 1);
    }

    #[test]
    fn durable_mode_queues_nothing() {
        let stock = open(AckMode::Durable);
        stock.load(1, 5, &[]).unwrap();
        stock.reserve(1, &[(1, 101)]).unwrap();
        assert_eq!(stock.keys_of(1), 2);
        assert_eq!(stock.queued(1).unwrap(), vec![]);
    }

    #[test]
    fn load_replaces_a_hundred_thousand_holders() {
        let stock = open(AckMode::Queued);
        let holders: Vec<(UserId, OrderNo)> = (0..100_000u64).map(|u| (u, u64::MAX - u)).collect();
        stock.load(1, 7, &holders).unwrap();
        assert_eq!(stock.snapshot(1).unwrap(), Some((7, holders.clone())));
        let r = stock.reserve(1, &[(99_999, 1), (100_000, 2)]).unwrap();
        assert_eq!(
            r.decisions,
            vec![Reservation::Held(u64::MAX - 99_999), Reservation::Reserved]
        );
        assert_eq!(r.remaining, 6);
        // A second load replaces everything, the reservation included.
        stock.load(1, 1, &holders[..1]).unwrap();
        assert_eq!(stock.snapshot(1).unwrap(), Some((1, holders[..1].to_vec())));
        // The queue is not the load's to drop.
        assert_eq!(stock.queued(1).unwrap().len(), 1);
    }

    #[test]
    fn a_broken_entry_is_skipped_not_fatal() {
        let stock = open(AckMode::Queued);
        stock.load(1, 5, &[]).unwrap();
        let mut xadd = ::redis::cmd("XADD");
        xadd.arg(stock.keys(1).queue)
            .arg("*")
            .arg("order_no")
            .arg("x");
        stock.call("xadd", |con| xadd.query::<String>(con)).unwrap();
        stock.reserve(1, &[(1, 101)]).unwrap();
        let read = stock.read(&[1], "a", 10, Duration::ZERO).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].order.order_no, 101);
        assert!(matches!(stock.queued(1), Err(StoreError::Inconsistent(_))));
    }

    #[test]
    fn a_dropped_connection_fails_one_call_and_is_replaced() {
        let stock = open(AckMode::Durable);
        stock.load(1, 5, &[]).unwrap();
        let id: i64 = stock
            .call("client id", |con| {
                ::redis::cmd("CLIENT").arg("ID").query(con)
            })
            .unwrap();
        let mut other = stock.client.get_connection().unwrap();
        ::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query::<()>(&mut other)
            .unwrap();
        // The script was sent and the link broke: whether it ran is not
        // known (here it did not: Redis had closed the connection).
        let failed = stock.reserve(1, &[(1, 101)]);
        assert!(
            matches!(failed, Err(StoreError::Indeterminate(_))),
            "{failed:?}"
        );
        assert!(stock.outage.is_down());
        let r = stock.reserve(1, &[(1, 101)]).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved]);
        assert!(!stock.outage.is_down());
    }

    #[test]
    fn an_unreachable_redis_is_unavailable() {
        let refused = RedisStock::open("redis://127.0.0.1:1", "x:", AckMode::Durable);
        assert!(matches!(refused, Err(StoreError::Unavailable(_))));
        let braces = RedisStock::open("redis://127.0.0.1:1", "x{y}:", AckMode::Durable);
        assert!(matches!(braces, Err(StoreError::Unavailable(_))));
    }
}
