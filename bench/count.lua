-- wrk bounds a run by time; this stops each thread after a fixed number of responses instead and
-- prints "THREAD DONE". wrk's main thread still sleeps for -d, so the harness (bench/foundation.py)
-- sends wrk SIGINT once every thread is done; wrk then reports as usual. The script also counts
-- responses that are not 200 (a 302 to the login page would otherwise look like success) and
-- prints the percentiles wrk's own report leaves out (p95).
-- Usage: wrk ... -s bench/count.lua URL -- <responses per thread>

local threads = {}
local limit = 1000
local seen = 0
non200 = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  limit = tonumber(args[1]) or limit
end

function response(status, headers, body)
  seen = seen + 1
  if status ~= 200 then
    non200 = non200 + 1
  end
  if seen == limit then
    io.write("THREAD DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local not_ok = 0
  for _, thread in ipairs(threads) do
    not_ok = not_ok + (thread:get("non200") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d non200=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, not_ok, errors.connect + errors.read + errors.write + errors.timeout
  ))
end
