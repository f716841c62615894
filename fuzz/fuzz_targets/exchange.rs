//! `exchange`: A whole HTTP stream through the core's StreamDriver (fuzzed
//! method, path, content types, statuses, chunking and trailers) against a
//! bundle with a ContentPolicy and an argument-reading Policy: no panic,
//! nothing held for ever, and every body that goes on is the input unchanged
//! or valid JSON / SSE for its content type.
//!
//! The property itself is `fuzz/props/exchange.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::exchange::check(data));
