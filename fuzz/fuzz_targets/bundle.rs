//! `bundle`: Bundle loading from arbitrary compiled JSON and YAML: errors,
//! never panics.
//!
//! The property itself is `fuzz/props/bundle.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::bundle::check(data));
