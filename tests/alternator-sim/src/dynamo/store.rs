//! The built-in engine: tables of items in memory, shared by every node of the cluster.
//!
//! Each table is one `RwLock<BTreeMap>` ordered by (hash key, sort key), so GetItem is a read
//! lock and a tree lookup, and Query walks one hash key's items in sort-key order.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::error::{DynamoError, DynamoResult, ErrorKind};
use super::expr::{self, Condition, ExprContext, Path, UpdateAction};
use super::value::{self, Item, KeyValue};
use super::Operation;

/// One key attribute: name and scalar type (`S`, `N` or `B`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttr {
    pub name: String,
    pub ty: String,
}

/// Hash key and optional sort key of a table or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    pub hash: KeyAttr,
    pub range: Option<KeyAttr>,
}

type PrimaryKey = (KeyValue, Option<KeyValue>);
type Rows = BTreeMap<PrimaryKey, Item>;

fn key_mismatch() -> DynamoError {
    DynamoError::validation("The provided key element does not match the schema")
}

impl KeySchema {
    pub fn names(&self) -> Vec<&str> {
        let mut v = vec![self.hash.name.as_str()];
        if let Some(r) = &self.range {
            v.push(r.name.as_str());
        }
        v
    }

    fn attrs(&self) -> impl Iterator<Item = &KeyAttr> {
        std::iter::once(&self.hash).chain(self.range.iter())
    }

    /// The primary key of a `Key` parameter, which must hold exactly the key attributes.
    fn key_of(&self, key: &Value) -> DynamoResult<PrimaryKey> {
        let key = key.as_object().ok_or_else(key_mismatch)?;
        if key.len() != 1 + usize::from(self.range.is_some()) {
            return Err(key_mismatch());
        }
        let get = |a: &KeyAttr| -> DynamoResult<KeyValue> {
            let av = key.get(&a.name).ok_or_else(key_mismatch)?;
            let kv = KeyValue::from_av(av).ok_or_else(key_mismatch)?;
            if kv.type_name() != a.ty {
                return Err(key_mismatch());
            }
            check_not_empty(&kv, &a.name)?;
            Ok(kv)
        };
        Ok((get(&self.hash)?, self.range.as_ref().map(get).transpose()?))
    }

    /// The primary key of a whole item.
    fn key_of_item(&self, item: &Item) -> DynamoResult<PrimaryKey> {
        let get = |a: &KeyAttr| -> DynamoResult<KeyValue> {
            let av = item.get(&a.name).ok_or_else(|| {
                DynamoError::validation(format!(
                    "One or more parameter values were invalid: Missing the key {} in the item",
                    a.name
                ))
            })?;
            let kv = KeyValue::from_av(av)
                .filter(|k| k.type_name() == a.ty)
                .ok_or_else(|| {
                    DynamoError::validation(format!(
                        "One or more parameter values were invalid: Type mismatch for key {} expected: {} actual: {}",
                        a.name,
                        a.ty,
                        value::split(av).map_or("?", |(t, _)| t)
                    ))
                })?;
            check_not_empty(&kv, &a.name)?;
            Ok(kv)
        };
        Ok((get(&self.hash)?, self.range.as_ref().map(get).transpose()?))
    }

    /// The index key of an item, if the item has every key attribute (sparse indexes).
    fn index_key(&self, item: &Item) -> Option<PrimaryKey> {
        let get =
            |a: &KeyAttr| KeyValue::from_av(item.get(&a.name)?).filter(|k| k.type_name() == a.ty);
        let h = get(&self.hash)?;
        let r = match &self.range {
            Some(r) => Some(get(r)?),
            None => None,
        };
        Some((h, r))
    }

    fn key_item(&self, item: &Item) -> Item {
        let mut out = Item::new();
        for a in self.attrs() {
            if let Some(v) = item.get(&a.name) {
                out.insert(a.name.clone(), v.clone());
            }
        }
        out
    }
}

fn check_not_empty(kv: &KeyValue, name: &str) -> DynamoResult<()> {
    let empty = match kv {
        KeyValue::S(s) => s.is_empty(),
        KeyValue::B(b) => b.is_empty(),
        KeyValue::N(_) => false,
    };
    if empty {
        return Err(DynamoError::validation(format!(
            "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {name}"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum IndexProjection {
    All,
    KeysOnly,
    Include(Vec<String>),
}

#[derive(Debug)]
struct Index {
    name: String,
    schema: Arc<KeySchema>,
    projection: IndexProjection,
}

#[derive(Debug)]
pub struct Table {
    name: String,
    schema: Arc<KeySchema>,
    indexes: Vec<Index>,
    description: Map<String, Value>,
    ttl: RwLock<Option<Value>>,
    rows: RwLock<Rows>,
}

impl Table {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
    }

    fn describe(&self, status: &str) -> Value {
        let rows = self.read();
        let count = rows.len();
        let size: usize = rows.values().map(value::item_size).sum();
        drop(rows);
        let mut d = self.description.clone();
        d.insert("TableStatus".into(), json!(status));
        d.insert("ItemCount".into(), json!(count));
        d.insert("TableSizeBytes".into(), json!(size));
        Value::Object(d)
    }

    fn index(&self, name: &str) -> DynamoResult<&Index> {
        self.indexes.iter().find(|i| i.name == name).ok_or_else(|| {
            DynamoError::validation(format!(
                "The table does not have the specified index: {name}"
            ))
        })
    }
}

/// The cluster-wide table store.
#[derive(Debug, Default)]
pub struct Store {
    tables: RwLock<HashMap<String, Arc<Table>>>,
    next_table_id: AtomicU64,
    /// Seeds the table ids (the ring seed).
    seed: u64,
}

fn str_field<'r>(req: &'r Value, field: &str) -> Option<&'r str> {
    req.get(field).and_then(Value::as_str)
}

fn required_str<'r>(req: &'r Value, field: &str, wire: &str) -> DynamoResult<&'r str> {
    str_field(req, field).ok_or_else(|| {
        DynamoError::validation(format!(
            "1 validation error detected: Value null at '{wire}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn return_values(req: &Value, allowed: &[&str], op: &str) -> DynamoResult<String> {
    let rv = str_field(req, "ReturnValues").unwrap_or("NONE");
    if !allowed.contains(&rv) {
        return Err(DynamoError::validation(format!(
            "Return values set to invalid value: {rv} for {op}"
        )));
    }
    Ok(rv.to_owned())
}

fn fail_returns_old(req: &Value) -> DynamoResult<bool> {
    match str_field(req, "ReturnValuesOnConditionCheckFailure") {
        None | Some("NONE") => Ok(false),
        Some("ALL_OLD") => Ok(true),
        Some(other) => Err(DynamoError::validation(format!(
            "1 validation error detected: Value '{other}' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]"
        ))),
    }
}

fn condition_failed(old: Option<&Item>, return_old: bool) -> DynamoError {
    let mut e = DynamoError::condition_failed();
    if return_old {
        if let Some(old) = old {
            e.extra.insert("Item".into(), Value::Object(old.clone()));
        }
    }
    e
}

fn parse_condition(ctx: &mut ExprContext<'_>, req: &Value) -> DynamoResult<Option<Condition>> {
    if req.get("Expected").is_some() {
        return Err(DynamoError::validation(
            "alternator-sim does not support the legacy Expected parameter; use ConditionExpression",
        ));
    }
    str_field(req, "ConditionExpression")
        .map(|c| ctx.parse_condition("ConditionExpression", c))
        .transpose()
}

fn parse_projection(ctx: &mut ExprContext<'_>, req: &Value) -> DynamoResult<Option<Vec<Path>>> {
    if let Some(p) = str_field(req, "ProjectionExpression") {
        return ctx.parse_projection(p).map(Some);
    }
    if let Some(list) = req.get("AttributesToGet").and_then(Value::as_array) {
        return Ok(Some(
            list.iter()
                .filter_map(Value::as_str)
                .map(|n| vec![expr::PathElem::Name(n.to_owned())])
                .collect(),
        ));
    }
    Ok(None)
}

fn no_placeholders_without_expressions(req: &Value, has_expression: bool) -> DynamoResult<()> {
    if has_expression {
        return Ok(());
    }
    if req.get("ExpressionAttributeNames").is_some() {
        return Err(DynamoError::validation(
            "ExpressionAttributeNames can only be specified when using expressions",
        ));
    }
    if req.get("ExpressionAttributeValues").is_some() {
        return Err(DynamoError::validation(
            "ExpressionAttributeValues can only be specified when using expressions: ConditionExpression is null",
        ));
    }
    Ok(())
}

/// A validated write, ready to run under the table's write lock.
#[derive(Debug)]
enum Write {
    Put {
        pk: PrimaryKey,
        item: Item,
    },
    Delete {
        pk: PrimaryKey,
    },
    Update {
        pk: PrimaryKey,
        key: Item,
        actions: Vec<UpdateAction>,
    },
    Check {
        pk: PrimaryKey,
    },
}

#[derive(Debug)]
struct PreparedWrite {
    table: Arc<Table>,
    write: Write,
    condition: Option<Condition>,
    return_old_on_fail: bool,
}

impl PreparedWrite {
    fn pk(&self) -> &PrimaryKey {
        match &self.write {
            Write::Put { pk, .. }
            | Write::Delete { pk }
            | Write::Update { pk, .. }
            | Write::Check { pk } => pk,
        }
    }

    fn check(&self, rows: &Rows) -> DynamoResult<()> {
        let old = rows.get(self.pk());
        if let Some(c) = &self.condition {
            let empty = Item::new();
            if !c.eval(old.unwrap_or(&empty)) {
                return Err(condition_failed(old, self.return_old_on_fail));
            }
        }
        Ok(())
    }

    /// The new item an update produces (and the attributes it touched), without storing it.
    fn updated(&self, rows: &Rows) -> DynamoResult<Option<(Item, Vec<String>)>> {
        let Write::Update { pk, key, actions } = &self.write else {
            return Ok(None);
        };
        let old = rows.get(pk);
        let base = old.unwrap_or(key);
        let mut new = base.clone();
        let touched = expr::apply_update(actions, base, &mut new, &self.table.schema.names())?;
        if value::item_size(&new) > 400 * 1024 {
            return Err(DynamoError::validation(
                "Item size to update has exceeded the maximum allowed size",
            ));
        }
        Ok(Some((new, touched)))
    }

    /// Check the condition and apply. Returns the old item and, for updates, the new item and
    /// the touched attributes.
    #[allow(clippy::type_complexity)]
    fn apply(&self, rows: &mut Rows) -> DynamoResult<(Option<Item>, Option<(Item, Vec<String>)>)> {
        self.check(rows)?;
        let updated = self.updated(rows)?;
        let old = match &self.write {
            Write::Put { pk, item } => rows.insert(pk.clone(), item.clone()),
            Write::Delete { pk } => rows.remove(pk),
            Write::Update { pk, .. } => match &updated {
                Some((new, _)) => rows.insert(pk.clone(), new.clone()),
                None => None,
            },
            Write::Check { pk } => rows.get(pk).cloned(),
        };
        Ok((old, updated))
    }
}

impl Store {
    #[cfg(test)]
    pub fn new() -> Self {
        Store::default()
    }

    /// A store whose table ids derive from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Store {
            seed,
            ..Store::default()
        }
    }

    fn tables(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Table>>> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_named(&self, name: &str) -> DynamoResult<Arc<Table>> {
        self.tables()
            .get(name)
            .cloned()
            .ok_or_else(|| DynamoError::not_found(name))
    }

    fn table(&self, req: &Value) -> DynamoResult<Arc<Table>> {
        self.table_named(required_str(req, "TableName", "tableName")?)
    }

    /// Key schema of a table, for the key log.
    pub fn key_schema(&self, table: &str) -> Option<Arc<KeySchema>> {
        self.tables().get(table).map(|t| t.schema.clone())
    }

    /// Key schema of a table or one of its indexes.
    pub fn index_key_schema(&self, table: &str, index: &str) -> Option<Arc<KeySchema>> {
        let tables = self.tables();
        let t = tables.get(table)?;
        t.indexes
            .iter()
            .find(|i| i.name == index)
            .map(|i| i.schema.clone())
    }

    /// Run one operation and serialise its answer. GetItem, the benchmark path, writes the
    /// item straight from the table without copying it.
    pub fn handle_to_bytes(&self, op: Operation, req: &Value, host: &str) -> DynamoResult<Vec<u8>> {
        if op == Operation::GetItem {
            return self.get_item_bytes(req);
        }
        self.handle(op, req, host)
            .map(|v| serde_json::to_vec(&v).unwrap_or_default())
    }

    fn get_item_bytes(&self, req: &Value) -> DynamoResult<Vec<u8>> {
        let table = self.table(req)?;
        let pk = table
            .schema
            .key_of(req.get("Key").ok_or_else(key_mismatch)?)?;
        let mut ctx = ExprContext::from_request(req);
        let projection = parse_projection(&mut ctx, req)?;
        no_placeholders_without_expressions(req, req.get("ProjectionExpression").is_some())?;
        ctx.finish()?;
        let rows = table.read();
        let Some(item) = rows.get(&pk) else {
            return Ok(b"{}".to_vec());
        };
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"Item\":");
        let written = match &projection {
            Some(p) => serde_json::to_writer(&mut out, &expr::project(item, p)),
            None => serde_json::to_writer(&mut out, item),
        };
        drop(rows);
        written.map_err(|e| DynamoError::new(ErrorKind::InternalServerError, e.to_string()))?;
        out.push(b'}');
        Ok(out)
    }

    pub fn handle(&self, op: Operation, req: &Value, host: &str) -> DynamoResult<Value> {
        match op {
            Operation::CreateTable => self.create_table(req),
            Operation::DeleteTable => self.delete_table(req),
            Operation::DescribeTable => {
                let t = self.table(req)?;
                Ok(json!({ "Table": t.describe("ACTIVE") }))
            }
            Operation::UpdateTable => {
                let t = self.table(req)?;
                Ok(json!({ "TableDescription": t.describe("ACTIVE") }))
            }
            Operation::ListTables => self.list_tables(req),
            Operation::PutItem => self.put_item(req),
            Operation::GetItem => self.get_item(req),
            Operation::DeleteItem => self.delete_item(req),
            Operation::UpdateItem => self.update_item(req),
            Operation::BatchWriteItem => self.batch_write(req),
            Operation::BatchGetItem => self.batch_get(req),
            Operation::Query => self.query(req),
            Operation::Scan => self.scan(req),
            Operation::TransactWriteItems => self.transact_write(req),
            Operation::TransactGetItems => self.transact_get(req),
            Operation::DescribeTimeToLive => {
                let t = self.table(req)?;
                let ttl = t.ttl.read().unwrap_or_else(|p| p.into_inner()).clone();
                Ok(
                    json!({ "TimeToLiveDescription": ttl.unwrap_or_else(|| json!({"TimeToLiveStatus": "DISABLED"})) }),
                )
            }
            Operation::UpdateTimeToLive => {
                let t = self.table(req)?;
                let spec = req.get("TimeToLiveSpecification").cloned().ok_or_else(|| {
                    DynamoError::validation("TimeToLiveSpecification is required")
                })?;
                let enabled = spec
                    .get("Enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let attr = spec.get("AttributeName").cloned().unwrap_or(Value::Null);
                *t.ttl.write().unwrap_or_else(|p| p.into_inner()) = Some(json!({
                    "TimeToLiveStatus": if enabled { "ENABLED" } else { "DISABLED" },
                    "AttributeName": attr,
                }));
                Ok(json!({ "TimeToLiveSpecification": spec }))
            }
            Operation::DescribeEndpoints => Ok(json!({
                "Endpoints": [{"Address": host, "CachePeriodInMinutes": 1440}]
            })),
            Operation::Unknown => Err(DynamoError::new(
                ErrorKind::UnknownOperation,
                "Unknown operation",
            )),
        }
    }

    // ---- tables ----

    fn create_table(&self, req: &Value) -> DynamoResult<Value> {
        let name = required_str(req, "TableName", "tableName")?;
        if name.starts_with(crate::internal::PREFIX) {
            return Err(DynamoError::validation(format!(
                "Prefix {} is reserved for accessing internal tables",
                crate::internal::PREFIX
            )));
        }
        if name.len() < 3
            || name.len() > 255
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(DynamoError::validation(format!(
                "1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 3 and 255"
            )));
        }
        let defs = req
            .get("AttributeDefinitions")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                DynamoError::validation(
                    "1 validation error detected: Value null at 'attributeDefinitions' failed to satisfy constraint: Member must not be null",
                )
            })?;
        let mut types: HashMap<&str, &str> = HashMap::new();
        for d in defs {
            let n = str_field(d, "AttributeName").unwrap_or("");
            let t = str_field(d, "AttributeType").unwrap_or("");
            if !matches!(t, "S" | "N" | "B") {
                return Err(DynamoError::validation(format!(
                    "1 validation error detected: Value '{t}' at 'attributeDefinitions.member.attributeType' failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]"
                )));
            }
            types.insert(n, t);
        }
        let key_schema_json = req.get("KeySchema").cloned().unwrap_or(Value::Null);
        let schema = parse_key_schema(&key_schema_json, &types, "KeySchema")?;
        let table_id = self.next_table_id.fetch_add(1, AtomicOrdering::Relaxed);
        let arn = format!("arn:aws:dynamodb:us-east-1:000000000000:table/{name}");
        let mut indexes = Vec::new();
        let mut gsi_desc = Vec::new();
        let mut lsi_desc = Vec::new();
        for (field, global) in [
            ("GlobalSecondaryIndexes", true),
            ("LocalSecondaryIndexes", false),
        ] {
            for idx in req
                .get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let iname = required_str(idx, "IndexName", "indexName")?;
                if indexes.iter().any(|i: &Index| i.name == iname) {
                    return Err(DynamoError::validation(format!(
                        "One or more parameter values were invalid: Duplicate index name: {iname}"
                    )));
                }
                let ks = idx.get("KeySchema").cloned().unwrap_or(Value::Null);
                let ischema = parse_key_schema(&ks, &types, "KeySchema")?;
                if !global && ischema.hash != schema.hash {
                    return Err(DynamoError::validation(
                        "One or more parameter values were invalid: Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex",
                    ));
                }
                let proj = idx.get("Projection").cloned().unwrap_or(json!({}));
                let projection = match str_field(&proj, "ProjectionType").unwrap_or("ALL") {
                    "KEYS_ONLY" => IndexProjection::KeysOnly,
                    "INCLUDE" => IndexProjection::Include(
                        proj.get("NonKeyAttributes")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect(),
                    ),
                    _ => IndexProjection::All,
                };
                let mut d = json!({
                    "IndexName": iname,
                    "KeySchema": ks,
                    "Projection": proj,
                    "IndexArn": format!("{arn}/index/{iname}"),
                    "IndexSizeBytes": 0,
                    "ItemCount": 0,
                });
                if global {
                    d["IndexStatus"] = json!("ACTIVE");
                    d["ProvisionedThroughput"] = json!({"ReadCapacityUnits": 0, "WriteCapacityUnits": 0, "NumberOfDecreasesToday": 0});
                    gsi_desc.push(d);
                } else {
                    lsi_desc.push(d);
                }
                indexes.push(Index {
                    name: iname.to_owned(),
                    schema: Arc::new(ischema),
                    projection,
                });
            }
        }
        for key_name in types.keys() {
            let used = schema.names().contains(key_name)
                || indexes.iter().any(|i| i.schema.names().contains(key_name));
            if !used {
                return Err(DynamoError::validation(
                    "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
                ));
            }
        }
        let billing = str_field(req, "BillingMode").unwrap_or("PROVISIONED");
        let mut description = Map::new();
        description.insert("TableName".into(), json!(name));
        description.insert("KeySchema".into(), key_schema_json);
        description.insert("AttributeDefinitions".into(), json!(defs));
        description.insert("CreationDateTime".into(), json!(now_seconds()));
        description.insert("TableArn".into(), json!(arn));
        description.insert(
            "TableId".into(),
            json!(crate::ring::table_id(self.seed, name, table_id)),
        );
        let pt = req.get("ProvisionedThroughput");
        description.insert(
            "ProvisionedThroughput".into(),
            json!({
                "ReadCapacityUnits": pt.and_then(|p| p.get("ReadCapacityUnits")).cloned().unwrap_or(json!(0)),
                "WriteCapacityUnits": pt.and_then(|p| p.get("WriteCapacityUnits")).cloned().unwrap_or(json!(0)),
                "NumberOfDecreasesToday": 0,
            }),
        );
        description.insert(
            "BillingModeSummary".into(),
            json!({"BillingMode": billing, "LastUpdateToPayPerRequestDateTime": now_seconds()}),
        );
        if !gsi_desc.is_empty() {
            description.insert("GlobalSecondaryIndexes".into(), Value::Array(gsi_desc));
        }
        if !lsi_desc.is_empty() {
            description.insert("LocalSecondaryIndexes".into(), Value::Array(lsi_desc));
        }
        let table = Arc::new(Table {
            name: name.to_owned(),
            schema: Arc::new(schema),
            indexes,
            description,
            ttl: RwLock::new(None),
            rows: RwLock::new(BTreeMap::new()),
        });
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        if tables.contains_key(name) {
            return Err(DynamoError::new(
                ErrorKind::ResourceInUse,
                format!("Table already exists: {name}"),
            ));
        }
        tables.insert(name.to_owned(), table.clone());
        drop(tables);
        Ok(json!({ "TableDescription": table.describe("ACTIVE") }))
    }

    fn delete_table(&self, req: &Value) -> DynamoResult<Value> {
        let name = required_str(req, "TableName", "tableName")?;
        let table = self
            .tables
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| DynamoError::not_found(name))?;
        Ok(json!({ "TableDescription": table.describe("DELETING") }))
    }

    fn list_tables(&self, req: &Value) -> DynamoResult<Value> {
        let limit = match req.get("Limit") {
            None => 100,
            Some(l) => match l.as_u64() {
                Some(n @ 1..=100) => n as usize,
                _ => {
                    return Err(DynamoError::validation(
                        "1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have value less than or equal to 100 and greater than or equal to 1",
                    ))
                }
            },
        };
        let start = str_field(req, "ExclusiveStartTableName");
        let mut names: Vec<String> = self.tables().keys().cloned().collect();
        names.sort();
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| start.is_none_or(|s| n.as_str() > s))
            .collect();
        let more = names.len() > limit;
        let page: Vec<String> = names.into_iter().take(limit).collect();
        let mut out = json!({ "TableNames": page });
        if more {
            if let Some(last) = page.last() {
                out["LastEvaluatedTableName"] = json!(last);
            }
        }
        Ok(out)
    }

    // ---- single-item operations ----

    fn prepare_put(&self, req: &Value, ctx: &mut ExprContext<'_>) -> DynamoResult<PreparedWrite> {
        let table = self.table(req)?;
        let item = req
            .get("Item")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                DynamoError::validation(
                    "1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null",
                )
            })?
            .clone();
        value::validate_item(&item)?;
        if value::item_size(&item) > 400 * 1024 {
            return Err(DynamoError::validation(
                "Item size has exceeded the maximum allowed size",
            ));
        }
        let pk = table.schema.key_of_item(&item)?;
        let condition = parse_condition(ctx, req)?;
        Ok(PreparedWrite {
            table,
            write: Write::Put { pk, item },
            condition,
            return_old_on_fail: fail_returns_old(req)?,
        })
    }

    fn prepare_keyed(
        &self,
        req: &Value,
        ctx: &mut ExprContext<'_>,
        kind: &str,
    ) -> DynamoResult<PreparedWrite> {
        let table = self.table(req)?;
        let key = req.get("Key").ok_or_else(key_mismatch)?;
        let pk = table.schema.key_of(key)?;
        let condition = parse_condition(ctx, req)?;
        let write = match kind {
            "Delete" => Write::Delete { pk },
            "ConditionCheck" => {
                if condition.is_none() {
                    return Err(DynamoError::validation(
                        "ConditionCheck requires a ConditionExpression",
                    ));
                }
                Write::Check { pk }
            }
            _ => {
                if req.get("AttributeUpdates").is_some() {
                    return Err(DynamoError::validation(
                        "alternator-sim does not support the legacy AttributeUpdates parameter; use UpdateExpression",
                    ));
                }
                let actions = match str_field(req, "UpdateExpression") {
                    Some(u) => ctx.parse_update(u)?,
                    None => Vec::new(),
                };
                Write::Update {
                    pk,
                    key: key.as_object().cloned().unwrap_or_default(),
                    actions,
                }
            }
        };
        Ok(PreparedWrite {
            table,
            write,
            condition,
            return_old_on_fail: fail_returns_old(req)?,
        })
    }

    fn put_item(&self, req: &Value) -> DynamoResult<Value> {
        let rv = return_values(req, &["NONE", "ALL_OLD"], "PutItem")?;
        let mut ctx = ExprContext::from_request(req);
        let w = self.prepare_put(req, &mut ctx)?;
        no_placeholders_without_expressions(req, w.condition.is_some())?;
        ctx.finish()?;
        let (old, _) = w.apply(&mut w.table.write())?;
        Ok(attributes(rv == "ALL_OLD", old))
    }

    fn delete_item(&self, req: &Value) -> DynamoResult<Value> {
        let rv = return_values(req, &["NONE", "ALL_OLD"], "DeleteItem")?;
        let mut ctx = ExprContext::from_request(req);
        let w = self.prepare_keyed(req, &mut ctx, "Delete")?;
        no_placeholders_without_expressions(req, w.condition.is_some())?;
        ctx.finish()?;
        let (old, _) = w.apply(&mut w.table.write())?;
        Ok(attributes(rv == "ALL_OLD", old))
    }

    fn update_item(&self, req: &Value) -> DynamoResult<Value> {
        let rv = return_values(
            req,
            &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
            "UpdateItem",
        )?;
        let mut ctx = ExprContext::from_request(req);
        let w = self.prepare_keyed(req, &mut ctx, "Update")?;
        no_placeholders_without_expressions(
            req,
            w.condition.is_some() || req.get("UpdateExpression").is_some(),
        )?;
        ctx.finish()?;
        let (old, updated) = w.apply(&mut w.table.write())?;
        let (new, touched) = updated.unwrap_or_default();
        let pick = |item: &Item| -> Item {
            touched
                .iter()
                .filter_map(|n| item.get(n).map(|v| (n.clone(), v.clone())))
                .collect()
        };
        Ok(match rv.as_str() {
            "ALL_OLD" => attributes(true, old),
            "UPDATED_OLD" => attributes(true, old.as_ref().map(pick)),
            "ALL_NEW" => attributes(true, Some(new)),
            "UPDATED_NEW" => attributes(true, Some(pick(&new))),
            _ => json!({}),
        })
    }

    fn get_item(&self, req: &Value) -> DynamoResult<Value> {
        let table = self.table(req)?;
        let pk = table
            .schema
            .key_of(req.get("Key").ok_or_else(key_mismatch)?)?;
        let mut ctx = ExprContext::from_request(req);
        let projection = parse_projection(&mut ctx, req)?;
        no_placeholders_without_expressions(req, req.get("ProjectionExpression").is_some())?;
        ctx.finish()?;
        let rows = table.read();
        let Some(item) = rows.get(&pk) else {
            return Ok(json!({}));
        };
        let item = match &projection {
            Some(p) => expr::project(item, p),
            None => item.clone(),
        };
        drop(rows);
        let mut out = Map::with_capacity(1);
        out.insert("Item".into(), Value::Object(item));
        Ok(Value::Object(out))
    }

    // ---- batches and transactions ----

    fn batch_write(&self, req: &Value) -> DynamoResult<Value> {
        let request_items = req
            .get("RequestItems")
            .and_then(Value::as_object)
            .ok_or_else(|| DynamoError::validation("RequestItems must not be null"))?;
        let mut writes = Vec::new();
        for (table_name, list) in request_items {
            let table = self.table_named(table_name)?;
            let list = list.as_array().ok_or_else(|| {
                DynamoError::validation("RequestItems values must be lists of write requests")
            })?;
            let mut seen = Vec::new();
            for w in list {
                let write = if let Some(put) = w.get("PutRequest") {
                    let item = put
                        .get("Item")
                        .and_then(Value::as_object)
                        .ok_or_else(|| DynamoError::validation("PutRequest must have an Item"))?
                        .clone();
                    value::validate_item(&item)?;
                    Write::Put {
                        pk: table.schema.key_of_item(&item)?,
                        item,
                    }
                } else if let Some(del) = w.get("DeleteRequest") {
                    Write::Delete {
                        pk: table
                            .schema
                            .key_of(del.get("Key").ok_or_else(key_mismatch)?)?,
                    }
                } else {
                    return Err(DynamoError::validation(
                        "Each WriteRequest must contain exactly one PutRequest or DeleteRequest",
                    ));
                };
                let pw = PreparedWrite {
                    table: table.clone(),
                    write,
                    condition: None,
                    return_old_on_fail: false,
                };
                if seen.contains(pw.pk()) {
                    return Err(DynamoError::validation(
                        "Provided list of item keys contains duplicates",
                    ));
                }
                seen.push(pw.pk().clone());
                writes.push(pw);
            }
        }
        if writes.len() > 25 {
            return Err(DynamoError::validation(
                "Too many items requested for the BatchWriteItem call",
            ));
        }
        if writes.is_empty() {
            return Err(DynamoError::validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        for w in &writes {
            w.apply(&mut w.table.write())?;
        }
        Ok(json!({ "UnprocessedItems": {} }))
    }

    fn batch_get(&self, req: &Value) -> DynamoResult<Value> {
        let request_items = req
            .get("RequestItems")
            .and_then(Value::as_object)
            .ok_or_else(|| DynamoError::validation("RequestItems must not be null"))?;
        let total: usize = request_items
            .values()
            .map(|t| t.get("Keys").and_then(Value::as_array).map_or(0, Vec::len))
            .sum();
        if total > 100 {
            return Err(DynamoError::validation(
                "Too many items requested for the BatchGetItem call",
            ));
        }
        let mut responses = Map::new();
        for (table_name, spec) in request_items {
            let table = self.table_named(table_name)?;
            let mut ctx = ExprContext::from_request(spec);
            let projection = parse_projection(&mut ctx, spec)?;
            ctx.finish()?;
            let keys = spec
                .get("Keys")
                .and_then(Value::as_array)
                .ok_or_else(|| DynamoError::validation("Keys must not be null"))?;
            let mut pks = Vec::with_capacity(keys.len());
            for k in keys {
                let pk = table.schema.key_of(k)?;
                if pks.contains(&pk) {
                    return Err(DynamoError::validation(
                        "Provided list of item keys contains duplicates",
                    ));
                }
                pks.push(pk);
            }
            let rows = table.read();
            let found: Vec<Value> = pks
                .iter()
                .filter_map(|pk| rows.get(pk))
                .map(|item| {
                    Value::Object(match &projection {
                        Some(p) => expr::project(item, p),
                        None => item.clone(),
                    })
                })
                .collect();
            responses.insert(table_name.clone(), Value::Array(found));
        }
        Ok(json!({ "Responses": responses, "UnprocessedKeys": {} }))
    }

    fn transact_write(&self, req: &Value) -> DynamoResult<Value> {
        let list = req
            .get("TransactItems")
            .and_then(Value::as_array)
            .ok_or_else(|| DynamoError::validation("TransactItems must not be null"))?;
        if list.is_empty() || list.len() > 100 {
            return Err(DynamoError::validation(
                "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100 and greater than or equal to 1",
            ));
        }
        let mut writes = Vec::with_capacity(list.len());
        for entry in list {
            let (kind, body) = ["Put", "Update", "Delete", "ConditionCheck"]
                .into_iter()
                .find_map(|k| entry.get(k).map(|b| (k, b)))
                .ok_or_else(|| {
                    DynamoError::validation(
                        "TransactItems can only contain one of Check, Put, Update or Delete",
                    )
                })?;
            let mut ctx = ExprContext::from_request(body);
            let w = if kind == "Put" {
                self.prepare_put(body, &mut ctx)?
            } else {
                self.prepare_keyed(body, &mut ctx, kind)?
            };
            ctx.finish()?;
            if writes
                .iter()
                .any(|o: &PreparedWrite| o.table.name == w.table.name && o.pk() == w.pk())
            {
                return Err(DynamoError::validation(
                    "Transaction request cannot include multiple operations on one item",
                ));
            }
            writes.push(w);
        }
        // Lock every table involved, in name order, then check all conditions before applying.
        let mut names: Vec<&str> = writes.iter().map(|w| w.table.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut guards: BTreeMap<&str, RwLockWriteGuard<'_, Rows>> = BTreeMap::new();
        for n in &names {
            if let Some(w) = writes.iter().find(|w| w.table.name == *n) {
                guards.insert(n, w.table.write());
            }
        }
        let mut reasons = Vec::with_capacity(writes.len());
        let mut failed = false;
        for w in &writes {
            let rows = guards.get(w.table.name.as_str()).ok_or_else(internal)?;
            match w.check(rows).and_then(|_| w.updated(rows).map(|_| ())) {
                Ok(()) => reasons.push(json!({"Code": "None"})),
                Err(e) if e.kind == ErrorKind::ConditionalCheckFailed => {
                    failed = true;
                    let mut r = json!({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"});
                    if let Some(item) = e.extra.get("Item") {
                        r["Item"] = item.clone();
                    }
                    reasons.push(r);
                }
                Err(e) => return Err(e),
            }
        }
        if failed {
            let codes: Vec<&str> = reasons
                .iter()
                .map(|r| r["Code"].as_str().unwrap_or("None"))
                .collect();
            let mut e = DynamoError::new(
                ErrorKind::TransactionCanceled,
                format!(
                    "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                    codes.join(", ")
                ),
            );
            e.extra
                .insert("CancellationReasons".into(), Value::Array(reasons));
            return Err(e);
        }
        for w in &writes {
            let rows = guards.get_mut(w.table.name.as_str()).ok_or_else(internal)?;
            w.apply(rows)?;
        }
        Ok(json!({}))
    }

    fn transact_get(&self, req: &Value) -> DynamoResult<Value> {
        let list = req
            .get("TransactItems")
            .and_then(Value::as_array)
            .ok_or_else(|| DynamoError::validation("TransactItems must not be null"))?;
        let mut out = Vec::with_capacity(list.len());
        for entry in list {
            let get = entry
                .get("Get")
                .ok_or_else(|| DynamoError::validation("TransactGetItem must contain Get"))?;
            let res = self.get_item(get)?;
            out.push(match res.get("Item") {
                Some(i) => json!({"Item": i}),
                None => json!({}),
            });
        }
        Ok(json!({ "Responses": out }))
    }

    // ---- Query and Scan ----

    fn query(&self, req: &Value) -> DynamoResult<Value> {
        let table = self.table(req)?;
        let index = str_field(req, "IndexName")
            .map(|n| table.index(n))
            .transpose()?;
        let schema = index.map_or(&table.schema, |i| &i.schema);
        let mut ctx = ExprContext::from_request(req);
        let kc_text = str_field(req, "KeyConditionExpression").ok_or_else(|| {
            DynamoError::validation(
                "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.",
            )
        })?;
        let kc_cond = ctx.parse_condition("KeyConditionExpression", kc_text)?;
        let kc = expr::analyze_key_condition(
            kc_cond,
            (&schema.hash.name, &schema.hash.ty),
            schema
                .range
                .as_ref()
                .map(|r| (r.name.as_str(), r.ty.as_str())),
        )?;
        let filter = str_field(req, "FilterExpression")
            .map(|f| ctx.parse_condition("FilterExpression", f))
            .transpose()?;
        let projection = parse_projection(&mut ctx, req)?;
        ctx.finish()?;
        let page = PageRequest::parse(req)?;
        let hash = KeyValue::from_av(&kc.hash).ok_or_else(key_mismatch)?;
        let rows = table.read();
        let mut candidates: Vec<(OrderKey, &Item)> = match index {
            None => rows
                .range((hash.clone(), None)..)
                .take_while(|(k, _)| k.0 == hash)
                .map(|(k, item)| ((None, k.clone()), item))
                .collect(),
            Some(idx) => {
                let mut v: Vec<(OrderKey, &Item)> = rows
                    .iter()
                    .filter_map(|(k, item)| {
                        let ik = idx.schema.index_key(item)?;
                        (ik.0 == hash).then(|| ((ik.1, k.clone()), item))
                    })
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            }
        };
        if let (Some(rc), Some(range)) = (&kc.range, &schema.range) {
            candidates.retain(|(_, item)| item.get(&range.name).is_some_and(|v| rc.matches(v)));
        }
        let forward = req
            .get("ScanIndexForward")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if !forward {
            candidates.reverse();
        }
        let start = page
            .exclusive_start
            .as_ref()
            .map(|esk| self.order_key_of(&table, index, esk, false))
            .transpose()?;
        let result = paginate(
            &table,
            index,
            candidates,
            start,
            forward,
            &page,
            filter.as_ref(),
            projection.as_deref(),
        );
        drop(rows);
        Ok(result)
    }

    fn scan(&self, req: &Value) -> DynamoResult<Value> {
        let table = self.table(req)?;
        let index = str_field(req, "IndexName")
            .map(|n| table.index(n))
            .transpose()?;
        let mut ctx = ExprContext::from_request(req);
        let filter = str_field(req, "FilterExpression")
            .map(|f| ctx.parse_condition("FilterExpression", f))
            .transpose()?;
        let projection = parse_projection(&mut ctx, req)?;
        no_placeholders_without_expressions(
            req,
            filter.is_some() || req.get("ProjectionExpression").is_some(),
        )?;
        ctx.finish()?;
        let page = PageRequest::parse(req)?;
        let segment = match (req.get("Segment"), req.get("TotalSegments")) {
            (None, None) => None,
            (Some(s), Some(t)) => match (s.as_u64(), t.as_u64()) {
                (Some(s), Some(t)) if (1..=1_000_000).contains(&t) && s < t => Some((s, t)),
                _ => {
                    return Err(DynamoError::validation(
                        "The Segment parameter is zero-based and must be less than parameter TotalSegments",
                    ))
                }
            },
            _ => {
                return Err(DynamoError::validation(
                    "The TotalSegments parameter is required but was not present in the request when Segment parameter is present",
                ))
            }
        };
        let rows = table.read();
        let mut candidates: Vec<(OrderKey, &Item)> = match index {
            None => rows
                .iter()
                .map(|(k, item)| ((None, k.clone()), item))
                .collect(),
            Some(idx) => {
                let mut v: Vec<(OrderKey, &Item)> = rows
                    .iter()
                    .filter_map(|(k, item)| {
                        let ik = idx.schema.index_key(item)?;
                        Some(((Some(ik.0), k.clone()), item))
                    })
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            }
        };
        if let Some((s, t)) = segment {
            candidates.retain(|((_, pk), _)| {
                let mut h = DefaultHasher::new();
                pk.0.hash(&mut h);
                h.finish() % t == s
            });
        }
        let start = page
            .exclusive_start
            .as_ref()
            .map(|esk| self.order_key_of(&table, index, esk, true))
            .transpose()?;
        let result = paginate(
            &table,
            index,
            candidates,
            start,
            true,
            &page,
            filter.as_ref(),
            projection.as_deref(),
        );
        drop(rows);
        Ok(result)
    }

    /// Where an `ExclusiveStartKey` sits in a Query (`by_index_hash` false: ordered by the
    /// index sort key) or a Scan (`by_index_hash` true: ordered by the index hash key).
    fn order_key_of(
        &self,
        table: &Table,
        index: Option<&Index>,
        esk: &Value,
        by_index_hash: bool,
    ) -> DynamoResult<OrderKey> {
        let item = esk.as_object().ok_or_else(invalid_start_key)?;
        let pk = table
            .schema
            .key_of(&Value::Object(table.schema.key_item(item)))
            .map_err(|_| invalid_start_key())?;
        Ok(match index {
            None => (None, pk),
            Some(idx) => {
                let ik = idx.schema.index_key(item).ok_or_else(invalid_start_key)?;
                (if by_index_hash { Some(ik.0) } else { ik.1 }, pk)
            }
        })
    }
}

fn internal() -> DynamoError {
    DynamoError::new(ErrorKind::InternalServerError, "internal error")
}

fn invalid_start_key() -> DynamoError {
    DynamoError::validation(
        "The provided starting key is invalid: The provided key element does not match the schema",
    )
}

fn attributes(wanted: bool, item: Option<Item>) -> Value {
    match (wanted, item) {
        (true, Some(item)) => {
            let mut out = Map::with_capacity(1);
            out.insert("Attributes".into(), Value::Object(item));
            Value::Object(out)
        }
        _ => json!({}),
    }
}

fn parse_key_schema(
    ks: &Value,
    types: &HashMap<&str, &str>,
    what: &str,
) -> DynamoResult<KeySchema> {
    let list = ks.as_array().ok_or_else(|| {
        DynamoError::validation(format!(
            "1 validation error detected: Value null at '{what}' failed to satisfy constraint: Member must not be null"
        ))
    })?;
    let mut hash = None;
    let mut range = None;
    for (i, e) in list.iter().enumerate() {
        let name = str_field(e, "AttributeName").unwrap_or("");
        let ty = types.get(name).ok_or_else(|| {
            DynamoError::validation(format!(
                "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{name}]"
            ))
        })?;
        let attr = KeyAttr {
            name: name.to_owned(),
            ty: (*ty).to_owned(),
        };
        match (i, str_field(e, "KeyType")) {
            (0, Some("HASH")) => hash = Some(attr),
            (1, Some("RANGE")) => range = Some(attr),
            _ => {
                return Err(DynamoError::validation(
                    "Invalid KeySchema: The first KeySchemaElement is not a HASH key type, or the second is not a RANGE key type",
                ))
            }
        }
    }
    if list.len() > 2 {
        return Err(DynamoError::validation(
            "1 validation error detected: Value at 'keySchema' failed to satisfy constraint: Member must have length less than or equal to 2",
        ));
    }
    let hash = hash.ok_or_else(|| {
        DynamoError::validation("Invalid KeySchema: Some index key attribute have no definition")
    })?;
    Ok(KeySchema { hash, range })
}

/// Position of an item in a Query/Scan: (index sort key, table primary key).
type OrderKey = (Option<KeyValue>, PrimaryKey);

/// A Query's or Scan's `Limit`: absent, or a whole number of at least 1 (DynamoDB's
/// validation error otherwise).
pub(crate) fn parse_limit(req: &Value) -> DynamoResult<Option<usize>> {
    match req.get("Limit") {
        None => Ok(None),
        Some(l) => match l.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n as usize)),
            _ => Err(DynamoError::validation(
                "1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
            )),
        },
    }
}

struct PageRequest {
    limit: Option<usize>,
    count_only: bool,
    exclusive_start: Option<Value>,
}

impl PageRequest {
    fn parse(req: &Value) -> DynamoResult<Self> {
        let limit = parse_limit(req)?;
        let count_only = match str_field(req, "Select") {
            None | Some("ALL_ATTRIBUTES" | "ALL_PROJECTED_ATTRIBUTES" | "SPECIFIC_ATTRIBUTES") => {
                false
            }
            Some("COUNT") => true,
            Some(other) => {
                return Err(DynamoError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'select' failed to satisfy constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]"
                )))
            }
        };
        Ok(PageRequest {
            limit,
            count_only,
            exclusive_start: req.get("ExclusiveStartKey").cloned(),
        })
    }
}

fn index_view(table: &Table, index: Option<&Index>, item: &Item) -> Item {
    let Some(idx) = index else {
        return item.clone();
    };
    let keep = |n: &str| table.schema.names().contains(&n) || idx.schema.names().contains(&n);
    match &idx.projection {
        IndexProjection::All => item.clone(),
        IndexProjection::KeysOnly => item
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        IndexProjection::Include(extra) => item
            .iter()
            .filter(|(k, _)| keep(k) || extra.iter().any(|e| e == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn paginate(
    table: &Table,
    index: Option<&Index>,
    candidates: Vec<(OrderKey, &Item)>,
    start: Option<OrderKey>,
    forward: bool,
    page: &PageRequest,
    filter: Option<&Condition>,
    projection: Option<&[Path]>,
) -> Value {
    let mut items = Vec::new();
    let mut scanned = 0usize;
    let mut count = 0usize;
    let mut last: Option<&Item> = None;
    let mut more = false;
    let after_start = |k: &OrderKey| match &start {
        None => true,
        Some(s) => {
            if forward {
                k > s
            } else {
                k < s
            }
        }
    };
    for (_, item) in candidates.iter().filter(|(k, _)| after_start(k)) {
        if page.limit.is_some_and(|l| scanned >= l) {
            more = true;
            break;
        }
        scanned += 1;
        last = Some(item);
        if filter.is_some_and(|f| !f.eval(item)) {
            continue;
        }
        count += 1;
        if !page.count_only {
            let view = index_view(table, index, item);
            let out = match projection {
                Some(p) => expr::project(&view, p),
                None => view,
            };
            items.push(Value::Object(out));
        }
    }
    let mut out = Map::new();
    if !page.count_only {
        out.insert("Items".into(), Value::Array(items));
    }
    out.insert("Count".into(), json!(count));
    out.insert("ScannedCount".into(), json!(scanned));
    if more {
        if let Some(item) = last {
            let mut key = table.schema.key_item(item);
            if let Some(idx) = index {
                key.extend(idx.schema.key_item(item));
            }
            out.insert("LastEvaluatedKey".into(), Value::Object(key));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(store: &Store, op: Operation, req: Value) -> DynamoResult<Value> {
        store.handle(op, &req, "127.0.0.1:8000")
    }

    fn ok(store: &Store, op: Operation, req: Value) -> Value {
        call(store, op, req).unwrap_or_else(|e| panic!("{op:?} failed: {}", e.message))
    }

    fn setup() -> Store {
        let s = Store::new();
        ok(
            &s,
            Operation::CreateTable,
            json!({
                "TableName": "tbl",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
            }),
        );
        for i in 0..5 {
            ok(
                &s,
                Operation::PutItem,
                json!({"TableName": "tbl", "Item": {"pk": {"S": "a"}, "sk": {"N": i.to_string()}, "v": {"N": "1"}}}),
            );
        }
        s
    }

    #[test]
    fn query_orders_by_sort_key_and_pages() {
        let s = setup();
        let r = ok(
            &s,
            Operation::Query,
            json!({"TableName": "tbl", "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
                   "ExpressionAttributeValues": {":p": {"S": "a"}, ":a": {"N": "1"}, ":b": {"N": "3"}},
                   "ScanIndexForward": false, "Limit": 2}),
        );
        assert_eq!(r["Count"], json!(2));
        assert_eq!(r["Items"][0]["sk"], json!({"N": "3"}));
        assert_eq!(r["Items"][1]["sk"], json!({"N": "2"}));
        let lek = r["LastEvaluatedKey"].clone();
        let r2 = ok(
            &s,
            Operation::Query,
            json!({"TableName": "tbl", "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
                   "ExpressionAttributeValues": {":p": {"S": "a"}, ":a": {"N": "1"}, ":b": {"N": "3"}},
                   "ScanIndexForward": false, "Limit": 2, "ExclusiveStartKey": lek}),
        );
        assert_eq!(r2["Count"], json!(1));
        assert_eq!(r2["Items"][0]["sk"], json!({"N": "1"}));
        assert!(r2.get("LastEvaluatedKey").is_none());
    }

    #[test]
    fn update_counter_and_condition() {
        let s = setup();
        let r = ok(
            &s,
            Operation::UpdateItem,
            json!({"TableName": "tbl", "Key": {"pk": {"S": "a"}, "sk": {"N": "0"}},
                   "UpdateExpression": "SET v = v + :one, #t = :t REMOVE gone ADD c :one",
                   "ConditionExpression": "attribute_exists(pk) AND v < :ten",
                   "ExpressionAttributeNames": {"#t": "tag"},
                   "ExpressionAttributeValues": {":one": {"N": "1"}, ":t": {"S": "x"}, ":ten": {"N": "10"}},
                   "ReturnValues": "ALL_NEW"}),
        );
        assert_eq!(r["Attributes"]["v"], json!({"N": "2"}));
        assert_eq!(r["Attributes"]["c"], json!({"N": "1"}));
        assert_eq!(r["Attributes"]["tag"], json!({"S": "x"}));
        let e = call(
            &s,
            Operation::PutItem,
            json!({"TableName": "tbl", "Item": {"pk": {"S": "a"}, "sk": {"N": "0"}},
                   "ConditionExpression": "attribute_not_exists(pk)"}),
        );
        assert!(matches!(e, Err(e) if e.kind == ErrorKind::ConditionalCheckFailed));
    }

    #[test]
    fn unused_placeholder_is_rejected() {
        let s = setup();
        let e = call(
            &s,
            Operation::GetItem,
            json!({"TableName": "tbl", "Key": {"pk": {"S": "a"}, "sk": {"N": "0"}},
                   "ProjectionExpression": "v", "ExpressionAttributeNames": {"#x": "y"}}),
        );
        assert!(matches!(e, Err(e) if e.kind == ErrorKind::Validation));
    }
}
