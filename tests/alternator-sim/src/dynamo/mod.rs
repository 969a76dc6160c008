//! The DynamoDB JSON protocol (`application/x-amz-json-1.0`, `X-Amz-Target:
//! DynamoDB_20120810.<Op>`): operations, errors, expressions and the built-in engine.

pub(crate) mod error;
pub(crate) mod expr;
pub(crate) mod store;
pub(crate) mod value;

use std::sync::Arc;

use serde_json::Value;

pub(crate) use error::{DynamoError, ErrorKind};
pub(crate) use store::{KeySchema, Store};

/// The operations the sim knows, in counter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateTable,
    DeleteTable,
    DescribeTable,
    UpdateTable,
    ListTables,
    PutItem,
    GetItem,
    DeleteItem,
    UpdateItem,
    BatchWriteItem,
    BatchGetItem,
    Query,
    Scan,
    TransactWriteItems,
    TransactGetItems,
    DescribeTimeToLive,
    UpdateTimeToLive,
    DescribeEndpoints,
    Unknown,
}

impl Operation {
    pub const COUNT: usize = 19;
    pub const ALL: [Operation; Operation::COUNT] = [
        Operation::CreateTable,
        Operation::DeleteTable,
        Operation::DescribeTable,
        Operation::UpdateTable,
        Operation::ListTables,
        Operation::PutItem,
        Operation::GetItem,
        Operation::DeleteItem,
        Operation::UpdateItem,
        Operation::BatchWriteItem,
        Operation::BatchGetItem,
        Operation::Query,
        Operation::Scan,
        Operation::TransactWriteItems,
        Operation::TransactGetItems,
        Operation::DescribeTimeToLive,
        Operation::UpdateTimeToLive,
        Operation::DescribeEndpoints,
        Operation::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateTable => "CreateTable",
            Operation::DeleteTable => "DeleteTable",
            Operation::DescribeTable => "DescribeTable",
            Operation::UpdateTable => "UpdateTable",
            Operation::ListTables => "ListTables",
            Operation::PutItem => "PutItem",
            Operation::GetItem => "GetItem",
            Operation::DeleteItem => "DeleteItem",
            Operation::UpdateItem => "UpdateItem",
            Operation::BatchWriteItem => "BatchWriteItem",
            Operation::BatchGetItem => "BatchGetItem",
            Operation::Query => "Query",
            Operation::Scan => "Scan",
            Operation::TransactWriteItems => "TransactWriteItems",
            Operation::TransactGetItems => "TransactGetItems",
            Operation::DescribeTimeToLive => "DescribeTimeToLive",
            Operation::UpdateTimeToLive => "UpdateTimeToLive",
            Operation::DescribeEndpoints => "DescribeEndpoints",
            Operation::Unknown => "Unknown",
        }
    }

    /// The operation named by an `X-Amz-Target` header value.
    pub fn from_target(target: &str) -> Operation {
        let Some(name) = target.strip_prefix("DynamoDB_20120810.") else {
            return Operation::Unknown;
        };
        Operation::ALL
            .into_iter()
            .find(|op| op.name() == name && *op != Operation::Unknown)
            .unwrap_or(Operation::Unknown)
    }

    /// Operations on items (the ones the key log records).
    pub fn is_data(self) -> bool {
        matches!(
            self,
            Operation::PutItem
                | Operation::GetItem
                | Operation::DeleteItem
                | Operation::UpdateItem
                | Operation::BatchWriteItem
                | Operation::BatchGetItem
                | Operation::Query
                | Operation::Scan
                | Operation::TransactWriteItems
                | Operation::TransactGetItems
        )
    }

    /// Tables whose key schema the key log needs for this request.
    pub fn tables_of(self, req: &Value) -> Vec<String> {
        match self {
            Operation::BatchWriteItem | Operation::BatchGetItem => req
                .get("RequestItems")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
            Operation::TransactWriteItems | Operation::TransactGetItems => transact_entries(req)
                .filter_map(|(_, body)| body.get("TableName").and_then(Value::as_str))
                .map(str::to_owned)
                .collect(),
            _ => req
                .get("TableName")
                .and_then(Value::as_str)
                .map(|t| vec![t.to_owned()])
                .unwrap_or_default(),
        }
    }
}

fn transact_entries(req: &Value) -> impl Iterator<Item = (&str, &Value)> {
    req.get("TransactItems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            ["Put", "Update", "Delete", "ConditionCheck", "Get"]
                .into_iter()
                .find_map(|k| e.get(k).map(|b| (k, b)))
        })
}

/// Key schema of a table (`None` index) or of one of its indexes.
pub(crate) type SchemaLookup<'a> = &'a dyn Fn(&str, Option<&str>) -> Option<Arc<KeySchema>>;

/// (table, hash-key AttributeValue) pairs a data request touches, for the key log. `schema`
/// gives a table's key schema, or an index's when asked with `Some(index)`.
pub(crate) fn request_keys(
    op: Operation,
    req: &Value,
    schema: SchemaLookup<'_>,
) -> Vec<(String, Value)> {
    let hash_of = |table: &str, obj: Option<&Value>| -> Value {
        let schema = schema(table, None);
        match (schema, obj) {
            (Some(s), Some(o)) => o.get(&s.hash.name).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        }
    };
    let table = req
        .get("TableName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match op {
        Operation::PutItem => {
            let key = hash_of(&table, req.get("Item"));
            vec![(table, key)]
        }
        Operation::GetItem | Operation::DeleteItem | Operation::UpdateItem => {
            let key = hash_of(&table, req.get("Key"));
            vec![(table, key)]
        }
        Operation::Query => {
            let index = req.get("IndexName").and_then(Value::as_str);
            let key = schema(&table, index)
                .and_then(|s| query_hash_value(req, &s))
                .unwrap_or(Value::Null);
            vec![(table, key)]
        }
        Operation::Scan => vec![(table, Value::Null)],
        Operation::BatchWriteItem => {
            let mut out = Vec::new();
            for (t, list) in req
                .get("RequestItems")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                for w in list.as_array().into_iter().flatten() {
                    let obj = w
                        .get("PutRequest")
                        .and_then(|p| p.get("Item"))
                        .or_else(|| w.get("DeleteRequest").and_then(|d| d.get("Key")));
                    out.push((t.clone(), hash_of(t, obj)));
                }
            }
            out
        }
        Operation::BatchGetItem => {
            let mut out = Vec::new();
            for (t, spec) in req
                .get("RequestItems")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                for k in spec
                    .get("Keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.push((t.clone(), hash_of(t, Some(k))));
                }
            }
            out
        }
        Operation::TransactWriteItems | Operation::TransactGetItems => transact_entries(req)
            .map(|(kind, body)| {
                let t = body
                    .get("TableName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let obj = if kind == "Put" {
                    body.get("Item")
                } else {
                    body.get("Key")
                };
                (t.to_owned(), hash_of(t, obj))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The value bound to the hash key in a Query's KeyConditionExpression.
fn query_hash_value(req: &Value, schema: &KeySchema) -> Option<Value> {
    let text = req.get("KeyConditionExpression")?.as_str()?;
    let mut ctx = expr::ExprContext::from_request(req);
    let cond = ctx.parse_condition("KeyConditionExpression", text).ok()?;
    expr::analyze_key_condition(
        cond,
        (&schema.hash.name, &schema.hash.ty),
        schema
            .range
            .as_ref()
            .map(|r| (r.name.as_str(), r.ty.as_str())),
    )
    .ok()
    .map(|kc| kc.hash)
}
