-- CONTROL: records a goods' sale controls, which RESERVE enforces in the
-- same atomic step as every deduction: a pause or an end sent to any server
-- holds on every server from the next BUY on.
--
-- KEYS[1] ctl
-- ARGV[1] version             (the goods' sale_version in the order store,
--                              raised by every saved control)
-- ARGV[2] paused              ("1" or "0")
-- ARGV[3] start_ms
-- ARGV[4] end_ms
--
-- Returns 1 if recorded, 0 if the hash holds this version or a later one
-- already (a late write of an older state: nothing is changed, and the
-- version held is written back as it is, for the caller's WAIT).
--
-- Built by seckill_redis_scripts::ControlCall; by hand, e.g.:
--   redis-cli --eval control.lua c , 3 1 0 9999999999999

local recorded = redis.call('HGET', KEYS[1], 'version')
local current = tonumber(recorded or '-1')
if tonumber(ARGV[1]) <= current then
  -- Recorded already (this state or a later one), perhaps by another
  -- server whose WAIT for the replicas timed out; the caller tells its
  -- admin "ok" after its own WAIT, which covers only its connection's
  -- writes: the version is written back, unchanged, so that it covers
  -- what the hash holds.
  redis.call('HSET', KEYS[1], 'version', recorded)
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'paused', ARGV[2],
  'start_ms', ARGV[3], 'end_ms', ARGV[4])
return 1
