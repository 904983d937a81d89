-- LOAD: puts a reconciliation's count in place of a goods' stock and
-- buyers, if the goods is still frozen for it.
--
-- A reconciliation takes a new epoch from the order store (which issues
-- each one once, higher than any before), freezes the goods under it
-- (FREEZE), counts the orders in the order store and the queue, writes the
-- buyers into a staging hash named after its epoch (HSET in chunks, before
-- this call), then calls LOAD. A later reconciliation's FREEZE in between
-- supersedes it: epochs only rise, and a count older than another never
-- overwrites it.
--
-- KEYS[1] stock   KEYS[2] buyers   KEYS[3] epoch
-- KEYS[4] staged: the buyers hash this load wrote (deleted if superseded)
-- KEYS[5] ctl: its field "total", the total of the last restock counted in
--         the stock (see add.lua), rises to this count's total
-- KEYS[6] ledger: the units the parts of a bucketed goods sent each other
--         under the epoch before (send.lua), which this count includes
--         wherever they were: deleted
-- ARGV[1] epoch               (the reconciliation's, from the order store)
-- ARGV[2] units left
-- ARGV[3] "1" if the staged hash holds the buyers, "0" if there are none
-- ARGV[4] the goods' total the count was made from
--
-- Returns 1 if this load took effect, also when it had already (a client
-- library resending the script after a dropped link: the epoch key then
-- holds this very epoch, which the order store issues once), else {"stale",
-- value}: the goods' epoch key, which another reconciliation's FREEZE set
-- (nothing is done).
--
-- Built by seckill_redis_scripts::Load; by hand, e.g.:
--   redis-cli --eval load.lua s b e st c l , 7 100 0 100

local current = redis.call('GET', KEYS[3])
if current == ARGV[1] then
  redis.call('DEL', KEYS[4])
  return 1
end
if current ~= ARGV[1] .. ':loading' then
  redis.call('DEL', KEYS[4])
  return {'stale', current or '0'}
end
if ARGV[3] == '1' then
  redis.call('RENAME', KEYS[4], KEYS[2])
  -- The staged hash carried an expiry, so that a reconciler that died
  -- before its load leaves nothing behind for long; the buyers keep none.
  redis.call('PERSIST', KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[6])
-- A restock the count included must not add its units again when its ADD,
-- sent under the old epoch, is resent under this one.
local counted = tonumber(redis.call('HGET', KEYS[5], 'total') or '-1')
if tonumber(ARGV[4]) > counted then redis.call('HSET', KEYS[5], 'total', ARGV[4]) end
return 1
