//! Appends synthetic audit records to a store forever, one commit each,
//! printing `ack SEQ REQUEST_ID` after each commit returns: the thing to
//! `kill -9` when checking that no acknowledged record is lost.
//!
//! `cargo run -p portcullis-audit-store --example ingest_forever -- DB [normal]`
//! then `kill -9` it, and `portcullis audit verify --db DB`. The signing
//! key is `DB.key`, generated if missing. (The test suite's crash test,
//! `kill_9_mid_ingest_loses_no_acknowledged_record`, does the same through
//! the group-commit path.)
#![allow(clippy::expect_used)]

use audit_store::{Config, Store, Synchronous, sample, time::now_ms};
use std::io::Write;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let db = PathBuf::from(args.next().expect("usage: ingest_forever DB [full|normal]"));
    let synchronous = match args.next().as_deref() {
        Some("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    let key_path = PathBuf::from(format!("{}.key", db.display()));
    if !key_path.exists() {
        audit_store::generate_key(&key_path).expect("generate key");
    }
    let cfg = Config {
        checkpoint_every: 100,
        synchronous,
        signing_key: Some(audit_store::load_signing_key(&key_path).expect("load key")),
        ..Config::default()
    };
    let mut store = Store::open(&db, cfg).expect("open store");
    let mut out = std::io::stdout().lock();
    for n in 0.. {
        let record = sample::nth(n, now_ms(), 0);
        let seq = store.append(&record).expect("append");
        writeln!(
            out,
            "ack {seq} {}",
            record
                .get("request_id")
                .and_then(|v| v.as_str())
                .unwrap_or("")
        )
        .expect("stdout");
        out.flush().expect("stdout");
    }
}
