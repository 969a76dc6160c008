//! The operation a request names in its `X-Amz-Target` header.
//!
//! It is the one thing routing knows about a request in the headers callback, before any body
//! byte arrives, so whether to buffer the body at all is decided from it alone (see
//! [`needs_body`](super::needs_body)). An unknown target is ordinary traffic: parsing never
//! fails.

#[cfg(test)]
mod tests;

/// The `X-Amz-Target` prefix of DynamoDB API version 2012-08-10.
pub const TARGET_PREFIX: &str = "DynamoDB_20120810.";

/// A DynamoDB operation, named by the `X-Amz-Target` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `PutItem`
    PutItem,
    /// `GetItem`
    GetItem,
    /// `UpdateItem`
    UpdateItem,
    /// `DeleteItem`
    DeleteItem,
    /// `BatchWriteItem`
    BatchWriteItem,
    /// `BatchGetItem`
    BatchGetItem,
    /// `Query`
    Query,
    /// `Scan`
    Scan,
    /// `TransactWriteItems`
    TransactWriteItems,
    /// `TransactGetItems`
    TransactGetItems,
    /// `CreateTable`
    CreateTable,
    /// `DescribeTable`
    DescribeTable,
    /// `UpdateTable`
    UpdateTable,
    /// `DeleteTable`
    DeleteTable,
    /// `ListTables`
    ListTables,
    /// `DescribeEndpoints`
    DescribeEndpoints,
    /// `DescribeTimeToLive`
    DescribeTimeToLive,
    /// `UpdateTimeToLive`
    UpdateTimeToLive,
    /// `TagResource`
    TagResource,
    /// `UntagResource`
    UntagResource,
    /// `ListTagsOfResource`
    ListTagsOfResource,
    /// Any other or unknown operation, or a target that is not DynamoDB 2012-08-10.
    Other,
}

/// Every named operation with its wire name, for parsing and metric labels.
const OPERATIONS: [(Operation, &str); 21] = [
    (Operation::PutItem, "PutItem"),
    (Operation::GetItem, "GetItem"),
    (Operation::UpdateItem, "UpdateItem"),
    (Operation::DeleteItem, "DeleteItem"),
    (Operation::BatchWriteItem, "BatchWriteItem"),
    (Operation::BatchGetItem, "BatchGetItem"),
    (Operation::Query, "Query"),
    (Operation::Scan, "Scan"),
    (Operation::TransactWriteItems, "TransactWriteItems"),
    (Operation::TransactGetItems, "TransactGetItems"),
    (Operation::CreateTable, "CreateTable"),
    (Operation::DescribeTable, "DescribeTable"),
    (Operation::UpdateTable, "UpdateTable"),
    (Operation::DeleteTable, "DeleteTable"),
    (Operation::ListTables, "ListTables"),
    (Operation::DescribeEndpoints, "DescribeEndpoints"),
    (Operation::DescribeTimeToLive, "DescribeTimeToLive"),
    (Operation::UpdateTimeToLive, "UpdateTimeToLive"),
    (Operation::TagResource, "TagResource"),
    (Operation::UntagResource, "UntagResource"),
    (Operation::ListTagsOfResource, "ListTagsOfResource"),
];

impl Operation {
    /// The operation named by an `X-Amz-Target` header value such as
    /// `DynamoDB_20120810.PutItem`. Anything else, including a missing prefix, another API
    /// version or an operation this crate does not name, is [`Operation::Other`]: an unknown
    /// target is ordinary traffic, never an error.
    pub fn from_target(target: &str) -> Operation {
        match target.strip_prefix(TARGET_PREFIX) {
            Some(name) => Operation::from_name(name),
            None => Operation::Other,
        }
    }

    /// The operation with this exact (case-sensitive) name, or [`Operation::Other`].
    pub fn from_name(name: &str) -> Operation {
        OPERATIONS
            .iter()
            .find(|(_, n)| *n == name)
            .map_or(Operation::Other, |(op, _)| *op)
    }

    /// The wire name (`"PutItem"`), or `"Other"`; suitable as a metric label.
    pub fn as_str(self) -> &'static str {
        OPERATIONS
            .iter()
            .find(|(op, _)| *op == self)
            .map_or("Other", |(_, n)| n)
    }

    /// `PutItem`, `UpdateItem` or `DeleteItem`: the writes that affinity may route by one key.
    pub fn is_single_item_write(self) -> bool {
        matches!(
            self,
            Operation::PutItem | Operation::UpdateItem | Operation::DeleteItem
        )
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
