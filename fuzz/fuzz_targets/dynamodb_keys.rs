//! DynamoDB request and response bodies are client (or node) controlled. Key extraction must
//! never panic, for every operation and every affinity mode, and a request that is not eligible
//! in a mode must never yield a target.
#![no_main]

use std::collections::HashMap;

use alternator_routing::affinity::request_target;
use alternator_routing::dynamodb::{
    batch_write_keys, create_table_key_schema, item_key, needs_body, reads_before_write,
    table_description_key_schema, AffinityMode, Operation,
};
use libfuzzer_sys::fuzz_target;

const OPERATIONS: [&str; 22] = [
    "PutItem",
    "GetItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "TransactWriteItems",
    "TransactGetItems",
    "CreateTable",
    "DescribeTable",
    "UpdateTable",
    "DeleteTable",
    "ListTables",
    "DescribeEndpoints",
    "DescribeTimeToLive",
    "UpdateTimeToLive",
    "TagResource",
    "UntagResource",
    "ListTagsOfResource",
    "NotAnOperation",
];
const MODES: [AffinityMode; 3] = [
    AffinityMode::None,
    AffinityMode::Rmw,
    AffinityMode::AnyWrite,
];

fuzz_target!(|body: &[u8]| {
    // The tables the corpus uses, with their key names, plus whatever the body itself declares
    // (as the filter learns from CreateTable), so both known- and unknown-table paths run.
    let mut schemas: HashMap<String, String> = [("t", "pk"), ("orders", "id")]
        .map(|(t, k)| (t.to_owned(), k.to_owned()))
        .into();
    for learned in [
        create_table_key_schema(body),
        table_description_key_schema(body),
    ]
    .into_iter()
    .flatten()
    {
        schemas.insert(learned.table, learned.hash_key);
    }

    for name in OPERATIONS {
        let op = Operation::from_name(name);
        let _ = reads_before_write(op, body);
        if let Ok(key) = item_key(op, body, &schemas) {
            let _ = key.affinity_hash();
        }
        for mode in MODES {
            let target = request_target(mode, op, body, &schemas);
            if !needs_body(mode, op) {
                assert!(
                    target.is_err(),
                    "{name} got a target in {mode:?} without needing a body"
                );
            }
        }
    }
    if let Ok((keys, _skipped)) = batch_write_keys(body, &schemas) {
        assert!(!keys.is_empty(), "a batch target without keys");
    }
});
