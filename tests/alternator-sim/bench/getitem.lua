-- wrk script: DynamoDB GetItem against one alternator-sim node (see ../README.md, "Speed").
wrk.method = "POST"
wrk.path = "/"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.GetItem"
wrk.body = '{"TableName":"bench","Key":{"pk":{"S":"key-1"}}}'
