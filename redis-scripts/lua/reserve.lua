-- RESERVE: the flash sale. One call decides a batch of buyers of one goods,
-- in order, as the server's StockStore::reserve documents: the request id
-- of a BUY retried gets its first answer back, then the sale controls, then
-- a token's order, then the per-user limit, then the token, then a unit if
-- one is left. Safe to run twice: a buyer whose proposed order number is
-- held already was reserved by an earlier run of this call, and is
-- answered "reserved" again without taking a second unit.
--
-- KEYS[1] stock   KEYS[2] buyers   KEYS[3] queue   KEYS[4] epoch
-- KEYS[5] tokens  (read only if token_required; the key must still be
--                  given, for Redis Cluster to route the call)
-- KEYS[6] ctl     the sale controls (control.lua): a paused sale, or one
--                 outside its window at now_ms, sells nothing
-- KEYS[7] req     hash: client request id → "user order_no", the order its
--                 first BUY reserved
-- KEYS[8] req_expiry  sorted set: request id → when it may be forgotten
-- ARGV[1] mode: "queued" XADDs each reserved order to the queue, anything
--         else ("durable") does not
-- ARGV[2] goods id            (written into queued orders)
-- ARGV[3] now_ms              (the clock of token expiry, of the sale window
--                              and of request ids, and created_ms of queued
--                              orders)
-- ARGV[4] epoch               (that of the caller's last load)
-- ARGV[5] per_user_limit      (1..=255; less than 1 is taken as 1)
-- ARGV[6] token_required      ("1" yes, anything else no)
-- ARGV[7] pay_by_ms           (written into queued orders)
-- ARGV[8] how long a request id is remembered, in ms
-- ARGV[9..] four per buyer: user id, proposed order number, token ("0":
--         none), client request id (32 hex digits; "0": none)
--
-- Returns nil if the goods is not loaded, {"stale", value} if it was loaded
-- under another epoch since the caller learnt it, or is being loaded
-- ("<epoch>:loading", see freeze.lua) (nothing is done in either case),
-- else {remaining, decisions}: decisions is one string of one word per
-- buyer, in order, separated by single spaces (one bulk string rather than
-- an element per buyer, which every caller's RESP parser pays for per
-- element): 1 reserved, 0 sold out, -1 token invalid, -2 token expired, -3
-- token used, -4 the request id is another user's, -5 paused, -6 not
-- started, -7 ended, "#" and a held order number, or "=" and the order
-- number a request id's first BUY reserved.
--
-- Built by seckill_redis_scripts::ReserveCall; by hand, e.g.:
--   redis-cli --eval reserve.lua s b q e t c r x , durable 1 1000 1 1 0 2000 3600000 7 700 0 0

-- The decisions' codes, as strings: table.concat would format numbers with
-- sprintf, about 2,400 instructions each.
local RESERVED, SOLD_OUT = '1', '0'
local TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_USED = '-1', '-2', '-3'
local REQUEST_ID_TAKEN = '-4'
local PAUSED, NOT_STARTED, ENDED = '-5', '-6', '-7'
-- Request ids forgotten at most per call, so that one call stays short.
local PRUNE = 100

local stock = redis.call('GET', KEYS[1])
if not stock then return false end
local epoch = redis.call('GET', KEYS[4])
if epoch ~= ARGV[4] then return {'stale', epoch or '0'} end
local left = tonumber(stock)
local queued = ARGV[1] == 'queued'
local now = tonumber(ARGV[3])
local limit = tonumber(ARGV[5]) or 1
if limit < 1 then limit = 1 end
local token_required = ARGV[6] == '1'
local remember = tonumber(ARGV[8])
local closed = nil
local ctl = redis.call('HMGET', KEYS[6], 'paused', 'start_ms', 'end_ms')
if ctl[1] then
  if ctl[1] == '1' then closed = PAUSED
  elseif now < tonumber(ctl[2]) then closed = NOT_STARTED
  elseif now >= tonumber(ctl[3]) then closed = ENDED
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, PRUNE)
for _, rid in ipairs(due) do
  redis.call('HDEL', KEYS[7], rid)
  redis.call('ZREM', KEYS[8], rid)
end
local function words(s)
  local w = {}
  for x in string.gmatch(s, '%S+') do w[#w + 1] = x end
  return w
end
local out = {}
for i = 9, #ARGV, 4 do
  local user, order_no, token, rid = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local raw = redis.call('HGET', KEYS[2], user)
  local held = raw and words(raw) or {}
  local decision = nil
  -- 0. this very call run again (a client library may resend a script after
  --    a dropped connection): the order it proposes is held already, so
  --    the first run reserved it; answer as that run did, take nothing
  for _, o in ipairs(held) do
    if o == order_no then decision = RESERVED break end
  end
  -- 1. a BUY retried under its request id: the first one's answer
  if not decision and rid ~= '0' then
    local first = redis.call('HGET', KEYS[7], rid)
    if first then
      local w = words(first)
      if w[1] == user then decision = '=' .. w[2] else decision = REQUEST_ID_TAKEN end
    end
  end
  -- 2. the sale controls
  if not decision and closed then decision = closed end
  -- {user, expires_ms, order_no or nil}, if the token is this user's
  local mine, entry = nil, nil
  if not decision and token_required and token ~= '0' then
    entry = redis.call('HGET', KEYS[5], token)
    if entry then
      local w = words(entry)
      if w[1] == user then mine = w end
    end
  end
  -- 3. a retried BUY: the token bought an order the user still holds
  if not decision and mine and mine[3] then
    for _, o in ipairs(held) do
      if o == mine[3] then decision = '#' .. o break end
    end
  end
  -- 4. the user holds as many orders as the limit allows
  if not decision and #held >= limit then decision = '#' .. held[1] end
  -- 5. the token must be the user's, unused, not expired
  if not decision and token_required then
    if not mine then decision = TOKEN_INVALID
    elseif mine[3] then decision = TOKEN_USED
    elseif now >= tonumber(mine[2]) then decision = TOKEN_EXPIRED
    end
  end
  -- 6. a unit if one is left; sold out does not spend the token
  if not decision then
    if left > 0 then
      left = redis.call('DECR', KEYS[1])
      redis.call('HSET', KEYS[2], user, raw and (raw .. ' ' .. order_no) or order_no)
      if token_required then
        redis.call('HSET', KEYS[5], token, entry .. ' ' .. order_no)
      end
      if rid ~= '0' then
        redis.call('HSET', KEYS[7], rid, user .. ' ' .. order_no)
        redis.call('ZADD', KEYS[8], now + remember, rid)
      end
      if queued then
        redis.call('XADD', KEYS[3], '*', 'order_no', order_no, 'user', user,
          'goods', ARGV[2], 'created_ms', ARGV[3], 'pay_by_ms', ARGV[7])
      end
      decision = RESERVED
    else
      decision = SOLD_OUT
    end
  end
  out[#out + 1] = decision
end
return {left, table.concat(out, ' ')}
