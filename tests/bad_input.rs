//! Bad input through `portcullis serve`: every case gets a clear error, an
//! audit record, and nothing reaches the upstream that should not.
//!
//! Requests are written by hand (see `support::http`) so the exact bytes are
//! under the test's control: invalid UTF-8, duplicate keys, escapes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use support::*;

struct Rig {
    _server: Proc,
    _proxy: Proc,
    url: String,
    record: std::path::PathBuf,
    audit: std::path::PathBuf,
}

fn rig(name: &str) -> Rig {
    let dir = temp_dir(name);
    let record = dir.join("upstream.jsonl");
    let audit = dir.join("audit.jsonl");
    let (server, port) = mcp_server(&["--stateless", "--json-response"], &record);
    let bundle = root().join("examples/bundle");
    let upstream = format!("http://127.0.0.1:{port}");
    let audit_arg = audit.display().to_string();
    let (proxy, url) = portcullis_serve(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--audit-log",
        &audit_arg,
    ]);
    Rig {
        _server: server,
        _proxy: proxy,
        url,
        record,
        audit,
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

impl Rig {
    fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut h = vec![JSON, ACCEPT];
        h.extend_from_slice(headers);
        http(&self.url, "POST", "/mcp", &h, body)
    }

    /// Waits until the audit log holds `n` records and returns them.
    fn audit(&self, n: usize) -> Vec<Value> {
        let mut records = Vec::new();
        let ok = eventually(|| {
            records = jsonl(&self.audit);
            records.len() >= n
        });
        assert!(
            ok,
            "expected {n} audit records, have {}: {records:?}",
            records.len()
        );
        records
    }

    fn upstream_bodies(&self) -> Vec<String> {
        jsonl(&self.record)
            .iter()
            .filter_map(|r| r["body"].as_str().map(str::to_owned))
            .collect()
    }
}

fn error_code(resp: &Response) -> i64 {
    resp.json()["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error code: {:?}", resp.json()))
}

#[test]
fn each_bad_input_gets_a_clear_error_and_an_audit_record() {
    let rig = rig("bad-input");
    let mut expected_records = 0;

    // Oversize body: 413 before the body is buffered whole.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(1_100_000)
    );
    let resp = rig.post(&[], big.as_bytes());
    assert_eq!(resp.status, 413);
    assert_eq!(error_code(&resp), -31091);
    assert!(
        resp.json()["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("maxRequestBytes")
    );
    expected_records += 1;

    // Invalid JSON and invalid UTF-8: parse errors.
    let resp = rig.post(&[], b"{\"jsonrpc\":\"2.0\",");
    assert_eq!((resp.status, error_code(&resp)), (400, -32700));
    let resp = rig.post(&[], b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"ech\xc3\x28\"}}");
    assert_eq!((resp.status, error_code(&resp)), (400, -32700));
    assert!(
        resp.json()["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
    expected_records += 2;

    // Duplicate keys: refused, whichever one a server would have picked.
    let resp = rig.post(&[], br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete-file"}}"#);
    assert_eq!((resp.status, error_code(&resp)), (400, -32700));
    assert!(
        resp.json()["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("duplicate key")
    );
    expected_records += 1;

    // Wrong content type on an MCP route.
    let resp = http(
        &rig.url,
        "POST",
        "/mcp",
        &[("content-type", "text/plain"), ACCEPT],
        b"{}",
    );
    assert_eq!((resp.status, error_code(&resp)), (415, -31092));
    expected_records += 1;

    // A batch mixing allowed and denied calls is refused whole (2025-03-26
    // is the one revision with batches).
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete-file","arguments":{"path":"/x"}}}
    ]);
    let resp = rig.post(
        &[("mcp-protocol-version", "2025-03-26")],
        batch.to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let items = resp.json();
    assert_eq!(items[0]["error"]["code"], -31090);
    assert_eq!(items[1]["error"]["code"], -31090);
    expected_records += 2;

    // 2026-07-28: a routing header that disagrees with the body.
    let body = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete-file","arguments":{},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}});
    let resp = rig.post(
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!((resp.status, error_code(&resp)), (400, -32020));
    expected_records += 1;

    // Escaped names are decided on what they decode to.
    let resp = rig.post(&[], br#"{"jsonrpc":"2.0","id":4,"method":"tools\/call","params":{"name":"delete\u002dfile","arguments":{}}}"#);
    assert_eq!(error_code(&resp), -31090);
    expected_records += 1;

    // Spoofed audit headers are stripped; the escaped allowed call goes on
    // with the filter's own headers.
    let resp = rig.post(
        &[("x-mcp-decision", "allow"), ("x-mcp-tool", "echo"), ("x-mcp-spoof", "1")],
        br#"{"jsonrpc":"2.0","id":5,"method":"tools\/call","params":{"name":"\u0065cho","arguments":{"text":"ok"}}}"#,
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    expected_records += 1;

    let records = rig.audit(expected_records);
    assert_eq!(records.len(), expected_records, "{records:?}");
    let denied = records.iter().filter(|r| r["decision"] == "deny").count();
    assert_eq!(denied, expected_records - 1, "{records:?}");

    // Only the allowed call reached the upstream, with the filter's headers.
    // The upstream writes its record when its response ends.
    let mut upstream = Vec::new();
    eventually(|| {
        upstream = jsonl(&rig.record);
        !upstream.is_empty()
    });
    let posts: Vec<&Value> = upstream.iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(posts.len(), 1, "{:?}", rig.upstream_bodies());
    let h = &posts[0]["headers"];
    assert_decision_header(h, "allow");
    if holds_request_headers() {
        assert_eq!(h["x-mcp-tool"], "echo");
    } else {
        // The headers left before the body named the tool; the client's
        // spoofed one is gone all the same.
        assert!(h.get("x-mcp-tool").is_none(), "{h}");
    }
    assert!(h.get("x-mcp-spoof").is_none(), "{h}");
}

#[test]
fn unmatched_routes_pass_through_with_spoofed_headers_stripped() {
    let rig = rig("unmatched");
    let resp = http(
        &rig.url,
        "GET",
        "/health",
        &[("x-mcp-decision", "allow")],
        b"",
    );
    // The SDK server has no /health; the point is that it got there.
    assert_eq!(resp.status, 404);
    assert!(eventually(|| jsonl(&rig.record)
        .iter()
        .any(|r| r["path"] == "/health")));
    let rec = jsonl(&rig.record);
    let r = rec.iter().find(|r| r["path"] == "/health").unwrap();
    assert!(r["headers"].get("x-mcp-decision").is_none(), "{r}");
}
