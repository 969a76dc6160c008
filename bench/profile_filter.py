#!/usr/bin/env python3
"""Per-request profile of the alternator-filter .wasm outside Envoy: instructions, host calls, copies.

A minimal proxy-wasm ABI 0.2.1 host on wasmtime (PyPI `wasmtime`) loads the release .wasm,
configures it like Envoy does (root context, plugin configuration), stores a node snapshot in
shared data as the poller would, then drives the HTTP callbacks Envoy makes for each request:
context create, request headers, request body, response headers, response body, log, done,
delete. It counts, per request:

  * wasm instructions executed (wasmtime fuel: one unit per instruction, deterministic, so the
    numbers do not move with machine load the way timings on a shared box do);
  * host calls by name, and the bytes the host copied into the guest (each such copy is also a
    guest allocation through `proxy_on_memory_allocate`, counted separately).

  * boundary crossings: callbacks + host calls + host-made allocations. Each one enters or
    leaves V8 through its C API, which measured about 1 µs of Envoy CPU apiece on the bench
    machine — more than the instructions between them for round robin.

V8 in Envoy runs the same instructions with a different compiler, so absolute time is not
comparable; the counts are. The filter hands its counters to Envoy on the root context's tick,
which this profile does not drive: per request that is a few host calls per tick, shared by
every request of the tick. Run: `.venv/bin/python bench/profile_filter.py [--requests N]`;
`bench/run.py` includes the result in `target/bench/report.json` under "profile".
"""

import argparse
import base64
import collections
import json
import pathlib

from harness.envoy import wasm_path
from harness.proxy_wasm import ProxyWasmHost


def ring(nodes: list, tablets: int) -> dict:
    """Table `bench` (hash key `pk`, S) in `tablets` even tablets, three replicas each on
    consecutive nodes of the snapshot's order: the ring member the agent publishes."""
    ends, replicas = bytearray(), bytearray()
    step = (2**64 - 1) // tablets
    for i in range(tablets):
        last = 2**63 - 1 if i == tablets - 1 else -(2**63) + (i + 1) * step
        ends += last.to_bytes(8, "big", signed=True)
        replicas += bytes((i + r) % len(nodes) for r in range(3))
    table = {
        "table": "bench",
        "hash_key": "pk",
        "key_type": "S",
        "layout": "tablets",
        "width": 3,
        "index_bytes": 1,
        "end_tokens": base64.b64encode(ends).decode(),
        "replicas": base64.b64encode(replicas).decode(),
    }
    return {"version": 1, "tables": [table]}


def snapshot(nodes: int, port: int = 8000, tablets: int = 0) -> bytes:
    doc = {
        "format": 1,
        "version": 7,
        "generated_at_ms": 1763735000000,
        "scheme": "http",
        "port": port,
        "nodes": sorted(
            (
                {
                    "address": f"127.0.1.{i + 1}",
                    "datacenter": "dc1" if i < 3 else "dc2",
                    "rack": f"rack{i % 3 + 1}",
                    "health": "active",
                }
                for i in range(nodes)
            ),
            key=lambda n: n["address"] + ":" + str(port),
        ),
    }
    if tablets:
        doc["ring"] = ring(doc["nodes"], tablets)
    return json.dumps(doc).encode()


def request_headers(operation: str, body_len: int):
    return [
        (":authority", "127.0.0.1:10000"),
        (":path", "/"),
        (":method", "POST"),
        (":scheme", "http"),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", f"DynamoDB_20120810.{operation}"),
        ("user-agent", "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.1 lang/python#3.11.7"),
        ("x-amz-date", "20261121T150000Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=bench/20261121/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "5d" * 32,
        ),
        ("content-length", str(body_len)),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "0b7c5a0e-5b7e-4a59-9d0a-8a4f2f0c1d2e"),
    ]


def get_item_body(i: int) -> bytes:
    return json.dumps(
        {
            "TableName": "bench",
            "Key": {"pk": {"S": f"user-{i % 64:06d}"}},
            "ConsistentRead": False,
            "ReturnConsumedCapacity": "NONE",
        },
        separators=(",", ":"),
    ).encode()


def put_item_body(i: int, size: int = 1024) -> bytes:
    head = (
        '{"TableName":"bench","Item":{"pk":{"S":"user-%06d"},"visits":{"N":"%d"},'
        '"active":{"BOOL":true},"payload":{"S":"' % (i % 64, i)
    )
    tail = '"}},"ReturnValues":"NONE"}'
    return (head + chr(97 + i % 26) * max(0, size - len(head) - len(tail)) + tail).encode()


class Host(ProxyWasmHost):
    """The shared proxy-wasm host (`harness.proxy_wasm`) with fuel on, and Envoy's callbacks of
    one request timed callback by callback."""

    def __init__(self, wasm: pathlib.Path, plugin_config: dict):
        super().__init__(wasm, plugin_config, fuel=True)

    def start(self):
        if not super().start():
            raise SystemExit(f"the filter refused its plugin configuration: {self.logs[-3:]}")

    def request(self, ctx: int, operation: str, body: bytes, response: bytes):
        """One request through every callback Envoy makes; returns fuel per callback."""
        _, routed = self.request_callbacks(ctx, request_headers(operation, len(body)), body, response=response)
        return dict(self.spent), routed or "127.0.1.1:8000"


TOKEN_AWARE = {"token_aware": {"enabled": True}}

# (name, plugin configuration, nodes, operation, body, tablets of table `bench` in the ring)
SCENARIOS = [
    ("round_robin_3_nodes_getitem", {}, 3, "GetItem", get_item_body),
    ("round_robin_6_nodes_ring_getitem", {}, 6, "GetItem", get_item_body, 1024),
    ("token_aware_6_nodes_getitem", TOKEN_AWARE, 6, "GetItem", get_item_body, 1024),
    ("token_aware_6_nodes_putitem_1k", TOKEN_AWARE, 6, "PutItem", put_item_body, 1024),
    ("round_robin_100_nodes_getitem", {}, 100, "GetItem", get_item_body),
    ("no_affinity_putitem_1k", {}, 3, "PutItem", put_item_body),
    (
        "any_write_putitem_1k",
        {"affinity": {"mode": "any_write", "tables": {"bench": "pk"}}},
        3,
        "PutItem",
        put_item_body,
    ),
]


def profile(requests: int = 2000, wasm: pathlib.Path | None = None, noop: pathlib.Path | None = None) -> dict:
    """Every scenario on `wasm`; with `noop` (bench/noop-filter), also the SDK's floor."""
    wasm = wasm or wasm_path()
    out = {
        "wasm": wasm.name,
        "wasm_size_bytes": wasm.stat().st_size,
        "requests": requests,
        "method": "wasmtime fuel (wasm instructions) and host-call counts per request",
        "scenarios": {},
    }
    response = b'{"Item":{"pk":{"S":"user-000001"},"name":{"S":"user 1"},"visits":{"N":"1"}}}'
    scenarios = [(wasm, *scenario) for scenario in SCENARIOS]
    if noop is not None:
        scenarios.append((noop, "do_nothing_filter_getitem", {}, 3, "GetItem", get_item_body))
    for module, name, plugin_config, nodes, operation, body, *ring_tablets in scenarios:
        tablets = ring_tablets[0] if ring_tablets else 0
        host = Host(module, plugin_config)
        host.start()
        host.store_snapshot(snapshot(nodes, tablets=tablets), 7)
        # Warm-up: the first request parses the snapshot; the first requests to each node
        # define its metrics.
        first, routed = host.request(2, operation, body(0), response)
        for i in range(4 * nodes):
            host.request(100_000 + i, operation, body(i), response)
        host.calls.clear()
        host.copied_in = host.allocations = 0
        totals = collections.Counter()
        for i in range(requests):
            spent, routed = host.request(3 + i, operation, body(i + 1), response)
            totals.update(spent)
        # One more request, traced: instructions between consecutive host calls.
        host.trace = []
        host.request(99_999, operation, body(5), response)
        trace = segments(host.trace, host.fuel())
        out["scenarios"][name] = {
            "nodes": nodes,
            "ring_tablets": tablets,
            "operation": operation,
            "body_bytes": len(body(1)),
            "plugin_config": plugin_config,
            "routing_header_example": routed,
            "first_request_instructions": sum(first.values()),
            "instructions_per_request": sum(totals.values()) / requests,
            "instructions_by_callback": {k: v / requests for k, v in totals.items()},
            "host_calls_per_request": sum(host.calls.values()) / requests,
            "host_calls_by_name": {k: v / requests for k, v in sorted(host.calls.items())},
            "guest_allocations_by_host_per_request": host.allocations / requests,
            # Every callback, host call and host-made allocation is one crossing of the
            # V8/Envoy boundary, each costing about a microsecond of Envoy CPU on the bench
            # machine: the figure that predicts the filter's cost in Envoy best.
            "boundary_crossings_per_request": (len(totals) * requests + sum(host.calls.values()) + host.allocations)
            / requests,
            "bytes_copied_into_guest_per_request": host.copied_in / requests,
            "trace": trace,
        }
    return out


def segments(trace, end_fuel):
    """[(callback or host call, instructions the guest ran from there to the next event)]."""
    out = []
    for (name, fuel), nxt in zip(trace, [f for _, f in trace[1:]] + [end_fuel], strict=True):
        label = name.removeprefix("proxy_")
        out.append([label if name.startswith("proxy_on_") else "  -> " + label, fuel - nxt])
    return out


def format_profile(p: dict) -> str:
    lines = [
        f"filter per-request profile ({p['wasm']}, {p['requests']} requests per scenario, wasmtime):",
        f"  {'scenario':32} {'instr/req':>10} {'host calls':>10} {'copies':>7} {'bytes in':>9} {'crossings':>9}",
    ]
    for name, s in p["scenarios"].items():
        lines.append(
            f"  {name:32} {s['instructions_per_request']:10.0f} {s['host_calls_per_request']:10.1f} "
            f"{s['guest_allocations_by_host_per_request']:7.1f} {s['bytes_copied_into_guest_per_request']:9.0f} "
            f"{s.get('boundary_crossings_per_request', 0):9.1f}"
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--wasm", type=pathlib.Path)
    p.add_argument("--noop", type=pathlib.Path, help="bench/noop-filter's .wasm: adds the SDK's floor")
    p.add_argument("--json", action="store_true", help="print the full JSON instead of the table")
    args = p.parse_args()
    result = profile(args.requests, args.wasm, args.noop)
    print(json.dumps(result, indent=2) if args.json else format_profile(result))


if __name__ == "__main__":
    main()
