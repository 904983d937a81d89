-- wrk script: POST /api/goods/ID/buy through seckill-web, each request as a
-- buyer of its own. The gateway runs with --user-header X-User-Id (the
-- trusted-proxy mode), so the user id is a header; every id is new (thread
-- number times a billion, plus a counter), so that every BUY makes an order
-- rather than "already bought".
local threads = {}
local next_thread = 1

function setup(thread)
  thread:set("base", next_thread * 1000000000)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local counter = 0

function request()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-User-Id"] = tostring(base + counter),
  }
  return wrk.format("POST", nil, headers, "{}")
end
