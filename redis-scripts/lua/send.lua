-- SEND: the first step of moving units between two parts of a bucketed
-- goods (its pool and its buckets, each in a hash slot of its own, so no
-- script can touch two). Takes up to `want` units out of this part's stock
-- and records them as sent to `dest` in this part's ledger, where they stay
-- counted until RECEIVE (receive.lua) on the destination catches up with
-- the total sent. The ledger's counters only grow, so a receive can be
-- run again, or late, or for several sends at once: it adds what it has
-- not added yet, never a unit twice; and until it runs, the units are "in
-- flight" (sent here minus got there), counted by the conservation check.
--
-- KEYS[1] stock   KEYS[2] epoch   KEYS[3] ledger (hash: "sent:<dest>",
--                                  "got:<src>")
-- ARGV[1] epoch   (that of the caller's last load: every part of a goods
--                  is loaded under the same one)
-- ARGV[2] units wanted: at most this many are moved (fewer if fewer are
--         left; none is an answer, not an error)
-- ARGV[3] dest: the destination's name, "p" for the pool or the bucket's
--         number
--
-- Returns nil if the part is not loaded, {"stale", value} under another
-- epoch (nothing done), else {moved, sent, left}: units moved now, the
-- total ever sent to dest under this epoch (what RECEIVE is given), and
-- the units left here.
--
-- Built by seckill_redis_scripts::SendCall; by hand, e.g.:
--   redis-cli --eval send.lua s e l , 7 10 0

local stock = redis.call('GET', KEYS[1])
if not stock then return false end
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[1] then return {'stale', epoch or '0'} end
local left = tonumber(stock)
local moved = tonumber(ARGV[2])
if moved > left then moved = left end
local field = 'sent:' .. ARGV[3]
local sent
if moved > 0 then
  left = redis.call('DECRBY', KEYS[1], moved)
  sent = redis.call('HINCRBY', KEYS[3], field, moved)
else
  sent = tonumber(redis.call('HGET', KEYS[3], field) or '0')
  -- The total comes from earlier sends (perhaps another server's, whose
  -- WAIT for the replicas timed out), and the caller acts on it: it
  -- RECEIVEs that many into the destination, to be sold there. A WAIT
  -- covers the writes of its own connection only, so the total is written
  -- back, unchanged: the WAIT after this call then covers the sends it
  -- counts, and units a failover could take back into this part are not
  -- also sold from the destination.
  if sent > 0 then redis.call('HSET', KEYS[3], field, sent) end
end
return {moved, sent, left}
