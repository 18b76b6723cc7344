-- wrk script for bench/acks.py: posts pre-signed Slack requests to /slack/events.
--
-- wrk's Lua has no HMAC, so bench/acks.py signs a pool of requests just before each run (Slack's
-- v0 scheme, fresh timestamps) and writes one per line: "<timestamp> <signature> <body>".
-- Arguments after `--`: the pool file and wrk's thread count. Thread i sends lines i, i+n,
-- i+2n... so no two requests of a run share a line (a trigger id) until the pool wraps.
-- done() prints one line "ACKS_JSON {...}" with the figures bench/acks.py reads.

local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local step = tonumber(args[2])
  timestamps, signatures, bodies = {}, {}, {}
  local line_number = 0
  for line in io.lines(args[1]) do
    if line_number % step == index then
      local timestamp, signature, body = line:match("^(%d+) (%S+) (.*)$")
      table.insert(timestamps, timestamp)
      table.insert(signatures, signature)
      table.insert(bodies, body)
    end
    line_number = line_number + 1
  end
  position = 0
end

function request()
  position = position % #bodies + 1
  local headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Slack-Request-Timestamp"] = timestamps[position],
    ["X-Slack-Signature"] = signatures[position],
  }
  return wrk.format("POST", wrk.path, headers, bodies[position])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'ACKS_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
