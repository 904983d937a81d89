-- FORGET: forgets client request ids whose order will never exist (its
-- write failed, was fenced off by a reconciliation, or was refused as a
-- second order of its user), so that a repeat of the BUY is decided afresh
-- instead of naming an order nobody has. An id is forgotten only if it
-- still names that order.
--
-- KEYS[1] req   KEYS[2] req_expiry
-- ARGV    triples: request id (32 hex digits), user id, order number
--
-- Returns how many ids were forgotten.
--
-- Built by seckill_redis_scripts::ForgetCall; by hand, e.g.:
--   redis-cli --eval forget.lua r x , 0123456789abcdeffedcba9876543210 7 700

local forgotten = 0
for i = 1, #ARGV, 3 do
  local rid = ARGV[i]
  if redis.call('HGET', KEYS[1], rid) == ARGV[i + 1] .. ' ' .. ARGV[i + 2] then
    redis.call('HDEL', KEYS[1], rid)
    redis.call('ZREM', KEYS[2], rid)
    forgotten = forgotten + 1
  end
end
return forgotten
