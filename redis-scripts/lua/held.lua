-- HELD: the orders a user holds of a goods, read to be told to the user
-- (in the queued mode, orders the order store may not have yet) once the
-- replicas have them. The value is written back as it is: WAIT covers the
-- writes of its own connection only (Redis after 7.0 holds to that), so a
-- read alone would leave the WAIT after it short of the write that put
-- these orders here, perhaps another server's whose own WAIT timed out.
--
-- KEYS[1] buyers
-- ARGV[1] user id
--
-- Returns the user's order numbers as the buyers hash holds them
-- ("n1 n2 ..."), or nil if the user holds none (nothing written).
--
-- By hand, e.g.:
--   redis-cli --eval held.lua b , 7

local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then redis.call('HSET', KEYS[1], ARGV[1], held) end
return held
