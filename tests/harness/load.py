"""A mixed DynamoDB read/write load over several keep-alive connections, for fault tests.

Every request is sent once (no client retries): what the test sees is what Envoy and the filter
delivered. Writes are unconditional `PutItem`s of fresh keys; reads are `GetItem`s of keys
written earlier. Each outcome is recorded, so a test can prove that every acknowledged write is
readable afterwards.
"""

import http.client
import json
import threading

from .stack import TARGET_PREFIX


class Outcome:
    def __init__(self, operation: str, key: str, status: int | None, error: str | None, body):
        self.operation = operation
        self.key = key
        self.status = status
        self.error = error
        self.body = body

    @property
    def ok(self) -> bool:
        return self.status == 200

    def __repr__(self):
        return f"{self.operation}({self.key}) -> {self.status or self.error}: {str(self.body)[:200]}"


def _call(conn_holder, host, port, operation, body, extra_headers=None):
    payload = json.dumps(body).encode()
    headers = {"x-amz-target": TARGET_PREFIX + operation, "content-type": "application/x-amz-json-1.0"}
    headers.update(extra_headers or {})
    try:
        if conn_holder[0] is None:
            conn_holder[0] = http.client.HTTPConnection(host, port, timeout=60)
        conn = conn_holder[0]
        conn.request("POST", "/", body=payload, headers=headers)
        r = conn.getresponse()
        data = r.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors="replace")
        return r.status, None, parsed
    except (OSError, http.client.HTTPException) as e:
        # The connection to Envoy itself failed: a client-visible failure too. Reconnect.
        if conn_holder[0] is not None:
            conn_holder[0].close()
        conn_holder[0] = None
        return None, repr(e), None


class MixedLoad:
    """`total` requests (half writes, half reads) over `workers` threads against `url`."""

    def __init__(self, url: str, table: str, total: int, workers: int = 4, prefix: str = "k", write_headers=None):
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.table = table
        self.total = total
        self.workers = workers
        self.prefix = prefix
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._sent = 0
        self._threads = []
        # e.g. {"x-alternator-idempotent": "true"}: the writes are unconditional puts of fresh
        # keys, so the test may declare them safe to retry.
        self.write_headers = write_headers or {}

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def _next(self):
        with self._lock:
            if self._sent >= self.total:
                return None
            self._sent += 1
            return self._sent

    def _worker(self, wid: int):
        conn = [None]
        written = []
        try:
            while (n := self._next()) is not None:
                if n % 2 == 0 or not written:
                    key = f"{self.prefix}-{wid}-{n}"
                    status, err, body = _call(
                        conn,
                        self.host,
                        self.port,
                        "PutItem",
                        {"TableName": self.table, "Item": {"pk": {"S": key}, "n": {"N": str(n)}}},
                        self.write_headers,
                    )
                    outcome = Outcome("PutItem", key, status, err, body)
                    if outcome.ok:
                        written.append(key)
                else:
                    key = written[n % len(written)]
                    status, err, body = _call(
                        conn,
                        self.host,
                        self.port,
                        "GetItem",
                        {"TableName": self.table, "Key": {"pk": {"S": key}}, "ConsistentRead": True},
                    )
                    outcome = Outcome("GetItem", key, status, err, body)
                    if outcome.ok and not (isinstance(body, dict) and "Item" in body):
                        outcome.error = "acknowledged write not found"
                        outcome.status = None
                with self._lock:
                    self.outcomes.append(outcome)
        finally:
            if conn[0] is not None:
                conn[0].close()

    def start(self):
        for wid in range(self.workers):
            t = threading.Thread(target=self._worker, args=(wid,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def join(self, timeout: float = 600.0):
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), "load generator stuck"
        return self

    def failures(self) -> list:
        return [o for o in self.outcomes if not o.ok]

    def acknowledged_writes(self) -> list:
        return [o.key for o in self.outcomes if o.operation == "PutItem" and o.ok]


def unreadable(url: str, table: str, keys) -> list:
    """The keys whose item a consistent GetItem does not return."""
    host, port = url.removeprefix("http://").split(":")
    conn = [None]
    missing = []
    try:
        for key in keys:
            status, err, body = _call(
                conn,
                host,
                int(port),
                "GetItem",
                {"TableName": table, "Key": {"pk": {"S": key}}, "ConsistentRead": True},
            )
            if status != 200 or not (isinstance(body, dict) and "Item" in body):
                missing.append((key, status or err, body))
    finally:
        if conn[0] is not None:
            conn[0].close()
    return missing
