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

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use ::redis::{
    Client, Connection, ConnectionLike, ErrorKind, RedisError, RedisResult, Script, Value,
};
use log::{error, warn};
use parking_lot::Mutex;
use seckill_proto::{OrderState, DEFAULT_PAY_WINDOW_MS, NO_TOKEN};

use super::memory::{forget_after, PRUNE_BATCH};
use super::outage::Outage;
use super::{
    Buyer, GoodsId, Holders, OrderNo, OrderQueue, OrderRecord, QueuedOrder, Reservation,
    ReserveRules, Reserved, StockStore, StoreError, TokenRefusal, UserId,
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

// Every script that changes a goods' stock is fenced by the goods' epoch,
// which each load bumps: a script sent before a load and run after it (Redis
// stalled, the caller timed out, the goods was reconciled meanwhile) finds
// another epoch and does nothing, instead of changing the reloaded stock.
// A script that finds no stock or another epoch returns nil: "not loaded".
// RELEASE needs no fence (see there).

/// The flash sale: one call decides a batch of buyers of one goods, in
/// order, as [`StockStore::reserve`] documents. Public because the bench's
/// redis-direct baseline runs it by itself (EVALSHA), so its layout is an
/// interface:
///
/// ```text
/// KEYS[1] stock   KEYS[2] buyers   KEYS[3] queue   KEYS[4] epoch
/// KEYS[5] tokens  (read only if token_required; the key must still be
///                  given, for Redis Cluster to route the call)
/// ARGV[1] mode: "queued" XADDs each reserved order to the queue, anything
///         else ("durable") does not
/// ARGV[2] goods id            (written into queued orders)
/// ARGV[3] now_ms              (the clock of token expiry, and created_ms
///                              of queued orders)
/// ARGV[4] epoch               (that of the store's last load)
/// ARGV[5] per_user_limit      (1..=255; less than 1 is taken as 1)
/// ARGV[6] token_required      ("1" yes, anything else no)
/// ARGV[7] pay_by_ms           (written into queued orders)
/// ARGV[8..] one triple per buyer: user id, proposed order number, token
///         ("0": none)
/// ```
///
/// Returns nil if the goods is not loaded or the epoch is another (nothing
/// is done), else `{remaining, one decision per buyer}`: 1 reserved, 0 sold
/// out, -1 token invalid, -2 token expired, -3 token used, or a held order
/// number (a string).
pub const RESERVE: &str = r"
local stock = redis.call('GET', KEYS[1])
if not stock or redis.call('GET', KEYS[4]) ~= ARGV[4] then return false end
local left = tonumber(stock)
local queued = ARGV[1] == 'queued'
local now = tonumber(ARGV[3])
local limit = tonumber(ARGV[5]) or 1
if limit < 1 then limit = 1 end
local token_required = ARGV[6] == '1'
local function words(s)
  local w = {}
  for x in string.gmatch(s, '%S+') do w[#w + 1] = x end
  return w
end
local out = {0}
for i = 8, #ARGV, 3 do
  local user, order_no, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local raw = redis.call('HGET', KEYS[2], user)
  local held = raw and words(raw) or {}
  -- {user, expires_ms, order_no or nil}, if the token is this user's
  local mine, entry = nil, nil
  if token_required and token ~= '0' then
    entry = redis.call('HGET', KEYS[5], token)
    if entry then
      local w = words(entry)
      if w[1] == user then mine = w end
    end
  end
  local decision = nil
  -- 1. a retried BUY: the token bought an order the user still holds
  if mine and mine[3] then
    for _, o in ipairs(held) do
      if o == mine[3] then decision = o break end
    end
  end
  -- 2. the user holds as many orders as the limit allows
  if not decision and #held >= limit then decision = held[1] end
  -- 3. the token must be the user's, unused, not expired
  if not decision and token_required then
    if not mine then decision = -1
    elseif mine[3] then decision = -3
    elseif now >= tonumber(mine[2]) then decision = -2
    end
  end
  -- 4. a unit if one is left; sold out does not spend the token
  if not decision then
    if left > 0 then
      left = redis.call('DECR', KEYS[1])
      redis.call('HSET', KEYS[2], user, raw and (raw .. ' ' .. order_no) or order_no)
      if token_required then
        redis.call('HSET', KEYS[5], token, entry .. ' ' .. order_no)
      end
      if queued then
        redis.call('XADD', KEYS[3], '*', 'order_no', order_no, 'user', user,
          'goods', ARGV[2], 'created_ms', ARGV[3], 'pay_by_ms', ARGV[7])
      end
      decision = 1
    else
      decision = 0
    end
  end
  out[#out + 1] = decision
end
out[1] = left
return out
";

// KEYS: stock, buyers. ARGV: user and order number pairs. Each pair whose
// order the user holds leaves the user's list (the field goes when the list
// is empty) and gives its unit back; any other pair does nothing, so a
// release repeated returns nothing twice. Returns nil if not loaded, else
// the units left.
//
// Not fenced by the epoch, unlike the other scripts: a release only ever
// names an order that is not live in the order store (a write that failed,
// or an order cancelled there first), so a load never brings its holder
// back, and a release run late after a load finds nothing to do. Unfenced,
// a server returns the unit of an order it cancelled even when another
// server loaded the goods since (two servers sweeping expired orders).
const RELEASE: &str = r"
local stock = redis.call('GET', KEYS[1])
if not stock then return false end
local left = tonumber(stock)
for i = 1, #ARGV, 2 do
  local user, order_no = ARGV[i], ARGV[i + 1]
  local raw = redis.call('HGET', KEYS[2], user)
  if raw then
    local kept, found = {}, false
    for o in string.gmatch(raw, '%S+') do
      if not found and o == order_no then found = true else kept[#kept + 1] = o end
    end
    if found then
      if #kept == 0 then
        redis.call('HDEL', KEYS[2], user)
      else
        redis.call('HSET', KEYS[2], user, table.concat(kept, ' '))
      end
      left = redis.call('INCR', KEYS[1])
    end
  end
end
return left
";

// KEYS: tokens, token_expiry. ARGV: now_ms, token, user, expires_ms,
// forget_after_ms, prune batch. First forgets up to a prune batch of tokens
// whose forget-after time is at or before now_ms (a bounded step, so that
// one issue never stalls Redis on a backlog), then records the token unless it is already
// there: a repeated issue (a retry) must not wipe out the order that used
// it. Returns 1 if recorded, 0 if the token was known. Not fenced by the
// epoch: a token changes no stock, and a load keeps the tokens.
const ISSUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[6])
if #due > 0 then
  redis.call('HDEL', KEYS[1], unpack(due))
  redis.call('ZREM', KEYS[2], unpack(due))
end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3] .. ' ' .. ARGV[4]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
-- Both keys go when their last token may be forgotten, so that a sale's
-- tokens do not outlive it when no more are issued to prune them. Timed
-- from the caller's clock, like every time here.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
local ttl = math.floor(tonumber(last) - tonumber(ARGV[1]))
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
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
    let created_ms = field("created_ms")?;
    // An entry queued by a server from before payment windows has none:
    // it gets the default window.
    let pay_by_ms = if entry.contains_key("pay_by_ms") {
        field("pay_by_ms")?
    } else {
        created_ms.saturating_add(DEFAULT_PAY_WINDOW_MS)
    };
    let order = OrderRecord {
        order_no: field("order_no")?,
        user_id: field("user")?,
        goods_id: field("goods")?,
        state: OrderState::Created,
        created_ms,
        pay_by_ms,
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

/// The holders of a load as buyers-hash fields: each user with their order
/// numbers space-separated, in the order given (the first is the one a
/// user at the limit gets back), a pair given twice counted once.
fn holder_fields(holders: &[(UserId, OrderNo)]) -> Vec<(UserId, String)> {
    let mut at: HashMap<UserId, usize> = HashMap::new();
    let mut fields: Vec<(UserId, Vec<OrderNo>)> = Vec::new();
    for &(user, order_no) in holders {
        let i = *at.entry(user).or_insert_with(|| {
            fields.push((user, Vec::new()));
            fields.len() - 1
        });
        let orders = &mut fields[i].1;
        if !orders.contains(&order_no) {
            orders.push(order_no);
        }
    }
    fields
        .into_iter()
        .map(|(user, orders)| {
            let text: Vec<String> = orders.iter().map(u64::to_string).collect();
            (user, text.join(" "))
        })
        .collect()
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
    /// would be sold a second time. The tokens are kept too.
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
        for chunk in holder_fields(holders).chunks(HSET_CHUNK) {
            let mut hset = ::redis::cmd("HSET");
            hset.arg(&keys.buyers);
            for (user, orders) in chunk {
                hset.arg(user).arg(orders);
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
        rules: &ReserveRules,
        buyers: &[Buyer],
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
            .key(&keys.tokens)
            .arg(mode)
            .arg(goods)
            .arg(rules.now_ms)
            .arg(epoch)
            .arg(rules.per_user_limit)
            .arg(if rules.token_required { "1" } else { "0" })
            .arg(rules.pay_by_ms);
        for b in buyers {
            inv.arg(b.user).arg(b.order_no).arg(b.token);
        }
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
                Value::Int(-1) => Ok(Reservation::Token(TokenRefusal::Invalid)),
                Value::Int(-2) => Ok(Reservation::Token(TokenRefusal::Expired)),
                Value::Int(-3) => Ok(Reservation::Token(TokenRefusal::Used)),
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
        let mut inv = self.release.prepare_invoke();
        inv.key(&keys.stock).key(&keys.buyers);
        pair_args(&mut inv, buyers);
        let reply = self.call_effect("release", |con| inv.invoke::<Value>(con));
        let result = reply.and_then(|v| script_count(goods, "release", v));
        self.not_loaded(goods, result)
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

    fn add(&self, goods: GoodsId, amount: u32) -> Result<u32, StoreError> {
        let keys = self.keys(goods);
        let epoch = self.not_loaded(goods, self.epoch(goods))?;
        let mut inv = self.add.prepare_invoke();
        inv.key(&keys.stock).key(&keys.epoch).arg(amount).arg(epoch);
        let reply = self.call_effect("add", |con| inv.invoke::<Value>(con));
        let result = reply.and_then(|v| script_count(goods, "add", v));
        self.not_loaded(goods, result)
    }

    fn remaining(&self, goods: GoodsId) -> Result<Option<u32>, StoreError> {
        let key = self.keys(goods).stock;
        let left: Option<i64> =
            self.call("remaining", |con| ::redis::cmd("GET").arg(&key).query(con))?;
        left.map(|n| to_u32(&format!("stock of goods {goods}"), n))
            .transpose()
    }

    /// A goods' units left and holders (one pair per held order, sorted),
    /// read atomically; `None` if it is not loaded.
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
        let mut holders = Vec::with_capacity(buyers.len());
        for (user, orders) in &buyers {
            let user = parse_u64(&what, user)?;
            // split(' '), not split_whitespace: an empty or doubly spaced
            // list is not one the scripts write, and must not pass.
            for order_no in orders.split(' ') {
                holders.push((user, parse_u64(&what, order_no)?));
            }
        }
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
    fn last_added(&self, goods: GoodsId) -> Result<Option<String>, StoreError> {
        let queue = self.keys(goods).queue;
        let info = self.call("queue info", |con| {
            match ::redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&queue)
                .query::<HashMap<String, Value>>(con)
            {
                Ok(info) => Ok(Some(info)),
                // No stream yet (or lost with Redis's data): nothing queued.
                Err(e) if e.to_string().contains("no such key") => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        let id = match info.as_ref().and_then(|i| i.get("last-generated-id")) {
            None => return Ok(None),
            Some(Value::BulkString(id)) => String::from_utf8_lossy(id).into_owned(),
            Some(Value::SimpleString(id)) => id.clone(),
            Some(other) => {
                return Err(inconsistent(format!(
                    "queue of goods {goods}: last-generated-id {other:?}"
                )))
            }
        };
        // A stream made empty (by a load) has never had an entry either.
        Ok((id != "0-0").then_some(id))
    }

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

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;
    use std::time::Instant;

    use super::*;
    use crate::store::fixtures::{buy, buyers, rules_at, tokened};
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
            exists
                .arg(&keys.stock)
                .arg(&keys.buyers)
                .arg(&keys.queue)
                .arg(&keys.tokens)
                .arg(&keys.token_expiry);
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

    /// Rules of limit `per_user_limit` on the real clock, no token.
    fn rules(per_user_limit: u8) -> ReserveRules {
        rules_at(per_user_limit, now_ms())
    }

    const INVALID: Reservation = Reservation::Token(TokenRefusal::Invalid);
    const EXPIRED: Reservation = Reservation::Token(TokenRefusal::Expired);
    const USED: Reservation = Reservation::Token(TokenRefusal::Used);

    #[test]
    fn reserve_release_add_match_memory_stock() {
        let redis = open(AckMode::Durable);
        let memory = MemoryStock::new();
        for store in [&*redis as &dyn StockStore, &memory] {
            store.load(1, 2, &[(9, 900)]).unwrap();
            store.load(2, 3, &[(9, 900), (9, 901), (8, 800)]).unwrap();
        }
        let expires = now_ms() + 3_600_000;
        let late = expires + 1;
        type Call = Box<dyn Fn(&dyn StockStore) -> String>;
        let r = |g, rules: ReserveRules, b: Vec<Buyer>| -> Call {
            Box::new(move |s| format!("{:?}", s.reserve(g, &rules, &b)))
        };
        let calls: Vec<Call> = vec![
            r(1, rules(1), buyers(&[(1, 100), (9, 901), (1, 102)])),
            r(1, rules(1), buyers(&[(2, 200), (3, 300), (3, 301)])),
            r(1, rules(1), buyers(&[])),
            Box::new(|s| format!("{:?}", s.release(1, &[(1, 999), (2, 200), (9, 900)]))),
            r(1, rules(1), buyers(&[(4, 400), (2, 201), (5, 500)])),
            Box::new(|s| format!("{:?}", s.add(1, 1))),
            r(1, rules(1), buyers(&[(5, 501), (6, 600), (1, 103)])),
            // Limits, several orders a user.
            r(
                2,
                rules(2),
                buyers(&[(9, 902), (8, 801), (8, 802), (7, 700)]),
            ),
            Box::new(|s| format!("{:?}", s.release(2, &[(9, 901), (9, 901), (8, 800)]))),
            r(
                2,
                rules(3),
                buyers(&[(9, 903), (9, 904), (9, 905), (8, 803)]),
            ),
            Box::new(|s| format!("{:?}", s.add(2, 4))),
            // Tokens.
            Box::new(move |s| {
                let issued = [(1, 11), (2, 22), (3, 33), (6, 66), (7, 77)]
                    .map(|(u, t)| s.issue_token(2, u, t, expires));
                format!("{issued:?}")
            }),
            r(2, tokened(1, late), vec![buy(1, 110, 11), buy(2, 220, 99)]),
            r(
                2,
                tokened(1, expires - 1),
                vec![
                    buy(1, 111, 11),
                    buy(2, 221, 11),
                    buy(1, 112, 11),
                    buy(3, 330, 33),
                    buy(6, 660, 66),
                    buy(6, 661, 66),
                    buy(7, 770, 77),
                ],
            ),
            Box::new(|s| format!("{:?}", s.release(2, &[(1, 111), (6, 660)]))),
            r(
                2,
                tokened(2, late),
                vec![buy(1, 113, 11), buy(3, 331, 33), buy(6, 662, 66)],
            ),
            r(2, tokened(1, 0), vec![buy(2, 222, 22), buy(7, 771, 0)]),
            r(2, rules(1), vec![buy(2, 223, 0), buy(2, 224, 22)]),
            Box::new(|s| format!("{:?}", s.snapshot(1))),
            Box::new(|s| format!("{:?}", s.snapshot(2))),
        ];
        for (i, call) in calls.iter().enumerate() {
            assert_eq!(call(&*redis), call(&memory), "call {i}");
        }
        // The first batch, spelled out.
        let redis2 = open(AckMode::Durable);
        redis2.load(1, 2, &[(9, 900)]).unwrap();
        let batch = buyers(&[(1, 100), (9, 901), (1, 102), (2, 200), (3, 300)]);
        let got = redis2.reserve(1, &rules(1), &batch);
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

    /// Sixteen threads sell `stock` units to `users` buyers, each thread
    /// trying every user `tries` times in an order of its own, so that the
    /// same user races in many threads. Checks that the stock sold exactly,
    /// that no user got more than `limit`, and that every other answer was
    /// one of the user's own orders or sold out. Returns the units each
    /// user got.
    fn sell_in_sixteen_threads(
        limit: u8,
        stock_units: u32,
        users: u64,
        tries: u64,
    ) -> HashMap<UserId, usize> {
        let stock = open(AckMode::Durable);
        stock.load(7, stock_units, &[]).unwrap();
        let results: Vec<Vec<(Buyer, Reservation)>> = thread::scope(|s| {
            let workers: Vec<_> = (0..16u64)
                .map(|t| {
                    let stock = &stock;
                    s.spawn(move || {
                        let batch: Vec<Buyer> = (0..users * tries)
                            .map(|i| buy((i * 7 + t * 131) % users, (t << 32) | i, NO_TOKEN))
                            .collect();
                        let mut got = Vec::new();
                        for chunk in batch.chunks(50) {
                            let r = stock.reserve(7, &rules(limit), chunk).unwrap();
                            got.extend(chunk.iter().copied().zip(r.decisions));
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
            .filter(|(_, d)| *d == Reservation::Reserved)
            .map(|(b, _)| (b.user, b.order_no))
            .collect();
        assert_eq!(reserved.len(), stock_units as usize);
        let mut expected = reserved.clone();
        expected.sort_unstable();
        assert_eq!(stock.snapshot(7).unwrap(), Some((0, expected)));
        let mut orders: HashMap<UserId, Vec<OrderNo>> = HashMap::new();
        for &(u, o) in &reserved {
            orders.entry(u).or_default().push(o);
        }
        let got: HashMap<UserId, usize> = orders.iter().map(|(&u, o)| (u, o.len())).collect();
        assert!(
            got.values().all(|&n| n <= usize::from(limit)),
            "a user got more than {limit}"
        );
        for (b, d) in results.iter().flatten() {
            let own = orders.get(&b.user).map_or(&[][..], Vec::as_slice);
            match *d {
                Reservation::Reserved => {}
                Reservation::Held(o) => assert!(own.contains(&o), "{b:?} got {o}"),
                // Sold out while the user could still buy more.
                Reservation::SoldOut => assert!(own.len() < usize::from(limit)),
                Reservation::Token(t) => panic!("{b:?}: token {t:?} without token rules"),
            }
        }
        got
    }

    #[test]
    fn sixteen_threads_sell_the_stock_exactly_once() {
        let got = sell_in_sixteen_threads(1, 1000, 2500, 1);
        assert_eq!(got.len(), 1000, "a user reserved twice");
    }

    #[test]
    fn sixteen_threads_keep_a_limit_of_three() {
        // 500 users could take 1500: the stock runs out first, with users
        // at the limit and retrying (how many depends on the threads'
        // interleaving; the limit itself is checked for every user above).
        let got = sell_in_sixteen_threads(3, 1000, 500, 4);
        assert!(
            got.values().any(|&n| n == 3),
            "nobody reached the limit: {got:?}"
        );
    }

    #[test]
    fn order_numbers_keep_all_64_bits() {
        let stock = open(AckMode::Queued);
        let two53 = 1u64 << 53;
        let pairs = [
            (u64::MAX, u64::MAX),
            (two53 + 1, two53 + 1),
            (two53, u64::MAX - 1),
        ];
        stock.load(3, 10, &[]).unwrap();
        let r = stock.reserve(3, &rules(1), &buyers(&pairs)).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved; 3]);
        // Asking again with other numbers gives back the exact ones held.
        let again = [(u64::MAX, 1), (two53 + 1, 2), (two53, 3)];
        let r = stock.reserve(3, &rules(1), &buyers(&again)).unwrap();
        assert_eq!(
            r.decisions,
            pairs
                .iter()
                .map(|&(_, o)| Reservation::Held(o))
                .collect::<Vec<_>>()
        );
        let mut sorted = pairs.to_vec();
        sorted.sort_unstable();
        assert_eq!(stock.snapshot(3).unwrap(), Some((7, sorted)));
        // 2^53 and 2^53 + 1 are the same double: only the exact pair goes.
        assert_eq!(stock.release(3, &[(two53 + 1, two53)]).unwrap(), 7);
        assert_eq!(stock.release(3, &[(u64::MAX, u64::MAX - 1)]).unwrap(), 7);
        let queued = stock.queued(3).unwrap();
        let got: Vec<_> = queued.iter().map(|o| (o.user_id, o.order_no)).collect();
        assert_eq!(got, pairs.to_vec());
        assert_eq!(stock.release(3, &[(two53 + 1, two53 + 1)]).unwrap(), 8);
        // A holder loaded with big numbers comes back exact too, and so
        // does the first of several.
        let loaded = [(u64::MAX - 5, two53 + 1), (u64::MAX - 5, two53)];
        stock.load(3, 0, &loaded).unwrap();
        let r = stock.reserve(3, &rules(2), &buyers(&[(u64::MAX - 5, 0)]));
        assert_eq!(r.unwrap().decisions, vec![Reservation::Held(two53 + 1)]);
        assert_eq!(stock.release(3, &[(u64::MAX - 5, two53)]).unwrap(), 1);
        assert_eq!(
            stock.snapshot(3).unwrap(),
            Some((1, vec![(u64::MAX - 5, two53 + 1)]))
        );
        // Tokens too: 2^53 + 1 is not 2^53, nor is one user another.
        let expires = now_ms() + 60_000;
        stock.issue_token(3, two53 + 1, two53 + 1, expires).unwrap();
        stock.issue_token(3, u64::MAX, u64::MAX, expires).unwrap();
        stock.add(3, 5).unwrap();
        let r = stock.reserve(
            3,
            &tokened(1, now_ms()),
            &[
                buy(two53 + 1, 1, two53),
                buy(two53, 2, two53 + 1),
                buy(u64::MAX - 1, 3, u64::MAX),
                buy(u64::MAX, u64::MAX, u64::MAX),
                buy(u64::MAX, 4, u64::MAX),
            ],
        );
        assert_eq!(
            r.unwrap().decisions,
            [
                INVALID,
                INVALID,
                INVALID,
                Reservation::Reserved,
                Reservation::Held(u64::MAX)
            ]
        );
    }

    #[test]
    fn release_is_exact_and_repeatable() {
        let stock = open(AckMode::Durable);
        stock.load(1, 1, &[]).unwrap();
        stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
        assert_eq!(stock.release(1, &[(1, 999), (2, 100)]).unwrap(), 0);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert_eq!(stock.release(1, &[]).unwrap(), 1);
        assert_eq!(stock.snapshot(1).unwrap(), Some((1, vec![])));
        let r = stock.reserve(1, &rules(1), &buyers(&[(2, 200)])).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved]);
    }

    #[test]
    fn add_restocks_and_saturates() {
        let stock = open(AckMode::Durable);
        stock.load(1, 0, &[]).unwrap();
        let r = stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
        assert_eq!(r.decisions, vec![Reservation::SoldOut]);
        assert_eq!(stock.add(1, 2).unwrap(), 2);
        let r = stock.reserve(1, &rules(1), &buyers(&[(1, 100)])).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved]);
        assert_eq!(r.remaining, 1);
        assert_eq!(stock.add(1, u32::MAX).unwrap(), u32::MAX);
        assert_eq!(stock.snapshot(1).unwrap(), Some((u32::MAX, vec![(1, 100)])));
    }

    #[test]
    fn release_gives_back_exactly_the_order_named() {
        let stock = open(AckMode::Durable);
        stock.load(1, 5, &[]).unwrap();
        let batch = buyers(&[(1, 101), (1, 102), (1, 103), (1, 104)]);
        let r = stock.reserve(1, &rules(3), &batch).unwrap();
        assert_eq!(
            r.decisions,
            [
                Reservation::Reserved,
                Reservation::Reserved,
                Reservation::Reserved,
                Reservation::Held(101),
            ]
        );
        let field = |stock: &TestStock| -> Option<String> {
            let mut hget = ::redis::cmd("HGET");
            hget.arg(stock.keys(1).buyers).arg(1);
            stock.call("hget", |con| hget.query(con)).unwrap()
        };
        assert_eq!(field(&stock).as_deref(), Some("101 102 103"));
        // The middle one, twice in one call and once more: one unit.
        assert_eq!(stock.release(1, &[(1, 102), (1, 102)]).unwrap(), 3);
        assert_eq!(stock.release(1, &[(1, 102), (2, 101)]).unwrap(), 3);
        assert_eq!(field(&stock).as_deref(), Some("101 103"));
        // A number that is a part of a held one is not held.
        assert_eq!(
            stock
                .release(1, &[(1, 10), (1, 1), (1, 3), (1, 0)])
                .unwrap(),
            3
        );
        // Room again under the limit: the new order goes last.
        let r = stock.reserve(1, &rules(3), &buyers(&[(1, 105), (1, 106)]));
        assert_eq!(
            r.unwrap().decisions,
            [Reservation::Reserved, Reservation::Held(101)]
        );
        assert_eq!(field(&stock).as_deref(), Some("101 103 105"));
        assert_eq!(
            stock.release(1, &[(1, 101), (1, 103), (1, 105)]).unwrap(),
            5
        );
        assert_eq!(field(&stock), None, "an empty list stays behind");
        assert_eq!(stock.release(1, &[(1, 101)]).unwrap(), 5);
        assert_eq!(stock.snapshot(1).unwrap(), Some((5, vec![])));
    }

    #[test]
    fn tokens_are_checked_in_the_documented_order() {
        const NOW: u64 = 1_000_000;
        let stock = open(AckMode::Durable);
        // Tokens are not fenced: they can be issued before the first load.
        let expires = NOW + 1_000;
        for (user, token) in [(1, 11), (2, 22), (3, 33), (4, 44)] {
            stock.issue_token_at(1, user, token, expires, NOW).unwrap();
        }
        stock.load(1, 2, &[]).unwrap();
        let r = |buyers: &[Buyer], now_ms| {
            stock
                .reserve(1, &tokened(1, now_ms), buyers)
                .unwrap()
                .decisions
        };
        // Unknown, another user's, none at all.
        assert_eq!(
            r(
                &[buy(1, 100, 99), buy(1, 100, 22), buy(1, 100, NO_TOKEN)],
                NOW
            ),
            [INVALID; 3]
        );
        // Expired at its expiry, not before.
        assert_eq!(r(&[buy(1, 100, 11)], expires), [EXPIRED]);
        assert_eq!(r(&[buy(1, 100, 11)], expires - 1), [Reservation::Reserved]);
        let mut hget = ::redis::cmd("HGET");
        hget.arg(stock.keys(1).tokens).arg(11);
        let entry: Option<String> = stock.call("hget", |con| hget.query(con)).unwrap();
        assert_eq!(entry, Some(format!("1 {expires} 100")));
        // A retry with the same token gets the order back, even expired;
        // the new order number in it changes nothing.
        assert_eq!(r(&[buy(1, 101, 11)], expires + 5), [Reservation::Held(100)]);
        // Sold out does not spend the token: a restock sells to it.
        assert_eq!(
            r(&[buy(2, 200, 22), buy(3, 300, 33)], NOW),
            [Reservation::Reserved, Reservation::SoldOut]
        );
        stock.add(1, 1).unwrap();
        assert_eq!(r(&[buy(3, 301, 33)], NOW), [Reservation::Reserved]);
        // Released (cancelled), the order is gone and the token is used.
        assert_eq!(stock.release(1, &[(1, 100)]).unwrap(), 1);
        assert_eq!(r(&[buy(1, 102, 11)], NOW), [USED]);
        // The limit comes before the token: a holder with a bad one gets
        // their order back.
        assert_eq!(r(&[buy(2, 201, 99)], NOW), [Reservation::Held(200)]);
        // A repeated issue does not make a used token new again.
        stock.issue_token_at(1, 1, 11, expires, NOW).unwrap();
        assert_eq!(r(&[buy(1, 102, 11)], NOW), [USED]);
        // Token 0 is never valid, even if issued.
        stock.issue_token_at(1, 4, NO_TOKEN, expires, NOW).unwrap();
        assert_eq!(r(&[buy(4, 400, NO_TOKEN)], NOW), [INVALID]);
        // Without token_required, tokens are not looked at.
        let free = stock.reserve(1, &rules(1), &[buy(4, 401, 99)]).unwrap();
        assert_eq!(free.decisions, [Reservation::Reserved]);
        // A load keeps the tokens: 44 is still good, 11 still used.
        stock.load(1, 5, &[(2, 200)]).unwrap();
        assert_eq!(
            r(&[buy(5, 500, 44), buy(4, 402, 44), buy(1, 103, 11)], NOW),
            [INVALID, Reservation::Reserved, USED]
        );
    }

    #[test]
    fn tokens_are_forgotten_twice_their_lifetime_after_issue() {
        const NOW: u64 = 1_000_000;
        let stock = open(AckMode::Durable);
        stock.load(1, 10, &[]).unwrap();
        // Lives 1 s from NOW: expired from NOW + 1 s, forgotten from NOW + 2 s.
        stock.issue_token_at(1, 1, 11, NOW + 1_000, NOW).unwrap();
        let r = |token, now_ms| {
            stock
                .reserve(1, &tokened(1, now_ms), &[buy(1, 100, token)])
                .unwrap()
                .decisions[0]
        };
        // The keys expire when their last token may be forgotten: here
        // 2 s after the issue, on the caller's clock.
        let keys = stock.keys(1);
        for key in [&keys.tokens, &keys.token_expiry] {
            let ttl: i64 = stock
                .call("pttl", |con| ::redis::cmd("PTTL").arg(key).query(con))
                .unwrap();
            assert!((1_900..=2_000).contains(&ttl), "{key}: {ttl} ms");
        }
        // Pruning happens on issue, only of what is due.
        stock
            .issue_token_at(1, 2, 22, NOW + 10_000, NOW + 1_999)
            .unwrap();
        assert_eq!(r(11, NOW + 1_999), EXPIRED);
        stock
            .issue_token_at(1, 2, 23, NOW + 10_000, NOW + 2_000)
            .unwrap();
        assert_eq!(r(11, NOW + 2_000), INVALID);
        // At most PRUNE_BATCH per issue. Each of these lives 1 ms, so is
        // forgotten from NOW + 1.
        let many = PRUNE_BATCH as u64 + 5;
        for token in 1_000..1_000 + many {
            stock.issue_token_at(1, 3, token, NOW, NOW - 1).unwrap();
        }
        let left = |stock: &TestStock| -> (u64, u64) {
            let keys = stock.keys(1);
            let mut pipe = ::redis::pipe();
            pipe.cmd("HLEN")
                .arg(&keys.tokens)
                .cmd("ZCARD")
                .arg(&keys.token_expiry);
            stock.call("count tokens", |con| pipe.query(con)).unwrap()
        };
        assert_eq!(left(&stock), (2 + many, 2 + many));
        stock
            .issue_token_at(1, 3, 1, NOW + 10_000, NOW + 1)
            .unwrap();
        // 22, 23 and 1, plus the 5 not yet pruned.
        assert_eq!(left(&stock), (8, 8));
        stock
            .issue_token_at(1, 3, 2, NOW + 10_000, NOW + 1)
            .unwrap();
        assert_eq!(left(&stock), (4, 4));
        // A token issued already past its expiry goes at the next issue.
        stock.issue_token_at(1, 4, 44, NOW, NOW + 5).unwrap();
        assert_eq!(r(44, NOW + 5), INVALID, "44 is user 4's");
        assert_eq!(left(&stock), (5, 5));
        stock
            .issue_token_at(1, 4, 45, NOW + 10_000, NOW + 5)
            .unwrap();
        assert_eq!(left(&stock), (5, 5));
    }

    #[test]
    fn queued_orders_carry_their_payment_deadline() {
        let stock = open(AckMode::Queued);
        stock.load(1, 5, &[]).unwrap();
        let now = now_ms();
        let rules = ReserveRules {
            pay_by_ms: now + 12_345,
            ..tokened(2, now)
        };
        stock.issue_token(1, 1, 11, now + 60_000).unwrap();
        let r = stock.reserve(1, &rules, &[buy(1, 101, 11), buy(2, 201, 22)]);
        assert_eq!(r.unwrap().decisions, [Reservation::Reserved, INVALID]);
        // An entry from a server that wrote no deadline gets the default.
        let mut xadd = ::redis::cmd("XADD");
        xadd.arg(stock.keys(1).queue)
            .arg("*")
            .arg(&["order_no", "102", "user", "1", "goods", "1"])
            .arg(&["created_ms", "5000"]);
        stock.call("xadd", |con| xadd.query::<String>(con)).unwrap();
        let queued = stock.queued(1).unwrap();
        assert_eq!(
            queued
                .iter()
                .map(|o| (o.order_no, o.created_ms, o.pay_by_ms))
                .collect::<Vec<_>>(),
            [
                (101, now, now + 12_345),
                (102, 5_000, 5_000 + DEFAULT_PAY_WINDOW_MS)
            ]
        );
        let read = stock.read(&[1], "a", 10, Duration::ZERO).unwrap();
        let read: Vec<OrderRecord> = read.into_iter().map(|q| q.order).collect();
        assert_eq!(read, queued);
    }

    /// A script that reaches Redis after the goods was loaded again (it was
    /// sent before the load and Redis ran it late) does nothing. A late
    /// release is not fenced; it names an order the load did not bring back
    /// (a release is only for orders that are not live), so it finds
    /// nothing to do.
    #[test]
    fn a_script_from_before_a_load_does_nothing() {
        let stock = open(AckMode::Queued);
        stock.load(1, 5, &[(8, 800)]).unwrap();
        let stale = stock.epoch(1).unwrap();
        stock.load(1, 3, &[(9, 900)]).unwrap();
        assert_eq!(stock.epoch(1).unwrap(), stale + 1);
        let keys = stock.keys(1);
        let late = |script: &str, keys: &[&str], args: &[String]| -> Value {
            let mut cmd = ::redis::cmd("EVAL");
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            stock.call("late script", |con| cmd.query(con)).unwrap()
        };
        let reserve_keys = [
            &keys.stock,
            &keys.buyers,
            &keys.queue,
            &keys.epoch,
            &keys.tokens,
        ]
        .map(String::as_str);
        let reserve_args = |epoch: u64, user: &str, order_no: &str| {
            [
                "queued",
                "1",
                "1",
                &epoch.to_string(),
                "1",
                "0",
                "2",
                user,
                order_no,
                "0",
            ]
            .map(String::from)
        };
        let reserve = late(RESERVE, &reserve_keys, &reserve_args(stale, "7", "700"));
        let release = late(
            RELEASE,
            &[&keys.stock, &keys.buyers],
            &["8", "800"].map(String::from),
        );
        let add = late(
            ADD,
            &[&keys.stock, &keys.epoch],
            &["10", &stale.to_string()].map(String::from),
        );
        assert_eq!(
            (reserve, release, add),
            (Value::Nil, Value::Int(3), Value::Nil)
        );
        // The reloaded goods is as the load left it, queue included.
        assert_eq!(stock.snapshot(1).unwrap(), Some((3, vec![(9, 900)])));
        assert!(stock.queued(1).unwrap().is_empty());
        // Run by itself (as the bench does) under the current epoch, the
        // script acts, and answers in the layout its comment gives.
        let current = stock.epoch(1).unwrap();
        let direct = late(RESERVE, &reserve_keys, &reserve_args(current, "6", "600"));
        assert_eq!(direct, Value::Array(vec![Value::Int(2), Value::Int(1)]));
        let queued = stock.queued(1).unwrap();
        assert_eq!(
            queued
                .iter()
                .map(|o| (o.user_id, o.order_no, o.created_ms, o.pay_by_ms))
                .collect::<Vec<_>>(),
            [(6, 600, 1, 2)]
        );
        // The store's own calls carry the current epoch and act.
        assert_eq!(
            stock
                .reserve(1, &rules(1), &buyers(&[(7, 700)]))
                .unwrap()
                .decisions,
            [Reservation::Reserved]
        );
        // A store that never loaded the goods does not act on it either:
        // it reloads it first.
        let url = std::env::var("SECKILL_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        let other = RedisStock::open(&url, &stock.prefix, AckMode::Queued).unwrap();
        assert!(matches!(
            other.reserve(1, &rules(1), &buyers(&[(8, 800)])),
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
        assert!(not_loaded(
            stock
                .reserve(5, &rules(1), &buyers(&[(2, 200)]))
                .unwrap_err()
        ));
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
        assert!(not_loaded(
            stock
                .reserve(5, &rules(1), &buyers(&[(2, 200)]))
                .unwrap_err()
        ));
        assert!(not_loaded(stock.release(5, &[(1, 100)]).unwrap_err()));
        let mut hgetall = ::redis::cmd("HGETALL");
        hgetall.arg(&keys.buyers);
        let held: HashMap<String, String> =
            stock.call("hgetall", |con| hgetall.query(con)).unwrap();
        assert_eq!(held, HashMap::from([("1".to_string(), "100".to_string())]));
        assert!(stock.queued(5).unwrap().is_empty());
        // Loading it again sells again.
        stock.load(5, 1, &[(1, 100)]).unwrap();
        let r = stock.reserve(5, &rules(1), &buyers(&[(2, 200)])).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Reserved]);
    }

    #[test]
    fn queued_orders_are_read_then_acked_away() {
        let stock = open(AckMode::Queued);
        assert_eq!(stock.last_added(1).unwrap(), None, "no queue yet");
        stock.load(1, 2, &[]).unwrap();
        stock.load(2, 1, &[]).unwrap();
        assert_eq!(stock.last_added(1).unwrap(), None, "an empty queue");
        let before = now_ms();
        let r = stock
            .reserve(1, &rules(1), &buyers(&[(10, 110), (11, 111), (12, 112)]))
            .unwrap();
        assert_eq!(r.decisions[2], Reservation::SoldOut);
        stock.reserve(2, &rules(1), &buyers(&[(20, 220)])).unwrap();
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
        // rules() gives the default window from its own clock.
        assert!(orders
            .iter()
            .all(|o| o.pay_by_ms == o.created_ms + DEFAULT_PAY_WINDOW_MS));
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
        let last = stock.last_added(1).unwrap();
        assert_eq!(last.as_deref(), ids(1).last().map(String::as_str));
        stock.ack(1, &ids(1)).unwrap();
        stock.ack(2, &ids(2)).unwrap();
        stock.ack(2, &[]).unwrap();
        assert_eq!(stock.last_added(1).unwrap(), last, "acks leave it");
        assert_eq!(stock.queued(1).unwrap(), vec![]);
        assert_eq!(stock.queued(2).unwrap(), vec![]);
        assert_eq!(
            stock.claim_stale(1, "b", Duration::ZERO, 10).unwrap(),
            vec![]
        );
        // The buyers stay: a written order is still held.
        let r = stock.reserve(1, &rules(1), &buyers(&[(10, 999)])).unwrap();
        assert_eq!(r.decisions, vec![Reservation::Held(110)]);
    }

    #[test]
    fn a_stale_order_is_claimed_by_another_consumer() {
        let stock = open(AckMode::Queued);
        stock.load(1, 5, &[]).unwrap();
        stock
            .reserve(1, &rules(1), &buyers(&[(1, 101), (2, 102)]))
            .unwrap();
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
        stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
        let read = stock.read(&[1], "a", 10, Duration::ZERO).unwrap();
        assert_eq!(read.len(), 1);
    }

    #[test]
    fn durable_mode_queues_nothing() {
        let stock = open(AckMode::Durable);
        stock.load(1, 5, &[]).unwrap();
        stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
        assert_eq!(stock.keys_of(1), 2);
        assert_eq!(stock.queued(1).unwrap(), vec![]);
    }

    #[test]
    fn load_replaces_a_hundred_thousand_holders() {
        let stock = open(AckMode::Queued);
        let holders: Vec<(UserId, OrderNo)> = (0..100_000u64).map(|u| (u, u64::MAX - u)).collect();
        stock.load(1, 7, &holders).unwrap();
        assert_eq!(stock.snapshot(1).unwrap(), Some((7, holders.clone())));
        let r = stock
            .reserve(1, &rules(1), &buyers(&[(99_999, 1), (100_000, 2)]))
            .unwrap();
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
        stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
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
        let failed = stock.reserve(1, &rules(1), &buyers(&[(1, 101)]));
        assert!(
            matches!(failed, Err(StoreError::Indeterminate(_))),
            "{failed:?}"
        );
        assert!(stock.outage.is_down());
        let r = stock.reserve(1, &rules(1), &buyers(&[(1, 101)])).unwrap();
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
