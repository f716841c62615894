//! The properties the fuzz targets check, one module per target, each with a
//! `check(data: &[u8])` that panics when its property fails.
//!
//! Shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`, built by cargo-fuzz)
//! and by the regression replay in the normal test suite
//! (`tests/fuzz_regressions.rs`, which runs every file under
//! `fuzz/regressions/<target>/` through `check`), so a crash input found by a
//! fuzzer stays a test on stable without cargo-fuzz. Every target takes raw
//! bytes (no `arbitrary` derive) so that a saved input replays as it is.
//!
//! Checks may panic (that is how a fuzzer learns of a failure); the engine
//! they drive must not.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod input;

pub mod bundle;
pub mod exchange;
pub mod ids;
pub mod json_differential;
pub mod jsonrpc;
pub mod jwt;
pub mod media;
pub mod route;
pub mod sniff;
pub mod sse;
pub mod sse_differential;

/// A target's property check.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz/regressions/<name>/` is named.
pub const TARGETS: &[(&str, Check)] = &[
    ("bundle", bundle::check),
    ("exchange", exchange::check),
    ("ids", ids::check),
    ("json_differential", json_differential::check),
    ("jsonrpc", jsonrpc::check),
    ("jwt", jwt::check),
    ("media", media::check),
    ("route", route::check),
    ("sniff", sniff::check),
    ("sse", sse::check),
    ("sse_differential", sse_differential::check),
];
