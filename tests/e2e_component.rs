//! End to end with the official Python MCP SDK through
//! `portcullis serve --component`: the engine built as a WebAssembly
//! component, run by host-shim's component host, with tests/e2e_python.rs's
//! scenario (examples/bundle, SSE and JSON responses, a session revision and
//! the stateless one).
//!
//! Checked as there: tools/list comes back filtered; allowed calls give what
//! the server gives directly; the denied call gets Portcullis's JSON-RPC
//! error and never reaches the server; forwarded requests carry the audit
//! headers; the audit log has one record per client message. And beside it:
//! the same script through the proxy-wasm filter (`serve` without
//! `--component`) writes the same audit records, field for field once time,
//! latency, request ids (the filter's and the host's) and session ids are set
//! aside.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use std::path::Path;
use support::*;

const ALLOWED_TOOLS: &[&str] = &["add", "countdown", "echo", "get-time", "get-weather"];

fn component() -> String {
    let path = env!("PORTCULLIS_COMPONENT_WASM");
    assert!(
        !path.is_empty(),
        "the component was not built (PORTCULLIS_SKIP_COMPONENT was set for this build); unset it and rebuild"
    );
    path.to_owned()
}

fn script() -> Value {
    json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "echo", "arguments": {"text": "hello through the gate"}},
        {"op": "call_tool", "name": "get-weather", "arguments": {"city": "Paris"}},
        {"op": "call_tool", "name": "delete-file", "arguments": {"path": "/etc/passwd"}},
        {"op": "call_tool", "name": "add", "arguments": {"a": 2, "b": 40}},
        {"op": "list_prompts"},
        {"op": "get_prompt", "name": "greet", "arguments": {"name": "Ada"}},
        {"op": "read_resource", "uri": "file:///readme"}
    ])
}

/// Tool names of the tools/call requests the upstream received.
fn upstream_calls(record: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for r in record.iter().filter(|r| r["method"] == "POST") {
        let Ok(body) = serde_json::from_str::<Value>(r["body"].as_str().unwrap_or("")) else {
            continue;
        };
        let items = match body {
            Value::Array(a) => a,
            other => vec![other],
        };
        for m in items {
            if m["method"] == "tools/call" {
                out.push(m["params"]["name"].as_str().unwrap_or("").to_owned());
            }
        }
    }
    out
}

/// The audit records with what differs from run to run set aside, sorted.
fn comparable(records: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let o = r.as_object_mut().unwrap();
            for volatile in [
                "time",
                "latency_ms",
                "request_id",
                "client_request_id",
                "session",
                "jsonrpc_id",
            ] {
                o.remove(volatile);
            }
            // The peer's port is ephemeral; its address must agree.
            if let Some(Value::String(source)) = o.get_mut("source")
                && let Some((ip, _port)) = source.rsplit_once(':')
            {
                *source = ip.to_string();
            }
            r.to_string()
        })
        .collect();
    out.sort();
    out
}

/// Runs the script through `portcullis serve` with `serve_flags`; returns the
/// client's lines, the upstream's record and the audit records.
fn through(
    dir: &Path,
    tag: &str,
    revision: &str,
    server_flags: &[&str],
    serve_flags: &[&str],
) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let upstream_record = dir.join(format!("{tag}-upstream.jsonl"));
    let audit = dir.join(format!("{tag}-audit.jsonl"));
    let (_server, port) = mcp_server(server_flags, &upstream_record);
    let bundle = root().join("examples/bundle");
    let upstream = format!("http://127.0.0.1:{port}");
    let audit_arg = audit.display().to_string();
    let mut args = vec![
        "--bundle",
        bundle.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--audit-log",
        &audit_arg,
    ];
    args.extend_from_slice(serve_flags);
    let (proxy, url) = portcullis_serve(&args);
    let lines = mcp_client(&format!("{url}/mcp"), revision, &script(), &[]);
    assert_eq!(step(&lines, "connect", 0)["ok"], true, "{tag}: {lines:?}");
    // One record at least per message of the script.
    let mut records = Vec::new();
    assert!(
        eventually(|| {
            records = jsonl(&audit);
            records
                .iter()
                .filter(|r| r["direction"] == "client")
                .count()
                >= 8
        }),
        "{tag}: the audit log has {} records",
        records.len()
    );
    drop(proxy);
    records = jsonl(&audit);
    (lines, jsonl(&upstream_record), records)
}

fn run_scenario(name: &str, revision: &str, server_flags: &[&str]) {
    let dir = temp_dir(&format!("component-{name}"));
    let component = component();

    let (direct_server, direct_port) = mcp_server(server_flags, &dir.join("direct.jsonl"));
    let direct = mcp_client(
        &format!("http://127.0.0.1:{direct_port}/mcp"),
        revision,
        &script(),
        &[],
    );
    drop(direct_server);

    let (proxied, upstream, records) = through(
        &dir,
        "component",
        revision,
        server_flags,
        &["--component", &component],
    );

    assert_eq!(tool_names(step(&proxied, "list_tools", 0)), ALLOWED_TOOLS);
    for (i, tool) in ["echo", "get-weather"].iter().enumerate() {
        let p = step(&proxied, "call_tool", i);
        assert_eq!(p["ok"], true, "{tool}: {p}");
        assert_eq!(
            p["result"],
            step(&direct, "call_tool", i)["result"],
            "{tool} through the component differs from direct"
        );
    }
    assert_eq!(
        step(&proxied, "call_tool", 3)["result"],
        step(&direct, "call_tool", 3)["result"]
    );
    assert_eq!(
        step(&proxied, "get_prompt", 0)["result"],
        step(&direct, "get_prompt", 0)["result"]
    );
    assert_eq!(
        step(&proxied, "read_resource", 0)["result"],
        step(&direct, "read_resource", 0)["result"]
    );

    let denied = step(&proxied, "call_tool", 2);
    assert_eq!(denied["ok"], false, "{denied}");
    assert_eq!(denied["error"]["code"], -31090, "{denied}");
    assert_eq!(
        denied["error"]["data"]["rule"],
        "McpServer/everything#tools"
    );
    let request_id = denied["error"]["data"]["requestId"].as_str().unwrap();

    let calls = upstream_calls(&upstream);
    assert!(!calls.iter().any(|t| t == "delete-file"), "{calls:?}");
    assert!(calls.iter().any(|t| t == "echo"), "{calls:?}");
    for r in upstream.iter().filter(|r| r["method"] == "POST") {
        let h = &r["headers"];
        assert_decision_header(h, "allow");
        assert_eq!(h["x-mcp-server"], "everything");
        assert!(h["x-mcp-request-id"].as_str().is_some());
    }

    let denied_record = records
        .iter()
        .find(|r| r["gen_ai.tool.name"] == "delete-file")
        .unwrap_or_else(|| panic!("no record of the denied call: {records:?}"));
    assert_eq!(denied_record["decision"], "deny");
    assert_eq!(denied_record["outcome"], "denied");
    assert_eq!(denied_record["request_id"], request_id);
    let list = records
        .iter()
        .find(|r| r["mcp.method.name"] == "tools/list")
        .unwrap();
    assert_eq!(list["filtered_out"], 2, "{list}");

    // The proxy-wasm filter, same script: the same records.
    let (_, _, filter_records) = through(&dir, "filter", revision, server_flags, &[]);
    assert_eq!(
        comparable(&records),
        comparable(&filter_records),
        "the component's audit records differ from the proxy-wasm filter's"
    );
}

#[test]
fn session_revision_with_sse_responses() {
    run_scenario("session-sse", "2025-11-25", &[]);
}

#[test]
fn stateless_revision_with_json_responses() {
    run_scenario("stateless-json", "2026-07-28", &["--json-response"]);
}
