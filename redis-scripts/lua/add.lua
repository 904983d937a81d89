-- ADD: a restock. Adds units to a goods' stock, saturating at 2^32 - 1
-- (u32::MAX) like the in-memory store.
--
-- KEYS[1] stock   KEYS[2] epoch
-- ARGV[1] amount
-- ARGV[2] epoch               (that of the caller's last load)
--
-- Returns nil if the goods is not loaded, {"stale", value} if it was loaded
-- under another epoch since the caller learnt it, or is being loaded
-- ("<epoch>:loading", see freeze.lua) (nothing is done in either case), else the units left.
--
-- Built by seckill_redis_scripts::AddCall; by hand, e.g.:
--   redis-cli --eval add.lua s e , 10 1

local stock = redis.call('GET', KEYS[1])
if not stock then return false end
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[2] then return {'stale', epoch or '0'} end
local left = tonumber(stock) + tonumber(ARGV[1])
if left > 4294967295 then left = 4294967295 end
redis.call('SET', KEYS[1], string.format('%d', left))
return left
