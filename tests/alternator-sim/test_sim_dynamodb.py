"""Every DynamoDB operation the sim implements, through boto3, including the error classes."""

from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from simtest import CREDENTIALS, client


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def create_simple(ddb, name, sort_type=None, **extra):
    key_schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    defs = [{"AttributeName": "pk", "AttributeType": "S"}]
    if sort_type:
        key_schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        defs.append({"AttributeName": "sk", "AttributeType": sort_type})
    for extra_def in extra.pop("extra_defs", []):
        defs.append(extra_def)
    return ddb.create_table(
        TableName=name, KeySchema=key_schema, AttributeDefinitions=defs, BillingMode="PAY_PER_REQUEST", **extra
    )


def test_table_lifecycle(ddb, table_name):
    desc = create_simple(ddb, table_name, "N")["TableDescription"]
    assert desc["TableName"] == table_name
    assert desc["TableStatus"] == "ACTIVE"
    ddb.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    table = ddb.describe_table(TableName=table_name)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["ItemCount"] == 0
    assert table_name in ddb.list_tables()["TableNames"]

    with pytest.raises(ClientError) as e:
        create_simple(ddb, table_name)
    assert error_code(e) == "ResourceInUseException"
    assert isinstance(e.value, ddb.exceptions.ResourceInUseException)

    assert ddb.delete_table(TableName=table_name)["TableDescription"]["TableName"] == table_name
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.describe_table(TableName=table_name)
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.delete_table(TableName=table_name)


def test_list_tables_pages(ddb):
    names = [f"page_{i:02d}" for i in range(5)]
    for n in names:
        create_simple(ddb, n)
    first = ddb.list_tables(Limit=2)
    assert first["TableNames"] == names[:2]
    assert first["LastEvaluatedTableName"] == names[1]
    pages = ddb.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 2})
    assert [n for p in pages for n in p["TableNames"]] == names


def test_invalid_create_table_is_a_validation_error(ddb):
    with pytest.raises(ClientError) as e:
        ddb.create_table(
            TableName="bad",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "other", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    assert error_code(e) == "ValidationException"


def test_every_attribute_type_round_trips(ddb, table_name):
    create_simple(ddb, table_name)
    item = {
        "pk": {"S": "types"},
        "s": {"S": "text ü"},
        "n": {"N": "-12.5"},
        "b": {"B": b"\x00\x01binary"},
        "bool": {"BOOL": True},
        "null": {"NULL": True},
        "l": {"L": [{"S": "a"}, {"N": "1"}]},
        "m": {"M": {"inner": {"S": "x"}}},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": [b"x", b"y"]},
    }
    ddb.put_item(TableName=table_name, Item=item)
    got = ddb.get_item(TableName=table_name, Key={"pk": {"S": "types"}}, ConsistentRead=True)["Item"]
    assert got["b"] == {"B": b"\x00\x01binary"}
    assert sorted(got["ss"]["SS"]) == ["a", "b"]
    assert got["m"] == item["m"]
    assert got["l"] == item["l"]
    assert got["n"] == {"N": "-12.5"}
    assert "Item" not in ddb.get_item(TableName=table_name, Key={"pk": {"S": "missing"}})


def test_resource_api_with_decimals(sim, table_name):
    ddb = client(sim.endpoint())
    create_simple(ddb, table_name, "N")
    res = boto3.resource("dynamodb", endpoint_url=sim.endpoint("127.0.0.2"), region_name="us-east-1", **CREDENTIALS)
    table = res.Table(table_name)
    table.put_item(Item={"pk": "p", "sk": 1, "price": Decimal("9.99"), "tags": {"a", "b"}})
    item = table.get_item(Key={"pk": "p", "sk": 1})["Item"]
    assert item["price"] == Decimal("9.99")
    assert item["tags"] == {"a", "b"}
    with table.batch_writer() as w:
        for i in range(2, 40):
            w.put_item(Item={"pk": "p", "sk": i})
    assert table.query(KeyConditionExpression=Key("pk").eq("p"))["Count"] == 39
    assert table.query(KeyConditionExpression=Key("pk").eq("p") & Key("sk").gt(30))["Count"] == 9
    assert table.scan(FilterExpression=Attr("price").exists())["Count"] == 1


def test_conditional_put_and_failure_class(ddb, table_name):
    create_simple(ddb, table_name)
    ddb.put_item(
        TableName=table_name, Item={"pk": {"S": "k"}, "v": {"N": "1"}}, ConditionExpression="attribute_not_exists(pk)"
    )
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException) as e:
        ddb.put_item(
            TableName=table_name,
            Item={"pk": {"S": "k"}, "v": {"N": "2"}},
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert e.value.response["Item"] == {"pk": {"S": "k"}, "v": {"N": "1"}}
    old = ddb.put_item(
        TableName=table_name,
        Item={"pk": {"S": "k"}, "v": {"N": "3"}},
        ConditionExpression="v = :one OR v > :ten",
        ExpressionAttributeValues={":one": {"N": "1"}, ":ten": {"N": "10"}},
        ReturnValues="ALL_OLD",
    )
    assert old["Attributes"]["v"] == {"N": "1"}
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=table_name, Item={"pk": {"S": "k"}}, ReturnValues="ALL_NEW")
    assert error_code(e) == "ValidationException"


def test_update_expressions_and_return_values(ddb, table_name):
    create_simple(ddb, table_name)
    key = {"pk": {"S": "u"}}
    r = ddb.update_item(
        TableName=table_name,
        Key=key,
        UpdateExpression="SET #c = if_not_exists(#c, :zero) + :one, tags = :tags, items = :l, doc = :m ADD seen :s",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
            ":tags": {"SS": ["x"]},
            ":l": {"L": [{"S": "a"}]},
            ":m": {"M": {"deep": {"N": "5"}}},
            ":s": {"NS": ["7"]},
        },
        ReturnValues="ALL_NEW",
    )
    attrs = r["Attributes"]
    assert attrs["count"] == {"N": "1"}
    assert attrs["pk"] == {"S": "u"}
    assert attrs["seen"] == {"NS": ["7"]}

    r = ddb.update_item(
        TableName=table_name,
        Key=key,
        UpdateExpression="SET #c = #c + :two, items = list_append(items, :more), doc.deep = :d "
        "REMOVE tags ADD seen :s2",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={
            ":two": {"N": "2"},
            ":more": {"L": [{"S": "b"}]},
            ":d": {"N": "6"},
            ":s2": {"NS": ["8"]},
        },
        ReturnValues="UPDATED_NEW",
    )
    attrs = r["Attributes"]
    assert attrs["count"] == {"N": "3"}
    assert attrs["items"] == {"L": [{"S": "a"}, {"S": "b"}]}
    assert attrs["doc"] == {"M": {"deep": {"N": "6"}}}
    assert sorted(attrs["seen"]["NS"]) == ["7", "8"]
    assert "tags" not in attrs

    r = ddb.update_item(
        TableName=table_name,
        Key=key,
        UpdateExpression="SET #c = :v",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":v": {"N": "10"}},
        ReturnValues="UPDATED_OLD",
    )
    assert r["Attributes"] == {"count": {"N": "3"}}
    r = ddb.update_item(TableName=table_name, Key=key, UpdateExpression="REMOVE doc, items[0]", ReturnValues="ALL_OLD")
    assert r["Attributes"]["doc"] == {"M": {"deep": {"N": "6"}}}
    item = ddb.get_item(TableName=table_name, Key=key)["Item"]
    assert "doc" not in item and "tags" not in item
    assert item["items"] == {"L": [{"S": "b"}]}

    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(
            TableName=table_name,
            Key=key,
            UpdateExpression="SET a = :v",
            ConditionExpression="#c < :limit",
            ExpressionAttributeNames={"#c": "count"},
            ExpressionAttributeValues={":v": {"S": "x"}, ":limit": {"N": "5"}},
        )
    with pytest.raises(ClientError) as e:
        ddb.update_item(
            TableName=table_name, Key=key, UpdateExpression="SET pk = :v", ExpressionAttributeValues={":v": {"S": "x"}}
        )
    assert error_code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        ddb.update_item(
            TableName=table_name,
            Key=key,
            UpdateExpression="SET a = missing + :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    assert error_code(e) == "ValidationException"


def test_delete_item(ddb, table_name):
    create_simple(ddb, table_name)
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "d"}, "v": {"S": "x"}})
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.delete_item(
            TableName=table_name,
            Key={"pk": {"S": "d"}},
            ConditionExpression="v <> :x",
            ExpressionAttributeValues={":x": {"S": "x"}},
        )
    r = ddb.delete_item(TableName=table_name, Key={"pk": {"S": "d"}}, ReturnValues="ALL_OLD")
    assert r["Attributes"]["v"] == {"S": "x"}
    assert "Item" not in ddb.get_item(TableName=table_name, Key={"pk": {"S": "d"}})
    assert "Attributes" not in ddb.delete_item(TableName=table_name, Key={"pk": {"S": "d"}}, ReturnValues="ALL_OLD")


def test_batch_operations(ddb, table_name):
    create_simple(ddb, table_name)
    puts = [{"PutRequest": {"Item": {"pk": {"S": f"b{i}"}, "n": {"N": str(i)}}}} for i in range(25)]
    assert ddb.batch_write_item(RequestItems={table_name: puts})["UnprocessedItems"] == {}
    got = ddb.batch_get_item(
        RequestItems={
            table_name: {
                "Keys": [{"pk": {"S": f"b{i}"}} for i in range(0, 25, 5)] + [{"pk": {"S": "nope"}}],
                "ProjectionExpression": "pk",
            }
        }
    )
    assert sorted(i["pk"]["S"] for i in got["Responses"][table_name]) == ["b0", "b10", "b15", "b20", "b5"]
    assert all(set(i) == {"pk"} for i in got["Responses"][table_name])
    ddb.batch_write_item(RequestItems={table_name: [{"DeleteRequest": {"Key": {"pk": {"S": "b0"}}}}]})
    assert "Item" not in ddb.get_item(TableName=table_name, Key={"pk": {"S": "b0"}})

    too_many = puts + [{"PutRequest": {"Item": {"pk": {"S": "b99"}}}}]
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={table_name: too_many})
    assert error_code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        ddb.batch_write_item(RequestItems={table_name: puts[:1] + puts[:1]})
    assert error_code(e) == "ValidationException"
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.batch_get_item(RequestItems={"no_such_table": {"Keys": [{"pk": {"S": "x"}}]}})


def fill_sorted(ddb, table_name):
    create_simple(ddb, table_name, "S")
    for i in range(10):
        ddb.put_item(
            TableName=table_name,
            Item={"pk": {"S": "q"}, "sk": {"S": f"item#{i:02d}"}, "n": {"N": str(i)}, "odd": {"BOOL": i % 2 == 1}},
        )
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "other"}, "sk": {"S": "item#00"}})


def sks(resp):
    return [i["sk"]["S"] for i in resp["Items"]]


def test_query_sort_key_conditions_and_ordering(ddb, table_name):
    fill_sorted(ddb, table_name)
    q = lambda **kw: ddb.query(TableName=table_name, **kw)  # noqa: E731
    vals = {":p": {"S": "q"}}
    r = q(KeyConditionExpression="pk = :p", ExpressionAttributeValues=vals)
    assert sks(r) == [f"item#{i:02d}" for i in range(10)]
    assert r["Count"] == 10 and r["ScannedCount"] == 10
    r = q(KeyConditionExpression="pk = :p", ExpressionAttributeValues=vals, ScanIndexForward=False, Limit=3)
    assert sks(r) == ["item#09", "item#08", "item#07"]
    assert r["LastEvaluatedKey"] == {"pk": {"S": "q"}, "sk": {"S": "item#07"}}
    r = q(
        KeyConditionExpression="pk = :p AND begins_with(sk, :pre)",
        ExpressionAttributeValues={**vals, ":pre": {"S": "item#0"}},
    )
    assert r["Count"] == 10
    r = q(
        KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
        ExpressionAttributeValues={**vals, ":a": {"S": "item#03"}, ":b": {"S": "item#05"}},
    )
    assert sks(r) == ["item#03", "item#04", "item#05"]
    r = q(
        KeyConditionExpression="#p = :p AND #s < :b",
        ExpressionAttributeNames={"#p": "pk", "#s": "sk"},
        ExpressionAttributeValues={**vals, ":b": {"S": "item#02"}},
    )
    assert sks(r) == ["item#00", "item#01"]
    r = q(
        KeyConditionExpression="pk = :p",
        FilterExpression="odd = :t AND n >= :five",
        ExpressionAttributeValues={**vals, ":t": {"BOOL": True}, ":five": {"N": "5"}},
    )
    assert sks(r) == ["item#05", "item#07", "item#09"]
    assert r["ScannedCount"] == 10
    r = q(KeyConditionExpression="pk = :p", ExpressionAttributeValues=vals, Select="COUNT")
    assert r["Count"] == 10 and "Items" not in r
    r = q(KeyConditionExpression="pk = :p", ExpressionAttributeValues=vals, ProjectionExpression="sk, n", Limit=1)
    assert r["Items"] == [{"sk": {"S": "item#00"}, "n": {"N": "0"}}]

    pages = ddb.get_paginator("query").paginate(
        TableName=table_name,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues=vals,
        PaginationConfig={"PageSize": 4},
    )
    assert [sk for p in pages for sk in sks(p)] == [f"item#{i:02d}" for i in range(10)]

    for bad in ["sk = :p", "pk = :p OR pk = :p", "pk < :p"]:
        with pytest.raises(ClientError) as e:
            q(KeyConditionExpression=bad, ExpressionAttributeValues=vals)
        assert error_code(e) == "ValidationException", bad


def test_scan_filters_pages_and_segments(ddb, table_name):
    fill_sorted(ddb, table_name)
    r = ddb.scan(TableName=table_name)
    assert r["Count"] == 11
    r = ddb.scan(
        TableName=table_name,
        FilterExpression="attribute_exists(n) AND NOT odd = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    assert r["Count"] == 5
    pages = ddb.get_paginator("scan").paginate(TableName=table_name, PaginationConfig={"PageSize": 3})
    seen = [(i["pk"]["S"], i["sk"]["S"]) for p in pages for i in p["Items"]]
    assert len(seen) == 11 and len(set(seen)) == 11
    segs = [ddb.scan(TableName=table_name, Segment=s, TotalSegments=3)["Count"] for s in range(3)]
    assert sum(segs) == 11
    r = ddb.scan(
        TableName=table_name,
        FilterExpression="contains(sk, :x) AND size(sk) = :len",
        ExpressionAttributeValues={":x": {"S": "#0"}, ":len": {"N": "7"}},
    )
    assert r["Count"] == 11


def test_global_secondary_index(ddb, table_name):
    create_simple(
        ddb,
        table_name,
        extra_defs=[{"AttributeName": "email", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_email",
                "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "u1"}, "email": {"S": "a@x"}, "name": {"S": "A"}})
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "u2"}, "name": {"S": "no email"}})
    r = ddb.query(
        TableName=table_name,
        IndexName="by_email",
        KeyConditionExpression="email = :e",
        ExpressionAttributeValues={":e": {"S": "a@x"}},
    )
    assert r["Items"] == [{"pk": {"S": "u1"}, "email": {"S": "a@x"}}]
    assert ddb.scan(TableName=table_name, IndexName="by_email")["Count"] == 1
    with pytest.raises(ClientError) as e:
        ddb.query(
            TableName=table_name,
            IndexName="nope",
            KeyConditionExpression="email = :e",
            ExpressionAttributeValues={":e": {"S": "a@x"}},
        )
    assert error_code(e) == "ValidationException"
    desc = ddb.describe_table(TableName=table_name)["Table"]
    assert desc["GlobalSecondaryIndexes"][0]["IndexName"] == "by_email"


def test_transactions(ddb, table_name):
    create_simple(ddb, table_name)
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "acct1"}, "balance": {"N": "100"}})
    ddb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": table_name,
                    "Key": {"pk": {"S": "acct1"}},
                    "UpdateExpression": "SET balance = balance - :x",
                    "ConditionExpression": "balance >= :x",
                    "ExpressionAttributeValues": {":x": {"N": "30"}},
                }
            },
            {
                "Put": {
                    "TableName": table_name,
                    "Item": {"pk": {"S": "acct2"}, "balance": {"N": "30"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
    )
    got = ddb.transact_get_items(
        TransactItems=[
            {"Get": {"TableName": table_name, "Key": {"pk": {"S": "acct1"}}}},
            {"Get": {"TableName": table_name, "Key": {"pk": {"S": "acct2"}}}},
        ]
    )["Responses"]
    assert [g["Item"]["balance"]["N"] for g in got] == ["70", "30"]

    with pytest.raises(ddb.exceptions.TransactionCanceledException) as e:
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table_name,
                        "Key": {"pk": {"S": "acct1"}},
                        "UpdateExpression": "SET balance = balance - :x",
                        "ConditionExpression": "balance >= :x",
                        "ExpressionAttributeValues": {":x": {"N": "1000"}},
                    }
                },
                {"Delete": {"TableName": table_name, "Key": {"pk": {"S": "acct2"}}}},
            ]
        )
    reasons = e.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["ConditionalCheckFailed", "None"]
    # Nothing was applied.
    assert "Item" in ddb.get_item(TableName=table_name, Key={"pk": {"S": "acct2"}})


def test_validation_errors(ddb, table_name):
    create_simple(ddb, table_name, "N")
    cases = [
        dict(Key={"pk": {"S": "k"}}),  # sort key missing
        dict(Key={"pk": {"S": "k"}, "sk": {"S": "not a number type"}}),
        dict(Key={"pk": {"S": "k"}, "sk": {"N": "1"}, "extra": {"S": "x"}}),
        dict(Key={"pk": {"S": "k"}, "sk": {"N": "1"}}, ProjectionExpression="#unknown"),
        dict(
            Key={"pk": {"S": "k"}, "sk": {"N": "1"}},
            ProjectionExpression="a",
            ExpressionAttributeNames={"#unused": "x"},
        ),
        dict(Key={"pk": {"S": "k"}, "sk": {"N": "1"}}, ProjectionExpression="a,,b"),
    ]
    for kw in cases:
        with pytest.raises(ClientError) as e:
            ddb.get_item(TableName=table_name, **kw)
        assert error_code(e) == "ValidationException", kw
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=table_name, Item={"pk": {"S": "k"}, "sk": {"N": "abc"}})
    assert error_code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=table_name, Item={"pk": {"S": ""}, "sk": {"N": "1"}})
    assert error_code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        ddb.put_item(
            TableName=table_name, Item={"pk": {"S": "k"}, "sk": {"N": "1"}}, ConditionExpression="attribute_exists("
        )
    assert error_code(e) == "ValidationException"


def test_time_to_live_settings(ddb, table_name):
    create_simple(ddb, table_name)
    assert ddb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
    ddb.update_time_to_live(TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    d = ddb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert d == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}


def test_state_is_shared_by_every_node(sim, table_name):
    c1, c3 = client(sim.endpoint("127.0.0.1")), client(sim.endpoint("127.0.0.3"))
    create_simple(c1, table_name)
    c1.put_item(TableName=table_name, Item={"pk": {"S": "shared"}})
    assert c3.get_item(TableName=table_name, Key={"pk": {"S": "shared"}})["Item"] == {"pk": {"S": "shared"}}
