-- Appended to every wrk script the load test runs: counts answers by HTTP
-- status in each wrk thread and, when wrk is done, prints one line
-- `LOADTEST_RESULT {json}` with the counts, the totals and the latency
-- percentiles (microseconds), which loadtest/src/wrk.rs parses. wrk's own
-- text report has no per-status counts and no p99.9.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  -- Now and then wrk hands back nil for a thread's table (seen about once
  -- in a few hundred runs); report it instead of failing in Lua, and the
  -- load test runs the measurement again.
  local lost = 0
  for _, thread in ipairs(threads) do
    local statuses = thread:get("statuses")
    if statuses == nil then
      lost = lost + 1
    else
      for status, n in pairs(statuses) do
        counts[status] = (counts[status] or 0) + n
      end
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'LOADTEST_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d},' ..
    '"statuses":{%s},"statuses_lost":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9),
    table.concat(parts, ","), lost))
  -- wrk exits right after this callback; do not leave the line to exit-time
  -- buffer flushing.
  io.stdout:flush()
end
