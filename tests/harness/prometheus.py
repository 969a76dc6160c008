"""Prometheus text exposition, as Envoy's `/stats/prometheus` and the agent's `/metrics` serve it.

Parsed by `prometheus_client`'s text parser. Samples keep the names the endpoint exposes, which
are the names the tests, the demo and the Grafana dashboard use: with a `# TYPE ... counter`
line the parser would rename a counter's samples to OpenMetrics' `<name>_total`, and Envoy's
own counters (`envoy_cluster_upstream_rq_retry`) do not end in `_total`. So the TYPE lines are
left out and every sample is read as untyped, under its own name.
"""

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def parse(text: str) -> list[Sample]:
    """Every sample (`name`, `labels`, `value`) of a Prometheus text exposition, in order."""
    untyped = "\n".join(line for line in text.splitlines() if not line.startswith("# TYPE "))
    return [sample for family in text_string_to_metric_families(untyped) for sample in family.samples]


def total(samples: list[Sample], name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    wanted = {k: str(v) for k, v in labels.items()}
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items()))


def series(samples: list[Sample]) -> dict[str, list[dict]]:
    """`{name: [labels, ...]}`: which series exist, with which labels."""
    out: dict[str, list[dict]] = {}
    for s in samples:
        out.setdefault(s.name, []).append(s.labels)
    return out
