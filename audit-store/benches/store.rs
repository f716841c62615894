//! Audit store benchmarks: ingest rate, and the headline query ("every call
//! by user X to tool Y in the last 30 days") over a large store.
//!
//! The large store has `AUDIT_BENCH_RECORDS` records (default 1,000,000;
//! the target figure is 10,000,000), spread over the last 90 days,
//! 1,000 subjects x 40 tools. It is generated once through the public
//! append API (batches of 10,000) and kept at
//! `$CARGO_TARGET_DIR/audit-bench-N.db` for later runs; generation time,
//! rate and file size are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use audit_store::ed25519_dalek::SigningKey;
use audit_store::time::now_ms;
use audit_store::{Config, Filter, Prepared, Store, Synchronous, ingest_jsonl, sample};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::path::{Path, PathBuf};
use std::time::Instant;

const DAY: i64 = 86_400_000;

fn cfg(sync: Synchronous) -> Config {
    Config {
        checkpoint_every: 1000,
        synchronous: sync,
        signing_key: Some(SigningKey::from_bytes(&[1; 32])),
        ..Config::default()
    }
}

fn lines(n: u64, from: u64) -> Vec<u8> {
    let now = now_ms();
    let mut out = Vec::new();
    for i in from..from + n {
        out.extend_from_slice(sample::nth(i, now, 0).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    for (name, sync, batch, n) in [
        ("jsonl_batch1000_full", Synchronous::Full, 1000, 20_000u64),
        ("jsonl_batch1000_normal", Synchronous::Normal, 1000, 20_000),
        ("commit_each_full", Synchronous::Full, 1, 200),
        ("commit_each_normal", Synchronous::Normal, 1, 2_000),
    ] {
        let input = lines(n, 0);
        g.throughput(Throughput::Elements(n));
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(&dir.path().join("a.db"), cfg(sync)).unwrap();
                    (dir, store)
                },
                |(dir, mut store)| {
                    let r = ingest_jsonl(&mut store, input.as_slice(), batch, |_, _| {}).unwrap();
                    assert_eq!(r.records, n);
                    (dir, store)
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

fn big_store(n: u64) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = Path::new(&target).join(format!("audit-bench-{n}.db"));
    if path.exists() {
        return path;
    }
    let tmp = path.with_extension("db.partial");
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(tmp.with_extension("partial-wal"));
    let mut store = Store::open(&tmp, cfg(Synchronous::Normal)).unwrap();
    let start = now_ms() - 90 * DAY;
    let step = (90 * DAY) / i64::try_from(n).unwrap();
    let t0 = Instant::now();
    let mut i = 0u64;
    while i < n {
        let end = (i + 10_000).min(n);
        let batch: Vec<Prepared> = (i..end)
            .map(|k| Prepared::from_value(&sample::nth(k, start, step)).unwrap())
            .collect();
        store.append_prepared(&batch).unwrap();
        i = end;
        if i.is_multiple_of(1_000_000) {
            eprintln!("generated {i} records in {:.1?}", t0.elapsed());
        }
    }
    store.close().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let size = std::fs::metadata(&tmp).unwrap().len();
    eprintln!(
        "generated {n} records in {secs:.1}s ({:.0} records/s), {:.2} GB",
        n as f64 / secs,
        size as f64 / 1e9
    );
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn query(c: &mut Criterion) {
    let n: u64 = std::env::var("AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let path = big_store(n);
    let store = Store::open_existing(&path, Config::default()).unwrap();
    let filter = |k: u64| Filter {
        subject: Some(format!("user-{}", k % 1000)),
        tool: Some(format!("tool-{}", (k * 7) % 40)),
        since: Some(now_ms() - 30 * DAY),
        ..Filter::default()
    };
    eprintln!("plan: {}", store.explain(&filter(0)).unwrap());
    let hits = store.query(&filter(0)).unwrap().len();
    eprintln!("user-0 x tool-0 in the last 30 days: {hits} records of {n}");
    let mut g = c.benchmark_group("query");
    let mut k = 0u64;
    g.bench_function(format!("subject_tool_30d_{n}"), |b| {
        b.iter(|| {
            k += 1;
            // A different subject and tool each time: no warm row cache.
            let rows = store.query(&filter(k)).unwrap();
            assert!(!rows.is_empty());
            rows.len()
        });
    });
    g.finish();
}

criterion_group!(benches, ingest, query);
criterion_main!(benches);
