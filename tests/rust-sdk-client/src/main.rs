//! End-to-end test client: runs one DynamoDB workload with the AWS SDK for Rust.
//!
//! `alternator-rust-sdk-client <endpoint-url> <table>` with `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` in the environment. It creates the table, writes, reads, updates
//! under a condition, queries, batches and deletes, checking every answer; it prints one JSON
//! line with what it did and exits non-zero with a message on the first surprise. The SDK signs
//! every request with SigV4, so the test also proves Envoy and the filter left the signed parts
//! (Host, body) untouched.

use std::collections::HashMap;
use std::process::ExitCode;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    PutRequest, ScalarAttributeType, WriteRequest,
};
use aws_sdk_dynamodb::Client;

type Outcome = Result<serde_json::Value, String>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn check(cond: bool, what: &str) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("unexpected answer: {what}"))
    }
}

/// Turns an SDK error into one line naming the operation.
fn err<E, R>(op: &'static str) -> impl Fn(aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| {
        format!(
            "{op} failed: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        )
    }
}

async fn run(client: &Client, table: &str) -> Outcome {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("sk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("sk")
                .key_type(KeyType::Range)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(err("CreateTable"))?;

    for i in 0..3 {
        client
            .put_item()
            .table_name(table)
            .item("pk", s("user-1"))
            .item("sk", s(&format!("item-{i}")))
            .item("n", AttributeValue::N(i.to_string()))
            .send()
            .await
            .map_err(err("PutItem"))?;
    }

    let got = client
        .get_item()
        .table_name(table)
        .set_key(Some(key("user-1", "item-1")))
        .consistent_read(true)
        .send()
        .await
        .map_err(err("GetItem"))?;
    check(
        got.item().and_then(|i| i.get("n")) == Some(&AttributeValue::N("1".into())),
        "GetItem item-1 n=1",
    )?;

    client
        .update_item()
        .table_name(table)
        .set_key(Some(key("user-1", "item-1")))
        .update_expression("SET n = :new")
        .condition_expression("n = :old")
        .expression_attribute_values(":new", AttributeValue::N("10".into()))
        .expression_attribute_values(":old", AttributeValue::N("1".into()))
        .send()
        .await
        .map_err(err("UpdateItem"))?;
    let refused = client
        .update_item()
        .table_name(table)
        .set_key(Some(key("user-1", "item-1")))
        .update_expression("SET n = :new")
        .condition_expression("n = :old")
        .expression_attribute_values(":new", AttributeValue::N("20".into()))
        .expression_attribute_values(":old", AttributeValue::N("1".into()))
        .send()
        .await;
    let condition_failed = match refused {
        Err(e) => e
            .into_service_error()
            .is_conditional_check_failed_exception(),
        Ok(_) => false,
    };
    check(
        condition_failed,
        "a failed condition answers ConditionalCheckFailedException",
    )?;

    let q = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s("user-1"))
        .send()
        .await
        .map_err(err("Query"))?;
    check(q.count() == 3, "Query returns the 3 items of user-1")?;

    let writes: Vec<WriteRequest> = (0..4)
        .map(|i| {
            let put = PutRequest::builder()
                .item("pk", s(&format!("batch-{i}")))
                .item("sk", s("x"))
                .build()
                .map_err(|e| e.to_string())?;
            Ok(WriteRequest::builder().put_request(put).build())
        })
        .collect::<Result<_, String>>()?;
    let bw = client
        .batch_write_item()
        .request_items(table, writes)
        .send()
        .await
        .map_err(err("BatchWriteItem"))?;
    check(
        bw.unprocessed_items().is_none_or(|u| u.is_empty()),
        "BatchWriteItem processes everything",
    )?;

    let keys = KeysAndAttributes::builder()
        .keys(key("batch-0", "x"))
        .keys(key("batch-3", "x"))
        .consistent_read(true)
        .build()
        .map_err(|e| e.to_string())?;
    let bg = client
        .batch_get_item()
        .request_items(table, keys)
        .send()
        .await
        .map_err(err("BatchGetItem"))?;
    let found = bg
        .responses()
        .and_then(|r| r.get(table))
        .map_or(0, |items| items.len());
    check(found == 2, "BatchGetItem finds both items")?;

    client
        .delete_item()
        .table_name(table)
        .set_key(Some(key("user-1", "item-0")))
        .send()
        .await
        .map_err(err("DeleteItem"))?;
    let gone = client
        .get_item()
        .table_name(table)
        .set_key(Some(key("user-1", "item-0")))
        .consistent_read(true)
        .send()
        .await
        .map_err(err("GetItem"))?;
    check(gone.item().is_none(), "deleted item is gone")?;

    client
        .delete_table()
        .table_name(table)
        .send()
        .await
        .map_err(err("DeleteTable"))?;
    Ok(serde_json::json!({"client": "aws-sdk-rust", "table": table, "ok": true}))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(endpoint), Some(table)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: alternator-rust-sdk-client <endpoint-url> <table>");
        return ExitCode::from(2);
    };
    let (Ok(akid), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) else {
        eprintln!("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set");
        return ExitCode::from(2);
    };
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(akid, secret, None, None, "e2e"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let client = Client::from_conf(config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&client, table)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
