-- LOAD: puts a reconciliation's count in place of a goods' stock and
-- buyers, unless a load of a later epoch got there first.
--
-- A reconciliation takes a new epoch from the order store (which issues
-- each one once, higher than any before), counts the orders there, writes
-- the buyers into a staging hash named after its epoch (HSET in chunks,
-- before this call), then calls LOAD. Epochs only rise: a reconciliation
-- that read the order store before another one cannot overwrite the later
-- one's count, and every script carrying an older epoch is refused from
-- then on.
--
-- KEYS[1] stock   KEYS[2] buyers   KEYS[3] epoch
-- KEYS[4] staged: the buyers hash this load wrote (deleted if superseded)
-- ARGV[1] epoch               (the reconciliation's, from the order store)
-- ARGV[2] units left
-- ARGV[3] "1" if the staged hash holds the buyers, "0" if there are none
--
-- Returns 1 if this load took effect, else {"stale", epoch}: the goods'
-- epoch, as high or higher, which stands (nothing is done).
--
-- Built by seckill_redis_scripts::Load; by hand, e.g.:
--   redis-cli --eval load.lua s b e st , 7 100 0

local current = tonumber(redis.call('GET', KEYS[3]) or '0')
local epoch = tonumber(ARGV[1])
if current >= epoch then
  redis.call('DEL', KEYS[4])
  return {'stale', tostring(current)}
end
if ARGV[3] == '1' then
  redis.call('RENAME', KEYS[4], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[3], ARGV[1])
return 1
