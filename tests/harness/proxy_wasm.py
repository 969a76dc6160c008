"""A proxy-wasm ABI 0.2.1 host on wasmtime: runs the filter's compiled .wasm outside Envoy.

Envoy's side of the ABI, as far as the filter uses it: plugin configuration, header maps,
buffered bodies, properties, shared data with compare-and-swap tokens, metrics, local replies,
ticks and HTTP calls with their answers. The tests in `tests/wasm/` script it (expect this host
call, answer that, check what the filter did), and `bench/profile_filter.py` counts the
instructions and host calls of each request with it (wasmtime fuel: one unit per instruction).
"""

import collections
import json
import pathlib
import struct
import time

import wasmtime

OK, NOT_FOUND, BAD_ARGUMENT, CAS_MISMATCH, UNIMPLEMENTED = 0, 1, 2, 8, 12
# Map types.
REQUEST_HEADERS, RESPONSE_HEADERS, HTTP_CALL_RESPONSE_HEADERS = 0, 2, 6
# Buffer types.
REQUEST_BODY, RESPONSE_BODY, HTTP_CALL_RESPONSE_BODY, VM_CONFIGURATION, PLUGIN_CONFIGURATION = 0, 1, 4, 6, 7
# Filter return values.
CONTINUE, PAUSE = 0, 1
ROOT_ID = 1
LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "critical"]

# The filter's shared-data keys (engine/src/shared.rs).
SNAPSHOT_KEY = "alternator-mesh.snapshot"
SNAPSHOT_VERSION_KEY = "alternator-mesh.snapshot-version"

EXPORTS = (
    "_initialize",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_http_call_response",
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_log",
    "proxy_on_done",
    "proxy_on_delete",
)


def decode_pairs(data: bytes) -> list[tuple[str, str]]:
    """The ABI's serialized header map: count, (key size, value size)*, then NUL-ended bytes."""
    (count,) = struct.unpack_from("<I", data, 0)
    sizes = [struct.unpack_from("<II", data, 4 + 8 * i) for i in range(count)]
    pos, pairs = 4 + 8 * count, []
    for ksize, vsize in sizes:
        key = data[pos : pos + ksize].decode()
        pos += ksize + 1
        value = data[pos : pos + vsize].decode()
        pos += vsize + 1
        pairs.append((key, value))
    return pairs


def encode_pairs(pairs) -> bytes:
    encoded = [(k.encode(), v.encode()) for k, v in pairs]
    data = struct.pack("<I", len(encoded))
    data += b"".join(struct.pack("<II", len(k), len(v)) for k, v in encoded)
    return data + b"".join(k + b"\0" + v + b"\0" for k, v in encoded)


class ProxyWasmHost:
    """Envoy's side of proxy-wasm for one worker VM running the filter."""

    def __init__(self, wasm: pathlib.Path, plugin_config: dict | bytes, fuel: bool = False):
        config = wasmtime.Config()
        config.consume_fuel = fuel
        self.fueled = fuel
        self.spent = {}
        self.engine = wasmtime.Engine(config)
        self.store = wasmtime.Store(self.engine)
        self.store.set_wasi(wasmtime.WasiConfig())
        if fuel:
            self.store.set_fuel(10**15)
        module = wasmtime.Module.from_file(self.engine, str(wasm))
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        self.calls = collections.Counter()
        self.copied_in = 0
        self.allocations = 0
        self.shared = {}  # key -> (value, cas)
        self.metrics = {}  # name -> id
        self.metric_kinds = {}  # id -> 0 counter, 1 gauge
        self.metric_values = collections.Counter()  # name -> value
        self.plugin_config = plugin_config if isinstance(plugin_config, bytes) else json.dumps(plugin_config).encode()
        self.maps = {REQUEST_HEADERS: [], RESPONSE_HEADERS: [], HTTP_CALL_RESPONSE_HEADERS: []}
        self.buffers = {}
        self.properties = {}
        self.local_reply = None
        self.logs = []  # (level name, message)
        self.http_calls = []  # {"cluster", "headers", "timeout_ms", "token"}
        self.tick_period_ms = None
        self.now_ns = None  # None: the real clock
        self.trace = None
        for imp in module.imports:
            if imp.module != "env":
                continue
            impl = getattr(self, "h_" + imp.name, None)
            linker.define_func("env", imp.name, imp.type, self._wrap(imp.name, impl, imp.type), access_caller=True)
        self.instance = linker.instantiate(self.store, module)
        ex = self.instance.exports(self.store)
        self.memory = ex["memory"]
        self.fn = {name: ex[name] for name in EXPORTS if name in ex}

    def _wrap(self, name, impl, ty):
        results = len(ty.results)

        def call(caller, *args):
            self.calls[name] += 1
            if self.trace is not None:
                self.trace.append((name, self.fuel()))
            if impl is None:
                return UNIMPLEMENTED if results else None
            return impl(caller, *args)

        return call

    # --- guest memory ---

    def read(self, caller, ptr, size) -> bytes:
        return bytes(self.memory.read(caller, ptr, ptr + size))

    def give(self, caller, data: bytes, ret_ptr_ptr, ret_size_ptr):
        """Copy `data` into a guest allocation, as Envoy does for every value it returns."""
        self.allocations += 1
        self.copied_in += len(data)
        ptr = self.fn["proxy_on_memory_allocate"](caller, len(data)) if data else 0
        if data:
            self.memory.write(caller, data, ptr)
        self.memory.write(caller, struct.pack("<I", ptr), ret_ptr_ptr)
        self.memory.write(caller, struct.pack("<I", len(data)), ret_size_ptr)

    # --- host functions (proxy-wasm ABI 0.2.1) ---

    def h_proxy_log(self, caller, level, ptr, size):
        name = LOG_LEVELS[level] if 0 <= level < len(LOG_LEVELS) else str(level)
        self.logs.append((name, self.read(caller, ptr, size).decode(errors="replace")))
        del self.logs[:-200]
        return OK

    def h_proxy_get_log_level(self, caller, ret):
        self.memory.write(caller, struct.pack("<I", 2), ret)  # info
        return OK

    def h_proxy_get_current_time_nanoseconds(self, caller, ret):
        now = self.now_ns if self.now_ns is not None else time.time_ns()
        self.memory.write(caller, struct.pack("<Q", now), ret)
        return OK

    def h_proxy_set_tick_period_milliseconds(self, caller, period):
        self.tick_period_ms = period
        return OK

    def h_proxy_set_effective_context(self, caller, ctx):
        return OK

    def h_proxy_done(self, caller):
        return OK

    def h_proxy_get_buffer_bytes(self, caller, kind, start, max_size, ret_ptr, ret_size):
        if kind == PLUGIN_CONFIGURATION:
            data = self.plugin_config
        elif kind == VM_CONFIGURATION:
            data = b""
        elif kind in self.buffers:
            data = self.buffers[kind]
        else:
            return NOT_FOUND
        start, max_size = start & 0xFFFFFFFF, max_size & 0xFFFFFFFF  # u32 in the ABI
        self.give(caller, data[start : start + max_size], ret_ptr, ret_size)
        return OK

    def h_proxy_get_header_map_value(self, caller, kind, kptr, ksize, ret_ptr, ret_size):
        key = self.read(caller, kptr, ksize).decode().lower()
        for k, v in self.maps.get(kind, []):
            if k == key:
                self.give(caller, v.encode(), ret_ptr, ret_size)
                return OK
        return NOT_FOUND

    def h_proxy_get_header_map_pairs(self, caller, kind, ret_ptr, ret_size):
        self.give(caller, encode_pairs(self.maps.get(kind, [])), ret_ptr, ret_size)
        return OK

    def h_proxy_replace_header_map_value(self, caller, kind, kptr, ksize, vptr, vsize):
        key = self.read(caller, kptr, ksize).decode().lower()
        value = self.read(caller, vptr, vsize).decode()
        m = [(k, v) for k, v in self.maps.setdefault(kind, []) if k != key]
        m.append((key, value))
        self.maps[kind] = m
        return OK

    h_proxy_add_header_map_value = h_proxy_replace_header_map_value

    def h_proxy_remove_header_map_value(self, caller, kind, kptr, ksize):
        key = self.read(caller, kptr, ksize).decode().lower()
        self.maps[kind] = [(k, v) for k, v in self.maps.get(kind, []) if k != key]
        return OK

    def h_proxy_get_shared_data(self, caller, kptr, ksize, ret_ptr, ret_size, ret_cas):
        key = self.read(caller, kptr, ksize).decode()
        if key not in self.shared:
            return NOT_FOUND
        value, cas = self.shared[key]
        self.give(caller, value, ret_ptr, ret_size)
        self.memory.write(caller, struct.pack("<I", cas), ret_cas)
        return OK

    def h_proxy_set_shared_data(self, caller, kptr, ksize, vptr, vsize, cas):
        key = self.read(caller, kptr, ksize).decode()
        current = self.shared.get(key, (None, 0))[1]
        if cas and cas != current:
            return CAS_MISMATCH
        self.shared[key] = (self.read(caller, vptr, vsize), current + 1)
        return OK

    def h_proxy_get_property(self, caller, pptr, psize, ret_ptr, ret_size):
        path = tuple(p.decode() for p in self.read(caller, pptr, psize).split(b"\0") if p)
        if path not in self.properties:
            return NOT_FOUND
        self.give(caller, self.properties[path], ret_ptr, ret_size)
        return OK

    def h_proxy_define_metric(self, caller, kind, nptr, nsize, ret):
        name = self.read(caller, nptr, nsize).decode()
        mid = self.metrics.setdefault(name, len(self.metrics) + 1)
        self.metric_kinds[mid] = kind
        self.memory.write(caller, struct.pack("<I", mid), ret)
        return OK

    def _metric_name(self, mid):
        return next((n for n, i in self.metrics.items() if i == mid), None)

    def h_proxy_increment_metric(self, caller, mid, offset):
        name = self._metric_name(mid)
        if name is None:
            return NOT_FOUND
        self.metric_values[name] += offset
        return OK

    def h_proxy_record_metric(self, caller, mid, value):
        name = self._metric_name(mid)
        if name is None:
            return NOT_FOUND
        self.metric_values[name] = value
        return OK

    def h_proxy_send_local_response(self, caller, status, *rest):
        self.local_reply = status
        return OK

    def h_proxy_http_call(self, caller, uptr, usize, hptr, hsize, bptr, bsize, tptr, tsize, timeout, ret):
        token = len(self.http_calls) + 1
        self.http_calls.append(
            {
                "cluster": self.read(caller, uptr, usize).decode(),
                "headers": dict(decode_pairs(self.read(caller, hptr, hsize))),
                "timeout_ms": timeout,
                "token": token,
            }
        )
        self.memory.write(caller, struct.pack("<I", token), ret)
        return OK

    # --- driving the filter ---

    def fuel(self) -> int:
        return self.store.get_fuel()

    def start(self) -> bool:
        """Root context creation, VM start and plugin configuration; whether it was accepted."""
        self.fn["_initialize"](self.store)
        self.fn["proxy_on_context_create"](self.store, ROOT_ID, 0)
        self.fn["proxy_on_vm_start"](self.store, ROOT_ID, 0)
        return bool(self.fn["proxy_on_configure"](self.store, ROOT_ID, len(self.plugin_config)))

    def tick(self):
        self.fn["proxy_on_tick"](self.store, ROOT_ID)

    def answer_http_call(self, token: int, status: int, body: bytes = b"", headers=()):
        """Delivers the answer to the call `token`, as Envoy does on the root context."""
        self.maps[HTTP_CALL_RESPONSE_HEADERS] = [(":status", str(status)), *headers]
        self.buffers[HTTP_CALL_RESPONSE_BODY] = body
        self.fn["proxy_on_http_call_response"](
            self.store, ROOT_ID, token, len(self.maps[HTTP_CALL_RESPONSE_HEADERS]), len(body), 0
        )

    def store_snapshot(self, document: bytes, version: int):
        """What the poller would have stored: the snapshot and its version key."""
        self.shared[SNAPSHOT_KEY] = (document, version)
        self.shared[SNAPSHOT_VERSION_KEY] = (f"{version}@1763735000000".encode(), version)

    def header(self, kind: int, name: str) -> str | None:
        return dict(self.maps.get(kind, [])).get(name)

    def request_callbacks(self, ctx: int, headers, body: bytes, upstream=None, response=b"{}", status=200, flags=0):
        """One stream through every callback Envoy makes; returns what each callback returned
        and the routing header written. With fuel on, `self.spent` holds the instructions each
        callback ran.

        `upstream`: the `ip:port` Envoy picked (default: the filter's first candidate).
        """
        self.local_reply = None
        self.maps[REQUEST_HEADERS] = list(headers)
        self.maps[RESPONSE_HEADERS] = [
            (":status", str(status)),
            ("content-type", "application/x-amz-json-1.0"),
            ("content-length", str(len(response))),
        ]
        self.buffers = {REQUEST_BODY: body, RESPONSE_BODY: response}
        returned = {}
        self.spent = {}

        def step(name, *args):
            before = self.fuel() if self.fueled else 0
            if self.trace is not None:
                self.trace.append((name, before))
            returned[name] = self.fn[name](self.store, *args)
            if self.fueled:
                self.spent[name] = before - self.fuel()

        step("proxy_on_context_create", ctx, ROOT_ID)
        step("proxy_on_request_headers", ctx, len(self.maps[REQUEST_HEADERS]), 0 if body else 1)
        if self.local_reply is None and body:
            step("proxy_on_request_body", ctx, len(body), 1)
        routed = self.header(REQUEST_HEADERS, "x-alternator-endpoints")
        if upstream is None:
            upstream = (routed or "127.0.1.1:8000").split(",")[0]
        self.properties[("upstream", "address")] = upstream.encode()
        # Envoy encodes integer properties as 8 little-endian bytes.
        self.properties[("response", "code")] = struct.pack("<Q", status)
        self.properties[("response", "flags")] = struct.pack("<Q", flags)
        self.properties[("upstream", "request_attempt_count")] = struct.pack("<Q", 1)
        if self.local_reply is None:
            step("proxy_on_response_headers", ctx, len(self.maps[RESPONSE_HEADERS]), 0)
            step("proxy_on_response_body", ctx, len(response), 1)
        step("proxy_on_log", ctx)
        step("proxy_on_done", ctx)
        step("proxy_on_delete", ctx)
        return returned, routed
