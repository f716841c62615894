//! Measures JSONL ingest on this machine: wall-clock rate and CPU time per
//! record (from /proc/self/stat), so a figure taken on a busy, shared
//! machine can still be read as cost per record.
//!
//! `cargo run --release -p portcullis-audit-store --example ingest_rate -- DB N [full|normal]`
//! (DB should not exist; N synthetic records are generated in memory first).
#![allow(clippy::expect_used)]

use audit_store::{Config, Store, Synchronous, ingest_jsonl, sample, time::now_ms};
use std::path::PathBuf;
use std::time::Instant;

/// User + system CPU seconds of this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of those, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let db = PathBuf::from(args.next().expect("usage: ingest_rate DB N [full|normal]"));
    let n: u64 = args.next().and_then(|s| s.parse().ok()).expect("N records");
    let synchronous = match args.next().as_deref() {
        Some("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    let now = now_ms();
    let mut input = Vec::new();
    for i in 0..n {
        input.extend_from_slice(sample::nth(i, now, 0).to_string().as_bytes());
        input.push(b'\n');
    }
    let cfg = Config {
        synchronous,
        signing_key: Some(audit_store::ed25519_dalek::SigningKey::from_bytes(&[3; 32])),
        ..Config::default()
    };
    let mut store = Store::open(&db, cfg).expect("open store");
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let report = ingest_jsonl(&mut store, input.as_slice(), 1000, |_, _| {}).expect("ingest");
    store.close().expect("close");
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    println!(
        "{} records ({} bytes/record) in {wall:.1}s wall = {:.0} records/s; {cpu:.1}s CPU = {:.1} us/record = {:.0} records/s per core",
        report.records,
        input.len() as u64 / n.max(1),
        report.records as f64 / wall,
        cpu * 1e6 / report.records as f64,
        report.records as f64 / cpu.max(1e-9),
    );
}
