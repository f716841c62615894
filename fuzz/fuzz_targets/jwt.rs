//! `jwt`: JWT parsing and verification on arbitrary text: no panic, and no
//! unsigned input is ever accepted.
//!
//! The property itself is `fuzz/props/jwt.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::jwt::check(data));
