"""The agent's DNS listener through a real stub resolver (dnspython) over UDP and TCP,
and a stock boto3 client whose only knowledge of the cluster is the agent's DNS name.

boto3 resolves host names with the system resolver, which these machines do not point at the
agent; the test installs a resolver hook for the one zone name (`socket.getaddrinfo` answered by
dnspython asking the agent), as an application would get by pointing its resolver at the agent.
"""

import shutil
import socket
import subprocess

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from harness.util import eventually
from harness.workload import client

NODES = [("127.0.0.2", "dc1", "rack1"), ("127.0.0.3", "dc1", "rack1"), ("127.0.0.4", "dc1", "rack2")]
ZONE = "alternator.local."


def resolver(agent) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = agent.dns_port
    r.lifetime = 2.0
    return r


def addresses(agent, name: str = ZONE, tcp: bool = False) -> set:
    answer = resolver(agent).resolve(name, "A", tcp=tcp, raise_on_no_answer=False)
    return {r.address for r in answer}


@pytest.fixture
def cluster(stack):
    sim = stack.sim(NODES)
    agent = stack.agent(sim, datacenter="dc1", dns=True, extra_args=["--dns-max-records", "8"])
    agent.wait_active([n[0] for n in NODES])
    return sim, agent


def test_udp_and_tcp_answers_follow_the_node_list(cluster):
    sim, agent = cluster
    everyone = {n[0] for n in NODES}
    eventually(lambda: addresses(agent) == everyone, message="apex answers every node over UDP")
    assert addresses(agent, tcp=True) == everyone
    assert addresses(agent, "dc1." + ZONE) == everyone

    answer = resolver(agent).resolve(ZONE, "A")
    assert answer.rrset.ttl == 4
    assert answer.response.flags & dns.flags.AA

    sim.stop_node("127.0.0.3")
    eventually(lambda: addresses(agent) == everyone - {"127.0.0.3"}, message="a stopped node leaves the answers")


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (Debian package bind9-dnsutils)")
def test_dig_gets_the_answers_over_udp_and_tcp(cluster):
    _, agent = cluster
    everyone = {n[0] for n in NODES}
    eventually(lambda: addresses(agent) == everyone, message="apex answers every node")
    for transport in ("+notcp", "+tcp"):
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(agent.dns_port), transport, "+short", "+norecurse", ZONE, "A"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
        assert sorted(out) == sorted(everyone), (transport, out)


def test_other_names_are_refused_and_recursion_is_not_offered(cluster):
    _, agent = cluster
    for tcp in (False, True):
        query = dns.message.make_query("example.com.", dns.rdatatype.A)
        send = dns.query.tcp if tcp else dns.query.udp
        response = send(query, "127.0.0.1", port=agent.dns_port, timeout=2)
        assert response.rcode() == dns.rcode.REFUSED
        assert not response.flags & dns.flags.RA
    query = dns.message.make_query(ZONE, dns.rdatatype.ANY)
    assert dns.query.udp(query, "127.0.0.1", port=agent.dns_port, timeout=2).rcode() == dns.rcode.REFUSED


def test_boto3_reaches_alternator_through_the_agents_name(cluster, monkeypatch):
    sim, agent = cluster
    host = ZONE.rstrip(".")
    system_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(name, port, family=0, type=0, proto=0, flags=0):
        if name != host:
            return system_getaddrinfo(name, port, family, type, proto, flags)
        # Like a resolver pointed at the agent: ask it every time (no cache), use its order.
        found = resolver(agent).resolve(host, "A")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (r.address, int(port))) for r in found]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    endpoint = f"http://{host}:{sim.port}"
    setup = client(endpoint, max_pool_connections=1)
    setup.create_table(
        TableName="dns",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sim.reset()
    # A new client per request: a new connection, so a new lookup, as many short-lived
    # application processes would do. One connection stays on its node (DNS balances per
    # connection, not per request).
    for i in range(30):
        c = client(endpoint, max_pool_connections=1)
        c.put_item(TableName="dns", Item={"k": {"S": f"item-{i}"}})
    served = sim.totals()
    assert sum(served.values()) == 30, served
    assert len([a for a, n in served.items() if n > 0]) >= 2, served
    got = client(endpoint, max_pool_connections=1).get_item(TableName="dns", Key={"k": {"S": "item-7"}})
    assert got["Item"]["k"]["S"] == "item-7"
