-- FORGET: forgets what names an order that will never exist (its write
-- failed, was fenced off by a reconciliation, or was refused as a second
-- order of its user): its client request id, so that a repeat of the BUY is
-- decided afresh instead of naming an order nobody has, and its purchase
-- token's mark of that order, so that the token buys again (a token is
-- spent only by a BUY that makes an order). Each only if it still names
-- that order.
--
-- KEYS[1] req   KEYS[2] req_expiry   KEYS[3] tokens
-- ARGV    quadruples: request id (32 hex digits; "0": none), user id, order
--         number, token ("0": none)
--
-- Returns how many ids were forgotten.
--
-- Built by seckill_redis_scripts::ForgetCall; by hand, e.g.:
--   redis-cli --eval forget.lua r x t , 0123456789abcdeffedcba9876543210 7 700 0

local forgotten = 0
for i = 1, #ARGV, 4 do
  local rid, user, order_no, token = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if rid ~= '0' and redis.call('HGET', KEYS[1], rid) == user .. ' ' .. order_no then
    redis.call('HDEL', KEYS[1], rid)
    redis.call('ZREM', KEYS[2], rid)
    forgotten = forgotten + 1
  end
  if token ~= '0' then
    -- "user expires_ms order_no" once it bought: back to "user expires_ms".
    local entry = redis.call('HGET', KEYS[3], token)
    if entry then
      local w = {}
      for x in string.gmatch(entry, '%S+') do w[#w + 1] = x end
      if w[1] == user and w[3] == order_no then
        redis.call('HSET', KEYS[3], token, w[1] .. ' ' .. w[2])
      end
    end
  end
end
return forgotten
