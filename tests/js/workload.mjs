// End-to-end test client: one DynamoDB workload with the AWS SDK for JavaScript v3.
//
//   node workload.mjs <endpoint-url> <table>
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; every request is SigV4
// signed, so success also proves Envoy and the filter left Host and body untouched. Prints one
// JSON line on success; exits 1 with a message on the first surprise.
import {
  DynamoDBClient,
  CreateTableCommand,
  PutItemCommand,
  GetItemCommand,
  UpdateItemCommand,
  QueryCommand,
  BatchWriteItemCommand,
  BatchGetItemCommand,
  DeleteItemCommand,
  DeleteTableCommand,
  ConditionalCheckFailedException,
} from "@aws-sdk/client-dynamodb";

const [endpoint, table] = process.argv.slice(2);
if (!endpoint || !table) {
  console.error("usage: node workload.mjs <endpoint-url> <table>");
  process.exit(2);
}

const client = new DynamoDBClient({
  endpoint,
  region: "us-east-1",
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  },
});

function check(cond, what) {
  if (!cond) throw new Error(`unexpected answer: ${what}`);
}

const key = (pk, sk) => ({ pk: { S: pk }, sk: { S: sk } });

async function run() {
  await client.send(new CreateTableCommand({
    TableName: table,
    BillingMode: "PAY_PER_REQUEST",
    AttributeDefinitions: [
      { AttributeName: "pk", AttributeType: "S" },
      { AttributeName: "sk", AttributeType: "S" },
    ],
    KeySchema: [
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ],
  }));

  for (let i = 0; i < 3; i++) {
    await client.send(new PutItemCommand({
      TableName: table,
      Item: { ...key("user-1", `item-${i}`), n: { N: String(i) } },
    }));
  }

  const got = await client.send(new GetItemCommand({ TableName: table, Key: key("user-1", "item-1"), ConsistentRead: true }));
  check(got.Item?.n?.N === "1", "GetItem item-1 n=1");

  await client.send(new UpdateItemCommand({
    TableName: table,
    Key: key("user-1", "item-1"),
    UpdateExpression: "SET n = :new",
    ConditionExpression: "n = :old",
    ExpressionAttributeValues: { ":new": { N: "10" }, ":old": { N: "1" } },
  }));
  let refused = false;
  try {
    await client.send(new UpdateItemCommand({
      TableName: table,
      Key: key("user-1", "item-1"),
      UpdateExpression: "SET n = :new",
      ConditionExpression: "n = :old",
      ExpressionAttributeValues: { ":new": { N: "20" }, ":old": { N: "1" } },
    }));
  } catch (e) {
    refused = e instanceof ConditionalCheckFailedException || e?.name === "ConditionalCheckFailedException";
    if (!refused) throw e;
  }
  check(refused, "a failed condition answers ConditionalCheckFailedException");

  const q = await client.send(new QueryCommand({
    TableName: table,
    KeyConditionExpression: "pk = :pk",
    ExpressionAttributeValues: { ":pk": { S: "user-1" } },
  }));
  check(q.Count === 3, "Query returns the 3 items of user-1");

  const bw = await client.send(new BatchWriteItemCommand({
    RequestItems: {
      [table]: [0, 1, 2, 3].map((i) => ({ PutRequest: { Item: key(`batch-${i}`, "x") } })),
    },
  }));
  check(Object.keys(bw.UnprocessedItems ?? {}).length === 0, "BatchWriteItem processes everything");

  const bg = await client.send(new BatchGetItemCommand({
    RequestItems: { [table]: { Keys: [key("batch-0", "x"), key("batch-3", "x")], ConsistentRead: true } },
  }));
  check((bg.Responses?.[table] ?? []).length === 2, "BatchGetItem finds both items");

  await client.send(new DeleteItemCommand({ TableName: table, Key: key("user-1", "item-0") }));
  const gone = await client.send(new GetItemCommand({ TableName: table, Key: key("user-1", "item-0"), ConsistentRead: true }));
  check(gone.Item === undefined, "deleted item is gone");

  await client.send(new DeleteTableCommand({ TableName: table }));
  console.log(JSON.stringify({ client: "aws-sdk-js-v3", table, ok: true }));
}

run().catch((e) => {
  console.error(`${e?.name ?? "Error"}: ${e?.message ?? e}`);
  process.exit(1);
});
