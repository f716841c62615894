//! The store end to end, on real SQLite files in temp dirs: append and
//! query, verification catching each kind of tampering (SQL and raw file
//! edits), retention, group commit, JSONL ingest, and a kill -9 crash test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use audit_store::ed25519_dalek::SigningKey;
use audit_store::rusqlite::Connection;
use audit_store::sample;
use audit_store::time::now_ms;
use audit_store::{Config, Filter, Finding, Format, Ingestor, Store, ingest_jsonl};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

const DAY: i64 = 86_400_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn cfg(every: u64) -> Config {
    Config {
        checkpoint_every: every,
        signing_key: Some(key()),
        ..Config::default()
    }
}

/// A store of `n` records, one per hour ending now, sealed every 10.
fn filled(dir: &Path, n: u64) -> Store {
    let mut store = Store::open(&dir.join("audit.db"), cfg(10)).unwrap();
    let start = now_ms() - (n as i64) * 3_600_000;
    let batch: Vec<_> = (1..=n)
        .map(|i| audit_store::Prepared::from_value(&sample::nth(i, start, 3_600_000)).unwrap())
        .collect();
    assert_eq!(store.append_prepared(&batch).unwrap(), (1, n));
    store
}

/// Opens a raw connection the way an attacker would, minus the guards.
fn raw(dir: &Path) -> Connection {
    let c = Connection::open(dir.join("audit.db")).unwrap();
    c.execute_batch(
        "DROP TRIGGER IF EXISTS records_append_only; DROP TRIGGER IF EXISTS records_prune_only; \
         DROP TRIGGER IF EXISTS checkpoints_append_only;",
    )
    .unwrap();
    c
}

fn finding(store: &Store) -> Finding {
    let report = store.verify(Some(&key().verifying_key())).unwrap();
    report.finding.expect("tampering must be found")
}

#[test]
fn append_then_query_by_subject_tool_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("audit.db"), cfg(1000)).unwrap();
    let now = now_ms();
    let mut expected = Vec::new();
    for i in 0..300u64 {
        let (subject, tool) = match i % 3 {
            0 => ("alice", "crm.search"),
            1 => ("alice", "crm.delete"),
            _ => ("bob", "crm.search"),
        };
        // Two records a day going back 150 days.
        let t = now - (150 * DAY) + (i as i64) * (DAY / 2);
        let seq = store.append(&sample::record(i, subject, tool, t)).unwrap();
        assert_eq!(seq, i + 1);
        if i % 3 == 0 && t >= now - 30 * DAY {
            expected.push(seq);
        }
    }
    let filter = Filter {
        subject: Some("alice".into()),
        tool: Some("crm.search".into()),
        since: Some(now - 30 * DAY),
        ..Filter::default()
    };
    let got: Vec<u64> = store
        .query(&filter)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(got, expected);
    assert!(!got.is_empty());
    let plan = store.explain(&filter).unwrap();
    assert!(plan.contains("records_subject_tool_time"), "plan: {plan}");

    // Limit, decision and until compose.
    let mut f2 = filter.clone();
    f2.limit = Some(3);
    assert_eq!(store.query(&f2).unwrap().len(), 3);
    let mut f3 = filter.clone();
    f3.until = Some(now - 30 * DAY);
    assert!(store.query(&f3).unwrap().is_empty());

    // Output formats.
    let mut json = Vec::new();
    let n = store.query_to(&filter, Format::Json, &mut json).unwrap();
    let json = String::from_utf8(json).unwrap();
    assert_eq!(json.lines().count() as u64, n);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["subject"], "alice");
        assert_eq!(v["gen_ai.tool.name"], "crm.search");
    }
    let mut csv = Vec::new();
    store.query_to(&filter, Format::Csv, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("seq,time,subject,agent,tenant,server,"));
    assert_eq!(csv.lines().count() as u64, n + 1);
    let mut table = Vec::new();
    store.query_to(&filter, Format::Table, &mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.starts_with("SEQ"));
    assert!(table.contains(&format!("({n} records)")));
    store.close().unwrap();
}

#[test]
fn verify_ok_then_names_the_record_edited_by_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 100);
    let report = store.verify(Some(&key().verifying_key())).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        (report.records, report.last_seq, report.checkpoints),
        (100, 100, 10)
    );

    raw(dir.path())
        .execute(
            "UPDATE records SET record = replace(record, 'allowed by rule', 'allowed by rulf') \
             WHERE seq = 42",
            [],
        )
        .unwrap();
    match finding(&store) {
        Finding::Modified {
            seq, request_id, ..
        } => {
            assert_eq!(seq, 42);
            assert_eq!(request_id.as_deref(), Some("req-0000000042"));
        }
        f => panic!("{f:?}"),
    }
}

#[test]
fn verify_names_a_row_hidden_by_editing_an_indexed_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 50);
    raw(dir.path())
        .execute("UPDATE records SET subject = 'nobody' WHERE seq = 7", [])
        .unwrap();
    match finding(&store) {
        Finding::Modified { seq: 7, detail, .. } => assert!(detail.contains("subject"), "{detail}"),
        f => panic!("{f:?}"),
    }
}

#[test]
fn verify_names_a_removed_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 50);
    raw(dir.path())
        .execute("DELETE FROM records WHERE seq = 17", [])
        .unwrap();
    assert!(matches!(finding(&store), Finding::Removed { seq: 17, .. }));
}

#[test]
fn verify_names_a_truncated_tail_that_a_checkpoint_covers() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 50);
    raw(dir.path())
        .execute("DELETE FROM records WHERE seq > 45", [])
        .unwrap();
    // The checkpoint at 50 still vouches for records up to 50.
    assert!(matches!(finding(&store), Finding::Removed { seq: 46, .. }));
}

#[test]
fn verify_names_reordered_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 50);
    raw(dir.path())
        .execute_batch(
            "UPDATE records SET seq = -1 WHERE seq = 5; \
             UPDATE records SET seq = 5 WHERE seq = 6; \
             UPDATE records SET seq = 6 WHERE seq = -1;",
        )
        .unwrap();
    assert_eq!(
        finding(&store),
        Finding::Reordered {
            seq: 5,
            found_at: 6
        }
    );

    // Swapping only the contents (keeping the hashes in place) too.
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 50);
    let c = raw(dir.path());
    let r9: String = c
        .query_row("SELECT record FROM records WHERE seq = 9", [], |r| r.get(0))
        .unwrap();
    let r12: String = c
        .query_row("SELECT record FROM records WHERE seq = 12", [], |r| {
            r.get(0)
        })
        .unwrap();
    c.execute("UPDATE records SET record = ?1 WHERE seq = 9", [&r12])
        .unwrap();
    c.execute("UPDATE records SET record = ?1 WHERE seq = 12", [&r9])
        .unwrap();
    assert_eq!(
        finding(&store),
        Finding::Reordered {
            seq: 9,
            found_at: 12
        }
    );
}

#[test]
fn verify_catches_a_consistently_rewritten_chain_and_forged_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 30);
    // The attacker edits record 23 and recomputes every hash after it.
    let c = raw(dir.path());
    c.execute(
        "UPDATE records SET record = replace(record, '\"tenant\":\"acme\"', '\"tenant\":\"acmf\"'), \
         tenant = 'acmf' WHERE seq = 23",
        [],
    )
    .unwrap();
    let mut prev: Vec<u8> = c
        .query_row("SELECT hash FROM records WHERE seq = 22", [], |r| r.get(0))
        .unwrap();
    for seq in 23..=30u64 {
        let rec: String = c
            .query_row(
                "SELECT record FROM records WHERE seq = ?1",
                [seq as i64],
                |r| r.get(0),
            )
            .unwrap();
        let h =
            audit_store::chain::record_hash(&prev.clone().try_into().unwrap(), rec.as_bytes(), seq);
        c.execute(
            "UPDATE records SET hash = ?1 WHERE seq = ?2",
            (h.as_slice(), seq as i64),
        )
        .unwrap();
        prev = h.to_vec();
    }
    assert_eq!(
        finding(&store),
        Finding::Rewritten {
            from_seq: 21,
            checkpoint_seq: 30
        }
    );
    // Re-signing the checkpoint with the attacker's own key does not help
    // against a verifier holding the real public key.
    let forger = SigningKey::from_bytes(&[9; 32]);
    let cp = audit_store::Checkpoint::sign(&forger, 30, prev.clone().try_into().unwrap(), 0);
    c.execute(
        "UPDATE checkpoints SET hash = ?1, public_key = ?2, signature = ?3, created_ms = 0 \
         WHERE seq = 30",
        (
            prev.as_slice(),
            cp.public_key.as_slice(),
            cp.signature.as_slice(),
        ),
    )
    .unwrap();
    match finding(&store) {
        Finding::BadCheckpoint { seq: 30, detail } => {
            assert!(detail.contains("trusted"), "{detail}")
        }
        f => panic!("{f:?}"),
    }
    // Without the trusted key, verification only shows consistency.
    // (the report lists both signers, which is the tell).
    let unkeyed = store.verify(None).unwrap();
    assert!(unkeyed.is_ok(), "{unkeyed:?}");
    assert_eq!(unkeyed.signers.len(), 2);
}

#[test]
fn verify_names_the_record_after_a_byte_of_the_file_is_edited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut store = Store::open(&path, cfg(10)).unwrap();
    for i in 1..=60u64 {
        let mut r = sample::record(i, "alice", "crm.search", now_ms());
        r["reason"] = format!("marker-{i:04}-xyz").into();
        store.append(&r).unwrap();
    }
    // Close folds the WAL into the main file, so the bytes are there.
    store.close().unwrap();
    assert!(!dir.path().join("audit.db-wal").exists());
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"marker-0037-xyz";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("record text in file");
    assert_eq!(
        bytes.windows(needle.len()).filter(|w| *w == needle).count(),
        1
    );
    bytes[at + needle.len() - 1] = b'q'; // "xyz" -> "xyq"
    std::fs::write(&path, &bytes).unwrap();

    let store = Store::open_existing(&path, Config::default()).unwrap();
    match finding(&store) {
        Finding::Modified { seq, .. } => assert_eq!(seq, 37),
        f => panic!("{f:?}"),
    }
}

#[test]
fn prune_keeps_the_rest_verifiable_from_a_signed_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let mut store = Store::open(&path, cfg(7)).unwrap();
    let now = now_ms();
    // One record a day for 200 days.
    for i in 0..200u64 {
        let t = now - (200 - i as i64) * DAY + 1000;
        store.append(&sample::nth(i, t, 0)).unwrap();
    }
    let report = store.prune(now).unwrap();
    // Records 1..=110 are older than 90 days; the cut is sealed at 110.
    assert_eq!(report.removed, 110);
    assert_eq!(report.anchor_seq, Some(110));
    let v = store.verify(Some(&key().verifying_key())).unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!((v.anchor_seq, v.records, v.last_seq), (Some(110), 90, 200));
    // Nothing older than the retention remains; new appends chain on.
    let all = store.query(&Filter::default()).unwrap();
    assert_eq!(all.first().unwrap().seq, 111);
    assert!(all.iter().all(|r| r.time_ms >= now - 90 * DAY));
    assert_eq!(store.append(&sample::nth(500, now, 0)).unwrap(), 201);
    // Pruning again is a no-op, and still verifies.
    assert_eq!(store.prune(now).unwrap().removed, 0);
    store.close().unwrap();

    let store = Store::open_existing(&path, Config::default()).unwrap();
    assert!(store.verify(Some(&key().verifying_key())).unwrap().is_ok());
    // Tampering after a prune is still found, and so is a moved anchor.
    raw(dir.path())
        .execute("DELETE FROM records WHERE seq = 111", [])
        .unwrap();
    assert!(matches!(finding(&store), Finding::Removed { seq: 111, .. }));
    raw(dir.path())
        .execute("UPDATE meta SET value = '111' WHERE key = 'anchor_seq'", [])
        .unwrap();
    assert!(matches!(finding(&store), Finding::BadAnchor { .. }));
}

#[test]
fn prune_refuses_a_tampered_store_and_without_a_key_cuts_at_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("audit.db"), cfg(10)).unwrap();
    let now = now_ms();
    for i in 0..50u64 {
        store.append(&sample::nth(i, now - 200 * DAY, 0)).unwrap();
    }
    for i in 50..60u64 {
        store.append(&sample::nth(i, now, 0)).unwrap();
    }
    // Records 1..=50 are old; without a key, the cut falls back to the
    // checkpoint at 50, which exists.
    let path = dir.path().join("audit.db");
    drop(store);
    let mut keyless = Store::open_existing(&path, Config::default()).unwrap();
    let r = keyless.prune(now).unwrap();
    assert_eq!((r.removed, r.anchor_seq), (50, Some(50)));
    assert!(
        keyless
            .verify(Some(&key().verifying_key()))
            .unwrap()
            .is_ok()
    );

    raw(dir.path())
        .execute("UPDATE records SET decision = 'allow' WHERE seq = 51", [])
        .unwrap();
    assert!(matches!(
        keyless.prune(now + 365 * DAY),
        Err(audit_store::Error::Tampered(Finding::Modified {
            seq: 51,
            ..
        }))
    ));
}

#[test]
fn the_guards_refuse_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = filled(dir.path(), 5);
    assert_eq!(store.checkpoint().unwrap().unwrap().seq, 5);
    let c = store.connection();
    assert!(
        c.execute("UPDATE records SET subject = 'x' WHERE seq = 1", [])
            .is_err()
    );
    assert!(c.execute("DELETE FROM records WHERE seq = 1", []).is_err());
    assert!(c.execute("UPDATE checkpoints SET seq = 3", []).is_err());
}

#[test]
fn group_commit_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = Store::open(&path, cfg(100)).unwrap();
    let ingestor = Ingestor::spawn(store, 256).unwrap();
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let h = ingestor.handle();
        threads.push(std::thread::spawn(move || {
            (0..250u64)
                .map(|i| h.append(&sample::nth(t * 1000 + i, now_ms(), 0)).unwrap())
                .collect::<Vec<u64>>()
        }));
    }
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    let store = ingestor.shutdown().unwrap();
    let v = store.verify(Some(&key().verifying_key())).unwrap();
    assert!(v.is_ok(), "{v:?}");
    assert_eq!((v.records, v.unsealed), (1000, 0));
    // A bad record is refused at the caller, not in the writer.
    let ingestor = Ingestor::spawn(store, 8).unwrap();
    assert!(ingestor.handle().append_json("{\"schema\":1}").is_err());
}

#[test]
fn lines_sent_without_waiting_are_committed_and_sealed_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db"), cfg(1000)).unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard = notices.clone();
    let ingestor = Ingestor::spawn_with(store, 16, move |n| heard.lock().unwrap().push(n)).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let h = ingestor.handle();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    // Two records per chunk, as one stream's audit lines.
                    let chunk = format!(
                        "{}\n\n{}\n",
                        sample::nth(t * 1000 + 2 * i, now_ms(), 0),
                        sample::nth(t * 1000 + 2 * i + 1, now_ms(), 0)
                    );
                    h.send_lines(chunk.into_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    ingestor
        .handle()
        .send_lines(b"not a record\n".to_vec())
        .unwrap();
    let store = ingestor.shutdown().unwrap();
    let v = store.verify(Some(&key().verifying_key())).unwrap();
    assert!(v.is_ok(), "{v:?}");
    // Everything sent before the shutdown is committed, and sealed.
    assert_eq!((v.records, v.unsealed), (400, 0));
    assert_eq!(*notices.lock().unwrap(), [audit_store::Notice::BadLine]);
}

#[test]
fn ingest_jsonl_commits_good_lines_and_names_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("audit.db"), cfg(10)).unwrap();
    let mut input = String::new();
    for i in 0..25u64 {
        input.push_str(&sample::nth(i, now_ms(), 0).to_string());
        input.push('\n');
        if i == 3 {
            input.push('\n');
        }
    }
    let mut commits = Vec::new();
    let r = ingest_jsonl(&mut store, input.as_bytes(), 10, |a, b| {
        commits.push((a, b))
    })
    .unwrap();
    assert_eq!(
        (r.records, r.lines, r.first_seq, r.last_seq),
        (25, 26, Some(1), Some(25))
    );
    assert_eq!(commits, vec![(1, 10), (11, 20), (21, 25)]);

    let bad = format!(
        "{}\nnot json\n{}\n",
        sample::nth(1, 0, 0),
        sample::nth(2, 0, 0)
    );
    match ingest_jsonl(&mut store, bad.as_bytes(), 10, |_, _| {}) {
        Err(audit_store::Error::Line { line: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    // The line before the bad one was committed, the one after was not.
    assert_eq!(store.head().unwrap().0, 26);
    assert!(store.verify(None).unwrap().is_ok());
}

/// A reader that yields one line per `read`, like a pipe fed slowly.
struct Trickle(Vec<Vec<u8>>);

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Ok(0);
        }
        let line = self.0.remove(0);
        buf[..line.len()].copy_from_slice(&line);
        Ok(line.len())
    }
}

#[test]
fn a_stream_is_committed_as_it_arrives_and_a_file_in_full_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("audit.db"), cfg(10)).unwrap();
    let lines: Vec<Vec<u8>> = (0..5u64)
        .map(|i| format!("{}\n", sample::nth(i, now_ms(), 0)).into_bytes())
        .collect();
    let mut commits = Vec::new();
    audit_store::ingest_jsonl_stream(&mut store, Trickle(lines.clone()), 100, |a, b| {
        commits.push((a, b))
    })
    .unwrap();
    assert_eq!(commits, vec![(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
    commits.clear();
    ingest_jsonl(&mut store, Trickle(lines), 100, |a, b| commits.push((a, b))).unwrap();
    assert_eq!(commits, vec![(6, 10)]);
}

/// The child half of the crash test: ingests forever through the group
/// commit path from two threads, printing each acknowledged seq.
#[test]
fn crash_child() {
    let Ok(db) = std::env::var("AUDIT_STORE_CRASH_CHILD_DB") else {
        return;
    };
    let store = Store::open(Path::new(&db), cfg(50)).unwrap();
    let ingestor = Ingestor::spawn(store, 64).unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let h = ingestor.handle();
            let out = out.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let n = t * 1_000_000_000 + i;
                    let seq = h.append(&sample::nth(n, now_ms(), 0)).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {seq} req-{n:010}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn kill_9_mid_ingest_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut acked: Vec<(u64, String)> = Vec::new();
    for round in 0..2 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("AUDIT_STORE_CRASH_CHILD_DB", &db)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let before = acked.len();
        while acked.len() < before + 2000 {
            let line = lines.next().expect("child stopped early").unwrap();
            if let Some(rest) = line.strip_prefix("ack ") {
                let (seq, id) = rest.split_once(' ').unwrap();
                acked.push((seq.parse().unwrap(), id.to_owned()));
            }
        }
        // SIGKILL, mid-stream: the child is appending as fast as it can.
        child.kill().unwrap();
        // Acks already written to the pipe count too.
        for line in lines {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ack ") {
                let (seq, id) = rest.split_once(' ').unwrap();
                acked.push((seq.parse().unwrap(), id.to_owned()));
            }
        }
        child.wait().unwrap();

        let store = Store::open_existing(&db, Config::default()).unwrap();
        let report = store.verify(Some(&key().verifying_key())).unwrap();
        assert!(report.is_ok(), "round {round}: {report:?}");
        let c = store.connection();
        for (seq, id) in &acked {
            let got: String = c
                .query_row(
                    "SELECT request_id FROM records WHERE seq = ?1",
                    [*seq as i64],
                    |r| r.get(0),
                )
                .unwrap_or_else(|e| panic!("round {round}: acknowledged seq {seq} missing: {e}"));
            assert_eq!(&got, id, "seq {seq}");
        }
        assert!(report.last_seq >= acked.iter().map(|a| a.0).max().unwrap());
        eprintln!(
            "round {round}: {} acknowledged, {} stored, {} unsealed",
            acked.len(),
            report.records,
            report.unsealed
        );
    }
}
