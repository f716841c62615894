//! Portcullis's audit store: where the filter's audit records go to become
//! evidence.
//!
//! Auditors ask questions like "every call by user X to tool Y in the last
//! 30 days" and expect an answer they can trust. So the store is shaped
//! around three promises, each owned by one module:
//!
//! - **Append-only and tamper-evident** ([`store`], [`chain`]): one SQLite
//!   row per record, each hash-chained to the one before
//!   (`SHA-256(prev_hash || canonical record bytes || seq)`), with
//!   Ed25519-signed checkpoints every N records and on close. [`verify`]
//!   walks the chain and names the first record that was modified, removed
//!   or reordered.
//! - **Durable on acknowledgement**: SQLite in WAL mode, and an append that
//!   returns `Ok` has committed; batches share one transaction (and one
//!   fsync), which is where the throughput comes from ([`ingest`] groups
//!   concurrent callers into such batches).
//! - **Answerable** ([`query`]): the fields auditors filter on are copied
//!   into indexed columns, with a composite `(subject, tool, time)` index for
//!   the headline question.
//!
//! [`admin`] runs these as whole operations on a store file, the way
//! `portcullis audit` and `portcullis serve --audit-db` use them.
//!
//! Retention ([`store::Store::prune`]) removes a prefix of old records but
//! first seals a signed checkpoint at the cut and keeps it as the chain's
//! anchor, so what is left still verifies. `docs/audit-store.md` gives the
//! design and the durability argument; `docs/audit-schema.md` the record.

pub mod admin;
pub mod chain;
pub mod evidence;
pub mod ingest;
pub mod keys;
pub mod query;
pub mod record;
pub mod sample;
pub mod shadow;
pub mod store;
pub mod time;
pub mod verify;

pub use chain::Checkpoint;
pub use ingest::{IngestHandle, IngestReport, Ingestor, Notice, ingest_jsonl, ingest_jsonl_stream};
pub use keys::{generate_key, load_signing_key, load_verifying_key};
pub use query::{Filter, Format, Order, Row};
pub use record::Prepared;
pub use store::{Config, PruneReport, Store, Synchronous};
pub use verify::{Finding, Report};

/// Re-exported so callers name keys with the same types.
pub use ed25519_dalek;
/// Re-exported so callers (and tests) use the same SQLite binding.
pub use rusqlite;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A record that cannot be stored (not JSON, not an object, no time...).
    #[error("invalid audit record: {0}")]
    InvalidRecord(String),
    /// A JSONL input line that cannot be stored.
    #[error("line {line}: {message}")]
    Line { line: u64, message: String },
    #[error("key: {0}")]
    Key(String),
    /// Retention refused to prune because the chain does not verify:
    /// pruning would launder the tampering.
    #[error("refusing to prune a store that does not verify: {0}")]
    Tampered(Finding),
    /// The database is not a Portcullis audit store, or a newer format.
    #[error("not a portcullis audit store: {0}")]
    Format(String),
    /// The group-commit writer failed or has stopped.
    #[error("ingest: {0}")]
    Ingest(String),
    /// An existing store could not be opened.
    #[error("cannot open audit store {}: {source}", .path.display())]
    Open {
        path: std::path::PathBuf,
        source: Box<Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
