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
--                              orders; ids are forgotten by it or by Redis's
--                              clock, whichever is behind)
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
-- Fields (or field-value pairs) per HMGET, HSET or ZADD of many: far under
-- the number of values Lua can pass to redis.call at once.
local CHUNK = 500

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
-- Forgotten by the caller's clock or Redis's, whichever is behind: a server
-- whose clock runs an hour ahead would otherwise forget at once every id
-- the other servers recorded, and their retried BUYs would be new ones.
local t = redis.call('TIME')
local forget_by = math.min(now, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local due = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', forget_by, 'LIMIT', 0, PRUNE)
if #due > 0 then
  redis.call('HDEL', KEYS[7], unpack(due))
  redis.call('ZREM', KEYS[8], unpack(due))
end
local function words(s)
  local w = {}
  for x in string.gmatch(s, '%S+') do w[#w + 1] = x end
  return w
end

-- The hashes are read once for every buyer of the call and written once at
-- its end, not with commands per buyer: in a call of 500 buyers that cut
-- Redis's instructions per buyer by a quarter (BENCHMARKS.md, "the reserve
-- script: one read and one write per call"); a call of one buyer costs a
-- fifth more (more tables to make), and under load the server merges BUYs
-- into large calls. In between, `held`, `first` and `tokens` hold the
-- values as they stand, so that a user, a request id or a token that comes
-- twice in the call sees what the call did before; and nothing is written
-- before the stock (see the end). Tokens are read one buyer at a time,
-- when first needed: few sales require them.

-- field -> value (false where there is none) of hash `key`, for `fields`.
local function read(key, fields)
  local values = {}
  for i = 1, #fields, CHUNK do
    local last = math.min(i + CHUNK - 1, #fields)
    local got = redis.call('HMGET', key, unpack(fields, i, last))
    for j = i, last do values[fields[j]] = got[j - i + 1] end
  end
  return values
end

-- `cmd key` with the flat list `args`, CHUNK pairs at a time.
local function write(cmd, key, args)
  for i = 1, #args, 2 * CHUNK do
    redis.call(cmd, key, unpack(args, i, math.min(i + 2 * CHUNK - 1, #args)))
  end
end

local users, rids = {}, {}
for i = 9, #ARGV, 4 do
  users[#users + 1] = ARGV[i]
  if ARGV[i + 3] ~= '0' then rids[#rids + 1] = ARGV[i + 3] end
end
-- user -> the order numbers they hold, "n1 n2 ..."; request id -> "user order_no"
local held, first = read(KEYS[2], users), read(KEYS[7], rids)
-- token -> its entry, "user expires_ms [order_no]" (false: none), once read
local tokens = {}
-- What the call changes, written at its end: how many units it sold; the
-- new field-value pairs of the buyers, request-id and tokens hashes (a user
-- who reserves twice appears twice, the later value last, as HSET keeps
-- it); the request ids' forget-by pairs; and (queued) the buyers, by their
-- place in ARGV, whose orders go to the queue.
local sold, buyer_pairs, req_pairs, expiry_pairs, to_queue = 0, {}, {}, {}, {}
local token_pairs = {}
-- Whether a buyer was answered from what an earlier call wrote (its order
-- held, a request id's first order): see the end.
local answered_before = false
-- Formatted once, when first needed: a number passed to redis.call is
-- formatted each time, with sprintf (and to 14 digits).
local forget_at = nil

-- No orders held: shared by every buyer who holds none, never written.
local NONE = {}

-- Each buyer's decision, in the order the header gives; the first step
-- that decides ends the buyer's `repeat` (inline, not a function: a
-- closure over this many locals costs more to make than a small call
-- spends deciding).
local out = {}
for i = 9, #ARGV, 4 do
  local user, order_no, token, rid = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local decision = nil
  repeat
    local raw = held[user]
    local holds = raw and words(raw) or NONE
    -- 0. this very call run again (a client library may resend a script
    --    after a dropped connection): the order it proposes is held
    --    already, so the first run reserved it; answer as that run did,
    --    take nothing
    for _, o in ipairs(holds) do
      if o == order_no then decision = RESERVED answered_before = true break end
    end
    if decision then break end
    -- 1. a BUY retried under its request id: the first one's answer (an
    --    entry damaged by hand, with no order, is an id no one can use)
    if rid ~= '0' then
      local f = first[rid]
      if f then
        local w = words(f)
        if w[1] == user and w[2] then
          decision = '=' .. w[2]
          answered_before = true
        else
          decision = REQUEST_ID_TAKEN
        end
        break
      end
    end
    -- 2. the sale controls
    if closed then decision = closed break end
    -- {user, expires_ms, order_no or nil}, if the token is this user's
    local mine, entry = nil, nil
    if token_required and token ~= '0' then
      entry = tokens[token]
      if entry == nil then
        entry = redis.call('HGET', KEYS[5], token)
        tokens[token] = entry
      end
      -- An entry damaged by hand (no expiry) is no one's token: it
      -- refuses its own buyer, not the whole call of this goods.
      if entry then
        local w = words(entry)
        if w[1] == user and tonumber(w[2]) then mine = w end
      end
    end
    -- 3. a retried BUY: the token bought an order the user still holds
    if mine and mine[3] then
      for _, o in ipairs(holds) do
        if o == mine[3] then decision = '#' .. o answered_before = true break end
      end
      if decision then break end
    end
    -- 4. the user holds as many orders as the limit allows
    if #holds >= limit then
      decision = '#' .. holds[1]
      answered_before = true
      break
    end
    -- 5. the token must be the user's, unused, not expired
    if token_required then
      if not mine then decision = TOKEN_INVALID break end
      if mine[3] then decision = TOKEN_USED break end
      if now >= tonumber(mine[2]) then decision = TOKEN_EXPIRED break end
    end
    -- 6. a unit if one is left; sold out does not spend the token
    if left <= 0 then decision = SOLD_OUT break end
    left = left - 1
    sold = sold + 1
    local now_held = raw and (raw .. ' ' .. order_no) or order_no
    held[user] = now_held
    buyer_pairs[#buyer_pairs + 1] = user
    buyer_pairs[#buyer_pairs + 1] = now_held
    if token_required then
      local used = entry .. ' ' .. order_no
      tokens[token] = used
      token_pairs[#token_pairs + 1] = token
      token_pairs[#token_pairs + 1] = used
    end
    if rid ~= '0' then
      local f = user .. ' ' .. order_no
      first[rid] = f
      req_pairs[#req_pairs + 1] = rid
      req_pairs[#req_pairs + 1] = f
      forget_at = forget_at or string.format('%d', now + remember)
      expiry_pairs[#expiry_pairs + 1] = forget_at
      expiry_pairs[#expiry_pairs + 1] = rid
    end
    if queued then to_queue[#to_queue + 1] = i end
    decision = RESERVED
  until true
  out[#out + 1] = decision
end

-- The stock first, the queued orders last: should a write fail half-way,
-- units are missing from the sale (reconciliation gives them back), never
-- sold twice.
if sold > 0 then redis.call('DECRBY', KEYS[1], sold) end
write('HSET', KEYS[2], buyer_pairs)
write('HSET', KEYS[5], token_pairs)
write('HSET', KEYS[7], req_pairs)
write('ZADD', KEYS[8], expiry_pairs)
for _, i in ipairs(to_queue) do
  redis.call('XADD', KEYS[3], '*', 'order_no', ARGV[i + 1], 'user', ARGV[i],
    'goods', ARGV[2], 'created_ms', ARGV[3], 'pay_by_ms', ARGV[7])
end
-- An answer from what an earlier call wrote (perhaps another server's,
-- whose WAIT for the replicas timed out) is one a caller may act on, as
-- "ok" in the queued mode. WAIT is documented to cover the writes of its
-- own connection, and Redis versions after 7.0 do just that: commands that
-- wrote nothing leave the connection's WAIT where it was, short of the
-- earlier call's writes. So a call that wrote nothing writes the epoch it
-- read, unchanged: the WAIT after it then covers every write before it.
if answered_before and sold == 0 and #due == 0 then redis.call('SET', KEYS[4], epoch) end
return {left, table.concat(out, ' ')}
