//! `sniff`: could_be_jsonrpc on arbitrary bytes: no panic, and true for every
//! JSON object (or array of them) with a jsonrpc or method member.
//!
//! The property itself is `fuzz/props/sniff.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::sniff::check(data));
