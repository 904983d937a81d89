-- ADD: a restock. Adds units to a goods' stock, saturating at 2^32 - 1
-- (u32::MAX) like the in-memory store.
--
-- Safe to run twice, and in any order: each restock names the total it
-- makes (the order store's, which only grows), and the stock records the
-- total it covers (this script's, or a reconciliation's LOAD). A call adds
-- the units between that total and its own: nothing if its total is
-- covered already (a second run; a load that counted it; a later restock
-- that arrived first and added these units too), else the difference.
--
-- KEYS[1] stock   KEYS[2] epoch   KEYS[3] ctl (its field "total": the total
--                 of the last restock applied)
-- ARGV[1] amount
-- ARGV[2] epoch               (that of the caller's last load)
-- ARGV[3] total               (the goods' total after this restock)
--
-- Returns nil if the goods is not loaded, {"stale", value} if it was loaded
-- under another epoch since the caller learnt it, or is being loaded
-- ("<epoch>:loading", see freeze.lua) (nothing is done in either case),
-- else the units left.
--
-- Built by seckill_redis_scripts::AddCall; by hand, e.g.:
--   redis-cli --eval add.lua s e c , 10 1 110

local stock = redis.call('GET', KEYS[1])
if not stock then return false end
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[2] then return {'stale', epoch or '0'} end
local covered = redis.call('HGET', KEYS[3], 'total')
local adds = tonumber(ARGV[1])
if covered then
  if tonumber(ARGV[3]) <= tonumber(covered) then return tonumber(stock) end
  adds = tonumber(ARGV[3]) - tonumber(covered)
end
local left = tonumber(stock) + adds
if left > 4294967295 then left = 4294967295 end
redis.call('SET', KEYS[1], string.format('%d', left))
redis.call('HSET', KEYS[3], 'total', ARGV[3])
return left
