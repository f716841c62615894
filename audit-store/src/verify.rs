//! Verification: walk the chain and the checkpoints, and name the first
//! record that was modified, removed or reordered.
//!
//! The walk starts at the anchor (the signed checkpoint retention left, or
//! genesis) and recomputes every record's hash from the stored bytes. The
//! first disagreement is reported, by seq, and the walk stops: after one
//! break nothing later can be trusted to mean anything. A hash mismatch is
//! classified as a reorder when the record that belongs at that position is
//! found further on, else as a modification; a gap in seq is a removal; an
//! indexed column that does not match its record (a row hidden from
//! queries) is a modification; a consistent chain that disagrees with a
//! signed checkpoint was rewritten after it was sealed. Records after the
//! last checkpoint are protected by the chain alone: truncating them cannot
//! be detected from the file, so the report counts them as `unsealed`.

use crate::chain::{Checkpoint, GENESIS, record_hash};
use crate::record::{Indexed, extract};
use crate::store::{anchor, from_i64, to_hash, to_i64};
use crate::{Error, Result};
use ed25519_dalek::VerifyingKey;
use rusqlite::Connection;
use serde::Serialize;
use std::fmt;

/// How far ahead a mismatching position looks for its moved record.
const REORDER_WINDOW: i64 = 10_000;

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The record at `seq` is not what was appended.
    Modified {
        seq: u64,
        request_id: Option<String>,
        detail: String,
    },
    /// The record at `seq` is missing.
    Removed { seq: u64, detail: String },
    /// The record that belongs at `seq` is at `found_at`.
    Reordered { seq: u64, found_at: u64 },
    /// The chain is self-consistent but disagrees with the signed checkpoint
    /// at `checkpoint_seq`: some record from `from_seq` on was rewritten
    /// and the chain recomputed.
    Rewritten { from_seq: u64, checkpoint_seq: u64 },
    /// The checkpoint at `seq` is unsigned, forged or signed by another key.
    BadCheckpoint { seq: u64, detail: String },
    /// The pruning anchor is not a valid signed checkpoint.
    BadAnchor { detail: String },
    /// SQLite could not read on past `after_seq` (a damaged file).
    Unreadable { after_seq: u64, detail: String },
}

impl Finding {
    /// The seq of the first record the finding concerns.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Finding::Modified { seq, .. }
            | Finding::Removed { seq, .. }
            | Finding::Reordered { seq, .. }
            | Finding::BadCheckpoint { seq, .. } => Some(*seq),
            Finding::Rewritten { from_seq, .. } => Some(*from_seq),
            Finding::Unreadable { after_seq, .. } => Some(after_seq + 1),
            Finding::BadAnchor { .. } => None,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Modified {
                seq,
                request_id,
                detail,
            } => {
                write!(f, "record {seq} was modified")?;
                if let Some(r) = request_id {
                    write!(f, " (request_id {r})")?;
                }
                write!(f, ": {detail}")
            }
            Finding::Removed { seq, detail } => write!(f, "record {seq} was removed: {detail}"),
            Finding::Reordered { seq, found_at } => write!(
                f,
                "records were reordered: the record that belongs at {seq} is at {found_at}"
            ),
            Finding::Rewritten {
                from_seq,
                checkpoint_seq,
            } => write!(
                f,
                "records {from_seq}..={checkpoint_seq} were rewritten: the chain does not match \
                 the signed checkpoint at {checkpoint_seq}"
            ),
            Finding::BadCheckpoint { seq, detail } => write!(f, "checkpoint {seq}: {detail}"),
            Finding::BadAnchor { detail } => write!(f, "pruning anchor: {detail}"),
            Finding::Unreadable { after_seq, detail } => {
                write!(f, "database unreadable after record {after_seq}: {detail}")
            }
        }
    }
}

/// What verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records walked.
    pub records: u64,
    /// The seq verification resumed from (the pruning anchor), if pruned.
    pub anchor_seq: Option<u64>,
    /// The last record's seq.
    pub last_seq: u64,
    /// Checkpoints whose signature was checked.
    pub checkpoints: u64,
    pub last_checkpoint_seq: Option<u64>,
    /// Records after the last checkpoint (chain-protected only).
    pub unsealed: u64,
    /// Whether signatures were checked against a key given by the caller
    /// (rather than the key each checkpoint names).
    pub trusted_key: bool,
    /// Keys that signed checkpoints, hex.
    pub signers: Vec<String>,
    /// `None` when everything verified.
    pub finding: Option<Finding>,
}

impl Report {
    /// Whether everything verified.
    pub fn is_ok(&self) -> bool {
        self.finding.is_none()
    }

    /// The report as `portcullis audit verify` prints it: `OK: ...` or
    /// `FAILED: <finding>`, then a warning when nothing is sealed and a
    /// note when signatures were checked against the keys the checkpoints
    /// name rather than a trusted one. Each line ends in a newline.
    pub fn summary(&self) -> String {
        let mut out = match &self.finding {
            None => format!(
                "OK: {} records verified (through seq {}), {} signed checkpoints{}{}\n",
                self.records,
                self.last_seq,
                self.checkpoints,
                match self.anchor_seq {
                    Some(s) => format!(", resuming from the pruning anchor at {s}"),
                    None => String::new(),
                },
                if self.unsealed > 0 {
                    format!(
                        "; {} records after the last checkpoint are not yet sealed",
                        self.unsealed
                    )
                } else {
                    String::new()
                }
            ),
            Some(f) => format!("FAILED: {f}\n"),
        };
        if self.is_ok() && self.checkpoints == 0 && self.records > 0 {
            out.push_str(
                "warning: no signed checkpoints: the chain is self-consistent, but nothing is \
                 sealed against a consistent rewrite\n",
            );
        }
        if !self.trusted_key && self.checkpoints > 0 {
            out.push_str(&format!(
                "note: signatures were checked against the keys the checkpoints name ({}); \
                 pass --key PUB to check them against a key you trust\n",
                self.signers.join(", ")
            ));
        }
        out
    }
}

struct Walk<'a> {
    conn: &'a Connection,
    trusted: Option<&'a VerifyingKey>,
    report: Report,
}

/// Verifies the store behind `conn`. `Err` only for failures to run the
/// check at all; what the check finds is in the report.
pub fn verify(conn: &Connection, trusted: Option<&VerifyingKey>) -> Result<Report> {
    let mut walk = Walk {
        conn,
        trusted,
        report: Report {
            records: 0,
            anchor_seq: None,
            last_seq: 0,
            checkpoints: 0,
            last_checkpoint_seq: None,
            unsealed: 0,
            trusted_key: trusted.is_some(),
            signers: Vec::new(),
            finding: None,
        },
    };
    if let Err(f) = walk.run()? {
        walk.report.finding = Some(f);
    }
    Ok(walk.report)
}

type Step<T> = Result<std::result::Result<T, Finding>>;

impl Walk<'_> {
    fn run(&mut self) -> Step<()> {
        let cps = match self.checkpoints()? {
            Ok(c) => c,
            Err(f) => return Ok(Err(f)),
        };
        self.report.last_checkpoint_seq = cps.last().map(|c| c.seq);
        for cp in &cps {
            let k = hex::encode(cp.public_key);
            if !self.report.signers.contains(&k) {
                self.report.signers.push(k);
            }
        }
        let (start, mut prev) = match anchor(self.conn) {
            Ok(Some((seq, hash))) => {
                self.report.anchor_seq = Some(seq);
                match cps.iter().find(|c| c.seq == seq) {
                    Some(c) if c.hash == hash => {}
                    Some(_) => {
                        return Ok(Err(Finding::BadAnchor {
                            detail: format!("anchor at {seq} differs from its checkpoint"),
                        }));
                    }
                    None => {
                        return Ok(Err(Finding::BadAnchor {
                            detail: format!("no signed checkpoint at anchor {seq}"),
                        }));
                    }
                }
                (seq, hash)
            }
            Ok(None) => (0, GENESIS),
            Err(e) => {
                return Ok(Err(Finding::BadAnchor {
                    detail: e.to_string(),
                }));
            }
        };
        // Checkpoints at or before the anchor cover pruned records: only
        // their signatures can still be checked.
        let mut pending = cps.iter().peekable();
        while let Some(cp) = pending.next_if(|c| c.seq <= start) {
            if let Err(f) = self.check_signature(cp) {
                return Ok(Err(f));
            }
        }
        let mut last_sealed = start;
        let mut expected = start + 1;
        let mut stmt = self.conn.prepare(
            "SELECT seq, record, hash, time_ms, subject, agent, tenant, server, method, tool, \
             decision, request_id, direction FROM records WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query([to_i64(start)?])?;
        loop {
            let row = match rows.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    return Ok(Err(Finding::Unreadable {
                        after_seq: expected - 1,
                        detail: e.to_string(),
                    }));
                }
            };
            let seq = match row.get::<_, i64>(0).map_err(Error::from).and_then(from_i64) {
                Ok(s) => s,
                Err(e) => {
                    return Ok(Err(Finding::Unreadable {
                        after_seq: expected - 1,
                        detail: e.to_string(),
                    }));
                }
            };
            if seq != expected {
                return Ok(Err(Finding::Removed {
                    seq: expected,
                    detail: format!("the next record present is {seq}"),
                }));
            }
            let request_id = row.get::<_, Option<String>>(11).ok().flatten();
            let modified = |detail: String| Finding::Modified {
                seq,
                request_id: request_id.clone(),
                detail,
            };
            let record: Vec<u8> = match row.get_ref(1).map(|v| v.as_bytes().map(<[u8]>::to_vec)) {
                Ok(Ok(b)) => b,
                _ => return Ok(Err(modified("record is not text".into()))),
            };
            let stored = match row
                .get::<_, Vec<u8>>(2)
                .map_err(Error::from)
                .and_then(|h| to_hash(&h))
            {
                Ok(h) => h,
                Err(_) => return Ok(Err(modified("hash is not 32 bytes".into()))),
            };
            let hash = record_hash(&prev, &record, seq);
            if hash != stored {
                return Ok(Err(match self.find_moved(&prev, seq, &stored)? {
                    Some(found_at) => Finding::Reordered { seq, found_at },
                    None => modified("its bytes do not match the chain".into()),
                }));
            }
            if let Err(detail) = check_columns(row, &record) {
                return Ok(Err(modified(detail)));
            }
            while let Some(cp) = pending.next_if(|c| c.seq <= seq) {
                if let Err(f) = self.check_signature(cp) {
                    return Ok(Err(f));
                }
                if cp.hash != hash {
                    return Ok(Err(Finding::Rewritten {
                        from_seq: last_sealed + 1,
                        checkpoint_seq: cp.seq,
                    }));
                }
                last_sealed = cp.seq;
            }
            prev = hash;
            self.report.records += 1;
            self.report.last_seq = seq;
            expected = seq + 1;
        }
        if self.report.records == 0 {
            self.report.last_seq = start;
        }
        if let Some(cp) = pending.next() {
            return Ok(Err(Finding::Removed {
                seq: expected,
                detail: format!(
                    "the store ends at {} but a checkpoint covers records up to {}",
                    expected - 1,
                    cp.seq
                ),
            }));
        }
        self.report.unsealed = self.report.last_seq.saturating_sub(last_sealed.max(start));
        Ok(Ok(()))
    }

    fn checkpoints(&mut self) -> Step<Vec<Checkpoint>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, hash, created_ms, public_key, signature FROM checkpoints ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        loop {
            let row = match rows.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    return Ok(Err(Finding::Unreadable {
                        after_seq: 0,
                        detail: format!("checkpoints: {e}"),
                    }));
                }
            };
            let seq: i64 = row.get(0)?;
            let seq = from_i64(seq)?;
            let parsed = (|| -> Option<Checkpoint> {
                Some(Checkpoint {
                    seq,
                    hash: row.get::<_, Vec<u8>>(1).ok()?.try_into().ok()?,
                    created_ms: row.get(2).ok()?,
                    public_key: row.get::<_, Vec<u8>>(3).ok()?.try_into().ok()?,
                    signature: row.get::<_, Vec<u8>>(4).ok()?.try_into().ok()?,
                })
            })();
            match parsed {
                Some(c) => out.push(c),
                None => {
                    return Ok(Err(Finding::BadCheckpoint {
                        seq,
                        detail: "malformed row".into(),
                    }));
                }
            }
        }
        Ok(Ok(out))
    }

    fn check_signature(&mut self, cp: &Checkpoint) -> std::result::Result<(), Finding> {
        cp.check(self.trusted)
            .map_err(|detail| Finding::BadCheckpoint {
                seq: cp.seq,
                detail,
            })?;
        self.report.checkpoints += 1;
        Ok(())
    }

    /// Looks ahead for the record that belongs at `seq`: one whose own
    /// stored hash, or the hash stored at `seq`, it produces there.
    fn find_moved(
        &self,
        prev: &[u8; 32],
        seq: u64,
        stored_at_seq: &[u8; 32],
    ) -> Result<Option<u64>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, record, hash FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut rows = stmt.query([to_i64(seq)?, REORDER_WINDOW])?;
        while let Ok(Some(row)) = rows.next() {
            let (Ok(s), Ok(rec), Ok(h)) = (
                row.get::<_, i64>(0),
                row.get_ref(1).map(|v| v.as_bytes().map(<[u8]>::to_vec)),
                row.get::<_, Vec<u8>>(2),
            ) else {
                continue;
            };
            let Ok(rec) = rec else { continue };
            let candidate = record_hash(prev, &rec, seq);
            if candidate == *stored_at_seq || candidate.as_slice() == h.as_slice() {
                return Ok(Some(from_i64(s)?));
            }
        }
        Ok(None)
    }
}

/// Re-derives the indexed columns from the record and compares.
fn check_columns(row: &rusqlite::Row<'_>, record: &[u8]) -> std::result::Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(record).map_err(|e| format!("record is not JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("record is not an object".into());
    };
    let derived = extract(&map).map_err(|e| e.to_string())?;
    let col = |i: usize| row.get::<_, Option<String>>(i).map_err(|e| e.to_string());
    let stored = Indexed {
        time_ms: row.get(3).map_err(|e| e.to_string())?,
        subject: col(4)?,
        agent: col(5)?,
        tenant: col(6)?,
        server: col(7)?,
        method: col(8)?,
        tool: col(9)?,
        decision: col(10)?,
        request_id: col(11)?,
        direction: col(12)?,
    };
    if stored == derived {
        return Ok(());
    }
    let names = [
        ("time_ms", stored.time_ms != derived.time_ms),
        ("subject", stored.subject != derived.subject),
        ("agent", stored.agent != derived.agent),
        ("tenant", stored.tenant != derived.tenant),
        ("server", stored.server != derived.server),
        ("method", stored.method != derived.method),
        ("tool", stored.tool != derived.tool),
        ("decision", stored.decision != derived.decision),
        ("request_id", stored.request_id != derived.request_id),
        ("direction", stored.direction != derived.direction),
    ];
    let bad: Vec<&str> = names.iter().filter(|(_, b)| *b).map(|(n, _)| *n).collect();
    Err(format!(
        "indexed column {} does not match the record",
        bad.join(", ")
    ))
}
