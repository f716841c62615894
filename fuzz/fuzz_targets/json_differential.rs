//! `json_differential`: parse_strict against serde_json: the same value
//! whenever strict accepts; when only serde_json accepts, the refusal is the
//! documented one (duplicate key, depth) that a reference walk finds first.
//!
//! The property itself is `fuzz/props/json_differential.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::json_differential::check(data));
