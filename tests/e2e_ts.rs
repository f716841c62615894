//! End to end with the official TypeScript MCP SDK and the malicious
//! upstream: the baseline the attack tests build on, and templates for
//! them. Every peer is real and on loopback (tests/e2e/README.md):
//!
//! * the TypeScript SDK client (`ts_client.mjs`) through `portcullis serve`
//!   to the Python SDK server;
//! * the Python SDK client through `serve` to the reference
//!   server-everything (TypeScript SDK);
//! * hand-written HTTP bytes through `serve` to server-everything;
//! * both SDK clients through `serve` to `evil_upstream.py` with its benign
//!   built-in scenario, which records every request it receives.
//!
//! Each checks the three properties the attack tests assert: what the
//! bundle denies never reaches the upstream, the client gets only what
//! the filter passed (filtered lists, the filter's own denial), and every
//! refusal has an audit record naming the same request id as the client's
//! error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use support::*;

/// The filter's JSON-RPC code for a request the bundle denies.
const DENIED: i64 = -31090;

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// The audit records once `done` holds for them (they are written when
/// each stream ends, after the client already has its answer).
fn audit_when(audit: &Path, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let mut records = Vec::new();
    assert!(
        eventually(|| {
            records = jsonl(audit);
            done(&records)
        }),
        "audit records never got there: {records:#?}"
    );
    records
}

/// The audit record of the denied `tools/call` to `tool` with the request
/// id the client's error named; panics unless there is exactly one.
fn denial_record<'a>(records: &'a [Value], tool: &str, request_id: &str) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| r["gen_ai.tool.name"] == tool && r["decision"] == "deny")
        .filter(|r| r["request_id"] == request_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "deny records for {tool} {request_id}: {records:#?}"
    );
    assert_eq!(found[0]["outcome"], "denied");
    assert_eq!(found[0]["error_code"], DENIED);
    found[0]
}

/// Checks a ts_client step line is the filter's denial (a JSON-RPC error
/// in a 200 answer, which the TypeScript SDK surfaces as an McpError) and
/// returns the request id it names.
fn ts_denied(line: &Value, rule: &str) -> String {
    assert_eq!(line["ok"], false, "{line}");
    let err = &line["error"];
    assert_eq!(err["kind"], "jsonrpc", "{line}");
    assert_eq!(err["code"], DENIED, "{line}");
    assert_eq!(err["data"]["rule"], rule, "{line}");
    assert_eq!(line["http"][0]["status"], 200, "{line}");
    err["data"]["requestId"].as_str().unwrap().to_owned()
}

/// The same for an mcp_client.py line.
fn py_denied(line: &Value, rule: &str) -> String {
    assert_eq!(line["ok"], false, "{line}");
    assert_eq!(line["error"]["code"], DENIED, "{line}");
    assert_eq!(line["error"]["data"]["rule"], rule, "{line}");
    line["error"]["data"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// (method, tool name) of every JSON-RPC message in the POST bodies
/// mcp_server.py recorded.
fn python_server_messages(record: &[Value]) -> Vec<(String, String)> {
    record
        .iter()
        .filter(|r| r["method"] == "POST")
        .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
        .flat_map(|b| match b {
            Value::Array(a) => a,
            v => vec![v],
        })
        .filter_map(|m| {
            let method = m["method"].as_str()?.to_owned();
            Some((
                method,
                m["params"]["name"].as_str().unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

/// The TypeScript SDK client through `portcullis serve` (examples/bundle)
/// to the Python SDK server: the list comes back filtered, allowed calls
/// return the server's results (structured content validated by the SDK
/// against the tool's output schema), `delete-file` gets the filter's
/// denial and never reaches the server, and the audit log has one record
/// per message: the upstream's messages allowed, the denial denied, with
/// the request id the client saw.
#[test]
fn ts_client_through_serve_to_python_sdk_server() {
    let dir = temp_dir("ts-to-python");
    let record = dir.join("upstream.jsonl");
    let (_server, port) = mcp_server(&[], &record);
    let (proxy, url, audit) = serve_bundle(&root().join("examples/bundle"), port);

    let lines = ts_client(
        &format!("{url}/mcp"),
        &[
            json!({"op": "list_tools"}),
            json!({"op": "call_tool", "name": "echo", "arguments": {"text": "through the gate"}}),
            json!({"op": "call_tool", "name": "add", "arguments": {"a": 2, "b": 40}}),
            json!({"op": "call_tool", "name": "delete-file", "arguments": {"path": "/etc/passwd"}}),
            json!({"op": "call_tool", "name": "countdown", "arguments": {"n": 2}, "progress": true}),
        ],
    );
    let connect = step(&lines, "connect", 0);
    assert_eq!(connect["ok"], true, "{lines:#?}");
    assert_eq!(connect["protocol_version"], "2025-11-25");
    assert_eq!(connect["server_info"]["name"], "portcullis-e2e-upstream");

    assert_eq!(
        tool_names(step(&lines, "list_tools", 0)),
        ["add", "countdown", "echo", "get-time", "get-weather"]
    );
    let echo = step(&lines, "call_tool", 0);
    assert_eq!(echo["ok"], true, "{echo}");
    assert_eq!(echo["result"]["content"][0]["text"], "through the gate");
    assert_eq!(
        echo["result"]["structuredContent"]["result"],
        "through the gate"
    );
    assert_eq!(
        step(&lines, "call_tool", 1)["result"]["structuredContent"]["result"],
        42
    );
    let request_id = ts_denied(step(&lines, "call_tool", 2), "McpServer/everything#tools");
    // Progress notifications pass the filter and reach the SDK's callback.
    let countdown = step(&lines, "call_tool", 3);
    assert_eq!(
        countdown["result"]["content"][0]["text"], "liftoff",
        "{countdown}"
    );
    assert_eq!(
        countdown["result"]["_progress"].as_array().unwrap().len(),
        2
    );
    let progress_lines = lines
        .iter()
        .filter(|l| l["op"] == "notification" && l["method"] == "notifications/progress")
        .count();
    assert_eq!(progress_lines, 2, "{lines:#?}");

    drop(proxy);
    // One client-side audit record per message the upstream got, plus the
    // denial. (Both files are written as exchanges end: poll.)
    let mut forwarded = Vec::new();
    let records = audit_when(&audit, |r| {
        forwarded = python_server_messages(&jsonl(&record));
        r.iter().filter(|r| r["direction"] == "client").count() == forwarded.len() + 1
    });
    assert!(
        !forwarded.iter().any(|(_, t)| t == "delete-file"),
        "{forwarded:?}"
    );
    assert!(forwarded.contains(&("tools/call".into(), "echo".into())));
    denial_record(&records, "delete-file", &request_id);
    for r in &records {
        assert_eq!(r["schema"], "portcullis.audit/v1");
        if r["gen_ai.tool.name"] != "delete-file" {
            assert_eq!(r["decision"], "allow", "{r}");
        }
    }
}

/// The Python SDK client through `portcullis serve`
/// (tests/fixtures/server-everything) to the reference server-everything on
/// the TypeScript SDK: the list shows only the bundle's four tools (not
/// `get-env`, which would hand over the server's environment), allowed
/// calls, the prompt and a resource pass, `get-env` is denied, and the
/// denial has its audit record.
#[test]
fn python_client_through_serve_to_server_everything() {
    let (_server, port) = server_everything();
    let (proxy, url, audit) = serve_bundle(&fixture("server-everything"), port);

    let lines = py_client(
        &format!("{url}/mcp"),
        &[
            json!({"op": "list_tools"}),
            json!({"op": "call_tool", "name": "echo", "arguments": {"message": "hi"}}),
            json!({"op": "call_tool", "name": "get-sum", "arguments": {"a": 2, "b": 40}}),
            json!({"op": "call_tool", "name": "get-env", "arguments": {}}),
            json!({"op": "list_prompts"}),
            json!({"op": "get_prompt", "name": "simple-prompt", "arguments": {}}),
            json!({"op": "read_resource", "uri": "demo://resource/static/document/architecture.md"}),
        ],
    );
    let connect = step(&lines, "connect", 0);
    assert_eq!(connect["ok"], true, "{lines:#?}");
    assert_eq!(connect["server_info"]["name"], "mcp-servers/everything");
    assert_eq!(
        tool_names(step(&lines, "list_tools", 0)),
        [
            "echo",
            "get-sum",
            "toggle-simulated-logging",
            "trigger-long-running-operation"
        ]
    );
    assert_eq!(
        step(&lines, "call_tool", 0)["result"]["content"][0]["text"],
        "Echo: hi"
    );
    assert_eq!(
        step(&lines, "call_tool", 1)["result"]["content"][0]["text"],
        "The sum of 2 and 40 is 42."
    );
    let request_id = py_denied(
        step(&lines, "call_tool", 2),
        "McpServer/everything-ts#tools",
    );
    let prompts: Vec<&str> = step(&lines, "list_prompts", 0)["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        prompts,
        ["simple-prompt", "args-prompt"],
        "filtered to the bundle's"
    );
    assert_eq!(step(&lines, "get_prompt", 0)["ok"], true);
    let doc = step(&lines, "read_resource", 0);
    assert!(
        doc["result"]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Architecture"),
        "{doc}"
    );

    drop(proxy);
    let records = audit_when(&audit, |r| {
        r.iter()
            .any(|r| r["gen_ai.tool.name"] == "get-env" && r["decision"] == "deny")
    });
    denial_record(&records, "get-env", &request_id);
    assert!(
        records
            .iter()
            .any(|r| r["mcp.method.name"] == "tools/list" && r["filtered_out"].as_u64() > Some(0)),
        "{records:#?}"
    );
}

/// A POST written byte by byte.
fn post(url: &str, session: Option<&str>, body: &Value) -> Response {
    let body = body.to_string();
    let authority = url.trim_start_matches("http://");
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Connection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(s) = session {
        req.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let raw = raw_http(url, req.as_bytes());
    let (resp, rest) = parse_response(&raw)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&raw)));
    assert!(resp.complete, "{resp:?}");
    assert!(rest.is_empty(), "bytes after the response: {rest:?}");
    resp
}

/// Hand-written HTTP/1.1 through `portcullis serve` to server-everything:
/// initialize (an SSE answer, chunked, with the session id), the
/// initialized notification (202), then tools/list, filtered to the
/// bundle's tools inside the SSE event, and a denied call answered by the
/// filter itself in JSON. The template for tests that send exact bytes.
#[test]
fn raw_http_through_serve_to_server_everything() {
    let (_server, port) = server_everything();
    let (_proxy, url, audit) = serve_bundle(&fixture("server-everything"), port);

    let init = post(
        &url,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}}),
    );
    assert_eq!(init.status, 200, "{init:?}");
    assert!(
        init.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let session = init
        .header("mcp-session-id")
        .expect("a session id")
        .to_owned();
    let msgs = init.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["id"], 1);
    assert_eq!(
        msgs[0]["result"]["serverInfo"]["name"],
        "mcp-servers/everything"
    );

    let initialized = post(
        &url,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!(initialized.status, 202, "{initialized:?}");

    let list = post(
        &url,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert_eq!(list.status, 200, "{list:?}");
    let msgs = list.messages();
    let mut names: Vec<&str> = msgs[0]["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{msgs:?}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "echo",
            "get-sum",
            "toggle-simulated-logging",
            "trigger-long-running-operation"
        ]
    );

    let denied = post(
        &url,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "get-env", "arguments": {}}}),
    );
    assert_eq!(denied.status, 200);
    let err = &denied.json()["error"];
    assert_eq!(err["code"], DENIED, "{denied:?}");
    let request_id = err["data"]["requestId"].as_str().unwrap().to_owned();

    let records = audit_when(&audit, |r| {
        r.iter().any(|r| r["mcp.method.name"] == "tools/list")
            && r.iter().any(|r| r["decision"] == "deny")
    });
    denial_record(&records, "get-env", &request_id);
    let methods: Vec<&str> = records
        .iter()
        .filter_map(|r| r["mcp.method.name"].as_str())
        .collect();
    for m in [
        "initialize",
        "notifications/initialized",
        "tools/list",
        "tools/call",
    ] {
        assert!(methods.contains(&m), "{m} not audited: {methods:?}");
    }
}

/// One SDK client's script against the evil upstream's built-in (benign)
/// scenario through `portcullis serve` (tests/fixtures/evil): echo works,
/// `rm` is refused by the filter and absent from the upstream's record of
/// every request it received, the requests that did arrive carry the
/// filter's `x-mcp-server` (and `x-mcp-decision: allow` when the request
/// headers are held), and the refusal is audited.
fn through_serve_to_benign_evil_upstream(client: &str) {
    let (_upstream, port, record) = evil_upstream(&json!([]));
    let (proxy, url, audit) = serve_bundle(&fixture("evil"), port);
    let steps = [
        json!({"op": "list_tools"}),
        json!({"op": "call_tool", "name": "echo", "arguments": {"text": "hello"}}),
        json!({"op": "call_tool", "name": "rm", "arguments": {"path": "/"}}),
    ];
    let endpoint = format!("{url}/mcp");
    let lines = match client {
        "ts" => ts_client(&endpoint, &steps),
        _ => py_client(&endpoint, &steps),
    };
    let connect = step(&lines, "connect", 0);
    assert_eq!(connect["ok"], true, "{lines:#?}");
    assert_eq!(connect["server_info"]["name"], "evil-upstream");
    assert_eq!(tool_names(step(&lines, "list_tools", 0)), ["echo"]);
    assert_eq!(
        step(&lines, "call_tool", 0)["result"]["content"][0]["text"],
        "hello"
    );
    let rm = step(&lines, "call_tool", 1);
    let request_id = match client {
        "ts" => ts_denied(rm, "McpServer/evil#tools"),
        _ => py_denied(rm, "McpServer/evil#tools"),
    };

    drop(proxy);
    let records = evil_records(&record);
    let rpc = evil_rpc(&records);
    assert!(
        rpc.contains(&("initialize".into(), String::new())),
        "{rpc:?}"
    );
    assert!(
        rpc.contains(&("tools/call".into(), "echo".into())),
        "{rpc:?}"
    );
    assert!(!rpc.iter().any(|(_, name)| name == "rm"), "{rpc:?}");
    assert!(
        !records
            .iter()
            .any(|r| r["body"].as_str().unwrap_or("").contains("\"rm\"")),
        "rm reached the upstream"
    );
    for r in &records {
        if r["complete"] != true && !holds_request_headers() {
            // `requestHeaders: forward`: the refused call's headers went on
            // before its body was decided; not a byte of the body followed.
            assert_eq!(r["body"].as_str().unwrap_or(""), "", "{r}");
            continue;
        }
        assert_eq!(r["complete"], true, "{r}");
        if r["method"] == "POST" {
            let decision: &[&str] = if holds_request_headers() {
                &["allow"]
            } else {
                &[]
            };
            assert_eq!(record_header(r, "x-mcp-decision"), decision, "{r}");
            assert_eq!(record_header(r, "x-mcp-server"), ["evil"], "{r}");
        }
    }
    // Both SDKs open the server-to-client stream after initializing.
    assert!(records.iter().any(|r| r["method"] == "GET"), "{records:#?}");

    let audit_records = audit_when(&audit, |r| r.iter().any(|r| r["decision"] == "deny"));
    denial_record(&audit_records, "rm", &request_id);
}

/// The TypeScript SDK client, see [`through_serve_to_benign_evil_upstream`].
#[test]
fn ts_client_through_serve_to_benign_evil_upstream() {
    through_serve_to_benign_evil_upstream("ts");
}

/// The Python SDK client, see [`through_serve_to_benign_evil_upstream`].
#[test]
fn py_client_through_serve_to_benign_evil_upstream() {
    through_serve_to_benign_evil_upstream("py");
}

/// A scenario template: the evil upstream answers tools/list (any id, via
/// `{id_json}`) with three tools in an SSE stream written in small chunks,
/// and through `portcullis serve` each SDK client sees only the one the
/// bundle allows; the audit record of the list counts the two removed.
#[test]
fn evil_tools_list_is_filtered_before_either_client_sees_it() {
    let tool = |name: &str| {
        json!({"name": name, "description": format!("{name} tool"),
               "inputSchema": {"type": "object", "properties": {}}})
    };
    let scenario = json!([{
        "name": "three-tools",
        "match": {"rpc_method": "tools/list"},
        "headers": [["Content-Type", "text/event-stream"], ["Cache-Control", "no-cache"]],
        "framing": "chunked",
        "chunk_delay_ms": 20,
        "body": [
            "event: message\n",
            {"sse": {"data": {"jsonrpc": "2.0", "id": "{id_json}",
                              "result": {"tools": [tool("echo"), tool("rm"), tool("exfiltrate")]}}}}
        ]
    }]);
    for client in ["ts", "py"] {
        let (_upstream, port, record) = evil_upstream(&scenario);
        let (proxy, url, audit) = serve_bundle(&fixture("evil"), port);
        let steps = [json!({"op": "list_tools"})];
        let endpoint = format!("{url}/mcp");
        let lines = match client {
            "ts" => ts_client(&endpoint, &steps),
            _ => py_client(&endpoint, &steps),
        };
        assert_eq!(
            tool_names(step(&lines, "list_tools", 0)),
            ["echo"],
            "{client}"
        );
        drop(proxy);
        // The upstream did answer the list with its rule.
        assert!(
            evil_records(&record)
                .iter()
                .any(|r| r["rule"] == "three-tools"),
            "{client}"
        );
        let records = audit_when(&audit, |r| {
            r.iter().any(|r| r["mcp.method.name"] == "tools/list")
        });
        let list = records
            .iter()
            .find(|r| r["mcp.method.name"] == "tools/list")
            .unwrap();
        assert_eq!(list["filtered_out"], 2, "{client}: {list}");
    }
}

/// The harness itself, against the evil upstream directly (no proxy):
/// `raw_http` and `parse_response` read duplicate headers, chunked bodies
/// with trailers, a lying `content-length` (incomplete), and the
/// upstream's record keeps the request's exact header spelling and order.
#[test]
fn raw_http_reads_what_evil_upstream_writes() {
    let (_upstream, port, record) = evil_upstream(&json!([
        {"match": {"path": "/chunked"}, "framing": "chunked",
         "headers": [["X-Dup", "1"], ["X-Dup", "2"], ["Content-Type", "text/plain"]],
         "body": ["hello ", {"b64": "AP8="}, " {id}"], "trailers": [["X-Trailer", "t"]]},
        {"match": {"path": "/lie"}, "headers": [["Content-Length", "100"]],
         "body": ["short"], "then": "close"}
    ]));
    let addr = format!("127.0.0.1:{port}");
    let body = r#"{"jsonrpc":"2.0","id":"abc","method":"ping"}"#;
    let raw = raw_http(
        &addr,
        format!(
            "POST /chunked HTTP/1.1\r\nHost: {addr}\r\nX-Case: A\r\nx-case: b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (resp, rest) = parse_response(&raw).unwrap();
    assert!(rest.is_empty());
    assert_eq!((resp.status, resp.reason.as_str()), (200, "OK"));
    assert!(resp.chunked && resp.complete, "{resp:?}");
    assert_eq!(resp.header_all("x-dup"), ["1", "2"]);
    assert_eq!(resp.body, b"hello \x00\xff abc");
    assert_eq!(resp.trailers, [("x-trailer".to_owned(), "t".to_owned())]);

    let raw = raw_http(
        &addr,
        format!("GET /lie HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    let (resp, _) = parse_response(&raw).unwrap();
    assert_eq!(resp.body, b"short");
    assert!(!resp.complete, "content-length 100, 5 bytes, then close");

    let records = evil_records(&record);
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(
        records[0]["headers"],
        json!([
            ["Host", addr],
            ["X-Case", "A"],
            ["x-case", "b"],
            ["Content-Length", body.len().to_string()]
        ])
    );
    assert_eq!(record_header(&records[0], "x-case"), ["A", "b"]);
    assert_eq!(evil_rpc(&records), [("ping".to_owned(), String::new())]);
}
