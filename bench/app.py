#!/usr/bin/env python3
"""Application-level workload for `make bench`: one fixed batch of DynamoDB requests from N threads.

Shaped like the demo's workload (harness/workload.py): a quarter of the requests write items,
the rest read them at random, a tenth of the reads being conditional UpdateItems. Unlike the
demo it sends a fixed number of requests and prints one `BENCH-JSON {...}` line
(requests, seconds, rps, p50/p99 in ms, errors) for bench/run.py.

Two clients, the same workload:
  --endpoint URL                       plain boto3 against one endpoint (Envoy + filter)
  --alternator-seeds A,B --alternator-port P [--datacenter DC]
                                       ScyllaDB's `alternator-client` (PyPI), balancing itself
Both sign requests (SigV4) with the same static dummy credentials.
"""

import argparse
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from harness.latency import percentile

ACCESS_KEY, SECRET_KEY = "bench", "bench-secret"


def boto3_client(endpoint: str, threads: int):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=BotoConfig(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=10,
            max_pool_connections=threads,
        ),
    )


def alternator_client(seeds, port: int, datacenter: str | None, threads: int):
    from alternator import AlternatorClient, Auth, Config, DatacenterScope

    kwargs = {"seed_hosts": seeds, "port": port, "max_pool_connections": threads}
    if datacenter:
        kwargs["routing_scope"] = DatacenterScope(datacenter)
    return AlternatorClient(Config(**kwargs), auth=Auth(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY))


def workload(dynamodb, table: str, requests: int, threads: int) -> dict:
    prefix = f"run{os.getpid()}-"
    writes = max(1, requests // 4)
    reads = requests - writes
    latencies = []
    errors = {}
    lock = threading.Lock()

    def timed(call):
        started = time.perf_counter()
        try:
            call()
            elapsed = (time.perf_counter() - started) * 1000.0
            with lock:
                latencies.append(elapsed)
        except (BotoCoreError, ClientError) as error:
            name = type(error).__name__
            if isinstance(error, ClientError):
                name = error.response.get("Error", {}).get("Code", name)
            with lock:
                errors[name] = errors.get(name, 0) + 1

    def put(i):
        timed(
            lambda: dynamodb.put_item(
                TableName=table,
                Item={"pk": {"S": f"{prefix}{i:06d}"}, "payload": {"S": f"value {i}"}, "n": {"N": str(i)}},
            )
        )

    def read(i):
        rng = random.Random(i)
        key = {"pk": {"S": f"{prefix}{rng.randrange(writes):06d}"}}
        if rng.random() < 0.1:
            timed(
                lambda: dynamodb.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET visits = if_not_exists(visits, :zero) + :one",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
                )
            )
        else:
            timed(lambda: dynamodb.get_item(TableName=table, Key=key))

    # One request per thread first: connection set-up and endpoint discovery are not measured.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda _: dynamodb.list_tables(Limit=1), range(threads)))
        started = time.perf_counter()
        list(pool.map(put, range(writes)))
        list(pool.map(read, range(reads)))
        seconds = time.perf_counter() - started
    latencies.sort()
    done = len(latencies) + sum(errors.values())
    return {
        "requests": done,
        "seconds": seconds,
        "rps": done / seconds,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default="app")
    p.add_argument("--requests", type=int, default=3200)
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--endpoint")
    p.add_argument("--alternator-seeds")
    p.add_argument("--alternator-port", type=int)
    p.add_argument("--datacenter")
    args = p.parse_args()
    if args.endpoint:
        result = workload(boto3_client(args.endpoint, args.threads), args.table, args.requests, args.threads)
        result["client"] = "boto3"
    elif args.alternator_seeds and args.alternator_port:
        with alternator_client(
            args.alternator_seeds.split(","), args.alternator_port, args.datacenter, args.threads
        ) as dynamodb:
            result = workload(dynamodb, args.table, args.requests, args.threads)
        result["client"] = "alternator-client"
    else:
        p.error("give --endpoint, or --alternator-seeds and --alternator-port")
    print("BENCH-JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
