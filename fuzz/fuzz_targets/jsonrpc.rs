//! `jsonrpc`: Strict JSON, JSON-RPC classification and framing on arbitrary
//! bytes: no panic, and an accepted body re-serialises to JSON the strict
//! parser reads as the same value.
//!
//! The property itself is `fuzz/props/jsonrpc.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::jsonrpc::check(data));
