-- RELEASE: gives back the units of orders that are not live (a write that
-- failed, an order cancelled). Each pair whose order the user holds leaves
-- the user's list (the field goes when the list is empty) and gives its
-- unit back; any other pair does nothing, so a release repeated returns
-- nothing twice.
--
-- KEYS[1] stock   KEYS[2] buyers
-- KEYS[3] released: a count of the units this script gave back, which
--         every server watches to learn that some holder let go (its
--         cache of who holds an order is then out of date)
-- KEYS[4] epoch: while a reconciliation has the goods frozen
--         ("<epoch>:loading", see freeze.lua) nothing is released: its count
--         may have this order as live, and its load would bring the holder
--         back and take the unit again
-- ARGV    pairs: user id, order number
--
-- Returns nil if the goods is not loaded, {"stale", value} while it is
-- frozen (nothing is done: the caller leaves it to a reconciliation after
-- that load, which finds the order not live), else the units left.
--
-- Not fenced by the epoch, unlike the other scripts that change the stock:
-- a release only ever names an order that is not live in the order store,
-- so a load never brings its holder back, and a release run late after a
-- load finds nothing to do. Unfenced, a server returns the unit of an
-- order it cancelled even when another server loaded the goods since (two
-- servers sweeping expired orders).
--
-- Built by seckill_redis_scripts::ReleaseCall; by hand, e.g.:
--   redis-cli --eval release.lua s b , 7 700

local stock = redis.call('GET', KEYS[1])
if not stock then return false end
local epoch = redis.call('GET', KEYS[4])
if epoch and string.find(epoch, ':loading', 1, true) then return {'stale', epoch} end
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
      redis.call('INCR', KEYS[3])
    end
  end
end
return left
