//! Golden vectors for the bytes the audit chain hashes.
//!
//! `vectors/chain.records.jsonl` holds audit records as the filter writes
//! them (every record of the golden exchange vectors in `tests/vectors`,
//! with their placeholders given fixed values, and two records that
//! exercise escapes, non-ASCII keys and numbers). `chain.expected.jsonl`
//! holds, for each, the canonical JSON and the chain hash that the store
//! produced when they were written. The records go through the same path
//! production uses (the group-commit [`Ingestor`] into a real SQLite file),
//! and every stored byte and hash must match: a change to the canonical
//! form or the chain would break every chain already stored, so it must
//! show here first.
//!
//! Regenerate the expected file only for a deliberate, versioned change of
//! the chain: `PORTCULLIS_BLESS_CHAIN=1 cargo test --workspace --test
//! chain_vectors`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use audit_store::chain::{GENESIS, record_hash};
use audit_store::{Config, Filter, Ingestor, Order, Store};
use serde_json::{Value, json};
use std::path::Path;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn vectors() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

#[test]
fn stored_canonical_bytes_and_chain_hashes_match_the_vectors() {
    let input = std::fs::read_to_string(vectors().join("chain.records.jsonl")).unwrap();
    let lines: Vec<&str> = input.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 50, "the vectors hold {} records", lines.len());

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db"), Config::default()).unwrap();
    let ingestor = Ingestor::spawn(store, 16).unwrap();
    let handle = ingestor.handle();
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(handle.append_json(line).unwrap(), i as u64 + 1);
    }
    let store = ingestor.shutdown().unwrap();
    let rows = store
        .query(&Filter {
            order: Order::Seq,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(rows.len(), lines.len());

    let mut prev = GENESIS;
    let mut got = Vec::new();
    for row in &rows {
        let hash = record_hash(&prev, row.record.as_bytes(), row.seq);
        got.push(json!({"seq": row.seq, "canonical": row.record, "hash": hex(&hash)}));
        prev = hash;
    }
    // The store's own head and verification agree with the recomputation.
    assert_eq!(store.head().unwrap(), (rows.len() as u64, prev));
    assert!(store.verify(None).unwrap().is_ok());

    let expected_path = vectors().join("chain.expected.jsonl");
    if std::env::var_os("PORTCULLIS_BLESS_CHAIN").is_some() {
        let text: String = got.iter().map(|v| format!("{v}\n")).collect();
        std::fs::write(&expected_path, text).unwrap();
    }
    let expected_text = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; it is created with PORTCULLIS_BLESS_CHAIN=1 (only for a deliberate change of the chain)",
            expected_path.display()
        )
    });
    let expected: Vec<Value> = expected_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(expected.len(), got.len(), "record count");
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(e, g, "seq {}: stored bytes or hash changed", e["seq"]);
    }
}
