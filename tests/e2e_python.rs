//! End to end with the official Python MCP SDK: an SDK client talks through
//! `portcullis serve` (our filter in host-shim) to an SDK server over
//! streamable HTTP, for a session-based revision and the stateless
//! 2026-07-28 one, with SSE and JSON responses.
//!
//! Checked: tools/list comes back filtered; an allowed call gives the same
//! result as calling the server directly; a denied call gets the JSON-RPC
//! error and never reaches the server; the audit records match the client's
//! messages one for one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use support::*;

const ALLOWED_TOOLS: &[&str] = &["add", "countdown", "echo", "get-time", "get-weather"];

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

/// (method, tool-or-uri-or-name) for every JSON-RPC request and notification
/// in the POST bodies the upstream received.
fn upstream_messages(record: &[Value]) -> Vec<(String, String)> {
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
            if let Some(method) = m["method"].as_str() {
                let target = m["params"]["name"]
                    .as_str()
                    .or(m["params"]["uri"].as_str())
                    .unwrap_or("")
                    .to_owned();
                out.push((method.to_owned(), target));
            }
        }
    }
    out
}

fn count(keys: impl IntoIterator<Item = (String, String)>) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn run_scenario(name: &str, revision: &str, server_flags: &[&str]) {
    let dir = temp_dir(name);
    let direct_record = dir.join("direct.jsonl");
    let proxied_record = dir.join("proxied.jsonl");
    let audit = dir.join("audit.jsonl");

    let (_direct_server, direct_port) = mcp_server(server_flags, &direct_record);
    let direct = mcp_client(
        &format!("http://127.0.0.1:{direct_port}/mcp"),
        revision,
        &script(),
        &[],
    );

    let (_server, port) = mcp_server(server_flags, &proxied_record);
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
    let proxied = mcp_client(&format!("{url}/mcp"), revision, &script(), &[]);
    assert_eq!(step(&proxied, "connect", 0)["ok"], true, "{proxied:?}");

    // tools/list is filtered to the bundle's tools.
    let direct_tools = tool_names(step(&direct, "list_tools", 0));
    assert!(
        direct_tools.contains(&"delete-file".to_owned()),
        "{direct_tools:?}"
    );
    assert_eq!(tool_names(step(&proxied, "list_tools", 0)), ALLOWED_TOOLS);

    // Allowed calls give exactly what the server gives directly.
    for (i, tool) in ["echo", "get-weather"].iter().enumerate() {
        let d = step(&direct, "call_tool", i);
        let p = step(&proxied, "call_tool", i);
        assert_eq!(p["ok"], true, "{tool}: {p}");
        assert_eq!(
            p["result"], d["result"],
            "{tool} through the proxy differs from direct"
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

    // The denied call gets Portcullis's JSON-RPC error.
    let denied = step(&proxied, "call_tool", 2);
    assert_eq!(denied["ok"], false, "{denied}");
    assert_eq!(denied["error"]["code"], -31090, "{denied}");
    assert_eq!(
        denied["error"]["data"]["rule"],
        "McpServer/everything#tools"
    );
    assert!(
        denied["error"]["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("delete-file")
    );
    let request_id = denied["error"]["data"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!request_id.is_empty());

    // The upstream never saw it, and saw audit headers on what it got.
    drop(proxy);
    let record = jsonl(&proxied_record);
    let forwarded = upstream_messages(&record);
    assert!(
        !forwarded.iter().any(|(_, t)| t == "delete-file"),
        "{forwarded:?}"
    );
    for r in record.iter().filter(|r| r["method"] == "POST") {
        let h = &r["headers"];
        assert_decision_header(h, "allow");
        assert_eq!(h["x-mcp-server"], "everything");
        assert!(
            h["x-mcp-bundle-version"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(h["x-mcp-request-id"].as_str().is_some());
    }

    // One audit record per client message: everything forwarded, plus the
    // denied call.
    let mut expected = forwarded.clone();
    expected.push(("tools/call".into(), "delete-file".into()));
    let expected = count(expected);
    let mut records = Vec::new();
    assert!(
        eventually(|| {
            records = jsonl(&audit);
            count(client_keys(&records)) == expected
        }),
        "audit records do not match the client's messages\nexpected {expected:?}\ngot {:?}",
        count(client_keys(&records))
    );
    let denied_record = records
        .iter()
        .find(|r| r["gen_ai.tool.name"] == "delete-file")
        .unwrap();
    assert_eq!(denied_record["decision"], "deny");
    assert_eq!(denied_record["outcome"], "denied");
    assert_eq!(denied_record["request_id"], request_id.as_str());
    for r in &records {
        assert_eq!(r["schema"], "portcullis.audit/v1");
        assert!(r["bundle_version"].as_str().unwrap().starts_with("sha256:"));
        if r["direction"] == "client" && r["decision"] == "allow" && r["kind"] == "request" {
            assert!(
                matches!(r["outcome"].as_str(), Some("result") | Some("error")),
                "{r}"
            );
        }
    }
    let list = records
        .iter()
        .find(|r| r["mcp.method.name"] == "tools/list")
        .unwrap();
    assert_eq!(
        list["filtered_out"], 2,
        "delete-file and read-file hidden: {list}"
    );
}

fn client_keys(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r["direction"] == "client")
        .map(|r| {
            let target = r["gen_ai.tool.name"]
                .as_str()
                .or(r["mcp.resource.uri"].as_str())
                .or(r["prompt"].as_str())
                .unwrap_or("")
                .to_owned();
            (
                r["mcp.method.name"].as_str().unwrap_or("").to_owned(),
                target,
            )
        })
        .collect()
}

#[test]
fn session_revision_with_sse_responses() {
    run_scenario("session-sse", "2025-11-25", &[]);
}

#[test]
fn session_revision_with_json_responses() {
    run_scenario("session-json", "2025-11-25", &["--json-response"]);
}

#[test]
fn stateless_revision_2026_07_28() {
    run_scenario("stateless", "2026-07-28", &[]);
}

#[test]
fn stateless_revision_2026_07_28_with_json_responses() {
    run_scenario("stateless-json", "2026-07-28", &["--json-response"]);
}
