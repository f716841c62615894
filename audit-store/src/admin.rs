//! The store's operations as `portcullis audit` runs them: whole
//! operations on a store at a path, each opening the store the way the
//! operation needs (created, or required to exist) and closing it so a
//! checkpoint is sealed, and each answering with a report whose `Display`
//! (or `summary`) is what the command prints.
//!
//! The checkpoint signing key defaults to `DB.key` beside the database
//! ([`store_key`]), generated on first use for writers, so `serve
//! --audit-db` and `audit ingest` sign with the same key without being
//! told.

use crate::ingest::{IngestReport, ingest_jsonl, ingest_jsonl_stream};
use crate::keys::{generate_key, load_signing_key, public_hex};
use crate::query::{Filter, Format};
use crate::shadow::{ShadowServer, shadow_servers};
use crate::store::{Config, PruneReport, Store, Synchronous};
use crate::verify::Report;
use crate::{Error, Result};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A store's checkpoint signing key, and where it came from.
pub struct StoreKey {
    pub key: SigningKey,
    pub path: PathBuf,
    /// The public half, when the key was generated just now.
    pub generated: Option<VerifyingKey>,
}

impl StoreKey {
    /// What to tell the operator about a key generated just now: where it
    /// is, and to keep its public half away from the database.
    pub fn notice(&self) -> Option<String> {
        self.generated.as_ref().map(|public| {
            format!(
                "generated checkpoint signing key {} (public key {}); keep a copy of the public \
                 key away from the database and pass it to `audit verify --key`",
                self.path.display(),
                public_hex(public)
            )
        })
    }
}

/// `DB.key`: where a store's signing key is by default.
pub fn default_key_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".key");
    PathBuf::from(p)
}

/// The signing key: `key`, else `DB.key`, generated when `create` and it
/// does not exist yet.
pub fn store_key(db: &Path, key: Option<&Path>, create: bool) -> Result<StoreKey> {
    let path = key.map_or_else(|| default_key_path(db), Path::to_path_buf);
    let generated = if create && key.is_none() && !path.exists() {
        Some(generate_key(&path)?)
    } else {
        None
    };
    let key = load_signing_key(&path)?;
    Ok(StoreKey {
        key,
        path,
        generated,
    })
}

/// Opens a store that must exist, naming it in the error.
pub fn open_existing(db: &Path, cfg: Config) -> Result<Store> {
    Store::open_existing(db, cfg).map_err(|e| Error::Open {
        path: db.to_owned(),
        source: Box::new(e),
    })
}

/// How [`ingest`] commits.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// Sign a checkpoint every N records.
    pub checkpoint_every: u64,
    /// Records per transaction at most.
    pub batch: usize,
    pub synchronous: Synchronous,
    /// The input is a live stream: commit whenever no more is buffered
    /// ([`ingest_jsonl_stream`]) instead of in full batches.
    pub stream: bool,
}

/// Appends JSONL records from `input` to the store at `db` (created if
/// missing). What was committed is sealed with a checkpoint even when a
/// later line is bad.
pub fn ingest(
    db: &Path,
    key: SigningKey,
    input: impl Read,
    opts: IngestOptions,
) -> Result<IngestReport> {
    let cfg = Config {
        checkpoint_every: opts.checkpoint_every,
        synchronous: opts.synchronous,
        signing_key: Some(key),
        ..Config::default()
    };
    let mut store = Store::open(db, cfg)?;
    let report = if opts.stream {
        ingest_jsonl_stream(&mut store, input, opts.batch, |_, _| {})
    } else {
        ingest_jsonl(&mut store, input, opts.batch, |_, _| {})
    };
    let closed = store.close();
    let report = report?;
    closed?;
    Ok(report)
}

/// Writes the records `filter` selects to `out`; returns how many.
pub fn query(db: &Path, filter: &Filter, format: Format, out: &mut dyn Write) -> Result<u64> {
    let n = open_existing(db, Config::default())?.query_to(filter, format, out)?;
    out.flush()?;
    Ok(n)
}

/// Verifies the store: against `trusted` when given, else against the key
/// each checkpoint names.
pub fn verify(db: &Path, trusted: Option<&VerifyingKey>) -> Result<Report> {
    open_existing(db, Config::default())?.verify(trusted)
}

/// Removes records older than `retention_ms` before `now_ms`, sealing the
/// cut with `key` (see [`Store::prune`]).
pub fn prune(db: &Path, key: SigningKey, retention_ms: i64, now_ms: i64) -> Result<PruneReport> {
    let mut store = open_existing(
        db,
        Config {
            retention_ms,
            signing_key: Some(key),
            ..Config::default()
        },
    )?;
    let report = store.prune(now_ms)?;
    store.close()?;
    Ok(report)
}

/// The shadow MCP servers seen at or after `since_ms`.
pub fn shadow(db: &Path, since_ms: i64) -> Result<Vec<ShadowServer>> {
    shadow_servers(
        open_existing(db, Config::default())?.connection(),
        Some(since_ms),
    )
}
