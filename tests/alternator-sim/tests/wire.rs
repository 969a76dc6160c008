//! The sim's HTTP as bytes on the wire: request bodies read as Alternator reads them (the
//! 16 MiB limit, `Content-Encoding: gzip` / `deflate`, SigV4 over the compressed body), and
//! `--backend` relaying requests and answers exactly. Requests are written by hand over TCP so
//! that what the sim sends and receives is checked byte for byte.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use alternator_sim::{Credentials, NodeSpec, Sim, SimConfig};
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: usize = 16 * 1024 * 1024;
const TOO_LARGE: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#PayloadTooLarge","message":"Request content length limit of 16777216 bytes exceeded"}"#;
const TARGET: &str = "DynamoDB_20120810.";

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn start(config: SimConfig) -> Sim {
    Sim::start(config)
        .await
        .unwrap_or_else(|e| panic!("sim did not start: {e}"))
}

fn one_node() -> SimConfig {
    SimConfig::new(vec![NodeSpec::new(ip(1), "dc1", "rack1")])
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap_or_else(|e| panic!("{e}"));
    e.finish().unwrap_or_else(|e| panic!("{e}"))
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap_or_else(|e| panic!("{e}"));
    e.finish().unwrap_or_else(|e| panic!("{e}"))
}

/// One HTTP/1.1 message as read off the wire.
#[derive(Debug, Clone)]
struct Message {
    /// The request or status line.
    start: String,
    /// Header lines in wire order, names as sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one message with a `Content-Length` body (or none) from `stream`; `None` at a clean
/// end of the connection.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Message> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut more = [0u8; 65536];
        match stream.read(&mut more).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&more[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < len {
        let mut more = vec![0u8; 1 << 20];
        match stream.read(&mut more).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&more[..n]),
        }
    }
    let body = buf.drain(..len).collect();
    Some(Message {
        start,
        headers,
        body,
    })
}

/// Writes `request` on a new connection and reads one answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Message {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .write_all(request)
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), read_message(&mut stream, &mut buf))
        .await
        .unwrap_or_else(|_| panic!("no answer within 30 s"))
        .unwrap_or_else(|| panic!("connection closed without an answer"))
}

/// A DynamoDB request as bytes: `POST /`, the operation, extra header lines, the body.
fn dynamo_request(addr: SocketAddr, op: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: {TARGET}{op}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

fn error_body(kind: &str, message: &str) -> String {
    format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"{message}"}}"#)
}

const TABLE: &str = r#"{"TableName":"items","KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"BillingMode":"PAY_PER_REQUEST"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_deflate_bodies_are_served_like_plain_ones() {
    let sim = start(one_node()).await;
    let addr = sim.endpoint(ip(1));
    let a = exchange(
        addr,
        &dynamo_request(addr, "CreateTable", &[], TABLE.as_bytes()),
    )
    .await;
    assert_eq!(a.start, "HTTP/1.1 200 OK", "{}", a.text());

    let put = br#"{"TableName":"items","Item":{"pk":{"S":"gz"},"v":{"N":"1"}}}"#;
    let gz = [("Content-Encoding", "gzip")];
    let a = exchange(addr, &dynamo_request(addr, "PutItem", &gz, &gzip(put))).await;
    assert_eq!(a.start, "HTTP/1.1 200 OK", "{}", a.text());
    let put = br#"{"TableName":"items","Item":{"pk":{"S":"zl"},"v":{"N":"2"}}}"#;
    let zl = [("Content-Encoding", "deflate")];
    let a = exchange(addr, &dynamo_request(addr, "PutItem", &zl, &zlib(put))).await;
    assert_eq!(a.start, "HTTP/1.1 200 OK", "{}", a.text());

    // Chunked in pieces: one body again, then inflated.
    let put = gzip(br#"{"TableName":"items","Item":{"pk":{"S":"ch"},"v":{"N":"3"}}}"#);
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: {TARGET}PutItem\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for piece in put.chunks(7) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let a = exchange(addr, &req).await;
    assert_eq!(a.start, "HTTP/1.1 200 OK", "{}", a.text());

    for (key, value) in [("gz", "1"), ("zl", "2"), ("ch", "3")] {
        let get = format!(r#"{{"TableName":"items","Key":{{"pk":{{"S":"{key}"}}}}}}"#);
        let a = exchange(addr, &dynamo_request(addr, "GetItem", &[], get.as_bytes())).await;
        assert_eq!(
            a.text(),
            format!(r#"{{"Item":{{"pk":{{"S":"{key}"}},"v":{{"N":"{value}"}}}}}}"#)
        );
    }
    // The key log saw the decompressed requests.
    let keys: Vec<_> = sim.keylog().into_iter().map(|e| e.key).collect();
    assert!(keys.contains(&serde_json::json!({"S": "gz"})), "{keys:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_corrupt_and_truncated_bodies_get_alternators_500s() {
    let sim = start(one_node()).await;
    let addr = sim.endpoint(ip(1));
    let body = br#"{}"#;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("br", body.to_vec(), "Unsupported Content-Encoding"),
        ("GZIP", gzip(body), "Unsupported Content-Encoding"),
        (
            "gzip",
            body.to_vec(),
            "Error during gzip decompression of request body",
        ),
        (
            "gzip",
            gzip(body)[..10].to_vec(),
            "Truncated gzip in request body",
        ),
        ("deflate", Vec::new(), "Truncated gzip in request body"),
    ];
    for (encoding, sent, message) in cases {
        let req = dynamo_request(addr, "ListTables", &[("Content-Encoding", encoding)], &sent);
        let a = exchange(addr, &req).await;
        assert_eq!(a.start, "HTTP/1.1 500 Internal Server Error", "{encoding}");
        assert_eq!(
            a.text(),
            error_body("InternalServerError", message),
            "{encoding}"
        );
        assert_eq!(a.header("content-type"), Some("application/x-amz-json-1.0"));
        assert_eq!(a.header("server"), Some("Seastar httpd"));
    }
    // The encoding is checked before the operation, as in Alternator.
    let req = dynamo_request(addr, "NoSuchThing", &[("Content-Encoding", "br")], body);
    assert!(exchange(addr, &req).await.start.contains(" 500 "));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigv4_covers_the_body_as_sent_not_as_decompressed() {
    let creds: Credentials = "AKIDSIM:sim-secret"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let sim = start(SimConfig {
        enforce_auth: Some(creds.clone()),
        ..one_node()
    })
    .await;
    let addr = sim.endpoint(ip(1));
    let host = addr.to_string();
    let plain = b"{}";
    let compressed = gzip(plain);
    let signed = |signed_body: &[u8]| {
        let mut headers = vec![("Content-Encoding".to_owned(), "gzip".to_owned())];
        headers.extend(alternator_sim::sigv4::sign(
            "POST",
            &host,
            "/",
            &[
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "DynamoDB_20120810.ListTables"),
                ("content-encoding", "gzip"),
            ],
            signed_body,
            &creds,
            "us-east-1",
            SystemTime::now(),
        ));
        headers
    };
    let send = |headers: Vec<(String, String)>| {
        let extra: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        dynamo_request(addr, "ListTables", &extra, &compressed)
    };
    let a = exchange(addr, &send(signed(&compressed))).await;
    assert_eq!(a.start, "HTTP/1.1 200 OK", "{}", a.text());
    assert_eq!(a.text(), r#"{"TableNames":[]}"#);
    // Signed over the decompressed body: the signature does not match what was sent.
    let a = exchange(addr, &send(signed(plain))).await;
    assert_eq!(a.start, "HTTP/1.1 400 Bad Request");
    assert!(
        a.text().contains("#InvalidSignatureException"),
        "{}",
        a.text()
    );
    sim.shutdown().await;
}

/// Reads answers on a connection until it closes; true if it closed (rather than staying
/// open) within 10 s.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_to_end)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_16_mib_get_alternators_413_and_the_connection_closes() {
    let sim = start(one_node()).await;
    let addr = sim.endpoint(ip(1));

    // At the limit: read and parsed (not JSON, so a 400, but no 413).
    let at_limit = vec![b' '; LIMIT];
    let a = exchange(addr, &dynamo_request(addr, "ListTables", &[], &at_limit)).await;
    assert_eq!(a.start, "HTTP/1.1 400 Bad Request", "{}", a.text());

    // Declared and sent: one byte over.
    let over = vec![b' '; LIMIT + 1];
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(&dynamo_request(addr, "ListTables", &[], &over))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = Vec::new();
    let a = read_message(&mut stream, &mut buf)
        .await
        .unwrap_or_else(|| panic!("no answer"));
    assert_eq!(a.start, "HTTP/1.1 413 Payload Too Large");
    assert_eq!(a.text(), TOO_LARGE);
    assert_eq!(a.header("content-type"), Some("application/x-amz-json-1.0"));
    assert_eq!(a.header("server"), Some("Seastar httpd"));
    assert_eq!(a.header("connection"), Some("close"));
    assert!(closes(&mut stream).await, "the connection stayed open");

    // Chunked, no length declared: found while reading.
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: {TARGET}ListTables\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let piece = vec![b' '; 1 << 20];
    for _ in 0..17 {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(&piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let a = exchange(addr, &req).await;
    assert_eq!(a.start, "HTTP/1.1 413 Payload Too Large");
    assert_eq!(a.text(), TOO_LARGE);

    // A small gzip body that inflates past the limit.
    let bomb = gzip(&over);
    assert!(bomb.len() < 100_000);
    let req = dynamo_request(addr, "ListTables", &[("Content-Encoding", "gzip")], &bomb);
    let a = exchange(addr, &req).await;
    assert_eq!(a.start, "HTTP/1.1 413 Payload Too Large");
    assert_eq!(a.text(), TOO_LARGE);
    // Every one of them counted as a request the node received.
    assert_eq!(sim.counters().total(ip(1)), 4);
    sim.shutdown().await;
}

/// A request as the test writes it: method, path with query, extra headers, body.
type RawRequest<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>);

/// What the fake backend saw.
#[derive(Debug, Default)]
struct FakeBackend {
    seen: Mutex<Vec<Message>>,
}

/// The fake backend's answer: a reason phrase of its own, a repeated header, mixed-case names,
/// no `Content-Type`, `Server` or `Date`, and a body that is not JSON.
const BACKEND_ANSWER: &[u8] =
    b"HTTP/1.1 299 Fine Thanks\r\nX-Amzn-RequestId: req-1\r\nX-Repeated: one\r\nx-repeated: two\r\nContent-Length: 11\r\n\r\nnot \x00 json!";

/// A backend on a free loopback port that records each request and answers [`BACKEND_ANSWER`]
/// (a DescribeTable, which the sim sends for its key log, gets a table description).
async fn fake_backend() -> (SocketAddr, Arc<FakeBackend>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let state = Arc::new(FakeBackend::default());
    let recorder = state.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(m) = read_message(&mut stream, &mut buf).await {
                    let describe =
                        m.header("x-amz-target") == Some("DynamoDB_20120810.DescribeTable");
                    recorder
                        .seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(m);
                    let answer = if describe {
                        let t = format!(r#"{{"Table":{TABLE}}}"#);
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{t}", t.len())
                            .into_bytes()
                    } else {
                        BACKEND_ANSWER.to_vec()
                    };
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, state)
}

impl FakeBackend {
    fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backend_gets_the_request_and_the_client_its_answer_exactly() {
    let (backend, seen) = fake_backend().await;
    let sim = start(SimConfig {
        backend: Some(format!("http://{backend}")),
        ..one_node()
    })
    .await;
    let addr = sim.endpoint(ip(1));

    let compressed = gzip(br#"{"TableName":"items","Key":{"pk":{"S":"k"}}}"#);
    let mut not_json = b"{\"TableName\": ".to_vec();
    not_json.push(0xff);
    let requests: Vec<RawRequest> = vec![
        // Compressed: relayed compressed, not the sim's 500 or its decoding.
        (
            "POST",
            "/",
            vec![
                ("X-Amz-Target", "DynamoDB_20120810.GetItem"),
                ("Content-Encoding", "gzip"),
            ],
            compressed.clone(),
        ),
        // An encoding the sim would refuse itself.
        (
            "POST",
            "/",
            vec![
                ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
                ("Content-Encoding", "br"),
            ],
            b"{}".to_vec(),
        ),
        // Not JSON, unknown operation: the backend's to judge.
        (
            "POST",
            "/",
            vec![("X-Amz-Target", "DynamoDB_20120810.GetItem")],
            not_json,
        ),
        (
            "POST",
            "/",
            vec![("X-Amz-Target", "Nonsense")],
            b"{}".to_vec(),
        ),
        // Path, query and method kept.
        (
            "POST",
            "/some/path?b=2&a=1",
            vec![("X-Amz-Target", "DynamoDB_20120810.ListTables")],
            b"{}".to_vec(),
        ),
        ("GET", "/shell/?x=%20y", vec![], Vec::new()),
    ];
    for (method, path, headers, body) in &requests {
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: client.example:1234\r\nX-Mixed-Case: Value\r\n"
        );
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        let a = exchange(addr, &raw).await;

        assert_eq!(a.start, "HTTP/1.1 299 Fine Thanks", "{method} {path}");
        assert_eq!(
            a.headers,
            [
                ("X-Amzn-RequestId", "req-1"),
                ("X-Repeated", "one"),
                ("x-repeated", "two"),
                ("Content-Length", "11"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
            "{method} {path}: nothing added, nothing lost"
        );
        assert_eq!(a.body, b"not \x00 json!");

        let got = seen.take();
        let relayed = got
            .iter()
            .find(|m| m.header("x-amz-target") != Some("DynamoDB_20120810.DescribeTable"))
            .unwrap_or_else(|| panic!("{method} {path} did not reach the backend"));
        assert_eq!(relayed.start, format!("{method} {path} HTTP/1.1"));
        assert_eq!(relayed.header("Host"), Some("client.example:1234"));
        assert!(relayed
            .headers
            .contains(&("X-Mixed-Case".to_owned(), "Value".to_owned())));
        for (k, v) in headers {
            assert_eq!(relayed.header(k), Some(*v), "{method} {path}: {k}");
        }
        assert_eq!(&relayed.body, body, "{method} {path}: body bytes");
        // The sim's own look-up of the key schema is plain JSON, never marked compressed.
        for m in &got {
            if m.header("x-amz-target") == Some("DynamoDB_20120810.DescribeTable") {
                assert_eq!(m.header("content-encoding"), None);
                assert_eq!(m.text(), r#"{"TableName":"items"}"#);
            }
        }
    }
    // The sim decoded a copy of the compressed GetItem for its key log.
    let keys: Vec<_> = sim
        .keylog()
        .into_iter()
        .map(|e| (e.operation, e.key))
        .collect();
    assert_eq!(
        keys,
        [("GetItem".to_owned(), serde_json::json!({"S": "k"}))]
    );

    // Scylla's own endpoints stay with the sim and say so.
    let a = exchange(
        addr,
        format!("GET /localnodes HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(a.text(), r#"["127.0.0.1"]"#);
    assert_eq!(a.header("server"), Some("Seastar httpd"));
    assert!(a.header("date").is_some());
    assert!(seen.take().is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_backend_the_size_limit_is_the_backends() {
    let (backend, seen) = fake_backend().await;
    let sim = start(SimConfig {
        backend: Some(format!("http://{backend}")),
        ..one_node()
    })
    .await;
    let addr = sim.endpoint(ip(1));
    let over = vec![b' '; LIMIT + 1];
    let a = exchange(addr, &dynamo_request(addr, "ListTables", &[], &over)).await;
    assert_eq!(a.start, "HTTP/1.1 299 Fine Thanks");
    assert_eq!(seen.take().first().map(|m| m.body.len()), Some(LIMIT + 1));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_url_with_a_path_is_refused() {
    let config = SimConfig {
        backend: Some("http://127.0.0.1:8000/prefix".to_owned()),
        ..one_node()
    };
    assert!(Sim::start(config).await.is_err());
}
