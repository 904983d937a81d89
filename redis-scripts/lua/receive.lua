-- RECEIVE: the second step of moving units between two parts of a
-- bucketed goods (see send.lua). Adds to this part's stock what `src` has
-- sent here and this part has not got yet: `sent` is the source ledger's
-- total for this destination, which only grows, so running this again, or
-- late, or once for several sends adds each unit exactly once.
--
-- KEYS[1] stock   KEYS[2] epoch   KEYS[3] ledger
-- ARGV[1] epoch   (under which the units were sent: a load in between
--                  counted them afresh, and they are not added)
-- ARGV[2] src: the source's name, "p" for the pool or the bucket's number
-- ARGV[3] sent: the total the source has sent here (SEND's answer)
--
-- Returns nil if the part is not loaded, {"stale", value} under another
-- epoch (nothing done), else {added, left}.
--
-- Built by seckill_redis_scripts::ReceiveCall; by hand, e.g.:
--   redis-cli --eval receive.lua s e l , 7 p 10

local stock = redis.call('GET', KEYS[1])
if not stock then return false end
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[1] then return {'stale', epoch or '0'} end
local field = 'got:' .. ARGV[2]
local got = tonumber(redis.call('HGET', KEYS[3], field) or '0')
local sent = tonumber(ARGV[3])
local left = tonumber(stock)
if sent <= got then return {0, left} end
left = redis.call('INCRBY', KEYS[1], sent - got)
redis.call('HSET', KEYS[3], field, ARGV[3])
return {sent - got, left}
