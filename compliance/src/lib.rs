//! Compliance: the crosswalk from Portcullis's controls to six frameworks'
//! controls, and the signed evidence packs that answer an auditor's "show
//! me the evidence" from the audit store.
//!
//! The crosswalk ([`crosswalk`]) is data (`compliance/crosswalk.yaml`,
//! beside this crate, embedded at build time) so that GRC reviewers can
//! read and change it without reading Rust; this crate parses it and holds
//! every control id to its framework's numbering. A pack ([`pack`]) runs
//! the crosswalk's saved queries over the audit store for a time window,
//! writes their results per control, and seals the directory with the
//! audit store's manifest signing (`audit_store::evidence`), so it can be
//! checked offline with nothing but a public key.
//!
//! Dependencies point one way: this crate reads the bundle model
//! (`portcullis-core`) and the audit store; the CLI and the assessment
//! read it.

pub mod crosswalk;
pub mod pack;
