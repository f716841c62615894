//! Audit records from real MCP traffic straight into the tamper-evident
//! store: the Python MCP SDK talks through `portcullis serve --audit-db`.
//! Each message's record must land in the store, none lost, and be the same
//! record the JSONL access log got. `portcullis audit query` must return
//! exactly the records asked for, and `portcullis audit verify` must pass.
//! After one byte of the database file is edited, verify must fail and name
//! that record.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{Value, json};
use std::process::Command;
use support::*;

fn query(db: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "query", "--db", db, "--format", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = portcullis(&args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Key order aside (the store keeps records canonical), as sorted strings.
fn sorted(records: &[Value]) -> Vec<String> {
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: std::collections::BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, canonical(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let mut v: Vec<String> = records.iter().map(|r| canonical(r).to_string()).collect();
    v.sort();
    v
}

#[test]
fn sdk_traffic_lands_in_the_store_and_tampering_is_named() {
    let dir = temp_dir("e2e-audit-store");
    let d = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (db, log, key) = (d("audit.db"), d("audit.jsonl"), d("checkpoint.key"));
    let (code, _, err) = portcullis(&["audit", "keygen", "--out", &key]);
    assert_eq!(code, 0, "{err}");

    let (_server, port) = mcp_server(&[], &dir.join("upstream.jsonl"));
    let bundle = root().join("examples/bundle");
    let upstream = format!("http://127.0.0.1:{port}");
    let (mut proxy, url) = portcullis_serve(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--audit-log",
        &log,
        "--audit-db",
        &db,
        "--audit-key",
        &key,
    ]);
    let script = json!([
        {"op": "list_tools"},
        {"op": "call_tool", "name": "echo", "arguments": {"text": "first"}},
        {"op": "call_tool", "name": "get-weather", "arguments": {"city": "Paris"}},
        {"op": "call_tool", "name": "delete-file", "arguments": {"path": "/etc/passwd"}},
        {"op": "call_tool", "name": "echo", "arguments": {"text": "second"}},
        {"op": "list_prompts"},
        {"op": "read_resource", "uri": "file:///readme"}
    ]);
    let lines = mcp_client(&format!("{url}/mcp"), "2025-11-25", &script, &[]);
    assert_eq!(lines[0]["ok"], true, "{lines:?}");

    // While serve runs (WAL lets the CLI read beside the writer), the store
    // catches up with the access log.
    let mut stored = Vec::new();
    assert!(
        eventually(|| {
            let file = jsonl(std::path::Path::new(&log));
            stored = query(&db, &["--since", "1h"]);
            file.len() >= 7 && stored.len() == file.len()
        }),
        "the store has {} records",
        stored.len()
    );

    // A graceful stop (SIGINT, as ctrl-c) seals a checkpoint.
    let status = Command::new("kill")
        .args(["-INT", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = proxy.child.wait().unwrap();
    assert!(exit.success(), "serve exited {exit:?}");

    // One record per message, the same ones the access log got.
    let file = jsonl(std::path::Path::new(&log));
    let stored = query(&db, &["--since", "1h"]);
    assert_eq!(sorted(&stored), sorted(&file));
    let client_messages = file.iter().filter(|r| r["direction"] == "client").count();
    // initialize, notifications/initialized, and the seven script steps.
    assert!(client_messages >= 9, "{file:?}");
    let calls: Vec<&Value> = file
        .iter()
        .filter(|r| r["mcp.method.name"] == "tools/call" && r["direction"] == "client")
        .collect();
    assert_eq!(calls.len(), 4, "{calls:?}");

    // Exactly the records asked for.
    let echo = query(&db, &["--tool", "echo", "--since", "1h"]);
    let expected: Vec<Value> = file
        .iter()
        .filter(|r| r["gen_ai.tool.name"] == "echo")
        .cloned()
        .collect();
    assert_eq!(expected.len(), 2, "{file:?}");
    assert_eq!(sorted(&echo), sorted(&expected));
    let denied = query(&db, &["--decision", "deny", "--since", "1h"]);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["gen_ai.tool.name"], "delete-file");

    let public = format!("{key}.pub");
    let (code, out, err) = portcullis(&["audit", "verify", "--db", &db, "--key", &public]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("OK: {} records verified", file.len())),
        "{out}"
    );

    // Edit one byte of the database file, inside the denied record.
    let by_seq = query(&db, &["--by-seq"]);
    let request_id = denied[0]["request_id"].as_str().unwrap().to_owned();
    let seq = by_seq
        .iter()
        .position(|r| r["request_id"] == request_id.as_str())
        .unwrap()
        + 1;
    let conn = audit_store::rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&db).unwrap();
    let needle = format!("\"request_id\":\"{request_id}\"");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap_or_else(|| panic!("{needle} is not in the database file"));
    let i = at + needle.len() - 2;
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&db, bytes).unwrap();
    let (code, out, _) = portcullis(&["audit", "verify", "--db", &db, "--key", &public]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!("FAILED: record {seq} was modified")),
        "{out}"
    );
}
