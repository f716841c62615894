//! `portcullis audit shadow` over a real store: records shaped as the
//! filter writes shadow MCP (`"shadow": true`, `authority`, `path`,
//! `server` null) are ingested with `portcullis audit ingest`, mixed with
//! registered traffic and an old shadow record, and the listing must group
//! them by authority with first/last seen, counts and callers, and leave
//! out the registered traffic and what is older than `--since`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use audit_store::time::{format_rfc3339_ms, now_ms};
use serde_json::{Value, json};
use std::path::Path;
use support::portcullis;

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn shadow(
    n: u64,
    t: i64,
    authority: &str,
    subject: Option<&str>,
    addr: &str,
    method: &str,
) -> Value {
    let mut r = json!({
        "schema": "portcullis.audit/v1",
        "time": format_rfc3339_ms(t),
        "request_id": format!("shadow-{n}"),
        "message_index": 0,
        "direction": "client",
        "kind": "request",
        "jsonrpc_id": n,
        "mcp.method.name": method,
        "server": null,
        "shadow": true,
        "authority": authority,
        "path": "/mcp",
        "network.peer.address": addr,
        "decision": "allow",
        "reason": "shadow MCP: no McpServer matches this authority and path",
        "bundle_version": "test",
        "outcome": "result",
    });
    if let Some(s) = subject {
        r["subject"] = s.into();
    }
    r
}

fn registered(n: u64, t: i64) -> Value {
    audit_store::sample::record(n, "alice", "search", t)
}

fn ingest(db: &Path, records: &[Value]) {
    let file = db.with_extension("jsonl");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = portcullis(&[
        "audit",
        "ingest",
        "--db",
        db.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "ingest: {out}{err}");
    assert!(
        out.contains(&format!("ingested {} records", records.len())),
        "{out}"
    );
}

#[test]
fn lists_shadow_servers_with_callers() {
    let dir = support::temp_dir("audit-shadow");
    let db = dir.join("audit.db");
    let now = now_ms();
    let t0 = now - 2 * DAY;
    let records = vec![
        registered(1, t0),
        shadow(
            2,
            t0 + MIN,
            "rogue.internal:8080",
            Some("bob"),
            "10.0.0.7",
            "initialize",
        ),
        shadow(
            3,
            t0 + 2 * MIN,
            "rogue.internal:8080",
            Some("bob"),
            "10.0.0.7",
            "tools/list",
        ),
        shadow(
            4,
            t0 + 3 * MIN,
            "Rogue.Internal:8080",
            None,
            "10.0.0.9",
            "tools/call",
        ),
        registered(5, t0 + 4 * MIN),
        shadow(
            6,
            t0 + 5 * MIN,
            "laptop-42:3000",
            Some("carol"),
            "10.0.1.1",
            "initialize",
        ),
        // Older than the default 30 days: only a wider --since shows it.
        shadow(
            7,
            now - 40 * DAY,
            "ancient.example:9000",
            Some("dave"),
            "10.0.2.2",
            "initialize",
        ),
    ];
    ingest(&db, &records);

    let (code, out, err) = portcullis(&[
        "audit",
        "shadow",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let authorities: Vec<&str> = rows
        .iter()
        .map(|r| r["authority"].as_str().unwrap())
        .collect();
    assert_eq!(
        authorities,
        ["laptop-42:3000", "rogue.internal:8080"],
        "{out}"
    );

    let rogue = &rows[1];
    assert_eq!(rogue["count"], 3);
    assert_eq!(rogue["first_seen"], format_rfc3339_ms(t0 + MIN));
    assert_eq!(rogue["last_seen"], format_rfc3339_ms(t0 + 3 * MIN));
    assert_eq!(rogue["paths"], json!(["/mcp"]));
    assert_eq!(
        rogue["methods"],
        json!(["initialize", "tools/call", "tools/list"])
    );
    // bob twice from .7, then an anonymous caller from .9.
    assert_eq!(
        rogue["callers"],
        json!([
            {"subject": "bob", "address": "10.0.0.7", "count": 2},
            {"address": "10.0.0.9", "count": 1},
        ])
    );
    let laptop = &rows[0];
    assert_eq!(laptop["count"], 1);
    assert_eq!(
        laptop["callers"],
        json!([{"subject": "carol", "address": "10.0.1.1", "count": 1}])
    );

    // A wider window brings in the old one; the table names all three.
    let (code, out, _) = portcullis(&[
        "audit",
        "shadow",
        "--db",
        db.to_str().unwrap(),
        "--since",
        "60d",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("AUTHORITY"), "{out}");
    for needle in [
        "ancient.example:9000",
        "rogue.internal:8080",
        "bob@10.0.0.7 (2)",
        "(3 shadow servers since",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from\n{out}");
    }

    // A store with no shadow traffic lists nothing.
    let clean = dir.join("clean.db");
    ingest(&clean, &[registered(1, t0), registered(2, t0 + MIN)]);
    let (code, out, _) = portcullis(&[
        "audit",
        "shadow",
        "--db",
        clean.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out, "");

    // A bad --since is a usage error that says what it wants.
    let (code, _, err) = portcullis(&[
        "audit",
        "shadow",
        "--db",
        db.to_str().unwrap(),
        "--since",
        "soon",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("expected a duration"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
