//! The store itself: schema, appends, checkpoints and retention.
//!
//! One SQLite database in WAL mode holds three tables: `records` (one row
//! per audit record: its canonical JSON, its chain hash, and indexed copies
//! of the fields queries filter on), `checkpoints` (signed chain states) and
//! `meta` (format version and, after pruning, the anchor the chain resumes
//! from). Every append runs in a `BEGIN IMMEDIATE` transaction that re-reads
//! the chain head under SQLite's write lock, so two writers can never fork
//! the chain, and a batch of records shares one transaction and one sync.
//! Triggers refuse `UPDATE`s and out-of-band `DELETE`s: not a security
//! boundary (whoever can write the file can drop them; the chain is the
//! boundary), but a guard against accidents.

use crate::chain::{Checkpoint, GENESIS, record_hash};
use crate::record::Prepared;
use crate::time::now_ms;
use crate::verify::{self, Report};
use crate::{Error, Result};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::Path;

/// The store format this code writes and reads.
pub const FORMAT: &str = "portcullis.audit.store/v1";

/// 90 days, the default retention.
pub const DEFAULT_RETENTION_MS: i64 = 90 * 86_400_000;

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS records (
    seq        INTEGER PRIMARY KEY,
    time_ms    INTEGER NOT NULL,
    subject    TEXT,
    agent      TEXT,
    tenant     TEXT,
    server     TEXT,
    method     TEXT,
    tool       TEXT,
    decision   TEXT,
    request_id TEXT,
    direction  TEXT,
    record     TEXT NOT NULL,
    hash       BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS records_subject_tool_time ON records (subject, tool, time_ms);
CREATE INDEX IF NOT EXISTS records_time ON records (time_ms);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS records_append_only BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_prune_only BEFORE DELETE ON records
WHEN OLD.seq > COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'prune_through'), 0)
BEGIN SELECT RAISE(ABORT, 'audit records are removed only by retention'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
";

/// How hard each commit syncs. See docs/audit-store.md for the argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync the WAL on every commit: an acknowledged record survives a
    /// process kill *and* an OS crash or power loss. The default.
    #[default]
    Full,
    /// fsync only at WAL checkpoints: an acknowledged record survives a
    /// process kill (it is in the OS's page cache), but the last commits
    /// may be lost to an OS crash or power loss.
    Normal,
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seal a signed checkpoint every this many records (and on close).
    pub checkpoint_every: u64,
    /// How long records are kept by [`Store::prune`].
    pub retention_ms: i64,
    pub synchronous: Synchronous,
    /// Without a key the store still chains, but cannot sign checkpoints.
    pub signing_key: Option<SigningKey>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            checkpoint_every: 1000,
            retention_ms: DEFAULT_RETENTION_MS,
            synchronous: Synchronous::Full,
            signing_key: None,
        }
    }
}

/// What [`Store::prune`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Records removed.
    pub removed: u64,
    /// The checkpoint the chain now resumes from, if any.
    pub anchor_seq: Option<u64>,
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.anchor_seq {
            Some(s) => write!(
                f,
                "pruned {} records; the chain now resumes from the signed checkpoint at {s}",
                self.removed
            ),
            None => write!(f, "pruned {} records", self.removed),
        }
    }
}

/// An open audit store. One per thread; SQLite serialises writers.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    cfg: Config,
}

impl Store {
    /// Opens (creating if needed) a store for appending.
    pub fn open(path: &Path, cfg: Config) -> Result<Store> {
        let conn = Connection::open(path)?;
        Store::init(conn, cfg, true)
    }

    /// Opens an existing store, failing if there is none.
    pub fn open_existing(path: &Path, cfg: Config) -> Result<Store> {
        if !path.exists() {
            return Err(Error::Format(format!("{} does not exist", path.display())));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Store::init(conn, cfg, false)
    }

    fn init(conn: Connection, cfg: Config, create: bool) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Format(format!("journal_mode is {mode}, not wal")));
        }
        let sync = match cfg.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        // 64 MiB of page cache (SQLite's default is 2 MiB): keeps the upper
        // levels of the (subject, tool, time) index resident, which is what
        // random index inserts into a store of millions of records touch.
        conn.pragma_update(None, "cache_size", -65_536)?;
        let has_meta: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
            [],
            |r| r.get(0),
        )?;
        if !has_meta && !create {
            return Err(Error::Format("no meta table".into()));
        }
        conn.execute_batch(SCHEMA_SQL)?;
        let format: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match format {
            Some(f) if f == FORMAT => {}
            Some(f) => return Err(Error::Format(format!("format {f}, expected {FORMAT}"))),
            None => {
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?1)",
                    [FORMAT],
                )?;
            }
        }
        Ok(Store { conn, cfg })
    }

    /// The underlying connection, for read-only inspection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The last record's seq and chain hash (the anchor's, or genesis, when
    /// there are no records).
    pub fn head(&self) -> Result<(u64, [u8; 32])> {
        head(&self.conn)
    }

    /// Appends one record; `Ok` means it is committed. Returns its seq.
    pub fn append<T: serde::Serialize + ?Sized>(&mut self, record: &T) -> Result<u64> {
        let p = Prepared::from_serialize(record)?;
        self.append_prepared(std::slice::from_ref(&p))
            .map(|(first, _)| first)
    }

    /// Appends one line of JSON; `Ok` means it is committed.
    pub fn append_json(&mut self, line: &str) -> Result<u64> {
        let p = Prepared::from_json(line)?;
        self.append_prepared(std::slice::from_ref(&p))
            .map(|(first, _)| first)
    }

    /// Appends records in one transaction: all are committed, or none.
    /// Returns the first and last seq assigned (`first > last` if empty).
    pub fn append_prepared(&mut self, batch: &[Prepared]) -> Result<(u64, u64)> {
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut seq, mut prev) = head(&tx)?;
        let first = seq + 1;
        let mut last_sealed = last_checkpoint_seq(&tx)?.unwrap_or(0);
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO records (seq, time_ms, subject, agent, tenant, server, method, \
                 tool, decision, request_id, direction, record, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for p in batch {
                seq += 1;
                let hash = record_hash(&prev, p.canonical.as_bytes(), seq);
                let i = &p.indexed;
                insert.execute(params![
                    to_i64(seq)?,
                    i.time_ms,
                    i.subject,
                    i.agent,
                    i.tenant,
                    i.server,
                    i.method,
                    i.tool,
                    i.decision,
                    i.request_id,
                    i.direction,
                    p.canonical,
                    hash.as_slice(),
                ])?;
                prev = hash;
                if let Some(key) = &self.cfg.signing_key
                    && seq.saturating_sub(last_sealed) >= self.cfg.checkpoint_every.max(1)
                {
                    insert_checkpoint(&tx, &Checkpoint::sign(key, seq, hash, now))?;
                    last_sealed = seq;
                }
            }
        }
        tx.commit()?;
        Ok((first, seq))
    }

    /// Seals a signed checkpoint at the head, unless one is already there.
    /// Returns it, or `None` with no key or nothing new to seal.
    pub fn checkpoint(&mut self) -> Result<Option<Checkpoint>> {
        let Some(key) = self.cfg.signing_key.clone() else {
            return Ok(None);
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (seq, hash) = head(&tx)?;
        if seq == 0 || last_checkpoint_seq(&tx)? == Some(seq) {
            return Ok(None);
        }
        let cp = Checkpoint::sign(&key, seq, hash, now_ms());
        insert_checkpoint(&tx, &cp)?;
        tx.commit()?;
        Ok(Some(cp))
    }

    /// Walks the chain and the checkpoints. See [`crate::verify`].
    pub fn verify(&self, trusted: Option<&VerifyingKey>) -> Result<Report> {
        verify::verify(&self.conn, trusted)
    }

    /// Applies retention: removes records older than the configured
    /// retention before `now_ms`.
    pub fn prune(&mut self, now_ms: i64) -> Result<PruneReport> {
        self.prune_before(now_ms.saturating_sub(self.cfg.retention_ms))
    }

    /// Removes the longest prefix of records whose time is before
    /// `cutoff_ms`, keeping the chain verifiable.
    ///
    /// The chain is verified first (pruning a tampered store would destroy
    /// the evidence), then a checkpoint is signed at the last record to go
    /// (when there is a key; without one, the cut moves back to the last
    /// existing checkpoint), the records up to it are deleted, and it
    /// becomes the anchor that verification resumes from. Only a prefix is
    /// removed, so a late-arriving old record stays until every record
    /// before it is also due.
    pub fn prune_before(&mut self, cutoff_ms: i64) -> Result<PruneReport> {
        let report = self.verify(None)?;
        if let Some(f) = report.finding {
            return Err(Error::Tampered(f));
        }
        let key = self.cfg.signing_key.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (head_seq, _) = head(&tx)?;
        let (anchor, _) = anchor(&tx)?.unwrap_or((0, GENESIS));
        // The first record that must stay; everything before it may go.
        let keep_from: Option<i64> = tx.query_row(
            "SELECT MIN(seq) FROM records WHERE time_ms >= ?1",
            [cutoff_ms],
            |r| r.get(0),
        )?;
        let mut cut = match keep_from {
            Some(s) => from_i64(s)?.saturating_sub(1),
            None => head_seq,
        };
        if cut <= anchor {
            return Ok(PruneReport {
                removed: 0,
                anchor_seq: (anchor > 0).then_some(anchor),
            });
        }
        let existing: Option<(Vec<u8>, i64)> = tx
            .query_row(
                "SELECT hash, seq FROM checkpoints WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1",
                [to_i64(cut)?],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let existing = match existing {
            Some((h, s)) => Some((to_hash(&h)?, from_i64(s)?)),
            None => None,
        };
        let cut_hash: [u8; 32] = match (&key, existing) {
            // Already sealed exactly at the cut.
            (_, Some((h, s))) if s == cut => h,
            (Some(key), _) => {
                let h: Vec<u8> = tx.query_row(
                    "SELECT hash FROM records WHERE seq = ?1",
                    [to_i64(cut)?],
                    |r| r.get(0),
                )?;
                let h = to_hash(&h)?;
                insert_checkpoint(&tx, &Checkpoint::sign(key, cut, h, now_ms()))?;
                h
            }
            // No key: cut back to the last checkpoint before the cut.
            (None, Some((h, s))) => {
                cut = s;
                h
            }
            (None, None) => {
                return Ok(PruneReport {
                    removed: 0,
                    anchor_seq: (anchor > 0).then_some(anchor),
                });
            }
        };
        if cut <= anchor {
            return Ok(PruneReport {
                removed: 0,
                anchor_seq: (anchor > 0).then_some(anchor),
            });
        }
        set_meta(&tx, "prune_through", &cut.to_string())?;
        let removed = tx.execute("DELETE FROM records WHERE seq <= ?1", [to_i64(cut)?])?;
        set_meta(&tx, "prune_through", "0")?;
        set_meta(&tx, "anchor_seq", &cut.to_string())?;
        set_meta(&tx, "anchor_hash", &hex::encode(cut_hash))?;
        tx.commit()?;
        Ok(PruneReport {
            removed: removed as u64,
            anchor_seq: Some(cut),
        })
    }

    /// Seals a final checkpoint and closes the database (which also folds
    /// the WAL back into the main file).
    pub fn close(mut self) -> Result<()> {
        self.checkpoint()?;
        let Store { conn, .. } = self;
        conn.close().map_err(|(_, e)| Error::Sqlite(e))
    }
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

fn insert_checkpoint(conn: &Connection, cp: &Checkpoint) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (seq, hash, created_ms, public_key, signature) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        to_i64(cp.seq)?,
        cp.hash.as_slice(),
        cp.created_ms,
        cp.public_key.as_slice(),
        cp.signature.as_slice(),
    ])?;
    Ok(())
}

pub(crate) fn last_checkpoint_seq(conn: &Connection) -> Result<Option<u64>> {
    let s: Option<i64> = conn.query_row("SELECT MAX(seq) FROM checkpoints", [], |r| r.get(0))?;
    s.map(from_i64).transpose()
}

/// The pruning anchor, if the store has been pruned.
pub(crate) fn anchor(conn: &Connection) -> Result<Option<(u64, [u8; 32])>> {
    let get = |k: &str| -> Result<Option<String>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .optional()?)
    };
    match (get("anchor_seq")?, get("anchor_hash")?) {
        (Some(s), Some(h)) => {
            let seq: u64 = s
                .parse()
                .map_err(|_| Error::Format(format!("anchor_seq {s:?}")))?;
            let hash = hex::decode(&h).map_err(|_| Error::Format(format!("anchor_hash {h:?}")))?;
            Ok(Some((seq, to_hash(&hash)?)))
        }
        (None, None) => Ok(None),
        _ => Err(Error::Format("half an anchor in meta".into())),
    }
}

fn head(conn: &Connection) -> Result<(u64, [u8; 32])> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match last {
        Some((seq, hash)) => Ok((from_i64(seq)?, to_hash(&hash)?)),
        None => Ok(anchor(conn)?.unwrap_or((0, GENESIS))),
    }
}

pub(crate) fn to_hash(bytes: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| Error::Format(format!("hash of {} bytes", bytes.len())))
}

pub(crate) fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Format(format!("seq {v} out of range")))
}

pub(crate) fn from_i64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Format(format!("seq {v} out of range")))
}
