//! The governance self-assessment, computed.
//!
//! The reference framework (six pillars, a 12-question self-assessment
//! scored 0/1/2, a five-level maturity matrix per pillar) is usually filled
//! in by hand, which is how programmes score themselves higher than their
//! configuration deserves. Here every point is computed from what is
//! actually deployed: the compiled bundle, read as JSON documents so that
//! new kinds such as `Policy` are evidence as soon as they appear
//! ([`BundleFacts`]), and, optionally, the audit store: what happened in the
//! last 30 and 90 days, whether the chain verifies ([`AuditFacts`]). Each
//! point and each level says what earned it, or what is missing and where
//! to add it, so the report is a to-do list, not a grade.
//!
//! The scoring ([`assess`]) is deliberately conservative: a capability the
//! product has but the bundle does not switch on scores nothing, and what
//! only an organisation can show (a runbook, a review cadence) scores only
//! when the bundle points at it (an annotation), never by default.
//! [`report`] renders an [`Assessment`] as text or as a self-contained HTML
//! page.

mod facts;
pub mod report;
mod score;

pub use facts::{AuditFacts, BundleFacts, PolicyFacts, ServerFacts};
pub use score::{Assessment, PillarLevel, Point, assess, band};

/// The annotation (on Settings or on an McpServer) naming the incident
/// response runbook for MCP-specific failures.
pub const RUNBOOK_ANNOTATION: &str = "portcullis.dev/runbook";

const DAY_MS: i64 = 86_400_000;

/// Why the audit store's facts cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store cannot be opened or verified.
    #[error(transparent)]
    Store(#[from] audit_store::Error),
    /// A fact's query failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] audit_store::rusqlite::Error),
}
