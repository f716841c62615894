//! The `portcullis audit` subcommands, compiled from `src/audit_cmd.rs`
//! exactly as the binary compiles them, and driven through clap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../src/audit_cmd.rs"]
#[allow(dead_code)]
mod audit_cmd;

use audit_cmd::AuditCommand;
use audit_store::sample;
use audit_store::time::now_ms;
use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: AuditCommand,
}

fn run(args: &[&str]) -> (ExitCode, String) {
    let cli = Cli::try_parse_from(std::iter::once("audit").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let code = match &cli.cmd {
        AuditCommand::Query(a) => audit_cmd::query(a, &mut out),
        AuditCommand::Verify(a) => audit_cmd::verify(a, &mut out),
        AuditCommand::Ingest(a) => audit_cmd::ingest(a, &mut out),
        AuditCommand::Prune(a) => audit_cmd::prune(a, &mut out),
        AuditCommand::Keygen(a) => audit_cmd::keygen(a, &mut out),
        AuditCommand::Shadow(a) => audit_cmd::shadow(a, &mut out),
    }
    .unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn ingest_query_verify_tamper_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (db, log, key) = (d("audit.db"), d("audit.jsonl"), d("signing.key"));

    let (code, out) = run(&["keygen", "--out", &key]);
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.contains("signing.key.pub"), "{out}");

    // A JSONL audit log as `portcullis serve --audit-log` writes it.
    let now = now_ms();
    let day = 86_400_000;
    let mut jsonl = String::new();
    for i in 0..40u64 {
        let subject = if i % 2 == 0 { "alice" } else { "bob" };
        let tool = if i % 4 < 2 {
            "crm.search"
        } else {
            "crm.delete"
        };
        let t = now - (39 - i as i64) * day;
        jsonl.push_str(&sample::record(i, subject, tool, t).to_string());
        jsonl.push('\n');
    }
    std::fs::write(&log, jsonl).unwrap();
    let (_, out) = run(&[
        "ingest",
        "--db",
        &db,
        &log,
        "--key",
        &key,
        "--checkpoint-every",
        "8",
    ]);
    assert_eq!(out.trim(), "ingested 40 records (seq 1..=40)");

    // alice's crm.search calls in the last 30 days: i = 12, 16, ..., 36.
    let expected: Vec<String> = (12..40)
        .step_by(4)
        .map(|i| format!("req-{i:010}"))
        .collect();
    let base = [
        "query",
        "--db",
        &db,
        "--subject",
        "alice",
        "--tool",
        "crm.search",
        "--since",
        "30d",
    ];
    let (_, out) = run(&base);
    let ids: Vec<String> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids, expected);
    let (_, csv) = run(&[&base[..], &["--format", "csv"]].concat());
    assert_eq!(csv.lines().count(), expected.len() + 1);
    assert!(
        csv.lines().nth(1).unwrap().contains(",alice,agent-"),
        "{csv}"
    );
    let (_, table) = run(&[&base[..], &["--format", "table"]].concat());
    assert!(
        table.contains(&format!("({} records)", expected.len())),
        "{table}"
    );

    // The export recomputes to the chain head, as docs/audit-store.md says.
    let (_, export) = run(&["query", "--db", &db, "--by-seq"]);
    let mut h = [0u8; 32];
    for (n, line) in export.lines().enumerate() {
        h = audit_store::chain::record_hash(&h, line.as_bytes(), n as u64 + 1);
    }
    let store =
        audit_store::Store::open_existing(db.as_ref(), audit_store::Config::default()).unwrap();
    assert_eq!(store.head().unwrap(), (40, h));
    drop(store);

    let public = format!("{key}.pub");
    let (code, out) = run(&["verify", "--db", &db, "--key", &public]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.starts_with("OK: 40 records verified"), "{out}");

    // Edit a byte of the database file itself, inside record 23's JSON.
    let conn = audit_store::rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&db).unwrap();
    let needle = b"\"request_id\":\"req-0000000022\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[at + needle.len() - 2] = b'9';
    std::fs::write(&db, bytes).unwrap();
    let (code, out) = run(&["verify", "--db", &db, "--key", &public]);
    assert_eq!(code, ExitCode::from(1), "{out}");
    assert!(out.starts_with("FAILED: record 23 was modified"), "{out}");
    let (_, json) = run(&["verify", "--db", &db, "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["finding"]["finding"], "modified");
    assert_eq!(v["finding"]["seq"], 23);
}

#[test]
fn ingest_defaults_a_key_and_prune_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let log = dir.path().join("audit.jsonl");
    let now = now_ms();
    let day = 86_400_000;
    let lines: Vec<String> = (0..20u64)
        .map(|i| sample::nth(i, now - (100 - i as i64 * 5) * day + 60_000, 0).to_string())
        .collect();
    std::fs::write(&log, lines.join("\n")).unwrap();
    let (db, log) = (db.to_str().unwrap(), log.to_str().unwrap());
    let (_, out) = run(&["ingest", "--db", db, log, "--sync", "normal"]);
    assert!(out.contains("generated checkpoint signing key"), "{out}");
    assert!(out.contains("ingested 20 records"), "{out}");
    // Records at -100d, -95d, -90d+1m, ...: two are past 90 days.
    let (_, out) = run(&["prune", "--db", db]);
    assert!(out.starts_with("pruned 2 records"), "{out}");
    let public = format!("{db}.key.pub");
    let (code, out) = run(&["verify", "--db", db, "--key", &public]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("pruning anchor at 2"), "{out}");
    let (_, out) = run(&["prune", "--db", db, "--retention", "30d"]);
    assert!(out.starts_with("pruned 12 records"), "{out}");
}

#[test]
fn shadow_lists_unregistered_servers_by_authority() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (db, log) = (d("audit.db"), d("audit.jsonl"));
    let now = now_ms();
    let shadow = |n: u64, t: i64, authority: &str, subject: Option<&str>, addr: &str| {
        let mut r = serde_json::json!({
            "schema": "portcullis.audit/v1",
            "time": audit_store::time::format_rfc3339_ms(t),
            "request_id": format!("s-{n}"), "message_index": 0, "direction": "client",
            "kind": "request", "mcp.method.name": "initialize", "server": null,
            "shadow": true, "authority": authority, "path": "/mcp",
            "network.peer.address": addr, "decision": "allow", "reason": "shadow",
            "bundle_version": "t", "outcome": "result",
        });
        if let Some(s) = subject {
            r["subject"] = s.into();
        }
        r
    };
    let lines = [
        sample::record(1, "alice", "search", now - 3_600_000),
        shadow(
            2,
            now - 3_000_000,
            "rogue.internal:8080",
            Some("bob"),
            "10.0.0.7",
        ),
        shadow(3, now - 2_000_000, "Rogue.Internal:8080", None, "10.0.0.9"),
        shadow(
            4,
            now - 1_000_000,
            "rogue.internal:8080",
            Some("bob"),
            "10.0.0.7",
        ),
        shadow(
            5,
            now - 40 * 86_400_000,
            "old.example:1",
            Some("dave"),
            "10.0.2.2",
        ),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, text).unwrap();
    run(&["ingest", "--db", &db, &log]);
    let (_, out) = run(&["shadow", "--db", &db, "--format", "json"]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["authority"], "rogue.internal:8080");
    assert_eq!(rows[0]["count"], 3);
    assert_eq!(
        rows[0]["callers"],
        serde_json::json!([
            {"subject": "bob", "address": "10.0.0.7", "count": 2},
            {"address": "10.0.0.9", "count": 1},
        ])
    );
    let (_, table) = run(&["shadow", "--db", &db, "--since", "60d"]);
    assert!(
        table.contains("old.example:1") && table.contains("bob@10.0.0.7 (2)"),
        "{table}"
    );
    assert!(table.contains("(2 shadow servers since"), "{table}");
}
