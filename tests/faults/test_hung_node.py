"""A hung node: accepts connections, never answers (the sim's `hang`).

What the shipped envoy.yaml and the filter promise: a read the hung node holds is hedged to the
next node of the routing header (Envoy's `hedge_on_per_try_timeout` with `override_host`); two
timeouts in a row take the node out of the filter's plans, one late answer does not; under the
lab workload no read fails, the only failed writes are those the hung node held, and Envoy holds
no request longer than its operation class's timeout.

The agent looks at the cluster once, at its start (its cadence is a day), so what moves traffic
is Envoy and the filter's own passive health (each test checks the agent did not notice). Speed
is not asserted here: the class timeout is the bound the configuration enforces, checked with a
margin for a loaded machine; `bench/hung_node.py` reports the latencies.
"""

import collections

import pytest

from harness import lab, workload
from harness.stack import RawDynamo, create_table, metric, settle, wait_metric
from harness.util import eventually

TABLE = "hung"
SLOW_AGENT = {"active_interval": "24h", "idle_interval": "24h", "probe_period": "24h"}
OTHER = "127.0.0.2"  # the second node hung in the hedging test
# Envoy's timers fire on a busy event loop, later still on a loaded shared machine: a request
# the configuration bounds at T is answered within T plus this. It stays well below the lab
# SDK's 10 s read timeout (harness.workload), so a request that Envoy did not time out (held
# until the client gave up, or for as long as the node hangs) still fails the check.
MARGIN_S = 4.0


def start(stack, plugin=None):
    sim, agent, envoy = lab.start(stack, plugin=plugin, agent_kwargs=SLOW_AGENT, concurrency=1)
    create_table(envoy.url, TABLE)
    return sim, agent, envoy


def endpoint(sim, address):
    return f"{address}:{sim.port}"


def logged(envoy, operation, count):
    """Envoy's access-log entries of `operation`, once at least `count` are written."""

    def entries():
        found = [a for a in lab.access_entries(envoy.access_log()) if a.operation == operation]
        return found if len(found) >= count else None

    return eventually(entries, timeout=30, message=f"{count} {operation} lines in the access log")


def requests_to(envoy, address) -> int:
    """Requests Envoy sent to one member of the alternator cluster (its `rq_total`)."""
    for line in envoy.admin_get("/clusters").splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "alternator" and parts[1] == address and parts[2] == "rq_total":
            return int(parts[3])
    raise AssertionError(f"{address} is not a member of the alternator cluster")


def calls(envoy, operation, count, start=0):
    client = RawDynamo(envoy.url)
    try:
        statuses = collections.Counter()
        for i in range(start, start + count):
            key = {"pk": {"S": f"k{i % 6}"}}
            body = {"TableName": TABLE, "Key": key} if operation == "GetItem" else {"TableName": TABLE, "Item": key}
            statuses[client.call(operation, body)[0]] += 1
        return statuses
    finally:
        client.close()


def test_a_read_the_hung_node_holds_is_hedged_to_the_next_listed_node(stack):
    # Passive health off: every request that lists the hung node first must be hedged, not
    # only those before the filter takes it out.
    sim, agent, envoy = start(stack, {"fallbacks": 2, "passive_health": {"enabled": False}})
    version = agent.snapshot()["version"]
    assert calls(envoy, "PutItem", 6) == {200: 6}
    hung, other = endpoint(sim, lab.VICTIM), endpoint(sim, OTHER)
    sim.hang_node(lab.VICTIM)
    before = requests_to(envoy, hung)
    assert calls(envoy, "GetItem", 12) == {200: 12}

    one_hung = logged(envoy, "GetItem", 12)
    first_hung = [a for a in one_hung if a.candidates[0] == hung]
    assert len(first_hung) == 4, one_hung  # round robin over three nodes
    for a in first_hung:
        # The hedged attempt went to the next entry of the header, which answered.
        assert (a.upstream, a.attempts) == (a.candidates[1], 2), a
    assert all(a.upstream != hung for a in one_hung), one_hung
    # The hung node got the first attempt of those four requests and nothing else: no
    # hedge or retry went back to it.
    assert requests_to(envoy, hung) - before == len(first_hung)

    # With the next entry hung too, the second hedge goes to the third entry.
    sim.hang_node(OTHER)
    assert calls(envoy, "GetItem", 12) == {200: 12}
    two_hung = logged(envoy, "GetItem", 24)[12:]
    both_first = [a for a in two_hung if a.candidates[:2] in ([hung, other], [other, hung])]
    assert both_first, two_hung
    for a in two_hung:
        position = 2 if a in both_first else (1 if a.candidates[0] in (hung, other) else 0)
        assert (a.upstream, a.attempts) == (a.candidates[position], position + 1), a
    assert agent.snapshot()["version"] == version, "the agent noticed; the test proves nothing"


@pytest.mark.parametrize("operation", ["GetItem", "PutItem"])
def test_two_timeouts_in_a_row_take_a_hung_node_out_of_the_plans(stack, operation):
    sim, agent, envoy = start(stack)
    version = agent.snapshot()["version"]
    assert calls(envoy, "PutItem", 6) == {200: 6}
    hung = endpoint(sim, lab.VICTIM)
    sim.hang_node(lab.VICTIM)
    statuses = calls(envoy, operation, 30)

    entries = logged(envoy, operation, 36 if operation == "PutItem" else 30)[-30:]
    listed_first = [i for i, a in enumerate(entries) if a.candidates[0] == hung]
    # Without the timeout weight, ten of them (a third of the requests) would have been needed.
    assert len(listed_first) == 2, entries
    for a in (entries[i] for i in listed_first):
        if operation == "GetItem":
            assert (a.status, a.upstream) == (200, a.candidates[1]), a
        else:
            # A write held past its timeout is answered 504 (never replayed: it may have
            # been applied).
            assert (a.status, a.upstream) == (504, hung) and "UT" in a.flags, a
    assert statuses == ({200: 30} if operation == "GetItem" else {200: 28, 504: 2})
    # After the second, the node is no candidate at all (DOWN nodes are left out).
    assert all(hung not in a.candidates for a in entries[listed_first[1] + 1 :]), entries
    wait_metric(envoy, "alternator_node_health_changes_total", 1, outcome="down")
    assert agent.snapshot()["version"] == version, "the agent noticed; the test proves nothing"


def test_one_late_answer_takes_no_node_out(stack):
    sim, agent, envoy = start(stack)
    assert calls(envoy, "PutItem", 6) == {200: 6}
    slow = endpoint(sim, lab.VICTIM)
    # Slower than the GetItem hedge delay (0.25 s): the read is hedged and counts as a timeout.
    sim.slow_node(lab.VICTIM, 600)
    assert calls(envoy, "GetItem", 3) == {200: 3}  # round robin: one lists the slow node first
    late = [a for a in logged(envoy, "GetItem", 3) if a.candidates[0] == slow]
    assert len(late) == 1 and late[0].upstream != slow, late
    sim.slow_node(lab.VICTIM, 0)
    n = 3

    assert calls(envoy, "GetItem", 30, start=n) == {200: 30}
    after = logged(envoy, "GetItem", n + 30)[n:]
    assert sum(a.upstream == slow for a in after) == 10, after  # its round-robin share
    settle(envoy)
    assert metric(envoy, "alternator_node_health_changes_total", outcome="down") == 0


@pytest.mark.parametrize("phase", ["writes", "reads"])
def test_the_lab_workload_with_a_hung_node_fails_no_read_and_only_writes_the_node_held(stack, phase):
    # A cooldown longer than the test: one hang, one verdict (a DOWN node comes back on
    # probation after the cooldown, and a node still hung then costs another round).
    plugin = {"fallbacks": 2, "passive_health": {"cooldown_ms": 600_000}}
    run = lab.run(stack, phase, shape=workload.Shape(), plugin=plugin, agent_kwargs=SLOW_AGENT)

    assert run.failed(lab.READS) == 0, run.recorder.error_samples
    kinds = run.recorder.errors("kind")
    assert set(kinds) <= {"ServiceUnavailableException"}, (kinds, run.recorder.error_samples)
    failed_writes = run.failed(lab.WRITES)
    held = run.held_by_victim(lab.WRITES)
    # Every failed write is one the hung node held until its timeout, and no other request
    # failed anywhere.
    assert failed_writes == len(held), (failed_writes, held)
    assert all(a.status == 504 for a in held), held
    assert not [a for a in run.access if a.status != 200 and a not in held], "other failures"
    # Each thread is caught by the hung node about once: the verdict follows the first
    # timeouts. (Without it, every third write would go on failing until the agent noticed.)
    assert failed_writes <= run.threads + 2, (failed_writes, run.threads)
    if phase == "reads":
        assert run.hedged_from_victim(), "no read was hedged: the node was not hung"
    else:
        assert failed_writes > 0, "no write was held: the node was not hung"
    # Envoy answered every request within its class's timeout (single-item operations only).
    assert run.longest_ms(lab.READS + lab.WRITES) / 1000 <= run.item_timeout_s + MARGIN_S
