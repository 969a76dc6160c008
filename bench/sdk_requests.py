"""The DynamoDB requests every load generator of `make bench` sends, as an SDK sends them.

One definition for both tools: `run.py` writes them to a file that `workload.lua` (wrk, the
saturated phase) reads, and hands the same headers and bodies to h2load (the paced phase).

Headers are boto3's, with a syntactically valid (not verified) SigV4 signature, so the proxies
under test handle headers of realistic size. Bodies: GetItem of one of the pre-written keys, or
PutItem of an item whose JSON body is exactly `size` bytes.
"""

import pathlib

USER_AGENT = (
    "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.1 md/arch#x86_64 "
    "lang/python#3.11.7 cfg/retry-mode#standard Botocore/1.35.0"
)
AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=bench/20261121/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
    "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
)


def headers(operation: str) -> dict:
    """The request headers of `DynamoDB_20120810.<operation>` (Host and Content-Length are the
    load generator's)."""
    return {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"DynamoDB_20120810.{operation}",
        "User-Agent": USER_AGENT,
        "X-Amz-Date": "20261121T150000Z",
        "Authorization": AUTHORIZATION,
    }


def key(i: int) -> str:
    return f"user-{i:06d}"


def body(operation: str, i: int, size: int) -> str:
    """The JSON body of request number `i`: GetItem of key i, or a PutItem of `size` bytes."""
    if operation == "GetItem":
        return (
            '{"TableName":"bench","Key":{"pk":{"S":"%s"}},"ConsistentRead":false,'
            '"ReturnConsumedCapacity":"NONE"}' % key(i)
        )
    if operation != "PutItem":
        raise ValueError(f"no request body for {operation}")
    head = (
        '{"TableName":"bench","Item":{"pk":{"S":"%s"},"visits":{"N":"%d"},"active":{"BOOL":true},'
        '"payload":{"S":"' % (key(i), i)
    )
    tail = '"}},"ReturnValues":"NONE"}'
    return head + chr(97 + i % 26) * max(0, size - len(head) - len(tail)) + tail


def write_request_file(path: pathlib.Path, operation: str, keys: int, size: int) -> pathlib.Path:
    """`Name: value` header lines, an empty line, then one body per line (what workload.lua reads)."""
    lines = [f"{name}: {value}" for name, value in headers(operation).items()]
    lines.append("")
    lines.extend(body(operation, i, size) for i in range(keys))
    path.write_text("\n".join(lines) + "\n")
    return path
