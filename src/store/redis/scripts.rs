//! The Lua scripts: every decision on a goods' stock is one of them, so it
//! is atomic against every other call.

// Every script that changes a goods' stock is fenced by the goods' epoch,
// which each load bumps: a script sent before a load and run after it (Redis
// stalled, the caller timed out, the goods was reconciled meanwhile) finds
// another epoch and does nothing, instead of changing the reloaded stock.
// A script that finds no stock or another epoch returns nil: "not loaded".
// RELEASE needs no fence (see there).

/// The flash sale: one call decides a batch of buyers of one goods, in
/// order, as [`StockStore::reserve`](crate::store::StockStore::reserve) documents. Public because the bench's
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
pub(super) const RELEASE: &str = r"
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
pub(super) const ISSUE: &str = r"
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
pub(super) const ADD: &str = r"
local stock = redis.call('GET', KEYS[1])
if not stock or redis.call('GET', KEYS[2]) ~= ARGV[2] then return false end
local left = tonumber(stock) + tonumber(ARGV[1])
if left > 4294967295 then left = 4294967295 end
redis.call('SET', KEYS[1], string.format('%d', left))
return left
";
