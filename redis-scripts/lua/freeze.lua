-- FREEZE: the first step of a reconciliation's load. From here until LOAD,
-- every fenced script (RESERVE, ADD) finds the goods "loading" and does
-- nothing, so the stock and the queue hold still while the reconciliation
-- counts the orders in the order store and the queue: no order of any
-- server can be queued or reserved unseen between the count and the load.
--
-- KEYS[1] epoch
-- ARGV[1] epoch               (the reconciliation's, from the order store)
--
-- Returns 1, the epoch key now "<epoch>:loading" (also when it was already:
-- this very freeze run again, resent by a client library after a dropped
-- connection; epochs are never handed out twice); or {"stale", value} if
-- the goods is already at that epoch, loaded, or at a later one (that
-- reconciliation stands, and nothing is done).
--
-- Built by seckill_redis_scripts::Load; by hand, e.g.:
--   redis-cli --eval freeze.lua e , 7

local current = redis.call('GET', KEYS[1])
if current == ARGV[1] .. ':loading' then return 1 end
local at = current and tonumber(string.match(current, '^%d+')) or 0
if at >= tonumber(ARGV[1]) then return {'stale', current} end
redis.call('SET', KEYS[1], ARGV[1] .. ':loading')
return 1
