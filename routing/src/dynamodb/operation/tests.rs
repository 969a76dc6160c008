//! Operations are named by the target header exactly, and every name round-trips.

use super::*;

#[test]
fn operations_come_from_the_target_header() {
    assert_eq!(
        Operation::from_target("DynamoDB_20120810.PutItem"),
        Operation::PutItem
    );
    assert_eq!(
        Operation::from_target("DynamoDB_20120810.BatchWriteItem"),
        Operation::BatchWriteItem
    );
    for (op, name) in OPERATIONS {
        assert_eq!(
            Operation::from_target(&format!("{TARGET_PREFIX}{name}")),
            op
        );
        assert_eq!(op.as_str(), name);
    }
    for other in [
        "",
        "PutItem",
        "DynamoDB_20120810.",
        "DynamoDB_20120810.putitem",
        "DynamoDB_20120810.PutItem ",
        "DynamoDB_20111205.PutItem",
        "DynamoDBStreams_20120810.GetRecords",
        "DynamoDB_20120810.FrobnicateItem",
    ] {
        assert_eq!(Operation::from_target(other), Operation::Other, "{other:?}");
    }
    assert_eq!(Operation::Other.as_str(), "Other");
}
