#!/usr/bin/env bash
# Measure built-in GetItem throughput of one alternator-sim node on one core with wrk.
#   tests/alternator-sim/bench/run.sh [duration, default 10s]
# Needs `wrk` (Debian: apt-get install -y wrk) and a release build of alternator-sim.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
bin="${CARGO_TARGET_DIR:-$root/target}/release/alternator-sim"
duration="${1:-10s}"
[ -x "$bin" ] || cargo build --release -p alternator-sim --manifest-path "$root/Cargo.toml"
out="$(mktemp)"
taskset -c 0 "$bin" --node 127.0.0.1/dc1/rack1 --worker-threads 1 >"$out" 2>/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.05; done
port="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$out")"
url="http://127.0.0.1:$port"
post() {
  curl -sf -X POST "$url/" -H 'Content-Type: application/x-amz-json-1.0' \
    -H "X-Amz-Target: DynamoDB_20120810.$1" -d "$2" >/dev/null
}
post CreateTable '{"TableName":"bench","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}'
for i in $(seq 1 100); do
  post PutItem "{\"TableName\":\"bench\",\"Item\":{\"pk\":{\"S\":\"key-$i\"},\"v\":{\"S\":\"value $i\"}}}"
done
# CPU seconds the sim has used (utime + stime from /proc), so the figure also means something
# on a busy machine: requests per CPU-second of the sim = what one dedicated core sustains.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$pid/stat"; }
echo "alternator-sim GetItem, sim pinned to CPU 0 with one worker thread; wrk on CPU 1:"
before="$(cpu)"
wrk_out="$(taskset -c 1 wrk -t1 -c64 -d"$duration" -s "$here/getitem.lua" "$url/")"
after="$(cpu)"
echo "$wrk_out"
requests="$(echo "$wrk_out" | awk '/requests in/ {print $1}')"
python3 - "$requests" "$before" "$after" <<'PY'
import sys
requests, before, after = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
cpu = after - before
print(f"sim CPU time: {cpu:.2f} s for {requests} requests -> {requests / cpu:,.0f} GetItem per CPU-second")
PY
