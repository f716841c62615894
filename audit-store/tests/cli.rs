//! The operations behind the `portcullis audit` subcommands
//! (`audit_store::admin`), driven as the CLI drives them, with what each
//! prints checked against the reports' own text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use audit_store::admin::{self, IngestOptions};
use audit_store::time::{now_ms, parse_time_arg};
use audit_store::{Filter, Format, Synchronous, sample};
use std::path::Path;

/// `audit ingest --db DB FILE [--key KEY]`: the key notice, if a key was
/// made, then the report.
fn ingest(db: &str, file: &str, key: Option<&str>, every: u64, sync: Synchronous) -> String {
    let k = admin::store_key(db.as_ref(), key.map(Path::new), true).unwrap();
    let mut out = k.notice().map(|n| format!("{n}\n")).unwrap_or_default();
    let opts = IngestOptions {
        checkpoint_every: every,
        batch: 1000,
        synchronous: sync,
        stream: false,
    };
    let report =
        admin::ingest(db.as_ref(), k.key, std::fs::File::open(file).unwrap(), opts).unwrap();
    out.push_str(&format!("{report}\n"));
    out
}

/// `audit query --db DB [--subject S] [--tool T] [--since D]`, in `format`.
fn query(db: &str, filter: Filter, format: Format) -> String {
    let mut out = Vec::new();
    admin::query(db.as_ref(), &filter, format, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// `audit verify --db DB [--key PUB]`: whether it verified, and the text.
fn verify(db: &str, public: Option<&str>) -> (bool, String) {
    let trusted = public.map(|p| audit_store::load_verifying_key(p.as_ref()).unwrap());
    let report = admin::verify(db.as_ref(), trusted.as_ref()).unwrap();
    (report.is_ok(), report.summary())
}

/// `audit prune --db DB [--retention D]`.
fn prune(db: &str, retention: &str) -> String {
    let k = admin::store_key(db.as_ref(), None, false).unwrap();
    let ms = audit_store::time::parse_duration_ms(retention).unwrap();
    admin::prune(db.as_ref(), k.key, ms, now_ms())
        .unwrap()
        .to_string()
}

#[test]
fn ingest_query_verify_tamper_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (db, log, key) = (d("audit.db"), d("audit.jsonl"), d("signing.key"));

    let public = audit_store::generate_key(key.as_ref()).unwrap();
    let public_file = audit_store::keys::public_path(key.as_ref());
    assert!(public_file.ends_with("signing.key.pub"), "{public_file:?}");
    assert_eq!(
        audit_store::load_verifying_key(&public_file).unwrap(),
        public
    );

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
    let out = ingest(&db, &log, Some(&key), 8, Synchronous::Full);
    assert_eq!(out.trim(), "ingested 40 records (seq 1..=40)");

    // alice's crm.search calls in the last 30 days: i = 12, 16, ..., 36.
    let expected: Vec<String> = (12..40)
        .step_by(4)
        .map(|i| format!("req-{i:010}"))
        .collect();
    let base = Filter {
        subject: Some("alice".into()),
        tool: Some("crm.search".into()),
        since: parse_time_arg("30d", now_ms()),
        ..Filter::default()
    };
    let out = query(&db, base.clone(), Format::Json);
    let ids: Vec<String> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids, expected);
    let csv = query(&db, base.clone(), Format::Csv);
    assert_eq!(csv.lines().count(), expected.len() + 1);
    assert!(
        csv.lines().nth(1).unwrap().contains(",alice,agent-"),
        "{csv}"
    );
    let table = query(&db, base, Format::Table);
    assert!(
        table.contains(&format!("({} records)", expected.len())),
        "{table}"
    );

    // The export recomputes to the chain head, as docs/audit-store.md says.
    let by_seq = Filter {
        order: audit_store::Order::Seq,
        ..Filter::default()
    };
    let export = query(&db, by_seq, Format::Json);
    let mut h = [0u8; 32];
    for (n, line) in export.lines().enumerate() {
        h = audit_store::chain::record_hash(&h, line.as_bytes(), n as u64 + 1);
    }
    let store =
        audit_store::Store::open_existing(db.as_ref(), audit_store::Config::default()).unwrap();
    assert_eq!(store.head().unwrap(), (40, h));
    drop(store);

    let public = format!("{key}.pub");
    let (ok, out) = verify(&db, Some(&public));
    assert!(ok, "{out}");
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
    let (ok, out) = verify(&db, Some(&public));
    assert!(!ok, "{out}");
    assert!(out.starts_with("FAILED: record 23 was modified"), "{out}");
    let report = admin::verify(db.as_ref(), None).unwrap();
    let v = serde_json::to_value(&report).unwrap();
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
    let out = ingest(db, log, None, 1000, Synchronous::Normal);
    assert!(out.contains("generated checkpoint signing key"), "{out}");
    assert!(out.contains("ingested 20 records"), "{out}");
    // Records at -100d, -95d, -90d+1m, ...: two are past 90 days.
    let out = prune(db, "90d");
    assert!(out.starts_with("pruned 2 records"), "{out}");
    let public = format!("{db}.key.pub");
    let (ok, out) = verify(db, Some(&public));
    assert!(ok, "{out}");
    assert!(out.contains("pruning anchor at 2"), "{out}");
    let out = prune(db, "30d");
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
    ingest(&db, &log, None, 1000, Synchronous::Full);
    let since = |d: &str| parse_time_arg(d, now_ms()).unwrap();
    let rows: Vec<serde_json::Value> = admin::shadow(db.as_ref(), since("30d"))
        .unwrap()
        .iter()
        .map(|s| audit_store::shadow::to_json(s).unwrap())
        .collect();
    let out = format!("{rows:?}");
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
    let table = audit_store::shadow::table(
        &admin::shadow(db.as_ref(), since("60d")).unwrap(),
        since("60d"),
    );
    assert!(
        table.contains("old.example:1") && table.contains("bob@10.0.0.7 (2)"),
        "{table}"
    );
    assert!(table.contains("(2 shadow servers since"), "{table}");
}
