-- ISSUE: records a purchase token. First forgets up to a prune batch of
-- tokens (a bounded step, so that one issue never stalls Redis on a
-- backlog) whose forget-after time is at or before now_ms, or Redis's
-- clock if that is behind (a server whose clock runs ahead must not forget
-- the tokens the others issued), then records the token unless it is
-- already there: a repeated issue (a retry) must not wipe out the order
-- that used it.
--
-- KEYS[1] tokens  KEYS[2] token_expiry
-- ARGV[1] now_ms
-- ARGV[2] token
-- ARGV[3] user id
-- ARGV[4] expires_ms
-- ARGV[5] forget_after_ms     (when the token may be forgotten)
-- ARGV[6] prune batch         (tokens forgotten at most)
--
-- Returns 1 if recorded, 0 if the token was known. Not fenced by the
-- epoch: a token changes no stock, and a load keeps the tokens.
--
-- Built by seckill_redis_scripts::IssueCall; by hand, e.g.:
--   redis-cli --eval issue.lua t x , 1000 11 7 2000 3000 100

local t = redis.call('TIME')
local now = math.min(tonumber(ARGV[1]), tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[6])
if #due > 0 then
  redis.call('HDEL', KEYS[1], unpack(due))
  redis.call('ZREM', KEYS[2], unpack(due))
end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3] .. ' ' .. ARGV[4]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
-- Both keys go when their last token may be forgotten, so that a sale's
-- tokens do not outlive it when no more are issued to prune them. Timed
-- from the same clock as the pruning.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
local ttl = math.floor(tonumber(last) - now)
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
