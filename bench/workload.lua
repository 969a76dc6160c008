-- wrk request generator for `bench/run.py`: DynamoDB JSON requests as an SDK sends them.
--
-- Argument (after `--`): REQUEST_FILE, written by run.py from bench/sdk_requests.py (the one
-- definition of the requests, shared with the paced phase's h2load): `Name: value` header lines,
-- an empty line, then one JSON body per line. Every body becomes one `POST /` request.
--
-- Requests are formatted once per thread in init() and then cycled, so wrk spends its time
-- sending, not building strings. done() prints one line `BENCH-JSON {...}` with the merged
-- statistics (latencies in microseconds) for run.py to parse.

local requests = {}
local next_index = 1

function init(args)
  local file = assert(io.open(args[1], "r"))
  local headers = {}
  for line in file:lines() do
    if line == "" then break end
    local name, value = line:match("^([^:]+): (.*)$")
    headers[name] = value
  end
  for body in file:lines() do
    requests[#requests + 1] = wrk.format("POST", "/", headers, body)
  end
  file:close()
  assert(#requests > 0, "no request bodies in " .. args[1])
  -- Threads start at different keys so they do not move in lockstep.
  next_index = math.random(#requests)
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
