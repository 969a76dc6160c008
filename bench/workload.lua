-- wrk request generator for `bench/run.py`: DynamoDB JSON requests as an SDK sends them.
--
-- Arguments (after `--`): OPERATION KEYS [BODY_BYTES]
--   GetItem  KEYS          GetItem of one of KEYS pre-written items
--   PutItem  KEYS  BYTES   PutItem of an item whose JSON body is BODY_BYTES long
--
-- Requests are formatted once per thread in init() and then cycled, so wrk spends its time
-- sending, not building strings. done() prints one line `BENCH-JSON {...}` with the merged
-- statistics (latencies in microseconds) for run.py to parse.

local requests = {}
local next_index = 1

-- Headers of a boto3 request, with a syntactically valid (not verified) SigV4 signature: the
-- proxies under test handle headers of realistic size.
local function headers(operation)
  return {
    ["Content-Type"] = "application/x-amz-json-1.0",
    ["X-Amz-Target"] = "DynamoDB_20120810." .. operation,
    ["User-Agent"] = "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.7 cfg/retry-mode#standard Botocore/1.35.0",
    ["X-Amz-Date"] = "20261121T150000Z",
    ["Authorization"] = "AWS4-HMAC-SHA256 Credential=bench/20261121/us-east-1/dynamodb/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
  }
end

local function key(i)
  return string.format("user-%06d", i)
end

local function get_item(i)
  return string.format(
    '{"TableName":"bench","Key":{"pk":{"S":"%s"}},"ConsistentRead":false,"ReturnConsumedCapacity":"NONE"}',
    key(i))
end

local function put_item(i, size)
  local head = string.format(
    '{"TableName":"bench","Item":{"pk":{"S":"%s"},"visits":{"N":"%d"},"active":{"BOOL":true},"payload":{"S":"',
    key(i), i)
  local tail = '"}},"ReturnValues":"NONE"}'
  local pad = size - #head - #tail
  if pad < 0 then pad = 0 end
  return head .. string.rep(string.char(97 + i % 26), pad) .. tail
end

function init(args)
  local operation = args[1] or "GetItem"
  local keys = tonumber(args[2] or "64")
  local size = tonumber(args[3] or "1024")
  for i = 0, keys - 1 do
    local body
    if operation == "PutItem" then
      body = put_item(i, size)
    else
      body = get_item(i)
    end
    requests[#requests + 1] = wrk.format("POST", "/", headers(operation), body)
  end
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
