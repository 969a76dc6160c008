//! Key schemas are learned from `CreateTable` requests and from table descriptions.

use super::*;

#[test]
fn key_schemas_are_learned_from_create_and_describe() {
    let expected = Some(TableHashKey {
        table: "users".into(),
        hash_key: "pk".into(),
    });
    let create_request = br#"{"AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],
        "KeySchema":[{"AttributeName":"sk","KeyType":"RANGE"},{"KeyType":"HASH","AttributeName":"pk"}],
        "BillingMode":"PAY_PER_REQUEST","TableName":"users"}"#;
    assert_eq!(create_table_key_schema(create_request), expected);
    let describe = br#"{"Table":{"TableName":"users","TableStatus":"ACTIVE",
        "KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"ItemCount":0}}"#;
    assert_eq!(table_description_key_schema(describe), expected);
    let create_response = br#"{"TableDescription":{"KeySchema":[{"AttributeName":"p\u006b","KeyType":"HASH"}],"TableName":"users"}}"#;
    assert_eq!(table_description_key_schema(create_response), expected);

    for bad in [
        &br#"{"Table":{"TableName":"users","KeySchema":[{"AttributeName":"sk","KeyType":"RANGE"}]}}"#[..],
        br#"{"Table":{"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}]}}"#,
        br#"{"Table":{"TableName":"users","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}]}"#,
        br#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"}"#,
        b"",
    ] {
        assert_eq!(table_description_key_schema(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}
